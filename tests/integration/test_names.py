"""Names and addresses through the endpoints, on SQLite and PostgreSQL: non-ASCII names
and A-labels that display as reserved ones are refused, and commit takes only a public
unicast IPv4 load balancer (or one in a lab's allowed ranges). The rules themselves:
tests/unit/test_names.py."""
from __future__ import annotations

import pytest

from conftest import POOL, make_settings
from pdm_app import create_app
from pdm_app.config import parse_ip_ranges
from unit.test_names import KELVIN, PUBLIC_LB, REFUSED, a_label


# -- the endpoints, on both backends ------------------------------------------------------

def _client(db_url, fake, **overrides):
    app = create_app(make_settings(db_url, fake, **overrides))
    yield app.test_client()
    app.extensions["pdm"].jobs.stop()
    app.extensions["pdm"].engine.dispose()


@pytest.fixture
def strict_client(db_url, fake):
    """The production default: public addresses only (whatever the suite's default)."""
    yield from _client(db_url, fake, lb_ip_allowed_ranges=())


@pytest.fixture
def lab_client(db_url, fake):
    yield from _client(db_url, fake, lb_ip_allowed_ranges=parse_ip_ranges("10.0.0.0/8"))


def check(client, sub, pool=POOL):
    response = client.get(f"/api/v1/pool/{pool}/check", query_string={"sub": sub})
    assert response.status_code == 200
    return response.get_json()


def reserve(client, sub, pool=POOL):
    return client.post(f"/api/v1/pool/{pool}/reserve", json={"subdomain": sub})


def commit(client, sub, token, ip):
    return client.post(f"/api/v1/pool/{POOL}/commit",
                       json={"subdomain": sub, "reservationToken": token, "loadBalancerIP": ip})


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"] == code and isinstance(body["detail"], str) and body["detail"]
    return body


@pytest.mark.parametrize("sub", [f"{KELVIN}afka", f"{KELVIN}eycloak", "acme\u00a0", "\u3000acme", "caf\u00e9"])
def test_non_ascii_names_are_refused(client, sub):
    body = check(client, sub)
    assert (body["available"], body["reason"]) == (False, "invalid-format")
    assert "ASCII" in body["detail"] and "fqdn" not in body
    assert "ASCII" in assert_error(reserve(client, sub), 422, "invalid-format")["detail"]
    assert reserve(client, "kafka").status_code == 201  # the ASCII name was not taken by it
    assert client.get(f"/api/v1/pool/{POOL}/list").get_json()["allocations"][0]["subdomain"] == "kafka"


def test_non_ascii_pool_is_not_the_ascii_pool(client):
    pool = POOL.replace("k", KELVIN)
    assert check(client, "acme", pool=pool)["reason"] == "unsupported-pool"
    assert_error(reserve(client, "acme", pool=pool), 422, "unsupported-pool")


def test_invalid_a_label_is_invalid_format(client):
    for sub in ("xn--ls8h", "xn--zz", "xn--a-ecp"):
        body = check(client, sub)
        assert (body["available"], body["reason"]) == (False, "invalid-format") and "IDNA" in body["detail"]
        assert_error(reserve(client, sub), 422, "invalid-format")


def test_a_label_shown_as_a_reserved_label_is_reserved(client):
    for sub in ("xn--dmin-43d", a_label("g\u0456tea"), a_label("k8\u0455").upper()):
        body = check(client, sub)
        assert (body["available"], body["reason"]) == (False, "reserved")
        assert_error(reserve(client, sub), 409, "reserved-name")
    assert client.get(f"/api/v1/pool/{POOL}/list").get_json()["allocations"] == []


def test_valid_a_label_is_a_name_like_any_other(client):
    assert check(client, "xn--caf-dma") == {"available": True, "fqdn": f"xn--caf-dma.{POOL}"}
    assert reserve(client, "XN--CAF-DMA").get_json()["subdomain"] == "xn--caf-dma"


@pytest.mark.parametrize("ip, why", [pytest.param(ip, why, id=ip) for ip, why in REFUSED])
def test_commit_refuses_non_public_addresses(strict_client, fake, ip, why):
    token = reserve(strict_client, "acme").get_json()["reservationToken"]
    body = assert_error(commit(strict_client, "acme", token, ip), 422, "invalid-lb-ip")
    assert why in body["detail"] and ip in body["detail"]
    assert check(strict_client, "acme")["reason"] == "reserved-state"  # still held, nothing published
    assert all(command != "set_dns2" for command, _ in fake.calls)


