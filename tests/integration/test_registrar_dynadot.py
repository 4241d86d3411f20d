"""DynadotClient against the fake api3.json on loopback: round trips, refusals, faults,
time budgets, pacing, and the API key never leaking.

Nothing here asserts how long something took on this machine (a loaded CI runner makes
any such bound flaky): a budget is proven by the fake still holding the request the
client gave up on, by the number of attempts the fake saw, or by what the client asked
``time.sleep`` for. Timeouts passed to waits are only safety nets."""
from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest
import requests
import urllib3.util.connection

from pdm_app.dns.zone import Record, Zone
from pdm_app.dns.errors import RegistrarError, UnreadableZone
from pdm_app.dns.dynadot.client import DynadotClient
from pdm_app.testing.fake_dynadot import INVALID_FIELD, FakeDynadot

KEY = "k-" + uuid.uuid4().hex
SECRET = "s-" + uuid.uuid4().hex
DOMAIN = "omani.works"

ZONE = [
    Record("", "a", "185.53.179.128"),
    Record("", "mx", "mx1.mail.example", "10"),
    Record("", "mx", "mx2.mail.example", "20"),
    Record("", "txt", 'v=spf1 include:mail.example ~all "quoted" & a=b;c+d %20'),
    Record("www", "cname", "omani.works"),
    Record("mail", "mx", "mx3.mail.example", "5"),
    Record("_dmarc", "txt", "v=DMARC1; p=none; rua=mailto:dmarc@omani.works"),
    Record("*.acme", "a", "198.51.100.7"),
    Record("_sip._tcp", "srv", "10 5 5060 sip.omani.works"),
]
FAULTS = ["http500", "timeout", "badjson", "error", "throttle", "reset"]


@pytest.fixture
def fake():
    server = FakeDynadot(api_key=KEY).start()
    # A held request stays held far longer than any client budget here; stop() (the
    # teardown) lets it go at once.
    server.hang_seconds = 60
    server.seed(DOMAIN, list(ZONE), ttl=600)
    yield server
    server.stop()


@pytest.fixture
def client(fake):
    return DynadotClient(fake.url, KEY, min_interval=0)


def commands(fake) -> list[str]:
    return [c for c, _ in fake.calls]


def raw(fake, **params) -> dict:
    """A hand-made api3 call, for the fake's own strictness."""
    return requests.get(fake.url, params={"key": KEY, **params}, timeout=5).json()


# -- round trip ---------------------------------------------------------------------------

def test_round_trip_preserves_every_record(client, fake):
    zone = client.get_zone(DOMAIN)
    assert zone.domain == DOMAIN and zone.ttl == 600
    assert zone.records == ZONE  # types lower-cased although the fake answers "A", "MX"
    client.set_zone(zone)
    assert fake.zone(DOMAIN).records == ZONE and fake.zone(DOMAIN).ttl == 600
    assert client.get_zone(DOMAIN) == zone

    command, params = fake.calls[1]
    assert command == "set_dns2"
    assert params["ttl"] == "600" and "add_dns_to_current_setting" not in params
    assert [params[f"main_record_type{i}"] for i in range(4)] == ["a", "mx", "mx", "txt"]
    # recordx carries the MX distance only -- never a TTL
    assert {k: v for k, v in params.items() if "recordx" in k} == {
        "main_recordx1": "10", "main_recordx2": "20", "sub_recordx1": "5"}
    assert params["subdomain3"] == "*.acme" and params["sub_record3"] == "198.51.100.7"


def test_types_compared_case_insensitively_and_hosts_lower_cased(client, fake):
    fake.inject("raw", body='{"GetDnsResponse": {"ResponseCode": 0, "Status": "success", "GetDns": '
                            '{"NameServerSettings": {"Type": "Dynadot DNS", "MainDomains": [{"RecordType": "Mx", '
                            '"Value": "mx.example", "Value2": 10}], "SubDomains": [{"Subhost": "WWW", '
                            '"RecordType": "CNAME", "Value": "Example.com"}], "TTL": 300}}}}')
    zone = client.get_zone(DOMAIN)
    assert zone.records == [Record("", "mx", "mx.example", "10"), Record("www", "cname", "Example.com")]
    assert zone.ttl == 300


