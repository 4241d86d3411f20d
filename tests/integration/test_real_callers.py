"""Day one in the real fleet: the callers as they are, against the service as the chart
deploys it by default.

The chart is rendered by real Helm with its default values (plus only the database
secret's name). The server container's environment is collected the way the kubelet
builds it -- the ConfigMap (envFrom), then the literal entries, each secretKeyRef
resolved from the secrets that exist in the cluster, an ``optional`` one left unset when
its key is missing -- with the registrar secret the previous deployment left behind
(``api-key``, ``api-secret``, ``domain``; no ``domains``). Only two things are pointed
elsewhere: ``DYNADOT_API_URL`` at the fake Dynadot and ``PDM_DATABASE_URL`` at the test
database. The app is built from that with ``load_settings(env)`` + ``create_app``.

Then catalyst-api's client (stdlib Go, no Authorization header, its own reading of each
status: wire-contract.md, "Who calls it, exactly") and the Crossplane provider-http
composition replay their calls, and the operator routes are shown closed over HTTP
while the console script in the pod answers.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import pytest

from chart_support import Rendered, pod_environment
from conftest import API_KEY, API_SECRET, BASE_FOREIGN, foreign_records, tenant_records
from pdm_app import create_app
from pdm_app.cli import cli
from pdm_app.config import load_settings

DATABASE_SECRET = "pdm-pg-app"
# The pool the previous deployment's secret names in its `domain` key.
POOL = "omani.works"
# A public address (a commit publishes only addresses reachable from the internet).
LB = "91.98.0.7"
GO_CLIENT = {"User-Agent": "Go-http-client/1.1", "Accept-Encoding": "gzip"}


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    return Rendered({"database": {"existingSecret": DATABASE_SECRET}})


def pod_env(rendered: Rendered, db_url: str, fake) -> dict[str, str]:
    env = pod_environment(rendered, {
        DATABASE_SECRET: {"uri": db_url},
        # The previous deployment's registrar secret, as it is.
        "dynadot-api-credentials": {"api-key": API_KEY, "api-secret": API_SECRET, "domain": POOL},
    })
    env["DYNADOT_API_URL"] = fake.url
    env["PDM_DATABASE_URL"] = db_url
    return env


@pytest.fixture
def deployed(rendered, db_url, fake):
    env = pod_env(rendered, db_url, fake)
    app = create_app(load_settings(env))
    yield app
    app.extensions["pdm"].jobs.stop()
    app.extensions["pdm"].engine.dispose()


@pytest.fixture(autouse=True)
def _root_logger_kept():
    """The console script swaps the log handler: the root logger is put back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@dataclass
class Answer:
    status: int
    body: dict


class GoClient:
    """What catalyst-api's client sends (stdlib Go: no Authorization header, JSON bodies,
    DELETE with a body) and how it reads each answer."""

    def __init__(self, app, created_by: str | None = None):
        self.http = app.test_client()
        self.created_by = created_by

    def _call(self, method: str, path: str, body: dict | None = None) -> Answer:
        kwargs = {"headers": dict(GO_CLIENT)}
        if body is not None:
            kwargs.update(data=json.dumps(body), content_type="application/json")
        response = self.http.open(path, method=method, **kwargs)
        assert "Authorization" not in kwargs["headers"]
        return Answer(response.status_code, response.get_json(silent=True) or {})

    def check(self, sub: str) -> Answer:
        answer = self._call("GET", f"/api/v1/pool/{POOL}/check?sub={sub}")
        # Any status below 500 is decoded as a CheckResult: a 401 here would read as
        # "unavailable" with an empty reason -- the wizard refusing every name.
        assert answer.status < 500 and "available" in answer.body, answer
        return answer

    def reserve(self, sub: str) -> Answer:
        body = {"subdomain": sub} if self.created_by is None else {"subdomain": sub, "createdBy": self.created_by}
        answer = self._call("POST", f"/api/v1/pool/{POOL}/reserve", body)
        assert answer.status in (201, 409), answer  # reservation / "conflict"; else an error
        return answer

    def commit(self, sub: str, token: str) -> Answer:
        return self._call("POST", f"/api/v1/pool/{POOL}/commit", {
            "subdomain": sub, "reservationToken": token, "sovereignFQDN": f"console.{sub}.{POOL}",
            "loadBalancerIP": LB})

    def release(self, sub: str) -> Answer:
        return self._call("DELETE", f"/api/v1/pool/{POOL}/release", {"subdomain": sub})


