"""DynadotRegistrar (a customer's own Dynadot account) against the fake api3.json on
loopback: every success and error class, the per-key lock (Dynadot serves one request at
a time per key), and the key and secret never leaking.

No assertion depends on how fast this machine is: overlapping requests are arranged with
the fake's ``hold()`` and waited for with events; timeouts passed to waits are safety nets."""
from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid

import pytest
import requests

from pdm_app.customer_domains.base import (ApiUnavailable, Deadline, DomainNotInAccount, InvalidToken, NotEntitled,
                                           RateLimited, RegistrarFailure)
from pdm_app.customer_domains.dynadot import DynadotRegistrar, LocalKeyLocks
from pdm_app.testing.fake_dynadot_ns import CONCURRENT, INVALID_FIELD, NOT_IN_ACCOUNT, FakeDynadot
from unit.test_customer_dynadot import KEY, OTHER_KEY

SECRET = "ds-" + uuid.uuid4().hex
TOKEN = f"{KEY}:{SECRET}"
DOMAIN = "acme-example.com"
OLD = ["ns1.oldhost.net", "ns2.oldhost.net"]
NEW = ["ns1.pool-dns.net", "ns2.pool-dns.net"]
WAIT = 10.0  # safety net for waits on events


def long() -> Deadline:
    return Deadline(10)


@pytest.fixture
def fake():
    server = FakeDynadot().start()
    server.hang_seconds = 30  # stop() (the teardown) lets a held request go at once
    server.seed(KEY, DOMAIN, OLD)
    for host in NEW:
        server.register_host(KEY, host)
    yield server
    server.stop()


@pytest.fixture
def registrar(fake):
    return DynadotRegistrar(fake.url, key_lock=LocalKeyLocks())


def raw(fake, **params) -> requests.Response:
    return requests.get(fake.url, params=params, timeout=5)


def domain_info_answer(settings: str, head: str = '"ResponseCode": 0, "Status": "success"') -> str:
    return (f'{{"DomainInfoResponse": {{{head}, "DomainInfo": {{"Name": "{DOMAIN}", '
            f'"NameServerSettings": {settings}}}}}}}')


@pytest.mark.parametrize("token", [TOKEN, KEY, f"  {KEY}  ", f"{KEY}:{SECRET}:extra"])
def test_validate_ok_sends_the_key_and_never_the_secret(registrar, fake, token):
    assert registrar.validate(DOMAIN, token, long()) is None
    [call] = fake.calls
    assert call.method == "GET" and call.path == "/api3.json"
    assert call.pairs == [("key", KEY), ("command", "domain_info"), ("domain", DOMAIN)]
    assert SECRET not in repr(call)


@pytest.mark.parametrize("token", ["", "   ", ":", f":{SECRET}", f"{KEY}:", "  :  "])
def test_malformed_token_is_refused_without_a_request(registrar, fake, token):
    for operation in (lambda: registrar.validate(DOMAIN, token, long()),
                      lambda: registrar.get_nameservers(DOMAIN, token, long()),
                      lambda: registrar.set_nameservers(DOMAIN, token, NEW, long())):
        with pytest.raises(InvalidToken) as err:
            operation()
        assert "API_KEY or API_KEY:API_SECRET" in err.value.detail
    assert fake.calls == []


def test_wrong_key_is_an_invalid_token(fake):
    adapter = DynadotRegistrar(fake.url, key_lock=LocalKeyLocks())
    with pytest.raises(InvalidToken) as err:
        adapter.validate(DOMAIN, "wrong-" + KEY, long())
    assert err.value.status == 401 and "API key" in err.value.detail
    fake.inject("invalid_key")
    with pytest.raises(InvalidToken):
        adapter.validate(DOMAIN, TOKEN, long())


@pytest.mark.parametrize("status", [401, 403])
def test_http_401_and_403_are_an_invalid_token(registrar, fake, status):
    fake.inject("raw", status=status, body="<html>denied</html>")
    with pytest.raises(InvalidToken):
        registrar.validate(DOMAIN, TOKEN, long())


