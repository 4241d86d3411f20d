"""DNS that converges: the zone read back and repaired from the allocation table, no pool
wedged, a lost lock never writing, a throttle pause that costs no attempts, a late write
repaired; and the operators' drift, reconcile, renew and history."""
from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest

from conftest import BASE_FOREIGN, POOL, foreign_records, tenant_records, terminate_lock_session
from pdm_app import metrics
from pdm_app.domain import utcnow
from pdm_app.dns.zone import Record

LB = "198.51.100.7"
NAMES = ("*", "console", "gitea", "harbor", "admin", "api")


@pytest.fixture
def make_app(db_url, app_factory):
    return lambda **overrides: app_factory(db_url, **{"dns_request_budget": 1.5, **overrides})


def reserve(client, sub, pool=POOL):
    answer = client.post(f"/api/v1/pool/{pool}/reserve", json={"subdomain": sub})
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["reservationToken"]


def commit(client, sub, ip=LB, token=None):
    token = token or reserve(client, sub)
    return client.post(f"/api/v1/pool/{POOL}/commit",
                       json={"subdomain": sub, "reservationToken": token, "loadBalancerIP": ip})


def pending(client):
    return client.get(f"/api/v1/pool/{POOL}/list").get_json()["pendingDns"]


def history(client, sub=None):
    query = f"?sub={sub}" if sub else ""
    return [e["action"] for e in client.get(f"/api/v1/pool/{POOL}/history{query}").get_json()["events"]]


def without(records, *hosts):
    return [r for r in records if r.host not in hosts]


def later(app, seconds):
    """Every clock of the publisher ``seconds`` ahead (back-off, pauses, rechecks)."""
    app.extensions["pdm"].publisher.clock = lambda: utcnow() + timedelta(seconds=seconds)


# -- 1. a missing tenant record is drift, repaired -- never a wedged pool ----------------

def test_a_hand_removed_record_is_repaired_not_a_wedge(make_app, fake):
    app = make_app()
    client = app.test_client()
    assert commit(client, "acme").status_code == 200
    assert commit(client, "beta").status_code == 200
    # deleted in Dynadot's web UI (or lost to an out-of-order write)
    fake.seed(POOL, without(fake.zone(POOL).records, "console.acme"), ttl=300)
    # the next commit of the pool goes through and puts it back
    assert commit(client, "gamma").status_code == 200
    zone = fake.zone(POOL)
    for sub in ("acme", "beta", "gamma"):
        assert len(tenant_records(zone, sub)) == 6
    assert foreign_records(zone, ["acme", "beta", "gamma"]) == BASE_FOREIGN
    assert pending(client) == []
    assert history(client, "acme")[0] == "drift-repaired"
    # and so does the resync, with no commit at all
    fake.seed(POOL, without(fake.zone(POOL).records, "api.beta"), ttl=300)
    app.extensions["pdm"].settings = replace(app.extensions["pdm"].settings, run_jobs=True)
    later(app, 601)  # PDM_DNS_RESYNC_INTERVAL (10m) has passed
    assert app.extensions["pdm"].jobs.retry_dns() == 3
    assert len(tenant_records(fake.zone(POOL), "beta")) == 6


# -- 2. PDM_TENANT_RECORDS grown and shrunk ------------------------------------------------

