"""A fake of a customer's Dynadot account behind ``api3.json``, for the nameserver flip.

A real HTTP server (``ThreadingHTTPServer`` on loopback in a daemon thread) so the whole
client stack -- requests, sockets, timeouts -- runs. Strict where Dynadot is (see
``/work/shared/docs/registrars.md`` §2–3 and ``dynadot.md``):

* ``GET /api3.json`` only (another method: 405, another path: 404); ``key`` and
  ``command`` in the query. Every answer is HTTP 200 with an envelope
  ``{"<Command>Response": {"ResponseCode": 0, "Status": "success", …}}``; an error carries
  ``"ResponseCode": "-1"``, ``"Status": "error"`` and ``Error``. A bad key and an unknown
  command answer in the generic ``{"Response": {…}}``.
* A parameter a command does not take -- ``secret`` above all, which belongs to the
  RESTful API and would only leak into logs -- or a repeated one is refused ("Invalid
  field in API request"), as the pool's fake does.
* **One request at a time per key**: a request arriving while another with the same key
  is in flight (its answer not yet on its way, or held by a ``timeout`` fault) is refused
  with :data:`CONCURRENT`. A client that serialises per key never meets it.
* Commands: ``domain_info`` (``domain``) → ``DomainInfo.NameServerSettings``: ``{"Type":
  "Name Servers", "NameServers": [{"ServerId", "ServerName"}, …]}`` for a domain on
  other name servers (the shape captured live), ``{"Type": "Dynadot Parking", "WithAds":
  "Yes"}`` / ``{"Type": "Dynadot DNS"}`` without a list otherwise; ``get_ns``
  (``domain``) → ``nsContent`` ``{"Host0": …}`` (Dynadot's JSON sample; for parking or
  Dynadot DNS the fake lists ``ns1/ns2.dyna-ns.net``, unverified); ``set_ns`` (``domain``,
  ``ns0``…``ns12`` from 0 without gaps) → the domain switches to "Name Servers";
  ``register_ns`` (``host``, ``ip``) and ``add_ns`` (``host``) make a host known to the
  account. Unknown domain: "could not find domain in your account". ``set_ns`` with a host
  the account does not know: "'<host>' needs to be registered with an ip address before
  it can be used." (the less forgiving reading: every unknown host, foreign ones too).

Faults (``inject(fault, times, route)``, ``route`` = a command name or None for any) act
before the command runs, so a failed ``set_ns`` changes nothing: ``http500`` (HTML 500),
``reset`` (connection dropped with an RST, no answer), ``timeout`` (held ``hang_seconds``
or until ``stop()``, then dropped; in flight meanwhile), ``badjson`` (200, HTML),
``raw`` (a given status and body), and Dynadot's own refusals, all at 200:
``throttle`` ("Too many requests…", generic envelope), ``system_busy``, ``main_server``
("problem with connection to main server"), ``concurrent`` (:data:`CONCURRENT`),
``invalid_key`` (generic envelope), ``not_in_account``, ``unknown_host`` (``set_ns``'s
refusal naming its ``ns0``).

Every request is recorded (:class:`Request`: method, path, query, headers, body).
Requests are counted in flight and can be held (``InFlightServer``): ``hold()`` /
``release()`` / ``wait_held()`` and ``latency`` let tests overlap requests without racing
the clock.
"""
from __future__ import annotations

import json
import re
from copy import deepcopy
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Iterable
from urllib.parse import parse_qsl, urlsplit

from .fake_server import Fault, InFlightServer

FAULTS = ("http500", "reset", "timeout", "badjson", "raw", "throttle", "system_busy", "main_server",
          "concurrent", "invalid_key", "not_in_account", "unknown_host", "trickle")

INVALID_FIELD = "Invalid field in API request"
INVALID_KEY = "invalid key"
NOT_IN_ACCOUNT = "could not find domain in your account"
THROTTLED = "Too many requests. Please try again in 1 minute after."
SYSTEM_BUSY = "system_busy"
MAIN_SERVER = "problem with connection to main server"
# The live text is not on record; this is the fake's wording of Dynadot's refusal.
CONCURRENT = "Only one request at a time is allowed for an API key; please try again later."
DYNADOT_NS = ["ns1.dyna-ns.net", "ns2.dyna-ns.net"]

