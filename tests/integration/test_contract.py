"""The wire contract, endpoint by endpoint, on SQLite and on PostgreSQL."""
from __future__ import annotations

import re
import uuid

import pytest

from conftest import BASE_FOREIGN, POOL, POOLS, foreign_records, tenant_records

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
LB = "198.51.100.7"


def reserve(client, sub, pool=POOL, **extra):
    return client.post(f"/api/v1/pool/{pool}/reserve", json={"subdomain": sub, **extra})


def commit(client, sub, token, ip=LB, pool=POOL, fqdn=None):
    return client.post(
        f"/api/v1/pool/{pool}/commit",
        json={"subdomain": sub, "reservationToken": token, "sovereignFQDN": fqdn or f"{sub}.{pool}",
              "loadBalancerIP": ip},
    )


def release(client, sub, pool=POOL):
    return client.delete(f"/api/v1/pool/{pool}/release", json={"subdomain": sub})


def check(client, sub, pool=POOL):
    response = client.get(f"/api/v1/pool/{pool}/check", query_string={"sub": sub})
    assert response.status_code == 200
    return response.get_json()


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    return body


# -- health and reserved ---------------------------------------------------------------

def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body == {"status": "ok", "managedDomains": sorted(POOLS),
                    "registrars": ["cloudflare", "dynadot", "godaddy", "namecheap", "ovh"], "dns": body["dns"]}
    idle = {"backend": "dynadot", "pendingChanges": 0, "oldestPendingSeconds": None, "lastError": None,
            "blocked": None}
    assert body["dns"] == {pool: idle for pool in POOLS}


def test_healthz_database_down(fake):
    from conftest import make_settings
    from pdm_app import create_app

    settings = make_settings("postgresql+psycopg://nobody@127.0.0.1:1/none", fake)
    app = create_app(settings)
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unhealthy" and body["error"] and body["detail"]
    assert "nobody" not in response.get_data(as_text=True)


def test_database_down_is_503_and_loses_nothing(fake):
    from conftest import make_settings
    from pdm_app import create_app

    app = create_app(make_settings("postgresql+psycopg://nobody:pw@127.0.0.1:1/none", fake))
    client = app.test_client()
    for response in (
        reserve(client, "acme"),
        commit(client, "acme", str(uuid.uuid4())),
        release(client, "acme"),
        client.get(f"/api/v1/pool/{POOL}/list"),
    ):
        body = assert_error(response, 503, "database-unavailable")
        assert "nobody" not in body["detail"] and "pw" not in response.get_data(as_text=True)
    assert fake.calls == []


def test_reserved_list(client):
    body = client.get("/api/v1/reserved").get_json()
    assert body["reserved"] == sorted(body["reserved"])
    assert {"admin", "api", "www", "vault", "k8s"} <= set(body["reserved"])
    assert len(body["reserved"]) == 21


# -- check -------------------------------------------------------------------------------

@pytest.mark.parametrize("sub", ["", "1abc", "-abc", "abc-", "a_b", "a.b", "x" * 64, "ab c"])
def test_check_invalid_format(client, sub):
    body = check(client, sub)
    assert (body["available"], body["reason"]) == (False, "invalid-format")
    assert body["detail"] and "fqdn" not in body


def test_check_order_and_states(client):
    assert check(client, "BAD_", pool="nope.example")["reason"] == "invalid-format"
    assert check(client, "acme", pool="nope.example")["reason"] == "unsupported-pool"
    assert check(client, "Admin")["reason"] == "reserved"
    assert check(client, "  Acme ") == {"available": True, "fqdn": f"acme.{POOL}"}
    unmanaged = check(client, "acme", pool="nope.example")
    assert "another pool" in unmanaged["detail"] and "own domain" in unmanaged["detail"] and "fqdn" not in unmanaged
    assert "control plane" in check(client, "admin")["detail"]
    token = reserve(client, "acme").get_json()["reservationToken"]
    held = check(client, "acme")
    assert held["reason"] == "reserved-state" and held["fqdn"] == f"acme.{POOL}"
    assert "another deployment" in held["detail"] and "few minutes" in held["detail"]
    assert commit(client, "acme", token).status_code == 200
    taken = check(client, "ACME")
    assert taken["reason"] == "active-state" and taken["fqdn"] == f"acme.{POOL}"
    assert "live Sovereign" in taken["detail"] and "another name" in taken["detail"]
    # the pool domain from the path is normalised too
    assert check(client, "acme", pool="OMANTEL.Omani.Works")["reason"] == "active-state"


def test_check_missing_sub_is_invalid_format(client):
    body = client.get(f"/api/v1/pool/{POOL}/check").get_json()
    assert body["available"] is False and body["reason"] == "invalid-format"


def test_check_expired_reservation_is_available(app, client):
    app.extensions["pdm"].lifecycle.reservation_ttl = 0
    assert reserve(client, "brief").status_code == 201
    assert check(client, "brief") == {"available": True, "fqdn": f"brief.{POOL}"}


# -- reserve -------------------------------------------------------------------------------

