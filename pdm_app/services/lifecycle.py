"""The callers' lifecycle of a name: check, reserve, commit, renew, release; and the
jobs that end it, the sweep of lapsed reservations and the pruning of old history.

Every row change commits (with the DNS work it implies) before the DNS host is called;
commit and release then wait up to PDM_DNS_REQUEST_BUDGET for the pass that carries it out.
"""
from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import sessionmaker

from .. import domain, metrics
from ..dns import ownership
from ..dns.engine import DnsPublisher
from ..dns.ownership import DNS_CONFLICT
from ..domain import RESERVED, Allocation, DomainError, Transition
from ..models import PoolZone
from ..unit_of_work import UnitOfWork, event
from .base import UseCases, to_domain

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_CREATED_BY = "catalyst-api"
# Lapsed reservations deleted per sweeper transaction.
SWEEP_BATCH = 500


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


class Lifecycle(UseCases):
    def __init__(
        self,
        session_factory: sessionmaker,
        publisher: DnsPublisher,
        *,
        reservation_ttl: float,
        max_subhost_records: int,
        reservation_max_ttl: float | None = None,
        history_retention: float = 400 * 86400.0,
        lb_ip_allowed_ranges: tuple = (),
        max_open_reservations: int = 0,
        **shared,
    ):
        """``shared``: the keywords of ``UseCases`` (pools, record names, DNS budget, clock)."""
        super().__init__(session_factory, publisher, **shared)
        self.reservation_ttl = reservation_ttl
        self.reservation_max_ttl = max(reservation_max_ttl or 0.0, reservation_ttl)
        self.max_subhost_records = max_subhost_records
        self.history_retention = history_retention
        self.lb_ip_allowed_ranges = lb_ip_allowed_ranges
        # Reservations not yet committed one holder may have in one pool; 0: no limit.
        self.max_open_reservations = max_open_reservations

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
                if row is None or not to_domain(row).is_expired(now):
                    raise DomainError("conflict", f"{sub}.{pool} is already taken", 409)
                # A lapsed reservation the sweeper has not reached yet: take it over.
                tx.record_event(pool, sub, to_domain(row).expire().action, caller, now)
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
            reservation = to_domain(row)
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
            if code is None or row is None or to_domain(row) != committed:
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
        needed = domain.zone_subhost_records(tx.count_active(pool) + 1, self.record_names,
                                             zone.foreign_subhost_records)
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
            allocation = to_domain(row)
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
            change = to_domain(row).renew(token, now, ttl)
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
