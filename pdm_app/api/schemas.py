"""Marshmallow schemas of the wire contract: request bodies in, answers out."""
from __future__ import annotations

import math

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


class Ttl(fields.Field):
    """A reservation lifetime: seconds as a number, or a Go duration string ("30m")."""

    default_error_messages = {"invalid": "must be seconds (a number) or a duration like \"30m\" or \"1h30m\""}

    def _deserialize(self, value, attr, data, **kwargs):
        from ..config import parse_duration

        if isinstance(value, bool):
            raise self.make_error("invalid")
        if isinstance(value, int):
            try:
                seconds = float(value)
            except OverflowError:
                # More digits than a float holds: a number of seconds past any limit,
                # which the service refuses as it refuses any ttl too long (invalid-ttl).
                seconds = math.inf if value > 0 else -math.inf
        elif isinstance(value, float):
            seconds = value
        elif isinstance(value, str) and len(value) <= 32:
            try:
                seconds = parse_duration(value)
            except ValueError:
                raise self.make_error("invalid") from None
        else:
            raise self.make_error("invalid")
        if math.isnan(seconds):
            raise self.make_error("invalid")
        # An infinite number (JSON's 1e999) is a lifetime too long: invalid-ttl, from the service.
        return seconds


class RenewRequest(Request):
    subdomain = fields.String(load_default="")
    reservationToken = fields.String(load_default="", allow_none=True)
    ttl = Ttl(load_default=None)


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
    reason = fields.String(metadata={"description": (
        "Why not available: invalid-format, unsupported-pool, reserved, reserved-state, active-state, or "
        "dns-conflict (the pool's DNS, as last read, holds records the service did not publish at or under the "
        "name)")})
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


class BlockedSchema(Schema):
    reason = fields.String()
    detail = fields.String()
    since = Timestamp(allow_none=True)


class FailingSchema(Schema):
    # The pool's last DNS pass failed: why (redacted), and since when its passes fail.
    error = fields.String()
    since = Timestamp(allow_none=True)


class ResyncSchema(Schema):
    # The last whole resync's start; the one under way (PowerDNS, in slices): since, names checked of total.
    lastAt = Timestamp(attribute="last", allow_none=True)
    startedAt = Timestamp(attribute="started", allow_none=True)
    checked = fields.Integer()
    total = fields.Integer()


class PoolListSchema(Schema):
    poolDomain = fields.String(attribute="pool_domain")
    allocations = fields.List(fields.Nested(ListedAllocationSchema))
    pendingDns = fields.List(fields.Nested(PendingDnsSchema), attribute="pending")
    # null while the pool's zone is written normally; else why it is not.
    dnsBlocked = fields.Nested(BlockedSchema, attribute="blocked", allow_none=True)
    # null while the pool's DNS passes succeed; else why the last one failed.
    dnsFailing = fields.Nested(FailingSchema, attribute="failing", allow_none=True)


class PoolPageSchema(PoolListSchema):
    """A page of the list (``?limit=``); the unpaged answer stays the contract's."""

    # The ``after`` of the next page; null on the last one.
    nextAfter = fields.String(attribute="next_after", allow_none=True)


def dump_pool_list(listing) -> dict:
    """A ``services.operators.PoolListing`` as the list answer: each allocation says
    whether DNS work is pending for it."""
    pending_subs = {p.subdomain for p in listing.pending}
    schema = PoolPageSchema() if listing.paged else PoolListSchema()
    return schema.dump({
        "pool_domain": listing.pool_domain,
        # vars(), not asdict(): a shallow copy (asdict deep-copies every datetime).
        "allocations": [{**vars(a), "dns_pending": a.subdomain in pending_subs} for a in listing.allocations],
        "pending": listing.pending,
        "blocked": listing.blocked,
        "failing": listing.failing,
        "next_after": listing.next_after,
    })


class DsCheckSchema(Schema):
    # published, missing, different or unknown
    status = fields.String()
    found = fields.List(fields.String())
    detail = fields.String()


class PoolStatusSchema(Schema):
    poolDomain = fields.String(attribute="pool_domain")
    active = fields.Integer()
    reserved = fields.Integer()
    pendingDnsCount = fields.Integer(attribute="pending")
    dnsBlocked = fields.Nested(BlockedSchema, attribute="blocked", allow_none=True)
    # The last good read of the pool's DNS; null before the first.
    syncedAt = Timestamp(attribute="synced_at", allow_none=True)
    foreignSubhostRecords = fields.Integer(attribute="foreign_subhost_records", allow_none=True)
    # dynadot or powerdns
    dnsBackend = fields.String(attribute="dns_backend")
    # PowerDNS pools: the DS lines the pool domain's registrar must publish, and whether
    # it does.
    poolDs = fields.List(fields.String(), attribute="ds")
    poolDsCheck = fields.Nested(DsCheckSchema, attribute="ds_check", allow_none=True)
    dnsFailing = fields.Nested(FailingSchema, attribute="failing", allow_none=True)
    resync = fields.Nested(ResyncSchema, allow_none=True)


class PoolsSchema(Schema):
    pools = fields.List(fields.Nested(PoolStatusSchema))


class WrongAddressSchema(Schema):
    host = fields.String()
    found = fields.List(fields.String())
    expected = fields.String()


