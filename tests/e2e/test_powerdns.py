"""Pools on PowerDNS, against a real PowerDNS server (``powerdns`` fixtures): signed tenant
zones delegated with NS and DS, checked over DNS with dnspython's DNSSEC validation; the
faults of powerdns.md §6 (a 5xx or a lost answer at each step, PowerDNS stopped
mid-commit, the process killed between steps) each converge to the table, with one key
per zone and never a lame delegation."""
from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from urllib.parse import parse_qs

import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.zone
import pytest
import requests
from conftest import POOL, POOLS, Gunicorn, make_settings
from powerdns_support import assert_tenant_gone, query, validate_chain
from unit.test_cli import _root_logger_kept  # noqa: F401 -- an autouse fixture: the CLI's logging put back

from pdm_app import create_app
from pdm_app.cli import cli
from pdm_app.domain import utcnow
from pdm_app.dns.powerdns.client import PowerDnsClient, PowerDnsError

LB = "198.51.100.7"
OTHER_LB = "203.0.113.20"
NAMESERVERS = ("ns1.openova.io", "ns2.openova.io", "ns3.openova.io")
# PDM_TENANT_RECORDS' default, as names to look up ("anything" answers through "*").
NAMES = ("console", "gitea", "harbor", "admin", "api", "anything")


def pdns_settings(db_url, fake, api_url, api_key, **overrides):
    return make_settings(db_url, fake, pdns_base_url=api_url, pdns_api_key=api_key, nameservers=NAMESERVERS,
                         **overrides)


@pytest.fixture
def make_app(app_factory, db_url, powerdns, powerdns_proxy):
    """Apps on the test database with every pool on PowerDNS, reached through the fault
    proxy (so a test can see and break each call)."""
    return lambda **overrides: app_factory(db_url, pdns_base_url=powerdns_proxy.url,
                                           pdns_api_key=powerdns.api_key, nameservers=NAMESERVERS, **overrides)


@pytest.fixture
def app(make_app):
    return make_app()


class Api:
    """PowerDNS's API, as an operator's hand edits it (not through the service)."""

    def __init__(self, server):
        self.base = server.server_url
        self.headers = {"X-API-Key": server.api_key}

    def get(self, path):
        return requests.get(self.base + path, headers=self.headers, timeout=10)

    def zone(self, name):
        answer = self.get(f"/zones/{name}.")
        return None if answer.status_code == 404 else answer.json()

    def zones(self):
        return sorted(z["name"] for z in self.get("/zones").json())

    def keys(self, zone):
        return self.get(f"/zones/{zone}./cryptokeys").json()

    def patch(self, zone, rrsets):
        answer = requests.patch(f"{self.base}/zones/{zone}.", json={"rrsets": rrsets}, headers=self.headers,
                                timeout=10)
        assert answer.status_code == 204, answer.text

    def rrset(self, zone, name, rtype):
        for rr in self.zone(zone)["rrsets"]:
            if rr["name"] == name + "." and rr["type"] == rtype:
                return sorted(r["content"] for r in rr["records"])
        return []


@pytest.fixture
def api(powerdns):
    return Api(powerdns)


def reserve(client, sub, pool=POOL):
    answer = client.post(f"/api/v1/pool/{pool}/reserve", json={"subdomain": sub})
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["reservationToken"]


def commit(client, sub, token, ip=LB, pool=POOL):
    return client.post(f"/api/v1/pool/{pool}/commit",
                       json={"subdomain": sub, "reservationToken": token, "loadBalancerIP": ip})


def reserve_commit(client, sub, ip=LB, status=200):
    answer = commit(client, sub, reserve(client, sub), ip)
    assert answer.status_code == status, answer.get_json()
    return answer


def release(client, sub, status=200):
    answer = client.delete(f"/api/v1/pool/{POOL}/release", json={"subdomain": sub})
    assert answer.status_code == status, answer.get_json()
    return answer


def addresses(server, name):
    answer = query(server, name, "A")
    return sorted(rdata.address for rrset in answer.answer if rrset.rdtype == 1 for rdata in rrset)


def assert_tenant_right(powerdns, api, sub, ip=LB):
    """The tenant's chain validates from the pool's key, every name answers ``ip``, and
    the zone holds exactly one key: ECDSA P-256 (13), a CSK."""
    story = validate_chain(powerdns.dns_server, POOL, f"{sub}.{POOL}", names=NAMES)
    for name in NAMES:
        assert addresses(powerdns.dns_server, f"{name}.{sub}.{POOL}") == [ip]
    keys = api.keys(f"{sub}.{POOL}")
    assert [(k["algorithm"], k["flags"], k["active"]) for k in keys] == [("ECDSAP256SHA256", 257, True)]
    ds = [line for line in keys[0]["ds"] if line.split()[2] == "2"]
    assert api.rrset(POOL, f"{sub}.{POOL}", "DS") == ds  # SHA-256 only
    # Over DNS: the pool's zone (as a transfer shows it) delegates with NS and DS.
    parent = dns.zone.from_xfr(dns.query.xfr(powerdns.dns_server[0], POOL, port=powerdns.dns_server[1]))
    at = parent.get_node(sub)
    assert sorted(str(r) for r in at.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NS)) == sorted(
        n + "." for n in NAMESERVERS)
    assert [str(r) for r in at.get_rdataset(dns.rdataclass.IN, dns.rdatatype.DS)] == ds
    return story


def assert_no_lame_delegation(api):
    """Every delegation in the pool's zone points at a zone that exists."""
    for rr in api.zone(POOL)["rrsets"]:
        if rr["type"] in ("NS", "DS") and rr["name"] != POOL + ".":
            assert api.zone(rr["name"].rstrip(".")) is not None, f"{rr['name']} {rr['type']} points at no zone"


