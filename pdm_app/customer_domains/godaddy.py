"""GoDaddy's Domains API for a customer's own domain (bring your own domain).

The token is ``key:secret`` (split on the first ':'; both parts trimmed and non-empty),
sent as ``Authorization: sso-key <key>:<secret>`` and nowhere else.

* validate = ``GET /v1/domains/{domain}``: 200 is a domain of this account (GoDaddy's
  predecessor code listed ``GET /v1/domains?statuses=ACTIVE&limit=1000`` and missed every
  domain past the first thousand); 404 is a domain of another account or none.
* get = the same call, its ``nameServers``.
* set = ``PATCH /v1/domains/{domain}`` ``{"nameServers": [...]}`` -> 204 (any 2xx is ok).

Since 2024 GoDaddy opens the Domains API only to accounts with at least 10 domains or a
Discount Domain Club plan; others get 403 ``ACCESS_DENIED`` ("Authenticated user is not
allowed access") for a good key. That is ``NotEntitled``, told apart from a bad key (401,
or a 403 with another code). Error bodies are ``{code, message, fields}``; a 429 carries
``retryAfterSec``. Sources: /work/shared/docs/registrars.md (GoDaddy) and GoDaddy's
swagger (``/v1/domains/{domain}`` GET/PATCH responses 401/403/404/409/422/429).
"""
from __future__ import annotations

import logging
import math
import re
from typing import Any
from urllib.parse import quote

import requests

from .base import (
    Deadline,
    DomainNotInAccount,
    InvalidToken,
    NotEntitled,
    RateLimited,
    RegistrarFailure,
    call,
    clean_message,
    json_answer,
    new_session,
    retry_after,
    seconds,
    split_token,
)

log = logging.getLogger(__name__)

WHAT = "GoDaddy's API"
EXPECTED_SHAPE = "key:secret (your GoDaddy API key, a colon, then its secret)"
# GoDaddy's keys and secrets are letters, digits and '_': anything outside visible ASCII
# cannot be a header value and is not a GoDaddy credential.
_VISIBLE = re.compile(r"^[\x21-\x7e]+$")
# Statuses of a domain that left the account or can no longer be managed in it
# (GoDaddy's status list: CANCELLED*, TRANSFERRED*, UPDATED* = ownership moved to another
# account, CONFISCATED, EXPIRED_REASSIGNED).
_GONE_PREFIXES = ("CANCELLED", "TRANSFERRED", "UPDATED_OWNERSHIP")
_GONE = frozenset({"CONFISCATED", "EXPIRED_REASSIGNED"})


