"""CloudflareRegistrar against FakeCloudflare on loopback: validate, read the assigned
nameservers, set-ns refused without a write, every refusal classified, transport faults,
deadlines, and the customer's token never leaking.

Nothing here asserts how long something took: a deadline is proven by the calls the fake
saw (or did not see) and the error class; timeouts given to waits are safety nets."""
from __future__ import annotations

import json
import logging
import uuid

import pytest
import requests

from pdm_app.customer_domains.base import (ApiUnavailable, Deadline, DomainNotInAccount, InvalidToken, RateLimited,
                                           RegistrarFailure, Unsupported)
from pdm_app.customer_domains.cloudflare import CloudflareRegistrar
from pdm_app.testing.fake_cloudflare import FakeCloudflare

TOKEN = "cf_" + uuid.uuid4().hex + "_" + uuid.uuid4().hex[:6]
DOMAIN = "acme.com"
OTHER = "other.org"
ASSIGNED = ["lara.ns.cloudflare.com", "greg.ns.cloudflare.com"]
WANTED = ["ns1.pool.example", "ns2.pool.example"]
LOGGER = "pdm_app.customer_domains.cloudflare"


@pytest.fixture
def fake():
    server = FakeCloudflare().start()
    server.hang_seconds = 60  # far past any deadline here; stop() lets a held request go
    server.add_token(TOKEN)
    server.add_zone(DOMAIN, list(ASSIGNED))
    server.add_zone(OTHER)
    yield server
    server.stop()


@pytest.fixture
def cf(fake):
    return CloudflareRegistrar(fake.url)


def deadline(seconds: float = 12.0) -> Deadline:
    return Deadline(seconds)


def paths(fake) -> list[str]:
    return [c.method + " " + c.path.removeprefix("/client/v4") for c in fake.calls]


def zones_answer(*zones: dict) -> str:
    return json.dumps({"success": True, "errors": [], "messages": [], "result": list(zones),
                       "result_info": {"page": 1, "per_page": 20, "count": len(zones),
                                       "total_count": len(zones), "total_pages": 1}})


def envelope_error(code: int, message: str) -> str:
    return json.dumps({"success": False, "errors": [{"code": code, "message": message}],
                       "messages": [], "result": None})


# -- the adapter's face ------------------------------------------------------------------

def test_name_propagation_and_repr(cf):
    assert cf.name == "cloudflare"
    assert cf.propagation == "cloudflare: minutes, TLD up to 24 h"
    assert TOKEN not in repr(cf)


# -- validate -----------------------------------------------------------------------------

def test_validate_ok_sends_verify_then_the_zone_lookup(cf, fake):
    assert cf.validate(DOMAIN, TOKEN, deadline()) is None
    assert paths(fake) == ["GET /user/tokens/verify", "GET /zones"]
    verify, lookup = fake.calls
    assert verify.query == [] and verify.body == ""
    assert lookup.query == [("name", DOMAIN)] and lookup.body == ""
    for call in fake.calls:
        assert call.headers["Authorization"] == f"Bearer {TOKEN}"
        assert call.headers["User-Agent"] == "pool-domain-manager"


def test_validate_trims_the_token(cf, fake):
    cf.validate(DOMAIN, f"  {TOKEN}\n", deadline())
    assert all(c.headers["Authorization"] == f"Bearer {TOKEN}" for c in fake.calls)


def test_validate_matches_the_zone_name_case_insensitively(cf, fake):
    zone = fake.zone(DOMAIN)
    fake.inject("raw", route="zones", status=200, body=zones_answer({**zone, "name": "ACME.Com"}))
    cf.validate(DOMAIN, TOKEN, deadline())


def test_validate_wants_the_exact_name(cf, fake):
    zone = fake.zone(DOMAIN)
    fake.inject("raw", route="zones", status=200, body=zones_answer(
        {**zone, "name": "sub.acme.com"}, {**zone, "name": "acme.com.evil.example"}, {**zone, "name": "cme.com"}))
    with pytest.raises(DomainNotInAccount):
        cf.validate(DOMAIN, TOKEN, deadline())


