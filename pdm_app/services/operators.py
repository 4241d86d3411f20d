"""The operators' tools and views: an allocation as stored, a pool's allocations, its
history, every pool at once, the pending DNS work, a DNS pass now, drift and reconcile;
and the figures /healthz, /readyz and /metrics read.

They read what the lifecycle (``lifecycle``) and the DNS engine leave behind; of the
rows, only ``reconcile`` changes anything, and that through a DNS pass.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from .. import domain
from ..dns.backend import NameDrift
from ..dns.engine import DnsPublisher
from ..dns.errors import RegistrarError, UnreadableZone
from ..dns.policy import unsafe_plan
from ..dns.powerdns.ds_check import DsCheck
from ..dns.zone import Record
from ..domain import ACTIVE, RESERVED, Allocation, DomainError
from ..models import PoolZone
from ..redaction import redact
from ..unit_of_work import UnitOfWork
from . import figures as scrape
from .base import UseCases, to_domain
from .figures import Figures, Resync

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingDns:
    pool_domain: str
    subdomain: str
    action: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_error: str | None


@dataclass(frozen=True)
class Blocked:
    """Why a pool's zone is not written back, since when."""

    reason: str
    detail: str
    since: datetime | None


@dataclass(frozen=True)
class Failing:
    """Why the pool's last DNS pass failed (redacted), and since when its passes fail."""

    error: str
    since: datetime | None


@dataclass(frozen=True)
class Event:
    id: int
    subdomain: str
    action: str
    caller: str
    at: datetime
    load_balancer_ip: str | None
    detail: str | None
    # Where it came from ("api 10.1.2.3", "console ...", "cli on ...", "dns pass").
    origin: str | None = None
    pool_domain: str = ""

    @classmethod
    def of(cls, row) -> "Event":
        """The event a history row (``models.AllocationEvent``) records."""
        return cls(row.id, row.subdomain, row.action, row.caller, row.at, row.load_balancer_ip, row.detail,
                   row.origin, row.pool_domain)


@dataclass(frozen=True)
class PoolHistory:
    pool_domain: str
    events: list[Event]
    # The ``before`` that fetches the next page; None on the last one.
    next_before: int | None = None


@dataclass(frozen=True)
class PoolListing:
    pool_domain: str
    allocations: list[Allocation]
    pending: list[PendingDns] = field(default_factory=list)
    blocked: Blocked | None = None
    # A page (``limit``): where the next one starts, None on the last.
    paged: bool = False
    next_after: str | None = None
    failing: Failing | None = None


@dataclass(frozen=True)
class PoolStatus:
    pool_domain: str
    active: int
    reserved: int
    pending: int
    blocked: Blocked | None
    synced_at: datetime | None
    foreign_subhost_records: int | None
    dns_backend: str = "dynadot"
    # PowerDNS pools: the DS of the pool zone's key, which the pool domain's registrar
    # must publish, and whether a resolver sees it published.
    ds: tuple[str, ...] = ()
    ds_check: DsCheck | None = None
    failing: Failing | None = None
    resync: Resync | None = None
    # When the oldest pending DNS change was queued (None: nothing pending), and when the
    # last pass that reached the DNS ended, whatever came of it.
    oldest_pending: datetime | None = None
    last_pass: datetime | None = None
    # Dynadot pools whose zone was read: the sub-host records its one write carries
    # (``domain.zone_subhost_records``), which the registrar caps.
    subhost_records: int | None = None


@dataclass(frozen=True)
class DriftReport:
    pool_domain: str
    checked_at: datetime
    names: list[NameDrift]
    pending: list[PendingDns]
    blocked: Blocked | None
    # Records that are not the service's, there at the last good read and gone now: a
    # pass refuses such a read until an operator accepts it (reconcile --force).
    lost: list[Record] = field(default_factory=list)
    failing: Failing | None = None

    @property
    def clean(self) -> bool:
        return not self.names and not self.pending and self.blocked is None and not self.lost