class NameDriftSchema(Schema):
    subdomain = fields.String()
    state = fields.String(allow_none=True)
    missing = fields.List(fields.String())
    wrongAddress = fields.List(fields.Nested(WrongAddressSchema), attribute="wrong")
    orphans = fields.List(fields.String())
    # What is not the service's where this name's records go: never touched.
    foreign = fields.List(fields.String())


class RecordSchema(Schema):
    host = fields.String()
    type = fields.String(attribute="rtype")
    value = fields.String()
    extra = fields.String()


class DriftSchema(Schema):
    poolDomain = fields.String(attribute="pool_domain")
    checkedAt = Timestamp(attribute="checked_at")
    clean = fields.Boolean()
    names = fields.List(fields.Nested(NameDriftSchema))
    # Records that are not the service's and have gone since the last good read.
    lostRecords = fields.List(fields.Nested(RecordSchema), attribute="lost")
    pendingDns = fields.List(fields.Nested(PendingDnsSchema), attribute="pending")
    dnsBlocked = fields.Nested(BlockedSchema, attribute="blocked", allow_none=True)
    dnsFailing = fields.Nested(FailingSchema, attribute="failing", allow_none=True)


class ErrorSchema(Schema):
    error = fields.String(required=True)
    detail = fields.String(required=True)


class CheckRateLimitedSchema(ErrorSchema):
    """check's 429: an error, and a check result for clients that read any answer below
    500 as one (available false, reason rate-limited)."""

    available = fields.Boolean(required=True)
    reason = fields.String(required=True)


class EventSchema(Answer):
    id = fields.Integer()
    subdomain = fields.String()
    action = fields.String()
    caller = fields.String()
    at = Timestamp()
    loadBalancerIP = fields.String(attribute="load_balancer_ip")
    detail = fields.String()


class HistorySchema(Answer):
    poolDomain = fields.String(attribute="pool_domain")
    events = fields.List(fields.Nested(EventSchema))
    # Pass as ?before= for the next (older) page; absent on the last page.
    nextBefore = fields.Integer(attribute="next_before")


class PageQuery(Request):
    """``?limit=&before=``: a page of events, newest first."""

    limit = fields.Integer(load_default=500, validate=validate.Range(min=1, max=1000), strict=False)
    before = fields.Integer(load_default=None, validate=validate.Range(min=1, max=2**62))


class HistoryQuery(PageQuery):
    sub = fields.String(load_default=None)


class ListQuery(Request):
    """``?limit=&after=``: a page of allocations in subdomain order, after ``after``.
    Without ``limit`` the whole pool (the contract's answer, for small pools)."""

    limit = fields.Integer(load_default=None, validate=validate.Range(min=1, max=1000), strict=False)
    after = fields.String(load_default=None, validate=validate.Length(max=63))


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


class DnsHealthSchema(Schema):
    backend = fields.String()
    pendingChanges = fields.Integer()
    oldestPendingSeconds = fields.Float(allow_none=True)
    # Why the pool's last pass failed, else the last error of a pending change (redacted);
    # null when none failed.
    lastError = fields.String(allow_none=True)
    blocked = fields.String(allow_none=True)


class HealthSchema(Schema):
    status = fields.String()
    managedDomains = fields.List(fields.String())
    # The customers' registrars this service can validate and flip.
    registrars = fields.List(fields.String())
    # Per pool: where its DNS lives and whether changes wait on it (a DNS outage shows
    # here and in /metrics; the service itself stays healthy and ready).
    dns = fields.Dict(keys=fields.String(), values=fields.Nested(DnsHealthSchema))


# -- a customer's own domain at their registrar -------------------------------------------


class ValidateRequest(Request):
    domain = fields.String(load_default="")
    token = fields.String(load_default="")


class SetNsRequest(ValidateRequest):
    nameservers = fields.List(fields.String(), load_default=list)


class ValidatedSchema(Schema):
    valid = fields.Boolean()
    registrar = fields.String()
    domain = fields.String()


class FlippedSchema(Schema):
    success = fields.Constant(True)
    registrar = fields.String()
    domain = fields.String()
    # The provider's list after the change (the requested one if it could not be read).
    nameservers = fields.List(fields.String())
    propagation = fields.String()
    requested = fields.List(fields.String())
    readBack = fields.List(fields.String(), attribute="read_back", allow_none=True)
    # Whether the list read back is the requested one (null: it could not be read).
    matches = fields.Boolean(allow_none=True)
    # False when the provider already had exactly this list: nothing was written.
    written = fields.Boolean()
    appliesLater = fields.Boolean(attribute="applies_later")
    note = fields.String(allow_none=True)


class RegistrarErrorSchema(ErrorSchema):
    registrar = fields.String()
    domain = fields.String()
    supported = fields.List(fields.String())
    retryAfter = fields.Integer()


class RegistrarHistoryQuery(PageQuery):
    domain = fields.String(load_default=None)


class RegistrarEventSchema(Answer):
    id = fields.Integer()
    domain = fields.String(attribute="subdomain")
    action = fields.String()
    caller = fields.String()
    at = Timestamp()
    detail = fields.String()


class RegistrarHistorySchema(Schema):
    registrar = fields.String()
    events = fields.List(fields.Nested(RegistrarEventSchema))


class ReadySchema(Schema):
    status = fields.String()
    schemaRevision = fields.String()


class NotReadySchema(ErrorSchema):
    status = fields.String(required=True)


class ReservedSchema(Schema):
    reserved = fields.List(fields.String())
