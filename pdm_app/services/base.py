"""What the callers' lifecycle and the operators' tools are both built on: the database
(a ``UnitOfWork`` per transaction), the DNS engine, the pools handed out, the tenant's
record names, the DNS time a request may wait, and the clock."""
from __future__ import annotations

from datetime import datetime
from typing import Callable

from sqlalchemy.orm import sessionmaker

from .. import domain
from ..dns.engine import DnsPublisher
from ..domain import Allocation
from ..models import PoolAllocation
from ..unit_of_work import UnitOfWork


def to_domain(row: PoolAllocation) -> Allocation:
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


class UseCases:
    def __init__(
        self,
        session_factory: sessionmaker,
        publisher: DnsPublisher,
        *,
        managed_domains: tuple[str, ...],
        record_names: tuple[str, ...],
        dns_request_budget: float,
        clock: Callable[[], datetime] = domain.utcnow,
    ):
        self.session_factory = session_factory
        self.publisher = publisher
        self.managed_domains = managed_domains
        self.record_names = record_names
        self.dns_request_budget = dns_request_budget
        self.clock = clock

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.session_factory)

    def _validate(self, pool: str, sub: str) -> tuple[str, str]:
        pool, sub = domain.normalise(pool), domain.normalise(sub)
        domain.validate_subdomain(sub)
        domain.validate_pool(pool, self.managed_domains)
        return pool, sub

    def _pool(self, pool: str) -> str:
        pool = domain.normalise(pool)
        domain.validate_pool(pool, self.managed_domains)
        return pool
