"""Per-caller rate limits on the API (Flask-Limiter), per scope (PDM_RATE_LIMITS):
``check``; ``write`` (reserve, commit, renew, release); ``registrar`` (validate, set-ns);
``operator`` (list, history, drift, pools, a registrar's history). A view takes part by
carrying ``@limited(scope)``; health, readiness, metrics, the OpenAPI document and the
reserved list carry none and are never limited.

The counters live in the service's database (pdm_app.ratelimit), so every worker and
every replica count together; the embedded SQLite (one node) counts in each process's
memory. A limit is a safety net, so a counter that cannot be updated lets the request
through (logged, and counted in pdm_rate_limit_storage_errors_total) rather than turn it
into an error.
"""
from __future__ import annotations

import logging
import math
import time

from flask import Flask, current_app, request
from flask_limiter import Limiter, RateLimitExceeded
from sqlalchemy import Engine

from .. import metrics
from ..config import Settings
from ..ratelimit import SCHEME, DatabaseStorage
from .access import caller_identity, view_marker
from .errors import error_response

log = logging.getLogger(__name__)

RATE_LIMITED = "rate-limited"


def limited(scope: str):
    """Marks a view as counted in ``scope`` (config.RATE_LIMIT_SCOPES)."""
    return view_marker("rate_limit_scope", scope)


def install(app: Flask, settings: Settings, engine: Engine) -> Limiter | None:
    """Limit every marked view of ``app`` (call after the blueprints are registered)."""
    if not settings.rate_limits:
        log.info("rate limits off (PDM_RATE_LIMITS=off)")
        return None
    storage = ("memory://", {}) if settings.is_sqlite else (f"{SCHEME}://", {"engine": engine})
    limiter = Limiter(
        caller_identity,
        storage_uri=storage[0],
        storage_options=storage[1],
        strategy="fixed-window",
        headers_enabled=True,
        retry_after="delta-seconds",
        # Fail open: a limiter whose counters cannot be reached never costs a request.
        swallow_errors=True,
        key_prefix="pdm",
    )

    @app.after_request
    def _retry_after_only_when_refused(response):
        # Flask-Limiter puts Retry-After on every limited answer; it means something on a
        # 429 only. (Registered first, so it runs after Flask-Limiter's hook.)
        if response.status_code != 429:
            response.headers.pop("Retry-After", None)
        return response

    limiter.init_app(app)
    if isinstance(limiter.storage, DatabaseStorage):
        app.teardown_request(lambda _exc: limiter.storage.forget())
    # Its own lines would repeat the request log (429) and carry a traceback per request
    # while the database is down; its swallowed errors are still logged, at ERROR.
    logging.getLogger("flask-limiter").setLevel(logging.ERROR)
    for endpoint, view in list(app.view_functions.items()):
        scope = getattr(view, "rate_limit_scope", None)
        if scope in settings.rate_limits:
            # Shared by the scope's routes, counted per caller (caller_identity).
            app.view_functions[endpoint] = limiter.shared_limit(settings.rate_limits[scope], scope=scope)(view)

    @app.errorhandler(RateLimitExceeded)
    def _rate_limited(err: RateLimitExceeded):
        scope = getattr(current_app.view_functions.get(request.endpoint), "rate_limit_scope", "other")
        metrics.RATE_LIMITED.labels(scope).inc()
        current = limiter.current_limit
        wait = max(1, math.ceil(current.reset_at - time.time())) if current is not None else 1
        detail = (f"this caller sent more {scope} requests than {err.limit.limit} allows; try again in {wait} s "
                  f"(PDM_RATE_LIMITS)")
        # catalyst-api reads any check answer below 500 as a check result: this one says
        # "not available, rate-limited", and the wizard shows why.
        extra = {"available": False, "reason": RATE_LIMITED} if scope == "check" else {}
        return error_response(429, RATE_LIMITED, detail, **extra)

    log.info("rate limits per caller: %s (%s)", "; ".join(f"{s}={v}" for s, v in settings.rate_limits.items()),
             "shared in the database" if not settings.is_sqlite else "in each process's memory")
    return limiter
