"""The use cases of a customer's own domain: validate their registrar credentials, and
flip the domain's nameservers at their registrar. The checks run in the order of the
previous service's contract (``registrars.md``); every attempt is recorded in the history
(registrar, domain, nameservers, outcome, caller -- never the token).

No Flask here: the HTTP layer parses, this decides, the adapters talk to the providers.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, TypeVar

from publicsuffixlist import PublicSuffixList
from sqlalchemy.orm import sessionmaker

from .. import domain
from ..domain import DomainError
from ..unit_of_work import UnitOfWork
from .base import CustomerRegistrar, Deadline, RegistrarFailure, Unsupported

log = logging.getLogger(__name__)

# Deadlines of a whole request, inside catalyst-api's 15 s (validate) and 30 s (set-ns).
VALIDATE_BUDGET = 12.0
SET_NS_BUDGET = 25.0
MIN_NAMESERVERS, MAX_NAMESERVERS = 2, 13
# History rows of these requests: pool_domain "registrar:<name>", subdomain the domain.
HISTORY_PREFIX = "registrar:"

T = TypeVar("T")

_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_ICANN = PublicSuffixList(only_icann=True)


def normalise_nameservers(raw: list[str]) -> list[str]:
    """Trimmed, lower-cased, empties and duplicates dropped, first-seen order kept."""
    seen: dict[str, None] = {}
    for item in raw:
        name = domain.normalise(item)
        if name:
            seen.setdefault(name, None)
    return list(seen)


def is_hostname(name: str) -> bool:
    labels = name.split(".")
    return len(name) <= 253 and len(labels) >= 2 and all(_HOST_LABEL.match(label) for label in labels)


def check_domain(name: str) -> None:
    """A registrable name (what a registrar can delegate), before it goes into any URL."""
    if not name.isascii() or not is_hostname(name):
        raise DomainError("invalid-domain", f"{name!r} is not a domain name: send it as letters, digits and '-' "
                                            "between dots (an internationalised name as its xn-- form)", 422)
    registrable = _ICANN.privatesuffix(name)
    if registrable is None:
        raise DomainError("invalid-domain", f"{name} is a public suffix, not a domain anyone registers", 422)
    if registrable != name:
        raise DomainError("invalid-domain", f"{name} is a subdomain of {registrable}: a registrar delegates only "
                                            f"the registered domain; bring {registrable} itself", 422)


def check_nameservers(names: list[str]) -> None:
    if not MIN_NAMESERVERS <= len(names) <= MAX_NAMESERVERS:
        raise DomainError("invalid-nameservers", f"give between {MIN_NAMESERVERS} and {MAX_NAMESERVERS} nameservers "
                                                 f"({len(names)} given)", 422)
    bad = [n for n in names if not n.isascii() or not is_hostname(n)]
    if bad:
        raise DomainError("invalid-nameservers", f"{bad[0]!r} is not a nameserver host name (like ns1.example.net)",
                          422)


def _guarded(adapter: CustomerRegistrar, action: str, name: str, run: Callable[[], T]) -> T:
    """``run()``, with any exception but a RegistrarFailure turned into one (502
    registrar-error): an answer no adapter foresaw must not become a 500 without a history
    row. Logged by type only -- an exception's text may hold a URL, and with it a secret."""
    failure: RegistrarFailure | None = None
    try:
        return run()
    except RegistrarFailure:
        raise
    except Exception as exc:
        log.error("%s %s %s: unexpected %s from the adapter", adapter.name, action, name, type(exc).__name__)
        failure = RegistrarFailure(f"{adapter.name}'s answer could not be understood; try again in a few minutes, "
                                   "and if it keeps happening contact support")
    raise failure  # outside the except: the original is neither chained nor kept as context


@dataclass(frozen=True)
class Validated:
    registrar: str
    domain: str


@dataclass(frozen=True)
class Flipped:
    registrar: str
    domain: str
    requested: list[str]
    propagation: str
    # False when the provider already had exactly this list (nothing written).
    written: bool
    # What the provider reports after the write; None when it could not be read.
    read_back: list[str] | None
    matches: bool | None
    applies_later: bool
    note: str | None = None

    @property
    def nameservers(self) -> list[str]:
        """What the old service answered: the provider's list, else the requested one."""
        return self.read_back if self.read_back is not None else self.requested


