"""The pool endpoints: parse the request, call the service, shape the answer."""
from __future__ import annotations

import json
from dataclasses import asdict

from flask import Blueprint, current_app, jsonify, request
from marshmallow import Schema, ValidationError

from ..auth import CLIENT, OPERATOR
from ..services import PoolService
from . import schemas
from .access import caller_name, requires
from .errors import ApiError

bp = Blueprint("pool", __name__, url_prefix="/api/v1/pool/<domain>")

DNS_PENDING = "dns-pending"


def service() -> PoolService:
    return current_app.extensions["pdm"].service


def _json_object() -> dict | None:
    """The body as a JSON object; None when there is no body."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError("invalid-json", "the request body is not valid JSON", 400) from None
    if not isinstance(data, dict):
        raise ApiError("invalid-json", "the request body must be a JSON object", 400)
    return data


def _load(schema: Schema, data: dict | None) -> dict:
    if data is None:
        raise ApiError("invalid-json", "a JSON object body is required", 400)
    try:
        return schema.load(data)
    except ValidationError as err:
        fields = ", ".join(f"{name}: {' '.join(map(str, msgs))}" for name, msgs in sorted(err.messages.items()))
        raise ApiError("invalid-request", f"invalid field(s) -- {fields}", 400) from None


@bp.get("/check")
@requires(CLIENT)
def check(domain: str):
    result = service().check(domain, request.args.get("sub", ""))
    return jsonify(schemas.CheckResultSchema().dump(result))


@bp.post("/reserve")
@requires(CLIENT)
def reserve(domain: str):
    body = _load(schemas.ReserveRequest(), _json_object())
    reservation = service().reserve(domain, body["subdomain"], body["createdBy"], caller_name())
    answer = schemas.ReserveResponseSchema().dump({**asdict(reservation.allocation), "token": reservation.token})
    return jsonify(answer), 201


@bp.post("/commit")
@requires(CLIENT)
def commit(domain: str):
    body = _load(schemas.CommitRequest(), _json_object())
    outcome = service().commit(
        domain, body["subdomain"], body["reservationToken"] or "", body["sovereignFQDN"], body["loadBalancerIP"] or "",
        caller_name(),
    )
    allocation = schemas.AllocationSchema().dump(outcome.allocation)
    if outcome.dns_done:
        return jsonify(allocation), 200
    return jsonify(schemas.CommitPendingSchema().dump({
        **allocation,
        "warning": DNS_PENDING,
        "detail": "the allocation is active; its DNS records are not published yet and are retried "
        "automatically until they are (see pendingDns in the pool list)",
    })), 202


@bp.delete("/release")
@requires(CLIENT)
def release(domain: str):
    # Operators call `curl -X DELETE '.../release?sub=x'`: the query serves when the
    # body is empty or not JSON.
    try:
        data = _json_object()
    except ApiError:
        data = None
    sub = request.args.get("sub", "")
    if data is not None:
        sub = _load(schemas.ReleaseRequest(), data)["subdomain"] or sub
    outcome = service().release(domain, sub, caller_name())
    if outcome.dns_done:
        return jsonify(schemas.ReleasedSchema().dump({"freed": outcome.allocation})), 200
    return jsonify(schemas.ReleasePendingSchema().dump({
        "freed": outcome.allocation,
        "warning": DNS_PENDING,
        "detail": "the allocation is released; removing its DNS records is not done yet and is "
        "retried automatically until it is (see pendingDns in the pool list)",
    })), 202


@bp.post("/renew")
@requires(CLIENT)
def renew(domain: str):
    body = _load(schemas.RenewRequest(), _json_object())
    allocation = service().renew(domain, body["subdomain"], body["reservationToken"] or "", body["ttl"],
                                 caller_name())
    return jsonify(schemas.AllocationSchema().dump(allocation)), 200


@bp.get("/list")
@requires(OPERATOR)
def list_pool(domain: str):
    return jsonify(schemas.dump_pool_list(service().list_pool(domain)))


@bp.get("/history")
@requires(OPERATOR)
def history(domain: str):
    query = _load(schemas.HistoryQuery(), request.args.to_dict())
    history = service().history(domain, query["sub"], query["limit"], query["before"])
    return jsonify(schemas.HistorySchema().dump(history))


@bp.get("/drift")
@requires(OPERATOR)
def drift(domain: str):
    return jsonify(schemas.DriftSchema().dump(service().drift(domain)))
