"""Bearer tokens with roles on the endpoints, the auth modes (PDM_AUTH: tokens, operators,
disabled) as callers meet them, and the history of who changed what. The settings
themselves: tests/unit/test_auth.py."""
from __future__ import annotations

import json

import pytest

from conftest import POOL, make_settings
from pdm_app import create_app
from pdm_app.auth import AUTH_DISABLED, AUTH_OPERATORS, AUTH_TOKENS, ApiToken
from unit.test_auth import CLIENT_SECRET, OPERATOR_SECRET

TOKENS = (ApiToken("catalyst-api", "client", CLIENT_SECRET), ApiToken("ops-alice", "operator", OPERATOR_SECRET))
CLIENT = {"Authorization": f"Bearer {CLIENT_SECRET}"}
# A public address: a commit publishes only addresses reachable from the internet.
LB = "91.98.0.7"
OPERATOR = {"Authorization": f"Bearer {OPERATOR_SECRET}"}


@pytest.fixture
def secure(db_url, fake):
    app = create_app(make_settings(db_url, fake, auth_enabled=True, auth_mode=AUTH_TOKENS, api_tokens=TOKENS))
    yield app.test_client()
    app.extensions["pdm"].engine.dispose()


def app_in_mode(db_url, fake, mode, tokens=TOKENS):
    # auth_enabled stays True: the mode alone decides (make_settings' base says False).
    return create_app(make_settings(db_url, fake, auth_enabled=True, auth_mode=mode, api_tokens=tokens))


POOL_CALLS = [
    ("get", f"/api/v1/pool/{POOL}/check?sub=acme", None),
    ("post", f"/api/v1/pool/{POOL}/reserve", {"subdomain": "acme"}),
    ("post", f"/api/v1/pool/{POOL}/commit", {"subdomain": "acme", "reservationToken": "x", "loadBalancerIP": "1.2.3.4"}),
    ("delete", f"/api/v1/pool/{POOL}/release", {"subdomain": "acme"}),
    ("get", f"/api/v1/pool/{POOL}/list", None),
    ("get", f"/api/v1/pool/{POOL}/history", None),
]


@pytest.mark.parametrize("method, path, body", POOL_CALLS)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-secret-0123456789", "Basic abc", "Bearer ",
                                           f"bearer{CLIENT_SECRET}", CLIENT_SECRET])
def test_missing_or_unknown_token_is_401(secure, method, path, body, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = getattr(secure, method)(path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_client_role(secure):
    assert secure.get(f"/api/v1/pool/{POOL}/check?sub=acme", headers=CLIENT).status_code == 200
    reserved = secure.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "acme"}, headers=CLIENT)
    assert reserved.status_code == 201
    token = reserved.get_json()["reservationToken"]
    assert secure.post(f"/api/v1/pool/{POOL}/commit", headers=CLIENT, json={
        "subdomain": "acme", "reservationToken": token, "loadBalancerIP": LB}).status_code == 200
    for path in ("list", "history"):
        response = secure.get(f"/api/v1/pool/{POOL}/{path}", headers=CLIENT)
        assert response.status_code == 403 and response.get_json()["error"] == "forbidden"
    assert secure.delete(f"/api/v1/pool/{POOL}/release?sub=acme", headers=CLIENT).status_code == 200


def test_operator_may_do_everything_and_history_names_callers(secure):
    token = secure.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "acme"}, headers=CLIENT).get_json()[
        "reservationToken"]
    secure.post(f"/api/v1/pool/{POOL}/commit", headers=CLIENT, json={
        "subdomain": "acme", "reservationToken": token, "loadBalancerIP": LB})
    assert secure.get(f"/api/v1/pool/{POOL}/list", headers=OPERATOR).status_code == 200
    assert secure.delete(f"/api/v1/pool/{POOL}/release?sub=acme", headers=OPERATOR).status_code == 200
    history = secure.get(f"/api/v1/pool/{POOL}/history?sub=acme", headers=OPERATOR).get_json()
    assert [(e["action"], e["caller"]) for e in history["events"]] == [
        ("dns-removed", "dns"), ("release", "ops-alice"), ("dns-published", "dns"), ("commit", "catalyst-api"),
        ("reserve", "catalyst-api")]
    assert history["events"][3]["loadBalancerIP"] == LB


