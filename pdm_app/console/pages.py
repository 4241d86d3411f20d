"""The console's pages: parse the request, call the use cases, render. Every page needs a
signed-in operator (``access``); every POST carries a CSRF token (Flask-WTF); every
action shows what it will do first and is recorded in the history under the operator's
name, with the same refusals as the API and the console script."""
from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import asdict
from datetime import datetime, time as day_time, timedelta, timezone
from urllib.parse import urlencode

from flask import (Blueprint, Response, current_app, flash, g, redirect, render_template, request,
                   url_for)
from flask_limiter import RateLimitExceeded
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from .. import metrics
from ..api.access import client_ip
from ..api.ratelimit import limited
from ..config import parse_duration
from ..domain import ACTIVE, DomainError, tenant_hosts
from ..redaction import redact
from ..services.console import PAGE_SIZES, AllocationQuery, ChangeQuery
from ..services.operators import UnsafePlan
from . import formatting
from .access import PREFIX, SECURITY_HEADERS, gatekeeper

log = logging.getLogger(__name__)

bp = Blueprint("console", __name__, url_prefix=PREFIX, template_folder="templates", static_folder="static",
               static_url_path="/static")
csrf = CSRFProtect()
# Pages a visitor reaches without signing in.
_OPEN = {"console.login_form", "console.login", "console.static"}
CSV_COLUMNS = ("id", "at", "pool", "name", "action", "caller", "origin", "address", "detail")


def pdm():
    return current_app.extensions["pdm"]


@bp.before_request
def _signed_in():
    operator, lapsed = gatekeeper().operator()
    g.operator = operator
    if request.method == "POST":
        csrf.protect()
    if operator is None and request.endpoint not in _OPEN:
        if lapsed:
            flash("Your session ended after a while without a request: sign in again.", "info")
        return redirect(url_for("console.login_form", next=_local(request.full_path)))
    return None


@bp.after_request
def _headers(response):
    response.headers.update(SECURITY_HEADERS)
    if request.is_secure:
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    return response


