"""The pure planning of pools on PowerDNS (pdm_app.dns.powerdns.plan): what a pass reads,
what it decides to write, and what a drift report says. No server."""
from __future__ import annotations

import copy
from dataclasses import replace

import pytest

from pdm_app.dns.backend import NameDrift, WrongAddress
from pdm_app.domain import tenant_hosts
from pdm_app.dns.powerdns import plan
from pdm_app.dns.powerdns.backend import adopted_names
from pdm_app.dns.powerdns.plan import (ACCOUNT, DELEGATION_TTL, NEGATIVE_TTL, RECORD_TTL, SOA_TTL, Delegation, Key,
                                       ParentZone, PoolDns, TenantZone)

POOL = "omani.works"
NS = ("ns1.openova.io.", "ns2.openova.io.")
RECORDS = ("@", "*", "console", "api")
IP = "203.0.113.10"
OTHER_IP = "198.51.100.7"
ECDSA = "ECDSAP256SHA256"


def ds_line(key_id: int, digest: str = "ab") -> str:
    return f"{key_id} 13 2 {digest * 32}"


def key(key_id: int, *, flags: int = 257, algorithm: str = ECDSA, active: bool = True) -> Key:
    return Key(key_id, flags, algorithm, active, (ds_line(key_id),))


def tenant_zone(sub: str = "acme", ip: str = IP, **changes) -> TenantZone:
    """A tenant zone exactly as the service wants it; ``changes`` break it."""
    zone = TenantZone(sub, ACCOUNT, {h: ((ip,), RECORD_TTL) for h in tenant_hosts(sub, RECORDS)}, NS, (key(1),),
                      True)
    return replace(zone, **changes)


def good_delegation(zone: TenantZone) -> Delegation:
    return Delegation(NS, plan.kept_key(zone.keys).ds)


def pool_view(tenants: dict[str, TenantZone], *, delegations: dict[str, Delegation] | None = None,
              zones: dict[str, str] | None = None) -> PoolDns:
    """A pool whose zone delegates every tenant given (correctly, unless ``delegations``
    says otherwise)."""
    if delegations is None:
        delegations = {sub: good_delegation(z) for sub, z in tenants.items()}
    if zones is None:
        zones = {sub: z.account for sub, z in tenants.items()}
    return PoolDns(POOL, ParentZone((key(100),), delegations, True), zones, dict(tenants))


def fqdn(host: str) -> str:
    return f"{host}.{POOL}."


def a_replace(host: str, ip: str = IP) -> dict:
    return {"name": fqdn(host), "type": "A", "ttl": RECORD_TTL, "changetype": "REPLACE",
            "records": [{"content": ip, "disabled": False}]}


# -- keys ----------------------------------------------------------------------------------


def test_sha256_ds_keeps_digest_type_2_only_lower_cased_and_sorted():
    lines = ["60225 13 1 8E5F824554C2C70C870217BC9CC132493853D5C1",
             "60225 13 2 4402ABCDEF",
             "60225 13 4 DA11A3F8B66396592EBC1F1DCE920C05",
             "11111 13 2 00ff",
             "not a ds line",
             "1 13 2"]
    assert plan.sha256_ds(lines) == ("11111 13 2 00ff", "60225 13 2 4402abcdef")
    assert plan.sha256_ds(None) == ()
    assert plan.sha256_ds(["60225 13 1 8e5f"]) == ()


def test_key_from_api_reads_the_cryptokeys_reply():
    # As GET …/cryptokeys answers (4.7.3).
    item = {"active": True, "algorithm": ECDSA, "bits": 256, "dnskey": "257 3 13 rml96k…", "flags": 257, "id": 2,
            "keytype": "csk", "published": True, "type": "Cryptokey",
            "ds": ["42631 13 1 8e5f824554c2c70c870217bc9cc132493853d5c1",
                   "42631 13 2 39FF5CDE893C5C1F0F0D2BC172496A4847D707F615BF66EA7424B2427E4F9840",
                   "42631 13 4 da11a3f8b66396592ebc1f1dce920c05bbd9d0ce22b91c338b4e2dc18b02403ed09c46a87124111ecab9"]}
    k = plan.key_from_api(item)
    assert k == Key(2, 257, ECDSA, True,
                    ("42631 13 2 39ff5cde893c5c1f0f0d2bc172496a4847d707f615bf66ea7424b2427e4f9840",))
    assert k.signs
    assert not plan.key_from_api({**item, "active": False}).signs


