"""Shared fixtures: a database per backend (SQLite file, real PostgreSQL), the fake
Dynadot on loopback, and the app wired to both.

PostgreSQL comes from PDM_TEST_DATABASE_URL (default: the local server on 127.0.0.1:5432,
database ``pdm_test``, created if missing). Without a server the PostgreSQL tests are
skipped with the reason -- unless PDM_REQUIRE_POSTGRES=1 (CI), which makes that a failure.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import replace

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from pdm_app import create_app
from pdm_app.config import Settings, normalise_database_url
from pdm_app.registrar import Record
from pdm_app.registrar.fake_dynadot import FakeDynadot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_URL = normalise_database_url(
    os.environ.get("PDM_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/pdm_test")
)
POOL = "omantel.omani.works"
POOLS = ("omani.works", "omantel.omani.works", "openova.io")
API_KEY = "test-key-" + uuid.uuid4().hex
API_SECRET = "test-secret-" + uuid.uuid4().hex

# What every pool zone holds before a test: records the service must never disturb.
BASE_RECORDS = [
    Record("", "a", "185.53.179.128"),
    Record("", "mx", "mx1.mail.example", "10"),
    Record("", "mx", "mx2.mail.example", "20"),
    Record("", "txt", "v=spf1 include:mail.example ~all"),
    Record("www", "cname", "omani.works"),
    Record("legacy", "a", "203.0.113.9"),
]


def alembic_config(url: str) -> Config:
    cfg = Config(os.path.join(ROOT, "alembic.ini"))
    cfg.set_main_option("script_location", os.path.join(ROOT, "alembic"))
    cfg.attributes["url"] = url
    cfg.attributes["configure_logger"] = False
    return cfg


def ensure_database(pg_url: str) -> str | None:
    """Create the database of ``pg_url`` if missing. None when it is ready, else why not."""
    url = make_url(pg_url)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT",
                          connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": url.database}).scalar()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{url.database}"'))
    except Exception as exc:
        return f"no PostgreSQL at {url.render_as_string(hide_password=True)}: {type(exc).__name__}"
    finally:
        admin.dispose()
    return None


_PG_PROBLEM: list = []


def postgres_problem() -> str | None:
    if not _PG_PROBLEM:
        _PG_PROBLEM.append(ensure_database(PG_URL))
    return _PG_PROBLEM[0]


def require_postgres() -> None:
    problem = postgres_problem()
    if problem:
        if os.environ.get("PDM_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required (PDM_REQUIRE_POSTGRES=1): {problem}")
        pytest.skip(problem)


def reset_schema(url: str) -> None:
    """Drop everything and migrate to head: every run proves the migrations."""
    engine = create_engine(url)
    with engine.begin() as conn:
        for table in inspect(conn).get_table_names():
            conn.execute(text(f'DROP TABLE IF EXISTS "{table}" CASCADE' if engine.dialect.name == "postgresql"
                              else f'DROP TABLE IF EXISTS "{table}"'))
    engine.dispose()
    command.upgrade(alembic_config(url), "head")


TABLES = ("allocation_history", "dns_owned_hosts", "dns_work", "pool_allocations", "pool_zones", "registrar_accounts")


def truncate(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY"))
        else:
            for table in TABLES:
                conn.execute(text(f"DELETE FROM {table}"))
    engine.dispose()


@pytest.fixture(scope="session")
def pg_url() -> str:
    require_postgres()
    reset_schema(PG_URL)
    return PG_URL


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'pdm.sqlite3'}"
    reset_schema(url)
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request) -> str:
    """Each test that takes this runs on both backends."""
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")
    truncate(url)
    return url


@pytest.fixture
def postgres_url(pg_url) -> str:
    """For tests that only mean something on PostgreSQL (races across processes)."""
    truncate(pg_url)
    return pg_url


@pytest.fixture
def fake():
    server = FakeDynadot(api_key=API_KEY).start()
    for pool in POOLS:
        server.seed(pool, list(BASE_RECORDS), ttl=300)
    yield server
    server.stop()


def make_settings(db_url: str, fake: FakeDynadot, **overrides) -> Settings:
    base = Settings(
        database_url=db_url,
        managed_domains=POOLS,
        dynadot_api_url=fake.url,
        dynadot_api_key=API_KEY,
        dynadot_api_secret=API_SECRET,
        dynadot_min_interval=0.0,
        dns_request_budget=3.0,
        reservation_ttl=600.0,
        run_jobs=False,
        auth_enabled=False,  # the drop-in mode; tests/test_auth.py covers tokens
    )
    return replace(base, **overrides)


@pytest.fixture
def settings(db_url, fake) -> Settings:
    return make_settings(db_url, fake)


@pytest.fixture
def app(settings):
    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    pdm = app.extensions["pdm"]
    pdm.jobs.stop()
    pdm.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


def tenant_records(zone, sub: str) -> dict[str, str]:
    """host -> value of the A records the service owns for ``sub``."""
    hosts = {f"{n}.{sub}" for n in ("*", "console", "gitea", "harbor", "admin", "api")}
    return {r.host: r.value for r in zone.records if r.rtype == "a" and r.host in hosts}


def foreign_records(zone, subs) -> list:
    """Every record of the zone that no tenant in ``subs`` owns, in order."""
    owned = {f"{n}.{s}" for s in subs for n in ("*", "console", "gitea", "harbor", "admin", "api")}
    return sorted((r.host, r.rtype, r.value, r.extra) for r in zone.records if not (r.rtype == "a" and r.host in owned))


BASE_FOREIGN = sorted((r.host, r.rtype, r.value, r.extra) for r in BASE_RECORDS)


# -- CI guard: with PDM_REQUIRE_POSTGRES=1 a run that did not pass PostgreSQL tests fails.

_PG_OUTCOMES: list[str] = []


def pytest_runtest_logreport(report):
    if report.when == "call" and ("postgresql" in report.nodeid or "postgres" in report.keywords):
        _PG_OUTCOMES.append(report.outcome)
    elif report.skipped and ("postgresql" in report.nodeid or "postgres" in report.keywords):
        _PG_OUTCOMES.append("skipped")


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("PDM_REQUIRE_POSTGRES") != "1" or session.config.option.collectonly:
        return
    passed = _PG_OUTCOMES.count("passed")
    skipped = _PG_OUTCOMES.count("skipped")
    print(f"\nPostgreSQL tests: {passed} passed, {skipped} skipped")
    if passed == 0 or skipped:
        print("FAIL: PDM_REQUIRE_POSTGRES=1 but PostgreSQL tests were skipped or not run")
        session.exitstatus = 1
