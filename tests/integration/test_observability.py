"""Readiness, request ids, hygiene headers, body limit, JSON logs and metrics."""
from __future__ import annotations

import json
import re

from alembic import command
from sqlalchemy import create_engine, text

from conftest import POOL, alembic_config, reset_schema
from pdm_app.models import SCHEMA_REVISION

LB = "198.51.100.7"


def test_readyz_needs_the_schema_at_head(client, db_url):
    body = client.get("/readyz").get_json()
    assert body == {"status": "ready", "schemaRevision": SCHEMA_REVISION}
    command.downgrade(alembic_config(db_url), "-1")
    try:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.get_json()["error"] == "schema-not-at-head" and SCHEMA_REVISION in response.get_json()["detail"]
        assert client.get("/healthz").status_code == 200  # alive, just not ready
    finally:
        reset_schema(db_url)
    # a newer release migrated first (rolling upgrade): this one stays ready
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    try:
        assert client.get("/readyz").status_code == 200
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": SCHEMA_REVISION})
        engine.dispose()


def test_readyz_database_down(fake):
    from conftest import make_settings
    from pdm_app import create_app

    client = create_app(make_settings("postgresql+psycopg://x@127.0.0.1:1/none", fake)).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503 and response.get_json()["error"] == "database-unreachable"


def test_request_id_is_taken_or_made_and_echoed(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    made = client.get("/healthz").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    hostile = client.get("/healthz", headers={"X-Request-ID": "x\" injected"}).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", hostile)


def test_hygiene_headers_on_every_answer(client):
    for response in (client.get("/healthz"), client.get("/nope"),
                     client.post(f"/api/v1/pool/{POOL}/reserve", data="{", content_type="application/json")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"


def test_body_over_16_kib_is_413_json(client):
    body = json.dumps({"subdomain": "acme", "createdBy": "x" * (17 * 1024)})
    response = client.post(f"/api/v1/pool/{POOL}/reserve", data=body, content_type="application/json")
    assert response.status_code == 413 and response.get_json()["error"] == "too-large"
    response = client.delete(f"/api/v1/pool/{POOL}/release?sub=acme", data=body, content_type="application/json")
    assert response.status_code == 413
    assert client.get(f"/api/v1/pool/{POOL}/check?sub=acme").get_json()["available"] is True


def test_one_json_line_per_request(client, capsys):
    capsys.readouterr()
    client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "acme"}, headers={"X-Request-ID": "req-42"})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    requests = [line for line in lines if line["logger"] == "pdm_app.access"]
    assert len(requests) == 1
    line = requests[0]
    assert line["method"] == "POST" and line["path"] == f"/api/v1/pool/{POOL}/reserve" and line["status"] == 201
    assert line["request_id"] == "req-42" and line["caller"] == "anonymous" and line["duration_ms"] >= 0
    # the service's own lines during the request carry the request id too
    assert all(entry.get("request_id") == "req-42"
               for entry in lines if entry["logger"] == "pdm_app.services.lifecycle")
    assert {"ts", "level", "logger", "message"} <= set(line)


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics(app, client, fake):
    token = client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "acme"}).get_json()["reservationToken"]
    client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "held"})
    fake.inject("error", times=100)
    client.post(f"/api/v1/pool/{POOL}/commit", json={"subdomain": "acme", "reservationToken": token,
                                                      "loadBalancerIP": LB})
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    samples = _samples(response.get_data(as_text=True))
    assert samples[f'pdm_allocations{{pool="{POOL}",state="active"}}'] == 1
    assert samples[f'pdm_allocations{{pool="{POOL}",state="reserved"}}'] == 1
    assert samples[f'pdm_dns_work_pending{{pool="{POOL}"}}'] == 1
    assert samples[f'pdm_dns_work_oldest_age_seconds{{pool="{POOL}"}}'] >= 0
    assert samples['pdm_registrar_calls_total{command="get_dns",outcome="transient-error",provider="dynadot"}'] >= 1
    assert samples['pdm_http_requests_total{endpoint="/api/v1/pool/<domain>/reserve",method="POST",status="201"}'] >= 2
    assert any(k.startswith("pdm_http_request_duration_seconds_bucket") for k in samples)
    assert samples["pdm_database_up"] == 1
    fake.clear_faults()
    app.extensions["pdm"].lifecycle.reservation_ttl = 0
    client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "brief"})
    assert app.extensions["pdm"].jobs.sweep() >= 1
    samples = _samples(client.get("/metrics").get_data(as_text=True))
    assert samples["pdm_sweeper_deleted_total"] >= 1
    assert any(k.startswith("pdm_job_leader") and v == 1 for k, v in samples.items())
    app.extensions["pdm"].jobs.stop()


def test_invented_methods_add_no_series(client):
    for method in ("FOOBAR", "BREW", "X" * 100):
        assert client.open("/api/v1/reserved", method=method).status_code == 405
    samples = _samples(client.get("/metrics").get_data(as_text=True))
    methods = {k.split('method="')[1].split('"')[0] for k in samples if k.startswith("pdm_http_requests_total{")}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    assert samples['pdm_http_requests_total{endpoint="unmatched",method="other",status="405"}'] >= 3


def test_metrics_while_the_database_is_down(fake, capsys):
    """The process metrics are still served (200); the database figures are left out and
    pdm_database_up says so."""
    from conftest import make_settings
    from pdm_app import create_app

    app = create_app(make_settings("postgresql+psycopg://x@127.0.0.1:1/none", fake))
    client = app.test_client()
    assert client.get("/healthz").status_code == 503
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    samples = _samples(text)
    assert samples["pdm_database_up"] == 0
    assert samples['pdm_http_requests_total{endpoint="/healthz",method="GET",status="503"}'] >= 1
    assert any(k.startswith("pdm_http_request_duration_seconds_bucket") for k in samples)
    assert not any(k.startswith(("pdm_allocations", "pdm_dns_work_", "pdm_dns_pool_blocked")) for k in samples)
    assert "# HELP pdm_database_up" in text
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert any(line["logger"] == "pdm_app.metrics" and line["level"] == "warning" for line in lines)
    app.extensions["pdm"].engine.dispose()


def test_api_tokens_never_logged(db_url, fake, capsys):
    from conftest import make_settings
    from pdm_app import create_app
    from pdm_app.auth import ApiToken

    secret = "very-secret-token-value-123456"
    app = create_app(make_settings(db_url, fake, auth_enabled=True, log_level="DEBUG",
                                   api_tokens=(ApiToken("cat", "client", secret),)))
    client = app.test_client()
    client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "acme"},
                headers={"Authorization": f"Bearer {secret}"})
    client.get(f"/api/v1/pool/{POOL}/list", headers={"Authorization": f"Bearer {secret}"})
    client.get(f"/api/v1/pool/{POOL}/list", headers={"Authorization": f"Bearer {secret}x"})
    out = capsys.readouterr()
    assert secret not in out.out and secret not in out.err
    assert '"caller": "cat"' in out.out
    app.extensions["pdm"].engine.dispose()
