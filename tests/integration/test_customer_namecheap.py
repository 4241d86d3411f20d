"""NamecheapRegistrar against FakeNamecheap on loopback: validate, set and read back the
nameservers, every refusal and fault mapped to its typed error, the configured ClientIp,
the token shapes, the XML read as untrusted input, and the API key never leaking.

No test asserts how long something took: a timeout is proven by the error class while
the fake still holds the request (its ``hang_seconds`` is far past the deadline)."""
from __future__ import annotations

import logging
import uuid
import xml.etree.ElementTree as ET  # noqa: S405 -- the fake's own answers, in tests

import pytest
import requests

from pdm_app.customer_domains.base import (ApiUnavailable, Deadline, DomainNotInAccount, InvalidToken, RateLimited,
                                           RegistrarFailure, Unsupported)
from pdm_app.testing.fake_namecheap import NAMESPACE, PARAMETER_ERROR, FakeNamecheap
from pdm_app.customer_domains.namecheap import NamecheapRegistrar, NotConfigured

API_USER = "acme-api"
API_KEY = "key" + uuid.uuid4().hex
TOKEN = f"{API_USER}:{API_KEY}"
CLIENT_IP = "203.0.113.10"
OTHER_IP = "198.51.100.20"
DOMAIN = "example.com"
OLD_NS = ["ns1.oldhost.net", "ns2.oldhost.net"]
NEW_NS = ["ns1.openova.io", "ns2.openova.io", "ns3.openova.io"]
NS = "{" + NAMESPACE + "}"


@pytest.fixture
def fake():
    server = FakeNamecheap(API_USER, API_KEY, allowed_ips=(CLIENT_IP,))
    server.add_account(API_USER, API_KEY, allowed_ips=(CLIENT_IP,), user_names=("acme-client",))
    server.add_account("other-api", "other-key", allowed_ips=(CLIENT_IP,))
    server.seed_many(150)  # filler0000.com .. filler0149.com: more than a page of 100
    server.seed(DOMAIN, OLD_NS)
    server.seed("myexample.com", OLD_NS)  # contains "example.com": a search decoy
    server.seed("example.co.uk")  # on Namecheap's own DNS
    server.seed("zz-last.com", OLD_NS)
    server.seed("client-site.com", OLD_NS, user="acme-client")
    server.seed("other.com", OLD_NS, user="other-api")
    server.seed("locked.com", OLD_NS, editable=False)
    server.hang_seconds = 30  # far past any deadline here; stop() lets it go
    server.start()
    yield server
    server.stop()


@pytest.fixture
def adapter(fake):
    return NamecheapRegistrar(fake.url, client_ip=CLIENT_IP)


def deadline(seconds: float = 12.0) -> Deadline:
    return Deadline(seconds)


def commands(fake) -> list[str]:
    return [c.command for c in fake.calls]


def raw(fake, method: str = "GET", **params) -> ET.Element:
    """A hand-made call with the global parameters, for the fake's own strictness."""
    base = {"ApiUser": API_USER, "ApiKey": API_KEY, "UserName": API_USER, "ClientIp": CLIENT_IP}
    base.update(params)
    base = {k: v for k, v in base.items() if v is not None}
    if method == "POST":
        answer = requests.post(fake.url, data=base, timeout=5)
    else:
        answer = requests.request(method, fake.url, params=base, timeout=5)
    assert answer.status_code == 200, answer.status_code
    return ET.fromstring(answer.content)


def error_number(root: ET.Element) -> int | None:
    error = root.find(f"{NS}Errors/{NS}Error")
    return None if error is None else int(error.get("Number"))


# -- validate -------------------------------------------------------------------------------

def test_validate_ok_sends_the_global_parameters_by_get(adapter, fake):
    adapter.validate(DOMAIN, TOKEN, deadline())
    calls = fake.calls
    assert [c.command for c in calls] == ["namecheap.users.getBalances", "namecheap.domains.getList"]
    for c in calls:
        assert c.method == "GET" and c.path == "/xml.response" and c.body == b""
        assert {k: c.params[k] for k in ("ApiUser", "ApiKey", "UserName", "ClientIp")} == {
            "ApiUser": API_USER, "ApiKey": API_KEY, "UserName": API_USER, "ClientIp": CLIENT_IP}
    assert calls[1].params["SearchTerm"] == DOMAIN and calls[1].params["PageSize"] == "100"
    assert adapter.name == "namecheap" and adapter.propagation == "namecheap: 1–2 h, up to 48 h"


