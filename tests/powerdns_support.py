"""Test support for the PowerDNS backend: a fault-injecting HTTP proxy in front of a real
PowerDNS API, and DNS/DNSSEC checks (dnspython) of what the server answers.

``FaultProxy(upstream_url).start()`` forwards every request to PowerDNS and relays the
answer; ``fail()``, ``lose_reply()`` and ``hold()`` inject faults matched by method and a
regex searched in the path (without the query string). ``calls`` lists what went through.

``query()``, ``validate_chain()`` and ``assert_tenant_gone()`` take ``server`` as
``(host, port)``: e.g. ``powerdns.dns_server``.
"""
from __future__ import annotations

import http.client
import re
import threading
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import urlsplit

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from pdm_app.testing.fake_server import FakeServer, drop, reset, send

# Hop-by-hop headers (RFC 9110 7.6.1) and the ones the proxy sets itself.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
              "host", "content-length"}
OWN_RESPONSE_HEADERS = {"server", "date"}  # send_response() writes its own
UPSTREAM_TIMEOUT = 30.0
DNS_TIMEOUT = 5.0


class Call(NamedTuple):
    """One request through the proxy. ``status``: what the client was answered; for a lost
    reply, what PowerDNS answered (the client saw none); None when nothing was forwarded
    and nothing answered (upstream unreachable, or a held request dropped at stop)."""
    method: str
    path: str
    status: int | None
    query: str = ""


@dataclass
class _Fault:
    kind: str  # "fail", "lose_reply", "hold" or "trickle"
    method: str
    path_re: re.Pattern
    times: int
    status: int = 500
    body: bytes = b""
    hold: "Hold | None" = None
    content_type: str = "text/plain"

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and self.method == method and self.path_re.search(path) is not None


@dataclass
class Hold:
    """A held request: ``arrived`` is set when one matching request has come in (before it
    is forwarded); it waits until ``release()`` (then it is forwarded) or the proxy stops
    (then it is dropped unforwarded)."""
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


class FaultProxy(FakeServer):
    """A real HTTP server on loopback that forwards to ``upstream`` (a PowerDNS API base,
    e.g. ``http://127.0.0.1:8082``): method, path and query, headers (X-API-Key included)
    and body; the answer is relayed as PowerDNS gave it. ``url`` is what a client uses
    instead of the upstream's."""

    server_name = "powerdns-fault-proxy"

    def __init__(self, upstream: str, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port)
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be http://host:port, not {upstream!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.upstream_prefix = parts.path.rstrip("/")
        # True: forward without the query, as a server that knows none of its parameters
        # (a PowerDNS before 4.7 and rrset_name) would answer.
        self.drop_queries = False

    # -- faults ----------------------------------------------------------------------

    def _add(self, fault: _Fault) -> _Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def fail(self, method: str, path_re: str, status: int = 500, body: str = "Internal Server Error",
             times: int = 1, content_type: str = "text/plain") -> None:
        """The next ``times`` matching requests are answered ``status``/``body`` (plain
        text, as PowerDNS's own 500s) without reaching PowerDNS. Also what a proxy in
        front of it may say: an HTML error page with 200 (``content_type="text/html"``),
        or JSON nested far too deep."""
        self._add(_Fault("fail", method.upper(), re.compile(path_re), times, status, body.encode(),
                         content_type=content_type))

    def lose_reply(self, method: str, path_re: str, times: int = 1) -> None:
        """The next ``times`` matching requests reach PowerDNS (which applies them); then
        the connection is closed without an answer."""
        self._add(_Fault("lose_reply", method.upper(), re.compile(path_re), times))

    def trickle(self, method: str, path_re: str, times: int = 1) -> None:
        """The next ``times`` matching requests reach PowerDNS; its answer is relayed slowly
        (``FakeServer._trickle``: 40 bytes a second, ``trickled`` counts what got out)."""
        self._add(_Fault("trickle", method.upper(), re.compile(path_re), times))

    def hold(self, method: str, path_re: str, times: int = 1) -> Hold:
        """The next ``times`` matching requests wait, unforwarded, until ``release()``."""
        held = Hold()
        self._add(_Fault("hold", method.upper(), re.compile(path_re), times, hold=held))
        return held

    def clear_faults(self) -> None:
        """Forget every fault; requests being held are let through."""
        with self._lock:
            faults, self._faults = list(self._faults), []
        for fault in faults:
            if fault.hold is not None:
                fault.hold.release()

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def _fault_for(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    return fault
        return None

    def _record(self, method: str, path: str, status: int | None, query: str = "") -> None:
        with self._lock:
            self._calls.append(Call(method, path, status, query))

    # -- forwarding ------------------------------------------------------------------

    def _serve(self, handler, method: str) -> None:
        target = handler.path
        path, _, query = target.partition("?")
        if self.drop_queries:
            target = path
        body = _read_body(handler)
        fault = self._fault_for(method, path)
        if fault is not None and fault.kind == "fail":
            self._record(method, path, fault.status)
            send(handler, fault.status, fault.body, fault.content_type)
            return
        if fault is not None and fault.kind == "hold":
            fault.hold.arrived.set()
            while not fault.hold.released.wait(self.poll_interval):
                if self._stopping.is_set():
                    self._record(method, path, None)
                    drop(handler)
                    return
        headers = {name: value for name, value in handler.headers.items() if name.lower() not in HOP_BY_HOP}
        try:
            status, reason, answer_headers, answer_body = self._forward(method, target, headers, body)
        except OSError:
            # PowerDNS unreachable: the closest a proxy gets to a refused connection.
            self._record(method, path, None)
            reset(handler)
            return
        self._record(method, path, status, query)
        if fault is not None and fault.kind == "lose_reply":
            drop(handler)
            return
        if fault is not None and fault.kind == "trickle":
            kind = next((v for k, v in answer_headers if k.lower() == "content-type"), "application/json")
            self._trickle(handler, status, answer_body, kind)
            return
        try:
            handler.send_response(status, reason)
            for name, value in answer_headers:
                if name.lower() not in HOP_BY_HOP | OWN_RESPONSE_HEADERS:
                    handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(answer_body)))
            handler.end_headers()
            handler.wfile.write(answer_body)
        except OSError:
            pass  # the client gave up meanwhile

    def _forward(self, method: str, target: str, headers: dict[str, str], body: bytes):
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=UPSTREAM_TIMEOUT)
        try:
            conn.request(method, self.upstream_prefix + target, body=body if body or method in (
                "POST", "PUT", "PATCH") else None, headers=headers)
            answer = conn.getresponse()
            return answer.status, answer.reason, answer.getheaders(), answer.read()
        finally:
            conn.close()