def test_open_endpoints_need_no_token(secure):
    for path in ("/healthz", "/readyz", "/api/v1/reserved", "/openapi.json", "/metrics"):
        assert secure.get(path).status_code == 200, path


def test_sweeper_and_drop_in_caller_names(client, app):
    service = app.extensions["pdm"].lifecycle
    service.reservation_ttl = 0
    client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "gone"})
    service.sweep()
    events = client.get(f"/api/v1/pool/{POOL}/history?sub=gone").get_json()["events"]
    assert [(e["action"], e["caller"]) for e in events] == [("expire", "sweeper"), ("reserve", "anonymous")]


def test_history_validation(client):
    assert client.get("/api/v1/pool/example.com/history").status_code == 422
    assert client.get(f"/api/v1/pool/{POOL}/history?sub=bad_name").status_code == 422


# -- the modes, caller by caller ------------------------------------------------------------
#
# Every mode against every kind of caller, on a client route (check) and an operator route
# (list): no header, a wrong token, a malformed header, the client token, the operator token.

HEADERS = {
    "none": None,
    "wrong": "Bearer wrong-secret-0123456789abcdef",
    "malformed": "Basic abc",
    "empty": "",
    "client": f"Bearer {CLIENT_SECRET}",
    "operator": f"Bearer {OPERATOR_SECRET}",
}
CLIENT_ROUTE = f"/api/v1/pool/{POOL}/check?sub=acme"
OPERATOR_ROUTE = f"/api/v1/pool/{POOL}/list"
ONLY_CLIENT = (TOKENS[0],)

# (mode, tokens configured) -> header -> (status on the client route, status on the operator route)
MATRIX = {
    ("tokens", TOKENS): {
        "none": (401, 401), "wrong": (401, 401), "malformed": (401, 401), "empty": (401, 401),
        "client": (200, 403), "operator": (200, 200)},
    ("operators", TOKENS): {
        "none": (200, 401), "wrong": (401, 401), "malformed": (401, 401), "empty": (401, 401),
        "client": (200, 403), "operator": (200, 200)},
    ("operators", ONLY_CLIENT): {  # no operator token: operator routes are closed
        "none": (200, 403), "wrong": (401, 401), "malformed": (401, 401), "empty": (401, 401),
        "client": (200, 403), "operator": (401, 401)},
    ("operators", ()): {  # no token at all: a token sent is unknown, hence 401
        "none": (200, 403), "wrong": (401, 401), "malformed": (401, 401), "empty": (401, 401),
        "client": (401, 401), "operator": (401, 401)},
    ("disabled", TOKENS): {
        "none": (200, 200), "wrong": (200, 200), "malformed": (200, 200), "empty": (200, 200),
        "client": (200, 200), "operator": (200, 200)},
}
MATRIX_IDS = {("tokens", TOKENS): "tokens", ("operators", TOKENS): "operators",
              ("operators", ONLY_CLIENT): "operators-client-token-only", ("operators", ()): "operators-no-tokens",
              ("disabled", TOKENS): "disabled"}


@pytest.fixture(params=list(MATRIX), ids=lambda key: MATRIX_IDS[key])
def moded(request, db_url, fake):
    mode, tokens = request.param
    app = app_in_mode(db_url, fake, mode, tokens)
    yield app.test_client(), MATRIX[request.param]
    app.extensions["pdm"].engine.dispose()


def test_every_mode_and_caller(moded):
    client, expected = moded
    for header, (on_client, on_operator) in expected.items():
        headers = {} if HEADERS[header] is None else {"Authorization": HEADERS[header]}
        for path, status in ((CLIENT_ROUTE, on_client), (OPERATOR_ROUTE, on_operator)):
            response = client.get(path, headers=headers)
            assert response.status_code == status, (header, path, response.get_json())
            body = response.get_json()
            if status == 401:
                assert body["error"] == "unauthorized"
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
            elif status == 403:
                assert body["error"] == "forbidden" and "WWW-Authenticate" not in response.headers
            if status in (401, 403) and path == OPERATOR_ROUTE:
                # an operator turned away learns the way in that needs no token
                assert "-- pool-domain-manager" in body["detail"], body
        # open endpoints stay open whatever is sent
        for path in ("/healthz", "/api/v1/reserved", "/metrics"):
            assert client.get(path, headers=headers).status_code == 200, (header, path)