def test_validate_finds_a_domain_among_more_than_a_hundred_in_one_call(adapter, fake):
    # zz-last.com is the 156th name of the account in name order: page 2 of the list.
    adapter.validate("zz-last.com", TOKEN, deadline())
    assert commands(fake) == ["namecheap.users.getBalances", "namecheap.domains.getList"]


def test_validate_matches_the_whole_name_case_insensitively(adapter, fake):
    fake.seed("MixedCase.NET", OLD_NS)
    adapter.validate("mixedcase.net", TOKEN, deadline())
    # "ample.com" is a substring of example.com and myexample.com, yet not in the account
    with pytest.raises(DomainNotInAccount) as err:
        adapter.validate("ample.com", TOKEN, deadline())
    assert "ample.com" in err.value.detail and err.value.status == 403


def test_validate_reads_more_pages_only_when_the_search_matches_more_than_a_page(adapter, fake):
    fake.seed_many(120, "a{:03d}zz-target.com")  # each contains "zz-target.com"
    fake.seed("zz-target.com", OLD_NS)  # sorts after the 120 others: on page 2 of the search
    adapter.validate("zz-target.com", TOKEN, deadline())
    pages = [c.params["Page"] for c in fake.calls if c.command == "namecheap.domains.getList"]
    assert pages == ["1", "2"]
    fake.reset_calls()
    with pytest.raises(DomainNotInAccount):
        adapter.validate("nothing-target.com", TOKEN, deadline())
    assert [c.params["Page"] for c in fake.calls if c.command == "namecheap.domains.getList"] == ["1"]


@pytest.mark.parametrize("domain", ["other.com", "unknown-anywhere.com"])
def test_domain_of_another_account_or_nowhere_is_not_in_account(adapter, fake, domain):
    with pytest.raises(DomainNotInAccount) as err:
        adapter.validate(domain, TOKEN, deadline())
    assert err.value.code == "domain-not-in-account" and domain in err.value.detail
    with pytest.raises(DomainNotInAccount):  # 2016166 / 2019166 from the fake itself
        adapter.set_nameservers(domain, TOKEN, NEW_NS, deadline())
    with pytest.raises(DomainNotInAccount):
        adapter.get_nameservers(domain, TOKEN, deadline())
    assert fake.nameservers("other.com") == OLD_NS


# -- token shapes ---------------------------------------------------------------------------

@pytest.mark.parametrize("token, user_name", [
    (f"{API_USER}:{API_KEY}", API_USER),
    (f" {API_USER} : {API_KEY} ", API_USER),
    (f"{API_USER}:{API_KEY}:{API_USER}", API_USER),
    (f"{API_USER}:{API_KEY}:acme-client", "acme-client"),
    # the older shapes: the client IP in them is ignored, the configured one is sent
    (f"{API_USER}:{API_KEY}:127.0.0.1", API_USER),
    (f"{API_USER}:{API_KEY}:192.0.2.77", API_USER),
    (f"{API_USER}:{API_KEY}:2001:db8::1", API_USER),
    (f"{API_USER}:{API_KEY}:acme-client:127.0.0.1", "acme-client"),
], ids=["user-key", "spaces", "user-key-self", "user-key-other-user", "key-loopback-ip", "key-ip", "key-ipv6",
        "user-key-name-ip"])
def test_token_shapes(adapter, fake, token, user_name):
    domain = "client-site.com" if user_name == "acme-client" else DOMAIN
    adapter.validate(domain, token, deadline())
    for c in fake.calls:
        assert c.params["UserName"] == user_name and c.params["ClientIp"] == CLIENT_IP
        assert c.params["ApiUser"] == API_USER and c.params["ApiKey"] == API_KEY


