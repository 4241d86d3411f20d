"""``GET /openapi.json``: the OpenAPI 3 document, generated (apispec) from the very
marshmallow schemas the handlers load and dump."""
from __future__ import annotations

from functools import lru_cache

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, jsonify

from ..webhooks.events import EVENT_TYPES
from . import schemas, webhook_schemas

bp = Blueprint("openapi", __name__)

POOL = "/api/v1/pool/{domain}"
ERRORS = {
    400: "The body is not a JSON object, or a field has the wrong type",
    401: "No valid bearer token",
    403: "The token's role may not do this",
    404: "No such allocation (or registrar)",
    409: ("conflict (the name is taken), reserved-name, already-active, pool-full (the zone cannot hold the "
          "records; the row stays reserved), or dns-conflict (the pool's DNS holds records or a zone the service "
          "did not publish at or under the name; on commit the row stays reserved and nothing is written)"),
    410: "The reservation has expired",
    413: "The body is larger than 16 KiB",
    422: "Invalid subdomain, load-balancer IP, TTL, or a pool this service does not manage",
    429: "rate-limited: this caller sent more requests than PDM_RATE_LIMITS allows (Retry-After and "
         "X-RateLimit-* headers say when to try again); on reserve also too-many-reservations: the caller's "
         "reservations in the pool not yet committed are at PDM_MAX_OPEN_RESERVATIONS",
    502: "The registrar could not be read, or its zone cannot be trusted",
    503: "The database cannot be reached",
}
QUERY = {
    "sub": ({"type": "string"}, "The subdomain"),
    "limit": ({"type": "integer", "minimum": 1, "maximum": 1000},
              "At most this many items: events (default 500), allocations (default: the whole pool), or webhook "
              "messages (default 100)"),
    "after": ({"type": "string", "maxLength": 63}, "Allocations after this subdomain (the previous page's nextAfter)"),
    "before": ({"type": "integer", "minimum": 1},
               "Events (or webhook messages) older than this id (the previous page's nextBefore)"),
    "domain": ({"type": "string"}, "Only the events of this domain"),
    "endpoint": ({"type": "string", "minLength": 1, "maxLength": webhook_schemas.NAME_LENGTH},
                 "Only this webhook endpoint's messages"),
    "state": ({"type": "string", "enum": list(webhook_schemas.STATES)},
              "Only messages in this state: pending (waiting to be sent, or sent again), delivered, or failed "
              "(given up after the retry schedule)"),
}
PATH_PARAMETERS = {"domain": "The pool domain", "registrar": "cloudflare, dynadot, godaddy, namecheap or ovh",
                   "name": "A webhook endpoint's name (as GET /api/v1/webhooks lists it; a URL's slashes as %2F)"}
