"""The rules of pool allocation: names, the reserved list, the state machine, and which
DNS records a tenant owns. Pure Python: no Flask, no database."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime, timezone

RESERVED_LABELS = frozenset(
    "admin api app catalyst console docs flux gitea harbor imap k8s keycloak mail "
    "openbao openova smtp status system vault vpn www".split()
)

RESERVED = "reserved"
ACTIVE = "active"
STATES = (RESERVED, ACTIVE)

PUBLISH = "publish"
REMOVE = "remove"

_LABEL = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")


class DomainError(Exception):
    """A rule refused the request. ``code`` is the contract's error code; ``status`` the
    HTTP status the contract gives it (the HTTP layer only copies it)."""

    status = 400

    def __init__(self, code: str, detail: str, status: int | None = None):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        if status is not None:
            self.status = status


def normalise(name: str | None) -> str:
    return (name or "").strip().lower()


def is_valid_label(sub: str) -> bool:
    return bool(_LABEL.match(sub))


def is_reserved(sub: str) -> bool:
    return normalise(sub) in RESERVED_LABELS


def utcnow() -> datetime:
    # Second precision: the wire format has no fractions, and comparing stored values
    # with what a client saw stays exact.
    return datetime.now(timezone.utc).replace(microsecond=0)


def validate_subdomain(sub: str) -> None:
    if not is_valid_label(sub):
        raise DomainError(
            "invalid-format",
            "subdomain must be one DNS label: 1-63 characters of a-z, 0-9 and '-', "
            "starting with a letter and not ending with '-'",
            422,
        )


def validate_pool(pool: str, managed: tuple[str, ...]) -> None:
    if pool not in managed:
        raise DomainError("unsupported-pool", f"{pool!r} is not a managed pool domain", 422)


def validate_ipv4(ip: str) -> None:
    if not ip:
        raise DomainError("missing-lb-ip", "loadBalancerIP is required", 422)
    try:
        ipaddress.IPv4Address(ip)
    except ValueError:
        raise DomainError("invalid-lb-ip", f"loadBalancerIP {ip!r} is not an IPv4 address", 422) from None


def tenant_hosts(sub: str, record_names: tuple[str, ...]) -> list[str]:
    """The sub-hosts (relative to the pool domain) a tenant's records live at."""
    return [sub if name == "@" else f"{name}.{sub}" for name in record_names]


@dataclass(frozen=True)
class Allocation:
    pool_domain: str
    subdomain: str
    state: str
    reserved_at: datetime
    created_by: str
    expires_at: datetime | None = None
    sovereign_fqdn: str | None = None
    load_balancer_ip: str | None = None

    def is_expired(self, now: datetime) -> bool:
        return self.state == RESERVED and self.expires_at is not None and self.expires_at <= now
