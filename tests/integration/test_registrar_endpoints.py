"""A customer's own domain end to end: ``POST /api/v1/registrar/{registrar}/validate`` and
``…/set-ns`` against each provider's fake, on both databases -- every class of answer,
the history of every attempt, and the customer's token nowhere but its own provider."""
from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from dataclasses import dataclass, field
from typing import Callable

import pytest
from conftest import terminate_lock_session

from pdm_app import metrics
from pdm_app.testing.fake_cloudflare import FakeCloudflare
from pdm_app.testing.fake_dynadot_ns import FakeDynadot
from pdm_app.testing.fake_godaddy import FakeGodaddy
from pdm_app.testing.fake_namecheap import FakeNamecheap
from pdm_app.testing.fake_ovh import FakeOvh
from pdm_app.db import make_engine
from pdm_app.locks import advisory_key, per_key_lock

DOMAIN = "acme-example.com"
NEW_NS = ["ns1.sovereign.example.net", "ns2.sovereign.example.net"]
OLD_NS = ["ns1.oldhost.example.org", "ns2.oldhost.example.org"]


@dataclass
class Kit:
    """One provider's fake, seeded with an account that holds DOMAIN, and how to make it
    answer each class of failure."""

    name: str
    fake: object
    token: str
    bad_token: str
    malformed_token: str
    rate_limit: Callable[[], None]
    outage: Callable[[], None]
    can_set: bool = True
    applies_later: bool = False
    secrets: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)


def godaddy_kit() -> Kit:
    fake = FakeGodaddy().start()
    key, secret = "gk" + uuid.uuid4().hex, "gs" + uuid.uuid4().hex
    fake.add_account(key, secret)
    fake.add_domain(key, DOMAIN, OLD_NS)
    return Kit("godaddy", fake, f"{key}:{secret}", f"{key}:wrong{secret}", "no-colon-here",
               rate_limit=lambda: fake.inject("throttle", times=10),
               outage=lambda: fake.inject("http500", times=10), secrets=[key, secret])


def dynadot_kit() -> Kit:
    fake = FakeDynadot().start()
    key, secret = "dk" + uuid.uuid4().hex, "ds" + uuid.uuid4().hex
    fake.seed(key, DOMAIN, OLD_NS)
    for host in NEW_NS:
        fake.register_host(key, host)
    fake.add_account("other" + key)
    return Kit("dynadot", fake, f"{key}:{secret}", "wrong" + key, ":", rate_limit=lambda: fake.inject("throttle", 10),
               outage=lambda: fake.inject("http500", 10), secrets=[key, secret])


def cloudflare_kit() -> Kit:
    fake = FakeCloudflare().start()
    token = "cf" + uuid.uuid4().hex
    fake.add_token(token)
    fake.add_zone(DOMAIN, OLD_NS)
    return Kit("cloudflare", fake, token, "cf-unknown-" + uuid.uuid4().hex, "two words",
               rate_limit=lambda: fake.inject("throttle", 10), outage=lambda: fake.inject("http500", 10),
               can_set=False, secrets=[token])


def namecheap_kit() -> Kit:
    key = "nk" + uuid.uuid4().hex
    fake = FakeNamecheap(api_user="acmeuser", api_key=key, allowed_ips=("203.0.113.10",)).start()
    fake.seed(DOMAIN, OLD_NS)
    return Kit("namecheap", fake, f"acmeuser:{key}", f"acmeuser:wrong{key}", "acmeuser",
               rate_limit=lambda: fake.inject("throttle", 10), outage=lambda: fake.inject("http500", 10),
               secrets=[key], settings={"namecheap_client_ip": "203.0.113.10"})


def ovh_kit() -> Kit:
    fake = FakeOvh().start()
    app_key, app_secret, consumer = ("ok" + uuid.uuid4().hex, "os" + uuid.uuid4().hex, "oc" + uuid.uuid4().hex)
    fake.add_app(app_key, app_secret)
    fake.add_consumer(app_key, consumer, "acme-account")
    fake.add_domain("acme-account", DOMAIN, OLD_NS)
    return Kit("ovh", fake, f"{app_key}:{app_secret}:{consumer}", f"{app_key}:wrong{app_secret}:{consumer}",
               f"{app_key}:{app_secret}", rate_limit=lambda: fake.inject("rate", 10),
               outage=lambda: fake.inject("http500", 10), applies_later=True, secrets=[app_secret, consumer])


KITS = {"cloudflare": cloudflare_kit, "dynadot": dynadot_kit, "godaddy": godaddy_kit, "namecheap": namecheap_kit,
        "ovh": ovh_kit}


