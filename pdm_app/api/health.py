"""Liveness and the reserved-name list: open, cheap endpoints."""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify

from .. import domain

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz():
    pdm = current_app.extensions["pdm"]
    try:
        pdm.service.ping()
    except Exception as exc:  # any failure to reach the database is "unhealthy"
        log.warning("health check: database unreachable (%s)", type(exc).__name__)
        return jsonify(status="unhealthy", error="database-unreachable",
                       detail="the database cannot be reached"), 503
    return jsonify(status="ok", managedDomains=sorted(pdm.settings.managed_domains))


@bp.get("/api/v1/reserved")
def reserved():
    return jsonify(reserved=sorted(domain.RESERVED_LABELS))
