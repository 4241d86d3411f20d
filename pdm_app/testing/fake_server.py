"""What every fake provider API shares: a real HTTP server on loopback, in a daemon
thread, so the adapters' whole stack (requests, urllib3, sockets, timeouts) is exercised.

A fake subclasses ``FakeServer``, names itself (``server_name``), may give the path its
API lives under (``api_path``), and implements ``_serve(handler, method)``; its faults
subclass ``Fault`` with the answer each gives, and ``_take_fault`` hands them out.
``stop()`` refuses connections until the next ``start()`` on the same port; the fake's
state and faults persist, and requests held by a fault are woken (``_stopping``).

``_trickle`` answers slowly -- ``trickle_step`` bytes every ``trickle_interval`` seconds,
the body only or (``trickle_headers``) from the status line on -- and records in
``trickled`` how much got out before the client hung up: a client with a total deadline
hangs up early, one that bounds only each read waits for all of it.

``InFlightServer`` adds what a fake of an API that serves one request at a time per key
needs (both Dynadot fakes): requests counted in flight, overall and per key, and
``hold()`` / ``release()`` so a test overlaps requests by waiting on events, not on the
clock. A request counts as in flight from its arrival until just before the last byte of
its answer is sent (or it is dropped): a client that has its answer never finds its own
call still counted.
"""
from __future__ import annotations

import json
import signal
import socket
import struct
import threading
from copy import deepcopy
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

Self = TypeVar("Self", bound="FakeServer")

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
HOLD_STAGES = ("request", "answer")


@dataclass
class Fault:
    """What ``_take_fault`` reads of a fault; each fake's own adds the answer it gives."""

    kind: str
    times: int  # uses left
    route: str | None  # what it applies to (a route, a command), None for any


class _Listener(ThreadingHTTPServer):
    # socketserver's backlog of 5 drops the SYNs of a client opening more connections at
    # once (each answered HTTP/1.0 request closes its own), which then wait a second for
    # the retransmission: a delay that is the fake's, not the client's.
    request_queue_size = 128


