"""Wakes the requests that wait for a DNS pass: group commit without polling.

A commit or release whose work another process's pass may carry waits here, not on the
registrar lock: every pass that ends (and lets go of the lock) announces it, and each
waiter then looks whether its own work is done, or takes the lock to run the next pass
with whatever has queued meanwhile.

On PostgreSQL the announcement crosses processes and replicas as ``NOTIFY pdm_dns_pass``;
each process listens on one connection of its own (outside the pool), from a daemon
thread started on first use -- after gunicorn's fork, never in the app factory. Without a
listener (SQLite, or while it reconnects) a waiter looks again every ``FALLBACK_POLL``
seconds, as the lock used to.
"""
from __future__ import annotations

import logging
import os
import threading
import time

from sqlalchemy import Engine, text

log = logging.getLogger(__name__)

CHANNEL = "pdm_dns_pass"
# How often a waiter looks again when no notification can reach it.
FALLBACK_POLL = 0.05
# How long the listener waits on its connection between checks that it should go on.
LISTEN_TICK = 1.0
RECONNECT_AFTER = 2.0
# A listener nobody has asked for this long lets its connection go (the next waiter
# starts it again, and polls meanwhile): an idle or discarded app holds none.
LISTENER_IDLE = 10.0


class PassWakeups:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._changed = threading.Condition()
        self._generation = 0
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_lock = threading.Lock()
        self._pid: int | None = None
        self._last_use = time.monotonic()
        self._waiting = 0

    @property
    def crosses_processes(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def generation(self) -> int:
        """A mark to wait from: take it before looking whether the work is done."""
        self._last_use = time.monotonic()
        self._ensure_listener()
        with self._changed:
            return self._generation

    def wait(self, since: int, timeout: float) -> None:
        """Until a pass has ended after ``since``, at most ``timeout`` seconds."""
        limit = timeout if self._listening.is_set() else min(timeout, FALLBACK_POLL)
        end = time.monotonic() + max(limit, 0.0)
        with self._changed:
            self._waiting += 1
            try:
                while self._generation == since:
                    left = end - time.monotonic()
                    if left <= 0:
                        return
                    self._changed.wait(left)
            finally:
                self._waiting -= 1
                self._last_use = time.monotonic()

    def announce(self) -> None:
        """A pass has ended and let go of the lock: wake this process's waiters, and the
        other processes' through the database."""
        self._bump()
        if self.crosses_processes:
            try:
                with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(text("SELECT pg_notify(:c, '')"), {"c": CHANNEL})
            except Exception as exc:  # the waiters elsewhere fall back to their own timeouts
                log.warning("could not announce the end of a DNS pass (%s)", type(exc).__name__)

    def _bump(self) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    # -- the listener --------------------------------------------------------------------

    def _ensure_listener(self) -> None:
        if not self.crosses_processes:
            return
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        with self._started_lock:
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                # A fork copies the object but not the thread: start one in this process.
                self._pid = os.getpid()
                self._listening.clear()
                self._thread = threading.Thread(target=self._listen, name="pdm-pass-wakeups", daemon=True)
                self._thread.start()

    def _conninfo(self) -> str:
        return self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def _idle(self) -> bool:
        with self._changed:
            return not self._waiting and time.monotonic() - self._last_use > LISTENER_IDLE

    def _listen(self) -> None:
        import psycopg

        try:
            while not self._idle():
                try:
                    with psycopg.connect(self._conninfo(), autocommit=True, connect_timeout=5) as conn:
                        conn.execute(f"LISTEN {CHANNEL}")
                        self._listening.set()
                        # Passes that ended while nobody listened: let the waiters look.
                        self._bump()
                        while not self._idle():
                            for _ in conn.notifies(timeout=LISTEN_TICK):
                                self._bump()
                except Exception as exc:
                    self._listening.clear()
                    log.warning("listening for DNS passes failed (%s); waiters poll until it is back",
                                type(exc).__name__)
                    self._bump()
                    time.sleep(RECONNECT_AFTER)
        finally:
            self._listening.clear()
