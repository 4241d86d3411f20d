"""Sending the outbox: on the jobs leader, every PDM_WEBHOOK_INTERVAL, each endpoint in a
thread of its own (one slow receiver never holds up another).

At least once: a message is marked delivered only after its endpoint answered 2xx, so a
process killed mid-send leaves it pending and the next leader sends it again, with the
same ``webhook-id``. In order per subject (an allocation, a pool, a customer's domain):
only the oldest undelivered message of a subject is ever sent (``due_webhooks``).

What an answer does (``after``):
- 2xx: delivered.
- 410 Gone: the endpoint is disabled (its messages wait) until an operator enables it.
- 429, or 503 with Retry-After: the endpoint is paused until then (at most an hour).
- no answer, a timeout or a 5xx: the message's next attempt follows the schedule, and
  the endpoint rests for the schedule's first delay (a receiver that is down gets one
  attempt per rest, not one per message).
- any other status (3xx is one: redirects are never followed): the next attempt follows
  the schedule; other subjects go on.
Past the schedule's last delay a message is given up (``failed``; it can be replayed).
"""
from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

import requests
from standardwebhooks.webhooks import Webhook

from .. import metrics, outbound
from ..redaction import redact
from .endpoints import Endpoint, WebhookSettings

log = logging.getLogger(__name__)

# Messages read per query; a tick goes on reading while there are due ones.
BATCH = 100
# A tick sends at most this many per endpoint, so the job's other ticks (and a leader
# that lost its lock) are looked at again soon.
MAX_PER_TICK = 2000
# An answer's body is read only to end the exchange cleanly.
MAX_ANSWER_BYTES = 64 * 1024
MAX_PAUSE = 3600.0
# Messages of different subjects in flight at once to one endpoint.
IN_FLIGHT = 8
JITTER = 0.2


@dataclass(frozen=True)
class Next:
    """What an attempt's answer means: the message's new values, and what the endpoint
    does next (``pause_until``: rest until; ``disable``: stop until enabled)."""

    outcome: str  # delivered, failed, gave-up, gone, throttled
    message: dict
    pause_until: datetime | None = None
    disable: bool = False
    stop: bool = False  # no more of this endpoint's messages this tick


def after(status: int | None, error: str | None, retry_after: str | None, attempts: int,
          schedule: tuple[float, ...], now: datetime, jitter: Callable[[], float] = random.random) -> Next:
    """The pure rule of one attempt's outcome (see the module's docstring). ``attempts``:
    the message's attempts before this one; ``jitter()`` in [0, 1)."""
    tried = dict(attempts=attempts + 1, last_attempt_at=now, last_status=status, last_error=error)
    if status is not None and 200 <= status < 300:
        return Next("delivered", {**tried, "delivered_at": now, "last_error": None})
    if status == 410:
        return Next("gone", {**tried, "attempts": attempts, "next_attempt_at": now}, disable=True, stop=True)
    pause = _retry_after(retry_after, now) if status in (429, 503) else None
    if status == 429 or pause is not None:
        until = now + timedelta(seconds=pause if pause is not None else schedule[0])
        # Throttling is the receiver's pace, not the message's fault: no attempt spent.
        return Next("throttled", {**tried, "attempts": attempts, "next_attempt_at": until}, pause_until=until,
                    stop=True)
    if attempts + 1 > len(schedule):
        changes = {**tried, "failed_at": now}
    else:
        delay = schedule[attempts] * (1 - JITTER + 2 * JITTER * jitter())
        changes = {**tried, "next_attempt_at": now + timedelta(seconds=delay)}
    sick = status is None or status >= 500
    rest = now + timedelta(seconds=schedule[0]) if sick else None
    return Next("gave-up" if "failed_at" in changes else "failed", changes, pause_until=rest, stop=sick)