@dataclass(frozen=True)
class ReconcileResult:
    before: DriftReport
    applied: bool
    after: DriftReport | None = None
    error: str | None = None


class UnsafePlan(DomainError):
    """``reconcile --apply`` refused: the repair of ``report`` is too large to make
    without ``--force`` (``dns.policy.unsafe_plan``)."""

    def __init__(self, report: DriftReport, detail: str):
        super().__init__("unsafe-plan", detail, 409)
        self.report = report


def _blocked(zone: PoolZone | None) -> Blocked | None:
    if zone is None or not zone.blocked_reason:
        return None
    return Blocked(zone.blocked_reason, zone.blocked_detail or "", zone.blocked_since)


def _failing(zone: PoolZone | None) -> Failing | None:
    if zone is None or not zone.last_error:
        return None
    return Failing(zone.last_error, zone.failing_since)


def _pending(work) -> PendingDns:
    return PendingDns(work.pool_domain, work.subdomain, work.action, work.attempts, work.created_at,
                      work.next_attempt_at, work.last_error)


class Operators(UseCases):
    def __init__(self, session_factory: sessionmaker, publisher: DnsPublisher, *,
                 ds_checker: Callable[[str, tuple[str, ...]], DsCheck] | None = None, max_subhost_records: int = 100,
                 webhook_endpoints: tuple[str, ...] = (), **shared):
        """``ds_checker``: whether a resolver sees a PowerDNS pool's DS published
        (``dns.powerdns.ds_check.check_ds``); ``max_subhost_records`` and
        ``webhook_endpoints`` (their names): for the figures; ``shared``: the keywords of
        ``UseCases`` (pools, record names, DNS budget, clock)."""
        super().__init__(session_factory, publisher, **shared)
        self.ds_checker = ds_checker
        self.max_subhost_records = max_subhost_records
        self.webhook_endpoints = webhook_endpoints

    # -- the allocations and their history ----------------------------------------------

    def allocation(self, pool: str, sub: str) -> Allocation | None:
        """The allocation of ``sub`` in ``pool`` as it is stored (a lapsed reservation
        included); None when there is none."""
        pool, sub = self._validate(pool, sub)
        with self.uow() as tx:
            row = tx.get_allocation(pool, sub)
            return to_domain(row) if row else None

    def list_pool(self, pool: str, state: str | None = None, *, limit: int | None = None,
                  after: str | None = None) -> PoolListing:
        """The pool's allocations in subdomain order; with ``limit``, a page of them after
        ``after`` (one more is read to tell whether a next page exists)."""
        pool = self._pool(pool)
        with self.uow() as tx:
            rows = [to_domain(r) for r in tx.list_allocations(pool, state, limit=None if limit is None else limit + 1,
                                                              after=None if after is None else (after,))]
            pending = [_pending(w) for w in tx.pending_work(pool)]
            zone = tx.pool_zone(pool)
            blocked, failing = _blocked(zone), _failing(zone)
        if limit is None:
            return PoolListing(pool, rows, pending, blocked, failing=failing)
        more = len(rows) > limit
        rows = rows[:limit]
        return PoolListing(pool, rows, pending, blocked, paged=True,
                           next_after=rows[-1].subdomain if more else None, failing=failing)

    def history(self, pool: str, sub: str | None, limit: int = 500, before: int | None = None) -> PoolHistory:
        pool = self._pool(pool)
        if sub is not None:
            sub = domain.normalise(sub)
            domain.validate_subdomain(sub)
        if not 1 <= limit <= 1000:
            raise DomainError("invalid-request", "limit must be between 1 and 1000", 400)
        with self.uow() as tx:
            # One more than asked: whether a next page exists.
            events = [Event.of(e) for e in tx.history(pool=pool, sub=sub, limit=limit + 1, before=before)]
        more = len(events) > limit
        events = events[:limit]
        return PoolHistory(pool, events, events[-1].id if more else None)

    def pending_dns(self, pool: str | None = None) -> list[PendingDns]:
        if pool is not None:
            pool = self._pool(pool)
        with self.uow() as tx:
            return [_pending(w) for w in tx.pending_work(pool)]

    # -- the pools' DNS ----------------------------------------------------------------

    def pools(self, *, check_ds: bool = True, only: str | None = None) -> list[PoolStatus]:
        """Every managed pool (``only``: that one): its tenants, pending DNS work, and the
        state of its zone; for a PowerDNS pool its DS and (``check_ds``) whether its
        registrar publishes it."""
        if only is not None:
            only = self._pool(only)
        with self.uow() as tx:
            counts = tx.allocation_counts(only)
            pending = tx.pending_summary()
            zones = tx.pool_zones()
        result = []
        for pool in self.managed_domains if only is None else (only,):
            zone = zones.get(pool)
            backend = self.publisher.backend(pool).kind
            ds = tuple(zone.ds_records.split("\n")) if zone is not None and zone.ds_records else ()
            checked = None
            if backend == "powerdns" and check_ds and self.ds_checker is not None:
                checked = self.ds_checker(pool, ds)
            active = counts.get((pool, ACTIVE), 0)
            foreign = zone.foreign_subhost_records if zone and zone.synced_at and backend == "dynadot" else None
            result.append(PoolStatus(
                pool, active, counts.get((pool, RESERVED), 0),
                pending.get(pool, (0, None))[0], _blocked(zone),
                zone.synced_at if zone else None, foreign,
                backend, ds, checked, failing=_failing(zone), resync=Resync.of(zone),
                oldest_pending=pending.get(pool, (0, None))[1], last_pass=zone.last_pass_at if zone else None,
                subhost_records=None if foreign is None else domain.zone_subhost_records(active, self.record_names,
                                                                                         foreign),
            ))
        return result

    def retry_dns(self, pool: str | None = None, *, caller: str | None = None) -> dict[str, bool]:
        """A pass now for ``pool`` (or every pool with pending work, blocked or failing),
        whatever its back-off says; True where the zone is now what the table says.
        ``caller``: recorded in the pool's history as having asked for it."""
        if pool is not None:
            pools = [self._pool(pool)]
            if caller is not None:
                with self.uow() as tx:
                    tx.record_event(pools[0], "", "retry-dns", caller, self.clock())
        else:
            with self.uow() as tx:
                blocked = tx.blocked_pools()
                failing = tx.failing_pools()
            pools = sorted({w.pool_domain for w in self.pending_dns()} | set(blocked) | set(failing))
        return {p: self.publisher.publish(p, [], budget=None, verify=True) for p in pools}

    def drift(self, pool: str, *, unbounded: bool = False) -> DriftReport:
        """One read of the zone compared with the table: what is missing, wrong or left
        over, per name. Within a request's budget, or (``unbounded``: the console script)
        as long as the read takes -- a pool of 10,000 tenants on PowerDNS has 20,000 reads."""
        pool = self._pool(pool)
        try:
            snap, names, lost = self.publisher.drift(pool, None if unbounded else self.dns_request_budget)
        except UnreadableZone as exc:
            raise DomainError(exc.reason, redact(str(exc)), 502) from None
        except RegistrarError as exc:
            raise DomainError("registrar-unavailable", redact(f"the zone could not be read: {exc}"), 502) from None
        except SQLAlchemyError:
            raise  # the database's trouble: answered as such, like everywhere else
        except Exception as exc:  # any other fault of the read (an answer no client expected, a bug): a 502
            log.error("drift read of %s failed on an unexpected %s: %s", pool, type(exc).__name__,
                      redact(str(exc)), exc_info=exc)
            raise DomainError("dns-read-failed", redact(f"the DNS of {pool} could not be read: "
                                                        f"{type(exc).__name__}: {exc}"), 502) from None
        with self.uow() as tx:
            state = tx.pool_zone(pool)
        return DriftReport(pool, self.clock(), names, [_pending(w) for w in snap.work], _blocked(state), lost,
                           failing=_failing(state))

    def reconcile(self, pool: str, *, apply: bool, force: bool, caller: str,
                  unbounded: bool = False) -> ReconcileResult:
        """The drift report, and with ``apply`` a pass that repairs it: orphans of names
        without an allocation are removed too, and with ``force`` the zone as it now reads
        is accepted (a block on lost foreign records is lifted) and a repair of any size
        is made -- without it, one that would change or remove too many of the service's
        records raises ``UnsafePlan`` and nothing is recorded or written."""
        before = self.drift(pool, unbounded=unbounded)
        if not apply:
            return ReconcileResult(before, applied=False)
        pool = before.pool_domain
        if not force:
            with self.uow() as tx:
                active = tx.count_active(pool)
            unsafe = unsafe_plan(before.names, active, self.record_names)
            if unsafe:
                raise UnsafePlan(before, f"{pool}: {unsafe} ('pool-domain-manager reconcile {pool} --apply "
                                         "--force')")
        adopt = frozenset(host for name in before.names for host in name.orphans)
        with self.uow() as tx:
            tx.record_event(pool, "", "reconcile", caller, self.clock(),
                            detail=f"apply{' --force' if force else ''}: {len(before.names)} name(s) with drift")
        done = self.publisher.publish(pool, [], budget=None, verify=True, accept=force, adopt=adopt)
        after = self.drift(pool, unbounded=unbounded)
        error = None
        if not done:
            error = (after.blocked.detail if after.blocked else None) or (
                f"the pass for {pool} failed: {after.failing.error}" if after.failing else None) or next(
                (p.last_error for p in after.pending if p.last_error), None) or "the pass did not complete"
        return ReconcileResult(before, applied=done, after=after, error=error)

    # -- for health, readiness and metrics ---------------------------------------------

    def dns_health(self) -> dict[str, dict]:
        """Per pool, for /healthz: its backend, and the DNS changes waiting on it."""
        with self.uow() as tx:
            summary = tx.pending_summary()
            errors = tx.last_errors()
            blocked = tx.blocked_pools()
        try:
            with UnitOfWork(self.session_factory, single=True) as tx:
                failing = tx.failing_pools()
        except SQLAlchemyError:
            # A schema behind this release (readyz says so): liveness does not hang on it.
            failing = {}
        now = self.clock()
        return {
            pool: {
                "backend": self.publisher.backend(pool).kind,
                "pendingChanges": summary.get(pool, (0, None))[0],
                "oldestPendingSeconds": (round(max(0.0, (now - summary[pool][1]).total_seconds()), 1)
                                         if pool in summary else None),
                # The pool's last failed pass, else its work's last error (a blocked pool).
                "lastError": failing[pool][0] if pool in failing else errors.get(pool),
                "blocked": blocked.get(pool),
            }
            for pool in self.managed_domains
        }

    def record_ds_checks(self) -> dict[str, str]:
        """Look up every PowerDNS pool's DS at its registrar (the job leader, now and then)
        and keep what was found in its ``pool_zones`` row, where every process's figures
        read it; pool -> status."""
        found = {status.pool_domain: status.ds_check.status for status in self.pools() if status.ds_check}
        now = self.clock()
        with self.uow() as tx:
            for pool, status in found.items():
                tx.update_pool_zone(pool, ds_status=status, ds_checked_at=now)
        return found

    def figures(self) -> Figures:
        """For /metrics: what the database holds of allocations, DNS work, pools, the
        registrar's pauses and webhook deliveries (``services.figures``)."""
        return scrape.read(self)

    def schema_revision(self) -> str | None:
        with self.uow() as tx:
            return tx.schema_revision()