def test_domain_not_in_account(registrar, fake):
    fake.seed(OTHER_KEY, "elsewhere.com", OLD)  # someone else's domain
    for operation in (lambda: registrar.validate("elsewhere.com", TOKEN, long()),
                      lambda: registrar.get_nameservers("elsewhere.com", TOKEN, long()),
                      lambda: registrar.set_nameservers("elsewhere.com", TOKEN, NEW, long())):
        with pytest.raises(DomainNotInAccount) as err:
            operation()
        assert err.value.status == 403 and "elsewhere.com" in err.value.detail
    assert fake.nameservers(OTHER_KEY, "elsewhere.com") == OLD
    # Dynadot's other wordings, matched before anything else
    for text in ("could not find acme-example.com in your account", "Domain not in your account",
                 "could not find domain in your account; invalid key"):
        fake.inject("raw", body=f'{{"DomainInfoResponse": {{"ResponseCode": "-1", "Status": "error", '
                                f'"Error": "{text}"}}}}')
        with pytest.raises(DomainNotInAccount):
            registrar.validate(DOMAIN, TOKEN, long())


def test_throttle_is_rate_limited_for_a_minute(registrar, fake):
    fake.inject("throttle")
    with pytest.raises(RateLimited) as err:
        registrar.validate(DOMAIN, TOKEN, long())
    assert err.value.status == 429 and err.value.retry_after == 60
    fake.inject("raw", status=429, body="slow down")
    with pytest.raises(RateLimited) as err:
        registrar.validate(DOMAIN, TOKEN, long())
    assert err.value.retry_after == 60


def test_http_429_retry_after_header_is_kept(registrar, fake, monkeypatch):
    original = fake._send

    def with_header(h, status, body, ctype):
        if status == 429:
            h.send_response(429)
            h.send_header("Retry-After", "17")
            h.send_header("Content-Length", "0")
            h.end_headers()
            fake._done(h)
            return None
        return original(h, status, body, ctype)

    monkeypatch.setattr(fake, "_send", with_header)
    fake.inject("raw", status=429)
    with pytest.raises(RateLimited) as err:
        registrar.validate(DOMAIN, TOKEN, long())
    assert err.value.retry_after == 17


@pytest.mark.parametrize("fault", ["http500", "reset", "system_busy", "main_server", "concurrent"])
@pytest.mark.parametrize("route", ["domain_info", "set_ns"])
def test_unavailable_then_recovers(registrar, fake, fault, route):
    fake.inject(fault, times=5, route=route)
    operation = (lambda: registrar.validate(DOMAIN, TOKEN, long())) if route == "domain_info" \
        else (lambda: registrar.set_nameservers(DOMAIN, TOKEN, NEW, long()))
    with pytest.raises(ApiUnavailable) as err:
        operation()
    assert err.value.status == 502 and "try again" in err.value.detail
    if fault == "concurrent":
        assert "another request" in err.value.detail
    assert fake.nameservers(KEY, DOMAIN) == OLD  # a failed write changed nothing
    fake.clear_faults()
    operation()


def test_timeout_is_bounded_by_the_deadline(registrar, fake):
    fake.inject("timeout", route="set_ns")
    with pytest.raises(ApiUnavailable) as err:
        registrar.set_nameservers(DOMAIN, TOKEN, NEW, Deadline(0.4))
    assert "did not answer in time" in err.value.detail
    # The client gave up on its deadline while the fake still holds the request.
    assert fake.in_flight == 1 and fake.commands() == ["set_ns"]
    # ... and Dynadot, still busy with it, refuses the next request with this key.
    with pytest.raises(ApiUnavailable) as err:
        registrar.validate(DOMAIN, TOKEN, long())
    assert "another request" in err.value.detail


def test_connection_refused_is_unavailable(registrar, fake):
    fake.stop()
    with pytest.raises(ApiUnavailable) as err:
        registrar.validate(DOMAIN, TOKEN, Deadline(2))
    assert "could not be reached" in err.value.detail
    fake.start()
    registrar.validate(DOMAIN, TOKEN, long())


def test_spent_deadline_makes_no_request(registrar, fake):
    with pytest.raises(ApiUnavailable):
        registrar.validate(DOMAIN, TOKEN, Deadline(0))
    assert fake.calls == []


@pytest.mark.parametrize("status, body", [
    (200, None),  # badjson: an HTML page at 200
    (200, '["not", "an", "envelope"]'),
    (200, '{"Something": {"Status": "success"}}'),
    (404, "<html>Not Found</html>"),
    (302, ""),
])
def test_unreadable_or_unexpected_answers_are_a_registrar_error(registrar, fake, status, body):
    if body is None:
        fake.inject("badjson")
    else:
        fake.inject("raw", status=status, body=body)
    with pytest.raises(RegistrarFailure) as err:
        registrar.validate(DOMAIN, TOKEN, long())
    assert type(err.value) is RegistrarFailure
    assert err.value.code == "registrar-error" and err.value.status == 502


