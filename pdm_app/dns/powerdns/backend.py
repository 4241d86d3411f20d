"""A pool whose DNS PowerDNS serves: one signed zone per tenant, delegated (NS + DS) from
the pool's own signed zone. A pass reads what the server holds, plans with ``plan.py``
and applies it step by step; every step is safe to repeat, so a pass cut short anywhere
(a 5xx, PowerDNS down, the process killed) is finished by the next one.

The order of a pass: the pool's zone (created and signed if missing); each tenant zone
(created, keyed, records written, rectified if needed); then ONE write of the pool's zone
with every delegation change (new NS + DS, and the removals); only then the removed
tenants' zones and any surplus keys are deleted.
"""
from __future__ import annotations

import dataclasses
import logging

from ... import domain
from ...locks import DatabaseLock
from .. import ownership
from ..backend import Converged, NameDrift, PassIO, Snapshot, Survey, account_id
from ..zone import Record
from . import plan
from .client import PowerDnsClient
from .plan import ACCOUNT, Delegation, ParentZone, PoolDns, TenantZone, absolute

log = logging.getLogger(__name__)


def adopted_names(adopt: frozenset[str]) -> frozenset[str]:
    """The names an operator's reconcile removes: the drift report's "zone X.pool." and
    "delegation X" orphans."""
    names = set()
    for item in adopt:
        kind, _, rest = item.partition(" ")
        if kind == "zone":
            names.add(rest.split(".", 1)[0])
        elif kind == "delegation":
            names.add(rest)
    return frozenset(names)


