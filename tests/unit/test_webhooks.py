"""The pure parts of webhooks: which history events are told and what they say, the
endpoints' configuration and its refusals, and what each answer to an attempt means."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from pdm_app.config import ConfigError, load_settings
from pdm_app.webhooks.delivery import after
from pdm_app.webhooks.endpoints import Endpoint, parse_endpoints
from pdm_app.webhooks.events import EVENT_TYPES, Outbox, message_of

NOW = datetime(2026, 12, 7, 18, 0, 0, 123456, tzinfo=timezone.utc)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
POOL = "omantel.omani.works"
SCHEDULE = (5.0, 300.0, 1800.0)
BASE = {"DYNADOT_API_KEY": "k", "PDM_AUTH": "disabled"}


def event(action, sub="acme", pool=POOL, detail=None, ip=None, caller="catalyst-api"):
    return dict(pool_domain=pool, subdomain=sub, action=action, caller=caller, at=NOW, load_balancer_ip=ip,
                detail=detail, origin=None)


@pytest.mark.parametrize("action, kind, state", [
    ("reserve", "allocation.reserved", "reserved"), ("commit", "allocation.committed", "active"),
    ("dns-published", "allocation.published", "active"), ("renew", "allocation.renewed", "reserved"),
    ("release", "allocation.released", "released"), ("dns-removed", "allocation.unpublished", "released"),
    ("expire", "allocation.expired", "expired"),
])
def test_allocation_events(action, kind, state):
    got, subject, payload = message_of(event(action, ip="192.0.2.1"))
    assert (got, subject) == (kind, f"{POOL}/acme")
    assert payload == {"type": kind, "timestamp": "2026-12-07T18:00:00.123456Z",
                       "data": {"pool": POOL, "name": "acme", "state": state, "caller": "catalyst-api",
                                "address": "192.0.2.1", "link": f"/api/v1/pool/{POOL}/history?sub=acme"}}


@pytest.mark.parametrize("action", ["commit-retry", "commit-refused", "dns-failed", "dns-refused", "retry-dns",
                                    "reconcile", "zone-accepted", "validate"])
def test_events_a_receiver_is_not_told(action):
    assert message_of(event(action)) is None


def test_pool_events_are_ordered_per_pool():
    kind, subject, payload = message_of(event("pool-blocked", sub="", detail="lost-foreign-records: MX gone",
                                              caller="dns"))
    assert (kind, subject, payload["data"]["detail"]) == ("pool.blocked", POOL, "lost-foreign-records: MX gone")
    kind, subject, _ = message_of(event("drift-repaired", sub="acme", detail="records made right: www.acme"))
    assert (kind, subject) == ("pool.drift_repaired", POOL)


@pytest.mark.parametrize("detail, flipped", [("outcome=ok nameservers=ns1.x,ns2.x", "ok"),
                                             ("outcome=pending nameservers=ns1.x", "pending"),
                                             ("outcome=unchanged", None), ("outcome=mismatch", None),
                                             ("outcome=auth-failed", None)])
def test_a_customer_domain_flip_is_told_only_when_it_flipped(detail, flipped):
    message = message_of(event("set-ns", sub="shop.example", pool="registrar:cloudflare", detail=detail))
    if flipped is None:
        assert message is None
        return
    kind, subject, payload = message
    assert (kind, subject, payload["data"]["state"]) == ("nameservers.flipped", "registrar:cloudflare/shop.example",
                                                          flipped)
    assert payload["data"]["link"] == "/api/v1/registrar/cloudflare/history?domain=shop.example"


def test_the_outbox_writes_one_row_per_endpoint_that_wants_it_under_one_id():
    outbox = Outbox([Endpoint("all", "http://a/", (SECRET,)),
                     Endpoint("live", "http://b/", (SECRET,), frozenset({"allocation.published"}))],
                    public_url="https://pdm.example.org")
    rows = outbox.rows([event("reserve"), event("dns-published", ip="192.0.2.1"), event("dns-failed")])
    assert [(r["endpoint"], r["type"]) for r in rows] == [("all", "allocation.reserved"),
                                                           ("all", "allocation.published"),
                                                           ("live", "allocation.published")]
    assert rows[1]["msg_id"] == rows[2]["msg_id"] != rows[0]["msg_id"]
    assert json.loads(rows[1]["payload"])["data"]["link"].startswith("https://pdm.example.org/api/v1/")
    assert not Outbox([]) and Outbox([]).rows([event("reserve")]) == []


# -- configuration -------------------------------------------------------------------------

def test_endpoints_from_json():
    (one, two) = parse_endpoints(json.dumps([
        {"url": "https://hooks.example.org/pdm?token=abc", "secret": SECRET},
        {"url": "http://127.0.0.1:8083/hooks", "secret": [SECRET, SECRET], "events": ["allocation.published"],
         "name": "catalyst"},
    ]))
    assert one.name == "https://hooks.example.org/pdm" and one.events is None and one.wants("pool.blocked")
    assert two.name == "catalyst" and len(two.secrets) == 2 and not two.wants("allocation.reserved")
    assert SECRET not in repr(one)


@pytest.mark.parametrize("raw, says", [
    ("{", "JSON list"), ('{"url": "x"}', "JSON list"),
    ('[{"url": "ftp://x/", "secret": "%s"}]' % SECRET, "url must be"),
    ('[{"url": "http://x/"}]', "secret must be"),
    ('[{"url": "http://x/", "secret": "not-whsec"}]', "secret[0]"),
    ('[{"url": "http://x/", "secret": "whsec_!!!"}]', "secret[0]"),
    ('[{"url": "http://x/", "secret": "whsec_c2hvcnQ="}]', "24 to 64 bytes"),
    ('[{"url": "http://x/", "secret": "%s", "events": ["allocation.nope"]}]' % SECRET, "unknown type"),
    ('[{"url": "http://x/", "secret": "%s", "extra": 1}]' % SECRET, "unknown key"),
    ('[{"url": "http://x/a", "secret": "%s"}, {"url": "http://x/a?b", "secret": "%s"}]' % (SECRET, SECRET),
     "names must differ"),
    ('[{"url": "http://x/", "secret": "%s", "name": "\\u0000"}]' % SECRET, "name must be"),
])
def test_bad_endpoints_are_refused_without_showing_a_secret(raw, says):
    with pytest.raises(ConfigError) as err:
        load_settings({**BASE, "PDM_WEBHOOKS": raw})
    assert says in str(err.value) and "MfKQ9r8" not in str(err.value)


def test_settings(tmp_path):
    path = tmp_path / "hooks.json"
    path.write_text(json.dumps([{"url": "http://127.0.0.1:9/", "secret": SECRET}]))
    hooks = load_settings({**BASE, "PDM_WEBHOOKS_FILE": str(path), "PDM_WEBHOOK_RETRY_SCHEDULE": "1s,2s",
                           "PDM_WEBHOOK_TIMEOUT": "3s", "PDM_WEBHOOK_RETENTION": "1d",
                           "PDM_PUBLIC_URL": "https://pdm.example.org/"}).webhooks
    assert [e.url for e in hooks.endpoints] == ["http://127.0.0.1:9/"]
    assert (hooks.retry_schedule, hooks.timeout, hooks.retention, hooks.public_url) == (
        (1.0, 2.0), 3.0, 86400.0, "https://pdm.example.org")
    assert load_settings(BASE).webhooks.retry_schedule == (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
    for env, says in [({"PDM_WEBHOOKS": "[]", "PDM_WEBHOOKS_FILE": str(path)}, "not both"),
                      ({"PDM_WEBHOOKS_FILE": str(tmp_path / "missing")}, "cannot be read"),
                      ({"PDM_WEBHOOK_RETRY_SCHEDULE": "5s,soon"}, "must list durations"),
                      ({"PDM_WEBHOOK_RETRY_SCHEDULE": "5s,0s"}, "positive"),
                      ({"PDM_PUBLIC_URL": "pdm.example.org"}, r"http\(s\) URL")]:
        with pytest.raises(ConfigError, match=says):
            load_settings({**BASE, **env})


def test_every_type_is_documented_in_one_list():
    assert len(EVENT_TYPES) == len(set(EVENT_TYPES)) == 11


# -- what an answer means --------------------------------------------------------------------

def test_2xx_delivers():
    step = after(204, None, None, 2, SCHEDULE, NOW)
    assert step.outcome == "delivered" and step.message["delivered_at"] == NOW and step.message["attempts"] == 3


@pytest.mark.parametrize("attempts, delay", [(0, 5.0), (1, 300.0), (2, 1800.0)])
def test_a_failure_follows_the_schedule_with_jitter(attempts, delay):
    low = after(500, "HTTP 500", None, attempts, SCHEDULE, NOW, jitter=lambda: 0.0)
    high = after(500, "HTTP 500", None, attempts, SCHEDULE, NOW, jitter=lambda: 0.999999)
    assert low.outcome == "failed" and low.message["attempts"] == attempts + 1
    assert low.message["next_attempt_at"] == NOW + timedelta(seconds=delay * 0.8)
    assert abs((high.message["next_attempt_at"] - NOW).total_seconds() - delay * 1.2) < 0.01


def test_past_the_schedule_it_is_given_up():
    step = after(500, "HTTP 500", None, 3, SCHEDULE, NOW)
    assert step.outcome == "gave-up" and step.message["failed_at"] == NOW


def test_a_sick_receiver_rests_the_endpoint_a_refusing_one_does_not():
    for status in (None, 500, 502):
        step = after(status, "x", None, 0, SCHEDULE, NOW)
        assert step.stop and step.pause_until == NOW + timedelta(seconds=5)
    for status in (301, 400, 404, 422):
        step = after(status, "x", None, 0, SCHEDULE, NOW)
        assert step.outcome == "failed" and not step.stop and step.pause_until is None


def test_410_disables():
    step = after(410, "HTTP 410", None, 1, SCHEDULE, NOW)
    assert step.outcome == "gone" and step.disable and step.message["attempts"] == 1


@pytest.mark.parametrize("status, retry_after, seconds", [
    (429, "120", 120), (503, "120", 120), (429, None, 5), (429, "999999", 3600),
    (429, "Mon, 07 Dec 2026 18:02:00 GMT", 120 - 0.123456), (429, "garbage", 5),
])
def test_throttling_pauses_without_spending_an_attempt(status, retry_after, seconds):
    step = after(status, f"HTTP {status}", retry_after, 2, SCHEDULE, NOW)
    assert step.outcome == "throttled" and step.stop and step.message["attempts"] == 2
    assert abs((step.pause_until - NOW).total_seconds() - seconds) < 0.001
    assert step.message["next_attempt_at"] == step.pause_until


def test_503_without_retry_after_is_a_failure():
    assert after(503, "HTTP 503", None, 0, SCHEDULE, NOW).outcome == "failed"