def test_the_record_name_list_grown_and_shrunk(make_app, fake):
    first = make_app(tenant_records=("*", "console"))
    assert commit(first.test_client(), "acme").status_code == 200
    assert set(tenant_records(fake.zone(POOL), "acme")) == {"*.acme", "console.acme"}

    grown = make_app(tenant_records=("*", "console", "grafana"))
    # a commit under the new list publishes the new name for every tenant, not a wedge
    assert commit(grown.test_client(), "beta").status_code == 200
    zone = fake.zone(POOL)
    assert Record("grafana.acme", "a", LB) in zone.records and Record("grafana.beta", "a", LB) in zone.records

    shrunk = make_app(tenant_records=("*",))
    # no commit needed: the leader sees the list changed and resyncs the pool
    assert shrunk.extensions["pdm"].jobs.retry_dns() >= 1
    zone = fake.zone(POOL)
    assert sorted(r.host for r in zone.records if r.rtype == "a" and r.host.endswith((".acme", ".beta"))) == [
        "*.acme", "*.beta"]
    assert foreign_records(zone, []) == sorted(BASE_FOREIGN + [("*.acme", "a", LB, ""), ("*.beta", "a", LB, "")])
    # the service's own records never count as foreign toward pool-full
    with shrunk.extensions["pdm"].lifecycle.uow() as tx:
        assert tx.pool_zone(POOL).foreign_subhost_records == 2
    # release removes every name ever published for the tenant
    assert shrunk.test_client().delete(f"/api/v1/pool/{POOL}/release?sub=acme").status_code == 200
    assert not [r for r in fake.zone(POOL).records if r.host.endswith(".acme")]


# -- 3. fencing: a pass that lost its lock writes nothing ----------------------------------

def test_a_pass_whose_lock_backend_was_terminated_writes_nothing(postgres_url, fake, app_factory):
    a, b = (app_factory(postgres_url, dns_request_budget=10.0) for _ in range(2))
    client_a = a.test_client()
    assert commit(client_a, "acme").status_code == 200
    token_gamma = reserve(client_a, "gamma")
    failures_before = metrics.LOCK_RELEASE_FAILURES.labels("pdm-registrar")._value.get()
    lost_before = metrics.LOCK_LOST._value.get()

    fake.answer_delay = 5.0  # A reads the zone now; the answer arrives later, stale
    fake.reset_calls()
    answers = {}
    slow = threading.Thread(target=lambda: answers.setdefault("gamma", commit(a.test_client(), "gamma",
                                                                               token=token_gamma)))
    slow.start()
    assert fake.wait_held(1, 30)  # the read is carried out; its answer is on its way
    assert [c for c, _ in fake.calls] == ["get_dns"]
    fake.answer_delay = 0

    # A's lock session dies (failover, pg_terminate_backend, a network drop) ...
    killed = terminate_lock_session(postgres_url, "pdm-registrar")
    assert killed == [True], killed
    # ... B takes the lock and publishes beta (and A's gamma, whose row is committed)
    assert commit(b.test_client(), "beta").status_code == 200
    assert len(tenant_records(fake.zone(POOL), "beta")) == 6
    slow.join(30)

    # A read the zone before B wrote: its stale plan lacks beta. It must not write it.
    assert [c for c, _ in fake.calls].count("set_dns2") == 1
    zone = fake.zone(POOL)
    for sub in ("acme", "beta", "gamma"):
        assert len(tenant_records(zone, sub)) == 6, sub
    assert answers["gamma"].status_code in (200, 202)
    assert metrics.LOCK_LOST._value.get() > lost_before
    assert metrics.LOCK_RELEASE_FAILURES.labels("pdm-registrar")._value.get() > failures_before
    # nothing is left pending that is not done, and a re-read finds the zone right
    assert a.extensions["pdm"].publisher.publish(POOL, [], budget=None, verify=True)
    assert pending(client_a) == []


# -- 4. a throttle pause is not an attempt ---------------------------------------------------

