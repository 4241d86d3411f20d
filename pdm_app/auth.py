"""Who may call what: bearer tokens with a role. No Flask here."""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass, field

CLIENT = "client"
OPERATOR = "operator"
ROLES = (CLIENT, OPERATOR)
# What each role may do; an operator may do everything.
GRANTS = {CLIENT: frozenset({CLIENT}), OPERATOR: frozenset({CLIENT, OPERATOR})}

# PDM_AUTH: how callers are admitted.
# - tokens:    every client and operator route needs a valid bearer token.
# - operators: client routes (check, reserve, commit, renew, release) admit a caller
#              that sends no Authorization header, as "anonymous" -- the real callers
#              (catalyst-api, the Crossplane composition) send none; a header that is
#              sent must be valid. Operator routes (list, history, drift) need an
#              operator token, and are closed when none is configured: operators use
#              the console script inside the pod.
# - disabled:  every route is open; callers without a known token are "anonymous".
AUTH_TOKENS = "tokens"
AUTH_OPERATORS = "operators"
AUTH_DISABLED = "disabled"
AUTH_MODES = (AUTH_OPERATORS, AUTH_TOKENS, AUTH_DISABLED)
# The operators' way in that needs no token: the console script, run in the pod.
OPERATOR_CONSOLE = ("the console script inside the pod: kubectl exec deploy/pool-domain-manager -- "
                    "pool-domain-manager --help")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MIN_SECRET_LENGTH = 16


@dataclass(frozen=True)
class ApiToken:
    name: str
    role: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class Caller:
    name: str
    role: str

    def may(self, needed: str) -> bool:
        return needed in GRANTS[self.role]


def parse_tokens(text: str, source: str) -> tuple[ApiToken, ...]:
    """``name:role:secret`` entries separated by commas or new lines; ``#`` starts a
    comment line. Raises ValueError naming ``source`` and the entry's position -- never
    the secret."""
    tokens: list[ApiToken] = []
    entries = [e.strip() for line in text.splitlines() if not line.strip().startswith("#") for e in line.split(",")]
    for position, entry in enumerate((e for e in entries if e), start=1):
        name, sep1, rest = entry.partition(":")
        role, sep2, secret = rest.partition(":")
        if not (sep1 and sep2):
            raise ValueError(f"{source}: entry {position} is not name:role:secret")
        if not _NAME.match(name):
            raise ValueError(f"{source}: entry {position} has an invalid name")
        if role not in ROLES:
            raise ValueError(f"{source}: entry {position} ({name}) has role {role!r}, not client or operator")
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"{source}: entry {position} ({name}) has a secret shorter than {MIN_SECRET_LENGTH}")
        tokens.append(ApiToken(name, role, secret))
    return tuple(tokens)


def check_unique(tokens: tuple[ApiToken, ...]) -> None:
    """Names identify callers in the history; a shared secret would make them ambiguous."""
    if len({t.name for t in tokens}) != len(tokens):
        raise ValueError("PDM_API_TOKENS/PDM_API_TOKENS_FILE: a token name appears twice")
    if len({t.secret for t in tokens}) != len(tokens):
        raise ValueError("PDM_API_TOKENS/PDM_API_TOKENS_FILE: two entries share a secret")


class TokenBook:
    def __init__(self, tokens: tuple[ApiToken, ...]):
        # Compare digests: equal length whatever the caller sends, and every entry is
        # compared, so timing says nothing about which secret came close.
        self._entries = [(hashlib.sha256(t.secret.encode()).digest(), Caller(t.name, t.role)) for t in tokens]

    def count(self, role: str) -> int:
        return sum(1 for _, caller in self._entries if caller.role == role)

    def identify(self, authorization: str | None) -> Caller | None:
        scheme, _, secret = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            return None
        digest = hashlib.sha256(secret.strip().encode()).digest()
        found = None
        for candidate, caller in self._entries:
            if hmac.compare_digest(candidate, digest):
                found = caller
        return found