@pytest.mark.parametrize("status", ["disabled", "expired"])
def test_a_disabled_or_expired_token_is_refused_and_says_so(fake, cf, status):
    fake.add_token("cf_" + status, status=status)
    with pytest.raises(InvalidToken) as err:
        cf.validate(DOMAIN, "cf_" + status, deadline())
    assert status in err.value.detail and err.value.status == 401
    assert paths(fake) == ["GET /user/tokens/verify"]  # nothing else asked
    # The same through the fault, for a token that is otherwise active.
    fake.reset_calls()
    fake.inject(status, route="verify")
    with pytest.raises(InvalidToken, match=status):
        cf.validate(DOMAIN, TOKEN, deadline())


def test_an_unknown_token_is_invalid(cf, fake):
    with pytest.raises(InvalidToken) as err:
        cf.validate(DOMAIN, "cf_not_a_token", deadline())
    assert "API token" in err.value.detail
    # The user endpoint's refusal may be an account-owned token: the lookup decides.
    assert paths(fake) == ["GET /user/tokens/verify", "GET /zones"]
    with pytest.raises(InvalidToken):  # 403 9109 "Invalid access token" at /zones
        cf.get_nameservers(DOMAIN, "cf_not_a_token", deadline())


def test_an_account_owned_token_verifies_under_its_account(cf, fake):
    fake.add_token("cf_account", owner="account")
    cf.validate(DOMAIN, "cf_account", deadline())
    account = fake.account_id("main")
    assert paths(fake) == ["GET /user/tokens/verify", "GET /zones", f"GET /accounts/{account}/tokens/verify"]
    # A disabled account token cannot list zones: refused there, in general words.
    fake.add_token("cf_account_off", owner="account", status="disabled")
    with pytest.raises(InvalidToken, match="did not accept"):
        cf.validate(DOMAIN, "cf_account_off", deadline())
    # Disabled between the lookup and the verify: the account endpoint's status is honoured.
    fake.inject("disabled", route="account_verify")
    with pytest.raises(InvalidToken, match="disabled"):
        cf.validate(DOMAIN, "cf_account", deadline())


def test_account_verify_refused_is_invalid(cf, fake):
    """A user endpoint that refuses, a zone that answers, and an account endpoint that
    refuses too: the token is not good."""
    fake.inject("unauthorized", route="verify")
    with pytest.raises(InvalidToken):
        cf.validate(DOMAIN, TOKEN, deadline())
    assert paths(fake)[-1].endswith("/tokens/verify") and len(fake.calls) == 3


def test_malformed_account_id_is_not_put_in_a_path(cf, fake):
    fake.inject("unauthorized", route="verify")
    zone = fake.zone(DOMAIN)
    fake.inject("raw", route="zones", status=200, body=zones_answer({**zone, "account": {"id": "../../x"}}))
    with pytest.raises(InvalidToken):
        cf.validate(DOMAIN, TOKEN, deadline())
    assert len(fake.calls) == 2


@pytest.mark.parametrize("token", ["", "   ", "two words", "tok\nen", "t\u00f8ken", "x" * 1025, "a\x00b"])
def test_a_malformed_token_makes_no_request(cf, fake, token):
    for call in (lambda: cf.validate(DOMAIN, token, deadline()),
                 lambda: cf.get_nameservers(DOMAIN, token, deadline()),
                 lambda: cf.set_nameservers(DOMAIN, token, WANTED, deadline())):
        with pytest.raises(InvalidToken) as err:
            call()
        assert "Cloudflare API token" in err.value.detail
    assert fake.calls == []


# -- not in the account -------------------------------------------------------------------

def test_a_domain_not_in_the_account(cf, fake):
    with pytest.raises(DomainNotInAccount) as err:
        cf.validate("elsewhere.net", TOKEN, deadline())
    assert "elsewhere.net" in err.value.detail and err.value.status == 403
    with pytest.raises(DomainNotInAccount):
        cf.get_nameservers("elsewhere.net", TOKEN, deadline())