_RESPONSE_NAMES = {"domain_info": "DomainInfoResponse", "get_ns": "GetNsResponse", "set_ns": "SetNsResponse",
                   "register_ns": "RegisterNsResponse", "add_ns": "AddNsResponse"}
_NS_PARAM = re.compile(r"^ns(0|[1-9][0-9]?)$")
_HOST = re.compile(r"^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))+$")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    pairs: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes

    @property
    def command(self) -> str:
        return self.query.get("command", "")


@dataclass
class _Fault(Fault):
    status: int = 200
    body: str = ""


@dataclass
class _Domain:
    ns_type: str
    nameservers: list[str]


@dataclass
class _Account:
    domains: dict[str, _Domain] = field(default_factory=dict)
    hosts: dict[str, list[str]] = field(default_factory=dict)  # known name server host -> IPs


class _ApiError(Exception):
    def __init__(self, message: str, envelope: str | None = None):
        super().__init__(message)
        self.message = message
        self.envelope = envelope


class FakeDynadot(InFlightServer):
    """``FakeDynadot().start()``; ``.url``; ``.seed(key, domain, nameservers)``,
    ``.register_host(key, host)``; ``.nameservers(key, domain)``; ``.calls``;
    ``.inject(fault, times, route)``; ``.latency``, ``.hang_seconds``; ``.hold()`` /
    ``.release()`` / ``.wait_held()``; ``.in_flight``, ``.max_in_flight_per_key``,
    ``.refused_concurrent``; ``stop()``."""

    server_name = "fake-dynadot-ns"
    api_path = "/api3.json"

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port)
        self.latency = 0.0
        self.hang_seconds = 30.0
        self.max_in_flight_per_key = 0
        self.refused_concurrent = 0
        self._accounts: dict[str, _Account] = {}
        self._next_id = 5262350

    # -- state ------------------------------------------------------------------------

    def add_account(self, key: str) -> None:
        with self._lock:
            self._accounts.setdefault(key, _Account())

    def seed(self, key: str, domain: str, nameservers: Iterable[str] | None = None,
             ns_type: str | None = None) -> None:
        """Put ``domain`` in the account of ``key`` (created if new): delegated to
        ``nameservers`` ("Name Servers"; the hosts become known to the account), or with
        none on Dynadot's parking (``ns_type`` "Dynadot Parking", or "Dynadot DNS")."""
        hosts = [h.strip().lower() for h in nameservers or []]
        kind = ns_type or ("Name Servers" if hosts else "Dynadot Parking")
        with self._lock:
            account = self._accounts.setdefault(key, _Account())
            account.domains[domain.strip().lower()] = _Domain(kind, hosts)
            for host in hosts:
                account.hosts.setdefault(host, [])

    def register_host(self, key: str, host: str, ips: Iterable[str] = ("192.0.2.53",)) -> None:
        """Make ``host`` a name server the account knows (what ``register_ns`` does)."""
        with self._lock:
            self._accounts.setdefault(key, _Account()).hosts[host.strip().lower()] = list(ips)

    def known_hosts(self, key: str) -> dict[str, list[str]]:
        with self._lock:
            return deepcopy(self._accounts[key].hosts)

    def nameservers(self, key: str, domain: str) -> list[str]:
        with self._lock:
            return list(self._accounts[key].domains[domain].nameservers)

    def ns_type(self, key: str, domain: str) -> str:
        with self._lock:
            return self._accounts[key].domains[domain].ns_type

    def commands(self) -> list[str]:
        return [c.command for c in self.calls]

    def reset_calls(self) -> None:
        super().reset_calls()
        with self._lock:
            self.max_in_flight_per_key = max(self._in_flight_by_key.values(), default=0)
            self.refused_concurrent = 0

    def inject(self, fault: str, times: int = 1, route: str | None = None, *, status: int = 200,
               body: str = "") -> None:
        """The next ``times`` requests (of command ``route``, or any) meet ``fault``."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
        with self._lock:
            self._faults.append(_Fault(fault, times, route, status, body))

    # -- HTTP -------------------------------------------------------------------------

    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        split = urlsplit(h.path)
        pairs = parse_qsl(split.query, keep_blank_values=True)
        params = dict(pairs)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length > 0 else b""
        key = params.get("key", "")
        before = self._count_in(h, Request(method, split.path, params, pairs, dict(h.headers.items()), body), key)
        busy = before > 0
        with self._lock:
            if busy:
                self.refused_concurrent += 1
            else:  # as many as were in flight with this key when it arrived
                self.max_in_flight_per_key = max(self.max_in_flight_per_key, before + 1)
        try:
            self._serve_counted(h, method, split.path, pairs, params, busy)
        finally:
            self._done(h)

    def _serve_counted(self, h: BaseHTTPRequestHandler, method: str, path: str, pairs: list[tuple[str, str]],
                       params: dict[str, str], busy: bool) -> None:
        command = params.get("command", "")
        envelope = _RESPONSE_NAMES.get(command, "Response")
        if busy:
            return self._send_json(h, 200, _error(envelope, CONCURRENT))
        if not self._wait_while_held("request"):
            return self._drop(h)
        if self.latency > 0 and self._stopping.wait(self.latency):
            return self._drop(h)
        if method != "GET":
            return self._send_json(h, 405, _error("Response", "only GET is supported"))
        if path != "/api3.json":
            return self._send_json(h, 404, _error("Response", "not found"))

        fault = self._take_fault(command)
        if fault is not None:
            kind = fault.kind
            if kind == "http500":
                return self._send(h, 500, b"<html><body><h1>500 Internal Server Error</h1></body></html>", "text/html")
            if kind == "reset":
                return self._reset(h)
            if kind == "timeout":
                self._stopping.wait(self.hang_seconds)
                return self._drop(h)
            if kind == "badjson":
                return self._send(h, 200, b"<html>Service temporarily unavailable</html>", "text/html")
            if kind == "raw":
                return self._send(h, fault.status, fault.body.encode(), "application/json")
            if kind == "trickle":  # the real answer, slowly (see FakeServer._trickle)
                return self._trickle(h, 200, json.dumps(self._run(command, pairs, params)).encode(),
                                     "application/json")
            message = {
                "throttle": THROTTLED, "system_busy": SYSTEM_BUSY, "main_server": MAIN_SERVER,
                "concurrent": CONCURRENT, "invalid_key": INVALID_KEY, "not_in_account": NOT_IN_ACCOUNT,
                "unknown_host": _unregistered(params.get("ns0", "ns1.example.net")),
            }[kind]
            generic = kind in ("throttle", "invalid_key")
            return self._send_json(h, 200, _error("Response" if generic else envelope, message))
        answer = self._run(command, pairs, params)
        if not self._wait_while_held("answer"):
            return self._drop(h)
        self._send_json(h, 200, answer)

    def _run(self, command: str, pairs: list[tuple[str, str]], params: dict[str, str]) -> dict[str, Any]:
        envelope = _RESPONSE_NAMES.get(command, "Response")
        with self._lock:
            account = self._accounts.get(params.get("key", ""))
        if account is None or not params.get("key"):
            return _error("Response", INVALID_KEY)
        if command not in _RESPONSE_NAMES:
            return _error("Response", "invalid command")
        if len(pairs) != len(params):
            return _error(envelope, INVALID_FIELD)
        try:
            return getattr(self, f"_{command}")(account, params)
        except _ApiError as exc:
            return _error(exc.envelope or envelope, exc.message)

    # -- commands (each checks its own parameter names) -------------------------------

    @staticmethod
    def _only(params: dict[str, str], allowed: set[str]) -> None:
        if set(params) - allowed - {"key", "command"}:
            raise _ApiError(INVALID_FIELD)  # `secret`, typos, ns13, ...

    def _domain(self, account: _Account, params: dict[str, str]) -> tuple[str, _Domain]:
        name = params.get("domain", "").strip().lower()
        if not name:
            raise _ApiError("domain is required")
        with self._lock:
            state = account.domains.get(name)
        if state is None:
            raise _ApiError(NOT_IN_ACCOUNT)
        return name, state

    def _domain_info(self, account: _Account, params: dict[str, str]) -> dict[str, Any]:
        self._only(params, {"domain"})
        name, state = self._domain(account, params)
        with self._lock:
            settings: dict[str, Any] = {"Type": state.ns_type}
            if state.ns_type == "Name Servers":
                settings["NameServers"] = [{"ServerId": str(5262350 + i), "ServerName": host}
                                           for i, host in enumerate(state.nameservers)]
            elif state.ns_type == "Dynadot Parking":
                settings["WithAds"] = "Yes"
        return {"DomainInfoResponse": {"ResponseCode": 0, "Status": "success", "DomainInfo": {
            "Name": name, "Expiration": "1893456000000", "Registration": "1577836800000",
            "NameServerSettings": settings, "Locked": "yes", "Disabled": "no", "Status": "active"}}}

    def _get_ns(self, account: _Account, params: dict[str, str]) -> dict[str, Any]:
        self._only(params, {"domain"})
        _, state = self._domain(account, params)
        with self._lock:
            hosts = list(state.nameservers) if state.ns_type == "Name Servers" else list(DYNADOT_NS)
        return {"GetNsResponse": {"ResponseCode": 0, "Status": "success",
                                  "nsContent": {f"Host{i}": host for i, host in enumerate(hosts)}}}

    def _set_ns(self, account: _Account, params: dict[str, str]) -> dict[str, Any]:
        indices = []
        for name in params:
            if name in ("key", "command", "domain"):
                continue
            match = _NS_PARAM.match(name)
            if match is None or int(match.group(1)) > 12:
                raise _ApiError(INVALID_FIELD)
            indices.append(int(match.group(1)))
        if sorted(indices) != list(range(len(indices))) or not indices:
            raise _ApiError("name servers must be given as ns0, ns1, ... without gaps")
        hosts = [params[f"ns{i}"].strip().lower() for i in range(len(indices))]
        bad = [h for h in hosts if not _HOST.match(h)]
        if bad:
            raise _ApiError(f"'{bad[0]}' is not a valid name server")
        _, state = self._domain(account, params)
        with self._lock:
            unknown = [h for h in hosts if h not in account.hosts]
            if unknown:
                raise _ApiError(_unregistered(unknown[0]))
            state.ns_type = "Name Servers"
            state.nameservers = hosts
        return {"SetNsResponse": {"ResponseCode": 0, "Status": "success"}}

    def _register_ns(self, account: _Account, params: dict[str, str]) -> dict[str, Any]:
        self._only(params, {"host", "ip"})
        host, ip = params.get("host", "").strip().lower(), params.get("ip", "").strip()
        if not _HOST.match(host) or not ip:
            raise _ApiError("host and ip are required")
        with self._lock:
            if host in account.hosts and account.hosts[host]:
                raise _ApiError(f"'{host}' is already registered")
            account.hosts[host] = [ip]
            self._next_id += 1
            server_id = str(self._next_id)
        return {"RegisterNsResponse": {"ResponseCode": 0, "Status": "success",
                                       "Server": {"Host": host, "ServerId": server_id}}}

    def _add_ns(self, account: _Account, params: dict[str, str]) -> dict[str, Any]:
        self._only(params, {"host"})
        host = params.get("host", "").strip().lower()
        if not _HOST.match(host):
            raise _ApiError("host is required")
        with self._lock:
            account.hosts.setdefault(host, [])
            self._next_id += 1
            server_id = str(self._next_id)
        return {"AddNsResponse": {"ResponseCode": 0, "Status": "success",
                                  "Server": {"Host": host, "ServerId": server_id}}}


def _unregistered(host: str) -> str:
    return f"'{host}' needs to be registered with an ip address before it can be used."


def _error(envelope: str, message: str) -> dict[str, Any]:
    return {envelope: {"ResponseCode": "-1", "Status": "error", "Error": message}}


__all__ = ["FakeDynadot", "Request", "FAULTS", "CONCURRENT", "INVALID_FIELD", "NOT_IN_ACCOUNT", "THROTTLED"]