def _read_body(handler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


# -- DNS ----------------------------------------------------------------------------


def _name(text: str | dns.name.Name, origin: dns.name.Name | None = None) -> dns.name.Name:
    if isinstance(text, dns.name.Name):
        return text
    name = dns.name.from_text(text)
    if origin is not None and not name.is_subdomain(origin):
        name = dns.name.from_text(text, origin=origin)  # "console" -> console.<origin>
    return name


def query(server: tuple[str, int], name, rdtype, want_dnssec: bool = True) -> dns.message.Message:
    """One question to ``server`` over UDP (TCP when the answer is truncated), RD off."""
    host, port = server
    message = dns.message.make_query(_name(name), rdtype, want_dnssec=want_dnssec)
    message.flags &= ~dns.flags.RD
    answer = dns.query.udp(message, host, port=port, timeout=DNS_TIMEOUT)
    if answer.flags & dns.flags.TC:
        answer = dns.query.tcp(message, host, port=port, timeout=DNS_TIMEOUT)
    return answer


def _rrsets(message: dns.message.Message, section: str, name: dns.name.Name, rdtype) -> tuple:
    """(the RRset, its RRSIG RRset) of ``name``/``rdtype`` in ``section``; None where absent."""
    rdtype = dns.rdatatype.RdataType.make(rdtype)
    rrsets = getattr(message, section)
    found = sig = None
    for rrset in rrsets:
        if rrset.name != name:
            continue
        if rrset.rdtype == rdtype:
            found = rrset
        elif rrset.rdtype == dns.rdatatype.RRSIG and rrset.covers == rdtype:
            sig = rrset
    return found, sig


def _tags(sig: dns.rrset.RRset) -> str:
    return ",".join(f"{rr.key_tag} ({rr.signer})" for rr in sig)


def _validated(rrset, sig, keys: dns.rrset.RRset, story: list[str], what: str) -> None:
    if sig is None:
        raise AssertionError("\n".join(story + [f"{what}: no RRSIG"]))
    try:
        dns.dnssec.validate(rrset, sig, {keys.name: keys})
    except dns.dnssec.ValidationFailure as exc:
        raise AssertionError("\n".join(story + [f"{what}: RRSIG by key {_tags(sig)} does NOT validate "
                                                f"with {keys.name} DNSKEY: {exc}"])) from None
    story.append(f"{what}: RRSIG by key {_tags(sig)} validated with {keys.name} DNSKEY")


def _answer(server, name: dns.name.Name, rdtype, story: list[str]) -> tuple:
    answer = query(server, name, rdtype)
    label = f"{name} {dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))}"
    rrset, sig = _rrsets(answer, "answer", name, rdtype)
    if answer.rcode() != dns.rcode.NOERROR or rrset is None:
        raise AssertionError("\n".join(story + [f"{label}: no answer ({dns.rcode.to_text(answer.rcode())})",
                                                str(answer)]))
    if not answer.flags & dns.flags.AA:
        raise AssertionError("\n".join(story + [f"{label}: answer not authoritative", str(answer)]))
    story.extend(rrset.to_text().splitlines())
    return rrset, sig


def _dnskey(server, zone: dns.name.Name, story: list[str]) -> dns.rrset.RRset:
    """The zone's DNSKEY RRset, after checking it validates with itself."""
    keys, sig = _answer(server, zone, "DNSKEY", story)
    tags = ", ".join(f"{dns.dnssec.key_id(k)} flags {k.flags} alg {k.algorithm.value}" for k in keys)
    story.append(f"{zone} DNSKEY: keys {tags}")
    _validated(keys, sig, keys, story, f"{zone} DNSKEY")
    return keys


def validate_chain(server: tuple[str, int], parent_zone, child_zone, names=()) -> list[str]:
    """Assert the chain of trust parent -> child as a validator walks it, and return the
    story (one line per step). Raises AssertionError, with the story so far, at the first
    broken link. ``names``: A RRsets that must validate with the child's keys ("console"
    means console.<child>)."""
    parent, child = _name(parent_zone), _name(child_zone)
    story: list[str] = [f"; chain {parent} -> {child} at {server[0]}#{server[1]}"]
    parent_keys = _dnskey(server, parent, story)

    ds, ds_sig = _answer(server, child, "DS", story)
    if ds_sig is not None and any(rr.signer != parent for rr in ds_sig):
        raise AssertionError("\n".join(story + [f"{child} DS signed by {_tags(ds_sig)}, not by {parent}"]))
    _validated(ds, ds_sig, parent_keys, story, f"{child} DS")

    child_keys = _dnskey(server, child, story)
    published = {(rr.key_tag, rr.algorithm, rr.digest_type, rr.digest) for rr in ds}
    matched = []
    for key in child_keys:
        if key.flags & 0x0001 and key.flags & 0x0100:  # SEP + zone key: a KSK or CSK (257)
            made = dns.dnssec.make_ds(child, key, "SHA256")
            if (made.key_tag, made.algorithm, made.digest_type, made.digest) in published:
                matched.append(made)
    if not matched:
        keys_257 = [dns.dnssec.make_ds(child, k, "SHA256").to_text() for k in child_keys if k.flags == 257]
        raise AssertionError("\n".join(story + [f"{child}: no DS in the parent matches a 257 key of the child: "
                                                f"the child's would be {keys_257}"]))
    story.append(f"{child} DS {matched[0].key_tag} = SHA-256 digest of the child's 257 key: matched")

    for text in names:
        name = _name(text, child)
        rrset, sig = _answer(server, name, "A", story)
        _validated(rrset, sig, child_keys, story, f"{name} A")
    story.append("; chain validated")
    return story


def assert_tenant_gone(server: tuple[str, int], parent_zone, child_zone, names=("console",)) -> list[str]:
    """Assert the parent no longer delegates ``child_zone`` and nothing answers for it: no
    NS or DS at the child name (the parent answers NXDOMAIN for them, authoritatively),
    NXDOMAIN for the child's apex and ``names``; where the parent is signed, the denial's
    RRSIGs validate with its keys. Returns the story."""
    parent, child = _name(parent_zone), _name(child_zone)
    story: list[str] = [f"; {child} gone from {parent} at {server[0]}#{server[1]}"]
    keys_answer = query(server, parent, "DNSKEY")
    parent_keys, _ = _rrsets(keys_answer, "answer", parent, "DNSKEY")
    checks = [(child, "NS"), (child, "DS"), (child, "SOA"), (child, "A")]
    checks += [(_name(text, child), "A") for text in names]
    for name, rdtype in checks:
        answer = query(server, name, rdtype)
        label = f"{name} {rdtype}"
        for section in ("answer", "authority"):
            for rrset in getattr(answer, section):
                if rrset.name == child and rrset.rdtype in (dns.rdatatype.NS, dns.rdatatype.DS):
                    raise AssertionError("\n".join(story + [f"{label}: still answered: {rrset.to_text()}"]))
        if answer.rcode() != dns.rcode.NXDOMAIN:
            raise AssertionError("\n".join(story + [f"{label}: {dns.rcode.to_text(answer.rcode())}, "
                                                    "not NXDOMAIN", str(answer)]))
        soa = [r for r in answer.authority if r.rdtype == dns.rdatatype.SOA]
        if not answer.flags & dns.flags.AA or not soa or soa[0].name != parent:
            raise AssertionError("\n".join(story + [f"{label}: NXDOMAIN not from {parent} itself", str(answer)]))
        story.append(f"{label}: NXDOMAIN from {parent}")
        if parent_keys is not None:
            for rrset in answer.authority:
                if rrset.rdtype == dns.rdatatype.RRSIG:
                    continue
                _, sig = _rrsets(answer, "authority", rrset.name, rrset.rdtype)
                _validated(rrset, sig, parent_keys, story,
                           f"  {rrset.name} {dns.rdatatype.to_text(rrset.rdtype)}")
    return story