def test_commit_takes_a_public_address(strict_client, fake):
    token = reserve(strict_client, "acme").get_json()["reservationToken"]
    response = commit(strict_client, "acme", token, PUBLIC_LB)
    assert response.status_code == 200 and response.get_json()["loadBalancerIP"] == PUBLIC_LB


def test_lab_ranges_allow_private_addresses(lab_client):
    token = reserve(lab_client, "acme").get_json()["reservationToken"]
    assert "private" in assert_error(commit(lab_client, "acme", token, "192.168.1.1"), 422, "invalid-lb-ip")["detail"]
    assert "link-local" in assert_error(commit(lab_client, "acme", token, "169.254.169.254"), 422,
                                        "invalid-lb-ip")["detail"]
    response = commit(lab_client, "acme", token, "10.20.30.40")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["loadBalancerIP"] == "10.20.30.40"


def test_a_label_that_only_looks_like_a_latin_name_is_refused(client):
    for sub, why in (("xn--80ak6aa92e", "plain ASCII name 'apple'"),  # аррӏе, all Cyrillic
                     (a_label("\u0430pple"), "mixes scripts (Cyrillic, Latin)")):  # аpple
        body = check(client, sub)
        assert (body["available"], body["reason"]) == (False, "invalid-format")
        assert why in body["detail"] and "fqdn" not in body
        assert why in assert_error(reserve(client, sub), 422, "invalid-format")["detail"]
    assert check(client, "xn--mller-kva") == {"available": True, "fqdn": f"xn--mller-kva.{POOL}"}
    assert reserve(client, "xn--mller-kva").status_code == 201


def test_a_label_that_looks_like_a_held_a_label_is_taken(client):
    muller, lookalike = "xn--mller-kva", a_label("m\u00fc\u0142\u0142er")  # müller, müłłer
    assert check(client, lookalike)["available"] is True
    token = reserve(client, muller).get_json()["reservationToken"]
    body = check(client, lookalike)
    assert (body["available"], body["reason"]) == (False, "reserved-state")
    assert f"looks like {muller}.{POOL}" in body["detail"] and body["fqdn"] == f"{lookalike}.{POOL}"
    assert f"{muller}.{POOL}" in assert_error(reserve(client, lookalike), 409, "conflict")["detail"]
    assert commit(client, muller, token, PUBLIC_LB).status_code == 200
    assert check(client, lookalike)["reason"] == "active-state"
    # another pool has no such tenant
    assert check(client, lookalike, pool="openova.io")["available"] is True
    assert client.delete(f"/api/v1/pool/{POOL}/release", json={"subdomain": muller}).status_code == 200
    assert check(client, lookalike)["available"] is True


def test_a_lapsed_reservation_is_not_imitated(app, client):
    app.extensions["pdm"].lifecycle.reservation_ttl = 0
    assert reserve(client, "xn--mller-kva").status_code == 201
    assert reserve(client, a_label("m\u00fc\u0142\u0142er")).status_code == 201


@pytest.fixture
def nested_pools_client(db_url, fake):
    yield from _client(db_url, fake, managed_domains=("omani.works", "a.b.omani.works", "openova.io"))


def test_a_name_that_is_another_pool_is_never_available(client, nested_pools_client):
    # omantel.omani.works is a pool of its own
    body = check(client, "omantel", pool="omani.works")
    assert (body["available"], body["reason"]) == (False, "reserved") and "omantel.omani.works" in body["detail"]
    assert "omantel.omani.works" in assert_error(reserve(client, "omantel", pool="omani.works"), 409,
                                                 "reserved-name")["detail"]
    # b.omani.works holds the pool a.b.omani.works
    client = nested_pools_client
    body = check(client, "b", pool="omani.works")
    assert (body["available"], body["reason"]) == (False, "reserved") and "a.b.omani.works" in body["detail"]
    assert_error(reserve(client, "b", pool="omani.works"), 409, "reserved-name")
    assert reserve(client, "c", pool="omani.works").status_code == 201
    assert client.get("/api/v1/pool/omani.works/list").get_json()["allocations"][0]["subdomain"] == "c"
