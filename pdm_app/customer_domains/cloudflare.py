"""Cloudflare, for the bring-your-own-domain flow: check a customer's API token and read
the nameservers Cloudflare assigned to their zone.

Calls (``/work/shared/docs/registrars.md`` §2, Cloudflare):

* validate: ``GET /user/tokens/verify`` -- only ``result.status == "active"`` is a good
  token (a disabled or expired one is refused with a detail that says so) -- then
  ``GET /zones?name=<domain>`` and a case-insensitive match on ``result[].name`` (an
  active zone preferred: several accounts may add the same name). An account-owned
  token is refused by the user endpoint ("Invalid API Token", T ghostmail-ios#2); when
  the user endpoint refuses, the zone lookup still runs (a wrong token fails there too)
  and the token is verified at ``GET /accounts/{zone.account.id}/tokens/verify``.
* get_nameservers: the same zone lookup, then ``GET /zones/{id}`` -> ``result.name_servers``.
* set_nameservers: refused (``Unsupported``) without any call. Cloudflare assigns a zone's
  nameservers; the Edit Zone call takes only ``paused``, ``type`` and (Business and up)
  ``vanity_name_servers``, and Cloudflare Registrar's domain update takes ``auto_renew``,
  ``locked`` and ``privacy``. The predecessor PATCHed ``name_servers`` and then reported
  Cloudflare's unchanged list as a success.

Answers come in the envelope ``{success, errors[{code, message, error_chain?}], messages,
result}``. How they map (first recognised error code wins; then the HTTP status):

=============================================  ======================
HTTP >= 500, transport error, timeout           ApiUnavailable (base.call)
HTTP 429, or code 10013 / 971                   RateLimited (+ Retry-After)
code 9103 / 9109 / 1001 / 7003                  DomainNotInAccount
code 1000 / 10000 / 6003 / 6111                 InvalidToken
other 401 / 403                                 InvalidToken
verify ``status`` disabled / expired / other    InvalidToken, saying which
no zone of that name                            DomainNotInAccount
anything else (400 envelope, 200 success:false,
unknown code, unreadable body, 3xx, 404)        RegistrarFailure
=============================================  ======================

Codes 1000 ("Invalid API Token", the verify endpoint's refusal) and 7003 ("Could not route
to /zones/<id>": a zone id Cloudflare no longer knows) are additions to the predecessor's
list. 9109 is two things at Cloudflare: "Unauthorized to access requested resource" (the
token cannot see the zone: DomainNotInAccount) and "Invalid access token" (certbot's
users report it for a bad token at ``/zones``): with "token" in its message it is
InvalidToken. The verify endpoint answers ``messages: [{code: 10000, "This API Token is valid and
active"}]`` on success: only ``errors`` is read for codes, never ``messages``.

The token goes to Cloudflare in the ``Authorization`` header of each request (never set
on the session, which may be shared) and nowhere else: not in a log line, an exception
text, or a detail. Cloudflare's own error messages are quoted in details only after the
token is cut out of them.
"""
from __future__ import annotations

import logging
import re
from typing import Any, NoReturn

import requests

from .base import (
    Deadline,
    DomainNotInAccount,
    InvalidToken,
    RateLimited,
    RegistrarFailure,
    Unsupported,
    call,
    json_answer,
    new_session,
    retry_after,
    split_token,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.cloudflare.com/client/v4"
WHAT = "Cloudflare's API"
SHAPE_HINT = "a Cloudflare API token (one string without spaces, from My Profile > API Tokens)"

# Error codes by class; 9109 with a message about the token is InvalidToken (_classify).
INVALID_CODES = frozenset({1000, 10000, 6003, 6111})
NOT_IN_ACCOUNT_CODES = frozenset({9103, 9109, 1001, 7003})
RATE_CODES = frozenset({10013, 971})

# Visible ASCII only: anything else cannot go in an HTTP header as-is (requests would
# fail with an error that is not a transport error, or send it mangled).
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]{1,1024}")
# Cloudflare's zone and account identifiers are 32 hex digits; an id from an answer goes
# into a URL path only if it looks like one.
_ID = re.compile(r"[0-9a-f]{32}")
_DIGITS = re.compile(r"[0-9]{1,9}")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})+")

_INVALID_DETAIL = (
    "Cloudflare did not accept this API token. Check that it is an API token (not the "
    "Global API Key), copied whole, still active and not limited to other IP addresses; "
    "or create a new one with Zone > Zone > Read permission for the domain."
)
_UNREADABLE = (
    "Cloudflare's answer could not be understood; try again in a few minutes, and if it "
    "keeps happening contact support"
)


