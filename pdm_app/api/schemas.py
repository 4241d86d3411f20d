"""Marshmallow schemas of the wire contract: request bodies in, answers out."""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, post_dump, validate

TIMESTAMP = "%Y-%m-%dT%H:%M:%SZ"  # RFC 3339, UTC, second precision


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
    reservedAt = fields.DateTime(TIMESTAMP, attribute="reserved_at")
    expiresAt = fields.DateTime(TIMESTAMP, attribute="expires_at")
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
    createdAt = fields.DateTime(TIMESTAMP, attribute="created_at")
    nextAttemptAt = fields.DateTime(TIMESTAMP, attribute="next_attempt_at")
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