def test_unknown_refusal_quotes_dynadot_without_the_key(registrar, fake):
    fake.inject("raw", body='{"DomainInfoResponse": {"ResponseCode": "-1", "Status": "error", '
                            f'"Error": "Your account {KEY} is suspended, secret {SECRET}"}}}}')
    with pytest.raises(RegistrarFailure) as err:
        registrar.validate(DOMAIN, TOKEN, long())
    assert type(err.value) is RegistrarFailure
    assert err.value.detail == "Dynadot refused the request: Your account [redacted] is suspended, secret [redacted]"


def test_ip_allow_list_refusal_says_what_to_do(registrar, fake):
    fake.inject("raw", body='{"Response": {"ResponseCode": "-1", "Status": "error", '
                            '"Error": "The IP address is not in the API whitelist"}}')
    with pytest.raises(NotEntitled) as err:
        registrar.validate(DOMAIN, TOKEN, long())
    assert "allow-list" in err.value.detail


# -- get ------------------------------------------------------------------------------------

def test_get_nameservers_reads_domain_info(registrar, fake):
    assert registrar.get_nameservers(DOMAIN, TOKEN, long()) == OLD
    assert fake.commands() == ["domain_info"]


def test_get_nameservers_lower_cases_and_drops_padding(registrar, fake):
    fake.inject("raw", body=domain_info_answer(
        '{"Type": "Name Servers", "NameServers": [{"ServerId": "1", "ServerName": "NS2.Example.NET."}, '
        '{"ServerId": "2", "ServerName": "ns1.example.net"}, {"ServerId": "", "ServerName": ""}]}',
        head='"ResponseCode": 0'))  # no Status: seen live, still a success
    assert registrar.get_nameservers(DOMAIN, TOKEN, long()) == ["ns2.example.net", "ns1.example.net"]
    # the old service's invented ResponseHeader wrapper is tolerated too
    fake.inject("raw", body=domain_info_answer(
        '{"Type": "Name Servers", "NameServers": [{"ServerName": "a.example.net"}, {"ServerName": "b.example.net"}]}',
        head='"ResponseHeader": {"ResponseCode": "0", "Status": "success"}'))
    assert registrar.get_nameservers(DOMAIN, TOKEN, long()) == ["a.example.net", "b.example.net"]


@pytest.mark.parametrize("ns_type", ["Dynadot Parking", "Dynadot DNS"])
def test_get_nameservers_of_a_domain_on_dynadot_asks_get_ns(registrar, fake, ns_type):
    fake.seed(KEY, DOMAIN, None, ns_type=ns_type)
    assert registrar.get_nameservers(DOMAIN, TOKEN, long()) == ["ns1.dyna-ns.net", "ns2.dyna-ns.net"]
    assert fake.commands() == ["domain_info", "get_ns"]
    assert fake.calls[1].query == {"key": KEY, "command": "get_ns", "domain": DOMAIN}


def test_get_nameservers_that_cannot_be_read_is_a_registrar_error(registrar, fake):
    fake.inject("raw", route="domain_info", body=domain_info_answer('{"Type": "Dynadot DNS"}'))
    fake.inject("raw", route="get_ns", body='{"GetNsResponse": {"ResponseCode": 0, "Status": "success"}}')
    with pytest.raises(RegistrarFailure) as err:
        registrar.get_nameservers(DOMAIN, TOKEN, long())
    assert type(err.value) is RegistrarFailure and DOMAIN in err.value.detail


def test_a_host_index_that_is_no_number_is_skipped_not_an_exception(registrar, fake):
    # "Host³": str.isdigit() says yes to "³", int() does not.
    fake.inject("raw", route="domain_info", body=domain_info_answer('{"Type": "Dynadot DNS"}'))
    fake.inject("raw", route="get_ns", body='{"GetNsResponse": {"ResponseCode": 0, "Status": "success", '
                                            '"NsContent": {"Host\u00b3": "ns9.example.net", '
                                            '"Host0": "ns1.example.net", "Host1": "ns2.example.net"}}}')
    assert registrar.get_nameservers(DOMAIN, TOKEN, long()) == ["ns1.example.net", "ns2.example.net"]


