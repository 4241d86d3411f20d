"""The rules of pool allocation: names, the reserved list, the state machine, and which
DNS records a tenant owns. Pure Python: no Flask, no database."""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from functools import lru_cache

import idna

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

    def __init__(self, code: str, detail: str, status: int | None = None, **extra):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        # More fields of the error body (the registrar routes add registrar and domain).
        self.extra = extra
        if status is not None:
            self.status = status


# What "trimmed" removes: ASCII white space only. str.strip() would also drop Unicode
# spaces (U+00A0, U+3000), quietly accepting non-ASCII input as an ASCII name.
_ASCII_SPACE = " \t\n\r\f\v"
_ACE_PREFIX = "xn--"


def normalise(name: str | None) -> str:
    """Trimmed and lower-cased -- when it is ASCII. Non-ASCII input comes back trimmed
    but not lower-cased, so validation refuses it: ``str.lower()`` would turn the Kelvin
    sign (U+212A) into an ASCII ``k`` and accept one name as another."""
    text = (name or "").strip(_ASCII_SPACE)
    return text.lower() if text.isascii() else text


def is_valid_label(sub: str) -> bool:
    return bool(_LABEL.fullmatch(sub))


def label_problem(sub: str) -> str | None:
    """Why ``sub`` (normalised) is not a subdomain the service hands out, as a sentence
    for a person; None when it is one. The contract's label rule, ASCII only, and an
    ``xn--`` label must be a valid IDNA 2008 A-label in its canonical form."""
    if not sub.isascii():
        char = next(c for c in sub if not c.isascii())
        name = unicodedata.name(char, "a non-ASCII character")
        return (f"subdomain must be plain ASCII (a-z, 0-9 and '-'): it contains {char!r} (U+{ord(char):04X} "
                f"{name}); an internationalised name is sent as its xn-- form")
    if not is_valid_label(sub):
        return ("subdomain must be one DNS label: 1-63 characters of a-z, 0-9 and '-', "
                "starting with a letter and not ending with '-'")
    if sub.startswith(_ACE_PREFIX):
        try:
            ulabel = idna.ulabel(sub)
            canonical = idna.alabel(ulabel).decode("ascii")
        except (idna.IDNAError, UnicodeError) as err:
            return f"{sub!r} is not a valid internationalised (IDNA 2008) label: {err}"
        # RFC 5891 5.4: an A-label is checked by converting it to a U-label and back.
        if canonical != sub:
            return f"{sub!r} is not in the canonical IDNA 2008 form of {ulabel!r}, which is {canonical!r}"
    return None


def _skeleton(text: str) -> str:
    """The Unicode TR39 confusable skeleton, from disarm (``digit_policy="tr39"`` adds
    TR39's 0/O and 1/l folds). disarm leaves ASCII ``m`` alone (TR39 folds it to ``rn``):
    it does not matter here, where only a U-label is compared with the reserved labels."""
    import disarm  # loaded on the first xn-- label only

    return disarm.skeleton_key(text, digit_policy="tr39")


@lru_cache(maxsize=1)
def _reserved_skeletons() -> dict[str, str]:
    return {_skeleton(label): label for label in sorted(RESERVED_LABELS)}


@lru_cache(maxsize=4096)
def a_label_skeleton(sub: str) -> str | None:
    """The confusable skeleton of a valid ``xn--`` label's Unicode form (two labels with
    one skeleton look alike); None for every other label."""
    if not sub.startswith(_ACE_PREFIX) or label_problem(sub):
        return None
    return _skeleton(idna.ulabel(sub))


def reserved_lookalike(sub: str) -> str | None:
    """The reserved label an ``xn--`` label displays as (its U-label has the confusable
    skeleton of a reserved label: ``xn--dmin-43d`` shows as "аdmin", with a Cyrillic
    а); None for every other label."""
    skeleton = a_label_skeleton(normalise(sub))
    return None if skeleton is None else _reserved_skeletons().get(skeleton)


def lookalike_problem(sub: str) -> str | None:
    """Why a new ``xn--`` label (one ``label_problem`` accepts) is not handed out, as a
    sentence for a person; None for every other label. Two rules of Unicode TS #39:

    - its Unicode form mixes writing systems. Common and Inherited characters (digits,
      '-', combining marks) belong to none. Han with Hiragana and Katakana (Japanese),
      with Hangul (Korean) or with Bopomofo (Chinese) is one writing system (TR39's
      augmented script sets, as ``disarm.is_mixed_script`` resolves them); unlike TR39's
      "highly restrictive" level, Latin beside them is not allowed: a label is one short
      word, and Latin letters in it are how a Latin name is imitated;
    - its confusable skeleton is plain ASCII: it exists only to look like a Latin name
      (``xn--80ak6aa92e``, Cyrillic "аррӏе", displays as "apple").

    Names already held keep working (commit, renew and release do not ask this)."""
    sub = normalise(sub)
    skeleton = a_label_skeleton(sub)
    if skeleton is None:
        return None
    import disarm  # loaded on the first xn-- label only

    ulabel = idna.ulabel(sub)
    if disarm.is_mixed_script(ulabel):
        scripts = ", ".join(s.name.title() for s in disarm.detect_scripts(ulabel))
        return (f"{sub!r} displays as {ulabel!r}, which mixes scripts ({scripts}): an internationalised "
                "name must be written in one script")
    if skeleton.isascii():
        return (f"{sub!r} displays as {ulabel!r}, which looks like the plain ASCII name {skeleton!r}: "
                "register that name instead")
    return None


