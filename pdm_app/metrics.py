"""Prometheus metrics, correct across gunicorn workers.

gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR before any worker imports
prometheus_client, so every worker writes its samples to files there and /metrics sums
them (prometheus_client's multiprocess mode). Figures that live in the database --
allocations, pending DNS work -- are read at scrape time instead; while the database
cannot be read they are left out (``pdm_database_up 0``) and the rest is still served.
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
REGISTRAR_CALLS = Counter("pdm_registrar_calls_total", "Registrar calls", ["command", "outcome"])
REGISTRAR_LATENCY = Histogram(
    "pdm_registrar_call_duration_seconds", "Time a registrar call took", ["command"],
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
    """Allocations by pool and state, and the DNS work queue, read from the database;
    ``pdm_database_up`` says whether that read worked. A failed read costs only these
    figures, never the process metrics beside them."""

    def __init__(self, read):
        # () -> (allocation counts, pending counts, oldest ages, blocked pools, failing pools,
        # resyncs by pool)
        self.read = read

    def collect(self):
        up = GaugeMetricFamily("pdm_database_up", "1 when this scrape could read the database figures "
                               "(pdm_allocations, pdm_dns_work_*, pdm_dns_pool_blocked, pdm_dns_pool_failing); 0 when "
                               "they are missing")
        try:
            figures = self.read()
        except Exception as exc:  # any failure to read the database: skip its figures
            log.warning("metrics: database figures skipped, the database cannot be read (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        counts, pending, oldest, blocked_pools, failing_pools, resyncs = figures
        allocations = GaugeMetricFamily("pdm_allocations", "Allocations by pool and state", labels=["pool", "state"])
        for (pool, state), n in sorted(counts.items()):
            allocations.add_metric([pool, state], n)
        work = GaugeMetricFamily("pdm_dns_work_pending", "DNS changes not yet at the registrar", labels=["pool"])
        age = GaugeMetricFamily("pdm_dns_work_oldest_age_seconds", "Age of the oldest pending DNS change",
                                labels=["pool"])
        for pool, n in sorted(pending.items()):
            work.add_metric([pool], n)
            age.add_metric([pool], oldest[pool])
        blocked = GaugeMetricFamily("pdm_dns_pool_blocked", "1 while a pool's zone is not written back, by reason",
                                    labels=["pool", "reason"])
        for pool, reason in sorted(blocked_pools.items()):
            blocked.add_metric([pool, reason], 1)
        failing = GaugeMetricFamily("pdm_dns_pool_failing", "1 while a pool's DNS passes fail (its last_error)",
                                    labels=["pool"])
        for pool in sorted(failing_pools):
            failing.add_metric([pool], 1)
        last = GaugeMetricFamily("pdm_dns_resync_last_start_timestamp_seconds", "When the pool's last resync that "
                                 "checked every name began (Unix time)", labels=["pool"])
        names = GaugeMetricFamily("pdm_dns_resync_names", "The resync under way (PowerDNS, in slices): names "
                                  "checked and names to check", labels=["pool", "of"])
        for pool, resync in sorted(resyncs.items()):
            if resync.last is not None:
                last.add_metric([pool], resync.last.timestamp())
            if resync.started is not None:
                names.add_metric([pool, "checked"], resync.checked)
                names.add_metric([pool, "total"], resync.total)
        yield from (allocations, work, age, blocked, failing, last, names)


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