def test_a_deeply_nested_answer_is_a_registrar_error(registrar, fake):
    fake.inject("raw", body="[" * 100_000 + "]" * 100_000)
    with pytest.raises(RegistrarFailure) as err:
        registrar.validate(DOMAIN, TOKEN, long())
    assert err.value.code == "registrar-error"


def test_an_answer_past_the_size_cap_is_a_registrar_error(registrar, fake):
    fake.inject("raw", body=domain_info_answer('{"Type": "Name Servers", "NameServers": []}') + " " * (2 << 20))
    with pytest.raises(RegistrarFailure) as err:
        registrar.validate(DOMAIN, TOKEN, long())
    assert err.value.code == "registrar-error" and "larger" in err.value.detail


def test_a_trickled_answer_is_cut_at_the_deadline_and_the_key_let_go(fake):
    """40 bytes a second for a minute: each read gets bytes in time, so only a deadline on
    the whole call ends it -- and with it the hold on the key's lock."""
    locks = LocalKeyLocks()
    registrar = DynadotRegistrar(fake.url, key_lock=locks)
    fake.inject("trickle")
    with pytest.raises(ApiUnavailable):
        registrar.validate(DOMAIN, TOKEN, Deadline(1.0))
    assert len(locks) == 0
    end = time.monotonic() + 30  # safety net: the fake records the cut when its next write fails
    while not fake.trickled and time.monotonic() < end:
        time.sleep(0.05)
    assert fake.trickled and fake.trickled[0] < fake.trickle_length // 4
    assert registrar.validate(DOMAIN, TOKEN, long()) is None


# -- set ------------------------------------------------------------------------------------

def test_set_nameservers_then_read_back(registrar, fake):
    registrar.set_nameservers(DOMAIN, TOKEN, NEW, long())
    call = fake.calls[-1]
    assert call.pairs == [("key", KEY), ("command", "set_ns"), ("domain", DOMAIN), ("ns0", NEW[0]), ("ns1", NEW[1])]
    assert fake.nameservers(KEY, DOMAIN) == NEW
    # Dynadot reports the list back as set, in order
    assert registrar.get_nameservers(DOMAIN, TOKEN, long()) == NEW


def test_set_thirteen_nameservers_from_dynadot_parking(registrar, fake):
    hosts = [f"ns{i}.pool-dns.net" for i in range(13)]
    for host in hosts:
        fake.register_host(KEY, host)
    fake.seed(KEY, DOMAIN, None)
    registrar.set_nameservers(DOMAIN, TOKEN, hosts, long())
    assert fake.calls[-1].query["ns12"] == hosts[12]
    assert fake.ns_type(KEY, DOMAIN) == "Name Servers"
    assert registrar.get_nameservers(DOMAIN, TOKEN, long()) == hosts


def test_set_with_a_host_unknown_to_the_account_says_to_register_it(registrar, fake):
    wanted = ["ns1.unknown-dns.net", NEW[0]]
    with pytest.raises(RegistrarFailure) as err:
        registrar.set_nameservers(DOMAIN, TOKEN, wanted, long())
    assert type(err.value) is RegistrarFailure and err.value.status == 502
    assert "ns1.unknown-dns.net" in err.value.detail and NEW[0] not in err.value.detail
    assert "register" in err.value.detail and "Dynadot account first" in err.value.detail
    assert fake.nameservers(KEY, DOMAIN) == OLD
    assert fake.commands() == ["set_ns"]  # nothing registered on the person's behalf
    fake.inject("unknown_host")
    with pytest.raises(RegistrarFailure) as err:
        registrar.set_nameservers(DOMAIN, TOKEN, NEW, long())
    assert NEW[0] in err.value.detail


def test_too_many_nameservers_are_never_sent(registrar, fake):
    with pytest.raises(RegistrarFailure):
        registrar.set_nameservers(DOMAIN, TOKEN, [f"ns{i}.pool-dns.net" for i in range(14)], long())
    assert fake.calls == []


# -- the per-key lock -------------------------------------------------------------------------

def run_in_thread(operation) -> tuple[threading.Thread, list]:
    results: list = []

    def target():
        try:
            results.append(operation())
        except BaseException as exc:  # surfaced by the test
            results.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, results


