"""A fake of GoDaddy's Domains API (v1) on loopback, strict where GoDaddy is.

A real HTTP server (``FakeServer``: loopback, a daemon thread) so the adapter's whole
stack -- requests, sockets, timeouts -- is exercised. Seeded with accounts (API key and
secret, entitled to the Domains API or not) and their domains (status, nameservers); it
records every request (method, raw path, query, headers, body) and injects faults.

Routes (everything else: 404, or 405 for another method on a known path):

* ``GET /v1/domains`` -- the account's domains, sorted by name: ``statuses`` (comma
  separated or repeated), ``statusGroups``, ``limit`` (1-1000, default 1000; else 422),
  ``marker`` (domains after it), ``includes`` (``nameServers`` adds them), ``modifiedDate``.
  Unknown query parameters are refused with 400 (GoDaddy ignores them; the fake is
  stricter so a typo in a client shows).
* ``GET /v1/domains/{domain}`` -- the DomainDetail, ``nameServers`` included; 404
  ``NOT_FOUND`` for a domain not in the account (another account's, or none).
* ``PATCH /v1/domains/{domain}`` -- JSON (``Content-Type: application/json``) with the
  DomainUpdate fields ``locked nameServers renewAuto subaccountId exposeWhois consent``
  only (another field: 422 ``INVALID_BODY``); ``nameServers`` needs 2-13 host names
  (else 422); a domain whose status is not ``ACTIVE`` answers 409; success is 204 with no
  body and the new list (as sent, lower-cased) is what a GET shows at once.

Authentication on every route: ``Authorization: sso-key <key>:<secret>``. Missing: 401
``MISSING_CREDENTIALS``; not that shape: 401 ``MALFORMED_CREDENTIALS``; unknown key or
wrong secret: 401 ``UNABLE_TO_AUTHENTICATE``; an account that is not entitled (fewer than
10 domains, no Discount Domain Club): 403 ``ACCESS_DENIED`` "Authenticated user is not
allowed access" on every route (GoDaddy, since 2024). The exact codes of a missing or
malformed header are the fake's assumption; 401 is what matters.

Faults (``inject(fault, times, route)``; ``route`` is ``"list"``, ``"get"``, ``"patch"`` or
None for any) act before authentication and before the request runs, so a failed PATCH
changes nothing: ``unauthorized`` (401), ``access_denied`` (403 ACCESS_DENIED),
``forbidden`` (403 with another code), ``not_found`` (404 NOT_FOUND), ``conflict`` (409),
``unprocessable`` (422), ``throttle`` (429 with ``retryAfterSec``: ``retry_after``, None
leaves it out; ``headers`` adds e.g. Retry-After), ``http500`` (``status``, default 500,
HTML), ``reset`` (RST, no answer), ``timeout`` (held ``hang_seconds`` or until ``stop()``,
then dropped), ``badjson`` (200, not JSON) and ``raw`` (``status``, ``body``, ``headers``
verbatim). ``message`` overrides GoDaddy's message for the JSON faults.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pdm_app.testing.fake_server import FakeServer, Fault, drop, reset, send, serve_until_signalled

FAULTS = ("unauthorized", "access_denied", "forbidden", "not_found", "conflict", "unprocessable",
          "throttle", "http500", "reset", "timeout", "badjson", "raw")
ROUTES = ("list", "get", "patch")
UPDATE_FIELDS = frozenset({"locked", "nameServers", "renewAuto", "subaccountId", "exposeWhois", "consent"})
LIST_PARAMS = frozenset({"statuses", "statusGroups", "limit", "marker", "includes", "modifiedDate"})
INCLUDES = frozenset({"authCode", "contacts", "nameServers"})
STATUS_GROUPS = frozenset({"INACTIVE", "PRE_REGISTRATION", "REDEMPTION", "RENEWABLE", "VERIFICATION_ICANN", "VISIBLE"})

ACCESS_DENIED = "Authenticated user is not allowed access"
NOT_ELIGIBLE = "The given domain is not eligible to have its nameservers changed"
TWO_NAMESERVERS = "At least two apex (aka @) `nameServers` must be specified"
THROTTLED = "Too many requests received within interval"

_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")
_STATUS = re.compile(r"^[A-Z][A-Z_]*$")
_DOMAIN_PATH = re.compile(r"^/v1/domains/([^/]+)$")


@dataclass(frozen=True)
class Call:
    """One request as it arrived: ``path`` is the raw (percent-encoded) path."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: str

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class _Fault(Fault):
    status: int | None = None
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: int | None = 30
    message: str | None = None


