"""The operators' webhook surfaces on SQLite and PostgreSQL -- the JSON routes, the console
page and the CLI -- over messages made by real changes through the API and left in every
state by the real deliverer against receivers on loopback: delivered, disabled by a 410,
given up after 500s, paused by a 429. What they show, replay (one message, a time range:
pending again with the same webhook-id, from attempt 0), enable, who may, and bad input
(a 4xx, nothing changed)."""
from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import jsonschema_rs
import pytest

from conftest import NOWHERE, POOL
from pdm_app.api.openapi import build_spec
from pdm_app.auth import ApiToken
from pdm_app.cli import cli
from pdm_app.domain import utcnow
from pdm_app.testing.webhook_receiver import WebhookReceiver, new_secret
from pdm_app.unit_of_work import UnitOfWork
from pdm_app.webhooks.delivery import Deliverer
from pdm_app.webhooks.endpoints import WebhookSettings, parse_endpoints
from unit import test_cli

PROG = test_cli.PROG
# The commands swap the root logger's handlers: an autouse fixture puts them back here too.
_root_logger_kept = test_cli._root_logger_kept
KEY = "console-key-" + uuid.uuid4().hex
OPERATOR = "operator-" + uuid.uuid4().hex
CLIENT = "client-" + uuid.uuid4().hex
TOKENS = (ApiToken("ops-alice", "operator", OPERATOR), ApiToken("catalyst", "client", CLIENT))
AS_OPERATOR = {"Authorization": f"Bearer {OPERATOR}"}
AS_CLIENT = {"Authorization": f"Bearer {CLIENT}"}
SECRET = new_secret()
LB = "198.51.100.7"
# An endpoint that is sent only releases (none happen here), with markup in its name.
MARKUP = 'releases <i>"&'
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
MSG_ID = re.compile(r"msg_[0-9a-f]{32}")


@pytest.fixture
def receivers():
    with WebhookReceiver(SECRET) as ok, WebhookReceiver(SECRET) as gone, WebhookReceiver(SECRET) as sick, \
            WebhookReceiver(SECRET) as busy:
        gone.answer(410)
        sick.answer(400)  # refused (a 5xx would also rest the endpoint a while)
        busy.answer(429, retry_after=3600)
        yield {"ok": ok, "gone": gone, "sick": sick, "busy": busy}


@pytest.fixture
def app(app_factory, db_url, receivers):
    config = [{"url": receivers["ok"].url, "secret": SECRET, "name": "ok"},
              {"url": receivers["gone"].url, "secret": [SECRET, new_secret()]},  # named by its URL
              {"url": receivers["sick"].url, "secret": SECRET, "name": "sick"},
              {"url": receivers["busy"].url, "secret": SECRET, "name": "busy"},
              {"url": NOWHERE, "secret": SECRET, "name": MARKUP, "events": ["allocation.released"]}]
    # One retry after 50 ms: a message the receiver refuses twice is given up.
    hooks = WebhookSettings(endpoints=parse_endpoints(json.dumps(config)), retry_schedule=(0.05,), timeout=5.0)
    return app_factory(db_url, webhooks=hooks, secret_key=KEY, api_tokens=TOKENS, auth_mode="tokens",
                       auth_enabled=True)


@pytest.fixture
def gone(app) -> str:
    """The name of the endpoint a 410 disables: its URL (slashes and all)."""
    return app.extensions["pdm"].settings.webhooks.endpoints[1].name


@pytest.fixture
def delivered(app):
    """acme reserved and committed through the API (reserved, committed, published: three
    messages per endpoint that wants them), then two delivery ticks: ok has them all,
    gone is disabled, sick refused the first twice (given up; the others wait), busy
    is paused."""
    client = app.test_client()
    answer = client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "acme"}, headers=AS_CLIENT)
    assert answer.status_code == 201, answer.get_json()
    answer = client.post(f"/api/v1/pool/{POOL}/commit", headers=AS_CLIENT, json={
        "subdomain": "acme", "reservationToken": answer.get_json()["reservationToken"], "loadBalancerIP": LB})
    assert answer.status_code == 200, answer.get_json()
    deliverer = precise(app)
    deliverer.deliver(lambda: True)
    time.sleep(0.2)  # past the retry's 50 ms (+20%)
    deliverer.deliver(lambda: True)
    return client