def test_kept_key_is_the_oldest_active_257_ecdsa_key():
    keys = [key(7), key(3, active=False), key(2, flags=256), key(1, algorithm="ED25519"), key(5), key(9)]
    assert plan.kept_key(keys).id == 5


@pytest.mark.parametrize("keys", [
    [],
    [key(3, active=False)],
    [key(2, flags=256)],
    [key(1, algorithm="ED25519")],
    [key(1, algorithm="ED25519"), key(2, flags=256), key(3, active=False)],
])
def test_no_key_is_kept_when_none_signs(keys):
    assert plan.kept_key(keys) is None


def test_extra_keys_are_every_key_but_the_kept_one():
    keys = [key(7), key(3, active=False), key(2, flags=256), key(5)]
    assert [k.id for k in plan.extra_keys(keys)] == [7, 3, 2]
    assert plan.extra_keys([key(5)]) == []
    # With no key to keep nothing is surplus: the zone is keyed first, then cleaned.
    assert plan.extra_keys([key(3, active=False), key(2, flags=256)]) == []


# -- the tenant zone ---------------------------------------------------------------------


def test_a_missing_zone_is_created_keyed_and_written_in_one_patch():
    p = plan.plan_tenant(POOL, "acme", IP, None, RECORDS, NS)
    assert p.create and p.add_key and p.writes
    assert p.fields == {}
    # The records' PATCH rectifies the signed zone: no separate rectify.
    assert not p.rectify
    assert sorted(p.rrsets, key=lambda r: r["name"]) == sorted(
        [a_replace(h) for h in ("acme", "*.acme", "console.acme", "api.acme")], key=lambda r: r["name"])
    assert len({r["name"] for r in p.rrsets}) == len(RECORDS)


def test_a_new_zone_says_it_is_the_services_and_has_a_short_negative_ttl():
    body = plan.new_zone_body("acme.omani.works", NS)
    assert body["name"] == "acme.omani.works."
    assert (body["kind"], body["account"], body["api_rectify"], body["soa_edit_api"]) == (
        "Native", ACCOUNT, True, "DEFAULT")
    assert body["nameservers"] == list(NS)
    [soa] = body["rrsets"]
    assert "changetype" not in soa  # a create body takes none
    assert (soa["name"], soa["type"], soa["ttl"]) == ("acme.omani.works.", "SOA", SOA_TTL)
    [record] = soa["records"]
    fields = record["content"].split()
    assert fields[:2] == ["ns1.openova.io.", "hostmaster.acme.omani.works."]
    assert int(fields[-1]) == NEGATIVE_TTL


def test_a_zone_that_is_right_gets_no_writes():
    p = plan.plan_tenant(POOL, "acme", IP, tenant_zone(), RECORDS, NS)
    assert not p.writes
    assert (p.rrsets, p.fields, p.changes) == ([], {}, [])
    # The nameservers' order is not a difference.
    assert not plan.plan_tenant(POOL, "acme", IP, tenant_zone(), RECORDS, tuple(reversed(NS))).writes


def test_only_the_wrong_missing_and_extra_a_records_are_written():
    zone = tenant_zone()
    a = dict(zone.a_records)
    a["console.acme"] = ((OTHER_IP,), RECORD_TTL)  # wrong address
    del a["api.acme"]  # missing
    a["old.acme"] = ((IP,), RECORD_TTL)  # no longer a record name
    a["*.acme"] = ((IP,), 3600)  # right address, wrong TTL
    p = plan.plan_tenant(POOL, "acme", IP, replace(zone, a_records=a), RECORDS, NS)
    assert not (p.create or p.add_key or p.rectify or p.fields)
    assert p.rrsets == [a_replace("*.acme"), a_replace("api.acme"), a_replace("console.acme"),
                        {"name": fqdn("old.acme"), "type": "A", "changetype": "DELETE"}]
    assert p.changes == ["records: *.acme, api.acme, console.acme, old.acme"]


def test_a_new_address_replaces_every_record():
    p = plan.plan_tenant(POOL, "acme", OTHER_IP, tenant_zone(), RECORDS, NS)
    assert sorted(r["name"] for r in p.rrsets) == sorted(fqdn(h) for h in tenant_hosts("acme", RECORDS))
    assert all(r["records"] == [{"content": OTHER_IP, "disabled": False}] for r in p.rrsets)