def test_same_key_requests_are_serialised_so_both_succeed(registrar, fake):
    fake.hold()
    first, first_result = run_in_thread(lambda: registrar.get_nameservers(DOMAIN, TOKEN, long()))
    try:
        assert fake.wait_held(1, WAIT)
        second, second_result = run_in_thread(lambda: registrar.validate(DOMAIN, TOKEN, long()))
        time.sleep(0.2)  # give the second a chance to jump the queue (it must not)
        assert fake.commands() == ["domain_info"]
    finally:
        fake.release()
    first.join(WAIT)
    second.join(WAIT)
    assert first_result == [OLD] and second_result == [None]
    assert fake.commands() == ["domain_info", "domain_info"]
    assert fake.refused_concurrent == 0 and fake.max_in_flight_per_key == 1


def test_without_the_lock_dynadot_refuses_the_second_request(fake):
    unlocked = DynadotRegistrar(fake.url, key_lock=lambda key, timeout: contextlib.nullcontext())
    fake.hold()
    first, first_result = run_in_thread(lambda: unlocked.get_nameservers(DOMAIN, TOKEN, long()))
    try:
        assert fake.wait_held(1, WAIT)
        with pytest.raises(ApiUnavailable) as err:
            unlocked.validate(DOMAIN, TOKEN, long())
        assert "another request" in err.value.detail
    finally:
        fake.release()
    first.join(WAIT)
    assert first_result == [OLD] and fake.refused_concurrent == 1


def test_waiting_for_the_lock_is_bounded_by_the_deadline(registrar, fake):
    fake.hold()
    first, first_result = run_in_thread(lambda: registrar.set_nameservers(DOMAIN, TOKEN, NEW, long()))
    try:
        assert fake.wait_held(1, WAIT)
        with pytest.raises(ApiUnavailable) as err:
            registrar.validate(DOMAIN, TOKEN, Deadline(0.3))
        assert err.value.detail == "another request with this Dynadot API key is still running; try again in a minute"
        assert fake.commands() == ["set_ns"]  # the second never went out
    finally:
        fake.release()
    first.join(WAIT)
    assert first_result == [None] and fake.nameservers(KEY, DOMAIN) == NEW


def test_different_keys_run_side_by_side(registrar, fake):
    fake.seed(OTHER_KEY, "other-example.com", OLD)
    fake.hold()
    first, first_result = run_in_thread(lambda: registrar.validate(DOMAIN, TOKEN, long()))
    second, second_result = run_in_thread(lambda: registrar.validate("other-example.com", OTHER_KEY, long()))
    try:
        assert fake.wait_held(2, WAIT)
    finally:
        fake.release()
    first.join(WAIT)
    second.join(WAIT)
    assert first_result == [None] and second_result == [None] and fake.max_in_flight == 2


def test_key_lock_contract(fake):
    seen: list[tuple[str, float]] = []
    calls_while_held: list[int] = []

    @contextlib.contextmanager
    def held(before: int):
        yield
        calls_while_held.append(len(fake.calls) - before)

    def key_lock(api_key: str, timeout: float):
        seen.append((api_key, timeout))
        return held(len(fake.calls))

    adapter = DynadotRegistrar(fake.url, key_lock=key_lock)
    adapter.validate(DOMAIN, TOKEN, Deadline(5))
    adapter.set_nameservers(DOMAIN, TOKEN, NEW, Deadline(5))
    fake.seed(KEY, DOMAIN, None)
    adapter.get_nameservers(DOMAIN, TOKEN, Deadline(5))
    assert [key for key, _ in seen] == [KEY] * 3  # the key alone: never the secret or the token
    assert all(0 < timeout <= 5 for _, timeout in seen)
    assert calls_while_held == [1, 1, 2]  # every call of an operation made under one hold

    def refusing(api_key: str, timeout: float):
        raise TimeoutError("busy elsewhere")

    fake.reset_calls()
    with pytest.raises(ApiUnavailable) as err:
        DynadotRegistrar(fake.url, key_lock=refusing).validate(DOMAIN, TOKEN, long())
    assert "another request" in err.value.detail and err.value.__context__ is None
    assert fake.calls == []

    @contextlib.contextmanager
    def refusing_on_enter(api_key: str, timeout: float):
        raise TimeoutError("busy elsewhere")
        yield  # pragma: no cover

    with pytest.raises(ApiUnavailable):
        DynadotRegistrar(fake.url, key_lock=refusing_on_enter).validate(DOMAIN, TOKEN, long())
    assert fake.calls == []


