"""What the operators' console pages read (and nothing else does): a pool's allocations
a page at a time with their DNS state, the history searched across pools, and a tenant's
records beside what its DNS holds now. The console's actions are the operators' and the
lifecycle's own use cases, with the same rules as the API and the console script.

Knows nothing of Flask: the pages (``pdm_app.console``) parse and render.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Iterator

from sqlalchemy.exc import SQLAlchemyError

from .. import domain
from ..dns.backend import NameDrift
from ..dns.errors import RegistrarError
from ..dns.zone import Record
from ..domain import ACTIVE, RESERVED, Allocation, DomainError
from ..redaction import redact
from ..unit_of_work import ALLOCATION_SORTS
from .base import UseCases, to_domain
from .operators import Event

log = logging.getLogger(__name__)

PAGE_SIZES = (25, 50, 100, 200)
# A tenant page waits this long at most for its look at the DNS.
LOOK_BUDGET = 5.0
# The history export reads this many events per statement.
EXPORT_BATCH = 1000
# Search terms: what a name, a caller or an action can hold (anything else matches nothing).
_NAME_PREFIX = re.compile(r"^[a-z0-9.-]{0,63}$")
_TEXT = re.compile(r"^[^\x00-\x1f\x7f\ud800-\udfff]{0,200}$")

# A row's DNS, for a person: published, pending, removing, conflict, refused, or none.
PUBLISHED, PENDING, REMOVING, CONFLICT, REFUSED, NONE = "published", "pending", "removing", "conflict", "refused", ""


@dataclass(frozen=True)
class AllocationQuery:
    prefix: str = ""
    state: str | None = None
    created_by: str | None = None
    sort: str = "name"
    descending: bool = False
    after: str | None = None  # the cursor of the previous page (``AllocationPage.next_after``)
    limit: int = 50


@dataclass(frozen=True)
class AllocationRow:
    allocation: Allocation
    dns: str
    dns_detail: str | None = None
    updated_at: datetime | None = None
    reserved_by: str | None = None


@dataclass(frozen=True)
class AllocationPage:
    pool_domain: str
    query: AllocationQuery
    rows: list[AllocationRow]
    next_after: str | None


@dataclass(frozen=True)
class ChangeQuery:
    pool: str | None = None
    sub: str | None = None
    caller: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before: int | None = None
    limit: int = 100


@dataclass(frozen=True)
class RecordLine:
    """One row of a tenant's records: what the table wants there beside what the DNS holds."""

    host: str
    rtype: str
    want: str
    have: str
    status: str  # ok, missing, wrong, not ours, left over, held
    where: str = ""


@dataclass(frozen=True)
class TenantView:
    row: AllocationRow
    backend: str
    events: list[Event]
    next_before: int | None
    records: list[RecordLine] = field(default_factory=list)
    drift: NameDrift | None = None
    looked_at: datetime | None = None
    look_error: str | None = None


