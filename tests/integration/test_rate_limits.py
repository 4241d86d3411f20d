"""Per-caller rate limits (PDM_RATE_LIMITS, Flask-Limiter, counters in the database) and
the quota of open reservations per caller and pool (PDM_MAX_OPEN_RESERVATIONS), on the
endpoints. Their settings: tests/unit/test_rate_limits.py."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, select

from conftest import POOL, make_settings
from integration.test_races import Interleave, _until_blocked_or_done, _wait
from pdm_app import create_app, metrics
from pdm_app.auth import AUTH_TOKENS, ApiToken
from pdm_app.config import (
    parse_ip_ranges,
)
from pdm_app.domain import utcnow
from pdm_app.models import PoolAllocation, RateLimitCounter
from pdm_app.ratelimit import CLEANUP_INTERVAL, DatabaseStorage

LB = "198.51.100.7"
SECRET_A = "secret-a-0123456789abcdef"
SECRET_B = "secret-b-0123456789abcdef"
TOKENS = (ApiToken("caller-a", "client", SECRET_A), ApiToken("caller-b", "client", SECRET_B))


def counter(metric, *labels) -> float:
    return (metric.labels(*labels) if labels else metric)._value.get()


@pytest.fixture
def limited_app(db_url, fake):
    """``make(**settings)``: apps with rate limits on, shut down after the test."""
    apps = []

    def make(**overrides):
        app = create_app(make_settings(db_url, fake, **overrides))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["pdm"].engine.dispose()


def check(client, sub="acme", **kwargs):
    return client.get(f"/api/v1/pool/{POOL}/check?sub={sub}", **kwargs)


def reserve(client, sub, **kwargs):
    return client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": sub}, **kwargs)


# -- the limits over HTTP ----------------------------------------------------------------


def test_check_past_its_limit_answers_429_that_reads_as_a_check_result(limited_app):
    app = limited_app(rate_limits={"check": "3/hour"})
    client = app.test_client()
    before = counter(metrics.RATE_LIMITED, "check")
    answers = [check(client) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0"]
    assert answers[0].headers["X-RateLimit-Limit"] == "3"
    assert "Retry-After" not in answers[0].headers  # only on a refusal
    limited = check(client)
    assert limited.status_code == 429
    body = limited.get_json()
    assert body["error"] == "rate-limited" and body["available"] is False and body["reason"] == "rate-limited"
    assert "try again in" in body["detail"]
    assert int(limited.headers["Retry-After"]) > 0
    assert counter(metrics.RATE_LIMITED, "check") == before + 1
    # Another caller has a budget of its own.
    assert check(client, environ_base={"REMOTE_ADDR": "192.0.2.9"}).status_code == 200


def test_the_write_scope_is_shared_by_its_routes_and_other_routes_are_never_limited(limited_app):
    app = limited_app(rate_limits={"write": "2/hour", "check": "1/hour", "operator": "1/hour"})
    client = app.test_client()
    token = reserve(client, "acme").get_json()["reservationToken"]
    assert client.post(f"/api/v1/pool/{POOL}/commit", json={
        "subdomain": "acme", "reservationToken": token, "loadBalancerIP": LB}).status_code == 200
    limited = client.delete(f"/api/v1/pool/{POOL}/release", json={"subdomain": "acme"})
    assert limited.status_code == 429
    assert limited.get_json().keys() == {"error", "detail"}
    assert limited.get_json()["error"] == "rate-limited"
    assert "Retry-After" in limited.headers
    # The check scope is its own budget.
    assert check(client).status_code == 200
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/api/v1/reserved"):
        for _ in range(3):
            answer = client.get(path)
            assert answer.status_code == 200, path
            assert "X-RateLimit-Limit" not in answer.headers


def test_the_429_answers_are_documented(limited_app):
    app = limited_app(rate_limits={"check": "1/hour"})
    client = app.test_client()
    doc = client.get("/openapi.json").get_json()
    limited = {("/api/v1/pool/{domain}/check", "get"), ("/api/v1/pool/{domain}/reserve", "post"),
               ("/api/v1/pool/{domain}/commit", "post"), ("/api/v1/pool/{domain}/release", "delete"),
               ("/api/v1/pool/{domain}/renew", "post"), ("/api/v1/pool/{domain}/list", "get"),
               ("/api/v1/pool/{domain}/history", "get"), ("/api/v1/pool/{domain}/drift", "get"),
               ("/api/v1/pools", "get"), ("/api/v1/registrar/{registrar}/validate", "post"),
               ("/api/v1/registrar/{registrar}/set-ns", "post"), ("/api/v1/registrar/{registrar}/history", "get"),
               ("/api/v1/webhooks", "get"), ("/api/v1/webhooks/messages", "get"), ("/api/v1/webhooks/replay", "post"),
               ("/api/v1/webhooks/endpoints/{name}/enable", "post")}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            assert ("429" in operation["responses"]) == ((path, method) in limited), (path, method)
    reserve_429 = doc["paths"]["/api/v1/pool/{domain}/reserve"]["post"]["responses"]["429"]["description"]
    assert "rate-limited" in reserve_429 and "too-many-reservations" in reserve_429
    check_429 = doc["paths"]["/api/v1/pool/{domain}/check"]["get"]["responses"]["429"]
    ref = check_429["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    check(client)
    body = check(client).get_json()
    assert set(doc["components"]["schemas"][ref]["required"]) == set(body) == {
        "error", "detail", "available", "reason"}


def test_a_token_is_its_callers_budget_wherever_it_calls_from(limited_app):
    app = limited_app(rate_limits={"check": "2/hour"}, auth_enabled=True, auth_mode=AUTH_TOKENS, api_tokens=TOKENS)
    client = app.test_client()
    a = {"Authorization": f"Bearer {SECRET_A}"}
    assert check(client, headers=a).status_code == 200
    assert check(client, headers=a, environ_base={"REMOTE_ADDR": "192.0.2.1"}).status_code == 200
    assert check(client, headers=a, environ_base={"REMOTE_ADDR": "192.0.2.2"}).status_code == 429
    assert check(client, headers={"Authorization": f"Bearer {SECRET_B}"}).status_code == 200


def test_forwarded_for_makes_callers_only_behind_a_trusted_proxy(limited_app):
    app = limited_app(rate_limits={"check": "1/hour"}, trusted_proxies=parse_ip_ranges("10.0.0.0/8"))
    client = app.test_client()

    def from_(remote, forwarded):
        return check(client, headers={"X-Forwarded-For": forwarded}, environ_base={"REMOTE_ADDR": remote})

    assert from_("10.0.0.2", "198.51.100.1").status_code == 200
    assert from_("10.0.0.3", "198.51.100.2").status_code == 200  # another client behind the proxy
    assert from_("10.0.0.2", "198.51.100.1").status_code == 429
    # Not a trusted proxy: a made-up X-Forwarded-For buys nothing.
    assert from_("192.0.2.50", "198.51.100.3").status_code == 200
    assert from_("192.0.2.50", "198.51.100.4").status_code == 429


@pytest.mark.postgres
def test_a_failing_counter_lets_the_request_through(postgres_url, fake, caplog):
    """Fail open, deliberately: a limit is a safety net, so a database that cannot count
    costs no request; the failure is logged and counted."""
    app = create_app(make_settings(postgres_url, fake, rate_limits={"check": "1/hour"}))
    try:
        client = app.test_client()
        assert check(client).status_code == 200
        assert check(client).status_code == 429
        limiter = next(iter(app.extensions["limiter"]))
        storage = limiter.storage
        working, storage.engine = storage.engine, create_engine(
            "postgresql+psycopg://postgres@127.0.0.1:9/nowhere", connect_args={"connect_timeout": 2})
        storage._remembered().clear()
        before = counter(metrics.RATE_LIMIT_STORAGE_ERRORS)
        answers = [check(client) for _ in range(2)]
        assert [a.status_code for a in answers] == [200, 200]
        assert counter(metrics.RATE_LIMIT_STORAGE_ERRORS) == before + 2
        assert any("Failed to rate limit" in r.getMessage() for r in caplog.records)
        storage.engine.dispose()
        storage.engine = working
        assert check(client).status_code == 429  # counting again
    finally:
        app.extensions["pdm"].engine.dispose()


# -- the storage --------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1_800_000_000.0

    def __call__(self):
        return self.now


def test_the_database_storage_counts_a_fixed_window_shared_by_every_instance(db_url):
    engine = create_engine(db_url)
    clock = Clock()
    # Two instances: two processes on one database.
    one, two = DatabaseStorage(engine=engine, clock=clock), DatabaseStorage(engine=engine, clock=clock)
    try:
        assert [one.incr("k", 60), two.incr("k", 60), one.incr("k", 60)] == [1, 2, 3]
        assert two.get("k") == 2  # the window as its own request counted it ...
        two.forget()  # ... until that request ends
        assert two.get("k") == 3 and two.get_expiry("k") == clock.now + 60
        assert one.get("other") == 0
        clock.now += 59
        assert two.incr("k", 60) == 4
        clock.now += 1  # the window ends: the next hit opens a new one
        assert two.get("k") == 0
        one.forget()
        assert one.incr("k", 60) == 1 and one.get_expiry("k") == clock.now + 60
        two.incr("stale", 10)
        clock.now += CLEANUP_INTERVAL  # lapsed rows go at the next cleanup
        one.incr("fresh", 600)
        with engine.connect() as conn:
            assert sorted(conn.execute(select(RateLimitCounter.key)).scalars()) == ["fresh"]
        one.clear("fresh")
        two.forget()
        assert two.get("fresh") == 0
        assert one.check()
    finally:
        engine.dispose()


# -- the quota of open reservations ------------------------------------------------------------


def test_the_quota_counts_open_reservations_per_caller_and_pool(limited_app):
    app = limited_app(max_open_reservations=2)
    client = app.test_client()
    tokens = {sub: reserve(client, sub).get_json()["reservationToken"] for sub in ("a1", "a2")}
    refused = reserve(client, "a3")
    assert refused.status_code == 429
    body = refused.get_json()
    assert body["error"] == "too-many-reservations"
    assert "holds 2 reservation(s)" in body["detail"] and "PDM_MAX_OPEN_RESERVATIONS=2" in body["detail"]
    assert "committing or releasing" in body["detail"]
    # Another caller, another pool: budgets of their own.
    assert reserve(client, "b1", environ_base={"REMOTE_ADDR": "192.0.2.9"}).status_code == 201
    assert client.post("/api/v1/pool/openova.io/reserve", json={"subdomain": "a3"}).status_code == 201
    # A committed tenant no longer counts; nor does a released one.
    assert client.post(f"/api/v1/pool/{POOL}/commit", json={
        "subdomain": "a1", "reservationToken": tokens["a1"], "loadBalancerIP": LB}).status_code == 200
    assert reserve(client, "a3").status_code == 201
    assert reserve(client, "a4").status_code == 429
    assert client.delete(f"/api/v1/pool/{POOL}/release", json={"subdomain": "a2"}).status_code == 200
    assert reserve(client, "a4").status_code == 201
    assert reserve(client, "a5").status_code == 429
    # A reservation that lapsed stops counting when it lapses (the sweeper need not run).
    service = app.extensions["pdm"].lifecycle
    later = utcnow() + timedelta(seconds=service.reservation_ttl + 1)
    service.clock = lambda: later
    assert reserve(client, "a5").status_code == 201
    with service.uow() as tx:
        holders = dict(tx.session.execute(select(PoolAllocation.subdomain, PoolAllocation.reserved_by).where(
            PoolAllocation.pool_domain == POOL)).all())
    assert holders["a5"] == "address:127.0.0.1" and holders["b1"] == "address:192.0.2.9"


class ReserveInterleave(Interleave):
    METHODS = ("insert_allocation_if_absent",)


def test_two_reserves_at_the_quotas_edge_never_both_pass(limited_app, monkeypatch):
    """One room left under the quota and two reserves of one caller at once: the first
    pauses after counting, before its insert; on PostgreSQL the test waits until the
    second is blocked (on the caller's lock) or done before letting the first go on. The
    second must count the first's reservation and answer 429."""
    app = limited_app(max_open_reservations=1)
    pdm = app.extensions["pdm"]
    interleave = ReserveInterleave(monkeypatch)
    counted, go_on = threading.Event(), threading.Event()

    def first_pause():
        counted.set()
        _wait(go_on, "the second reserve to start")

    interleave.at("first", "insert_allocation_if_absent", first_pause)
    statuses: dict[str, int] = {}

    def do_reserve(sub):
        statuses[sub] = reserve(app.test_client(), sub).status_code

    first = threading.Thread(target=do_reserve, args=("first",), name="first")
    first.start()
    _wait(counted, "the first reserve to count the caller's reservations")
    second = threading.Thread(target=do_reserve, args=("second",), name="second")
    second.start()
    if pdm.engine.dialect.name == "postgresql":
        _until_blocked_or_done(pdm.engine, second, "the second reserve")
    go_on.set()
    first.join(60)
    second.join(60)
    assert statuses == {"first": 201, "second": 429}, statuses
    assert [a.subdomain for a in pdm.operators.list_pool(POOL).allocations] == ["first"]


def test_operators_tools_are_not_held_to_the_quota(limited_app):
    app = limited_app(max_open_reservations=1)
    service = app.extensions["pdm"].lifecycle
    for sub in ("t1", "t2", "t3"):
        service.reserve(POOL, sub, "bench", "cli")
    assert len(app.extensions["pdm"].operators.list_pool(POOL).allocations) == 3
