"""A customer's own domain: ``POST /api/v1/registrar/{registrar}/validate`` and
``…/set-ns`` (catalyst-api relays them from its wizard and shows ``detail`` to the person
at the screen), and the operators' record of them. Parse, call the service, answer."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from ..auth import CLIENT, OPERATOR
from ..customer_domains.flips import NameserverService
from . import body, schemas
from .access import caller_name, requires
from .errors import ApiError
from .ratelimit import limited

bp = Blueprint("registrars", __name__, url_prefix="/api/v1/registrar/<registrar>")


def service() -> NameserverService:
    return current_app.extensions["pdm"].nameservers


def _request(registrar: str, schema) -> dict:
    # The registrar is checked before the body is read (the previous service's order).
    service().adapter(registrar)
    try:
        return body.load(schema, body.json_object())
    except ApiError as err:
        if err.status == 400:  # not JSON, or fields of the wrong type
            raise ApiError("invalid-body", err.detail, 400) from None
        raise


@bp.post("/validate")
@requires(CLIENT)
@limited("registrar")
def validate(registrar: str):
    data = _request(registrar, schemas.ValidateRequest())
    result = service().validate(registrar, data["domain"], data["token"], caller_name())
    return jsonify(schemas.ValidatedSchema().dump({"valid": True, **vars(result)}))


@bp.post("/set-ns")
@requires(CLIENT)
@limited("registrar")
def set_ns(registrar: str):
    data = _request(registrar, schemas.SetNsRequest())
    flipped = service().set_nameservers(registrar, data["domain"], data["token"], data["nameservers"],
                                        caller_name())
    return jsonify(schemas.FlippedSchema().dump(flipped))


@bp.get("/history")
@requires(OPERATOR)
@limited("operator")
def history(registrar: str):
    query = body.load(schemas.RegistrarHistoryQuery(), body.query_args("domain", "limit", "before"))
    events = service().history(registrar, query["domain"], query["limit"], query["before"])
    return jsonify(schemas.RegistrarHistorySchema().dump({"registrar": registrar.strip().lower(),
                                                          "events": events}))
