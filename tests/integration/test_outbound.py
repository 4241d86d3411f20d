"""pdm_app.outbound against real HTTP servers on loopback: a call's deadline covers the
headers and the body (a server that trickles either is cut off), the body's size is
capped while it is read, retries stop at the deadline, and no error carries the URL.

Nothing here asserts how long something took: a cut is proven by how much the server got
out before the client hung up, retries by the calls the server saw."""
from __future__ import annotations

import threading
import time

import pytest
import requests
from urllib3.util import Retry

from pdm_app import outbound
from pdm_app.testing.fake_server import FakeServer, send

SECRET = "s3cret-key-in-the-query"
TRICKLE_LENGTH = 2400  # 40 bytes a second: a minute


class SlowServer(FakeServer):
    """``/trickle`` answers slowly (FakeServer._trickle), ``/big`` streams ``big_bytes``
    without a Content-Length, ``/long`` announces more than it sends, ``/busy`` answers
    503, anything else ``{"ok": true}``."""

    server_name = "slow"
    big_bytes = 64 * 1024 * 1024

    def __init__(self) -> None:
        super().__init__()
        self.big_sent: list[int] = []

    def _serve(self, handler, method: str) -> None:
        path = handler.path.split("?", 1)[0]
        with self._lock:
            self._calls.append(path)
        if path == "/trickle":
            return self._trickle(handler, 200, b'{"ok": true}', "application/json")
        if path == "/long":
            return self._announce(handler)
        if path == "/big":
            return self._big(handler)
        if path == "/busy":
            return send(handler, 503, b"busy", "text/plain")
        send(handler, 200, b'{"ok": true}', "application/json")

    def _announce(self, handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(10 * 1024 * 1024))
        handler.end_headers()
        handler.wfile.write(b"{}")

    def _big(self, handler) -> None:
        handler.close_connection = True
        sent = 0
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Connection", "close")
            handler.end_headers()
            piece = b" " * 65536
            while sent < self.big_bytes:
                handler.wfile.write(piece)
                sent += len(piece)
        except OSError:
            pass
        with self._lock:
            self.big_sent.append(sent)


@pytest.fixture
def server():
    fake = SlowServer().start()
    yield fake
    fake.stop()


def session(retry: Retry | int = 0) -> requests.Session:
    return outbound.mount(requests.Session(), retry)


def wait_for(predicate, timeout: float = 30.0) -> None:
    """Safety net only: wait until the server has recorded what a test asserts on."""
    end = time.monotonic() + timeout
    while not predicate() and time.monotonic() < end:
        time.sleep(0.05)


def test_a_whole_answer_is_read_and_the_connection_reused(server):
    s = session()
    for _ in range(3):
        answer = outbound.request(s, "GET", server.url + "/ok", deadline=5.0, max_bytes=100)
        assert answer.status_code == 200 and answer.json() == {"ok": True}
    assert server.calls == ["/ok"] * 3


def test_a_trickled_body_is_cut_at_the_deadline(server):
    # 40 bytes a second for a minute, against a one-second deadline: each read gets
    # bytes in time, so only a deadline on the whole call ends it early.
    with pytest.raises(outbound.TimedOut):
        outbound.request(session(), "GET", server.url + "/trickle", deadline=1.0, max_bytes=10_000)
    wait_for(lambda: server.trickled)
    assert server.trickled and server.trickled[0] < TRICKLE_LENGTH // 4


def test_trickled_headers_are_cut_at_the_deadline(server):
    server.trickle_step, server.trickle_headers = 1, True  # a byte every half second from the status line on
    with pytest.raises(outbound.TimedOut):
        outbound.request(session(), "GET", server.url + "/trickle", deadline=1.0, max_bytes=10_000)
    wait_for(lambda: server.trickled)
    assert server.trickled and server.trickled[0] < 60


def test_a_body_past_the_cap_is_refused_as_it_streams(server):
    with pytest.raises(outbound.TooLarge):
        outbound.request(session(), "GET", server.url + "/big", deadline=30.0, max_bytes=4096)
    wait_for(lambda: server.big_sent)
    # The client stopped reading at the cap and hung up: the server could not send it all.
    assert server.big_sent and server.big_sent[0] < SlowServer.big_bytes // 2


def test_a_content_length_past_the_cap_is_refused_before_reading(server):
    with pytest.raises(outbound.TooLarge) as err:
        outbound.request(session(), "GET", server.url + "/long", deadline=5.0, max_bytes=1024)
    assert "1024" in str(err.value)


def test_retries_stop_at_the_deadline(server):
    # Without the deadline this Retry would call a thousand times.
    retry = outbound.DeadlineRetry(total=1000, status=1000, backoff_factor=0.2, backoff_max=0.3,
                                   status_forcelist=(503,), raise_on_status=False, respect_retry_after_header=False)
    # Once no time is left for another attempt, the caller gets the last answer
    # (raise_on_status=False) -- or, when an attempt was under way at the deadline, TimedOut.
    try:
        assert outbound.request(session(retry), "GET", server.url + "/busy", deadline=1.0,
                                max_bytes=100).status_code == 503
    except outbound.TimedOut:
        pass
    assert 2 <= len(server.calls) < 100


def test_no_error_carries_the_url_or_an_exception(server):
    port = server.port
    server.stop()  # nothing listens: connection refused
    with pytest.raises(outbound.Unreachable) as err:
        outbound.request(session(), "GET", f"http://127.0.0.1:{port}/x?key={SECRET}", deadline=5.0, max_bytes=100)
    assert SECRET not in str(err.value) and "127.0.0.1" not in str(err.value)
    assert err.value.__cause__ is None and err.value.__context__ is None
    assert not err.value.permanent


def test_a_header_that_cannot_be_sent_is_unsendable(server):
    with pytest.raises(outbound.Unsendable) as err:
        outbound.request(session(), "GET", server.url + "/ok", deadline=5.0, max_bytes=100,
                         headers={"Authorization": "Bearer caf\u00e9\u2603"})
    assert "\u2603" not in str(err.value) and err.value.__context__ is None


def test_a_session_without_the_bounded_adapter_is_refused(server):
    with pytest.raises(TypeError):
        outbound.request(requests.Session(), "GET", server.url + "/ok", deadline=5.0, max_bytes=100)


def test_calls_in_parallel_are_cut_each_at_its_own_deadline(server):
    # A cut is per call: a slow call's watchdog never touches a neighbour's connection.
    s = session()
    outcomes: list[str] = []

    def slow() -> None:
        try:
            outbound.request(s, "GET", server.url + "/trickle", deadline=1.0, max_bytes=10_000)
            outcomes.append("answered")
        except outbound.TimedOut:
            outcomes.append("timed out")

    thread = threading.Thread(target=slow)
    thread.start()
    fast = [outbound.request(s, "GET", server.url + "/ok", deadline=10.0, max_bytes=100).json() for _ in range(20)]
    thread.join(30)
    assert fast == [{"ok": True}] * 20 and outcomes == ["timed out"]
