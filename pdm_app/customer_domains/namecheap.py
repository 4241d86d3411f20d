"""Namecheap: a customer's API credentials checked, and their domain's nameservers set,
through the XML API (``https://api.namecheap.com/xml.response``).

Every call is a GET on that one path with the global parameters ``ApiUser ApiKey UserName
ClientIp Command``. Namecheap answers refusals at HTTP 200, in a namespaced envelope::

    <ApiResponse Status="ERROR" xmlns="http://api.namecheap.com/xml.response">
      <Errors><Error Number="1011150">Invalid request IP: 203.0.113.5</Error></Errors> ...

* validate: ``namecheap.users.getBalances`` (are the credentials good?), then
  ``namecheap.domains.getList`` with ``SearchTerm=<domain>`` and a case-insensitive match
  on ``Domain@Name`` -- one call, where the previous service paged up to 199 times. The
  search is a substring match, so only when more than a page of names contain the domain
  are further pages read (a few at most, within the deadline).
* set: ``namecheap.domains.dns.setCustom`` ``SLD TLD Nameservers=a,b``, confirmed by
  ``DomainDNSSetCustomResult@Updated="true"``.
* get: ``namecheap.domains.dns.getList`` ``SLD TLD`` → ``DomainDNSGetListResult/Nameserver``.

``ClientIp`` must be this service's egress IPv4 address, allow-listed by the customer in
their Namecheap account (Profile → Tools → Namecheap API Access → Whitelisted IPs). It is
a service setting (``PDM_NAMECHEAP_CLIENT_IP``), not the customer's: without it every
call is refused before any request (``NotConfigured``), and every refusal of the address
names it so the customer knows what to allow-list.

The answer is untrusted input: it is parsed with expat directly, refusing any DTD (and
so every entity declaration: no entity expansion, no external entities), ignoring XML
namespaces (tags are compared by their local names), and limited in size.
"""
from __future__ import annotations

import ipaddress
import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator
from xml.parsers import expat

import requests

from .base import (ApiUnavailable, Deadline, DomainNotInAccount, InvalidToken, RateLimited, RegistrarFailure,
                   Unsupported, call, new_session, retry_after, split_token)

log = logging.getLogger(__name__)

WHAT = "Namecheap's API"
EXPECTED_SHAPE = "apiUser:apiKey, or apiUser:apiKey:userName when the API user acts for another Namecheap user"
API_ACCESS = "Profile → Tools → Namecheap API Access in your Namecheap account"
# When the search for a domain matches more than a page of names (it is a substring
# search), read at most this many pages before calling the domain absent.
PAGE_SIZE = 100
MAX_SEARCH_PAGES = 5

# Error numbers (Namecheap's global parameters and method pages; registrars.md §2).
# Credentials: parameters missing or refused, API access off, user name refused or locked.
CREDENTIAL_ERRORS = frozenset({1010100, 1010101, 1010102, 1010105, 1011101, 1011102, 1011105, 1011500,
                               1016103, 1017103, 1019103})
# The calling address (ClientIp / the request's source) not allow-listed, or locked; and
# the API user locked. Each answer names the address the customer must allow-list.
ADDRESS_ERRORS = frozenset({1011150, 1017150, 1017105, 1017101})
NOT_IN_ACCOUNT_ERRORS = frozenset({2019166, 2016166, 2019167, 2030280})
EDIT_UNSUPPORTED_ERRORS = frozenset({2030166})
UPSTREAM_ERRORS = frozenset({3031510, 3050900})  # the registry behind Namecheap (Enom) failed