@pytest.mark.parametrize("token", [
    "", "   ", API_KEY, f"{API_USER}:", f":{API_KEY}", f"{API_USER}: :name",
    f"{API_USER}:{API_KEY}:name:not-an-ip", f"{API_USER}:{API_KEY}::127.0.0.1",
    f"{API_USER}:{API_KEY}:name:1.2.3.4:5",
])
def test_malformed_token_is_refused_before_any_request(adapter, fake, token):
    for run in (lambda: adapter.validate(DOMAIN, token, deadline()),
                lambda: adapter.get_nameservers(DOMAIN, token, deadline()),
                lambda: adapter.set_nameservers(DOMAIN, token, NEW_NS, deadline())):
        with pytest.raises(InvalidToken) as err:
            run()
        assert "apiUser:apiKey" in err.value.detail and err.value.status == 401
    assert fake.calls == []


def test_a_user_name_the_api_user_may_not_act_for_is_invalid(adapter, fake):
    with pytest.raises(InvalidToken) as err:
        adapter.validate(DOMAIN, f"{API_USER}:{API_KEY}:someone-else", deadline())
    assert "user name" in err.value.detail


# -- the service's client IP -----------------------------------------------------------------

@pytest.mark.parametrize("client_ip", [None, "", "  "])
def test_not_configured_refuses_every_call_before_any_request(fake, client_ip):
    adapter = NamecheapRegistrar(fake.url, client_ip=client_ip)
    for run in (lambda: adapter.validate(DOMAIN, TOKEN, deadline()),
                lambda: adapter.get_nameservers(DOMAIN, TOKEN, deadline()),
                lambda: adapter.set_nameservers(DOMAIN, TOKEN, NEW_NS, deadline())):
        with pytest.raises(NotConfigured) as err:
            run()
        assert isinstance(err.value, RegistrarFailure)
        assert (err.value.code, err.value.status) == ("registrar-not-configured", 503)
        assert "PDM_NAMECHEAP_CLIENT_IP" in err.value.detail and "operator" in err.value.detail
    assert fake.calls == []


def test_an_address_not_allow_listed_names_the_address_to_allow_list(fake):
    adapter = NamecheapRegistrar(fake.url, client_ip=OTHER_IP)
    with pytest.raises(InvalidToken) as err:
        adapter.validate(DOMAIN, TOKEN, deadline())
    assert OTHER_IP in err.value.detail and "whitelisted IPs" in err.value.detail
    assert [c.params["ClientIp"] for c in fake.calls] == [OTHER_IP]


@pytest.mark.parametrize("token", [f"{API_USER}:wrong{API_KEY}", f"nobody:{API_KEY}"], ids=["bad-key", "bad-user"])
def test_bad_credentials_are_invalid_token(adapter, fake, token):
    with pytest.raises(InvalidToken) as err:
        adapter.validate(DOMAIN, token, deadline())
    assert "API access" in err.value.detail
    assert commands(fake) == ["namecheap.users.getBalances"]


def test_api_access_turned_off_is_invalid_token(adapter, fake):
    fake.add_account(API_USER, API_KEY, allowed_ips=(CLIENT_IP,), api_enabled=False)
    with pytest.raises(InvalidToken):
        adapter.validate(DOMAIN, TOKEN, deadline())


# -- errors Namecheap answers at HTTP 200 ----------------------------------------------------