# -- the fake's strictness ---------------------------------------------------------------------

@pytest.mark.parametrize("extra", [{"secret": SECRET}, {"api_secret": "x"}, {"ns13": "ns.pool-dns.net"},
                                   {"nameserver0": "ns.pool-dns.net"}])
def test_fake_refuses_unknown_parameters(fake, extra):
    answer = raw(fake, key=KEY, command="set_ns", domain=DOMAIN, ns0=NEW[0], ns1=NEW[1], **extra)
    assert answer.status_code == 200
    assert answer.json() == {"SetNsResponse": {"ResponseCode": "-1", "Status": "error", "Error": INVALID_FIELD}}
    answer = raw(fake, key=KEY, command="domain_info", domain=DOMAIN, **extra)
    assert answer.json()["DomainInfoResponse"]["Error"] == INVALID_FIELD
    assert fake.nameservers(KEY, DOMAIN) == OLD


def test_fake_refuses_bad_keys_methods_paths_gaps_and_commands(fake):
    assert raw(fake, key="nope", command="domain_info", domain=DOMAIN).json() == {
        "Response": {"ResponseCode": "-1", "Status": "error", "Error": "invalid key"}}
    assert raw(fake, command="domain_info", domain=DOMAIN).json()["Response"]["Error"] == "invalid key"
    assert raw(fake, key=KEY, command="delete_everything").json()["Response"]["Status"] == "error"
    assert requests.post(fake.url, params={"key": KEY, "command": "domain_info", "domain": DOMAIN},
                         timeout=5).status_code == 405
    assert requests.get(fake.url.replace("api3.json", "api3.xml"), params={"key": KEY}, timeout=5).status_code == 404
    gap = raw(fake, key=KEY, command="set_ns", domain=DOMAIN, ns0=NEW[0], ns2=NEW[1]).json()
    assert gap["SetNsResponse"]["Status"] == "error"
    assert raw(fake, key=KEY, command="domain_info", domain="nope.com").json() == {
        "DomainInfoResponse": {"ResponseCode": "-1", "Status": "error", "Error": NOT_IN_ACCOUNT}}
    assert fake.nameservers(KEY, DOMAIN) == OLD


def test_fake_register_ns_and_add_ns_make_hosts_usable(fake):
    answer = raw(fake, key=KEY, command="set_ns", domain=DOMAIN, ns0="ns1.glue.acme-example.com",
                 ns1="ns.foreign.net").json()
    assert answer["SetNsResponse"]["Error"] == ("'ns1.glue.acme-example.com' needs to be registered with an ip "
                                                "address before it can be used.")
    assert raw(fake, key=KEY, command="register_ns", host="ns1.glue.acme-example.com",
               ip="192.0.2.10").json()["RegisterNsResponse"]["Status"] == "success"
    assert raw(fake, key=KEY, command="add_ns", host="ns.foreign.net").json()["AddNsResponse"]["Status"] == "success"
    answer = raw(fake, key=KEY, command="set_ns", domain=DOMAIN, ns0="ns1.glue.acme-example.com",
                 ns1="ns.foreign.net").json()
    assert answer == {"SetNsResponse": {"ResponseCode": 0, "Status": "success"}}
    assert fake.nameservers(KEY, DOMAIN) == ["ns1.glue.acme-example.com", "ns.foreign.net"]
    assert fake.known_hosts(KEY)["ns1.glue.acme-example.com"] == ["192.0.2.10"]
    get_ns = raw(fake, key=KEY, command="get_ns", domain=DOMAIN).json()
    assert get_ns["GetNsResponse"]["nsContent"] == {"Host0": "ns1.glue.acme-example.com", "Host1": "ns.foreign.net"}


