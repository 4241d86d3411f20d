"""The OVH adapter for customers' own domains, against the fake OVH on loopback.

The fake's clock runs an hour ahead of the local one (as a badly set host would see it),
so every signed call here proves that the adapter signs with OVH's time from
``/auth/time``, not its own.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid

import pytest
import requests

from pdm_app.customer_domains.base import (ApiUnavailable, Deadline, DomainNotInAccount, InvalidToken, NotEntitled,
                                           RateLimited, RegistrarFailure)
from pdm_app.testing.fake_ovh import ALL_RIGHTS, FakeOvh
from pdm_app.customer_domains.ovh import OvhRegistrar, sign

AK = "ak" + uuid.uuid4().hex[:14]
AS = "as" + uuid.uuid4().hex
CK = "ck" + uuid.uuid4().hex
TOKEN = f"{AK}:{AS}:{CK}"
ACCOUNT = "xy12345-ovh"
DOMAIN = "acme.com"
OLD_NS = ["dns101.ovh.net", "ns101.ovh.net"]
NEW_NS = ["ns1.omani.works", "ns2.omani.works", "ns3.omani.works"]
FAKE_AHEAD = 3600.0  # the fake's clock is an hour ahead of ours


@pytest.fixture
def fake():
    server = FakeOvh(clock_offset=FAKE_AHEAD)
    server.add_app(AK, AS)
    server.add_consumer(AK, CK, ACCOUNT)
    server.add_domain(ACCOUNT, DOMAIN, OLD_NS, ns_type="hosted")
    server.add_domain(ACCOUNT, "external.org", ["a.ns.example", "b.ns.example"], ns_type="external")
    server.add_domain("someone-else", "foreign.com", ["x.ns.example", "y.ns.example"])
    server.start()
    yield server
    server.stop()


@pytest.fixture
def ovh(fake):
    return OvhRegistrar(fake.url)


def deadline(seconds: float = 12.0) -> Deadline:
    return Deadline(seconds)


def routes(fake: FakeOvh) -> list[str]:
    return [f"{c.method} {c.path}" for c in fake.calls]


def synced(ovh: OvhRegistrar, fake: FakeOvh) -> None:
    """Read OVH's clock now, so later faults hit the call under test, not /auth/time."""
    ovh.validate(DOMAIN, TOKEN, deadline())
    fake.reset_calls()


def test_every_signed_request_carries_the_documented_signature(ovh, fake):
    ovh.validate(DOMAIN, TOKEN, deadline())
    ovh.set_nameservers(DOMAIN, TOKEN, NEW_NS, deadline())
    ovh.get_nameservers(DOMAIN, TOKEN, deadline())
    signed = [c for c in fake.calls if c.route != "time"]
    assert len(signed) == 7  # validate; get, put, post; list + 2 reads
    for c in signed:
        h = c.headers
        url = f"http://127.0.0.1:{fake.port}{c.path}" + (f"?{c.query}" if c.query else "")
        plain = "+".join([AS, CK, c.method, url, c.body.decode(), h["X-Ovh-Timestamp"]])
        assert h["X-Ovh-Signature"] == "$1$" + hashlib.sha1(plain.encode()).hexdigest()
        assert h["X-Ovh-Application"] == AK and h["X-Ovh-Consumer"] == CK
        assert (c.method == "GET") == (c.body == b"")
    post = next(c for c in signed if c.method == "POST")
    assert json.loads(post.body) == {"nameServers": [{"host": h} for h in NEW_NS]}
    assert post.headers["Content-Type"] == "application/json"


def test_signs_with_ovh_clock_read_once(ovh, fake):
    ovh.validate(DOMAIN, TOKEN, deadline())
    ovh.validate(DOMAIN, TOKEN, deadline())
    calls = fake.calls
    assert [c.route for c in calls] == ["time", "domain", "domain"]
    assert not any(name.lower().startswith("x-ovh") for name in calls[0].headers)  # /auth/time is unsigned
    for c in calls[1:]:
        stamp = int(c.headers["X-Ovh-Timestamp"])
        assert abs(stamp - fake.now()) <= 3
        assert abs(stamp - time.time()) > FAKE_AHEAD - 10


