"""DNS planning and the retry policy as pure functions: what is kept, repaired, removed,
refused, reported as drift."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pdm_app.dns.errors import LOST_FOREIGN, TOO_LARGE, ZoneBlocked
from pdm_app.dns.policy import (MAX_SAFE_DELETE_PCENT, MAX_SAFE_UPDATE_PCENT, MIN_EXISTING_RECORDS, late_write_reads,
                                next_late_write_read, retry_delay, unsafe_plan)
from pdm_app.dns.backend import NameDrift, WrongAddress
from pdm_app.dns.dynadot.plan import diff_zone, find_orphans, plan_zone
from pdm_app.dns.ownership import DNS_CONFLICT, POOL_FULL
from pdm_app.dns.zone import Record, Zone

NAMES = ("*", "console", "gitea", "harbor", "admin", "api")
BASE = [
    Record("", "a", "185.53.179.128"),
    Record("", "mx", "mx.example", "10"),
    Record("", "txt", "v=spf1 -all"),
    Record("www", "cname", "omani.works"),
    Record("console.beta", "txt", "not ours: a TXT at a live tenant's host"),
]


def tenant(sub, ip, names=NAMES):
    return [Record(f"{n}.{sub}", "a", ip) for n in names]


def hosts(*subs, names=NAMES):
    """Every host of ``subs``: what the service records as its own when it publishes them."""
    return {f"{n}.{sub}" for sub in subs for n in names}


def plan(records, active, owned=(), last_foreign=None, names=NAMES, **kw):
    return plan_zone(Zone("p.io", list(records), ttl=600), active, names, set(owned), last_foreign, **kw)


def test_publish_adds_six_and_keeps_everything_else():
    p = plan(BASE, {"acme": "1.2.3.4"})
    assert p.changed
    assert p.zone.ttl == 600  # the zone's TTL is carried, not replaced
    assert p.zone.records == BASE + tenant("acme", "1.2.3.4")
    assert p.foreign == tuple(BASE) and p.foreign_subhost_records == 2
    assert p.owned == {f"{n}.acme" for n in NAMES}
    assert p.touched == {"acme": sorted(f"{n}.acme" for n in NAMES)}


def test_remove_takes_exactly_the_owned_a_records():
    zone = BASE + tenant("acme", "1.2.3.4") + tenant("beta", "5.6.7.8")
    p = plan(zone, {"beta": "5.6.7.8"}, owned={r.host for r in tenant("acme", "x")})
    assert p.zone.records == BASE + tenant("beta", "5.6.7.8")
    assert list(p.touched) == ["acme"]


def test_republish_moves_the_address_and_drops_duplicates():
    zone = BASE + tenant("acme", "1.2.3.4") + [Record("api.acme", "a", "6.6.6.6")]
    p = plan(zone, {"acme": "9.9.9.9"}, owned=hosts("acme"))
    assert p.zone.records == BASE + tenant("acme", "9.9.9.9")
    # A tenant carried over from the previous service's table owns its hosts' records too.
    assert plan(zone, {"acme": "9.9.9.9"}, carried=frozenset({"acme"})).zone.records == p.zone.records


def test_already_right_is_not_a_change():
    assert not plan(BASE + tenant("acme", "1.2.3.4"), {"acme": "1.2.3.4"}, owned=hosts("acme")).changed


def test_a_new_tenant_is_never_published_over_records_that_are_not_ours():
    # A hand-made A record at one of the new tenant's hosts, a TXT under its name: the
    # tenant is refused, nothing of it written, the hand-made records kept as they are.
    for stray in (Record("api.shop", "a", "198.51.100.1"), Record("_acme-challenge.shop", "txt", "token")):
        p = plan(BASE + [stray], {"shop": "1.2.3.4", "acme": "5.6.7.8"})
        assert p.refused["shop"][0] == DNS_CONFLICT and "shop.p.io" in p.refused["shop"][1]
        assert stray in p.zone.records and not any(r.host.endswith(".shop") and r != stray for r in p.zone.records)
        assert "shop" in p.conflicts and "acme" not in p.refused
        assert Record("console.acme", "a", "5.6.7.8") in p.zone.records
    # The same records under an existing tenant are kept beside its own (an ACME TXT).
    p = plan(BASE + tenant("beta", "5.6.7.8"), {"beta": "5.6.7.8"}, owned=hosts("beta"))
    assert not p.refused and not p.changed
    # An existing tenant's new host already holding a foreign record is left alone.
    grown = plan(BASE + tenant("beta", "5.6.7.8", ("*",)) + [Record("grafana.beta", "a", "9.9.9.9")],
                 {"beta": "5.6.7.8"}, owned=hosts("beta", names=("*",)), names=("*", "grafana"))
    assert Record("grafana.beta", "a", "9.9.9.9") in grown.zone.records
    assert Record("grafana.beta", "a", "5.6.7.8") not in grown.zone.records and not grown.refused


def test_a_release_removes_only_what_the_service_published():
    # shop's api host was made by hand before shop was published; release removes the rest.
    zone = BASE + [Record("api.shop", "a", "198.51.100.1")] + [r for r in tenant("shop", "1.2.3.4")
                                                                   if r.host != "api.shop"]
    p = plan(zone, {}, owned=hosts("shop") - {"api.shop"})
    assert p.zone.records == BASE + [Record("api.shop", "a", "198.51.100.1")]


def test_the_apex_and_its_parking_wildcard_are_never_a_conflict():
    parked = BASE + [Record("*", "a", "185.53.179.128"), Record("_dmarc", "txt", "v=DMARC1")]
    p = plan(parked, {"acme": "1.2.3.4"})
    assert not p.refused and set(p.conflicts) == {"beta", "www"}


def test_missing_ttl_becomes_300():
    p = plan_zone(Zone("p.io", list(BASE), ttl=None), {}, NAMES, set(), None)
    assert p.zone.ttl == 300 and p.changed


def test_a_missing_record_of_another_tenant_is_repaired_not_refused():
    # beta lost its console record (deleted by hand, or an out-of-order write): drift.
    zone = BASE + [r for r in tenant("beta", "5.6.7.8") if r.host != "console.beta"]
    p = plan(zone, {"acme": "1.2.3.4", "beta": "5.6.7.8"}, owned=hosts("beta"))
    assert sorted(p.zone.records, key=str) == sorted(BASE + tenant("acme", "1.2.3.4") + tenant("beta", "5.6.7.8"),
                                                     key=str)
    assert p.touched["beta"] == ["console.beta"]


def test_a_grown_record_list_publishes_the_new_name_and_a_shrunk_one_removes_it():
    zone = BASE + tenant("acme", "1.2.3.4", ("*", "console"))
    grown = plan(zone, {"acme": "1.2.3.4"}, owned={"*.acme", "console.acme"}, names=("*", "console", "grafana"))
    assert Record("grafana.acme", "a", "1.2.3.4") in grown.zone.records
    shrunk = plan(zone, {"acme": "1.2.3.4"}, owned={"*.acme", "console.acme"}, names=("*",))
    assert Record("console.acme", "a", "1.2.3.4") not in shrunk.zone.records
    # the service's own records are never counted as foreign
    assert shrunk.foreign_subhost_records == 2 and shrunk.owned == {"*.acme"}


def test_a_read_that_lost_foreign_records_is_blocked_unless_accepted():
    last = list(BASE)
    zone = [r for r in BASE if r.rtype != "mx"] + tenant("acme", "1.2.3.4")
    with pytest.raises(ZoneBlocked) as err:
        plan(zone, {"acme": "1.2.3.4"}, last_foreign=last)
    assert err.value.reason == LOST_FOREIGN and "MX @ mx.example" in err.value.detail
    accepted = plan(zone, {"acme": "1.2.3.4"}, last_foreign=last, accept=True)
    assert Record("", "mx", "mx.example", "10") not in accepted.zone.records
    # added foreign records are fine, and so is one that became the service's own
    grown = BASE + [Record("new", "txt", "hello")]
    assert plan(grown, {}, last_foreign=last).foreign == tuple(grown)
    claimed = plan(BASE, {"acme": "1.1.1.1"}, owned={"console.acme"},
                   last_foreign=last + [Record("console.acme", "a", "7.7.7.7")])
    assert Record("console.acme", "a", "1.1.1.1") in claimed.zone.records


def test_a_zone_too_large_for_one_write_is_blocked():
    # Published tenants that no longer fit (foreign records grew) block the pool ...
    with pytest.raises(ZoneBlocked) as err:
        plan(BASE + tenant("acme", "1.2.3.4"), {"acme": "1.2.3.4"}, owned=hosts("acme"), max_subhost_records=7)
    assert err.value.reason == TOO_LARGE


def test_a_new_tenant_the_zone_has_no_room_for_is_refused_not_blocking():
    # ... while new tenants give way, newest name first, and the rest is written.
    zone = BASE + tenant("acme", "1.2.3.4")
    p = plan(zone, {"acme": "1.2.3.4", "bb": "2.2.2.2", "cc": "3.3.3.3"}, owned=hosts("acme"),
             max_subhost_records=2 + 6 + 6)
    assert p.refused == {"cc": (POOL_FULL, p.refused["cc"][1])} and "no room" in p.refused["cc"][1]
    assert Record("*.bb", "a", "2.2.2.2") in p.zone.records and not any(r.host.endswith(".cc") for r in p.zone.records)


def test_apex_record_names():
    p = plan_zone(Zone("p.io", [], ttl=300), {"acme": "1.2.3.4"}, ("@", "*"), set(), None)
    assert [r.host for r in p.zone.records] == ["acme", "*.acme"]


def test_orphans_are_owned_hosts_or_labels_shaped_like_tenants():
    zone = Zone("p.io", BASE + tenant("gone", "1.1.1.1") + [Record("*.other", "a", "2.2.2.2"),
                                                            Record("lone", "a", "3.3.3.3"),
                                                            Record("api.live", "a", "4.4.4.4"),
                                                            Record("console.live", "a", "4.4.4.4")])
    # gone: six tenant-shaped records; lone: owned; *.other fits one name only; live has
    # an allocation.
    assert find_orphans(zone, {"live"}, NAMES, {"lone"}) == sorted([r.host for r in tenant("gone", "x")] + ["lone"])


def test_drift_reports_missing_wrong_and_orphans_per_name():
    zone = Zone("p.io", BASE
                + [r for r in tenant("acme", "1.2.3.4") if r.host != "gitea.acme"]
                + [Record("api.beta", "a", "6.6.6.6") if r.host == "api.beta" else r for r in tenant("beta", "5.6.7.8")]
                + tenant("gone", "1.1.1.1", ("*", "console")))
    drift = diff_zone(zone, {"acme": "active", "beta": "active"}, {"acme": "1.2.3.4", "beta": "5.6.7.8"},
                      NAMES, hosts("acme", "beta"))
    by_name = {d.subdomain: d for d in drift}
    assert set(by_name) == {"acme", "beta", "gone"}
    assert by_name["acme"].missing == ["gitea.acme"] and not by_name["acme"].wrong
    assert [(w.host, w.found, w.expected) for w in by_name["beta"].wrong] == [("api.beta", ["6.6.6.6"], "5.6.7.8")]
    assert by_name["gone"].state is None and by_name["gone"].orphans == ["*.gone", "console.gone"]
    clean = Zone("p.io", BASE + tenant("acme", "1.2.3.4"))
    assert diff_zone(clean, {"acme": "active", "res": "reserved"}, {"acme": "1.2.3.4"}, NAMES, hosts("acme")) == []


def test_drift_lists_foreign_records_where_tenant_records_go():
    zone = Zone("p.io", BASE + [Record("api.acme", "a", "9.9.9.9"), Record("_x.held", "txt", "t")])
    drift = {d.subdomain: d for d in diff_zone(zone, {"acme": "active", "held": "reserved"}, {"acme": "1.2.3.4"},
                                               NAMES, set())}
    assert drift["acme"].foreign == ["A api.acme 9.9.9.9"] and "api.acme" not in drift["acme"].missing
    assert drift["held"].foreign == ["TXT _x.held t"]
    # beta's hand-made TXT sits beside what its records are, not at a host: not listed
    assert "beta" not in drift


def test_retry_delay_backs_off_and_honours_the_throttle():
    assert retry_delay(0) == 5 and retry_delay(3) == 40 and retry_delay(20) == 300
    assert retry_delay(0, 60) == 60


def _drift(wrong=0, orphans=0, missing=0):
    """Drift of tenant "t": ``wrong`` hosts with a wrong address, ``missing`` hosts, and
    ``orphans`` hosts of a name with no allocation."""
    hosts = [f"h{i}.t" for i in range(wrong + missing)]
    return [NameDrift("t", "active", missing=hosts[wrong:], wrong=[WrongAddress(h, ["9.9.9.9"], "1.2.3.4")
                                                                   for h in hosts[:wrong]]),
            NameDrift("old", None, orphans=[f"o{i}.old" for i in range(orphans)])]


def test_thresholds_are_octodns_defaults():
    assert (MAX_SAFE_UPDATE_PCENT, MAX_SAFE_DELETE_PCENT, MIN_EXISTING_RECORDS) == (0.30, 0.30, 10)


def test_a_repair_changing_or_removing_more_than_30_percent_is_unsafe():
    # 2 active tenants x 6 names = 12 records; 4 wrong = 33%
    why = unsafe_plan(_drift(wrong=4), 2, NAMES)
    assert why and "12 record(s)" in why and "4 of them (33%) changed" in why and "--force" in why
    assert unsafe_plan(_drift(wrong=3), 2, NAMES) is None  # 25%
    # orphans are in the zone too: 1 tenant (6) + 6 orphans = 12, 6 removed = 50%
    why = unsafe_plan(_drift(orphans=6), 1, NAMES)
    assert why and "6 of them (50%) removed" in why
    # a table that lost every tenant: the whole zone would go
    assert "removed" in unsafe_plan(_drift(orphans=12), 0, NAMES)


def test_exactly_30_percent_and_small_zones_are_safe():
    # 5 tenants x 2 names = 10 records
    names = ("*", "console")
    assert unsafe_plan(_drift(wrong=3), 5, names) is None  # 3 of 10: exactly 30%, not more
    assert unsafe_plan(_drift(wrong=4), 5, names)  # 4 of 10
    # 9 records: below MIN_EXISTING_RECORDS, anything goes
    assert unsafe_plan(_drift(orphans=9), 0, names) is None
    assert unsafe_plan(_drift(orphans=10), 0, names)


def test_missing_records_are_additions_not_changes():
    # 3 tenants, 18 hosts, 12 missing: 6 in the zone, below the minimum -- and missing
    # hosts never count as changes
    assert unsafe_plan(_drift(missing=12), 3, NAMES) is None
    # 4 tenants (24), 10 missing: 14 in the zone, 4 wrong = 29%
    assert unsafe_plan(_drift(wrong=4, missing=10), 4, NAMES) is None
    assert unsafe_plan(_drift(wrong=5, missing=10), 4, NAMES)  # 5 of 14 = 36%


def test_a_write_that_may_land_late_is_read_again_soon_after_a_minute_and_at_the_windows_end():
    assert late_write_reads(180) == (5, 60, 180)
    assert late_write_reads(90) == (5, 60, 90)
    assert late_write_reads(30) == (5, 30)  # a window shorter than a minute ends the reads
    failed = datetime(2026, 12, 1, 12, 0, 0, tzinfo=timezone.utc)
    until = failed + timedelta(seconds=180)
    at = [next_late_write_read(until, 180, failed + timedelta(seconds=s)) for s in (0, 5, 30, 60, 179, 180)]
    assert at == [failed + timedelta(seconds=5), failed + timedelta(seconds=60), failed + timedelta(seconds=60),
                  until, until, None]
