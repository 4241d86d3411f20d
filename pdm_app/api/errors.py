"""Every non-2xx answer is ``{"error": code, "detail": sentence}``; nothing a client
sends produces a 500 or a stack trace."""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from ..domain import DomainError

log = logging.getLogger(__name__)


class ApiError(DomainError):
    """A request the HTTP layer cannot parse (same shape as the domain's errors)."""


_HTTP_CODES = {
    400: "bad-request",
    404: "not-found",
    405: "method-not-allowed",
    413: "too-large",
    415: "unsupported-media-type",
}


def error_response(status: int, code: str, detail: str, **extra):
    response = jsonify(error=code, detail=detail, **extra)
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(err: DomainError):
        return error_response(err.status, err.code, err.detail, **err.extra)

    @app.errorhandler(HTTPException)
    def _http(err: HTTPException):
        status = err.code or 500
        return error_response(status, _HTTP_CODES.get(status, "http-error"), err.description or err.name)

    @app.errorhandler(OperationalError)
    def _database_down(err: OperationalError):
        # Connection-level failures: the client may retry; never echo the DSN.
        log.error("database unavailable: %s", type(err.orig).__name__ if err.orig else type(err).__name__)
        return error_response(503, "database-unavailable", "the database cannot be reached; try again")

    @app.errorhandler(PoolTimeout)
    def _pool_exhausted(_err: PoolTimeout):
        # Every connection of this process is busy past the pool's (short) timeout: fail
        # fast, the client may retry, rather than queue behind a stuck database.
        log.error("database unavailable: no pooled connection free within the pool timeout")
        return error_response(503, "database-unavailable", "no database connection is free; try again")

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        if isinstance(err, DBAPIError) and err.connection_invalidated:
            return _database_down(err)
        log.exception("unhandled error")
        return error_response(500, "internal", "internal error")
