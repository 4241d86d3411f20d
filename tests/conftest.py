"""Shared fixtures: a database per backend (SQLite file, real PostgreSQL), the fake
Dynadot on loopback, and the app wired to both; for tests/integration and tests/e2e
(tests/unit uses none of them). Importing this module connects nowhere: the fixtures do.
Tests import its helpers by name (``from conftest import ...``): setup.cfg puts tests/ on
the path for every layer.

PostgreSQL comes from PDM_TEST_DATABASE_URL (default: the local server on 127.0.0.1:5432,
database ``pdm_test``, created if missing). Without a server the PostgreSQL tests are
skipped with the reason -- unless PDM_REQUIRE_POSTGRES=1 (CI), which makes that a failure.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import replace

import pytest
import requests
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from pdm_app import create_app
from pdm_app.config import CUSTOMER_REGISTRAR_URL_VARIABLES, Settings, normalise_database_url, parse_ip_ranges
from pdm_app.dns.zone import Record
from pdm_app.models import Base
from pdm_app.testing.fake_dynadot import FakeDynadot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_URL = normalise_database_url(
    os.environ.get("PDM_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/pdm_test")
)
POOL = "omantel.omani.works"
POOLS = ("omani.works", "omantel.omani.works", "openova.io")
API_KEY = "test-key-" + uuid.uuid4().hex
API_SECRET = "test-secret-" + uuid.uuid4().hex

NOWHERE = "http://127.0.0.1:9"  # the discard port: connection refused

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


# Every table the models map: a new one is emptied between tests without a line here.
TABLES = tuple(sorted(table.name for table in Base.metadata.sorted_tables))


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
        auth_enabled=False,  # the drop-in mode; tests/integration/test_auth.py covers tokens
        # The tests' load balancers live in the documentation ranges (RFC 5737).
        lb_ip_allowed_ranges=parse_ip_ranges("192.0.2.0/24 198.51.100.0/24 203.0.113.0/24"),
        # Customers' registrars: never the providers themselves from a test (nothing
        # listens there; tests that need one start its fake).
        customer_registrar_urls={name: NOWHERE for name in CUSTOMER_REGISTRAR_URL_VARIABLES},
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
def app_factory(fake):
    """``make(url, **settings)``: apps on that database and the fake registrar, as many as
    a test needs; all shut down after it."""
    apps = []

    def make(url: str, **overrides):
        made = create_app(make_settings(url, fake, **overrides))
        made.config["TESTING"] = True
        apps.append(made)
        return made

    yield make
    for made in apps:
        made.extensions["pdm"].jobs.stop()
        made.extensions["pdm"].engine.dispose()


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


def terminate_lock_session(postgres_url: str, name: str) -> list:
    """End the database session holding the advisory lock ``name`` (a failover, a network
    drop, pg_terminate_backend): the lock dies with it. pg_terminate_backend's answers."""
    from pdm_app.locks import advisory_key

    key = advisory_key(name) & 0xFFFFFFFFFFFFFFFF
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            return conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid = :hi AND objid = :lo "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
                {"hi": key >> 32, "lo": key & 0xFFFFFFFF}).scalars().all()
    finally:
        admin.dispose()