def test_seven_commits_during_a_throttle_pause_cost_no_attempts(make_app, fake):
    app = make_app(dns_resync_interval=0)
    client = app.test_client()
    pdm = app.extensions["pdm"]
    assert commit(client, "first").status_code == 200  # the zone's shape is known
    paused_until = utcnow() + timedelta(seconds=60)
    with pdm.publisher.uow() as tx:
        tx.update_registrar_account(pdm.publisher.default.account, paused_until=paused_until)
    fake.reset_calls()
    for i in range(7):
        assert commit(client, f"t{i}").status_code == 202
    assert fake.calls == []
    work = pending(client)
    assert len(work) == 7
    assert all(w["attempts"] == 0 for w in work)
    # due the moment the pause ends, not minutes later
    assert {w["nextAttemptAt"] for w in work} == {paused_until.strftime("%Y-%m-%dT%H:%M:%SZ")}
    later(app, 61)
    assert pdm.jobs.retry_dns() == 1
    assert [c for c, p in fake.calls if p.get("domain") == POOL] == ["get_dns", "set_dns2"]
    assert all(len(tenant_records(fake.zone(POOL), f"t{i}")) == 6 for i in range(7))


# -- 5. set_dns2 is never retried by the transport -------------------------------------------

def test_a_transport_5xx_on_set_dns2_sends_no_second_write(make_app, fake):
    app = make_app()
    client = app.test_client()
    assert commit(client, "first").status_code == 200
    fake.reset_calls()
    fake.inject("http500", times=1, command="set_dns2")
    assert commit(client, "acme").status_code == 202
    assert [c for c, _ in fake.calls] == ["get_dns", "set_dns2"]
    # the retry re-reads and re-plans
    assert app.extensions["pdm"].publisher.publish(POOL, [], budget=None)
    assert [c for c, _ in fake.calls] == ["get_dns", "set_dns2", "get_dns", "set_dns2"]
    assert len(tenant_records(fake.zone(POOL), "acme")) == 6


# -- 7. a write the service gave up on lands late --------------------------------------------

def test_a_timed_out_write_applied_late_is_read_back_and_repaired(make_app, fake):
    app = make_app()
    client = app.test_client()
    pdm = app.extensions["pdm"]
    fake.hang_seconds = 2.5
    fake.late_seconds = 3.0
    assert commit(client, "old").status_code == 200
    fake.inject("late", times=1, command="set_dns2")
    assert commit(client, "beta").status_code == 202  # written, but no answer in time
    later(app, 10)  # past the work's back-off
    assert pdm.publisher.publish(POOL, [], budget=None)  # the retry: read, write, done
    assert client.delete(f"/api/v1/pool/{POOL}/release?sub=old").status_code == 200
    assert commit(client, "gamma").status_code == 200
    assert fake.wait_late_writes(15)
    # Dynadot applied the abandoned write: old is back, gamma is gone
    zone = fake.zone(POOL)
    assert len(tenant_records(zone, "old")) == 6 and tenant_records(zone, "gamma") == {}
    # the leader reads the zone again once the late-write window has passed, and repairs it
    later(app, 181)
    assert pdm.jobs.retry_dns() == 3
    zone = fake.zone(POOL)
    assert tenant_records(zone, "old") == {}
    assert len(tenant_records(zone, "gamma")) == 6 and len(tenant_records(zone, "beta")) == 6
    assert foreign_records(zone, ["beta", "gamma"]) == BASE_FOREIGN
    assert "drift-repaired" in history(client, "gamma") and "drift-repaired" in history(client, "old")
    with pdm.lifecycle.uow() as tx:
        assert tx.pool_zone(POOL).recheck_at is None


def late_write_state(pdm):
    """The pool's late-write window (when the abandoned write was sent, until when it may
    land) and the next read owed, as offsets in seconds from that write's failure."""
    with pdm.lifecycle.uow() as tx:
        zone = tx.pool_zone(POOL)
    if zone.late_write_until is None:
        return None, zone.recheck_at
    failed = zone.late_write_until - timedelta(seconds=pdm.publisher.late_write_window)
    return failed, None if zone.recheck_at is None else (zone.recheck_at - failed).total_seconds()


