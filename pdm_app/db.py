"""Engine and session factory for PostgreSQL (psycopg 3) and the embedded SQLite."""
from __future__ import annotations

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

# Connections a serving process needs beyond one per request thread: the jobs leader's
# lock (held for as long as it leads), the registrar lock (one pass at a time holds it,
# beside that pass's own session), and the background jobs' sessions (sweeper, DNS retry
# pass, history pruning).
EXTRA_CONNECTIONS = 4
MAX_OVERFLOW = 2
# With a pool sized for every thread, waiting for a connection means something is stuck:
# answer 503 after this long instead of queueing the request.
POOL_TIMEOUT = 3.0
# No statement of the service runs long (locks are taken with pg_try_advisory_lock and
# polled): one that does is stuck, and must not hold a worker thread for ever.
STATEMENT_TIMEOUT = 10.0


def pool_size(threads: int) -> int:
    return threads + EXTRA_CONNECTIONS


def make_engine(url: str, *, threads: int | None = None, **kwargs) -> Engine:
    """An engine for ``url``. With ``threads`` (the request threads of one process, what
    gunicorn runs) it is the service's own: a pool of ``threads`` + a few connections, a
    short wait for one (``POOL_TIMEOUT``) and, on PostgreSQL, ``STATEMENT_TIMEOUT`` on
    every statement. Without (migrations, one-off tools): SQLAlchemy's pool defaults and
    no statement timeout."""
    if threads is not None and _pooled(url):
        kwargs.setdefault("pool_size", pool_size(threads))
        kwargs.setdefault("max_overflow", MAX_OVERFLOW)
        kwargs.setdefault("pool_timeout", POOL_TIMEOUT)
    if url.startswith("sqlite"):
        engine = create_engine(url, **kwargs)
        _make_sqlite_serialisable(engine)
        return engine
    # The service's own engine (``threads``) does not ping each connection it checks out
    # (a round trip per request, a quarter of /check's time): a connection found dead is
    # invalidated with the rest of the pool, and a read that met one is tried once more
    # (services.lifecycle.Lifecycle.check). Tools keep the ping.
    kwargs.setdefault("pool_pre_ping", threads is None)
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 10)
    # A dead database should fail a request quickly, not hang it.
    connect_args = {"connect_timeout": 5}
    if threads is not None:
        # Added to the URL's own ?options= (connect_args would replace them).
        given = make_url(url).query.get("options") or ""
        given = " ".join(given) if isinstance(given, tuple) else given
        connect_args["options"] = f"{given} -c statement_timeout={int(STATEMENT_TIMEOUT * 1000)}".strip()
    kwargs.setdefault("connect_args", connect_args)
    return create_engine(url, **kwargs)


def _pooled(url: str) -> bool:
    """Whether SQLAlchemy gives ``url`` a sized queue pool (not an in-memory SQLite)."""
    parsed = make_url(url)
    return not (parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"))


def _make_sqlite_serialisable(engine: Engine) -> None:
    """SQLite has no SELECT ... FOR UPDATE; taking the database write lock at BEGIN
    (BEGIN IMMEDIATE) gives every transaction the same exclusion instead."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # let us issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_session_factory(engine: Engine, outbox=None) -> sessionmaker:
    """``outbox``: what turns a transaction's history events into its webhook messages
    (``webhooks.events.Outbox``; None: no webhooks), kept in every session's ``info``."""
    return sessionmaker(bind=engine, expire_on_commit=False, info={"outbox": outbox})
