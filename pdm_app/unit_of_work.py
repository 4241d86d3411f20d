"""One database transaction and the queries that run inside it.

Every change to allocations and to the DNS work queue goes through ``UnitOfWork``: the
row change and the DNS work it implies commit together or not at all.

Long on purpose: every query the service runs is here, one short method each, so a
reader (or a DBA chasing a slow statement) finds them all in one place and no other
module writes SQL.
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Iterable

from sqlalchemy import Connection, bindparam, delete, func, insert, select, text, tuple_, union, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from . import domain, logs
from .locks import advisory_key
from .models import (AllocationEvent, DnsConflict, DnsWork, OwnedHost, PoolAllocation, PoolZone, RegistrarAccount,
                     WebhookEndpoint, WebhookMessage)


def _conflict_detail(pool: str, sub: str):
    """The select of what a pool's last good read found at or under ``sub``."""
    return select(DnsConflict.detail).where(DnsConflict.pool_domain == pool, DnsConflict.label == sub)


# check's one statement, built once: building a select (and its cache key) per request
# cost more than running it (bench/README.md, the check profile).
_NAME_VIEW = select(
    select(PoolAllocation.state).where(PoolAllocation.pool_domain == bindparam("pool"),
                                       PoolAllocation.subdomain == bindparam("sub")).scalar_subquery(),
    select(PoolAllocation.expires_at).where(PoolAllocation.pool_domain == bindparam("pool"),
                                            PoolAllocation.subdomain == bindparam("sub")).scalar_subquery(),
    select(DnsConflict.detail).where(DnsConflict.pool_domain == bindparam("pool"),
                                     DnsConflict.label == bindparam("sub")).scalar_subquery(),
)


def event(pool: str, sub: str, action: str, caller: str, at: datetime, load_balancer_ip: str | None = None,
          detail: str | None = None, origin: str | None = None) -> dict:
    """One history event, as ``UnitOfWork.record_events`` takes it; ``origin``: where it
    came from, by default the request's (``logs.origin``)."""
    return dict(pool_domain=pool, subdomain=sub, action=action, caller=caller, at=at,
                load_balancer_ip=load_balancer_ip, detail=detail, origin=origin or logs.origin.get())


def _starting_with(prefix: str) -> tuple:
    """The conditions of names starting with ``prefix`` (letters, digits, '-' and '.'): a
    range of the primary key, which a prepared statement's generic plan still uses (a LIKE
    alone scans the pool), and the LIKE that keeps exactly the right ones. The range runs
    over the prefix's leading letters and digits, so it holds every such name in any
    collation (a locale's may skip '-' and '.' at first)."""
    lead = re.match(r"[a-z0-9]*", prefix).group()
    conditions = [PoolAllocation.subdomain.startswith(prefix, autoescape=True)]
    if lead:
        conditions.append(PoolAllocation.subdomain >= lead)
        # The next string of the same length or shorter: "xn" -> "xo", "a9" -> "aa", "az" -> "b".
        upper = lead.rstrip("z")
        if upper:
            last = upper[-1]
            conditions.append(PoolAllocation.subdomain < upper[:-1] + ("a" if last == "9" else chr(ord(last) + 1)))
    return tuple(conditions)


# The orders the console pages a pool's allocations in.
ALLOCATION_SORTS = {"name": PoolAllocation.subdomain, "updated": PoolAllocation.updated_at,
                    "reserved": PoolAllocation.reserved_at}