def test_fake_refuses_a_local_clock_timestamp(fake):
    """The fake checks the time: signing with the local clock (an hour behind it) fails."""
    url = f"{fake.url}/domain/{DOMAIN}"
    now = int(time.time())
    response = requests.get(url, timeout=5, headers={
        "X-Ovh-Application": AK, "X-Ovh-Consumer": CK, "X-Ovh-Timestamp": str(now),
        "X-Ovh-Signature": sign(AS, CK, "GET", url, "", now)})
    assert response.status_code == 400 and response.json()["errorCode"] == "QUERY_TIME_OUT"
    now = int(fake.now())
    response = requests.get(url, timeout=5, headers={
        "X-Ovh-Application": AK, "X-Ovh-Consumer": CK, "X-Ovh-Timestamp": str(now),
        "X-Ovh-Signature": sign(AS, CK, "GET", url, "", now)})
    assert response.status_code == 200 and response.json()["nameServerType"] == "hosted"


def test_clock_is_read_once_per_adapter_across_threads(fake):
    adapter = OvhRegistrar(fake.url)
    failures: list[BaseException] = []

    def work():
        try:
            adapter.validate(DOMAIN, TOKEN, deadline())
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert failures == []
    assert [c.route for c in fake.calls].count("time") == 1
    assert [c.route for c in fake.calls].count("domain") == 8


def test_a_stale_timestamp_rereads_the_clock_once(ovh, fake):
    synced(ovh, fake)
    fake.clock_offset += 600  # OVH's clock moved (or ours jumped)
    ovh.validate(DOMAIN, TOKEN, deadline())
    assert [c.route for c in fake.calls] == ["domain", "time", "domain"]
    fake.reset_calls()
    fake.inject("stale", times=2, route="domain")
    with pytest.raises(RegistrarFailure) as err:
        ovh.validate(DOMAIN, TOKEN, deadline())
    assert type(err.value) is RegistrarFailure and "time stamp" in err.value.detail
    assert [c.route for c in fake.calls] == ["domain", "time", "domain"]


def test_a_failed_clock_read_is_not_kept(ovh, fake):
    fake.inject("http500", route="time")
    with pytest.raises(ApiUnavailable):
        ovh.validate(DOMAIN, TOKEN, deadline())
    fake.inject("badjson", route="time")
    with pytest.raises(RegistrarFailure) as err:
        ovh.validate(DOMAIN, TOKEN, deadline())
    assert err.value.code == "registrar-error"
    ovh.validate(DOMAIN, TOKEN, deadline())
    assert [c.route for c in fake.calls] == ["time", "time", "time", "domain"]


# -- validate ------------------------------------------------------------------------------

def test_validate_ok_is_one_call_on_the_domain(ovh, fake):
    synced(ovh, fake)
    ovh.validate(DOMAIN, TOKEN, deadline())
    assert routes(fake) == [f"GET /1.0/domain/{DOMAIN}"]


@pytest.mark.parametrize("token", ["", "justone", "a:b", "a::c", " : : ", ":b:c", "a:b:"])
def test_malformed_token_makes_no_call(ovh, fake, token):
    for run in (lambda: ovh.validate(DOMAIN, token, deadline()),
                lambda: ovh.get_nameservers(DOMAIN, token, deadline()),
                lambda: ovh.set_nameservers(DOMAIN, token, NEW_NS, deadline())):
        with pytest.raises(InvalidToken) as err:
            run()
        assert "appKey:appSecret:consumerKey" in err.value.detail and err.value.status == 401
    assert fake.calls == []


@pytest.mark.parametrize("token, words", [
    (f"wrong{AK}:{AS}:{CK}", "application key"),
    (f"{AK}:wrong{AS}:{CK}", "appSecret"),
    (f"{AK}:{AS}:wrong{CK}", "does not know this consumerKey"),
])
def test_wrong_credentials_are_invalid_token(ovh, fake, token, words):
    with pytest.raises(InvalidToken) as err:
        ovh.validate(DOMAIN, token, deadline())
    assert words in err.value.detail and err.value.code == "invalid-token"


