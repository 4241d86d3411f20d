"""A fake of OVHcloud's API (``/1.0``) on loopback, strict where OVH is, for the
bring-your-own-domain adapter (``ovh.py``).

A real HTTP server (``ThreadingHTTPServer`` in a daemon thread), so the adapter's whole
stack -- requests, sockets, timeouts -- is exercised. It keeps accounts (credentials:
application key + secret, consumer keys with a status and access rules) and their domains
with nameservers, checks every signed request like OVH, records every request, and injects
faults per route.

Authentication, in this order (answers as OVH's clients report them):

* unknown ``X-Ovh-Application`` -> 403 ``INVALID_KEY``;
* missing or unknown ``X-Ovh-Consumer`` for that application -> 403 ``NOT_CREDENTIAL``;
* ``X-Ovh-Timestamp`` missing or more than ``time_window`` seconds from the fake's clock
  (``time.time() + clock_offset``: tests put the fake's clock far from the local one, so a
  client that signs with its local time fails) -> 400 ``QUERY_TIME_OUT``;
* ``X-Ovh-Signature`` not ``"$1$" + sha1(AS+"+"+CK+"+"+METHOD+"+"+URL+"+"+BODY+"+"+TS)``
  over the URL as received (``http://host:port/1.0/...?query``) and the exact body bytes
  -> 400 ``INVALID_SIGNATURE``;
* consumer key not ``validated`` (pending, expired, revoked) -> 403 ``INVALID_CREDENTIAL``;
* no access rule (``METHOD`` + path, ``*`` a wildcard) for the call -> 403 ``NOT_GRANTED_CALL``.

Routes (under ``/1.0``): ``GET /auth/time`` (unsigned: an integer), ``GET /domain`` (the
account's domain names), ``GET``/``PUT /domain/{d}`` (PUT takes ``nameServerType`` and
``transferLockStatus`` only; answers ``null``), ``POST /domain/{d}/nameServers/update``
(``{"nameServers":[{"host", "ip"?}]}`` -> a ``domain.Task``; refused while the domain
uses OVH's hosted DNS: switch to ``external`` first -- an assumption, the less forgiving
answer), ``GET /domain/{d}/nameServer`` (ids), ``GET /domain/{d}/nameServer/{id}``
(``{"id","host","ip","isUsed","toDelete"}``), ``GET /domain/{d}/task/{id}``. A domain of
another account, or none, is 404 ``{"class":"Client::NotFound"}``.

The update is asynchronous as at OVH: the task stays ``todo`` and the list does not
change until the test calls ``complete_tasks()``; a task marked by the ``task_error``
fault ends in ``error`` and changes nothing.

Faults (``inject(fault, times, route)``; ``route`` one of ``ROUTES`` or None for any)
act before authentication: ``http500``, ``drop`` (connection closed, no answer),
``timeout`` (held ``hang_seconds`` or until ``stop()``, then dropped), ``badjson`` (200,
not JSON), ``rate`` (429, with ``Retry-After`` when ``retry_after`` is given),
``stale`` / ``invalid_key`` / ``invalid_credential`` / ``not_credential`` /
``not_granted`` / ``forbidden`` / ``invalid_signature`` (OVH's answer for each),
``not_found`` (404 ``Client::NotFound``), ``raw`` (a given status and body) -- and
``task_error``, which lets the request through and makes the task it creates end in
``error``.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

from pdm_app.testing.fake_server import FakeServer, Fault, drop, send

ROUTES = ("time", "domains", "domain", "domain.put", "update", "nameservers", "nameserver", "task")
FAULTS = ("http500", "drop", "timeout", "badjson", "rate", "stale", "invalid_key", "invalid_credential",
          "not_credential", "not_granted", "forbidden", "invalid_signature", "not_found", "raw", "task_error")
ALL_RIGHTS = (("GET", "/*"), ("POST", "/*"), ("PUT", "/*"), ("DELETE", "/*"))
DOMAIN_RIGHTS = (("GET", "/domain"), ("GET", "/domain/*"), ("PUT", "/domain/*"), ("POST", "/domain/*"))

_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")


def _err(code: str, http: str, message: str) -> dict[str, str]:
    return {"errorCode": code, "httpCode": http, "message": message}


ANSWERS: dict[str, tuple[int, dict[str, str]]] = {
    "invalid_key": (403, _err("INVALID_KEY", "403 Forbidden", "Invalid application key")),
    "not_credential": (403, _err("NOT_CREDENTIAL", "403 Forbidden", "This credential does not exist")),
    "invalid_credential": (403, _err("INVALID_CREDENTIAL", "403 Forbidden", "This credential is not valid")),
    "not_granted": (403, _err("NOT_GRANTED_CALL", "403 Forbidden", "This call has not been granted")),
    "forbidden": (403, _err("FORBIDDEN", "403 Forbidden", "This call is forbidden")),
    "invalid_signature": (400, _err("INVALID_SIGNATURE", "400 Bad Request", "Invalid signature")),
    "stale": (400, _err("QUERY_TIME_OUT", "400 Bad Request", "Query out of time")),
}


@dataclass
class Request:
    """One request as the fake received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    route: str | None