def key_posts(proxy, sub="acme"):
    """How many keys were asked for the tenant's zone: one, ever, whatever failed."""
    return sum(1 for c in proxy.calls if c.method == "POST" and c.path.endswith(f"/{sub}.{POOL}./cryptokeys"))


def pass_now(app):
    return app.extensions["pdm"].operators.retry_dns(POOL)[POOL]


# -- the lifecycle ----------------------------------------------------------------------


def test_reserve_touches_no_dns_and_commit_publishes_a_validating_chain(app, powerdns, powerdns_proxy, api):
    client = app.test_client()
    token = reserve(client, "acme")
    assert powerdns_proxy.calls == []  # no zone, key or delegation for a name that may never commit
    answer = commit(client, "acme", token)
    assert answer.status_code == 200 and answer.get_json()["state"] == "active"

    story = assert_tenant_right(powerdns, api, "acme")
    assert story[-1] == "; chain validated"
    # The pool's own zone was made and signed on the way, and its SOA is the service's.
    assert [k["algorithm"] for k in api.keys(POOL)] == ["ECDSAP256SHA256"]
    soa = api.rrset(f"acme.{POOL}", f"acme.{POOL}", "SOA")[0].split()
    assert soa[0] == "ns1.openova.io." and soa[-1] == "60"  # short negative TTL
    assert api.zone(f"acme.{POOL}")["account"] == "pool-domain-manager"
    # Reserve wrote nothing, commit wrote: the pool's zone, then the tenant's, then ONE
    # write of the pool's zone with NS and DS.
    writes = [(c.method, c.path.rsplit("/", 2)[-2:]) for c in powerdns_proxy.calls if c.method != "GET"]
    parent_patches = [w for w in writes if w[0] == "PATCH" and w[1][-1] == POOL + "."]
    assert len(parent_patches) == 1


def test_a_repeated_commit_reapplies_the_records_and_answers_200(app, powerdns, powerdns_proxy, api):
    client = app.test_client()
    token = reserve(client, "acme")
    assert commit(client, "acme", token).status_code == 200
    # Someone removes a record and the DS by hand; the retried commit puts both back.
    api.patch(f"acme.{POOL}", [{"name": f"console.acme.{POOL}.", "type": "A", "changetype": "DELETE"}])
    api.patch(POOL, [{"name": f"acme.{POOL}.", "type": "DS", "changetype": "DELETE"}])
    again = commit(client, "acme", token)
    assert again.status_code == 200
    assert_tenant_right(powerdns, api, "acme")
    assert key_posts(powerdns_proxy) == 1


def test_release_removes_ds_and_ns_first_then_the_zone_and_leaves_nothing(app, powerdns, powerdns_proxy, api):
    client = app.test_client()
    reserve_commit(client, "acme")
    reserve_commit(client, "beta", ip=OTHER_LB)
    powerdns_proxy.reset_calls()

    release(client, "acme")
    writes = [(c.method, c.path) for c in powerdns_proxy.calls if c.method != "GET"]
    assert writes == [("PATCH", f"/api/v1/servers/localhost/zones/{POOL}."),
                      ("DELETE", f"/api/v1/servers/localhost/zones/acme.{POOL}.")]
    assert api.zone(f"acme.{POOL}") is None  # its keys go with it
    assert api.rrset(POOL, f"acme.{POOL}", "NS") == [] and api.rrset(POOL, f"acme.{POOL}", "DS") == []
    assert_tenant_gone(powerdns.dns_server, POOL, f"acme.{POOL}", names=NAMES)
    # The neighbour is untouched.
    assert_tenant_right(powerdns, api, "beta", OTHER_LB)


def test_a_lapsed_reservation_leaves_no_dns(app, powerdns_proxy, api):
    client = app.test_client()
    reserve(client, "ghost")
    pdm = app.extensions["pdm"]
    from datetime import timedelta

    from pdm_app.domain import utcnow

    pdm.lifecycle.clock = lambda: utcnow() + timedelta(hours=1)
    assert pdm.lifecycle.sweep() == 1
    assert powerdns_proxy.calls == [] and api.zones() == []


# -- the pool's own zone -------------------------------------------------------------------


def test_the_pool_zone_is_made_by_the_job_leader_not_at_start(make_app, powerdns, powerdns_proxy, api, fake):
    app = make_app()
    client = app.test_client()
    assert client.get("/readyz").status_code == 200 and client.get("/healthz").status_code == 200
    assert powerdns_proxy.calls == [] and api.zones() == []

    pdm = app.extensions["pdm"]
    # What the leader's retry job runs: a resync of every managed pool.
    assert pdm.publisher.publish_due(pdm.settings.managed_domains) == len(POOLS)
    assert api.zones() == sorted(p + "." for p in POOLS)
    for pool in POOLS:
        assert [k["algorithm"] for k in api.keys(pool)] == ["ECDSAP256SHA256"]
    # omantel.omani.works sits under omani.works: a pass of the outer pool never takes the
    # inner pool's zone for a tenant's.
    assert pdm.operators.retry_dns("omani.works") == {"omani.works": True}
    assert api.zone(POOL) is not None


