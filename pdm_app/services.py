"""The use cases: check, reserve, commit, release, list, sweep. They speak in domain
terms and raise ``DomainError`` with the contract's codes; the HTTP layer only maps
them to answers.

Every row change commits (with the DNS work it implies) before the registrar is called.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy.orm import sessionmaker

from . import domain
from .dns_sync import DnsPublisher
from .domain import ACTIVE, PUBLISH, REMOVE, RESERVED, Allocation, DomainError
from .models import PoolAllocation
from .unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

DEFAULT_CREATED_BY = "catalyst-api"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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
    subdomain: str
    action: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_error: str | None


@dataclass(frozen=True)
class Event:
    subdomain: str
    action: str
    caller: str
    at: datetime
    load_balancer_ip: str | None


@dataclass(frozen=True)
class PoolHistory:
    pool_domain: str
    events: list[Event]


@dataclass(frozen=True)
class PoolListing:
    pool_domain: str
    allocations: list[Allocation]
    pending: list[PendingDns] = field(default_factory=list)


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
        clock: Callable[[], datetime] = domain.utcnow,
    ):
        self.session_factory = session_factory
        self.publisher = publisher
        self.managed_domains = managed_domains
        self.reservation_ttl = reservation_ttl
        self.record_names = record_names
        self.max_subhost_records = max_subhost_records
        self.dns_request_budget = dns_request_budget
        self.clock = clock

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.session_factory)

    def _validate(self, pool: str, sub: str) -> tuple[str, str]:
        pool, sub = domain.normalise(pool), domain.normalise(sub)
        domain.validate_subdomain(sub)
        domain.validate_pool(pool, self.managed_domains)
        return pool, sub

    # -- reads ---------------------------------------------------------------------

    def check(self, pool: str, sub: str) -> CheckResult:
        pool, sub = domain.normalise(pool), domain.normalise(sub)
        try:
            domain.validate_subdomain(sub)
            domain.validate_pool(pool, self.managed_domains)
        except DomainError as err:
            return CheckResult(False, err.code, err.detail)
        if domain.is_reserved(sub):
            return CheckResult(False, "reserved", f"{sub!r} is a reserved name")
        with self.uow() as tx:
            row = tx.get_allocation(pool, sub)
            found = _to_domain(row) if row else None
        if found is None or found.is_expired(self.clock()):
            return CheckResult(True, fqdn=f"{sub}.{pool}")
        if found.state == RESERVED:
            return CheckResult(False, "reserved-state", f"{sub}.{pool} is held by a reservation")
        return CheckResult(False, "active-state", f"{sub}.{pool} is in use")

    def list_pool(self, pool: str) -> PoolListing:
        pool = domain.normalise(pool)
        domain.validate_pool(pool, self.managed_domains)
        with self.uow() as tx:
            rows = [_to_domain(r) for r in tx.list_allocations(pool)]
            pending = [
                PendingDns(w.subdomain, w.action, w.attempts, w.created_at, w.next_attempt_at, w.last_error)
                for w in tx.pending_work(pool)
            ]
        return PoolListing(pool, rows, pending)

    def ping(self) -> None:
        with self.uow() as tx:
            tx.ping()

    def figures(self) -> tuple[dict, dict, dict]:
        """For /metrics: allocations by (pool, state), pending DNS work by pool, and the
        age in seconds of each pool's oldest pending change."""
        with self.uow() as tx:
            counts = tx.allocation_counts()
            summary = tx.pending_summary()
        now = domain.utcnow()
        pending = {pool: n for pool, (n, _) in summary.items()}
        oldest = {pool: max(0.0, (now - first).total_seconds()) for pool, (_, first) in summary.items()}
        return counts, pending, oldest

    def schema_revision(self) -> str | None:
        with self.uow() as tx:
            return tx.schema_revision()

    def history(self, pool: str, sub: str | None, limit: int = 500) -> PoolHistory:
        pool = domain.normalise(pool)
        domain.validate_pool(pool, self.managed_domains)
        if sub is not None:
            sub = domain.normalise(sub)
            domain.validate_subdomain(sub)
        with self.uow() as tx:
            events = [Event(e.subdomain, e.action, e.caller, e.at, e.load_balancer_ip)
                      for e in tx.history(pool, sub, limit)]
        return PoolHistory(pool, events)

    # -- state changes ----------------------------------------------------------------

    def reserve(self, pool: str, sub: str, created_by: str | None, caller: str) -> Reservation:
        pool, sub = self._validate(pool, sub)
        if domain.is_reserved(sub):
            raise DomainError("reserved-name", f"{sub!r} is a reserved name and cannot be claimed", 409)
        now = self.clock()
        token = str(uuid.uuid4())
        values = dict(
            pool_domain=pool,
            subdomain=sub,
            state=RESERVED,
            reserved_at=now,
            expires_at=now + timedelta(seconds=self.reservation_ttl),
            reservation_token=token_digest(token),
            sovereign_fqdn=None,
            load_balancer_ip=None,
            created_by=(created_by or "").strip() or DEFAULT_CREATED_BY,
            updated_at=now,
        )
        with self.uow() as tx:
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
                tx.record_event(pool, sub, "expire", caller, now)
                for key, value in values.items():
                    setattr(row, key, value)
            tx.record_event(pool, sub, "reserve", caller, now)
            allocation = Allocation(**{k: values[k] for k in Allocation.__dataclass_fields__})
        log.info("reserved %s.%s for %s until %s", sub, pool, values["created_by"], values["expires_at"])
        return Reservation(allocation, token)

    def commit(self, pool: str, sub: str, token: str, sovereign_fqdn: str | None, lb_ip: str, caller: str) -> Outcome:
        pool, sub = domain.normalise(pool), domain.normalise(sub)
        domain.validate_subdomain(sub)
        lb_ip = (lb_ip or "").strip()
        domain.validate_ipv4(lb_ip)
        domain.validate_pool(pool, self.managed_domains)
        now = self.clock()
        with self.uow() as tx:
            zone = tx.lock_pool(pool)  # lock order everywhere: pool, then row
            row = tx.get_allocation(pool, sub, lock=True)
            if row is None:
                raise DomainError("not-found", f"no reservation for {sub}.{pool}", 404)
            token_ok = hmac.compare_digest(row.reservation_token, token_digest(token or ""))
            if row.state == ACTIVE:
                if not (token_ok and row.load_balancer_ip == lb_ip):
                    raise DomainError("already-active", f"{sub}.{pool} is already active", 409)
                # A retry of a commit that went through: make sure the records are out.
                action = "commit-retry"
            else:
                if _to_domain(row).is_expired(now):
                    raise DomainError("reservation-expired", f"the reservation of {sub}.{pool} has expired", 410)
                if not token_ok:
                    raise DomainError("token-mismatch", "reservationToken does not match the reservation", 403)
                needed = (tx.count_active(pool) + 1) * len(self.record_names) + zone.foreign_subhost_records
                if needed > self.max_subhost_records:
                    raise DomainError(
                        "pool-full",
                        f"the zone of {pool} cannot hold another tenant's records "
                        f"({needed} sub-host records needed, the registrar takes {self.max_subhost_records})",
                        409,
                    )
                action = "commit"
                row.state = ACTIVE
                row.expires_at = None
                row.sovereign_fqdn = (sovereign_fqdn or "").strip() or None
                row.load_balancer_ip = lb_ip
                row.updated_at = now
            tx.record_event(pool, sub, action, caller, now, lb_ip)
            work_id = tx.add_dns_work(pool, sub, PUBLISH, now)
            allocation = _to_domain(row)
        log.info("committed %s.%s -> %s", sub, pool, lb_ip)
        done = self.publisher.publish_for_request(pool, [work_id], self.dns_request_budget)
        return Outcome(allocation, done)

    def release(self, pool: str, sub: str, caller: str) -> Outcome:
        pool, sub = self._validate(pool, sub)
        now = self.clock()
        work_id = None
        with self.uow() as tx:
            row = tx.get_allocation(pool, sub, lock=True)
            if row is None:
                raise DomainError("not-found", f"no allocation for {sub}.{pool}", 404)
            allocation = _to_domain(row)
            tx.delete_allocation(row)
            tx.record_event(pool, sub, "release", caller, now, allocation.load_balancer_ip)
            if allocation.state == ACTIVE:
                work_id = tx.add_dns_work(pool, sub, REMOVE, now)
        log.info("released %s.%s (was %s)", sub, pool, allocation.state)
        if work_id is None:
            return Outcome(allocation, True)
        return Outcome(allocation, self.publisher.publish_for_request(pool, [work_id], self.dns_request_budget))

    def sweep(self) -> int:
        now = self.clock()
        with self.uow() as tx:
            gone = tx.delete_expired_reservations(now)
            for pool, sub in gone:
                tx.record_event(pool, sub, "expire", "sweeper", now)
        for pool, sub in gone:
            log.info("swept expired reservation %s.%s", sub, pool)
        return len(gone)