@pytest.mark.parametrize("status", ["expired", "pendingValidation", "refused"])
def test_consumer_key_not_validated_is_invalid_token(ovh, fake, status):
    fake.add_consumer(AK, CK, ACCOUNT, status=status)
    with pytest.raises(InvalidToken) as err:
        ovh.validate(DOMAIN, TOKEN, deadline())
    assert "not valid" in err.value.detail
    assert fake.calls[-1].route == "domain"


@pytest.mark.parametrize("fault, cls", [
    ("invalid_key", InvalidToken), ("invalid_credential", InvalidToken), ("not_credential", InvalidToken),
    ("invalid_signature", InvalidToken), ("not_granted", NotEntitled), ("forbidden", NotEntitled),
])
def test_ovh_refusal_codes(ovh, fake, fault, cls):
    synced(ovh, fake)
    fake.inject(fault, route="domain")
    with pytest.raises(cls) as err:
        ovh.validate(DOMAIN, TOKEN, deadline())
    assert type(err.value) is cls
    if cls is NotEntitled:
        assert err.value.status == 403 and "GET, PUT and POST on /domain/*" in err.value.detail
        assert f"GET /domain/{DOMAIN}" in err.value.detail


def test_a_read_only_key_validates_but_cannot_flip(ovh, fake):
    fake.add_consumer(AK, CK, ACCOUNT, rules=(("GET", "/domain/*"),))
    ovh.validate(DOMAIN, TOKEN, deadline())
    assert ovh.get_nameservers(DOMAIN, TOKEN, deadline()) == OLD_NS
    with pytest.raises(NotEntitled) as err:
        ovh.set_nameservers(DOMAIN, TOKEN, NEW_NS, deadline())
    assert f"PUT /domain/{DOMAIN}" in err.value.detail
    assert fake.ns_type(DOMAIN) == "hosted" and fake.tasks() == []


def test_a_full_rights_key_works(ovh, fake):
    fake.add_consumer(AK, CK, ACCOUNT, rules=ALL_RIGHTS)
    ovh.set_nameservers(DOMAIN, TOKEN, NEW_NS, deadline())
    assert len(fake.tasks(DOMAIN)) == 1


@pytest.mark.parametrize("domain", ["foreign.com", "unknown.net"])
def test_domain_not_in_account(ovh, fake, domain):
    for run in (lambda: ovh.validate(domain, TOKEN, deadline()),
                lambda: ovh.get_nameservers(domain, TOKEN, deadline()),
                lambda: ovh.set_nameservers(domain, TOKEN, NEW_NS, deadline())):
        with pytest.raises(DomainNotInAccount) as err:
            run()
        assert err.value.status == 403 and "not in the OVH account" in err.value.detail
    assert fake.tasks() == []
    assert fake.nameservers("foreign.com") == ["x.ns.example", "y.ns.example"]


def test_injected_not_found_is_domain_not_in_account(ovh, fake):
    synced(ovh, fake)
    fake.inject("not_found", route="domain")
    with pytest.raises(DomainNotInAccount):
        ovh.validate(DOMAIN, TOKEN, deadline())


def test_a_404_without_ovh_class_is_not_domain_not_in_account(ovh, fake):
    synced(ovh, fake)
    fake.inject("raw", route="domain", status=404, body='{"message":"Got an invalid (or empty) URL"}')
    with pytest.raises(RegistrarFailure) as err:
        ovh.validate(DOMAIN, TOKEN, deadline())
    assert type(err.value) is RegistrarFailure and "endpoint" in err.value.detail


@pytest.mark.parametrize("retry", [30, None])
def test_rate_limited(ovh, fake, retry):
    synced(ovh, fake)
    fake.inject("rate", route="domain", retry_after=retry)
    with pytest.raises(RateLimited) as err:
        ovh.validate(DOMAIN, TOKEN, deadline())
    assert err.value.retry_after == retry and err.value.status == 429