class CloudflareRegistrar:
    """Cloudflare's API v4 for a customer's own zone; see the module text for the calls
    and the error mapping."""

    name = "cloudflare"
    # Cloudflare assigns a zone's nameservers (see the module text).
    sets_nameservers = False
    propagation = "cloudflare: minutes, TLD up to 24 h"

    def __init__(self, base_url: str, *, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.session = session if session is not None else new_session()

    def __repr__(self) -> str:
        return f"CloudflareRegistrar({self.base_url!r})"

    # -- the interface ----------------------------------------------------------------

    def validate(self, domain: str, token: str, deadline: Deadline) -> None:
        with _Outcome("validate", domain):
            secret = _parse_token(token)
            account_token = False
            try:
                status = self._token_status("/user/tokens/verify", secret, deadline)
            except InvalidToken:
                # An account-owned token is refused by the user endpoint ("Invalid API
                # Token"): it verifies under its account, which the zone names. A token
                # that is simply wrong is refused by the zone lookup as well.
                account_token, status = True, ""
            if not account_token:
                _require_active(status)
            zone = self._find_zone(domain, secret, deadline)
            if account_token:
                account = zone.get("account")
                account_id = account.get("id") if isinstance(account, dict) else None
                if not isinstance(account_id, str) or not _ID.fullmatch(account_id):
                    raise InvalidToken(_INVALID_DETAIL)
                _require_active(self._token_status(f"/accounts/{account_id}/tokens/verify", secret, deadline))

    def get_nameservers(self, domain: str, token: str, deadline: Deadline) -> list[str]:
        with _Outcome("get_nameservers", domain):
            secret = _parse_token(token)
            zone_id = self._find_zone(domain, secret, deadline)["id"]
            result = self._get(f"/zones/{zone_id}", secret, deadline, domain=domain)
            if not isinstance(result, dict):
                _unreadable()
            return _nameserver_list(result.get("name_servers"))

    def set_nameservers(self, domain: str, token: str, nameservers: list[str], deadline: Deadline) -> None:
        with _Outcome("set_nameservers", domain):
            _parse_token(token)
            wanted = ", ".join(nameservers)
            failure = Unsupported(
                "Cloudflare cannot change a domain's nameservers: a zone at Cloudflare is always "
                "served by the nameservers Cloudflare assigns to it, and its API offers no way to "
                f"set others. To delegate {domain} to {wanted}, set them at the registrar where "
                f"{domain} is registered: choose that registrar here instead of Cloudflare, or "
                "change them in its control panel. A domain registered with Cloudflare Registrar "
                "always uses Cloudflare's nameservers; to use others, transfer it to a registrar "
                "that allows setting nameservers."
            )
            raise failure

    # -- calls ------------------------------------------------------------------------

    def _token_status(self, path: str, secret: str, deadline: Deadline) -> str:
        """``result.status`` of a token verify call ("active", "disabled", "expired")."""
        result = self._get(path, secret, deadline)
        if not isinstance(result, dict) or not isinstance(result.get("status"), str):
            _unreadable()
        return result["status"]

    def _find_zone(self, domain: str, secret: str, deadline: Deadline) -> dict[str, Any]:
        """The zone named ``domain`` that the token can see. Cloudflare lets
        several accounts add the same name (only one is ever active): an active zone is
        preferred."""
        result = self._get("/zones", secret, deadline, params={"name": domain}, domain=domain)
        if not isinstance(result, list):
            _unreadable()
        matches = [z for z in result
                   if isinstance(z, dict) and isinstance(z.get("name"), str)
                   and z["name"].strip().lower().rstrip(".") == domain]
        if not matches:
            raise DomainNotInAccount(_not_in_account(domain))
        matches.sort(key=lambda z: z.get("status") != "active")
        zone = matches[0]
        if not isinstance(zone.get("id"), str) or not _ID.fullmatch(zone["id"]):
            _unreadable()
        return zone

    def _get(self, path: str, secret: str, deadline: Deadline, *, params: dict[str, str] | None = None,
             domain: str | None = None) -> Any:
        """``result`` of a successful GET; every other answer raised as its typed error."""
        response = call(self.session, "GET", self.base_url + path, deadline, what=WHAT,
                        params=params, headers={"Authorization": f"Bearer {secret}",
                                                "Accept": "application/json"})
        envelope = _envelope(response)
        if response.status_code == 200 and envelope is not None and envelope.get("success") is True:
            if "result" not in envelope:
                _unreadable()
            return envelope["result"]
        _refused(response, envelope, secret, domain)


# -- answers ---------------------------------------------------------------------------

def _envelope(response: requests.Response) -> dict[str, Any] | None:
    """The JSON envelope, or None when the body is not one."""
    try:
        body = json_answer(response)
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("success"), bool):
        return None
    return body


def _errors(envelope: dict[str, Any] | None) -> list[tuple[int, str]]:
    """(code, message) of each error in order, each followed by its ``error_chain`` (6003
    "Invalid request headers" carries 6111 "Invalid format for Authorization header")."""
    found: list[tuple[int, str]] = []

    def walk(errors: Any, depth: int) -> None:
        if not isinstance(errors, list) or depth > 3:
            return
        for error in errors:
            if not isinstance(error, dict):
                continue
            code, message = error.get("code"), error.get("message")
            text = message if isinstance(message, str) else ""
            if isinstance(code, int) and not isinstance(code, bool):
                found.append((code, text))
            elif isinstance(code, str) and _DIGITS.fullmatch(code):
                found.append((int(code), text))
            walk(error.get("error_chain"), depth + 1)

    if envelope is not None:
        walk(envelope.get("errors"), 0)
    return found


