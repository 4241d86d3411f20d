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
"""
from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from ..redaction import redact, register_secret
from ..registrar import RegistrarError

log = logging.getLogger(__name__)

# The one key flavour the service creates, and how PowerDNS names its algorithm.
KEY_ALGORITHM = "ecdsa256"
KEY_ALGORITHM_NAME = "ECDSAP256SHA256"
KEY_ALGORITHM_NUMBER = 13
DEFAULT_TIMEOUT = 10.0


class PowerDnsError(RegistrarError):
    """A PowerDNS call failed; ``status`` is the HTTP status (None: no answer)."""

    def __init__(self, message: str, *, status: int | None = None, transient: bool = True):
        super().__init__(message, transient=transient)
        self.status = status


def absolute(name: str) -> str:
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


class PowerDnsClient:
    def __init__(self, base_url: str, api_key: str, server_id: str = "localhost", *,
                 session: requests.Session | None = None):
        self.base = f"{base_url.rstrip('/')}/api/v1/servers/{quote(server_id, safe='')}"
        register_secret(api_key)
        self.session = session or requests.Session()
        self.session.headers["X-API-Key"] = api_key
        retry = Retry(total=2, connect=2, read=0, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504),
                      allowed_methods=frozenset({"GET", "PUT", "PATCH", "DELETE"}), raise_on_status=False,
                      respect_retry_after_header=False)
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))

    # -- one request ---------------------------------------------------------------------

    def _request(self, method: str, path: str, what: str, *, timeout: float | None, ok: tuple[int, ...],
                 body: Any = None) -> requests.Response:
        try:
            response = self.session.request(method, self.base + path, json=body,
                                            timeout=timeout or DEFAULT_TIMEOUT, allow_redirects=False)
        except requests.Timeout:
            raise PowerDnsError(f"PowerDNS did not answer {what} in time") from None
        except requests.RequestException as exc:
            # Never the exception's text: it carries the URL.
            raise PowerDnsError(f"PowerDNS could not be reached for {what} ({type(exc).__name__})") from None
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
        return self._request("GET", "", "the server query", timeout=timeout, ok=(200,)).json()

    def list_zones(self, *, timeout: float | None = None) -> list[dict]:
        """Every zone the server holds (name, account, dnssec, kind; no records)."""
        zones = self._request("GET", "/zones", "the zone list", timeout=timeout, ok=(200,)).json()
        if not isinstance(zones, list):
            raise PowerDnsError("PowerDNS answered the zone list with something other than a list", transient=False)
        return zones

    def get_zone(self, zone: str, *, timeout: float | None = None) -> dict | None:
        """The zone with its RRsets; None if there is none."""
        response = self._request("GET", self._zone_path(zone), f"the read of {absolute(zone)}", timeout=timeout,
                                 ok=(200, 404))
        return None if response.status_code == 404 else response.json()

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
        keys = self._request("GET", self._zone_path(zone) + "/cryptokeys", f"the keys of {absolute(zone)}",
                             timeout=timeout, ok=(200,)).json()
        for key in keys:
            key.pop("privatekey", None)
        return keys

    def add_key(self, zone: str, *, timeout: float | None = None) -> dict:
        """One active, published ECDSA P-256 CSK. The reply's algorithm is checked: a key
        of any other kind is deleted again and the call fails."""
        body = {"keytype": "csk", "active": True, "published": True, "algorithm": KEY_ALGORITHM}
        key = self._request("POST", self._zone_path(zone) + "/cryptokeys", f"the key of {absolute(zone)}",
                            timeout=timeout, ok=(201,), body=body).json()
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


def _error_text(response: requests.Response) -> str:
    # 401 and the SQLite-lock 500s come as plain text; the rest as {"error": ...}.
    try:
        body = response.json()
        text = body.get("error") if isinstance(body, dict) else None
    except ValueError:
        text = None
    text = text if isinstance(text, str) and text else (response.text or response.reason or "")
    return redact(" ".join(text.split())[:300])
