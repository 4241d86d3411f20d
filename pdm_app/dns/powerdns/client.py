"""PowerDNS Authoritative's HTTP API (``/api/v1/servers/{id}``), the calls the service
makes, as ``powerdns.md`` found them on a real server.

- Names are absolute, with the trailing dot, in URLs and bodies alike.
- Only idempotent calls are retried by the transport (GET, PUT, PATCH of REPLACE/DELETE
  RRsets, DELETE), after connection errors and 5xx; a POST (a zone, a key) goes out once,
  since a retried key POST adds a second key. The pass re-reads and re-plans instead.
- A 401 (plain-text body) means a wrong key; 422/400 a refused body (its ``error`` is
  passed on, redacted); 404 and 409 are answers some calls expect.
- A new key's reply holds its private key: it is dropped here, on arrival, so nothing
  later can log it.
- Every answer is untrusted until checked here: not JSON, nested too deep, or not of the
  shape the planning reads (a zone's RRsets, a key's id) is a transient PowerDnsError,
  never an exception the pass does not expect (a proxy's HTML error page answered with
  200 looks like this).
"""
from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote, urlencode

import requests

from ... import bounded_json, outbound
from ...redaction import redact, register_secret
from ..errors import RegistrarError
from .plan import KEY_ALGORITHM_NAME, absolute

log = logging.getLogger(__name__)

# The one key flavour the service creates (``plan.KEY_ALGORITHM_NAME``: how PowerDNS
# names its algorithm when it lists the key).
KEY_ALGORITHM = "ecdsa256"
DEFAULT_TIMEOUT = 10.0
# A pool zone of 10,000 tenants (NS and DS each) is about 4 MiB, the zone list about
# 3 MiB: this leaves room for some 80,000 tenants, and bounds what a wrong server can make
# the service hold.
MAX_ANSWER_BYTES = 32 * 1024 * 1024


class PowerDnsError(RegistrarError):
    """A PowerDNS call failed; ``status`` is the HTTP status (None: no answer)."""

    def __init__(self, message: str, *, status: int | None = None, transient: bool = True):
        super().__init__(message, transient=transient)
        self.status = status