def test_pools_show_the_pool_ds_and_whether_its_registrar_publishes_it(make_app, powerdns, api):
    app = make_app(ds_check_nameserver=f"127.0.0.1:{powerdns.dns_port}")
    pdm = app.extensions["pdm"]
    pdm.publisher.publish_due(["openova.io"])
    pool_ds = [line for line in api.keys("openova.io")[0]["ds"] if line.split()[2] == "2"]

    def status():
        body = app.test_client().get("/api/v1/pools").get_json()
        return next(p for p in body["pools"] if p["poolDomain"] == "openova.io")

    # The TLD, as a validator's resolver sees it, played by a zone on the same server.
    requests.post(f"{api.base}/zones", headers=api.headers, timeout=10, json={
        "name": "io.", "kind": "Native", "nameservers": ["ns1.example."]}).raise_for_status()
    mine = status()
    assert mine["dnsBackend"] == "powerdns" and mine["poolDs"] == pool_ds
    assert mine["poolDsCheck"]["status"] == "missing" and pool_ds[0] in mine["poolDsCheck"]["detail"]

    other = "12345 13 2 " + "ab" * 32
    api.patch("io", [{"name": "openova.io.", "type": "NS", "ttl": 3600, "changetype": "REPLACE",
                      "records": [{"content": "ns1.openova.io.", "disabled": False}]},
                     {"name": "openova.io.", "type": "DS", "ttl": 3600, "changetype": "REPLACE",
                      "records": [{"content": other, "disabled": False}]}])
    assert status()["poolDsCheck"]["status"] == "different"

    api.patch("io", [{"name": "openova.io.", "type": "DS", "ttl": 3600, "changetype": "REPLACE",
                      "records": [{"content": pool_ds[0], "disabled": False}]}])
    assert status()["poolDsCheck"] == {"status": "published", "found": pool_ds, "detail": ""}


def test_powerdns_down_makes_only_dns_work_wait(make_app, powerdns, api):
    powerdns.stop()
    app = make_app()  # starts without PowerDNS: no crash, nothing asked of it
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    answer = reserve_commit(client, "acme", status=202)
    assert answer.get_json()["state"] == "active"
    assert client.get(f"/api/v1/pool/{POOL}/check?sub=beta").get_json()["available"] is True

    health = client.get("/healthz")
    assert health.status_code == 200
    dns = health.get_json()["dns"][POOL]
    assert dns["backend"] == "powerdns" and dns["pendingChanges"] == 1
    assert "PowerDNS could not be reached" in dns["lastError"]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'pdm_registrar_calls_total{command="pdns-get-rrsets",outcome="transient-error",provider="powerdns"}' in metrics

    powerdns.start()
    assert pass_now(app)
    assert_tenant_right(powerdns, api, "acme")
    assert client.get("/healthz").get_json()["dns"][POOL]["pendingChanges"] == 0


# -- faults: each step fails, or its answer is lost, and the next pass converges ---------------

TENANT = rf"/zones/acme\.{POOL.replace('.', '[.]')}\.$"
PARENT = rf"/zones/{POOL.replace('.', '[.]')}\.$"
COMMIT_STEPS = [
    ("POST", r"/zones$"),  # the tenant zone
    ("POST", r"/acme\.[^/]*/cryptokeys$"),  # its key
    ("PATCH", TENANT),  # its records
    ("GET", r"/acme\.[^/]*/cryptokeys$"),  # its DS (a retried commit reads it)
    ("PATCH", PARENT),  # NS + DS in the pool's zone
]


def _ready_pool(app, powerdns_proxy):
    assert pass_now(app)  # the pool's zone exists and is signed; faults then hit the tenant
    powerdns_proxy.reset_calls()


def test_an_html_page_answered_200_fails_its_pool_alone_and_a_dynadot_pools_work_goes_out(
        make_app, powerdns, powerdns_proxy, api, fake):
    app = make_app(pool_dns={"openova.io": "dynadot"})
    client = app.test_client()
    pdm = app.extensions["pdm"]
    assert pdm.jobs.retry_dns() == 3  # both PowerDNS pool zones made, the Dynadot zone read
    # a Dynadot pool's commit is queued (its registrar fails once) ...
    fake.inject("error", times=1, command="get_dns")
    assert commit(client, "beta", reserve(client, "beta", pool="openova.io"), pool="openova.io").status_code == 202
    # ... and a proxy in front of PowerDNS answers its own error page, with 200
    powerdns_proxy.fail("GET", PARENT, status=200, body="<html><body><h1>Bad Gateway</h1></body></html>",
                        times=100)
    answer = reserve_commit(client, "acme", status=202)
    assert answer.get_json()["state"] == "active"
    listed = client.get(f"/api/v1/pool/{POOL}/list").get_json()
    assert listed["dnsFailing"]["error"] and listed["dnsFailing"]["since"]
    assert [(w["subdomain"], w["attempts"]) for w in listed["pendingDns"]] == [("acme", 1)]

    # one tick: the PowerDNS pool, sorted before the Dynadot one, fails; the other's work goes out
    pdm.publisher.clock = lambda: utcnow() + timedelta(seconds=10)
    assert pdm.jobs.retry_dns() == 1
    assert {r.host for r in fake.zone("openova.io").records if r.host.endswith(".beta")} == {
        f"{name}.beta" for name in ("*", "console", "gitea", "harbor", "admin", "api")}
    health = client.get("/healthz").get_json()["dns"]
    assert health[POOL]["lastError"] == listed["dnsFailing"]["error"] and health[POOL]["pendingChanges"] == 1
    assert health["openova.io"]["lastError"] is None and health["openova.io"]["pendingChanges"] == 0
    assert "dns-failed" in [e["action"] for e in client.get(f"/api/v1/pool/{POOL}/history").get_json()["events"]]
    # PowerDNS answers properly again: the next pass publishes and the failure is gone
    powerdns_proxy.clear_faults()
    assert pass_now(app)
    assert_tenant_right(powerdns, api, "acme")
    assert client.get(f"/api/v1/pool/{POOL}/list").get_json()["dnsFailing"] is None


