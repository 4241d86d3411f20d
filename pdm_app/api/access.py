"""Around every request: its id, who is calling and whether they may, the hygiene
headers, one JSON log line, and the HTTP metrics."""
from __future__ import annotations

import logging
import re
import time
import uuid
from functools import wraps

from flask import Flask, current_app, g, request

from .. import logs, metrics
from ..auth import Gate, TokenBook, caller_key, client_address
from .errors import ApiError

log = logging.getLogger("pdm_app.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Probes and scrapes are frequent and say nothing new: logged at debug.
_QUIET = {"/healthz", "/readyz", "/metrics"}
ANONYMOUS = "anonymous"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def view_marker(attribute: str, value):
    """A decorator that marks a view with ``attribute = value``, for a hook that reads it
    off ``current_app.view_functions`` (the view itself runs unchanged)."""

    def mark(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            return view(*args, **kwargs)

        setattr(wrapper, attribute, value)
        return wrapper

    return mark


def requires(role: str):
    """Marks a view as needing a caller with ``role`` (checked in ``before_request``)."""
    return view_marker("required_role", role)


def caller_name() -> str:
    caller = g.get("caller")
    return caller.name if caller else ANONYMOUS


def client_ip() -> str:
    """The client's address (auth.client_address: X-Forwarded-For only from a trusted proxy)."""
    proxies = current_app.extensions["pdm"].settings.trusted_proxies
    return client_address(request.remote_addr, request.headers.get("X-Forwarded-For"), proxies)


def caller_identity() -> str:
    """The key rate limits and the reservation quota count against (auth.caller_key)."""
    return caller_key(g.get("caller"), client_ip())


def install(app: Flask, book: TokenBook, auth_mode: str) -> None:
    """``auth_mode`` is one of auth.AUTH_MODES (PDM_AUTH): see auth.Gate for the rules."""
    gate = Gate(auth_mode, book)
    log.info("%s", gate.describe(), extra={"auth_mode": auth_mode})

    @app.before_request
    def _begin():
        g.started = time.monotonic()
        rid = request.headers.get("X-Request-ID", "")
        g.request_id = rid if _REQUEST_ID.match(rid) else uuid.uuid4().hex
        g.log_context = logs.request_id.set(g.request_id)
        # Where the changes this request makes come from: the console's pages, or the API.
        # (request.blueprints: the console's own blueprint and those nested in it.)
        g.origin_context = logs.origin.set(f"{'console' if 'console' in request.blueprints else 'api'} {client_ip()}")
        needed = getattr(current_app.view_functions.get(request.endpoint), "required_role", None)
        g.caller, refusal = gate.admit(request.headers.get("Authorization"), needed)
        if refusal is not None:
            raise ApiError(refusal.code, refusal.detail, refusal.status)
        return None

    @app.after_request
    def _finish(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        if response.status_code == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="pool-domain-manager"'
        duration = time.monotonic() - g.get("started", time.monotonic())
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        # Any method a client invents would add a series: label the known ones only.
        method = request.method if request.method in _METHODS else "other"
        metrics.observe_request(endpoint, method, response.status_code, duration)
        log.log(
            logging.DEBUG if request.path in _QUIET else logging.INFO,
            "%s %s %s", request.method, request.path, response.status_code,
            extra={"method": request.method, "path": request.path, "status": response.status_code,
                   "duration_ms": round(duration * 1000, 1), "caller": caller_name()},
        )
        return response

    @app.teardown_request
    def _forget(_exc):
        context = g.pop("log_context", None)
        if context is not None:
            logs.request_id.reset(context)
        origin = g.pop("origin_context", None)
        if origin is not None:
            logs.origin.reset(origin)
