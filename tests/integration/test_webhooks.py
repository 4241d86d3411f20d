"""Webhooks from the outbox, end to end in one process: a committed change always yields
its messages and a rolled-back one never does; the deliverer sends them signed, in order
per allocation, at least once, and does what each answer says (retry, pause, disable,
give up, never follow a redirect). The receiver verifies every signature with the
Standard Webhooks library (pdm_app.testing.webhook_receiver)."""
from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from conftest import POOL, make_settings

from .test_registrar_endpoints import DOMAIN, NEW_NS, namecheap_kit
from pdm_app import create_app
from pdm_app.domain import utcnow
from pdm_app.models import AllocationEvent, WebhookMessage
from pdm_app.testing.webhook_receiver import WebhookReceiver, new_secret
from pdm_app.unit_of_work import UnitOfWork
from pdm_app.webhooks.endpoints import Endpoint, WebhookSettings

LB = "198.51.100.7"
SECRET = new_secret()


@pytest.fixture
def receiver():
    with WebhookReceiver(SECRET) as server:
        yield server


def build(db_url, fake, *endpoints: Endpoint, **webhook_settings):
    webhook_settings = {"retry_schedule": (1.0, 1.0, 1.0), "timeout": 2.0, **webhook_settings}
    hooks = WebhookSettings(endpoints=endpoints, **webhook_settings)
    app = create_app(make_settings(db_url, fake, webhooks=hooks))
    app.config["TESTING"] = True
    return app


@pytest.fixture
def make_app(db_url, fake):
    apps = []

    def make(*endpoints: Endpoint, **webhook_settings):
        app = build(db_url, fake, *endpoints, **webhook_settings)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["pdm"].engine.dispose()


def endpoint(receiver, name="hooks", secrets=(SECRET,), events=None) -> Endpoint:
    return Endpoint(name, receiver.url, tuple(secrets), frozenset(events) if events else None)


def reserve(client, sub):
    response = client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": sub})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["reservationToken"]


def commit(client, sub, token):
    response = client.post(f"/api/v1/pool/{POOL}/commit",
                           json={"subdomain": sub, "reservationToken": token, "loadBalancerIP": LB})
    assert response.status_code in (200, 202), response.get_json()


def release(client, sub):
    assert client.delete(f"/api/v1/pool/{POOL}/release", json={"subdomain": sub}).status_code == 200


def messages(app) -> list[WebhookMessage]:
    with UnitOfWork(app.extensions["pdm"].session_factory) as tx:
        return list(tx.session.execute(select(WebhookMessage).order_by(WebhookMessage.id)).scalars())


def deliver(app, now=None) -> int:
    """One delivery tick, as the jobs leader runs it (``now``: the deliverer's clock)."""
    deliverer = app.extensions["pdm"].deliverer
    if now is not None:
        deliverer.clock = lambda: now
    return deliverer.deliver(lambda: True)


def later(seconds: float):
    return utcnow() + timedelta(seconds=seconds)


def test_every_change_of_a_tenant_is_delivered_signed_and_in_order(make_app, receiver):
    app = make_app(endpoint(receiver))
    client = app.test_client()
    commit(client, "acme", reserve(client, "acme"))
    release(client, "acme")
    assert deliver(app) == 5
    assert not receiver.bad
    got = receiver.accepted
    assert [d.type for d in got] == ["allocation.reserved", "allocation.committed", "allocation.published",
                                     "allocation.released", "allocation.unpublished"]
    assert len({d.msg_id for d in got}) == 5
    published = got[2]
    assert published.data == {"pool": POOL, "name": "acme", "state": "active", "caller": "dns",
                              "address": LB, "link": f"/api/v1/pool/{POOL}/history?sub=acme"}
    # The payload is exactly what the outbox kept, and what was signed.
    stored = {m.msg_id: m.payload for m in messages(app)}
    assert published.body.decode() == stored[published.msg_id]
    assert all(m.delivered_at is not None and m.attempts == 1 for m in messages(app))
    assert deliver(app) == 0  # nothing is sent twice once taken


