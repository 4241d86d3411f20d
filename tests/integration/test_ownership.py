"""What is ours (``pdm_app/dns/ownership.py``): the service never publishes over DNS it does
not own, never removes it, and says so before a wizard's caller gets that far -- on the
fake Dynadot here; against a real PowerDNS in tests/e2e/test_ownership.py."""
from __future__ import annotations

import pytest

from conftest import BASE_RECORDS, POOL
from pdm_app.dns.zone import Record

LB = "198.51.100.7"
NAMES = ("*", "console", "gitea", "harbor", "admin", "api")
HAND_MADE = Record("api.shop", "a", "198.51.100.1")


def reserve(client, sub, pool=POOL):
    return client.post(f"/api/v1/pool/{pool}/reserve", json={"subdomain": sub})


def commit(client, sub, token, pool=POOL):
    return client.post(f"/api/v1/pool/{pool}/commit",
                       json={"subdomain": sub, "reservationToken": token, "loadBalancerIP": LB})


def check(client, sub, pool=POOL):
    return client.get(f"/api/v1/pool/{pool}/check?sub={sub}").get_json()


def release(client, sub, pool=POOL):
    return client.delete(f"/api/v1/pool/{pool}/release", json={"subdomain": sub})


def listed(client, pool=POOL):
    return {a["subdomain"]: a for a in client.get(f"/api/v1/pool/{pool}/list").get_json()["allocations"]}


def history(client, sub, pool=POOL):
    return [(e["action"], e.get("detail", "")) for e in
            client.get(f"/api/v1/pool/{pool}/history?sub={sub}").get_json()["events"]]


def resync(app, pool=POOL):
    """What the job leader's resync runs: a pass that reads the whole zone."""
    return app.extensions["pdm"].operators.retry_dns(pool)[pool]


# -- Dynadot: a hand-made record at a tenant's host -------------------------------------------


@pytest.fixture
def app(db_url, app_factory):
    return app_factory(db_url, dns_request_budget=2.0)


def test_a_name_with_a_hand_made_record_is_not_available_once_the_zone_was_read(app, fake):
    client = app.test_client()
    assert check(client, "shop")["available"] is True
    fake.seed(POOL, BASE_RECORDS + [HAND_MADE])
    assert resync(app)
    answer = check(client, "shop")
    assert answer["available"] is False and answer["reason"] == "dns-conflict"
    assert answer["fqdn"] == f"shop.{POOL}" and "A api.shop 198.51.100.1" in answer["detail"]
    refused = reserve(client, "shop")
    assert refused.status_code == 409 and refused.get_json()["error"] == "dns-conflict"
    assert "shop" not in listed(client)
    assert history(client, "shop")[0][0] == "reserve-refused"
    # The apex, its parking wildcard and other tenants' names are untouched by it.
    assert check(client, "acme")["available"] is True
    # An operator removes the record and accepts the zone as it now reads: free again.
    fake.seed(POOL, BASE_RECORDS)
    assert app.extensions["pdm"].operators.reconcile(POOL, apply=True, force=True, caller="ops").applied
    assert check(client, "shop")["available"] is True and reserve(client, "shop").status_code == 201


def test_a_commit_over_a_hand_made_record_is_refused_and_release_keeps_it(app, fake):
    """Finding 3: ``api.shop`` made by hand, then ``shop`` reserved (the last read did not
    have it yet) and committed: today's main overwrote it at commit and deleted it at
    release."""
    client = app.test_client()
    assert resync(app)
    token = reserve(client, "shop").get_json()["reservationToken"]
    fake.seed(POOL, BASE_RECORDS + [HAND_MADE])  # after the last read: the pass finds it
    answer = commit(client, "shop", token)
    assert answer.status_code == 409, answer.get_json()
    assert answer.get_json()["error"] == "dns-conflict" and "api.shop" in answer.get_json()["detail"]
    assert fake.zone(POOL).records == BASE_RECORDS + [HAND_MADE]  # nothing written
    row = listed(client)["shop"]
    assert row["state"] == "reserved" and "loadBalancerIP" not in row and not row["dnsPending"]
    assert [a for a, _ in history(client, "shop")][:2] == ["commit-refused", "dns-refused"]
    # The reservation is still the caller's: release it; the hand-made record stays, and
    # the name is not offered again while it is there.
    assert release(client, "shop").status_code == 200
    assert resync(app)
    assert HAND_MADE in fake.zone(POOL).records
    assert check(client, "shop")["reason"] == "dns-conflict"
    drift = app.test_client().get(f"/api/v1/pool/{POOL}/drift").get_json()
    assert drift["clean"] is True, drift


