"""A fake of Cloudflare's API v4 on loopback, for the bring-your-own-domain adapter.

A real HTTP server on loopback (``pdm_app.testing.fake_server.FakeServer``) so the adapter's whole
stack -- requests, sockets, timeouts -- is exercised. ``FakeCloudflare().start()``;
``.url`` is the base URL (``http://127.0.0.1:<port>/client/v4``, like the real
``https://api.cloudflare.com/client/v4``).

What it serves (``/work/shared/docs/registrars.md`` §2-3, Cloudflare):

* ``GET /user/tokens/verify`` -- ``result {id, status}``, status ``active``, ``disabled``
  or ``expired``; success carries ``messages [{10000, "This API Token is valid and
  active"}]`` as Cloudflare's does. An account-owned token is refused here (401, 1000
  "Invalid API Token") and verifies at ``GET /accounts/{account_id}/tokens/verify``.
* ``GET /zones`` -- filters ``name`` (exact, case-insensitive), ``status``, ``account.id``,
  ``account.name``; ``page``/``per_page`` (5-50, default 20); ``result_info``. Unknown
  parameters are refused (400).
* ``GET /zones/{id}`` -- the zone object, ``name_servers`` among its fields.
* ``PATCH /zones/{id}`` -- JSON object with exactly one of ``paused``, ``type``,
  ``vanity_name_servers`` (Business and Enterprise plans only). ``name_servers`` is
  read-only: a body carrying it (or any other field) is refused, 400 code 1086 "Invalid
  property", and nothing changes. Needs ``Content-Type: application/json`` (6105) and a
  token with edit rights (403 9109).

Every answer is the full envelope ``{success, errors, messages, result}``. Auth is a
bearer token: no ``Authorization`` header is 400 9106; a header that is not ``Bearer
<token>`` (token characters ``A-Za-z0-9_-``) is 400 6003 with ``error_chain`` 6111; an
unknown, disabled or expired token is 403 9109 "Invalid access token" on the zone routes
(the answer certbot's users report) and 401 1000 "Invalid API Token" on the verify routes
-- except that the verify routes answer a disabled or expired token of theirs with 200 and
its status. A token sees the zones of its account, or only the ``zones`` it was given.
Unknown paths are 404 7000, other methods 405 7001, an id that is not 32 hex digits 404
7003. Codes 1086 (its message for ``name_servers``), 1085, 1088, 6105 and the 400 for an
unknown query parameter are the fake's best guess, not confirmed answers.

Faults (``inject(fault, times, route)``; routes ``verify``, ``account_verify``, ``zones``,
``zone``, ``zone_edit``, or None for any), applied in the order injected:

* ``unauthorized`` 401 + 10000 "Authentication error"; ``forbidden`` 403 + 9109
  "Unauthorized to access requested resource"; ``unsuccessful`` 200 with ``success:
  false`` (``code``/``message``, default 10000); ``bad_request`` 400 envelope (default
  6007 "Malformed JSON in request body"); ``throttle`` 429 + 971 with ``Retry-After``
  (``retry_after``, None for no header) -- any of them with ``status``/``code``/``message``
  overridden;
* ``empty_zones`` (``zones`` only: an empty list), ``disabled`` / ``expired`` (verify
  routes only: the token's status reads so) -- these act after the auth check;
* common: ``http500`` (an HTML page, ``status`` default 500), ``drop`` (the connection
  closed with no answer), ``reset`` (an RST), ``timeout`` (held ``hang_seconds`` or until
  ``stop()``, then dropped), ``malformed`` (200, not JSON), ``raw`` (``status``, ``body``,
  ``headers`` verbatim).

Every request is recorded (``calls``: method, path, query, headers, body, route) before
anything else happens, so a test can assert what was sent -- including the token, which
belongs in the ``Authorization`` header only. The fake never prints a request.
"""
from __future__ import annotations

import json
import re
import uuid
from copy import deepcopy
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pdm_app.testing.fake_server import FakeServer, Fault, drop, reset, send

PREFIX = "/client/v4"
ROUTES = ("verify", "account_verify", "zones", "zone", "zone_edit")
FAULTS = ("unauthorized", "forbidden", "unsuccessful", "bad_request", "throttle", "empty_zones",
          "disabled", "expired", "http500", "drop", "reset", "timeout", "malformed", "raw")
# Faults that act after the request is authenticated, and the routes they apply to.
_LATE_FAULTS = {"empty_zones": ("zones",), "disabled": ("verify", "account_verify"),
                "expired": ("verify", "account_verify")}
