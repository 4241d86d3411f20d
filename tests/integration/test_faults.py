"""Registrar faults: every failure answers the documented 202 (or never writes a bad
zone), leaves the work pending, and converges once the registrar recovers."""
from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import timedelta

import pytest

from conftest import API_KEY, API_SECRET, BASE_FOREIGN, BASE_RECORDS, POOL, foreign_records, make_settings, tenant_records
from pdm_app import create_app
from pdm_app.domain import utcnow
from pdm_app.dns.zone import Record

LB = "198.51.100.7"
FAULTS = ["http500", "timeout", "badjson", "error", "throttle", "reset"]


@pytest.fixture
def fast_app(db_url, fake):
    fake.hang_seconds = 30  # a registrar that never answers in time
    app = create_app(make_settings(db_url, fake, dns_request_budget=1.5))
    yield app
    app.extensions["pdm"].engine.dispose()


def reserve_commit(client, sub, ip=LB):
    token = client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": sub}).get_json()["reservationToken"]
    return client.post(f"/api/v1/pool/{POOL}/commit",
                       json={"subdomain": sub, "reservationToken": token, "loadBalancerIP": ip})


def pending(client):
    return client.get(f"/api/v1/pool/{POOL}/list").get_json()["pendingDns"]


def recover(app):
    """The registrar is back (and any throttle pause it asked for is over): one pass."""
    publisher = app.extensions["pdm"].publisher
    with publisher.uow() as tx:
        tx.update_registrar_account(publisher.default.account, paused_until=None)
    assert publisher.publish(POOL, [], budget=None)


@pytest.mark.parametrize("fault", FAULTS + ["refused"])
def test_commit_and_release_survive_a_registrar_fault(fast_app, fake, fault):
    client = fast_app.test_client()
    if fault == "refused":
        fake.stop()
    else:
        fake.inject(fault, times=100)
    response = reserve_commit(client, "acme")
    if fault == "timeout":
        # A hung registrar costs the client its request budget (1.5 s), not the hang
        # (30 s): the answer is back while the fake still holds the request.
        assert fake.in_flight >= 1
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["warning"] and "retried" in body["detail"]
    assert {body["poolDomain"], body["subdomain"], body["state"], body["loadBalancerIP"]} == {POOL, "acme", "active", LB}
    work = pending(client)
    assert [(w["subdomain"], w["action"]) for w in work] == [("acme", "publish")]
    # A throttle answer pauses the key: the commit's own pass is then not attempted.
    assert work[0]["attempts"] == (0 if fault == "throttle" else 1) and work[0]["lastError"]
    listed = client.get(f"/api/v1/pool/{POOL}/list").get_json()["allocations"]
    assert listed[0]["dnsPending"] is True
    if fault == "refused":
        fake.start()
    else:
        assert tenant_records(fake.zone(POOL), "acme") == {}
        fake.clear_faults()
    recover(fast_app)
    zone = fake.zone(POOL)
    assert len(tenant_records(zone, "acme")) == 6
    assert foreign_records(zone, ["acme"]) == BASE_FOREIGN
    assert pending(client) == []

    # and the other way round: a release during the fault, done once it passes
    if fault == "refused":
        fake.stop()
    else:
        fake.inject(fault, times=100)
    response = client.delete(f"/api/v1/pool/{POOL}/release", json={"subdomain": "acme"})
    assert response.status_code == 202
    assert response.get_json()["freed"]["subdomain"] == "acme" and response.get_json()["warning"]
    assert [(w["subdomain"], w["action"]) for w in pending(client)] == [("acme", "remove")]
    if fault == "refused":
        fake.start()
    else:
        fake.clear_faults()
    recover(fast_app)
    assert tenant_records(fake.zone(POOL), "acme") == {}
    assert foreign_records(fake.zone(POOL), ["acme"]) == BASE_FOREIGN


def test_a_fault_on_the_write_changes_nothing_then_converges(fast_app, fake):
    client = fast_app.test_client()
    fake.inject("http500", times=100, command="set_dns2")
    assert reserve_commit(client, "acme").status_code == 202
    assert foreign_records(fake.zone(POOL), []) == BASE_FOREIGN  # the zone as it was
    fake.clear_faults()
    recover(fast_app)
    assert len(tenant_records(fake.zone(POOL), "acme")) == 6


