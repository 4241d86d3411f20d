"""No client input gets a 500: what a client can send that the database, the JSON parser
or the process cannot take is refused at the request edge (pdm_app/api/body.py) with the
contract's error body -- on SQLite and on PostgreSQL, on every endpoint that reads a body
or a query -- and the service stays answering when its database does not. Gunicorn's
share of it (chunked bodies, start-up): tests/e2e/test_bad_input.py."""
from __future__ import annotations

import io
import json
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text
from werkzeug.test import EnvironBuilder, run_wsgi_app

from conftest import POOL, make_settings
from pdm_app import MAX_BODY_BYTES, create_app, db
from pdm_app.api.body import MAX_DEPTH
from pdm_app.config import load_settings
from unit.test_bad_input import BASE_ENV

LB = "91.98.0.7"
API = f"/api/v1/pool/{POOL}"
LIMIT = MAX_BODY_BYTES

# The endpoints that read a body, each with a body it accepts (after reserve("acme")).
BODY_ENDPOINTS = {
    "reserve": ("POST", "/reserve", lambda token: {"subdomain": "fresh", "createdBy": "wizard"}),
    "commit": ("POST", "/commit", lambda token: {"subdomain": "acme", "reservationToken": token,
                                                 "sovereignFQDN": "acme.example.org", "loadBalancerIP": LB}),
    "release": ("DELETE", "/release", lambda token: {"subdomain": "acme"}),
    "renew": ("POST", "/renew", lambda token: {"subdomain": "acme", "reservationToken": token, "ttl": "30m"}),
}
STRING_FIELDS = [(endpoint, name) for endpoint, (_, _, body) in BODY_ENDPOINTS.items()
                 for name, value in body("t").items() if isinstance(value, str)]
# A NUL, and lone surrogates from both halves (JSON "\ud800", "\udfff").
BAD_CHARACTERS = {"nul": "\x00", "high-surrogate": "\ud800", "low-surrogate": "\udfff"}


def reserve(client, sub="acme") -> str:
    r = client.post(f"{API}/reserve", json={"subdomain": sub})
    assert r.status_code == 201, r.get_json()
    return r.get_json()["reservationToken"]


def state(client) -> list[dict]:
    """Every allocation of the pool as the operators' list shows it (what a refused
    request must leave as it was)."""
    r = client.get(f"{API}/list")
    assert r.status_code == 200
    return r.get_json()["allocations"]


def send(client, endpoint: str, body, *, query: str = ""):
    """``body``: a dict (sent as JSON, non-ASCII as \\u escapes), or bytes/str as they are."""
    method, path, _ = BODY_ENDPOINTS[endpoint]
    data = json.dumps(body) if isinstance(body, dict) else body
    return client.open(f"{API}{path}{query}", method=method, data=data, content_type="application/json")


def send_chunked(app, endpoint: str, data: bytes):
    """The body as a server hands over a chunked one: no Content-Length, the stream ends
    where the body does (``wsgi.input_terminated``, as gunicorn sets it)."""
    method, path, _ = BODY_ENDPOINTS[endpoint]
    environ = EnvironBuilder(path=f"{API}{path}", method=method, content_type="application/json",
                             input_stream=io.BytesIO(data)).get_environ()
    del environ["CONTENT_LENGTH"]
    environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    environ["wsgi.input_terminated"] = True
    app_iter, status, _headers = run_wsgi_app(app, environ)
    try:
        answer = b"".join(app_iter)
    finally:
        getattr(app_iter, "close", lambda: None)()
    return int(status.split()[0]), json.loads(answer)


def assert_error(r, status: int, code: str) -> dict:
    body = r.get_json()
    assert r.status_code == status, body
    assert set(body) == {"error", "detail"} and body["error"] == code and body["detail"], body
    return body


# -- a NUL or a lone surrogate anywhere in a body ----------------------------------------------


