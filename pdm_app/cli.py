"""``pool-domain-manager``: the operators' command line, run inside the pod
(``kubectl exec -it deploy/pool-domain-manager -- pool-domain-manager release omani.works acme``).

It is configured from the service's environment variables and works on the use cases
(``pdm_app.services``) and the database directly, never through HTTP. Answers go to stdout (a table for
people, ``--json`` for scripts); log lines and errors go to stderr.

Exit codes: 0 success (and a clean zone), 1 a failure (``error: <code>: <detail>``) or
drift, 2 a usage or configuration error.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Iterable, NoReturn

import click
from flask import current_app
from flask.cli import ScriptInfo, with_appcontext
from marshmallow import Schema, fields
from sqlalchemy.exc import OperationalError

from .api import schemas
from .config import ConfigError, parse_duration
from .dns.ownership import describe
from .domain import ACTIVE, RESERVED, DomainError
from .logs import CurrentStreamHandler, StdoutHandler
from .redaction import redact
from .services.operators import Blocked, DriftReport, Failing, ReconcileResult, UnsafePlan

log = logging.getLogger(__name__)

PROG = "pool-domain-manager"
VERBOSE = "pool_domain_manager.verbose"  # click's ctx.meta key of the -v flag


# -- the app, its logs, its errors ---------------------------------------------------


def app_from_environment():
    """The service's app, configured exactly as the service is (``load_settings()``)."""
    from . import create_app
    from .config import load_settings

    try:
        settings = load_settings()
        if not _verbose() and logging.getLevelName(settings.log_level) < logging.WARNING:
            settings = replace(settings, log_level="WARNING")
        # create_app logs as it wires the app: those lines go to stderr like the rest.
        with contextlib.redirect_stdout(sys.stderr):
            return create_app(settings)
    except ConfigError as err:
        click.echo(f"{PROG}: configuration error: {err}", err=True)
        raise click.exceptions.Exit(2) from None


def _verbose() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.meta.get(VERBOSE))


class _WithoutTraceback(logging.Formatter):
    """Without -v a log line on the CLI's stderr keeps its message (which names the error's
    type and its redacted text) but not the traceback: a failure reads as lines, not a
    stack."""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text:
            record = logging.makeLogRecord({**vars(record), "exc_info": None, "exc_text": None})
        return self.inner.format(record)


@contextlib.contextmanager
def _logs_on_stderr():
    """While a command runs, the service's JSON log lines go to stderr: stdout carries
    only the answer; without -v only warnings and errors. The handlers are put back
    afterwards (tests run many commands and other tests in one process)."""
    root = logging.getLogger()
    swapped = []
    for i, handler in enumerate(root.handlers):
        if isinstance(handler, StdoutHandler):
            replacement = CurrentStreamHandler("stderr")
            replacement.setFormatter(handler.formatter if _verbose() else _WithoutTraceback(handler.formatter))
            replacement.setLevel(handler.level if _verbose() else max(handler.level, logging.WARNING))
            for f in handler.filters:
                replacement.addFilter(f)
            root.handlers[i] = replacement
            swapped.append((handler, replacement))
    try:
        yield
    finally:
        for handler, replacement in swapped:
            if replacement in root.handlers:
                root.handlers[root.handlers.index(replacement)] = handler


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(message, err=True)
    raise click.exceptions.Exit(code)


def _first_line(err: BaseException) -> str:
    text = redact(str(getattr(err, "orig", None) or err)).strip()
    return text.splitlines()[0] if text else type(err).__name__