def _checked_text(value: str | None, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not _TEXT.match(value):
        raise DomainError("invalid-request", f"{what} is not something it can match", 400)
    return value


def _cursor(row, sort: str) -> str:
    if sort == "name":
        return row.subdomain
    return f"{getattr(row, ALLOCATION_SORTS[sort].key).isoformat()}|{row.subdomain}"


def _after(cursor: str | None, sort: str) -> tuple | None:
    if not cursor:
        return None
    if sort == "name":
        return (cursor,)
    stamp, sep, sub = cursor.partition("|")
    try:
        at = datetime.fromisoformat(stamp)
    except ValueError:
        at = None
    if not sep or at is None or at.tzinfo is None:
        raise DomainError("invalid-request", "after is not a cursor of this listing", 400)
    return (at, sub)


def dns_state(state: str, work: tuple[str, str | None, str | None] | None,
              conflict: str | None) -> tuple[str, str | None]:
    """A row's DNS for a person, from its queued work (action, refusal, error) and the
    foreign records its name meets (``dns_conflicts``)."""
    if work is not None:
        action, refusal, error = work
        if refusal == "dns-conflict":
            return CONFLICT, error
        if refusal:
            return REFUSED, error
        return (REMOVING if action == domain.REMOVE else PENDING), error
    if conflict is not None and state == RESERVED:
        return CONFLICT, conflict
    return (PUBLISHED, None) if state == ACTIVE else (NONE, None)


def record_lines(allocation: Allocation, record_names: tuple[str, ...], drift: NameDrift | None,
                 held: list[Record]) -> list[RecordLine]:
    """The tenant's records as the table wants them beside those the DNS holds at or under
    its name; what is neither wanted nor the service's is listed as "not ours"."""
    wanted = domain.tenant_hosts(allocation.subdomain, record_names) if allocation.state == ACTIVE else []
    orphans = set(drift.orphans) if drift else set()
    foreign = " ".join(drift.foreign) if drift else ""
    held = [Record(r.host, r.rtype.upper(), r.value, r.extra) for r in held]
    a_at: dict[str, list[str]] = {}
    for r in held:
        if r.rtype == "A":
            a_at.setdefault(r.host, []).append(r.value)
    lines = []
    for host in wanted:
        have = sorted(a_at.get(host, []))
        want = allocation.load_balancer_ip or ""
        if have == [want]:
            status = "ok"
        elif not have:
            status = "missing"
        else:
            status = "not ours" if host in foreign else "wrong"
        lines.append(RecordLine(host, "A", want, ", ".join(have) or "(none)", status,
                                next((r.extra for r in held if r.host == host and r.rtype == "A"), "")))
    shown = set(wanted)
    for r in held:
        if r.rtype == "A" and r.host in shown:
            continue
        if r.rtype in ("NS", "DS") and r.host == allocation.subdomain:
            status = "held"  # the tenant zone's own NS and keys, and its delegation (PowerDNS)
        elif r.host in orphans or any(r.host in o for o in orphans):
            status = "left over"
        else:
            status = "not ours"
        lines.append(RecordLine(r.host, r.rtype, "", r.value, status, r.extra))
    return lines


class ConsoleViews(UseCases):
    def allocations(self, pool: str, query: AllocationQuery) -> AllocationPage:
        pool = self._pool(pool)
        prefix = domain.normalise(query.prefix or "")
        if not _NAME_PREFIX.match(prefix):
            raise DomainError("invalid-request", "search by the beginning of a name: letters, digits, '-' and '.'",
                              400)
        if query.sort not in ALLOCATION_SORTS:
            raise DomainError("invalid-request", f"sort by one of {', '.join(ALLOCATION_SORTS)}", 400)
        if query.state not in (None, ACTIVE, RESERVED):
            raise DomainError("invalid-request", "state is active or reserved", 400)
        if query.limit not in PAGE_SIZES:
            raise DomainError("invalid-request", f"a page holds one of {', '.join(map(str, PAGE_SIZES))} rows", 400)
        created_by = _checked_text(query.created_by, "caller")
        after = _after(_checked_text(query.after, "after"), query.sort)
        with self.uow() as tx:
            rows = tx.list_allocations(pool, prefix=prefix, state=query.state, created_by=created_by,
                                       sort=query.sort, descending=query.descending, after=after,
                                       limit=query.limit + 1)
            names = [r.subdomain for r in rows[:query.limit]]
            work = tx.work_of(pool, names)
            conflicts = tx.conflicts(pool, names)
        more = len(rows) > query.limit
        rows = rows[:query.limit]
        page = [self._row(r, work.get(r.subdomain), conflicts.get(r.subdomain)) for r in rows]
        return AllocationPage(pool, query, page, _cursor(rows[-1], query.sort) if more else None)

    @staticmethod
    def _row(row, work, conflict) -> AllocationRow:
        dns, detail = dns_state(row.state, work, conflict)
        return AllocationRow(to_domain(row), dns, redact(detail) if detail else None, row.updated_at, row.reserved_by)

    def changes(self, query: ChangeQuery) -> tuple[list[Event], int | None]:
        """A page of the history across pools, newest first, and the ``before`` of the next."""
        filters = self._change_filters(query)
        if not 1 <= query.limit <= EXPORT_BATCH:
            raise DomainError("invalid-request", f"limit must be between 1 and {EXPORT_BATCH}", 400)
        with self.uow() as tx:
            events = [Event.of(e) for e in tx.history(**filters, before=query.before, limit=query.limit + 1)]
        more = len(events) > query.limit
        events = events[:query.limit]
        return events, events[-1].id if more else None

    def all_changes(self, query: ChangeQuery) -> Iterator[Event]:
        """Every event the query matches, newest first, read a batch per statement (an
        export of any size holds one batch in memory). The query is checked now, before
        the first event is read."""
        filters = self._change_filters(query)

        def events(before: int | None) -> Iterator[Event]:
            while True:
                with self.uow() as tx:
                    batch = [Event.of(e) for e in tx.history(**filters, before=before, limit=EXPORT_BATCH)]
                yield from batch
                if len(batch) < EXPORT_BATCH:
                    return
                before = batch[-1].id

        return events(query.before)

    def _change_filters(self, query: ChangeQuery) -> dict:
        pool = self._pool(query.pool) if query.pool else None
        sub = None
        if query.sub:
            sub = domain.normalise(query.sub)
            domain.validate_subdomain(sub)
        if query.since and query.until and query.since >= query.until:
            raise DomainError("invalid-request", "the time range ends before it begins", 400)
        return dict(pool=pool, sub=sub, caller=_checked_text(query.caller, "caller"),
                    action=_checked_text(query.action, "action"), since=query.since, until=query.until)

    def tenant(self, pool: str, sub: str, *, before: int | None = None, limit: int = 200) -> TenantView | None:
        """The tenant's row, DNS state and history (``limit`` events before ``before``),
        and its records beside what the DNS holds now (one read of its names, within
        ``LOOK_BUDGET``). None: no allocation."""
        pool, sub = self._validate(pool, sub)
        with self.uow() as tx:
            row = tx.get_allocation(pool, sub)
            if row is None:
                return None
            allocation_row = self._row(row, tx.work_of(pool, [sub]).get(sub), tx.conflicts(pool, [sub]).get(sub))
            events = [Event.of(e) for e in tx.history(pool=pool, sub=sub, limit=limit + 1, before=before)]
        more = len(events) > limit
        events = events[:limit]
        view = TenantView(allocation_row, self.publisher.backend(pool).kind, events,
                          events[-1].id if more else None)
        try:
            drift, held = self.publisher.look(pool, frozenset({sub}), min(LOOK_BUDGET, self.dns_request_budget))
        except SQLAlchemyError:
            raise  # the database's trouble, answered as such
        except Exception as exc:  # noqa: BLE001 -- any fault of the read: the page still shows the rest
            if not isinstance(exc, RegistrarError):
                log.error("a look at %s.%s failed on an unexpected %s", sub, pool, type(exc).__name__, exc_info=exc)
            return replace(view, looked_at=self.clock(),
                           look_error=redact(f"the DNS could not be read now: {type(exc).__name__}: {exc}"))
        name = next((n for n in drift if n.subdomain == sub), None)
        return replace(view, records=record_lines(allocation_row.allocation, self.record_names, name, held),
                       drift=name, looked_at=self.clock())