@pytest.mark.parametrize("method,path", COMMIT_STEPS, ids=[f"{m} {p}" for m, p in COMMIT_STEPS])
def test_a_5xx_at_each_commit_step_converges(app, powerdns, powerdns_proxy, api, method, path):
    _ready_pool(app, powerdns_proxy)
    client = app.test_client()
    token = reserve(client, "acme")
    if method == "GET":
        # A read fails on the retried commit, after a first one that went through.
        assert commit(client, "acme", token).status_code == 200
    powerdns_proxy.fail(method, path, status=503, times=3)  # past the transport's two retries
    answer = commit(client, "acme", token)
    assert answer.status_code == 202, answer.get_json()
    assert any(c.status == 503 for c in powerdns_proxy.calls)
    assert_no_lame_delegation(api)
    powerdns_proxy.clear_faults()
    assert pass_now(app)
    assert_tenant_right(powerdns, api, "acme")


# What a proxy in front of PowerDNS may answer with 200, and JSON PowerDNS would never send.
ODD_ANSWERS = {
    "html": ("<html><body><h1>502 Bad Gateway</h1><hr><center>nginx</center></body></html>", "text/html"),
    "nested": ("[" * 100_000 + "]" * 100_000, "application/json"),
    "shape": ('{"name": "x.", "rrsets": [{"name": "x.", "type": "A", "ttl": "300", "records": {"x": 1}}]}',
              "application/json"),
}
POOL_RE = POOL.replace(".", "[.]")
# A commit's reads: the pool zone's records at the tenant's name (and its settings), the
# tenant's own zone, the pool zone's keys.
READS = {"pool zone": rf"/zones/{POOL_RE}\.$", "tenant zone": rf"/zones/acme\.{POOL_RE}\.$",
         "pool keys": rf"/zones/{POOL_RE}\./cryptokeys$"}


@pytest.mark.parametrize("answer", sorted(ODD_ANSWERS))
@pytest.mark.parametrize("read", sorted(READS))
def test_an_odd_answer_to_a_read_is_a_transient_failure_then_converges(app, powerdns, powerdns_proxy, api, answer,
                                                                       read):
    _ready_pool(app, powerdns_proxy)
    client = app.test_client()
    token = reserve(client, "acme")
    body, content_type = ODD_ANSWERS[answer]
    powerdns_proxy.fail("GET", READS[read], status=200, body=body, content_type=content_type)
    reply = commit(client, "acme", token)
    assert reply.status_code == 202, reply.get_json()  # waits in the queue, as after a 5xx
    dns = client.get("/healthz").get_json()["dns"][POOL]
    assert dns["pendingChanges"] == 1 and "PowerDNS answered" in dns["lastError"], dns
    assert "nginx" not in dns["lastError"]  # the page itself is not quoted
    assert_no_lame_delegation(api)
    powerdns_proxy.clear_faults()
    assert pass_now(app)
    assert_tenant_right(powerdns, api, "acme")


def test_a_trickled_answer_is_cut_at_the_calls_deadline(powerdns, powerdns_proxy):
    """PowerDNS's zone list relayed at 40 bytes a second: each read gets bytes in time, so
    only a deadline on the whole call ends it."""
    pdns = PowerDnsClient(powerdns_proxy.url, powerdns.api_key)
    powerdns_proxy.trickle("GET", r"/zones$")
    with pytest.raises(PowerDnsError) as err:
        pdns.list_zones(timeout=1.0)
    assert err.value.transient is True and "in time" in str(err.value)
    end = time.monotonic() + 30  # safety net: the proxy records the cut when its next write fails
    while not powerdns_proxy.trickled and time.monotonic() < end:
        time.sleep(0.05)
    assert powerdns_proxy.trickled and powerdns_proxy.trickled[0] < powerdns_proxy.trickle_length // 4
    assert isinstance(pdns.list_zones(timeout=5.0), list)


def test_the_client_turns_odd_answers_into_transient_errors(powerdns, powerdns_proxy):
    pdns = PowerDnsClient(powerdns_proxy.url, powerdns.api_key)
    for kind, (body, content_type) in sorted(ODD_ANSWERS.items()):
        for call, path in ((pdns.list_zones, r"/zones$"), (lambda: pdns.get_zone(POOL), READS["pool zone"])):
            powerdns_proxy.fail("GET", path, status=200, body=body, content_type=content_type)
            with pytest.raises(PowerDnsError) as err:
                call()
            assert err.value.transient is True, (kind, call)
    assert isinstance(pdns.list_zones(), list)  # the faults are used up; the real answers read


@pytest.mark.parametrize("method,path", [s for s in COMMIT_STEPS if s[0] != "GET"],
                         ids=[f"{m} {p}" for m, p in COMMIT_STEPS if m != "GET"])
def test_a_lost_answer_at_each_commit_step_converges_without_a_second_key(app, powerdns, powerdns_proxy, api,
                                                                          method, path):
    """PowerDNS did the step, the service never heard: the next pass must find it done
    (a zone that exists, a key that exists) rather than do it twice."""
    _ready_pool(app, powerdns_proxy)
    client = app.test_client()
    powerdns_proxy.lose_reply(method, path)
    answer = reserve_commit(client, "acme", status=202)
    assert answer.get_json()["state"] == "active"
    assert_no_lame_delegation(api)
    assert pass_now(app)
    assert_tenant_right(powerdns, api, "acme")
    assert key_posts(powerdns_proxy) == 1