def test_a_token_scoped_to_other_zones_or_another_account(cf, fake):
    fake.add_token("cf_scoped", zones=[OTHER])
    with pytest.raises(DomainNotInAccount):
        cf.validate(DOMAIN, "cf_scoped", deadline())
    cf.validate(OTHER, "cf_scoped", deadline())
    fake.add_token("cf_elsewhere", account="second")
    with pytest.raises(DomainNotInAccount):
        cf.validate(DOMAIN, "cf_elsewhere", deadline())


def test_an_empty_zone_list(cf, fake):
    fake.inject("empty_zones", route="zones")
    with pytest.raises(DomainNotInAccount):
        cf.validate(DOMAIN, TOKEN, deadline())


def test_an_active_zone_is_preferred_over_a_pending_one(cf, fake):
    active = fake.zone(DOMAIN)
    pending = {**active, "id": uuid.uuid4().hex, "status": "pending", "name_servers": ["x.ns.cloudflare.com"]}
    fake.inject("raw", route="zones", status=200, body=zones_answer(pending, active))
    assert cf.get_nameservers(DOMAIN, TOKEN, deadline()) == ASSIGNED
    assert paths(fake)[-1] == f"GET /zones/{active['id']}"


# -- every refusal classified -------------------------------------------------------------

CASES = [
    # (route, fault, inject kwargs, expected class)
    ("zones", "unauthorized", {}, InvalidToken),
    ("zone", "unauthorized", {}, InvalidToken),
    ("zones", "forbidden", {}, DomainNotInAccount),
    ("zone", "forbidden", {}, DomainNotInAccount),
    ("zones", "forbidden", {"code": 9109, "message": "Invalid access token"}, InvalidToken),
    ("zones", "forbidden", {"code": 10000, "message": "Authentication error"}, InvalidToken),
    ("zones", "forbidden", {"code": 1234, "message": "Something else"}, InvalidToken),
    *[("zones", "unsuccessful", {"code": c}, InvalidToken) for c in (10000, 6003, 6111, 1000)],
    *[("zones", "unsuccessful", {"code": c}, DomainNotInAccount) for c in (9103, 9109, 1001)],
    *[("zones", "unsuccessful", {"code": c}, RateLimited) for c in (10013, 971)],
    ("zones", "unsuccessful", {"code": 1234, "message": "Something odd"}, RegistrarFailure),
    ("zone", "unsuccessful", {"code": 7003, "status": 404}, DomainNotInAccount),
    ("zones", "bad_request", {}, RegistrarFailure),
    ("zones", "bad_request", {"code": 6003, "message": "Invalid request headers"}, InvalidToken),
    ("zones", "throttle", {}, RateLimited),
    ("zone", "throttle", {}, RateLimited),
    ("zones", "raw", {"status": 429, "body": "slow down"}, RateLimited),
    ("zones", "raw", {"status": 401, "body": ""}, InvalidToken),
    ("zones", "raw", {"status": 403, "body": "<html>denied</html>"}, InvalidToken),
    ("zones", "raw", {"status": 404, "body": envelope_error(7000, "No route for that URI")}, RegistrarFailure),
    ("zones", "raw", {"status": 409, "body": "{}"}, RegistrarFailure),
    ("zones", "malformed", {}, RegistrarFailure),
    ("zone", "malformed", {}, RegistrarFailure),
    ("zones", "raw", {"status": 200, "body": "[]"}, RegistrarFailure),
    ("zones", "raw", {"status": 200, "body": '{"success": true}'}, RegistrarFailure),
    ("zones", "raw", {"status": 200, "body": '{"success": true, "result": {"id": "x"}}'}, RegistrarFailure),
    ("zone", "raw", {"status": 200, "body": '{"success": true, "result": {"name_servers": null}}'},
     RegistrarFailure),
    ("zone", "raw", {"status": 200, "body": '{"success": true, "result": {"name_servers": ["not a host"]}}'},
     RegistrarFailure),
    ("zones", "raw", {"status": 200, "body": "[" * 100000}, RegistrarFailure),
    ("zones", "raw", {"status": 200, "body": '{"success": false, "errors": [{"code": "9103"}]}'},
     DomainNotInAccount),
]