def test_a_write_applied_a_minute_late_is_repaired_by_the_read_a_minute_after_it(make_app, fake):
    app = make_app(dns_resync_interval=0)  # only the late-write reads make the pool due
    client = app.test_client()
    pdm = app.extensions["pdm"]
    fake.hang_seconds = 2.5
    fake.late_seconds = 600  # lands when the test says so (land_late_writes), not by the clock
    assert commit(client, "old").status_code == 200
    fake.inject("late", times=1, command="set_dns2")
    assert commit(client, "beta").status_code == 202  # written, but no answer in time
    failed, next_read = late_write_state(pdm)
    # read again soon: 5 s after the pass gave up, which the service's whole-second clock
    # may put a second after the abandoned write
    assert 5 <= next_read <= 6
    later(app, 10)
    assert pdm.jobs.retry_dns() == 1  # the soon read: read, write, done
    assert client.delete(f"/api/v1/pool/{POOL}/release?sub=old").status_code == 200
    assert commit(client, "gamma").status_code == 200
    assert late_write_state(pdm) == (failed, 60)  # the next: about a minute after the failure
    # Dynadot applies the abandoned write now, a minute late: old is back, gamma is gone
    fake.land_late_writes()
    assert fake.wait_late_writes(15)
    zone = fake.zone(POOL)
    assert len(tenant_records(zone, "old")) == 6 and tenant_records(zone, "gamma") == {}
    # the read a minute after the failure repairs it, not only the one at the window's end
    later(app, 61)
    assert pdm.jobs.retry_dns() == 1
    zone = fake.zone(POOL)
    assert tenant_records(zone, "old") == {}
    assert len(tenant_records(zone, "gamma")) == 6 and len(tenant_records(zone, "beta")) == 6
    assert foreign_records(zone, ["beta", "gamma"]) == BASE_FOREIGN
    assert late_write_state(pdm) == (failed, 180)  # and the window's end is still owed a read
    later(app, 181)
    assert pdm.jobs.retry_dns() == 1
    assert late_write_state(pdm) == (None, None)  # the window is over: nothing more owed


# -- blocked pools, drift and reconcile ----------------------------------------------------

def test_drift_and_reconcile_on_a_zone_broken_three_ways(make_app, fake):
    app = make_app()
    client = app.test_client()
    assert commit(client, "acme").status_code == 200
    assert commit(client, "beta").status_code == 200
    hand_made = Record("*.other", "a", "192.0.2.50")
    broken = [Record("api.beta", "a", "203.0.113.66") if r.host == "api.beta" else r
              for r in without(fake.zone(POOL).records, "gitea.acme")]
    broken += [Record("*.gone", "a", "192.0.2.9"), Record("console.gone", "a", "192.0.2.9"), hand_made]
    fake.seed(POOL, broken, ttl=300)

    drift = client.get(f"/api/v1/pool/{POOL}/drift").get_json()
    assert drift["clean"] is False and drift["dnsBlocked"] is None
    names = {n["subdomain"]: n for n in drift["names"]}
    assert set(names) == {"acme", "beta", "gone"}
    assert names["acme"]["missing"] == ["gitea.acme"]
    assert names["beta"]["wrongAddress"] == [{"host": "api.beta", "found": ["203.0.113.66"], "expected": LB}]
    assert names["gone"] == {"subdomain": "gone", "state": None, "missing": [], "wrongAddress": [],
                             "orphans": ["*.gone", "console.gone"], "foreign": []}

    service = app.extensions["pdm"].operators
    dry = service.reconcile(POOL, apply=False, force=False, caller="ops")
    assert not dry.applied and fake.zone(POOL).records == broken  # a dry run changes nothing
    result = service.reconcile(POOL, apply=True, force=False, caller="ops")
    assert result.applied and result.after.clean, result.error
    zone = fake.zone(POOL)
    assert len(tenant_records(zone, "acme")) == 6 and set(tenant_records(zone, "beta").values()) == {LB}
    assert not [r for r in zone.records if r.host.endswith(".gone")]
    # every record that is not the service's is kept exactly, the hand-made *.other too
    assert foreign_records(zone, ["acme", "beta"]) == sorted(BASE_FOREIGN + [("*.other", "a", "192.0.2.50", "")])
    assert client.get(f"/api/v1/pool/{POOL}/drift").get_json()["clean"] is True


