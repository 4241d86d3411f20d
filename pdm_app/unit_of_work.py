"""One database transaction and the queries that run inside it.

Every change to allocations and to the DNS work queue goes through ``UnitOfWork``: the
row change and the DNS work it implies commit together or not at all.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from . import domain
from .models import AllocationEvent, DnsWork, PoolAllocation, PoolZone, RegistrarAccount


class UnitOfWork:
    """``with uow as tx:`` -- commits when the block ends, rolls back if it raises.
    ``snapshot=True`` makes every read in the block see one consistent state."""

    def __init__(self, session_factory: sessionmaker, *, snapshot: bool = False):
        self._session_factory = session_factory
        self._snapshot = snapshot

    def __enter__(self) -> "UnitOfWork":
        self.session: Session = self._session_factory()
        self.session.begin()
        self.dialect = self.session.get_bind().dialect.name
        if self._snapshot and self.dialect == "postgresql":
            # Every statement sees the same committed state (SQLite's BEGIN IMMEDIATE
            # already gives that).
            self.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.session.commit()
            else:
                self.session.rollback()
        finally:
            self.session.close()

    def _insert(self, model):
        # Both dialects have INSERT ... ON CONFLICT DO NOTHING.
        return (postgresql if self.dialect == "postgresql" else sqlite).insert(model)

    # -- allocations ---------------------------------------------------------------

    def insert_allocation_if_absent(self, values: dict) -> bool:
        stmt = (
            self._insert(PoolAllocation)
            .values(**values)
            .on_conflict_do_nothing()
            .returning(PoolAllocation.subdomain)
        )
        return self.session.execute(stmt).first() is not None

    def get_allocation(self, pool: str, sub: str, *, lock: bool = False) -> PoolAllocation | None:
        stmt = select(PoolAllocation).where(
            PoolAllocation.pool_domain == pool, PoolAllocation.subdomain == sub
        )
        if lock:
            # SQLite ignores FOR UPDATE; its BEGIN IMMEDIATE already excludes writers.
            stmt = stmt.with_for_update()
        return self.session.execute(stmt).scalar_one_or_none()

    def list_allocations(self, pool: str) -> list[PoolAllocation]:
        stmt = (
            select(PoolAllocation)
            .where(PoolAllocation.pool_domain == pool)
            .order_by(PoolAllocation.subdomain)
        )
        return list(self.session.execute(stmt).scalars())

    def active_ips(self, pool: str) -> dict[str, str]:
        """Every active tenant of the pool and the address its records point at."""
        stmt = select(PoolAllocation.subdomain, PoolAllocation.load_balancer_ip).where(
            PoolAllocation.pool_domain == pool, PoolAllocation.state == domain.ACTIVE
        )
        return {sub: ip for sub, ip in self.session.execute(stmt)}

    def count_active(self, pool: str) -> int:
        stmt = select(func.count()).where(
            PoolAllocation.pool_domain == pool, PoolAllocation.state == domain.ACTIVE
        )
        return self.session.execute(stmt).scalar_one()

    def delete_allocation(self, row: PoolAllocation) -> None:
        self.session.delete(row)
        self.session.flush()

    def delete_expired_reservations(self, now: datetime) -> list[tuple[str, str]]:
        # The WHERE is re-checked against a row a concurrent commit just activated,
        # so the sweeper never deletes a committed allocation.
        stmt = (
            delete(PoolAllocation)
            .where(PoolAllocation.state == domain.RESERVED, PoolAllocation.expires_at <= now)
            .returning(PoolAllocation.pool_domain, PoolAllocation.subdomain)
        )
        return [tuple(r) for r in self.session.execute(stmt)]

    # -- history ----------------------------------------------------------------------

    def record_event(self, pool: str, sub: str, action: str, caller: str, at: datetime,
                     load_balancer_ip: str | None = None) -> None:
        self.session.add(AllocationEvent(pool_domain=pool, subdomain=sub, action=action, caller=caller, at=at,
                                         load_balancer_ip=load_balancer_ip))

    def history(self, pool: str, sub: str | None, limit: int) -> list[AllocationEvent]:
        stmt = select(AllocationEvent).where(AllocationEvent.pool_domain == pool)
        if sub is not None:
            stmt = stmt.where(AllocationEvent.subdomain == sub)
        return list(self.session.execute(stmt.order_by(AllocationEvent.id.desc()).limit(limit)).scalars())

    # -- pool capacity -------------------------------------------------------------

    def lock_pool(self, pool: str) -> PoolZone:
        """Serialise the commits of one pool, so two of them cannot both take the last
        room in its zone."""
        self.session.execute(
            self._insert(PoolZone).values(pool_domain=pool, foreign_subhost_records=0).on_conflict_do_nothing()
        )
        stmt = select(PoolZone).where(PoolZone.pool_domain == pool).with_for_update()
        return self.session.execute(stmt).scalar_one()

    def record_zone_shape(self, pool: str, foreign_subhost_records: int, now: datetime) -> None:
        self.session.execute(
            self._insert(PoolZone).values(pool_domain=pool).on_conflict_do_nothing()
        )
        self.session.execute(
            update(PoolZone)
            .where(PoolZone.pool_domain == pool)
            .values(foreign_subhost_records=foreign_subhost_records, synced_at=now)
        )

    # -- DNS work queue ------------------------------------------------------------

    def add_dns_work(self, pool: str, sub: str, action: str, now: datetime) -> int:
        work = DnsWork(
            pool_domain=pool, subdomain=sub, action=action, created_at=now, attempts=0, next_attempt_at=now
        )
        self.session.add(work)
        self.session.flush()
        return work.id

    def pending_work(self, pool: str | None = None) -> list[DnsWork]:
        stmt = select(DnsWork).order_by(DnsWork.id)
        if pool is not None:
            stmt = stmt.where(DnsWork.pool_domain == pool)
        return list(self.session.execute(stmt).scalars())

    def work_exists(self, ids: list[int]) -> bool:
        stmt = select(func.count()).where(DnsWork.id.in_(ids))
        return self.session.execute(stmt).scalar_one() > 0

    def pools_with_due_work(self, now: datetime) -> list[str]:
        stmt = select(DnsWork.pool_domain).where(DnsWork.next_attempt_at <= now).distinct()
        return sorted(self.session.execute(stmt).scalars())

    def finish_work(self, ids: list[int]) -> None:
        if ids:
            self.session.execute(delete(DnsWork).where(DnsWork.id.in_(ids)))

    def fail_work(self, ids: list[int], error: str, next_attempt_at: datetime) -> None:
        if ids:
            self.session.execute(
                update(DnsWork)
                .where(DnsWork.id.in_(ids))
                .values(attempts=DnsWork.attempts + 1, last_error=error[:500], next_attempt_at=next_attempt_at)
            )

    # -- registrar pacing -----------------------------------------------------------

    def registrar_account(self, account: str) -> RegistrarAccount | None:
        stmt = select(RegistrarAccount).where(RegistrarAccount.account == account)
        return self.session.execute(stmt).scalar_one_or_none()

    def update_registrar_account(self, account: str, **values) -> None:
        """``last_call_at`` and/or ``paused_until`` of the account, creating its row."""
        self.session.execute(self._insert(RegistrarAccount).values(account=account).on_conflict_do_nothing())
        self.session.execute(update(RegistrarAccount).where(RegistrarAccount.account == account).values(**values))

    # -- figures for /metrics --------------------------------------------------------

    def allocation_counts(self) -> dict[tuple[str, str], int]:
        stmt = select(PoolAllocation.pool_domain, PoolAllocation.state, func.count()).group_by(
            PoolAllocation.pool_domain, PoolAllocation.state
        )
        return {(pool, state): n for pool, state, n in self.session.execute(stmt)}

    def pending_summary(self) -> dict[str, tuple[int, datetime]]:
        """Per pool: how much DNS work is pending and when the oldest was queued."""
        stmt = select(DnsWork.pool_domain, func.count(), func.min(DnsWork.created_at)).group_by(DnsWork.pool_domain)
        # min() keeps the column's type, so the oldest comes back as an aware datetime.
        return {pool: (n, oldest) for pool, n, oldest in self.session.execute(stmt)}

    # -- health --------------------------------------------------------------------

    def ping(self) -> None:
        self.session.execute(select(1))

    def schema_revision(self) -> str | None:
        return self.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