def test_a_zone_without_a_key_gets_one_and_a_rectify():
    p = plan.plan_tenant(POOL, "acme", IP, tenant_zone(keys=()), RECORDS, NS)
    assert p.add_key and p.rectify and not p.create
    assert p.rrsets == []
    assert p.changes == ["key created"]


def test_a_zone_with_only_keys_that_do_not_count_gets_one():
    keys = (key(1, flags=256), key(2, active=False), key(3, algorithm="ED25519"))
    p = plan.plan_tenant(POOL, "acme", IP, tenant_zone(keys=keys), RECORDS, NS)
    assert p.add_key and p.rectify


def test_a_key_added_before_a_records_write_needs_no_separate_rectify():
    a = dict(tenant_zone().a_records)
    a["console.acme"] = ((OTHER_IP,), RECORD_TTL)
    p = plan.plan_tenant(POOL, "acme", IP, tenant_zone(keys=(), a_records=a), RECORDS, NS)
    assert p.add_key and not p.rectify
    assert p.rrsets == [a_replace("console.acme")]


@pytest.mark.parametrize("changes, fields", [
    ({"account": "someone-else"}, {"account": ACCOUNT}),
    ({"account": ""}, {"account": ACCOUNT}),
    ({"api_rectify": False}, {"api_rectify": True}),
    ({"account": "", "api_rectify": False}, {"account": ACCOUNT, "api_rectify": True}),
])
def test_zone_settings_are_put_right(changes, fields):
    p = plan.plan_tenant(POOL, "acme", IP, tenant_zone(**changes), RECORDS, NS)
    assert p.fields == fields
    assert p.writes and not (p.create or p.add_key or p.rectify or p.rrsets)
    assert p.changes == ["zone settings"]


def test_wrong_apex_ns_is_replaced():
    p = plan.plan_tenant(POOL, "acme", IP, tenant_zone(nameservers=("ns1.elsewhere.example.",)), RECORDS, NS)
    assert p.rrsets == [{"name": "acme.omani.works.", "type": "NS", "ttl": DELEGATION_TTL, "changetype": "REPLACE",
                         "records": [{"content": n, "disabled": False} for n in NS]}]
    assert p.changes == ["zone NS"]


def test_a_missing_soa_is_written():
    p = plan.plan_tenant(POOL, "acme", IP, tenant_zone(has_soa=False), RECORDS, NS)
    [soa] = p.rrsets
    assert (soa["name"], soa["type"], soa["ttl"], soa["changetype"]) == ("acme.omani.works.", "SOA", SOA_TTL,
                                                                          "REPLACE")
    assert soa["records"][0]["content"].startswith("ns1.openova.io. hostmaster.acme.omani.works. ")
    assert p.changes == ["zone SOA"]


# -- the pool's zone ---------------------------------------------------------------------


def test_a_delegation_is_ns_and_ds_replaced_in_one_write():
    ds = (ds_line(4),)
    assert plan.delegation_rrsets(POOL, "acme", Delegation(NS, ds)) == [
        {"name": "acme.omani.works.", "type": "NS", "ttl": DELEGATION_TTL, "changetype": "REPLACE",
         "records": [{"content": n, "disabled": False} for n in NS]},
        {"name": "acme.omani.works.", "type": "DS", "ttl": DELEGATION_TTL, "changetype": "REPLACE",
         "records": [{"content": ds[0], "disabled": False}]},
    ]
    assert DELEGATION_TTL == 3600


def test_a_delegation_without_a_key_carries_no_ds():
    rrsets = plan.delegation_rrsets(POOL, "acme", Delegation(NS, ()))
    assert [(r["type"], r["changetype"]) for r in rrsets] == [("NS", "REPLACE"), ("DS", "DELETE")]


def test_a_removed_delegation_loses_its_ds_then_its_ns():
    assert plan.delegation_rrsets(POOL, "acme", None) == [
        {"name": "acme.omani.works.", "type": "DS", "changetype": "DELETE"},
        {"name": "acme.omani.works.", "type": "NS", "changetype": "DELETE"},
    ]