@pytest.mark.parametrize("route,fault,kwargs,expected", CASES,
                         ids=[f"{r}-{f}-{k.get('code', k.get('status', ''))}" for r, f, k, _ in CASES])
def test_refusals_are_classified(cf, fake, route, fault, kwargs, expected):
    fake.inject(fault, route=route, **kwargs)
    with pytest.raises(RegistrarFailure) as err:
        cf.get_nameservers(DOMAIN, TOKEN, deadline())
    assert type(err.value) is expected, err.value.detail
    assert err.value.detail
    statuses = {InvalidToken: 401, DomainNotInAccount: 403, RateLimited: 429, RegistrarFailure: 502}
    assert err.value.status == statuses[expected]


def test_a_verify_refusal_is_classified_too(cf, fake):
    fake.inject("throttle", route="verify", retry_after="42")
    with pytest.raises(RateLimited) as err:
        cf.validate(DOMAIN, TOKEN, deadline())
    assert err.value.retry_after == 42.0 and paths(fake) == ["GET /user/tokens/verify"]
    fake.inject("bad_request", route="verify")
    with pytest.raises(RegistrarFailure) as err:
        cf.validate(DOMAIN, TOKEN, deadline())
    assert type(err.value) is RegistrarFailure and "6007" in err.value.detail


def test_an_unknown_refusal_quotes_cloudflare_in_plain_words(cf, fake):
    fake.inject("bad_request", route="zones", code=1049, message="acme.com is not a\nregistered domain")
    with pytest.raises(RegistrarFailure) as err:
        cf.validate(DOMAIN, TOKEN, deadline())
    assert type(err.value) is RegistrarFailure
    assert "error 1049: acme.com is not a registered domain" in err.value.detail
    assert "\n" not in err.value.detail


def test_rate_limits_carry_retry_after_when_cloudflare_says(cf, fake):
    fake.inject("throttle", route="zones", retry_after="120")
    with pytest.raises(RateLimited) as err:
        cf.validate(DOMAIN, TOKEN, deadline())
    assert err.value.retry_after == 120.0 and err.value.status == 429
    fake.inject("throttle", route="zones", retry_after=None)
    with pytest.raises(RateLimited) as err:
        cf.validate(DOMAIN, TOKEN, deadline())
    assert err.value.retry_after is None
    fake.inject("unsuccessful", route="zones", code=10013, message="Rate limited")
    with pytest.raises(RateLimited) as err:
        cf.validate(DOMAIN, TOKEN, deadline())
    assert err.value.retry_after is None


def test_a_redirect_is_never_followed(cf, fake):
    """502 either way. Today base.new_session's ``max_redirects = 0`` makes requests raise
    TooManyRedirects even with ``allow_redirects=False``, so base.call reports "could not
    be reached" (ApiUnavailable) rather than the adapter's "unexpected HTTP 302"."""
    fake.inject("raw", route="zones", status=302, body="", headers={"Location": fake.url + "/zones?name=x"})
    with pytest.raises(RegistrarFailure) as err:
        cf.validate(DOMAIN, TOKEN, deadline())
    assert err.value.status == 502
    assert paths(fake) == ["GET /user/tokens/verify", "GET /zones"]


def test_a_zone_id_that_is_not_cloudflares_is_never_put_in_a_path(cf, fake):
    zone = fake.zone(DOMAIN)
    fake.inject("raw", route="zones", status=200, body=zones_answer({**zone, "id": "../user/tokens"}))
    with pytest.raises(RegistrarFailure) as err:
        cf.get_nameservers(DOMAIN, TOKEN, deadline())
    assert type(err.value) is RegistrarFailure
    assert paths(fake) == ["GET /zones"]


# -- unavailable ---------------------------------------------------------------------------

@pytest.mark.parametrize("route", ["verify", "zones", "zone"])
@pytest.mark.parametrize("fault,kwargs", [("http500", {}), ("http500", {"status": 503}), ("drop", {}),
                                          ("reset", {})])
