"""The customer's own Dynadot account, through the legacy ``api3.json`` (not the pool's
account: for that see ``pdm_app.dns.dynadot``).

What this relies on (``/work/shared/docs/registrars.md`` §2 "Dynadot" and
``/work/shared/docs/dynadot.md``):

* Every call is ``GET <base>/api3.json?key=…&command=…``. The key is all api3 needs; the
  account's *secret* only signs the newer RESTful API, so a ``key:secret`` token is
  accepted and the secret is dropped, never sent.
* Answers come at HTTP 200 whatever happened, as ``{"<Command>Response": {"ResponseCode":
  0, "Status": "success", …}}`` (no ``ResponseHeader`` wrapper; the code is a number on
  success, the string ``"-1"`` on error, with ``Error``); key and throttle errors may come
  in a generic ``{"Response": {…}}``. A ``ResponseHeader`` wrapper (the old service's
  invented shape) is tolerated. A success without ``Status`` but with code 0 has been
  seen live and counts as success.
* validate = ``domain_info``; get = ``domain_info`` →
  ``DomainInfo.NameServerSettings.NameServers[].ServerName`` (``NameServerSettings`` is
  searched for, not addressed by path: the wrapper's name differs between sources; empty
  ``ServerName`` slots are padding). A domain on Dynadot's own DNS or parking has no
  ``NameServers`` there: then ``get_ns`` (``NsContent``/``nsContent`` → ``Host0..``) is
  asked (unverified against the live API which hosts it lists for such domains).
  set = ``set_ns`` ``domain`` + ``ns0..ns12``.
* Dynadot serves **one request at a time per key**: a second one while the first runs is
  refused. Every operation (validate; get; set) therefore runs under ``key_lock(api_key,
  timeout)`` -- deployment-wide when the caller plugs in a database lock, per process by
  default -- and waits for it only as long as the request's deadline allows.
* ``set_ns`` refuses a host the account does not know ("'ns1.x' needs to be registered
  with an ip address before it can be used."): the person must register the hosts at
  Dynadot; this adapter does not (it does not know their addresses).

Error texts (all at HTTP 200) are matched in this order: not in the account, bad key, IP
allow-list, throttle, busy/transient, another request running, unregistered host; any
other refusal is a ``RegistrarFailure`` quoting Dynadot's words (the key and secret
scrubbed from them).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import threading
from typing import Any, Callable, ContextManager, Iterator

import requests

# Installs the filters that mask ``key=…`` in urllib3's DEBUG lines (the key travels in
# the query string); the customer's key is not registered there (it would stay in memory).
from .. import redaction  # noqa: F401
from .base import (
    ApiUnavailable,
    Deadline,
    DomainNotInAccount,
    InvalidToken,
    KeyLock,
    NotEntitled,
    RateLimited,
    RegistrarFailure,
    call,
    clean_message,
    json_answer,
    new_session,
    retry_after,
    split_token,
)

log = logging.getLogger(__name__)

WHAT = "Dynadot's API"
CREDENTIAL_SHAPE = "API_KEY or API_KEY:API_SECRET (the API key from your Dynadot account's API settings)"
PROPAGATION = "dynadot: 30–60 min"
MAX_NAMESERVERS = 13  # set_ns takes ns0..ns12
THROTTLE_BACKOFF = 60.0
# ASCII digits only: str.isdigit() takes "³", which int() refuses.
_DIGITS = re.compile(r"[0-9]{1,3}")
BUSY = "another request with this Dynadot API key is still running; try again in a minute"


class LocalKeyLocks:
    """The default ``key_lock``: one ``threading.Lock`` per API key in this process.

    ``locks(api_key, timeout)`` is a context manager holding the key's lock; it raises
    ``TimeoutError`` when the lock cannot be had within ``timeout`` seconds. Keys are kept
    only as SHA-256 digests, and only while someone holds or waits for them.

    A deployment with several processes or replicas plugs in a callable of the same shape
    backed by a shared lock (a database lock), since Dynadot refuses a second concurrent
    request per key whichever process sends it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[bytes, list[Any]] = {}  # digest -> [lock, holders and waiters]

    def __call__(self, api_key: str, timeout: float) -> ContextManager[None]:
        return self._hold(hashlib.sha256(api_key.encode()).digest(), timeout)

    @contextlib.contextmanager
    def _hold(self, digest: bytes, timeout: float) -> Iterator[None]:
        with self._guard:
            entry = self._locks.setdefault(digest, [threading.Lock(), 0])
            entry[1] += 1
        try:
            if not entry[0].acquire(timeout=max(0.0, timeout)):
                raise TimeoutError("the API key's lock is held by another request")
            try:
                yield
            finally:
                entry[0].release()
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    self._locks.pop(digest, None)

    def __len__(self) -> int:
        """Keys currently held or waited for (for tests)."""
        with self._guard:
            return len(self._locks)


# Shared by every adapter of this process that was given no key_lock of its own.
local_key_locks = LocalKeyLocks()