def removal_view() -> PoolDns:
    d = Delegation(NS, (ds_line(1),))
    return PoolDns(POOL, ParentZone((), {
        "live": d, "gone-owned": d, "adopted": d, "foreign": d, "bare": d, "live-adopted": d,
    }, True), {
        "live": ACCOUNT, "gone-account": ACCOUNT, "adopted": "", "foreign": "operator", "foreign-only": "operator",
        "live-adopted": ACCOUNT,
    })


def test_removals_are_the_services_names_that_are_not_active():
    active = {"live": IP, "live-adopted": IP}
    gone = plan.removals(removal_view(), active, owned={"live", "gone-owned"},
                         adopt=frozenset({"adopted", "live-adopted"}))
    # gone-owned: it delegated it; gone-account: the zone says so; adopted: an operator.
    # Never an active name, never a foreign zone or bare delegation it does not own.
    assert gone == ["adopted", "gone-account", "gone-owned"]


def test_removals_without_a_parent_zone_look_at_the_zones():
    view = removal_view()
    view.parent = None
    assert plan.removals(view, {}, owned={"gone-owned"}, adopt=frozenset()) == ["gone-account", "live",
                                                                                "live-adopted"]


def test_nothing_is_removed_while_everything_is_active():
    view = removal_view()
    every = {sub: IP for sub in set(view.zones) | set(view.parent.delegations)}
    assert plan.removals(view, every, owned=set(every), adopt=frozenset(every)) == []


def test_to_read_is_the_work_and_the_tenants_with_something_missing():
    right = Delegation(NS, (ds_line(1),))
    view = PoolDns(POOL, ParentZone((), {
        "fine": right, "worked": right, "no-zone": right, "wrong-ns": Delegation(("ns9.example.net.",), right.ds),
        "no-ds": Delegation(NS, ()), "gone": right,
    }, True), {s: ACCOUNT for s in ("fine", "worked", "no-delegation", "wrong-ns", "no-ds", "gone")})
    active = {s: IP for s in ("fine", "worked", "no-zone", "no-delegation", "wrong-ns", "no-ds")}
    assert plan.to_read(view, active, {"worked"}, NS, everything=False) == [
        "no-delegation", "no-ds", "no-zone", "worked", "wrong-ns"]
    # The nameservers' order is not a difference.
    assert "fine" not in plan.to_read(view, active, set(), tuple(reversed(NS)), everything=False)
    # A resync reads every active tenant, and still no released one.
    assert plan.to_read(view, active, set(), NS, everything=True) == sorted(active)
    view.parent = None
    assert plan.to_read(view, {"fine": IP}, set(), NS, everything=False) == ["fine"]


# -- drift -------------------------------------------------------------------------------


def diff(view: PoolDns, active: dict[str, str], *, owned: set[str] = frozenset(), shaped: set[str] = frozenset(),
         states: dict[str, str] | None = None) -> list[NameDrift]:
    states = {sub: "active" for sub in active} if states is None else states
    return plan.diff_pool(view, states, active, RECORDS, NS, set(owned), set(shaped))


def test_a_correct_pool_has_no_drift():
    tenants = {"acme": tenant_zone("acme"), "beta": tenant_zone("beta", OTHER_IP, keys=(key(2),))}
    view = pool_view(tenants)
    assert diff(view, {"acme": IP, "beta": OTHER_IP}, owned={"acme", "beta"}) == []


def test_drift_reports_a_missing_zone_and_delegation():
    view = pool_view({}, delegations={}, zones={})
    assert diff(view, {"acme": IP}) == [
        NameDrift("acme", "active", missing=["zone acme.omani.works.", "NS acme", "DS acme"])]


def test_drift_reports_a_missing_key_and_leaves_the_ds_alone():
    zone = tenant_zone()
    view = pool_view({"acme": replace(zone, keys=())}, delegations={"acme": good_delegation(zone)})
    assert diff(view, {"acme": IP}) == [NameDrift("acme", "active", missing=["key acme.omani.works."])]


def test_drift_reports_surplus_keys():
    view = pool_view({"acme": tenant_zone(keys=(key(1), key(9), key(4, flags=256)))})
    assert diff(view, {"acme": IP}) == [
        NameDrift("acme", "active", orphans=["key 9 of acme.omani.works.", "key 4 of acme.omani.works."])]