def test_transport_faults_are_unavailable(cf, fake, route, fault, kwargs):
    fake.inject(fault, route=route, **kwargs)
    run = cf.get_nameservers if route == "zone" else cf.validate
    with pytest.raises(ApiUnavailable) as err:
        run(DOMAIN, TOKEN, deadline())
    assert err.value.status == 502 and "Cloudflare" in err.value.detail


def test_a_timeout_within_the_deadline(cf, fake):
    fake.inject("timeout", route="zones")
    with pytest.raises(ApiUnavailable, match="did not answer in time"):
        cf.validate(DOMAIN, TOKEN, Deadline(0.5))
    assert paths(fake) == ["GET /user/tokens/verify", "GET /zones"]


def test_connection_refused(cf, fake):
    fake.stop()
    with pytest.raises(ApiUnavailable, match="could not be reached"):
        cf.validate(DOMAIN, TOKEN, deadline())
    fake.start()
    cf.validate(DOMAIN, TOKEN, deadline())


def test_the_deadline_covers_every_call(cf, fake):
    """A clock that jumps past the deadline after the first call: the second is not made."""
    ticks = iter([0.0, 1.0, 100.0, 100.0])
    with pytest.raises(ApiUnavailable):
        cf.validate(DOMAIN, TOKEN, Deadline(12, clock=lambda: next(ticks)))
    assert paths(fake) == ["GET /user/tokens/verify"]


def test_a_spent_deadline_makes_no_call(cf, fake):
    with pytest.raises(ApiUnavailable):
        cf.validate(DOMAIN, TOKEN, Deadline(0))
    assert fake.calls == []


# -- nameservers ---------------------------------------------------------------------------

def test_get_nameservers_reads_the_zone(cf, fake):
    assert cf.get_nameservers(DOMAIN, TOKEN, deadline()) == ASSIGNED
    zone_id = fake.zone(DOMAIN)["id"]
    assert paths(fake) == ["GET /zones", f"GET /zones/{zone_id}"]
    assert fake.calls[1].query == []


def test_get_nameservers_lower_case_without_dots_in_cloudflares_order(cf, fake):
    fake.add_zone("mixed.example", ["Zed.NS.Cloudflare.com.", "amy.ns.cloudflare.com"])
    assert cf.get_nameservers("mixed.example", TOKEN, deadline()) == ["zed.ns.cloudflare.com",
                                                                      "amy.ns.cloudflare.com"]


def test_set_nameservers_is_unsupported_and_calls_nothing(cf, fake):
    with pytest.raises(Unsupported) as err:
        cf.set_nameservers(DOMAIN, TOKEN, WANTED, deadline())
    failure = err.value
    assert failure.code == "unsupported-operation" and failure.status == 422
    assert "Cloudflare assigns" in failure.detail          # why
    assert "registrar where acme.com is registered" in failure.detail  # what to do instead
    assert "ns1.pool.example, ns2.pool.example" in failure.detail
    assert "allows setting nameservers" in failure.detail
    assert fake.calls == []


def test_read_back_after_set_is_cloudflares_assigned_list(cf, fake):
    with pytest.raises(Unsupported):
        cf.set_nameservers(DOMAIN, TOKEN, WANTED, deadline())
    assert cf.get_nameservers(DOMAIN, TOKEN, deadline()) == ASSIGNED
    assert fake.zone(DOMAIN)["name_servers"] == ASSIGNED
    assert not any(c.method != "GET" for c in fake.calls)


# -- the fake's own strictness ---------------------------------------------------------------

def raw(fake, method: str, path: str, token: str | None = TOKEN, **kwargs) -> requests.Response:
    headers = kwargs.pop("headers", {})
    if token is not None:
        headers.setdefault("Authorization", f"Bearer {token}")
    return requests.request(method, fake.url + path, headers=headers, timeout=10, **kwargs)


def first_error(response: requests.Response) -> dict:
    body = response.json()
    assert body["success"] is False and body["result"] is None and body["messages"] == []
    return body["errors"][0]


