"""Planning for pools on PowerDNS, pure: what the table wants against what the server
holds, and the calls that make them agree. No I/O; ``backend.py`` reads and applies.

Each active tenant ``sub`` has a zone ``sub.pool.`` of its own: SOA (short negative TTL),
apex NS, the tenant's A records (``PDM_TENANT_RECORDS``), signed by one ECDSA P-256 key;
the pool's zone delegates to it with NS and the key's SHA-256 DS. Every A record in a
tenant zone is the service's; other record types there (a tenant's ACME TXT, say) are
left alone. In the pool's zone the service touches only the NS and DS RRsets of its
tenants' names.

A tenant being removed loses its DS and NS in the parent first, then its zone: never a
delegation to a zone that is gone (lame), never a DS without its key (bogus).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ... import domain
from .. import ownership
from ..backend import NameDrift, WrongAddress

# The zones the service creates say so in PowerDNS's ``account`` field: a zone under a
# pool that is not the service's (an operator's own) is never changed or removed.
ACCOUNT = ownership.SERVICE_ACCOUNT
RECORD_TTL = 300
DELEGATION_TTL = 3600
# A name looked up before its records exist is cached as "no such name" this long, not
# PowerDNS's default hour.
NEGATIVE_TTL = 60
SOA_TTL = 300
# How PowerDNS names the algorithm of the one key flavour the service creates.
KEY_ALGORITHM_NAME = "ECDSAP256SHA256"


def absolute(name: str) -> str:
    """``name`` as PowerDNS's API writes it: lower case, with the trailing dot."""
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


@dataclass(frozen=True)
class Key:
    id: int
    flags: int
    algorithm: str
    active: bool
    # The key's DS lines of digest type 2 (SHA-256) only; SHA-1 is deprecated (RFC 8624).
    ds: tuple[str, ...] = ()

    @property
    def signs(self) -> bool:
        """A key the service counts: active, a KSK/CSK (257), ECDSA P-256."""
        return self.active and self.flags == 257 and self.algorithm == KEY_ALGORITHM_NAME


def sha256_ds(lines) -> tuple[str, ...]:
    """The digest-type-2 lines of a key's ``ds`` list, normalised."""
    out = []
    for line in lines or ():
        parts = str(line).split()
        if len(parts) == 4 and parts[2] == "2":
            out.append(f"{parts[0]} {parts[1]} 2 {parts[3].lower()}")
    return tuple(sorted(out))


def key_from_api(item: dict) -> Key:
    return Key(int(item["id"]), int(item.get("flags") or 0), str(item.get("algorithm") or ""),
               bool(item.get("active")), sha256_ds(item.get("ds")))


def kept_key(keys) -> Key | None:
    """The key a tenant's DS names: the oldest that signs."""
    signing = sorted((k for k in keys if k.signs), key=lambda k: k.id)
    return signing[0] if signing else None


@dataclass(frozen=True)
class Delegation:
    ns: tuple[str, ...] = ()
    ds: tuple[str, ...] = ()


@dataclass(frozen=True)
class TenantZone:
    """One tenant zone as read."""

    sub: str
    account: str
    # A RRsets: host relative to the pool ("console.acme") -> (addresses, ttl).
    a_records: dict[str, tuple[tuple[str, ...], int]]
    nameservers: tuple[str, ...]
    keys: tuple[Key, ...]
    api_rectify: bool
    has_soa: bool = True
    soa_edit_api: str = "DEFAULT"


@dataclass(frozen=True)
class ParentZone:
    keys: tuple[Key, ...]
    # sub -> NS and DS at ``sub.pool.``
    delegations: dict[str, Delegation]
    api_rectify: bool
    has_soa: bool = True
    soa_edit_api: str = "DEFAULT"
    # Every other RRset below the pool's apex: (name relative to the pool, "TYPE name").
    others: tuple[tuple[str, str], ...] = ()


