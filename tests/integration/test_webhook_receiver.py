"""The webhook receiver the fault tests and the bench trust (pdm_app.testing.webhook_receiver):
it accepts exactly what the Standard Webhooks library verifies, and its switches do what
they say, on a real socket."""
from __future__ import annotations

import json
import socket
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from pdm_app.testing.webhook_receiver import WebhookReceiver, new_secret

SECRET = new_secret()


def event(type_="allocation.reserved", name="acme", at="2026-12-07T17:50:00.123456Z") -> bytes:
    return json.dumps({"type": type_, "timestamp": at,
                       "data": {"pool": "omantel.omani.works", "name": name, "state": "reserved"}}).encode()


def signed(body: bytes, msg_id: str, *secrets: str, at: datetime | None = None) -> dict[str, str]:
    at = at or datetime.now(timezone.utc)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": " ".join(Webhook(s).sign(msg_id, at, body) for s in (secrets or (SECRET,))),
            "Content-Type": "application/json"}


def post(receiver, body: bytes, headers: dict[str, str], **kwargs) -> requests.Response:
    return requests.post(receiver.url, data=body, headers=headers, timeout=10, allow_redirects=False, **kwargs)


@pytest.fixture
def receiver():
    with WebhookReceiver(SECRET) as server:
        yield server


def test_a_correctly_signed_delivery_is_accepted_and_recorded(receiver):
    body = event()
    assert post(receiver, body, signed(body, "msg_1")).status_code == 204
    [d] = receiver.deliveries
    assert (d.msg_id, d.type, d.subject, d.verified, d.attempt, d.status) == (
        "msg_1", "allocation.reserved", ("omantel.omani.works", "acme"), True, 1, 204)
    assert d.data["state"] == "reserved" and d.timestamp == "2026-12-07T17:50:00.123456Z"
    assert receiver.bad == [] and receiver.ids() == ["msg_1"] and receiver.duplicates() == {}

    # The same message again (a retry): the same id, counted as its second attempt.
    assert post(receiver, body, signed(body, "msg_1")).status_code == 204
    assert [d.attempt for d in receiver.deliveries] == [1, 2]
    assert receiver.duplicates() == {"msg_1": 2} and receiver.events_under_several_ids() == {}
    # The same event under another id is what a consumer could not recognise.
    assert post(receiver, body, signed(body, "msg_2")).status_code == 204
    assert receiver.events_under_several_ids() == {
        ("allocation.reserved", ("omantel.omani.works", "acme"), "2026-12-07T17:50:00.123456Z"): ["msg_1", "msg_2"]}


def _wrong_secret(body):
    return signed(body, "msg_x", new_secret())


def _stale(body):
    return signed(body, "msg_x", at=datetime.now(timezone.utc) - timedelta(minutes=6))


def _future(body):
    return signed(body, "msg_x", at=datetime.now(timezone.utc) + timedelta(minutes=6))


def _missing(header):
    def make(body):
        headers = signed(body, "msg_x")
        del headers[header]
        return headers
    make.__name__ = f"_missing_{header}"
    return make


def _other_body(body):
    return signed(event(name="other"), "msg_x")  # a signature over another body


@pytest.mark.parametrize("make_headers", [_wrong_secret, _stale, _future, _missing("webhook-signature"),
                                          _missing("webhook-timestamp"), _missing("webhook-id"), _other_body],
                         ids=lambda f: f.__name__.strip("_"))
def test_a_request_that_does_not_verify_is_refused_and_recorded_as_bad(receiver, make_headers):
    body = event()
    answer = post(receiver, body, make_headers(body))
    assert 400 <= answer.status_code < 500
    [d] = receiver.deliveries
    assert not d.verified and d.error and d.status == answer.status_code
    assert receiver.bad == receiver.deliveries and receiver.accepted == [] and receiver.ids() == []


def test_a_body_that_is_not_a_json_event_is_refused_even_when_signed(receiver):
    for body in (b"not json", b'{"data": {}}'):
        assert post(receiver, body, signed(body, "msg_j")).status_code == 401
    assert len(receiver.bad) == 2 and receiver.ids() == []


