"""The OpenAPI document: complete against the original, and the app held to it by
Schemathesis (generated requests, every answer checked against the document)."""
from __future__ import annotations

import os
from collections import Counter

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
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

from conftest import POOL, make_settings
from pdm_app import create_app
from pdm_app.api.openapi import build_spec
from pdm_app.auth import ApiToken

HERE = os.path.dirname(os.path.abspath(__file__))
OPERATOR_SECRET = "fuzz-operator-secret-0123456789"
# Enough to find what a generator finds; bounded so the suite stays minutes, not hours.
FUZZ_EXAMPLES = int(os.environ.get("PDM_FUZZ_EXAMPLES", "150"))  # per operation and run


def test_every_original_path_method_and_success_status_is_documented(client):
    ours = client.get("/openapi.json").get_json()
    assert ours["openapi"].startswith("3.")
    with open(os.path.join(HERE, "data", "original-openapi.yaml")) as f:
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
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<domain>", "{domain}")
        assert path in documented, path
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in documented[path], (path, method)


def test_errors_are_documented_with_the_error_body(client):
    doc = client.get("/openapi.json").get_json()
    commit = doc["paths"]["/api/v1/pool/{domain}/commit"]["post"]["responses"]
    assert {"200", "202", "400", "401", "403", "404", "409", "410", "413", "422"} <= set(commit)
    assert commit["410"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert doc["components"]["schemas"]["Error"]["required"] == ["detail", "error"]


@pytest.fixture
def fuzz_schema(sqlite_url, fake):
    from conftest import truncate

    truncate(sqlite_url)
    app = create_app(make_settings(sqlite_url, fake, auth_enabled=True, dns_request_budget=2.0,
                                   api_tokens=(ApiToken("fuzzer", "operator", OPERATOR_SECRET),)))
    yield schemathesis.openapi.from_wsgi("/openapi.json", app)
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
FUZZ_TALLY: Counter = Counter()
OPERATIONS = [(path, method) for path, ops in SPEC["paths"].items() for method in ops]
# Random pool domains mostly meet 422 unsupported-pool; pinning the managed pool sends the
# generated names and bodies through the whole state machine.
RUNS = [
    pytest.param("positive", None, id="any-pool"),
    pytest.param("positive", POOL, id="managed-pool"),
]
# Schema-violating bodies must be refused. Unknown query parameters are ignored by design
# (as unknown body fields are), so negative cases mutate the body alone.
NEGATIVE = [(path, method) for path, method in OPERATIONS if "requestBody" in SPEC["paths"][path][method]]


def _fuzz(fuzz_schema, path, method, mode, pool, **fixed):
    operation = fuzz_schema[path][method.upper()]
    pinned = {"domain": pool} if pool and "{domain}" in path else None
    strategy = operation.as_strategy(GenerationMode(mode), path_parameters=pinned, **fixed)
    auth = {"Authorization": f"Bearer {OPERATOR_SECRET}"}

    @given(case=strategy)
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        sent.append(case.call_and_validate(headers=auth, checks=CHECKS).status_code)

    sent: list[int] = []
    run()
    assert sent  # hypothesis really sent cases
    FUZZ_TALLY[f"{method.upper()} {path} {mode} {pool}"] += len(sent)


@pytest.mark.parametrize("mode, pool", RUNS)
@pytest.mark.parametrize("path, method", OPERATIONS)
def test_fuzz_the_api(fuzz_schema, path, method, mode, pool):
    _fuzz(fuzz_schema, path, method, mode, pool)


@pytest.mark.parametrize("path, method", NEGATIVE)
def test_fuzz_with_invalid_bodies(fuzz_schema, path, method):
    _fuzz(fuzz_schema, path, method, "negative", POOL, query={})


def test_fuzz_tally():
    """Runs last in this module: prints how many cases were sent (for the record)."""
    if FUZZ_TALLY:
        print(f"\nfuzzing: {sum(FUZZ_TALLY.values())} cases over {len(FUZZ_TALLY)} operation runs")