class BreaksOnePool:
    """The Dynadot client, except that reading ``pool``'s zone raises ``exc``: what a
    parse bug in the client, or an answer it never expected, looks like to the pass."""

    def __init__(self, inner, pool: str, exc: Exception):
        self.inner, self.pool, self.exc = inner, pool, exc

    def get_zone(self, domain, **kwargs):
        if domain == self.pool:
            raise self.exc
        return self.inner.get_zone(domain, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def break_pool(app, pool, exc):
    """From now on every pass (and drift read) of ``pool`` raises ``exc``; ``mend`` undoes it."""
    zones = app.extensions["pdm"].publisher.backend(pool)
    zones.registrar = BreaksOnePool(zones.registrar, pool, exc)


def mend(app, pool):
    zones = app.extensions["pdm"].publisher.backend(pool)
    zones.registrar = zones.registrar.inner


# -- CI guard: with PDM_REQUIRE_POSTGRES=1 a run that did not pass PostgreSQL tests fails.

_PG_OUTCOMES: list[str] = []


def pytest_runtest_logreport(report):
    if report.when == "call" and ("postgresql" in report.nodeid or "postgres" in report.keywords):
        _PG_OUTCOMES.append(report.outcome)
    elif report.skipped and ("postgresql" in report.nodeid or "postgres" in report.keywords):
        _PG_OUTCOMES.append("skipped")


def layers_run(session) -> set[str]:
    """The layers (tests/unit, integration, e2e) this run holds tests of: the guards below
    require PostgreSQL of a run with integration or e2e tests, PowerDNS of one with e2e
    tests (the unit layer needs neither). An empty run is held to both, as before."""
    if not session.items:
        return {"integration", "e2e"}
    return {item.path.relative_to(ROOT, "tests").parts[0] for item in session.items}


def pytest_sessionfinish(session, exitstatus):
    if (os.environ.get("PDM_REQUIRE_POSTGRES") != "1" or session.config.option.collectonly
            or not layers_run(session) & {"integration", "e2e"}):
        return
    passed = _PG_OUTCOMES.count("passed")
    skipped = _PG_OUTCOMES.count("skipped")
    print(f"\nPostgreSQL tests: {passed} passed, {skipped} skipped")
    if passed == 0 or skipped:
        print("FAIL: PDM_REQUIRE_POSTGRES=1 but PostgreSQL tests were skipped or not run")
        session.exitstatus = 1


# -- the service as it runs in production: gunicorn with the shipped gunicorn.conf.py ---


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    """``gunicorn -c gunicorn.conf.py wsgi:app`` in a process group of its own, against a
    database and the fake registrar; its output goes to ``log_path`` (or nowhere).
    ``start()``/``stop()``/``kill()``, or ``with Gunicorn(...) as server:``."""

    def __init__(self, db_url, fake, log_path=None, **env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {
            # The service's own settings come from here only; metrics get a folder each.
            **{k: v for k, v in os.environ.items()
               if not k.startswith(("PDM_", "DYNADOT_", "GUNICORN_")) and k != "PROMETHEUS_MULTIPROC_DIR"},
            "PORT": str(self.port),
            "PDM_DATABASE_URL": db_url,
            "DYNADOT_API_URL": fake.url,
            "DYNADOT_API_KEY": API_KEY,
            "DYNADOT_MANAGED_DOMAINS": ",".join(POOLS),
            "DYNADOT_MIN_INTERVAL": "0s",
            "PDM_DNS_RETRY_INTERVAL": "1s",
            "PDM_SWEEPER_INTERVAL": "1s",
            "GUNICORN_WORKERS": "2",
            "PDM_AUTH": "disabled",
            "PDM_LB_IP_ALLOWED_RANGES": "192.0.2.0/24,198.51.100.0/24,203.0.113.0/24",  # RFC 5737
            **{variable: NOWHERE for variable in CUSTOMER_REGISTRAR_URL_VARIABLES.values()},
            **env,
        }
        self.proc = None

    def start(self) -> "Gunicorn":
        self.log = open(self.log_path or os.devnull, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"gunicorn exited:\n{self.output()}")
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"gunicorn did not come up:\n{self.output()}")

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def __enter__(self) -> "Gunicorn":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def output(self) -> str:
        if not self.log_path:
            return "(output not kept)"
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()


# == PowerDNS ==================================================================================
# A throwaway PowerDNS (pdm_app.testing.local_powerdns) for the tests marked `powerdns`:
# `powerdns_server` (one per session), `powerdns` (that server, running, with no zones) and
# `powerdns_proxy` (a powerdns_support.FaultProxy in front of it). Without pdns_server
# those tests are skipped -- unless PDM_REQUIRE_POWERDNS=1 (CI), which makes that a failure.


def _powerdns_required() -> bool:
    return os.environ.get("PDM_REQUIRE_POWERDNS") == "1"


@pytest.fixture(scope="session")
def powerdns_server(tmp_path_factory):
    from pdm_app.testing.local_powerdns import LocalPowerDns

    ok, why = LocalPowerDns.available()
    if not ok:
        if _powerdns_required():
            pytest.fail(f"PowerDNS is required (PDM_REQUIRE_POWERDNS=1): {why}")
        pytest.skip(why)
    server = LocalPowerDns(tmp_path_factory.mktemp("powerdns")).start()
    yield server
    server.stop()


def delete_every_zone(server) -> None:
    """Through the API, as a client would (the database file stays the server's)."""
    headers = {"X-API-Key": server.api_key}
    answer = requests.get(f"{server.server_url}/zones", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    for zone in answer.json():
        gone = requests.delete(f"{server.server_url}/zones/{zone['id']}", headers=headers, timeout=10)
        assert gone.status_code in (204, 404), gone.text


@pytest.fixture
def powerdns(powerdns_server):
    """The session's PowerDNS, running (started again if a test left it stopped), empty."""
    if not powerdns_server.running:
        powerdns_server.start()
    delete_every_zone(powerdns_server)
    return powerdns_server


@pytest.fixture
def powerdns_proxy(powerdns):
    """A FaultProxy in front of ``powerdns``: point the client at ``powerdns_proxy.url``."""
    from powerdns_support import FaultProxy

    proxy = FaultProxy(powerdns.api_url).start()
    yield proxy
    proxy.clear_faults()
    proxy.stop()


class RequiredTests:
    """Tests that need something installed (PowerDNS, the browser): every test using
    ``fixture`` gets the ``marker``; with ``env``=1 (CI) a run of the e2e layer whose such
    tests were skipped or not run fails. A plugin object, so that these hooks do not
    replace the module-level ones above (the PostgreSQL guard)."""

    def __init__(self, marker: str, fixture: str, env: str, what: str) -> None:
        self.marker, self.fixture, self.env, self.what = marker, fixture, env, what
        self.outcomes: list[str] = []

    def pytest_collection_modifyitems(self, items):
        for item in items:
            if self.fixture in getattr(item, "fixturenames", ()):
                item.add_marker(getattr(pytest.mark, self.marker))

    def pytest_runtest_logreport(self, report):
        if self.marker not in report.keywords:
            return
        if report.when == "call":
            self.outcomes.append(report.outcome)
        elif report.skipped:
            self.outcomes.append("skipped")

    def pytest_sessionfinish(self, session, exitstatus):
        if (os.environ.get(self.env) != "1" or session.config.option.collectonly
                or "e2e" not in layers_run(session)):
            return
        passed = self.outcomes.count("passed")
        skipped = self.outcomes.count("skipped")
        print(f"\n{self.what} tests: {passed} passed, {skipped} skipped")
        if passed == 0 or skipped:
            print(f"FAIL: {self.env}=1 but {self.what} tests were skipped or not run")
            session.exitstatus = 1


# The chart's alerts are proven with Debian's Prometheus (tests/e2e/test_alerts.py): the
# tests marked `prometheus` take ``prometheus_tools``; without prometheus and promtool they
# are skipped -- unless PDM_REQUIRE_PROMETHEUS=1 (CI), which makes that a failure.
PROMETHEUS_INSTALL = "apt-get install --no-install-recommends prometheus"


@pytest.fixture(scope="session")
def prometheus_tools() -> dict[str, str]:
    """``{"prometheus": path, "promtool": path}``: Debian's binaries."""
    found = {name: os.path.join("/usr/bin", name) for name in ("prometheus", "promtool")}
    missing = [name for name, path in found.items() if not os.access(path, os.X_OK)]
    if missing:
        why = f"no {' or '.join(missing)} in /usr/bin: {PROMETHEUS_INSTALL}"
        if os.environ.get("PDM_REQUIRE_PROMETHEUS") == "1":
            pytest.fail(f"Prometheus is required (PDM_REQUIRE_PROMETHEUS=1): {why}")
        pytest.skip(why)
    return found


def pytest_configure(config):
    config.addinivalue_line("markers", "powerdns: needs the local PowerDNS server (pdns_server, gsqlite3)")
    config.addinivalue_line("markers", "browser: drives the console in Debian's headless chromium")
    config.addinivalue_line("markers", "prometheus: needs Debian's prometheus and promtool")
    config.pluginmanager.register(RequiredTests("powerdns", "powerdns_server", "PDM_REQUIRE_POWERDNS", "PowerDNS"),
                                  "pdm-powerdns")
    # The browser's fixture, ``chrome``, is browser_support's.
    config.pluginmanager.register(RequiredTests("browser", "chrome", "PDM_REQUIRE_BROWSER", "Browser"), "pdm-browser")
    config.pluginmanager.register(RequiredTests("prometheus", "prometheus_tools", "PDM_REQUIRE_PROMETHEUS",
                                                "Prometheus"), "pdm-prometheus")
# == end of PowerDNS ===========================================================================
