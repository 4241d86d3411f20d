"""The pool endpoints: parse the request, call the service, shape the answer."""
from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, current_app, jsonify

from ..auth import CLIENT, OPERATOR
from ..services.lifecycle import Lifecycle
from ..services.operators import Operators
from . import schemas
from .access import caller_identity, caller_name, requires
from .body import NAME_FIELDS, NotJson, json_object, load, query_args, query_name
from .ratelimit import limited

bp = Blueprint("pool", __name__, url_prefix="/api/v1/pool/<domain>")

DNS_PENDING = "dns-pending"
# /check is the hot path: one schema, built once (dumping is thread-safe).
CHECK_ANSWER = schemas.CheckResultSchema()


def lifecycle() -> Lifecycle:
    return current_app.extensions["pdm"].lifecycle


def operators() -> Operators:
    return current_app.extensions["pdm"].operators


@bp.get("/check")
@requires(CLIENT)
@limited("check")
def check(domain: str):
    # The contract: check always answers 200. A name holding a NUL or a lone surrogate is
    # no DNS label: invalid-format, before anything of it reaches the database.
    result = lifecycle().check(domain, query_name("sub"))
    return jsonify(CHECK_ANSWER.dump(result))


@bp.post("/reserve")
@requires(CLIENT)
@limited("write")
def reserve(domain: str):
    body = load(schemas.ReserveRequest(), json_object(NAME_FIELDS))
    reservation = lifecycle().reserve(domain, body["subdomain"], body["createdBy"], caller_name(),
                                      holder=caller_identity())
    answer = schemas.ReserveResponseSchema().dump({**asdict(reservation.allocation), "token": reservation.token})
    return jsonify(answer), 201


@bp.post("/commit")
@requires(CLIENT)
@limited("write")
def commit(domain: str):
    body = load(schemas.CommitRequest(), json_object(NAME_FIELDS))
    outcome = lifecycle().commit(
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
@limited("write")
def release(domain: str):
    # Operators call `curl -X DELETE '.../release?sub=x'`: the query serves when the
    # body is empty or not JSON (a body that is JSON is checked like any other).
    try:
        data = json_object(NAME_FIELDS)
    except NotJson:
        data = None
    sub = query_name("sub")
    if data is not None:
        sub = load(schemas.ReleaseRequest(), data)["subdomain"] or sub
    outcome = lifecycle().release(domain, sub, caller_name())
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
@limited("write")
def renew(domain: str):
    body = load(schemas.RenewRequest(), json_object(NAME_FIELDS))
    allocation = lifecycle().renew(domain, body["subdomain"], body["reservationToken"] or "", body["ttl"],
                                   caller_name())
    return jsonify(schemas.AllocationSchema().dump(allocation)), 200


@bp.get("/list")
@requires(OPERATOR)
@limited("operator")
def list_pool(domain: str):
    args = load(schemas.ListQuery(), query_args("limit", "after"))
    return jsonify(schemas.dump_pool_list(operators().list_pool(domain, limit=args["limit"], after=args["after"])))


@bp.get("/history")
@requires(OPERATOR)
@limited("operator")
def history(domain: str):
    args = load(schemas.HistoryQuery(), query_args("sub", "limit", "before"))
    history = operators().history(domain, args["sub"], args["limit"], args["before"])
    return jsonify(schemas.HistorySchema().dump(history))


@bp.get("/drift")
@requires(OPERATOR)
@limited("operator")
def drift(domain: str):
    return jsonify(schemas.DriftSchema().dump(operators().drift(domain)))


# Every pool at once, for operators: /api/v1/pools.
pools_bp = Blueprint("pools", __name__, url_prefix="/api/v1")


@pools_bp.get("/pools")
@requires(OPERATOR)
@limited("operator")
def pools():
    return jsonify(schemas.PoolsSchema().dump({"pools": operators().pools()}))