_ENVELOPE_FAULTS = {
    "unauthorized": (401, 10000, "Authentication error"),
    "forbidden": (403, 9109, "Unauthorized to access requested resource"),
    "unsuccessful": (200, 10000, "Authentication error"),
    "bad_request": (400, 6007, "Malformed JSON in request body"),
    "throttle": (429, 971, "Please wait and consider throttling your request speed"),
}
ZONE_LIST_PARAMS = frozenset({"name", "status", "account.id", "account.name", "page", "per_page",
                              "order", "direction", "match", "type"})
EDITABLE = frozenset({"paused", "type", "vanity_name_servers"})
TOKEN_STATUSES = ("active", "disabled", "expired")

_BEARER = re.compile(r"Bearer ([A-Za-z0-9_-]{1,200})")
_ID = re.compile(r"[0-9a-f]{32}")
_HOST = re.compile(r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+")
_NS_NAMES = ("ada", "bob", "cleo", "dave", "elle", "finn", "gina", "hugh", "ivy", "jack")
_ZONE_ROUTE = re.compile(r"/zones/([^/]+)")
_ACCOUNT_VERIFY = re.compile(r"/accounts/([^/]+)/tokens/verify")


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: str
    route: str | None


@dataclass
class _Fault(Fault):
    status: int | None = None
    code: int | None = None
    message: str | None = None
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: str | None = "300"


@dataclass
class _Token:
    id: str
    account: str
    status: str
    owner: str
    zones: frozenset[str] | None
    edit: bool


@dataclass
class _Zone:
    id: str
    name: str
    account: str
    status: str
    plan: str
    name_servers: list[str]
    original_name_servers: list[str]
    paused: bool = False
    type: str = "full"
    vanity_name_servers: list[str] = field(default_factory=list)


class FakeCloudflare(FakeServer):
    """See the module text. ``add_token()``, ``add_zone()``, ``zone()``, ``calls``,
    ``reset_calls()``, ``inject()``, ``clear_faults()``, ``hang_seconds``; ``stop()``
    refuses connections until the next ``start()`` (same port, same state)."""

    server_name = "fake-cloudflare"
    api_path = PREFIX

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port)
        self.hang_seconds: float = 30.0
        self._accounts: dict[str, str] = {}  # name -> id
        self._tokens: dict[str, _Token] = {}
        self._zones: dict[str, _Zone] = {}  # id -> zone

    # -- state ------------------------------------------------------------------------

    def account_id(self, account: str = "main") -> str:
        with self._lock:
            return self._account_id(account)

    def _account_id(self, account: str) -> str:
        if account not in self._accounts:
            self._accounts[account] = uuid.uuid4().hex
        return self._accounts[account]

    def add_token(self, token: str, *, account: str = "main", status: str = "active", owner: str = "user",
                  zones: list[str] | None = None, edit: bool = True) -> str:
        """A token of ``account``: ``owner`` "user" (verifies at /user/tokens/verify) or
        "account" (at /accounts/{id}/tokens/verify only); it sees every zone of its account,
        or only ``zones``. Returns the token's id."""
        if status not in TOKEN_STATUSES:
            raise ValueError(f"status must be one of {TOKEN_STATUSES}")
        if owner not in ("user", "account"):
            raise ValueError("owner must be 'user' or 'account'")
        with self._lock:
            account_id = self._account_id(account)
            token_id = uuid.uuid4().hex
            visible = None if zones is None else frozenset(z.strip().lower() for z in zones)
            self._tokens[token] = _Token(token_id, account_id, status, owner, visible, edit)
            return token_id

    def set_token_status(self, token: str, status: str) -> None:
        if status not in TOKEN_STATUSES:
            raise ValueError(f"status must be one of {TOKEN_STATUSES}")
        with self._lock:
            self._tokens[token].status = status

    def add_zone(self, name: str, name_servers: list[str] | None = None, *, account: str = "main",
                 status: str = "active", plan: str = "free",
                 original_name_servers: list[str] | None = None) -> str:
        """A zone of ``account`` served by ``name_servers`` (default: two Cloudflare
        assigns, ``<name>.ns.cloudflare.com``). Returns its id."""
        with self._lock:
            account_id = self._account_id(account)
            zone_id = uuid.uuid4().hex
            if name_servers is None:
                first = len(self._zones) * 2 % len(_NS_NAMES)
                name_servers = [f"{_NS_NAMES[first]}.ns.cloudflare.com",
                                f"{_NS_NAMES[first + 1]}.ns.cloudflare.com"]
            self._zones[zone_id] = _Zone(
                zone_id, name.strip().lower(), account_id, status, plan, list(name_servers),
                list(original_name_servers or ["ns1.previous-host.example", "ns2.previous-host.example"]))
            return zone_id

    def zone(self, name_or_id: str) -> dict[str, Any]:
        """The zone object as ``GET /zones/{id}`` shows it."""
        with self._lock:
            zone = self._zones.get(name_or_id) or next(
                z for z in self._zones.values() if z.name == name_or_id.strip().lower())
            return self._shown(zone)

    def inject(self, fault: str, times: int = 1, route: str | None = None, *, status: int | None = None,
               code: int | None = None, message: str | None = None, body: str = "",
               headers: dict[str, str] | None = None, retry_after: str | None = "300") -> None:
        """Make the next ``times`` requests of ``route`` (or of any) fail with ``fault``."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
        if route is not None and route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; one of {ROUTES}")
        with self._lock:
            self._faults.append(_Fault(fault, times, route, status, code, message, body,
                                       dict(headers or {}), retry_after))

    def _take_fault(self, route: str | None, late: bool) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times <= 0 or fault.route not in (None, route):
                    continue
                if (fault.kind in _LATE_FAULTS) != late:
                    continue
                if late and route not in _LATE_FAULTS[fault.kind]:
                    continue
                fault.times -= 1
                return fault
        return None

    # -- HTTP -------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        handler = super()._handler_class()
        handler.server_version = "cloudflare"
        handler.protocol_version = "HTTP/1.1"
        # Headers and body in one segment, sent at once (no Nagle / delayed-ACK stall).
        handler.wbufsize = -1
        handler.disable_nagle_algorithm = True
        return handler

    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        split = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw_body = h.rfile.read(length) if length > 0 else b""
        path = split.path
        route = _route(method, path)
        call = Call(method, path, parse_qsl(split.query, keep_blank_values=True),
                    {k: v for k, v in h.headers.items()}, raw_body.decode("utf-8", "replace"), route)
        with self._lock:
            self._calls.append(call)

        if route is None:
            if _route("GET", path) is not None or _route("PATCH", path) is not None:
                return self._send_error(h, 405, 7001, f"Method {method} not available for that URI.")
            return self._send_error(h, 404, 7000, "No route for that URI")

        fault = self._take_fault(route, late=False)
        if fault is not None:
            return self._early_fault(h, fault)

        token, refusal = self._authenticate(h, route)
        if token is None:
            return self._send_error(h, *(refusal or (500, 10001, "internal error", None)))
        try:
            if route in ("verify", "account_verify"):
                return self._verify(h, token, route, path)
            if route == "zones":
                return self._list_zones(h, token, call.query)
            zone, refusal = self._visible_zone(token, path, call.query)
            if zone is None:
                return self._send_error(h, *(refusal or (500, 10001, "internal error", None)))
            if route == "zone":
                with self._lock:
                    shown = self._shown(zone)
                return self._send_ok(h, shown)
            return self._edit_zone(h, token, zone, call)
        except _Refusal as refused:
            return self._send_error(h, refused.status, refused.code, refused.message)

    def _early_fault(self, h: BaseHTTPRequestHandler, fault: _Fault) -> None:
        if fault.kind in _ENVELOPE_FAULTS:
            status, code, message = _ENVELOPE_FAULTS[fault.kind]
            headers = dict(fault.headers)
            if fault.kind == "throttle" and fault.retry_after is not None:
                headers.setdefault("Retry-After", fault.retry_after)
            return self._send_error(h, fault.status or status, fault.code or code, fault.message or message,
                                    headers=headers)
        if fault.kind == "http500":
            page = b"<html><head><title>500 Internal Server Error</title></head><body>cloudflare</body></html>"
            return self._send(h, fault.status or 500, page, "text/html")
        if fault.kind == "drop":
            return drop(h)
        if fault.kind == "reset":
            return reset(h)
        if fault.kind == "timeout":
            self._stopping.wait(self.hang_seconds)
            return drop(h)
        if fault.kind == "malformed":
            return self._send(h, 200, b'{"success": true, "result": {"status": "act', "application/json")
        return self._send(h, fault.status or 200, fault.body.encode(), "application/json", fault.headers)

    def _authenticate(self, h: BaseHTTPRequestHandler,
                      route: str) -> tuple[_Token | None, tuple[int, int, str, Any] | None]:
        header = h.headers.get("Authorization")
        if header is None:
            return None, (400, 9106, "Missing X-Auth-Key, X-Auth-Email or Authorization headers", None)
        match = _BEARER.fullmatch(header)
        if match is None:
            return None, (400, 6003, "Invalid request headers",
                          [{"code": 6111, "message": "Invalid format for Authorization header"}])
        with self._lock:
            token = deepcopy(self._tokens.get(match.group(1)))
        verifying = route in ("verify", "account_verify")
        if token is None or (not verifying and token.status != "active"):
            if verifying:
                return None, (401, 1000, "Invalid API Token", None)
            return None, (403, 9109, "Invalid access token", None)
        return token, None

    def _verify(self, h: BaseHTTPRequestHandler, token: _Token, route: str, path: str) -> None:
        if route == "verify" and token.owner != "user":
            return self._send_error(h, 401, 1000, "Invalid API Token")
        if route == "account_verify":
            account_id = _ACCOUNT_VERIFY.fullmatch(path[len(PREFIX):]).group(1)  # type: ignore[union-attr]
            if not _ID.fullmatch(account_id):
                return self._send_error(h, 404, 7003, f"Could not route to {path}, perhaps your object "
                                                      "identifier is invalid?")
            if token.owner != "account" or token.account != account_id:
                return self._send_error(h, 401, 1000, "Invalid API Token")
        status = token.status
        fault = self._take_fault(route, late=True)
        if fault is not None:
            status = fault.kind
        result = {"id": token.id, "status": status}
        message = "This API Token is valid and active" if status == "active" else f"This API Token is {status}"
        self._send_json(h, 200, {"success": True, "errors": [], "messages": [{"code": 10000, "message": message}],
                                 "result": result})

    def _list_zones(self, h: BaseHTTPRequestHandler, token: _Token, query: list[tuple[str, str]]) -> None:
        params = dict(query)
        unknown = [k for k, _ in query if k not in ZONE_LIST_PARAMS]
        if unknown or len(params) != len(query):
            name = unknown[0] if unknown else next(k for k in params if sum(q == k for q, _ in query) > 1)
            raise _Refusal(400, 6007, f"Unknown or repeated query parameter: {name}")
        try:
            page = int(params.get("page", "1"))
            per_page = int(params.get("per_page", "20"))
        except ValueError:
            raise _Refusal(400, 6007, "page and per_page must be numbers") from None
        if page < 1 or not 5 <= per_page <= 50:
            raise _Refusal(400, 6007, "per_page must be between 5 and 50")
        with self._lock:
            zones = [z for z in self._zones.values() if _visible(token, z)]
            if "name" in params:
                zones = [z for z in zones if z.name == params["name"].strip().lower()]
            if "status" in params:
                zones = [z for z in zones if z.status == params["status"]]
            if "account.id" in params:
                zones = [z for z in zones if z.account == params["account.id"]]
            if "account.name" in params:
                names = {i: n for n, i in self._accounts.items()}
                zones = [z for z in zones if names.get(z.account) == params["account.name"]]
            zones.sort(key=lambda z: z.name)
            shown = [self._shown(z) for z in zones]
        if self._take_fault("zones", late=True) is not None:
            shown = []
        page_items = shown[(page - 1) * per_page: page * per_page]
        info = {"page": page, "per_page": per_page, "count": len(page_items), "total_count": len(shown),
                "total_pages": max(1, -(-len(shown) // per_page))}
        self._send_json(h, 200, {"success": True, "errors": [], "messages": [], "result": page_items,
                                 "result_info": info})

    def _visible_zone(self, token: _Token, path: str,
                      query: list[tuple[str, str]]) -> tuple[_Zone | None, tuple[int, int, str, Any] | None]:
        zone_id = _ZONE_ROUTE.fullmatch(path[len(PREFIX):]).group(1)  # type: ignore[union-attr]
        invalid = (404, 7003, f"Could not route to {path}, perhaps your object identifier is invalid?", None)
        if not _ID.fullmatch(zone_id):
            return None, invalid
        if query:
            return None, (400, 6007, f"Unknown query parameter: {query[0][0]}", None)
        with self._lock:
            zone = self._zones.get(zone_id)
            if zone is None:
                return None, invalid
            if not _visible(token, zone):
                return None, (403, 9109, "Unauthorized to access requested resource", None)
            return zone, None

    def _edit_zone(self, h: BaseHTTPRequestHandler, token: _Token, zone: _Zone, call: Call) -> None:
        if not token.edit:
            raise _Refusal(403, 9109, "Unauthorized to access requested resource")
        ctype = (call.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise _Refusal(400, 6105, "Invalid Content-Type header, valid values are application/json,"
                                      "multipart/form-data")
        try:
            body = json.loads(call.body)
        except ValueError:
            raise _Refusal(400, 6007, "Malformed JSON in request body") from None
        if not isinstance(body, dict) or not body:
            raise _Refusal(400, 6007, "Malformed JSON in request body")
        refused = [k for k in body if k not in EDITABLE]
        if refused:
            # name_servers among them: Cloudflare assigns a zone's nameservers.
            raise _Refusal(400, 1086, "Invalid property" if refused[0] != "name_servers"
                           else "Invalid property: name_servers cannot be modified")
        if len(body) > 1:
            raise _Refusal(400, 1085, "Only one zone property can be changed at a time.")
        key, value = next(iter(body.items()))
        with self._lock:
            if key == "paused":
                if not isinstance(value, bool):
                    raise _Refusal(400, 1086, "Invalid property")
                zone.paused = value
            elif key == "type":
                if value not in ("full", "partial", "secondary", "internal"):
                    raise _Refusal(400, 1086, "Invalid property")
                zone.type = value
            else:
                if zone.plan not in ("business", "enterprise"):
                    raise _Refusal(400, 1088, "Vanity name servers are only available on Business and "
                                              "Enterprise plans")
                if not (isinstance(value, list) and all(isinstance(v, str) and _HOST.fullmatch(v) for v in value)):
                    raise _Refusal(400, 1086, "Invalid property")
                zone.vanity_name_servers = list(value)
            shown = self._shown(zone)
        self._send_ok(h, shown)

    def _shown(self, zone: _Zone) -> dict[str, Any]:
        """The zone object (caller holds the lock)."""
        account_name = next((n for n, i in self._accounts.items() if i == zone.account), "")
        shown: dict[str, Any] = {
            "id": zone.id,
            "name": zone.name,
            "status": zone.status,
            "paused": zone.paused,
            "type": zone.type,
            "development_mode": 0,
            "name_servers": list(zone.name_servers),
            "original_name_servers": list(zone.original_name_servers),
            "original_registrar": None,
            "original_dnshost": None,
            "created_on": "2024-01-02T03:04:05.000000Z",
            "modified_on": "2024-01-02T03:04:05.000000Z",
            "activated_on": "2024-01-02T03:14:05.000000Z" if zone.status == "active" else None,
            "meta": {"step": 2, "phishing_detected": False},
            "owner": {"id": None, "type": "user", "email": None},
            "account": {"id": zone.account, "name": account_name},
            "permissions": ["#zone:read", "#dns_records:read"],
            "plan": {"id": uuid.uuid5(uuid.NAMESPACE_DNS, zone.plan).hex, "name": zone.plan.title() + " Website",
                     "legacy_id": zone.plan},
        }
        if zone.plan in ("business", "enterprise"):
            shown["vanity_name_servers"] = list(zone.vanity_name_servers)
        return shown

    def _send_ok(self, h: BaseHTTPRequestHandler, result: Any) -> None:
        self._send_json(h, 200, {"success": True, "errors": [], "messages": [], "result": result})

    def _send_error(self, h: BaseHTTPRequestHandler, status: int, code: int, message: str,
                    chain: Any = None, *, headers: dict[str, str] | None = None) -> None:
        error: dict[str, Any] = {"code": code, "message": message}
        if chain:
            error["error_chain"] = chain
        self._send_json(h, status, {"success": False, "errors": [error], "messages": [], "result": None},
                        headers)

    def _send_json(self, h: BaseHTTPRequestHandler, status: int, payload: dict[str, Any],
                   headers: dict[str, str] | None = None) -> None:
        self._send(h, status, json.dumps(payload).encode(), "application/json", headers)

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str,
              headers: dict[str, str] | None = None) -> None:
        send(h, status, body, ctype, {"CF-RAY": uuid.uuid4().hex[:16] + "-AMS", **(headers or {})})
        try:
            h.wfile.flush()  # the handler's output is buffered (wbufsize)
        except OSError:
            pass  # the client gave up


class _Refusal(Exception):
    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _route(method: str, path: str) -> str | None:
    if not path.startswith(PREFIX + "/"):
        return None
    rest = path[len(PREFIX):]
    if rest == "/user/tokens/verify":
        return "verify" if method == "GET" else None
    if _ACCOUNT_VERIFY.fullmatch(rest):
        return "account_verify" if method == "GET" else None
    if rest == "/zones":
        return "zones" if method == "GET" else None
    if _ZONE_ROUTE.fullmatch(rest):
        return {"GET": "zone", "PATCH": "zone_edit"}.get(method)
    return None


def _visible(token: _Token, zone: _Zone) -> bool:
    return zone.account == token.account and (token.zones is None or zone.name in token.zones)