def test_a_change_that_rolls_back_writes_no_message(make_app, receiver):
    app = make_app(endpoint(receiver))
    client = app.test_client()
    reserve(client, "acme")
    assert client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "acme"}).status_code == 409
    refused = client.post(f"/api/v1/pool/{POOL}/commit", json={"subdomain": "acme", "reservationToken": "wrong",
                                                               "loadBalancerIP": LB})
    assert refused.status_code in (401, 403, 409)
    pdm = app.extensions["pdm"]
    with pytest.raises(RuntimeError):
        with UnitOfWork(pdm.session_factory) as tx:
            tx.record_event(POOL, "ghost", "reserve", "test", utcnow())
            raise RuntimeError("the change fails after its event was written")
    assert [(m.type, m.subject) for m in messages(app)] == [("allocation.reserved", f"{POOL}/acme")]
    with UnitOfWork(pdm.session_factory) as tx:
        # ... and its history row went with it: the outbox and the history agree.
        assert tx.session.execute(select(func.count()).select_from(AllocationEvent)
                                  .where(AllocationEvent.subdomain == "ghost")).scalar() == 0


def test_each_endpoint_gets_the_types_it_asked_for_under_one_webhook_id(make_app, receiver):
    other = WebhookReceiver(SECRET).start()
    try:
        app = make_app(endpoint(receiver, "all"),
                       Endpoint("live-only", other.url, (SECRET,), frozenset({"allocation.published"})))
        client = app.test_client()
        commit(client, "acme", reserve(client, "acme"))
        deliver(app)
        assert [d.type for d in other.accepted] == ["allocation.published"]
        assert len(receiver.accepted) == 3
        # The same event carries the same id at every endpoint.
        assert other.accepted[0].msg_id == [d for d in receiver.accepted if d.type == "allocation.published"][0].msg_id
    finally:
        other.stop()


def test_every_current_secret_signs_during_a_rotation(make_app, receiver):
    old, new = SECRET, new_secret()
    app = make_app(endpoint(receiver, secrets=(old, new)))
    client = app.test_client()
    reserve(client, "acme")
    receiver.accept(new)  # the receiver has moved on to the new secret
    deliver(app)
    assert [d.type for d in receiver.accepted] == ["allocation.reserved"]
    assert len(receiver.accepted[0].headers["webhook-signature"].split(" ")) == 2


def test_a_failed_attempt_is_retried_with_the_same_id_and_later_ones_of_the_tenant_wait(make_app, receiver):
    app = make_app(endpoint(receiver))
    client = app.test_client()
    reserve(client, "acme")
    reserve(client, "bolt")
    receiver.answer(400, times=1)  # the receiver refuses the first message (acme's reserve)
    release(client, "acme")
    deliver(app)
    # bolt is not held up by acme; acme's release waits behind its failed reserve.
    assert [(d.type, d.data["name"]) for d in receiver.accepted] == [("allocation.reserved", "bolt")]
    first = receiver.deliveries[0]
    assert first.status == 400 and first.data["name"] == "acme"
    deliver(app, now=later(5))
    assert [(d.type, d.data["name"]) for d in receiver.accepted] == [
        ("allocation.reserved", "bolt"), ("allocation.reserved", "acme"), ("allocation.released", "acme")]
    assert receiver.accepted[1].msg_id == first.msg_id and receiver.accepted[1].attempt == 2


def test_past_the_schedule_a_message_is_given_up_and_the_next_goes(make_app, receiver):
    app = make_app(endpoint(receiver))
    client = app.test_client()
    reserve(client, "acme")
    release(client, "acme")
    receiver.answer(422, type="allocation.reserved")
    for step in range(5):
        deliver(app, now=later(5 * (step + 1)))
    failed = [m for m in messages(app) if m.failed_at is not None]
    assert [(m.type, m.attempts, m.last_status) for m in failed] == [("allocation.reserved", 4, 422)]
    assert [d.type for d in receiver.accepted] == ["allocation.released"]


def test_no_answer_in_time_is_a_failed_attempt_and_the_endpoint_rests(make_app, receiver):
    app = make_app(endpoint(receiver), timeout=0.5)
    client = app.test_client()
    reserve(client, "acme")
    reserve(client, "bolt")
    receiver.stall(3)
    assert deliver(app) == 0
    receiver.stall(0)
    # One attempt, not one per message: a receiver that does not answer is not hammered.
    assert len(receiver.deliveries) == 1
    (tried,) = [m for m in messages(app) if m.attempts]
    assert tried.last_error == "no whole answer within the deadline" and tried.last_status is None
    assert deliver(app) == 0  # resting until the schedule's first delay
    assert deliver(app, now=later(5)) == 2


