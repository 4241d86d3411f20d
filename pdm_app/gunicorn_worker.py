"""gunicorn's threaded worker, spreading keep-alive connections over the workers and
answering what gunicorn refuses itself in the contract's shape.

A request gunicorn cannot parse -- a header over ``limit_request_field_size``, a request
line over ``limit_request_line``, too many headers, a malformed line -- never reaches the
app: the worker's ``handle_error`` writes an HTML page. This worker lets gunicorn decide
everything as before (the status, its log line) and only replaces that page with
``{"error": code, "detail": sentence}`` (gunicorn.conf.py's ``worker_class``).

The workers share one listening socket and race to accept each new connection: a worker
that happens to be awake takes a burst of them, and a caller's few long-lived connections
then load one worker's GIL while its sibling idles. ``BalancedThreadWorker`` lets a
sibling holding fewer connections take the next one first, and takes it itself after
``ACCEPT_WAIT`` if none has: a new connection (a probe, a new caller) is never left
waiting longer than that.
"""
from __future__ import annotations

import ctypes
import json
import mmap
import os
import threading

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


# How long a worker holding more connections than a sibling leaves a new one to it.
ACCEPT_WAIT = 0.01
# The workers this gunicorn runs at once that the table follows (a worker beyond it
# accepts as gunicorn does).
SLOTS = 64
# One slot per worker: its pid and the connections it holds. The arbiter makes the table
# when it loads the worker class, before it forks any worker, so every worker shares it
# (anonymous shared memory: no file, the container's filesystem may be read-only).
_TABLE = mmap.mmap(-1, 2 * SLOTS * ctypes.sizeof(ctypes.c_int32))
_PIDS = (ctypes.c_int32 * SLOTS).from_buffer(_TABLE)
_HELD = (ctypes.c_int32 * SLOTS).from_buffer(_TABLE, SLOTS * ctypes.sizeof(ctypes.c_int32))


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (as this user: another user's process is no sibling)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _claim_slot() -> int | None:
    """A slot no live worker holds (run in the arbiter, which spawns one worker at a time
    and writes the slot's pid right after the fork)."""
    for slot in range(SLOTS):
        if _PIDS[slot] == 0 or not _alive(_PIDS[slot]):
            _PIDS[slot], _HELD[slot] = 0, 0
            return slot
    return None


class BalancedThreadWorker(ThreadWorker):
    """gunicorn's ``gthread`` worker that leaves a new connection to a sibling holding
    fewer connections, for ``ACCEPT_WAIT`` at most."""

    def __init__(self, *args, **kwargs):
        self._slot = _claim_slot()
        self._holding_back = False
        super().__init__(*args, **kwargs)

    # gunicorn sets ``pid`` in the arbiter right after the fork, and counts connections
    # in ``nr_conns``: both are mirrored into the shared table.
    @property
    def pid(self):
        return self._pid

    @pid.setter
    def pid(self, pid):
        self._pid = pid
        if isinstance(pid, int) and self._slot is not None:
            _PIDS[self._slot] = pid

    @property
    def nr_conns(self) -> int:
        return self._nr_conns

    @nr_conns.setter
    def nr_conns(self, n: int) -> None:
        self._nr_conns = n
        if self._slot is not None:
            _HELD[self._slot] = n

    def a_sibling_holds_fewer(self) -> bool:
        for slot in range(SLOTS):
            pid = _PIDS[slot]
            if slot != self._slot and pid and _HELD[slot] < self._nr_conns and _alive(pid):
                return True
        return False

    def accept(self, listener):
        if self._slot is None or not self.a_sibling_holds_fewer():
            super().accept(listener)
            return
        # Stop listening for ACCEPT_WAIT (the listener stays readable while the
        # connection waits), then take it if it is still there.
        self._holding_back = True
        self.set_accept_enabled(False)
        timer = threading.Timer(ACCEPT_WAIT, self._wait_over, (listener,))
        timer.daemon = True
        timer.start()

    def _wait_over(self, listener):
        # On the timer's thread: the main loop takes it from here (a stopping worker's
        # loop may have closed its queue already).
        if self.alive:
            self.method_queue.defer(self._accept_after_wait, listener)

    def _accept_after_wait(self, listener):
        self._holding_back = False
        if self.alive:
            super().accept(listener)  # nothing to accept (a sibling took it) is no error
        # the main loop listens again on its next turn

    def set_accept_enabled(self, enabled):
        super().set_accept_enabled(enabled and not self._holding_back)

    def run(self):
        try:
            super().run()
        finally:
            if self._slot is not None:
                _HELD[self._slot] = 0


class JsonErrorThreadWorker(BalancedThreadWorker):
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
