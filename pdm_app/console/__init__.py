"""The operators' console: server-rendered pages under /console/ (Flask's Jinja, no
script, no asset from elsewhere) that show every pool, tenant, record and change, and
carry out the operators' repairs with the same rules as the API and the console script.

- ``access.py``: who is signed in (a token's session, or an authenticating proxy) and
  the security headers;
- ``pages.py``: the blueprint -- it parses, calls ``services`` and renders, nothing more;
- ``webhooks.py``: the webhooks page, a blueprint nested in pages' (the same rules);
- ``templates/console/``, ``static/``: the pages and their one stylesheet.

Without PDM_SECRET_KEY (or PDM_SECRET_KEY_FILE) the console is off: its paths answer 503
and say why. ``./dev run`` makes a key for the run.

It imports the use cases (``services``), ``auth`` and ``config``, and of the API only the
helpers every request shares (the client's address, the rate limits' marker); only the
app factory imports it.
"""
from __future__ import annotations

import logging

from flask import Blueprint, Flask, render_template

from ..auth import TokenBook
from ..config import Settings
from .access import PREFIX, SECURITY_HEADERS, ConsoleSessions, Gatekeeper

log = logging.getLogger(__name__)

OFF_DETAIL = ("the operators' console is off: it needs PDM_SECRET_KEY or PDM_SECRET_KEY_FILE (a random key of "
              "at least 32 characters; the chart makes one)")


def install(app: Flask, settings: Settings, book: TokenBook) -> None:
    if not settings.secret_key:
        app.register_blueprint(_off())
        log.warning("%s", OFF_DETAIL)
        return
    from . import pages, webhooks  # noqa: F401 -- webhooks' blueprint joins pages.bp as it is imported

    app.secret_key = settings.secret_key
    app.config.update(
        SESSION_COOKIE_NAME="pdm_console",
        SESSION_COOKIE_PATH=PREFIX,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        # Every POST of the console is checked (pages.bp), the API's never: its callers
        # send no cookie to ride on.
        WTF_CSRF_CHECK_DEFAULT=False,
    )
    app.session_interface = ConsoleSessions(settings.console_secure_cookie)
    app.extensions["pdm_console"] = Gatekeeper(book, settings)
    pages.csrf.init_app(app)
    app.register_blueprint(pages.bp)


def _off() -> Blueprint:
    bp = Blueprint("console_off", __name__, url_prefix=PREFIX, template_folder="templates")

    @bp.route("/", defaults={"rest": ""})
    @bp.route("/<path:rest>")
    def off(rest: str):
        return render_template("console/off.html", detail=OFF_DETAIL), 503, SECURITY_HEADERS

    return bp