def test_commit_retry_after_202_publishes(fast_app, fake):
    client = fast_app.test_client()
    fake.inject("error", times=100)
    token = client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "acme"}).get_json()["reservationToken"]
    body = {"subdomain": "acme", "reservationToken": token, "loadBalancerIP": LB}
    assert client.post(f"/api/v1/pool/{POOL}/commit", json=body).status_code == 202
    fake.clear_faults()
    again = client.post(f"/api/v1/pool/{POOL}/commit", json=body)
    assert again.status_code == 200
    assert again.get_json()["state"] == "active"
    assert len(tenant_records(fake.zone(POOL), "acme")) == 6
    assert pending(client) == []


def test_changes_waiting_together_go_out_in_one_read_and_one_write(fast_app, fake):
    client = fast_app.test_client()
    fake.inject("error", times=1000)
    for sub in ("one", "two", "three"):
        assert reserve_commit(client, sub).status_code == 202
    assert client.delete(f"/api/v1/pool/{POOL}/release?sub=two").status_code == 202
    fake.clear_faults()
    fake.reset_calls()
    recover(fast_app)
    assert [c for c, _ in fake.calls] == ["get_dns", "set_dns2"]
    zone = fake.zone(POOL)
    assert len(tenant_records(zone, "one")) == 6 and len(tenant_records(zone, "three")) == 6
    assert tenant_records(zone, "two") == {}


def test_retry_job_respects_backoff_and_finishes(fast_app, fake):
    client = fast_app.test_client()
    pdm = fast_app.extensions["pdm"]
    fake.inject("throttle", times=100)
    assert reserve_commit(client, "acme").status_code == 202
    fake.clear_faults()
    fake.reset_calls()
    pdm.settings = replace(pdm.settings, run_jobs=True)
    assert pdm.jobs.retry_dns() == 0  # throttled: not due for a minute
    assert fake.calls == []
    pdm.publisher.clock = lambda: utcnow() + timedelta(minutes=2)  # the minute has passed
    assert pdm.jobs.retry_dns() == 3  # the pool with work, and the two never read yet
    assert len(tenant_records(fake.zone(POOL), "acme")) == 6
    pdm.jobs.stop()


def test_a_throttled_key_pauses_every_caller(fast_app, fake):
    """Dynadot's throttle error is about the key: until the minute is over no request
    and no job calls it again, whichever pool; then the work goes out."""
    client = fast_app.test_client()
    pdm = fast_app.extensions["pdm"]
    fake.inject("throttle", times=1)
    assert reserve_commit(client, "acme").status_code == 202
    fake.reset_calls()
    assert reserve_commit(client, "beta").status_code == 202
    token = client.post("/api/v1/pool/openova.io/reserve", json={"subdomain": "gamma"}).get_json()["reservationToken"]
    assert client.post("/api/v1/pool/openova.io/commit", json={
        "subdomain": "gamma", "reservationToken": token, "loadBalancerIP": LB}).status_code == 202
    assert fake.calls == []  # nobody called the registrar during the pause
    assert "paused" in pending(client)[-1]["lastError"]
    pdm.publisher.clock = lambda: utcnow() + timedelta(minutes=2)
    pdm.settings = replace(pdm.settings, run_jobs=True)
    assert pdm.jobs.retry_dns() == 3  # every pool, once the pause is over
    assert len(tenant_records(fake.zone(POOL), "acme")) == 6 and len(tenant_records(fake.zone(POOL), "beta")) == 6
    assert len(tenant_records(fake.zone("openova.io"), "gamma")) == 6
    pdm.jobs.stop()


def test_zone_wipe_guard(fast_app, fake):
    """A snapshot that lost records that are not the service's (an incomplete read) is
    never written back: the pool is blocked, visibly, and nothing is lost."""
    client = fast_app.test_client()
    assert reserve_commit(client, "beta").status_code == 200
    # the registrar now answers with a zone that lost its MX records and beta's
    fake.seed(POOL, [r for r in BASE_RECORDS if r.rtype != "mx"], ttl=300)
    fake.reset_calls()
    response = reserve_commit(client, "acme")
    assert response.status_code == 202
    assert [c for c, _ in fake.calls] == ["get_dns"]  # read, refused, never written
    work = pending(client)
    assert work and "lost-foreign-records" in work[0]["lastError"]
    listed = client.get(f"/api/v1/pool/{POOL}/list").get_json()
    assert listed["dnsBlocked"]["reason"] == "lost-foreign-records"
    assert "MX" in listed["dnsBlocked"]["detail"]


