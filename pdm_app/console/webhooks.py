"""The console's webhooks page (/console/webhooks): each endpoint's deliveries, the
messages (filtered, paged), and the two repairs -- replay (one message, or a time range)
and enable (an endpoint a 410 disabled).

Its blueprint is nested in ``pages.bp`` (joined as this module is imported): the same
sign-in, CSRF check, headers and error pages apply. Parse, call ``services.webhooks``,
render; each repair is logged with the operator's name."""
from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlencode

from flask import Blueprint, flash, g, redirect, render_template, request, url_for

from ..domain import DomainError, utcnow
from ..services.webhooks import STATES
from . import pages

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
PAGE_SIZES = (25, 50, 100, 200)
# What a form field may hold: an endpoint's name is at most 200 characters.
LONGEST = 200


@bp.get("")
def page():
    service = pages.pdm().webhooks
    endpoint, state = _text("endpoint"), _text("state")
    if state is not None and state not in STATES:
        raise DomainError("invalid-request", f"state is one of {', '.join(STATES)}", 400)
    size = _int(request.args.get("size"), 50)
    if size not in PAGE_SIZES:
        raise DomainError("invalid-request", f"size is one of {', '.join(map(str, PAGE_SIZES))}", 400)
    before = _int(request.args.get("before"), None)
    found = service.messages(endpoint=endpoint, state=state, before=before, limit=size)
    messages = found.messages
    kept = {k: v for k, v in (("endpoint", endpoint), ("state", state), ("size", size if size != 50 else None)) if v}
    next_url = (url_for("console.webhooks.page") + "?" + urlencode({**kept, "before": found.next_before})
                if found.next_before is not None else None)
    statuses = service.status()
    return render_template("console/webhooks.html", operator=g.operator, statuses=statuses, messages=messages,
                           kept=kept, next_url=next_url, states=STATES, sizes=PAGE_SIZES, first=before is None,
                           configured=[s.name for s in statuses if s.configured], now=utcnow())


@bp.post("/replay")
def replay():
    form = request.form
    msg_id, endpoint = _field("id"), _field("endpoint")
    since, until = _instant("since"), _instant("until")
    n = pages.pdm().webhooks.replay(g.operator.name, msg_id=msg_id, since=since, until=until, endpoint=endpoint)
    what = msg_id or "written" + (f" from {since:%Y-%m-%d %H:%M:%S} UTC" if since else "") + (
        f" before {until:%Y-%m-%d %H:%M:%S} UTC" if until else "")
    flash(f"Replayed {n} message(s) ({what}{' to ' + endpoint if endpoint else ''}): pending again, with the same "
          "webhook-id, sent from the next delivery tick.", "ok")
    # Back to the page as it was (its filters), never anywhere else.
    back = form.get("back", "").rstrip("?")
    return redirect(back if back.startswith(url_for("console.webhooks.page")) and "\\" not in back
                    else url_for("console.webhooks.page"))


@bp.post("/enable")
def enable():
    name = _field("name")
    if name is None:
        raise DomainError("invalid-request", "which endpoint? (name)", 400)
    pages.pdm().webhooks.enable(name, g.operator.name)
    flash(f"Enabled {name}: its waiting messages are sent from the next delivery tick.", "ok")
    return redirect(url_for("console.webhooks.page"))


# -- parsing -------------------------------------------------------------------------------

def _checked(value: str | None, what: str) -> str | None:
    """A field's text, stripped; None when empty. A NUL (or any control character) is in
    no name, id or time of the service's, and PostgreSQL stores none: refused, never
    looked up."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if len(value) > LONGEST or not value.isprintable():
        raise DomainError("invalid-request", f"{what} must be printable text of at most {LONGEST} characters", 400)
    return value


def _int(raw: str | None, default: int | None) -> int | None:
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 18:
        raise DomainError("invalid-request", f"{raw[:20]!r} is not a number", 400)
    return int(raw)


def _text(name: str) -> str | None:
    return _checked(request.args.get(name), name)


def _field(name: str) -> str | None:
    return _checked(request.form.get(name), name)


def _instant(name: str) -> datetime | None:
    """A time from a form (the browser's datetime-local, 2026-12-07T17:50, read as UTC; or
    ISO 8601 with an offset)."""
    raw = _field(name)
    if raw is None:
        return None
    try:
        at = datetime.fromisoformat(raw)
        return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise DomainError("invalid-request", f"{name} is a time like 2026-12-07T17:50 (UTC)", 400) from None


# Part of the console: its sign-in, CSRF, headers and error pages.
pages.bp.register_blueprint(bp)