def lookalike_of(sub: str, held: Iterable[str]) -> str | None:
    """The name among ``held`` (a pool's tenants) that the ``xn--`` label ``sub`` looks
    like (another label with its confusable skeleton); None when there is none."""
    sub = normalise(sub)
    skeleton = a_label_skeleton(sub)
    if skeleton is None:
        return None
    return next((other for other in sorted(held) if other != sub and a_label_skeleton(other) == skeleton), None)


def managed_pool_at(sub: str, pool: str, managed: Iterable[str]) -> str | None:
    """The managed pool that ``sub.pool`` is, or is a parent of (pools ``omani.works`` and
    ``a.b.omani.works``: ``b`` in ``omani.works``); None when it is neither. Such a name
    is never a tenant: its records would sit in, or above, another pool's zone."""
    fqdn = f"{sub}.{pool}"
    return next((other for other in sorted(managed) if other == fqdn or other.endswith("." + fqdn)), None)


def is_reserved(sub: str) -> bool:
    """A reserved label, or an internationalised label that displays as one."""
    sub = normalise(sub)
    return sub in RESERVED_LABELS or reserved_lookalike(sub) is not None


def utcnow() -> datetime:
    # Second precision: the wire format has no fractions, and comparing stored values
    # with what a client saw stays exact.
    return datetime.now(timezone.utc).replace(microsecond=0)


def validate_subdomain(sub: str) -> None:
    problem = label_problem(sub)
    if problem:
        raise DomainError("invalid-format", problem, 422)


def validate_pool(pool: str, managed: tuple[str, ...]) -> None:
    if pool not in managed:
        raise DomainError("unsupported-pool", f"{pool!r} is not a managed pool domain", 422)


def lb_ip_problem(address: ipaddress.IPv4Address,
                  allowed_ranges: Iterable[ipaddress.IPv4Network] = ()) -> str | None:
    """Why ``address`` cannot be published as a tenant's load balancer in a public zone,
    as the end of a sentence; None when it can. Only public unicast addresses can --
    plus, for a lab, private and other special-purpose ones inside ``allowed_ranges``.
    Never allowed, whatever the ranges: the unspecified address, loopback, link-local
    (the cloud metadata service), multicast and the reserved 240.0.0.0/4 (broadcast)."""
    if address.is_unspecified:
        return "is the unspecified address: it names no host"
    if address.is_loopback:
        return "is a loopback address (127.0.0.0/8): it would point every visitor at their own machine"
    if address.is_link_local:
        return ("is a link-local address (169.254.0.0/16, where cloud instance metadata is served): "
                "it is not reachable from the internet")
    if address.is_multicast:
        return "is a multicast address (224.0.0.0/4), not a host's"
    if address.is_reserved:
        return "is in the reserved range 240.0.0.0/4 (which holds the broadcast address 255.255.255.255), not a host's"
    if address.is_global or any(address in network for network in allowed_ranges):
        return None
    if address.is_private:
        return ("is a private address (a private-use, documentation, benchmarking or other special-purpose "
                "range): it is not reachable from the internet")
    return "is not globally reachable (a shared carrier-grade NAT address, or another special-purpose one)"


def validate_ipv4(ip: str, allowed_ranges: Iterable[ipaddress.IPv4Network] = ()) -> None:
    """``ip`` is an IPv4 address that may be published in a public zone (see
    ``lb_ip_problem``); ``allowed_ranges`` are the non-public ranges a lab accepts."""
    if not ip:
        raise DomainError("missing-lb-ip", "loadBalancerIP is required", 422)
    try:
        address = ipaddress.IPv4Address(ip)
    except ValueError:
        raise DomainError("invalid-lb-ip", f"loadBalancerIP {ip!r} is not an IPv4 address", 422) from None
    problem = lb_ip_problem(address, allowed_ranges)
    if problem:
        raise DomainError("invalid-lb-ip", f"loadBalancerIP {ip} {problem}; it must be a public IPv4 address", 422)


def tenant_hosts(sub: str, record_names: tuple[str, ...]) -> list[str]:
    """The sub-hosts (relative to the pool domain) a tenant's records live at."""
    return [sub if name == "@" else f"{name}.{sub}" for name in record_names]


def zone_subhost_records(tenants: int, record_names: tuple[str, ...], foreign: int) -> int:
    """The sub-host records a whole-zone (Dynadot) write carries: every active tenant's
    records, and the ``foreign`` ones that are not the service's. The registrar takes at
    most ``PDM_MAX_SUBHOST_RECORDS``."""
    return tenants * len(record_names) + foreign


def tenant_of(host: str) -> str:
    """The tenant label a sub-host belongs to ("console.acme" and "acme" -> "acme")."""
    return host.rsplit(".", 1)[-1]


def token_digest(token: str) -> str:
    """What is stored of a reservation token: enough to check it, useless to a reader."""
    return hashlib.sha256(token.encode()).hexdigest()


def is_lapsed(state: str, expires_at: datetime | None, now: datetime) -> bool:
    """A reservation whose time has passed: it holds its name no more."""
    return state == RESERVED and expires_at is not None and expires_at <= now


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
        return is_lapsed(self.state, self.expires_at, now)

    @property
    def fqdn(self) -> str:
        return f"{self.subdomain}.{self.pool_domain}"

    @classmethod
    def reserve(cls, pool: str, sub: str, created_by: str, token: str, now: datetime, ttl: float) -> "Allocation":
        if is_reserved(sub):
            raise DomainError("reserved-name", f"{sub!r} is a reserved name and cannot be claimed", 409)
        problem = lookalike_problem(sub)
        if problem:
            raise DomainError("invalid-format", problem, 422)
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

    def refuse_commit(self, reservation: "Allocation") -> Transition:
        """active -> reserved again: the commit's records could not be published without
        taking over what is not the service's (or the zone had no room). ``reservation``:
        the row as it was before the commit."""
        return Transition(reservation, "commit-refused")

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