def test_a_redirect_is_not_followed(make_app, receiver):
    app = make_app(endpoint(receiver))
    client = app.test_client()
    reserve(client, "acme")
    receiver.answer(301, times=1, location=receiver.url + "/elsewhere")
    deliver(app)
    assert [d.path for d in receiver.deliveries] == ["/hooks"]
    (message,) = messages(app)
    assert message.delivered_at is None and message.last_status == 301 and message.attempts == 1


def test_410_disables_the_endpoint_until_an_operator_enables_it(make_app, receiver):
    app = make_app(endpoint(receiver))
    client = app.test_client()
    reserve(client, "acme")
    receiver.answer(410, times=1)
    deliver(app)
    reserve(client, "bolt")
    assert deliver(app, now=later(60)) == 0
    assert len(receiver.deliveries) == 1
    (status,) = app.extensions["pdm"].webhooks.status()
    assert status.disabled_at is not None and status.pending == 2
    app.extensions["pdm"].webhooks.enable("hooks", "ops")
    assert deliver(app) == 2
    assert [d.data["name"] for d in receiver.accepted] == ["acme", "bolt"]


@pytest.mark.parametrize("status, retry_after", [(429, "30"), (503, "30"), (429, None)])
def test_throttling_pauses_the_endpoint_and_spends_no_attempt(make_app, receiver, status, retry_after):
    app = make_app(endpoint(receiver))
    client = app.test_client()
    reserve(client, "acme")
    reserve(client, "bolt")
    receiver.answer(status, times=1, retry_after=retry_after)
    assert deliver(app) == 0
    assert len(receiver.deliveries) == 1
    pause = 30 if retry_after else 1  # without Retry-After: the schedule's first delay
    assert deliver(app, now=later(pause - 0.5)) == 0
    assert all(m.attempts == 0 for m in messages(app))
    assert deliver(app, now=later(pause + 1)) == 2


def test_a_process_that_lost_the_jobs_lock_sends_nothing(make_app, receiver):
    app = make_app(endpoint(receiver))
    reserve(app.test_client(), "acme")
    assert app.extensions["pdm"].deliverer.deliver(lambda: False) == 0
    assert receiver.deliveries == []


def test_a_blocked_pool_and_its_recovery_are_told(make_app, receiver, fake):
    app = make_app(endpoint(receiver, events=("pool.blocked", "pool.unblocked")))
    client = app.test_client()
    commit(client, "acme", reserve(client, "acme"))
    # A read that lost the MX records looks broken: the pool is blocked, not written.
    fake.seed(POOL, [r for r in fake.zone(POOL).records if r.rtype != "mx"], ttl=300)
    commit(client, "beta", reserve(client, "beta"))
    commit(client, "gamma", reserve(client, "gamma"))  # still blocked: told once
    deliver(app)
    assert [d.type for d in receiver.accepted] == ["pool.blocked"]
    blocked = receiver.accepted[0].data
    assert blocked["pool"] == POOL and blocked["state"] == "blocked" and "lost-foreign-records" in blocked["detail"]
    assert app.extensions["pdm"].operators.reconcile(POOL, apply=True, force=True, caller="ops").applied
    deliver(app)
    assert [d.type for d in receiver.accepted] == ["pool.blocked", "pool.unblocked"]
    assert receiver.accepted[1].msg_id != receiver.accepted[0].msg_id


def test_delivered_messages_are_kept_only_for_the_retention(make_app, receiver):
    app = make_app(endpoint(receiver), retention=3600.0)
    client = app.test_client()
    reserve(client, "acme")
    deliver(app)
    deliverer = app.extensions["pdm"].deliverer
    assert deliverer.prune() == 0
    deliverer.clock = lambda: later(3601)
    assert deliverer.prune() == 1
    assert messages(app) == []


def test_without_endpoints_nothing_is_written(make_app):
    app = make_app()
    reserve(app.test_client(), "acme")
    assert messages(app) == []


