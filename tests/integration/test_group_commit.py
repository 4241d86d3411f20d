"""Group commit: a commit waits for the pass that carries its work, and is woken when a
pass ends -- across processes by PostgreSQL's NOTIFY -- not by polling the lock."""
from __future__ import annotations

import threading
import time

import pytest
from conftest import POOL, tenant_records

LB = "198.51.100.7"


def reserve(client, sub):
    return client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": sub}).get_json()["reservationToken"]


def commit_into(client, sub, token, into):
    into[sub] = client.post(f"/api/v1/pool/{POOL}/commit", json={
        "subdomain": sub, "reservationToken": token, "loadBalancerIP": LB}).status_code


@pytest.mark.postgres
def test_a_commit_in_another_process_is_woken_when_the_pass_ends(app_factory, postgres_url, fake):
    """Two apps (two engines, two listeners: two processes as far as the database can
    tell). A's pass holds the registrar lock, stuck on the registrar; B's commit, queued
    after A's pass read the table, waits. When A's pass ends B must learn of it: with a
    budget of 60 s and no polling, only the notification can make B answer 200 before
    the test gives up on it."""
    first = app_factory(postgres_url, dns_request_budget=60.0)
    second = app_factory(postgres_url, dns_request_budget=60.0)
    waiter = second.extensions["pdm"].publisher.wakeups
    waiter.generation()  # starts B's listener
    deadline = time.monotonic() + 20
    while not waiter._listening.is_set() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert waiter._listening.is_set(), "B's listener did not connect"

    tokens = {"alpha": reserve(first.test_client(), "alpha"), "beta": reserve(second.test_client(), "beta")}
    answers: dict = {}
    fake.hold()
    a = threading.Thread(target=commit_into, args=(first.test_client(), "alpha", tokens["alpha"], answers))
    b = threading.Thread(target=commit_into, args=(second.test_client(), "beta", tokens["beta"], answers))
    try:
        a.start()
        assert fake.wait_held(1, timeout=30)  # A's pass holds the lock, waiting on get_dns
        b.start()
        # B is queued and waiting (its slot taken, the lock busy) while A is held.
        deadline = time.monotonic() + 20
        while second.extensions["pdm"].publisher._request_slots._value != 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        fake.release()
    a.join(30)
    b.join(30)  # far below B's 60 s budget: B was woken, it did not time out
    assert not b.is_alive(), "B was never woken: it waits out its budget"
    assert answers == {"alpha": 200, "beta": 200}
    zone = fake.zone(POOL)
    assert len(tenant_records(zone, "alpha")) == 6 and len(tenant_records(zone, "beta")) == 6
