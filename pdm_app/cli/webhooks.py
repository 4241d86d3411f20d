"""The commands on webhooks: each endpoint's deliveries (``webhooks``), the messages, and
the two repairs -- ``webhooks replay`` (one message, or a time range) and ``webhooks
enable`` (an endpoint a 410 disabled)."""
from __future__ import annotations

from datetime import datetime, timezone

import click

from ..api import webhook_schemas as schemas
from ..domain import utcnow
from ..services.webhooks import STATES, Webhooks
from .base import PROG, cli, emit_json, json_option, pdm, service_command, table


def service() -> Webhooks:
    return pdm().webhooks


class Instant(click.ParamType):
    """An ISO 8601 time: 2026-12-07T17:50:00Z, 2026-12-07T21:50+04:00, 2026-12-07 (without
    an offset: UTC)."""

    name = "TIME"

    def convert(self, value, param, ctx):
        if isinstance(value, datetime):
            return value
        try:
            at = datetime.fromisoformat(value.strip())
            return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
        except (ValueError, OverflowError):
            self.fail(f"{value!r} is not an ISO 8601 time (like 2026-12-07T17:50:00Z, or 2026-12-07 in UTC)",
                      param, ctx)


def age(seconds: int | None) -> str | None:
    """95 -> "1m35s", 7300 -> "2h01m": an age at a glance."""
    if seconds is None:
        return None
    for size, unit, small, small_size in ((86400, "d", "h", 3600), (3600, "h", "m", 60), (60, "m", "s", 1)):
        if seconds >= size:
            return f"{seconds // size}{unit}{seconds % size // small_size:02d}{small}"
    return f"{seconds}s"


def _state(s: dict) -> str:
    if s["disabledAt"]:
        return "disabled"
    if s["pausedUntil"]:
        return "paused"
    return "ok" if s["configured"] else "not configured"


def _name(name: str) -> str:
    # Quoted as a shell needs it when the name is a URL or has spaces.
    return name if name.replace("-", "").replace("_", "").replace(".", "").isalnum() else repr(name)


