"""The commands on the pools' DNS: pools, dns pending, dns retry, drift, reconcile."""
from __future__ import annotations

import click
from marshmallow import Schema, fields

from ..api import schemas
from ..dns.ownership import describe
from ..services.operators import DriftReport, ReconcileResult, UnsafePlan
from .base import (blocked_line, cell, cli, emit_json, fail, failing_line, json_option, operators, service_command,
                   table, timestamp)

# Answers the HTTP API has no schema for; field names in its style (camelCase).


class PendingWorkSchema(schemas.PendingDnsSchema):
    poolDomain = fields.String(attribute="pool_domain")


class ReconcileSchema(Schema):
    before = fields.Nested(schemas.DriftSchema)
    applied = fields.Boolean()
    after = fields.Nested(schemas.DriftSchema, allow_none=True)
    error = fields.String(allow_none=True)


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
        ["POOL", "DNS", "ACTIVE", "RESERVED", "PENDING DNS", "BLOCKED", "LAST GOOD READ", "LAST RESYNC", "RESYNC",
         "FOREIGN SUB-HOSTS", "POOL DS AT REGISTRAR"],
        [(p.pool_domain, p.dns_backend, p.active, p.reserved, p.pending, p.blocked.reason if p.blocked else None,
          p.synced_at, p.resync.last if p.resync else None, resync_cell(p.resync), p.foreign_subhost_records,
          p.ds_check.status if p.ds_check else None) for p in result],
    )
    for p in result:
        if p.blocked:
            click.echo(f"\n{p.pool_domain}: {blocked_line(p.blocked)}")
        if p.failing:
            click.echo(f"\n{p.pool_domain}: {failing_line(p.failing)}")
        if p.ds:
            click.echo(f"\n{p.pool_domain}: the pool zone's DS, for its registrar: {' / '.join(p.ds)}")
        if p.ds_check and p.ds_check.detail:
            click.echo(f"{p.pool_domain}: {p.ds_check.status}: {p.ds_check.detail}")


def resync_cell(resync) -> str | None:
    """The resync under way, as "1,200/10,000 since 10:02:03"; None when none is."""
    if resync is None or resync.started is None:
        return None
    return f"{resync.checked:,}/{resync.total:,} since {cell(resync.started)}"


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
                    click.echo(f"{status.pool_domain}: {blocked_line(status.blocked)}")
    if not all(result.values()):
        # Why, per pool whose pass failed: one line each on stderr.
        for status in operators().pools(check_ds=False):
            if not result.get(status.pool_domain, True) and status.failing:
                click.echo(f"error: dns-pass-failed: {status.pool_domain}: {status.failing.error}", err=True)
        raise click.exceptions.Exit(1)


def _show_drift(report: DriftReport) -> None:
    if report.clean:
        click.echo(f"{report.pool_domain}: no drift (checked {timestamp(report.checked_at)})")
        return
    click.echo(f"{report.pool_domain}: drift (checked {timestamp(report.checked_at)})")
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
        click.echo(blocked_line(report.blocked))
    if report.failing:
        click.echo(failing_line(report.failing))


@cli.command(short_help="Compare a zone with the table (exit 1: drift).")
@click.argument("pool")
@json_option
@service_command
def drift(pool: str, as_json: bool) -> None:
    """Read the zone of POOL once and compare it with the allocations: what is missing,
    wrong or left over, per name. Exit 0 when clean, 1 when there is drift."""
    report = operators().drift(pool, unbounded=True)
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
        result = operators().reconcile(pool, apply=apply_, force=force, caller="cli", unbounded=True)
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
