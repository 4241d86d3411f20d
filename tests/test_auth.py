"""Bearer tokens with roles, the history of who changed what, and the auth settings."""
from __future__ import annotations

import pytest

from conftest import POOL, make_settings
from pdm_app import create_app
from pdm_app.auth import ApiToken
from pdm_app.config import ConfigError, load_settings

CLIENT_SECRET = "client-secret-0123456789abcdef"
OPERATOR_SECRET = "operator-secret-0123456789abcdef"
TOKENS = (ApiToken("catalyst-api", "client", CLIENT_SECRET), ApiToken("ops-alice", "operator", OPERATOR_SECRET))
CLIENT = {"Authorization": f"Bearer {CLIENT_SECRET}"}
OPERATOR = {"Authorization": f"Bearer {OPERATOR_SECRET}"}


@pytest.fixture
def secure(db_url, fake):
    app = create_app(make_settings(db_url, fake, auth_enabled=True, api_tokens=TOKENS))
    yield app.test_client()
    app.extensions["pdm"].engine.dispose()


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
        "subdomain": "acme", "reservationToken": token, "loadBalancerIP": "198.51.100.7"}).status_code == 200
    for path in ("list", "history"):
        response = secure.get(f"/api/v1/pool/{POOL}/{path}", headers=CLIENT)
        assert response.status_code == 403 and response.get_json()["error"] == "forbidden"
    assert secure.delete(f"/api/v1/pool/{POOL}/release?sub=acme", headers=CLIENT).status_code == 200


def test_operator_may_do_everything_and_history_names_callers(secure):
    token = secure.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "acme"}, headers=CLIENT).get_json()[
        "reservationToken"]
    secure.post(f"/api/v1/pool/{POOL}/commit", headers=CLIENT, json={
        "subdomain": "acme", "reservationToken": token, "loadBalancerIP": "198.51.100.7"})
    assert secure.get(f"/api/v1/pool/{POOL}/list", headers=OPERATOR).status_code == 200
    assert secure.delete(f"/api/v1/pool/{POOL}/release?sub=acme", headers=OPERATOR).status_code == 200
    history = secure.get(f"/api/v1/pool/{POOL}/history?sub=acme", headers=OPERATOR).get_json()
    assert [(e["action"], e["caller"]) for e in history["events"]] == [
        ("dns-removed", "dns"), ("release", "ops-alice"), ("dns-published", "dns"), ("commit", "catalyst-api"),
        ("reserve", "catalyst-api")]
    assert history["events"][3]["loadBalancerIP"] == "198.51.100.7"


def test_open_endpoints_need_no_token(secure):
    for path in ("/healthz", "/readyz", "/api/v1/reserved", "/openapi.json", "/metrics"):
        assert secure.get(path).status_code == 200, path


def test_sweeper_and_drop_in_caller_names(client, app):
    service = app.extensions["pdm"].service
    service.reservation_ttl = 0
    client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "gone"})
    service.sweep()
    events = client.get(f"/api/v1/pool/{POOL}/history?sub=gone").get_json()["events"]
    assert [(e["action"], e["caller"]) for e in events] == [("expire", "sweeper"), ("reserve", "anonymous")]


def test_history_validation(client):
    assert client.get("/api/v1/pool/example.com/history").status_code == 422
    assert client.get(f"/api/v1/pool/{POOL}/history?sub=bad_name").status_code == 422


# -- settings ------------------------------------------------------------------------------

BASE = {"DYNADOT_API_KEY": "k"}


def test_no_tokens_refuses_to_start_unless_disabled():
    with pytest.raises(ConfigError, match="PDM_AUTH=disabled"):
        load_settings(BASE)
    assert load_settings({**BASE, "PDM_AUTH": "disabled"}).auth_enabled is False


def test_tokens_from_env_and_file(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"# mounted secret\nops:operator:{OPERATOR_SECRET}\n\n")
    s = load_settings({**BASE, "PDM_API_TOKENS": f"cat:client:{CLIENT_SECRET}", "PDM_API_TOKENS_FILE": str(path)})
    assert s.auth_enabled and [(t.name, t.role) for t in s.api_tokens] == [("cat", "client"), ("ops", "operator")]
    assert CLIENT_SECRET not in repr(s)


@pytest.mark.parametrize(
    "value, message",
    [
        ("cat:client", "name:role:secret"),
        ("cat:admin:0123456789abcdef0", "role"),
        ("cat:client:short", "shorter"),
        (f"a:client:{CLIENT_SECRET},a:operator:{OPERATOR_SECRET}", "twice"),
        (f"a:client:{CLIENT_SECRET},b:operator:{CLIENT_SECRET}", "share"),
    ],
)
def test_bad_tokens_are_named_without_the_secret(value, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_settings({**BASE, "PDM_API_TOKENS": value})
    assert CLIENT_SECRET not in str(err.value) and OPERATOR_SECRET not in str(err.value)


def test_unreadable_token_file(tmp_path):
    with pytest.raises(ConfigError, match="PDM_API_TOKENS_FILE"):
        load_settings({**BASE, "PDM_API_TOKENS_FILE": str(tmp_path / "missing")})