RELEASE_STEPS = [("PATCH", PARENT), ("DELETE", TENANT)]


@pytest.mark.parametrize("fault", ["fail", "lose_reply"])
@pytest.mark.parametrize("method,path", RELEASE_STEPS, ids=[m for m, _ in RELEASE_STEPS])
def test_a_fault_at_each_release_step_never_leaves_a_lame_delegation(app, powerdns, powerdns_proxy, api, fault,
                                                                     method, path):
    client = app.test_client()
    reserve_commit(client, "acme")
    if fault == "fail":
        powerdns_proxy.fail(method, path, status=500, times=3)
    else:
        powerdns_proxy.lose_reply(method, path)
    release(client, "acme", status=202)
    assert_no_lame_delegation(api)
    powerdns_proxy.clear_faults()
    assert pass_now(app)
    assert api.zone(f"acme.{POOL}") is None
    assert_tenant_gone(powerdns.dns_server, POOL, f"acme.{POOL}", names=NAMES)


def test_powerdns_stopped_mid_commit_and_restarted_converges(app, powerdns, powerdns_proxy, api):
    _ready_pool(app, powerdns_proxy)
    client = app.test_client()
    token = reserve(client, "acme")
    held = powerdns_proxy.hold("PATCH", PARENT)
    answers = []
    worker = threading.Thread(target=lambda: answers.append(commit(client, "acme", token)))
    worker.start()
    assert held.arrived.wait(10)
    powerdns.stop()  # the zone and key are made; the delegation is not
    held.release()
    worker.join(20)
    assert answers and answers[0].status_code == 202
    powerdns.start()
    assert_no_lame_delegation(api)
    assert pass_now(app)
    assert_tenant_right(powerdns, api, "acme")
    assert key_posts(powerdns_proxy) == 1


def test_a_process_killed_between_steps_leaves_one_key(db_url, fake, powerdns, powerdns_proxy, api, tmp_path):
    """gunicorn killed while its key POST is in flight; PowerDNS makes the key after the
    process is gone. The next process's pass finds it and makes no second one."""
    settings = pdns_settings(db_url, fake, powerdns_proxy.url, powerdns.api_key)
    env = {"PDM_PDNS_BASE_URL": powerdns_proxy.url, "PDM_PDNS_API_KEY": powerdns.api_key,
           "PDM_NAMESERVERS": ",".join(NAMESERVERS), "PDM_RUN_JOBS": "false"}
    with Gunicorn(db_url, fake, log_path=str(tmp_path / "gunicorn.log"), **env) as server:
        api_root = f"{server.url}/api/v1/pool/{POOL}"
        token = requests.post(f"{api_root}/reserve", json={"subdomain": "acme"}, timeout=10).json()[
            "reservationToken"]
        held = powerdns_proxy.hold("POST", r"/acme\.[^/]*/cryptokeys$")
        outcome = []

        def committing():
            try:
                outcome.append(requests.post(f"{api_root}/commit", json={
                    "subdomain": "acme", "reservationToken": token, "loadBalancerIP": LB}, timeout=30))
            except requests.ConnectionError as exc:
                outcome.append(exc)

        worker = threading.Thread(target=committing, daemon=True)
        worker.start()
        assert held.arrived.wait(20), server.output()
        server.kill()
    held.release()  # PowerDNS gets the key POST after all
    worker.join(30)
    assert outcome and isinstance(outcome[0], requests.ConnectionError)  # the process died mid-commit
    deadline = time.monotonic() + 20
    while key_posts(powerdns_proxy) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)  # the proxy forwards the held POST on its own thread
    assert len(api.keys(f"acme.{POOL}")) == 1
    app = create_app(settings)
    try:
        assert pass_now(app)
        assert_tenant_right(powerdns, api, "acme")
        assert key_posts(powerdns_proxy) == 1
    finally:
        app.extensions["pdm"].engine.dispose()


# -- drift and reconcile -------------------------------------------------------------------------


def test_drift_and_reconcile_cover_records_delegations_ds_and_orphan_zones(app, powerdns, api):
    client = app.test_client()
    reserve_commit(client, "acme")
    reserve_commit(client, "beta", ip=OTHER_LB)
    reserve_commit(client, "gamma")
    # By hand: a record gone and one wrong, a stale DS, a missing delegation, and a zone
    # the service made for a name that no longer has an allocation.
    api.patch(f"acme.{POOL}", [
        {"name": f"console.acme.{POOL}.", "type": "A", "changetype": "DELETE"},
        {"name": f"gitea.acme.{POOL}.", "type": "A", "ttl": 300, "changetype": "REPLACE",
         "records": [{"content": "192.0.2.99", "disabled": False}]}])
    api.patch(POOL, [{"name": f"beta.{POOL}.", "type": "DS", "ttl": 3600, "changetype": "REPLACE",
                      "records": [{"content": "11111 13 2 " + "cd" * 32, "disabled": False}]},
                     {"name": f"gamma.{POOL}.", "type": "DS", "changetype": "DELETE"},
                     {"name": f"gamma.{POOL}.", "type": "NS", "changetype": "DELETE"}])
    pdm = app.extensions["pdm"]
    with pdm.engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(text("DELETE FROM pool_allocations WHERE subdomain = 'gamma'"))

    report = client.get(f"/api/v1/pool/{POOL}/drift").get_json()
    by_name = {n["subdomain"]: n for n in report["names"]}
    assert report["clean"] is False
    assert by_name["acme"]["missing"] == ["console.acme"]
    assert by_name["acme"]["wrongAddress"] == [{"host": "gitea.acme", "found": ["192.0.2.99"], "expected": LB}]
    assert [w["host"] for w in by_name["beta"]["wrongAddress"]] == ["DS beta"]
    assert by_name["gamma"]["state"] is None and by_name["gamma"]["orphans"] == [f"zone gamma.{POOL}."]

    result = pdm.operators.reconcile(POOL, apply=True, force=False, caller="test")
    assert result.applied and result.after.clean, result.after
    assert_tenant_right(powerdns, api, "acme")
    assert_tenant_right(powerdns, api, "beta", OTHER_LB)
    assert api.zone(f"gamma.{POOL}") is None
    actions = {e["action"] for e in client.get(f"/api/v1/pool/{POOL}/history").get_json()["events"]}
    assert {"drift-repaired", "reconcile"} <= actions