def test_fake_name_servers_are_read_only(fake):
    zone_id = fake.zone(DOMAIN)["id"]
    answer = raw(fake, "PATCH", f"/zones/{zone_id}", json={"name_servers": WANTED})
    assert answer.status_code == 400 and first_error(answer)["code"] == 1086
    assert fake.zone(DOMAIN)["name_servers"] == ASSIGNED
    answer = raw(fake, "PATCH", f"/zones/{zone_id}", json={"paused": True, "type": "full"})
    assert answer.status_code == 400 and first_error(answer)["code"] == 1085
    answer = raw(fake, "PATCH", f"/zones/{zone_id}", json={"vanity_name_servers": WANTED})
    assert answer.status_code == 400 and first_error(answer)["code"] == 1088  # a free plan
    answer = raw(fake, "PATCH", f"/zones/{zone_id}", data='{"paused": true}')
    assert answer.status_code == 400 and first_error(answer)["code"] == 6105
    answer = raw(fake, "PATCH", f"/zones/{zone_id}", json={"paused": True})
    assert answer.status_code == 200 and answer.json()["result"]["paused"] is True
    assert answer.json()["result"]["name_servers"] == ASSIGNED
    fake.add_token("cf_read_only", edit=False)
    answer = raw(fake, "PATCH", f"/zones/{zone_id}", token="cf_read_only", json={"paused": False})
    assert answer.status_code == 403 and first_error(answer)["code"] == 9109


def test_fake_auth_and_routes(fake):
    answer = raw(fake, "GET", "/zones", token=None)
    assert answer.status_code == 400 and first_error(answer)["code"] == 9106
    answer = raw(fake, "GET", "/zones", headers={"Authorization": f"Token {TOKEN}"})
    error = first_error(answer)
    assert answer.status_code == 400 and error["code"] == 6003 and error["error_chain"][0]["code"] == 6111
    answer = raw(fake, "GET", "/user/tokens/verify", token="cf_unknown")
    assert answer.status_code == 401 and first_error(answer) == {"code": 1000, "message": "Invalid API Token"}
    answer = raw(fake, "GET", "/zones", token="cf_unknown")
    assert answer.status_code == 403 and first_error(answer)["message"] == "Invalid access token"
    answer = raw(fake, "GET", "/zones", params={"name": DOMAIN, "nmae": "x"})
    assert answer.status_code == 400
    assert raw(fake, "GET", "/dns_records").status_code == 404
    answer = raw(fake, "POST", "/zones", json={"name": "new.example"})
    assert answer.status_code == 405 and first_error(answer)["code"] == 7001
    answer = raw(fake, "GET", "/zones/acme.com")
    assert answer.status_code == 404 and first_error(answer)["code"] == 7003
    ok = raw(fake, "GET", "/user/tokens/verify").json()
    assert ok["success"] is True and ok["result"]["status"] == "active"
    assert ok["messages"][0]["code"] == 10000  # Cloudflare's success message carries 10000
    listed = raw(fake, "GET", "/zones", params={"name": "ACME.COM"}).json()
    assert [z["name"] for z in listed["result"]] == [DOMAIN] and listed["result_info"]["total_count"] == 1
    assert fake.calls[0].headers.get("Authorization") is None


# -- logs and secrets ----------------------------------------------------------------------