class UnitOfWork:
    """``with uow as tx:`` -- commits when the block ends, rolls back if it raises.
    ``snapshot=True`` makes every read in the block see one consistent state.
    ``single=True``: one statement that needs no transaction around it -- a read, or a
    write complete in itself, in Core (PostgreSQL runs it on a plain connection in
    autocommit: no Session, no BEGIN and COMMIT round trips around it; ``session`` is
    then that Connection)."""

    def __init__(self, session_factory: sessionmaker, *, snapshot: bool = False, single: bool = False):
        self._session_factory = session_factory
        self._snapshot = snapshot
        self._single = single

    def __enter__(self) -> "UnitOfWork":
        engine = self._session_factory.kw["bind"]
        self.dialect = engine.dialect.name
        if self._single and self.dialect == "postgresql":
            # A plain connection in autocommit, no Session: a Session's setup and its ORM
            # execution cost more than check's one statement (bench/README.md). Every
            # ``single`` statement is Core, which a Connection runs alike.
            self.session: Session | Connection = engine.connect()
            self.session.execution_options(isolation_level="AUTOCOMMIT")  # reset when put back
            return self
        self.session = self._session_factory()
        self.session.begin()
        if self._snapshot and self.dialect == "postgresql":
            # Every statement sees the same committed state (SQLite's BEGIN IMMEDIATE
            # already gives that).
            self.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if isinstance(self.session, Connection):
            self.session.close()  # autocommit: each statement committed as it ran
            return
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

    def name_view(self, pool: str, sub: str) -> tuple[str | None, datetime | None, str | None]:
        """What check needs of a name, in one round trip: its allocation's state and expiry
        (None, None: no allocation) and the foreign records the pool's DNS holds at or under
        it (``dns_conflict``)."""
        state, expires_at, conflict = self.session.execute(_NAME_VIEW, {"pool": pool, "sub": sub}).one()
        return state, expires_at, conflict

    def list_allocations(self, pool: str, state: str | None = None, *, prefix: str = "",
                         created_by: str | None = None, sort: str = "name", descending: bool = False,
                         after: tuple | None = None, limit: int | None = None) -> list:
        """The pool's allocations in ``sort`` order (``ALLOCATION_SORTS``), names breaking
        ties; ``after``: the (sort value, name) -- or (name,) in name order -- of the previous
        page's last row, so a page costs the same anywhere. Rows with PoolAllocation's
        attributes: plain rows, not ORM objects (a pool may hold 100,000 names, and the
        list only reads them)."""
        column = ALLOCATION_SORTS[sort]
        stmt = select(*(getattr(PoolAllocation, a.key) for a in PoolAllocation.__mapper__.column_attrs)).where(
            PoolAllocation.pool_domain == pool)
        if prefix:
            stmt = stmt.where(*_starting_with(prefix))
        if state is not None:
            stmt = stmt.where(PoolAllocation.state == state)
        if created_by is not None:
            stmt = stmt.where(PoolAllocation.created_by == created_by)
        keys = (PoolAllocation.subdomain,) if column is PoolAllocation.subdomain else (column, PoolAllocation.subdomain)
        if after is not None:
            row, mark = tuple_(*keys), tuple_(*after[-len(keys):])
            stmt = stmt.where(row < mark if descending else row > mark)
        stmt = stmt.order_by(*(k.desc() if descending else k for k in keys))
        if limit is not None:
            stmt = stmt.limit(limit)
        return list(self.session.execute(stmt))

    def a_label_tenants(self, pool: str, now: datetime) -> dict[str, str]:
        """subdomain -> state of the pool's ``xn--`` tenants, lapsed reservations left out:
        a range of the primary key (pool_domain, subdomain), not a scan of the pool."""
        stmt = select(PoolAllocation.subdomain, PoolAllocation.state).where(
            PoolAllocation.pool_domain == pool, *_starting_with("xn--"),
            (PoolAllocation.state == domain.ACTIVE) | (PoolAllocation.expires_at > now),
        )
        return {sub: state for sub, state in self.session.execute(stmt)}

    def allocation_states(self, pool: str, names: Iterable[str] | None = None) -> dict[str, str]:
        stmt = select(PoolAllocation.subdomain, PoolAllocation.state).where(PoolAllocation.pool_domain == pool)
        if names is not None:
            stmt = stmt.where(PoolAllocation.subdomain.in_(sorted(names)))
        return {sub: state for sub, state in self.session.execute(stmt)}

    def still_active(self, pool: str, names: Iterable[str]) -> set[str]:
        """Which of ``names`` are active now, their rows share-locked to the end of the
        transaction (PostgreSQL): a release of one waits until this transaction is over."""
        stmt = (select(PoolAllocation.subdomain)
                .where(PoolAllocation.pool_domain == pool, PoolAllocation.subdomain.in_(sorted(set(names))),
                       PoolAllocation.state == domain.ACTIVE)
                .with_for_update(read=True))
        return set(self.session.execute(stmt).scalars())

    def save_allocation(self, row: PoolAllocation, allocation: domain.Allocation, now: datetime,
                        **columns) -> None:
        """Write a transition's allocation onto its row; ``columns``: other columns of the
        row the transition sets (a reserve's ``reserved_by``)."""
        for name in ("state", "reserved_at", "created_by", "expires_at", "sovereign_fqdn", "load_balancer_ip"):
            setattr(row, name, getattr(allocation, name))
        for name, value in columns.items():
            setattr(row, name, value)
        row.reservation_token = allocation.token_digest
        row.updated_at = now

    def lock_holder(self, pool: str, holder: str) -> None:
        """Serialise one holder's reserves in one pool, so two of them cannot both take the
        last room under its quota. PostgreSQL: an advisory lock held to the end of the
        transaction; SQLite's BEGIN IMMEDIATE already serialises every writer."""
        if self.dialect == "postgresql":
            self.session.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                                 {"k": advisory_key(f"pool-reserves:{pool}:{holder}")})

    def count_open_reservations(self, pool: str, holder: str, now: datetime) -> int:
        """The holder's reservations in the pool not yet committed and not lapsed."""
        stmt = select(func.count()).where(
            PoolAllocation.pool_domain == pool, PoolAllocation.state == domain.RESERVED,
            PoolAllocation.reserved_by == holder, PoolAllocation.expires_at > now,
        )
        return self.session.execute(stmt).scalar_one()

    def active_tenants(self, pool: str, names: Iterable[str] | None = None) -> tuple[dict[str, str], frozenset[str]]:
        """Every active tenant of the pool (or of ``names`` only) and the address its
        records point at, and those carried over from the previous service's table."""
        stmt = select(PoolAllocation.subdomain, PoolAllocation.load_balancer_ip, PoolAllocation.carried_over).where(
            PoolAllocation.pool_domain == pool, PoolAllocation.state == domain.ACTIVE
        )
        if names is not None:
            stmt = stmt.where(PoolAllocation.subdomain.in_(sorted(names)))
        active, carried = {}, set()
        for sub, ip, carried_over in self.session.execute(stmt):
            active[sub] = ip
            if carried_over:
                carried.add(sub)
        return active, frozenset(carried)

    def count_active(self, pool: str) -> int:
        stmt = select(func.count()).where(
            PoolAllocation.pool_domain == pool, PoolAllocation.state == domain.ACTIVE
        )
        return self.session.execute(stmt).scalar_one()

    def delete_allocation(self, row: PoolAllocation) -> None:
        self.session.delete(row)
        self.session.flush()

    def delete_expired_reservations(self, now: datetime, limit: int | None = None) -> list[tuple[str, str]]:
        # The WHERE is re-checked against a row a concurrent commit just activated,
        # so the sweeper never deletes a committed allocation.
        lapsed = (PoolAllocation.state == domain.RESERVED, PoolAllocation.expires_at <= now)
        stmt = delete(PoolAllocation).where(*lapsed)
        if limit is not None:
            # A batch: rows a commit or reserve holds are skipped (the next sweep has them).
            batch = select(PoolAllocation.pool_domain, PoolAllocation.subdomain).where(*lapsed).limit(limit)
            if self.dialect == "postgresql":
                # Materialised once: as a plain IN (...) subquery PostgreSQL may scan it
                # again, and with SKIP LOCKED each scan finds other rows (1234 deleted at
                # a limit of 100 was seen).
                cte = batch.with_for_update(skip_locked=True).cte("batch").prefix_with("MATERIALIZED")
                batch = select(cte.c.pool_domain, cte.c.subdomain)
            stmt = stmt.where(tuple_(PoolAllocation.pool_domain, PoolAllocation.subdomain).in_(batch))
        stmt = stmt.returning(PoolAllocation.pool_domain, PoolAllocation.subdomain)
        return [tuple(r) for r in self.session.execute(stmt)]

    # -- history ----------------------------------------------------------------------

    def record_event(self, pool: str, sub: str, action: str, caller: str, at: datetime,
                     load_balancer_ip: str | None = None, detail: str | None = None, origin: str | None = None) -> None:
        self.record_events([event(pool, sub, action, caller, at, load_balancer_ip, detail, origin)])

    def record_events(self, events: list[dict]) -> None:
        """Many events (``event(...)``s) in one statement -- an INSERT, not ORM objects
        flushed at the commit (half a write request's CPU was that flush) -- and their
        webhooks, in the same transaction (the outbox the session factory carries)."""
        if not events:
            return
        self.session.execute(insert(AllocationEvent), events)
        outbox = self.session.info.get("outbox")
        messages = outbox.rows(events) if outbox else []
        if not messages:
            return
        if self.dialect == "postgresql":
            # A subject's messages get their ids in the order their transactions commit:
            # the deliverer, reading in id order, never sends one before an older one that
            # was still uncommitted. (SQLite runs one writer at a time.) Keys sorted: two
            # transactions never wait on each other's in opposite orders.
            keys = sorted({advisory_key("webhook-order:" + m["subject"]) for m in messages})
            self.session.execute(text("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:keys AS bigint[])) "
                                      "AS k"), {"keys": keys})
        self.session.execute(insert(WebhookMessage), messages)

    def history(self, *, pool: str | None = None, sub: str | None = None, caller: str | None = None,
                action: str | None = None, since: datetime | None = None, until: datetime | None = None,
                before: int | None = None, limit: int = 100) -> list[AllocationEvent]:
        """Events, newest first, each filter applied when given (none: across pools);
        ``before``: an event id, the page after the one that ended there."""
        stmt = select(AllocationEvent)
        for column, value in ((AllocationEvent.pool_domain, pool), (AllocationEvent.subdomain, sub),
                              (AllocationEvent.caller, caller), (AllocationEvent.action, action)):
            if value is not None:
                stmt = stmt.where(column == value)
        if since is not None:
            stmt = stmt.where(AllocationEvent.at >= since)
        if until is not None:
            stmt = stmt.where(AllocationEvent.at < until)
        if before is not None:
            stmt = stmt.where(AllocationEvent.id < before)
        return list(self.session.execute(stmt.order_by(AllocationEvent.id.desc()).limit(limit)).scalars())

    def prune_history(self, older_than: datetime) -> int:
        result = self.session.execute(delete(AllocationEvent).where(AllocationEvent.at < older_than))
        return result.rowcount or 0

    # -- pool capacity -------------------------------------------------------------

    def lock_pool(self, pool: str) -> PoolZone:
        """Serialise the commits of one pool, so two of them cannot both take the last
        room in its zone; returns the pool's row. PostgreSQL: an advisory lock held to
        the end of the transaction, not a lock on that row -- a DNS pass updates the row
        and must not queue behind commits. SQLite's BEGIN IMMEDIATE already serialises
        every writer."""
        if self.dialect == "postgresql":
            self.session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": advisory_key(f"pool-commits:{pool}")})
        return self._pool_zone_row(pool)

    def _pool_zone_row(self, pool: str) -> PoolZone:
        """The pool's row, made on first use; no statement when this transaction read it."""
        zone = self.session.get(PoolZone, pool)
        if zone is None:
            self.session.execute(self._insert(PoolZone).values(pool_domain=pool).on_conflict_do_nothing())
            zone = self.session.get(PoolZone, pool)
        return zone

    def pool_zone(self, pool: str) -> PoolZone | None:
        return self.session.get(PoolZone, pool)

    def zone_read(self, pool: str) -> bool:
        """Whether a pass has read the pool's zone (its shape is known)."""
        stmt = select(PoolZone.synced_at).where(PoolZone.pool_domain == pool)
        return self.session.execute(stmt).scalar() is not None

    def pool_zones(self) -> dict[str, PoolZone]:
        return {z.pool_domain: z for z in self.session.execute(select(PoolZone)).scalars()}

    def update_pool_zone(self, pool: str, **values) -> None:
        self._pool_zone_row(pool)
        self.session.execute(update(PoolZone).where(PoolZone.pool_domain == pool).values(**values))

    def schedule_recheck(self, pool: str, at: datetime, now: datetime) -> None:
        """A zone read owed at ``at``; a later one already owed (a write that may still
        land) is kept."""
        zone = self.pool_zone(pool)
        if zone is not None and zone.recheck_at is not None and zone.recheck_at > max(at, now):
            return
        self.update_pool_zone(pool, recheck_at=at)

    # -- the hosts the service owns ----------------------------------------------------

    def owned_hosts(self, pool: str, names: Iterable[str] | None = None) -> set[str]:
        """The hosts the service owns in the pool (or those of the tenant ``names``)."""
        stmt = select(OwnedHost.host).where(OwnedHost.pool_domain == pool)
        if names is not None:
            stmt = stmt.where(OwnedHost.subdomain.in_(sorted(names)))
        return set(self.session.execute(stmt).scalars())

    def resync_names(self, pool: str, after: str, limit: int) -> list[str]:
        """The next ``limit`` names after ``after``, in order, that a resync checks: every
        active tenant and every name the service owns hosts of."""
        names = union(
            select(PoolAllocation.subdomain.label("name")).where(
                PoolAllocation.pool_domain == pool, PoolAllocation.state == domain.ACTIVE,
                PoolAllocation.subdomain > after),
            select(OwnedHost.subdomain.label("name")).where(OwnedHost.pool_domain == pool,
                                                            OwnedHost.subdomain > after),
        ).subquery()
        stmt = select(names.c.name).order_by(names.c.name).limit(limit)
        return list(self.session.execute(stmt).scalars())

    def count_resync_names(self, pool: str) -> int:
        names = union(
            select(PoolAllocation.subdomain.label("name")).where(
                PoolAllocation.pool_domain == pool, PoolAllocation.state == domain.ACTIVE),
            select(OwnedHost.subdomain.label("name")).where(OwnedHost.pool_domain == pool),
        ).subquery()
        return self.session.execute(select(func.count()).select_from(names)).scalar_one()

    def advance_resync(self, pool: str, at: tuple[str, int], to: tuple[str, int]) -> bool:
        """Move a resync from ``at`` (the last name checked, how many) on by ``to`` (the
        slice's last name, its size) -- unless another process moved it first."""
        (after, checked), (last, n) = at, to
        stmt = update(PoolZone).where(
            PoolZone.pool_domain == pool, PoolZone.resync_after == after, PoolZone.resync_checked == checked,
        ).values(resync_after=last, resync_checked=checked + n)
        return self.session.execute(stmt).rowcount == 1

    def own_hosts(self, pool: str, hosts: set[str]) -> None:
        """Add ``hosts`` (one statement; those already owned are left as they are)."""
        if hosts:
            self.session.execute(
                self._insert(OwnedHost).on_conflict_do_nothing(),
                [dict(pool_domain=pool, host=host, subdomain=domain.tenant_of(host)) for host in sorted(hosts)],
            )

    def disown_hosts(self, pool: str, hosts: set[str]) -> None:
        if hosts:
            self.session.execute(delete(OwnedHost).where(OwnedHost.pool_domain == pool, OwnedHost.host.in_(hosts)))

    # -- names the pool's DNS holds foreign records at ---------------------------------

    def dns_conflict(self, pool: str, sub: str) -> str | None:
        """What foreign records the last good read found at or under ``sub``; None: none."""
        return self.session.execute(_conflict_detail(pool, sub)).scalar()

    def conflicts(self, pool: str, names: Iterable[str]) -> dict[str, str]:
        """The stored conflicts (label -> detail) of ``names``."""
        stmt = select(DnsConflict.label, DnsConflict.detail).where(DnsConflict.pool_domain == pool,
                                                                   DnsConflict.label.in_(sorted(names)))
        return dict(self.session.execute(stmt).all())

    def replace_conflicts(self, pool: str, conflicts: dict[str, str], names: Iterable[str] | None = None) -> None:
        """Make the pool's conflicts ``conflicts`` (label -> detail) -- those of ``names``
        only, when a pass read only them -- writing only the difference: a pass seldom
        changes them."""
        stmt = select(DnsConflict.label, DnsConflict.detail).where(DnsConflict.pool_domain == pool)
        if names is not None:
            stmt = stmt.where(DnsConflict.label.in_(sorted(names)))
        stored = dict(self.session.execute(stmt).all())
        gone = [label for label in stored if label not in conflicts or stored[label] != conflicts[label]]
        if gone:
            self.session.execute(delete(DnsConflict).where(DnsConflict.pool_domain == pool,
                                                           DnsConflict.label.in_(gone)))
        fresh = [dict(pool_domain=pool, label=label, detail=detail) for label, detail in sorted(conflicts.items())
                 if stored.get(label) != detail]
        if fresh:
            self.session.execute(insert(DnsConflict), fresh)

    # -- DNS work queue ------------------------------------------------------------

    def add_dns_work(self, pool: str, sub: str, action: str, now: datetime) -> int:
        stmt = insert(DnsWork).values(pool_domain=pool, subdomain=sub, action=action, created_at=now, attempts=0,
                                      next_attempt_at=now).returning(DnsWork.id)
        return self.session.execute(stmt).scalar_one()

    def pending_work(self, pool: str | None = None) -> list[DnsWork]:
        stmt = select(DnsWork).order_by(DnsWork.id)
        if pool is not None:
            stmt = stmt.where(DnsWork.pool_domain == pool)
        return list(self.session.execute(stmt).scalars())

    def queued_work(self, ids: list[int]) -> dict[int, tuple[str | None, str]]:
        """The work of ``ids`` still queued: id -> (its refusal, if a pass refused it, and
        why). Work not in it is done."""
        stmt = select(DnsWork.id, DnsWork.refusal, DnsWork.last_error).where(DnsWork.id.in_(ids))
        return {id_: (refusal, error or "") for id_, refusal, error in self.session.execute(stmt)}

    def pools_with_due_work(self, now: datetime) -> list[str]:
        stmt = select(DnsWork.pool_domain).where(DnsWork.next_attempt_at <= now).distinct()
        return sorted(self.session.execute(stmt).scalars())

    def finish_work(self, ids: list[int]) -> None:
        if ids:
            self.session.execute(delete(DnsWork).where(DnsWork.id.in_(ids)))

    def defer_work(self, ids: list[int], until: datetime, why: str) -> None:
        """Not attempted (the registrar asked every caller to wait): due again at ``until``,
        its attempts unchanged."""
        if ids:
            self.session.execute(
                update(DnsWork).where(DnsWork.id.in_(ids)).values(next_attempt_at=until, last_error=why[:500])
            )

    def fail_work(self, ids: list[int], error: str, next_attempt_at: datetime, *, refusal: str | None = None) -> None:
        """An attempt that failed (``refusal``: one a pass refused, "dns-conflict" or
        "pool-full")."""
        if ids:
            self.session.execute(
                update(DnsWork)
                .where(DnsWork.id.in_(ids))
                .values(attempts=DnsWork.attempts + 1, last_error=error[:500], next_attempt_at=next_attempt_at,
                        refusal=refusal)
            )

    # -- registrar pacing -----------------------------------------------------------

    def registrar_account(self, account: str) -> RegistrarAccount | None:
        stmt = select(RegistrarAccount).where(RegistrarAccount.account == account)
        return self.session.execute(stmt).scalar_one_or_none()

    def update_registrar_account(self, account: str, **values) -> None:
        """``last_call_at`` and/or ``paused_until`` of the account, creating its row."""
        self.session.execute(self._insert(RegistrarAccount).values(account=account).on_conflict_do_nothing())
        self.session.execute(update(RegistrarAccount).where(RegistrarAccount.account == account).values(**values))

    def take_fence(self, account: str) -> tuple[int, datetime | None]:
        """A new fencing token for the holder of the account's lock, and until when the
        registrar asked every caller to wait (one statement)."""
        stmt = (
            self._insert(RegistrarAccount)
            .values(account=account, fence=1)
            .on_conflict_do_update(index_elements=[RegistrarAccount.account],
                                   set_={"fence": RegistrarAccount.fence + 1})
            .returning(RegistrarAccount.fence, RegistrarAccount.paused_until)
        )
        fence, paused_until = self.session.execute(stmt).one()
        return fence, paused_until

    def fence(self, account: str) -> int:
        # Locked, so no new holder takes a token between this check and the commit.
        stmt = select(RegistrarAccount.fence).where(RegistrarAccount.account == account).with_for_update()
        return self.session.execute(stmt).scalar_one()

    # -- the console's pages ----------------------------------------------------------

    def work_of(self, pool: str, names: Iterable[str]) -> dict[str, tuple[str, str | None, str | None]]:
        """Per name with DNS work queued: its newest work's (action, refusal, last error)."""
        stmt = (select(DnsWork.subdomain, DnsWork.action, DnsWork.refusal, DnsWork.last_error)
                .where(DnsWork.pool_domain == pool, DnsWork.subdomain.in_(sorted(set(names)))).order_by(DnsWork.id))
        return {sub: (action, refusal, error) for sub, action, refusal, error in self.session.execute(stmt)}

    # -- webhooks -------------------------------------------------------------------

    def due_webhooks(self, endpoint: str, now: datetime, limit: int) -> list[WebhookMessage]:
        """An endpoint's messages to send now, in id order: of each subject only the
        oldest undelivered one (order per allocation), and only once it is due."""
        older = WebhookMessage.__table__.alias("older")
        pending = (WebhookMessage.delivered_at.is_(None), WebhookMessage.failed_at.is_(None))
        stmt = (select(WebhookMessage)
                .where(WebhookMessage.endpoint == endpoint, *pending, WebhookMessage.next_attempt_at <= now,
                       ~select(older.c.id).where(older.c.endpoint == endpoint, older.c.subject == WebhookMessage.subject,
                                                 older.c.id < WebhookMessage.id, older.c.delivered_at.is_(None),
                                                 older.c.failed_at.is_(None)).exists())
                .order_by(WebhookMessage.id).limit(limit))
        return list(self.session.execute(stmt).scalars())

    def update_webhook(self, message_id: int, **values) -> None:
        self.session.execute(update(WebhookMessage).where(WebhookMessage.id == message_id).values(**values))

    def webhook_endpoints(self) -> dict[str, WebhookEndpoint]:
        return {e.name: e for e in self.session.execute(select(WebhookEndpoint)).scalars()}

    def update_webhook_endpoint(self, name: str, **values) -> None:
        stmt = self._insert(WebhookEndpoint).values(name=name, **values)
        self.session.execute(stmt.on_conflict_do_update(index_elements=["name"], set_=values))

    def webhook_messages(self, *, endpoint: str | None = None, state: str | None = None, msg_id: str | None = None,
                         before: int | None = None, limit: int = 50) -> list[WebhookMessage]:
        """Messages newest first; ``state``: pending, delivered or failed."""
        stmt = select(WebhookMessage)
        if endpoint is not None:
            stmt = stmt.where(WebhookMessage.endpoint == endpoint)
        if msg_id is not None:
            stmt = stmt.where(WebhookMessage.msg_id == msg_id)
        if state == "pending":
            stmt = stmt.where(WebhookMessage.delivered_at.is_(None), WebhookMessage.failed_at.is_(None))
        elif state == "delivered":
            stmt = stmt.where(WebhookMessage.delivered_at.is_not(None))
        elif state == "failed":
            stmt = stmt.where(WebhookMessage.failed_at.is_not(None))
        if before is not None:
            stmt = stmt.where(WebhookMessage.id < before)
        return list(self.session.execute(stmt.order_by(WebhookMessage.id.desc()).limit(limit)).scalars())

    def replay_webhooks(self, now: datetime, *, msg_id: str | None = None, since: datetime | None = None,
                        until: datetime | None = None, endpoint: str | None = None) -> int:
        """Send matching messages again (the same webhook-id), from their first attempt."""
        stmt = update(WebhookMessage).values(delivered_at=None, failed_at=None, attempts=0, next_attempt_at=now)
        if msg_id is not None:
            stmt = stmt.where(WebhookMessage.msg_id == msg_id)
        if since is not None:
            stmt = stmt.where(WebhookMessage.created_at >= since)
        if until is not None:
            stmt = stmt.where(WebhookMessage.created_at < until)
        if endpoint is not None:
            stmt = stmt.where(WebhookMessage.endpoint == endpoint)
        return self.session.execute(stmt).rowcount or 0

    def prune_webhooks(self, older_than: datetime) -> int:
        return self.session.execute(delete(WebhookMessage).where(WebhookMessage.created_at < older_than)).rowcount or 0

    def webhook_figures(self, now: datetime) -> dict[str, tuple[int, datetime | None, int, bool]]:
        """Per endpoint with messages or a state: (pending, when the oldest pending was
        written, failed (given up), disabled)."""
        pending = (WebhookMessage.delivered_at.is_(None), WebhookMessage.failed_at.is_(None))
        counts = select(WebhookMessage.endpoint, func.count(), func.min(WebhookMessage.created_at)).where(
            *pending).group_by(WebhookMessage.endpoint)
        failed = select(WebhookMessage.endpoint, func.count()).where(
            WebhookMessage.failed_at.is_not(None)).group_by(WebhookMessage.endpoint)
        figures: dict[str, list] = {}
        for name, n, oldest in self.session.execute(counts):
            figures[name] = [n, oldest, 0, False]
        for name, n in self.session.execute(failed):
            figures.setdefault(name, [0, None, 0, False])[2] = n
        for e in self.session.execute(select(WebhookEndpoint)).scalars():
            figures.setdefault(e.name, [0, None, 0, False])[3] = e.disabled_at is not None
        return {name: tuple(f) for name, f in figures.items()}

    # -- figures for /metrics --------------------------------------------------------

    def allocation_counts(self, pool: str | None = None) -> dict[tuple[str, str], int]:
        stmt = select(PoolAllocation.pool_domain, PoolAllocation.state, func.count()).group_by(
            PoolAllocation.pool_domain, PoolAllocation.state
        )
        if pool is not None:
            stmt = stmt.where(PoolAllocation.pool_domain == pool)
        return {(pool, state): n for pool, state, n in self.session.execute(stmt)}

    def blocked_pools(self) -> dict[str, str]:
        stmt = select(PoolZone.pool_domain, PoolZone.blocked_reason).where(PoolZone.blocked_reason.is_not(None))
        return {pool: reason for pool, reason in self.session.execute(stmt)}

    def failing_pools(self) -> dict[str, tuple[str, datetime | None]]:
        """Per pool whose last pass failed: its error and since when its passes fail."""
        stmt = select(PoolZone.pool_domain, PoolZone.last_error, PoolZone.failing_since).where(
            PoolZone.last_error.is_not(None))
        return {pool: (error, since) for pool, error, since in self.session.execute(stmt)}

    def pending_summary(self) -> dict[str, tuple[int, datetime]]:
        """Per pool: how much DNS work is pending and when the oldest was queued."""
        stmt = select(DnsWork.pool_domain, func.count(), func.min(DnsWork.created_at)).group_by(DnsWork.pool_domain)
        # min() keeps the column's type, so the oldest comes back as an aware datetime.
        return {pool: (n, oldest) for pool, n, oldest in self.session.execute(stmt)}

    def last_errors(self) -> dict[str, str]:
        """Per pool: the error of its most recently failed pending change."""
        newest = (select(func.max(DnsWork.id)).where(DnsWork.last_error.is_not(None))
                  .group_by(DnsWork.pool_domain))
        stmt = select(DnsWork.pool_domain, DnsWork.last_error).where(DnsWork.id.in_(newest))
        return {pool: error for pool, error in self.session.execute(stmt)}

    # -- figures for alerts ----------------------------------------------------------

    def registrar_pauses(self, accounts: Iterable[str]) -> dict[str, datetime]:
        """Until when the registrar asked every caller with each of ``accounts`` to wait
        (accounts never paused are left out)."""
        stmt = select(RegistrarAccount.account, RegistrarAccount.paused_until).where(
            RegistrarAccount.account.in_(sorted(set(accounts))), RegistrarAccount.paused_until.is_not(None))
        return {account: until for account, until in self.session.execute(stmt)}

    # -- health --------------------------------------------------------------------

    def ping(self) -> None:
        self.session.execute(select(1))

    def schema_revision(self) -> str | None:
        return self.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
