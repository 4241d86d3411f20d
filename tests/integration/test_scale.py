"""A backlog of any size, a pool of any size: the sweeper works in short batches, the
list pages, and /check survives a database that dropped its pooled connections."""
from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from conftest import POOL
from sqlalchemy import create_engine, text

from pdm_app.domain import utcnow
from pdm_app.services import lifecycle

LB = "198.51.100.7"


def insert_reservations(url: str, count: int, *, lapsed: bool, prefix: str = "old") -> None:
    now = utcnow()
    when = now - timedelta(minutes=1) if lapsed else now + timedelta(hours=1)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO pool_allocations (pool_domain, subdomain, state, reserved_at, expires_at, reservation_token, "
            "created_by, updated_at) VALUES (:p, :s, 'reserved', :r, :e, :t, 'bench', :r)"),
            [{"p": POOL, "s": f"{prefix}{i:05d}", "r": now.replace(tzinfo=None) if url.startswith("sqlite") else now,
              "e": when.replace(tzinfo=None) if url.startswith("sqlite") else when, "t": "0" * 64}
             for i in range(count)])
    engine.dispose()


def test_the_sweeper_works_in_batches_and_keeps_live_names(app, client, db_url, monkeypatch, caplog):
    monkeypatch.setattr(lifecycle, "SWEEP_BATCH", 100)
    insert_reservations(db_url, 1234, lapsed=True)
    insert_reservations(db_url, 3, lapsed=False, prefix="live")
    token = client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "acme"}).get_json()["reservationToken"]
    assert client.post(f"/api/v1/pool/{POOL}/commit", json={
        "subdomain": "acme", "reservationToken": token, "loadBalancerIP": LB}).status_code == 200

    caplog.set_level(logging.INFO, logger="pdm_app.services.lifecycle")
    assert app.extensions["pdm"].lifecycle.sweep() == 1234
    batches = [r for r in caplog.records if r.getMessage().startswith("swept ")]
    assert len(batches) == 13  # 12 full batches and one of 34: each its own short transaction

    listed = client.get(f"/api/v1/pool/{POOL}/list").get_json()["allocations"]
    assert sorted(a["subdomain"] for a in listed) == ["acme", "live00000", "live00001", "live00002"]
    history = client.get(f"/api/v1/pool/{POOL}/history?limit=1000").get_json()["events"]
    assert sum(1 for e in history if e["action"] == "expire" and e["caller"] == "sweeper") == 1000  # one page
    assert app.extensions["pdm"].lifecycle.sweep() == 0


def test_the_list_pages_with_limit_and_after(client, db_url):
    insert_reservations(db_url, 25, lapsed=False, prefix="t")
    whole = client.get(f"/api/v1/pool/{POOL}/list").get_json()
    assert "nextAfter" not in whole  # the contract's answer, unchanged
    seen, after, pages = [], None, 0
    while True:
        query = "limit=10" + (f"&after={after}" if after else "")
        page = client.get(f"/api/v1/pool/{POOL}/list?{query}").get_json()
        pages += 1
        seen += [a["subdomain"] for a in page["allocations"]]
        after = page["nextAfter"]
        if after is None:
            break
    assert pages == 3 and seen == [a["subdomain"] for a in whole["allocations"]]
    for bad in ("limit=0", "limit=1001", "limit=x", "after=" + "a" * 64):
        answer = client.get(f"/api/v1/pool/{POOL}/list?{bad}")
        assert answer.status_code == 400 and answer.get_json()["error"], bad


@pytest.mark.postgres
def test_check_survives_the_database_closing_its_pooled_connections(app_factory, postgres_url):
    """Pooled connections are not pinged before use (a round trip per request): a read
    that meets one the server closed is tried once more on a fresh one."""
    client = app_factory(postgres_url, gunicorn_threads=8).test_client()
    for _ in range(3):
        assert client.get(f"/api/v1/pool/{POOL}/check?sub=acme").status_code == 200
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        killed = conn.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
    admin.dispose()
    assert killed >= 1
    answer = client.get(f"/api/v1/pool/{POOL}/check?sub=acme")
    assert answer.status_code == 200 and answer.get_json()["available"] is True
