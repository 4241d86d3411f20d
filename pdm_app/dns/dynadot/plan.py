"""A Dynadot pool's planning, pure: the records the allocation table wants, the whole zone
as read, the whole zone to write back, and the drift report. No I/O; ``backend.py`` reads
and writes through the engine.

The allocation table is the desired state. The service's own records are what
``ownership`` says (A records at hosts it published, and at the hosts of tenants carried
over from the previous service); a pass makes exactly those right and carries every other
record over untouched, whatever work it was started for, so a record lost anywhere in the
pool is repaired by the next pass. It never publishes a tenant over records that are not
its own: such a tenant is refused (``dns-conflict``), as is a new tenant the zone has no
room for (``pool-full``), while the rest of the pool converges.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ... import domain
from .. import ownership
from ..backend import NameDrift, WrongAddress
from ..errors import LOST_FOREIGN, TOO_LARGE, ZoneBlocked
from ..ownership import DNS_CONFLICT, POOL_FULL, describe
from ..zone import Record, Zone

DEFAULT_ZONE_TTL = 300


def desired_hosts(active: dict[str, str], record_names: tuple[str, ...]) -> dict[str, str]:
    """host -> address for every record the active tenants must have."""
    return {host: ip for sub, ip in sorted(active.items()) for host in domain.tenant_hosts(sub, record_names)}


def record_key(r: Record) -> tuple[str, str, str, str]:
    return (r.host, r.rtype, r.value, r.extra)


def lost_foreign(current: Zone, ours: set[str], last_foreign: list[Record] | None) -> list[Record]:
    """Records that are not the service's (``ownership.is_ours`` with ``ours``), held by the
    last good read and missing from ``current``: the mark of a broken read."""
    if last_foreign is None:
        return []
    kept = Counter(record_key(r) for r in current.records if not ownership.is_ours(r, ours))
    lost = Counter(record_key(r) for r in last_foreign if not ownership.is_ours(r, ours)) - kept
    return [Record(*key) for key in sorted(lost.elements())]


@dataclass(frozen=True)
class ZonePlan:
    zone: Zone  # the whole zone to write
    changed: bool
    # Every record that is not the service's: remembered as the last good read.
    foreign: tuple[Record, ...]
    foreign_subhost_records: int
    # The hosts of the service's records once the zone is written, and those it removes
    # now (still owned until a later read shows them gone: a late write may bring them
    # back).
    owned: frozenset[str] = frozenset()
    removing: frozenset[str] = frozenset()
    # Tenants whose records this write changes: sub -> hosts added or removed.
    touched: dict[str, list[str]] = field(default_factory=dict)
    # Names with foreign records at or under them (``ownership.conflicts``).
    conflicts: dict[str, str] = field(default_factory=dict)
    # Active tenants left out of this write: sub -> (DNS_CONFLICT or POOL_FULL, why).
    refused: dict[str, tuple[str, str]] = field(default_factory=dict)


def is_new_tenant(sub: str, record_names: tuple[str, ...], ours: set[str]) -> bool:
    """A tenant none of whose records the service has published (or carried over) yet."""
    return not any(host in ours for host in domain.tenant_hosts(sub, record_names))


def plan_zone(
    current: Zone,
    active: dict[str, str],
    record_names: tuple[str, ...],
    owned: set[str],
    last_foreign: list[Record] | None,
    *,
    carried: frozenset[str] = frozenset(),
    accept: bool = False,
    max_subhost_records: int | None = None,
    max_apex_records: int | None = None,
) -> ZonePlan:
    """The zone as it must be: every record of ``current`` that is not the service's kept
    as it is, and the service's A records exactly what ``active`` (every active tenant of
    the pool and its address) wants -- except where that would take over what is not the
    service's (``ownership``): a new tenant with foreign records at or under its name is
    refused (``DNS_CONFLICT``), an existing tenant's host holding foreign records is left
    alone, and new tenants the zone has no room for are refused (``POOL_FULL``).

    ``carried``: active tenants carried over from the previous service's table.
    ``last_foreign`` is what the last good read held besides the service's records; a read
    that lost any of them looks broken and is refused (``ZoneBlocked``) unless ``accept``
    (an operator has looked at the zone and takes it as it now is)."""
    ours = ownership.ours_hosts(owned, active, carried, record_names)
    foreign = [r for r in current.records if not ownership.is_ours(r, ours)]
    if not accept:
        lost = lost_foreign(current, ours, last_foreign)
        if lost:
            raise ZoneBlocked(
                LOST_FOREIGN,
                f"the zone read back lacks {len(lost)} record(s) that are not the service's and were "
                f"there at the last good read (first: {describe(lost[0])}); "
                "refusing to write it back. If the zone is right as it is, run "
                f"'pool-domain-manager reconcile {current.domain} --apply --force'",
            )
    conflicts = ownership.record_conflicts(foreign)
    foreign_hosts = {r.host for r in foreign}
    refused: dict[str, tuple[str, str]] = {}
    new: list[str] = []
    want: dict[str, str] = {}
    for sub, ip in sorted(active.items()):
        if is_new_tenant(sub, record_names, ours):
            if sub in conflicts:
                refused[sub] = (DNS_CONFLICT, ownership.conflict_detail(f"{sub}.{current.domain}", conflicts[sub]))
                continue
            new.append(sub)
        for host in domain.tenant_hosts(sub, record_names):
            # Never over a record that is not ours (drift reports the host).
            if host in ours or host not in foreign_hosts:
                want[host] = ip
    subhosts = sum(1 for r in foreign if not r.is_apex) + len(want)
    if max_subhost_records is not None:
        # The newest names in the zone's order give way first; tenants already
        # published never do (a zone too full for them blocks the pool below).
        for sub in reversed(new):
            if subhosts <= max_subhost_records:
                break
            hosts = [h for h in domain.tenant_hosts(sub, record_names) if want.pop(h, None) is not None]
            subhosts -= len(hosts)
            refused[sub] = (POOL_FULL, f"the zone of {current.domain} has no room for the records of "
                                       f"{sub}.{current.domain} (the registrar takes {max_subhost_records} "
                                       "sub-host records in one write)")
    added = [Record(host=host, rtype="a", value=ip) for host, ip in want.items()]
    zone = Zone(domain=current.domain, records=foreign + added, ttl=current.ttl or DEFAULT_ZONE_TTL)
    if max_subhost_records is not None and len(zone.subhosts) > max_subhost_records:
        raise ZoneBlocked(TOO_LARGE, f"the zone would need {len(zone.subhosts)} sub-host records; one write "
                                     f"holds at most {max_subhost_records}")
    if max_apex_records is not None and len(zone.apex) > max_apex_records:
        raise ZoneBlocked(TOO_LARGE, f"the zone holds {len(zone.apex)} apex records; one write holds at most "
                                     f"{max_apex_records}")

    before = Counter(record_key(r) for r in current.records if ownership.is_ours(r, ours))
    after = Counter(record_key(r) for r in added)
    touched: dict[str, set[str]] = {}
    for key in (before - after) + (after - before):
        touched.setdefault(domain.tenant_of(key[0]), set()).add(key[0])
    changed = bool(touched) or zone.ttl != current.ttl
    return ZonePlan(
        zone=zone,
        changed=changed,
        foreign=tuple(foreign),
        foreign_subhost_records=sum(1 for r in foreign if not r.is_apex),
        owned=frozenset(want),
        removing=frozenset(r.host for r in current.records if ownership.is_ours(r, ours) and r.host not in want),
        touched={sub: sorted(hosts) for sub, hosts in sorted(touched.items())},
        conflicts=conflicts,
        refused=refused,
    )


# -- drift --------------------------------------------------------------------------


def find_orphans(current: Zone, allocated: set[str], record_names: tuple[str, ...], owned: set[str]) -> list[str]:
    """Hosts with A records of names that have no allocation: a host the service recorded
    as its own, or one of a label that carries at least two of the configured tenant names
    (the old service left such records behind). A lone record that merely fits one name
    (a hand-made ``*.other``) is not the service's and is never touched."""
    a_hosts = {r.host for r in current.records if r.rtype == "a" and not r.is_apex}
    by_label: dict[str, set[str]] = {}
    for host in a_hosts:
        by_label.setdefault(domain.tenant_of(host), set()).add(host)
    orphans = set()
    for label, hosts in by_label.items():
        if label in allocated:
            continue
        shaped = hosts & set(domain.tenant_hosts(label, record_names))
        orphans |= hosts & owned
        if len(shaped) >= 2:
            orphans |= shaped
    return sorted(orphans)


