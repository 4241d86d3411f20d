"""Prometheus metrics, correct across gunicorn workers.

gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR before any worker imports
prometheus_client, so every worker writes its samples to files there and /metrics sums
them (prometheus_client's multiprocess mode). Figures that live in the database --
allocations, pending DNS work, the pools' state, the registrar's pauses, the DS checks,
the webhook outbox (``services.figures``) -- are read at scrape time instead, so every
process of every replica reports the same; while the database cannot be read they are
left out (``pdm_database_up 0``) and the rest is still served. The chart's alerts and
dashboard read these names (helm/pool-domain-manager/files/).
"""
from __future__ import annotations

import logging

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

HTTP_REQUESTS = Counter("pdm_http_requests_total", "HTTP requests answered", ["endpoint", "method", "status"])
HTTP_LATENCY = Histogram(
    "pdm_http_request_duration_seconds", "Time to answer an HTTP request", ["endpoint", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# provider: the DNS host (dynadot, powerdns). outcome: ok, throttled (asked to wait),
# transient-error, error.
REGISTRAR_CALLS = Counter("pdm_registrar_calls_total", "Calls to the pools' DNS hosts", ["command", "outcome",
                                                                                      "provider"])
REGISTRAR_LATENCY = Histogram(
    "pdm_registrar_call_duration_seconds", "Time a call to a pool's DNS host took", ["command", "provider"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
LOCK_RELEASE_FAILURES = Counter("pdm_lock_release_failures_total", "Lock releases that failed (the lock was lost)",
                                ["lock"])
LOCK_LOST = Counter("pdm_dns_lock_lost_total", "DNS passes that found their registrar lock lost and wrote nothing "
                    "more (or left their work pending)")
DNS_LOCK_HELD = Histogram(
    "pdm_dns_lock_held_seconds", "How long one DNS pass (or one slice of a resync) held its registrar lock",
    ["backend"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
# reason: registrar-transient, registrar-error or unexpected (any other exception).
DNS_PASS_FAILURES = Counter("pdm_dns_pass_failures_total", "DNS passes that failed, by pool and reason",
                            ["pool", "reason"])
HISTORY_PRUNED = Counter("pdm_history_pruned_total", "History events deleted past PDM_HISTORY_RETENTION")
SWEPT = Counter("pdm_sweeper_deleted_total", "Lapsed reservations deleted by the sweeper")
# Scopes: check, write, registrar, operator (PDM_RATE_LIMITS) and open-reservations (the
# quota, PDM_MAX_OPEN_RESERVATIONS).
RATE_LIMITED = Counter("pdm_rate_limited_total", "Requests refused (429) by a per-caller limit, by scope", ["scope"])
RATE_LIMIT_STORAGE_ERRORS = Counter("pdm_rate_limit_storage_errors_total", "Requests let through unlimited because "
                                    "their rate-limit counter could not be updated (the database failed)")
JOB_LEADER = Gauge("pdm_job_leader", "1 when this process holds the background-jobs lock",
                   multiprocess_mode="liveall")
# Webhook delivery attempts. outcome: delivered, failed (retried later), gave-up (past the
# retry schedule), gone (410: the endpoint is disabled), throttled (429/503 Retry-After).
WEBHOOK_DELIVERIES = Counter("pdm_webhook_deliveries_total", "Webhook delivery attempts, by endpoint and outcome",
                             ["endpoint", "outcome"])
WEBHOOK_LATENCY = Histogram(
    "pdm_webhook_delivery_duration_seconds", "Time one webhook delivery attempt took", ["endpoint"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


log = logging.getLogger(__name__)

# (endpoint, method, status) -> its counter and histogram: ``labels()`` checks and looks up
# its labels on every call. Bounded: endpoints are the app's routes, methods a fixed set.
_HTTP_SERIES: dict[tuple[str, str, int], tuple] = {}


def observe_request(endpoint: str, method: str, status: int, seconds: float) -> None:
    """One answered request in pdm_http_requests_total and pdm_http_request_duration_seconds."""
    key = (endpoint, method, status)
    series = _HTTP_SERIES.get(key)
    if series is None:
        series = _HTTP_SERIES[key] = (HTTP_REQUESTS.labels(endpoint, method, str(status)),
                                      HTTP_LATENCY.labels(endpoint, method))
    series[0].inc()
    series[1].observe(seconds)


class DatabaseCollector:
    """The figures read from the database at scrape time (``services.figures.Figures``):
    allocations, the DNS work queue, the pools' state, the registrar's pauses, the last DS
    checks and the webhook outbox. ``pdm_database_up`` says whether that read worked, and
    ``pdm_ready`` whether /readyz would answer 200. A failed read costs only these
    figures, never the process metrics beside them."""

    def __init__(self, read):
        # () -> services.figures.Figures
        self.read = read

    def collect(self):
        up = GaugeMetricFamily("pdm_database_up", "1 when this scrape could read the database figures "
                               "(pdm_allocations, pdm_dns_*, pdm_registrar_paused_seconds, pdm_webhook_*); 0 when "
                               "they are missing")
        ready = GaugeMetricFamily("pdm_ready", "1 when this process would answer /readyz 200: the database answers "
                                  "and its schema is at this release's revision")
        try:
            figures = self.read()
        except Exception as exc:  # any failure to read the database: skip its figures
            log.warning("metrics: database figures skipped, the database cannot be read (%s)", type(exc).__name__)
            up.add_metric([], 0)
            ready.add_metric([], 0)
            yield from (up, ready)
            return
        up.add_metric([], 1)
        ready.add_metric([], 1 if figures.ready else 0)
        yield from (up, ready)
        yield from _allocations_and_work(figures)
        yield from _pools(figures)
        yield from _webhooks(figures)


def _allocations_and_work(figures):
    allocations = GaugeMetricFamily("pdm_allocations", "Allocations by pool and state", labels=["pool", "state"])
    for (pool, state), n in sorted(figures.allocations.items()):
        allocations.add_metric([pool, state], n)
    work = GaugeMetricFamily("pdm_dns_work_pending", "DNS changes not yet at the registrar", labels=["pool"])
    age = GaugeMetricFamily("pdm_dns_work_oldest_age_seconds", "Age of the oldest pending DNS change",
                            labels=["pool"])
    for pool, n in sorted(figures.pending.items()):
        work.add_metric([pool], n)
        age.add_metric([pool], figures.oldest[pool])
    return allocations, work, age


# ``dns.powerdns.ds_check``'s answers (every one gets a series, 0 but the one found).
DS_STATUSES = ("published", "missing", "different", "unknown")


def _pools(figures):
    blocked = GaugeMetricFamily("pdm_dns_pool_blocked", "1 while a pool's zone is not written back, by reason",
                                labels=["pool", "reason"])
    for pool, reason in sorted(figures.blocked.items()):
        blocked.add_metric([pool, reason], 1)
    failing = GaugeMetricFamily("pdm_dns_pool_failing", "1 while a pool's DNS passes fail (its last_error)",
                                labels=["pool"])
    for pool in sorted(figures.failing):
        failing.add_metric([pool], 1)
    last = GaugeMetricFamily("pdm_dns_resync_last_start_timestamp_seconds", "When the pool's last resync that "
                             "checked every name began (Unix time)", labels=["pool"])
    names = GaugeMetricFamily("pdm_dns_resync_names", "The resync under way (PowerDNS, in slices): names "
                              "checked and names to check", labels=["pool", "of"])
    for pool, resync in sorted(figures.resyncs.items()):
        if resync.last is not None:
            last.add_metric([pool], resync.last.timestamp())
        if resync.started is not None:
            names.add_metric([pool, "checked"], resync.checked)
            names.add_metric([pool, "total"], resync.total)
    interval = GaugeMetricFamily("pdm_dns_resync_interval_seconds", "PDM_DNS_RESYNC_INTERVAL: how often the job "
                                 "leader resyncs every pool (0: never)")
    interval.add_metric([], figures.resync_interval)
    records = GaugeMetricFamily("pdm_dns_zone_records", "Sub-host records a Dynadot pool's zone write carries "
                                "(every tenant's and the foreign ones), as of its last read", labels=["pool"])
    limit = GaugeMetricFamily("pdm_dns_zone_record_limit", "Sub-host records the registrar takes in one zone "
                              "write (PDM_MAX_SUBHOST_RECORDS)", labels=["pool"])
    for pool, zone in sorted(figures.zone_records.items()):
        records.add_metric([pool], zone.records)
        limit.add_metric([pool], zone.limit)
    paused = GaugeMetricFamily("pdm_registrar_paused_seconds", "Seconds left of the pause the DNS host's throttle "
                               "asked every caller to keep (0: none)", labels=["provider"])
    for provider, seconds in sorted(figures.registrar_paused.items()):
        paused.add_metric([provider], max(0.0, seconds))
    ds = GaugeMetricFamily("pdm_dns_ds_status", "A PowerDNS pool's DS at its registrar, as the job leader's last "
                           "check found it: 1 for the status found (published, missing, different, unknown)",
                           labels=["pool", "status"])
    for pool, status in sorted(figures.ds.items()):
        for each in DS_STATUSES:
            ds.add_metric([pool, each], 1 if each == status else 0)
    return blocked, failing, last, names, interval, records, limit, paused, ds


def _webhooks(figures):
    pending = GaugeMetricFamily("pdm_webhook_pending", "Webhook messages not yet delivered (nor given up on)",
                                labels=["endpoint"])
    oldest = GaugeMetricFamily("pdm_webhook_oldest_pending_age_seconds", "How long the oldest undelivered webhook "
                               "message has waited (0: none)", labels=["endpoint"])
    failed = GaugeMetricFamily("pdm_webhook_failed", "Webhook messages given up on (past the retry schedule; "
                               "`webhooks replay` sends them again)", labels=["endpoint"])
    disabled = GaugeMetricFamily("pdm_webhook_endpoint_disabled", "1 while an endpoint is disabled (it answered "
                                 "410; `webhooks enable` turns it back on)", labels=["endpoint"])
    for name, endpoint in figures.webhooks.items():
        pending.add_metric([name], endpoint.pending)
        oldest.add_metric([name], endpoint.oldest_age or 0.0)
        failed.add_metric([name], endpoint.failed)
        disabled.add_metric([name], 1 if endpoint.disabled else 0)
    return pending, oldest, failed, disabled


def exposition(read_database) -> bytes:
    """The /metrics body: this deployment's process metrics plus the database figures."""
    if values.ValueClass is values.MutexValue:
        registry = REGISTRY  # one process: its own samples
    else:
        # Samples live in PROMETHEUS_MULTIPROC_DIR (chosen when prometheus_client was
        # first imported): add up every worker's.
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    database = CollectorRegistry()
    database.register(DatabaseCollector(read_database))
    return generate_latest(registry) + generate_latest(database)