class GodaddyRegistrar:
    """A customer's GoDaddy account: ``GodaddyRegistrar("https://api.godaddy.com")``
    (OTE: ``https://api.ote-godaddy.com``)."""

    name = "godaddy"
    sets_nameservers = True
    propagation = "godaddy: 1–4 h, up to 48 h"

    def __init__(self, base_url: str, *, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.session = session if session is not None else new_session()

    def __repr__(self) -> str:
        return f"GodaddyRegistrar({self.base_url!r})"

    # -- the interface ---------------------------------------------------------------------

    def validate(self, domain: str, token: str, deadline: Deadline) -> None:
        self._logged("validate", domain, lambda: self._domain_detail(domain, token, deadline))

    def get_nameservers(self, domain: str, token: str, deadline: Deadline) -> list[str]:
        def run() -> list[str]:
            detail = self._domain_detail(domain, token, deadline)
            servers = detail.get("nameServers")
            if servers is None:
                return []  # GoDaddy leaves it out while a domain has none set
            if not isinstance(servers, list) or not all(isinstance(s, str) for s in servers):
                raise _unreadable(domain)
            return [s.strip().rstrip(".").lower() for s in servers if s.strip().rstrip(".")]

        return self._logged("get-ns", domain, run)

    def set_nameservers(self, domain: str, token: str, nameservers: list[str], deadline: Deadline) -> None:
        def run() -> None:
            headers = self._headers(token)
            headers["Content-Type"] = "application/json"
            response = call(self.session, "PATCH", self._url(domain), deadline, what=WHAT,
                            headers=headers, json={"nameServers": list(nameservers)})
            if 200 <= response.status_code < 300:
                return
            raise self._refusal(response, domain, token, writing=True)

        self._logged("set-ns", domain, run)

    # -- calls -----------------------------------------------------------------------------

    def _url(self, domain: str) -> str:
        return f"{self.base_url}/v1/domains/{quote(domain, safe='')}"

    def _headers(self, token: str) -> dict[str, str]:
        key, secret = split_token(token, 2, EXPECTED_SHAPE)
        if not (_VISIBLE.match(key) and _VISIBLE.match(secret)):
            raise InvalidToken(f"the token must look like {EXPECTED_SHAPE}, with no spaces or accented letters inside")
        return {"Authorization": f"sso-key {key}:{secret}", "Accept": "application/json"}

    def _domain_detail(self, domain: str, token: str, deadline: Deadline) -> dict[str, Any]:
        headers = self._headers(token)
        response = call(self.session, "GET", self._url(domain), deadline, what=WHAT, headers=headers)
        if not 200 <= response.status_code < 300:  # 203: "partially successful", still the domain
            raise self._refusal(response, domain, token, writing=False)
        detail = _json(response)
        if not isinstance(detail, dict):
            raise _unreadable(domain)
        status = detail.get("status")
        if isinstance(status, str) and (status.upper() in _GONE or status.upper().startswith(_GONE_PREFIXES)):
            raise DomainNotInAccount(
                f"{domain} is no longer managed in this GoDaddy account (GoDaddy lists it as "
                f"{clean_message(status, token)}); use the account that holds the domain now")
        return detail

    def _refusal(self, response: requests.Response, domain: str, token: str, *, writing: bool) -> RegistrarFailure:
        """The typed error for GoDaddy's non-2xx answer (5xx never gets here: ``call``)."""
        status = response.status_code
        body = _json(response)
        code = body.get("code") if isinstance(body, dict) else None
        code = code.strip().upper() if isinstance(code, str) else ""
        message = body.get("message") if isinstance(body, dict) else None
        said = clean_message(message, token) if isinstance(message, str) else ""

        if status == 401:
            return InvalidToken(
                "GoDaddy did not accept this API key and secret. Copy both again from "
                "developer.godaddy.com/keys: it must be a Production key (an OTE test key does not "
                "work here), entered as key:secret")
        if status == 403 and code == "ACCESS_DENIED":
            return NotEntitled(
                "GoDaddy accepted the API key, but it only opens its Domains API to accounts with at "
                "least 10 domains or a Discount Domain Club plan, and this account has neither. Change "
                f"the nameservers of {domain} by hand in GoDaddy's Domain Portfolio instead, or get "
                "such a plan and try again")
        if status == 403:
            return InvalidToken(
                "GoDaddy refused this API key and secret (access forbidden). Check that the key "
                "belongs to the account that holds the domain and has not been deleted, then try "
                "again with key:secret")
        if status == 404:
            return DomainNotInAccount(
                f"{domain} is not in the GoDaddy account of this API key. Check the spelling, and "
                "use a key of the account that holds the domain")
        if status == 429:
            wait = seconds(body.get("retryAfterSec") if isinstance(body, dict) else None)
            if wait is None:
                wait = retry_after(response)
            when = f"in {math.ceil(wait)} seconds" if wait is not None else "in a minute"
            return RateLimited(f"GoDaddy is limiting requests for this API key; try again {when}",
                               retry_after=wait)
        if writing and status == 409:
            return RegistrarFailure(
                f"GoDaddy will not change the nameservers of {domain} right now"
                + (f" (it said: {said})" if said else "")
                + ". The domain may be locked, expired or in a transfer: check it in your GoDaddy "
                  "account, then try again")
        if writing and status == 422:
            return RegistrarFailure(
                f"GoDaddy did not accept the nameservers for {domain}"
                + (f" (it said: {said})" if said else "")
                + ". Check the nameserver names and try again")
        return RegistrarFailure(
            f"GoDaddy refused the request for {domain} (HTTP {status}"
            + (f": {said}" if said else "")
            + "). Try again later; if it keeps failing, change the nameservers in your GoDaddy account")

    # -- logging ---------------------------------------------------------------------------

    def _logged(self, operation: str, domain: str, run):
        outcome = "failed"
        try:
            result = run()
            outcome = "ok"
            return result
        except RegistrarFailure as exc:
            outcome = exc.code
            raise
        finally:
            log.info("godaddy %s %s: %s", operation, domain, outcome)


def _json(response: requests.Response) -> Any:
    """The body as JSON, or None (never raises, so no exception context leaks out)."""
    try:
        return json_answer(response)
    except ValueError:
        return None


def _unreadable(domain: str) -> RegistrarFailure:
    return RegistrarFailure(
        f"GoDaddy answered about {domain} in a way PDM could not read; try again in a few minutes")

