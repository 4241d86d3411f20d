"""The OpenAPI document: complete against the original, and the app held to it by
Schemathesis (generated requests, every answer checked against the document)."""
from __future__ import annotations

import codecs
import os
import re
from collections import Counter

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import POOL, ROOT, make_settings, postgres_problem, truncate
from pdm_app import create_app
from pdm_app.api.openapi import build_spec
from pdm_app.auth import ApiToken
from pdm_app.webhooks.events import EVENT_TYPES

OPERATOR_SECRET = "fuzz-operator-secret-0123456789"
# Enough to find what a generator finds; bounded so the suite stays minutes, not hours.
FUZZ_EXAMPLES = int(os.environ.get("PDM_FUZZ_EXAMPLES", "150"))  # per operation and run


def test_every_original_path_method_and_success_status_is_documented(client):
    ours = client.get("/openapi.json").get_json()
    assert ours["openapi"].startswith("3.")
    with open(os.path.join(ROOT, "tests", "data", "original-openapi.yaml")) as f:
        original = yaml.safe_load(f)
    for path, operations in original["paths"].items():
        assert path in ours["paths"], path
        for method, operation in operations.items():
            assert method in ours["paths"][path], (path, method)
            documented = set(ours["paths"][path][method]["responses"])
            for status in operation["responses"]:
                if status.startswith("2"):
                    assert status in documented, (path, method, status)


def test_every_route_of_the_app_is_documented(app):
    documented = app.test_client().get("/openapi.json").get_json()["paths"]
    for rule in app.url_map.iter_rules():
        # The document is the JSON API's; the console's pages are not an API.
        if rule.endpoint == "static" or rule.endpoint.startswith(("console.", "console_off.")):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)  # <path:name> -> {name}
        assert path in documented, path
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in documented[path], (path, method)


def test_every_webhook_event_is_documented_with_its_signature_headers(client):
    doc = client.get("/openapi.json").get_json()
    assert sorted(doc["x-webhooks"]) == sorted(EVENT_TYPES)
    assert doc["components"]["schemas"]["WebhookEvent"]["properties"]["type"]["enum"] == list(EVENT_TYPES)
    data = doc["components"]["schemas"]["WebhookEventData"]
    assert set(data["required"]) == {"pool", "name", "state", "caller", "address", "link"}
    assert set(data["properties"]) == set(data["required"]) | {"detail"}
    for kind, entry in doc["x-webhooks"].items():
        post = entry["post"]
        assert post["description"] and {"2XX", "410", "429", "default"} <= set(post["responses"]), kind
        assert [p["name"] for p in post["parameters"]] == ["webhook-id", "webhook-timestamp", "webhook-signature"]
        body = post["requestBody"]["content"]["application/json"]["schema"]["allOf"]
        assert body[0] == {"$ref": "#/components/schemas/WebhookEvent"}
        assert body[1]["properties"]["type"]["enum"] == [kind]