def test_drift_reports_missing_wrong_and_extra_a_records():
    a = dict(tenant_zone().a_records)
    del a["api.acme"]
    a["console.acme"] = ((OTHER_IP,), RECORD_TTL)
    a["old.acme"] = ((IP,), RECORD_TTL)
    view = pool_view({"acme": tenant_zone(a_records=a)})
    assert diff(view, {"acme": IP}) == [NameDrift(
        "acme", "active", missing=["api.acme"], wrong=[WrongAddress("console.acme", [OTHER_IP], IP)],
        orphans=["old.acme"])]


def test_drift_reports_missing_and_wrong_ns():
    zone = tenant_zone()
    ds = good_delegation(zone).ds
    missing = pool_view({"acme": zone}, delegations={"acme": Delegation((), ds)})
    assert diff(missing, {"acme": IP}) == [NameDrift("acme", "active", missing=["NS acme"])]
    wrong = pool_view({"acme": zone}, delegations={"acme": Delegation(("ns9.example.net.",), ds)})
    assert diff(wrong, {"acme": IP}) == [NameDrift(
        "acme", "active", wrong=[WrongAddress("NS acme", ["ns9.example.net."], " ".join(NS))])]


def test_drift_reports_missing_and_stale_ds():
    zone = tenant_zone()
    missing = pool_view({"acme": zone}, delegations={"acme": Delegation(NS, ())})
    assert diff(missing, {"acme": IP}) == [NameDrift("acme", "active", missing=["DS acme"])]
    # The DS of a key the zone no longer has (the zone was re-keyed).
    stale = pool_view({"acme": zone}, delegations={"acme": Delegation(NS, (ds_line(77, "cd"),))})
    assert diff(stale, {"acme": IP}) == [NameDrift(
        "acme", "active", wrong=[WrongAddress("DS acme", [ds_line(77, "cd")], ds_line(1))])]


def test_drift_reports_what_released_names_left_behind():
    d = Delegation(NS, (ds_line(1),))
    view = pool_view({}, delegations={"gone": d, "foreign": d, "shaped": d},
                     zones={"gone": "", "by-account": ACCOUNT, "foreign": "operator", "shaped": "operator"})
    report = diff(view, {}, owned={"gone"}, shaped={"shaped"}, states={"by-account": "reserved"})
    assert report == [
        NameDrift("by-account", "reserved", orphans=["zone by-account.omani.works."]),
        NameDrift("gone", None, orphans=["delegation gone", "zone gone.omani.works."]),
        NameDrift("shaped", None, orphans=["delegation shaped", "zone shaped.omani.works."]),
    ]


def test_an_operator_adopts_the_names_of_reported_zones_and_delegations():
    view = pool_view({}, delegations={"gone": Delegation(NS, ())}, zones={"left": ACCOUNT})
    orphans = {o for name in diff(view, {}, owned={"gone"}) for o in name.orphans}
    assert adopted_names(frozenset(orphans)) == {"gone", "left"}
    # Keys and hosts are not names to remove: a pass cleans those up on its own.
    assert adopted_names(frozenset({"key 9 of acme.omani.works.", "console.acme", "acme",
                                    "zone beta.omani.works.", "delegation gamma"})) == {"beta", "gamma"}
    assert adopted_names(frozenset()) == frozenset()


# -- reading a zone ----------------------------------------------------------------------


def rrset(name: str, rtype: str, ttl: int, *contents: str, disabled: bool = False) -> dict:
    return {"comments": [], "name": name, "ttl": ttl, "type": rtype,
            "records": [{"content": c, "disabled": disabled} for c in contents]}