def test_payload_is_compact_json_with_the_event_time(make_app, receiver):
    app = make_app(endpoint(receiver), public_url="https://pdm.example.org")
    reserve(app.test_client(), "acme")
    (message,) = messages(app)
    body = json.loads(message.payload)
    assert body["type"] == "allocation.reserved" and body["timestamp"].endswith("Z")
    assert body["data"]["link"] == f"https://pdm.example.org/api/v1/pool/{POOL}/history?sub=acme"
    assert message.created_at.isoformat(timespec="microseconds")[:26] == body["timestamp"][:26].replace("Z", "")


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_race_an_older_uncommitted_message_of_a_tenant_is_never_overtaken(make_app, receiver):
    """PostgreSQL hands out ids when rows are written, not when they commit: a change
    written first but committed last must still be delivered first. The second
    transaction of the same tenant waits for the first (its advisory lock), so it cannot
    commit -- and be sent -- while the older message is still invisible."""
    app = make_app(endpoint(receiver))
    pdm = app.extensions["pdm"]
    first_written = threading.Event()
    first_may_commit = threading.Event()

    def first():
        with UnitOfWork(pdm.session_factory) as tx:
            tx.record_event(POOL, "acme", "reserve", "catalyst-api", utcnow())
            first_written.set()
            first_may_commit.wait(10)

    def second():
        with UnitOfWork(pdm.session_factory) as tx:
            tx.record_event(POOL, "acme", "release", "catalyst-api", utcnow())

    one = threading.Thread(target=first)
    one.start()
    assert first_written.wait(10)
    two = threading.Thread(target=second)
    two.start()
    two.join(1.0)  # without the lock it commits here, ahead of the first
    deliver(app)
    first_may_commit.set()
    one.join(10)
    two.join(10)
    deliver(app)
    deliver(app)
    assert [d.type for d in receiver.accepted] == ["allocation.reserved", "allocation.released"]


def test_a_customer_domain_flip_is_told(db_url, fake, receiver):
    kit = namecheap_kit()
    try:
        hooks = WebhookSettings(endpoints=(endpoint(receiver),), retry_schedule=(1.0,))
        app = create_app(make_settings(db_url, fake, webhooks=hooks, customer_registrar_urls={"namecheap": kit.fake.url},
                                       **kit.settings))
        client = app.test_client()
        answer = client.post("/api/v1/registrar/namecheap/set-ns", json={"domain": DOMAIN, "token": kit.token,
                                                                          "nameservers": NEW_NS})
        assert answer.status_code == 200, answer.get_json()
        assert client.post("/api/v1/registrar/namecheap/validate", json={"domain": DOMAIN, "token": kit.token}
                           ).status_code == 200  # a validate is not a change: not told
        deliver(app)
        (flipped,) = receiver.accepted
        assert flipped.type == "nameservers.flipped"
        assert (flipped.data["pool"], flipped.data["name"], flipped.data["state"]) == ("registrar:namecheap", DOMAIN,
                                                                                       "ok")
        assert kit.token not in flipped.body.decode()
        app.extensions["pdm"].engine.dispose()
    finally:
        kit.fake.stop()


def test_race_a_tenant_released_while_its_publishing_pass_runs_is_not_told_published_after(make_app, receiver, fake):
    """The commit's pass read the table (acme active, to publish) and waits at the
    registrar; acme is released meanwhile. When the pass ends it must not tell
    "published" after "released": the receiver would believe a released tenant live."""
    app = make_app(endpoint(receiver))
    client = app.test_client()
    token = reserve(client, "acme")
    commit(client, "bolt", reserve(client, "bolt"))  # the zone is read: acme's commit needs no read first
    fake.hold()  # the commit's pass waits at the registrar, its snapshot taken
    committing = threading.Thread(target=commit, args=(app.test_client(), "acme", token))
    releasing = threading.Thread(target=lambda: app.test_client().delete(f"/api/v1/pool/{POOL}/release",
                                                                        json={"subdomain": "acme"}))
    committing.start()
    try:
        assert fake.wait_held(1, timeout=10)
        releasing.start()  # its row change commits at once; its own pass waits for the lock
        pdm = app.extensions["pdm"]
        for _ in range(200):
            with UnitOfWork(pdm.session_factory) as tx:
                if tx.get_allocation(POOL, "acme") is None:
                    break
            time.sleep(0.01)
    finally:
        fake.release()  # the commit's pass goes on, within its budget, and ends
        committing.join(30)
        releasing.join(30)
    app.extensions["pdm"].publisher.publish(POOL, [], budget=None)  # the release's removal
    deliver(app)
    assert [d.type for d in receiver.accepted if d.data["name"] == "acme"] == [
        "allocation.reserved", "allocation.committed", "allocation.released", "allocation.unpublished"]