class FakeServer:
    server_name = "fake"
    api_path = ""
    # How soon stop() is noticed by the serving thread.
    poll_interval = 0.01
    # A trickled answer: the body padded (with JSON/XML whitespace) to trickle_length
    # bytes, trickle_step bytes every trickle_interval seconds: 40 B/s for a minute, each
    # piece well within any read timeout a test gives (so only a total deadline ends it).
    trickle_step = 20
    trickle_interval = 0.5
    trickle_length = 2400
    trickle_headers = False

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        # Guards the fake's state; the HTTP threads and the test share it.
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        # Every request as the fake records it, and the faults still to inject (each with
        # ``times`` left and the ``route`` it applies to, None for any).
        self._calls: list[Any] = []
        self._faults: list[Any] = []  # each fake's Fault subclass
        self._trickled: list[int] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.api_path}"

    def start(self: Self) -> Self:
        """Listen (again, on the same port after a ``stop()``) and serve in a thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Listener((self.host, self.port), self._handler_class())
        server.daemon_threads = True
        server.block_on_close = False  # stop() must not wait for a hung request
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": self.poll_interval},
                                        name=f"{self.server_name}:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: further connections are refused. State and faults persist."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes requests held by a fault or a delay
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self: Self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def calls(self) -> list[Any]:
        with self._lock:
            return deepcopy(self._calls)

    @property
    def trickled(self) -> list[int]:
        """For each trickled answer, the bytes of its slow part the client took (the last
        write before a hang-up may count although it was never read)."""
        with self._lock:
            return list(self._trickled)

    def _trickle(self, handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
        body = body + b" " * max(0, self.trickle_length - len(body))
        head = (f"HTTP/1.1 {status} Trickle\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        slow = head + body if self.trickle_headers else body
        handler.close_connection = True
        sent = 0
        try:
            if not self.trickle_headers:
                handler.wfile.write(head)
            while sent < len(slow):
                handler.wfile.write(slow[sent:sent + self.trickle_step])
                handler.wfile.flush()
                sent = min(len(slow), sent + self.trickle_step)
                if sent < len(slow) and self._stopping.wait(self.trickle_interval):
                    break
        except OSError:
            pass  # the client hung up
        with self._lock:
            self._trickled.append(sent)

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, route: str | None) -> Any:
        """The next fault for ``route`` (one use of it), or None."""
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and fault.route in (None, route):
                    fault.times -= 1
                    return fault
        return None

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        raise NotImplementedError

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            server_version = f"{fake.server_name}/1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # request lines may carry credentials: never print them

        for method in METHODS:
            setattr(Handler, f"do_{method}", lambda h, m=method: fake._serve(h, m))
        return Handler


class InFlightServer(FakeServer):
    """A ``FakeServer`` that counts requests in flight and can hold them there.

    A fake calls ``_count_in(handler, call, key)`` when a request arrives and
    ``_done(handler)`` when it has been served; it answers with ``_send`` /
    ``_send_json`` / ``_drop`` / ``_reset``, which count the request out first, and it
    calls ``_wait_while_held(stage)`` at both stages ``hold()`` names."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port)
        self.max_in_flight = 0
        self._in_flight = 0
        self._in_flight_by_key: dict[str, int] = {}
        # Notified whenever the in-flight count or the hold changes (and on stop()).
        self._changed = threading.Condition(self._lock)
        self._holding: str | None = None  # None or one of HOLD_STAGES (hold())
        self._held = 0

    def stop(self) -> None:
        if self._server is not None:
            self._stopping.set()  # wakes requests held by hold(), a delay or a fault
            with self._changed:
                self._changed.notify_all()
        super().stop()

    def reset_calls(self) -> None:
        super().reset_calls()
        with self._lock:
            self.max_in_flight = self._in_flight

    @property
    def in_flight(self) -> int:
        """Requests arrived and not yet answered (or dropped)."""
        with self._lock:
            return self._in_flight

    def wait_in_flight(self, count: int, timeout: float) -> bool:
        """Wait until at least ``count`` requests are in flight."""
        with self._changed:
            return self._changed.wait_for(lambda: self._in_flight >= count, timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight (a dropped one is counted out by its own
        thread, which may run a moment after ``stop()`` returns)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._in_flight == 0, timeout)

    def hold(self, stage: str = "request") -> None:
        """From now on every request that reaches ``stage`` waits there, in flight, until
        ``release()`` -- or ``stop()``, which drops it. ``"request"``: before it is carried
        out; ``"answer"``: after, so the answer it carries is stale by the time it arrives."""
        if stage not in HOLD_STAGES:
            raise ValueError(f"stage must be 'request' or 'answer', not {stage!r}")
        with self._changed:
            self._holding = stage

    def release(self) -> None:
        """Let held requests (and later ones) go on."""
        with self._changed:
            self._holding = None
            self._changed.notify_all()

    @property
    def held(self) -> int:
        """Requests waiting on ``hold()`` right now."""
        with self._lock:
            return self._held

    def wait_held(self, count: int, timeout: float) -> bool:
        """Wait until at least ``count`` requests wait on ``hold()``."""
        with self._changed:
            return self._changed.wait_for(lambda: self._held >= count, timeout)

    def _count_in(self, h: BaseHTTPRequestHandler, call: Any, key: str = "") -> int:
        """Record ``call`` and count ``h`` in flight under ``key``, at once (a test that
        finds a request in flight finds it in ``calls``); how many requests with ``key``
        were in flight before it."""
        with self._changed:
            self._calls.append(call)
            before = self._in_flight_by_key.get(key, 0)
            self._in_flight += 1
            self._in_flight_by_key[key] = before + 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            self._changed.notify_all()
        h._pdm_key = key  # type: ignore[attr-defined]
        return before

    def _done(self, h: BaseHTTPRequestHandler) -> None:
        """The request is no longer in flight: called right before the last byte of its
        answer goes out (or it is dropped), so the client, which cannot send its next
        request before that, never finds this one still counted. Once per request."""
        key = getattr(h, "_pdm_key", None)
        if key is None:
            return
        h._pdm_key = None  # type: ignore[attr-defined]
        with self._changed:
            self._in_flight -= 1
            self._in_flight_by_key[key] -= 1
            if self._in_flight_by_key[key] == 0:
                del self._in_flight_by_key[key]
            self._changed.notify_all()

    def _wait_while_held(self, stage: str) -> bool:
        """Wait while ``hold(stage)`` is on; False when ``stop()`` came first."""
        with self._changed:
            if self._holding != stage:
                return not self._stopping.is_set()
            self._held += 1
            self._changed.notify_all()
            try:
                self._changed.wait_for(lambda: self._holding != stage or self._stopping.is_set())
            finally:
                self._held -= 1
                self._changed.notify_all()
            return not self._stopping.is_set()

    def _send_json(self, h: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
        self._send(h, status, json.dumps(payload).encode(), "application/json")

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            # Not send(): the client needs the body before it can send its next request,
            # so this one is counted out first (the headers may already be on their way).
            self._done(h)
            h.wfile.write(body)
        except OSError:
            pass  # the client gave up

    def _drop(self, h: BaseHTTPRequestHandler) -> None:
        self._done(h)
        drop(h)

    def _reset(self, h: BaseHTTPRequestHandler) -> None:
        self._done(h)
        reset(h)


def drop(handler: BaseHTTPRequestHandler) -> None:
    """Close the connection without an answer."""
    handler.close_connection = True
    try:
        handler.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def reset(handler: BaseHTTPRequestHandler) -> None:
    """Close with an RST and no answer."""
    handler.close_connection = True
    try:
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.connection.close()
    except OSError:
        pass


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str | None,
         headers: dict[str, str] | None = None) -> None:
    """One whole answer (``content_type`` None: none, as for a 204); a client that gave up
    meanwhile is no error."""
    try:
        handler.send_response(status)
        if content_type is not None:
            handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)
    except OSError:
        pass


def serve_until_signalled(fake: FakeServer, name: str, about: str = "") -> int:
    """Run ``fake`` in the foreground (for local development) until SIGINT or SIGTERM."""
    done = threading.Event()
    # Explicit handlers: a shell may start background jobs with SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    fake.start()
    print(f"{name} listening on {fake.url}{about}; Ctrl-C to stop", flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        fake.stop()
    return 0
