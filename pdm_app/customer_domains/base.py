"""A customer's own registrar, for the bring-your-own-domain flow: check the customer's
API credentials and flip the domain's nameservers. One module per provider behind this
small interface; typed errors that the HTTP layer maps to statuses in one place.

The customer's token is a secret that belongs to them: it is sent to their provider only,
and never logged, stored, echoed, or put in an exception text (``requests`` exception
texts carry the URL, and Namecheap and Dynadot put the secret in the query string).
"""
from __future__ import annotations

import http.cookiejar
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Protocol

import requests

from .. import bounded_json, outbound

# One provider call may take this long at most; a request as a whole gets a deadline of
# its own (validate ~12 s, set-ns ~25 s: inside catalyst-api's 15 s / 30 s).
CALL_TIMEOUT = 8.0
# The largest answer read from a customer's provider: theirs are a domain, a zone, a page
# of up to 100 domains -- a few KiB to tens of KiB.
MAX_ANSWER_BYTES = 1024 * 1024
USER_AGENT = "pool-domain-manager"
MESSAGE_LIMIT = 200
MAX_RETRY_AFTER = 3600.0


class RegistrarFailure(Exception):
    """A provider refused or failed. ``detail`` is shown to a person in the wizard: it says
    what happened and what to do, and never carries the token or a URL."""

    code = "registrar-error"
    status = 502

    def __init__(self, detail: str, *, retry_after: float | None = None):
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class InvalidToken(RegistrarFailure):
    """Bad credentials, or a token of the wrong shape (then no provider call was made)."""

    code, status = "invalid-token", 401


class RateLimited(RegistrarFailure):
    code, status = "rate-limited", 429


class DomainNotInAccount(RegistrarFailure):
    code, status = "domain-not-in-account", 403


class NotEntitled(RegistrarFailure):
    """The credentials are good but the account may not use the API (GoDaddy's accounts
    with fewer than 10 domains) or this key lacks the route (OVH's NOT_GRANTED_CALL)."""

    code, status = "account-not-entitled", 403


class ApiUnavailable(RegistrarFailure):
    """Transport error, timeout or a 5xx: try again later."""

    code, status = "api-unavailable", 502


class Unsupported(RegistrarFailure):
    """The provider cannot do what was asked (Cloudflare's nameservers are assigned)."""

    code, status = "unsupported-operation", 422


# ``lock(api_key, timeout)``: held around a whole operation, so one call is in flight per
# key (Dynadot's rule); TimeoutError when it cannot be had in time.
KeyLock = Callable[[str, float], ContextManager[Any]]


class Deadline:
    """The time a request has left for its provider calls."""

    def __init__(self, seconds: float, clock=time.monotonic):
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        return self._end - self._clock()

    def call_timeout(self) -> float:
        """The timeout of the next call: at most CALL_TIMEOUT, at most what is left."""
        left = self.remaining()
        if left <= 0.05:
            raise ApiUnavailable("the registrar did not answer in time; try again in a few minutes")
        return min(CALL_TIMEOUT, left)


@dataclass(frozen=True)
class Flip:
    """What set-ns did: the list the provider reports afterwards, and whether anything was
    written (an identical list is not written again)."""

    written: bool
    read_back: list[str] | None
    # OVH applies the change later (a task): an immediate read-back shows the old list.
    applies_later: bool = False
    notes: list[str] = field(default_factory=list)


class CustomerRegistrar(Protocol):
    name: str
    propagation: str
    # False: the provider offers no way to set a domain's nameservers; ``set_nameservers``
    # raises Unsupported (saying what to do instead) without any call, and set-ns is
    # refused before anything is asked of the provider.
    sets_nameservers: bool

    def validate(self, domain: str, token: str, deadline: Deadline) -> None:
        """The token is good and ``domain`` is in its account; else a RegistrarFailure."""

    def get_nameservers(self, domain: str, token: str, deadline: Deadline) -> list[str]:
        """The domain's nameservers as the provider has them now (lower-case)."""

    def set_nameservers(self, domain: str, token: str, nameservers: list[str], deadline: Deadline) -> None:
        """Ask the provider to delegate ``domain`` to ``nameservers``."""


def split_token(token: str, parts: int, shape: str, *, at_least: int | None = None) -> list[str]:
    """``token`` split on ':' into ``parts`` trimmed, non-empty pieces (``at_least`` allows
    fewer); a token of another shape is InvalidToken naming the expected ``shape``, made
    before any provider call."""
    pieces = [p.strip() for p in token.split(":", parts - 1)]
    low = at_least or parts
    if not (low <= len(pieces) <= parts) or not all(pieces):
        raise InvalidToken(f"the token must look like {shape}")
    return pieces


def new_session() -> requests.Session:
    """The session conventions of every adapter: no retries by the transport (the request's
    deadline decides), a plain user agent; ``call`` follows no redirect."""
    session = outbound.mount(requests.Session())
    session.headers["User-Agent"] = USER_AGENT
    # One session serves every customer: a cookie set for one must never go with another's call.
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return session


def call(session: requests.Session, method: str, url: str, deadline: Deadline, *, what: str,
         **kwargs: Any) -> requests.Response:
    """One HTTP call within the deadline -- the answer read whole, at most MAX_ANSWER_BYTES.
    Transport errors, timeouts and 5xx are ApiUnavailable with a message that names
    ``what`` -- never the exception's text, which carries the URL and with it, for some
    providers, the customer's secret."""
    failure: RegistrarFailure | None = None
    try:
        response = outbound.request(session, method, url, deadline=deadline.call_timeout(),
                                    max_bytes=MAX_ANSWER_BYTES, **kwargs)
    except outbound.TimedOut:
        failure = ApiUnavailable(f"{what} did not answer in time; try again in a few minutes")
    except outbound.Unsendable:
        # A credential that cannot travel in a header (the exception would hold it).
        failure = InvalidToken("the credentials hold characters no API key has; copy them again")
    except outbound.TooLarge:
        failure = RegistrarFailure(f"{what} sent an answer far larger than any it should; try again in a few "
                                   "minutes, and if it keeps happening contact support")
    except outbound.OutboundError:
        failure = ApiUnavailable(f"{what} could not be reached; try again in a few minutes")
    if failure is not None:
        raise failure from None
    if response.status_code >= 500:
        raise ApiUnavailable(f"{what} is having trouble (HTTP {response.status_code}); try again in a few minutes")
    return response


def json_answer(response: requests.Response) -> Any:
    """The answer's body as JSON; ``bounded_json.UnreadableJson`` (a ValueError) when it is
    not JSON or is nested too deep to be any provider's answer."""
    return bounded_json.parse(response.content)


def seconds(value: Any) -> float | None:
    """A provider's "retry after" hint as seconds we may pass on: finite, 0..1 hour."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return min(number, MAX_RETRY_AFTER)


def retry_after(response: requests.Response) -> float | None:
    return seconds(response.headers.get("Retry-After"))


def clean_message(text: str, token: str) -> str:
    """A provider's own words made safe to show a person: no control characters, no links,
    no piece of the customer's token, one line, at most MESSAGE_LIMIT characters."""
    text = re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+", " ", text)
    text = re.sub(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+", "[link]", text)
    pieces = {token, *token.split(":")}
    for piece in sorted((p.strip() for p in pieces), key=len, reverse=True):
        if len(piece) >= 4:
            text = text.replace(piece, "[redacted]")
    text = " ".join(text.split()).strip(" .")
    if len(text) > MESSAGE_LIMIT:
        text = text[: MESSAGE_LIMIT - 1].rstrip() + "…"
    return text