def service_command(f):
    """A command on the service's database and registrar: the app is loaded (from the
    environment; a test hands in its own through ``ScriptInfo``) and its context pushed,
    log lines go to stderr, and a refusal of the service is one line on stderr, exit 1."""

    @functools.wraps(f)
    def run(*args, **kwargs):
        with _logs_on_stderr():
            try:
                return f(*args, **kwargs)
            except DomainError as err:
                fail(f"error: {err.code}: {err.detail}")
            except OperationalError as err:
                fail(f"error: database-unavailable: the database cannot be reached ({_first_line(err)})")
            except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
                raise  # the command's own exit and usage errors
            except Exception as err:  # any other failure is one line too, never a traceback (-v logs it)
                log.error("%s failed on an unexpected %s", f.__name__, type(err).__name__, exc_info=err)
                fail(f"error: internal-error: {type(err).__name__}: {_first_line(err)}")

    return with_appcontext(run)


def pdm():
    return current_app.extensions["pdm"]


def lifecycle():
    return pdm().lifecycle


def operators():
    return pdm().operators


# -- output ------------------------------------------------------------------------


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return value.strftime(schemas.TIMESTAMP)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return _ts(value)
    return str(value)


def table(headers: list[str], rows: Iterable[Iterable[Any]]) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    for line in [headers] + cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (for scripts).")


# Answers the HTTP API has no schema for; field names in its style (camelCase).


class PendingWorkSchema(schemas.PendingDnsSchema):
    poolDomain = fields.String(attribute="pool_domain")


class ReconcileSchema(Schema):
    before = fields.Nested(schemas.DriftSchema)
    applied = fields.Boolean()
    after = fields.Nested(schemas.DriftSchema, allow_none=True)
    error = fields.String(allow_none=True)