def _envelope(body: Any) -> dict[str, Any] | None:
    """The ``{"<Command>Response": {...}}`` (or generic ``{"Response": {...}}``) object,
    with an optional ``ResponseHeader`` folded in."""
    if not isinstance(body, dict):
        return None
    for name, value in body.items():
        if isinstance(name, str) and name.endswith("Response") and isinstance(value, dict):
            header = value.get("ResponseHeader")
            return {**value, **header} if isinstance(header, dict) else value
    return None


def _succeeded(envelope: dict[str, Any]) -> bool:
    status = envelope.get("Status")
    if isinstance(status, str) and status.strip():
        return status.strip().lower() == "success"
    code = envelope.get("ResponseCode", envelope.get("SuccessCode"))
    return not isinstance(code, bool) and code in (0, "0")


def _find(node: Any, key: str) -> Any:
    """Depth-first search for the first ``key`` (case-insensitive) holding a dict."""
    if isinstance(node, dict):
        for name, value in node.items():
            if isinstance(name, str) and name.lower() == key.lower() and isinstance(value, dict):
                return value
        children = list(node.values())
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = _find(child, key)
        if found is not None:
            return found
    return None


def _host(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    name = value.strip().rstrip(".").lower()
    return name or None


def _server_names(settings: dict[str, Any]) -> list[str] | None:
    """``NameServers`` as a list of hosts: entries ``{"ServerId", "ServerName"}`` (or plain
    strings); empty slots dropped. None when there is no such list."""
    servers = next((v for k, v in settings.items() if isinstance(k, str) and k.lower() == "nameservers"), None)
    if isinstance(servers, dict):  # an XML-to-JSON rendering: {"ServerName": [...]} or one server
        servers = servers.get("ServerName", servers.get("NameServer", list(servers.values())))
        servers = servers if isinstance(servers, list) else [servers]
    if not isinstance(servers, list):
        return None
    hosts = []
    for item in servers:
        name = _host(item.get("ServerName") if isinstance(item, dict) else item)
        if name:
            hosts.append(name)
    return hosts


def _ns_content(envelope: dict[str, Any]) -> list[str] | None:
    """``get_ns``'s ``NsContent`` (``nsContent`` in Dynadot's JSON sample): ``Host0``,
    ``Host1``, … in index order, or a ``Host`` list."""
    content = _find(envelope, "NsContent")
    if content is None:
        return None
    indexed: list[tuple[int, str]] = []
    listed: list[str] = []
    for name, value in content.items():
        lower = name.lower() if isinstance(name, str) else ""
        if lower == "host":
            for item in value if isinstance(value, list) else [value]:
                host = _host(item)
                if host:
                    listed.append(host)
        elif lower.startswith("host") and _DIGITS.fullmatch(lower[4:]):
            host = _host(value)
            if host:
                indexed.append((int(lower[4:]), host))
    return [host for _, host in sorted(indexed)] + listed


class DynadotRegistrar:
    """A customer's Dynadot account. ``base_url`` is the api3 endpoint
    (``https://api.dynadot.com/api3.json``). ``key_lock(api_key, timeout)`` returns a
    context manager that holds the key's lock (raising ``TimeoutError`` when it cannot be
    had within ``timeout`` seconds); default: :data:`local_key_locks`, per process."""

    name = "dynadot"
    sets_nameservers = True
    propagation = PROPAGATION

    def __init__(self, base_url: str, *, session: requests.Session | None = None,
                 key_lock: KeyLock | None = None):
        self.base_url = base_url
        self._session = session or new_session()
        self._key_lock: KeyLock = key_lock or local_key_locks

    def __repr__(self) -> str:
        return f"DynadotRegistrar({self.base_url!r})"

    # -- the interface ----------------------------------------------------------------

    def validate(self, domain: str, token: str, deadline: Deadline) -> None:
        def run(key: str, secret: str | None) -> None:
            self._command("domain_info", key, secret, deadline, {"domain": domain})

        self._operation("validate", domain, token, deadline, run)

    def get_nameservers(self, domain: str, token: str, deadline: Deadline) -> list[str]:
        def run(key: str, secret: str | None) -> list[str]:
            info = self._command("domain_info", key, secret, deadline, {"domain": domain})
            settings = _find(info, "NameServerSettings")
            hosts = _server_names(settings) if settings is not None else None
            if hosts:
                return hosts
            # On Dynadot's own DNS (or parking) domain_info lists no name servers.
            answer = self._command("get_ns", key, secret, deadline, {"domain": domain})
            hosts = _ns_content(answer)
            if hosts:
                return hosts
            raise RegistrarFailure(f"Dynadot did not say which nameservers {domain} uses; check the domain's "
                                   "name server settings in your Dynadot account and try again")

        return self._operation("get-ns", domain, token, deadline, run)

    def set_nameservers(self, domain: str, token: str, nameservers: list[str], deadline: Deadline) -> None:
        params = {"domain": domain, **{f"ns{i}": host for i, host in enumerate(nameservers)}}

        def run(key: str, secret: str | None) -> None:
            if not 1 <= len(nameservers) <= MAX_NAMESERVERS:  # checked upstream; never sent
                raise RegistrarFailure(f"Dynadot takes between 1 and {MAX_NAMESERVERS} nameservers for a domain "
                                       f"({len(nameservers)} given)")
            self._command("set_ns", key, secret, deadline, params, nameservers=nameservers)

        self._operation("set-ns", domain, token, deadline, run)

    # -- plumbing ---------------------------------------------------------------------

    def _operation(self, operation: str, domain: str, token: str, deadline: Deadline,
                   run: Callable[[str, str | None], Any]) -> Any:
        """``run(key, secret)`` holding the key's lock, within the deadline; one log line.
        A malformed token is refused before anything else (no lock, no call)."""
        outcome = "error"
        try:
            pieces = split_token(token, 2, CREDENTIAL_SHAPE, at_least=1)
            key, secret = pieces[0], (pieces[1] if len(pieces) > 1 else None)
            deadline.call_timeout()  # no time left: fail before queueing for the lock
            stack = contextlib.ExitStack()
            busy = False
            try:
                stack.enter_context(self._key_lock(key, deadline.remaining()))
            except TimeoutError:
                busy = True
            if busy:  # raised outside the except: no exception chained or kept as context
                raise ApiUnavailable(BUSY)
            with stack:
                result = run(key, secret)
            outcome = "ok"
            return result
        except RegistrarFailure as failure:
            outcome = failure.code
            raise
        finally:
            log.info("dynadot %s %s: %s", operation, domain, outcome)

    def _command(self, command: str, key: str, secret: str | None, deadline: Deadline, params: dict[str, str],
                 *, nameservers: list[str] | None = None) -> dict[str, Any]:
        """One api3 call: its success envelope, or the typed error. Only the key is sent."""
        response = call(self._session, "GET", self.base_url, deadline, what=WHAT,
                        params={"key": key, "command": command, **params},
                        headers={"Accept": "application/json"})
        status = response.status_code
        if status in (401, 403):
            raise InvalidToken("Dynadot refused the API key; check that it is the key shown in your Dynadot "
                               "account's API settings and that API access is turned on")
        if status == 429:
            raise RateLimited("Dynadot is limiting requests with this API key; try again in a minute",
                              retry_after=retry_after(response) or THROTTLE_BACKOFF)
        if status != 200:
            raise RegistrarFailure(f"{WHAT} answered unexpectedly (HTTP {status}); try again in a few minutes")
        try:
            body = json_answer(response)
        except ValueError:
            body = None
        envelope = _envelope(body)
        if envelope is None:
            raise RegistrarFailure(f"{WHAT} sent an answer that could not be read; try again in a few minutes")
        if _succeeded(envelope):
            return envelope
        message = envelope.get("Error") or envelope.get("ResponseMsg") or envelope.get("Status")
        raise self._refusal(str(message or "").strip(), key, secret, params.get("domain", ""), nameservers)

    @staticmethod
    def _refusal(message: str, key: str, secret: str | None, domain: str,
                 nameservers: list[str] | None) -> RegistrarFailure:
        text = message.lower()
        if ("not in your account" in text or "could not find domain" in text
                or ("could not find" in text and "in your account" in text)):
            return DomainNotInAccount(f"{domain} is not in the Dynadot account of this API key; use the key of the "
                                      "account that holds the domain")
        if "invalid key" in text or "invalid api key" in text or "api key is invalid" in text:
            return InvalidToken("Dynadot does not accept this API key; copy it again from your Dynadot account's "
                                "API settings")
        if any(t in text for t in ("whitelist", "white list", "allowlist", "allow list", "allowed ip")):
            return NotEntitled("Dynadot refused the request because it does not come from an IP address on this "
                               "key's allow-list; add this service's address in your Dynadot account's API "
                               "settings (it takes about 10 minutes to apply), then try again")
        if "too many requests" in text:
            return RateLimited("Dynadot is limiting requests with this API key; try again in a minute",
                               retry_after=THROTTLE_BACKOFF)
        if "system_busy" in text or "system busy" in text or "problem with connection to main server" in text:
            return ApiUnavailable("Dynadot is busy or having trouble right now; try again in a few minutes")
        if "one request at a time" in text or "another request" in text or "concurrent" in text:
            return ApiUnavailable(BUSY)
        if "needs to be registered" in text:
            named = [h for h in nameservers or [] if h in text] or list(nameservers or [])
            return RegistrarFailure(
                f"Dynadot will only use the nameserver host{'s' if len(named) > 1 else ''} {', '.join(named)} once "
                f"{'they are' if len(named) > 1 else 'it is'} registered in your Dynadot account: register the "
                "nameserver hosts (with their IP addresses) in your Dynadot account first, then try again")
        quoted = clean_message(message, f"{key}:{secret}" if secret else key) or "no reason given"
        return RegistrarFailure(f"Dynadot refused the request: {quoted}")


__all__ = ["DynadotRegistrar", "LocalKeyLocks", "local_key_locks", "KeyLock"]
