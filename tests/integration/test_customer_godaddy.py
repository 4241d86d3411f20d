"""GoDaddy adapter against its fake on loopback: every success and error class, the
entitlement refusal told apart from a bad key, and the customer's secret kept out of every
exception, log line and return value."""
from __future__ import annotations

import json
import logging
import secrets

import pytest
import requests

from pdm_app.customer_domains.base import (ApiUnavailable, Deadline, DomainNotInAccount, InvalidToken, NotEntitled,
                                           RateLimited, RegistrarFailure)
from pdm_app.testing.fake_godaddy import FakeGodaddy
from pdm_app.customer_domains.godaddy import GodaddyRegistrar

KEY = "gdkey_" + secrets.token_hex(12)
SECRET = "gdsecret_" + secrets.token_hex(12)
TOKEN = f"{KEY}:{SECRET}"
SMALL_KEY = "gdsmall_" + secrets.token_hex(12)
SMALL_SECRET = "gdsmallsecret_" + secrets.token_hex(12)
OTHER_KEY = "gdother_" + secrets.token_hex(8)
DOMAIN = "acme.com"
OLD_NS = ["NS51.DomainControl.com.", "ns52.domaincontrol.com"]
NEW_NS = ["ns1.pool.example", "ns2.pool.example", "ns3.pool.example"]


@pytest.fixture
def fake():
    fake = FakeGodaddy()
    fake.add_account(KEY, SECRET)
    fake.add_account(SMALL_KEY, SMALL_SECRET, entitled=False)
    fake.add_account(OTHER_KEY, "other-secret")
    fake.add_domain(KEY, DOMAIN, OLD_NS)
    fake.add_domain(KEY, "gone.com", ["ns1.x.example", "ns2.x.example"], status="TRANSFERRED_OUT")
    fake.add_domain(KEY, "held.com", ["ns1.x.example", "ns2.x.example"], status="PENDING_TRANSFER_OUT")
    fake.add_domain(SMALL_KEY, "small.com", ["ns1.x.example", "ns2.x.example"])
    fake.add_domain(OTHER_KEY, "theirs.com", ["ns1.x.example", "ns2.x.example"])
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def gd(fake):
    return GodaddyRegistrar(fake.url)


def deadline(seconds: float = 10.0) -> Deadline:
    return Deadline(seconds)


def only_call(fake):
    calls = fake.calls
    assert len(calls) == 1, calls
    return calls[0]


def test_validate_ok_asks_for_the_domain_itself(gd, fake):
    assert gd.validate(DOMAIN, TOKEN, deadline()) is None
    call = only_call(fake)
    assert (call.method, call.path, call.query, call.body) == ("GET", "/v1/domains/acme.com", {}, "")
    assert call.header("Authorization") == f"sso-key {KEY}:{SECRET}"
    assert call.header("Accept") == "application/json"


def test_token_parts_are_trimmed_and_split_on_the_first_colon(gd, fake):
    fake.add_account("k2", "sec:with:colons")
    fake.add_domain("k2", "colons.com", ["ns1.x.example", "ns2.x.example"])
    gd.validate("colons.com", "  k2 : sec:with:colons ", deadline())
    assert only_call(fake).header("Authorization") == "sso-key k2:sec:with:colons"


def test_get_nameservers_lower_case_no_dot_provider_order(gd, fake):
    assert gd.get_nameservers(DOMAIN, TOKEN, deadline()) == ["ns51.domaincontrol.com", "ns52.domaincontrol.com"]
    assert only_call(fake).path == "/v1/domains/acme.com"


def test_set_nameservers_and_read_back(gd, fake):
    assert gd.set_nameservers(DOMAIN, TOKEN, NEW_NS, deadline()) is None
    call = only_call(fake)
    assert (call.method, call.path) == ("PATCH", "/v1/domains/acme.com")
    assert json.loads(call.body) == {"nameServers": NEW_NS}
    assert call.header("Content-Type") == "application/json"
    assert call.header("Authorization") == f"sso-key {KEY}:{SECRET}"
    assert fake.nameservers(DOMAIN) == NEW_NS
    # GoDaddy shows the new list at once; the delegation itself takes hours (propagation).
    assert gd.get_nameservers(DOMAIN, TOKEN, deadline()) == NEW_NS


