"""The use cases: check, reserve, commit, release, renew, list, history, sweep, and the
operators' DNS views (pools, pending work, drift, reconcile). They speak in domain terms
and raise ``DomainError`` with the contract's codes; the HTTP layer and the CLI only map
them to answers.

Every row change commits (with the DNS work it implies) before the registrar is called.
The state transitions themselves live on ``domain.Allocation``.
"""
from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, TypeVar

from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from . import domain, metrics
from .dns import ownership
from .dns.backend import NameDrift
from .dns.engine import DnsPublisher
from .dns.errors import RegistrarError, UnreadableZone
from .dns.ownership import DNS_CONFLICT
from .dns.policy import unsafe_plan
from .dns.powerdns.ds_check import DsCheck
from .dns.zone import Record
from .domain import ACTIVE, RESERVED, Allocation, DomainError, Transition
from .models import PoolAllocation, PoolZone
from .redaction import redact
from .unit_of_work import UnitOfWork, event

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_CREATED_BY = "catalyst-api"
# Lapsed reservations deleted per sweeper transaction.
SWEEP_BATCH = 500


def _to_domain(row: PoolAllocation) -> Allocation:
    return Allocation(
        pool_domain=row.pool_domain,
        subdomain=row.subdomain,
        state=row.state,
        reserved_at=row.reserved_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        sovereign_fqdn=row.sovereign_fqdn,
        load_balancer_ip=row.load_balancer_ip,
        token_digest=row.reservation_token,
    )


@dataclass(frozen=True)
class CheckResult:
    available: bool
    reason: str | None = None
    detail: str | None = None
    fqdn: str | None = None


@dataclass(frozen=True)
class Reservation:
    allocation: Allocation
    token: str


@dataclass(frozen=True)
class Outcome:
    """An allocation after commit or release, and whether its DNS change is done."""

    allocation: Allocation
    dns_done: bool


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


