"""The operators' console through the Flask test client, on SQLite and PostgreSQL: who
gets in, the headers and cookie, CSRF, the actions' rules and their history, paging,
exports, and bad input (a 4xx page, nothing changed)."""
from __future__ import annotations

import csv
import io
import json
import re
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import insert

from conftest import POOL, tenant_records
from pdm_app.auth import ApiToken
from pdm_app.console import access
from pdm_app.dns.zone import Record
from pdm_app.domain import utcnow
from pdm_app.models import PoolAllocation

KEY = "console-key-" + uuid.uuid4().hex
OPERATOR = "operator-" + uuid.uuid4().hex
CLIENT = "client-" + uuid.uuid4().hex
TOKENS = (ApiToken("ops-alice", "operator", OPERATOR), ApiToken("catalyst", "client", CLIENT))
LB = "198.51.100.7"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def make(app_factory, db_url, **overrides):
    return app_factory(db_url, **{"secret_key": KEY, "api_tokens": TOKENS, "auth_mode": "operators",
                                  "auth_enabled": True, **overrides})


@pytest.fixture
def app(app_factory, db_url):
    return make(app_factory, db_url)


def csrf(client, path: str = "/console/login") -> str:
    page = client.get(path)
    return _CSRF.search(page.get_data(as_text=True)).group(1)


def sign_in(client, secret: str = OPERATOR, **extra):
    return client.post("/console/login", data={"token": secret, "csrf_token": csrf(client), **extra})


@pytest.fixture
def operator(app):
    client = app.test_client()
    assert sign_in(client).status_code == 302
    return client


def post(client, path: str, page: str | None = None, **data):
    """A form sent as its page (``page``, else ``path`` itself) sends it: with its token."""
    return client.post(path, data={"csrf_token": csrf(client, page or path), **data})


def activate(app, sub: str, ip: str = LB):
    pdm = app.extensions["pdm"]
    reservation = pdm.lifecycle.reserve(POOL, sub, "catalyst-api", "catalyst")
    assert pdm.lifecycle.commit(POOL, sub, reservation.token, f"{sub}.{POOL}", ip, "catalyst").dns_done


def text(response) -> str:
    return response.get_data(as_text=True)


# -- who gets in ----------------------------------------------------------------------------

def test_without_a_key_the_console_is_off_and_says_why(app_factory, db_url):
    app = app_factory(db_url)
    answer = app.test_client().get("/console/pools/x")
    assert answer.status_code == 503 and "PDM_SECRET_KEY" in text(answer)
    assert answer.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_every_page_needs_a_signed_in_operator(app):
    client = app.test_client()
    for path in ("/console/", f"/console/pools/{POOL}", "/console/changes", "/console/changes.csv",
                 f"/console/pools/{POOL}/drift", "/console/no/such/page"):
        answer = client.get(path)
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/console/login?next=")
    # A bearer token, even an operator's, is no way into a page: the console has its session.
    answer = client.get("/console/", headers={"Authorization": f"Bearer {OPERATOR}"})
    assert answer.status_code == 302


def test_a_wrong_or_a_client_token_is_refused(app):
    client = app.test_client()
    for secret in ("wrong-" + uuid.uuid4().hex, CLIENT, "", "\x00" * 40, "é" * 600):
        answer = sign_in(client, secret)
        assert answer.status_code == 401 and "That is not an operator token." in text(answer)
        assert client.get("/console/").status_code == 302


def test_signing_in_sets_a_strict_cookie_for_the_console_only(app):
    client = app.test_client()
    answer = sign_in(client, next="/console/changes")
    assert answer.status_code == 302 and answer.headers["Location"] == "/console/changes"
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain HTTP here
    assert client.get("/console/").status_code == 200
    # The API never sets or reads it.
    assert "Set-Cookie" not in client.get(f"/api/v1/pool/{POOL}/check?sub=abc").headers