def diff_zone(
    current: Zone,
    allocations: dict[str, str],
    active: dict[str, str],
    record_names: tuple[str, ...],
    owned: set[str],
    carried: frozenset[str] = frozenset(),
) -> list[NameDrift]:
    """Per name, what the zone lacks or holds wrongly: ``allocations`` maps every
    allocated name to its state, ``active`` every active one to its address; and the
    foreign records that sit where a tenant's records go."""
    ours = ownership.ours_hosts(owned, active, carried, record_names)
    values: dict[str, list[str]] = {}
    foreign: dict[str, list[str]] = {}
    for r in current.records:
        if ownership.is_ours(r, ours):
            values.setdefault(r.host, []).append(r.value)
        elif not r.is_apex:
            foreign.setdefault(r.host, []).append(describe(r))
    want = desired_hosts(active, record_names)
    report: dict[str, NameDrift] = {}

    def entry(sub: str) -> NameDrift:
        return report.setdefault(sub, NameDrift(sub, allocations.get(sub)))

    for host, ip in want.items():
        found = sorted(values.get(host, []))
        if host not in ours and host in foreign:
            entry(domain.tenant_of(host)).foreign.extend(foreign[host])
        elif not found:
            entry(domain.tenant_of(host)).missing.append(host)
        elif found != [ip]:
            entry(domain.tenant_of(host)).wrong.append(WrongAddress(host, found, ip))
    for host, items in sorted(foreign.items()):
        if allocations.get(ownership.label_of(host) or "") == domain.RESERVED:
            entry(domain.tenant_of(host)).foreign.extend(items)
    # Hosts the service owns that no tenant wants any more (a name dropped from
    # PDM_TENANT_RECORDS, a tenant released or inactive), and leftovers of names with no
    # allocation.
    stale = {h for h in owned if h in values and h not in want}
    for host in sorted(stale | set(find_orphans(current, set(allocations), record_names, owned))):
        entry(domain.tenant_of(host)).orphans.append(host)
    return [report[sub] for sub in sorted(report)]


