"""Who is signed in to the console, and the headers every page goes out with.

An operator signs in with an operator token (``auth.TokenBook``), exchanged for a signed
session cookie scoped to /console (HttpOnly, SameSite=Strict, Secure over TLS or when
PDM_CONSOLE_SECURE_COOKIE says so) that lapses after PDM_CONSOLE_IDLE_TIMEOUT without a
request. Or, with PDM_CONSOLE_SSO_PROXIES, an authenticating proxy (oauth2-proxy) signs
them in: its ``X-Auth-Request-User`` (else ``-Email``) header is believed from those
addresses only -- from anywhere else it is ignored.
"""
from __future__ import annotations

import ipaddress
import re
import time
from dataclasses import dataclass

from flask import current_app, request, session
from flask.sessions import SecureCookieSessionInterface

from ..auth import OPERATOR, TokenBook
from ..config import Settings

PREFIX = "/console"
SSO_HEADERS = ("X-Auth-Request-User", "X-Auth-Request-Email")
# A signed-in operator's last request is written back to the cookie at most this often.
_SEEN_EVERY = 30.0
# A name a proxy may assert: printable, no markup characters, bounded.
_SSO_NAME = re.compile(r"^[A-Za-z0-9._@+-]{1,128}$")

# Every console page: nothing from elsewhere, no script, no framing, no referrer.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}


@dataclass(frozen=True)
class Operator:
    name: str
    via: str  # "token" or "sso"


class ConsoleSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, for the console's paths only (the API never reads
    or sets a cookie), Secure whenever the request came over TLS."""

    def __init__(self, always_secure: bool):
        self.always_secure = always_secure

    def open_session(self, app, request_):
        if not request_.path.startswith(PREFIX):
            return self.null_session_class()
        return super().open_session(app, request_)

    def get_cookie_secure(self, app) -> bool:
        return self.always_secure or request.is_secure


class Gatekeeper:
    def __init__(self, book: TokenBook, settings: Settings):
        self.book = book
        self.idle_timeout = settings.console_idle_timeout
        self.sso_proxies = settings.console_sso_proxies

    def sign_in(self, token: str) -> Operator | None:
        """The operator whose token this is; None for a wrong token or a client's."""
        caller = self.book.identify(f"Bearer {token}") if token and token.isprintable() else None
        if caller is None or caller.role != OPERATOR:
            return None
        session.clear()
        session["operator"] = caller.name
        session["seen"] = time.time()
        return Operator(caller.name, "token")

    @staticmethod
    def sign_out() -> None:
        session.clear()

    def operator(self) -> tuple[Operator | None, bool]:
        """Who is signed in (None: nobody), and whether a session just lapsed."""
        sso = self._from_proxy()
        if sso is not None:
            return Operator(sso, "sso"), False
        name, seen = session.get("operator"), session.get("seen")
        if not isinstance(name, str) or not isinstance(seen, (int, float)):
            return None, False
        now = time.time()
        if now - seen > self.idle_timeout:
            session.clear()
            return None, True
        if now - seen > _SEEN_EVERY:
            session["seen"] = now
        return Operator(name, "token"), False

    def _from_proxy(self) -> str | None:
        if not self.sso_proxies:
            return None
        try:
            peer = ipaddress.ip_address(request.remote_addr or "")
        except ValueError:
            return None
        if not any(peer in network for network in self.sso_proxies):
            return None
        for header in SSO_HEADERS:
            value = request.headers.get(header, "").strip()
            if value:
                return value if _SSO_NAME.match(value) else None
        return None


def gatekeeper() -> Gatekeeper:
    return current_app.extensions["pdm_console"]