# Namecheap's throttle answers are not documented; match the words, not substrings of
# other words ("generate", "separate").
_RATE_WORDS = re.compile(r"\brate\b|\brate[- ]?limit|too many|throttl", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class NotConfigured(RegistrarFailure):
    """The service has no Namecheap ``ClientIp`` (``PDM_NAMECHEAP_CLIENT_IP``): nothing the
    customer can fix; the service's operator must set it."""

    code, status = "registrar-not-configured", 503


@dataclass(frozen=True)
class _Credentials:
    api_user: str
    api_key: str
    user_name: str
    secrets: tuple[str, ...]  # what never appears in a detail: the key, the whole token


class NamecheapRegistrar:
    name = "namecheap"
    sets_nameservers = True
    propagation = "namecheap: 1–2 h, up to 48 h"

    def __init__(self, base_url: str, *, client_ip: str | None, session: requests.Session | None = None):
        self.base_url = base_url
        self._session = session or new_session()
        self.client_ip: str | None = None
        if client_ip is not None and client_ip.strip():
            try:
                self.client_ip = str(ipaddress.IPv4Address(client_ip.strip()))
            except ValueError:
                raise ValueError(f"the Namecheap client IP {client_ip!r} must be an IPv4 address "
                                 "(this service's egress address)") from None

    # -- the interface ------------------------------------------------------------------

    def validate(self, domain: str, token: str, deadline: Deadline) -> None:
        with self._logged("validate", domain):
            creds = self._credentials(token)
            self._command(creds, domain, "namecheap.users.getBalances", deadline, {})
            self._find_domain(creds, domain, deadline)

    def get_nameservers(self, domain: str, token: str, deadline: Deadline) -> list[str]:
        with self._logged("get-ns", domain):
            creds = self._credentials(token)
            sld, tld = _split_domain(domain)
            answer = self._command(creds, domain, "namecheap.domains.dns.getList", deadline,
                                   {"SLD": sld, "TLD": tld})
            result = _child(answer, "DomainDNSGetListResult")
            if result is None:
                raise _unreadable()
            names = [ns.text.strip().lower().rstrip(".") for ns in _children(result, "Nameserver")]
            return [n for n in names if n]

    def set_nameservers(self, domain: str, token: str, nameservers: list[str], deadline: Deadline) -> None:
        with self._logged("set-ns", domain):
            creds = self._credentials(token)
            sld, tld = _split_domain(domain)
            answer = self._command(creds, domain, "namecheap.domains.dns.setCustom", deadline,
                                   {"SLD": sld, "TLD": tld, "Nameservers": ",".join(nameservers)})
            result = _child(answer, "DomainDNSSetCustomResult")
            if result is None:
                raise _unreadable()
            if (result.get("Updated") or "").strip().lower() != "true":
                raise RegistrarFailure(f"Namecheap did not confirm the nameserver change for {domain}; check the "
                                       "domain in your Namecheap dashboard and try again")

    # -- credentials ----------------------------------------------------------------------

    def _credentials(self, token: str) -> _Credentials:
        if self.client_ip is None:
            raise NotConfigured("Namecheap is not set up on this service yet: its operator must set "
                                "PDM_NAMECHEAP_CLIENT_IP to the service's outgoing IPv4 address, which you then "
                                "allow-list at Namecheap. Try again once that is done.")
        api_user, api_key, *rest = split_token(token, 3, EXPECTED_SHAPE, at_least=2)
        user_name = api_user
        if rest:
            # The third part is a user name, a client IP (the wizard's old hint was
            # apiUser:apiKey:clientIP), or userName:clientIp. A client IP in the token is
            # accepted and IGNORED: Namecheap checks the address its requests come from,
            # which is this service's egress, never the customer's machine -- and the
            # previous service's default, 127.0.0.1, never works. The configured address
            # (PDM_NAMECHEAP_CLIENT_IP) is sent instead.
            third = rest[0]
            if not _is_ip(third):
                user_name, colon, ignored_ip = (part.strip() for part in third.partition(":"))
                if not user_name or (colon and not _is_ip(ignored_ip)):
                    raise InvalidToken(f"the token must look like {EXPECTED_SHAPE}")
        secrets = tuple(s for s in {api_key, token, token.strip()} if s)
        return _Credentials(api_user, api_key, user_name, secrets)

    # -- calls ----------------------------------------------------------------------------

    def _find_domain(self, creds: _Credentials, domain: str, deadline: Deadline) -> None:
        for page in range(1, MAX_SEARCH_PAGES + 1):
            answer = self._command(creds, domain, "namecheap.domains.getList", deadline,
                                   {"SearchTerm": domain, "Page": str(page), "PageSize": str(PAGE_SIZE)})
            result = _child(answer, "DomainGetListResult")
            if result is None:
                raise _unreadable()
            names = [(d.get("Name") or "").strip().lower() for d in _children(result, "Domain")]
            if domain in names:
                return
            total = _int(_text(_child(_child(answer, "Paging"), "TotalItems")))
            if not names or total is None or page * PAGE_SIZE >= total:
                break
        raise DomainNotInAccount(f"Namecheap did not find {domain} in this account: check that the domain is "
                                 "registered at Namecheap under the user name of these API credentials")

    def _command(self, creds: _Credentials, domain: str, command: str, deadline: Deadline,
                 params: dict[str, str]) -> _Node:
        """One API call; the ``CommandResponse`` of an ``OK`` answer, else a typed error."""
        query = {"ApiUser": creds.api_user, "ApiKey": creds.api_key, "UserName": creds.user_name,
                 "ClientIp": self.client_ip, "Command": command, **params}
        response = call(self._session, "GET", self.base_url, deadline, what=WHAT, params=query)
        status = response.status_code
        if status == 429:
            raise RateLimited("Namecheap is limiting how often these credentials may call its API; wait a few "
                              "minutes and try again", retry_after=retry_after(response))
        if status in (401, 403):
            raise InvalidToken(f"Namecheap refused the request (HTTP {status}): check the API user and key, that "
                               f"API access is on, and that {self.client_ip} is allow-listed ({API_ACCESS})")
        if status != 200:
            raise RegistrarFailure(f"Namecheap's API answered HTTP {status} unexpectedly; try again later, and "
                                   "contact Namecheap support if it keeps happening")
        root = _parse(response.content)
        if root is None or root.tag != "ApiResponse":
            raise _unreadable()
        outcome = (root.get("Status") or "").strip().upper()
        if outcome == "ERROR":
            raise self._refusal(root, creds, domain, response)
        answer = _child(root, "CommandResponse")
        if outcome != "OK" or answer is None:
            raise _unreadable()
        return answer

    def _refusal(self, root: _Node, creds: _Credentials, domain: str,
                 response: requests.Response) -> RegistrarFailure:
        """The typed error of an ``ERROR`` answer, from its first ``Error``."""
        first = next(iter(_children(_child(root, "Errors"), "Error")), None)
        if first is None:
            return RegistrarFailure("Namecheap refused the request without saying why; try again later, and "
                                    "contact Namecheap support if it keeps happening")
        number = _int(first.get("Number"))
        text = first.text.strip()
        ip = self.client_ip
        if number in ADDRESS_ERRORS:
            if number == 1017101:
                return InvalidToken(f"Namecheap says this API user is disabled or locked: check that API access is "
                                    f"on and that this service's address {ip} is allow-listed ({API_ACCESS})")
            if number == 1017105:
                return InvalidToken(f"Namecheap has this service's address {ip} disabled or locked for your API "
                                    f"access: allow-list {ip} again ({API_ACCESS}), then try again")
            return InvalidToken(f"Namecheap refused this service's address {ip}: add {ip} to the whitelisted IPs "
                                f"of your API access ({API_ACCESS}), then try again")
        if number == 1011102:
            return InvalidToken("Namecheap refused the API key, or API access is not turned on for this account: "
                                f"check the key and turn API access on ({API_ACCESS})")
        if number in (1016103, 1017103, 1019103):
            return InvalidToken("Namecheap refused the user name of these credentials: leave it out when it is the "
                                "API user itself, or give a user this API user may act for")
        if number in CREDENTIAL_ERRORS:
            return InvalidToken(f"Namecheap refused these API credentials: check the API user and API key "
                                f"({API_ACCESS})")
        if number in NOT_IN_ACCOUNT_ERRORS:
            return DomainNotInAccount(f"Namecheap did not find {domain} in this account: check that the domain is "
                                      "registered at Namecheap under the user name of these API credentials")
        if number in EDIT_UNSUPPORTED_ERRORS:
            return Unsupported(f"Namecheap does not allow changing the nameservers of {domain} through its API; "
                               "change them in your Namecheap dashboard, or ask Namecheap support why")
        if number in UPSTREAM_ERRORS:
            return ApiUnavailable("Namecheap could not pass the change on to the domain's registry just now; try "
                                  "again in a few minutes")
        if _RATE_WORDS.search(text):
            return RateLimited("Namecheap is limiting how often these credentials may call its API; wait a few "
                               "minutes and try again", retry_after=retry_after(response))
        said = _sanitise(text, creds.secrets)
        shown = f"error {number}" if number is not None else "no error number"
        return RegistrarFailure(f"Namecheap refused the request ({shown}: {said}); check the domain and the "
                                "account at Namecheap, and contact Namecheap support if it keeps happening")

    @contextmanager
    def _logged(self, operation: str, domain: str) -> Iterator[None]:
        try:
            yield
        except RegistrarFailure as failure:
            log.info("namecheap %s %s: %s", operation, domain, failure.code)
            raise
        log.info("namecheap %s %s: ok", operation, domain)


# -- helpers -------------------------------------------------------------------------------

def _split_domain(domain: str) -> tuple[str, str]:
    """SLD and TLD as Namecheap wants them. The domain arrives registrable, so the SLD is
    its first label and the TLD all the rest: ``example.co.uk`` → ``example``, ``co.uk``."""
    sld, _, tld = domain.partition(".")
    if not sld or not tld:
        raise RegistrarFailure(f"{domain} is not a registered domain name (like example.com)")
    return sld, tld


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip())
    except ValueError:
        return False
    return True