REGISTRAR = "/api/v1/registrar/{registrar}"
WEBHOOKS = "/api/v1/webhooks"
# What the registrar routes answer besides 200 (the body carries registrar and domain).
REGISTRAR_ERRORS = (
    (400, "invalid-body: not a JSON object, or a field of the wrong type"),
    (401, "invalid-token: the provider refused the credentials, or they have the wrong shape; or no valid "
          "bearer token"),
    (403, "domain-not-in-account, or account-not-entitled (the account may not use the API)"),
    (404, "unsupported-registrar (with the supported list)"),
    (413, "The body is larger than 16 KiB"),
    (422, "missing-domain, missing-token, missing-nameservers, invalid-domain, invalid-nameservers, or an "
          "operation the provider does not offer"),
    (429, "rate-limited by the provider (retryAfter, when it says), or this caller sent more requests than "
          "PDM_RATE_LIMITS allows (Retry-After)"),
    (502, "api-unavailable, or registrar-error: the provider failed or refused"),
    (503, "no registrars configured, or the database cannot be reached"),
)
# (path, method, summary, request schema, {status: (description, schema)}, error statuses, query params, auth)
OPERATIONS = [
    ("/healthz", "get", "Liveness: the database answers", None,
     {200: ("Healthy", schemas.HealthSchema), 503: ("The database cannot be reached", schemas.NotReadySchema)},
     (), (), False),
    ("/readyz", "get", "Readiness: database up and schema at head", None,
     {200: ("Ready", schemas.ReadySchema), 503: ("Not ready", schemas.NotReadySchema)}, (), (), False),
    ("/api/v1/reserved", "get", "The reserved labels no tenant may claim", None,
     {200: ("Sorted labels", schemas.ReservedSchema)}, (), (), False),
    (f"{POOL}/check", "get", "Is a name available? (always 200; read body.available)", None,
     {200: ("The answer", schemas.CheckResultSchema),
      429: ("rate-limited: past PDM_RATE_LIMITS' check limit (Retry-After); also a check result",
            schemas.CheckRateLimitedSchema)}, (401, 403, 503), ("sub",), True),
    (f"{POOL}/reserve", "post", "Reserve a name for PDM_RESERVATION_TTL", schemas.ReserveRequest,
     {201: ("Reserved; the token is shown only here", schemas.ReserveResponseSchema)},
     (400, 401, 403, 409, 413, 422, 429, 503), (), True),
    (f"{POOL}/commit", "post", "Activate a reservation and publish its DNS records", schemas.CommitRequest,
     {200: ("Active, records published", schemas.AllocationSchema),
      202: ("Active; the records are queued and retried until published", schemas.CommitPendingSchema)},
     (400, 401, 403, 404, 409, 410, 413, 422, 429, 503), (), True),
    (f"{POOL}/release", "delete", "Free a name (and remove its records)", schemas.ReleaseRequest,
     {200: ("Freed", schemas.ReleasedSchema),
      202: ("Freed; the record removal is queued and retried until done", schemas.ReleasePendingSchema)},
     (400, 401, 403, 404, 413, 422, 429, 503), ("sub",), True),
    (f"{POOL}/list", "get", "Every allocation of the pool, or a page of them (?limit=&after=), and pending DNS "
     "work (operators)", None,
     {200: ("Allocations by subdomain (with ?limit=, nextAfter too)", schemas.PoolPageSchema)},
     (400, 401, 403, 422, 429, 503), ("limit", "after"), True),
    (f"{POOL}/renew", "post", "Hold a live reservation longer (default PDM_RESERVATION_TTL from now)",
     schemas.RenewRequest, {200: ("Renewed; the new expiresAt", schemas.AllocationSchema)},
     (400, 401, 403, 404, 409, 410, 413, 422, 429, 503), (), True),
    (f"{POOL}/history", "get", "State changes, DNS events and who made them, newest first, paged (operators)",
     None, {200: ("Events", schemas.HistorySchema)}, (400, 401, 403, 422, 429, 503), ("sub", "limit", "before"),
     True),
    (f"{POOL}/drift", "get", "One read of the zone compared with the table, per name (operators)", None,
     {200: ("What the zone lacks, holds wrongly or holds over", schemas.DriftSchema)},
     (401, 403, 422, 429, 502, 503), (), True),
    ("/api/v1/pools", "get", "Every pool: tenants, pending DNS, zone state; a PowerDNS pool's own DS and whether "
     "its registrar publishes it (operators)", None, {200: ("The pools", schemas.PoolsSchema)},
     (401, 403, 429, 503), (), True),
    (f"{REGISTRAR}/validate", "post", "Check a customer's registrar credentials and that the domain is theirs",
     schemas.ValidateRequest, {200: ("Valid", schemas.ValidatedSchema)}, REGISTRAR_ERRORS, (), True),
    (f"{REGISTRAR}/set-ns", "post", "Delegate a customer's domain to these nameservers at their registrar",
     schemas.SetNsRequest, {200: ("Asked of the provider; readBack and matches say what it reports now",
                                  schemas.FlippedSchema)}, REGISTRAR_ERRORS, (), True),
    (f"{REGISTRAR}/history", "get", "Every validate and flip made through this registrar (operators)", None,
     {200: ("Events, newest first", schemas.RegistrarHistorySchema)},
     ((400, "invalid-request: a query parameter of the wrong type or range"), (401, "No valid bearer token"),
      (403, "The token's role may not do this"), (404, "unsupported-registrar (with the supported list)"),
      (429, "rate-limited: this caller sent more requests than PDM_RATE_LIMITS allows (Retry-After)"),
      (503, "The database cannot be reached")),
     ("domain", "limit", "before"), True),
    (WEBHOOKS, "get", "Every webhook endpoint's deliveries: pending, failed, disabled, paused, last error "
     "(operators)", None, {200: ("The endpoints: the configured ones, and any other whose messages are still kept",
                                 webhook_schemas.WebhookEndpointsSchema)}, (401, 403, 429, 503), (), True),
    (f"{WEBHOOKS}/messages", "get", "Webhook messages, newest first, paged (operators)", None,
     {200: ("Messages (nextBefore when there are older ones)", webhook_schemas.WebhookMessagesSchema)},
     ((400, "invalid-request: a query parameter of the wrong type or range", "Error"), 401, 403, 429, 503),
     ("endpoint", "state", "limit", "before"), True),
    (f"{WEBHOOKS}/replay", "post", "Send webhook messages again, with their webhook-id, from a first attempt: one "
     "(id), or those written in a time range (since, until); of one endpoint or all (operators)",
     webhook_schemas.WebhookReplayRequest, {200: ("Pending again", webhook_schemas.WebhookReplayedSchema)},
     ((400, "invalid-request (a field of the wrong type), invalid-id (not msg_ and 32 hexadecimal digits), or "
            "invalid-replay (neither an id nor a range, both, or since not before until)", "Error"),
      401, 403, (404, "unknown-endpoint (no configured endpoint has that name), or not-found (no retained message "
                      "matches)", "Error"), 413, 429, 503), (), True),
    (f"{WEBHOOKS}/endpoints/{{name}}/enable", "post", "Deliver to an endpoint again after a 410 Gone disabled it "
     "(also ends a pause) (operators)", None, {200: ("The endpoint, enabled", webhook_schemas.WebhookEndpointSchema)},
     (401, 403, (404, "unknown-endpoint: no configured endpoint has that name", "Error"), 429, 503), (), True),
]


