"""The rules of pool allocation: names, the reserved list, the state machine, and which
DNS records a tenant owns. Pure Python: no Flask, no database."""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

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


def tenant_of(host: str) -> str:
    """The tenant label a sub-host belongs to ("console.acme" and "acme" -> "acme")."""
    return host.rsplit(".", 1)[-1]


def token_digest(token: str) -> str:
    """What is stored of a reservation token: enough to check it, useless to a reader."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Transition:
    """What a state change did: the allocation after it (None once deleted), the history
    action to record, and the DNS work it implies (PUBLISH, REMOVE or None)."""

    allocation: "Allocation | None"
    action: str
    dns: str | None = None


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
    # SHA-256 of the reservation token; never shown.
    token_digest: str = field(default="", repr=False, compare=False)

    def is_expired(self, now: datetime) -> bool:
        return self.state == RESERVED and self.expires_at is not None and self.expires_at <= now

    @property
    def fqdn(self) -> str:
        return f"{self.subdomain}.{self.pool_domain}"

    @classmethod
    def reserve(cls, pool: str, sub: str, created_by: str, token: str, now: datetime, ttl: float) -> "Allocation":
        if is_reserved(sub):
            raise DomainError("reserved-name", f"{sub!r} is a reserved name and cannot be claimed", 409)
        return cls(pool_domain=pool, subdomain=sub, state=RESERVED, reserved_at=now, created_by=created_by,
                   expires_at=now + timedelta(seconds=ttl), token_digest=token_digest(token))

    def _token_matches(self, token: str) -> bool:
        return hmac.compare_digest(self.token_digest, token_digest(token or ""))

    def _check_live_reservation(self, token: str, now: datetime) -> None:
        """The checks commit and renew share, in the contract's order (after not-found)."""
        if self.state == ACTIVE:
            raise DomainError("already-active", f"{self.fqdn} is already active", 409)
        if self.is_expired(now):
            raise DomainError("reservation-expired", f"the reservation of {self.fqdn} has expired", 410)
        if not self._token_matches(token):
            raise DomainError("token-mismatch", "reservationToken does not match the reservation", 403)

    def commit(self, token: str, lb_ip: str, sovereign_fqdn: str | None, now: datetime) -> Transition:
        """reserved -> active (publish its records). Repeating a commit that went through,
        with the same token and address, is a retry: it only makes sure of the records."""
        if self.state == ACTIVE and self._token_matches(token) and self.load_balancer_ip == lb_ip:
            return Transition(self, "commit-retry", PUBLISH)
        self._check_live_reservation(token, now)
        active = replace(self, state=ACTIVE, expires_at=None, sovereign_fqdn=sovereign_fqdn or None,
                         load_balancer_ip=lb_ip)
        return Transition(active, "commit", PUBLISH)

    def renew(self, token: str | None, now: datetime, ttl: float) -> Transition:
        """A live reservation held ``ttl`` seconds from now. ``token`` None: an operator's
        renew, which needs no token."""
        if token is None:
            if self.state == ACTIVE:
                raise DomainError("already-active", f"{self.fqdn} is already active", 409)
            if self.is_expired(now):
                raise DomainError("reservation-expired", f"the reservation of {self.fqdn} has expired", 410)
        else:
            self._check_live_reservation(token, now)
        return Transition(replace(self, expires_at=now + timedelta(seconds=ttl)), "renew")

    def release(self) -> Transition:
        """reserved|active -> (none); an active tenant's records go."""
        return Transition(None, "release", REMOVE if self.state == ACTIVE else None)

    def expire(self) -> Transition:
        """A lapsed reservation goes (it never had records)."""
        return Transition(None, "expire")