def console(app, *args):
    """The operators' way in: `kubectl exec deploy/pool-domain-manager -- pool-domain-manager ...`."""
    result = app.test_cli_runner().invoke(cli, list(args), prog_name="pool-domain-manager")
    assert result.exit_code in (0, 1), (result.stdout, result.stderr, result.exception)
    return result


def history(app, sub: str) -> list[tuple[str, str]]:
    events = json.loads(console(app, "history", POOL, sub, "--json").stdout)["events"]
    return [(e["action"], e["caller"]) for e in events]


# -- the environment the chart renders ---------------------------------------------------

def test_the_rendered_pod_starts_in_operators_mode_without_tokens(rendered, db_url, fake):
    env = pod_env(rendered, db_url, fake)
    assert env["PDM_AUTH"] == "operators"
    assert not {"PDM_API_TOKENS", "PDM_API_TOKENS_FILE"} & set(env)
    # The old secret has no `domains`: the optional reference leaves it unset and the
    # secret's `domain` names the pool.
    assert "DYNADOT_MANAGED_DOMAINS" not in env and env["DYNADOT_DOMAIN"] == POOL
    settings = load_settings(env)
    assert settings.effective_auth_mode == "operators" and settings.api_tokens == ()
    assert settings.managed_domains == (POOL,)
    assert settings.dynadot_api_key == API_KEY and settings.dynadot_api_url == fake.url


# -- catalyst-api ----------------------------------------------------------------------------

def test_catalyst_api_flow_without_a_token(deployed, fake):
    go = GoClient(deployed)

    available = go.check("acme")
    assert (available.status, available.body) == (200, {"available": True, "fqdn": f"acme.{POOL}"})

    reserved = go.reserve("acme")
    assert reserved.status == 201
    assert reserved.body["createdBy"] == "catalyst-api" and reserved.body["state"] == "reserved"
    token = reserved.body["reservationToken"]

    again = go.reserve("acme")
    assert (again.status, again.body["error"]) == (409, "conflict")

    committed = go.commit("acme", token)
    assert committed.status == 200, committed
    assert committed.body["state"] == "active" and committed.body["loadBalancerIP"] == LB
    assert set(tenant_records(fake.zone(POOL), "acme").values()) == {LB}

    taken = go.check("acme")
    assert taken.status == 200
    assert (taken.body["available"], taken.body["reason"]) == (False, "active-state")

    released = go.release("acme")
    assert released.status == 200, released
    assert released.body["freed"]["subdomain"] == "acme"
    assert tenant_records(fake.zone(POOL), "acme") == {}
    assert foreign_records(fake.zone(POOL), []) == BASE_FOREIGN

    gone = go.release("acme")
    assert (gone.status, gone.body["error"]) == (404, "not-found")

    unknown = go.commit("never-reserved", "00000000-0000-0000-0000-000000000000")
    assert (unknown.status, unknown.body["error"]) == (404, "not-found")

    # Every change was made by a caller without a token: `anonymous` in the history.
    assert history(deployed, "acme") == [
        ("dns-removed", "dns"), ("release", "anonymous"), ("dns-published", "dns"), ("commit", "anonymous"),
        ("reserve", "anonymous")]


# -- the Crossplane composition ---------------------------------------------------------------

def test_crossplane_composition_flow_without_a_token(deployed, fake):
    provider = GoClient(deployed, created_by="crossplane")

    reserved = provider.reserve("beta")
    assert reserved.status == 201 and reserved.body["createdBy"] == "crossplane"
    token = reserved.body["reservationToken"]

    # The first commit can race the token into the resource's status: empty token -> 403,
    # and the provider retries.
    early = provider.commit("beta", "")
    assert (early.status, early.body["error"]) == (403, "token-mismatch")
    assert tenant_records(fake.zone(POOL), "beta") == {}

    committed = provider.commit("beta", token)
    assert committed.status == 200 and committed.body["state"] == "active"
    # A retry of the same commit is safe.
    assert provider.commit("beta", token).status == 200

    released = provider.release("beta")
    assert released.status == 200 and released.body["freed"]["createdBy"] == "crossplane"
    assert tenant_records(fake.zone(POOL), "beta") == {}
    assert foreign_records(fake.zone(POOL), []) == BASE_FOREIGN

    actions = history(deployed, "beta")
    assert [a for a, _ in actions if a in ("reserve", "commit", "release")] == ["release", "commit", "reserve"]
    assert {c for a, c in actions if a in ("reserve", "commit", "release")} == {"anonymous"}