def precise(app) -> Deliverer:
    """The app's deliverer, on a clock with fractions of a second (the service's has none):
    a retry 50 ms later is due 50 ms later."""
    pdm = app.extensions["pdm"]
    return Deliverer(lambda: UnitOfWork(pdm.session_factory), pdm.settings.webhooks,
                     lambda: datetime.now(timezone.utc))


def api(client, method: str, path: str, **kwargs):
    return client.open(path, method=method, headers=AS_OPERATOR, **kwargs)


def status(client) -> dict:
    answer = api(client, "GET", "/api/v1/webhooks")
    assert answer.status_code == 200, answer.get_json()
    return {e["name"]: e for e in answer.get_json()["endpoints"]}


def messages(client, **query) -> list[dict]:
    answer = api(client, "GET", "/api/v1/webhooks/messages", query_string={"limit": 1000, **query})
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["messages"]


def run(app, *args):
    return app.test_cli_runner().invoke(cli, list(args), prog_name=PROG)


def text(response) -> str:
    return response.get_data(as_text=True)


def operator_session(app):
    client = app.test_client()
    token = _CSRF.search(text(client.get("/console/login"))).group(1)
    assert client.post("/console/login", data={"token": OPERATOR, "csrf_token": token}).status_code == 302
    return client


def form_post(client, path: str, **data):
    """A form of the webhooks page, sent as the page sends it: with its CSRF token."""
    token = _CSRF.search(text(client.get("/console/webhooks"))).group(1)
    return client.post(path, data={"csrf_token": token, **data})


# -- what the operators see -------------------------------------------------------------------

def test_status_shows_each_endpoint_as_its_deliveries_left_it(app, delivered, gone):
    endpoints = status(delivered)
    assert list(endpoints) == ["ok", gone, "sick", "busy", MARKUP]  # as configured
    ok, off, sick, busy, quiet = endpoints.values()
    assert gone.startswith("http://127.0.0.1:") and gone.endswith("/hooks")

    assert (ok["configured"], ok["events"], ok["pending"], ok["failed"]) == (True, None, 0, 0)
    assert (ok["oldestPendingAt"], ok["oldestPendingSeconds"], ok["disabledAt"], ok["lastError"]) == (None,) * 4
    assert ok["lastSuccessAt"].endswith("Z")

    assert (off["pending"], off["failed"], off["disabledReason"]) == (3, 0, "the endpoint answered 410 Gone")
    assert off["disabledAt"].endswith("Z") and off["oldestPendingAt"].endswith("Z")
    assert 0 <= off["oldestPendingSeconds"] < 60 and off["lastSuccessAt"] is None

    assert (sick["pending"], sick["failed"], sick["lastError"], sick["disabledAt"]) == (2, 1, "HTTP 400", None)

    assert (busy["pending"], busy["failed"], busy["disabledAt"]) == (3, 0, None)
    paused = busy["pausedUntil"]
    assert paused > (utcnow() + timedelta(minutes=59)).strftime("%Y-%m-%dT%H:%M:%SZ"), paused

    assert (quiet["events"], quiet["pending"], quiet["failed"], quiet["lastSuccessAt"]) == (
        ["allocation.released"], 0, 0, None)


def test_messages_newest_first_filtered_and_paged(delivered):
    ok = messages(delivered, endpoint="ok")
    assert [m["type"] for m in ok] == ["allocation.published", "allocation.committed", "allocation.reserved"]
    assert [m["state"] for m in ok] == ["delivered"] * 3 and all(m["deliveredAt"] for m in ok)
    assert [m["id"] for m in ok] == sorted((m["id"] for m in ok), reverse=True)
    # One event, one webhook-id, whichever endpoint it goes to.
    by_type = {}
    for m in messages(delivered):
        by_type.setdefault(m["type"], set()).add(m["msgId"])
    assert {t: len(ids) for t, ids in by_type.items()} == {t: 1 for t in by_type} and len(by_type) == 3

    [failed] = messages(delivered, state="failed")
    assert (failed["endpoint"], failed["type"], failed["attempts"], failed["lastStatus"]) == (
        "sick", "allocation.reserved", 2, 400)
    assert failed["nextAttemptAt"] is None and failed["subject"] == f"{POOL}/acme"
    pending = messages(delivered, state="pending", endpoint="busy")
    assert len(pending) == 3 and all(m["attempts"] == 0 and m["nextAttemptAt"] for m in pending)

    # Pages of 5, by keyset: every message once, newest first.
    seen, before = [], None
    while True:
        answer = api(delivered, "GET", "/api/v1/webhooks/messages",
                     query_string={"limit": 5, **({"before": before} if before else {})}).get_json()
        seen += [m["id"] for m in answer["messages"]]
        before = answer.get("nextBefore")
        if before is None:
            break
        assert len(answer["messages"]) == 5
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) == 12  # 4 endpoints x 3