@pytest.mark.parametrize("number, command, expected, words", [
    (1011102, None, InvalidToken, ["API access"]),
    (1010101, None, InvalidToken, ["API user"]),
    (1016103, None, InvalidToken, ["user name"]),
    (1011150, None, InvalidToken, [CLIENT_IP, "whitelisted IPs"]),
    (1017150, None, InvalidToken, [CLIENT_IP, "whitelisted IPs"]),
    (1017105, None, InvalidToken, [CLIENT_IP, "disabled or locked"]),
    (1017101, None, InvalidToken, [CLIENT_IP, "disabled or locked"]),
    (2019166, "namecheap.domains.getList", DomainNotInAccount, [DOMAIN]),
    (2016166, "namecheap.domains.dns.setCustom", DomainNotInAccount, [DOMAIN]),
    (2019166, "namecheap.domains.dns.getList", DomainNotInAccount, [DOMAIN]),
    (2030166, "namecheap.domains.dns.setCustom", Unsupported, [DOMAIN, "dashboard"]),
    (3031510, "namecheap.domains.dns.setCustom", ApiUnavailable, ["try again"]),
    (3050900, "namecheap.domains.dns.setCustom", ApiUnavailable, ["try again"]),
    (4022288, "namecheap.domains.dns.getList", RegistrarFailure, ["4022288", "Unable to get nameserver list"]),
])
def test_namecheap_errors_map_to_typed_failures(adapter, fake, number, command, expected, words):
    fake.inject("error", number=number, command=command)
    if command == "namecheap.domains.dns.setCustom":
        run = lambda: adapter.set_nameservers(DOMAIN, TOKEN, NEW_NS, deadline())  # noqa: E731
    elif command == "namecheap.domains.dns.getList":
        run = lambda: adapter.get_nameservers(DOMAIN, TOKEN, deadline())  # noqa: E731
    else:
        run = lambda: adapter.validate(DOMAIN, TOKEN, deadline())  # noqa: E731
    with pytest.raises(RegistrarFailure) as err:
        run()
    assert type(err.value) is expected, err.value.detail
    for word in words:
        assert word in err.value.detail
    assert fake.nameservers(DOMAIN) == OLD_NS


def test_a_domain_namecheap_will_not_edit_is_unsupported(adapter, fake):
    with pytest.raises(Unsupported) as err:
        adapter.set_nameservers("locked.com", TOKEN, NEW_NS, deadline())
    assert err.value.status == 422 and fake.nameservers("locked.com") == OLD_NS


def test_an_unknown_error_keeps_the_providers_words_without_the_key(adapter, fake):
    fake.inject("error", number=5050900, text=f"Unhandled\texception\r\n for key {API_KEY.upper()} " + "x" * 300)
    with pytest.raises(RegistrarFailure) as err:
        adapter.validate(DOMAIN, TOKEN, deadline())
    assert type(err.value) is RegistrarFailure and err.value.code == "registrar-error" and err.value.status == 502
    detail = err.value.detail
    assert "5050900" in detail and "Unhandled exception for key [hidden]" in detail
    assert API_KEY.lower() not in detail.lower() and "\t" not in detail and "\n" not in detail and len(detail) < 400


def test_an_error_envelope_without_an_error_is_a_registrar_error(adapter, fake):
    fake.inject("raw", body=f'<ApiResponse Status="ERROR" xmlns="{NAMESPACE}"><Errors /></ApiResponse>')
    with pytest.raises(RegistrarFailure) as err:
        adapter.validate(DOMAIN, TOKEN, deadline())
    assert type(err.value) is RegistrarFailure and "without saying why" in err.value.detail


# -- rate limits --------------------------------------------------------------------------

def test_throttle_text_is_rate_limited(adapter, fake):
    fake.inject("throttle", command="namecheap.domains.getList")
    with pytest.raises(RateLimited) as err:
        adapter.validate(DOMAIN, TOKEN, deadline())
    assert err.value.status == 429 and err.value.retry_after is None


def test_words_containing_rate_are_not_a_rate_limit(adapter, fake):
    fake.inject("error", number=5050900, text="Could not generate the separate list")
    with pytest.raises(RegistrarFailure) as err:
        adapter.validate(DOMAIN, TOKEN, deadline())
    assert type(err.value) is RegistrarFailure


def test_http_429_is_rate_limited_with_retry_after(adapter, fake):
    fake.inject("http429", command="namecheap.domains.dns.setCustom", headers={"Retry-After": "42"})
    with pytest.raises(RateLimited) as err:
        adapter.set_nameservers(DOMAIN, TOKEN, NEW_NS, deadline())
    assert err.value.retry_after == 42.0 and fake.nameservers(DOMAIN) == OLD_NS


# -- unavailable and unreadable ------------------------------------------------------------

