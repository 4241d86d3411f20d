"""A fake of Dynadot's ``api3.json`` on loopback, strict where Dynadot is.

A real HTTP server (``ThreadingHTTPServer`` in a daemon thread) so the client's whole
stack -- requests, urllib3 retries, timeouts, sockets -- is exercised. It serves
``get_dns`` and ``set_dns2`` for seeded domains, records every request, counts requests
in flight (Dynadot serves one at a time per key) and injects faults on demand.

Shapes follow ``/work/shared/docs/dynadot.md`` and the sources listed in ``dynadot.py``.
Where Dynadot's behaviour is undocumented the fake assumes the less forgiving answer:

* ``set_dns2`` without ``ttl`` resets the zone TTL to 3600 (so a client that forgets to
  carry the TTL is caught); with ``ttl`` the zone takes it.
* A replace-mode ``set_dns2`` switches the domain to "Dynadot DNS" -- exactly why a
  client must never write a zone that uses other name servers.
* Record types come back upper-case ("A", "MX") and ``Value2`` only when non-empty.
* A "timeout" fault holds the request ``hang_seconds`` (or until ``stop()``) and then
  drops it unprocessed.

Faults (``inject``) act before the command runs, so a failed ``set_dns2`` changes
nothing: ``http500`` (HTML 500), ``timeout``, ``badjson`` (200, not JSON), ``error``
("problem with connection to main server"), ``throttle`` ("Too many requests..." in the
generic ``Response`` envelope), ``reset`` (RST, no answer) and ``raw`` (a given status
and body, for malformed answers). ``trickle`` is not one of them: the command runs and its
answer comes slowly (``FakeServer._trickle``).

The exception is ``late``, what Dynadot does with a write the client gave up on: the
request is held and dropped like ``timeout``, yet a ``set_dns2`` is applied
``late_seconds`` after it arrived, exactly as it would have been on time (an invalid one
applies nothing), even across ``stop()``. ``wait_late_writes()`` waits for them,
``land_late_writes()`` applies them now. For ``get_dns`` it is just ``timeout``.

Requests are counted in flight and can be held (``InFlightServer``): tests wait on
events, not on the clock: ``wait_in_flight(n)``, and ``hold()`` / ``release()`` (every
request waits, in flight, before it is carried out or before it is answered, until
released), ``wait_held(n)``.

``state_path``: the zone is kept in a JSON file, loaded by ``load_state()`` and written
(atomically: a temporary file, then a rename) after every successful ``set_dns2``, so a
local run that restarts finds the zone its database expects.

Run ``python -m pdm_app.testing.fake_dynadot --port 8081 --key dev-key --domains
omani.works,openova.io --state .local/fake-dynadot.json`` for local development.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from copy import deepcopy
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..dns.zone import Record, Zone
from .fake_server import Fault, InFlightServer, serve_until_signalled

FAULTS = ("http500", "timeout", "badjson", "error", "throttle", "reset", "raw", "late", "trickle")
APEX_TYPES = frozenset({"a", "aaaa", "cname", "forward", "txt", "mx", "stealth", "email"})
SUBHOST_TYPES = APEX_TYPES | {"srv"}
# Types whose recordx is required by the api3 page (MX distance, forward type, ...).
NEEDS_X = frozenset({"mx", "forward", "stealth", "email"})
DEFAULT_TTL = 3600

INVALID_FIELD = "Invalid field in API request"
MAIN_SERVER = "problem with connection to main server"
THROTTLED = "Too many requests. Please try again in 1 minute after."

_PARAM = re.compile(
    r"^(?:(?P<main>main_record_type|main_recordx|main_record)(?P<mi>0|[1-9][0-9]?)"
    r"|(?P<sub>subdomain|sub_record_type|sub_recordx|sub_record)(?P<si>0|[1-9][0-9]?))$"
)
_FIXED_PARAMS = frozenset({"key", "command", "domain", "ttl", "add_dns_to_current_setting"})
_RESPONSE_NAMES = {"get_dns": "GetDnsResponse", "set_dns2": "SetDnsResponse"}


@dataclass
class _Fault(Fault):
    body: str = ""
    status: int = 200


@dataclass
class _Domain:
    records: list[Record]
    ttl: int | None
    ns_type: str


class _ApiError(Exception):
    pass


class FakeDynadot(InFlightServer):
    """``FakeDynadot(api_key).start()``; ``.url``, ``.seed()``, ``.zone()``, ``.calls``,
    ``.inject()``, ``.latency`` (before a request is carried out), ``.answer_delay`` (after
    it, so a read arrives stale), ``.hang_seconds``, ``.late_seconds``, ``.in_flight``,
    ``.max_in_flight``, ``.wait_in_flight()``, ``.wait_idle()``, ``.hold()`` / ``.release()``,
    ``.held``, ``.wait_held()``,
    ``.wait_late_writes()``, ``.land_late_writes()``; ``stop()`` refuses connections until
    the next ``start()`` (same port, same state). ``state_path``: see ``load_state()``."""

    def __init__(self, api_key: str = "test-key", host: str = "127.0.0.1", port: int = 0,
                 state_path: str | os.PathLike[str] | None = None):
        super().__init__(host, port)
        self.api_key = api_key
        self.state_path = Path(state_path) if state_path is not None else None
        self.hang_seconds: float = 30.0
        self.late_seconds: float = 1.0
        self.latency: float = 0.0
        self.answer_delay: float = 0.0
        self._save_lock = threading.Lock()
        self._domains: dict[str, _Domain] = {}
        self._late_pending = 0
        self._late_writes: list[tuple[threading.Timer, Any]] = []
        self._late_done = threading.Condition(self._lock)

    server_name = "fake-dynadot"
    api_path = "/api3.json"

    # -- state ------------------------------------------------------------------------

    def seed(self, domain: str, records: list[Record], ttl: int | None = 300, ns_type: str = "Dynadot DNS") -> None:
        """Put ``domain`` in the account with exactly ``records`` (no size limit: the
        registrar may hold more than one write can carry)."""
        recs = [Record(r.host.lower(), r.rtype.lower(), r.value, r.extra) for r in records]
        with self._lock:
            self._domains[domain.strip().lower()] = _Domain(recs, ttl, ns_type)

    def zone(self, domain: str) -> Zone:
        with self._lock:
            state = self._domains[domain.strip().lower()]
            apex = [r for r in state.records if r.is_apex]
            subs = [r for r in state.records if not r.is_apex]
            return Zone(domain.strip().lower(), apex + subs, state.ttl)

    def ns_type(self, domain: str) -> str:
        with self._lock:
            return self._domains[domain.strip().lower()].ns_type

    def load_state(self) -> bool:
        """Load the domains kept in ``state_path`` (they replace seeded ones of the same
        name). False when there is no file yet; ValueError when it cannot be read."""
        if self.state_path is None or not self.state_path.exists():
            return False
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            domains = {
                name.strip().lower(): _Domain(
                    [Record(r["host"], r["type"], r["value"], r.get("extra", "")) for r in d["records"]],
                    None if d.get("ttl") is None else int(d["ttl"]),
                    str(d.get("ns_type", "Dynadot DNS")),
                )
                for name, d in data["domains"].items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"cannot read the fake registrar's state {self.state_path}: {exc!r}") from None
        with self._lock:
            self._domains.update(domains)
        return True

    def save_state(self) -> None:
        """Write every domain to ``state_path``: a temporary file beside it, then a rename,
        so a reader (or a restart after a kill) never sees half a file."""
        if self.state_path is None:
            return
        with self._save_lock:  # the newest snapshot is the one written last
            with self._lock:
                data = {"domains": {
                    name: {"ttl": d.ttl, "ns_type": d.ns_type,
                           "records": [{"host": r.host, "type": r.rtype, "value": r.value, "extra": r.extra}
                                       for r in d.records]}
                    for name, d in sorted(self._domains.items())
                }}
            folder = self.state_path.parent
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=self.state_path.name + ".", suffix=".tmp", dir=folder)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(data, out, indent=1)
                    out.write("\n")
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, self.state_path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise

    def inject(self, fault: str, times: int = 1, command: str | None = None, *, body: str = "",
               status: int = 200) -> None:
        """Make the next ``times`` requests (of ``command``, or any) fail with ``fault``.
        ``raw`` answers ``status`` with ``body`` verbatim (for malformed answers)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
        with self._lock:
            self._faults.append(_Fault(fault, times, command, body, status))

    def wait_late_writes(self, timeout: float) -> bool:
        """Wait until every write held by a ``late`` fault has been applied (or refused)."""
        with self._late_done:
            return self._late_done.wait_for(lambda: self._late_pending == 0, timeout)

    def land_late_writes(self) -> None:
        """Apply every write held by a ``late`` fault now, without waiting ``late_seconds``."""
        with self._lock:
            pending, self._late_writes = self._late_writes, []
        for timer, apply in pending:
            timer.cancel()
            apply()  # runs once, whether or not the timer already fired

    # -- HTTP -------------------------------------------------------------------------

    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        if method != "GET":
            return self._send_json(h, 405, _error("Response", "only GET is supported"))
        split = urlsplit(h.path)
        pairs = parse_qsl(split.query, keep_blank_values=True)
        params = dict(pairs)
        self._count_in(h, (params.get("command", ""), dict(params)))
        try:
            self._serve_counted(h, split.path, pairs, params)
        finally:
            self._done(h)

    def _delay_answer(self, seconds: float) -> bool:
        """Hold a carried-out request's answer ``seconds`` (counted in ``held``, so a test
        can wait for it); False when ``stop()`` came first."""
        with self._changed:
            self._held += 1
            self._changed.notify_all()
        try:
            return not self._stopping.wait(seconds)
        finally:
            with self._changed:
                self._held -= 1
                self._changed.notify_all()

    def _serve_counted(self, h: BaseHTTPRequestHandler, path: str, pairs: list[tuple[str, str]],
                       params: dict[str, str]) -> None:
        arrived = time.monotonic()
        command = params.get("command", "")
        if not self._wait_while_held("request"):
            return self._drop(h)
        if self.latency > 0 and self._stopping.wait(self.latency):
            return self._drop(h)
        if path != "/api3.json":
            return self._send_json(h, 404, _error("Response", "not found"))

        fault = self._take_fault(command)
        envelope_name = _RESPONSE_NAMES.get(command, "Response")
        if fault is not None:
            if fault.kind == "http500":
                body = b"<html><body><h1>500 Internal Server Error</h1></body></html>"
                return self._send(h, 500, body, "text/html")
            if fault.kind in ("timeout", "late"):
                if fault.kind == "late" and command == "set_dns2":
                    self._apply_late(arrived, pairs, params)
                # Held inside _serve, so it counts as in flight until dropped.
                self._stopping.wait(self.hang_seconds)
                return self._drop(h)
            if fault.kind == "badjson":
                return self._send(h, 200, b"<html>Service temporarily unavailable", "text/html")
            if fault.kind == "error":
                return self._send_json(h, 200, _error(envelope_name, MAIN_SERVER))
            if fault.kind == "throttle":
                return self._send_json(h, 200, _error("Response", THROTTLED))
            if fault.kind == "reset":
                return self._reset(h)
            if fault.kind == "trickle":  # the real answer, slowly (see FakeServer._trickle)
                return self._trickle(h, 200, json.dumps(self._run(command, pairs, params)).encode(),
                                     "application/json")
            return self._send(h, fault.status, fault.body.encode(), "application/json")

        answer = self._run(command, pairs, params)
        # Done now, answered later: a read that is stale by the time it arrives.
        if not self._wait_while_held("answer"):
            return self._drop(h)
        if self.answer_delay > 0 and not self._delay_answer(self.answer_delay):
            return self._drop(h)
        self._send_json(h, 200, answer)

    def _run(self, command: str, pairs: list[tuple[str, str]], params: dict[str, str]) -> dict[str, Any]:
        """The answer to a request that got past the faults (and runs its command)."""
        envelope_name = _RESPONSE_NAMES.get(command, "Response")
        if len(pairs) != len(params):
            return _error(envelope_name, INVALID_FIELD)
        if params.get("key") != self.api_key:
            return _error("Response", "invalid key")
        try:
            if command == "get_dns":
                return self._get_dns(params)
            if command == "set_dns2":
                return self._set_dns2(params)
            return _error("Response", "invalid command")
        except _ApiError as exc:
            return _error(envelope_name, str(exc))

    def _apply_late(self, arrived: float, pairs: list[tuple[str, str]], params: dict[str, str]) -> None:
        """Run this set_dns2 ``late_seconds`` after ``arrived``; its answer goes nowhere."""
        once = threading.Lock()

        def apply() -> None:
            if not once.acquire(blocking=False):
                return  # already applied (land_late_writes() and the timer both ran it)
            try:
                self._run("set_dns2", pairs, params)
            finally:
                with self._late_done:
                    self._late_pending -= 1
                    self._late_writes = [(t, a) for t, a in self._late_writes if a is not apply]
                    self._late_done.notify_all()

        timer = threading.Timer(max(0.0, arrived + self.late_seconds - time.monotonic()), apply)
        timer.daemon = True
        with self._lock:
            self._late_pending += 1
            self._late_writes.append((timer, apply))
        timer.start()

    # -- commands ---------------------------------------------------------------------

    def _known_domains(self, params: dict[str, str]) -> list[str]:
        names = [d.strip().lower() for d in params.get("domain", "").split(",") if d.strip()]
        if not names:
            raise _ApiError("domain is required")
        with self._lock:
            missing = [d for d in names if d not in self._domains]
        if missing:
            raise _ApiError(f"{missing[0]} is not in your account")
        return names

    def _get_dns(self, params: dict[str, str]) -> dict[str, Any]:
        if set(params) - {"key", "command", "domain"}:
            raise _ApiError(INVALID_FIELD)
        names = self._known_domains(params)
        if len(names) != 1:
            raise _ApiError("get_dns takes one domain")
        with self._lock:
            state = deepcopy(self._domains[names[0]])
        settings: dict[str, Any] = {"Type": state.ns_type}
        if state.ns_type == "Dynadot DNS":
            settings["MainDomains"] = [_shown(r) for r in state.records if r.is_apex]
            settings["SubDomains"] = [{"Subhost": r.host, **_shown(r)} for r in state.records if not r.is_apex]
            settings["TTL"] = "" if state.ttl is None else str(state.ttl)
        else:
            settings["NameServers"] = [{"ServerName": "ns1.elsewhere.example"}, {"ServerName": "ns2.elsewhere.example"}]
        return {"GetDnsResponse": {"ResponseCode": "0", "Status": "success", "GetDns": {"NameServerSettings": settings}}}

    def _set_dns2(self, params: dict[str, str]) -> dict[str, Any]:
        main: dict[int, dict[str, str]] = {}
        sub: dict[int, dict[str, str]] = {}
        for name, value in params.items():
            if name in _FIXED_PARAMS:
                continue
            m = _PARAM.match(name)
            if m is None:
                raise _ApiError(INVALID_FIELD)  # unknown names, `secret`, indices past 19 / 99
            if m["main"]:
                index = int(m["mi"])
                if index > 19:
                    raise _ApiError(INVALID_FIELD)
                main.setdefault(index, {})[m["main"]] = value
            else:
                sub.setdefault(int(m["si"]), {})[m["sub"]] = value

        append_flag = params.get("add_dns_to_current_setting", "").strip().lower()
        if append_flag not in ("", "0", "no", "1", "yes"):
            raise _ApiError(INVALID_FIELD)
        append = append_flag in ("1", "yes")
        ttl: int | None = None
        if "ttl" in params:
            if not params["ttl"].isdigit() or int(params["ttl"]) <= 0:
                raise _ApiError("invalid ttl")
            ttl = int(params["ttl"])

        records: list[Record] = []
        for index in sorted(main):
            f = main[index]
            records.append(_record("", f.get("main_record_type", ""), f.get("main_record", ""),
                                   f.get("main_recordx", ""), APEX_TYPES))
        for index in sorted(sub):
            f = sub[index]
            host = f.get("subdomain", "").strip().lower()
            if not host:
                raise _ApiError(f"subdomain{index} is missing")
            records.append(_record(host, f.get("sub_record_type", ""), f.get("sub_record", ""),
                                   f.get("sub_recordx", ""), SUBHOST_TYPES))
        if append and not main:
            # Public clients: an append that carries no apex record is refused.
            raise _ApiError(INVALID_FIELD)
        names = self._known_domains(params)
        with self._lock:
            for name in names:
                state = self._domains[name]
                state.records = (state.records + records) if append else list(records)
                if ttl is not None:
                    state.ttl = ttl
                elif not append:
                    state.ttl = DEFAULT_TTL
                state.ns_type = "Dynadot DNS"
        try:
            self.save_state()  # before the answer: a client that saw success finds it kept
        except OSError as exc:
            print(f"fake Dynadot: could not write {self.state_path}: {exc}", file=sys.stderr, flush=True)
        return {"SetDnsResponse": {"ResponseCode": 0, "Status": "success"}}