def test_fake_refuses_a_second_request_with_the_same_key(fake):
    fake.hold()
    first = threading.Thread(target=raw, args=(fake,), kwargs={"key": KEY, "command": "domain_info", "domain": DOMAIN})
    first.start()
    try:
        assert fake.wait_held(1, WAIT)
        answer = raw(fake, key=KEY, command="get_ns", domain=DOMAIN)
        assert answer.status_code == 200
        assert answer.json() == {"GetNsResponse": {"ResponseCode": "-1", "Status": "error", "Error": CONCURRENT}}
    finally:
        fake.release()
    first.join(WAIT)
    assert fake.refused_concurrent == 1 and fake.max_in_flight_per_key == 1
    # one after the other is fine (a request is counted out before its answer is sent)
    session = requests.Session()
    for _ in range(20):
        assert session.get(fake.url, params={"key": KEY, "command": "domain_info", "domain": DOMAIN},
                           timeout=5).json()["DomainInfoResponse"]["Status"] == "success"
    assert fake.refused_concurrent == 1


# -- logs and secrets --------------------------------------------------------------------------

def test_one_log_line_per_operation(registrar, fake, caplog):
    caplog.set_level(logging.INFO, logger="pdm_app.customer_domains.dynadot")
    registrar.validate(DOMAIN, TOKEN, long())
    with pytest.raises(DomainNotInAccount):
        registrar.get_nameservers("elsewhere.com", TOKEN, long())
    with pytest.raises(InvalidToken):
        registrar.set_nameservers(DOMAIN, ":", NEW, long())
    lines = [r.getMessage() for r in caplog.records if r.name == "pdm_app.customer_domains.dynadot"]
    assert lines == [f"dynadot validate {DOMAIN}: ok", "dynadot get-ns elsewhere.com: domain-not-in-account",
                     f"dynadot set-ns {DOMAIN}: invalid-token"]


def test_the_key_and_secret_never_leak(fake, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    registrar = DynadotRegistrar(fake.url, key_lock=LocalKeyLocks())
    errors: list[RegistrarFailure] = []
    returned: list = []

    def attempt(operation):
        try:
            returned.append(operation())
        except RegistrarFailure as exc:
            errors.append(exc)

    operations = [
        lambda: registrar.validate(DOMAIN, TOKEN, Deadline(1)),
        lambda: registrar.get_nameservers(DOMAIN, TOKEN, Deadline(1)),
        lambda: registrar.set_nameservers(DOMAIN, TOKEN, NEW, Deadline(1)),
    ]
    for operation in operations:
        attempt(operation)
    attempt(lambda: registrar.set_nameservers(DOMAIN, TOKEN, ["ns9.unknown-dns.net", NEW[0]], Deadline(1)))
    attempt(lambda: registrar.validate("elsewhere.com", TOKEN, Deadline(1)))
    attempt(lambda: registrar.validate(DOMAIN, f"wrong{KEY}:{SECRET}", Deadline(1)))
    attempt(lambda: registrar.validate(DOMAIN, f":{SECRET}", Deadline(1)))
    for fault in ("http500", "reset", "timeout", "badjson", "throttle", "system_busy", "main_server", "concurrent",
                  "invalid_key", "not_in_account", "unknown_host"):
        fake.inject(fault, times=3)
        for operation in operations:
            attempt(operation)
        fake.clear_faults()
        fake.stop()  # drops a held "timeout" request, so the next fault starts clean
        fake.start()
    fake.inject("raw", body=f'{{"Response": {{"ResponseCode": "-1", "Status": "error", '
                            f'"Error": "odd {KEY} {SECRET}"}}}}')
    attempt(operations[0])
    fake.stop()
    attempt(operations[0])  # connection refused
    fake.start()

    assert len(errors) >= 30 and returned
    for exc in errors:
        for text in (str(exc), repr(exc), repr(exc.args), exc.detail):
            assert KEY not in text and SECRET not in text and "api3.json" not in text
        assert exc.__cause__ is None and exc.__context__ is None
    for value in returned:
        assert KEY not in repr(value) and SECRET not in repr(value)
    assert any(r.name.startswith("urllib3") for r in caplog.records)  # urllib3 did log, masked
    for record in caplog.records:
        assert KEY not in record.getMessage() and SECRET not in record.getMessage()
    assert KEY not in caplog.text and SECRET not in caplog.text
    printed = capsys.readouterr()
    assert KEY not in printed.out + printed.err and SECRET not in printed.out + printed.err
    # on the wire: the key in the `key` parameter only, the secret nowhere
    for call in fake.calls:
        assert SECRET not in repr(call)
        assert all(KEY not in value for name, value in call.pairs if name != "key")
        assert all(KEY not in value for value in call.headers.values()) and KEY not in call.path
        assert call.query.get("key") in (KEY, "wrong" + KEY)
