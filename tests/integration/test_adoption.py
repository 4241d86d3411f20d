"""Adopting the previous service's database: ``alembic upgrade head`` on a database that
holds its ``pool_allocations`` table (made at start-up, no ``alembic_version``) converts
it in place, and the service then serves every row as the previous one did.

Each test gets a database of its own (``<PDM_TEST_DATABASE_URL's database>_adopt``),
created empty and dropped afterwards, so the session's shared database is not touched.
"""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from conftest import (
    BASE_FOREIGN,
    BASE_RECORDS,
    PG_URL,
    alembic_config,
    foreign_records,
    require_postgres,
    tenant_records,
)
from pdm_app.domain import token_digest
from pdm_app.models import Base
from pdm_app.dns.zone import Record

# The previous service's schema, as it created it at start-up (wire contract, "The old
# service's table").
PREVIOUS_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS pool_allocations (
        pool_domain       TEXT NOT NULL,
        subdomain         TEXT NOT NULL,
        state             TEXT CHECK (state IN ('reserved', 'active')),
        reserved_at       TIMESTAMPTZ NOT NULL,
        expires_at        TIMESTAMPTZ,
        sovereign_fqdn    TEXT,
        load_balancer_ip  TEXT,
        reservation_token UUID,
        created_by        TEXT NOT NULL,
        PRIMARY KEY (pool_domain, subdomain)
    )""",
    "CREATE INDEX IF NOT EXISTS pool_allocations_expires_idx ON pool_allocations (expires_at) "
    "WHERE state = 'reserved'",
    "CREATE INDEX IF NOT EXISTS pool_allocations_state_idx ON pool_allocations (pool_domain, state)",
]

POOL = "omantel.omani.works"
OTHER_POOL = "omani.works"
# When this module is imported (collection): the live reservation below must outlast a
# whole suite's run before this test is reached, so it lasts hours, not minutes.
NOW = datetime.now(timezone.utc).replace(microsecond=0)
LIVE_TOKEN = uuid.UUID("6f1c2d3e-4a5b-4c6d-8e7f-90a1b2c3d4e5")  # what the wizard holds
LAPSED_TOKEN = uuid.uuid4()
ACME_TOKEN = uuid.uuid4()

# (pool, sub, state, reserved_at, expires_at, sovereign_fqdn, lb ip, token, created_by).
# Public addresses: a commit (and a commit's retry) takes no other kind.
ROWS = [
    (POOL, "live", "reserved", NOW - timedelta(minutes=3), NOW + timedelta(hours=6), None, None, LIVE_TOKEN,
     "catalyst-api"),
    (POOL, "lapsed", "reserved", NOW - timedelta(hours=2), NOW - timedelta(hours=1), None, None, LAPSED_TOKEN,
     "crossplane"),
    # The previous service kept the token of an active row, or cleared it: both occur.
    (POOL, "acme", "active", NOW - timedelta(days=30), None, "acme.omantel.omani.works", "5.75.128.7",
     ACME_TOKEN, "catalyst-api"),
    (POOL, "beta", "active", NOW - timedelta(days=20), None, "console.beta.example", "5.75.128.8", None,
     "crossplane"),
    (OTHER_POOL, "gamma", "active", NOW - timedelta(days=10), None, "gamma.omani.works", "5.75.128.9", None,
     "catalyst-api"),
]
ACTIVE = {(pool, sub): ip for pool, sub, state, _, _, _, ip, _, _ in ROWS if state == "active"}
SIX = ("*", "console", "gitea", "harbor", "admin", "api")


def _admin():
    return create_engine(make_url(PG_URL).set(database="postgres"), isolation_level="AUTOCOMMIT")


@pytest.fixture
def adopt_url():
    """An empty PostgreSQL database of the test's own; dropped afterwards."""
    require_postgres()
    url = make_url(PG_URL)
    url = url.set(database=f"{url.database}_adopt")
    admin = _admin()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{url.database}"'))
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    admin.dispose()