def test_zone_on_other_nameservers_is_never_written(fast_app, fake):
    client = fast_app.test_client()
    fake.seed(POOL, list(BASE_RECORDS), ttl=300, ns_type="Name Servers")
    fake.reset_calls()
    assert reserve_commit(client, "acme").status_code == 202
    assert set(c for c, _ in fake.calls) == {"get_dns"}
    assert client.get(f"/api/v1/pool/{POOL}/list").get_json()["dnsBlocked"]["reason"] == "not-dynadot-dns"


def test_zone_bigger_than_one_write_is_refused_not_truncated(fast_app, fake):
    """The first commit into a zone too full for another tenant: the zone's shape is not
    known yet, so the commit reads it first and answers 409 pool-full (it used to be
    accepted with 202 and then fail for ever)."""
    client = fast_app.test_client()
    # 2 + 93 sub-host records that are not the service's: no room for six more in 100
    fake.seed(POOL, BASE_RECORDS + [Record(f"h{i}", "a", "192.0.2.1") for i in range(93)], ttl=300)
    fake.reset_calls()
    response = reserve_commit(client, "acme")
    assert response.status_code == 409 and response.get_json()["error"] == "pool-full", response.get_json()
    assert [c for c, _ in fake.calls] == ["get_dns"]
    assert client.get(f"/api/v1/pool/{POOL}/list").get_json()["allocations"][0]["state"] == "reserved"
    # someone deletes one record; an operator accepts the zone as it now is
    # (reconcile --force), and the next tenant fits exactly
    fake.seed(POOL, BASE_RECORDS + [Record(f"h{i}", "a", "192.0.2.1") for i in range(92)], ttl=300)
    assert fast_app.extensions["pdm"].publisher.publish(POOL, [], budget=None, accept=True)
    assert reserve_commit(client, "beta").status_code == 200
    assert len(fake.zone(POOL).subhosts) == 100


def test_secrets_never_leak(db_url, fake, caplog, capsys):
    app = create_app(make_settings(db_url, fake, dns_request_budget=1.5, log_level="DEBUG"))
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    client = app.test_client()
    bodies = []
    fake.hang_seconds = 5
    for i, fault in enumerate(FAULTS):
        fake.inject(fault, times=100)
        bodies.append(reserve_commit(client, f"s{i}").get_data(as_text=True))
        bodies.append(client.get(f"/api/v1/pool/{POOL}/list").get_data(as_text=True))
        fake.clear_faults()
    fake.stop()
    bodies.append(reserve_commit(client, "refused").get_data(as_text=True))
    fake.start()
    app.extensions["pdm"].publisher.publish(POOL, [], budget=None)
    printed = capsys.readouterr()
    for text in bodies + [printed.out, printed.err]:
        assert API_KEY not in text and API_SECRET not in text
    for record in caplog.records:
        message = record.getMessage() + (str(record.exc_info[1]) if record.exc_info else "")
        assert API_SECRET not in message
    assert all(API_SECRET not in str(params) for _, params in fake.calls)
    assert all(params.get("key") == API_KEY for _, params in fake.calls)
    app.extensions["pdm"].engine.dispose()


def test_only_a_few_requests_wait_on_a_slow_registrar(db_url, fake):
    """With one waiting slot, a second commit during a slow pass answers 202 at once
    instead of holding a worker thread; its records still go out.

    The registrar holds the first commit's call until the test lets it go, and the
    request budget (120 s) is longer than the test waits for the second answer (30 s):
    a second commit that waited on the registrar could only answer after release()."""
    app = create_app(make_settings(db_url, fake, dns_request_budget=120.0, dns_max_waiting_requests=1))
    client = app.test_client()
    tokens = {s: client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": s}).get_json()["reservationToken"]
              for s in ("slow", "quick")}
    first, second = {}, {}

    def commit(sub, into):
        into["status"] = app.test_client().post(f"/api/v1/pool/{POOL}/commit", json={
            "subdomain": sub, "reservationToken": tokens[sub], "loadBalancerIP": LB}).status_code

    fake.hold()
    slow = threading.Thread(target=commit, args=("slow", first))
    quick = threading.Thread(target=commit, args=("quick", second))
    try:
        slow.start()
        assert fake.wait_held(1, timeout=30)  # the first commit waits on the registrar
        quick.start()
        quick.join(30)
        assert not quick.is_alive(), "the second commit waited on the registrar"
        assert second["status"] == 202
        assert fake.in_flight == 1 and len(fake.calls) == 1  # the first is still held; nobody else called
    finally:
        fake.release()
        slow.join(60)
        quick.join(60)
    assert first["status"] in (200, 202)
    recover(app)
    assert len(tenant_records(fake.zone(POOL), "quick")) == 6
    app.extensions["pdm"].engine.dispose()