def test_set_zone_replaces_the_whole_zone(client, fake):
    client.set_zone(Zone(DOMAIN, [Record("", "a", "192.0.2.1"), Record("api.acme", "a", "192.0.2.2")], ttl=300))
    assert fake.zone(DOMAIN).records == [Record("", "a", "192.0.2.1"), Record("api.acme", "a", "192.0.2.2")]
    assert fake.zone(DOMAIN).ttl == 300


def test_zone_without_ttl_sends_none(client, fake):
    client.set_zone(Zone(DOMAIN, [Record("", "a", "192.0.2.1")], ttl=None))
    assert "ttl" not in fake.calls[-1][1]


def test_empty_lists_are_an_empty_zone_but_missing_lists_are_refused(client, fake):
    fake.seed(DOMAIN, [], ttl=None)
    assert client.get_zone(DOMAIN) == Zone(DOMAIN, [], None)
    for settings in ('{"Type": "Dynadot DNS", "MainDomains": []}',
                     '{"Type": "Dynadot DNS", "MainDomains": [], "SubDomains": null}',
                     '{"Type": "Dynadot DNS", "MainDomains": [{"Value": "1.2.3.4"}], "SubDomains": []}',
                     '{"Type": "Dynadot DNS", "MainDomains": [{"RecordType": "A"}], "SubDomains": []}',
                     '{"Type": "Dynadot DNS", "MainDomains": [], "SubDomains": [{"RecordType": "A", "Value": "x"}]}',
                     '{"Type": "Dynadot DNS", "MainDomains": [], "SubDomains": [], "TTL": "soon"}',
                     # str.isdigit() says yes to a superscript digit; int() does not.
                     '{"Type": "Dynadot DNS", "MainDomains": [], "SubDomains": [], "TTL": "\u00b3"}'):
        fake.inject("raw", body='{"GetDnsResponse": {"ResponseCode": "0", "Status": "success", "GetDns": '
                                f'{{"NameServerSettings": {settings}}}}}}}')
        with pytest.raises(UnreadableZone) as err:
            client.get_zone(DOMAIN)
        assert err.value.transient is False and err.value.reason == "unreadable-zone", settings
    fake.inject("raw", body='{"GetDnsResponse": {"ResponseCode": "0", "Status": "success", "GetDns": {}}}')
    with pytest.raises(UnreadableZone) as err:
        client.get_zone(DOMAIN)
    assert err.value.reason == "unreadable-zone" and "NameServerSettings" in str(err.value)


def test_zone_on_other_name_servers_is_refused(client, fake):
    fake.seed(DOMAIN, list(ZONE), ns_type="Name Servers")
    with pytest.raises(UnreadableZone) as err:
        client.get_zone(DOMAIN)
    assert err.value.transient is False and err.value.reason == "not-dynadot-dns"
    assert "Name Servers" in str(err.value)


def test_unknown_domain_is_an_error_envelope(client):
    with pytest.raises(RegistrarError) as err:
        client.get_zone("not-mine.example")
    assert err.value.transient is False and "not in your account" in str(err.value)


# -- refusals before anything is sent ---------------------------------------------------

@pytest.mark.parametrize("zone", [
    Zone(DOMAIN, [Record("", "a", f"192.0.2.{i}") for i in range(21)], 300),
    Zone(DOMAIN, [Record(f"h{i}", "a", "192.0.2.1") for i in range(101)], 300),
    Zone(DOMAIN, [Record("", "caa", '0 issue "letsencrypt.org"')], 300),
    Zone(DOMAIN, [Record("", "srv", "10 5 5060 sip.example")], 300),  # srv only under a sub-host
    Zone(DOMAIN, [Record("www", "a", "")], 300),
], ids=["21-apex", "101-subhost", "caa", "apex-srv", "no-value"])
def test_unwritable_zone_is_refused_before_any_request(client, fake, zone):
    fake.reset_calls()
    with pytest.raises(RegistrarError) as err:
        client.set_zone(zone)
    assert err.value.transient is False and "nothing sent" in str(err.value)
    assert fake.calls == []
    assert fake.zone(DOMAIN).records == ZONE