@pytest.mark.parametrize("fault", ["http500", "drop", "timeout"])
def test_unavailable(ovh, fake, fault):
    synced(ovh, fake)
    fake.inject(fault, route="domain")
    started = time.monotonic()
    with pytest.raises(ApiUnavailable) as err:
        ovh.validate(DOMAIN, TOKEN, deadline(0.5))
    assert time.monotonic() - started < 3
    assert err.value.status == 502 and "OVH's API" in err.value.detail


def test_unreachable(ovh, fake):
    fake.stop()
    with pytest.raises(ApiUnavailable) as err:
        ovh.validate(DOMAIN, TOKEN, deadline(2))
    assert "could not be reached" in err.value.detail


@pytest.mark.parametrize("route, status, body", [
    ("domain", 200, "<html>maintenance</html>"),
    ("domain", 200, '["not", "a", "domain"]'),
    ("nameservers", 200, '{"not": "ids"}'),
    ("nameserver", 200, '{"id": 1}'),
])
def test_malformed_answers_are_registrar_errors(ovh, fake, route, status, body):
    synced(ovh, fake)
    fake.inject("raw", route=route, status=status, body=body)
    with pytest.raises(RegistrarFailure) as err:
        ovh.validate(DOMAIN, TOKEN, deadline())
        ovh.get_nameservers(DOMAIN, TOKEN, deadline())
    assert type(err.value) is RegistrarFailure and "could not read" in err.value.detail


@pytest.mark.parametrize("status, words", [
    (400, "OVH refused the request"), (409, "conflict"), (460, "expired"), (418, "HTTP 418"),
])
def test_other_refusals_are_registrar_errors_with_ovh_words(ovh, fake, status, words):
    synced(ovh, fake)
    message = f"Something about {CK} went wrong"
    fake.inject("raw", route="update", status=status,
                body=json.dumps({"class": "Client::Whatever", "message": message}))
    with pytest.raises(RegistrarFailure) as err:
        ovh.set_nameservers(DOMAIN, TOKEN, NEW_NS, deadline())
    assert type(err.value) is RegistrarFailure and err.value.status == 502
    assert words in err.value.detail and "Something about *** went wrong" in err.value.detail
    assert CK not in err.value.detail


# -- nameservers ---------------------------------------------------------------------------

def test_get_nameservers_reads_each_id(ovh, fake):
    fake.add_domain(ACCOUNT, "shouty.io", ["NS1.Example.NET.", "ns2.example.net"], ns_type="external")
    synced(ovh, fake)
    assert ovh.get_nameservers("shouty.io", TOKEN, deadline()) == ["ns1.example.net", "ns2.example.net"]
    assert [c.route for c in fake.calls] == ["nameservers", "nameserver", "nameserver"]


def test_get_nameservers_respects_the_deadline(ovh, fake):
    fake.add_domain(ACCOUNT, "many.io", [f"ns{i}.example.net" for i in range(13)], ns_type="external")
    synced(ovh, fake)
    fake.inject("timeout", route="nameserver", times=20)
    started = time.monotonic()
    with pytest.raises(ApiUnavailable):
        ovh.get_nameservers("many.io", TOKEN, deadline(0.6))
    assert time.monotonic() - started < 3
    assert [c.route for c in fake.calls] == ["nameservers", "nameserver"]


def test_set_switches_hosted_to_external_then_updates_async(ovh, fake):
    synced(ovh, fake)
    ovh.set_nameservers(DOMAIN, TOKEN, NEW_NS, deadline(25))
    calls = fake.calls
    assert [f"{c.method} {c.path}" for c in calls] == [
        f"GET /1.0/domain/{DOMAIN}", f"PUT /1.0/domain/{DOMAIN}", f"POST /1.0/domain/{DOMAIN}/nameServers/update"]
    assert json.loads(calls[1].body) == {"nameServerType": "external"}
    assert fake.ns_type(DOMAIN) == "external"
    # Accepted, not applied: OVH carries the task out later.
    assert [t["status"] for t in fake.tasks(DOMAIN)] == ["todo"]
    assert ovh.get_nameservers(DOMAIN, TOKEN, deadline()) == OLD_NS
    assert [t["status"] for t in fake.complete_tasks()] == ["done"]
    assert ovh.get_nameservers(DOMAIN, TOKEN, deadline()) == NEW_NS
    assert fake.nameservers(DOMAIN) == NEW_NS