def test_operators_mode_admits_the_real_client_calls_without_a_header(db_url, fake):
    app = app_in_mode(db_url, fake, AUTH_OPERATORS, ())
    c = app.test_client()
    assert c.get(CLIENT_ROUTE).status_code == 200
    reserved = c.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "acme"})
    assert reserved.status_code == 201
    token = reserved.get_json()["reservationToken"]
    assert c.post(f"/api/v1/pool/{POOL}/renew", json={"subdomain": "acme", "reservationToken": token}).status_code == 200
    assert c.post(f"/api/v1/pool/{POOL}/commit", json={
        "subdomain": "acme", "reservationToken": token, "loadBalancerIP": LB}).status_code == 200
    assert c.delete(f"/api/v1/pool/{POOL}/release", json={"subdomain": "acme"}).status_code == 200
    # the same calls with a bad header are loud, and change nothing
    bad = {"Authorization": "Bearer not-a-token-0123456789"}
    for method, path, body in POOL_CALLS[:4]:
        response = getattr(c, method)(path, json=body, headers=bad)
        assert response.status_code == 401, (method, path)
    history = app.extensions["pdm"].operators.history(POOL, "acme")
    assert {e.caller for e in history.events if e.action in ("reserve", "renew", "commit", "release")} == {"anonymous"}
    app.extensions["pdm"].engine.dispose()


@pytest.mark.parametrize("path", ["list", "history", "drift"])
def test_operators_mode_without_an_operator_token_closes_operator_routes(db_url, fake, path):
    app = app_in_mode(db_url, fake, AUTH_OPERATORS, ONLY_CLIENT)
    c = app.test_client()
    for headers in ({}, CLIENT):
        response = c.get(f"/api/v1/pool/{POOL}/{path}", headers=headers)
        assert response.status_code == 403
        body = response.get_json()
        assert body["error"] == "forbidden"
        assert "no operator token" in body["detail"] and "-- pool-domain-manager" in body["detail"]
    assert fake.calls == []  # drift refused before the zone is read
    app.extensions["pdm"].engine.dispose()


def test_operators_mode_names_token_callers_and_anonymous_ones(db_url, fake):
    app = app_in_mode(db_url, fake, AUTH_OPERATORS, TOKENS)
    c = app.test_client()
    assert c.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "alpha"}).status_code == 201
    assert c.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "beta"}, headers=CLIENT).status_code == 201
    assert c.delete(f"/api/v1/pool/{POOL}/release?sub=alpha", headers=OPERATOR).status_code == 200
    events = c.get(f"/api/v1/pool/{POOL}/history", headers=OPERATOR).get_json()["events"]
    assert [(e["subdomain"], e["action"], e["caller"]) for e in events] == [
        ("alpha", "release", "ops-alice"), ("beta", "reserve", "catalyst-api"), ("alpha", "reserve", "anonymous")]
    app.extensions["pdm"].engine.dispose()


@pytest.mark.parametrize("mode, tokens, says", [
    (AUTH_TOKENS, TOKENS, "auth mode tokens"),
    (AUTH_OPERATORS, TOKENS, "operator routes need an operator token"),
    (AUTH_OPERATORS, (), "operator routes closed"),
    (AUTH_DISABLED, (), "auth mode disabled"),
])
def test_startup_log_says_which_mode(db_url, fake, capsys, mode, tokens, says):
    capsys.readouterr()
    app = app_in_mode(db_url, fake, mode, tokens)
    app.extensions["pdm"].engine.dispose()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip().startswith("{")]
    (line,) = [entry for entry in lines if entry.get("auth_mode")]
    assert line["auth_mode"] == mode and says in line["message"]
    assert f"auth mode {mode}" in line["message"]
    assert CLIENT_SECRET not in json.dumps(lines) and OPERATOR_SECRET not in json.dumps(lines)