class PowerDnsClient:
    def __init__(self, base_url: str, api_key: str, server_id: str = "localhost", *,
                 session: requests.Session | None = None):
        self.base = f"{base_url.rstrip('/')}/api/v1/servers/{quote(server_id, safe='')}"
        register_secret(api_key)
        self.session = session or requests.Session()
        self.session.headers["X-API-Key"] = api_key
        # Set once a server answered a filtered read with the whole zone (get_rrsets).
        self.unfiltered = False
        retry = outbound.DeadlineRetry(
            total=2, connect=2, read=0, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504),
            allowed_methods=frozenset({"GET", "PUT", "PATCH", "DELETE"}), raise_on_status=False,
            respect_retry_after_header=False)
        outbound.mount(self.session, retry)

    # -- one request ---------------------------------------------------------------------

    def _request(self, method: str, path: str, what: str, *, timeout: float | None, ok: tuple[int, ...],
                 body: Any = None) -> requests.Response:
        failure: PowerDnsError | None = None
        try:
            response = outbound.request(self.session, method, self.base + path, json=body,
                                        deadline=timeout or DEFAULT_TIMEOUT, max_bytes=MAX_ANSWER_BYTES)
        except outbound.TimedOut:
            failure = PowerDnsError(f"PowerDNS did not answer {what} in time")
        except outbound.Unreachable as exc:
            # Never the exception's text: it carries the URL.
            failure = PowerDnsError(f"PowerDNS could not be reached for {what} ({exc.kind})",
                                    transient=not exc.permanent)
        except outbound.OutboundError as exc:  # too large; a header that cannot be sent
            failure = PowerDnsError(f"PowerDNS gave no usable answer to {what}: {exc}", transient=not exc.permanent)
        if failure is not None:
            raise failure from None
        if response.status_code in ok:
            return response
        status = response.status_code
        if status == 401 or status == 403:
            raise PowerDnsError(f"PowerDNS refused the API key (HTTP {status}) for {what}; check PDM_PDNS_API_KEY",
                                status=status, transient=False)
        detail = _error_text(response)
        raise PowerDnsError(f"PowerDNS answered {what} with HTTP {status}: {detail}", status=status,
                            transient=status >= 500 or status == 429)

    @staticmethod
    def _zone_path(zone: str) -> str:
        return "/zones/" + quote(absolute(zone), safe=".")

    # -- the calls -----------------------------------------------------------------------

    def ping(self, *, timeout: float | None = None) -> dict:
        what = "the server query"
        server = _json(self._request("GET", "", what, timeout=timeout, ok=(200,)), what)
        _check(isinstance(server, dict), what, "not an object")
        return server

    def list_zones(self, *, timeout: float | None = None) -> list[dict]:
        """Every zone the server holds (name, account, dnssec, kind; no records)."""
        what = "the zone list"
        zones = _json(self._request("GET", "/zones", what, timeout=timeout, ok=(200,)), what)
        _check(isinstance(zones, list), what, "not a list")
        for item in zones:
            _check(isinstance(item, dict) and isinstance(item.get("name"), str)
                   and isinstance(item.get("account"), (str, type(None))), what, "a zone without a usable name")
        return zones

    def get_zone(self, zone: str, *, timeout: float | None = None) -> dict | None:
        """The zone with its RRsets; None if there is none."""
        what = f"the read of {absolute(zone)}"
        response = self._request("GET", self._zone_path(zone), what, timeout=timeout, ok=(200, 404))
        if response.status_code == 404:
            return None
        body = _json(response, what)
        _check_zone(body, what)
        return body

    def get_rrsets(self, zone: str, name: str, rtype: str | None = None, *,
                   timeout: float | None = None) -> dict | None:
        """The zone's settings with only its RRsets at ``name`` (of type ``rtype``); None
        if there is no such zone. PowerDNS 4.7 and later (Debian 12's 4.7.3 included)
        filter on the server (``rrset_name``, ``rrset_type``), reading the name alone
        whatever the zone's size; an older server ignores the parameters and sends the
        whole zone, which is filtered here: the same answer, at the old cost."""
        name = absolute(name)
        query = {"rrset_name": name, **({"rrset_type": rtype} if rtype else {})}
        what = f"the records at {name}"
        response = self._request("GET", f"{self._zone_path(zone)}?{urlencode(query)}", what, timeout=timeout,
                                 ok=(200, 404))
        if response.status_code == 404:
            return None
        body = _json(response, what)
        _check_zone(body, what)
        rrsets = body.get("rrsets") or []
        kept = [r for r in rrsets if absolute(r["name"]) == name and (rtype is None or r["type"] == rtype)]
        if len(kept) != len(rrsets) and not self.unfiltered:
            self.unfiltered = True
            log.warning("PowerDNS answered a filtered read of %s with more than was asked (a server before 4.7?): "
                        "every pass now reads the whole pool zone", absolute(zone))
        body["rrsets"] = kept
        return body

    def create_zone(self, body: dict, *, timeout: float | None = None) -> bool:
        """POST a zone; False if it exists already (409)."""
        response = self._request("POST", "/zones", f"the creation of {body['name']}", timeout=timeout,
                                 ok=(201, 409), body=body)
        return response.status_code == 201

    def update_zone(self, zone: str, fields: dict, *, timeout: float | None = None) -> None:
        self._request("PUT", self._zone_path(zone), f"the update of {absolute(zone)}", timeout=timeout,
                      ok=(204,), body=fields)

    def patch_rrsets(self, zone: str, rrsets: list[dict], *, timeout: float | None = None) -> None:
        """All of ``rrsets`` (REPLACE or DELETE) in one all-or-nothing PATCH."""
        self._request("PATCH", self._zone_path(zone), f"the records of {absolute(zone)}", timeout=timeout,
                      ok=(204,), body={"rrsets": rrsets})

    def delete_zone(self, zone: str, *, timeout: float | None = None) -> bool:
        """False if it was gone already (404)."""
        response = self._request("DELETE", self._zone_path(zone), f"the deletion of {absolute(zone)}",
                                 timeout=timeout, ok=(204, 404))
        return response.status_code == 204

    def rectify(self, zone: str, *, timeout: float | None = None) -> None:
        self._request("PUT", self._zone_path(zone) + "/rectify", f"the rectify of {absolute(zone)}",
                      timeout=timeout, ok=(200,))

    def list_keys(self, zone: str, *, timeout: float | None = None) -> list[dict]:
        """The zone's keys (without private keys), each with its ``ds`` lines."""
        what = f"the keys of {absolute(zone)}"
        keys = _json(self._request("GET", self._zone_path(zone) + "/cryptokeys", what, timeout=timeout, ok=(200,)),
                     what)
        _check(isinstance(keys, list), what, "not a list")
        for key in keys:
            _check_key(key, what)
            key.pop("privatekey", None)
        return keys

    def add_key(self, zone: str, *, timeout: float | None = None) -> dict:
        """One active, published ECDSA P-256 CSK. The reply's algorithm is checked: a key
        of any other kind is deleted again and the call fails."""
        body = {"keytype": "csk", "active": True, "published": True, "algorithm": KEY_ALGORITHM}
        what = f"the key of {absolute(zone)}"
        key = _json(self._request("POST", self._zone_path(zone) + "/cryptokeys", what, timeout=timeout, ok=(201,),
                                  body=body), what)
        _check_key(key, what)
        key.pop("privatekey", None)  # never kept, never logged
        if key.get("algorithm") != KEY_ALGORITHM_NAME or key.get("flags") != 257:
            if key.get("id") is not None:
                self.delete_key(zone, key["id"], timeout=timeout)
            raise PowerDnsError(f"PowerDNS made a key of algorithm {key.get('algorithm')!r} with flags "
                                f"{key.get('flags')!r} for {absolute(zone)}, not {KEY_ALGORITHM_NAME} 257",
                                transient=False)
        return key

    def delete_key(self, zone: str, key_id: int, *, timeout: float | None = None) -> None:
        self._request("DELETE", f"{self._zone_path(zone)}/cryptokeys/{int(key_id)}",
                      f"the deletion of a key of {absolute(zone)}", timeout=timeout, ok=(204, 404))


