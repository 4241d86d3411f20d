"""Marshmallow schemas of the webhooks' operators' routes (requests in, answers out), and of
the events themselves as a receiver gets them (for the OpenAPI document only: the payload
is written by ``webhooks.events``)."""
from __future__ import annotations

import re
from datetime import datetime, timezone

from marshmallow import EXCLUDE, Schema, fields, validate

from ..webhooks.events import EVENT_TYPES
from .schemas import Answer, Request, Timestamp

STATES = ("pending", "delivered", "failed")
# An endpoint's name is at most 200 characters (webhooks.endpoints).
NAME_LENGTH = 200
MSG_ID_PATTERN = r"^msg_[0-9a-f]{32}$"
# RFC 3339 as the API takes it: a date, a time and an offset (Z or +hh:mm); fractions allowed.
INSTANT_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$"
_INSTANT = re.compile(INSTANT_PATTERN.replace("$", r"\Z"))


def parse_instant(text: str) -> datetime:
    """An RFC 3339 time (``2026-12-07T17:50:00Z``) as an aware UTC datetime; ValueError
    for anything else, a time outside the calendar included."""
    if not _INSTANT.match(text):
        raise ValueError(text)
    try:
        return datetime.fromisoformat(text).astimezone(timezone.utc)
    except OverflowError:  # year 1 or 9999 moved past the calendar by its offset
        raise ValueError(text) from None


class Instant(fields.Field):
    """A point in time a client sends: RFC 3339 with an offset."""

    default_error_messages = {"invalid": "must be an RFC 3339 time with an offset, like 2026-12-07T17:50:00Z"}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or len(value) > 40:
            raise self.make_error("invalid")
        try:
            return parse_instant(value)
        except ValueError:
            raise self.make_error("invalid") from None


# -- the operators' routes --------------------------------------------------------------------


class WebhookMessagesQuery(Request):
    """``?endpoint=&state=&limit=&before=``: a page of messages, newest first."""

    endpoint = fields.String(load_default=None, validate=validate.Length(min=1, max=NAME_LENGTH))
    state = fields.String(load_default=None, validate=validate.OneOf(STATES))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000), strict=False)
    before = fields.Integer(load_default=None, validate=validate.Range(min=1, max=2**62))


class WebhookReplayRequest(Request):
    """One message by its id, or those written in [since, until); of one endpoint or all."""

    id = fields.String(load_default=None, validate=validate.Length(max=100), metadata={
        "pattern": MSG_ID_PATTERN, "description": "A message's webhook-id (msg_ and 32 hexadecimal digits)"})
    since = Instant(load_default=None, metadata={
        "description": "Messages written at or after this time (RFC 3339)", "pattern": INSTANT_PATTERN})
    until = Instant(load_default=None, metadata={
        "description": "Messages written before this time (RFC 3339; default: now; alone: every kept message "
                       "written before it)", "pattern": INSTANT_PATTERN})
    endpoint = fields.String(load_default=None, validate=validate.Length(min=1, max=NAME_LENGTH), metadata={
        "description": "Only this endpoint's messages (default: every endpoint's)"})


class WebhookReplayedSchema(Schema):
    # How many messages are pending again (each from its first attempt, with its webhook-id).
    replayed = fields.Integer(required=True)


class WebhookEndpointSchema(Schema):
    name = fields.String()
    # False: no longer in PDM_WEBHOOKS, but messages of it are still kept.
    configured = fields.Boolean()
    # The event types it is sent; null: all of them.
    events = fields.List(fields.String(), allow_none=True)
    pending = fields.Integer()
    oldestPendingAt = Timestamp(attribute="oldest_pending_at", allow_none=True)
    oldestPendingSeconds = fields.Integer(attribute="oldest_pending_seconds", allow_none=True)
    # Given up after the retry schedule (replay them to send them again).
    failed = fields.Integer()
    # Disabled (it answered 410 Gone): nothing is sent to it until it is enabled again.
    disabledAt = Timestamp(attribute="disabled_at", allow_none=True)
    disabledReason = fields.String(attribute="disabled_reason", allow_none=True)
    # Paused (it answered 429, or 503 with Retry-After) until then.
    pausedUntil = Timestamp(attribute="paused_until", allow_none=True)
    lastError = fields.String(attribute="last_error", allow_none=True)
    lastSuccessAt = Timestamp(attribute="last_success_at", allow_none=True)