@dataclass
class _Fault(Fault):
    status: int = 200
    body: str = ""
    retry_after: float | None = None


@dataclass
class _Consumer:
    account: str
    status: str
    rules: tuple[tuple[str, str], ...]


@dataclass
class _App:
    secret: str
    consumers: dict[str, _Consumer] = field(default_factory=dict)


@dataclass
class _Domain:
    account: str
    ns_type: str
    nameservers: list[tuple[int, str]]  # (id, host)
    lock: str = "locked"


@dataclass
class _Task:
    id: int
    domain: str
    hosts: list[str]
    status: str = "todo"
    fails: bool = False
    created: str = ""
    done: str | None = None


class _Refused(Exception):
    def __init__(self, status: int, payload: Any):
        super().__init__(status)
        self.status = status
        self.payload = payload


def _not_found(message: str) -> _Refused:
    return _Refused(404, {"class": "Client::NotFound", "message": message})


def _bad_request(message: str) -> _Refused:
    return _Refused(400, {"class": "Client::BadRequest", "message": message})


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class FakeOvh(FakeServer):
    """``FakeOvh().start()``; ``.url`` (``http://127.0.0.1:<port>/1.0``), ``.add_app()``,
    ``.add_consumer()``, ``.add_domain()``, ``.nameservers()``, ``.ns_type()``, ``.tasks()``,
    ``.complete_tasks()``, ``.calls``, ``.inject()``, ``.clock_offset``, ``.time_window``,
    ``.hang_seconds``; ``stop()`` refuses connections until the next ``start()``."""

    server_name = "FakeOvh"
    api_path = "/1.0"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, clock_offset: float = 0.0,
                 time_window: float = 30.0):
        super().__init__(host, port)
        self.clock_offset = clock_offset
        self.time_window = time_window
        self.hang_seconds = 30.0
        self._apps: dict[str, _App] = {}
        self._domains: dict[str, _Domain] = {}
        self._tasks: dict[int, _Task] = {}
        self._next_ns_id = 1000
        self._next_task_id = 5000

    # -- state -------------------------------------------------------------------------

    def now(self) -> float:
        """The fake's clock: the local one moved by ``clock_offset``."""
        return time.time() + self.clock_offset

    def add_app(self, app_key: str, app_secret: str) -> None:
        with self._lock:
            self._apps[app_key] = _App(app_secret)

    def add_consumer(self, app_key: str, consumer_key: str, account: str, *, status: str = "validated",
                     rules: tuple[tuple[str, str], ...] = DOMAIN_RIGHTS) -> None:
        """A consumer key of ``app_key`` for ``account``: ``status`` validated, pendingValidation,
        expired or refused; ``rules`` (method, path pattern) pairs it may call."""
        with self._lock:
            self._apps[app_key].consumers[consumer_key] = _Consumer(account, status, tuple(rules))

    def add_domain(self, account: str, domain: str, nameservers: list[str], *, ns_type: str = "hosted") -> None:
        with self._lock:
            self._domains[domain] = _Domain(account, ns_type, [(self._new_ns_id(), h) for h in nameservers])

    def nameservers(self, domain: str) -> list[str]:
        with self._lock:
            return [host for _, host in self._domains[domain].nameservers]

    def ns_type(self, domain: str) -> str:
        with self._lock:
            return self._domains[domain].ns_type

    def tasks(self, domain: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [self._task_json(t) for t in self._tasks.values() if domain in (None, t.domain)]

    def complete_tasks(self) -> list[dict[str, Any]]:
        """Carry out every pending task, as OVH does later: ``done`` (the list is replaced)
        or, for one marked by ``task_error``, ``error`` (nothing changes)."""
        finished = []
        with self._lock:
            for task in self._tasks.values():
                if task.status not in ("todo", "doing"):
                    continue
                task.done = _now_iso()
                if task.fails:
                    task.status = "error"
                else:
                    task.status = "done"
                    self._domains[task.domain].nameservers = [(self._new_ns_id(), h) for h in task.hosts]
                finished.append(self._task_json(task))
        return finished

    def inject(self, fault: str, times: int = 1, route: str | None = None, *, status: int = 200, body: str = "",
               retry_after: float | None = None) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
        if route is not None and route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; one of {ROUTES}")
        with self._lock:
            self._faults.append(_Fault(fault, times, route, status, body, retry_after))

    def _new_ns_id(self) -> int:
        self._next_ns_id += 1
        return self._next_ns_id

    def _task_json(self, task: _Task) -> dict[str, Any]:
        return {"id": task.id, "function": "DomainDnsUpdate", "status": task.status, "comment": None,
                "creationDate": task.created, "todoDate": task.created, "lastUpdate": task.done or task.created,
                "doneDate": task.done, "canAccelerate": False, "canCancel": False, "canRelaunch": False}

    # -- HTTP --------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        handler = super()._handler_class()
        handler.protocol_version = "HTTP/1.1"
        handler.disable_nagle_algorithm = True  # headers and body go out in two writes
        return handler

    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length > 0 else b""
        split = urlsplit(h.path)
        route, params = _route(h.command, split.path)
        with self._lock:
            self._calls.append(Request(h.command, split.path, split.query, dict(h.headers.items()), body, route))

        fault = self._take_fault(route)
        task_fails = False
        if fault is not None:
            if fault.kind == "task_error":
                task_fails = True
            elif fault.kind == "http500":
                return send(h, 500, b'{"message":"Internal server error"}', "application/json")
            elif fault.kind == "drop":
                return drop(h)
            elif fault.kind == "timeout":
                self._stopping.wait(self.hang_seconds)
                return drop(h)
            elif fault.kind == "badjson":
                return send(h, 200, b"<html>maintenance</html>", "text/html")
            elif fault.kind == "rate":
                extra = {} if fault.retry_after is None else {"Retry-After": str(int(fault.retry_after))}
                return self._send_json(h, 429, {"message": "Too many requests"}, extra)
            elif fault.kind == "not_found":
                return self._send_json(h, 404, {"class": "Client::NotFound",
                                                "message": "The requested object does not exist"})
            elif fault.kind == "raw":
                return send(h, fault.status, fault.body.encode(), "application/json")
            else:
                status, payload = ANSWERS[fault.kind]
                return self._send_json(h, status, payload)
        try:
            answer = self._run(h, split, route, params, body, task_fails)
        except _Refused as refused:
            return self._send_json(h, refused.status, refused.payload)
        self._send_json(h, 200, answer)

    def _run(self, h: BaseHTTPRequestHandler, split: Any, route: str | None, params: dict[str, str],
             body: bytes, task_fails: bool) -> Any:
        if route is None:
            raise _Refused(404, {"message": "Got an invalid (or empty) URL"})
        if split.query:
            raise _bad_request("Unexpected query parameters")  # none of these routes takes one
        if route == "time":
            return int(self.now())
        account = self._authenticate(h, split, body)
        if h.command == "GET" and body:
            raise _bad_request("A GET request has no body")
        with self._lock:
            if route == "domains":
                return sorted(d for d, s in self._domains.items() if s.account == account)
            domain = params["domain"]
            state = self._domains.get(domain)
            if state is None or state.account != account:
                raise _not_found(f"The requested object (serviceName = {domain}) does not exist")
            if route == "domain":
                return {"domain": domain, "nameServerType": state.ns_type, "transferLockStatus": state.lock,
                        "offer": "gold", "owoSupported": True, "dnssecSupported": True,
                        "glueRecordIpv6Supported": True, "glueRecordMultiIpSupported": True,
                        "parentService": None, "whoisOwner": "12345", "lastUpdate": _now_iso()}
            if route == "domain.put":
                change = _json_body(h, body)
                if not isinstance(change, dict) or not change or set(change) - {"nameServerType", "transferLockStatus"}:
                    raise _bad_request("Invalid body: only nameServerType and transferLockStatus can be changed")
                if "nameServerType" in change:
                    if change["nameServerType"] not in ("hosted", "external"):
                        raise _bad_request("Invalid value for nameServerType")
                    state.ns_type = change["nameServerType"]
                if "transferLockStatus" in change:
                    if change["transferLockStatus"] not in ("locked", "unlocked"):
                        raise _bad_request("Invalid value for transferLockStatus")
                    state.lock = change["transferLockStatus"]
                return None
            if route == "nameservers":
                return [ns_id for ns_id, _ in state.nameservers]
            if route == "nameserver":
                for ns_id, host in state.nameservers:
                    if str(ns_id) == params["id"]:
                        return {"id": ns_id, "host": host, "ip": None, "isUsed": True, "toDelete": False}
                raise _not_found("The requested object (id) does not exist")
            if route == "task":
                task = self._tasks.get(int(params["id"]))
                if task is None or task.domain != domain:
                    raise _not_found("The requested object (id) does not exist")
                return self._task_json(task)
            # update
            hosts = _update_hosts(_json_body(h, body))
            if state.ns_type == "hosted":
                raise _bad_request("The domain uses OVH's hosted DNS servers: set nameServerType to external "
                                   "first")
            self._next_task_id += 1
            task = _Task(self._next_task_id, domain, hosts, fails=task_fails, created=_now_iso())
            self._tasks[task.id] = task
            return self._task_json(task)

    def _authenticate(self, h: BaseHTTPRequestHandler, split: Any, body: bytes) -> str:
        headers = h.headers
        with self._lock:
            app = self._apps.get(headers.get("X-Ovh-Application", ""))
            if app is None:
                raise _Refused(*ANSWERS["invalid_key"])
            consumer_key = headers.get("X-Ovh-Consumer", "")
            consumer = app.consumers.get(consumer_key)
            secret = app.secret
        if consumer is None:
            raise _Refused(*ANSWERS["not_credential"])
        stamp = headers.get("X-Ovh-Timestamp", "")
        if not stamp.isdigit() or abs(int(stamp) - self.now()) > self.time_window:
            raise _Refused(*ANSWERS["stale"])
        url = f"http://{headers.get('Host', '')}{split.path}" + (f"?{split.query}" if split.query else "")
        plain = "+".join([secret, consumer_key, h.command, url, body.decode("utf-8", "replace"), stamp])
        # OVH's scheme is a plain SHA-1 of the secret and the request, not ours to choose.
        expected = "$1$" + hashlib.sha1(plain.encode("utf-8")).hexdigest()  # nosec B324
        if headers.get("X-Ovh-Signature", "") != expected:
            raise _Refused(*ANSWERS["invalid_signature"])
        if consumer.status != "validated":
            raise _Refused(*ANSWERS["invalid_credential"])
        api_path = split.path[len("/1.0"):]
        if not any(method == h.command and fnmatch.fnmatchcase(api_path, pattern) for method, pattern in consumer.rules):
            raise _Refused(*ANSWERS["not_granted"])
        return consumer.account

    def _send_json(self, h: BaseHTTPRequestHandler, status: int, payload: Any,
                   headers: dict[str, str] | None = None) -> None:
        send(h, status, json.dumps(payload).encode(), "application/json; charset=utf-8", headers)


_ROUTE_PATTERNS: list[tuple[str, str, re.Pattern[str]]] = [
    ("GET", "time", re.compile(r"^/1\.0/auth/time$")),
    ("GET", "domains", re.compile(r"^/1\.0/domain$")),
    ("GET", "domain", re.compile(r"^/1\.0/domain/(?P<domain>[^/]+)$")),
    ("PUT", "domain.put", re.compile(r"^/1\.0/domain/(?P<domain>[^/]+)$")),
    ("POST", "update", re.compile(r"^/1\.0/domain/(?P<domain>[^/]+)/nameServers/update$")),
    ("GET", "nameservers", re.compile(r"^/1\.0/domain/(?P<domain>[^/]+)/nameServer$")),
    ("GET", "nameserver", re.compile(r"^/1\.0/domain/(?P<domain>[^/]+)/nameServer/(?P<id>[0-9]+)$")),
    ("GET", "task", re.compile(r"^/1\.0/domain/(?P<domain>[^/]+)/task/(?P<id>[0-9]+)$")),
]


def _route(method: str, path: str) -> tuple[str | None, dict[str, str]]:
    for want, name, pattern in _ROUTE_PATTERNS:
        m = pattern.match(path)
        if m and method == want:
            return name, {k: unquote(v) for k, v in m.groupdict().items()}
    return None, {}


def _json_body(h: BaseHTTPRequestHandler, body: bytes) -> Any:
    if not (h.headers.get("Content-Type") or "").startswith("application/json"):
        raise _bad_request("Content-Type must be application/json")
    try:
        return json.loads(body)
    except ValueError:
        raise _bad_request("Invalid JSON received") from None


def _update_hosts(payload: Any) -> list[str]:
    if not isinstance(payload, dict) or set(payload) != {"nameServers"} or not isinstance(payload["nameServers"], list):
        raise _bad_request("Invalid body: expected {\"nameServers\": [{\"host\": ...}]}")
    hosts: list[str] = []
    for entry in payload["nameServers"]:
        if not isinstance(entry, dict) or "host" not in entry or set(entry) - {"host", "ip"}:
            raise _bad_request("Invalid body: each name server is {\"host\": ..., \"ip\"?: ...}")
        host = entry["host"]
        if not isinstance(host, str) or not _HOST.match(host):
            raise _bad_request(f"Invalid name server host: {host!r}")
        hosts.append(host)
    if not 1 <= len(hosts) <= 13:
        raise _bad_request("Between 1 and 13 name servers are required")
    return hosts

