"""What /metrics reads of the database at scrape time (``Operators.figures``), and the rule
/readyz and ``pdm_ready`` share: the schema is at this release's revision.

Every figure here is one the chart's alerts or dashboard read (helm/pool-domain-manager/
files/alerts.yaml): they come from the database, so every worker of every replica
answers the same, whichever of them the job leader is.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from .. import domain
from ..models import SCHEMA_REVISION, PoolZone
from ..unit_of_work import UnitOfWork


def schema_is_current(revision: str | None) -> bool:
    """At this release's head, or ahead of it: during a rolling upgrade the new release's
    migration runs first, and its migrations keep the previous release working (expand,
    then contract), so old pods stay ready. Revision ids are zero-padded numbers."""
    return revision is not None and revision.isdigit() and int(revision) >= int(SCHEMA_REVISION)


@dataclass(frozen=True)
class Resync:
    """The pool's resync: when the last one that checked every name began, and the one
    under way (PowerDNS, in slices): since when, names checked of those to check."""

    last: datetime | None
    started: datetime | None = None
    checked: int = 0
    total: int = 0

    @classmethod
    def of(cls, zone: PoolZone | None) -> "Resync":
        if zone is None:
            return cls(None)
        if zone.resync_started_at is None:
            return cls(zone.resynced_at)
        return cls(zone.resynced_at, zone.resync_started_at, zone.resync_checked, zone.resync_total)


@dataclass(frozen=True)
class ZoneRecords:
    """A Dynadot pool's zone: the sub-host records its one write carries, and how many the
    registrar takes."""

    records: int
    limit: int


@dataclass(frozen=True)
class WebhookFigures:
    """One configured (or still referenced) webhook endpoint's outbox."""

    pending: int = 0
    oldest_age: float | None = None  # seconds the oldest pending message has waited
    failed: int = 0  # given up on (past the retry schedule), until replayed or pruned
    disabled: bool = False  # it answered 410: nothing goes out until `webhooks enable`


@dataclass(frozen=True)
class Figures:
    # (pool, state) -> allocations
    allocations: dict[tuple[str, str], int]
    # pool -> pending DNS changes, and the age in seconds of the oldest
    pending: dict[str, int]
    oldest: dict[str, float]
    # pool -> why its zone is not written back
    blocked: dict[str, str]
    # pools whose last pass failed
    failing: set[str]
    resyncs: dict[str, Resync]
    # /readyz would answer 200: the schema is at this release's revision
    ready: bool = False
    # PDM_DNS_RESYNC_INTERVAL (0: off)
    resync_interval: float = 0.0
    zone_records: dict[str, ZoneRecords] = field(default_factory=dict)
    # DNS host (dynadot, powerdns) -> seconds left of the pause its throttle asked for
    registrar_paused: dict[str, float] = field(default_factory=dict)
    # PowerDNS pool -> the status of the job leader's last DS check (ds_check.PUBLISHED, ...)
    ds: dict[str, str] = field(default_factory=dict)
    webhooks: dict[str, WebhookFigures] = field(default_factory=dict)


def _schema_ready(session_factory) -> bool:
    # A transaction of its own: a missing alembic_version table must not abort the rest.
    try:
        with UnitOfWork(session_factory, single=True) as tx:
            return schema_is_current(tx.schema_revision())
    except SQLAlchemyError:
        return False


def read(ops) -> Figures:
    """The figures of ``ops`` (``Operators``): its pools, DNS engine, record names, the
    zone limit and the configured webhook endpoints."""
    publisher = ops.publisher
    backends = {pool: publisher.backend(pool) for pool in ops.managed_domains}
    # One account per DNS host: a throttle pauses the key, whichever pool met it.
    accounts = {backend.account: backend.kind for backend in backends.values()}
    with ops.uow() as tx:
        counts = tx.allocation_counts()
        summary = tx.pending_summary()
        blocked = tx.blocked_pools()
        failing = set(tx.failing_pools())
        zones = tx.pool_zones()
        pauses = tx.registrar_pauses(accounts)
        outbox = tx.webhook_figures(ops.clock())
    now = ops.clock()
    paused: dict[str, float] = {kind: 0.0 for kind in accounts.values()}
    for account, until in pauses.items():
        kind = accounts[account]
        paused[kind] = max(paused[kind], (until - now).total_seconds())
    zone_records = {}
    for pool, backend in backends.items():
        zone = zones.get(pool)
        if backend.kind == "dynadot" and zone is not None and zone.synced_at is not None:
            used = domain.zone_subhost_records(counts.get((pool, domain.ACTIVE), 0), ops.record_names,
                                               zone.foreign_subhost_records)
            zone_records[pool] = ZoneRecords(used, ops.max_subhost_records)
    ds = {pool: zones[pool].ds_status for pool, backend in backends.items()
          if backend.kind == "powerdns" and pool in zones and zones[pool].ds_status}
    webhooks = {}
    for name in (*ops.webhook_endpoints, *sorted(set(outbox) - set(ops.webhook_endpoints))):
        pending, oldest, failed, disabled = outbox.get(name, (0, None, 0, False))
        age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else None
        webhooks[name] = WebhookFigures(pending, age, failed, disabled)
    return Figures(
        allocations=counts,
        pending={pool: n for pool, (n, _) in summary.items()},
        oldest={pool: max(0.0, (now - first).total_seconds()) for pool, (_, first) in summary.items()},
        blocked=blocked, failing=failing,
        resyncs={pool: Resync.of(zones.get(pool)) for pool in ops.managed_domains},
        ready=_schema_ready(ops.session_factory),
        resync_interval=publisher.resync_interval,
        zone_records=zone_records, registrar_paused=paused, ds=ds, webhooks=webhooks,
    )