def test_a_drift_report_reads_beside_a_pass_without_waiting_for_the_lock(app, powerdns, api):
    """A drift of 10,000 tenants reads for minutes: on PowerDNS it takes no lock, so it
    neither waits for a pass nor holds commits back."""
    client = app.test_client()
    reserve_commit(client, "acme")
    api.patch(f"acme.{POOL}", [{"name": f"api.acme.{POOL}.", "type": "A", "changetype": "DELETE"}])
    lock = app.extensions["pdm"].publisher.backend(POOL).lock
    assert lock.acquire(timeout=5)  # as a pass would hold it
    try:
        report = client.get(f"/api/v1/pool/{POOL}/drift")
        assert report.status_code == 200, report.get_json()
        assert report.get_json()["names"] == [
            {"subdomain": "acme", "state": "active", "missing": ["api.acme"], "wrongAddress": [], "orphans": [],
             "foreign": []}]
        shown = app.test_cli_runner().invoke(cli, ["drift", POOL], prog_name="pool-domain-manager")
        assert shown.exit_code == 1 and "api.acme" in shown.output, shown.output  # 1: there is drift
    finally:
        lock.release()


def test_the_resync_repairs_a_tenant_without_any_work(app, powerdns, api):
    client = app.test_client()
    reserve_commit(client, "acme")
    api.patch(f"acme.{POOL}", [{"name": f"api.acme.{POOL}.", "type": "A", "changetype": "DELETE"}])
    pdm = app.extensions["pdm"]
    assert pdm.publisher.publish(POOL, [], budget=None, verify=True)
    assert_tenant_right(powerdns, api, "acme")


def test_a_foreign_zone_under_the_pool_is_never_removed(app, powerdns, api):
    requests.post(f"{api.base}/zones", headers=api.headers, timeout=10, json={
        "name": f"mail.{POOL}.", "kind": "Native", "nameservers": ["ns1.example."]}).raise_for_status()
    client = app.test_client()
    reserve_commit(client, "acme")
    release(client, "acme")
    assert pass_now(app)
    assert api.zone(f"mail.{POOL}") is not None
    report = client.get(f"/api/v1/pool/{POOL}/drift").get_json()
    assert report["clean"] is True, report


# -- a commit costs what its change costs; a resync walks the pool in slices -----------------


def fill(client, n, prefix="t"):
    names = [f"{prefix}{i:02d}" for i in range(n)]
    for sub in names:
        reserve_commit(client, sub)
    return names


def rrset_names(calls):
    """The ``rrset_name`` each filtered read of the pool zone asked for."""
    return sorted(parse_qs(c.query)["rrset_name"][0] for c in calls
                  if c.method == "GET" and c.path.endswith(f"/zones/{POOL}.") and "rrset_name=" in c.query)


def test_a_commit_and_a_release_read_only_their_own_names(app, powerdns, powerdns_proxy, api):
    """What a pass reads grows with its work, not with the pool: the pool zone's records at
    the tenant's name (and its SOA), the tenant's own zone, and the table's rows of that
    name alone -- never the zone list nor the whole pool zone."""
    client = app.test_client()
    assert pass_now(app)
    fill(client, 6)
    backend = app.extensions["pdm"].publisher.backend(POOL)
    snaps = []
    converge = backend.converge
    backend.converge = lambda pool, snap, io, **kw: snaps.append(snap) or converge(pool, snap, io, **kw)
    for sub, step in (("newco", lambda: reserve_commit(client, "newco")), ("t03", lambda: release(client, "t03"))):
        powerdns_proxy.reset_calls()
        snaps.clear()
        step()
        gets = [c for c in powerdns_proxy.calls if c.method == "GET"]
        assert not [c for c in gets if c.path.endswith("/zones")], gets  # no zone list
        assert all("rrset_name=" in c.query for c in gets if c.path.endswith(f"/zones/{POOL}.")), gets
        assert rrset_names(gets) == sorted([f"{POOL}.", f"{sub}.{POOL}."])
        tenant_zones = {c.path.split("/zones/")[1].split("/")[0] for c in gets} - {f"{POOL}."}
        assert tenant_zones <= {f"{sub}.{POOL}."}, tenant_zones
        (snap,) = snaps
        assert snap.scope == {sub} and set(snap.active) <= {sub} and snap.owned <= {sub}
    assert_tenant_right(powerdns, api, "newco")
    assert_tenant_gone(powerdns.dns_server, POOL, f"t03.{POOL}")
    for sub in ("t00", "t05"):
        assert_tenant_right(powerdns, api, sub)