OPERATIONS = {
    "validate": lambda a: a.validate(DOMAIN, TOKEN, deadline()),
    "get": lambda a: a.get_nameservers(DOMAIN, TOKEN, deadline()),
    "set": lambda a: a.set_nameservers(DOMAIN, TOKEN, NEW_NS, deadline()),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@pytest.mark.parametrize("fault", ["http500", "drop"])
def test_5xx_and_dropped_connections_are_unavailable(adapter, fake, fault, operation):
    fake.inject(fault)
    with pytest.raises(ApiUnavailable) as err:
        OPERATIONS[operation](adapter)
    assert err.value.status == 502 and "Namecheap's API" in err.value.detail
    assert len(fake.calls) == 1


def test_a_call_past_the_deadline_is_unavailable(adapter, fake):
    fake.inject("timeout", command="namecheap.domains.dns.setCustom")
    with pytest.raises(ApiUnavailable) as err:
        adapter.set_nameservers(DOMAIN, TOKEN, NEW_NS, Deadline(0.3))
    assert "in time" in err.value.detail
    assert commands(fake) == ["namecheap.domains.dns.setCustom"]


def test_a_spent_deadline_makes_no_request(adapter, fake):
    with pytest.raises(ApiUnavailable):
        adapter.validate(DOMAIN, TOKEN, Deadline(0))
    assert fake.calls == []


def test_connection_refused_is_unavailable(fake):
    adapter = NamecheapRegistrar(fake.url, client_ip=CLIENT_IP)
    fake.stop()
    with pytest.raises(ApiUnavailable) as err:
        adapter.validate(DOMAIN, TOKEN, deadline())
    assert "could not be reached" in err.value.detail


BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
                  '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
                  f'<ApiResponse Status="OK" xmlns="{NAMESPACE}"><CommandResponse>'
                  '<UserGetBalancesResult Currency="&lol3;" /></CommandResponse></ApiResponse>')
EXTERNAL_ENTITY = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                   f'<ApiResponse Status="OK" xmlns="{NAMESPACE}"><CommandResponse>&x;</CommandResponse>'
                   '</ApiResponse>')


@pytest.mark.parametrize("body", [
    None,  # the badxml fault: a truncated document
    "<html><body>Service temporarily unavailable</body></html>",
    "not xml at all",
    "",
    f'<Other Status="OK" xmlns="{NAMESPACE}"><CommandResponse /></Other>',
    f'<ApiResponse Status="OK" xmlns="{NAMESPACE}"><Errors /></ApiResponse>',
    f'<ApiResponse Status="MAYBE" xmlns="{NAMESPACE}"><CommandResponse /></ApiResponse>',
    BILLION_LAUGHS,
    EXTERNAL_ENTITY,
], ids=["truncated", "html", "text", "empty", "wrong-root", "no-command-response", "odd-status",
        "billion-laughs", "external-entity"])
def test_unreadable_answers_are_registrar_errors(adapter, fake, body):
    if body is None:
        fake.inject("badxml")
    else:
        fake.inject("raw", body=body)
    with pytest.raises(RegistrarFailure) as err:
        adapter.validate(DOMAIN, TOKEN, deadline())
    assert type(err.value) is RegistrarFailure and "could not be read" in err.value.detail


@pytest.mark.parametrize("status, expected", [
    (401, InvalidToken), (403, InvalidToken), (400, RegistrarFailure), (404, RegistrarFailure),
    (204, RegistrarFailure),
])
def test_other_http_statuses(adapter, fake, status, expected):
    fake.inject("raw", status=status, body="" if status == 204 else "<html>no</html>")
    with pytest.raises(RegistrarFailure) as err:
        adapter.validate(DOMAIN, TOKEN, deadline())
    assert type(err.value) is expected and f"HTTP {status}" in err.value.detail


def test_a_redirect_is_not_followed(adapter, fake):
    fake.inject("raw", status=302, body="<html>moved</html>", headers={"Location": fake.url + "?moved=1"})
    # base.new_session's max_redirects=0 makes requests raise TooManyRedirects even with
    # allow_redirects=False, which base.call reports as unreachable: a typed failure either way.
    with pytest.raises(RegistrarFailure):
        adapter.validate(DOMAIN, TOKEN, deadline())
    assert len(fake.calls) == 1