@dataclass
class PoolDns:
    """What the server holds for one pool."""

    pool: str
    parent: ParentZone | None
    # Every zone one label below the pool: sub -> its account.
    zones: dict[str, str]
    # The tenant zones read in full (those a pass needs).
    tenants: dict[str, TenantZone] = field(default_factory=dict)


def rrsets_below_apex(pool: str, zone: dict, skip: frozenset[str] = frozenset()) -> tuple[tuple[str, str], ...]:
    """The pool zone's RRsets below its apex that are not a child's NS or DS, as (name
    relative to the pool, "TYPE name") -- leaving out names at or under ``skip`` (absolute
    names: the pools nested in this one)."""
    suffix = "." + absolute(pool)
    found = []
    for rrset in zone.get("rrsets") or ():
        name, rtype = absolute(rrset["name"]), rrset["type"]
        if not name.endswith(suffix) or any(name == p or name.endswith("." + p) for p in skip):
            continue
        relative = name[: -len(suffix)]
        if rtype in ("NS", "DS") and "." not in relative:
            continue
        found.append((relative, f"{rtype} {name}"))
    return tuple(sorted(found))


def parse_zone_rrsets(pool: str, zone: dict) -> tuple[dict, tuple[str, ...], dict, bool]:
    """From a zone's JSON: its A RRsets (relative to ``pool``), its apex NS, NS/DS per
    child label, and whether it has its SOA."""
    apex = absolute(zone["name"])
    suffix = "." + absolute(pool)
    a_records: dict[str, tuple[tuple[str, ...], int]] = {}
    apex_ns: tuple[str, ...] = ()
    children: dict[str, dict[str, tuple[str, ...]]] = {}
    has_soa = False
    for rrset in zone.get("rrsets") or ():
        name, rtype = absolute(rrset["name"]), rrset["type"]
        values = tuple(sorted(r["content"].lower() for r in rrset.get("records") or () if not r.get("disabled")))
        if rtype == "A" and name.endswith(suffix):
            a_records[name[: -len(suffix)]] = (values, int(rrset.get("ttl") or 0))
        elif rtype == "NS" and name == apex:
            apex_ns = values
        elif rtype == "SOA" and name == apex:
            has_soa = bool(values)
        elif rtype in ("NS", "DS") and name.endswith(suffix) and name != apex:
            label = name[: -len(suffix)]
            if "." not in label:
                children.setdefault(label, {})[rtype] = values
    return a_records, apex_ns, children, has_soa


# -- the tenant zone ---------------------------------------------------------------------


@dataclass(frozen=True)
class TenantPlan:
    sub: str
    create: bool = False
    fields: dict = field(default_factory=dict)  # zone fields to PUT (account, api_rectify)
    add_key: bool = False
    rrsets: list = field(default_factory=list)  # one PATCH
    rectify: bool = False
    changes: list = field(default_factory=list)

    @property
    def writes(self) -> bool:
        return bool(self.create or self.fields or self.add_key or self.rrsets or self.rectify)