class NameserverService:
    def __init__(self, registry: dict[str, CustomerRegistrar], session_factory: sessionmaker,
                 clock: Callable[[], datetime] = domain.utcnow):
        self.registry = registry
        self.session_factory = session_factory
        self.clock = clock

    def supported(self) -> list[str]:
        return sorted(self.registry)

    def adapter(self, registrar: str) -> CustomerRegistrar:
        """Checks 1 and 2 of the contract: run before the body is read."""
        if not self.registry:
            raise DomainError("no-registrars-configured", "no registrar is wired into this service", 503)
        name = domain.normalise(registrar)
        if name not in self.registry:
            raise DomainError("unsupported-registrar", f"{registrar!r} is not a registrar this service works with; "
                                                       f"it works with {', '.join(self.supported())}", 404,
                              supported=self.supported())
        return self.registry[name]

    def _inputs(self, registrar: str, raw_domain: str, token: str) -> tuple[CustomerRegistrar, str]:
        adapter = self.adapter(registrar)
        name = domain.normalise(raw_domain)
        if not name:
            raise DomainError("missing-domain", "domain is required: the domain whose nameservers are to change", 422)
        if not token:  # spaces pass: the adapter refuses them
            raise DomainError("missing-token", f"token is required: the API credentials of your {adapter.name} "
                                               "account", 422)
        check_domain(name)
        return adapter, name

    def validate(self, registrar: str, raw_domain: str, token: str, caller: str) -> Validated:
        adapter, name = self._inputs(registrar, raw_domain, token)
        try:
            _guarded(adapter, "validate", name, lambda: adapter.validate(name, token, Deadline(VALIDATE_BUDGET)))
        except RegistrarFailure as failure:
            self._record(adapter.name, name, "validate", caller, [], failure.code)
            raise self._refusal(failure, adapter.name, name) from None
        self._record(adapter.name, name, "validate", caller, [], "ok")
        return Validated(adapter.name, name)

    def set_nameservers(self, registrar: str, raw_domain: str, token: str, raw_nameservers: list[str],
                        caller: str) -> Flipped:
        adapter, name = self._inputs(registrar, raw_domain, token)
        wanted = normalise_nameservers(raw_nameservers)
        if not wanted:
            raise DomainError("missing-nameservers", "nameservers is required: the host names to delegate "
                                                     f"{name} to", 422)
        check_nameservers(wanted)
        deadline = Deadline(SET_NS_BUDGET)
        applies_later = bool(getattr(adapter, "applies_later", False))

        def flip() -> tuple[list[str], bool]:
            if not adapter.sets_nameservers:
                # Refused before any call: checking the credentials first would only
                # delay (or, with the provider slow, hide) an answer that cannot change.
                adapter.set_nameservers(name, token, wanted, deadline)
                raise Unsupported(f"{adapter.name} cannot set a domain's nameservers")
            adapter.validate(name, token, deadline)
            found = adapter.get_nameservers(name, token, deadline)
            changed = sorted(found) != sorted(wanted)
            if changed:  # an identical list is not written again
                adapter.set_nameservers(name, token, wanted, deadline)
            return found, changed

        try:
            current, written = _guarded(adapter, "set-ns", name, flip)
        except RegistrarFailure as failure:
            self._record(adapter.name, name, "set-ns", caller, wanted, failure.code)
            raise self._refusal(failure, adapter.name, name) from None
        read_back: list[str] | None = current
        if written:
            try:
                read_back = _guarded(adapter, "set-ns read-back", name,
                                     lambda: adapter.get_nameservers(name, token, deadline))
            except RegistrarFailure as failure:
                # The write went through; only the confirmation is missing.
                log.info("%s set-ns %s: read-back failed (%s)", adapter.name, name, failure.code)
                read_back = None
        matches = None if read_back is None else sorted(read_back) == sorted(wanted)
        note = None
        if applies_later and written and not matches:
            note = (f"{adapter.name} applies a nameserver change as a task, later: the list read back is still the "
                    "old one; check again in a while")
        outcome = "unchanged" if not written else ("ok" if matches else ("pending" if applies_later else "mismatch"))
        self._record(adapter.name, name, "set-ns", caller, wanted, outcome)
        return Flipped(adapter.name, name, wanted, adapter.propagation, written, read_back, matches, applies_later,
                       note)

    @staticmethod
    def _refusal(failure: RegistrarFailure, registrar: str, name: str) -> DomainError:
        extra = {"registrar": registrar, "domain": name}
        if failure.retry_after:
            extra["retryAfter"] = int(failure.retry_after)
        return DomainError(failure.code, failure.detail, failure.status, **extra)

    def _record(self, registrar: str, name: str, action: str, caller: str, nameservers: list[str],
                outcome: str) -> None:
        detail = f"outcome={outcome}" + (f" nameservers={','.join(nameservers)}" if nameservers else "")
        log.info("%s %s %s: %s", registrar, action, name, outcome)
        with UnitOfWork(self.session_factory) as tx:
            tx.record_event(HISTORY_PREFIX + registrar, name, action, caller, self.clock(), detail=detail)

    def history(self, registrar: str, raw_domain: str | None, limit: int = 500,
                before: int | None = None) -> list:
        """Every validate and flip made through ``registrar`` (for ``raw_domain``)."""
        adapter = self.adapter(registrar)
        name = domain.normalise(raw_domain) if raw_domain else None
        with UnitOfWork(self.session_factory) as tx:
            return tx.history(pool=HISTORY_PREFIX + adapter.name, sub=name, limit=limit, before=before)
