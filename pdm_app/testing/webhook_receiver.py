"""A webhook receiver on loopback that checks every request as a careful consumer would:
the Standard Webhooks signature, verified with the specification's own library
(``standardwebhooks``), never by hand.

A real HTTP server (``ThreadingHTTPServer`` in a daemon thread, ``FakeServer``), so the
sender's whole stack -- its HTTP client, deadlines, sockets, redirects -- is exercised.
Every request is recorded as a ``Delivery``: its ``webhook-id``, event type, data and
payload timestamp, when it arrived, whether its signature verified (and why not), which
attempt of that id it was, and what the receiver answered. A request that does not verify
-- a wrong signature, a stale or future timestamp, a missing header -- is answered 401 and
kept with ``verified`` False; only a verified request is ever answered 2xx.

Switched at run time, as the sender's faults need:

* ``answer(status, ...)``: the next ``times`` verified requests (all, by default, until
  ``clear_faults()``) get ``status``: 500, 410, 429 or 503 with ``Retry-After``, 301 with
  ``Location``, ... ``type`` limits it to one event type.
* ``stall(seconds)``: every request waits that long before it is answered (0: no more);
  ``hold()`` / ``release()`` (``InFlightServer``) hold requests until told, and
  ``wait_held(n)`` waits until ``n`` of them are held: a delivery in flight, on demand.
* ``down()`` / ``up()``: stop listening (connections refused, requests held or stalled
  dropped unanswered) and listen again on the same port.
* ``accept(*secrets)``: the secrets a signature may be made with from now on (rotation).

What the tests read: ``deliveries`` (every request), ``accepted`` (answered 2xx, in
arrival order), ``ids()``, ``wait_for_ids(n)``, ``wait_for(predicate)``,
``types_by_subject()`` (per pool+name, the types of the ids accepted, in order of their
first acceptance), ``duplicates()`` (ids accepted more than once), and
``events_under_several_ids()`` (one event sent under two ids: what at-least-once must
never do). A request counts as accepted once the receiver decided on its 2xx, whether or
not the answer reached a sender killed meanwhile: a consumer has processed it by then,
so the sender's retry of it is a duplicate the consumer must recognise by its id.

Run ``python -m pdm_app.testing.webhook_receiver --port 8083 --secret whsec_...`` to
watch a local service's deliveries (one line each).
"""
from __future__ import annotations

import argparse
import base64
import json
import secrets as _secrets
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from .fake_server import Fault, InFlightServer, send, serve_until_signalled

FOREVER = sys.maxsize


def new_secret() -> str:
    """A fresh ``whsec_`` secret (24 random bytes, base64), as an operator makes one."""
    return "whsec_" + base64.b64encode(_secrets.token_bytes(24)).decode()


@dataclass
class Delivery:
    """One request as the receiver saw it. ``status``: what it answered (None while it is
    held, or when it was dropped by ``down()``)."""

    msg_id: str | None
    type: str | None
    data: dict[str, Any] | None
    timestamp: str | None  # the payload's: when the change happened
    sent_at: int | None  # the webhook-timestamp header: when this attempt was signed
    received_at: float  # time.time() on arrival
    verified: bool
    error: str | None  # why it did not verify, or why it was refused
    attempt: int  # the how-manieth request with this webhook-id
    path: str
    method: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    status: int | None = None
    answered_at: float | None = None

    @property
    def subject(self) -> tuple[str, str] | None:
        """The ordering key of an ``allocation.*`` event: (pool, name)."""
        if not self.data:
            return None
        return (str(self.data.get("pool", "")), str(self.data.get("name", "")))

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class _Answer(Fault):
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)