def test_limits_are_configurable_and_the_maximum_fits(fake):
    full = Zone(DOMAIN, [Record("", "a", f"192.0.2.{i}") for i in range(20)]
                + [Record(f"h{i}", "a", "192.0.2.1") for i in range(100)], 300)
    DynadotClient(fake.url, KEY, min_interval=0).set_zone(full)  # indices 0..19 and 0..99
    assert fake.zone(DOMAIN).records == full.records
    small = DynadotClient(fake.url, KEY, min_interval=0, max_subhost_records=50)
    fake.reset_calls()
    with pytest.raises(RegistrarError):
        small.set_zone(Zone(DOMAIN, [Record(f"h{i}", "a", "192.0.2.1") for i in range(51)], 300))
    assert fake.calls == []
    with pytest.raises(ValueError):
        DynadotClient(fake.url, KEY, max_apex_records=21)


# -- the fake's strictness ------------------------------------------------------------------

@pytest.mark.parametrize("extra", [
    {"secret": SECRET}, {"api_secret": SECRET}, {"main_record_type20": "a", "main_record20": "192.0.2.1"},
    {"subdomain100": "x", "sub_record_type100": "a", "sub_record100": "192.0.2.1"}, {"main_record_ttl0": "300"},
])
def test_fake_refuses_unknown_parameters(fake, extra):
    answer = raw(fake, command="set_dns2", domain=DOMAIN, main_record_type0="a", main_record0="192.0.2.1", **extra)
    assert answer == {"SetDnsResponse": {"ResponseCode": "-1", "Status": "error", "Error": INVALID_FIELD}}
    assert fake.zone(DOMAIN).records == ZONE


@pytest.mark.parametrize("params", [
    {"main_record_type0": "a"}, {"main_record0": "192.0.2.1"}, {"main_record_type0": "A", "main_record0": "x"},
    {"main_record_type0": "mx", "main_record0": "mx.example"}, {"main_record_type0": "srv", "main_record0": "x"},
    {"subdomain0": "www", "sub_record_type0": "a"},
])
def test_fake_refuses_incomplete_or_invalid_records(fake, params):
    answer = raw(fake, command="set_dns2", domain=DOMAIN, **params)
    assert answer["SetDnsResponse"]["Status"] == "error"
    assert fake.zone(DOMAIN).records == ZONE


def test_fake_refuses_append_without_apex_and_appends_otherwise(fake):
    answer = raw(fake, command="set_dns2", domain=DOMAIN, add_dns_to_current_setting="1",
                 subdomain0="api.acme", sub_record_type0="a", sub_record0="192.0.2.9")
    assert answer["SetDnsResponse"]["Error"] == INVALID_FIELD
    assert fake.zone(DOMAIN).records == ZONE
    for _ in range(2):  # no de-duplication
        answer = raw(fake, command="set_dns2", domain=DOMAIN, add_dns_to_current_setting="1",
                     main_record_type0="a", main_record0="185.53.179.128")
        assert answer == {"SetDnsResponse": {"ResponseCode": 0, "Status": "success"}}
    assert fake.zone(DOMAIN).apex.count(Record("", "a", "185.53.179.128")) == 3


def test_fake_refuses_a_wrong_key_and_unknown_commands(fake):
    answer = requests.get(fake.url, params={"key": "nope", "command": "get_dns", "domain": DOMAIN}, timeout=5)
    assert answer.status_code == 200
    assert answer.json() == {"Response": {"ResponseCode": "-1", "Status": "error", "Error": "invalid key"}}
    assert raw(fake, command="delete_everything")["Response"]["Status"] == "error"


def test_wrong_key_is_a_permanent_error(fake):
    with pytest.raises(RegistrarError) as err:
        DynadotClient(fake.url, "wrong-" + KEY, min_interval=0).get_zone(DOMAIN)
    assert err.value.transient is False and "invalid key" in str(err.value)