def test_errors_are_documented_with_the_error_body(client):
    doc = client.get("/openapi.json").get_json()
    commit = doc["paths"]["/api/v1/pool/{domain}/commit"]["post"]["responses"]
    assert {"200", "202", "400", "401", "403", "404", "409", "410", "413", "422"} <= set(commit)
    assert commit["410"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert doc["components"]["schemas"]["Error"]["required"] == ["detail", "error"]


# Strings as a client can send them in JSON: every code point, NUL and lone UTF-16
# surrogates ("\ud800") included. Schemathesis' generation config takes a codec, and
# draws only what that codec encodes: utf-8 (the default) has no surrogates, and with no
# codec Schemathesis leaves them out on purpose. This codec is UTF-8 that passes them
# through; the JSON body carries them as \uXXXX escapes. (Paths, queries and headers
# cannot carry a lone surrogate on the wire: Schemathesis filters those cases out.)
WIRE_TEXT = "pdm-wtf8"


def _wire_text_codec(name: str):
    if name.replace("-", "_") != WIRE_TEXT.replace("-", "_"):
        return None
    return codecs.CodecInfo(
        name=WIRE_TEXT,
        encode=lambda text, errors="strict": codecs.utf_8_encode(text, "surrogatepass"),
        decode=lambda data, errors="strict": codecs.utf_8_decode(data, "surrogatepass", True),
    )


codecs.register(_wire_text_codec)
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fuzz(request, fake):
    """(backend, schema): the app on SQLite and on PostgreSQL, its document loaded by
    Schemathesis with NUL and lone surrogates allowed in generated strings."""
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")
    truncate(url)
    app = create_app(make_settings(url, fake, auth_enabled=True, dns_request_budget=2.0,
                                   api_tokens=(ApiToken("fuzzer", "operator", OPERATOR_SECRET),)))
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    schema.config.generation.update(allow_x00=True, codec=WIRE_TEXT)
    client = app.test_client()
    for name in SEEDED:
        r = client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": name}, headers=AUTH)
        assert r.status_code == 201, r.get_json()
    yield request.param, schema
    app.extensions["pdm"].engine.dispose()


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    ignored_auth,
]
SPEC = build_spec()
OPERATIONS = [(path, method) for path, ops in SPEC["paths"].items() for method in ops]
# Random pool domains mostly meet 422 unsupported-pool; pinning the managed pool sends the
# generated names and bodies through the whole state machine.
RUNS = [
    pytest.param("positive", None, id="any-pool"),
    pytest.param("positive", POOL, id="managed-pool"),
]
# Schema-violating bodies must be refused. Unknown query parameters are ignored by design
# (as unknown body fields are), so negative cases mutate the body alone: every query
# parameter is given (empty).
NEGATIVE = [(path, method) for path, method in OPERATIONS if "requestBody" in SPEC["paths"][path][method]]
AUTH = {"Authorization": f"Bearer {OPERATOR_SECRET}"}
# A random subdomain is almost never a DNS label, and a random loadBalancerIP never an
# address: such a body stops at 422 before the database. In the managed-pool runs a body's
# subdomain is therefore often one of these names (the first two are reserved before each
# fuzz test) and a commit's address a public one, so the strings generated around them --
# createdBy, reservationToken, sovereignFQDN, ttl -- reach the database and the token
# check. And as generated strings hold a NUL in a few percent of cases and a surrogate in
# fewer, one string of such a body often gets one of these put into it (Schemathesis'
# own dictionaries cannot carry a lone surrogate: its validator encodes them as UTF-8).
SEEDED = ("acme", "globex")
NAMES = (*SEEDED, "initech", "umbrella")
PUBLIC_LB = "91.98.0.7"
BAD_TEXT = ("\x00", "\ud800", "\udfff", "\udbff")
BACKENDS = ("sqlite", "postgresql")
# What the fuzz tests sent, for test_fuzz_tally: cases by (backend, mode, "METHOD path"),
# answers by (backend, status), and cases whose body strings held a NUL or a surrogate.
FUZZ_CASES: Counter = Counter()
FUZZ_STATUSES: Counter = Counter()
FUZZ_BAD_TEXT: Counter = Counter()


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


STEERING = st.tuples(st.sampled_from((None, *NAMES)),
                     st.none() | st.tuples(st.sampled_from(BAD_TEXT), st.integers(0, 7), st.integers(0, 40)))


def _body_fields(path: str, method: str) -> list[str]:
    """The fields of an operation's request body (from the document)."""
    ref = SPEC["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return sorted(SPEC["components"]["schemas"][ref.rsplit("/", 1)[-1]]["properties"])


def _steer(case, steer, path: str, method: str) -> bool:
    """Steer a body (see NAMES); True when a character of BAD_TEXT was put in."""
    name, bad = steer
    if name is None or not isinstance(case.body, dict):
        return False
    case.body["subdomain"] = name
    if path.endswith("/commit"):
        case.body["loadBalancerIP"] = PUBLIC_LB
    if bad is None:
        return False
    # Into one of the other fields (present or not), or the name where there is none.
    fields = [f for f in _body_fields(path, method) if f != "subdomain"] or ["subdomain"]
    char, which, at = bad
    field = fields[which % len(fields)]
    value = case.body.get(field)
    value = value if isinstance(value, str) else ""
    case.body[field] = value[:at] + char + value[at:]
    return True


def _fuzz(fuzz, path, method, mode, pool, **fixed):
    backend, schema = fuzz
    operation = schema[path][method.upper()]
    pinned = {"domain": pool} if pool and "{domain}" in path else None
    strategy = operation.as_strategy(GenerationMode(mode), path_parameters=pinned, **fixed)
    auth = AUTH
    key = f"{method.upper()} {path}"
    # Positive cases only: a steered negative body could become a valid one.
    steering = STEERING if mode == "positive" and pool == POOL else st.just((None, None))

    @given(case=strategy, steer=steering)
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case, steer):
        # What Schemathesis generated (before steering): the tally holds it to NUL and
        # lone surrogates showing up.
        generated = list(_strings(case.body)) if isinstance(case.body, (dict, list, str)) else []
        bad_text_put_in = _steer(case, steer, path, method)
        response = case.call(headers=auth)
        # Counted before the checks, so a failing case is in the tally too.
        sent.append(response.status_code)
        FUZZ_CASES[(backend, mode, key)] += 1
        FUZZ_STATUSES[(backend, response.status_code)] += 1
        if any("\x00" in t for t in generated):
            FUZZ_BAD_TEXT[(backend, "nul")] += 1
        if any(LONE_SURROGATE.search(t) for t in generated):
            FUZZ_BAD_TEXT[(backend, "surrogate")] += 1
        if bad_text_put_in:
            FUZZ_BAD_TEXT[(backend, "steered")] += 1
        case.validate_response(response, checks=CHECKS, headers=auth, transport_kwargs={"headers": dict(auth)})

    sent: list[int] = []
    run()
    assert sent  # hypothesis really sent cases


