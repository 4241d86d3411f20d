"""The boundary between the DNS engine and a pool's backend: the protocol every backend
implements (``ZoneBackend``), what the engine hands it (``Snapshot``, ``PassIO``) and what
it hands back (``Converged``, the drift report's ``NameDrift``).

Pure: imports only ``zone`` (and ``locks`` for a type). The engine and every backend import this.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Protocol

from .zone import Record

if TYPE_CHECKING:  # a type only: the planning that imports this module stays pure
    from ..locks import DatabaseLock


@dataclass(frozen=True)
class Snapshot:
    """The table as one pass sees it: active tenants and their addresses, the pool's
    pending work, the hosts the service owns, and the last good read's foreign records
    (Dynadot). ``states``: every allocated name and its state (drift reports only)."""

    active: dict[str, str]
    work: list
    owned: set[str]
    last_foreign: list[Record] | None
    states: dict[str, str] = field(default_factory=dict)
    # Active tenants carried over from the previous service's table (``ownership``).
    carried: frozenset[str] = frozenset()
    # The account's fencing token taken with the lock (None: a drift read takes none),
    # and until when the registrar asked every caller to wait.
    fence: int | None = None
    paused_until: datetime | None = None
    # The names this pass covers (its work's, or a resync's slice): every row above is of
    # these names only, and the backend reads only them. None: the whole pool.
    scope: frozenset[str] | None = None
    # For those names, the foreign records a whole read found at or under them last
    # (what a read of the names alone cannot see below them).
    conflicts: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Converged:
    """What a backend's pass did, for the bookkeeping that follows it.

    ``owned``: the hosts of the service's records once the pass is done; ``removing``:
    those it removed now (still owned until a later read shows them gone); ``touched``:
    tenant -> what changed for it; ``state``: the backend's columns of ``pool_zones`` to
    store with this good read; ``conflicts``: every name the DNS holds foreign records at
    or under (``ownership``), None when the pass did not read them all; ``refused``:
    active tenants it did not publish rather than take over what is not the service's
    (or for want of room): sub -> (code, why)."""

    touched: dict[str, list[str]]
    owned: frozenset[str] = frozenset()
    removing: frozenset[str] = frozenset()
    state: Mapping[str, object] = field(default_factory=dict)
    conflicts: Mapping[str, str] | None = None
    refused: Mapping[str, tuple[str, str]] = field(default_factory=dict)


class ZoneBackend(Protocol):
    """Where a pool's DNS lives (Dynadot's zone, or PowerDNS's signed tenant zones).

    ``converge`` reads what the DNS holds, plans and applies what the table wants, making
    every external call through ``io`` (timed, counted; writes fenced); it raises
    ``RegistrarError`` (a failed call), ``UnreadableZone``/``ZoneBlocked`` (the pool is
    blocked) or ``LockLost``; any other exception fails that pool's pass alone, like a
    registrar error. ``drift`` reads and compares without writing."""

    kind: str
    # True: a pass can read and write the names of its work alone (PowerDNS: a zone per
    # tenant), and a resync walks the pool in slices (``survey``, then ``converge`` of
    # each slice's names). False: every pass reads and writes the whole zone (Dynadot).
    scoped: bool
    lock: DatabaseLock
    account: str  # a hash naming the account whose calls are paced, paused and fenced
    min_interval: float
    record_names: tuple[str, ...]  # PDM_TENANT_RECORDS

    def converge(self, pool: str, snap: Snapshot, io: PassIO, *, accept: bool,
                 adopt: frozenset[str]) -> Converged: ...

    def drift(self, pool: str, snap: Snapshot, io: PassIO) -> tuple[list[NameDrift], list[Record]]: ...

    def look(self, pool: str, snap: Snapshot, io: PassIO) -> tuple[list[NameDrift], list[Record]]:
        """The drift of ``snap.scope``'s names alone, and every record the DNS holds at or
        under them (``Record.extra``: where, on PowerDNS), for a person to compare."""

    def survey(self, pool: str, snap: Snapshot, io: PassIO, adopt: frozenset[str]) -> Survey:
        """Scoped backends: the whole pool read once, without writing, at the start of a
        resync (``adopt``: the orphans an operator's reconcile removes)."""


@dataclass(frozen=True)
class Survey:
    """What a resync learns from one read of the whole pool: every name with something
    that is not the service's at or under it (``ownership``), and the names the DNS holds
    that the table does not list but the resync must check (the service's zones of names
    no longer active, and the names an operator adopts)."""

    conflicts: Mapping[str, str]
    stray: frozenset[str]


class PassIO(Protocol):
    """A pass's access to the outside, as the engine hands it to a backend: every call
    paced, timed against the pass's budget and counted; a write made only while the pass
    still holds its lock (else ``LockLost``)."""

    pool: str
    owned: set[str]  # the hosts recorded as the service's own

    def call(self, command: str, fn: Callable, *args, **kwargs):
        """``fn(*args, timeout=<what the budget leaves>, **kwargs)``."""

    def own(self, hosts: Iterable[str]) -> None:
        """Record ``hosts`` as the service's own -- before the write that publishes them,
        so a crash after it cannot orphan what it published."""

    def write(self, command: str, fn: Callable, *args, **kwargs):
        """A call that changes the DNS."""


def account_id(key: str) -> str:
    """How an account is named in the database: a hash, never the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()


def foreign_json(records: Iterable[Record]) -> str:
    return json.dumps([[r.host, r.rtype, r.value, r.extra] for r in records])


def foreign_records(text: str | None) -> list[Record] | None:
    """``pool_zones.foreign_records`` read back."""
    return None if text is None else [Record(*item) for item in json.loads(text)]


@dataclass(frozen=True)
class WrongAddress:
    host: str
    found: list[str]
    expected: str


@dataclass(frozen=True)
class NameDrift:
    """What is wrong with one tenant name's records."""

    subdomain: str
    state: str | None  # the allocation's state; None: no allocation
    missing: list[str] = field(default_factory=list)
    wrong: list[WrongAddress] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    # Records (or zones) that are not the service's at the tenant's hosts -- or, for a
    # reserved name, anywhere at or under it (they will refuse its commit). Never touched.
    foreign: list[str] = field(default_factory=list)
