"""The settings of the per-caller rate limits (PDM_RATE_LIMITS) and of the quota of open
reservations (PDM_MAX_OPEN_RESERVATIONS), and which client address counts. At work on
the endpoints: tests/integration/test_rate_limits.py; across services:
tests/e2e/test_rate_limits.py."""
from __future__ import annotations

import pytest

from pdm_app.auth import client_address
from pdm_app.config import (
    DEFAULT_RATE_LIMITS,
    ConfigError,
    Settings,
    load_settings,
    parse_ip_ranges,
    parse_rate_limits,
)

KEY = {"DYNADOT_API_KEY": "k", "PDM_AUTH": "disabled"}


# -- settings ---------------------------------------------------------------------------


def test_the_documented_defaults_come_from_load_settings_and_tests_build_settings_without_limits():
    settings = load_settings(KEY)
    assert settings.rate_limits == {"check": "200/second", "write": "50/second,5000/hour",
                                    "registrar": "30/minute", "operator": "50/second", "sign-in": "10/minute"}
    assert settings.max_open_reservations == 500
    assert settings.trusted_proxies == ()
    assert Settings().rate_limits == {}  # what make_settings builds on: limits off


def test_rate_limit_settings():
    assert parse_rate_limits(DEFAULT_RATE_LIMITS) == load_settings(KEY).rate_limits
    # A scope not named keeps its default; scope=off lifts one; off lifts them all.
    assert parse_rate_limits("write=20/minute; check=off") == {
        "write": "20/minute", "registrar": "30/minute", "operator": "50/second", "sign-in": "10/minute"}
    assert load_settings({**KEY, "PDM_RATE_LIMITS": "off"}).rate_limits == {}
    settings = load_settings({**KEY, "PDM_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7 2001:db8::/32",
                              "PDM_MAX_OPEN_RESERVATIONS": "0"})
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]
    assert settings.max_open_reservations == 0


@pytest.mark.parametrize("env, name", [
    ({"PDM_RATE_LIMITS": "write=lots"}, "PDM_RATE_LIMITS"),
    ({"PDM_RATE_LIMITS": "writes=5/second"}, "PDM_RATE_LIMITS"),
    ({"PDM_RATE_LIMITS": "write=0/second"}, "PDM_RATE_LIMITS"),
    ({"PDM_RATE_LIMITS": "50/second"}, "PDM_RATE_LIMITS"),
    ({"PDM_TRUSTED_PROXIES": "10.0.0.0/33"}, "PDM_TRUSTED_PROXIES"),
    ({"PDM_TRUSTED_PROXIES": "proxy.local"}, "PDM_TRUSTED_PROXIES"),
    ({"PDM_MAX_OPEN_RESERVATIONS": "-1"}, "PDM_MAX_OPEN_RESERVATIONS"),
    ({"PDM_MAX_OPEN_RESERVATIONS": "many"}, "PDM_MAX_OPEN_RESERVATIONS"),
])
def test_a_bad_value_names_its_variable(env, name):
    with pytest.raises(ConfigError, match=name) as raised:
        load_settings({**KEY, **env})
    assert "\n" not in str(raised.value)


def test_the_client_address_believes_forwarded_for_only_from_trusted_proxies():
    proxies = parse_ip_ranges("10.0.0.0/8")
    assert client_address("203.0.113.5", "198.51.100.1", proxies) == "203.0.113.5"  # not a proxy
    assert client_address("10.1.1.1", "198.51.100.1", ()) == "10.1.1.1"  # unset: never
    assert client_address("10.1.1.1", None, proxies) == "10.1.1.1"
    assert client_address("10.1.1.1", "198.51.100.1", proxies) == "198.51.100.1"
    # From the right, past every trusted hop; what the client wrote on the left is ignored.
    assert client_address("10.1.1.1", "6.6.6.6, 198.51.100.1, 10.2.2.2", proxies) == "198.51.100.1"
    assert client_address("10.1.1.1", "10.3.3.3, 10.2.2.2", proxies) == "10.3.3.3"
    assert client_address("10.1.1.1", "garbage, 10.2.2.2", proxies) == "10.2.2.2"
