"""Marshmallow schemas of the wire contract: request bodies in, answers out."""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, post_dump, validate

TIMESTAMP = "%Y-%m-%dT%H:%M:%SZ"  # RFC 3339, UTC, second precision


class Timestamp(fields.DateTime):
    """A wire timestamp: ``2026-11-28T20:15:00Z``."""

    def __init__(self, **kwargs):
        super().__init__(TIMESTAMP, **kwargs)


class Request(Schema):
    class Meta:
        unknown = EXCLUDE  # clients may send fields we do not know


class ReserveRequest(Request):
    subdomain = fields.String(load_default="")
    createdBy = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=255))


class CommitRequest(Request):
    subdomain = fields.String(load_default="")
    reservationToken = fields.String(load_default="", allow_none=True)
    sovereignFQDN = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=253))
    loadBalancerIP = fields.String(load_default="", allow_none=True)


class ReleaseRequest(Request):
    subdomain = fields.String(load_default="")


class Answer(Schema):
    """Leaves out fields that are not set, as the old service did."""

    @post_dump
    def _drop_unset(self, data, **_kwargs):
        return {k: v for k, v in data.items() if v is not None}


class AllocationSchema(Answer):
    poolDomain = fields.String(attribute="pool_domain")
    subdomain = fields.String()
    state = fields.String()
    reservedAt = Timestamp(attribute="reserved_at")
    expiresAt = Timestamp(attribute="expires_at")
    createdBy = fields.String(attribute="created_by")
    sovereignFQDN = fields.String(attribute="sovereign_fqdn")
    loadBalancerIP = fields.String(attribute="load_balancer_ip")


class ReserveResponseSchema(AllocationSchema):
    reservationToken = fields.String(attribute="token")


class CheckResultSchema(Answer):
    available = fields.Boolean()
    reason = fields.String()
    detail = fields.String()
    fqdn = fields.String()


class PendingDnsSchema(Answer):
    subdomain = fields.String()
    action = fields.String()
    attempts = fields.Integer()
    createdAt = Timestamp(attribute="created_at")
    nextAttemptAt = Timestamp(attribute="next_attempt_at")
    lastError = fields.String(attribute="last_error")


class ListedAllocationSchema(AllocationSchema):
    dnsPending = fields.Boolean(attribute="dns_pending")


class PoolListSchema(Schema):
    poolDomain = fields.String(attribute="pool_domain")
    allocations = fields.List(fields.Nested(ListedAllocationSchema))
    pendingDns = fields.List(fields.Nested(PendingDnsSchema), attribute="pending")


class ErrorSchema(Schema):
    error = fields.String(required=True)
    detail = fields.String(required=True)


class EventSchema(Answer):
    subdomain = fields.String()
    action = fields.String()
    caller = fields.String()
    at = Timestamp()
    loadBalancerIP = fields.String(attribute="load_balancer_ip")


class HistorySchema(Schema):
    poolDomain = fields.String(attribute="pool_domain")
    events = fields.List(fields.Nested(EventSchema))


class CommitPendingSchema(Answer):
    warning = fields.String()
    detail = fields.String()
    poolDomain = fields.String()
    subdomain = fields.String()
    state = fields.String()
    sovereignFQDN = fields.String()
    loadBalancerIP = fields.String()


class ReleasedSchema(Schema):
    freed = fields.Nested(AllocationSchema)


class ReleasePendingSchema(Schema):
    warning = fields.String()
    detail = fields.String()
    freed = fields.Nested(AllocationSchema)


class HealthSchema(Schema):
    status = fields.String()
    managedDomains = fields.List(fields.String())


class ReadySchema(Schema):
    status = fields.String()
    schemaRevision = fields.String()


class NotReadySchema(ErrorSchema):
    status = fields.String(required=True)


class ReservedSchema(Schema):
    reserved = fields.List(fields.String())