def test_a_server_that_does_not_filter_gets_the_same_answer_at_the_old_cost(app, powerdns, powerdns_proxy, api,
                                                                             caplog):
    """A PowerDNS before 4.7 knows no ``rrset_name``: it sends the whole pool zone, which
    the client filters, and the pass reads it once, not once per name."""
    client = app.test_client()
    assert pass_now(app)
    fill(client, 3)
    powerdns_proxy.drop_queries = True
    reserve_commit(client, "newco")
    powerdns_proxy.reset_calls()
    release(client, "t01")
    pool_reads = [c for c in powerdns_proxy.calls if c.method == "GET" and c.path.endswith(f"/zones/{POOL}.")]
    assert len(pool_reads) == 1, pool_reads
    assert "more than was asked" in caplog.text
    assert_tenant_right(powerdns, api, "newco")
    assert_tenant_gone(powerdns.dns_server, POOL, f"t01.{POOL}")
    for sub in ("t00", "t02"):
        assert_tenant_right(powerdns, api, sub)
    assert client.get(f"/api/v1/pool/{POOL}/drift").get_json()["clean"] is True


class Slices:
    """Counts a resync's slices: each is a look at a few names without the lock, and a
    pass that takes the lock and lets go of it if something is to change.
    ``between(n, fn)`` runs ``fn`` after the ``n``-th slice, lock free."""

    def __init__(self, publisher):
        self.publisher, self.scopes, self.hooks = publisher, [], {}
        self._slice = publisher._slice
        publisher._slice = self

    def __call__(self, backend, pool, zone, names, *args, **kw):
        done = self._slice(backend, pool, zone, names, *args, **kw)
        self.scopes.append(names)
        hook = self.hooks.pop(len(self.scopes), None)
        if hook is not None:
            hook()
        return done

    def between(self, n, fn):
        self.hooks[n] = fn


def sliced_pool(app, tenants):
    """A pool of ``tenants`` committed tenants, resynced two names a slice."""
    pdm = app.extensions["pdm"]
    pdm.publisher.resync_slice = 2
    client = app.test_client()
    assert pass_now(app)
    fill(client, tenants)
    return pdm, client


def pool_zone(app):
    with app.extensions["pdm"].publisher.uow() as tx:
        return tx.pool_zone(POOL)


def test_a_resync_lets_commits_in_between_its_slices(app, powerdns, api):
    pdm, client = sliced_pool(app, 7)
    api.patch(f"t05.{POOL}", [{"name": f"console.t05.{POOL}.", "type": "A", "changetype": "DELETE"}])
    slices = Slices(pdm.publisher)
    answers = []
    slices.between(2, lambda: answers.append(commit(client, "mid", reserve(client, "mid")).status_code))
    assert pass_now(app)  # an operator's `dns retry`: a whole resync, in slices
    assert answers == [200]  # the lock was free between two slices: the commit ran its own pass
    # the survey's names (none stray), then the table's names two by two, "mid" among them
    # the survey's names (none stray), then the table's, two by two ("mid" sorts before
    # where the resync had come to: its own commit checked it)
    assert [sorted(scope) for scope in slices.scopes] == [[], ["t00", "t01"], ["t02", "t03"], ["t04", "t05"],
                                                          ["t06"]]
    assert api.rrset(f"t05.{POOL}", f"console.t05.{POOL}", "A") == [LB]
    assert_tenant_right(powerdns, api, "mid")


def test_a_resync_checks_right_slices_beside_a_held_lock_and_repairs_only_under_it(app, powerdns, api):
    """Most slices find their names as the table says: they are looked at without the
    lock, so a resync of 10,000 tenants does not hold commits back; a slice with
    something to change waits for the lock before it writes."""
    pdm, _ = sliced_pool(app, 5)
    lock = pdm.publisher.backend(POOL).lock
    assert lock.acquire(timeout=5)  # as a commit's pass would hold it
    try:
        assert pdm.publisher.resync(POOL, 5.0, restart=True) is True  # every slice looked right
        zone = pool_zone(app)
        assert (zone.resync_checked, zone.resync_started_at) == (5, None) and zone.resynced_at is not None
        api.patch(f"t03.{POOL}", [{"name": f"api.t03.{POOL}.", "type": "A", "changetype": "DELETE"}])
        assert pdm.publisher.resync(POOL, 1.0, restart=True) is False  # t03's slice waited for the lock
        assert api.rrset(f"t03.{POOL}", f"api.t03.{POOL}", "A") == []  # and wrote nothing without it
        assert pool_zone(app).resync_checked == 2  # t00 and t01 looked right; it goes on from t02
    finally:
        lock.release()
    assert pdm.publisher.resync(POOL, None) is True
    assert api.rrset(f"t03.{POOL}", f"api.t03.{POOL}", "A") == [LB]
    assert pool_zone(app).resync_checked == 5


def test_a_hand_deleted_record_is_repaired_by_the_sliced_resync_while_commits_keep_arriving(make_app, powerdns, api):
    """A commit every second must not keep the resync from coming due (each commit's pass
    reads only its own names), and the resync, in slices, finds the record an operator
    deleted by hand within about one interval."""
    app = make_app(dns_resync_interval=3)
    pdm, _ = sliced_pool(app, 8)
    slices = Slices(pdm.publisher)
    api.patch(f"t06.{POOL}", [{"name": f"api.t06.{POOL}.", "type": "A", "changetype": "DELETE"}])
    stop, answers = threading.Event(), []

    def commits():
        caller = app.test_client()
        for i in range(1000):
            answers.append(commit(caller, f"c{i:03d}", reserve(caller, f"c{i:03d}")).status_code)
            if stop.wait(1.0):
                return

    arriving = threading.Thread(target=commits)
    arriving.start()
    try:
        end = time.monotonic() + 60  # a safety net: with commits resetting its schedule, it never ran
        while not api.rrset(f"t06.{POOL}", f"api.t06.{POOL}", "A") and time.monotonic() < end:
            pdm.jobs.retry_dns()  # the leader's tick
            time.sleep(0.25)
    finally:
        stop.set()
        arriving.join()
    assert api.rrset(f"t06.{POOL}", f"api.t06.{POOL}", "A") == [LB]
    assert len(answers) >= 2 and set(answers) == {200}, answers
    assert len(slices.scopes) >= 5  # eight tenants and more, two names a slice
    assert_tenant_right(powerdns, api, "t06")


