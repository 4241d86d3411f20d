"""The operators' view of webhooks: per endpoint what waits, what was given up and why,
and the two repairs -- send messages again (one, or a time range) and enable an endpoint
that a 410 disabled."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from sqlalchemy.orm import sessionmaker

from .. import domain
from ..domain import DomainError
from ..unit_of_work import UnitOfWork
from ..webhooks.endpoints import WebhookSettings

log = logging.getLogger(__name__)

MSG_ID = re.compile(r"msg_[0-9a-f]{32}")
STATES = ("pending", "delivered", "failed")


@dataclass(frozen=True)
class EndpointStatus:
    name: str
    configured: bool
    events: tuple[str, ...] | None
    pending: int
    oldest_pending_at: datetime | None
    failed: int
    disabled_at: datetime | None
    disabled_reason: str | None
    paused_until: datetime | None
    last_error: str | None
    last_success_at: datetime | None


@dataclass(frozen=True)
class Message:
    id: int
    msg_id: str
    endpoint: str
    type: str
    subject: str
    created_at: datetime
    state: str
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None

    @classmethod
    def of(cls, row) -> "Message":
        state = "delivered" if row.delivered_at else "failed" if row.failed_at else "pending"
        return cls(row.id, row.msg_id, row.endpoint, row.type, row.subject, row.created_at, state, row.attempts,
                   row.next_attempt_at if state == "pending" else None, row.last_status, row.last_error,
                   row.delivered_at)


@dataclass(frozen=True)
class MessagesPage:
    """Messages newest first; ``next_before``: the id to ask ``before`` for the next page
    (None: this is the last)."""

    messages: list[Message]
    next_before: int | None


class Webhooks:
    def __init__(self, session_factory: sessionmaker, settings: WebhookSettings,
                 clock: Callable[[], datetime] = domain.utcnow):
        self.session_factory = session_factory
        self.settings = settings
        self.clock = clock

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.session_factory)

    def status(self) -> list[EndpointStatus]:
        """Every configured endpoint, and any other that still has messages."""
        with self.uow() as tx:
            figures = tx.webhook_figures(self.clock())
            states = tx.webhook_endpoints()
        configured = {e.name: e for e in self.settings.endpoints}
        names = list(configured) + sorted(set(figures) - set(configured))
        out = []
        for name in names:
            pending, oldest, failed, _ = figures.get(name, (0, None, 0, False))
            state, endpoint = states.get(name), configured.get(name)
            out.append(EndpointStatus(
                name, endpoint is not None,
                tuple(sorted(endpoint.events)) if endpoint is not None and endpoint.events is not None else None,
                pending, oldest, failed,
                state.disabled_at if state else None, state.disabled_reason if state else None,
                state.paused_until if state and state.paused_until and state.paused_until > self.clock() else None,
                state.last_error if state else None, state.last_success_at if state else None))
        return out

    def messages(self, *, endpoint: str | None = None, state: str | None = None, msg_id: str | None = None,
                 before: int | None = None, limit: int = 50) -> MessagesPage:
        if state is not None and state not in STATES:
            raise DomainError("invalid-state", f"state must be one of {', '.join(STATES)}", 400)
        if msg_id is not None:
            self._check_msg_id(msg_id)
        with self.uow() as tx:
            # One more than asked: whether an older page exists.
            rows = tx.webhook_messages(endpoint=endpoint, state=state, msg_id=msg_id, before=before, limit=limit + 1)
            found = [Message.of(r) for r in rows]
        page = found[:limit]
        return MessagesPage(page, page[-1].id if len(found) > limit else None)

    def replay(self, caller: str, *, msg_id: str | None = None, since: datetime | None = None,
               until: datetime | None = None, endpoint: str | None = None) -> int:
        """Send again, from a first attempt and with the same webhook-id, the message
        ``msg_id`` or every message written in [since, until); of ``endpoint`` or of all.
        The number of messages; 404 when none matched."""
        if (msg_id is None) == (since is None and until is None):
            raise DomainError("invalid-replay", "give either a message's id or a time range (since, until)", 400)
        if msg_id is not None:
            self._check_msg_id(msg_id)
        if since is not None and until is not None and since >= until:
            raise DomainError("invalid-replay", "since must be before until", 400)
        if endpoint is not None and self.settings.endpoint(endpoint) is None:
            raise DomainError("unknown-endpoint", f"no webhook endpoint is named {endpoint!r}", 404)
        with self.uow() as tx:
            n = tx.replay_webhooks(self.clock(), msg_id=msg_id, since=since, until=until, endpoint=endpoint)
        if not n:
            raise DomainError("not-found", "no retained webhook message matches", 404)
        log.info("webhooks: %s replays %d message(s) (%s)", caller, n,
                 msg_id or f"{since.isoformat() if since else '...'} to {until.isoformat() if until else '...'}")
        return n

    def enable(self, name: str, caller: str) -> None:
        """Deliver to an endpoint again after a 410 disabled it (and end any pause)."""
        if self.settings.endpoint(name) is None:
            raise DomainError("unknown-endpoint", f"no webhook endpoint is named {name!r}", 404)
        with self.uow() as tx:
            tx.update_webhook_endpoint(name, disabled_at=None, disabled_reason=None, paused_until=None)
        log.info("webhooks: %s enables %s", caller, name)

    @staticmethod
    def _check_msg_id(msg_id: str) -> None:
        if not MSG_ID.fullmatch(msg_id):
            raise DomainError("invalid-id", "a message id is msg_ and 32 hexadecimal digits", 400)