# -- the commands ------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pool-domain-manager", prog_name=PROG)
@click.option("-v", "--verbose", is_flag=True,
              help="Also show the service's INFO log lines (on stderr; PDM_LOG_LEVEL still applies).")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Operate pool-domain-manager from inside its pod: allocations, their history and
    the pools' DNS records at the registrar.

    Configured from the service's environment variables (PDM_DATABASE_URL,
    DYNADOT_API_KEY, DYNADOT_MANAGED_DOMAINS, ...). Answers go to stdout (--json for
    scripts), log lines (warnings and errors; -v for all) and errors to stderr.
    Exit status: 0 success, 1 failure or drift, 2 usage or configuration error.
    """
    ctx.meta[VERBOSE] = verbose
    if not isinstance(ctx.obj, ScriptInfo):
        ctx.obj = ScriptInfo(create_app=app_from_environment, set_debug_flag=False)


@cli.command(short_help="Every pool: tenants, pending DNS, zone state.")
@json_option
@service_command
def pools(as_json: bool) -> None:
    """Every managed pool: tenants, pending DNS work, and the state of its zone."""
    result = operators().pools()
    if as_json:
        emit_json(schemas.PoolStatusSchema(many=True).dump(result))
        return
    table(
        ["POOL", "DNS", "ACTIVE", "RESERVED", "PENDING DNS", "BLOCKED", "LAST GOOD READ", "FOREIGN SUB-HOSTS",
         "POOL DS AT REGISTRAR"],
        [(p.pool_domain, p.dns_backend, p.active, p.reserved, p.pending, p.blocked.reason if p.blocked else None,
          p.synced_at, p.foreign_subhost_records, p.ds_check.status if p.ds_check else None) for p in result],
    )
    for p in result:
        if p.blocked:
            click.echo(f"\n{p.pool_domain}: {_blocked_line(p.blocked)}")
        if p.failing:
            click.echo(f"\n{p.pool_domain}: {_failing_line(p.failing)}")
        if p.ds:
            click.echo(f"\n{p.pool_domain}: the pool zone's DS, for its registrar: {' / '.join(p.ds)}")
        if p.ds_check and p.ds_check.detail:
            click.echo(f"{p.pool_domain}: {p.ds_check.status}: {p.ds_check.detail}")


@cli.command("list", short_help="The allocations of a pool.")
@click.argument("pool")
@click.option("--state", type=click.Choice(["reserved", "active"]), help="Only allocations in this state.")
@json_option
@service_command
def list_(pool: str, state: str | None, as_json: bool) -> None:
    """The allocations of POOL, with pending DNS work and a block on its zone."""
    listing = operators().list_pool(pool, state)
    pending_subs = {p.subdomain for p in listing.pending}
    if as_json:
        emit_json(schemas.dump_pool_list(listing))
        return
    if listing.allocations:
        table(
            ["SUBDOMAIN", "STATE", "LB IP", "EXPIRES", "CREATED BY", "DNS PENDING"],
            [(a.subdomain, a.state, a.load_balancer_ip, a.expires_at, a.created_by, a.subdomain in pending_subs)
             for a in listing.allocations],
        )
    else:
        click.echo(f"no {state + ' ' if state else ''}allocations in {listing.pool_domain}")
    if listing.blocked:
        click.echo("\n" + _blocked_line(listing.blocked))
    if listing.failing:
        click.echo("\n" + _failing_line(listing.failing))


@cli.command(short_help="Is SUB.POOL available? (exit 0 yes, 1 no)")
@click.argument("pool")
@click.argument("sub")
@json_option
@service_command
def check(pool: str, sub: str, as_json: bool) -> None:
    """Whether SUB.POOL is available. Exit 0 if it is, 1 if not."""
    result = lifecycle().check(pool, sub)
    if as_json:
        emit_json(schemas.CheckResultSchema().dump(result))
    elif result.available:
        click.echo(f"{result.fqdn} is available")
    else:
        click.echo(f"not available: {result.reason}: {result.detail}")
    if not result.available:
        raise click.exceptions.Exit(1)


@cli.command(short_help="Who changed what, newest first.")
@click.argument("pool")
@click.argument("sub", required=False)
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="Events per page (newest first).")
@click.option("--before", type=click.IntRange(min=1), help="Only events older than this id (the next page).")
@json_option
@service_command
def history(pool: str, sub: str | None, limit: int, before: int | None, as_json: bool) -> None:
    """Every state change in POOL (or of SUB only), who made it, newest first."""
    result = operators().history(pool, sub, limit, before)
    if as_json:
        emit_json(schemas.HistorySchema().dump(result))
        return
    if not result.events:
        click.echo("no events")
    else:
        table(
            ["ID", "AT", "SUBDOMAIN", "ACTION", "CALLER", "LB IP", "DETAIL"],
            [(e.id, e.at, e.subdomain, e.action, e.caller, e.load_balancer_ip, e.detail) for e in result.events],
        )
    if result.next_before is not None:
        words = [PROG, "history", result.pool_domain] + ([sub] if sub else [])
        if limit != 100:
            words += ["--limit", str(limit)]
        click.echo(f"\nolder events: {' '.join(words)} --before {result.next_before}")


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def _confirm_release(pool: str, sub: str) -> None:
    """An active tenant is a live Sovereign: its name is typed before it is released."""
    allocation = operators().allocation(pool, sub)
    if allocation is None or allocation.state != ACTIVE:
        return
    if not _stdin_is_terminal():
        fail(f"error: confirmation-required: {allocation.fqdn} is active (a live Sovereign); "
             "run this at a terminal to confirm, or pass --yes", 2)
    click.echo(f"{allocation.fqdn} is active (a live Sovereign at {allocation.load_balancer_ip}): releasing it "
               "removes its DNS records.", err=True)
    typed = click.prompt(f"Type {allocation.subdomain} to release it", default="", show_default=False, err=True)
    if typed.strip() != allocation.subdomain:
        fail(f"error: not-confirmed: {allocation.fqdn} was not released")


@cli.command(short_help="Free SUB.POOL and remove its DNS records.")
@click.argument("pool")
@click.argument("sub")
@click.option("--yes", is_flag=True, help="Release an active tenant without asking for its name.")
@json_option
@service_command
def release(pool: str, sub: str, yes: bool, as_json: bool) -> None:
    """Free SUB.POOL (reserved or active) and remove its DNS records. An active tenant's
    name must be typed to confirm (at a terminal), unless --yes."""
    if not yes:
        _confirm_release(pool, sub)
    outcome = lifecycle().release(pool, sub, caller="cli")
    a = outcome.allocation
    if as_json:
        emit_json({"freed": schemas.AllocationSchema().dump(a), "dnsDone": outcome.dns_done})
        return
    click.echo(f"released {a.fqdn} (was {a.state}{', ' + a.load_balancer_ip if a.load_balancer_ip else ''})")
    if a.state == RESERVED:
        click.echo("DNS: nothing to remove (it was only reserved)")
    elif outcome.dns_done:
        click.echo("DNS: records removed")
    else:
        click.echo(f"DNS: removal queued; it is retried automatically (see '{PROG} dns pending {a.pool_domain}')")


def _ttl(_ctx, _param, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a duration (like 30m, 90s, 1h30m)") from None
    if seconds <= 0:
        raise click.BadParameter(f"{value!r} must be more than zero")
    return seconds


@cli.command(short_help="Extend a reservation.")
@click.argument("pool")
@click.argument("sub")
@click.option("--ttl", callback=_ttl, metavar="DURATION",
              help="Hold it this long from now (default PDM_RESERVATION_TTL, at most PDM_RESERVATION_MAX_TTL).")
@json_option
@service_command
def renew(pool: str, sub: str, ttl: float | None, as_json: bool) -> None:
    """Extend the reservation of SUB.POOL (an operator's renew: no token needed)."""
    allocation = lifecycle().renew(pool, sub, None, ttl, caller="cli")
    if as_json:
        emit_json(schemas.AllocationSchema().dump(allocation))
    else:
        click.echo(f"renewed {allocation.fqdn} until {_ts(allocation.expires_at)}")


@cli.command(short_help="Delete lapsed reservations now.")
@json_option
@service_command
def sweep(as_json: bool) -> None:
    """Delete lapsed reservations now (the background job does it every PDM_SWEEPER_INTERVAL)."""
    count = lifecycle().sweep()
    if as_json:
        emit_json({"swept": count})
    else:
        click.echo(f"swept {count} lapsed reservation(s)")


@cli.group(short_help="Pending DNS work: list it, retry it.")
def dns() -> None:
    """The DNS work queue: changes not yet carried out at the registrar."""


def _pending_table(items) -> None:
    table(
        ["POOL", "SUBDOMAIN", "ACTION", "ATTEMPTS", "QUEUED", "NEXT ATTEMPT", "LAST ERROR"],
        [(w.pool_domain, w.subdomain, w.action, w.attempts, w.created_at, w.next_attempt_at, w.last_error)
         for w in items],
    )


@dns.command("pending", short_help="Pending DNS work.")
@click.argument("pool", required=False)
@json_option
@service_command
def dns_pending(pool: str | None, as_json: bool) -> None:
    """Pending DNS work, of POOL or of every pool."""
    items = operators().pending_dns(pool)
    if as_json:
        emit_json(PendingWorkSchema(many=True).dump(items))
    elif items:
        _pending_table(items)
    else:
        click.echo("no pending DNS work")


@dns.command("retry", short_help="A DNS pass now (exit 1 if not done).")
@click.argument("pool", required=False)
@json_option
@service_command
def dns_retry(pool: str | None, as_json: bool) -> None:
    """A DNS pass now for POOL (or every pool with pending work), whatever the back-off
    says. Exit 1 if a pool's zone is still not what the table says."""
    result = operators().retry_dns(pool)
    if as_json:
        emit_json(result)
    elif not result:
        click.echo("no pending DNS work")
    else:
        for name, done in result.items():
            click.echo(f"{name}: {'done' if done else 'NOT done'}")
        failed = [name for name, done in result.items() if not done]
        if failed:
            waiting = [w for name in failed for w in operators().pending_dns(name)]
            if waiting:
                click.echo("")
                _pending_table(waiting)
            for status in operators().pools(check_ds=False):
                if status.pool_domain in failed and status.blocked:
                    click.echo(f"{status.pool_domain}: {_blocked_line(status.blocked)}")
    if not all(result.values()):
        # Why, per pool whose pass failed: one line each on stderr.
        for status in operators().pools(check_ds=False):
            if not result.get(status.pool_domain, True) and status.failing:
                click.echo(f"error: dns-pass-failed: {status.pool_domain}: {status.failing.error}", err=True)
        raise click.exceptions.Exit(1)


def _blocked_line(blocked: Blocked) -> str:
    return f"DNS blocked ({blocked.reason}) since {_cell(blocked.since)}: {blocked.detail}"


def _failing_line(failing: Failing) -> str:
    return f"DNS passes failing since {_cell(failing.since)}: {failing.error}"


def _show_drift(report: DriftReport) -> None:
    if report.clean:
        click.echo(f"{report.pool_domain}: no drift (checked {_ts(report.checked_at)})")
        return
    click.echo(f"{report.pool_domain}: drift (checked {_ts(report.checked_at)})")
    rows = []
    for name in report.names:
        state = name.state or "(no allocation)"
        rows += [(name.subdomain, state, "missing", host, None, None) for host in name.missing]
        rows += [(name.subdomain, state, "wrong address", w.host, ", ".join(w.found), w.expected) for w in name.wrong]
        rows += [(name.subdomain, state, "orphan", host, None, None) for host in name.orphans]
        rows += [(name.subdomain, state, "not ours", what, None, None) for what in name.foreign]
    if rows:
        table(["SUBDOMAIN", "STATE", "PROBLEM", "HOST", "FOUND", "EXPECTED"], rows)
    if report.pending:
        click.echo(f"{len(report.pending)} DNS change(s) pending:")
        _pending_table(report.pending)
    if report.lost:
        click.echo(f"{len(report.lost)} record(s) that are not the service's have gone since the last good read:")
        for record in report.lost:
            click.echo(f"  {describe(record)}")
    if report.blocked:
        click.echo(_blocked_line(report.blocked))
    if report.failing:
        click.echo(_failing_line(report.failing))


@cli.command(short_help="Compare a zone with the table (exit 1: drift).")
@click.argument("pool")
@json_option
@service_command
def drift(pool: str, as_json: bool) -> None:
    """Read the zone of POOL once and compare it with the allocations: what is missing,
    wrong or left over, per name. Exit 0 when clean, 1 when there is drift."""
    report = operators().drift(pool)
    if as_json:
        emit_json(schemas.DriftSchema().dump(report))
    else:
        _show_drift(report)
    if not report.clean:
        raise click.exceptions.Exit(1)


def _plan(report: DriftReport) -> None:
    """What ``reconcile --apply`` would do about ``report``."""
    ips = {a.subdomain: a.load_balancer_ip for a in operators().list_pool(report.pool_domain, "active").allocations}
    click.echo("\nreconcile --apply would:")
    for name in report.names:
        for host in name.missing:
            click.echo(f"  publish  {host} A {ips.get(name.subdomain) or '?'}")
        for w in name.wrong:
            click.echo(f"  correct  {w.host} A {', '.join(w.found)} -> {w.expected}")
        for host in name.orphans:
            click.echo(f"  remove   {host}")
        for what in name.foreign:
            click.echo(f"  leave    {what} (not the service's: an operator removes it, or {name.subdomain} "
                       "is released)")
    if report.pending:
        click.echo(f"  carry out {len(report.pending)} pending DNS change(s)")
    if report.lost:
        click.echo("  nothing, unless --force: the zone lost records that are not the service's; if it is right "
                   "as it reads now, --apply --force accepts it")
    if report.blocked:
        click.echo(f"  retry the blocked pool ({report.blocked.reason}); if the zone as it reads now is right, "
                   "--apply --force accepts it")
    click.echo("  keep every other record of the zone as it is")


@cli.command(short_help="Show drift and the repair; --apply does it.")
@click.argument("pool")
@click.option("--apply", "apply_", is_flag=True, help="Repair the drift: one pass that writes the zone.")
@click.option("--force", is_flag=True,
              help="With --apply: take the zone as it reads now (lifts a block on lost foreign records).")
@json_option
@service_command
def reconcile(pool: str, apply_: bool, force: bool, as_json: bool) -> None:
    """Show the drift of POOL and what --apply would do; with --apply repair it and show
    the zone before and after. Exit 0 when (after --apply) the zone is clean, else 1."""
    if force and not apply_:
        raise click.UsageError("--force only goes with --apply")
    try:
        result = operators().reconcile(pool, apply=apply_, force=force, caller="cli")
    except UnsafePlan as refusal:
        # The plan it refused, then why: the operator reads it before forcing it.
        if as_json:
            emit_json(ReconcileSchema().dump(ReconcileResult(refusal.report, applied=False, error=refusal.detail)))
        else:
            _show_drift(refusal.report)
            _plan(refusal.report)
        fail(f"error: {refusal.code}: {refusal.detail}")
    final = result.after if apply_ else result.before
    if as_json:
        emit_json(ReconcileSchema().dump(result))
    elif not apply_:
        _show_drift(result.before)
        if not result.before.clean:
            _plan(result.before)
    else:
        click.echo("before:")
        _show_drift(result.before)
        click.echo(f"\n{'applied' if result.applied else 'NOT applied'}\n\nafter:")
        if result.after is not None:
            _show_drift(result.after)
    if apply_ and (final is None or not final.clean or not result.applied):
        code = (final.blocked.reason if final is not None and final.blocked
                else "dns-pass-failed" if final is not None and final.failing else "reconcile-incomplete")
        fail(f"error: {code}: {result.error or 'the zone still drifts after the pass'}")
    if final is None or not final.clean:
        raise click.exceptions.Exit(1)


@cli.group(short_help="The database schema (Alembic).")
def db() -> None:
    """The database schema (Alembic)."""


@db.command("upgrade", short_help="Migrate the database to this release (alembic upgrade head).")
@click.option("--config", "config_path", default="alembic.ini", show_default=True, type=click.Path(dir_okay=False),
              help="The Alembic configuration (the image's working directory /app has it).")
@json_option
def db_upgrade(config_path: str, as_json: bool) -> None:
    """Migrate the database named by PDM_DATABASE_URL to this release's schema
    (``alembic upgrade head``)."""
    from sqlalchemy.exc import SQLAlchemyError

    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from .config import database_url

    try:
        database_url()  # what alembic/env.py reads: refuse a bad value the way the service does
    except ConfigError as err:
        fail(f"{PROG}: configuration error: {err}", 2)
    path = os.path.abspath(config_path)
    if not os.path.isfile(path):
        fail(f"error: no-alembic-config: {path} does not exist (run in the directory that holds alembic.ini, "
             "/app in the image, or pass --config)")
    cfg = Config(path)
    try:
        command.upgrade(cfg, "head")
        head = ScriptDirectory.from_config(cfg).get_current_head()
    except (CommandError, SQLAlchemyError) as err:
        fail(f"error: migration-failed: {_first_line(err)}")
    if as_json:
        emit_json({"revision": head})
    else:
        click.echo(f"database at revision {head} (head)")


def main(argv: list[str] | None = None) -> None:
    """The console script ``pool-domain-manager``."""
    cli.main(args=argv, prog_name=PROG,
             obj=ScriptInfo(create_app=app_from_environment, set_debug_flag=False))


if __name__ == "__main__":
    main()