def test_set_on_external_domain_skips_the_switch(ovh, fake):
    synced(ovh, fake)
    ovh.set_nameservers("external.org", TOKEN, NEW_NS, deadline(25))
    assert [c.route for c in fake.calls] == ["domain", "update"]


def test_submit_returns_the_task_and_its_status_can_be_read(ovh, fake):
    task = ovh.submit_nameservers(DOMAIN, TOKEN, NEW_NS, deadline(25))
    assert task["status"] == "todo" and isinstance(task["id"], int)
    assert ovh.task_status(DOMAIN, TOKEN, task["id"], deadline()) == "todo"
    fake.complete_tasks()
    assert ovh.task_status(DOMAIN, TOKEN, task["id"], deadline()) == "done"


def test_a_task_that_ends_in_error_changes_nothing(ovh, fake):
    fake.inject("task_error", route="update")
    task = ovh.submit_nameservers(DOMAIN, TOKEN, NEW_NS, deadline(25))  # accepted
    assert [t["status"] for t in fake.complete_tasks()] == ["error"]
    assert ovh.task_status(DOMAIN, TOKEN, task["id"], deadline()) == "error"
    assert ovh.get_nameservers(DOMAIN, TOKEN, deadline()) == OLD_NS


def test_a_task_failed_at_once_is_a_registrar_error(ovh, fake):
    synced(ovh, fake)
    fake.inject("raw", route="update", status=200, body='{"id": 7, "status": "error", "function": "DomainDnsUpdate"}')
    with pytest.raises(RegistrarFailure) as err:
        ovh.set_nameservers(DOMAIN, TOKEN, NEW_NS, deadline(25))
    assert type(err.value) is RegistrarFailure and "task failed" in err.value.detail


def test_fake_is_strict(fake):
    base = fake.url

    def signed(method: str, path: str, body: str = "", ctype: str = "application/json", send: str | None = None):
        url = base + path
        now = int(fake.now())
        headers = {"X-Ovh-Application": AK, "X-Ovh-Consumer": CK, "X-Ovh-Timestamp": str(now),
                   "X-Ovh-Signature": sign(AS, CK, method, url, body, now)}
        if body:
            headers["Content-Type"] = ctype
        return requests.request(method, url, headers=headers, data=(send if send is not None else body).encode(),
                                timeout=5)

    assert requests.get(f"{base}/auth/time", timeout=5).json() == pytest.approx(fake.now(), abs=2)
    assert requests.get(f"{base}/domain/{DOMAIN}", timeout=5).json()["errorCode"] == "INVALID_KEY"
    assert signed("GET", "/domain").json() == ["acme.com", "external.org"]
    # the signature covers the exact bytes sent
    tampered = signed("PUT", f"/domain/{DOMAIN}", '{"nameServerType":"external"}', send='{"nameServerType":"hosted"}')
    assert tampered.status_code == 400 and tampered.json()["errorCode"] == "INVALID_SIGNATURE"
    # hosted DNS must be switched to external before an update
    update = '{"nameServers":[{"host":"ns1.omani.works"},{"host":"ns2.omani.works"}]}'
    assert signed("POST", f"/domain/{DOMAIN}/nameServers/update", update).status_code == 400
    for bad in ('{"nameServers":["ns1.omani.works"]}', '{"nameservers":[{"host":"ns1.omani.works"}]}',
                '{"nameServers":[{"host":"NS1.bad_host"}]}', '{"nameServers":[]}'):
        assert signed("POST", "/domain/external.org/nameServers/update", bad).status_code == 400
    assert signed("PUT", f"/domain/{DOMAIN}", '{"offer":"platinum"}').status_code == 400
    assert signed("PUT", f"/domain/{DOMAIN}", '{"nameServerType":"external"}', ctype="text/plain").status_code == 400
    assert signed("GET", "/domain?whois=1").status_code == 400
    assert signed("DELETE", f"/domain/{DOMAIN}").status_code == 404
    assert signed("GET", "/domain/foreign.com").json()["class"] == "Client::NotFound"


