"""The zone rewrite as a pure function: what is kept, added, removed, and refused."""
from __future__ import annotations

import pytest

from pdm_app.dns_sync import UnsafeZone, plan_zone, retry_delay
from pdm_app.registrar import Record, RegistrarError, Zone

NAMES = ("*", "console", "gitea", "harbor", "admin", "api")
BASE = [
    Record("", "a", "185.53.179.128"),
    Record("", "mx", "mx.example", "10"),
    Record("", "txt", "v=spf1 -all"),
    Record("www", "cname", "omani.works"),
    Record("console.acme", "txt", "not ours: a TXT at a tenant host"),
]


def tenant(sub, ip):
    return [Record(f"{n}.{sub}", "a", ip) for n in NAMES]


def test_publish_adds_six_and_keeps_everything_else():
    plan = plan_zone(Zone("p.io", list(BASE), ttl=600), {"acme"}, {"acme": "1.2.3.4"}, NAMES)
    assert plan.changed
    assert plan.zone.ttl == 600  # the zone's TTL is carried, not replaced
    assert plan.zone.records[: len(BASE)] == BASE
    assert plan.zone.records[len(BASE):] == tenant("acme", "1.2.3.4")
    assert plan.foreign_subhost_records == 2


def test_remove_takes_exactly_the_tenant_a_records():
    zone = Zone("p.io", BASE + tenant("acme", "1.2.3.4") + tenant("beta", "5.6.7.8"), ttl=300)
    plan = plan_zone(zone, {"acme"}, {"beta": "5.6.7.8"}, NAMES)
    assert plan.zone.records == BASE + tenant("beta", "5.6.7.8")


def test_republish_moves_the_address():
    zone = Zone("p.io", BASE + tenant("acme", "1.2.3.4"), ttl=300)
    plan = plan_zone(zone, {"acme"}, {"acme": "9.9.9.9"}, NAMES)
    assert plan.zone.records == BASE + tenant("acme", "9.9.9.9")


def test_already_right_is_not_a_change():
    zone = Zone("p.io", BASE + tenant("acme", "1.2.3.4"), ttl=300)
    assert not plan_zone(zone, {"acme"}, {"acme": "1.2.3.4"}, NAMES).changed


def test_missing_ttl_becomes_300():
    assert plan_zone(Zone("p.io", list(BASE), ttl=None), {"x"}, {}, NAMES).zone.ttl == 300


def test_snapshot_missing_another_tenant_is_refused():
    # beta is active and not being changed, so a snapshot without its records is an
    # incomplete read: writing it back would wipe beta.
    zone = Zone("p.io", list(BASE), ttl=300)
    with pytest.raises(UnsafeZone):
        plan_zone(zone, {"acme"}, {"acme": "1.2.3.4", "beta": "5.6.7.8"}, NAMES)


def test_apex_record_names():
    plan = plan_zone(Zone("p.io", [], ttl=300), {"acme"}, {"acme": "1.2.3.4"}, ("@", "*"))
    assert [r.host for r in plan.zone.records] == ["acme", "*.acme"]


def test_retry_delay_backs_off_and_honours_the_throttle():
    assert retry_delay(0, None) == 5 and retry_delay(3, None) == 40 and retry_delay(20, None) == 300
    assert retry_delay(0, RegistrarError("Too many requests", retry_after=60)) == 60