def _retry_after(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds from ``now`` (delta-seconds or an HTTP date), 0..MAX_PAUSE."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_PAUSE)
    try:
        at = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return min(max((at - now).total_seconds(), 0.0), MAX_PAUSE)


class Deliverer:
    def __init__(self, uow: Callable, settings: WebhookSettings, clock: Callable[[], datetime]):
        self.uow = uow
        self.settings = settings
        self.clock = clock
        self._signers = {e.name: [Webhook(s) for s in e.secrets] for e in settings.endpoints}
        self._sessions: dict[str, requests.Session] = {}
        self._sessions_guard = threading.Lock()

    def deliver(self, still_leader: Callable[[], bool]) -> int:
        """One tick: every enabled, unpaused endpoint's due messages; the number delivered.
        ``still_leader`` is asked before each batch: a process that lost the jobs lock
        stops sending (the new leader sends what it left, again if need be)."""
        endpoints = self.settings.endpoints
        if not endpoints:
            return 0
        now = self.clock()
        with self.uow() as tx:
            states = tx.webhook_endpoints()
        ready = [e for e in endpoints if _ready(states.get(e.name), now)]
        if not ready:
            return 0
        if len(ready) == 1:
            return self._endpoint(ready[0], still_leader)
        with ThreadPoolExecutor(max_workers=min(8, len(ready)), thread_name_prefix="webhooks") as pool:
            return sum(pool.map(lambda e: self._endpoint(e, still_leader), ready))

    def _endpoint(self, endpoint: Endpoint, still_leader: Callable[[], bool]) -> int:
        """Send an endpoint's due messages in waves: each wave's messages are of different
        subjects (``due_webhooks`` gives only heads), so they may be in flight together;
        the first wave of a tick is one message, a probe, so a receiver that is down gets
        one attempt, not a wave of them. Each wave is recorded in one transaction."""
        delivered = sent = 0
        wave = 1
        stopped_subjects: set[str] = set()
        with ThreadPoolExecutor(max_workers=IN_FLIGHT, thread_name_prefix="webhook-send") as senders:
            while sent < MAX_PER_TICK and still_leader():
                with self.uow() as tx:
                    due = [m for m in tx.due_webhooks(endpoint.name, self.clock(), BATCH)
                           if m.subject not in stopped_subjects]
                if not due:
                    return delivered
                for start in range(0, len(due), IN_FLIGHT):
                    batch = due[start:start + wave] if wave == 1 else due[start:start + IN_FLIGHT]
                    steps = list(senders.map(lambda m: self._attempt(endpoint, m), batch))
                    self._record(endpoint, batch, steps)
                    sent += len(batch)
                    delivered += sum(step.outcome == "delivered" for step in steps)
                    if any(step.stop for step in steps):
                        return delivered
                    # A failed message's subject waits for its next attempt.
                    stopped_subjects.update(m.subject for m, step in zip(batch, steps) if step.outcome != "delivered")
                    if wave == 1:
                        wave = IN_FLIGHT
                        break  # the probe went through: read the heads again, all in waves now
        return delivered

    def _attempt(self, endpoint: Endpoint, message) -> Next:
        """Send one message; what its answer means (nothing written yet)."""
        now = self.clock()
        headers = self._headers(endpoint, message.msg_id, now, message.payload)
        status, error, retry_after = None, None, None
        started = time.monotonic()
        try:
            answer = outbound.request(self._session(endpoint), "POST", endpoint.url, deadline=self.settings.timeout,
                                      max_bytes=MAX_ANSWER_BYTES, data=message.payload.encode(), headers=headers)
            status, retry_after = answer.status_code, answer.headers.get("Retry-After")
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except outbound.OutboundError as exc:
            # Its text names what went wrong, never the URL (which may carry a token).
            error = str(exc)
        metrics.WEBHOOK_LATENCY.labels(endpoint.name).observe(time.monotonic() - started)
        step = after(status, error, retry_after, message.attempts, self.settings.retry_schedule, self.clock())
        metrics.WEBHOOK_DELIVERIES.labels(endpoint.name, step.outcome).inc()
        if step.outcome != "delivered":
            log.warning("webhook %s (%s) to %s: %s (attempt %d, %s)", message.msg_id, message.type, endpoint.name,
                        error, message.attempts + 1, step.outcome)
        return step

    def _record(self, endpoint: Endpoint, messages: list, steps: list[Next]) -> None:
        """A wave's outcomes, and what they say of the endpoint, in one transaction."""
        now = self.clock()
        state: dict = {}
        for step in steps:
            if step.outcome == "delivered":
                state.update(last_success_at=now)
            else:
                state.update(last_error=redact(step.message.get("last_error") or ""))
            if step.disable:
                state.update(disabled_at=now, disabled_reason="the endpoint answered 410 Gone")
            if step.pause_until is not None:
                state["paused_until"] = max(step.pause_until, state.get("paused_until", step.pause_until))
        with self.uow() as tx:
            for message, step in zip(messages, steps):
                tx.update_webhook(message.id, **step.message)
            tx.update_webhook_endpoint(endpoint.name, **state)

    def _headers(self, endpoint: Endpoint, msg_id: str, now: datetime, payload: str) -> dict:
        signatures = " ".join(w.sign(msg_id, now, payload) for w in self._signers[endpoint.name])
        return {"Content-Type": "application/json", "User-Agent": "pool-domain-manager-webhooks",
                "webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": signatures}

    def _session(self, endpoint: Endpoint) -> requests.Session:
        with self._sessions_guard:
            session = self._sessions.get(endpoint.name)
            if session is None:
                session = self._sessions[endpoint.name] = outbound.mount(requests.Session())
                session.trust_env = False  # only the configured endpoint, never a proxy from the environment
            return session

    def prune(self) -> int:
        """Delete messages past PDM_WEBHOOK_RETENTION, whatever became of them."""
        with self.uow() as tx:
            return tx.prune_webhooks(self.clock() - timedelta(seconds=self.settings.retention))


def _ready(state, now: datetime) -> bool:
    if state is None:
        return True
    return state.disabled_at is None and (state.paused_until is None or state.paused_until <= now)
