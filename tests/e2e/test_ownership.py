"""What is ours (``pdm_app/dns/ownership.py``) against a real PowerDNS: an operator's zone
under the pool is never taken over or deleted, a foreign record blocks the name, and a
tenant named like a nested pool never touches that pool's zone."""
from __future__ import annotations

import pytest
import requests

from conftest import POOL
from integration.test_ownership import LB, check, commit, listed, release, reserve, resync


# -- PowerDNS: an operator's zone under the pool, a nested pool ---------------------------


@pytest.fixture
def pdns_app(app_factory, db_url, powerdns, powerdns_proxy):
    return app_factory(db_url, pdns_base_url=powerdns_proxy.url, pdns_api_key=powerdns.api_key,
                       nameservers=("ns1.openova.io", "ns2.openova.io", "ns3.openova.io"), dns_request_budget=5.0)


class Api:
    def __init__(self, server):
        self.base, self.headers = server.server_url, {"X-API-Key": server.api_key}

    def zone(self, name):
        answer = requests.get(f"{self.base}/zones/{name}.", headers=self.headers, timeout=10)
        return None if answer.status_code == 404 else answer.json()

    def create(self, name, account, rrsets):
        requests.post(f"{self.base}/zones", headers=self.headers, timeout=10, json={
            "name": name + ".", "kind": "Native", "account": account, "nameservers": ["ns1.example."],
            "rrsets": rrsets}).raise_for_status()


def rrset(name, rtype, *contents, ttl=300):
    return {"name": name, "type": rtype, "ttl": ttl, "records": [{"content": c, "disabled": False} for c in contents]}


def operator_zone(api, pool=POOL):
    """``shop.<pool>``, made by an operator: account ops-team, MX, TXT, www and apex A."""
    name = f"shop.{pool}"
    api.create(name, "ops-team", [rrset(f"{name}.", "MX", "10 mx.example."), rrset(f"{name}.", "TXT", '"ops"'),
                                  rrset(f"www.{name}.", "A", "198.51.100.40"), rrset(f"{name}.", "A", "198.51.100.41")])
    return name


def zone_content(zone):
    return zone["account"], sorted((r["name"], r["type"], tuple(sorted(x["content"] for x in r["records"])))
                                   for r in zone["rrsets"] if r["type"] != "SOA")


def test_an_operators_zone_under_the_pool_is_never_taken_over_or_deleted(pdns_app, powerdns):
    """Finding 2: an operator-made ``shop.<pool>`` was reported available, commit rewrote
    its account and records, and release deleted the whole zone."""
    api = Api(powerdns)
    client = pdns_app.test_client()
    assert resync(pdns_app)
    token = reserve(client, "shop").get_json()["reservationToken"]
    name = operator_zone(api)
    before = zone_content(api.zone(name))

    answer = commit(client, "shop", token)
    assert answer.status_code == 409 and answer.get_json()["error"] == "dns-conflict", answer.get_json()
    assert "zone shop." in answer.get_json()["detail"] and "ops-team" in answer.get_json()["detail"]
    assert listed(client)["shop"]["state"] == "reserved"
    assert zone_content(api.zone(name)) == before
    assert release(client, "shop").status_code == 200
    assert resync(pdns_app)
    assert zone_content(api.zone(name)) == before
    # The last read knows the zone: check and reserve refuse the name without a call.
    answer = check(client, "shop")
    assert answer["available"] is False and answer["reason"] == "dns-conflict"
    assert reserve(client, "shop").status_code == 409
    assert api.zone(f"{POOL}")["rrsets"] and not [r for r in api.zone(POOL)["rrsets"]
                                                  if r["name"] == f"{name}." and r["type"] in ("NS", "DS")]


def test_a_foreign_record_in_the_pool_zone_blocks_the_name(pdns_app, powerdns):
    api = Api(powerdns)
    client = pdns_app.test_client()
    assert resync(pdns_app)
    requests.patch(f"{api.base}/zones/{POOL}.", headers=api.headers, timeout=10, json={"rrsets": [
        {**rrset(f"www.shop.{POOL}.", "CNAME", "elsewhere.example."), "changetype": "REPLACE"}]}).raise_for_status()
    assert resync(pdns_app)
    assert check(client, "shop")["reason"] == "dns-conflict"
    assert check(client, "acme")["available"] is True


NESTED = "omantel.omani.works"


def test_a_tenant_named_like_a_nested_pool_never_touches_that_pools_zone(pdns_app, powerdns):
    """Finding 1: ``omantel`` in ``omani.works`` was available and its commit wrote the
    wildcard and reserved labels into the nested pool's own zone. Even an active row of
    that name (carried in a table, say) is never published or released into it."""
    from datetime import datetime, timezone

    from sqlalchemy import text

    api = Api(powerdns)
    client = pdns_app.test_client()
    pdm = pdns_app.extensions["pdm"]
    assert pdm.publisher.publish_due(pdm.settings.managed_domains) == 3
    before = zone_content(api.zone(NESTED))
    answer = check(client, "omantel", pool="omani.works")
    assert answer["available"] is False, answer
    assert reserve(client, "omantel", pool="omani.works").status_code == 409

    now = datetime.now(timezone.utc)
    with pdm.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO pool_allocations (pool_domain, subdomain, state, reserved_at, reservation_token, "
            "load_balancer_ip, created_by, updated_at) VALUES ('omani.works', 'omantel', 'active', :now, :t, :ip, "
            "'x', :now)"), {"now": now, "t": "0" * 64, "ip": LB})
    assert resync(pdns_app, "omani.works") is False  # refused: the tenant is not published
    assert zone_content(api.zone(NESTED)) == before
    drift = client.get("/api/v1/pool/omani.works/drift").get_json()
    assert drift["clean"] is False and "taken by the pool domain" in drift["names"][0]["foreign"][0], drift
    assert release(client, "omantel", pool="omani.works").status_code == 200
    assert resync(pdns_app, "omani.works")
    assert zone_content(api.zone(NESTED)) == before