def test_the_bodies_used_here_are_accepted_as_they_are(client):
    """The control: without the bad character every body below goes through."""
    token = reserve(client)
    for endpoint in ("reserve", "renew", "commit", "release"):
        r = send(client, endpoint, BODY_ENDPOINTS[endpoint][2](token))
        assert r.status_code in (200, 201), (endpoint, r.get_json())


@pytest.mark.parametrize("bad", BAD_CHARACTERS.values(), ids=BAD_CHARACTERS.keys())
@pytest.mark.parametrize("endpoint, field", STRING_FIELDS)
def test_a_bad_character_in_any_string_field_is_refused(client, endpoint, field, bad):
    token = reserve(client)
    before = state(client)
    body = BODY_ENDPOINTS[endpoint][2](token)
    body[field] = body[field][:2] + bad + body[field][2:]  # inside the value: nothing to trim
    if field == "subdomain":
        # A name: the contract's answer for a bad name, the one /check gives it.
        assert_error(send(client, endpoint, body), 422, "invalid-format")
    else:
        detail = assert_error(send(client, endpoint, body), 400, "invalid-request")["detail"]
        assert field in detail
    assert state(client) == before  # nothing was executed
    assert client.get(f"{API}/check", query_string={"sub": "fresh"}).get_json()["available"] is True


@pytest.mark.parametrize("bad", BAD_CHARACTERS.values(), ids=BAD_CHARACTERS.keys())
@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS)
def test_a_bad_character_in_a_key_or_a_nested_value_is_refused(client, endpoint, bad):
    token = reserve(client)
    before = state(client)
    base = BODY_ENDPOINTS[endpoint][2](token)
    r = send(client, endpoint, {**base, f"x{bad}y": 1})
    assert_error(r, 400, "invalid-request")
    r = send(client, endpoint, {**base, "meta": {"tags": ["ok", f"b{bad}d"]}})
    assert "meta.tags[1]" in assert_error(r, 400, "invalid-request")["detail"]
    assert state(client) == before


def test_release_does_not_fall_back_to_the_query_for_a_body_with_a_bad_character(client):
    reserve(client)
    r = send(client, "release", {"subdomain": "ac\u0000me"}, query="?sub=acme")
    assert_error(r, 422, "invalid-format")
    assert [a["subdomain"] for a in state(client)] == ["acme"]


def test_utf8_encoded_surrogates_are_not_json(client):
    """The raw bytes of a surrogate (CESU-style ED A0 80) are no UTF-8: invalid-json."""
    r = send(client, "reserve", b'{"subdomain": "fresh", "createdBy": "x\xed\xa0\x80"}')
    assert_error(r, 400, "invalid-json")


# -- nesting -------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS)
def test_a_body_nested_10000_deep_is_refused(client, endpoint):
    token = reserve(client)
    before = state(client)
    # 10,000 openings fit in the size limit; the parser would recurse once per level.
    assert_error(send(client, endpoint, "[" * 10_000), 400, "invalid-json")
    deep_value = json.dumps(BODY_ENDPOINTS[endpoint][2](token))[:-1] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}"
    assert len(deep_value) < LIMIT
    assert "nested deeper" in assert_error(send(client, endpoint, deep_value), 400, "invalid-json")["detail"]
    assert state(client) == before


def test_nesting_up_to_the_limit_is_fine_and_brackets_in_strings_do_not_count(client):
    at_limit = '{"subdomain": "fresh", "x": ' + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "}"
    assert send(client, "reserve", at_limit).status_code == 201
    past = '{"subdomain": "other", "x": ' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}"
    assert_error(send(client, "reserve", past), 400, "invalid-json")
    in_a_string = json.dumps({"subdomain": "third", "createdBy": "[{" * 100})
    assert send(client, "reserve", in_a_string).status_code == 201


def test_release_does_not_fall_back_to_the_query_for_a_deep_body(client):
    reserve(client)
    assert_error(send(client, "release", "[" * 10_000, query="?sub=acme"), 400, "invalid-json")
    assert [a["subdomain"] for a in state(client)] == ["acme"]