@cli.group("webhooks", invoke_without_command=True, short_help="Webhook deliveries per endpoint; replay, enable.")
@json_option
@click.pass_context
def webhooks(ctx: click.Context, as_json: bool) -> None:
    """Per webhook endpoint (PDM_WEBHOOKS): its event types, messages pending (and the
    oldest one's age), given up (failed), whether it is disabled (a 410) or paused (429 or
    503 with Retry-After), its last error and last success. The subcommands list the
    messages, send them again and enable a disabled endpoint."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(_status, as_json=as_json)


@service_command
def _status(as_json: bool) -> None:
    now = utcnow()
    statuses = [schemas.dump_status(s, now) for s in service().status()]
    if as_json:
        emit_json(statuses)
        return
    if not statuses:
        click.echo("no webhook endpoints are configured (PDM_WEBHOOKS) and no messages are kept")
        return
    table(["ENDPOINT", "EVENTS", "STATE", "PENDING", "OLDEST PENDING", "FAILED", "LAST SUCCESS"],
          [(s["name"], "all" if s["events"] is None else ",".join(s["events"]), _state(s), s["pending"],
            age(s["oldestPendingSeconds"]), s["failed"], s["lastSuccessAt"]) for s in statuses])
    for s in statuses:
        lines = []
        if s["disabledAt"]:
            lines.append(f"disabled since {s['disabledAt']}: {s['disabledReason'] or 'no reason recorded'}; its "
                         f"messages wait (enable it: {PROG} webhooks enable {_name(s['name'])})")
        if s["pausedUntil"]:
            lines.append(f"paused until {s['pausedUntil']} (the endpoint asked for it)")
        if s["lastError"]:
            lines.append(f"last error: {s['lastError']}")
        if s["failed"]:
            name = _name(s["name"])
            lines.append(f"{s['failed']} message(s) given up: {PROG} webhooks messages --endpoint {name} --state "
                         f"failed; send one again: {PROG} webhooks replay --endpoint {name} --id MSG_ID")
        if not s["configured"]:
            lines.append("not in PDM_WEBHOOKS any more: its messages are kept until PDM_WEBHOOK_RETENTION, "
                         "never sent")
        if lines:
            click.echo(f"\n{s['name']}:")
            for line in lines:
                click.echo(f"  {line}")


@webhooks.command(short_help="Webhook messages, newest first.")
@click.option("--endpoint", metavar="NAME", help="Only this endpoint's messages.")
@click.option("--state", type=click.Choice(STATES), help="Only messages in this state.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="Messages per page.")
@click.option("--before", type=click.IntRange(min=1, max=2**62), help="Only messages older than this id (the next "
                                                                      "page).")
@json_option
@service_command
def messages(endpoint: str | None, state: str | None, limit: int, before: int | None, as_json: bool) -> None:
    """Webhook messages, newest first: pending (waiting, or sent again), delivered, or
    failed (given up after the retry schedule)."""
    found = service().messages(endpoint=endpoint, state=state, before=before, limit=limit)
    page, next_before = found.messages, found.next_before
    if as_json:
        emit_json(schemas.WebhookMessagesSchema().dump(found))
        return
    if not page:
        click.echo("no messages")
    else:
        table(["ID", "MSG ID", "ENDPOINT", "TYPE", "SUBJECT", "WRITTEN", "STATE", "ATTEMPTS", "NEXT ATTEMPT",
               "LAST STATUS", "LAST ERROR"],
              [(m.id, m.msg_id, m.endpoint, m.type, m.subject, m.created_at, m.state, m.attempts, m.next_attempt_at,
                m.last_status, m.last_error) for m in page])
    if next_before is not None:
        words = [PROG, "webhooks", "messages"]
        words += ["--endpoint", _name(endpoint)] if endpoint else []
        words += ["--state", state] if state else []
        words += ["--limit", str(limit)] if limit != 50 else []
        click.echo(f"\nolder messages: {' '.join(words)} --before {next_before}")


@webhooks.command(short_help="Send messages again: one (--id) or a time range.")
@click.option("--id", "msg_id", metavar="MSG_ID", help="The message's webhook-id (msg_...).")
@click.option("--since", type=Instant(), help="Messages written at or after this time (ISO 8601; UTC without an "
                                              "offset).")
@click.option("--until", type=Instant(), help="Messages written before this time (default: now).")
@click.option("--endpoint", metavar="NAME", help="Only to this endpoint (default: every endpoint of the messages).")
@json_option
@service_command
def replay(msg_id: str | None, since: datetime | None, until: datetime | None, endpoint: str | None,
           as_json: bool) -> None:
    """Send webhook messages again -- the message --id, or those written from --since
    (to --until; --until alone: every kept message written before it) -- from a first
    attempt, with the same webhook-id (receivers recognise them). Delivered and failed
    messages alike."""
    if (msg_id is None) == (since is None and until is None):
        raise click.UsageError("give --id, or a time range: --since and/or --until")
    n = service().replay("cli", msg_id=msg_id, since=since, until=until, endpoint=endpoint)
    if as_json:
        emit_json(schemas.WebhookReplayedSchema().dump({"replayed": n}))
    else:
        click.echo(f"replayed {n} message(s): pending again, sent from the next delivery tick")


@webhooks.command(short_help="Deliver to an endpoint a 410 disabled.")
@click.argument("name")
@json_option
@service_command
def enable(name: str, as_json: bool) -> None:
    """Deliver to the endpoint NAME again after it answered 410 Gone (also ends a pause
    it asked for); its waiting messages go out from the next delivery tick."""
    service().enable(name, "cli")
    [status] = [s for s in service().status() if s.name == name]
    if as_json:
        emit_json(schemas.dump_status(status, utcnow()))
    else:
        click.echo(f"enabled {name}: {status.pending} message(s) pending, sent from the next delivery tick")