@pytest.fixture(params=sorted(KITS))
def kit(request):
    made = KITS[request.param]()
    yield made
    made.fake.stop()


@pytest.fixture
def client(db_url, kit, app_factory):
    app = app_factory(db_url, customer_registrar_urls={kit.name: kit.fake.url}, **kit.settings)
    return app.test_client()


def post(client, kit, operation, **body):
    return client.post(f"/api/v1/registrar/{kit.name}/{operation}", json=body)


def test_healthz_lists_the_registrars(db_url, app_factory):
    body = app_factory(db_url).test_client().get("/healthz").get_json()
    assert body["registrars"] == ["cloudflare", "dynadot", "godaddy", "namecheap", "ovh"]


def test_validate_ok(client, kit):
    answer = post(client, kit, "validate", domain=" ACME-Example.com ", token=kit.token)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == {"valid": True, "registrar": kit.name, "domain": DOMAIN}


def test_every_class_of_refusal(client, kit):
    def error(operation="validate", **body):
        answer = post(client, kit, operation, **{"domain": DOMAIN, "token": kit.token, **body})
        data = answer.get_json()
        assert data["detail"] and kit.token not in data["detail"]
        return answer.status_code, data["error"], data.get("registrar"), data.get("domain")

    assert error(token=kit.bad_token) == (401, "invalid-token", kit.name, DOMAIN)
    calls = len(kit.fake.calls)
    assert error(token=kit.malformed_token)[:2] == (401, "invalid-token")
    assert len(kit.fake.calls) == calls  # refused before any provider call
    assert error(domain="not-mine-" + DOMAIN) == (403, "domain-not-in-account", kit.name, "not-mine-" + DOMAIN)
    kit.rate_limit()
    assert error()[:2] == (429, "rate-limited")
    kit.fake.clear_faults()
    kit.outage()
    assert error()[:2] == (502, "api-unavailable")
    kit.fake.clear_faults()


def test_checks_run_in_the_contract_order(client, kit):
    def error(path, raw=None, **body):
        if raw is not None:
            answer = client.post(path, data=raw, content_type="application/json")
        else:
            answer = client.post(path, json=body)
        data = answer.get_json()
        return answer.status_code, data["error"]

    base = f"/api/v1/registrar/{kit.name}"
    unknown = client.post("/api/v1/registrar/nosuch/validate", data="{not json", content_type="application/json")
    assert unknown.status_code == 404 and unknown.get_json()["error"] == "unsupported-registrar"
    assert unknown.get_json()["supported"] == ["cloudflare", "dynadot", "godaddy", "namecheap", "ovh"]
    assert error(f"{base}/validate", raw="{not json") == (400, "invalid-body")
    assert error(f"{base}/validate", domain=["x"], token="t") == (400, "invalid-body")
    assert error(f"{base}/validate", domain=" ", token="t") == (422, "missing-domain")
    assert error(f"{base}/validate", domain=DOMAIN, token="") == (422, "missing-token")
    assert error(f"{base}/set-ns", domain=DOMAIN, token=kit.token, nameservers=[" ", ""]) == (
        422, "missing-nameservers")
    assert error(f"{base}/validate", domain="sov." + DOMAIN, token=kit.token) == (422, "invalid-domain")
    assert error(f"{base}/validate", domain="acme.com/../../v1", token=kit.token) == (422, "invalid-domain")
    assert error(f"{base}/set-ns", domain=DOMAIN, token=kit.token, nameservers=["ns1.example.net"]) == (
        422, "invalid-nameservers")
    assert kit.fake.calls == []  # nothing reached the provider


def test_set_ns_writes_reads_back_and_skips_an_identical_write(client, kit):
    answer = post(client, kit, "set-ns", domain=DOMAIN, token=kit.token,
                  nameservers=[n.upper() for n in NEW_NS] + [NEW_NS[0]])
    body = answer.get_json()
    if not kit.can_set:
        assert answer.status_code == 422 and body["error"] == "unsupported-operation"
        return
    assert answer.status_code == 200, body
    assert body["success"] is True and body["requested"] == NEW_NS and body["written"] is True
    assert body["propagation"].startswith(kit.name)
    if kit.applies_later:
        assert body["appliesLater"] is True and body["note"]
    else:
        assert body["readBack"] == NEW_NS and body["matches"] is True and body["nameservers"] == NEW_NS
        again = post(client, kit, "set-ns", domain=DOMAIN, token=kit.token, nameservers=NEW_NS).get_json()
        assert again["written"] is False and again["matches"] is True