@dataclass
class _Account:
    key: str
    secret: str
    shopper_id: str
    entitled: bool


@dataclass
class _Domain:
    name: str
    shopper_id: str
    domain_id: int
    status: str
    nameservers: list[str]
    locked: bool = True
    renew_auto: bool = True


class FakeGodaddy(FakeServer):
    """``FakeGodaddy().start()``; ``.url``, ``.add_account()``, ``.add_domain()``,
    ``.nameservers()``, ``.set_status()``, ``.calls``, ``.reset_calls()``, ``.inject()``,
    ``.clear_faults()``, ``.hang_seconds``; ``stop()`` refuses connections until the next
    ``start()`` (same port, same state)."""

    server_name = "FakeGodaddy"

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port)
        self.hang_seconds: float = 30.0
        self._accounts: dict[str, _Account] = {}
        self._domains: dict[str, _Domain] = {}
        self._next_id = 1000

    # -- state ------------------------------------------------------------------------

    def add_account(self, key: str, secret: str, *, entitled: bool = True, shopper_id: str | None = None) -> str:
        """An API key and its secret; ``entitled=False``: every call answers 403
        ACCESS_DENIED. Returns the shopper id."""
        with self._lock:
            shopper = shopper_id or str(100000 + len(self._accounts))
            self._accounts[key] = _Account(key, secret, shopper, entitled)
            return shopper

    def add_domain(self, key: str, domain: str, nameservers: list[str], *, status: str = "ACTIVE",
                   locked: bool = True) -> None:
        """Put ``domain`` in the account of ``key`` with ``nameservers`` kept as given
        (GoDaddy's case and order)."""
        with self._lock:
            self._next_id += 1
            self._domains[domain.strip().lower()] = _Domain(
                domain.strip().lower(), self._accounts[key].shopper_id, self._next_id, status,
                list(nameservers), locked)

    def nameservers(self, domain: str) -> list[str]:
        with self._lock:
            return list(self._domains[domain.strip().lower()].nameservers)

    def set_status(self, domain: str, status: str) -> None:
        with self._lock:
            self._domains[domain.strip().lower()].status = status

    def inject(self, fault: str, times: int = 1, route: str | None = None, *, status: int | None = None,
               body: str = "", headers: dict[str, str] | None = None, retry_after: int | None = 30,
               message: str | None = None) -> None:
        """Make the next ``times`` requests (of ``route``, or any) fail with ``fault``."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
        if route is not None and route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; one of {ROUTES}")
        with self._lock:
            self._faults.append(_Fault(fault, times, route, status, body, dict(headers or {}), retry_after, message))

    # -- HTTP -------------------------------------------------------------------------

    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        split = urlsplit(h.path)
        length = h.headers.get("Content-Length")
        raw = b""
        if length and length.isdigit():
            raw = h.rfile.read(int(length))
        body = raw.decode("utf-8", errors="replace")
        query = parse_qs(split.query, keep_blank_values=True)
        with self._lock:
            self._calls.append(Call(method, split.path, query, dict(h.headers.items()), body))

        route, domain = _route(split.path)
        if route is None:
            return _send_json(h, 404, {"code": "NOT_FOUND", "message": "Resource not found"})
        route = {("list", "GET"): "list", ("domain", "GET"): "get", ("domain", "PATCH"): "patch"}.get((route, method))
        if route is None:
            return _send_json(h, 405, {"code": "METHOD_NOT_ALLOWED", "message": f"{method} is not supported here"})

        fault = self._take_fault(route)
        if fault is not None:
            return self._fault(h, fault)

        account, refusal = self._authenticate(h.headers.get("Authorization"))
        if account is None:
            return _send_json(h, *(refusal or (401, {"code": "UNABLE_TO_AUTHENTICATE", "message": "Unauthorized"})))
        if route == "list":
            return _send_json(h, *self._list(account, query))
        if route == "get":
            return _send_json(h, *self._get(account, domain))
        status, payload = self._patch(account, domain, h.headers.get("Content-Type", ""), body)
        if status == 204:
            return send(h, 204, b"", None)  # GoDaddy's answer to a PATCH: no body, no type
        return _send_json(h, status, payload)

    def _fault(self, h: BaseHTTPRequestHandler, fault: _Fault) -> None:
        def error(status: int, code: str, message: str, **extra: Any) -> None:
            _send_json(h, status, {"code": code, "message": fault.message or message, **extra}, fault.headers)

        kind = fault.kind
        if kind == "unauthorized":
            return error(401, "UNABLE_TO_AUTHENTICATE", "Unauthorized : Could not authenticate API key/secret")
        if kind == "access_denied":
            return error(403, "ACCESS_DENIED", ACCESS_DENIED)
        if kind == "forbidden":
            return error(403, "FORBIDDEN", "Specified Subaccount not owned by authenticated Shopper")
        if kind == "not_found":
            return error(404, "NOT_FOUND", "The domain was not found")
        if kind == "conflict":
            return error(409, "CONFLICT", NOT_ELIGIBLE)
        if kind == "unprocessable":
            return error(422, "INVALID_BODY", "Failed to update nameservers")
        if kind == "throttle":
            extra = {} if fault.retry_after is None else {"retryAfterSec": fault.retry_after}
            return error(429, "TOO_MANY_REQUESTS", THROTTLED, **extra)
        if kind == "http500":
            status = fault.status or 500
            page = f"<html><body><h1>{status} Server Error</h1></body></html>".encode()
            return send(h, status, page, "text/html", fault.headers)
        if kind == "reset":
            return reset(h)
        if kind == "timeout":
            self._stopping.wait(self.hang_seconds)
            return drop(h)
        if kind == "badjson":
            return send(h, 200, b"<html>Service temporarily unavailable", "application/json", fault.headers)
        return send(h, fault.status or 200, fault.body.encode(), "application/json", fault.headers)

    def _authenticate(self, header: str | None) -> tuple[_Account | None, tuple[int, dict[str, Any]] | None]:
        if not header:
            return None, (401, {"code": "MISSING_CREDENTIALS", "message": "Unauthorized : Credentials must be specified"})
        scheme, _, credentials = header.partition(" ")
        key, colon, secret = credentials.partition(":")
        if scheme != "sso-key" or not colon or not key or not secret:
            return None, (401, {"code": "MALFORMED_CREDENTIALS",
                                "message": "Unauthorized : Could not parse API key/secret from auth header"})
        with self._lock:
            account = self._accounts.get(key)
        if account is None or account.secret != secret:
            return None, (401, {"code": "UNABLE_TO_AUTHENTICATE",
                                "message": "Unauthorized : Could not authenticate API key/secret"})
        if not account.entitled:
            return None, (403, {"code": "ACCESS_DENIED", "message": ACCESS_DENIED})
        return account, None

    def _owned(self, account: _Account, domain: str) -> _Domain | None:
        state = self._domains.get(domain.lower())
        return state if state is not None and state.shopper_id == account.shopper_id else None

    def _list(self, account: _Account, query: dict[str, list[str]]) -> tuple[int, Any]:
        unknown = sorted(set(query) - LIST_PARAMS)
        if unknown:
            return 400, {"code": "INVALID_QUERY", "message": f"Unknown query parameter `{unknown[0]}`"}
        if any(len(values) > 1 for name, values in query.items() if name in ("limit", "marker", "modifiedDate")):
            return 400, {"code": "INVALID_QUERY", "message": "`limit`, `marker` and `modifiedDate` take one value"}
        statuses = {s for v in query.get("statuses", []) for s in v.split(",") if s}
        groups = {g for v in query.get("statusGroups", []) for g in v.split(",") if g}
        includes = {i for v in query.get("includes", []) for i in v.split(",") if i}
        if not all(_STATUS.match(s) for s in statuses) or not groups <= STATUS_GROUPS:
            return 422, {"code": "INVALID_QUERY", "message": "`statuses` or `statusGroups` holds an unknown value"}
        if not includes <= INCLUDES:
            return 422, {"code": "INVALID_QUERY", "message": "`includes` holds an unknown value"}
        limit_text = query.get("limit", ["1000"])[0]
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
            return 422, {"code": "INVALID_QUERY", "message": "Limit must have a value no greater than 1000"}
        marker = query.get("marker", [""])[0].lower()
        with self._lock:
            mine = sorted((d for d in self._domains.values() if d.shopper_id == account.shopper_id),
                          key=lambda d: d.name)
            if statuses:
                mine = [d for d in mine if d.status in statuses]
            if groups:  # a domain in any of the groups; only VISIBLE and INACTIVE are modelled
                mine = [d for d in mine if _groups(d.status) & groups or not groups & {"VISIBLE", "INACTIVE"}]
            if marker:
                mine = [d for d in mine if d.name > marker]
            page = [_summary(d, with_ns="nameServers" in includes) for d in mine[: int(limit_text)]]
        return 200, page

    def _get(self, account: _Account, domain: str) -> tuple[int, Any]:
        with self._lock:
            state = self._owned(account, domain)
            if state is None:
                return 404, {"code": "NOT_FOUND", "message": f"Domain {domain} not found for shopper {account.shopper_id}"}
            return 200, _detail(state)

    def _patch(self, account: _Account, domain: str, content_type: str, body: str) -> tuple[int, Any]:
        if content_type.split(";")[0].strip().lower() != "application/json":
            return 415, {"code": "UNSUPPORTED_MEDIA_TYPE", "message": "Content-Type must be application/json"}
        try:
            update = json.loads(body)
        except ValueError:
            update = None
        if not isinstance(update, dict):
            return 400, {"code": "INVALID_BODY", "message": "Request was malformed"}
        extra = sorted(set(update) - UPDATE_FIELDS)
        if extra:
            return 422, {"code": "INVALID_BODY", "message": "Request body doesn't fulfill schema, see details in `fields`",
                         "fields": [{"code": "UNEXPECTED_PROPERTY", "path": f"body.{extra[0]}",
                                     "message": f"`{extra[0]}` is not a DomainUpdate field"}]}
        servers = update.get("nameServers")
        if servers is not None:
            if not isinstance(servers, list) or not all(isinstance(s, str) for s in servers):
                return 422, {"code": "INVALID_BODY", "message": "`nameServers` must be a list of host names"}
            if len(servers) < 2:
                return 422, {"code": "INVALID_BODY", "message": TWO_NAMESERVERS}
            if len(servers) > 13 or not all(_HOST.match(s.lower()) for s in servers):
                return 422, {"code": "INVALID_BODY", "message": "Failed to update nameservers"}
        with self._lock:
            state = self._owned(account, domain)
            if state is None:
                return 404, {"code": "NOT_FOUND", "message": f"Domain {domain} not found for shopper {account.shopper_id}"}
            if state.status != "ACTIVE":
                return 409, {"code": "CONFLICT", "message": NOT_ELIGIBLE}
            if servers is not None:
                state.nameservers = [s.lower() for s in servers]
            if isinstance(update.get("locked"), bool):
                state.locked = update["locked"]
            if isinstance(update.get("renewAuto"), bool):
                state.renew_auto = update["renewAuto"]
        return 204, None


def _route(path: str) -> tuple[str | None, str]:
    """("list", "") or ("domain", name) for the raw path; (None, "") for anything else."""
    if path == "/v1/domains":
        return "list", ""
    match = _DOMAIN_PATH.match(path)
    if match is None:
        return None, ""
    name = unquote(match.group(1))
    if "/" in name or not name or name in (".", ".."):
        return None, ""
    return "domain", name


def _groups(status: str) -> set[str]:
    gone = status.startswith(("CANCELLED", "TRANSFERRED", "EXPIRED", "CONFISCATED"))
    return {"INACTIVE"} if gone else {"VISIBLE"}


def _summary(d: _Domain, *, with_ns: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "domain": d.name, "domainId": d.domain_id, "status": d.status, "locked": d.locked,
        "renewAuto": d.renew_auto, "privacy": False, "expirationProtected": False, "holdRegistrar": False,
        "transferProtected": False, "createdAt": "2020-01-01T00:00:00.000Z",
        "expires": "2030-01-01T00:00:00.000Z", "renewDeadline": "2030-02-15T00:00:00.000Z",
    }
    if with_ns:
        out["nameServers"] = list(d.nameservers)
    return out


def _detail(d: _Domain) -> dict[str, Any]:
    return {**_summary(d, with_ns=True), "renewable": True, "subaccountId": None,
            "contactRegistrant": {"nameFirst": "Pat", "nameLast": "Example"}}


def _send_json(h: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
    send(h, status, json.dumps(payload).encode(), "application/json", headers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake GoDaddy Domains API for local development")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8083)
    parser.add_argument("--key", default="dev-key")
    parser.add_argument("--secret", default="dev-secret")
    parser.add_argument("--domains", default="acme.example", help="comma-separated domains of the account")
    parser.add_argument("--not-entitled", action="store_true", help="answer 403 ACCESS_DENIED like a small account")
    args = parser.parse_args(argv)
    fake = FakeGodaddy(host=args.host, port=args.port)
    fake.add_account(args.key, args.secret, entitled=not args.not_entitled)
    for domain in [d.strip().lower() for d in args.domains.split(",") if d.strip()]:
        fake.add_domain(args.key, domain, ["ns01.domaincontrol.com", "ns02.domaincontrol.com"])
    return serve_until_signalled(fake, "fake GoDaddy", f" (domains: {args.domains})")


if __name__ == "__main__":
    sys.exit(main())
