"""OVHcloud, for the bring-your-own-domain flow: check the customer's API keys and flip the
domain's nameservers.

The token is exactly ``appKey:appSecret:consumerKey``. Every call but ``/auth/time`` is
signed (https://docs.ovh.com/gb/en/customer/first-steps-with-ovh-api/, and the public
python-ovh client)::

    X-Ovh-Application: AK
    X-Ovh-Consumer:    CK
    X-Ovh-Timestamp:   <OVH's unix time, seconds>
    X-Ovh-Signature:   "$1$" + hex(SHA1(AS+"+"+CK+"+"+METHOD+"+"+FULL_URL+"+"+BODY+"+"+TS))

plain SHA-1 (not an HMAC), the full URL with its query, BODY the exact bytes sent ("" for a
GET). The timestamp is OVH's clock, not ours: like OVH's own clients, an adapter reads the
unsigned ``GET /auth/time`` once (under a lock) and keeps the offset from the local clock.
When OVH answers ``QUERY_TIME_OUT`` (the timestamp is too far off, e.g. our clock jumped)
the offset is read again and the call is made once more -- OVH refused it before doing
anything, so even a write is safe to repeat.

Calls:

* validate: ``GET /domain/{d}`` (404 ``Client::NotFound`` -> not in the account).
* get: ``GET /domain/{d}/nameServer`` -> ids, then ``GET /domain/{d}/nameServer/{id}`` ->
  ``host`` for each (1+N calls, each within the request's deadline).
* set: ``GET /domain/{d}``; when its ``nameServerType`` is ``hosted``, first
  ``PUT /domain/{d}`` ``{"nameServerType":"external"}`` (as public clients do); then
  ``POST /domain/{d}/nameServers/update`` ``{"nameServers":[{"host":...}]}``, which answers
  a ``domain.Task``. The update is asynchronous: the list changes only when OVH carries
  out the task (minutes to hours), so an immediate read-back shows the old list
  (``APPLIES_LATER``). ``submit_nameservers`` returns the task, ``task_status`` reads it
  later.

Keys work only on the OVH platform that issued them; the platform is a service setting
(``PDM_OVH_ENDPOINT``): one of ``ENDPOINTS`` or a URL.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from .base import (
    ApiUnavailable,
    Deadline,
    DomainNotInAccount,
    InvalidToken,
    NotEntitled,
    RateLimited,
    RegistrarFailure,
    call,
    json_answer,
    new_session,
    retry_after,
    split_token,
)

log = logging.getLogger(__name__)

# PDM_OVH_ENDPOINT -> base URL. A key works only on the platform that issued it.
ENDPOINTS = {
    "ovh-eu": "https://eu.api.ovh.com/1.0",
    "ovh-ca": "https://ca.api.ovh.com/1.0",
    "ovh-us": "https://api.us.ovhcloud.com/1.0",
}
DEFAULT_ENDPOINT = "ovh-eu"
# The nameserver update is a task OVH carries out later: read-back shows the old list.
APPLIES_LATER = True
PROPAGATION = "ovh: async task queue, 1–4 h"
CREDENTIALS_SHAPE = "appKey:appSecret:consumerKey (three parts separated by ':')"
WHAT = "OVH's API"
RIGHTS = "GET, PUT and POST on /domain/*"

_INVALID_CREDENTIAL_CODES = frozenset({"INVALID_KEY", "INVALID_CREDENTIAL", "NOT_CREDENTIAL", "INVALID_SIGNATURE"})
_NOT_ENTITLED_CODES = frozenset({"NOT_GRANTED_CALL", "FORBIDDEN"})
_STALE_CODE = "QUERY_TIME_OUT"
_MAX_MESSAGE = 200


def endpoint_url(setting: str) -> str:
    """The base URL for ``PDM_OVH_ENDPOINT``: a name from ``ENDPOINTS`` or a URL."""
    value = (setting or DEFAULT_ENDPOINT).strip()
    if value.lower() in ENDPOINTS:
        return ENDPOINTS[value.lower()]
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise ValueError(f"PDM_OVH_ENDPOINT must be one of {', '.join(sorted(ENDPOINTS))} or an http(s) URL "
                         "without credentials")
    return value.rstrip("/")


def sign(app_secret: str, consumer_key: str, method: str, url: str, body: str, timestamp: int | str) -> str:
    """OVH's request signature: ``"$1$" + hex(SHA1(AS+CK+METHOD+URL+BODY+TS joined by "+"))``."""
    plain = "+".join([app_secret, consumer_key, method.upper(), url, body, str(timestamp)])
    # OVH's scheme is a plain SHA-1 of the secret and the request, not ours to choose.
    return "$1$" + hashlib.sha1(plain.encode("utf-8")).hexdigest()  # nosec B324