def test_one_pass_publishes_one_tenant_and_refuses_another(app, fake, monkeypatch):
    """A pass carrying two commits: the one with foreign records in its way is refused
    (409, back to reserved), the other is published in the same write (200)."""
    client = app.test_client()
    assert resync(app)
    acme = reserve(client, "acme").get_json()["reservationToken"]
    shop = reserve(client, "shop").get_json()["reservationToken"]
    publisher = app.extensions["pdm"].publisher
    with monkeypatch.context() as m:
        m.setattr(publisher, "publish_for_request", lambda *a, **k: False)  # acme's request answers 202 at once
        assert commit(client, "acme", acme).status_code == 202
    fake.seed(POOL, BASE_RECORDS + [HAND_MADE])
    answer = commit(client, "shop", shop)
    assert answer.status_code == 409 and answer.get_json()["error"] == "dns-conflict"
    zone = fake.zone(POOL)
    assert Record("console.acme", "a", LB) in zone.records and HAND_MADE in zone.records
    assert not any(r.host.endswith(".shop") and r != HAND_MADE for r in zone.records)
    rows = listed(client)
    assert rows["acme"]["state"] == "active" and not rows["acme"]["dnsPending"]
    assert rows["shop"]["state"] == "reserved" and not rows["shop"]["dnsPending"]


def test_drift_lists_foreign_records_where_a_tenant_goes(app, fake):
    client = app.test_client()
    assert resync(app)
    token = reserve(client, "shop").get_json()["reservationToken"]
    fake.seed(POOL, BASE_RECORDS + [HAND_MADE])
    drift = client.get(f"/api/v1/pool/{POOL}/drift").get_json()
    names = {n["subdomain"]: n for n in drift["names"]}
    assert names["shop"]["foreign"] == ["A api.shop 198.51.100.1"] and drift["clean"] is False
    assert commit(client, "shop", token).status_code == 409


def test_a_zone_filled_since_the_last_read_refuses_the_commit_with_pool_full(db_url, app_factory, fake):
    # Room for one tenant and four more records besides the base zone's two sub-hosts;
    # five hand-made ones fill it after the last read.
    app = app_factory(db_url, max_subhost_records=2 + len(NAMES) + 4, dns_request_budget=2.0)
    client = app.test_client()
    assert resync(app)
    token = reserve(client, "acme").get_json()["reservationToken"]
    filler = [Record(f"host{i}", "txt", "x") for i in range(5)]
    fake.seed(POOL, BASE_RECORDS + filler)
    answer = commit(client, "acme", token)
    assert answer.status_code == 409 and answer.get_json()["error"] == "pool-full", answer.get_json()
    assert listed(client)["acme"]["state"] == "reserved"
    assert fake.zone(POOL).records == BASE_RECORDS + filler
    # Nothing is blocked: the pool's other work goes on.
    assert app.extensions["pdm"].operators.pools(check_ds=False)[1].blocked is None


def test_a_tenant_named_like_a_nested_pool_is_never_published_on_dynadot(app, fake):
    """Finding 1 on Dynadot: ``*.omantel`` in the zone of omani.works would answer for
    every unallocated name of the pool omantel.omani.works."""
    from datetime import datetime, timezone

    from sqlalchemy import text

    client = app.test_client()
    assert check(client, "omantel", pool="omani.works")["available"] is False
    pdm = app.extensions["pdm"]
    now = datetime.now(timezone.utc)
    with pdm.engine.begin() as conn:  # an active row of that name, as a carried table might hold
        conn.execute(text(
            "INSERT INTO pool_allocations (pool_domain, subdomain, state, reserved_at, reservation_token, "
            "load_balancer_ip, created_by, updated_at, carried_over) VALUES ('omani.works', 'omantel', 'active', "
            ":now, :t, :ip, 'x', :now, true)"), {"now": now, "t": "0" * 64, "ip": LB})
    assert resync(app, "omani.works") is False
    assert fake.zone("omani.works").records == BASE_RECORDS
    assert release(client, "omantel", pool="omani.works").status_code == 200
    assert resync(app, "omani.works") and fake.zone("omani.works").records == BASE_RECORDS


def test_a_committed_tenant_is_never_refused_for_its_own_acme_record(app, fake):
    """A TXT under a live tenant (its certificate's DNS-01 challenge) is not the service's:
    kept as it is, and the tenant's records are still made right around it."""
    client = app.test_client()
    token = reserve(client, "acme").get_json()["reservationToken"]
    assert commit(client, "acme", token).status_code == 200
    challenge = Record("_acme-challenge.acme", "txt", "token")
    fake.seed(POOL, [r for r in fake.zone(POOL).records if r.host != "gitea.acme"] + [challenge])
    assert resync(app)
    zone = fake.zone(POOL)
    assert challenge in zone.records and Record("gitea.acme", "a", LB) in zone.records
    # a commit retried with the same token is still a 200
    assert commit(client, "acme", token).status_code == 200