def test_a_broken_read_blocks_the_pool_visibly_until_forced(make_app, fake):
    app = make_app()
    client = app.test_client()
    assert commit(client, "acme").status_code == 200
    # a read that lost the MX records: looks broken, so nothing is written
    fake.seed(POOL, [r for r in fake.zone(POOL).records if r.rtype != "mx"], ttl=300)
    assert commit(client, "beta").status_code == 202
    listed = client.get(f"/api/v1/pool/{POOL}/list").get_json()
    assert listed["dnsBlocked"]["reason"] == "lost-foreign-records" and listed["dnsBlocked"]["since"]
    assert [a["dnsPending"] for a in listed["allocations"]] == [False, True]
    body = client.get("/metrics").get_data(as_text=True)
    assert f'pdm_dns_pool_blocked{{pool="{POOL}",reason="lost-foreign-records"}} 1.0' in body
    assert "dns-failed" in history(client, "beta")

    drift = client.get(f"/api/v1/pool/{POOL}/drift").get_json()
    assert drift["clean"] is False and [n["subdomain"] for n in drift["names"]] == ["beta"]
    assert sorted(r["value"] for r in drift["lostRecords"]) == ["mx1.mail.example", "mx2.mail.example"]
    service = app.extensions["pdm"].operators
    refused = service.reconcile(POOL, apply=True, force=False, caller="ops")
    assert not refused.applied and "reconcile" in refused.error
    forced = service.reconcile(POOL, apply=True, force=True, caller="ops")
    assert forced.applied and forced.after.clean
    zone = fake.zone(POOL)
    assert len(tenant_records(zone, "beta")) == 6 and not [r for r in zone.records if r.rtype == "mx"]
    listed = client.get(f"/api/v1/pool/{POOL}/list").get_json()
    assert listed["dnsBlocked"] is None and listed["pendingDns"] == []
    assert "pdm_dns_pool_blocked{" not in client.get("/metrics").get_data(as_text=True)


# -- renew ---------------------------------------------------------------------------------

def test_renew(make_app, fake):
    app = make_app(reservation_max_ttl=7200.0)
    client = app.test_client()
    url = f"/api/v1/pool/{POOL}/renew"
    token = reserve(client, "acme")
    before = utcnow()
    answer = client.post(url, json={"subdomain": "acme", "reservationToken": token, "ttl": "1h30m"})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["state"] == "reserved" and "reservationToken" not in body
    expires = body["expiresAt"]
    assert (before + timedelta(minutes=90)).strftime("%Y-%m-%dT%H:%M:%SZ") <= expires
    answer = client.post(url, json={"subdomain": "acme", "reservationToken": token, "ttl": 120})
    assert answer.status_code == 200 and answer.get_json()["expiresAt"] < expires
    assert client.post(url, json={"subdomain": "acme", "reservationToken": token}).status_code == 200

    def error(body):
        answer = client.post(url, json=body)
        return answer.status_code, answer.get_json()["error"]

    assert error({"subdomain": "acme", "reservationToken": token, "ttl": "3h"}) == (422, "invalid-ttl")
    assert error({"subdomain": "acme", "reservationToken": token, "ttl": -5}) == (422, "invalid-ttl")
    assert error({"subdomain": "acme", "reservationToken": token, "ttl": "soon"}) == (400, "invalid-request")
    assert error({"subdomain": "acme", "reservationToken": "nope"}) == (403, "token-mismatch")
    assert error({"subdomain": "ghost", "reservationToken": token}) == (404, "not-found")
    assert commit(client, "acme", token=token).status_code == 200
    assert error({"subdomain": "acme", "reservationToken": token}) == (409, "already-active")
    app.extensions["pdm"].lifecycle.reservation_ttl = 0
    lapsed = reserve(client, "lapsed")
    assert error({"subdomain": "lapsed", "reservationToken": lapsed, "ttl": 60}) == (410, "reservation-expired")
    assert history(client, "acme").count("renew") == 3
    # an operator's renew (the CLI) needs no token
    app.extensions["pdm"].lifecycle.reservation_ttl = 600
    held = reserve(client, "held")
    renewed = app.extensions["pdm"].lifecycle.renew(POOL, "held", None, 3600, "cli")
    assert renewed.expires_at >= before + timedelta(minutes=59)
    assert commit(client, "held", token=held).status_code == 200


