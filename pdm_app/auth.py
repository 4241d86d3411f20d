"""Who may call what: bearer tokens with a role. No Flask here."""
from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field

CLIENT = "client"
OPERATOR = "operator"
ROLES = (CLIENT, OPERATOR)
# What each role may do; an operator may do everything.
GRANTS = {CLIENT: frozenset({CLIENT}), OPERATOR: frozenset({CLIENT, OPERATOR})}

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