def test_any_2xx_answer_to_the_write_is_success(gd, fake):
    fake.inject("raw", route="patch", status=200, body='{"whatever": true}')
    gd.set_nameservers(DOMAIN, TOKEN, NEW_NS, deadline())
    fake.inject("raw", route="get", status=203, body=json.dumps({"domain": DOMAIN, "nameServers": ["A.example."]}))
    assert gd.get_nameservers(DOMAIN, TOKEN, deadline()) == ["a.example"]


def test_absent_nameservers_read_as_empty(gd, fake):
    fake.inject("raw", route="get", status=200, body=json.dumps({"domain": DOMAIN, "status": "ACTIVE"}))
    assert gd.get_nameservers(DOMAIN, TOKEN, deadline()) == []


def test_the_domain_is_quoted_into_the_path(gd, fake):
    """It arrives validated; still, nothing in it can reach another route."""
    with pytest.raises(DomainNotInAccount):
        gd.validate("acme.com/../../v1/shoppers?x=1#", TOKEN, deadline())
    call = only_call(fake)
    assert call.path == "/v1/domains/acme.com%2F..%2F..%2Fv1%2Fshoppers%3Fx%3D1%23" and call.query == {}


# -- the adapter: the customer's side -------------------------------------------------------------

@pytest.mark.parametrize("token", ["", "   ", KEY, f"{KEY}:", f":{SECRET}", " : ", f"{KEY}: ",
                                   f"{KEY}:sec ret", f"{KEY}:sec\nret", f"k\u00e9y:{SECRET}"],
                         ids=["empty", "blank", "no-colon", "no-secret", "no-key", "blank-parts", "blank-secret",
                              "space-inside", "newline-inside", "non-ascii"])
def test_malformed_token_makes_no_call(gd, fake, token):
    for operation in (lambda: gd.validate(DOMAIN, token, deadline()),
                      lambda: gd.get_nameservers(DOMAIN, token, deadline()),
                      lambda: gd.set_nameservers(DOMAIN, token, NEW_NS, deadline())):
        with pytest.raises(InvalidToken) as err:
            operation()
        assert "key:secret" in err.value.detail and err.value.status == 401
    assert fake.calls == []


def test_wrong_secret_is_invalid_token(gd, fake):
    with pytest.raises(InvalidToken) as err:
        gd.validate(DOMAIN, f"{KEY}:not-the-secret", deadline())
    assert "Production key" in err.value.detail and len(fake.calls) == 1


def test_unknown_key_is_invalid_token(gd):
    with pytest.raises(InvalidToken):
        gd.validate(DOMAIN, "nobody:nothing", deadline())


@pytest.mark.parametrize("fault", ["unauthorized", "forbidden"])
def test_401_and_403_of_another_code_are_invalid_token(gd, fake, fault):
    fake.inject(fault)
    with pytest.raises(InvalidToken) as err:
        gd.validate(DOMAIN, TOKEN, deadline())
    assert type(err.value) is InvalidToken


def test_access_denied_is_not_entitled_not_a_bad_key(gd, fake):
    """A good key of an account with fewer than 10 domains and no Discount Domain Club."""
    with pytest.raises(NotEntitled) as err:
        gd.validate("small.com", f"{SMALL_KEY}:{SMALL_SECRET}", deadline())
    assert err.value.code == "account-not-entitled" and err.value.status == 403
    assert "10 domains" in err.value.detail and "Discount Domain Club" in err.value.detail
    assert "small.com" in err.value.detail
    # ...and injected, on the write too.
    fake.inject("access_denied", route="patch")
    with pytest.raises(NotEntitled):
        gd.set_nameservers(DOMAIN, TOKEN, NEW_NS, deadline())
    # A small account with a wrong secret is still a bad key: 401 comes first.
    with pytest.raises(InvalidToken):
        gd.validate("small.com", f"{SMALL_KEY}:wrong", deadline())