# What each webhook event means (x-webhooks: one entry per type of webhooks.events).
EVENTS = {
    "allocation.reserved": "A name was reserved (state reserved; no address yet).",
    "allocation.committed": "A reservation was committed: the allocation is active. Its DNS records may still be "
                            "pending: allocation.published follows once they are live.",
    "allocation.published": "The allocation's DNS records are live at the pool's DNS host (state active, address "
                            "the load balancer): what the caller of a commit answered 202 waits for.",
    "allocation.renewed": "A reservation was held longer (state reserved).",
    "allocation.released": "An allocation was released (state released); for an active one, "
                           "allocation.unpublished follows once its records are removed.",
    "allocation.unpublished": "A released allocation's DNS records are removed (state released).",
    "allocation.expired": "A reservation lapsed without a commit and was deleted (state expired).",
    "pool.blocked": "The pool's DNS is blocked (state blocked, name empty): a read of its zone looked broken, so "
                    "nothing is written to it until a good read or an operator's reconcile --force; detail says why.",
    "pool.unblocked": "The pool's DNS is written again (state unblocked, name empty).",
    "pool.drift_repaired": "A pass put back the service's own records of a tenant (name) that had gone or changed "
                           "in the pool's DNS (state repaired).",
    "nameservers.flipped": "A customer's domain was delegated to new nameservers at their registrar (pool "
                           "registrar:<name>, name the domain; state ok, or pending when the registrar applies it "
                           "later).",
}
WEBHOOK_HEADERS = (
    ("webhook-id", {"type": "string", "pattern": webhook_schemas.MSG_ID_PATTERN},
     "The message's id: the same on every retry, duplicate and replay of the event, and for every endpoint. "
     "Delivery is at least once: a receiver skips an id it has processed."),
    ("webhook-timestamp", {"type": "string", "pattern": "^[0-9]+$"},
     "When this attempt was signed, in Unix seconds (a receiver refuses one far from its clock)."),
    ("webhook-signature", {"type": "string"},
     "v1,<base64 HMAC-SHA256 of \"{webhook-id}.{webhook-timestamp}.{body}\">, one per secret of the endpoint, "
     "space-separated (several while a secret is rotated in). Verify it with a Standard Webhooks library."),
)
WEBHOOK_ANSWERS = {
    "2XX": "Taken: the message is delivered.",
    "410": "Gone: the endpoint is disabled, its messages wait, until an operator enables it again.",
    "429": "Busy: nothing more is sent to the endpoint until its Retry-After (delta-seconds or an HTTP date; at "
           "most an hour; without one, the retry schedule's first delay); no attempt is counted. So is a 503 "
           "with Retry-After.",
    "default": "Any other answer (a redirect is not followed), no answer, or none within PDM_WEBHOOK_TIMEOUT: sent "
               "again per PDM_WEBHOOK_RETRY_SCHEDULE (5s,5m,30m,2h,5h,10h,10h, each +-20%), then given up "
               "(failed; an operator can replay it).",
}