def _json(response: requests.Response, what: str) -> Any:
    try:
        return bounded_json.parse(response.content)
    except bounded_json.UnreadableJson as exc:
        raise PowerDnsError(f"PowerDNS answered {what} with something other than its JSON ({exc}; "
                            f"{_content_type(response)})") from None


def _content_type(response: requests.Response) -> str:
    kind = response.headers.get("Content-Type", "")
    return redact(" ".join(kind.split())[:60]) or "no Content-Type"


def _check(ok: bool, what: str, why: str) -> None:
    if not ok:
        raise PowerDnsError(f"PowerDNS answered {what} with JSON of another shape ({why})")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_zone(zone: Any, what: str) -> None:
    """What the planning reads of a zone (``plan.parse_zone_rrsets``, ``backend``) is there
    and of its type: a name, RRsets with a name, a type, an integer TTL and records with
    text content."""
    _check(isinstance(zone, dict) and isinstance(zone.get("name"), str), what, "a zone without a name")
    _check(isinstance(zone.get("account"), (str, type(None))), what, "an account that is not text")
    rrsets = zone.get("rrsets")
    _check(isinstance(rrsets, (list, type(None))), what, "rrsets is not a list")
    for rrset in rrsets or ():
        _check(isinstance(rrset, dict) and isinstance(rrset.get("name"), str) and isinstance(rrset.get("type"), str),
               what, "an RRset without a name or type")
        _check(rrset.get("ttl") is None or _is_int(rrset["ttl"]), what, "a TTL that is not an integer")
        records = rrset.get("records")
        _check(isinstance(records, (list, type(None))), what, "records is not a list")
        for record in records or ():
            _check(isinstance(record, dict) and isinstance(record.get("content"), str), what,
                   "a record without text content")


def _check_key(key: Any, what: str) -> None:
    """What the planning reads of a key (``plan.key_from_api``): an integer id and flags,
    and a list of DS lines."""
    _check(isinstance(key, dict) and _is_int(key.get("id")), what, "a key without an integer id")
    _check(key.get("flags") is None or _is_int(key["flags"]), what, "flags that are not an integer")
    ds = key.get("ds")
    _check(ds is None or (isinstance(ds, list) and all(isinstance(line, str) for line in ds)), what,
           "ds is not a list of text")


def _error_text(response: requests.Response) -> str:
    # 401 and the SQLite-lock 500s come as plain text; the rest as {"error": ...}.
    try:
        body = bounded_json.parse(response.content)
        text = body.get("error") if isinstance(body, dict) else None
    except bounded_json.UnreadableJson:
        text = None
    text = text if isinstance(text, str) and text else (response.text or response.reason or "")
    return redact(" ".join(text.split())[:300])