# -- set and read back ----------------------------------------------------------------------

def test_set_ns_splits_a_multi_label_suffix_and_reads_back(adapter, fake):
    assert adapter.get_nameservers("example.co.uk", TOKEN, deadline()) == [
        "dns1.registrar-servers.com", "dns2.registrar-servers.com"]  # Namecheap's own DNS
    adapter.set_nameservers("example.co.uk", TOKEN, NEW_NS, deadline())
    sent = fake.calls[-1]
    assert sent.command == "namecheap.domains.dns.setCustom" and sent.method == "GET"
    assert (sent.params["SLD"], sent.params["TLD"]) == ("example", "co.uk")
    assert sent.params["Nameservers"] == ",".join(NEW_NS)
    assert fake.nameservers("example.co.uk") == NEW_NS
    assert adapter.get_nameservers("example.co.uk", TOKEN, deadline()) == NEW_NS
    got = fake.calls[-1]
    assert got.command == "namecheap.domains.dns.getList"
    assert (got.params["SLD"], got.params["TLD"]) == ("example", "co.uk")


def test_set_ns_ok_on_a_plain_domain(adapter, fake):
    assert adapter.get_nameservers(DOMAIN, TOKEN, deadline()) == OLD_NS
    assert adapter.set_nameservers(DOMAIN, TOKEN, NEW_NS[:2], deadline()) is None
    assert adapter.get_nameservers(DOMAIN, TOKEN, deadline()) == NEW_NS[:2]


def test_read_back_is_lower_cased_without_trailing_dots_in_provider_order(adapter, fake):
    fake.seed(DOMAIN, ["NS2.Elsewhere.NET.", "ns1.elsewhere.net"])
    assert adapter.get_nameservers(DOMAIN, TOKEN, deadline()) == ["ns2.elsewhere.net", "ns1.elsewhere.net"]


def test_an_answer_without_a_namespace_is_read_too(adapter, fake):
    fake.inject("raw", body='<ApiResponse Status="OK"><CommandResponse><DomainDNSGetListResult Domain="example.com">'
                            '<Nameserver> ns9.example.net </Nameserver></DomainDNSGetListResult></CommandResponse>'
                            '</ApiResponse>')
    assert adapter.get_nameservers(DOMAIN, TOKEN, deadline()) == ["ns9.example.net"]


def test_a_change_namecheap_does_not_confirm_is_a_registrar_error(adapter, fake):
    fake.inject("raw", body=f'<ApiResponse Status="OK" xmlns="{NAMESPACE}"><CommandResponse>'
                            '<DomainDNSSetCustomResult Domain="example.com" Updated="false" />'
                            '</CommandResponse></ApiResponse>')
    with pytest.raises(RegistrarFailure) as err:
        adapter.set_nameservers(DOMAIN, TOKEN, NEW_NS, deadline())
    assert type(err.value) is RegistrarFailure and "did not confirm" in err.value.detail


# -- logs and the token ---------------------------------------------------------------------

def test_logs_say_only_provider_operation_domain_and_outcome(adapter, fake, caplog):
    caplog.set_level(logging.DEBUG, logger="pdm_app.customer_domains.namecheap")
    adapter.validate(DOMAIN, TOKEN, deadline())
    adapter.set_nameservers(DOMAIN, TOKEN, NEW_NS, deadline())
    adapter.get_nameservers(DOMAIN, TOKEN, deadline())
    with pytest.raises(DomainNotInAccount):
        adapter.validate("other.com", TOKEN, deadline())
    mine = [r for r in caplog.records if r.name == "pdm_app.customer_domains.namecheap"]
    assert [r.getMessage() for r in mine] == [
        "namecheap validate example.com: ok", "namecheap set-ns example.com: ok",
        "namecheap get-ns example.com: ok", "namecheap validate other.com: domain-not-in-account"]
    assert all(r.levelno == logging.INFO for r in mine)


