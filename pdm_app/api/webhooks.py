"""The operators' webhook routes: each endpoint's deliveries, the messages, and the two
repairs (replay, enable). Parse, call ``services.webhooks``, answer."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from ..auth import OPERATOR
from ..domain import utcnow
from ..services.webhooks import Webhooks
from . import webhook_schemas as schemas
from .access import caller_name, requires
from .body import json_object, load, query_args
from .ratelimit import limited

bp = Blueprint("webhooks", __name__, url_prefix="/api/v1/webhooks")


def webhooks() -> Webhooks:
    return current_app.extensions["pdm"].webhooks


@bp.get("")
@requires(OPERATOR)
@limited("operator")
def status():
    now = utcnow()
    return jsonify(schemas.WebhookEndpointsSchema().dump(
        {"endpoints": [schemas.with_age(s, now) for s in webhooks().status()]}))


@bp.get("/messages")
@requires(OPERATOR)
@limited("operator")
def messages():
    args = load(schemas.WebhookMessagesQuery(), query_args("endpoint", "state", "limit", "before"))
    page = webhooks().messages(endpoint=args["endpoint"], state=args["state"], before=args["before"],
                               limit=args["limit"])
    return jsonify(schemas.WebhookMessagesSchema().dump(page))


@bp.post("/replay")
@requires(OPERATOR)
@limited("operator")
def replay():
    body = load(schemas.WebhookReplayRequest(), json_object())
    n = webhooks().replay(caller_name(), msg_id=body["id"], since=body["since"], until=body["until"],
                          endpoint=body["endpoint"])
    return jsonify(schemas.WebhookReplayedSchema().dump({"replayed": n}))


# Names are often URLs (the default name is the endpoint's scheme://host/path): the path
# converter takes their slashes, and "//" is not merged into one.
@bp.post("/endpoints/<path:name>/enable", merge_slashes=False)
@requires(OPERATOR)
@limited("operator")
def enable(name: str):
    webhooks().enable(name, caller_name())
    now = utcnow()
    [enabled] = [s for s in webhooks().status() if s.name == name]
    return jsonify(schemas.dump_status(enabled, now))