# -- faults ------------------------------------------------------------------------------

@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("command", ["get_dns", "set_dns2"])
def test_each_fault_is_a_transient_error_then_recovers(client, fake, fault, command):
    zone = Zone(DOMAIN, [Record("", "a", "192.0.2.1")], 300)
    call = (lambda: client.get_zone(DOMAIN, timeout=2)) if command == "get_dns" \
        else (lambda: client.set_zone(zone, timeout=2))
    fake.inject(fault, times=100)
    with pytest.raises(RegistrarError) as err:
        call()
    if fault == "timeout":
        # The client gave up on its own budget: the fake still holds the request.
        assert fake.in_flight == 1 and commands(fake)[-1] == command
    assert err.value.transient is True
    assert err.value.retry_after == (60.0 if fault == "throttle" else None)
    assert fake.zone(DOMAIN).records == ZONE  # a failed write changed nothing
    fake.clear_faults()
    call()
    if command == "set_dns2":
        assert fake.zone(DOMAIN).records == zone.records


@pytest.mark.parametrize("status, body, transient", [
    (404, "<html>Not Found</html>", False),
    (429, "<html>slow down</html>", True),
    (200, '{"GetDnsResponse": {"ResponseCode": "-1", "Status": "error", "Error": "system_busy"}}', True),
    (200, '{"GetDnsResponse": {"ResponseCode": "-1", "Status": "error", "Error": "Invalid domain name"}}', False),
    (400, '{"Response": {"ResponseCode": "-1", "Status": "error", "Error": "invalid key"}}', False),
    (200, '["not", "an", "envelope"]', True),
])
def test_answers_are_classified(client, fake, status, body, transient):
    fake.inject("raw", status=status, body=body)
    with pytest.raises(RegistrarError) as err:
        client.get_zone(DOMAIN)
    assert err.value.transient is transient and err.value.retry_after is None


def test_5xx_is_retried_for_get_dns_but_set_dns2_goes_out_once(client, fake):
    fake.inject("http500", times=2)
    assert client.get_zone(DOMAIN).records == ZONE
    assert commands(fake) == ["get_dns"] * 3
    fake.reset_calls()
    fake.inject("http500", times=3)
    with pytest.raises(RegistrarError, match="HTTP 500"):
        client.get_zone(DOMAIN)
    assert commands(fake) == ["get_dns"] * 3  # 1 + retries=2
    # A proxy's 5xx says nothing about whether Dynadot got the write: never resend it.
    fake.reset_calls()
    fake.inject("http500", times=1, command="set_dns2")
    with pytest.raises(RegistrarError, match="HTTP 500") as err:
        client.set_zone(Zone(DOMAIN, [Record("", "a", "192.0.2.1")], 300))
    assert err.value.transient is True
    assert commands(fake) == ["set_dns2"]
    assert fake.zone(DOMAIN).records == ZONE