def _unreadable() -> RegistrarFailure:
    return RegistrarFailure("Namecheap's answer could not be read; try again in a few minutes")


def _sanitise(text: str, secrets: tuple[str, ...]) -> str:
    """The provider's words, fit to show: no secret, no control characters, not too long."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = re.sub(re.escape(secret), "[hidden]", text, flags=re.IGNORECASE)
    text = " ".join(_CONTROL.sub(" ", text).split())
    if len(text) > 200:
        text = text[:197] + "..."
    return text or "no reason given"


def _int(text: str | None) -> int | None:
    try:
        return int((text or "").strip())
    except ValueError:
        return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


@dataclass
class _Node:
    """An element of an answer: its local name, attributes, text and children."""

    tag: str
    attrs: dict[str, str]
    children: list["_Node"] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def get(self, name: str) -> str | None:
        return self.attrs.get(name)


def _children(parent: _Node | None, name: str) -> list[_Node]:
    if parent is None:
        return []
    return [child for child in parent.children if child.tag == name]


def _child(parent: _Node | None, name: str) -> _Node | None:
    found = _children(parent, name)
    return found[0] if found else None


def _text(element: _Node | None) -> str | None:
    return None if element is None else element.text


class _Refused(Exception):
    pass


def _refuse(*_: object) -> None:
    raise _Refused()


def _parse(body: bytes) -> _Node | None:
    """The document's root, with namespaces dropped from tag and attribute names; None
    when it is not well-formed XML or carries a DTD (so no entity can be declared, let
    alone expanded or fetched). Expat directly: nothing here resolves anything."""
    stack: list[_Node] = []
    roots: list[_Node] = []

    def start(tag: str, attrs: dict[str, str]) -> None:
        node = _Node(_local(tag), {_local(key): value for key, value in attrs.items()})
        (stack[-1].children if stack else roots).append(node)
        stack.append(node)

    def end(tag: str) -> None:
        stack.pop()

    def data(text: str) -> None:
        if stack:
            stack[-1].parts.append(text)

    parser = expat.ParserCreate(namespace_separator="}")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = data
    try:
        parser.Parse(body, True)
    except (expat.ExpatError, _Refused):
        return None
    return roots[0] if len(roots) == 1 and not stack else None