# -- logs and secrets ----------------------------------------------------------------------

def test_one_log_line_per_operation(ovh, fake, caplog):
    caplog.set_level(logging.INFO, logger="pdm_app.customer_domains.ovh")
    ovh.validate(DOMAIN, TOKEN, deadline())
    with pytest.raises(DomainNotInAccount):
        ovh.validate("foreign.com", TOKEN, deadline())
    ovh.set_nameservers(DOMAIN, TOKEN, NEW_NS, deadline(25))
    lines = [r.getMessage() for r in caplog.records if r.name == "pdm_app.customer_domains.ovh"]
    assert lines == [f"ovh validate {DOMAIN}: ok", "ovh validate foreign.com: domain-not-in-account",
                     f"ovh set-ns {DOMAIN}: ok"]


def test_the_token_never_leaks(fake, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    ovh = OvhRegistrar(fake.url)
    assert TOKEN not in repr(ovh)
    results: list[object] = []
    errors: list[RegistrarFailure] = []

    def attempt(run):
        try:
            results.append(run())
        except RegistrarFailure as exc:
            errors.append(exc)

    every = (lambda: ovh.validate(DOMAIN, TOKEN, deadline(0.5)),
             lambda: ovh.get_nameservers(DOMAIN, TOKEN, deadline(0.5)),
             lambda: ovh.set_nameservers(DOMAIN, TOKEN, NEW_NS, deadline(0.5)),
             lambda: ovh.submit_nameservers("external.org", TOKEN, NEW_NS, deadline(0.5)))
    for run in every:
        attempt(run)
    attempt(lambda: ovh.task_status(DOMAIN, TOKEN, 5001, deadline(1)))
    for fault in ("http500", "drop", "timeout", "badjson", "rate", "stale", "invalid_key", "invalid_credential",
                  "not_credential", "not_granted", "forbidden", "invalid_signature", "not_found"):
        for run in every:
            fake.inject(fault, times=3)
            attempt(run)
            fake.clear_faults()
    fake.inject("raw", times=100, status=409, body=json.dumps({"message": f"echo {TOKEN} {AS} {AK} {CK}"}))
    for run in every:
        attempt(run)
    fake.clear_faults()
    for token in ("bad", f"x{AK}:{AS}:{CK}", f"{AK}:x{AS}:{CK}", f"{AK}:{AS}:x{CK}"):
        attempt(lambda: ovh.validate(DOMAIN, token, deadline(1)))
    attempt(lambda: ovh.validate("foreign.com", TOKEN, deadline(1)))
    fake.stop()
    attempt(lambda: ovh.validate(DOMAIN, TOKEN, deadline(1)))

    assert len(errors) > 50 and results
    for exc in errors:
        for text in (str(exc), repr(exc), exc.detail, repr(exc.args)):
            for secret in (TOKEN, AS, CK, AK):
                assert secret not in text
        assert exc.__cause__ is None and (exc.__suppress_context__ or exc.__context__ is None)
    for value in results:
        for secret in (TOKEN, AS, CK, AK):
            assert secret not in repr(value)
    assert any("urllib3" in r.name for r in caplog.records)
    for secret in (TOKEN, AS, CK, AK):
        assert secret not in caplog.text
    printed = capsys.readouterr()
    for secret in (TOKEN, AS, CK, AK):
        assert secret not in printed.out and secret not in printed.err
    # Sent only where OVH needs it: the application key and consumer key in their headers;
    # the application secret never (only its signature).
    calls = fake.calls
    assert calls
    for c in calls:
        wire = json.dumps([c.method, c.path, c.query, c.body.decode("utf-8", "replace")])
        for secret in (TOKEN, AS, CK, AK):
            assert secret not in wire
        for name, value in c.headers.items():
            assert AS not in value and TOKEN not in value
            if name.lower() != "x-ovh-application":
                assert AK not in value
            if name.lower() != "x-ovh-consumer":
                assert CK not in value