class PoolService:
    def __init__(
        self,
        session_factory: sessionmaker,
        publisher: DnsPublisher,
        *,
        managed_domains: tuple[str, ...],
        reservation_ttl: float,
        record_names: tuple[str, ...],
        max_subhost_records: int,
        dns_request_budget: float,
        reservation_max_ttl: float | None = None,
        history_retention: float = 400 * 86400.0,
        lb_ip_allowed_ranges: tuple = (),
        max_open_reservations: int = 0,
        ds_checker: Callable[[str, tuple[str, ...]], DsCheck] | None = None,
        clock: Callable[[], datetime] = domain.utcnow,
    ):
        self.session_factory = session_factory
        self.publisher = publisher
        self.managed_domains = managed_domains
        self.reservation_ttl = reservation_ttl
        self.reservation_max_ttl = max(reservation_max_ttl or 0.0, reservation_ttl)
        self.record_names = record_names
        self.max_subhost_records = max_subhost_records
        self.dns_request_budget = dns_request_budget
        self.history_retention = history_retention
        self.lb_ip_allowed_ranges = lb_ip_allowed_ranges
        # Reservations not yet committed one holder may have in one pool; 0: no limit.
        self.max_open_reservations = max_open_reservations
        self.ds_checker = ds_checker
        self.clock = clock

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.session_factory)

    def _read_once_more(self, read: Callable[[UnitOfWork], T]) -> T:
        """A read outside any transaction, tried again once on a connection the database
        closed meanwhile (a restart, a failover): pooled connections are not pinged."""
        for attempt in (1, 2):
            try:
                with UnitOfWork(self.session_factory, single=True) as tx:
                    return read(tx)
            except DBAPIError as exc:
                if attempt == 2 or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    def _validate(self, pool: str, sub: str) -> tuple[str, str]:
        pool, sub = domain.normalise(pool), domain.normalise(sub)
        domain.validate_subdomain(sub)
        domain.validate_pool(pool, self.managed_domains)
        return pool, sub

    def _pool(self, pool: str) -> str:
        pool = domain.normalise(pool)
        domain.validate_pool(pool, self.managed_domains)
        return pool

    # -- reads ---------------------------------------------------------------------

    def check(self, pool: str, sub: str) -> CheckResult:
        """What the wizard shows a person: ``detail`` says what to do next, and ``fqdn``
        is set on every answer past the pool and reserved-label checks."""
        pool, sub = domain.normalise(pool), domain.normalise(sub)
        try:
            domain.validate_subdomain(sub)
        except DomainError as err:
            return CheckResult(False, err.code, err.detail)
        try:
            domain.validate_pool(pool, self.managed_domains)
        except DomainError as err:
            return CheckResult(False, err.code, f"{pool} is not one of the pool domains this service hands out "
                                                "names under; pick another pool, or bring your own domain")
        if domain.is_reserved(sub):
            return CheckResult(False, "reserved", f"{sub!r} is needed by the control plane; pick another name")
        other_pool = domain.managed_pool_at(sub, pool, self.managed_domains)
        if other_pool:
            return CheckResult(False, "reserved", f"{sub}.{pool} is taken by the pool domain {other_pool}; "
                                                  "pick another name")
        problem = domain.lookalike_problem(sub)
        if problem:
            return CheckResult(False, "invalid-format", problem)
        fqdn = f"{sub}.{pool}"

        state, expires_at, conflict = self._read_once_more(lambda tx: tx.name_view(pool, sub))
        free = state is None or domain.is_lapsed(state, expires_at, self.clock())
        if free and conflict is not None:
            return CheckResult(False, DNS_CONFLICT, ownership.conflict_detail(fqdn, conflict), fqdn)
        if free:
            imitated = self._imitated_tenant(pool, sub)
            if imitated:
                name, state = imitated
                return CheckResult(False, f"{state}-state", f"{fqdn} looks like {name}.{pool}, which is taken; "
                                                            "pick another name", fqdn)
            return CheckResult(True, fqdn=fqdn)
        if state == RESERVED:
            return CheckResult(False, "reserved-state", f"{fqdn} is held by another deployment in progress; "
                                                        "try again in a few minutes, or pick another name", fqdn)
        return CheckResult(False, "active-state", f"{fqdn} belongs to a live Sovereign; pick another name", fqdn)

    def _imitated_tenant(self, pool: str, sub: str, tx: UnitOfWork | None = None) -> tuple[str, str] | None:
        """The pool's tenant (name, state) that the ``xn--`` label ``sub`` looks like;
        None for any other label (only an A-label can imitate another A-label: one that
        looks like an ASCII name is refused by ``domain.lookalike_problem``)."""
        if not sub.startswith("xn--"):
            return None

        def read(tx: UnitOfWork) -> dict[str, str]:
            return tx.a_label_tenants(pool, self.clock())

        held = read(tx) if tx is not None else self._read_once_more(read)
        name = domain.lookalike_of(sub, held)
        return (name, held[name]) if name else None

    def allocation(self, pool: str, sub: str) -> Allocation | None:
        """The allocation of ``sub`` in ``pool`` as it is stored (a lapsed reservation
        included); None when there is none."""
        pool, sub = self._validate(pool, sub)
        with self.uow() as tx:
            row = tx.get_allocation(pool, sub)
            return _to_domain(row) if row else None

    def list_pool(self, pool: str, state: str | None = None, *, limit: int | None = None,
                  after: str | None = None) -> PoolListing:
        """The pool's allocations in subdomain order; with ``limit``, a page of them after
        ``after`` (one more is read to tell whether a next page exists)."""
        pool = self._pool(pool)
        with self.uow() as tx:
            rows = [_to_domain(r) for r in tx.list_allocations(pool, state, limit=None if limit is None else limit + 1,
                                                               after=after)]
            pending = [_pending(w) for w in tx.pending_work(pool)]
            zone = tx.pool_zone(pool)
            blocked, failing = _blocked(zone), _failing(zone)
        if limit is None:
            return PoolListing(pool, rows, pending, blocked, failing=failing)
        more = len(rows) > limit
        rows = rows[:limit]
        return PoolListing(pool, rows, pending, blocked, paged=True,
                           next_after=rows[-1].subdomain if more else None, failing=failing)

    def pools(self, *, check_ds: bool = True) -> list[PoolStatus]:
        """Every managed pool: its tenants, pending DNS work, and the state of its zone;
        for a PowerDNS pool its DS and (``check_ds``) whether its registrar publishes it."""
        with self.uow() as tx:
            counts = tx.allocation_counts()
            pending = tx.pending_summary()
            zones = tx.pool_zones()
        result = []
        for pool in self.managed_domains:
            zone = zones.get(pool)
            backend = self.publisher.backend(pool).kind
            ds = tuple(zone.ds_records.split("\n")) if zone is not None and zone.ds_records else ()
            checked = None
            if backend == "powerdns" and check_ds and self.ds_checker is not None:
                checked = self.ds_checker(pool, ds)
            result.append(PoolStatus(
                pool, counts.get((pool, ACTIVE), 0), counts.get((pool, RESERVED), 0),
                pending.get(pool, (0, None))[0], _blocked(zone),
                zone.synced_at if zone else None,
                zone.foreign_subhost_records if zone and zone.synced_at and backend == "dynadot" else None,
                backend, ds, checked, failing=_failing(zone),
            ))
        return result

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

    def pending_dns(self, pool: str | None = None) -> list[PendingDns]:
        if pool is not None:
            pool = self._pool(pool)
        with self.uow() as tx:
            return [_pending(w) for w in tx.pending_work(pool)]

    def ping(self) -> None:
        with self.uow() as tx:
            tx.ping()

    def figures(self) -> tuple[dict, dict, dict, dict, set]:
        """For /metrics: allocations by (pool, state), pending DNS work by pool, the age in
        seconds of each pool's oldest pending change, the blocked pools' reasons, and the
        pools whose last pass failed."""
        with self.uow() as tx:
            counts = tx.allocation_counts()
            summary = tx.pending_summary()
            blocked = tx.blocked_pools()
            failing = set(tx.failing_pools())
        now = domain.utcnow()
        pending = {pool: n for pool, (n, _) in summary.items()}
        oldest = {pool: max(0.0, (now - first).total_seconds()) for pool, (_, first) in summary.items()}
        return counts, pending, oldest, blocked, failing

    def schema_revision(self) -> str | None:
        with self.uow() as tx:
            return tx.schema_revision()

    def history(self, pool: str, sub: str | None, limit: int = 500, before: int | None = None) -> PoolHistory:
        pool = self._pool(pool)
        if sub is not None:
            sub = domain.normalise(sub)
            domain.validate_subdomain(sub)
        if not 1 <= limit <= 1000:
            raise DomainError("invalid-request", "limit must be between 1 and 1000", 400)
        with self.uow() as tx:
            # One more than asked: whether a next page exists.
            events = [Event(e.id, e.subdomain, e.action, e.caller, e.at, e.load_balancer_ip, e.detail)
                      for e in tx.history(pool, sub, limit + 1, before)]
        more = len(events) > limit
        events = events[:limit]
        return PoolHistory(pool, events, events[-1].id if more else None)

    # -- state changes ----------------------------------------------------------------

    def reserve(self, pool: str, sub: str, created_by: str | None, caller: str,
                holder: str | None = None) -> Reservation:
        """``holder``: who the reservation counts against under the quota of open
        reservations (the API's caller); None (operators' tools) is not limited."""
        pool, sub = self._validate(pool, sub)
        other_pool = domain.managed_pool_at(sub, pool, self.managed_domains)
        if other_pool:
            raise DomainError("reserved-name", f"{sub}.{pool} is taken by the pool domain {other_pool} "
                                               "and cannot be claimed", 409)
        now = self.clock()
        token = str(uuid.uuid4())
        allocation = Allocation.reserve(pool, sub, (created_by or "").strip() or DEFAULT_CREATED_BY, token, now,
                                        self.reservation_ttl)
        values = dict(
            pool_domain=pool, subdomain=sub, state=allocation.state, reserved_at=now,
            expires_at=allocation.expires_at, reservation_token=allocation.token_digest, sovereign_fqdn=None,
            load_balancer_ip=None, created_by=allocation.created_by, updated_at=now, reserved_by=holder,
        )
        with self._refusals_recorded(pool, sub, "reserve-refused", caller), self.uow() as tx:
            if holder is not None and self.max_open_reservations:
                # Held to the COMMIT: a second reserve of this holder counts this one.
                tx.lock_holder(pool, holder)
                self._check_quota(tx, pool, holder, now)
            if sub.startswith("xn--"):
                # Two A-labels that look alike are not both handed out: reserves of
                # A-labels in a pool take its lock, so two of them cannot race past this.
                tx.lock_pool(pool)
                imitated = self._imitated_tenant(pool, sub, tx)
                if imitated:
                    raise DomainError("conflict", f"{sub}.{pool} looks like {imitated[0]}.{pool}, which is taken",
                                      409)
            # The primary key decides races: one insert wins, the others find its row.
            inserted = tx.insert_allocation_if_absent(values)
            row = None if inserted else tx.get_allocation(pool, sub, lock=True)
            if row is None and not inserted:
                # The holder was released or swept between the two statements.
                inserted = tx.insert_allocation_if_absent(values)
            if not inserted:
                if row is None or not _to_domain(row).is_expired(now):
                    raise DomainError("conflict", f"{sub}.{pool} is already taken", 409)
                # A lapsed reservation the sweeper has not reached yet: take it over.
                tx.record_event(pool, sub, _to_domain(row).expire().action, caller, now)
                tx.save_allocation(row, allocation, now, reserved_by=holder)
            self._refuse_conflict(tx, pool, sub)
            tx.record_event(pool, sub, "reserve", caller, now)
        log.info("reserved %s.%s for %s until %s", sub, pool, allocation.created_by, allocation.expires_at)
        return Reservation(allocation, token)

    def _check_quota(self, tx: UnitOfWork, pool: str, holder: str, now: datetime) -> None:
        held = tx.count_open_reservations(pool, holder, now)
        if held >= self.max_open_reservations:
            metrics.RATE_LIMITED.labels("open-reservations").inc()
            raise DomainError(
                "too-many-reservations",
                f"this caller holds {held} reservation(s) in {pool} not yet committed, the most one caller may "
                f"hold (PDM_MAX_OPEN_RESERVATIONS={self.max_open_reservations}); committing or releasing one "
                "frees room, and a reservation stops counting when it lapses",
                429,
            )

    def commit(self, pool: str, sub: str, token: str, sovereign_fqdn: str | None, lb_ip: str, caller: str) -> Outcome:
        pool, sub = domain.normalise(pool), domain.normalise(sub)
        domain.validate_subdomain(sub)
        lb_ip = (lb_ip or "").strip()
        domain.validate_ipv4(lb_ip, self.lb_ip_allowed_ranges)
        domain.validate_pool(pool, self.managed_domains)
        started = self.clock()
        limited = self._room_limited(pool)
        if limited and not self._read_once_more(lambda tx: tx.zone_read(pool)):
            # The zone's shape is unknown: read it first, so a zone too full for
            # another tenant is a 409 now rather than a write that fails for ever.
            self.publisher.publish_for_request(pool, [], self.dns_request_budget, verify=True)
        now = self.clock()
        with self._refusals_recorded(pool, sub, "commit-refused", caller), self.uow() as tx:
            zone = tx.lock_pool(pool)  # lock order everywhere: pool, then row
            row = tx.get_allocation(pool, sub, lock=True)
            if row is None:
                raise DomainError("not-found", f"no reservation for {sub}.{pool}", 404)
            reservation = _to_domain(row)
            change = reservation.commit(token, lb_ip, (sovereign_fqdn or "").strip() or None, now)
            if change.action == "commit":
                self._refuse_conflict(tx, pool, sub)
                if limited:
                    self._check_room(tx, zone, pool)
                tx.save_allocation(row, change.allocation, now)
            allocation = change.allocation
            work_id = self._apply(tx, allocation, change, caller, now)
        log.info("committed %s.%s -> %s", sub, pool, lb_ip)
        budget = max(0.1, self.dns_request_budget - (self.clock() - started).total_seconds())
        done = self.publisher.publish_for_request(pool, [work_id], budget)
        if not done and change.action == "commit":
            self._undo_refused_commit(reservation, allocation, work_id, caller)
        return Outcome(allocation, done)

    @staticmethod
    def _refuse_conflict(tx: UnitOfWork, pool: str, sub: str) -> None:
        """409 dns-conflict when the pool's DNS, as last read, holds foreign records at or
        under ``sub`` (``ownership``). One that appears after that read is caught by the
        pass, which never publishes over it."""
        conflict = tx.dns_conflict(pool, sub)
        if conflict is not None:
            raise DomainError(DNS_CONFLICT, ownership.conflict_detail(f"{sub}.{pool}", conflict), 409)

    @contextlib.contextmanager
    def _refusals_recorded(self, pool: str, sub: str, action: str, caller: str):
        """A dns-conflict refusal leaves its transaction rolled back: the history records
        who was refused, and why, in one of its own."""
        try:
            yield
        except DomainError as err:
            if err.code == DNS_CONFLICT:
                with self.uow() as tx:
                    tx.record_event(pool, sub, action, caller, self.clock(), detail=f"{err.code}: {err.detail}"[:500])
            raise

    def _undo_refused_commit(self, reservation: Allocation, committed: Allocation, work_id: int, caller: str) -> None:
        """The pass would not publish the commit's records (foreign records at its hosts,
        or no room left in the zone): the row goes back to the reservation it was, its work
        leaves the queue, and the caller gets the refusal (409) -- unless the row changed
        meanwhile. A commit answered 202 before any pass refused it stays active and its
        work pending, visibly (``pendingDns``, drift)."""
        pool, sub = reservation.pool_domain, reservation.subdomain
        with self.uow() as tx:
            row = tx.get_allocation(pool, sub, lock=True)
            code, why = tx.queued_work([work_id]).get(work_id, (None, ""))
            if code is None or row is None or _to_domain(row) != committed:
                return
            now = self.clock()
            change = committed.refuse_commit(reservation)
            tx.save_allocation(row, change.allocation, now)
            tx.finish_work([work_id])
            tx.record_event(pool, sub, change.action, caller, now, committed.load_balancer_ip, detail=f"{code}: {why}")
        log.info("commit of %s.%s refused (%s): %s", sub, pool, code, why)
        raise DomainError(code, why, 409)

    def _room_limited(self, pool: str) -> bool:
        # Only a Dynadot zone has a size: its one whole-zone write holds so many records.
        return self.publisher.backend(pool).kind == "dynadot"

    def _check_room(self, tx: UnitOfWork, zone: PoolZone, pool: str) -> None:
        needed = (tx.count_active(pool) + 1) * len(self.record_names) + zone.foreign_subhost_records
        if needed > self.max_subhost_records:
            raise DomainError(
                "pool-full",
                f"the zone of {pool} cannot hold another tenant's records "
                f"({needed} sub-host records needed, the registrar takes {self.max_subhost_records})",
                409,
            )

    @staticmethod
    def _apply(tx: UnitOfWork, subject: Allocation, change: Transition, caller: str, now: datetime) -> int | None:
        """Record a transition's history event and queue the DNS work it implies."""
        tx.record_event(subject.pool_domain, subject.subdomain, change.action, caller, now, subject.load_balancer_ip)
        if change.dns is None:
            return None
        return tx.add_dns_work(subject.pool_domain, subject.subdomain, change.dns, now)

    def release(self, pool: str, sub: str, caller: str) -> Outcome:
        pool, sub = self._validate(pool, sub)
        now = self.clock()
        with self.uow() as tx:
            row = tx.get_allocation(pool, sub, lock=True)
            if row is None:
                raise DomainError("not-found", f"no allocation for {sub}.{pool}", 404)
            allocation = _to_domain(row)
            change = allocation.release()
            tx.delete_allocation(row)
            work_id = self._apply(tx, allocation, change, caller, now)
        log.info("released %s.%s (was %s)", sub, pool, allocation.state)
        if work_id is None:
            return Outcome(allocation, True)
        return Outcome(allocation, self.publisher.publish_for_request(pool, [work_id], self.dns_request_budget))

    def renew(self, pool: str, sub: str, token: str | None, ttl: float | None, caller: str) -> Allocation:
        """Hold a live reservation ``ttl`` seconds from now (default PDM_RESERVATION_TTL,
        at most PDM_RESERVATION_MAX_TTL). ``token`` None: an operator's renew."""
        pool, sub = self._validate(pool, sub)
        ttl = self.reservation_ttl if ttl is None else ttl
        if not 0 < ttl <= self.reservation_max_ttl:
            raise DomainError("invalid-ttl", f"ttl must be more than 0 and at most {self.reservation_max_ttl:g} "
                                             "seconds (PDM_RESERVATION_MAX_TTL)", 422)
        now = self.clock()
        with self.uow() as tx:
            row = tx.get_allocation(pool, sub, lock=True)
            if row is None:
                raise DomainError("not-found", f"no reservation for {sub}.{pool}", 404)
            change = _to_domain(row).renew(token, now, ttl)
            tx.save_allocation(row, change.allocation, now)
            self._apply(tx, change.allocation, change, caller, now)
        log.info("renewed %s.%s until %s", sub, pool, change.allocation.expires_at)
        return change.allocation

    def sweep(self) -> int:
        """Delete lapsed reservations, in short transactions of SWEEP_BATCH rows: a backlog
        of any size never holds the table (SQLite's write lock) for long."""
        total = 0
        while True:
            now = self.clock()
            with self.uow() as tx:
                gone = tx.delete_expired_reservations(now, limit=SWEEP_BATCH)
                tx.record_events([event(pool, sub, "expire", "sweeper", now)
                                  for pool, sub in gone])
            total += len(gone)
            if gone:
                names = ", ".join(f"{sub}.{pool}" for pool, sub in gone[:5])
                log.info("swept %d expired reservation(s): %s%s", len(gone), names, " ..." if len(gone) > 5 else "")
            if len(gone) < SWEEP_BATCH:
                return total

    def prune_history(self) -> int:
        """Delete history events older than PDM_HISTORY_RETENTION."""
        with self.uow() as tx:
            return tx.prune_history(self.clock() - timedelta(seconds=self.history_retention))

    # -- the pools' DNS, for operators ---------------------------------------------------

    def retry_dns(self, pool: str | None = None) -> dict[str, bool]:
        """A pass now for ``pool`` (or every pool with pending work, blocked or failing),
        whatever its back-off says; True where the zone is now what the table says."""
        if pool is not None:
            pools = [self._pool(pool)]
        else:
            with self.uow() as tx:
                blocked = tx.blocked_pools()
                failing = tx.failing_pools()
            pools = sorted({w.pool_domain for w in self.pending_dns()} | set(blocked) | set(failing))
        return {p: self.publisher.publish(p, [], budget=None, verify=True) for p in pools}

    def drift(self, pool: str) -> DriftReport:
        """One read of the zone compared with the table: what is missing, wrong or left
        over, per name."""
        pool = self._pool(pool)
        try:
            snap, names, lost = self.publisher.drift(pool, self.dns_request_budget)
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

    def reconcile(self, pool: str, *, apply: bool, force: bool, caller: str) -> ReconcileResult:
        """The drift report, and with ``apply`` a pass that repairs it: orphans of names
        without an allocation are removed too, and with ``force`` the zone as it now reads
        is accepted (a block on lost foreign records is lifted) and a repair of any size
        is made -- without it, one that would change or remove too many of the service's
        records raises ``UnsafePlan`` and nothing is recorded or written."""
        before = self.drift(pool)
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
        after = self.drift(pool)
        error = None
        if not done:
            error = (after.blocked.detail if after.blocked else None) or (
                f"the pass for {pool} failed: {after.failing.error}" if after.failing else None) or next(
                (p.last_error for p in after.pending if p.last_error), None) or "the pass did not complete"
        return ReconcileResult(before, applied=done, after=after, error=error)