def test_the_documented_event_is_what_the_outbox_writes(app, delivered):
    """Every payload written (what receivers get, byte for byte) holds to the document's
    x-webhooks schema of its type (tests/integration/test_openapi.py: every type is there)."""
    doc = build_spec()
    with UnitOfWork(app.extensions["pdm"].session_factory) as tx:
        payloads = [(m.type, json.loads(m.payload)) for m in tx.webhook_messages(limit=100)]
    assert {t for t, _ in payloads} == {"allocation.reserved", "allocation.committed", "allocation.published"}
    for kind, payload in payloads:
        schema = doc["x-webhooks"][kind]["post"]["requestBody"]["content"]["application/json"]["schema"]
        validator = jsonschema_rs.validator_for(_json_schema({**schema, "components": doc["components"]}))
        assert validator.is_valid(payload), (kind, payload, [e.message for e in validator.iter_errors(payload)])
        assert not validator.is_valid({**payload, "type": "pool.blocked"}), kind
        assert not validator.is_valid({**payload, "data": {"pool": POOL}}), kind
    published = next(p for t, p in payloads if t == "allocation.published")
    assert published["data"]["address"] == LB and published["data"]["state"] == "active"


def _json_schema(value):
    """OpenAPI 3.0's nullable as JSON Schema (a null allowed beside the type)."""
    if isinstance(value, dict):
        value = {k: _json_schema(v) for k, v in value.items()}
        if value.pop("nullable", False) and "type" in value:
            value["type"] = [value["type"], "null"]
        return value
    if isinstance(value, list):
        return [_json_schema(v) for v in value]
    return value


# -- the repairs ------------------------------------------------------------------------------

def test_replay_one_message_by_its_id(delivered):
    [failed] = messages(delivered, state="failed")
    answer = api(delivered, "POST", "/api/v1/webhooks/replay", json={"id": failed["msgId"], "endpoint": "sick"})
    assert answer.status_code == 200 and answer.get_json() == {"replayed": 1}
    [again] = [m for m in messages(delivered, endpoint="sick") if m["id"] == failed["id"]]
    assert (again["msgId"], again["state"], again["attempts"], again["deliveredAt"]) == (
        failed["msgId"], "pending", 0, None)
    assert again["nextAttemptAt"] is not None and messages(delivered, state="failed") == []

    # Without an endpoint: every endpoint's copy of the event (ok's delivered one too).
    answer = api(delivered, "POST", "/api/v1/webhooks/replay", json={"id": failed["msgId"]})
    assert answer.get_json() == {"replayed": 4}
    copies = [m for m in messages(delivered) if m["msgId"] == failed["msgId"]]
    assert len(copies) == 4 and {(m["state"], m["attempts"]) for m in copies} == {("pending", 0)}