def _webhooks(spec: APISpec) -> dict:
    """The events a configured endpoint is sent (POST, JSON, signed), one per type, for the
    document's x-webhooks (OpenAPI 3.0 has no webhooks section; 3.1's has this shape)."""
    spec.components.schema("WebhookEventData", schema=webhook_schemas.WebhookEventDataSchema)
    spec.components.schema("WebhookEvent", schema=webhook_schemas.WebhookEventSchema)
    entries = {}
    for kind in EVENT_TYPES:
        body = {"allOf": [{"$ref": "#/components/schemas/WebhookEvent"},
                          {"type": "object", "properties": {"type": {"type": "string", "enum": [kind]}}}]}
        entries[kind] = {"post": {
            "summary": kind,
            "description": EVENTS[kind] + " Sent to every endpoint of PDM_WEBHOOKS whose events include it (all "
                                          "when it lists none), in order per allocation (per pool for pool.*).",
            "parameters": [{"in": "header", "name": name, "required": True, "schema": schema,
                            "description": description} for name, schema, description in WEBHOOK_HEADERS],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {status: {"description": text} for status, text in WEBHOOK_ANSWERS.items()},
        }}
    return entries


def _timestamp_properties(self, field, **kwargs) -> dict:
    # apispec leaves a custom DateTime format undescribed; ours is plain RFC 3339.
    if isinstance(field, schemas.Timestamp):
        return {"format": "date-time", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"}
    if isinstance(field, webhook_schemas.Instant):
        return {"type": "string", "format": "date-time"}
    if isinstance(field, schemas.Ttl):
        return {"oneOf": [{"type": "number", "minimum": 0, "exclusiveMinimum": True},
                          {"type": "string", "maxLength": 32}],
                "description": "seconds, or a duration like 30m (default PDM_RESERVATION_TTL)"}
    return {}


def build_spec() -> dict:
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="pool-domain-manager",
        version="2.0.0",
        openapi_version="3.0.3",
        plugins=[plugin],
        info={"description": "The single authority for tenant subdomains under shared pool domains."},
    )
    plugin.converter.add_attribute_function(_timestamp_properties)
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Error", schema=schemas.ErrorSchema)
    spec.components.schema("RegistrarError", schema=schemas.RegistrarErrorSchema)
    for path, method, summary, request_schema, answers, errors, query, auth in OPERATIONS:
        operation: dict = {"summary": summary, "responses": {}}
        parameters = []
        for name, description in PATH_PARAMETERS.items():
            if f"{{{name}}}" in path:
                parameters.append({"in": "path", "name": name, "required": True, "schema": {"type": "string"},
                                   "description": description})
        for name in query:
            # Never required: /check answers 200 invalid-format without it, release reads
            # the body first.
            schema, description = QUERY[name]
            parameters.append({"in": "query", "name": name, "required": False, "schema": schema,
                               "description": description})
        if parameters:
            operation["parameters"] = parameters
        if request_schema is not None:
            operation["requestBody"] = {"required": method != "delete",
                                        "content": {"application/json": {"schema": request_schema}}}
        for status, (description, schema) in answers.items():
            operation["responses"][str(status)] = {"description": description,
                                                   "content": {"application/json": {"schema": schema}}}
        for status in errors:
            if isinstance(status, tuple):  # (status, description[, schema]): the route's own
                status, description, schema = (*status, "RegistrarError")[:3]
            else:
                description, schema = ERRORS[status], "Error"
            operation["responses"][str(status)] = {"description": description,
                                                   "content": {"application/json": {"schema": schema}}}
        if auth:
            operation["security"] = [{"bearer": []}]
            operation["responses"]["default"] = {"description": "Any other error (unknown path, method)",
                                                 "content": {"application/json": {"schema": "Error"}}}
        spec.path(path=path, operations={method: operation})
    spec.path(path="/metrics", operations={"get": {"summary": "Prometheus metrics", "responses": {
        "200": {"description": "Text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}})
    spec.path(path="/openapi.json", operations={"get": {"summary": "This document", "responses": {
        "200": {"description": "OpenAPI 3", "content": {"application/json": {"schema": {"type": "object"}}}}}}})
    webhooks = _webhooks(spec)
    return {**spec.to_dict(), "x-webhooks": webhooks}


@lru_cache(maxsize=1)
def document() -> dict:
    return build_spec()


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(document())