def create_previous_table(url: str, rows=ROWS) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        assert inspect(conn).get_table_names() == []
        for statement in PREVIOUS_SCHEMA:
            conn.execute(text(statement))
        for row in rows:
            conn.execute(text(
                "INSERT INTO pool_allocations (pool_domain, subdomain, state, reserved_at, expires_at, "
                "sovereign_fqdn, load_balancer_ip, reservation_token, created_by) "
                "VALUES (:p, :s, :st, :r, :e, :f, :ip, :t, :c)"),
                dict(zip(("p", "s", "st", "r", "e", "f", "ip", "t", "c"), row)))
    engine.dispose()


def query(url: str, sql: str, **params) -> list:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text(sql), params).all()
    engine.dispose()
    return rows


def upgrade(url: str, caplog) -> str:
    """``alembic upgrade head``; returns what the adoption logged."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="alembic.adopt"):
        command.upgrade(alembic_config(url), "head")
    return " ".join(r.getMessage() for r in caplog.records if r.name == "alembic.adopt")


def schema_diff(url: str) -> list:
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    return diff


def table_definition(url: str) -> dict:
    """pool_allocations as PostgreSQL has it: columns, constraints, index definitions."""
    columns = query(url, "SELECT column_name, data_type, character_maximum_length, is_nullable, column_default "
                         "FROM information_schema.columns WHERE table_name = 'pool_allocations'")
    constraints = query(url, "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                             "WHERE conrelid = 'pool_allocations'::regclass")
    indexes = query(url, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'pool_allocations'")
    return {"columns": sorted(map(tuple, columns)), "constraints": sorted(map(tuple, constraints)),
            "indexes": sorted(map(tuple, indexes))}


def head() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def check(client, pool, sub):
    response = client.get(f"/api/v1/pool/{pool}/check", query_string={"sub": sub})
    assert response.status_code == 200
    return response.get_json()


def commit(client, pool, sub, token, ip, fqdn=None):
    return client.post(f"/api/v1/pool/{pool}/commit", json={
        "subdomain": sub, "reservationToken": token, "sovereignFQDN": fqdn or f"{sub}.{pool}",
        "loadBalancerIP": ip})


# -- the switch-over ---------------------------------------------------------------------

@pytest.mark.postgres
def test_adoption_keeps_every_row_and_serves_it(adopt_url, fake, app_factory, caplog, pg_url):
    # The previous service published records in a wrong shape, or none: acme has one
    # record at a wrong address and one missing the rest; beta and gamma have none.
    fake.seed(POOL, list(BASE_RECORDS) + [Record("*.acme", "a", "203.0.113.50"),
                                          Record("console.acme", "a", "5.75.128.7")], ttl=300)
    create_previous_table(adopt_url)

    logged = upgrade(adopt_url, caplog)

    # The counts the switch-over reports.
    rows = query(adopt_url, "SELECT pool_domain, subdomain, state, reserved_at, expires_at, sovereign_fqdn, "
                            "load_balancer_ip, reservation_token, created_by, updated_at FROM pool_allocations")
    work = query(adopt_url, "SELECT pool_domain, subdomain, action, attempts FROM dns_work ORDER BY id")
    converted = [r for r in rows if r.reservation_token]
    print(f"\nadopted {len(rows)} rows, converted {len(converted)} tokens, queued {len(work)} publish work")
    assert (len(rows), len(converted), len(work)) == (5, 3, 3)
    assert ("5 row(s) (3 active, 2 reserved), 3 reservation token(s) converted to their digest, "
            "3 publish work item(s) queued") in logged
    assert query(adopt_url, "SELECT version_num FROM alembic_version") == [(head(),)]

    # Every row kept as it was; tokens are the digest of the string the client holds.
    by_key = {(r.pool_domain, r.subdomain): r for r in rows}
    for pool, sub, state, reserved_at, expires_at, fqdn, ip, token, created_by in ROWS:
        row = by_key[(pool, sub)]
        assert (row.state, row.reserved_at, row.expires_at, row.sovereign_fqdn, row.load_balancer_ip,
                row.created_by) == (state, reserved_at, expires_at, fqdn, ip, created_by)
        assert row.reservation_token == (token_digest(str(token)) if token else "")
        assert row.updated_at is not None
    assert sorted(work) == sorted((pool, sub, "publish", 0) for pool, sub in ACTIVE)

    # The schema is the one a fresh database gets: the models agree, and the table's
    # columns, constraint and index names and definitions are those of a fresh migration.
    assert schema_diff(adopt_url) == []
    assert table_definition(adopt_url) == table_definition(pg_url)

    client = app_factory(adopt_url).test_client()
    pdm = client.application.extensions["pdm"]

    listed = {}
    for pool in (POOL, OTHER_POOL):
        response = client.get(f"/api/v1/pool/{pool}/list")
        assert response.status_code == 200
        listed.update({(pool, a["subdomain"]): a for a in response.get_json()["allocations"]})
    assert set(listed) == {(pool, sub) for pool, sub, *_ in ROWS}
    for pool, sub, state, _, _, fqdn, ip, _, created_by in ROWS:
        entry = listed[(pool, sub)]
        assert (entry["state"], entry["createdBy"], entry.get("sovereignFQDN"), entry.get("loadBalancerIP")) == (
            state, created_by, fqdn, ip)
        assert "reservationToken" not in entry

    assert check(client, POOL, "live")["reason"] == "reserved-state"
    for pool, sub in ACTIVE:
        assert check(client, pool, sub)["reason"] == "active-state"
    assert check(client, POOL, "lapsed") == {"available": True, "fqdn": f"lapsed.{POOL}"}

    response = client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "acme"})
    assert response.status_code == 409 and response.get_json()["error"] == "conflict"

    # The job leader's next DNS pass (one per pool): every adopted tenant's records,
    # exactly, whatever shape the previous service left them in; nothing else touched.
    assert pdm.jobs.retry_dns() == 3
    assert query(adopt_url, "SELECT count(*) FROM dns_work") == [(0,)]
    for (pool, sub), ip in ACTIVE.items():
        assert tenant_records(fake.zone(pool), sub) == {f"{n}.{sub}": ip for n in SIX}, (pool, sub)
    assert foreign_records(fake.zone(POOL), ("acme", "beta")) == BASE_FOREIGN
    assert foreign_records(fake.zone(OTHER_POOL), ("gamma",)) == BASE_FOREIGN
    history = client.get(f"/api/v1/pool/{OTHER_POOL}/history", query_string={"sub": "gamma"}).get_json()
    assert [e["action"] for e in history["events"]] == ["dns-published"]

    # The reservation made minutes before the switch commits with the token the wizard
    # got from the previous service; a wrong one is still refused.
    assert commit(client, POOL, "live", str(uuid.uuid4()), "5.75.128.10").status_code == 403
    response = commit(client, POOL, "live", str(LIVE_TOKEN), "5.75.128.10")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["state"] == "active"
    assert tenant_records(fake.zone(POOL), "live") == {f"{n}.live": "5.75.128.10" for n in SIX}
    # An adopted active tenant whose token was kept: repeating its commit is a retry.
    assert commit(client, POOL, "acme", str(ACME_TOKEN), "5.75.128.7").status_code == 200
    assert foreign_records(fake.zone(POOL), ("live", "acme", "beta")) == BASE_FOREIGN

    # The sweeper deletes the lapsed reservation; release frees an adopted tenant and its records.
    assert pdm.jobs.sweep() == 1
    response = client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "lapsed"})
    assert response.status_code == 201
    response = client.delete(f"/api/v1/pool/{POOL}/release", json={"subdomain": "beta"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["freed"]["loadBalancerIP"] == "5.75.128.8"
    assert tenant_records(fake.zone(POOL), "beta") == {}
    assert check(client, POOL, "beta")["available"] is True
    assert foreign_records(fake.zone(POOL), ("live", "acme")) == BASE_FOREIGN


@pytest.mark.postgres
def test_running_the_migration_again_changes_nothing(adopt_url, caplog):
    create_previous_table(adopt_url)
    upgrade(adopt_url, caplog)
    snapshot = (query(adopt_url, "SELECT * FROM pool_allocations ORDER BY 1, 2"),
                query(adopt_url, "SELECT * FROM dns_work ORDER BY id"))

    assert upgrade(adopt_url, caplog) == ""

    assert (query(adopt_url, "SELECT * FROM pool_allocations ORDER BY 1, 2"),
            query(adopt_url, "SELECT * FROM dns_work ORDER BY id")) == snapshot
    assert query(adopt_url, "SELECT version_num FROM alembic_version") == [(head(),)]


@pytest.mark.postgres
def test_an_empty_previous_table_is_adopted(adopt_url, fake, app_factory, caplog, pg_url):
    create_previous_table(adopt_url, rows=[])

    logged = upgrade(adopt_url, caplog)

    assert "0 row(s) (0 active, 0 reserved), 0 reservation token(s) converted to their digest, " \
           "0 publish work item(s) queued" in logged
    assert query(adopt_url, "SELECT count(*) FROM dns_work") == [(0,)]
    assert schema_diff(adopt_url) == []
    assert table_definition(adopt_url) == table_definition(pg_url)
    client = app_factory(adopt_url).test_client()
    response = client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "delta"})
    assert response.status_code == 201
    response = commit(client, POOL, "delta", response.get_json()["reservationToken"], "5.75.128.11")
    assert response.status_code == 200


@pytest.mark.postgres
def test_downgrade_refuses_to_drop_adopted_rows(adopt_url, caplog):
    create_previous_table(adopt_url)
    upgrade(adopt_url, caplog)

    with pytest.raises(RuntimeError, match=r"refusing to downgrade below 0001: pool_allocations holds 5 "):
        command.downgrade(alembic_config(adopt_url), "base")

    # Nothing changed (PostgreSQL's DDL is transactional): still at head, every row there.
    assert query(adopt_url, "SELECT version_num FROM alembic_version") == [(head(),)]
    assert query(adopt_url, "SELECT count(*) FROM pool_allocations") == [(5,)]
    assert schema_diff(adopt_url) == []

    # Once the allocations are gone (released), the downgrade goes through.
    engine = create_engine(adopt_url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM pool_allocations"))
    engine.dispose()
    command.downgrade(alembic_config(adopt_url), "base")
    engine = create_engine(adopt_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


# -- what is not the previous service's table is refused, untouched ---------------------

def _refused(url: str, match: str) -> None:
    before = query(url, "SELECT * FROM pool_allocations ORDER BY 1, 2")
    with pytest.raises(RuntimeError, match=match):
        command.upgrade(alembic_config(url), "head")
    assert query(url, "SELECT * FROM pool_allocations ORDER BY 1, 2") == before
    engine = create_engine(url)
    assert set(inspect(engine).get_table_names()) <= {"pool_allocations", "alembic_version"}
    engine.dispose()


@pytest.mark.postgres
def test_an_active_row_without_an_address_is_refused(adopt_url):
    create_previous_table(adopt_url, rows=ROWS + [
        (POOL, "noip", "active", NOW, None, None, None, None, "catalyst-api"),
        (POOL, "v6", "active", NOW, None, None, "2001:db8::1", None, "catalyst-api"),
    ])
    _refused(adopt_url, r"omantel\.omani\.works/noip: active with load_balancer_ip None.*"
                        r"omantel\.omani\.works/v6: active with load_balancer_ip '2001:db8::1'")


@pytest.mark.postgres
def test_this_services_own_table_is_not_taken_for_the_previous_one(adopt_url):
    # A restore that lost alembic_version: the tokens are digests already and must not be
    # hashed again.
    engine = create_engine(adopt_url)
    with engine.begin() as conn:
        conn.execute(text(
            "CREATE TABLE pool_allocations (pool_domain TEXT, subdomain TEXT, state TEXT NOT NULL, "
            "reserved_at TIMESTAMPTZ NOT NULL, expires_at TIMESTAMPTZ, reservation_token VARCHAR(64) NOT NULL, "
            "sovereign_fqdn TEXT, load_balancer_ip TEXT, created_by TEXT NOT NULL, "
            "updated_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (pool_domain, subdomain))"))
        conn.execute(text("INSERT INTO pool_allocations VALUES ('omani.works', 'acme', 'active', now(), NULL, "
                          ":t, NULL, '5.75.128.7', 'catalyst-api', now())"), {"t": token_digest("x")})
    engine.dispose()
    _refused(adopt_url, r"the table is not the previous service's.*alembic stamp")


def test_sqlite_does_not_adopt(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE pool_allocations (pool_domain TEXT, subdomain TEXT, "
                          "PRIMARY KEY (pool_domain, subdomain))"))
    engine.dispose()
    with pytest.raises(RuntimeError, match="supported on PostgreSQL only"):
        command.upgrade(alembic_config(url), "head")
