"""Named locks that hold across threads, gunicorn workers and replicas.

PostgreSQL: a session-level advisory lock on a connection of its own, so the lock dies
with the process (or its connection) and never outlives a crash. SQLite (one node): an
``flock`` on a file beside the database, which likewise dies with the process.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
import time

from sqlalchemy import Connection, Engine, text

from . import metrics

_POLL = 0.05
log = logging.getLogger(__name__)


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class LockTimeout(Exception):
    pass


class DatabaseLock:
    """One holder at a time per name, deployment-wide. Not re-entrant.

    ``label`` names the lock in metrics and logs (default: ``name``): one of a few fixed
    words, since a name may be derived from a secret (``per_key_lock``) and a metric label
    must not be, nor take a value per customer."""

    def __init__(self, engine: Engine, name: str, *, label: str | None = None):
        self.engine = engine
        self.name = name
        self.label = label or name
        self._conn: Connection | None = None
        self._fd: int | None = None
        # flock and advisory locks are shared by the threads of one holder, so threads of
        # one process also queue on this.
        self._local = threading.Lock()
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    def acquire(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds (forever if None; 0 = just try)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._local.acquire(timeout=-1 if timeout is None else max(timeout, 0)):
            return False
        try:
            while True:
                if self._try_acquire():
                    self._held = True
                    return True
                if deadline is not None and time.monotonic() >= deadline:
                    self._local.release()
                    return False
                time.sleep(_POLL)
        except BaseException:
            self._local.release()
            raise

    def _try_acquire(self) -> bool:
        if self.engine.dialect.name == "postgresql":
            # Autocommit: each statement on the lock's connection is one round trip (a
            # session lock needs no transaction around it).
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            try:
                got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": advisory_key(self.name)}).scalar()
            except BaseException:
                conn.close()
                raise
            if got:
                self._conn = conn
                return True
            conn.close()
            return False
        fd = os.open(self._lock_path(), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def _lock_path(self) -> str:
        database = self.engine.url.database or ""
        base = database if database and database != ":memory:" else os.path.join(os.getcwd(), "pdm-memory")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.name)
        return f"{base}.{safe}.lock"

    def is_alive(self) -> bool:
        """Whether a held lock is still ours (its connection still answers)."""
        if not self._held:
            return False
        if self._conn is None:
            return True
        try:
            self._conn.execute(text("SELECT 1"))
            return True
        except Exception:
            self._drop()
            return False

    def still_held(self) -> bool:
        """Proof, asked of the server on the lock's own connection, that this process
        holds the lock right now (a session lock dies silently with its connection)."""
        if not self._held:
            return False
        if self._conn is None:
            return True  # flock: held until this process closes the descriptor
        key = advisory_key(self.name) & 0xFFFFFFFFFFFFFFFF
        try:
            held = self._conn.execute(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                     "AND pid = pg_backend_pid() AND classid = :hi AND objid = :lo AND objsubid = 1"),
                {"hi": key >> 32, "lo": key & 0xFFFFFFFF},
            ).scalar()
        except Exception as exc:
            log.warning("lock %s: its connection is gone (%s)", self.label, type(exc).__name__)
            return False
        return bool(held)

    def release(self) -> None:
        if not self._held:
            return
        try:
            if self._conn is not None:
                released = self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": advisory_key(self.name)})
                if not released.scalar():
                    raise RuntimeError("the server says this session did not hold it")
        except Exception as exc:
            # A broken connection took the lock with it; make sure the pool forgets it.
            metrics.LOCK_RELEASE_FAILURES.labels(self.label).inc()
            # The type only: the driver's text quotes the statement's parameters, the lock's
            # key among them (derived from a customer's key, for per_key_lock).
            log.warning("releasing lock %s failed (%s); it was lost before", self.label, type(exc).__name__)
            if self._conn is not None:
                self._conn.invalidate()
        finally:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception as exc:  # already broken: the server dropped the lock with it
                log.debug("closing the connection of lock %s failed: %s", self.label, type(exc).__name__)
            self._conn = None
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
        if self._held:
            self._held = False
            self._local.release()

    def __enter__(self) -> "DatabaseLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def per_key_lock(engine: Engine, prefix: str):
    """``lock(secret, timeout)``: a context manager holding a deployment-wide lock named
    after a hash of ``secret`` (never the secret); TimeoutError when it cannot be had in
    ``timeout`` seconds. One call in flight per customer API key. Metrics and logs name
    these locks by ``prefix`` alone."""

    @contextlib.contextmanager
    def lock(secret: str, timeout: float):
        held = DatabaseLock(engine, f"{prefix}-{hashlib.sha256(secret.encode()).hexdigest()[:32]}", label=prefix)
        if not held.acquire(timeout=max(timeout, 0)):
            raise TimeoutError(f"{prefix}: busy")
        try:
            yield
        finally:
            held.release()

    return lock