# -- history -------------------------------------------------------------------------------

def test_history_pages_and_is_pruned(make_app, fake):
    app = make_app(history_retention=400 * 86400.0)
    client = app.test_client()
    for sub in ("a1", "a2", "a3"):
        reserve(client, sub)
    assert commit(client, "a4").status_code == 200  # reserve, commit, dns-published
    everything = client.get(f"/api/v1/pool/{POOL}/history").get_json()
    assert len(everything["events"]) == 6 and "nextBefore" not in everything
    ids = [e["id"] for e in everything["events"]]
    assert ids == sorted(ids, reverse=True)
    seen = []
    query = "?limit=4"
    while True:
        page = client.get(f"/api/v1/pool/{POOL}/history{query}").get_json()
        seen += [e["id"] for e in page["events"]]
        if "nextBefore" not in page:
            break
        query = f"?limit=4&before={page['nextBefore']}"
    assert seen == ids
    for bad in ("limit=0", "limit=1001", "limit=x", "before=-1"):
        answer = client.get(f"/api/v1/pool/{POOL}/history?{bad}")
        assert answer.status_code == 400 and answer.get_json()["error"] == "invalid-request", bad

    service = app.extensions["pdm"].lifecycle
    with service.uow() as tx:
        tx.record_event(POOL, "ancient", "reserve", "x", utcnow() - timedelta(days=401))
        tx.record_event(POOL, "recent", "reserve", "x", utcnow() - timedelta(days=399))
    assert app.extensions["pdm"].jobs.prune_history() == 1
    subs = [e["subdomain"] for e in client.get(f"/api/v1/pool/{POOL}/history").get_json()["events"]]
    assert "ancient" not in subs and "recent" in subs


def test_bad_input_on_the_new_endpoints_is_a_4xx(make_app, fake):
    client = make_app().test_client()
    token = reserve(client, "acme")
    bad_bodies = [
        {"subdomain": "ac\u0000me", "reservationToken": token},
        {"subdomain": "\ud800", "reservationToken": token},
        {"subdomain": "acme", "reservationToken": "\u0000"},
        {"subdomain": "acme", "reservationToken": token, "ttl": "1\u0000m"},
        {"subdomain": "acme", "reservationToken": token, "ttl": 1e308},
        {"subdomain": "acme", "reservationToken": token, "ttl": [[[[[[1]]]]]]},
        {"subdomain": "acme", "reservationToken": token, "ttl": "9" * 10000},
        {"subdomain": ["acme"], "reservationToken": token},
    ]
    for body in bad_bodies:
        answer = client.post(f"/api/v1/pool/{POOL}/renew", json=body)
        assert 400 <= answer.status_code < 500, (body, answer.get_json())
    for query in ("sub=%00", "sub=%ED%A0%80", "before=99999999999999999999999", "limit=1e3", "sub=" + "a" * 5000):
        answer = client.get(f"/api/v1/pool/{POOL}/history?{query}")
        assert 400 <= answer.status_code < 500 or answer.status_code == 200, query
        assert answer.get_json() is not None
    assert client.get("/api/v1/pool/nul%00.works/drift").status_code == 422