def test_every_attempt_is_in_the_history_without_the_token(client, kit):
    post(client, kit, "validate", domain=DOMAIN, token=kit.token)
    post(client, kit, "validate", domain=DOMAIN, token=kit.bad_token)
    post(client, kit, "set-ns", domain=DOMAIN, token=kit.token, nameservers=NEW_NS)
    history = client.get(f"/api/v1/registrar/{kit.name}/history?domain={DOMAIN}").get_json()
    events = [(e["action"], e["detail"].split()[0]) for e in history["events"]]
    assert events[1:] == [("validate", "outcome=invalid-token"), ("validate", "outcome=ok")]
    assert events[0][0] == "set-ns" and all(e["caller"] == "anonymous" and e["domain"] == DOMAIN
                                            for e in history["events"])
    text = str(history)
    assert all(secret not in text for secret in kit.secrets)


def test_the_token_never_leaks(client, kit, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    bodies = [
        post(client, kit, "validate", domain=DOMAIN, token=kit.token),
        post(client, kit, "validate", domain=DOMAIN, token=kit.bad_token),
        post(client, kit, "validate", domain="not-mine-" + DOMAIN, token=kit.token),
        post(client, kit, "set-ns", domain=DOMAIN, token=kit.token, nameservers=NEW_NS),
    ]
    kit.outage()
    bodies.append(post(client, kit, "validate", domain=DOMAIN, token=kit.token))
    kit.fake.clear_faults()
    printed = capsys.readouterr()
    seen = [b.get_data(as_text=True) for b in bodies] + [printed.out, printed.err]
    seen += [r.getMessage() for r in caplog.records]
    for secret in kit.secrets:
        assert not [text for text in seen if secret in text]


def test_dynadot_calls_with_one_key_run_one_at_a_time(db_url, app_factory):
    """The fake refuses a second request with a key while one runs (as Dynadot does); the
    service's per-key lock (a database lock) keeps two flips of one key apart."""
    made = dynadot_kit()
    try:
        second = "other-" + DOMAIN
        key = made.secrets[0]
        made.fake.seed(key, second, OLD_NS)
        app = app_factory(db_url, customer_registrar_urls={"dynadot": made.fake.url})
        made.fake.hold()
        answers = {}

        def flip(name):
            answers[name] = app.test_client().post("/api/v1/registrar/dynadot/set-ns", json={
                "domain": name, "token": made.token, "nameservers": NEW_NS}).status_code

        threads = [threading.Thread(target=flip, args=(name,)) for name in (DOMAIN, second)]
        for t in threads:
            t.start()
        assert made.fake.wait_held(1, 10)
        made.fake.release()
        for t in threads:
            t.join(30)
        assert answers == {DOMAIN: 200, second: 200}
        assert made.fake.nameservers(key, DOMAIN) == NEW_NS and made.fake.nameservers(key, second) == NEW_NS
    finally:
        made.fake.stop()


def test_namecheap_without_the_service_address_says_so(db_url, app_factory):
    """Namecheap checks the caller's address against the customer's allow-list: with no
    PDM_NAMECHEAP_CLIENT_IP there is nothing to tell them, and nothing is sent."""
    made = namecheap_kit()
    try:
        client = app_factory(db_url, customer_registrar_urls={"namecheap": made.fake.url}).test_client()
        answer = client.post("/api/v1/registrar/namecheap/validate", json={"domain": DOMAIN, "token": made.token})
        assert answer.status_code == 503 and answer.get_json()["error"] == "registrar-not-configured"
        assert "PDM_NAMECHEAP_CLIENT_IP" in answer.get_json()["detail"] and made.fake.calls == []
    finally:
        made.fake.stop()


def test_ovh_applies_the_flip_later_and_a_later_flip_sees_it(db_url, app_factory):
    made = ovh_kit()
    try:
        client = app_factory(db_url, customer_registrar_urls={"ovh": made.fake.url}).test_client()
        first = client.post("/api/v1/registrar/ovh/set-ns", json={
            "domain": DOMAIN, "token": made.token, "nameservers": NEW_NS}).get_json()
        assert first["written"] is True and first["readBack"] == OLD_NS and first["matches"] is False
        assert first["appliesLater"] is True and "later" in first["note"]
        made.fake.complete_tasks()
        again = client.post("/api/v1/registrar/ovh/set-ns", json={
            "domain": DOMAIN, "token": made.token, "nameservers": NEW_NS}).get_json()
        assert again["written"] is False and again["matches"] is True and again["readBack"] == NEW_NS
    finally:
        made.fake.stop()


def history_outcomes(client, name):
    events = client.get(f"/api/v1/registrar/{name}/history?domain={DOMAIN}").get_json()["events"]
    return [(e["action"], e["detail"].split()[0]) for e in events]


def test_set_ns_at_a_provider_that_cannot_set_them_is_refused_before_any_call(db_url, app_factory):
    made = cloudflare_kit()
    try:
        made.fake.inject("timeout", 10)  # Cloudflare slow: asking it first would end in a 502 much later
        client = app_factory(db_url, customer_registrar_urls={"cloudflare": made.fake.url}).test_client()
        answer = post(client, made, "set-ns", domain=DOMAIN, token=made.token, nameservers=NEW_NS)
        body = answer.get_json()
        assert answer.status_code == 422 and body["error"] == "unsupported-operation", body
        assert "registrar where" in body["detail"] and body["registrar"] == "cloudflare"
        assert made.fake.calls == []
        assert history_outcomes(client, "cloudflare") == [("set-ns", "outcome=unsupported-operation")]
    finally:
        made.fake.stop()


# Nested far past any parser's recursion limit.
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("name", ["cloudflare", "dynadot", "godaddy", "ovh"])
@pytest.mark.parametrize("operation", ["validate", "set-ns"])
def test_a_deeply_nested_answer_is_a_502_registrar_error_with_a_history_row(db_url, app_factory, name, operation):
    made = KITS[name]()
    try:
        made.fake.inject("raw", 10, status=200, body=DEEP)
        client = app_factory(db_url, customer_registrar_urls={name: made.fake.url}, **made.settings).test_client()
        answer = post(client, made, operation, domain=DOMAIN, token=made.token, nameservers=NEW_NS)
        if operation == "set-ns" and not made.can_set:
            assert answer.status_code == 422  # refused before any call
            return
        body = answer.get_json()
        assert answer.status_code == 502 and body["error"] == "registrar-error", body
        assert history_outcomes(client, name) == [(operation, "outcome=registrar-error")]
    finally:
        made.fake.stop()


@pytest.mark.parametrize("operation", ["validate", "set-ns"])
def test_an_unexpected_exception_in_an_adapter_is_a_logged_502_with_a_history_row(db_url, app_factory, caplog,
                                                                                     operation):
    made = godaddy_kit()
    try:
        app = app_factory(db_url, customer_registrar_urls={"godaddy": made.fake.url})
        adapter = app.extensions["pdm"].nameservers.registry["godaddy"]

        def broken(*args, **kwargs):
            raise KeyError(f"https://api.example/?key={made.token}")

        adapter.validate = broken
        client = app.test_client()
        with caplog.at_level(logging.INFO):
            answer = post(client, made, operation, domain=DOMAIN, token=made.token, nameservers=NEW_NS)
        body = answer.get_json()
        assert answer.status_code == 502 and body["error"] == "registrar-error", body
        assert history_outcomes(client, "godaddy") == [(operation, "outcome=registrar-error")]
        assert "KeyError" in caplog.text
        assert made.token not in caplog.text and "api.example" not in caplog.text and made.token not in str(body)
    finally:
        made.fake.stop()


def test_a_lost_per_key_lock_is_counted_under_its_prefix_alone(postgres_url, caplog):
    """A customer key's lock is named after a hash of the key: the metric of a failed
    release must carry neither that nor any value per customer -- only the prefix."""
    secret = "customer-key-" + uuid.uuid4().hex
    digest = hashlib.sha256(secret.encode()).hexdigest()
    prefix = "pdm-dynadot-customer"
    engine = make_engine(postgres_url)
    before = metrics.LOCK_RELEASE_FAILURES.labels(prefix)._value.get()
    try:
        with caplog.at_level(logging.DEBUG), per_key_lock(engine, prefix)(secret, 5):
            # The lock's session dies while held (a failover, a network drop): its release fails.
            assert terminate_lock_session(postgres_url, f"{prefix}-{digest[:32]}") == [True]
    finally:
        engine.dispose()
    assert metrics.LOCK_RELEASE_FAILURES.labels(prefix)._value.get() == before + 1
    labels = {sample.labels["lock"] for family in metrics.LOCK_RELEASE_FAILURES.collect()
              for sample in family.samples}
    assert all(digest[:8] not in label for label in labels) and prefix in labels
    assert "releasing lock pdm-dynadot-customer failed" in caplog.text
    for derived in (digest[:8], secret, str(advisory_key(f"{prefix}-{digest[:32]}"))):
        assert derived not in caplog.text
