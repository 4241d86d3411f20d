"""Dynadot's legacy ``api3.json`` as a :class:`~pdm_app.dns.dynadot.backend.Registrar`.

What this module relies on, and where it comes from (checked against stored copies of
public material; see also ``/work/shared/docs/dynadot.md``):

* Dynadot's api3 page (a copy of https://www.dynadot.com/domain/api3.html#set_dns2, and
  Dynadot's own translated copy at http://coloradmin.cn/o/1490381.html, account
  "Dynadot_tech"): ``set_dns2`` takes ``domain``, ``main_record_type0..19`` (``a aaaa
  cname forward txt mx stealth email``), ``main_record0..19``, ``main_recordx0..19`` (MX
  distance, forward type 301 -> "1" / 302 -> "2", stealth title or e-mail alias; needed
  for forward/mx/stealth/email), ``subdomain0..99`` with ``sub_record_type/sub_record/
  sub_recordx`` (same types plus ``srv``; the older copy says 0..49), one optional
  top-level ``ttl`` and an optional ``add_dns_to_current_setting``. The XML answer is
  ``<SetDnsResponse><SetDnsHeader><SuccessCode>0</SuccessCode><Status>success``.
* acme.sh ``dnsapi/dns_dynadot.sh`` (acmesh-official/acme.sh): every call is a GET to
  ``api3.json?key=...&command=...`` (the key in the URL, "there is currently no other
  option"); the append mode "still required a main domain record ... or the API would
  reject the request", so it rewrites the whole zone: it reads ``get_dns``, lower-cases
  each ``RecordType``, sends ``Value2`` back as ``..._recordxN`` only when non-empty,
  sends the zone ``"TTL":"..."`` (a string) back as ``ttl``, refuses domains whose
  ``"Type"`` is not ``"Dynadot DNS"``, and treats ``"Status":"success"`` as success.
  It quotes the transient error ``{"ListDomainInfoResponse":{"ResponseCode":"-1",
  "Status":"error","Error":"problem with connection to main server"}}`` and reports
  back-to-back whole-zone writes applied out of order inside Dynadot.
* Public PHP clients: ``$response["SetDnsResponse"]["Status"] != "success"`` is an error,
  test stubs answer ``{"SetDnsResponse":{"ResponseCode":0,"Status":"success"}}`` and a
  bad key with the generic ``{"Response":{"ResponseCode":"-1","Error":"invalid key"}}``;
  the XML ``get_dns`` shape is ``GetDnsResponse/GetDnsContent/NameServerSettings/{Type,
  MainDomains/MainDomainRecord{RecordType,Value,Value2}, SubDomains/SubDomainRecord{
  Subhost,...}, TTL}`` while a public Python client reads JSON as
  ``["GetDnsResponse"]["GetDns"]["NameServerSettings"]``: the wrapper differs between
  sources, so ``NameServerSettings`` is searched for, not addressed by path.
* lego (go-acme/lego ``providers/dns/dynadot``) uses the newer RESTful v2 API (Bearer
  key plus an HMAC ``X-Signature`` made with the secret, ``add_dns_to_current_setting``
  append); its error fixture is "The domain doesn't have main dns.". DNSControl
  (``providers/dynadot/api.go``) uses ``api3.xml`` as a registrar only (get_ns/set_ns),
  with just ``key`` in the query. Neither sends the secret to api3; neither is used here.

Decisions where the sources are silent:

* Empty zone: ``MainDomains`` and ``SubDomains`` must both be present as JSON lists; an
  explicit ``[]`` means "none". A missing key or ``null`` is refused, because no source
  shows that shape and reading it as "no records" would make the next whole-zone write
  wipe them.
* ``set_zone`` refuses record types the api3 page does not list for that position
  (e.g. a CAA record the web UI may hold): a replace-mode write cannot carry them, so
  writing would silently drop them.
* ``set_dns2`` goes out exactly once per ``set_zone``, never retried: a 5xx from a proxy
  says nothing about whether Dynadot got the write, and a second whole-zone write could
  be applied before or after the first. The caller re-reads the zone and re-plans.
* ``get_dns`` is retried by urllib3 after connection errors and 5xx, but not after read
  errors (a reset or a read timeout): Dynadot serves one call at a time per key and may
  still be working on the first. Every request says ``Connection: close`` so a stale
  pooled connection can never turn into a spurious read error.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

import requests
from urllib3.util import Retry

from ... import bounded_json, outbound
from ...redaction import redact, register_secret
from ..errors import RegistrarError, UnreadableZone
from ..zone import Record, Zone

log = logging.getLogger(__name__)
T = TypeVar("T")

DYNADOT_DNS = "Dynadot DNS"
# Per the api3 page: what set_dns2 accepts at the apex, and under a sub-host.
APEX_TYPES = frozenset({"a", "aaaa", "cname", "forward", "txt", "mx", "stealth", "email"})
SUBHOST_TYPES = APEX_TYPES | {"srv"}
# Hard ceilings of one set_dns2 call (indices 0..19 and 0..99).
API_MAX_APEX = 20
API_MAX_SUBHOST = 100

THROTTLE_BACKOFF = 60.0
_TRANSIENT_ERRORS = ("problem with connection to main server", "system_busy", "system busy")
_THROTTLE_ERRORS = ("too many requests",)
# For set_dns2: one attempt, whatever fails (connect, read, status, ...).
_ONCE = Retry(total=0, redirect=0, raise_on_status=False, raise_on_redirect=False)
# A zone holds at most 20 apex and 100 sub-host records: its get_dns answer is a few KiB
# to some tens of KiB. Anything near this is not Dynadot's answer.
MAX_ANSWER_BYTES = 1024 * 1024
# A zone TTL in seconds, ASCII digits only: str.isdigit() takes "³", which int() refuses.
_TTL = re.compile(r"[0-9]{1,10}")

def _classify(message: str) -> tuple[bool, float | None]:
    text = message.lower()
    if any(t in text for t in _THROTTLE_ERRORS):
        return True, THROTTLE_BACKOFF
    if any(t in text for t in _TRANSIENT_ERRORS):
        return True, None
    return False, None


def _envelope(body: Any) -> dict[str, Any] | None:
    """The ``{"<Command>Response": {...}}`` / ``{"Response": {...}}`` object of a body,
    with an optional ``ResponseHeader`` folded in."""
    if not isinstance(body, dict):
        return None
    for name, value in body.items():
        if isinstance(name, str) and name.endswith("Response") and isinstance(value, dict):
            header = value.get("ResponseHeader")
            return {**header, **value} if isinstance(header, dict) else value
    return None


def _find(node: Any, key: str) -> Any:
    """Depth-first search for the first ``key`` holding an object."""
    if isinstance(node, dict):
        if isinstance(node.get(key), dict):
            return node[key]
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


class DynadotClient:
    """One Dynadot account (one API key). Thread-safe: calls through one object are
    serialised and paced; the caller serialises across processes."""

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        min_interval: float = 1.0,
        connect_timeout: float = 5.0,
        read_timeout: float = 20.0,
        retries: int = 2,
        max_apex_records: int = 20,
        max_subhost_records: int = 100,
        session: requests.Session | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("a Dynadot API key is required")
        if not 0 < max_apex_records <= API_MAX_APEX:
            raise ValueError(f"max_apex_records must be 1..{API_MAX_APEX}")
        if not 0 <= max_subhost_records <= API_MAX_SUBHOST:
            raise ValueError(f"max_subhost_records must be 0..{API_MAX_SUBHOST}")
        if min_interval < 0 or connect_timeout <= 0 or read_timeout <= 0 or retries < 0:
            raise ValueError("min_interval, timeouts and retries must not be negative")
        register_secret(api_key)
        self.api_url = api_url
        self._key = api_key
        self.min_interval = float(min_interval)
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)
        self.max_apex_records = max_apex_records
        self.max_subhost_records = max_subhost_records
        self._retry = outbound.DeadlineRetry(
            total=retries, connect=retries, read=0, status=retries, other=0, redirect=0,
            allowed_methods=frozenset({"GET"}), status_forcelist=frozenset({500, 502, 503, 504}),
            backoff_factor=0.1, backoff_max=1.0, raise_on_status=False, raise_on_redirect=False,
            # A Retry-After header must not stretch a call past its budget.
            respect_retry_after_header=False,
        )
        self._adapter = outbound.BoundedAdapter(max_retries=self._retry, pool_connections=1, pool_maxsize=1)
        self._session = session or requests.Session()
        parts = urlsplit(api_url)
        self._session.mount(f"{parts.scheme}://{parts.netloc}/", self._adapter)
        self._lock = threading.Lock()
        self._last_start = float("-inf")

    def __repr__(self) -> str:
        return f"DynadotClient(api_url={self.api_url!r}, min_interval={self.min_interval})"

    # -- Registrar ------------------------------------------------------------------

    def get_zone(self, domain: str, *, timeout: float | None = None) -> Zone:
        return self._call("get_dns", domain, {}, timeout, lambda envelope: self._parse_zone(domain, envelope),
                          retry=True)

    def set_zone(self, zone: Zone, *, timeout: float | None = None) -> None:
        params = self._zone_params(zone)  # validates before anything is sent
        self._call("set_dns2", zone.domain, params, timeout, lambda envelope: None, retry=False)

    # -- building and parsing -------------------------------------------------------

    def _zone_params(self, zone: Zone) -> dict[str, str]:
        def refuse(why: str) -> RegistrarError:
            return RegistrarError(f"dynadot set_dns2 {zone.domain}: {why}; nothing sent", transient=False)

        if not zone.domain:
            raise refuse("no domain")
        apex, subs = zone.apex, zone.subhosts
        if len(apex) > self.max_apex_records:
            raise refuse(f"{len(apex)} apex records, one write holds at most {self.max_apex_records}")
        if len(subs) > self.max_subhost_records:
            raise refuse(f"{len(subs)} sub-host records, one write holds at most {self.max_subhost_records}")
        params: dict[str, str] = {}
        if zone.ttl is not None:
            if isinstance(zone.ttl, bool) or not isinstance(zone.ttl, int) or zone.ttl <= 0:
                raise refuse(f"invalid zone TTL {zone.ttl!r}")
            params["ttl"] = str(zone.ttl)
        for i, rec in enumerate(apex):
            rtype = rec.rtype.lower()
            if rtype not in APEX_TYPES:
                raise refuse(f"apex record type {rec.rtype!r} cannot be written through set_dns2")
            if not rec.value:
                raise refuse(f"apex {rtype} record without a value")
            params[f"main_record_type{i}"] = rtype
            params[f"main_record{i}"] = rec.value
            if rec.extra:
                params[f"main_recordx{i}"] = rec.extra
        for i, rec in enumerate(subs):
            rtype = rec.rtype.lower()
            if rtype not in SUBHOST_TYPES:
                raise refuse(f"record type {rec.rtype!r} of {rec.host!r} cannot be written through set_dns2")
            if not rec.value:
                raise refuse(f"{rtype} record of {rec.host!r} without a value")
            params[f"subdomain{i}"] = rec.host
            params[f"sub_record_type{i}"] = rtype
            params[f"sub_record{i}"] = rec.value
            if rec.extra:
                params[f"sub_recordx{i}"] = rec.extra
        return params

    def _parse_zone(self, domain: str, envelope: dict[str, Any]) -> Zone:
        def refuse(why: str, reason: str = "unreadable-zone") -> UnreadableZone:
            return UnreadableZone(redact(f"dynadot get_dns {domain}: {why}"), reason)

        settings = _find(envelope, "NameServerSettings")
        if settings is None:
            raise refuse("the answer holds no NameServerSettings")
        ns_type = settings.get("Type")
        if ns_type != DYNADOT_DNS:
            raise refuse(f"the domain uses {ns_type!r} name servers, not {DYNADOT_DNS!r}", "not-dynadot-dns")

        def text(item: dict[str, Any], field: str, *, required: bool) -> str:
            value = item.get(field)
            if value is None and not required:
                return ""
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise refuse(f"a record has no usable {field}: {item!r}")
            value = str(value)
            if required and not value.strip():
                raise refuse(f"a record has an empty {field}: {item!r}")
            return value

        records: list[Record] = []
        for list_name, host_field in (("MainDomains", None), ("SubDomains", "Subhost")):
            items = settings.get(list_name)
            if not isinstance(items, list):
                raise refuse(f"{list_name} is missing or not a list ({type(items).__name__})")
            for item in items:
                if not isinstance(item, dict):
                    raise refuse(f"{list_name} holds a non-object {item!r}")
                host = text(item, host_field, required=True).lower() if host_field else ""
                records.append(Record(
                    host=host,
                    rtype=text(item, "RecordType", required=True).strip().lower(),
                    value=text(item, "Value", required=True),
                    extra=text(item, "Value2", required=False),
                ))
        raw_ttl = settings.get("TTL")
        ttl: int | None
        if raw_ttl is None or raw_ttl == "":
            ttl = None
        elif isinstance(raw_ttl, int) and not isinstance(raw_ttl, bool) and raw_ttl > 0:
            ttl = raw_ttl
        elif isinstance(raw_ttl, str) and _TTL.fullmatch(raw_ttl.strip()) and int(raw_ttl) > 0:
            ttl = int(raw_ttl)
        else:
            raise refuse(f"unreadable TTL {raw_ttl!r}")
        return Zone(domain=domain, records=records, ttl=ttl)

    # -- transport --------------------------------------------------------------------

    def _call(self, command: str, domain: str, params: dict[str, str], timeout: float | None,
              parse: Callable[[dict[str, Any]], T], *, retry: bool) -> T:
        """One paced api3 call: ``parse(success envelope)``, or RegistrarError. Only with
        ``retry`` may urllib3 send the request more than once."""
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        what = f"dynadot {command} {domain}"
        if timeout is not None and timeout <= 0:
            raise RegistrarError(f"{what}: no time left for the call", transient=True)
        if not self._lock.acquire(timeout=-1 if deadline is None else max(0.0, deadline - time.monotonic())):
            raise RegistrarError(f"{what}: an earlier call with this key still runs past the time budget",
                                 transient=True)
        outcome = "error"
        try:
            wait = self._last_start + self.min_interval - time.monotonic()
            if wait > 0:
                if deadline is not None and time.monotonic() + wait > deadline:
                    raise RegistrarError(f"{what}: pacing ({self.min_interval:.1f}s between calls) "
                                         "leaves no time in the budget", transient=True)
                time.sleep(wait)
            self._last_start = time.monotonic()
            try:
                envelope = self._request(command, domain, params, deadline, retry)
                result = parse(envelope)
            except RegistrarError as exc:
                outcome = f"error ({'transient' if exc.transient else 'permanent'}): {exc}"
                raise
            outcome = "ok"
            return result
        finally:
            self._lock.release()
            log.info("dynadot %s %s: %s in %.2fs", command, domain, redact(outcome),
                     time.monotonic() - started)

    def _request(self, command: str, domain: str, params: dict[str, str], deadline: float | None,
                 retry: bool) -> dict[str, Any]:
        what = f"dynadot {command} {domain}"
        query = {"key": self._key, "command": command, "domain": domain, **params}
        # Without a budget of its own, a call gets what one attempt used to.
        left = self.connect_timeout + self.read_timeout if deadline is None else deadline - time.monotonic()
        # Calls are serialised by self._lock, so the adapter's Retry can be this call's own.
        self._adapter.max_retries = self._retry if retry else _ONCE
        failure: RegistrarError | None = None
        try:
            response = outbound.request(
                self._session, "GET", self.api_url, deadline=left, max_bytes=MAX_ANSWER_BYTES,
                connect_timeout=self.connect_timeout, read_timeout=self.read_timeout, params=query,
                headers={"Accept": "application/json", "Connection": "close"},
            )
            status, body = response.status_code, response.content
        except outbound.TimedOut:
            failure = RegistrarError(f"{what}: no whole answer within {max(left, 0):.1f}s", transient=True)
        except outbound.OutboundError as exc:
            # The message is the module's own: no URL, so no key.
            failure = RegistrarError(f"{what}: {exc}", transient=not exc.permanent)
        if failure is not None:
            raise failure from None

        if status >= 500:
            raise RegistrarError(f"{what}: HTTP {status}", transient=True)
        if 300 <= status < 400:
            raise RegistrarError(f"{what}: unexpected HTTP redirect ({status})", transient=False)
        try:
            parsed = bounded_json.parse(body)
        except bounded_json.UnreadableJson:
            parsed = None
        envelope = _envelope(parsed)
        if envelope is None:
            # A client error without an api3 envelope is a wrong URL or a refusal in
            # front of Dynadot: retrying will not help (408/429 aside).
            permanent = 400 <= status < 500 and status not in (408, 429)
            raise RegistrarError(f"{what}: unreadable answer (HTTP {status}, {len(body)} bytes, not an api3 envelope)",
                                 transient=not permanent)
        if str(envelope.get("Status", "")).strip().lower() == "success":
            return envelope
        message = str(envelope.get("Error") or envelope.get("ResponseMsg") or envelope.get("Status") or "unknown error")
        transient, retry_after = _classify(message)
        raise RegistrarError(redact(f"{what}: Dynadot error: {message}"), transient=transient,
                             retry_after=retry_after)


__all__ = ["DynadotClient"]