def test_one_log_line_per_operation(cf, fake, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    cf.validate(DOMAIN, TOKEN, deadline())
    with pytest.raises(DomainNotInAccount):
        cf.validate("elsewhere.net", TOKEN, deadline())
    cf.get_nameservers(DOMAIN, TOKEN, deadline())
    with pytest.raises(Unsupported):
        cf.set_nameservers(DOMAIN, TOKEN, WANTED, deadline())
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert lines == [
        f"cloudflare validate {DOMAIN}: ok",
        "cloudflare validate elsewhere.net: domain-not-in-account",
        f"cloudflare get_nameservers {DOMAIN}: ok",
        f"cloudflare set_nameservers {DOMAIN}: unsupported-operation",
    ]


def every_case(cf: CloudflareRegistrar, fake: FakeCloudflare, token: str):
    """Run every success and error class once; yield what each returned or raised."""
    fake.add_token(token)
    fake.add_token(token + "_off", status="expired")
    fake.add_token(token + "_acct", owner="account")
    runs = [
        lambda: cf.validate(DOMAIN, token, deadline()),
        lambda: cf.validate(DOMAIN, token + "_acct", deadline()),
        lambda: cf.get_nameservers(DOMAIN, token, deadline()),
        lambda: cf.set_nameservers(DOMAIN, token, WANTED, deadline()),
        lambda: cf.validate(DOMAIN, token + "_off", deadline()),
        lambda: cf.validate(DOMAIN, token + "_unknown", deadline()),
        lambda: cf.get_nameservers(DOMAIN, token + "_unknown", deadline()),
        lambda: cf.validate("elsewhere.net", token, deadline()),
        lambda: cf.validate(DOMAIN, token + " " + token, deadline()),
        lambda: cf.validate(DOMAIN, token, Deadline(0)),
    ]
    for route, fault, kwargs, _ in CASES:
        runs.append(lambda r=route, f=fault, k=kwargs: (fake.inject(f, route=r, **k),
                                                      cf.get_nameservers(DOMAIN, token, deadline())))
    for fault in ("http500", "drop", "reset", "malformed", "throttle", "unauthorized", "forbidden"):
        runs.append(lambda f=fault: (fake.inject(f, route="verify"), cf.validate(DOMAIN, token, deadline())))
    # Cloudflare echoing the token back in an error message: quoted, but cut out.
    runs.append(lambda: (fake.inject("bad_request", route="zones", code=1234, message=f"bad token {token}!"),
                         cf.validate(DOMAIN, token, deadline())))
    runs.append(lambda: (fake.inject("timeout", route="zone"), cf.get_nameservers(DOMAIN, token, Deadline(0.5))))
    for run in runs:
        try:
            yield run()
        except RegistrarFailure as exc:
            yield exc
        fake.clear_faults()
    fake.stop()
    try:
        cf.validate(DOMAIN, token, deadline())
    except RegistrarFailure as exc:
        yield exc


def test_the_token_never_leaks(cf, fake, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    token = "cf_" + uuid.uuid4().hex + uuid.uuid4().hex
    outcomes = list(every_case(cf, fake, token))
    errors = [o for o in outcomes if isinstance(o, RegistrarFailure)]
    results = [o for o in outcomes if not isinstance(o, RegistrarFailure)]
    kinds = {type(e) for e in errors}
    assert kinds == {InvalidToken, DomainNotInAccount, RateLimited, ApiUnavailable, Unsupported, RegistrarFailure}
    assert results and all(token not in repr(r) for r in results)
    for exc in errors:
        assert token not in str(exc) and token not in repr(exc) and token not in repr(exc.args)
        assert token not in exc.detail
        assert exc.__cause__ is None and exc.__context__ is None
    echoed = [e for e in errors if "bad token ***!" in e.detail]
    assert len(echoed) == 1
    assert any(r.name.startswith("urllib3") for r in caplog.records)  # it did log
    assert token not in caplog.text
    assert all(token not in r.getMessage() for r in caplog.records)
    printed = capsys.readouterr()
    assert token not in printed.out and token not in printed.err
    # Sent to Cloudflare only in the Authorization header.
    assert fake.calls
    for call in fake.calls:
        assert token not in call.path and token not in str(call.query) and token not in call.body
        for name, value in call.headers.items():
            if name.lower() == "authorization":
                assert value.startswith(f"Bearer {token}")
            else:
                assert token not in value


def test_every_detail_is_for_a_person(cf, fake):
    token = "cf_" + uuid.uuid4().hex
    for outcome in every_case(cf, fake, token):
        if not isinstance(outcome, RegistrarFailure):
            continue
        detail = outcome.detail
        assert detail and detail == str(outcome)
        for forbidden in ("http://", "https://", "127.0.0.1", "Traceback", "Bearer", "requests.", "urllib3",
                          "HTTPConnectionPool", "Exception"):
            assert forbidden not in detail, detail
        assert all(c.isprintable() for c in detail)