def test_the_key_leaks_nowhere(fake, caplog):
    """Every outcome once, with a key seen nowhere else; then look for it everywhere."""
    caplog.set_level(logging.DEBUG)
    adapter = NamecheapRegistrar(fake.url, client_ip=CLIENT_IP)
    outcomes: list[object] = []

    def attempt(run) -> None:
        try:
            outcomes.append(run())
        except RegistrarFailure as failure:
            outcomes.append(failure)

    tokens = [TOKEN, f"{API_USER}:{API_KEY}:{API_USER}", f"{API_USER}:{API_KEY}:127.0.0.1",
              f"{API_USER}:{API_KEY}:bad:x"]
    for token in tokens:
        for run in OPERATIONS.values():
            attempt(lambda: run(_With(adapter, token)))
    cases = [("error", {"number": n}) for n in (1011102, 1011150, 1017150, 2019166, 2016166, 2030166, 3031510)]
    cases += [("error", {"number": 5050900, "text": f"echo ApiKey={API_KEY}"}), ("throttle", {}), ("http429", {}),
              ("http500", {}), ("drop", {}), ("badxml", {}), ("raw", {"status": 403, "body": API_KEY})]
    for fault, extra in cases:
        for run in OPERATIONS.values():
            fake.inject(fault, **extra)
            attempt(lambda: run(adapter))
    fake.inject("timeout")
    attempt(lambda: adapter.validate(DOMAIN, TOKEN, Deadline(0.3)))
    attempt(lambda: NamecheapRegistrar(fake.url, client_ip=OTHER_IP).validate(DOMAIN, TOKEN, deadline()))
    attempt(lambda: NamecheapRegistrar(fake.url, client_ip=None).validate(DOMAIN, TOKEN, deadline()))
    fake.stop()
    attempt(lambda: adapter.validate(DOMAIN, TOKEN, deadline()))

    kinds = {type(o).__name__ for o in outcomes}
    assert {"InvalidToken", "DomainNotInAccount", "Unsupported", "ApiUnavailable", "RateLimited",
            "RegistrarFailure", "NotConfigured", "list", "NoneType"} <= kinds
    for outcome in outcomes:
        shown = repr(outcome) + str(outcome)
        if isinstance(outcome, RegistrarFailure):
            shown += outcome.detail + repr(outcome.args) + repr(outcome.__cause__) + repr(outcome.__context__)
        assert API_KEY.lower() not in shown.lower()
    # urllib3's DEBUG lines carry the request URL, hence the key: see the next test.
    records = [r for r in caplog.records if not (r.name.startswith("urllib3") and r.levelno < logging.INFO)]
    assert any(r.name == "pdm_app.customer_domains.namecheap" for r in records)
    for record in records:
        assert API_KEY not in record.getMessage() and API_KEY not in str(record.args)
        assert not record.exc_info
    # At the fake: only ever the value of ApiKey, in the query string (GET, no body).
    sent = fake.calls
    assert sent
    for c in sent:
        assert c.params.get("ApiKey") == API_KEY
        assert [k for k, v in c.params.items() if API_KEY in v] == ["ApiKey"]
        assert c.query.count(API_KEY) == 1 and c.body == b""
        assert API_KEY not in repr(c.headers) and API_KEY not in c.path


def test_urllib3_debug_lines_mask_the_key(adapter, caplog):
    from pdm_app import redaction  # installs the service's filter on urllib3's loggers

    assert redaction.RedactFilter

    caplog.set_level(logging.DEBUG)
    adapter.validate(DOMAIN, TOKEN, deadline())
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    assert lines and not [line for line in lines if API_KEY in line]


class _With:
    """An adapter whose calls use ``token`` instead of TOKEN (for OPERATIONS)."""

    def __init__(self, adapter: NamecheapRegistrar, token: str):
        self._adapter, self._token = adapter, token

    def validate(self, domain, _token, deadline):
        return self._adapter.validate(domain, self._token, deadline)

    def get_nameservers(self, domain, _token, deadline):
        return self._adapter.get_nameservers(domain, self._token, deadline)

    def set_nameservers(self, domain, _token, nameservers, deadline):
        return self._adapter.set_nameservers(domain, self._token, nameservers, deadline)


# -- the fake's own strictness ------------------------------------------------------------