class WebhookEndpointsSchema(Schema):
    endpoints = fields.List(fields.Nested(WebhookEndpointSchema))


class WebhookMessageSchema(Schema):
    # The row's id: pass it as ?before= to page.
    id = fields.Integer()
    # The webhook-id header: the same for every endpoint, retry and replay of the event.
    msgId = fields.String(attribute="msg_id")
    endpoint = fields.String()
    type = fields.String()
    # What order is kept per: pool/name, the pool, or registrar:name/domain.
    subject = fields.String()
    createdAt = Timestamp(attribute="created_at")
    state = fields.String(validate=validate.OneOf(STATES))
    attempts = fields.Integer()
    # Pending messages only: when it is tried next.
    nextAttemptAt = Timestamp(attribute="next_attempt_at", allow_none=True)
    lastStatus = fields.Integer(attribute="last_status", allow_none=True)
    lastError = fields.String(attribute="last_error", allow_none=True)
    deliveredAt = Timestamp(attribute="delivered_at", allow_none=True)


class WebhookMessagesSchema(Answer):
    messages = fields.List(fields.Nested(WebhookMessageSchema))
    # Pass as ?before= for the next (older) page; absent on the last page.
    nextBefore = fields.Integer(attribute="next_before")


def with_age(status, now: datetime) -> dict:
    """A ``services.webhooks.EndpointStatus`` with its oldest pending message's age at
    ``now`` (what the schemas above dump)."""
    oldest = status.oldest_pending_at
    age = max(0, int((now - oldest).total_seconds())) if oldest is not None else None
    return {**vars(status), "oldest_pending_seconds": age}


def dump_status(status, now: datetime) -> dict:
    return WebhookEndpointSchema().dump(with_age(status, now))


# -- the events a receiver gets (documentation) ------------------------------------------------


class _Open(Schema):
    class Meta:
        unknown = EXCLUDE  # a receiver should take fields added later


class WebhookEventDataSchema(_Open):
    pool = fields.String(required=True, metadata={"description": (
        "The pool domain; registrar:<name> for nameservers.flipped")})
    name = fields.String(required=True, metadata={"description": (
        "The tenant's name in the pool (empty for a pool's event); the customer's domain for nameservers.flipped")})
    state = fields.String(required=True, metadata={"description": (
        "After the change: reserved, active or released (allocation.*; expired for allocation.expired), "
        "blocked, unblocked or repaired (pool.*), ok or pending (nameservers.flipped: applied, or the registrar "
        "applies it later)")})
    caller = fields.String(required=True, metadata={"description": "Who made the change (a token's name, cli, "
                                                                   "an operator, or the service itself)"})
    address = fields.String(required=True, allow_none=True, metadata={
        "description": "The tenant's load-balancer IP, when it has one"})
    link = fields.String(required=True, metadata={"description": (
        "Where the API tells more (the history of the name): PDM_PUBLIC_URL followed by the path, or the path "
        "alone")})
    detail = fields.String(metadata={"description": "What the history records beside the change, when anything"})


class WebhookEventSchema(_Open):
    type = fields.String(required=True, validate=validate.OneOf(EVENT_TYPES))
    timestamp = fields.String(required=True, metadata={
        "format": "date-time", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$",
        "description": "When the change happened (RFC 3339, UTC, microseconds)"})
    data = fields.Nested(WebhookEventDataSchema, required=True)
