"""What is the service's own in a pool's DNS: the one rule that check, reserve, commit,
every pass, drift, reconcile and release apply. Pure: no I/O.

A record or zone is the service's only if
- the service published it for a tenant the table holds: a host recorded in
  ``dns_owned_hosts`` before the write that published it (Dynadot: the A records at that
  host; PowerDNS: the tenant's zone and its NS/DS delegation in the pool's zone), or a
  zone whose ``account`` says the service made it; or
- it belongs to an active tenant carried over from the previous service's table
  (``pool_allocations.carried_over``): the A records at that tenant's hosts, its zone.

Everything else is foreign and is never changed or removed, except by an operator's
explicit, audited command (``reconcile --apply`` of an orphan). A name whose hosts (or
anything under it) hold foreign records, or whose ``sub.pool`` is a foreign zone, is not
available to a new tenant: every good read lists these names (``conflicts``) and check,
reserve and commit refuse them with ``dns-conflict``; a pass never publishes a new tenant
over them. The apex's own records, the parking wildcard included, never count: that
wildcard is why the service exists.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from .. import domain
from .zone import Record

DNS_CONFLICT = "dns-conflict"
POOL_FULL = "pool-full"
# The ``account`` of every zone the service creates in PowerDNS.
SERVICE_ACCOUNT = "pool-domain-manager"


def label_of(host: str) -> str | None:
    """The tenant name a host (relative to the pool) sits at or under: "www.shop" and
    "shop" -> "shop". None for the apex and for hosts no tenant can have ("*", "_dmarc")."""
    if not host:
        return None
    label = domain.tenant_of(host)
    return label if domain.is_valid_label(label) else None


def describe(r: Record) -> str:
    """A record for a person: "MX @ mx1.example 10", "A www.shop 198.51.100.1"."""
    return " ".join(part for part in (r.rtype.upper(), r.host or "@", r.value, r.extra) if part)


def ours_hosts(owned: Iterable[str], active: Mapping[str, str], carried: Iterable[str],
               record_names: tuple[str, ...]) -> set[str]:
    """Dynadot: the hosts whose A records are the service's -- those it recorded publishing,
    and every host of an active tenant carried over from the previous service."""
    hosts = set(owned)
    for sub in carried:
        if sub in active:
            hosts.update(domain.tenant_hosts(sub, record_names))
    return hosts


def is_ours(r: Record, ours: set[str]) -> bool:
    """Dynadot: an A record at one of ``ours`` (``ours_hosts``); nothing else is."""
    return r.rtype == "a" and r.host in ours


def owns_name(sub: str, owned: Iterable[str], carried: Iterable[str], account: str | None) -> bool:
    """PowerDNS: whether the zone ``sub.pool`` and its delegation are the service's."""
    return sub in owned or sub in carried or account == SERVICE_ACCOUNT


def conflicts(foreign: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``(host, what)`` pairs of things that are not the service's -> per tenant name, what
    sits at or under it (the first few, for a person)."""
    found: dict[str, list[str]] = {}
    for host, what in foreign:
        label = label_of(host)
        if label is not None:
            found.setdefault(label, []).append(what)
    return {label: _summary(items) for label, items in sorted(found.items())}


def record_conflicts(records: Iterable[Record]) -> dict[str, str]:
    """``conflicts`` of a zone's foreign records."""
    return conflicts((r.host, describe(r)) for r in records)


def pool_names(pool: str, active: Iterable[str], managed: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Active tenants a pass never publishes whatever the DNS holds: a name that is another
    managed pool, or a parent of one (``domain.managed_pool_at``) -> (DNS_CONFLICT, why)."""
    refused = {}
    for sub in active:
        other = domain.managed_pool_at(sub, pool, managed)
        if other:
            refused[sub] = (DNS_CONFLICT, f"{sub}.{pool} is taken by the pool domain {other}; "
                                          "no tenant may have its name")
    return refused


def conflict_detail(fqdn: str, what: str) -> str:
    """Why a name cannot be a tenant's, for the person in the wizard."""
    return (f"{fqdn} already has DNS records this service did not publish ({what}); pick another name, "
            "or ask an operator to remove them")


def _summary(items: list[str], most: int = 3) -> str:
    shown = "; ".join(sorted(items)[:most])
    return shown + (f"; and {len(items) - most} more" if len(items) > most else "")