def _classify(code: int, message: str) -> type[RegistrarFailure] | None:
    if code in RATE_CODES:
        return RateLimited
    if code == 9109 and "token" in message.lower():
        # 9109 is both "Unauthorized to access requested resource" (the token cannot see
        # the zone) and "Invalid access token" (reported by certbot's Cloudflare plugin).
        return InvalidToken
    if code in NOT_IN_ACCOUNT_CODES:
        return DomainNotInAccount
    if code in INVALID_CODES:
        return InvalidToken
    return None


def _refused(response: requests.Response, envelope: dict[str, Any] | None, secret: str,
             domain: str | None) -> NoReturn:
    """Raise the typed error for an answer that is not a success: 429 first, then the
    first error code with a class, then 401/403; anything else is RegistrarFailure."""
    status = response.status_code
    kind: type[RegistrarFailure] | None = None
    if status == 429:
        kind = RateLimited
    else:
        for code, message in _errors(envelope):
            kind = _classify(code, message)
            if kind is not None:
                break
        if kind is None and status in (401, 403):
            kind = InvalidToken

    if kind is RateLimited:
        raise RateLimited(
            "Cloudflare is limiting requests made with this token (at most 1,200 per 5 minutes); "
            "wait a few minutes and try again",
            retry_after=retry_after(response),
        )
    if kind is DomainNotInAccount:
        raise DomainNotInAccount(_not_in_account(domain))
    if kind is InvalidToken:
        raise InvalidToken(_INVALID_DETAIL)
    if envelope is None:
        if status == 200:
            _unreadable()
        raise RegistrarFailure(
            f"Cloudflare answered with an unexpected HTTP {status}; try again in a few minutes, "
            "and if it keeps happening contact support"
        )
    said = _quote_errors(envelope, secret)
    raise RegistrarFailure(
        f"Cloudflare refused the request{' (' + said + ')' if said else ''}; check the token's "
        "permissions and the domain, then try again"
    )


def _quote_errors(envelope: dict[str, Any], secret: str) -> str:
    """Cloudflare's first errors as "code: message", made safe to show: the token cut
    out, printable characters only, short."""
    parts: list[str] = []
    errors = envelope.get("errors")
    for error in errors if isinstance(errors, list) else []:
        if not isinstance(error, dict):
            continue
        code, message = error.get("code"), error.get("message")
        text = str(message) if isinstance(message, str) else ""
        text = text.replace(secret, "***") if secret else text
        text = "".join(c if c.isprintable() else " " for c in text).strip()[:160]
        label = str(code) if isinstance(code, (int, str)) and _DIGITS.fullmatch(str(code)) else ""
        if label or text:
            parts.append(f"error {label}: {text}" if label and text else (f"error {label}" if label else text))
        if len(parts) == 2:
            break
    return "; ".join(parts)


def _require_active(status: str) -> None:
    if status == "active":
        return
    if status == "disabled":
        raise InvalidToken(
            "This Cloudflare API token is disabled. Enable it again under My Profile > "
            "API Tokens, or create a new one with Zone > Zone > Read permission for the domain."
        )
    if status == "expired":
        raise InvalidToken(
            "This Cloudflare API token has expired. Create a new one under My Profile > "
            "API Tokens with Zone > Zone > Read permission for the domain (or extend its TTL)."
        )
    raise InvalidToken(
        "Cloudflare says this API token is not active. Check it under My Profile > API "
        "Tokens, or create a new one with Zone > Zone > Read permission for the domain."
    )


def _not_in_account(domain: str | None) -> str:
    name = domain or "the domain"
    return (
        f"This token cannot see a Cloudflare zone named {name}. Check that {name} is added to "
        "the Cloudflare account the token belongs to and that the token has Zone > Zone > Read "
        "permission for it (All zones, or this zone)."
    )


def _nameserver_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        _unreadable()
    names: list[str] = []
    for item in value:
        if not isinstance(item, str):
            _unreadable()
        name = item.strip().lower().rstrip(".")
        if not _HOSTNAME.fullmatch(name):
            _unreadable()
        names.append(name)
    return names


def _unreadable() -> NoReturn:
    raise RegistrarFailure(_UNREADABLE)


def _parse_token(token: str) -> str:
    """The whole token, trimmed; InvalidToken (no call made) when empty or not sendable."""
    (secret,) = split_token(token, 1, SHAPE_HINT)
    if not _TOKEN_CHARS.fullmatch(secret):
        raise InvalidToken(f"the token must look like {SHAPE_HINT}")
    return secret


class _Outcome:
    """One log line per operation: ``cloudflare <operation> <domain>: <outcome>``."""

    def __init__(self, operation: str, domain: str):
        self.operation = operation
        self.domain = domain

    def __enter__(self) -> "_Outcome":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        if kind is None:
            outcome = "ok"
        elif isinstance(exc, RegistrarFailure):
            outcome = exc.code
        else:
            outcome = "failed"
        log.info("cloudflare %s %s: %s", self.operation, self.domain, outcome)
        return False


__all__ = ["CloudflareRegistrar", "DEFAULT_BASE_URL"]