def test_refused_connections_are_retried_for_get_dns_only(client, fake, monkeypatch):
    attempts: list[str] = []
    real = urllib3.util.connection.create_connection

    def counted(*args, **kwargs):
        attempts.append("connect")
        return real(*args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", counted)
    fake.stop()
    with pytest.raises(RegistrarError):
        client.get_zone(DOMAIN, timeout=2)
    assert len(attempts) == 3  # 1 + retries=2
    attempts.clear()
    with pytest.raises(RegistrarError) as err:
        client.set_zone(Zone(DOMAIN, [Record("", "a", "192.0.2.1")], 300), timeout=2)
    assert err.value.transient is True and len(attempts) == 1


def test_read_errors_are_not_retried(client, fake):
    fake.inject("reset", times=1)
    with pytest.raises(RegistrarError):
        client.get_zone(DOMAIN)
    assert commands(fake) == ["get_dns"]


def test_connection_refused(client, fake):
    fake.stop()
    with pytest.raises(RegistrarError) as err:
        client.get_zone(DOMAIN, timeout=2)
    assert err.value.transient is True
    fake.start()
    assert client.get_zone(DOMAIN).records == ZONE


def test_timeout_bounds_the_call_including_retries(fake):
    """Every attempt takes the fake at least 0.4 s, so within a 1 s budget at most three
    can start (at 0, >= 0.4 and >= 0.8 s), however slow the machine; a budget per attempt
    instead of per call would make all six (1 + retries=5)."""
    client = DynadotClient(fake.url, KEY, min_interval=0, retries=5)
    fake.latency = 0.4
    fake.inject("http500", times=100)
    with pytest.raises(RegistrarError):
        client.get_zone(DOMAIN, timeout=1.0)
    assert 1 <= len(commands(fake)) <= 3, commands(fake)


def wait_for(predicate, timeout: float = 30.0) -> None:
    """Safety net only: wait until the fake has recorded what a test asserts on."""
    end = time.monotonic() + timeout
    while not predicate() and time.monotonic() < end:
        time.sleep(0.05)


@pytest.mark.parametrize("headers", [False, True], ids=["body", "headers"])
def test_a_trickled_answer_is_cut_at_the_budget(client, fake, headers):
    """40 bytes a second for a minute (or a byte every half second from the status line on): each
    read gets bytes within the read timeout, so only the call's budget ends it."""
    fake.trickle_headers = headers
    if headers:
        fake.trickle_step = 1
    fake.inject("trickle", command="get_dns")
    with pytest.raises(RegistrarError) as err:
        client.get_zone(DOMAIN, timeout=1.0)
    assert err.value.transient is True
    wait_for(lambda: fake.trickled)
    assert fake.trickled and fake.trickled[0] < (60 if headers else fake.trickle_length // 4)
    assert client.get_zone(DOMAIN).records == ZONE  # the client's lock was let go


def test_an_answer_past_the_size_cap_is_a_transient_error(client, fake):
    # A zone's answer is some KiB; a megabyte and more is not Dynadot's.
    fake.inject("raw", body='{"GetDnsResponse": {"Status": "success"}}' + " " * (2 << 20))
    with pytest.raises(RegistrarError) as err:
        client.get_zone(DOMAIN)
    assert err.value.transient is True and "larger than" in str(err.value)


def test_a_deeply_nested_answer_is_a_registrar_error(client, fake):
    fake.inject("raw", body="[" * 100_000 + "]" * 100_000)
    with pytest.raises(RegistrarError) as err:
        client.get_zone(DOMAIN)
    assert err.value.transient is True and "unreadable answer" in str(err.value)


def test_a_write_the_client_gave_up_on_lands_late(client, fake):
    fake.late_seconds = 600  # lands when the test says so (land_late_writes), not by the clock
    fake.inject("late", command="set_dns2")
    zone = Zone(DOMAIN, [Record("", "a", "192.0.2.1"), Record("www", "cname", DOMAIN)], 300)
    with pytest.raises(RegistrarError) as err:
        client.set_zone(zone, timeout=0.5)
    # The client gave up on its budget while the fake still holds the write.
    assert err.value.transient is True and fake.in_flight == 1
    # Not applied yet, and Dynadot still holds the write while the next call arrives.
    assert fake.zone(DOMAIN).records == ZONE
    assert client.get_zone(DOMAIN).records == ZONE
    assert fake.max_in_flight == 2
    assert commands(fake) == ["set_dns2", "get_dns"]
    fake.land_late_writes()
    assert fake.wait_late_writes(30)
    assert fake.zone(DOMAIN) == zone
    assert client.get_zone(DOMAIN) == zone


def test_fake_late_fault_validates_survives_stop_and_only_delays_writes(fake):
    fake.late_seconds = 0.3
    fake.inject("late", times=3)
    with pytest.raises(requests.Timeout):  # invalid: an mx without its distance
        requests.get(fake.url, params={"key": KEY, "command": "set_dns2", "domain": DOMAIN,
                                       "main_record_type0": "mx", "main_record0": "mx.example"}, timeout=0.2)
    with pytest.raises(requests.Timeout):  # for get_dns, a plain timeout
        requests.get(fake.url, params={"key": KEY, "command": "get_dns", "domain": DOMAIN}, timeout=0.2)
    with pytest.raises(requests.Timeout):
        requests.get(fake.url, params={"key": KEY, "command": "set_dns2", "domain": DOMAIN,
                                       "main_record_type0": "a", "main_record0": "192.0.2.9"}, timeout=0.2)
    fake.stop()
    assert fake.wait_late_writes(5)
    assert fake.zone(DOMAIN) == Zone(DOMAIN, [Record("", "a", "192.0.2.9")], 3600)


def test_read_timeout_applies_without_a_budget(fake):
    client = DynadotClient(fake.url, KEY, min_interval=0, read_timeout=0.5)
    fake.inject("timeout")
    with pytest.raises(RegistrarError) as err:
        client.get_zone(DOMAIN)
    # Given up after read_timeout: the fake still holds the request (for 60 s).
    assert err.value.transient is True and fake.in_flight == 1


def test_budget_covers_waiting_for_the_client_lock(fake):
    """A call that finds another one in flight on the same client waits for the client's
    lock only as long as its own budget: it fails while the first is still held."""
    client = DynadotClient(fake.url, KEY, min_interval=0)
    fake.hold()  # the first call stays in flight, holding the client's lock, until release()
    holder = threading.Thread(target=client.get_zone, args=(DOMAIN,))
    holder.start()
    try:
        assert fake.wait_held(1, timeout=30)
        errors: list[RegistrarError] = []

        def second():
            try:
                client.get_zone(DOMAIN, timeout=0.3)
            except RegistrarError as exc:
                errors.append(exc)

        waiter = threading.Thread(target=second)
        waiter.start()
        waiter.join(30)  # safety net: without the budget it would wait for release()
        assert not waiter.is_alive(), "the second call waited for the first one"
        assert len(errors) == 1 and errors[0].transient is True
        assert fake.in_flight == 1 and commands(fake) == ["get_dns"]  # the first is still held
    finally:
        fake.release()
        holder.join(30)
    assert not holder.is_alive()


# -- secrets ---------------------------------------------------------------------------------

def test_the_key_never_leaks(fake, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    client = DynadotClient(fake.url, KEY, min_interval=0)
    assert KEY not in repr(client)
    errors: list[RegistrarError] = []
    for fault in FAULTS:
        fake.inject(fault, times=100)
        for call in (lambda: client.get_zone(DOMAIN, timeout=1.0),
                     lambda: client.set_zone(Zone(DOMAIN, [Record("", "a", "192.0.2.1")], 300), timeout=1.0)):
            with pytest.raises(RegistrarError) as err:
                call()
            errors.append(err.value)
        fake.clear_faults()
    fake.stop()
    with pytest.raises(RegistrarError) as err:
        client.get_zone(DOMAIN, timeout=1.0)
    errors.append(err.value)
    fake.start()
    client.set_zone(client.get_zone(DOMAIN))

    for exc in errors:
        assert KEY not in str(exc) and KEY not in repr(exc) and KEY not in repr(exc.args)
        assert exc.__cause__ is None and exc.__context__ is None
    assert any("urllib3" in r.name for r in caplog.records)  # urllib3 did log, redacted
    for record in caplog.records:
        assert KEY not in record.getMessage()
    assert KEY not in caplog.text
    printed = capsys.readouterr()
    assert KEY not in printed.out and KEY not in printed.err
    # the key is sent, the secret never
    assert all(params.get("key") == KEY for _, params in fake.calls)
    assert not any(SECRET in str(params) or "secret" in " ".join(params) for _, params in fake.calls)


def test_one_log_line_per_call(client, fake, caplog):
    caplog.set_level(logging.INFO, logger="pdm_app.dns.dynadot.client")
    client.get_zone(DOMAIN)
    fake.inject("error")
    with pytest.raises(RegistrarError):
        client.get_zone(DOMAIN)
    fake.seed(DOMAIN, [], ns_type="Name Servers")
    with pytest.raises(RegistrarError):
        client.get_zone(DOMAIN)
    lines = [r.getMessage() for r in caplog.records if r.name == "pdm_app.dns.dynadot.client"]
    assert len(lines) == 3
    assert lines[0].startswith(f"dynadot get_dns {DOMAIN}: ok in ")
    assert "(transient)" in lines[1] and "main server" in lines[1]
    assert "(permanent)" in lines[2] and "Name Servers" in lines[2]


# -- pacing and concurrency -------------------------------------------------------------------

def test_pacing_between_calls(fake):
    client = DynadotClient(fake.url, KEY, min_interval=0.2)
    started = time.monotonic()
    for _ in range(3):
        client.get_zone(DOMAIN)
    assert time.monotonic() - started >= 0.4


def test_pacing_that_would_overrun_the_budget_fails_fast(fake, monkeypatch):
    """Fails at once: it neither sleeps toward a pacing slot it cannot reach nor calls."""
    import pdm_app.dns.dynadot.client as dynadot_module

    client = DynadotClient(fake.url, KEY, min_interval=5)
    client.get_zone(DOMAIN)
    slept: list[float] = []

    class RecordingTime:
        def __getattr__(self, name):
            return getattr(time, name)

        @staticmethod
        def sleep(seconds):
            slept.append(seconds)

    monkeypatch.setattr(dynadot_module, "time", RecordingTime())
    with pytest.raises(RegistrarError) as err:
        client.get_zone(DOMAIN, timeout=0.5)
    assert err.value.transient is True and "pacing" in str(err.value)
    assert slept == [] and commands(fake) == ["get_dns"]


def test_one_call_in_flight_per_client(client, fake):
    fake.latency = 0.03
    fake.reset_calls()
    failures: list[BaseException] = []

    def work():
        try:
            for _ in range(3):
                client.get_zone(DOMAIN)
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(fake.calls) == 15
    assert fake.max_in_flight == 1


def test_fake_counts_a_call_out_before_its_answer_arrives(fake):
    """A client that has its answer never finds its call still counted in flight (the
    fake used to count it out only after writing the answer: the client's next call could
    arrive first, and max_in_flight read 2 for calls made one after another)."""
    session = requests.Session()  # keep-alive: the next request on the same connection
    for _ in range(200):
        session.get(fake.url, params={"key": KEY, "command": "get_dns", "domain": DOMAIN}, timeout=30)
        assert fake.in_flight == 0
    fake.inject("http500", times=50)
    for _ in range(50):
        session.get(fake.url, params={"key": KEY, "command": "get_dns", "domain": DOMAIN}, timeout=30)
        assert fake.in_flight == 0
    assert fake.max_in_flight == 1


def test_fake_holds_an_answer_after_carrying_the_request_out(client, fake):
    """hold("answer"): the write is done at once, its answer waits for release()."""
    zone = Zone(DOMAIN, [Record("", "a", "192.0.2.1")], 300)
    fake.hold("answer")
    writer = threading.Thread(target=client.set_zone, args=(zone,))
    writer.start()
    try:
        assert fake.wait_held(1, timeout=30)
        assert fake.zone(DOMAIN) == zone and fake.in_flight == 1
    finally:
        fake.release()
        writer.join(30)
    assert not writer.is_alive() and fake.held == 0


def test_fake_counts_held_requests_until_they_are_dropped(fake):
    fake.inject("timeout")
    with pytest.raises(requests.Timeout):
        requests.get(fake.url, params={"key": KEY, "command": "get_dns", "domain": DOMAIN}, timeout=0.2)
    assert fake.in_flight == 1  # still held (hang_seconds), though the client gave up
    fake.hold()
    late = threading.Thread(target=lambda: requests.get(
        fake.url, params={"key": KEY, "command": "get_dns", "domain": DOMAIN}, timeout=30))
    late.start()
    assert fake.wait_in_flight(2, timeout=30) and fake.max_in_flight == 2
    fake.release()
    late.join(30)
    assert fake.in_flight == 1
    fake.stop()  # drops the held one
    assert fake.wait_idle(timeout=30)