def desired_a(pool: str, sub: str, ip: str, record_names: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    return {host: (ip,) for host in domain.tenant_hosts(sub, record_names)}


def soa_rrset(name: str, nameservers: tuple[str, ...]) -> dict:
    """The zone's SOA: our own MNAME (not PowerDNS's "misconfigured" one) and a short
    negative-caching time."""
    name = absolute(name)
    soa = f"{nameservers[0]} hostmaster.{name} 1 10800 3600 604800 {NEGATIVE_TTL}"
    return _rrset(name, "SOA", SOA_TTL, [soa])


def new_zone_body(name: str, nameservers: tuple[str, ...]) -> dict:
    """A zone as the service creates it: SOA, apex NS, rectified on every API write."""
    soa = soa_rrset(name, nameservers)
    del soa["changetype"]
    return {"name": absolute(name), "kind": "Native", "account": ACCOUNT, "nameservers": list(nameservers),
            "api_rectify": True, "soa_edit_api": "DEFAULT", "rrsets": [soa]}


def plan_tenant(pool: str, sub: str, ip: str, zone: TenantZone | None, record_names: tuple[str, ...],
                nameservers: tuple[str, ...]) -> TenantPlan:
    want = desired_a(pool, sub, ip, record_names)
    name = f"{sub}.{absolute(pool)}"
    if zone is None:
        rrsets = [_a_rrset(pool, host, ips) for host, ips in sorted(want.items())]
        # The key before the records: the records' PATCH then rectifies the signed zone.
        return TenantPlan(sub, create=True, add_key=True, rrsets=rrsets,
                          changes=["zone created", "key created", "records: " + ", ".join(sorted(want))])
    changes = []
    fields: dict = {}
    if zone.account != ACCOUNT:
        fields["account"] = ACCOUNT
    if not zone.api_rectify:
        fields["api_rectify"] = True
    if zone.soa_edit_api != "DEFAULT":
        # The previous service's INCEPTION-EPOCH froze the serial on API writes.
        fields["soa_edit_api"] = "DEFAULT"
    add_key = kept_key(zone.keys) is None
    if add_key:
        changes.append("key created")
    rrsets = []
    wrong = sorted(host for host, ips in want.items() if zone.a_records.get(host) != (ips, RECORD_TTL))
    extra = sorted(set(zone.a_records) - set(want))
    rrsets += [_a_rrset(pool, host, want[host]) for host in wrong]
    rrsets += [{"name": f"{host}.{absolute(pool)}", "type": "A", "changetype": "DELETE"} for host in extra]
    if wrong or extra:
        changes.append("records: " + ", ".join(wrong + extra))
    if tuple(sorted(nameservers)) != zone.nameservers:
        rrsets.append(_rrset(name, "NS", DELEGATION_TTL, sorted(nameservers)))
        changes.append("zone NS")
    if not zone.has_soa:
        # A create cut short can leave a zone without its SOA (PowerDNS makes the zone,
        # then refuses the rest).
        rrsets.append(soa_rrset(name, nameservers))
        changes.append("zone SOA")
    if fields:
        changes.append("zone settings")
    # A key added to a zone that gets no record write still needs its NSEC(3) chain and
    # auth flags (PowerDNS does not rectify when a key is added).
    return TenantPlan(sub, fields=fields, add_key=add_key, rrsets=rrsets, rectify=add_key and not rrsets,
                      changes=changes)


def extra_keys(keys) -> list[Key]:
    """Every key but the one kept: a duplicate from an earlier crash, or the older
    KSK+ZSK pair of zones the previous service made."""
    kept = kept_key(keys)
    return [k for k in keys if kept is not None and k.id != kept.id]


# -- the pool's zone ---------------------------------------------------------------------


def delegation_rrsets(pool: str, sub: str, delegation: Delegation | None) -> list[dict]:
    """NS and DS at ``sub.pool.`` made ``delegation`` (None: both removed)."""
    name = f"{sub}.{absolute(pool)}"
    if delegation is None:
        # DS first: a DS without NS is never left behind, even if read mid-way.
        return [{"name": name, "type": "DS", "changetype": "DELETE"},
                {"name": name, "type": "NS", "changetype": "DELETE"}]
    rrsets = [_rrset(name, "NS", DELEGATION_TTL, delegation.ns)]
    if delegation.ds:
        rrsets.append(_rrset(name, "DS", DELEGATION_TTL, delegation.ds))
    else:
        rrsets.append({"name": name, "type": "DS", "changetype": "DELETE"})
    return rrsets


def removals(view: PoolDns, active: dict[str, str], owned: set[str], adopt: frozenset[str]) -> list[str]:
    """Names whose delegation and zone go: not active, and the service's (it delegated
    them, the zone says so, or an operator adopted them)."""
    names = set()
    for sub in set(view.zones) | set(view.parent.delegations if view.parent else {}):
        if sub in active:
            continue
        if sub in owned or sub in adopt or view.zones.get(sub) == ACCOUNT:
            names.add(sub)
    return sorted(names)


def to_read(view: PoolDns, active: dict[str, str], work: set[str], nameservers: tuple[str, ...], *,
            everything: bool) -> list[str]:
    """The active tenants whose zones a pass reads in full: those its work names, those
    with a zone or delegation missing or incomplete, or all (a resync)."""
    delegations = view.parent.delegations if view.parent else {}
    ns = tuple(sorted(nameservers))
    names = []
    for sub in sorted(active):
        d = delegations.get(sub)
        if everything or sub in work or sub not in view.zones or d is None or d.ns != ns or not d.ds:
            names.append(sub)
    return names


# -- drift ---------------------------------------------------------------------------------


def diff_pool(view: PoolDns, states: dict[str, str], active: dict[str, str], record_names: tuple[str, ...],
              nameservers: tuple[str, ...], owned: set[str], foreign_shaped: set[str]) -> list[NameDrift]:
    """Per name: what is missing or wrong (tenant zone, key, records, NS, DS) and what is
    left over. ``view.tenants`` must hold every active tenant's zone that exists;
    ``foreign_shaped``: zones without an allocation that are not the service's but carry
    tenant-shaped records (the previous service's leftovers)."""
    report: dict[str, NameDrift] = {}
    delegations = view.parent.delegations if view.parent else {}
    ns = tuple(sorted(nameservers))

    def entry(sub: str) -> NameDrift:
        return report.setdefault(sub, NameDrift(sub, states.get(sub)))

    pool = absolute(view.pool)
    for sub, ip in sorted(active.items()):
        zone = view.tenants.get(sub)
        d = delegations.get(sub)
        if zone is None:
            entry(sub).missing.append(f"zone {sub}.{pool}")
            key = None
        else:
            key = kept_key(zone.keys)
            if key is None:
                entry(sub).missing.append(f"key {sub}.{pool}")
            for extra in extra_keys(zone.keys):
                entry(sub).orphans.append(f"key {extra.id} of {sub}.{pool}")
            for host, ips in sorted(desired_a(view.pool, sub, ip, record_names).items()):
                found = zone.a_records.get(host)
                if found is None:
                    entry(sub).missing.append(host)
                elif found[0] != ips:
                    entry(sub).wrong.append(WrongAddress(host, list(found[0]), ip))
                elif found[1] != RECORD_TTL:
                    entry(sub).wrong.append(WrongAddress(f"{host} (TTL {found[1]}, not {RECORD_TTL})",
                                                         list(found[0]), ip))
            for host in sorted(set(zone.a_records) - set(domain.tenant_hosts(sub, record_names))):
                entry(sub).orphans.append(host)
        if d is None or not d.ns:
            entry(sub).missing.append(f"NS {sub}")
        elif d.ns != ns:
            entry(sub).wrong.append(WrongAddress(f"NS {sub}", list(d.ns), " ".join(ns)))
        want_ds = key.ds if key is not None else ()
        if d is None or not d.ds:
            entry(sub).missing.append(f"DS {sub}")
        elif key is not None and d.ds != want_ds:
            entry(sub).wrong.append(WrongAddress(f"DS {sub}", list(d.ds), " / ".join(want_ds)))
    for sub in sorted((set(view.zones) | set(delegations)) - set(active)):
        ours = sub in owned or view.zones.get(sub) == ACCOUNT or sub in foreign_shaped
        if not ours:
            continue
        if sub in delegations:
            entry(sub).orphans.append(f"delegation {sub}")
        if sub in view.zones:
            entry(sub).orphans.append(f"zone {sub}.{pool}")
    return [report[sub] for sub in sorted(report)]


def _rrset(name: str, rtype: str, ttl: int, contents) -> dict:
    return {"name": name, "type": rtype, "ttl": ttl, "changetype": "REPLACE",
            "records": [{"content": c, "disabled": False} for c in contents]}


def _a_rrset(pool: str, host: str, ips) -> dict:
    return _rrset(f"{host}.{absolute(pool)}", "A", RECORD_TTL, ips)
