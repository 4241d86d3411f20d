"""Which history events become webhooks, and what they say (pure: no database, no HTTP).

A message is ``{"type", "timestamp", "data"}`` (the Standard Webhooks payload), with a
thin ``data``: the pool, the name, its state after the change, who made it, the address
and a link; a receiver that wants more asks the API.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from urllib.parse import quote

# History action -> (event type, the allocation's state after it).
_ALLOCATION = {
    "reserve": ("allocation.reserved", "reserved"),
    "commit": ("allocation.committed", "active"),
    "dns-published": ("allocation.published", "active"),
    "renew": ("allocation.renewed", "reserved"),
    "release": ("allocation.released", "released"),
    "dns-removed": ("allocation.unpublished", "released"),
    "expire": ("allocation.expired", "expired"),
}
_POOL = {
    "pool-blocked": ("pool.blocked", "blocked"),
    "pool-unblocked": ("pool.unblocked", "unblocked"),
    "drift-repaired": ("pool.drift_repaired", "repaired"),
}
FLIPPED = "nameservers.flipped"
# A customer's domain's history lives under this prefix and the registrar's name.
REGISTRAR_PREFIX = "registrar:"

EVENT_TYPES = tuple(t for t, _ in _ALLOCATION.values()) + tuple(t for t, _ in _POOL.values()) + (FLIPPED,)


def message_of(event: dict, public_url: str = "") -> tuple[str, str, dict] | None:
    """(type, subject, payload) of a history event (``unit_of_work.event``), or None when
    it is not one a receiver is told about. ``subject`` is what order is kept per."""
    action, pool, name = event["action"], event["pool_domain"], event["subdomain"]
    if pool.startswith(REGISTRAR_PREFIX):
        # Customer domains: a set-ns whose outcome is a flip (done, or applying later).
        outcome = (event.get("detail") or "").split(" ", 1)[0]
        if action != "set-ns" or outcome not in ("outcome=ok", "outcome=pending"):
            return None
        kind, state, subject = FLIPPED, outcome.split("=", 1)[1], f"{pool}/{name}"
        link = f"/api/v1/registrar/{quote(pool[len(REGISTRAR_PREFIX):], safe='')}/history?domain={quote(name)}"
    elif action in _ALLOCATION:
        (kind, state), subject = _ALLOCATION[action], f"{pool}/{name}"
        link = f"/api/v1/pool/{quote(pool, safe='')}/history?sub={quote(name)}"
    elif action in _POOL:
        (kind, state), subject = _POOL[action], pool
        link = f"/api/v1/pool/{quote(pool, safe='')}/history" + (f"?sub={quote(name)}" if name else "")
    else:
        return None
    data = {"pool": pool, "name": name, "state": state, "caller": event["caller"],
            "address": event.get("load_balancer_ip"), "link": public_url + link}
    if event.get("detail") and kind != "allocation.committed":
        data["detail"] = event["detail"]
    return kind, subject, {"type": kind, "timestamp": _iso(event["at"]), "data": data}


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Outbox:
    """Turns a transaction's history events into its outbox rows: one per event and
    endpoint that wants it, all with the event's one webhook-id."""

    def __init__(self, endpoints, public_url: str = ""):
        self.endpoints = tuple(endpoints)
        self.public_url = public_url

    def __bool__(self) -> bool:
        return bool(self.endpoints)

    def rows(self, events: list[dict]) -> list[dict]:
        rows = []
        for event in events:
            message = message_of(event, self.public_url)
            if message is None:
                continue
            kind, subject, payload = message
            wanted = [e for e in self.endpoints if e.wants(kind)]
            if not wanted:
                continue
            body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
            msg_id = "msg_" + uuid.uuid4().hex
            rows += [dict(msg_id=msg_id, endpoint=e.name, type=kind, subject=subject, pool_domain=event["pool_domain"],
                          payload=body, created_at=event["at"], next_attempt_at=event["at"]) for e in wanted]
        return rows