def _record(host: str, rtype: str, value: str, extra: str, allowed: frozenset[str]) -> Record:
    if not rtype or not value:
        raise _ApiError("a record needs both a type and a value")
    if rtype not in allowed:  # the api3 page lists the types in lower case
        raise _ApiError(f"invalid record type {rtype}")
    if rtype in NEEDS_X and not extra:
        raise _ApiError(f"{rtype} record needs its recordx value")
    if rtype == "mx" and not extra.isdigit():
        raise _ApiError("invalid mx distance")
    return Record(host, rtype, value, extra)


def _shown(record: Record) -> dict[str, str]:
    shown = {"RecordType": record.rtype.upper(), "Value": record.value}
    if record.extra:
        shown["Value2"] = record.extra
    return shown


def _error(envelope: str, message: str) -> dict[str, Any]:
    return {envelope: {"ResponseCode": "-1", "Status": "error", "Error": message}}


def dev_zone(domain: str) -> list[Record]:
    """A realistic pool zone: parking A, MX with distance, SPF, www."""
    return [
        Record("", "a", "185.53.179.128"),
        Record("", "mx", f"mx1.{domain}", "10"),
        Record("", "txt", "v=spf1 mx ~all"),
        Record("www", "cname", domain),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake Dynadot api3.json for local development")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--key", default="dev-key", help="the API key the fake accepts")
    parser.add_argument("--domains", default="omani.works,openova.io", help="comma-separated domains to seed")
    parser.add_argument("--state", metavar="FILE",
                        help="keep the zones in this JSON file: loaded at start if present, written after "
                             "every successful set_dns2 (domains it lacks are seeded)")
    args = parser.parse_args(argv)
    fake = FakeDynadot(api_key=args.key, host=args.host, port=args.port, state_path=args.state)
    for domain in [d.strip().lower() for d in args.domains.split(",") if d.strip()]:
        fake.seed(domain, dev_zone(domain), ttl=300)
    try:
        loaded = fake.load_state()
    except ValueError as err:
        print(f"fake Dynadot: {err}; delete it to start with fresh zones", file=sys.stderr, flush=True)
        return 2
    if args.state:
        fake.save_state()  # the file always holds what the fake serves
        print(f"fake Dynadot: zones {'loaded from' if loaded else 'kept in'} {args.state}", flush=True)
    return serve_until_signalled(fake, "fake Dynadot", f" (domains: {args.domains})")


if __name__ == "__main__":
    sys.exit(main())
