"""Open, cheap endpoints: liveness, readiness, metrics, the reserved-name list."""
from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify

from .. import domain, metrics
from ..models import SCHEMA_REVISION
from . import schemas

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


def _pdm():
    return current_app.extensions["pdm"]


@bp.get("/healthz")
def healthz():
    pdm = _pdm()
    try:
        dns = pdm.operators.dns_health()
    except Exception as exc:  # any failure to reach the database is "unhealthy"
        log.warning("health check: database unreachable (%s)", type(exc).__name__)
        return jsonify(status="unhealthy", error="database-unreachable",
                       detail="the database cannot be reached"), 503
    return jsonify(schemas.HealthSchema().dump({"status": "ok", "managedDomains": sorted(pdm.settings.managed_domains),
                                                "registrars": pdm.nameservers.supported(), "dns": dns}))


def schema_is_current(revision: str | None) -> bool:
    """At this release's head, or ahead of it: during a rolling upgrade the new release's
    migration runs first, and its migrations keep the previous release working (expand,
    then contract), so old pods stay ready. Revision ids are zero-padded numbers."""
    return revision is not None and revision.isdigit() and int(revision) >= int(SCHEMA_REVISION)


@bp.get("/readyz")
def readyz():
    """Ready only when the database answers and its schema is the one this code needs
    (the deploy's ``alembic upgrade head`` has run)."""
    try:
        revision = _pdm().operators.schema_revision()
    except Exception as exc:
        log.warning("readiness: database unreachable (%s)", type(exc).__name__)
        return jsonify(status="not-ready", error="database-unreachable",
                       detail="the database cannot be reached"), 503
    if not schema_is_current(revision):
        return jsonify(status="not-ready", error="schema-not-at-head",
                       detail=f"database schema is at {revision or 'nothing'}, this release needs "
                              f"{SCHEMA_REVISION}: run 'alembic upgrade head'"), 503
    return jsonify(schemas.ReadySchema().dump({"status": "ready", "schemaRevision": revision}))


@bp.get("/metrics")
def prometheus_metrics():
    body = metrics.exposition(_pdm().operators.figures)
    return Response(body, mimetype="text/plain; version=0.0.4; charset=utf-8")


@bp.get("/api/v1/reserved")
def reserved():
    return jsonify(schemas.ReservedSchema().dump({"reserved": sorted(domain.RESERVED_LABELS)}))