@dataclass(frozen=True)
class Refusal:
    """Why a request is turned away: the HTTP status, the error code and a sentence."""

    status: int
    code: str
    detail: str


_MISSING_HEADER_DETAIL = "a valid 'Authorization: Bearer <token>' header is required"
_INVALID_HEADER_DETAIL = "the Authorization header does not carry a valid 'Bearer <token>'"


class Gate:
    """Decides, for one request, who is calling and whether they may (see AUTH_MODES).
    ``admit`` returns the caller (None: anonymous) and a Refusal, or None when admitted."""

    def __init__(self, mode: str, book: TokenBook):
        if mode not in AUTH_MODES:
            raise ValueError(f"unknown auth mode {mode!r}")
        self.mode = mode
        self.book = book
        self.operators_closed = book.count(OPERATOR) == 0

    def admit(self, authorization: str | None, needed: str | None) -> tuple[Caller | None, Refusal | None]:
        caller = self.book.identify(authorization)
        if needed is None or self.mode == AUTH_DISABLED:
            return caller, None
        if caller is None:
            if authorization is not None:
                # A header that is sent must be valid, in every mode: a misconfigured
                # client is loud, never quietly anonymous.
                return None, Refusal(401, "unauthorized", self._hint(_INVALID_HEADER_DETAIL, needed))
            if self.mode == AUTH_OPERATORS:
                if needed == CLIENT:
                    return None, None  # no header: anonymous
                if self.operators_closed:
                    return None, Refusal(403, "forbidden", self._closed())
            return None, Refusal(401, "unauthorized", self._hint(_MISSING_HEADER_DETAIL, needed))
        if not caller.may(needed):
            if self.operators_closed:
                return caller, Refusal(403, "forbidden", self._closed())
            return caller, Refusal(
                403, "forbidden", self._hint(f"this needs the {needed} role; {caller.name} is a {caller.role}", needed))
        return caller, None

    @staticmethod
    def _hint(detail: str, needed: str) -> str:
        if needed == OPERATOR:
            return f"{detail}: send an operator token, or use {OPERATOR_CONSOLE}"
        return detail

    def _closed(self) -> str:
        return (f"operator routes are closed: no operator token is configured (PDM_AUTH={self.mode}); "
                f"use {OPERATOR_CONSOLE}")

    def describe(self) -> str:
        """One sentence for the start-up log: the mode and what it means here."""
        clients, operators = self.book.count(CLIENT), self.book.count(OPERATOR)
        tokens = f"{clients} client and {operators} operator token(s)"
        if self.mode == AUTH_DISABLED:
            return "auth mode disabled: every route is open to every caller"
        if self.mode == AUTH_TOKENS:
            return f"auth mode tokens: client and operator routes need a bearer token ({tokens})"
        operator_routes = ("closed (no operator token; operators use the console script pool-domain-manager "
                           "in the pod)" if self.operators_closed else "need an operator token")
        return (f"auth mode operators: client routes admit callers without an Authorization header as "
                f"anonymous (a header sent must be valid); operator routes {operator_routes} ({tokens})")


def client_address(remote_addr: str | None, forwarded_for: str | None, trusted_proxies: tuple = ()) -> str:
    """The client's address: the connection's, unless it comes from a trusted proxy
    (PDM_TRUSTED_PROXIES); then X-Forwarded-For is read from the right, past every trusted
    hop, to the first address a trusted proxy vouches for. Anything left of it is the
    client's to invent, so never believed."""
    address = (remote_addr or "").strip() or "unknown"

    def trusted(text: str) -> bool:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            return False
        return any(ip in network for network in trusted_proxies)

    if not forwarded_for or not trusted(address):
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return address  # a trusted proxy passed on garbage: it is the last address known
        address = hop
        if not trusted(hop):
            return hop
    return address


def caller_key(caller: Caller | None, address: str) -> str:
    """Who a rate limit and the reservation quota count against: the token's name, else
    the client's address (prefixed, so a token name never meets an address)."""
    return f"token:{caller.name}" if caller is not None else f"address:{address}"
