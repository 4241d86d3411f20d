"""DNS planning and the retry policy as pure functions: what is kept, repaired, removed,
refused, reported as drift."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pdm_app.dns_plan import (LOST_FOREIGN, TOO_LARGE, ZoneBlocked, diff_zone, find_orphans, late_write_reads,
                              next_late_write_read, plan_zone, retry_delay)
from pdm_app.registrar import Record, Zone

NAMES = ("*", "console", "gitea", "harbor", "admin", "api")
BASE = [
    Record("", "a", "185.53.179.128"),
    Record("", "mx", "mx.example", "10"),
    Record("", "txt", "v=spf1 -all"),
    Record("www", "cname", "omani.works"),
    Record("console.acme", "txt", "not ours: a TXT at a tenant host"),
]


def tenant(sub, ip, names=NAMES):
    return [Record(f"{n}.{sub}", "a", ip) for n in names]


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
    p = plan(zone, {"acme": "9.9.9.9"})
    assert p.zone.records == BASE + tenant("acme", "9.9.9.9")


def test_already_right_is_not_a_change():
    assert not plan(BASE + tenant("acme", "1.2.3.4"), {"acme": "1.2.3.4"}).changed


def test_missing_ttl_becomes_300():
    p = plan_zone(Zone("p.io", list(BASE), ttl=None), {}, NAMES, set(), None)
    assert p.zone.ttl == 300 and p.changed


def test_a_missing_record_of_another_tenant_is_repaired_not_refused():
    # beta lost its console record (deleted by hand, or an out-of-order write): drift.
    zone = BASE + [r for r in tenant("beta", "5.6.7.8") if r.host != "console.beta"]
    p = plan(zone, {"acme": "1.2.3.4", "beta": "5.6.7.8"})
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
    # added foreign records are fine, and so is a foreign record that became a tenant's
    grown = BASE + [Record("new", "txt", "hello")]
    assert plan(grown, {}, last_foreign=last).foreign == tuple(grown)
    claimed = plan(BASE, {"www": "1.1.1.1"}, last_foreign=last + [Record("console.www", "a", "7.7.7.7")])
    assert Record("console.www", "a", "1.1.1.1") in claimed.zone.records


def test_a_zone_too_large_for_one_write_is_blocked():
    with pytest.raises(ZoneBlocked) as err:
        plan(BASE, {"acme": "1.2.3.4"}, max_subhost_records=7)
    assert err.value.reason == TOO_LARGE


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
                      NAMES, set())
    by_name = {d.subdomain: d for d in drift}
    assert set(by_name) == {"acme", "beta", "gone"}
    assert by_name["acme"].missing == ["gitea.acme"] and not by_name["acme"].wrong
    assert [(w.host, w.found, w.expected) for w in by_name["beta"].wrong] == [("api.beta", ["6.6.6.6"], "5.6.7.8")]
    assert by_name["gone"].state is None and by_name["gone"].orphans == ["*.gone", "console.gone"]
    clean = Zone("p.io", BASE + tenant("acme", "1.2.3.4"))
    assert diff_zone(clean, {"acme": "active", "res": "reserved"}, {"acme": "1.2.3.4"}, NAMES, set()) == []


def test_retry_delay_backs_off_and_honours_the_throttle():
    assert retry_delay(0) == 5 and retry_delay(3) == 40 and retry_delay(20) == 300
    assert retry_delay(0, 60) == 60


def test_a_write_that_may_land_late_is_read_again_soon_after_a_minute_and_at_the_windows_end():
    assert late_write_reads(180) == (5, 60, 180)
    assert late_write_reads(90) == (5, 60, 90)
    assert late_write_reads(30) == (5, 30)  # a window shorter than a minute ends the reads
    failed = datetime(2026, 12, 1, 12, 0, 0, tzinfo=timezone.utc)
    until = failed + timedelta(seconds=180)
    at = [next_late_write_read(until, 180, failed + timedelta(seconds=s)) for s in (0, 5, 30, 60, 179, 180)]
    assert at == [failed + timedelta(seconds=5), failed + timedelta(seconds=60), failed + timedelta(seconds=60),
                  until, until, None]
