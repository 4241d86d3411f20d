"""The rate limits' counters on the service's own database, shared by every worker and
replica: a storage for the ``limits`` library (which Flask-Limiter drives), registered
under the scheme ``pdm-database``.

A fixed window per key: the first hit opens it for the limit's period, and one statement
per hit -- an upsert that starts a new window on a lapsed row or adds to a live one --
returns the count and the window's end. Rows of windows that lapsed are deleted at most
once a minute per process (one indexed DELETE); a lapsed row that is hit again is simply
reused. Infrastructure: it uses the engine directly, not the unit of work.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable

from limits.storage import Storage
from sqlalchemy import Engine, bindparam, case, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from . import metrics
from .models import RateLimitCounter

SCHEME = "pdm-database"
# How often one process deletes the rows of lapsed windows.
CLEANUP_INTERVAL = 60.0
# Windows a thread remembers from its request's upserts (a request counts a handful).
REMEMBERED = 8

_TABLE = RateLimitCounter.__table__


def _upsert(dialect):
    """A hit: a new window on a lapsed row (or none), else one more in the live one; built
    once (parameters: key, amount, now, end)."""
    lapsed = _TABLE.c.expires_at <= bindparam("now")
    return (
        dialect.insert(_TABLE)
        .values(key=bindparam("key"), hits=bindparam("amount"), expires_at=bindparam("end"))
        .on_conflict_do_update(index_elements=[_TABLE.c.key], set_={
            "hits": case((lapsed, bindparam("amount")), else_=_TABLE.c.hits + bindparam("amount")),
            "expires_at": case((lapsed, bindparam("end")), else_=_TABLE.c.expires_at),
        })
        .returning(_TABLE.c.hits, _TABLE.c.expires_at)
    )


class DatabaseStorage(Storage):
    """``limits`` storage on the rate_limit_counters table (PostgreSQL; SQLite works too).
    Built by Flask-Limiter from ``storage_uri="pdm-database://"`` and
    ``storage_options={"engine": engine}``."""

    STORAGE_SCHEME = [SCHEME]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, *, engine: Engine,
                 clock: Callable[[], float] = time.time, **options):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.engine = engine
        self.clock = clock
        self._upsert = _upsert(postgresql if engine.dialect.name == "postgresql" else sqlite)
        self._cleaned_at = clock()
        self._cleanup_lock = threading.Lock()
        # The windows this thread's request has counted, as its upserts returned them: the
        # response headers read them without another round trip. ``forget`` at the end of
        # the request (they are stale once another request counts).
        self._local = threading.local()

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    def _connect(self):
        connection = self.engine.connect()
        if self.engine.dialect.name == "postgresql":
            # One statement complete in itself: no BEGIN/COMMIT round trips around it.
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        return connection

    def _remembered(self) -> OrderedDict:
        seen = getattr(self._local, "windows", None)
        if seen is None:
            seen = self._local.windows = OrderedDict()
        return seen

    def _remember(self, key: str, hits: int, expires_at: float) -> None:
        seen = self._remembered()
        seen[key] = (hits, expires_at)
        seen.move_to_end(key)
        while len(seen) > REMEMBERED:
            seen.popitem(last=False)

    def forget(self) -> None:
        """The request this thread served is over: read windows from the database again."""
        self._remembered().clear()

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = self.clock()
        params = {"key": key, "amount": amount, "now": now, "end": now + expiry}
        try:
            with self._connect() as connection:
                hits, expires_at = connection.execute(self._upsert, params).one()
                if self.engine.dialect.name != "postgresql":
                    connection.commit()
                self._cleanup(connection, now)
        except SQLAlchemyError:
            # Flask-Limiter lets the request through (swallow_errors) and logs it.
            metrics.RATE_LIMIT_STORAGE_ERRORS.inc()
            raise
        self._remember(key, hits, expires_at)
        return hits

    def _cleanup(self, connection, now: float) -> None:
        if now - self._cleaned_at < CLEANUP_INTERVAL or not self._cleanup_lock.acquire(blocking=False):
            return
        try:
            self._cleaned_at = now
            connection.execute(delete(RateLimitCounter).where(RateLimitCounter.expires_at <= now))
            if self.engine.dialect.name != "postgresql":
                connection.commit()
        finally:
            self._cleanup_lock.release()

    def _window(self, key: str) -> tuple[int, float] | None:
        """(hits, end) of the key's window, live or lapsed; None when there is no row."""
        seen = self._remembered().get(key)
        if seen is not None:
            return seen
        with self._connect() as connection:
            row = connection.execute(
                select(RateLimitCounter.hits, RateLimitCounter.expires_at).where(RateLimitCounter.key == key)
            ).first()
        return None if row is None else (row.hits, row.expires_at)

    def get(self, key: str) -> int:
        window = self._window(key)
        if window is None or window[1] <= self.clock():
            return 0
        return window[0]

    def get_expiry(self, key: str) -> float:
        window = self._window(key)
        now = self.clock()
        return now if window is None or window[1] <= now else window[1]

    def check(self) -> bool:
        try:
            with self._connect() as connection:
                connection.execute(select(1))
            return True
        except SQLAlchemyError:
            return False

    def reset(self) -> int | None:
        self._remembered().clear()
        with self.engine.begin() as connection:
            return connection.execute(delete(RateLimitCounter)).rowcount

    def clear(self, key: str) -> None:
        self._remembered().pop(key, None)
        with self.engine.begin() as connection:
            connection.execute(delete(RateLimitCounter).where(RateLimitCounter.key == key))