class WebhookReceiver(InFlightServer):
    """``WebhookReceiver(secret).start()``; ``.url``; see the module's docstring."""

    server_name = "webhook-receiver"
    api_path = "/hooks"

    def __init__(self, secret: str | list[str], host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port)
        self._verifiers: list[Webhook] = []
        self.accept(*([secret] if isinstance(secret, str) else secret))
        self.stall_seconds = 0.0
        self._attempts: dict[str, int] = defaultdict(int)
        # Called (outside the lock) with each delivery once it is answered: the CLI's printer.
        self.on_answer: Callable[[Delivery], None] | None = None

    # -- switches -----------------------------------------------------------------------

    def accept(self, *secrets: str) -> None:
        """From now on a signature verifies only if made with one of ``secrets``."""
        if not secrets:
            raise ValueError("at least one secret")
        verifiers = [Webhook(s) for s in secrets]
        with self._lock:
            self._verifiers = verifiers

    def answer(self, status: int, times: int | None = None, *, retry_after: str | int | None = None,
               location: str | None = None, type: str | None = None) -> None:
        """The next ``times`` verified requests (of event ``type``, or any) are answered
        ``status`` -- all of them until ``clear_faults()`` when ``times`` is None."""
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        if location is not None:
            headers["Location"] = location
        with self._lock:
            self._faults.append(_Answer("status", FOREVER if times is None else times, type, status, headers))

    def stall(self, seconds: float) -> None:
        """Every request waits ``seconds`` before it is answered (woken by ``down()``)."""
        self.stall_seconds = seconds

    def down(self) -> None:
        """Refuse connections (the listening socket closed) until ``up()``."""
        self.stop()

    def up(self) -> "WebhookReceiver":
        """Listen again, on the same port."""
        return self.start()

    @property
    def listening(self) -> bool:
        return self._server is not None

    def reset(self) -> None:
        """Forget every delivery and attempt count (the switches stay)."""
        with self._lock:
            self._calls.clear()
            self._attempts.clear()

    # -- what the tests read ----------------------------------------------------------------

    @property
    def deliveries(self) -> list[Delivery]:
        return self.calls

    @property
    def accepted(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.accepted]

    @property
    def bad(self) -> list[Delivery]:
        """Requests whose signature did not verify."""
        return [d for d in self.deliveries if not d.verified]

    def ids(self) -> list[str]:
        """The ids accepted, each once, in the order of their first acceptance."""
        return list(dict.fromkeys(d.msg_id for d in self.accepted))

    def wait_for(self, predicate: Callable[[list[Delivery]], bool], timeout: float) -> bool:
        """Wait until ``predicate(deliveries)`` holds (checked whenever one is answered)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(list(self._calls)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))
        return True

    def wait_for_ids(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` distinct ids have been accepted."""
        return self.wait_for(lambda ds: len({d.msg_id for d in ds if d.accepted}) >= count, timeout)

    def types_by_subject(self) -> dict[tuple[str, str], list[str]]:
        """Per (pool, name), the type of each id accepted, in order of first acceptance."""
        seen: set[str] = set()
        out: dict[tuple[str, str], list[str]] = defaultdict(list)
        for d in self.accepted:
            if d.msg_id not in seen:
                seen.add(d.msg_id)
                out[d.subject].append(d.type)
        return dict(out)

    def duplicates(self) -> dict[str, int]:
        """Ids accepted more than once, and how many times."""
        counts: dict[str, int] = defaultdict(int)
        for d in self.accepted:
            counts[d.msg_id] += 1
        return {i: n for i, n in counts.items() if n > 1}

    def events_under_several_ids(self) -> dict[tuple, list[str]]:
        """One event (type, subject, payload timestamp) that arrived under more than one
        webhook-id: a duplicate a consumer could not recognise."""
        ids: dict[tuple, set[str]] = defaultdict(set)
        for d in self.deliveries:
            if d.verified and d.type is not None:
                ids[(d.type, d.subject, d.timestamp)].add(d.msg_id)
        return {event: sorted(i) for event, i in ids.items() if len(i) > 1}

    # -- serving --------------------------------------------------------------------------------

    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        try:
            length = int(h.headers.get("Content-Length") or 0)
            body = h.rfile.read(length) if length > 0 else b""
        except (OSError, ValueError):
            return self._drop(h)
        delivery = self._record(h, method, body)
        self._count_in(h, delivery)
        try:
            self._answer(h, delivery)
        finally:
            self._done(h)
        if self.on_answer is not None:
            self.on_answer(delivery)

    def _record(self, h: BaseHTTPRequestHandler, method: str, body: bytes) -> Delivery:
        headers = {k.lower(): v for k, v in h.headers.items()}
        msg_id = headers.get("webhook-id")
        with self._lock:
            verifiers = list(self._verifiers)
        payload, error = None, "not a POST"
        if method == "POST":
            for verifier in verifiers:
                try:
                    payload, error = verifier.verify(body, headers), None
                    break
                except WebhookVerificationError as exc:
                    error = str(exc)
                except ValueError as exc:  # verified, yet not JSON
                    error = f"body is not JSON: {exc}"
                    break
        if payload is not None and not (isinstance(payload, dict) and isinstance(payload.get("type"), str)):
            payload, error = None, "no event type in the body"
        try:
            sent_at = int(headers["webhook-timestamp"])
        except (KeyError, ValueError):
            sent_at = None
        return Delivery(
            msg_id=msg_id, type=payload and payload["type"], data=payload and payload.get("data"),
            timestamp=payload and payload.get("timestamp"), sent_at=sent_at, received_at=time.time(),
            verified=error is None, error=error, attempt=0, path=h.path, method=method, headers=headers,
            body=body)

    def _count_in(self, h: BaseHTTPRequestHandler, call: Any, key: str = "") -> int:
        with self._lock:  # numbered as it is recorded, so attempts follow arrival order
            if call.msg_id is not None:
                self._attempts[call.msg_id] += 1
                call.attempt = self._attempts[call.msg_id]
        return super()._count_in(h, call, key)

    def _answer(self, h: BaseHTTPRequestHandler, d: Delivery) -> None:
        if not self._wait_while_held("request"):
            return self._drop(h)
        if self.stall_seconds > 0 and self._stopping.wait(self.stall_seconds):
            return self._drop(h)
        headers: dict[str, str] = {}
        if d.method != "POST":
            status = 405
        elif not d.verified:
            status = 401
        elif h.path.split("?")[0] != self.api_path:
            status = 404
        else:
            fault = self._take_fault(d.type)
            status, headers = (fault.status, dict(fault.headers)) if fault is not None else (204, {})
        with self._changed:
            d.status, d.answered_at = status, time.time()
            self._changed.notify_all()
        self._done(h)
        body = b"" if status == 204 else json.dumps({"status": status, "error": d.error}).encode()
        send(h, status, body, None if status == 204 else "application/json", headers)


def _print(d: Delivery) -> None:
    state = "verified" if d.verified else f"REFUSED ({d.error})"
    print(f"{d.status} {d.msg_id} attempt {d.attempt} {d.type} {json.dumps(d.data)} {state}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A webhook receiver that verifies every signature.")
    parser.add_argument("--port", type=int, default=8083)
    parser.add_argument("--secret", action="append", required=True, help="whsec_... (repeat for several)")
    args = parser.parse_args(argv)
    receiver = WebhookReceiver(args.secret, port=args.port)
    receiver.on_answer = _print
    return serve_until_signalled(receiver, "webhook receiver")


if __name__ == "__main__":
    sys.exit(main())