def test_reserve_answer(client):
    response = reserve(client, " Acme ", createdBy="wizard")
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"poolDomain", "subdomain", "state", "reservedAt", "expiresAt", "reservationToken", "createdBy"}
    assert body["poolDomain"] == POOL and body["subdomain"] == "acme" and body["state"] == "reserved"
    assert body["createdBy"] == "wizard"
    assert TS.match(body["reservedAt"]) and TS.match(body["expiresAt"])
    assert body["expiresAt"] > body["reservedAt"]
    uuid.UUID(body["reservationToken"])


def test_reserve_defaults_created_by(client):
    assert reserve(client, "acme").get_json()["createdBy"] == "catalyst-api"


def test_reserve_conflicts(client):
    token = reserve(client, "acme").get_json()["reservationToken"]
    assert_error(reserve(client, "acme"), 409, "conflict")
    commit(client, "acme", token)
    assert_error(reserve(client, "ACME"), 409, "conflict")


def test_reserve_reserved_name_is_409(client):
    assert_error(reserve(client, "www"), 409, "reserved-name")


def test_reserve_validation(client):
    assert_error(reserve(client, "no_way"), 422, "invalid-format")
    assert_error(reserve(client, "acme", pool="example.com"), 422, "unsupported-pool")
    assert_error(client.post(f"/api/v1/pool/{POOL}/reserve", json={}), 422, "invalid-format")


def test_reserve_takes_over_a_lapsed_reservation(app, client):
    service = app.extensions["pdm"].lifecycle
    service.reservation_ttl = 0
    old = reserve(client, "acme").get_json()["reservationToken"]
    service.reservation_ttl = 600
    new = reserve(client, "acme")
    assert new.status_code == 201
    assert_error(commit(client, "acme", old), 403, "token-mismatch")
    assert commit(client, "acme", new.get_json()["reservationToken"]).status_code == 200


@pytest.mark.parametrize(
    "body, status, code",
    [
        (b"{not json", 400, "invalid-json"),
        (b"", 400, "invalid-json"),
        (b"[1, 2]", 400, "invalid-json"),
        (b'"acme"', 400, "invalid-json"),
        (b"\xff\xfe", 400, "invalid-json"),
        (b'{"subdomain": 42}', 400, "invalid-request"),
        (b'{"subdomain": "acme", "createdBy": ["x"]}', 400, "invalid-request"),
    ],
)
def test_reserve_bad_bodies(client, body, status, code):
    response = client.post(f"/api/v1/pool/{POOL}/reserve", data=body, content_type="application/json")
    assert_error(response, status, code)
    assert check(client, "acme")["available"] is True  # nothing was taken


def test_unknown_fields_are_ignored(client):
    response = reserve(client, "acme", colour="blue", nested={"a": 1})
    assert response.status_code == 201


# -- commit --------------------------------------------------------------------------------

def test_commit_publishes_six_records_and_keeps_the_rest(client, fake):
    token = reserve(client, "acme").get_json()["reservationToken"]
    response = commit(client, "acme", token)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body == {
        "poolDomain": POOL, "subdomain": "acme", "state": "active", "reservedAt": body["reservedAt"],
        "createdBy": "catalyst-api", "sovereignFQDN": f"acme.{POOL}", "loadBalancerIP": LB,
    }
    zone = fake.zone(POOL)
    assert tenant_records(zone, "acme") == {
        h: LB for h in ("*.acme", "console.acme", "gitea.acme", "harbor.acme", "admin.acme", "api.acme")
    }
    assert foreign_records(zone, ["acme"]) == BASE_FOREIGN
    assert zone.ttl == 300
    # the other pools were not touched
    assert fake.zone("omani.works").records == fake.zone("openova.io").records
    # The zone's shape was unknown, so the commit read it before deciding it has room;
    # then one read and one write, never an append.
    calls = [c for c, _ in fake.calls]
    assert calls == ["get_dns", "get_dns", "set_dns2"]
    assert all("add_dns_to_current_setting" not in p for _, p in fake.calls)
    fake.reset_calls()
    assert commit(client, "beta", reserve(client, "beta").get_json()["reservationToken"]).status_code == 200
    assert [c for c, _ in fake.calls] == ["get_dns", "set_dns2"]


def test_commit_error_order(client):
    assert_error(commit(client, "ghost", str(uuid.uuid4())), 404, "not-found")
    token = reserve(client, "acme").get_json()["reservationToken"]
    assert_error(commit(client, "acme", str(uuid.uuid4())), 403, "token-mismatch")
    assert commit(client, "acme", token).status_code == 200
    assert_error(commit(client, "acme", str(uuid.uuid4())), 409, "already-active")
    assert_error(commit(client, "acme", token, ip="198.51.100.8"), 409, "already-active")


def test_commit_expired_before_token(app, client):
    app.extensions["pdm"].lifecycle.reservation_ttl = 0
    reserve(client, "acme")
    assert_error(commit(client, "acme", str(uuid.uuid4())), 410, "reservation-expired")