def test_over_tls_the_cookie_is_secure(app):
    client = app.test_client()
    page = client.get("/console/login", base_url="https://pdm.example")
    token = _CSRF.search(text(page)).group(1)
    answer = client.post("/console/login", base_url="https://pdm.example",
                         data={"token": OPERATOR, "csrf_token": token},
                         headers={"Referer": "https://pdm.example/console/login"})
    assert answer.status_code == 302 and "Secure" in answer.headers["Set-Cookie"]
    assert "Strict-Transport-Security" in client.get("/console/", base_url="https://pdm.example").headers


def test_a_next_target_outside_the_console_is_not_followed(app):
    for target in ("https://evil.example/", "//evil.example/console/", "/api/v1/pool/x/list", "/console\\..\\x"):
        answer = sign_in(app.test_client(), next=target)
        assert answer.headers["Location"] == "/console/"


def test_sign_out_ends_the_session(operator):
    assert post(operator, "/console/logout", page="/console/").status_code == 302
    assert operator.get("/console/").status_code == 302


def test_an_idle_session_lapses(operator, monkeypatch):
    assert operator.get("/console/").status_code == 200
    real = time.time
    monkeypatch.setattr(access.time, "time", lambda: real() + 1801)
    answer = operator.get("/console/")
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/console/login")
    monkeypatch.setattr(access.time, "time", real)
    assert operator.get("/console/").status_code == 302, "the lapsed session was cleared"