def test_secrets_rotate_and_any_of_several_signatures_verifies(receiver):
    new = new_secret()
    body = event()
    receiver.accept(new)
    assert post(receiver, body, signed(body, "msg_old", SECRET)).status_code == 401
    # A sender mid-rotation signs with both: one verifying signature is enough.
    assert post(receiver, body, signed(body, "msg_both", SECRET, new)).status_code == 204
    assert post(receiver, body, signed(body, "msg_new", new)).status_code == 204
    receiver.accept(SECRET, new)
    assert post(receiver, body, signed(body, "msg_old2", SECRET)).status_code == 204
    assert receiver.ids() == ["msg_both", "msg_new", "msg_old2"]


def test_answers_on_demand(receiver):
    body = event()
    receiver.answer(500, times=1)
    receiver.answer(429, times=1, retry_after=7)
    receiver.answer(301, times=1, location=receiver.url + "/moved")
    receiver.answer(410, times=1, type="allocation.released")
    answers = [post(receiver, body, signed(body, f"msg_{i}")) for i in range(4)]
    assert [a.status_code for a in answers] == [500, 429, 301, 204]
    assert answers[1].headers["Retry-After"] == "7" and answers[2].headers["Location"].endswith("/hooks/moved")
    released = event("allocation.released")
    assert post(receiver, released, signed(released, "msg_r")).status_code == 410
    assert receiver.ids() == ["msg_3"]  # only 2xx is accepted
    receiver.answer(503, retry_after=1)  # every one, until cleared
    assert {post(receiver, body, signed(body, f"msg_{i}")).status_code for i in range(5, 8)} == {503}
    receiver.clear_faults()
    assert post(receiver, body, signed(body, "msg_9")).status_code == 204
    # A request to another path of the receiver (a redirect followed) is seen as such.
    assert requests.post(receiver.url + "/moved", data=body, headers=signed(body, "msg_m"),
                         timeout=10).status_code == 404
    assert receiver.deliveries[-1].path == "/hooks/moved"


def test_down_refuses_connections_and_up_listens_on_the_same_port(receiver):
    body = event()
    port = receiver.port
    receiver.down()
    assert not receiver.listening
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with pytest.raises(requests.ConnectionError):
        post(receiver, body, signed(body, "msg_d"))
    receiver.up()
    assert receiver.port == port and receiver.listening
    assert post(receiver, body, signed(body, "msg_d")).status_code == 204
    assert receiver.ids() == ["msg_d"]


def test_held_and_stalled_requests_are_in_flight_until_released_or_down(receiver):
    body = event()
    receiver.hold()
    answers = []
    sender = threading.Thread(target=lambda: answers.append(post(receiver, body, signed(body, "msg_h"))))
    sender.start()
    assert receiver.wait_held(1, timeout=10)
    [d] = receiver.deliveries
    assert d.msg_id == "msg_h" and d.status is None and receiver.ids() == []
    receiver.release()
    sender.join(10)
    assert answers[0].status_code == 204 and receiver.wait_for_ids(1, timeout=1)

    receiver.stall(0.5)
    started = time.monotonic()
    assert post(receiver, body, signed(body, "msg_s")).status_code == 204
    assert time.monotonic() - started >= 0.5
    # Going down drops what is held: the sender sees no answer, nothing is accepted.
    receiver.stall(30)
    failed = []

    def stalled():
        try:
            post(receiver, body, signed(body, "msg_dropped"))
        except requests.ConnectionError as exc:
            failed.append(exc)

    sender = threading.Thread(target=stalled)
    sender.start()
    assert receiver.wait_in_flight(1, timeout=10)
    receiver.down()
    sender.join(10)
    assert failed and "msg_dropped" not in receiver.ids()
    assert receiver.deliveries[-1].status is None


def test_types_by_subject_follow_first_acceptance(receiver):
    for i, (type_, name) in enumerate([("allocation.reserved", "a"), ("allocation.reserved", "b"),
                                       ("allocation.committed", "a"), ("allocation.committed", "a"),
                                       ("allocation.published", "a")]):
        body = event(type_, name, at=f"2026-12-07T17:50:0{i}Z")
        msg_id = "msg_dup" if i in (2, 3) else f"msg_{i}"
        if i == 3:
            body = event("allocation.committed", "a", at="2026-12-07T17:50:02Z")  # the same message, resent
        assert post(receiver, body, signed(body, msg_id)).status_code == 204
    assert receiver.types_by_subject() == {
        ("omantel.omani.works", "a"): ["allocation.reserved", "allocation.committed", "allocation.published"],
        ("omantel.omani.works", "b"): ["allocation.reserved"]}
    assert receiver.duplicates() == {"msg_dup": 2}