@pytest.mark.parametrize("domain", ["theirs.com", "nowhere.com"])
def test_domain_of_another_account_or_none(gd, domain):
    with pytest.raises(DomainNotInAccount) as err:
        gd.validate(domain, TOKEN, deadline())
    assert domain in err.value.detail and err.value.status == 403


def test_not_found_on_read_and_write(gd, fake):
    fake.inject("not_found", route="get")
    with pytest.raises(DomainNotInAccount):
        gd.get_nameservers(DOMAIN, TOKEN, deadline())
    with pytest.raises(DomainNotInAccount):
        gd.set_nameservers("theirs.com", TOKEN, NEW_NS, deadline())
    assert fake.nameservers("theirs.com") == ["ns1.x.example", "ns2.x.example"]


def test_a_domain_transferred_out_is_not_in_the_account(gd):
    with pytest.raises(DomainNotInAccount) as err:
        gd.validate("gone.com", TOKEN, deadline())
    assert "TRANSFERRED_OUT" in err.value.detail


def test_write_refused_409_is_registrar_error_in_plain_words(gd, fake):
    with pytest.raises(RegistrarFailure) as err:  # the fake: 409 for a domain not ACTIVE
        gd.set_nameservers("held.com", TOKEN, NEW_NS, deadline())
    exc = err.value
    assert type(exc) is RegistrarFailure and exc.code == "registrar-error" and exc.status == 502
    assert "not eligible to have its nameservers changed" in exc.detail
    assert "locked, expired or in a transfer" in exc.detail and "held.com" in exc.detail


def test_write_refused_422_is_registrar_error_with_goddady_message(gd, fake):
    fake.inject("unprocessable", route="patch")
    with pytest.raises(RegistrarFailure) as err:
        gd.set_nameservers(DOMAIN, TOKEN, NEW_NS, deadline())
    assert type(err.value) is RegistrarFailure
    assert "Failed to update nameservers" in err.value.detail and "Check the nameserver names" in err.value.detail
    assert fake.nameservers(DOMAIN) == OLD_NS


def test_provider_message_is_sanitized(gd, fake):
    ugly = (f"bad\x00thing\r\nfor {KEY} and {SECRET}: see https://user:pw@evil.example/x?k={KEY} "
            + "x" * 500)
    fake.inject("conflict", route="patch", message=ugly)
    with pytest.raises(RegistrarFailure) as err:
        gd.set_nameservers(DOMAIN, TOKEN, NEW_NS, deadline())
    detail = err.value.detail
    assert KEY not in detail and SECRET not in detail and "evil.example" not in detail and "pw@" not in detail
    assert "\x00" not in detail and "\n" not in detail and "\r" not in detail
    assert "bad thing" in detail and "[redacted]" in detail and "[link]" in detail
    assert len(detail) < 450


@pytest.mark.parametrize("status, body", [(400, '{"code": "INVALID_BODY", "message": "Request was malformed"}'),
                                          (418, "teapot"), (302, "")])
def test_unknown_refusals_are_registrar_error(gd, fake, status, body):
    fake.inject("raw", route="get", status=status, body=body)
    with pytest.raises(RegistrarFailure) as err:
        gd.validate(DOMAIN, TOKEN, deadline())
    assert type(err.value) is RegistrarFailure and f"HTTP {status}" in err.value.detail


# -- the adapter: rate limits and unavailability -------------------------------------------------

def test_rate_limited_carries_retry_after_sec(gd, fake):
    fake.inject("throttle", retry_after=42)
    with pytest.raises(RateLimited) as err:
        gd.validate(DOMAIN, TOKEN, deadline())
    assert err.value.retry_after == 42 and "42 seconds" in err.value.detail and err.value.status == 429


