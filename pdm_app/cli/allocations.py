"""The commands on allocations: list, check, history, release, renew, sweep."""
from __future__ import annotations

import sys

import click

from ..api import schemas
from ..config import parse_duration
from ..domain import ACTIVE, RESERVED
from .base import (PROG, blocked_line, cli, emit_json, fail, failing_line, json_option, lifecycle, operators,
                   service_command, table, timestamp)


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
        click.echo("\n" + blocked_line(listing.blocked))
    if listing.failing:
        click.echo("\n" + failing_line(listing.failing))


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
        click.echo(f"renewed {allocation.fqdn} until {timestamp(allocation.expires_at)}")


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
