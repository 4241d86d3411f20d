"""The figures /metrics exports for the chart's alerts (helm/pool-domain-manager/files/
alerts.yaml), on SQLite and PostgreSQL: readiness, the resync interval, a Dynadot zone's
records against its limit, the registrar's throttle, the job leader's DS checks of
PowerDNS pools, and the webhook outbox per configured endpoint."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import create_engine, text, update

from conftest import NOWHERE, POOL, POOLS
from integration.test_observability import _samples
from pdm_app.dns.powerdns.ds_check import DsCheck
from pdm_app.domain import utcnow
from pdm_app.models import WebhookMessage
from pdm_app.unit_of_work import UnitOfWork
from pdm_app.webhooks.endpoints import Endpoint, WebhookSettings

LB = "198.51.100.7"
PDNS_POOL = "openova.io"
# One pool on PowerDNS (its API nowhere: the DS check is the test's), the others on Dynadot.
POOL_DNS = {pool: "powerdns" if pool == PDNS_POOL else "dynadot" for pool in POOLS}


def scrape(app) -> dict[str, float]:
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    return _samples(response.get_data(as_text=True))


def commit(client, pool: str, sub: str):
    token = client.post(f"/api/v1/pool/{pool}/reserve", json={"subdomain": sub}).get_json()["reservationToken"]
    return client.post(f"/api/v1/pool/{pool}/commit", json={"subdomain": sub, "reservationToken": token,
                                                            "loadBalancerIP": LB})


def test_ready_follows_the_schema_revision(app, db_url):
    assert scrape(app)["pdm_ready"] == 1
    engine = create_engine(db_url)
    with engine.begin() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    try:
        samples = scrape(app)
        # Behind this release: not ready, as /readyz says, though the database answers.
        assert samples["pdm_ready"] == 0 and samples["pdm_database_up"] == 1
        assert app.test_client().get("/readyz").status_code == 503
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
        engine.dispose()
    assert scrape(app)["pdm_ready"] == 1


def test_ready_is_zero_when_the_database_cannot_be_read(app_factory, tmp_path):
    app = app_factory(f"sqlite:///{tmp_path / 'missing' / 'pdm.sqlite3'}")
    samples = scrape(app)
    assert samples["pdm_database_up"] == 0 and samples["pdm_ready"] == 0


def test_resync_interval_and_the_zone_against_its_limit(app, client, fake):
    samples = scrape(app)
    assert samples["pdm_dns_resync_interval_seconds"] == app.extensions["pdm"].settings.dns_resync_interval
    # No read of the zone yet: its size is not known, so no series.
    assert f'pdm_dns_zone_records{{pool="{POOL}"}}' not in samples
    assert commit(client, POOL, "acme").status_code in (200, 201)
    samples = scrape(app)
    # One tenant's six names and the zone's two foreign sub-hosts (www, legacy): what the
    # console's pools page shows, from the same rule (domain.zone_subhost_records).
    assert samples[f'pdm_dns_zone_records{{pool="{POOL}"}}'] == 6 + 2
    assert samples[f'pdm_dns_zone_record_limit{{pool="{POOL}"}}'] == 100
    (status,) = app.extensions["pdm"].operators.pools(check_ds=False, only=POOL)
    assert status.subhost_records == 8  # what the console's pools page shows


def test_a_throttle_pauses_the_provider_and_is_counted(app, client, fake):
    throttled = 'pdm_registrar_calls_total{command="get_dns",outcome="throttled",provider="dynadot"}'
    samples = scrape(app)
    assert samples['pdm_registrar_paused_seconds{provider="dynadot"}'] == 0
    before = samples.get(throttled, 0)  # the counters are the test process's, across tests
    fake.inject("throttle")
    assert commit(client, POOL, "acme").status_code == 202
    samples = scrape(app)
    assert 0 < samples['pdm_registrar_paused_seconds{provider="dynadot"}'] <= 60
    assert samples[throttled] == before + 1
    assert samples[f'pdm_dns_pool_failing{{pool="{POOL}"}}'] == 1


def test_the_leaders_ds_checks_are_kept_for_every_process(app_factory, db_url):
    app = app_factory(db_url, pdns_base_url=NOWHERE, pdns_api_key="key", pool_dns=POOL_DNS)
    pdm = app.extensions["pdm"]
    asked = []

    def checker(pool, ds):
        asked.append(pool)
        return DsCheck("different", ("1 13 2 ab",), "another key's DS")

    pdm.operators.ds_checker = checker
    assert not any(k.startswith("pdm_dns_ds_status") for k in scrape(app))  # never checked
    assert pdm.jobs.check_ds() == 1 and asked == [PDNS_POOL]  # Dynadot pools have no DS
    # Another process (a second app on the database) reads what the leader found.
    other = app_factory(db_url, pdns_base_url=NOWHERE, pdns_api_key="key", pool_dns=POOL_DNS)
    samples = scrape(other)
    assert {k: v for k, v in samples.items() if k.startswith("pdm_dns_ds_status")} == {
        f'pdm_dns_ds_status{{pool="{PDNS_POOL}",status="{s}"}}': (1 if s == "different" else 0)
        for s in ("published", "missing", "different", "unknown")}
    pdm.operators.ds_checker = lambda pool, ds: DsCheck("published", ds)
    pdm.jobs.check_ds()
    assert scrape(other)[f'pdm_dns_ds_status{{pool="{PDNS_POOL}",status="published"}}'] == 1
    # A process that does not hold the jobs lock checks nothing.
    other.extensions["pdm"].operators.ds_checker = checker
    assert other.extensions["pdm"].jobs.check_ds() == 0 and asked == [PDNS_POOL]


@pytest.fixture
def with_webhooks(app_factory, db_url):
    endpoints = (Endpoint("catalyst", "http://127.0.0.1:9/hooks", ("whsec_" + "a" * 32,)),
                 Endpoint("audit", "http://127.0.0.1:9/audit", ("whsec_" + "b" * 32,)))
    return app_factory(db_url, webhooks=WebhookSettings(endpoints=endpoints))


def test_every_configured_webhook_endpoint_has_its_series(with_webhooks):
    samples = scrape(with_webhooks)
    for name in ("catalyst", "audit"):
        for metric in ("pdm_webhook_pending", "pdm_webhook_oldest_pending_age_seconds", "pdm_webhook_failed",
                       "pdm_webhook_endpoint_disabled"):
            assert samples[f'{metric}{{endpoint="{name}"}}'] == 0, (metric, name)


def test_webhook_figures_follow_the_outbox(with_webhooks):
    client = with_webhooks.test_client()
    assert client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "acme"}).status_code == 201
    samples = scrape(with_webhooks)
    # allocation.reserved, waiting for both endpoints (nobody delivers in this test).
    assert samples['pdm_webhook_pending{endpoint="catalyst"}'] >= 1
    assert samples['pdm_webhook_oldest_pending_age_seconds{endpoint="catalyst"}'] >= 0
    with UnitOfWork(with_webhooks.extensions["pdm"].session_factory) as tx:
        # The audit endpoint's messages given up on; the catalyst one's an hour old, and it disabled.
        tx.session.execute(update(WebhookMessage).where(WebhookMessage.endpoint == "audit")
                           .values(failed_at=utcnow()))
        tx.session.execute(update(WebhookMessage).where(WebhookMessage.endpoint == "catalyst")
                           .values(created_at=utcnow() - timedelta(hours=1)))
        tx.update_webhook_endpoint("catalyst", disabled_at=utcnow(), disabled_reason="410 Gone")
    samples = scrape(with_webhooks)
    assert samples['pdm_webhook_oldest_pending_age_seconds{endpoint="catalyst"}'] >= 3600
    assert samples['pdm_webhook_endpoint_disabled{endpoint="catalyst"}'] == 1
    assert samples['pdm_webhook_failed{endpoint="audit"}'] >= 1 and samples['pdm_webhook_pending{endpoint="audit"}'] == 0
    assert samples['pdm_webhook_endpoint_disabled{endpoint="audit"}'] == 0