@pytest.mark.parametrize("missing, number", [
    ("ApiUser", 1010101), ("ApiKey", 1010102), ("Command", 1010104), ("ClientIp", 1010105), ("UserName", 1010103),
])
def test_fake_requires_every_global_parameter(fake, missing, number):
    root = raw(fake, **{"Command": "namecheap.users.getBalances", missing: None})
    assert root.tag == f"{NS}ApiResponse" and root.get("Status") == "ERROR" and error_number(root) == number
    assert root.find(f"{NS}CommandResponse") is None


def test_fake_checks_the_key_the_address_and_the_parameter_names(fake):
    assert error_number(raw(fake, Command="namecheap.users.getBalances", ApiKey="nope")) == 1011102
    root = raw(fake, Command="namecheap.users.getBalances", ClientIp=OTHER_IP)
    assert error_number(root) == 1011150
    assert root.find(f"{NS}Errors/{NS}Error").text == f"Invalid request IP: {OTHER_IP}"
    assert error_number(raw(fake, Command="namecheap.users.getBalances", ClientIp="::1")) == 1011105
    assert error_number(raw(fake, Command="namecheap.users.getBalances", apiuser=API_USER, ApiUser=None)) == 1010101
    assert error_number(raw(fake, Command="namecheap.domains.dns.setCustom", SLD="example", TLD="com",
                            Nameserver="ns1.a.net,ns2.a.net")) == PARAMETER_ERROR
    assert error_number(raw(fake, Command="namecheap.domains.nope")) == 1011104
    assert error_number(raw(fake, Command="namecheap.users.getBalances", UserName="other-api")) == 1016103
    ok = raw(fake, Command="NAMECHEAP.USERS.GETBALANCES")
    assert ok.get("Status") == "OK" and ok.find(f"{NS}RequestedCommand").text == "namecheap.users.getbalances"


def test_fake_takes_post_forms_and_refuses_other_methods_and_paths(fake):
    root = raw(fake, "POST", Command="namecheap.domains.dns.setCustom", SLD="example", TLD="com",
               Nameservers="ns1.a.net,ns2.a.net")
    assert root.find(f"{NS}CommandResponse/{NS}DomainDNSSetCustomResult").get("Updated") == "true"
    assert fake.nameservers(DOMAIN) == ["ns1.a.net", "ns2.a.net"] and fake.calls[-1].method == "POST"
    assert requests.put(fake.url, timeout=5).status_code == 405
    assert requests.get(fake.url.replace("/xml.response", "/other"), timeout=5).status_code == 404


def test_fake_pages_searches_and_bounds_the_page_size(fake):
    root = raw(fake, Command="namecheap.domains.getList")
    assert len(root.findall(f".//{NS}Domain")) == 20  # the default page size
    assert root.find(f".//{NS}Paging/{NS}TotalItems").text == "155"
    page = raw(fake, Command="namecheap.domains.getList", Page="2", PageSize="100")
    assert len(page.findall(f".//{NS}Domain")) == 55
    found = raw(fake, Command="namecheap.domains.getList", SearchTerm="EXAMPLE.com")
    assert sorted(d.get("Name") for d in found.findall(f".//{NS}Domain")) == [DOMAIN, "myexample.com"]
    for size in ("9", "101", "ten"):
        assert error_number(raw(fake, Command="namecheap.domains.getList", PageSize=size)) == PARAMETER_ERROR
    dup = requests.get(fake.url + f"?ApiUser={API_USER}&ApiKey={API_KEY}&UserName={API_USER}&ClientIp={CLIENT_IP}"
                       "&Command=namecheap.domains.getList&Page=1&Page=2", timeout=5)
    assert error_number(ET.fromstring(dup.content)) == PARAMETER_ERROR


def test_fake_finds_a_domain_by_its_first_label_only(fake):
    args = {"Command": "namecheap.domains.dns.getList"}
    assert error_number(raw(fake, SLD="example.co", TLD="uk", **args)) == 2019166
    assert error_number(raw(fake, SLD="other", TLD="com", **args)) == 2016166
    assert raw(fake, SLD="example", TLD="co.uk", **args).get("Status") == "OK"