def test_rate_limited_falls_back_to_retry_after_header(gd, fake):
    fake.inject("throttle", route="patch", retry_after=None, headers={"Retry-After": "17"})
    with pytest.raises(RateLimited) as err:
        gd.set_nameservers(DOMAIN, TOKEN, NEW_NS, deadline())
    assert err.value.retry_after == 17
    fake.inject("raw", status=429, body="slow down")
    with pytest.raises(RateLimited) as err:
        gd.get_nameservers(DOMAIN, TOKEN, deadline())
    assert err.value.retry_after is None and "in a minute" in err.value.detail
    assert fake.nameservers(DOMAIN) == OLD_NS


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_unavailable(gd, fake, status):
    fake.inject("http500", status=status)
    with pytest.raises(ApiUnavailable) as err:
        gd.validate(DOMAIN, TOKEN, deadline())
    assert f"HTTP {status}" in err.value.detail and err.value.status == 502


def test_dropped_connection_is_unavailable(gd, fake):
    fake.inject("reset", route="patch")
    with pytest.raises(ApiUnavailable):
        gd.set_nameservers(DOMAIN, TOKEN, NEW_NS, deadline())
    assert fake.nameservers(DOMAIN) == OLD_NS


def test_timeout_within_a_short_deadline_is_unavailable(gd, fake):
    fake.inject("timeout")
    with pytest.raises(ApiUnavailable) as err:
        gd.validate(DOMAIN, TOKEN, Deadline(0.5))
    assert "did not answer in time" in err.value.detail


def test_connection_refused_is_unavailable(gd, fake):
    fake.stop()
    with pytest.raises(ApiUnavailable) as err:
        gd.validate(DOMAIN, TOKEN, deadline(3))
    assert "could not be reached" in err.value.detail
    fake.start()
    gd.validate(DOMAIN, TOKEN, deadline())


def test_spent_deadline_makes_no_call(gd, fake):
    with pytest.raises(ApiUnavailable):
        gd.validate(DOMAIN, TOKEN, Deadline(0))
    assert fake.calls == []


@pytest.mark.parametrize("body", ["<html>maintenance", "[1, 2]", '{"nameServers": "ns1.x.example"}',
                                  '{"nameServers": [1, 2]}'])
def test_unreadable_answer_is_registrar_error(gd, fake, body):
    fake.inject("raw", route="get", status=200, body=body)
    with pytest.raises(RegistrarFailure) as err:
        gd.get_nameservers(DOMAIN, TOKEN, deadline())
    assert type(err.value) is RegistrarFailure and "could not read" in err.value.detail


def test_malformed_body_fault(gd, fake):
    fake.inject("badjson", route="get")
    with pytest.raises(RegistrarFailure) as err:
        gd.validate(DOMAIN, TOKEN, deadline())
    assert type(err.value) is RegistrarFailure


# -- logging and the secret ----------------------------------------------------------------------

def test_one_log_line_per_operation(gd, fake, caplog):
    caplog.set_level(logging.INFO, logger="pdm_app.customer_domains.godaddy")
    gd.validate(DOMAIN, TOKEN, deadline())
    with pytest.raises(NotEntitled):
        gd.validate("small.com", f"{SMALL_KEY}:{SMALL_SECRET}", deadline())
    gd.set_nameservers(DOMAIN, TOKEN, NEW_NS, deadline())
    with pytest.raises(InvalidToken):
        gd.get_nameservers(DOMAIN, "nocolon", deadline())
    lines = [r.getMessage() for r in caplog.records if r.name == "pdm_app.customer_domains.godaddy"]
    assert lines == [
        "godaddy validate acme.com: ok",
        "godaddy validate small.com: account-not-entitled",
        "godaddy set-ns acme.com: ok",
        "godaddy get-ns acme.com: invalid-token",
    ]