def test_wrong_tokens_are_refused_at_a_bounded_rate(app_factory, db_url):
    app = make(app_factory, db_url, rate_limits={"sign-in": "3/minute"})
    client = app.test_client()
    codes = [sign_in(client, "wrong-" + uuid.uuid4().hex).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    assert sign_in(client).status_code == 429, "the right token waits too: the limit counts every attempt"
    assert "Too many sign-in attempts" in text(sign_in(client))


def test_single_sign_on_trusts_the_proxy_header_only_from_the_proxy(app_factory, db_url):
    from pdm_app.config import parse_proxies

    app = make(app_factory, db_url, console_sso_proxies=parse_proxies("10.1.0.0/16"))
    client = app.test_client()
    via_proxy = {"REMOTE_ADDR": "10.1.2.3"}
    answer = client.get("/console/", environ_base=via_proxy, headers={"X-Auth-Request-User": "bob"})
    assert answer.status_code == 200 and "bob (single sign-on)" in text(answer)
    answer = client.get("/console/", environ_base=via_proxy, headers={"X-Auth-Request-Email": "bob@example.com"})
    assert answer.status_code == 200 and "bob@example.com" in text(answer)
    # From anywhere else the header is anyone's to send: ignored.
    answer = client.get("/console/", environ_base={"REMOTE_ADDR": "10.2.0.1"}, headers={"X-Auth-Request-User": "bob"})
    assert answer.status_code == 302
    answer = client.get("/console/", environ_base=via_proxy, headers={"X-Auth-Request-User": "<b>bob</b>"})
    assert answer.status_code == 302, "a name with markup is no name"


def test_the_operators_name_from_single_sign_on_is_recorded(app_factory, db_url):
    from pdm_app.config import parse_proxies

    app = make(app_factory, db_url, console_sso_proxies=parse_proxies("10.1.0.0/16"))
    app.extensions["pdm"].lifecycle.reserve(POOL, "held", "catalyst-api", "catalyst")
    client = app.test_client()
    kw = dict(environ_base={"REMOTE_ADDR": "10.1.2.3"}, headers={"X-Auth-Request-User": "bob"})
    page = client.get(f"/console/pools/{POOL}/tenants/held/release", **kw)
    token = _CSRF.search(text(page)).group(1)
    assert client.post(f"/console/pools/{POOL}/tenants/held/release", data={"csrf_token": token},
                       **kw).status_code == 302
    events = app.extensions["pdm"].operators.history(POOL, "held").events
    assert [(e.caller, e.origin) for e in events if e.action == "release"] == [("bob", "console 10.1.2.3")]


# -- what every page sends --------------------------------------------------------------------

def test_every_page_sends_the_security_headers(operator):
    for path in ("/console/login", "/console/", f"/console/pools/{POOL}", "/console/changes", "/console/pools/nope"):
        answer = operator.get(path)
        headers = answer.headers
        assert "script-src" not in headers["Content-Security-Policy"], "no script runs: default-src 'none'"
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY" and headers["Referrer-Policy"] == "no-referrer"
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["Cache-Control"] == "no-store"
    assert operator.get("/console/pools/nope").status_code == 422
    unknown = operator.get("/console/no/such/page")
    assert unknown.status_code == 404 and "Not done: not-found" in text(unknown)
    assert unknown.headers["X-Frame-Options"] == "DENY"


def test_a_post_without_its_csrf_token_changes_nothing(app, operator):
    activate(app, "acme")
    answer = operator.post(f"/console/pools/{POOL}/tenants/acme/release", data={"confirm": "acme"})
    assert answer.status_code == 400 and "csrf-refused" in text(answer)
    answer = operator.post(f"/console/pools/{POOL}/tenants/acme/release", data={"confirm": "acme",
                                                                             "csrf_token": "forged"})
    assert answer.status_code == 400
    assert app.extensions["pdm"].operators.allocation(POOL, "acme").state == "active"


def test_markup_from_callers_and_the_registrar_is_escaped(app, operator):
    written = '<script>alert(1)</script><b>"bold"</b>'
    app.extensions["pdm"].lifecycle.reserve(POOL, "shop", written, "catalyst")
    for path in (f"/console/pools/{POOL}", f"/console/pools/{POOL}/tenants/shop"):
        body = text(operator.get(path))
        assert "<script>alert(1)</script>" not in body and "<b>" not in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;&#34;bold&#34;&lt;/b&gt;" in body


# -- the actions ------------------------------------------------------------------------------

def test_release_of_an_active_tenant_needs_its_name(app, operator, fake):
    activate(app, "acme")
    assert "Type acme to release it" in text(operator.get(f"/console/pools/{POOL}/tenants/acme/release"))
    answer = post(operator, f"/console/pools/{POOL}/tenants/acme/release", confirm="acm")
    assert answer.status_code == 400 and "nothing was released" in text(answer)
    assert len(tenant_records(fake.zone(POOL), "acme")) == 6
    answer = post(operator, f"/console/pools/{POOL}/tenants/acme/release", confirm="acme")
    assert answer.status_code == 302 and tenant_records(fake.zone(POOL), "acme") == {}
    assert f"Released acme.{POOL}: its records are removed." in text(operator.get(f"/console/pools/{POOL}"))
    events = app.extensions["pdm"].operators.history(POOL, "acme").events
    assert [(e.caller, e.origin) for e in events if e.action == "release"] == [("ops-alice", "console 127.0.0.1")]
    # Released: the tenant's page shows its history instead.
    answer = operator.get(f"/console/pools/{POOL}/tenants/acme")
    assert answer.status_code == 302 and "name=acme" in answer.headers["Location"]


def test_renew_follows_the_apis_rules(app, operator):
    pdm = app.extensions["pdm"]
    pdm.lifecycle.reserve(POOL, "held", "catalyst-api", "catalyst")
    before = pdm.operators.allocation(POOL, "held").expires_at
    assert post(operator, f"/console/pools/{POOL}/tenants/held/renew", ttl="1h30m").status_code == 302
    after = pdm.operators.allocation(POOL, "held").expires_at
    assert after - before > timedelta(minutes=75)
    assert post(operator, f"/console/pools/{POOL}/tenants/held/renew", ttl="99h").status_code == 422
    assert post(operator, f"/console/pools/{POOL}/tenants/held/renew", ttl="soon").status_code == 400
    activate(app, "live")
    refused = post(operator, f"/console/pools/{POOL}/tenants/live/renew")
    assert refused.status_code == 409, text(refused)
    events = pdm.operators.history(POOL, "held").events
    assert [e.caller for e in events if e.action == "renew"] == ["ops-alice"]


def test_retry_runs_a_pass_and_is_recorded(app, operator, fake):
    activate(app, "acme")
    zone = fake.zone(POOL)
    fake.seed(POOL, [r for r in zone.records if r.host != "api.acme"], ttl=zone.ttl)
    assert "Run the pass now" in text(operator.get(f"/console/pools/{POOL}/retry"))
    answer = post(operator, f"/console/pools/{POOL}/retry")
    assert answer.status_code == 302 and len(tenant_records(fake.zone(POOL), "acme")) == 6
    events = app.extensions["pdm"].operators.history(POOL, None).events
    assert [(e.action, e.caller) for e in events if e.subdomain == ""][:1] == [("retry-dns", "ops-alice")]


def test_reconcile_shows_the_plan_then_applies_it(app, operator, fake):
    activate(app, "acme")
    zone = fake.zone(POOL)
    fake.seed(POOL, [r for r in zone.records if r.host != "console.acme"], ttl=zone.ttl)
    plan = text(operator.get(f"/console/pools/{POOL}/drift"))
    assert "console.acme" in plan and "Apply this plan" in plan
    assert len(tenant_records(fake.zone(POOL), "acme")) == 5, "showing the plan changes nothing"
    answer = post(operator, f"/console/pools/{POOL}/reconcile", page=f"/console/pools/{POOL}/drift")
    assert answer.status_code == 200 and "applied" in text(answer)
    assert len(tenant_records(fake.zone(POOL), "acme")) == 6


def test_an_unsafe_reconcile_asks_for_the_pools_name(app, operator, fake):
    for sub in ("a1", "a2", "a3"):
        activate(app, sub)
    zone = fake.zone(POOL)
    # By hand: two tenants' records point elsewhere -- 12 of the service's 18 to change.
    moved = [Record(r.host, r.rtype, "203.0.113.99", r.extra) if r.host.endswith((".a1", ".a2")) else r
             for r in zone.records]
    fake.seed(POOL, moved, ttl=zone.ttl)
    drift = f"/console/pools/{POOL}/drift"
    answer = post(operator, f"/console/pools/{POOL}/reconcile", page=drift)
    assert answer.status_code == 409 and "Type omantel.omani.works" in text(answer)
    assert set(tenant_records(fake.zone(POOL), "a1").values()) == {"203.0.113.99"}
    answer = post(operator, f"/console/pools/{POOL}/reconcile", page=drift, force="yes", confirm="omantel")
    assert answer.status_code == 400 and set(tenant_records(fake.zone(POOL), "a1").values()) == {"203.0.113.99"}
    answer = post(operator, f"/console/pools/{POOL}/reconcile", page=drift, force="yes", confirm=POOL)
    assert answer.status_code == 200 and set(tenant_records(fake.zone(POOL), "a1").values()) == {LB}
    events = app.extensions["pdm"].operators.history(POOL, None).events
    assert [(e.caller, e.detail[:12]) for e in events if e.action == "reconcile"] == [("ops-alice", "apply --forc")]


# -- reading at scale -------------------------------------------------------------------------

def seed(app, count: int) -> list[str]:
    now = utcnow()
    rows = [dict(pool_domain=POOL, subdomain=f"n{n:04d}", state="reserved",
                 reserved_at=now - timedelta(seconds=n % 50), expires_at=now + timedelta(hours=1),
                 reservation_token="0" * 64, sovereign_fqdn=None, load_balancer_ip=None,
                 created_by=f"caller-{n % 3}", updated_at=now - timedelta(seconds=n % 7), reserved_by="x",
                 carried_over=False) for n in range(count)]
    with app.extensions["pdm"].engine.begin() as conn:
        conn.execute(insert(PoolAllocation), rows)
    return [r["subdomain"] for r in rows]


@pytest.mark.parametrize("sort,order", [("name", ""), ("name", "desc"), ("updated", "desc"), ("reserved", "")])
def test_paging_visits_every_matching_row_once(app, operator, sort, order):
    seed(app, 230)
    seen, url = [], f"/console/pools/{POOL}?sort={sort}&order={order}&caller=caller-1&size=25"
    while url:
        body = text(operator.get(url))
        seen += re.findall(r'/tenants/(n\d{4})"', body)
        found = re.search(r'<a href="([^"]+)" rel="next">', body)
        url = found.group(1).replace("&amp;", "&") if found else None
    expected = [f"n{n:04d}" for n in range(230) if n % 3 == 1]
    assert sorted(seen) == expected and len(seen) == len(expected)
    if sort == "name":
        assert seen == (expected[::-1] if order else expected)


def test_search_by_the_beginning_of_a_name(app, operator):
    seed(app, 120)
    body = text(operator.get(f"/console/pools/{POOL}?q=N011"))
    assert re.findall(r'/tenants/(n\d{4})"', body) == [f"n011{d}" for d in range(10)]
    assert "No allocation matches." in text(operator.get(f"/console/pools/{POOL}?q=n2"))
    assert operator.get(f"/console/pools/{POOL}?q=n0%25").status_code == 400, "a LIKE pattern is no name"


def test_changes_search_and_export(app, operator):
    activate(app, "acme")
    app.extensions["pdm"].lifecycle.reserve(POOL, "eq", "=cmd|' /C calc'!A0", "=caller")
    page = text(operator.get(f"/console/changes?pool={POOL}&name=acme"))
    assert "commit" in page and "dns-published" in page and ">eq<" not in page
    rows = list(csv.reader(io.StringIO(text(operator.get(f"/console/changes.csv?pool={POOL}")))))
    assert rows[0] == ["id", "at", "pool", "name", "action", "caller", "origin", "address", "detail"]
    assert ["reserve", "'=caller"] in [r[4:6] for r in rows[1:]], "a cell is never a formula"
    exported = json.loads(text(operator.get(f"/console/changes.json?pool={POOL}&caller=catalyst")))
    assert {e["subdomain"] for e in exported} == {"acme"} and {e["action"] for e in exported} == {"reserve", "commit"}
    today = utcnow().strftime("%Y-%m-%d")
    assert len(json.loads(text(operator.get(f"/console/changes.json?since={today}&until={today}")))) == len(rows) - 1
    assert json.loads(text(operator.get("/console/changes.json?until=2000-01-01"))) == []


def test_the_export_reads_in_batches_and_misses_nothing(app, operator, monkeypatch):
    from pdm_app.services import console

    monkeypatch.setattr(console, "EXPORT_BATCH", 7)
    for n in range(4):
        activate(app, f"t{n}")
    exported = json.loads(text(operator.get("/console/changes.json")))
    ids = [e["id"] for e in exported]
    with app.extensions["pdm"].operators.uow() as tx:
        every = [e.id for e in tx.history(limit=1000)]
    assert len(every) >= 12 and ids == every


# -- bad input: a 4xx page, nothing changed ------------------------------------------------------

# A lone surrogate cannot be sent as UTF-8: "%ED%A0%80" is what one would look like.
BAD = ["\x00", "a\x00b", "%ED%A0%80", "x" * 5000, "%", "../..", "<b>", "9" * 40, "é"]


def url(path: str, **query) -> str:
    """``path`` with ``query`` percent-encoded, except the surrogate's bytes, sent as they are."""
    from urllib.parse import quote

    return path + "?" + "&".join(f"{k}={v if v == '%ED%A0%80' else quote(v, safe='')}" for k, v in query.items())


@pytest.mark.parametrize("value", BAD)
def test_bad_query_values_are_a_4xx_page(operator, value):
    for path, name in ((f"/console/pools/{POOL}", "q"), (f"/console/pools/{POOL}", "caller"),
                       (f"/console/pools/{POOL}", "after"), (f"/console/pools/{POOL}", "size"),
                       (f"/console/pools/{POOL}", "sort"), ("/console/changes", "name"),
                       ("/console/changes", "caller"), ("/console/changes", "action"), ("/console/changes", "since"),
                       ("/console/changes", "before"), ("/console/changes.csv", "pool")):
        answer = operator.get(url(path, **{name: value}))
        assert answer.status_code in (200, 400, 404, 422), (path, name, answer.status_code)
        if answer.status_code != 200:
            assert "Not done:" in text(answer)


@pytest.mark.parametrize("value", BAD)
def test_bad_names_in_paths_and_forms_are_a_4xx_page(app, operator, value):
    activate(app, "acme")
    quoted = value if value == "%ED%A0%80" else value.replace("%", "%25").replace("/", "%2F")
    for path in (f"/console/pools/{POOL}/tenants/{quoted}", f"/console/pools/{quoted}",
                 f"/console/pools/{quoted}/drift"):
        answer = operator.get(path)
        assert 400 <= answer.status_code < 500, (path, answer.status_code)
    answer = post(operator, f"/console/pools/{POOL}/tenants/acme/release", confirm=value)
    assert answer.status_code == 400
    answer = post(operator, f"/console/pools/{POOL}/tenants/acme/renew", ttl=value)
    assert 400 <= answer.status_code < 500
    assert app.extensions["pdm"].operators.allocation(POOL, "acme").state == "active"


@pytest.mark.parametrize("fault", ["http500", "badjson", "error"])
def test_a_registrar_that_fails_the_look_leaves_the_rest_of_the_tenant_page(app, operator, fake, fault):
    activate(app, "acme")
    fake.inject(fault, times=5, command="get_dns")
    answer = operator.get(f"/console/pools/{POOL}/tenants/acme")
    body = text(answer)
    assert answer.status_code == 200 and "the DNS could not be read now" in body
    assert "commit" in body and "catalyst-api" in body, "its facts and history are there"
    assert fake.api_key not in body


def test_search_at_the_edges_of_the_range_it_reads(app, operator):
    pdm = app.extensions["pdm"]
    names = ["a9x", "aa", "az1", "azz", "b", "z-1", "zz", "zz9", "x-y", "xn--d1acufc"]
    for name in names:
        pdm.lifecycle.reserve(POOL, name, "catalyst-api", "catalyst")
    for prefix in ("a", "a9", "az", "azz", "z", "z-", "zz", "x-", "xn--", "b", "9", "zzz"):
        body = text(operator.get(f"/console/pools/{POOL}?q={prefix}"))
        found = re.findall(r'/tenants/([a-z0-9-]+)"', body)
        assert found == sorted(n for n in names if n.startswith(prefix)), prefix


def test_the_stylesheet_is_served_to_anyone_and_is_the_only_asset(app):
    answer = app.test_client().get("/console/static/console.css")
    assert answer.status_code == 200 and answer.mimetype == "text/css" and b"prefers-color-scheme: dark" in answer.data
    page = text(app.test_client().get("/console/login"))
    assert re.findall(r'<link rel="stylesheet" href="([^"]*)"', page) == ["/console/static/console.css"]
    assert "src=" not in page and "<script" not in page
    assert all(u.startswith(("/console/", "#")) for u in re.findall(r'(?:href|action)="([^"]*)"', page))


def test_markup_in_a_registrars_error_is_shown_as_text(app, operator, fake):
    activate(app, "acme")
    markup = '<img src=x id=pwn><b>boom</b>'
    fake.inject("raw", times=50, command="get_dns", body=json.dumps(
        {"GetDnsResponse": {"ResponseCode": "-1", "Status": "error", "Error": markup}}))
    assert app.extensions["pdm"].operators.retry_dns(POOL) == {POOL: False}  # a failing pass, its error kept
    pages = ("/console/", f"/console/pools/{POOL}", f"/console/pools/{POOL}/retry",
             f"/console/pools/{POOL}/tenants/acme", f"/console/pools/{POOL}/drift")
    shown = 0
    for path in pages:
        body = text(operator.get(path))
        assert "<img src=x" not in body and "<b>boom" not in body, path
        shown += "&lt;b&gt;boom&lt;/b&gt;" in body
    assert shown >= 3, "the error is on the pages, as text"
    overview = text(operator.get("/console/"))
    card = overview[overview.index(f">{POOL}</a></h2>"):]
    last_pass = re.search(r"<dt>Last pass</dt><dd>([^<]*)</dd>", card).group(1)
    assert last_pass.endswith("ago), failed")
