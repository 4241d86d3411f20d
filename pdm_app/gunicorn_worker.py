"""gunicorn's threaded worker, answering what gunicorn refuses itself in the contract's
shape.

A request gunicorn cannot parse -- a header over ``limit_request_field_size``, a request
line over ``limit_request_line``, too many headers, a malformed line -- never reaches the
app: the worker's ``handle_error`` writes an HTML page. This worker lets gunicorn decide
everything as before (the status, its log line) and only replaces that page with
``{"error": code, "detail": sentence}`` (gunicorn.conf.py's ``worker_class``).
"""
from __future__ import annotations

import json

from gunicorn import util
from gunicorn.glogging import Logger
from gunicorn.workers.gthread import ThreadWorker

# The error codes of the statuses gunicorn answers on its own.
CODES = {
    400: ("bad-request", "the request could not be parsed as HTTP"),
    403: ("forbidden", "the request was refused"),
    414: ("request-line-too-long", "the request line (method, path and query) is longer than the server accepts"),
    417: ("expectation-failed", "the Expect header of the request cannot be met"),
    431: ("headers-too-large", "a request header, or all of them together, is larger than the server accepts"),
    500: ("internal", "internal error"),
    501: ("not-implemented", "the request uses a transfer coding the server does not implement"),
}


class _Recorder:
    """Stands in for the client socket while gunicorn writes its error page, to learn
    the status gunicorn chose without sending the page."""

    def __init__(self):
        self.data = b""

    def gettimeout(self):
        return 0.0

    def setblocking(self, _flag):
        pass

    def sendall(self, data):
        self.data += data

    send = sendall


def _status(page: bytes) -> tuple[int, str]:
    """``(404, "Not Found")`` from the first line of an HTTP answer."""
    try:
        _version, code, reason = page.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        return int(code), reason
    except ValueError:
        return 400, "Bad Request"


def error_answer(status: int, reason: str) -> bytes:
    """The whole HTTP answer: the contract's JSON body, the hygiene headers of every
    answer, and the connection closed (the rest of the request was never read)."""
    code, detail = CODES.get(status, ("http-error", reason.lower()))
    body = json.dumps({"error": code, "detail": detail}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\n"
            "Connection: close\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "X-Content-Type-Options: nosniff\r\n"
            "Cache-Control: no-store\r\n"
            "\r\n")
    return head.encode("latin-1") + body


class JsonErrorThreadWorker(ThreadWorker):
    """gunicorn's ``gthread`` worker whose own error answers are the contract's JSON."""

    def handle_error(self, req, client, addr, exc):
        recorder = _Recorder()
        # gunicorn picks the status, logs the error (and the access line) as it always
        # does, and writes its page -- into the recorder.
        super().handle_error(req, recorder, addr, exc)
        status, reason = _status(recorder.data)
        try:
            util.write_nonblock(client, error_answer(status, reason))
        except Exception:
            self.log.debug("Failed to send error message.")


class AppLogsOnlyLogger(Logger):
    """gunicorn's logger without its access log: the app writes one JSON line per request
    itself. gunicorn would otherwise build every access line's fields (a logconfig_dict
    counts as "access logging on") only to drop them: 7 % of /check's time."""

    def access(self, resp, req, environ, request_time) -> None:
        return None
