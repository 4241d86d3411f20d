"""Open, cheap endpoints: liveness, readiness, metrics, the reserved-name list."""
from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify

from .. import domain, metrics
from ..models import SCHEMA_REVISION
from ..services.figures import schema_is_current  # pdm_ready on /metrics applies the same rule
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
