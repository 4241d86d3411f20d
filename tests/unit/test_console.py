"""The console's pure parts: a row's DNS state, a tenant's records beside the DNS, the
listing's cursors, how values read, and the settings it takes."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pdm_app.config import ConfigError, load_settings
from pdm_app.console import formatting
from pdm_app.dns.backend import NameDrift
from pdm_app.dns.zone import Record
from pdm_app.domain import Allocation, DomainError
from pdm_app.services.console import dns_state, record_lines, _after, _cursor

AT = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
NAMES = ("*", "console")
KEY = {"DYNADOT_API_KEY": "k", "PDM_AUTH": "operators"}


def active(sub="acme", ip="198.51.100.7") -> Allocation:
    return Allocation("omani.works", sub, "active", AT, "catalyst-api", load_balancer_ip=ip)


@pytest.mark.parametrize("state,work,conflict,expected", [
    ("active", None, None, ("published", None)),
    ("reserved", None, None, ("", None)),
    ("reserved", None, "A shop 1.2.3.4", ("conflict", "A shop 1.2.3.4")),
    ("active", None, "A shop 1.2.3.4", ("published", None)),  # a conflict refuses commits, not a live tenant
    ("active", ("publish", None, "timeout"), None, ("pending", "timeout")),
    ("active", ("remove", None, None), None, ("removing", None)),
    ("active", ("publish", "dns-conflict", "TXT there"), None, ("conflict", "TXT there")),
    ("active", ("publish", "pool-full", "no room"), None, ("refused", "no room")),
])
def test_a_rows_dns_state(state, work, conflict, expected):
    assert dns_state(state, work, conflict) == expected


def test_records_beside_the_dns():
    held = [Record("*.acme", "a", "198.51.100.7", "zone omani.works"),
            Record("console.acme", "A", "203.0.113.1", "zone omani.works"),
            Record("old.acme", "A", "198.51.100.7", "zone omani.works"),
            Record("_acme-challenge.acme", "TXT", "token", "zone omani.works")]
    drift = NameDrift("acme", "active", wrong=[], orphans=["old.acme"])
    lines = {(line.host, line.rtype): (line.want, line.have, line.status) for line in
             record_lines(active(), NAMES, drift, held)}
    assert lines == {
        ("*.acme", "A"): ("198.51.100.7", "198.51.100.7", "ok"),
        ("console.acme", "A"): ("198.51.100.7", "203.0.113.1", "wrong"),
        ("old.acme", "A"): ("", "198.51.100.7", "left over"),
        ("_acme-challenge.acme", "TXT"): ("", "token", "not ours"),
    }


def test_a_hand_made_record_where_a_tenant_goes_is_not_ours():
    drift = NameDrift("acme", "active", foreign=["A console.acme 203.0.113.1"])
    lines = record_lines(active(), NAMES, drift, [Record("console.acme", "A", "203.0.113.1")])
    assert [(line.host, line.status) for line in lines] == [("*.acme", "missing"), ("console.acme", "not ours")]


def test_a_reserved_name_wants_nothing():
    reserved = Allocation("omani.works", "acme", "reserved", AT, "x")
    assert record_lines(reserved, NAMES, None, []) == []


def test_cursors_round_trip_and_refuse_what_they_did_not_make():
    class Row:
        subdomain = "acme"
        updated_at = AT
        reserved_at = AT - timedelta(hours=1)

    assert _after(_cursor(Row, "name"), "name") == ("acme",)
    assert _after(_cursor(Row, "updated"), "updated") == (AT, "acme")
    assert _after(_cursor(Row, "reserved"), "reserved") == (AT - timedelta(hours=1), "acme")
    for bad in ("acme", "yesterday|acme", "2026-12-07T12:00:00|acme"):  # the last: no time zone
        with pytest.raises(DomainError):
            _after(bad, "updated")


@pytest.mark.parametrize("value,shown", [("=1+1", "'=1+1"), ("+cmd", "'+cmd"), ("-x", "'-x"), ("@sum", "'@sum"),
                                         ("catalyst", "catalyst"), (None, ""), (7, "7")])
def test_a_csv_cell_is_never_a_formula(value, shown):
    assert formatting.csv_cell(value) == shown


def test_how_times_read():
    assert formatting.when(None) == "never"
    assert formatting.when(AT) == "2026-12-07 12:00:00 UTC"
    assert formatting.when(AT, AT + timedelta(minutes=3)) == "2026-12-07 12:00:00 UTC (3m ago)"
    assert formatting.age(AT + timedelta(hours=2), AT) == "in 2h"
    assert formatting.age(AT, AT + timedelta(seconds=5)) == "5s ago"
    assert formatting.duration(5400) == "1h30m" and formatting.duration(600) == "10m"


def test_the_consoles_settings():
    settings = load_settings({**KEY, "PDM_SECRET_KEY": "s" * 32, "PDM_CONSOLE_IDLE_TIMEOUT": "15m",
                              "PDM_CONSOLE_SSO_PROXIES": "10.0.0.0/8", "PDM_CONSOLE_SECURE_COOKIE": "true"})
    assert settings.secret_key == "s" * 32 and settings.console_idle_timeout == 900
    assert [str(n) for n in settings.console_sso_proxies] == ["10.0.0.0/8"] and settings.console_secure_cookie
    off = load_settings(KEY)
    assert off.secret_key is None and not off.console_sso_proxies and not off.console_secure_cookie


def test_a_key_comes_from_a_file(tmp_path):
    path = tmp_path / "key"
    path.write_text("f" * 40 + "\n")
    assert load_settings({**KEY, "PDM_SECRET_KEY_FILE": str(path)}).secret_key == "f" * 40


@pytest.mark.parametrize("env,says", [
    ({"PDM_SECRET_KEY": "short"}, "at least 32"),
    ({"PDM_SECRET_KEY": "s" * 40, "PDM_SECRET_KEY_FILE": "/x"}, "not both"),
    ({"PDM_SECRET_KEY_FILE": "/nonexistent/key"}, "cannot be read"),
    ({"PDM_CONSOLE_SSO_PROXIES": "not-an-address"}, "PDM_CONSOLE_SSO_PROXIES"),
    ({"PDM_CONSOLE_SECURE_COOKIE": "maybe"}, "true or false"),
])
def test_bad_console_settings_are_refused(env, says):
    with pytest.raises(ConfigError) as refused:
        load_settings({**KEY, **env})
    assert says in str(refused.value) and "s" * 40 not in str(refused.value)