@pytest.mark.parametrize(
    "sub, ip, pool, code",
    [
        ("bad_name", LB, POOL, "invalid-format"),
        ("acme", "", POOL, "missing-lb-ip"),
        ("acme", "300.1.1.1", POOL, "invalid-lb-ip"),
        ("acme", "2001:db8::1", POOL, "invalid-lb-ip"),
        ("acme", LB, "example.com", "unsupported-pool"),
    ],
)
def test_commit_validation(client, sub, ip, pool, code):
    assert_error(commit(client, sub, str(uuid.uuid4()), ip=ip, pool=pool), 422, code)


def test_commit_missing_ip_field(client):
    token = reserve(client, "acme").get_json()["reservationToken"]
    response = client.post(f"/api/v1/pool/{POOL}/commit", json={"subdomain": "acme", "reservationToken": token})
    assert_error(response, 422, "missing-lb-ip")


def test_commit_retry_is_safe(client, fake):
    token = reserve(client, "acme").get_json()["reservationToken"]
    first = commit(client, "acme", token)
    assert first.status_code == 200
    fake.seed(POOL, [r for r in fake.zone(POOL).records if not r.host.endswith(".acme")], ttl=300)
    again = commit(client, "acme", token)
    assert again.status_code == 200
    assert again.get_json() == first.get_json()
    assert len(tenant_records(fake.zone(POOL), "acme")) == 6  # republished


def test_commit_pool_full(app, client, fake):
    service = app.extensions["pdm"].lifecycle
    # 6 records per tenant, 2 foreign sub-host records (www, legacy) once the zone is read
    service.max_subhost_records = 6 * 2 + 2
    for sub in ("one", "two"):
        assert commit(client, sub, reserve(client, sub).get_json()["reservationToken"]).status_code == 200
    token = reserve(client, "three").get_json()["reservationToken"]
    assert_error(commit(client, "three", token), 409, "pool-full")
    assert check(client, "three")["reason"] == "reserved-state"
    assert tenant_records(fake.zone(POOL), "three") == {}
    release(client, "one")
    assert commit(client, "three", token).status_code == 200


# -- release -------------------------------------------------------------------------------

def test_release_active_removes_exactly_its_records(client, fake):
    for sub in ("acme", "beta"):
        commit(client, sub, reserve(client, sub).get_json()["reservationToken"])
    response = release(client, "acme")
    assert response.status_code == 200
    freed = response.get_json()["freed"]
    assert freed["subdomain"] == "acme" and freed["state"] == "active" and freed["loadBalancerIP"] == LB
    zone = fake.zone(POOL)
    assert tenant_records(zone, "acme") == {}
    assert len(tenant_records(zone, "beta")) == 6
    assert foreign_records(zone, ["beta"]) == BASE_FOREIGN
    assert check(client, "acme")["available"] is True


def test_release_reserved_touches_no_dns(client, fake):
    reserve(client, "acme")
    fake.reset_calls()
    response = client.delete(f"/api/v1/pool/{POOL}/release?sub=ACME")
    assert response.status_code == 200
    assert response.get_json()["freed"]["state"] == "reserved"
    assert fake.calls == []


def test_release_by_query_when_body_is_not_json(client):
    reserve(client, "acme")
    response = client.delete(f"/api/v1/pool/{POOL}/release?sub=acme", data=b"garbage", content_type="text/plain")
    assert response.status_code == 200


def test_release_errors(client):
    assert_error(release(client, "ghost"), 404, "not-found")
    assert_error(release(client, "bad_name"), 422, "invalid-format")
    assert_error(release(client, "acme", pool="example.com"), 422, "unsupported-pool")
    assert_error(client.delete(f"/api/v1/pool/{POOL}/release"), 422, "invalid-format")


# -- list ------------------------------------------------------------------------------------

def test_list(client):
    for sub in ("zeta", "alpha"):
        reserve(client, sub, createdBy="ops")
    token = reserve(client, "mid").get_json()["reservationToken"]
    commit(client, "mid", token)
    body = client.get(f"/api/v1/pool/{POOL}/list").get_json()
    assert body["poolDomain"] == POOL
    assert [a["subdomain"] for a in body["allocations"]] == ["alpha", "mid", "zeta"]
    assert body["pendingDns"] == []
    for allocation in body["allocations"]:
        assert "reservationToken" not in allocation
        assert allocation["dnsPending"] is False
        assert TS.match(allocation["reservedAt"])
    mid = body["allocations"][1]
    assert mid["state"] == "active" and mid["loadBalancerIP"] == LB and "expiresAt" not in mid
    assert body["allocations"][0]["state"] == "reserved" and TS.match(body["allocations"][0]["expiresAt"])


def test_list_unsupported_pool(client):
    assert_error(client.get("/api/v1/pool/example.com/list"), 422, "unsupported-pool")


# -- the HTTP edges ----------------------------------------------------------------------------

def test_unknown_path_and_method_are_json(client):
    assert_error(client.get("/nope"), 404, "not-found")
    assert_error(client.get(f"/api/v1/pool/{POOL}/reserve"), 405, "method-not-allowed")