# -- size ------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS)
def test_a_1mb_string_is_too_large_with_or_without_a_content_length(app, client, endpoint):
    token = reserve(client)
    before = state(client)
    body = BODY_ENDPOINTS[endpoint][2](token)
    body["subdomain"] = "a" * 1_000_000
    assert_error(send(client, endpoint, body), 413, "too-large")
    status, answer = send_chunked(app, endpoint, json.dumps(body).encode())
    assert (status, answer["error"]) == (413, "too-large")
    assert state(client) == before


@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS)
def test_a_chunked_body_over_the_limit_is_refused_not_cut_and_executed(app, client, endpoint):
    """A valid request followed by 17,000 spaces: the old edge read 16 KiB of it, parsed
    that and executed it (201)."""
    token = reserve(client)
    before = state(client)
    padded = json.dumps(BODY_ENDPOINTS[endpoint][2](token)).encode() + b" " * 17_000
    status, answer = send_chunked(app, endpoint, padded)
    assert (status, answer) == (413, {"error": "too-large", "detail": f"the request body is larger than {LIMIT} bytes"})
    assert state(client) == before
    assert client.get(f"{API}/check", query_string={"sub": "fresh"}).get_json()["available"] is True


def test_a_chunked_body_of_exactly_the_limit_is_read_whole(app, client):
    body = json.dumps({"subdomain": "fresh"}).encode()
    status, answer = send_chunked(app, "reserve", body + b" " * (LIMIT - len(body)))
    assert status == 201, answer
    status, answer = send_chunked(app, "reserve", json.dumps({"subdomain": "other"}).encode() + b" " * LIMIT)
    assert status == 413, answer


# -- a bad name is invalid-format everywhere; a ttl past any limit is invalid-ttl --------------------


@pytest.mark.parametrize("bad", BAD_CHARACTERS.values(), ids=BAD_CHARACTERS.keys())
@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS)
def test_a_name_with_a_bad_character_is_invalid_format_as_check_says(client, endpoint, bad):
    token = reserve(client)
    before = state(client)
    name = f"ac{bad}me"
    body = {**BODY_ENDPOINTS[endpoint][2](token), "subdomain": name}
    assert_error(send(client, endpoint, body), 422, "invalid-format")
    check = client.get(f"{API}/check", query_string={"sub": name}) if bad == "\x00" else None
    if check is not None:  # a lone surrogate cannot be put into a URL
        assert check.get_json()["reason"] == "invalid-format"
    assert state(client) == before
    # the other fields keep their 400
    body = {**BODY_ENDPOINTS[endpoint][2](token), "createdBy": name}
    assert_error(send(client, endpoint, body), 400, "invalid-request")


def test_release_sub_with_a_nul_is_invalid_format(client):
    reserve(client)
    assert_error(client.delete(f"{API}/release?sub=ac%00me"), 422, "invalid-format")
    assert client.get(f"{API}/check?sub=ac%00me").get_json()["reason"] == "invalid-format"
    assert [a["subdomain"] for a in state(client)] == ["acme"]


@pytest.mark.parametrize("ttl", [int("9" * 401), -int("9" * 401), 1e999, -1e999, 10**20],
                         ids=["401-digits", "minus-401-digits", "1e999", "minus-1e999", "1e20"])
def test_a_ttl_past_any_limit_is_invalid_ttl(client, ttl):
    token = reserve(client)
    before = state(client)
    # json.dumps writes 1e999 as Infinity, which is no JSON: the text as a client sends it
    text_ttl = {1e999: "1e999", -1e999: "-1e999"}.get(ttl, str(ttl)) if isinstance(ttl, float) else str(ttl)
    raw = '{"subdomain": "acme", "reservationToken": "%s", "ttl": %s}' % (token, text_ttl)
    assert "PDM_RESERVATION_MAX_TTL" in assert_error(send(client, "renew", raw), 422, "invalid-ttl")["detail"]
    assert state(client) == before