# -- operators -----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["list", "history", "drift"])
def test_operator_routes_without_a_token_are_refused(deployed, fake, path):
    response = deployed.test_client().get(f"/api/v1/pool/{POOL}/{path}", headers=GO_CLIENT)
    assert response.status_code == 403
    body = response.get_json()
    assert body["error"] == "forbidden"
    # ... and the refusal names the way in that works: the console script in the pod.
    assert "-- pool-domain-manager" in body["detail"]
    assert fake.calls == []


def test_a_wrong_token_is_loud_even_in_operators_mode(deployed):
    response = deployed.test_client().get(f"/api/v1/pool/{POOL}/check?sub=acme",
                                          headers={**GO_CLIENT, "Authorization": "Bearer not-configured-0123456789"})
    assert response.status_code == 401 and response.get_json()["error"] == "unauthorized"


def test_the_console_script_works_where_http_is_closed(deployed):
    go = GoClient(deployed)
    token = go.reserve("gamma").body["reservationToken"]
    assert go.commit("gamma", token).status == 200
    listing = json.loads(console(deployed, "list", POOL, "--json").stdout)
    assert [a["subdomain"] for a in listing["allocations"]] == ["gamma"]
    assert console(deployed, "release", POOL, "gamma", "--yes").exit_code == 0
    assert history(deployed, "gamma")[1] == ("release", "cli")


def test_open_endpoints_answer_the_probes_and_prometheus(deployed):
    http = deployed.test_client()
    health = http.get("/healthz")
    assert health.status_code == 200 and health.get_json()["managedDomains"] == [POOL]
    assert http.get("/metrics").status_code == 200
    assert http.get("/api/v1/reserved").status_code == 200


# -- the check answer, as the wizard shows it --------------------------------------------------
# wire-contract.md: `fqdn` on every answer past the pool and reserved-label checks, taken
# ones included, and a `detail` that tells the person what to do next. (These need
# services/lifecycle.py's check() as given in the auth work's report.)

def test_check_of_a_live_reservation_says_try_again_in_a_few_minutes(deployed):
    go = GoClient(deployed)
    assert go.reserve("delta").status == 201
    held = go.check("delta").body
    assert (held["available"], held["reason"], held["fqdn"]) == (False, "reserved-state", f"delta.{POOL}")
    assert "another deployment" in held["detail"] and "few minutes" in held["detail"]


def test_check_of_an_active_name_says_pick_another_name(deployed):
    go = GoClient(deployed)
    token = go.reserve("echo").body["reservationToken"]
    assert go.commit("echo", token).status == 200
    taken = go.check("echo").body
    assert (taken["available"], taken["reason"], taken["fqdn"]) == (False, "active-state", f"echo.{POOL}")
    assert "live Sovereign" in taken["detail"] and "another name" in taken["detail"]


def test_check_of_a_reserved_label_says_the_control_plane_needs_it(deployed):
    answer = GoClient(deployed).check("console").body
    assert (answer["available"], answer["reason"]) == (False, "reserved")
    assert "control plane" in answer["detail"] and "another name" in answer["detail"]


def test_check_in_an_unmanaged_pool_says_pick_another_pool_or_bring_your_own(deployed):
    response = deployed.test_client().get("/api/v1/pool/example.org/check?sub=acme", headers=GO_CLIENT)
    answer = response.get_json()
    assert response.status_code == 200
    assert (answer["available"], answer["reason"]) == (False, "unsupported-pool")
    assert "another pool" in answer["detail"] and "own domain" in answer["detail"]


def test_a_rate_limited_check_reads_as_unavailable_with_the_reason(rendered, db_url, fake):
    """catalyst-api decodes any check answer below 500 as a check result: past the limit
    the wizard shows "not available: rate-limited" and why, never a silent refusal."""
    env = pod_env(rendered, db_url, fake)
    assert env["PDM_RATE_LIMITS"]  # the chart's default limits are on
    app = create_app(load_settings({**env, "PDM_RATE_LIMITS": "check=2/hour"}))
    try:
        go = GoClient(app)
        assert [go.check("acme").body["available"] for _ in range(2)] == [True, True]
        limited = go.check("acme")
        assert limited.status == 429
        assert limited.body["available"] is False and limited.body["reason"] == "rate-limited"
        assert "try again in" in limited.body["detail"]
    finally:
        app.extensions["pdm"].engine.dispose()