@pytest.mark.parametrize("mode, pool", RUNS)
@pytest.mark.parametrize("path, method", OPERATIONS)
def test_fuzz_the_api(fuzz, path, method, mode, pool):
    _fuzz(fuzz, path, method, mode, pool)


@pytest.mark.parametrize("path, method", NEGATIVE)
def test_fuzz_with_invalid_bodies(fuzz, path, method):
    query = {p["name"]: "" for p in SPEC["paths"][path][method].get("parameters", ()) if p["in"] == "query"}
    _fuzz(fuzz, path, method, "negative", POOL, query=query)


FUZZ_TESTS = ("test_fuzz_the_api", "test_fuzz_with_invalid_bodies")
# Cases per backend, at the least: operations without parameters are exhausted after a
# case or two, the others run up to FUZZ_EXAMPLES each (3,000 of 4,500 at the default).
MIN_CASES = FUZZ_EXAMPLES * len(NEGATIVE) * 2


def test_fuzz_tally(request):
    """Runs last in this module: what the fuzz tests above did, as a whole. Every
    documented operation was fuzzed on every backend that ran -- PostgreSQL whenever it is
    there --, enough cases ran on each, the generated bodies held NUL characters and lone
    surrogates, the steered ones reached a 201, and no answer was a 5xx."""
    selected = [item for item in request.session.items
                if item.module is request.module and getattr(item, "originalname", "") in FUZZ_TESTS]
    if len(selected) < len(BACKENDS) * (len(OPERATIONS) * len(RUNS) + len(NEGATIVE)):
        pytest.skip("the tally is of the whole fuzz run; only part of it was selected")
    backends = {backend for backend, _, _ in FUZZ_CASES}
    assert "sqlite" in backends
    if postgres_problem() is None:
        assert "postgresql" in backends, "PostgreSQL is there, but the API was not fuzzed on it"
    documented = {f"{method.upper()} {path}" for path, ops in build_spec()["paths"].items() for method in ops}
    with_body = {f"{method.upper()} {path}" for path, method in NEGATIVE}
    for backend in sorted(backends):
        def sent(mode):
            return {key for (b, m, key), n in FUZZ_CASES.items() if b == backend and m == mode and n}

        assert sent("positive") == documented, (backend, documented ^ sent("positive"))
        assert sent("negative") == with_body, (backend, with_body ^ sent("negative"))
        cases = sum(n for (b, _, _), n in FUZZ_CASES.items() if b == backend)
        answers = {status: n for (b, status), n in FUZZ_STATUSES.items() if b == backend}
        print(f"\nfuzzing on {backend}: {cases} cases, answers {sorted(answers.items())}; generated bodies with "
              f"a NUL {FUZZ_BAD_TEXT[(backend, 'nul')]}, with a lone surrogate "
              f"{FUZZ_BAD_TEXT[(backend, 'surrogate')]}; {FUZZ_BAD_TEXT[(backend, 'steered')]} with one put in")
        assert cases >= MIN_CASES, (backend, cases)
        assert not {status: n for status, n in answers.items() if status >= 500}, (backend, answers)
        assert answers.get(201), f"{backend}: no reserve went through: the fuzzing never got past validation"
        assert FUZZ_BAD_TEXT[(backend, "steered")] > 0
        if FUZZ_EXAMPLES >= 100:  # fewer cases may by chance hold none
            assert FUZZ_BAD_TEXT[(backend, "nul")] > 0, f"{backend}: no generated body held a NUL"
            assert FUZZ_BAD_TEXT[(backend, "surrogate")] > 0, f"{backend}: no generated body held a lone surrogate"
