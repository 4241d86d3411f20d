"""A pool whose DNS is its zone at Dynadot: the pass reads the whole zone, plans it
(``plan.plan_zone``) and writes the whole zone back once, if it changed.

The service only ever reads a whole zone and writes a whole zone back (Dynadot's
``set_dns2`` replaces the zone; see ``client.py``), so what this backend needs from the
registrar (``Registrar``: the client, or a test's fake) is two calls.
"""
from __future__ import annotations

from typing import Protocol

from ... import domain
from ...locks import DatabaseLock
from .. import ownership
from ..backend import Converged, NameDrift, PassIO, Snapshot, account_id, foreign_json
from ..zone import Record, Zone
from .plan import diff_zone, lost_foreign, plan_zone


class Registrar(Protocol):
    def get_zone(self, domain: str, *, timeout: float | None = None) -> Zone:
        """The complete current zone of ``domain``; raises RegistrarError if it cannot be
        read completely (never a partial zone)."""

    def set_zone(self, zone: Zone, *, timeout: float | None = None) -> None:
        """Replace the whole zone of ``zone.domain`` with exactly ``zone``."""



class DynadotZones:
    kind = "dynadot"
    scoped = False  # the API reads and writes the whole zone, and nothing else

    def __init__(self, registrar: Registrar, lock: DatabaseLock, *, key: str, record_names: tuple[str, ...],
                 min_interval: float, max_subhost_records: int | None = None, max_apex_records: int | None = None,
                 pools: tuple[str, ...] = ()):
        self.registrar = registrar
        # A pool may sit under another: a tenant of that name is never published.
        self.pools = pools
        self.lock = lock
        self.account = account_id(key)
        self.record_names = record_names
        self.min_interval = min_interval
        self.max_subhost_records = max_subhost_records
        self.max_apex_records = max_apex_records

    def read(self, pool: str, io: PassIO) -> Zone:
        return io.call("get_dns", self.registrar.get_zone, pool)

    def converge(self, pool: str, snap: Snapshot, io: PassIO, *, accept: bool, adopt: frozenset[str]) -> Converged:
        current = self.read(pool, io)
        refused = ownership.pool_names(pool, snap.active, self.pools)
        active = {sub: ip for sub, ip in snap.active.items() if sub not in refused}
        plan = plan_zone(current, active, self.record_names, snap.owned | adopt, snap.last_foreign,
                         carried=snap.carried, accept=accept, max_subhost_records=self.max_subhost_records,
                         max_apex_records=self.max_apex_records)
        if plan.changed:
            io.own(plan.owned)
            # A failed write may still be applied later (Dynadot has been seen doing so):
            # io.write has the zone read again once that could have happened.
            io.write("set_dns2", self.registrar.set_zone, plan.zone)
        return Converged(
            touched=plan.touched,
            owned=plan.owned,
            removing=plan.removing,
            state=dict(foreign_subhost_records=plan.foreign_subhost_records, foreign_records=foreign_json(plan.foreign)),
            conflicts=plan.conflicts,
            refused={**plan.refused, **refused},
        )

    def look(self, pool: str, snap: Snapshot, io: PassIO) -> tuple[list[NameDrift], list[Record]]:
        zone = self.read(pool, io)
        scope = snap.scope or frozenset()
        names = [n for n in diff_zone(zone, snap.states, snap.active, self.record_names, snap.owned, snap.carried)
                 if n.subdomain in scope]
        held = [Record(r.host, r.rtype, f"{r.value} {r.extra}".strip(), f"zone {pool}") for r in zone.records
                if domain.tenant_of(r.host) in scope]
        return names, held

    def drift(self, pool: str, snap: Snapshot, io: PassIO) -> tuple[list[NameDrift], list[Record]]:
        zone = self.read(pool, io)
        names = diff_zone(zone, snap.states, snap.active, self.record_names, snap.owned, snap.carried)
        ours = ownership.ours_hosts(snap.owned, snap.active, snap.carried, self.record_names)
        lost = lost_foreign(zone, ours, snap.last_foreign)
        return names, lost