class PowerDnsZones:
    kind = "powerdns"
    scoped = True

    def __init__(self, client: PowerDnsClient, lock: DatabaseLock, *, account_key: str,
                 record_names: tuple[str, ...], nameservers: tuple[str, ...], pools: tuple[str, ...] = ()):
        self.client = client
        # A pool may sit under another (omantel.omani.works under omani.works): its zone
        # and delegation are never taken for a tenant's.
        self.managed = tuple(pools)
        self.pools = frozenset(absolute(p) for p in pools)
        self.lock = lock
        self.account = account_id(account_key)
        self.record_names = record_names
        self.nameservers = tuple(sorted(absolute(n) for n in nameservers))
        self.min_interval = 0.0

    # -- reading -------------------------------------------------------------------------

    def read(self, pool: str, io: PassIO) -> PoolDns:
        parent = io.call("pdns-get-zone", self.client.get_zone, pool)
        listed = io.call("pdns-list-zones", self.client.list_zones)
        suffix = "." + absolute(pool)
        zones = {}
        for z in listed:
            name = absolute(z.get("name") or "")
            if name.endswith(suffix) and "." not in name[: -len(suffix)] and name not in self.pools:
                zones[name[: -len(suffix)]] = z.get("account") or ""
        view = PoolDns(pool, None, zones)
        if parent is not None:
            keys = io.call("pdns-list-keys", self.client.list_keys, pool)
            _, _, children, has_soa = plan.parse_zone_rrsets(pool, parent)
            children = {sub: rr for sub, rr in children.items() if f"{sub}{suffix}" not in self.pools}
            view.parent = ParentZone(
                tuple(plan.key_from_api(k) for k in keys),
                {sub: Delegation(rr.get("NS", ()), rr.get("DS", ())) for sub, rr in children.items()},
                bool(parent.get("api_rectify")),
                has_soa,
                str(parent.get("soa_edit_api") or "DEFAULT"),
                plan.rrsets_below_apex(pool, parent, frozenset(p for p in self.pools if p.endswith(suffix))),
            )
        return view

    def read_names(self, pool: str, names: frozenset[str], io: PassIO) -> PoolDns:
        """What the server holds for ``names`` alone, whatever the pool's size: the pool
        zone's settings, SOA and keys, what it holds at each name (NS, DS, anything
        else), and each name's own zone, read in full (``view.tenants``)."""
        suffix = "." + absolute(pool)
        # A server that does not filter sends the whole pool zone for each name: read
        # it once instead.
        whole = io.call("pdns-get-zone", self.client.get_zone, pool) if self.client.unfiltered else None
        parent = whole if whole is not None else io.call("pdns-get-rrsets", self.client.get_rrsets, pool,
                                                         pool, "SOA")
        view = PoolDns(pool, None, {})
        delegations: dict[str, Delegation] = {}
        others: list[tuple[str, str]] = []
        nested = frozenset(p for p in self.pools if p.endswith(suffix))
        for sub in sorted(names):
            if f"{sub}{suffix}" in self.pools:
                continue  # a pool's own name, never a tenant's
            if parent is not None:
                at = whole if whole is not None else io.call("pdns-get-rrsets", self.client.get_rrsets, pool,
                                                             f"{sub}{suffix}")
                if at is not None:
                    _, _, children, _ = plan.parse_zone_rrsets(pool, at)
                    if sub in children:
                        delegations[sub] = Delegation(children[sub].get("NS", ()), children[sub].get("DS", ()))
                    others += [(name, what) for name, what in plan.rrsets_below_apex(pool, at, nested)
                               if name == sub]
            zone = self.read_tenant(pool, sub, io)
            if zone is not None:
                view.zones[sub] = zone.account
                view.tenants[sub] = zone
        if parent is not None:
            keys = io.call("pdns-list-keys", self.client.list_keys, pool)
            _, _, _, has_soa = plan.parse_zone_rrsets(pool, parent)
            view.parent = ParentZone(tuple(plan.key_from_api(k) for k in keys), delegations,
                                     bool(parent.get("api_rectify")), has_soa,
                                     str(parent.get("soa_edit_api") or "DEFAULT"), tuple(sorted(others)))
        return view

    def survey(self, pool: str, snap: Snapshot, io: PassIO, adopt: frozenset[str]) -> Survey:
        view = self.read(pool, io)
        _, conflicts = self.ownership(pool, view, snap)
        # The service's zones of names the table no longer lists: a slice removes them.
        stray = {sub for sub, account in view.zones.items()
                 if account == ACCOUNT and sub not in snap.active and sub not in snap.owned}
        return Survey(conflicts, frozenset(stray | adopted_names(adopt)))

    def ownership(self, pool: str, view: PoolDns, snap: Snapshot) -> tuple[set[str], dict[str, str]]:
        """The names whose zone and delegation are the service's, and every name with
        something that is not the service's at or under it (``ownership``)."""
        delegations = view.parent.delegations if view.parent else {}
        names = set(view.zones) | set(delegations)
        ours = {sub for sub in names if ownership.owns_name(sub, snap.owned, snap.carried, view.zones.get(sub))}
        foreign = [(sub, f"zone {sub}.{absolute(pool)} (account {view.zones[sub] or 'none'})")
                   for sub in view.zones if sub not in ours]
        foreign += [(sub, f"NS {sub}.{absolute(pool)} " + " ".join(d.ns)) for sub, d in delegations.items()
                    if sub not in ours]
        foreign += [(name, what) for name, what in (view.parent.others if view.parent else ())
                    if ownership.label_of(name) not in ours]
        return ours, ownership.conflicts(foreign)

    def refusals(self, pool: str, active: dict[str, str], ours: set[str],
                 conflicts: dict[str, str]) -> dict[str, tuple[str, str]]:
        """Active tenants a pass must not publish: a name that is another pool's, or one
        with something that is not the service's at or under it."""
        refused = ownership.pool_names(pool, active, self.managed)
        for sub in active:
            if sub not in refused and sub not in ours and sub in conflicts:
                refused[sub] = (ownership.DNS_CONFLICT, ownership.conflict_detail(f"{sub}.{pool}", conflicts[sub]))
        return refused

    def read_tenant(self, pool: str, sub: str, io: PassIO) -> TenantZone | None:
        name = f"{sub}.{absolute(pool)}"
        zone = io.call("pdns-get-zone", self.client.get_zone, name)
        if zone is None:
            return None
        keys = io.call("pdns-list-keys", self.client.list_keys, name)
        a_records, apex_ns, _, has_soa = plan.parse_zone_rrsets(pool, zone)
        return TenantZone(sub, zone.get("account") or "", a_records, apex_ns,
                          tuple(plan.key_from_api(k) for k in keys), bool(zone.get("api_rectify")), has_soa,
                          str(zone.get("soa_edit_api") or "DEFAULT"))

    # -- the pass ------------------------------------------------------------------------

    def converge(self, pool: str, snap: Snapshot, io: PassIO, *, accept: bool, adopt: frozenset[str]) -> Converged:
        touched: dict[str, list[str]] = {}
        if snap.scope is None:
            view = self.read(pool, io)
            ours, conflicts = self.ownership(pool, view, snap)
        else:
            view = self.read_names(pool, snap.scope, io)
            ours, conflicts = self.ownership(pool, view, snap)
            # What the last whole read (a resync's survey) found below a name is not read
            # now: it still counts until the next one.
            conflicts = {**snap.conflicts, **conflicts}
        refused = self.refusals(pool, snap.active, ours, conflicts)
        active = {sub: ip for sub, ip in snap.active.items() if sub not in refused}
        pool_keys = self._ensure_pool_zone(pool, view, io)
        work = {w.subdomain for w in snap.work}
        adopted = adopted_names(adopt)
        gone = plan.removals(view, snap.active, snap.owned, adopted)
        if snap.scope is not None:
            # Every name of the scope was read in full: plan its active tenants.
            view.tenants = {sub: view.tenants.get(sub) for sub in active}
        # Without work this is a resync, a reconcile or a first read: check every tenant.
        for sub in plan.to_read(view, active, work, self.nameservers, everything=not snap.work or accept):
            if snap.scope is None:
                # A zone not in the list just read (under the lock) is not there.
                view.tenants[sub] = self.read_tenant(pool, sub, io) if sub in view.zones else None

        delegations = view.parent.delegations if view.parent else {}
        parent_rrsets: list[dict] = []
        surplus: dict[str, list[int]] = {}
        for sub, zone in sorted(view.tenants.items()):
            tenant = plan.plan_tenant(pool, sub, active[sub], zone, self.record_names, self.nameservers)
            keys = self._apply_tenant(pool, tenant, zone, active[sub], io)
            if tenant.changes:
                touched.setdefault(sub, []).extend(tenant.changes)
            key = plan.kept_key(keys)
            want = Delegation(self.nameservers, key.ds if key else ())
            if delegations.get(sub) != want:
                parent_rrsets += plan.delegation_rrsets(pool, sub, want)
                touched.setdefault(sub, []).append("delegation (NS, DS)")
            extra = [k.id for k in plan.extra_keys(keys)]
            if extra:
                surplus[sub] = extra
        for sub in gone:
            if sub in delegations:
                parent_rrsets += plan.delegation_rrsets(pool, sub, None)
                touched.setdefault(sub, []).append("delegation removed")

        if parent_rrsets:
            # One write of the pool's zone. The names it delegates are the service's
            # before it is sent.
            io.own(set(active) & set(view.tenants))
            io.write("pdns-patch-rrsets", self.client.patch_rrsets, pool, parent_rrsets)
        # Only now, with nothing in the parent pointing at them, zones and keys go.
        for sub in gone:
            if sub in view.zones:
                io.write("pdns-delete-zone", self.client.delete_zone, f"{sub}.{absolute(pool)}")
                touched.setdefault(sub, []).append("zone deleted")
        for sub, ids in sorted(surplus.items()):
            for key_id in ids:
                io.write("pdns-delete-key", self.client.delete_key, f"{sub}.{absolute(pool)}", key_id)
            touched.setdefault(sub, []).append(f"{len(ids)} surplus key(s) deleted")

        pool_key = plan.kept_key(pool_keys)
        pool_ds = pool_key.ds if pool_key else ()
        return Converged(
            touched=touched,
            owned=frozenset(active),
            removing=frozenset(gone),
            state=dict(foreign_subhost_records=0, foreign_records=None, ds_records="\n".join(pool_ds) or None),
            conflicts=conflicts,
            refused=refused,
        )

    def _ensure_pool_zone(self, pool: str, view: PoolDns, io: PassIO) -> tuple:
        """The pool's own zone, created and signed if it is not (the job leader's first
        resync does this; nothing does it at start-up)."""
        if view.parent is None:
            io.write("pdns-create-zone", self.client.create_zone, plan.new_zone_body(pool, self.nameservers))
            view.parent = ParentZone((), {}, True)
            log.info("created the zone of pool %s in PowerDNS", pool)
        else:
            # A zone made elsewhere (the previous service's): delegations need the zone
            # rectified after each write, and INCEPTION-EPOCH froze its serial.
            fields = {"api_rectify": True} if not view.parent.api_rectify else {}
            if view.parent.soa_edit_api != "DEFAULT":
                fields["soa_edit_api"] = "DEFAULT"
            if fields:
                io.write("pdns-update-zone", self.client.update_zone, pool, fields)
            if not view.parent.has_soa:
                io.write("pdns-patch-rrsets", self.client.patch_rrsets, pool, [plan.soa_rrset(pool, self.nameservers)])
        keys = view.parent.keys
        if plan.kept_key(keys) is None:
            key = plan.key_from_api(io.write("pdns-add-key", self.client.add_key, pool))
            io.write("pdns-rectify", self.client.rectify, pool)
            keys = keys + (key,)
            view.parent = dataclasses.replace(view.parent, keys=keys, has_soa=True)
            log.info("signed the zone of pool %s (key %d); its DS must be at the pool's registrar: %s",
                     pool, key.id, " / ".join(key.ds))
        return keys

    def _apply_tenant(self, pool: str, tenant: plan.TenantPlan, zone: TenantZone | None, ip: str,
                      io: PassIO) -> tuple:
        """Carry out one tenant zone's plan; the zone's keys afterwards."""
        name = f"{tenant.sub}.{absolute(pool)}"
        keys = zone.keys if zone is not None else ()
        if not tenant.writes:
            return keys
        # The name is the service's before anything of it exists on the server.
        io.own({tenant.sub})
        if tenant.create and not io.write("pdns-create-zone", self.client.create_zone,
                                          plan.new_zone_body(name, self.nameservers)):
            # It exists after all (a create whose answer was lost): read it, plan again.
            existing = self.read_tenant(pool, tenant.sub, io)
            if existing is not None:
                again = plan.plan_tenant(pool, tenant.sub, ip, existing, self.record_names, self.nameservers)
                return self._apply_tenant(pool, again, existing, ip, io)
        if tenant.fields:
            io.write("pdns-update-zone", self.client.update_zone, name, tenant.fields)
        if tenant.add_key:
            # Never a second key: the pass that planned this read the keys (or made the
            # zone) moments ago under the same lock.
            keys = keys + (plan.key_from_api(io.write("pdns-add-key", self.client.add_key, name)),)
        if tenant.rrsets:
            io.write("pdns-patch-rrsets", self.client.patch_rrsets, name, tenant.rrsets)
        if tenant.rectify:
            io.write("pdns-rectify", self.client.rectify, name)
        return keys

    # -- drift ---------------------------------------------------------------------------

    def drift(self, pool: str, snap: Snapshot, io: PassIO) -> tuple[list[NameDrift], list[Record]]:
        return self._diff(pool, self.read(pool, io), snap, io), []

    def look(self, pool: str, snap: Snapshot, io: PassIO) -> tuple[list[NameDrift], list[Record]]:
        view = self.read_names(pool, snap.scope or frozenset(), io)
        names = [n for n in self._diff(pool, view, snap, io) if n.subdomain in (snap.scope or ())]
        held: list[Record] = []
        for sub in sorted(snap.scope or ()):
            zone = view.tenants.get(sub)
            where = f"zone {sub}.{absolute(pool)}"
            if zone is not None:
                held += [Record(sub, "NS", ns, where) for ns in zone.nameservers]
                held += [Record(host, "A", address, where)
                         for host, (addresses, _) in sorted(zone.a_records.items()) for address in addresses]
                held += [Record(sub, "DS", ds, f"{where}: key {key.id} (its DS)") for key in zone.keys
                         if key.signs for ds in key.ds]
            delegation = view.parent.delegations.get(sub) if view.parent else None
            if delegation is not None:
                parent = f"zone {absolute(pool)} (the delegation)"
                held += [Record(sub, "NS", ns, parent) for ns in delegation.ns]
                held += [Record(sub, "DS", ds, parent) for ds in delegation.ds]
            if view.parent is not None:
                held += [Record(name, "", what, f"zone {absolute(pool)}") for name, what in view.parent.others
                         if domain.tenant_of(name) == sub]
        return names, held

    def _diff(self, pool: str, view: PoolDns, snap: Snapshot, io: PassIO) -> list[NameDrift]:
        ours, conflicts = self.ownership(pool, view, snap)
        refused = self.refusals(pool, snap.active, ours, conflicts)
        active = {sub: ip for sub, ip in snap.active.items() if sub not in refused}
        for sub in active:
            if snap.scope is None or sub not in view.tenants:  # a scoped read has them already
                view.tenants[sub] = self.read_tenant(pool, sub, io) if sub in view.zones else None
        shaped = set()
        for sub, account in view.zones.items():
            if sub in snap.states or account == ACCOUNT:
                continue
            zone = self.read_tenant(pool, sub, io)
            hosts = set(zone.a_records) if zone else set()
            if len(hosts & set(domain.tenant_hosts(sub, self.record_names))) >= 2:
                shaped.add(sub)
        names = plan.diff_pool(view, snap.states, active, self.record_names, self.nameservers, snap.owned,
                               shaped)
        # What is not the service's where a tenant's zone goes (an active tenant refused
        # for it, or a reservation whose commit it would refuse): listed, never touched.
        by_name = {n.subdomain: n for n in names}
        for sub, state in sorted(snap.states.items()):
            what = refused[sub][1] if sub in refused else (
                conflicts.get(sub) if state == domain.RESERVED and sub not in ours else None)
            if what:
                by_name.setdefault(sub, NameDrift(sub, state)).foreign.append(what)
        names = [by_name[sub] for sub in sorted(by_name)]
        if view.parent is None:
            names.insert(0, NameDrift("", None, missing=[f"zone {absolute(pool)} (the pool's own)"]))
        return names