def test_a_resync_under_way_shows_how_far_it_has_come(app, powerdns, api):
    pdm, client = sliced_pool(app, 5)
    # The leader's tick runs slices for a few seconds; this one stops after each slice.
    assert pdm.publisher.resync(POOL, None, restart=True, time_limit=0) is False  # the survey's slice
    assert pdm.publisher.resync(POOL, None, time_limit=0) is False  # two names
    (status,) = [p for p in client.get("/api/v1/pools").get_json()["pools"] if p["poolDomain"] == POOL]
    resync = status["resync"]
    assert (resync["checked"], resync["total"]) == (2, 5) and resync["startedAt"] is not None, resync
    metrics = client.get("/metrics").get_data(as_text=True)
    assert f'pdm_dns_resync_names{{of="checked",pool="{POOL}"}} 2.0' in metrics
    assert f'pdm_dns_resync_names{{of="total",pool="{POOL}"}} 5.0' in metrics
    shown = app.test_cli_runner().invoke(cli, ["pools"], prog_name="pool-domain-manager")
    assert shown.exit_code == 0 and "2/5 since" in shown.output, shown.output
    assert pdm.publisher.resync(POOL, None) is True  # the rest, to the end
    (status,) = [p for p in client.get("/api/v1/pools").get_json()["pools"] if p["poolDomain"] == POOL]
    assert status["resync"]["startedAt"] is None and status["resync"]["lastAt"] is not None
    assert "pdm_dns_resync_names{" not in client.get("/metrics").get_data(as_text=True)


# -- secrets ------------------------------------------------------------------------------------


def test_private_keys_never_reach_a_log(app, powerdns, api, caplog):
    caplog.set_level(logging.DEBUG)
    client = app.test_client()
    reserve_commit(client, "acme")
    # The server does hand private keys out (a key's own URL) -- the service never keeps one.
    key_id = api.keys(f"acme.{POOL}")[0]["id"]
    assert "Private-key-format" in api.get(f"/zones/acme.{POOL}./cryptokeys/{key_id}").json()["privatekey"]
    assert "privatekey" not in caplog.text and "Private-key-format" not in caplog.text
    assert powerdns.api_key not in caplog.text

    made = PowerDnsClient(powerdns.api_url, powerdns.api_key).add_key(f"acme.{POOL}")
    assert "privatekey" not in made and made["algorithm"] == "ECDSAP256SHA256"



def test_the_previous_services_zones_are_taken_over(app, powerdns, api):
    """What the previous service left (powerdns.md §5): a pool zone it made, a tenant zone
    with a KSK and a ZSK and an NS delegation but no DS -- signing that protected nothing.
    The first pass keeps one key, publishes its DS and the chain forms."""
    headers = api.headers
    for zone in (POOL, f"acme.{POOL}"):
        requests.post(f"{api.base}/zones", headers=headers, timeout=10, json={
            "name": zone + ".", "kind": "Native", "nameservers": [n + "." for n in NAMESERVERS]}).raise_for_status()
        requests.put(f"{api.base}/zones/{zone}.", headers=headers, timeout=10, json={
            "dnssec": True, "soa_edit": "INCEPTION-EPOCH", "soa_edit_api": "INCEPTION-EPOCH"}).raise_for_status()
    requests.post(f"{api.base}/zones/acme.{POOL}./cryptokeys", headers=headers, timeout=10, json={
        "keytype": "zsk", "active": True, "algorithm": "ecdsa256"}).raise_for_status()
    api.patch(f"acme.{POOL}", [{"name": f"console.acme.{POOL}.", "type": "A", "ttl": 300, "changetype": "REPLACE",
                                "records": [{"content": LB, "disabled": False}]}])
    api.patch(POOL, [{"name": f"acme.{POOL}.", "type": "NS", "ttl": 3600, "changetype": "REPLACE",
                      "records": [{"content": n + ".", "disabled": False} for n in NAMESERVERS]}])
    assert len(api.keys(f"acme.{POOL}")) == 2
    # The previous service's table, adopted in place: acme is active, carried over.
    pdm = app.extensions["pdm"]
    from datetime import datetime, timezone

    from sqlalchemy import text

    now = datetime.now(timezone.utc)
    with pdm.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO pool_allocations (pool_domain, subdomain, state, reserved_at, reservation_token, "
            "load_balancer_ip, created_by, updated_at, carried_over) "
            "VALUES (:p, 'acme', 'active', :now, :t, :ip, 'old', :now, true)"),
            {"p": POOL, "now": now, "t": "0" * 64, "ip": LB})

    assert pdm.publisher.publish_due(pdm.settings.managed_domains) >= 1
    assert_tenant_right(powerdns, api, "acme")
    assert api.zone(f"acme.{POOL}")["account"] == "pool-domain-manager"
    # INCEPTION-EPOCH froze their serials on API writes; both move again.
    assert [api.zone(z)["soa_edit_api"] for z in (POOL, f"acme.{POOL}")] == ["DEFAULT", "DEFAULT"]