def _local(target: str | None) -> str:
    """A path of the console to return to after signing in; anything else goes home."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target.rstrip("?")
    return url_for("console.pools")


def _page(template: str, http_status: int = 200, **context):
    return render_template(f"console/{template}", operator=g.get("operator"), **context), http_status


for _name, _filter in formatting.FILTERS.items():
    bp.add_app_template_filter(_filter, _name)


# -- errors: a page, never the API's JSON -----------------------------------------------

@bp.errorhandler(DomainError)
def _refused(err: DomainError):
    return _page("error.html", err.status, code=err.code, detail=err.detail)


@bp.errorhandler(CSRFError)
def _forged(err: CSRFError):
    return _page("error.html", 400, code="csrf-refused",
                 detail=f"This form was not sent by a page of this console, or it expired: {err.description} "
                        "Go back, reload the page and send it again.")


@bp.errorhandler(RateLimitExceeded)
def _too_many(err: RateLimitExceeded):
    metrics.RATE_LIMITED.labels("sign-in").inc()
    return _page("login.html", 429, error=f"Too many sign-in attempts from this address: try again later "
                                           f"({err.description}).", next=_local(request.form.get("next")))


@bp.errorhandler(OperationalError)
def _database_down(_err: OperationalError):
    return _page("error.html", 503, code="database-unavailable", detail="The database cannot be reached; "
                                                                          "nothing was changed. Try again shortly.")


@bp.errorhandler(HTTPException)
def _http(err: HTTPException):
    return _page("error.html", err.code or 500, code=(err.name or "error").lower().replace(" ", "-"),
                 detail=err.description or "")


# -- signing in ---------------------------------------------------------------------------

@bp.get("/login")
def login_form():
    if g.operator is not None:
        return redirect(_local(request.args.get("next")))
    return _page("login.html", next=_local(request.args.get("next")))


@bp.post("/login")
@limited("sign-in")
def login():
    target = _local(request.form.get("next"))
    operator = gatekeeper().sign_in(request.form.get("token", "").strip())
    if operator is None:
        log.warning("console sign-in refused from %s", client_ip())
        return _page("login.html", 401, error="That is not an operator token.", next=target)
    log.info("console sign-in: %s from %s", operator.name, client_ip())
    return redirect(target)


@bp.post("/logout")
def logout():
    gatekeeper().sign_out()
    flash("Signed out.", "info")
    return redirect(url_for("console.login_form"))


# -- what a person sees ---------------------------------------------------------------------

@bp.get("/")
def pools():
    statuses = pdm().operators.pools()
    settings = pdm().settings
    return _page("pools.html", pools=statuses, max_records=settings.max_subhost_records, now=formatting.now())


@bp.get("/pools/<pool>")
def pool(pool: str):
    args = request.args
    query = AllocationQuery(
        prefix=args.get("q", "").strip(), state=args.get("state") or None, created_by=args.get("caller") or None,
        sort=args.get("sort", "name"), descending=args.get("order") == "desc", after=args.get("after") or None,
        limit=_int(args.get("size"), 50))
    page = pdm().console.allocations(pool, query)
    status = pdm().operators.pools(check_ds=False, only=page.pool_domain)[0]
    kept = {k: v for k, v in (("q", query.prefix), ("state", query.state), ("caller", query.created_by),
                              ("sort", query.sort), ("order", "desc" if query.descending else None),
                              ("size", query.limit if query.limit != 50 else None)) if v}
    next_url = (url_for("console.pool", pool=page.pool_domain) + "?" + urlencode({**kept, "after": page.next_after})
                if page.next_after else None)
    return _page("pool.html", page=page, status=status, kept=kept, next_url=next_url, sizes=PAGE_SIZES,
                 first=not query.after)


@bp.get("/pools/<pool>/tenants/<sub>")
def tenant(pool: str, sub: str):
    view = pdm().console.tenant(pool, sub, before=_int(request.args.get("before"), None))
    if view is None:  # released, or never allocated: what the history says of it
        flash(f"{sub}.{pool} has no allocation now; these are its changes.", "info")
        return redirect(url_for("console.changes", pool=pool, name=sub))
    return _page("tenant.html", view=view, a=view.row.allocation)


@bp.get("/changes")
def changes():
    query = _change_query()
    events, next_before = pdm().console.changes(query)
    kept = _change_args()
    next_url = url_for("console.changes") + "?" + urlencode({**kept, "before": next_before}) if next_before else None
    export = urlencode(kept)
    return _page("changes.html", events=events, kept=kept, next_url=next_url, export=export,
                 pools=pdm().settings.managed_domains)


@bp.get("/changes.csv")
def changes_csv():
    events = pdm().console.all_changes(_change_query())

    def rows():
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for e in events:
            writer.writerow([formatting.csv_cell(v) for v in (e.id, e.at.isoformat(), e.pool_domain, e.subdomain, e.action,
                                                e.caller, e.origin, e.load_balancer_ip, e.detail)])
            yield out.getvalue()
            out.seek(0)
            out.truncate()

    return Response(rows(), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=pool-domain-manager-changes.csv"})


@bp.get("/changes.json")
def changes_json():
    events = pdm().console.all_changes(_change_query())

    def chunks():
        yield "["
        for n, e in enumerate(events):
            item = {**asdict(e), "at": e.at.isoformat()}
            yield ("," if n else "") + json.dumps(item)
        yield "]\n"

    return Response(chunks(), mimetype="application/json",
                    headers={"Content-Disposition": "attachment; filename=pool-domain-manager-changes.json"})


@bp.get("/pools/<pool>/drift")
def drift(pool: str):
    report, error = _drift(pool)
    return _page("drift.html", pool=pool, report=report, error=error)


# -- what a person can do: each shows what will happen, then does it on a POST ---------------

@bp.post("/pools/<pool>/reconcile")
def reconcile(pool: str):
    force = request.form.get("force") == "yes"
    if force and request.form.get("confirm", "").strip() != pool:
        report, error = _drift(pool)
        return _page("drift.html", 400, pool=pool, report=report, error=error, force_asked=True,
                     refusal=f"Type {pool} to apply a repair of any size.")
    try:
        result = pdm().operators.reconcile(pool, apply=True, force=force, caller=g.operator.name)
    except UnsafePlan as unsafe:
        return _page("drift.html", 409, pool=pool, report=unsafe.report, error=None, force_asked=True,
                     refusal=unsafe.detail)
    return _page("reconciled.html", pool=pool, result=result)


@bp.route("/pools/<pool>/retry", methods=["GET", "POST"])
def retry(pool: str):
    operators = pdm().operators
    if request.method == "GET":
        status = operators.pools(check_ds=False, only=pool)[0]
        return _page("retry.html", pool=status.pool_domain, status=status, pending=operators.pending_dns(pool))
    done = operators.retry_dns(pool, caller=g.operator.name)
    right = all(done.values())
    flash(f"A DNS pass of {pool} ran: " + ("its DNS is what the table says." if right else
                                            "it did not complete; see the pool's state and pending work."),
          "ok" if right else "error")
    return redirect(url_for("console.pool", pool=pool))


@bp.route("/pools/<pool>/tenants/<sub>/release", methods=["GET", "POST"])
def release(pool: str, sub: str):
    a = _allocation(pool, sub)
    if request.method == "GET":
        return _page("release.html", a=a, hosts=_hosts(a))
    if a.state == ACTIVE and request.form.get("confirm", "").strip() != a.subdomain:
        return _page("release.html", 400, a=a, hosts=_hosts(a),
                     error=f"Type {a.subdomain} to release this live tenant; nothing was released.")
    outcome = pdm().lifecycle.release(a.pool_domain, a.subdomain, caller=g.operator.name)
    dns = ("its records are removed" if outcome.dns_done else "its records' removal is queued and retried") \
        if a.state == ACTIVE else "it had no records"
    flash(f"Released {a.fqdn}: {dns}.", "ok")
    return redirect(url_for("console.pool", pool=a.pool_domain))


@bp.route("/pools/<pool>/tenants/<sub>/renew", methods=["GET", "POST"])
def renew(pool: str, sub: str):
    a = _allocation(pool, sub)
    settings = pdm().settings
    if request.method == "GET":
        return _page("renew.html", a=a, ttl=settings.reservation_ttl, max_ttl=settings.reservation_max_ttl)
    raw = request.form.get("ttl", "").strip()
    try:
        ttl = parse_duration(raw) if raw else None
    except ValueError:
        raise DomainError("invalid-ttl", f"{raw[:40]!r} is not a duration (like 30m, 90s, 1h30m)", 400) from None
    renewed = pdm().lifecycle.renew(a.pool_domain, a.subdomain, None, ttl, caller=g.operator.name)
    flash(f"Renewed {renewed.fqdn} until {renewed.expires_at:%Y-%m-%d %H:%M:%S} UTC.", "ok")
    return redirect(url_for("console.tenant", pool=a.pool_domain, sub=a.subdomain))


@bp.route("/<path:rest>", methods=["GET", "POST"])
def unknown(rest: str):
    """Any other path under /console/: a page saying so (the API's answers are JSON)."""
    raise DomainError("not-found", f"the console has no page {PREFIX}/{rest[:100]}", 404)


# -- parsing -------------------------------------------------------------------------------

def _allocation(pool: str, sub: str):
    allocation = pdm().operators.allocation(pool, sub)
    if allocation is None:
        raise DomainError("not-found", f"no allocation for {sub}.{pool}", 404)
    return allocation


def _drift(pool: str):
    try:
        return pdm().operators.drift(pool), None
    except DomainError as err:
        if err.status != 502:
            raise
        return None, redact(err.detail)


def _hosts(a) -> list[str]:
    names = pdm().settings.tenant_records
    return [f"{h}.{a.pool_domain}" for h in tenant_hosts(a.subdomain, names)] if a.state == ACTIVE else []


def _int(raw: str | None, default):
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 18:
        raise DomainError("invalid-request", f"{raw[:20]!r} is not a number", 400)
    return int(raw)


def _day(raw: str | None, what: str, end: bool = False) -> datetime | None:
    """A date (YYYY-MM-DD, UTC) from a form; ``end``: the day after it begins."""
    if not raw:
        return None
    try:
        day = datetime.strptime(raw, "%Y-%m-%d").date()
    except ValueError:
        raise DomainError("invalid-request", f"{what} is a date like 2026-12-07", 400) from None
    start = datetime.combine(day, day_time(), tzinfo=timezone.utc)
    return start + timedelta(days=1) if end else start


def _change_args() -> dict:
    return {k: request.args[k] for k in ("pool", "name", "caller", "action", "since", "until", "size")
            if request.args.get(k)}


def _change_query() -> ChangeQuery:
    args = request.args
    return ChangeQuery(pool=args.get("pool") or None, sub=args.get("name") or None, caller=args.get("caller") or None,
                       action=args.get("action") or None, since=_day(args.get("since"), "since"),
                       until=_day(args.get("until"), "until", end=True), before=_int(args.get("before"), None),
                       limit=_int(args.get("size"), 100))