class _Creds:
    """The three parts of the token. ``repr`` never shows them."""

    __slots__ = ("app_key", "app_secret", "consumer_key")

    def __init__(self, token: str):
        self.app_key, self.app_secret, self.consumer_key = split_token(token, 3, CREDENTIALS_SHAPE)

    def scrub(self, text: str) -> str:
        for secret in (self.app_secret, self.consumer_key, self.app_key):
            text = text.replace(secret, "***")
        return text

    def __repr__(self) -> str:
        return "<ovh credentials>"


class _Stale(Exception):
    """OVH said the request's timestamp is too far from its clock."""


class OvhRegistrar:
    """A customer's OVH account, reached at ``base_url`` (a URL from ``ENDPOINTS``, or one of
    its names). One instance serves every request: it keeps only OVH's clock offset."""

    name = "ovh"
    sets_nameservers = True
    propagation = PROPAGATION
    applies_later = APPLIES_LATER

    def __init__(self, base_url: str = ENDPOINTS[DEFAULT_ENDPOINT], *, session: requests.Session | None = None):
        self.base_url = endpoint_url(base_url)
        self.session = session if session is not None else new_session()
        self._time_lock = threading.Lock()
        self._offset: int | None = None  # OVH's clock minus ours, whole seconds
        self._offset_generation = 0
        self.platform = urlsplit(self.base_url).netloc

    def __repr__(self) -> str:
        return f"OvhRegistrar({self.base_url!r})"

    # -- the interface ---------------------------------------------------------------------

    def validate(self, domain: str, token: str, deadline: Deadline) -> None:
        self._logged("validate", domain, lambda: self._domain(domain, _Creds(token), deadline))

    def get_nameservers(self, domain: str, token: str, deadline: Deadline) -> list[str]:
        return self._logged("get-ns", domain, lambda: self._nameservers(domain, _Creds(token), deadline))

    def set_nameservers(self, domain: str, token: str, nameservers: list[str], deadline: Deadline) -> None:
        """Ask OVH to delegate ``domain``; returns once OVH accepted the task (it applies later)."""
        self.submit_nameservers(domain, token, nameservers, deadline)

    # -- OVH specifics ---------------------------------------------------------------------

    def submit_nameservers(self, domain: str, token: str, nameservers: list[str], deadline: Deadline) -> dict[str, Any]:
        """``set_nameservers`` that returns OVH's task (``id``, ``status``, ...)."""
        return self._logged("set-ns", domain, lambda: self._submit(domain, _Creds(token), nameservers, deadline))

    def task_status(self, domain: str, token: str, task_id: int, deadline: Deadline) -> str:
        """The status of a task ``submit_nameservers`` returned: todo, doing, done, error, ..."""
        def run() -> str:
            creds = _Creds(token)
            task = self._request(creds, "GET", f"{_domain_path(domain)}/task/{int(task_id)}", deadline)
            status = task.get("status") if isinstance(task, dict) else None
            if not isinstance(status, str):
                raise _unreadable()
            return status
        return self._logged("task", domain, run)

    # -- operations ------------------------------------------------------------------------

    def _domain(self, domain: str, creds: _Creds, deadline: Deadline) -> dict[str, Any]:
        info = self._request(creds, "GET", _domain_path(domain), deadline)
        if not isinstance(info, dict):
            raise _unreadable()
        return info

    def _nameservers(self, domain: str, creds: _Creds, deadline: Deadline) -> list[str]:
        ids = self._request(creds, "GET", f"{_domain_path(domain)}/nameServer", deadline)
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise _unreadable()
        hosts: list[str] = []
        for ns_id in ids:
            try:
                entry = self._request(creds, "GET", f"{_domain_path(domain)}/nameServer/{ns_id}", deadline)
            except DomainNotInAccount:
                continue  # removed between the list and this read (a task completing)
            host = entry.get("host") if isinstance(entry, dict) else None
            if not isinstance(host, str):
                raise _unreadable()
            host = host.strip().rstrip(".").lower()
            if host and host not in hosts:
                hosts.append(host)
        return hosts

    def _submit(self, domain: str, creds: _Creds, nameservers: list[str], deadline: Deadline) -> dict[str, Any]:
        info = self._domain(domain, creds, deadline)
        if info.get("nameServerType") == "hosted":
            # OVH's own DNS servers are in use: switch to external ones first.
            self._request(creds, "PUT", _domain_path(domain), deadline, {"nameServerType": "external"})
        task = self._request(creds, "POST", f"{_domain_path(domain)}/nameServers/update", deadline,
                             {"nameServers": [{"host": host} for host in nameservers]})
        if not isinstance(task, dict) or not isinstance(task.get("id"), int):
            raise _unreadable()
        if task.get("status") in ("error", "cancelled"):
            raise RegistrarFailure("OVH accepted the nameserver change but its task failed at once; check the "
                                   "domain's operations in the OVH control panel and try again")
        return task

    def _logged(self, operation: str, domain: str, run):
        try:
            result = run()
        except RegistrarFailure as exc:
            log.info("ovh %s %s: %s", operation, domain, exc.code)
            raise
        log.info("ovh %s %s: ok", operation, domain)
        return result

    # -- signed calls ----------------------------------------------------------------------

    def _request(self, creds: _Creds, method: str, path: str, deadline: Deadline, payload: Any = None) -> Any:
        """One signed call and its JSON answer; a stale timestamp re-reads OVH's clock once."""
        for attempt in (1, 2):
            offset, generation = self._server_offset(deadline)
            try:
                return self._signed(creds, method, path, deadline, payload, offset)
            except _Stale:
                if attempt == 2:
                    raise RegistrarFailure("OVH refused the request's time stamp twice; try again in a few "
                                           "minutes") from None
                self._forget_offset(generation)
        raise AssertionError("unreachable")

    def _signed(self, creds: _Creds, method: str, path: str, deadline: Deadline, payload: Any, offset: int) -> Any:
        url = requests.Request(method, self.base_url + path).prepare().url or ""
        body = "" if payload is None else json.dumps(payload, separators=(",", ":"))
        timestamp = int(time.time()) + offset
        headers = {
            "Accept": "application/json",
            "X-Ovh-Application": creds.app_key,
            "X-Ovh-Consumer": creds.consumer_key,
            "X-Ovh-Timestamp": str(timestamp),
            "X-Ovh-Signature": sign(creds.app_secret, creds.consumer_key, method, url, body, timestamp),
        }
        kwargs: dict[str, Any] = {"headers": headers}
        if payload is not None:
            headers["Content-Type"] = "application/json"
            kwargs["data"] = body.encode("utf-8")
        response = call(self.session, method, url, deadline, what=WHAT, **kwargs)
        if 200 <= response.status_code < 300:
            return _json(response)
        raise self._refusal(response, creds, method, path)

    def _server_offset(self, deadline: Deadline) -> tuple[int, int]:
        """OVH's clock minus ours, read once per adapter (one reader at a time)."""
        if not self._time_lock.acquire(timeout=max(0.0, deadline.remaining())):
            raise ApiUnavailable(f"{WHAT} did not answer in time; try again in a few minutes")
        try:
            if self._offset is None:
                response = call(self.session, "GET", self.base_url + "/auth/time", deadline, what=WHAT,
                                headers={"Accept": "application/json"})
                if response.status_code == 429:
                    raise _rate_limited(response)
                if response.status_code != 200:
                    raise RegistrarFailure(f"{WHAT} did not tell its time (HTTP {response.status_code}); check the "
                                           "OVH endpoint setting or try again later")
                server_time = _json(response)
                if not isinstance(server_time, int) or isinstance(server_time, bool):
                    raise _unreadable()
                self._offset = server_time - int(time.time())
                self._offset_generation += 1
            return self._offset, self._offset_generation
        finally:
            self._time_lock.release()

    def _forget_offset(self, generation: int) -> None:
        with self._time_lock:
            if self._offset_generation == generation:
                self._offset = None

    def _refusal(self, response: requests.Response, creds: _Creds, method: str, path: str) -> Exception:
        status = response.status_code
        try:
            body = json_answer(response)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {}
        code = body.get("errorCode") if isinstance(body.get("errorCode"), str) else ""
        klass = body.get("class") if isinstance(body.get("class"), str) else ""
        raw_message = body.get("message") if isinstance(body.get("message"), str) else ""
        message = creds.scrub(" ".join(raw_message.split()))[:_MAX_MESSAGE]
        said = f' (OVH said: "{message}")' if message else ""

        if code == _STALE_CODE:
            return _Stale()
        if code == "INVALID_KEY":
            return InvalidToken(f"OVH does not recognise this application key on {self.platform}; check the "
                                "appKey (the first part of the token) and that it was created on this OVH "
                                "platform (EU, Canada and US keys work only on their own)")
        if code == "INVALID_SIGNATURE":
            return InvalidToken("OVH refused the request's signature: the appSecret (the second part of the "
                                "token) does not belong to this appKey; copy both again")
        if code == "NOT_CREDENTIAL":
            return InvalidToken("OVH does not know this consumerKey (the third part of the token) for this "
                                "appKey; create a consumer key for this application and try again")
        if code == "INVALID_CREDENTIAL":
            return InvalidToken("OVH says this consumerKey (the third part of the token) is not valid: it may "
                                "have expired, been revoked, or never been validated; create a new consumer "
                                f"key with {RIGHTS} and validate it")
        if code in _NOT_ENTITLED_CODES:
            return NotEntitled(f"these OVH keys work but may not call {method} {path}; create a consumer key "
                               f"with {RIGHTS} (and GET on /domain) and try again")
        if status == 429:
            return _rate_limited(response)
        if status in (401, 403):
            return InvalidToken(f"OVH refused these credentials{said}; check the token "
                                f"({CREDENTIALS_SHAPE}) and try again")
        if status == 404:
            if klass == "Client::NotFound":
                return DomainNotInAccount("the domain is not in the OVH account these keys belong to; check "
                                          "the domain name or use the keys of the account that holds it")
            return RegistrarFailure(f"{WHAT} does not know this address (HTTP 404){said}; check the OVH "
                                    "endpoint setting")
        if status == 460:
            return RegistrarFailure(f"OVH says this domain's service has expired or is suspended{said}; "
                                    "renew it at OVH and try again")
        if status == 409:
            return RegistrarFailure(f"OVH refused the change because of a conflict{said}; an earlier change "
                                    "may still be in progress: wait for it to finish and try again")
        if status == 400:
            return RegistrarFailure(f"OVH refused the request{said}; check the domain and nameservers")
        return RegistrarFailure(f"OVH answered HTTP {status}{said}; try again later or contact support")


def _domain_path(domain: str) -> str:
    return "/domain/" + quote(domain, safe="")


def _json(response: requests.Response) -> Any:
    try:
        return json_answer(response)
    except ValueError:
        raise _unreadable() from None


def _unreadable() -> RegistrarFailure:
    return RegistrarFailure(f"{WHAT} gave an answer PDM could not read; try again in a few minutes")


def _rate_limited(response: requests.Response) -> RateLimited:
    wait = retry_after(response)
    hint = f"try again in {int(wait)} seconds" if wait is not None else "wait a minute and try again"
    return RateLimited(f"OVH is limiting requests from these keys; {hint}", retry_after=wait)