DS_ACME = "42631 13 2 39ff5cde893c5c1f0f0d2bc172496a4847d707f615bf66ea7424b2427e4f9840"
SOA_CONTENT = "ns1.openova.io. hostmaster.{} 2026113003 10800 3600 604800 60"
# GET /zones/omani.works. as PowerDNS 4.7.3 answers it (trimmed of nothing the code reads).
POOL_ZONE = {
    "account": ACCOUNT, "api_rectify": True, "catalog": "", "dnssec": True, "edited_serial": 2026113003,
    "id": "omani.works.", "kind": "Native", "last_check": 0, "master_tsig_key_ids": [], "masters": [],
    "name": "omani.works.", "notified_serial": 0, "nsec3narrow": False, "nsec3param": "", "serial": 2026113003,
    "slave_tsig_key_ids": [], "soa_edit": "", "soa_edit_api": "DEFAULT",
    "url": "/api/v1/servers/localhost/zones/omani.works.",
    "rrsets": [
        rrset("www.omani.works.", "CNAME", 300, "omani.works."),
        rrset("legacy.omani.works.", "A", 300, "203.0.113.9"),
        rrset("acme.omani.works.", "DS", 3600, DS_ACME.upper()),
        rrset("acme.omani.works.", "NS", 3600, "ns2.openova.io.", "NS1.openova.io."),
        rrset("beta.omani.works.", "NS", 3600, "ns1.openova.io."),
        # Deeper than one label: no tenant's delegation.
        rrset("x.deep.omani.works.", "NS", 3600, "ns1.example.net."),
        rrset("omani.works.", "SOA", 300, SOA_CONTENT.format("omani.works.")),
        rrset("omani.works.", "NS", 3600, "ns1.openova.io.", "ns2.openova.io."),
    ],
}
TENANT_ZONE = {
    **{k: v for k, v in POOL_ZONE.items() if k != "rrsets"},
    "id": "acme.omani.works.", "name": "acme.omani.works.",
    "url": "/api/v1/servers/localhost/zones/acme.omani.works.",
    "rrsets": [
        rrset("console.acme.omani.works.", "A", 300, IP),
        rrset("*.acme.omani.works.", "A", 300, IP),
        rrset("acme.omani.works.", "SOA", 300, SOA_CONTENT.format("acme.omani.works.")),
        rrset("acme.omani.works.", "NS", 3600, "ns1.openova.io.", "ns2.openova.io."),
        rrset("acme.omani.works.", "A", 300, IP),
        rrset("api.acme.omani.works.", "A", 60, OTHER_IP, IP),
        rrset("off.acme.omani.works.", "A", 300, OTHER_IP, disabled=True),
        rrset("_acme-challenge.acme.omani.works.", "TXT", 60, '"token"'),
    ],
}


def test_parse_a_pool_zone():
    a_records, apex_ns, children, has_soa = plan.parse_zone_rrsets(POOL, POOL_ZONE)
    assert apex_ns == NS
    assert has_soa
    assert children == {"acme": {"DS": (DS_ACME,), "NS": NS},
                        "beta": {"NS": ("ns1.openova.io.",)}}
    assert a_records == {"legacy": (("203.0.113.9",), 300)}


def test_parse_a_tenant_zone():
    a_records, apex_ns, children, has_soa = plan.parse_zone_rrsets(POOL, TENANT_ZONE)
    assert a_records == {
        "acme": ((IP,), 300), "*.acme": ((IP,), 300), "console.acme": ((IP,), 300),
        "api.acme": (tuple(sorted((OTHER_IP, IP))), 60),
        "off.acme": ((), 300),  # only disabled records: none served
    }
    assert apex_ns == NS and has_soa and children == {}


def test_parse_a_zone_without_soa_and_names_without_the_dot():
    zone = copy.deepcopy(TENANT_ZONE)
    zone["name"] = "acme.omani.works"
    zone["rrsets"] = [r for r in zone["rrsets"] if r["type"] != "SOA"]
    for r in zone["rrsets"]:
        r["name"] = r["name"].rstrip(".")
    a_records, apex_ns, _, has_soa = plan.parse_zone_rrsets("omani.works.", zone)
    assert not has_soa
    assert apex_ns == NS
    assert set(a_records) == {"acme", "*.acme", "console.acme", "api.acme", "off.acme"}


def test_a_parsed_zone_that_is_right_plans_no_writes():
    # Read and plan agree: the zone as PowerDNS holds it, read back, needs nothing.
    a_records, apex_ns, _, has_soa = plan.parse_zone_rrsets(POOL, TENANT_ZONE)
    a_records = {h: v for h, v in a_records.items() if h in tenant_hosts("acme", RECORDS)}
    a_records["api.acme"] = ((IP,), RECORD_TTL)
    zone = TenantZone("acme", TENANT_ZONE["account"], a_records, apex_ns, (key(1),), TENANT_ZONE["api_rectify"],
                      has_soa)
    assert not plan.plan_tenant(POOL, "acme", IP, zone, RECORDS, NS).writes