# What check's reason means on reserve.
RESERVE_ANSWER = {None: (201, None), "invalid-format": (422, "invalid-format"), "reserved": (409, "reserved-name"),
                  "reserved-state": (409, "conflict"), "active-state": (409, "conflict")}
NAMES = st.one_of(
    st.text(alphabet=st.sampled_from("abcxn-09\x00\ud800\udfff\u0430\u212a é"), max_size=12),
    # letters, marks, digits, controls and lone surrogates from anywhere
    st.text(st.characters(categories=["Cs", "Cc", "Ll", "Lo", "Mn", "Nd", "Pd"]), max_size=20),
    # long, yet within the body limit
    st.builds(lambda c, n: c * n, st.sampled_from("a\x00\ud800-"), st.integers(60, 2500)),
    st.sampled_from(["admin", "xn--80ak6aa92e", "xn--mller-kva", "omantel", "XN--CAF-DMA", " acme "]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES)
def test_check_and_reserve_agree_on_any_name(client, name):
    """Whatever the name (NUL, surrogates, 2500 characters): never a 500, and reserve
    answers what check said. A surrogate cannot travel in a URL, so check is asked through
    the service; reserve goes over HTTP with the name as a JSON escape."""
    pool_service = client.application.extensions["pdm"].lifecycle
    said = pool_service.check(POOL, name)
    r = send(client, "reserve", {"subdomain": name})
    assert r.status_code != 500
    status, code = RESERVE_ANSWER[None if said.available else said.reason]
    assert r.status_code == status, (name, said, r.get_json())
    if code is not None:
        assert r.get_json()["error"] == code
    else:
        sub = r.get_json()["subdomain"]
        assert client.delete(f"{API}/release", json={"subdomain": sub}).status_code == 200
    if not any("\ud800" <= c <= "\udfff" for c in name):
        over_http = client.get(f"{API}/check", query_string={"sub": name})
        assert over_http.status_code == 200 and over_http.get_json().get("reason") == said.reason


# -- query strings and the path ------------------------------------------------------------------


@pytest.mark.parametrize("query", ["sub=ac%00me", "before=1%00", "limit=5%00", "sub=acme&limit=%00"])
def test_a_nul_in_a_history_query_parameter_is_refused(client, query):
    reserve(client)
    name = query.split("&")[-1].split("=")[0]
    assert name in assert_error(client.get(f"{API}/history?{query}"), 400, "invalid-request")["detail"]


def test_a_nul_in_release_sub_is_refused_and_nothing_is_released(client):
    reserve(client)
    assert_error(client.delete(f"{API}/release?sub=acme%00"), 422, "invalid-format")
    assert [a["subdomain"] for a in state(client)] == ["acme"]


def test_check_answers_a_nul_name_with_invalid_format(client):
    """/check always answers 200 (the contract): a name with a NUL is no DNS label."""
    r = client.get(f"{API}/check?sub=ac%00me")
    assert r.status_code == 200 and r.get_json()["available"] is False
    assert r.get_json()["reason"] == "invalid-format"


def test_percent_encoded_surrogates_in_a_query_stay_text(client):
    """werkzeug keeps undecodable escapes as they are: no surrogate reaches a handler."""
    assert_error(client.get(f"{API}/history?sub=%ED%A0%80"), 422, "invalid-format")
    assert client.get(f"{API}/check?sub=%ED%A0%80").get_json()["reason"] == "invalid-format"


@pytest.mark.parametrize("method, path", [("GET", "/check?sub=acme"), ("POST", "/reserve"), ("POST", "/commit"),
                                          ("DELETE", "/release"), ("POST", "/renew"), ("GET", "/list"),
                                          ("GET", "/history"), ("GET", "/drift")])
def test_a_nul_in_the_pool_domain_is_an_unsupported_pool(client, method, path):
    """Guard (no fix was needed: the pool is checked against the managed list first)."""
    r = client.open(f"/api/v1/pool/{POOL}%00{path}", method=method,
                    json={"subdomain": "acme", "reservationToken": "t", "loadBalancerIP": LB})
    if path.startswith("/check"):
        assert r.status_code == 200 and r.get_json()["reason"] == "unsupported-pool"
    else:
        assert_error(r, 422, "unsupported-pool")


# -- the database: an exhausted pool, a stuck statement --------------------------------------------


def test_an_exhausted_pool_answers_503_fast_and_recovers(db_url, fake):
    app = create_app(make_settings(db_url, fake, gunicorn_threads=1))
    client = app.test_client()
    engine = app.extensions["pdm"].engine
    try:
        assert engine.pool.size() == 1 + db.EXTRA_CONNECTIONS and engine.pool.timeout() == db.POOL_TIMEOUT
        held = [engine.connect() for _ in range(engine.pool.size() + db.MAX_OVERFLOW)]
        try:
            # No connection comes free while they are held: only the pool's timeout answers.
            assert_error(client.post(f"{API}/reserve", json={"subdomain": "acme"}), 503, "database-unavailable")
            assert_error(client.get(f"{API}/check?sub=acme"), 503, "database-unavailable")
        finally:
            for conn in held:
                conn.close()
        assert client.post(f"{API}/reserve", json={"subdomain": "acme"}).status_code == 201
    finally:
        app.extensions["pdm"].engine.dispose()


def test_the_pool_is_sized_from_the_threads(db_url, fake):
    settings = load_settings({"DYNADOT_API_KEY": "k", "PDM_AUTH": "disabled", "PDM_DATABASE_URL": db_url,
                              "GUNICORN_WORKERS": "3", "GUNICORN_THREADS": "12"})
    assert (settings.gunicorn_workers, settings.gunicorn_threads) == (3, 12)
    app = create_app(make_settings(db_url, fake, gunicorn_threads=settings.gunicorn_threads))
    try:
        pool = app.extensions["pdm"].engine.pool
        assert pool.size() == 12 + db.EXTRA_CONNECTIONS and pool.timeout() == db.POOL_TIMEOUT
    finally:
        app.extensions["pdm"].engine.dispose()


@pytest.mark.postgres
def test_a_stuck_statement_is_cancelled_and_answers_503(postgres_url, fake, monkeypatch):
    app = create_app(make_settings(postgres_url, fake))
    with app.extensions["pdm"].engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == f"{int(db.STATEMENT_TIMEOUT)}s"
    app.extensions["pdm"].engine.dispose()

    monkeypatch.setattr(db, "STATEMENT_TIMEOUT", 0.5)
    app = create_app(make_settings(postgres_url, fake))
    client = app.test_client()
    token = reserve(client)
    holder = create_engine(postgres_url)
    conn = holder.connect()
    # Another session holds the allocation's row lock and hangs on to it.
    conn.execute(text("SELECT 1 FROM pool_allocations WHERE subdomain = 'acme' FOR UPDATE"))
    timer = threading.Timer(8, conn.rollback)  # without a statement timeout: a 200 after 8 s
    timer.start()
    try:
        # The lock is let go after 8 s: only the statement timeout answers 503 before that.
        r = client.post(f"{API}/renew", json={"subdomain": "acme", "reservationToken": token})
        assert_error(r, 503, "database-unavailable")
    finally:
        timer.cancel()
        conn.rollback()
        conn.close()
        holder.dispose()
        app.extensions["pdm"].engine.dispose()


def test_the_longest_ttl_still_reserves(db_url, fake):
    settings = load_settings({**BASE_ENV, "PDM_RESERVATION_TTL": "3650d"})
    app = create_app(make_settings(db_url, fake, reservation_ttl=settings.reservation_ttl,
                                   reservation_max_ttl=settings.reservation_max_ttl))
    try:
        r = app.test_client().post(f"{API}/reserve", json={"subdomain": "acme"})
        assert r.status_code == 201 and r.get_json()["expiresAt"] > "2035-"
    finally:
        app.extensions["pdm"].engine.dispose()