def test_the_token_never_leaks(fake, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    key = "leakkey" + secrets.token_hex(16)
    secret = "leaksecret" + secrets.token_hex(16)
    token = f"{key}:{secret}"
    fake.add_account(key, secret)
    fake.add_domain(key, "leak.com", ["ns1.x.example", "ns2.x.example"])
    fake.add_domain(key, "leakheld.com", ["ns1.x.example", "ns2.x.example"], status="PENDING_TRANSFER_OUT")
    gd = GodaddyRegistrar(fake.url)
    assert key not in repr(gd) and secret not in repr(gd)

    results: list[object] = []
    errors: list[RegistrarFailure] = []

    def run(operation):
        try:
            results.append(operation())
        except RegistrarFailure as exc:
            errors.append(exc)

    def every_operation(domain="leak.com", tok=token, dl=10.0):
        run(lambda: gd.validate(domain, tok, Deadline(dl)))
        run(lambda: gd.get_nameservers(domain, tok, Deadline(dl)))
        run(lambda: gd.set_nameservers(domain, tok, NEW_NS, Deadline(dl)))

    every_operation()
    every_operation("theirs.com")
    every_operation("leakheld.com")
    every_operation(tok=f"{key}:wrong")
    every_operation(tok=f"{key}:sec ret{secret}")
    every_operation(tok=key)
    leaky = f"echo {token} {key} {secret} http://{key}:{secret}@x.example"
    for fault in ("unauthorized", "access_denied", "forbidden", "not_found", "conflict", "unprocessable",
                  "throttle", "http500", "reset", "badjson"):
        fake.inject(fault, times=3, message=leaky)
        every_operation()
        fake.clear_faults()
    fake.inject("raw", times=3, status=400, body=json.dumps({"code": token, "message": leaky}))
    every_operation()
    fake.clear_faults()
    fake.inject("timeout", times=3)
    every_operation(dl=0.3)
    fake.clear_faults()
    fake.stop()
    every_operation(dl=2)
    fake.start()

    printed = capsys.readouterr()
    assert len(errors) >= 45 and {type(e) for e in errors} >= {
        InvalidToken, NotEntitled, DomainNotInAccount, RateLimited, ApiUnavailable, RegistrarFailure}
    for piece in (key, secret):
        for exc in errors:
            text = " ".join([str(exc), repr(exc), repr(exc.args), exc.detail])
            assert piece not in text
            assert exc.__cause__ is None and exc.__context__ is None
        assert piece not in repr(results)
        assert piece not in caplog.text
        assert all(piece not in r.getMessage() for r in caplog.records)
        assert piece not in printed.out and piece not in printed.err
        # Sent to GoDaddy only in its auth header.
        for call in fake.calls:
            others = {k: v for k, v in call.headers.items() if k.lower() != "authorization"}
            assert piece not in call.path + repr(call.query) + call.body + repr(others)
    assert any(c.header("Authorization") == f"sso-key {token}" for c in fake.calls)


# -- the fake itself -----------------------------------------------------------------------------

def raw_get(fake, path, key=KEY, secret=SECRET, **params):
    return requests.get(fake.url + path, params=params, headers={"Authorization": f"sso-key {key}:{secret}"},
                        timeout=5)


def test_fake_lists_with_statuses_limit_and_marker(fake):
    for name in ("b.com", "c.com", "d.com"):
        fake.add_domain(KEY, name, ["ns1.x.example", "ns2.x.example"])
    names = [d["domain"] for d in raw_get(fake, "/v1/domains").json()]
    assert names == ["acme.com", "b.com", "c.com", "d.com", "gone.com", "held.com"]
    page = raw_get(fake, "/v1/domains", statuses="ACTIVE", limit="2").json()
    assert [d["domain"] for d in page] == ["acme.com", "b.com"] and "nameServers" not in page[0]
    page = raw_get(fake, "/v1/domains", statuses="ACTIVE", limit="2", marker="b.com", includes="nameServers").json()
    assert [d["domain"] for d in page] == ["c.com", "d.com"] and page[0]["nameServers"] == ["ns1.x.example", "ns2.x.example"]
    inactive = raw_get(fake, "/v1/domains", statusGroups="INACTIVE").json()
    assert [d["domain"] for d in inactive] == ["gone.com"]
    assert raw_get(fake, "/v1/domains", limit="1001").status_code == 422
    assert raw_get(fake, "/v1/domains", limit="0").status_code == 422
    assert raw_get(fake, "/v1/domains", statuses="active").status_code == 422
    assert raw_get(fake, "/v1/domains", status="ACTIVE").status_code == 400  # a typo
    assert raw_get(fake, "/v1/domains", key=SMALL_KEY, secret=SMALL_SECRET).json()["code"] == "ACCESS_DENIED"


def test_fake_is_strict_about_auth(fake):
    url = fake.url + "/v1/domains/acme.com"
    assert requests.get(url, timeout=5).json()["code"] == "MISSING_CREDENTIALS"
    for header in (f"Bearer {KEY}:{SECRET}", f"sso-key {KEY}", f"sso-key :{SECRET}", f"sso-key{KEY}:{SECRET}"):
        answer = requests.get(url, headers={"Authorization": header}, timeout=5)
        assert answer.status_code == 401 and answer.json()["code"] == "MALFORMED_CREDENTIALS", header
    answer = requests.get(url, headers={"Authorization": f"sso-key {KEY}:{SECRET}x"}, timeout=5)
    assert answer.status_code == 401 and answer.json()["code"] == "UNABLE_TO_AUTHENTICATE"


def test_fake_is_strict_about_the_write(fake):
    url = fake.url + "/v1/domains/acme.com"
    auth = {"Authorization": f"sso-key {KEY}:{SECRET}"}
    ok = ["ns1.pool.example", "ns2.pool.example"]
    assert requests.patch(url, data=json.dumps({"nameServers": ok}), headers=auth, timeout=5).status_code == 415
    assert requests.patch(url, data="{", headers={**auth, "Content-Type": "application/json"},
                          timeout=5).status_code == 400
    answer = requests.patch(url, json={"nameServers": ok, "name_servers": ok}, headers=auth, timeout=5)
    assert answer.status_code == 422 and answer.json()["fields"][0]["path"] == "body.name_servers"
    answer = requests.patch(url, json={"nameServers": ["ns1.pool.example"]}, headers=auth, timeout=5)
    assert answer.status_code == 422 and "At least two" in answer.json()["message"]
    assert requests.patch(url, json={"nameServers": ["ns1.pool.example", "bad host"]}, headers=auth,
                          timeout=5).status_code == 422
    assert fake.nameservers(DOMAIN) == OLD_NS
    answer = requests.patch(url, json={"nameServers": ok}, headers=auth, timeout=5)
    assert answer.status_code == 204 and answer.content == b"" and fake.nameservers(DOMAIN) == ok
    assert requests.put(url, json={}, headers=auth, timeout=5).status_code == 405
    assert requests.delete(url, headers=auth, timeout=5).status_code == 405
    assert requests.get(fake.url + "/v2/anything", headers=auth, timeout=5).status_code == 404


def test_fake_faults_are_per_route_and_counted(fake):
    fake.inject("throttle", times=2, route="patch", retry_after=7)
    assert raw_get(fake, "/v1/domains/acme.com").status_code == 200
    auth = {"Authorization": f"sso-key {KEY}:{SECRET}"}
    for _ in range(2):
        answer = requests.patch(fake.url + "/v1/domains/acme.com", json={"nameServers": NEW_NS}, headers=auth,
                                timeout=5)
        assert answer.status_code == 429 and answer.json()["retryAfterSec"] == 7
    assert fake.nameservers(DOMAIN) == OLD_NS
    answer = requests.patch(fake.url + "/v1/domains/acme.com", json={"nameServers": NEW_NS}, headers=auth, timeout=5)
    assert answer.status_code == 204
    with pytest.raises(ValueError):
        fake.inject("nope")
    with pytest.raises(ValueError):
        fake.inject("reset", route="delete")