def test_replay_a_time_range_of_one_endpoint(delivered, receivers, app):
    before = {m["id"]: m for m in messages(delivered)}
    since = (utcnow() - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    until = (utcnow() + timedelta(minutes=1)).isoformat()  # +00:00 is an offset too
    answer = api(delivered, "POST", "/api/v1/webhooks/replay", json={"since": since, "until": until, "endpoint": "ok"})
    assert answer.status_code == 200 and answer.get_json() == {"replayed": 3}
    after = {m["id"]: m for m in messages(delivered)}
    for id_, m in after.items():
        if m["endpoint"] == "ok":
            assert (m["msgId"], m["state"], m["attempts"]) == (before[id_]["msgId"], "pending", 0)
        else:
            assert m == before[id_]
    # Sent again, with the same webhook-ids, in order.
    receivers["ok"].reset()
    precise(app).deliver(lambda: True)
    assert receivers["ok"].ids() == [m["msgId"] for m in sorted(after.values(), key=lambda m: m["id"])
                                     if m["endpoint"] == "ok"]

    # A range that holds nothing: 404, nothing changed.
    answer = api(delivered, "POST", "/api/v1/webhooks/replay", json={"since": "2001-01-01T00:00:00Z",
                                                                      "until": "2001-01-02T00:00:00Z"})
    assert answer.status_code == 404 and answer.get_json()["error"] == "not-found"
    # until alone: every kept message written before it.
    answer = api(delivered, "POST", "/api/v1/webhooks/replay", json={"until": "2001-01-01T00:00:00Z"})
    assert answer.status_code == 404 and answer.get_json()["error"] == "not-found"
    answer = api(delivered, "POST", "/api/v1/webhooks/replay", json={"until": until, "endpoint": "busy"})
    assert answer.status_code == 200 and answer.get_json() == {"replayed": 3}


def test_enable_an_endpoint_a_410_disabled_and_its_messages_go_out(app, delivered, receivers, gone):
    assert status(delivered)[gone]["disabledAt"] is not None
    # Its name is a URL: as it is, or with its slashes encoded.
    answer = api(delivered, "POST", f"/api/v1/webhooks/endpoints/{gone}/enable")
    assert answer.status_code == 200, answer.get_json()
    assert (answer.get_json()["name"], answer.get_json()["disabledAt"], answer.get_json()["pending"]) == (gone, None, 3)
    answer = api(delivered, "POST", f"/api/v1/webhooks/endpoints/{quote(gone, safe='')}/enable")
    assert answer.status_code == 200 and answer.get_json()["disabledAt"] is None
    # Enabling ends a pause too.
    answer = api(delivered, "POST", "/api/v1/webhooks/endpoints/busy/enable")
    assert answer.status_code == 200 and answer.get_json()["pausedUntil"] is None

    receivers["gone"].clear_faults()
    precise(app).deliver(lambda: True)
    assert len(receivers["gone"].accepted) == 3
    assert status(delivered)[gone]["pending"] == 0


# -- who may, and bad input --------------------------------------------------------------------

ROUTES = [("GET", "/api/v1/webhooks", None), ("GET", "/api/v1/webhooks/messages", None),
          ("POST", "/api/v1/webhooks/replay", {"since": "2020-01-01T00:00:00Z"}),
          ("POST", "/api/v1/webhooks/endpoints/busy/enable", None)]


def test_only_operators_may(app, delivered):
    before = messages(delivered)
    for method, path, body in ROUTES:
        refused = delivered.open(path, method=method, json=body)
        assert refused.status_code == 401 and refused.get_json()["error"], path
        refused = delivered.open(path, method=method, json=body, headers=AS_CLIENT)
        assert refused.status_code == 403 and set(refused.get_json()) == {"error", "detail"}, path
    assert messages(delivered) == before
    assert status(delivered)["busy"]["pausedUntil"] is not None


VALID_ID = "msg_" + "0" * 32
BAD_REPLAYS = [
    ({"id": "msg_xyz"}, 400, "invalid-id"),
    ({"id": "MSG_" + "0" * 32}, 400, "invalid-id"),
    ({"id": VALID_ID, "since": "2020-01-01T00:00:00Z"}, 400, "invalid-replay"),
    ({}, 400, "invalid-replay"),
    ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, 400, "invalid-replay"),
    ({"since": "2026-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, 400, "invalid-replay"),
    ({"since": "yesterday"}, 400, "invalid-request"),
    ({"since": "2026-01-01T00:00:00"}, 400, "invalid-request"),  # no offset: which time is it?
    ({"since": "2026-01-01"}, 400, "invalid-request"),
    ({"since": "9999-12-31T23:59:59-23:59"}, 400, "invalid-request"),  # past the calendar in UTC
    ({"since": "0001-01-01T00:00:00+23:59"}, 400, "invalid-request"),
    ({"since": 1767225600}, 400, "invalid-request"),
    ({"id": ["msg_"]}, 400, "invalid-request"),
    ({"id": VALID_ID[:-1] + "\x00"}, 400, "invalid-request"),
    ({"id": VALID_ID[:-1] + "\ud800"}, 400, "invalid-request"),
    ({"endpoint": "\x00", "id": VALID_ID}, 400, "invalid-request"),
    ({"endpoint": "ok\udfff", "id": VALID_ID}, 400, "invalid-request"),
    ({"endpoint": "x" * 10_000, "id": VALID_ID}, 400, "invalid-request"),
    ({"endpoint": "", "id": VALID_ID}, 400, "invalid-request"),
    ({"endpoint": "nope", "id": VALID_ID}, 404, "unknown-endpoint"),
    ({"id": VALID_ID}, 404, "not-found"),
    ({"id": "x" * 20_000}, 413, "too-large"),
]


@pytest.mark.parametrize("body, code, error", BAD_REPLAYS)
def test_a_bad_replay_is_a_4xx_and_changes_nothing(delivered, body, code, error):
    before = messages(delivered)
    # Sent as a client can: JSON with \u escapes for the NUL and the lone surrogates.
    answer = api(delivered, "POST", "/api/v1/webhooks/replay", data=json.dumps(body),
                 content_type="application/json")
    assert answer.status_code == code, answer.get_json()
    assert answer.get_json()["error"] == error and answer.get_json()["detail"]
    assert messages(delivered) == before


@pytest.mark.parametrize("query", [
    {"state": "lost"}, {"limit": 0}, {"limit": 1001}, {"limit": "ten"}, {"before": 0}, {"before": -1},
    {"before": "9" * 40}, {"endpoint": "\x00"}, {"endpoint": "x" * 201}, {"endpoint": ""},
    {"state": "pending\x00"},
])
def test_bad_message_queries_are_a_400(delivered, query):
    answer = api(delivered, "GET", "/api/v1/webhooks/messages", query_string=query)
    assert answer.status_code == 400, answer.get_json()
    assert answer.get_json()["error"] == "invalid-request"


@pytest.mark.parametrize("name", ["nope", "%00", "ok%00", "x" * 5000, "..", "ok/extra"])
def test_enabling_an_unknown_endpoint_is_a_404(delivered, name):
    answer = api(delivered, "POST", f"/api/v1/webhooks/endpoints/{name}/enable")
    assert answer.status_code == 404, answer.get_json()
    assert answer.get_json()["error"] in ("unknown-endpoint", "not-found")


def test_messages_of_an_endpoint_no_one_has_are_none(delivered):
    assert messages(delivered, endpoint="nope") == []


# -- the console ------------------------------------------------------------------------------

def test_the_console_page_shows_every_endpoint_and_the_messages(app, delivered, gone):
    console = operator_session(app)
    assert 'href="/console/webhooks"' in text(console.get("/console/"))  # in the navigation
    page = console.get("/console/webhooks")
    assert page.status_code == 200
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    html = text(page)
    for expected in ("ok", gone, "sick", "busy", "the endpoint answered 410 Gone", "HTTP 400", "paused", "disabled",
                     "1 failed", "every event", "allocation.released"):
        assert expected in html, expected
    assert len(set(MSG_ID.findall(html))) == 3  # one id per event, on every endpoint's row
    # Markup in a name is text.
    assert MARKUP not in html and "releases &lt;i&gt;&#34;&amp;" in html
    # Every form that changes something carries its CSRF token.
    forms = re.findall(r'<form method="post".*?</form>', html, re.S)
    assert len(forms) >= 3 + 12 and all('name="csrf_token"' in f for f in forms)

    only = text(console.get("/console/webhooks?endpoint=sick&state=failed"))
    assert only.count("<tr><td><time") == 1 and "allocation.reserved" in only
    # Pages of 25 hold all 12; with before, only the older ones.
    ids = [m["id"] for m in messages(delivered)]
    older = text(console.get(f"/console/webhooks?before={ids[5]}&size=25"))
    assert older.count("<tr><td><time") == 6 and "Newest messages" in older


@pytest.mark.parametrize("query", ["state=lost", "size=7", "size=-1", "before=x", "before=" + "9" * 30,
                                   "endpoint=%00", "endpoint=" + "x" * 300])
def test_bad_console_queries_are_a_4xx_page(app, delivered, query):
    answer = operator_session(app).get(f"/console/webhooks?{query}")
    assert answer.status_code == 400 and "Not done: invalid-request" in text(answer)


def test_the_console_forms_replay_and_enable_under_the_operators_name(app, delivered, gone, caplog):
    console = operator_session(app)
    caplog.set_level(logging.INFO, logger="pdm_app.services.webhooks")
    [failed] = messages(delivered, state="failed")
    answer = form_post(console, "/console/webhooks/replay", id=failed["msgId"], endpoint="sick",
                       back="/console/webhooks?state=failed")
    assert answer.status_code == 302 and answer.headers["Location"] == "/console/webhooks?state=failed"
    assert messages(delivered, state="failed") == []
    assert "Replayed 1 message(s)" in text(console.get("/console/webhooks"))

    answer = form_post(console, "/console/webhooks/replay", since="2000-01-01T00:00", until="", endpoint="ok")
    assert answer.status_code == 302
    assert {(m["state"], m["attempts"]) for m in messages(delivered, endpoint="ok")} == {("pending", 0)}

    answer = form_post(console, "/console/webhooks/enable", name=gone)
    assert answer.status_code == 302 and status(delivered)[gone]["disabledAt"] is None
    logged = [r.getMessage() for r in caplog.records]
    assert "webhooks: ops-alice replays 1 message(s) (%s)" % failed["msgId"] in logged
    assert f"webhooks: ops-alice enables {gone}" in logged
    # A back link elsewhere is not followed.
    answer = form_post(console, "/console/webhooks/replay", id=failed["msgId"], back="https://evil.example/")
    assert answer.headers["Location"] == "/console/webhooks"


@pytest.mark.parametrize("path, data, code, error", [
    ("/console/webhooks/replay", {"id": "msg_nope"}, 400, "invalid-id"),
    ("/console/webhooks/replay", {}, 400, "invalid-replay"),
    ("/console/webhooks/replay", {"since": "2026-01-02T00:00", "until": "2026-01-01T00:00"}, 400, "invalid-replay"),
    ("/console/webhooks/replay", {"since": "soon"}, 400, "invalid-request"),
    ("/console/webhooks/replay", {"since": "9999-12-31T23:59:59-23:59"}, 400, "invalid-request"),
    ("/console/webhooks/replay", {"id": VALID_ID, "endpoint": "nope"}, 404, "unknown-endpoint"),
    ("/console/webhooks/replay", {"id": VALID_ID}, 404, "not-found"),
    ("/console/webhooks/replay", {"id": "msg_\x00"}, 400, "invalid-request"),
    ("/console/webhooks/replay", {"id": VALID_ID, "endpoint": "x" * 5000}, 400, "invalid-request"),
    ("/console/webhooks/enable", {"name": "nope"}, 404, "unknown-endpoint"),
    ("/console/webhooks/enable", {"name": "ok\x00"}, 400, "invalid-request"),
    ("/console/webhooks/enable", {}, 400, "invalid-request"),
])
def test_refused_console_forms_say_why_and_change_nothing(app, delivered, path, data, code, error):
    console = operator_session(app)
    before = messages(delivered)
    answer = form_post(console, path, **data)
    assert answer.status_code == code and f"Not done: {error}" in text(answer), text(answer)
    assert messages(delivered) == before


def test_the_console_forms_need_their_csrf_token(app, delivered, gone):
    console = operator_session(app)
    [failed] = messages(delivered, state="failed")
    for path, data in (("/console/webhooks/replay", {"id": failed["msgId"]}),
                       ("/console/webhooks/enable", {"name": gone})):
        answer = console.post(path, data=data)
        assert answer.status_code == 400 and "csrf-refused" in text(answer)
        answer = console.post(path, data={**data, "csrf_token": "forged"})
        assert answer.status_code == 400 and "csrf-refused" in text(answer)
    assert messages(delivered, state="failed") == [failed] and status(delivered)[gone]["disabledAt"] is not None
    # And a page of it needs a signed-in operator.
    assert app.test_client().get("/console/webhooks").headers["Location"].startswith("/console/login")


# -- the console script -----------------------------------------------------------------------

def test_cli_status_as_a_table_and_as_json(app, delivered, gone):
    result = run(app, "webhooks")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ENDPOINT", "EVENTS", "STATE", "PENDING", "OLDEST", "PENDING", "FAILED", "LAST",
                                "SUCCESS"]
    rows = {line.split()[0]: line.split() for line in lines[1:6]}
    assert rows["ok"][1:6] == ["all", "ok", "0", "-", "0"] and rows["ok"][6].endswith("Z")
    assert rows[gone][1:4] == ["all", "disabled", "3"] and rows[gone][5:] == ["0", "-"]
    assert rows["sick"][1:4] == ["all", "ok", "2"] and rows["sick"][5] == "1"
    assert rows["busy"][1:4] == ["all", "paused", "3"]
    assert "disabled since" in result.stdout and "the endpoint answered 410 Gone" in result.stdout
    assert f"{PROG} webhooks enable '{gone}'" in result.stdout and "last error: HTTP 400" in result.stdout

    listed = json.loads(run(app, "webhooks", "--json").stdout)
    drop = ("oldestPendingSeconds",)
    assert [{k: v for k, v in e.items() if k not in drop} for e in listed] == [
        {k: v for k, v in e.items() if k not in drop} for e in status(delivered).values()]


def test_cli_messages_replay_and_enable(app, delivered, gone):
    [failed] = messages(delivered, state="failed")
    result = run(app, "webhooks", "messages", "--endpoint", "sick", "--state", "failed")
    assert result.exit_code == 0, result.stderr
    [header, row] = result.stdout.splitlines()
    assert header.split()[:3] == ["ID", "MSG", "ID"]
    assert row.split()[:8] == [str(failed["id"]), failed["msgId"], "sick", "allocation.reserved", f"{POOL}/acme",
                               failed["createdAt"], "failed", "2"]
    page = json.loads(run(app, "webhooks", "messages", "--limit", "5", "--json").stdout)
    assert len(page["messages"]) == 5 and page["nextBefore"] == page["messages"][-1]["id"]
    result = run(app, "webhooks", "messages", "--limit", "5")
    assert f"older messages: {PROG} webhooks messages --limit 5 --before {page['nextBefore']}" in result.stdout

    result = run(app, "webhooks", "replay", "--id", failed["msgId"], "--endpoint", "sick")
    assert result.exit_code == 0 and result.stdout.startswith("replayed 1 message(s)"), result.stderr
    assert messages(delivered, state="failed") == []
    result = run(app, "webhooks", "replay", "--since", "2000-01-01", "--until",
                 # an hour from now, at +04:00
                 (utcnow() + timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%S+04:00"), "--endpoint", "ok", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == {"replayed": 3}, result.stderr

    result = run(app, "webhooks", "enable", gone)
    assert result.exit_code == 0 and result.stdout.startswith(f"enabled {gone}: 3 message(s) pending"), result.stderr
    assert status(delivered)[gone]["disabledAt"] is None


@pytest.mark.parametrize("args, code, message", [
    (["webhooks", "enable", "nope"], 1, "error: unknown-endpoint: no webhook endpoint is named 'nope'"),
    (["webhooks", "replay", "--id", "msg_bad"], 1, "error: invalid-id: "),
    (["webhooks", "replay", "--id", VALID_ID], 1, "error: not-found: "),
    (["webhooks", "replay", "--since", "2026-01-02", "--until", "2026-01-01"], 1, "error: invalid-replay: "),
    (["webhooks", "replay", "--id", VALID_ID, "--endpoint", "nope"], 1, "error: unknown-endpoint: "),
    (["webhooks", "replay"], 2, None),
    (["webhooks", "replay", "--id", VALID_ID, "--since", "2026-01-01"], 2, None),
    (["webhooks", "replay", "--until", "2001-01-01"], 1, "error: not-found: "),  # all before it: none
    (["webhooks", "replay", "--since", "tomorrow"], 2, None),
    (["webhooks", "replay", "--since", "9999-12-31T23:59:59-23:59"], 2, None),
    (["webhooks", "messages", "--state", "lost"], 2, None),
    (["webhooks", "messages", "--limit", "0"], 2, None),
    (["webhooks", "enable"], 2, None),
])
def test_cli_refusals_and_usage_errors(app, delivered, args, code, message):
    before = messages(delivered)
    result = run(app, *args)
    assert result.exit_code == code, (result.stdout, result.stderr)
    if message:
        assert result.stderr.strip().splitlines()[-1].startswith(message) and result.stdout == ""
    assert messages(delivered) == before


def test_cli_without_endpoints_says_so(app_factory, db_url):
    app = app_factory(db_url)
    result = run(app, "webhooks")
    assert result.exit_code == 0 and "no webhook endpoints are configured" in result.stdout
    assert json.loads(run(app, "webhooks", "--json").stdout) == []
    assert run(app, "webhooks", "messages").stdout.strip() == "no messages"
