"""Configuration from the environment, with the old service's names and defaults."""
from __future__ import annotations

import pytest

from pdm_app.config import ConfigError, load_settings, normalise_database_url, parse_duration

KEY = {"DYNADOT_API_KEY": "k", "PDM_AUTH": "disabled"}


@pytest.mark.parametrize(
    "text, seconds",
    [("10m", 600), ("90s", 90), ("1h30m", 5400), ("500ms", 0.5), ("0", 0), ("1.5s", 1.5), ("2h", 7200),
     ("1m30s500ms", 90.5), ("250us", 0.00025), ("400d", 400 * 86400), ("1d12h", 129600)],
)
def test_go_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10", "ten", "10 m", "m", "1w", "d", "1y", "", "1h-30m"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_defaults():
    s = load_settings(KEY)
    assert s.managed_domains == ("omani.works", "openova.io")
    assert s.reservation_ttl == 600 and s.sweeper_interval == 30 and s.port == 8080
    assert s.dynadot_api_url == "https://api.dynadot.com/api3.json"
    assert s.dynadot_min_interval == 1.0
    assert s.tenant_records == ("*", "console", "gitea", "harbor", "admin", "api")
    assert s.database_url.startswith("sqlite:///")
    assert s.log_level == "INFO"
    assert s.dns_resync_interval == 600 and s.dns_late_write_window == 180
    assert s.reservation_max_ttl == 7200 and s.history_retention == 400 * 86400


def test_managed_domains_rules():
    s = load_settings({**KEY, "DYNADOT_MANAGED_DOMAINS": " Omani.Works, openova.io\n omani.works  x.io,,"})
    assert s.managed_domains == ("omani.works", "openova.io", "x.io")
    assert load_settings({**KEY, "DYNADOT_DOMAIN": "Legacy.IO"}).managed_domains == ("legacy.io",)
    both = load_settings({**KEY, "DYNADOT_DOMAIN": "legacy.io", "DYNADOT_MANAGED_DOMAINS": "a.io"})
    assert both.managed_domains == ("a.io",)
    assert load_settings({**KEY, "DYNADOT_MANAGED_DOMAINS": " , "}).managed_domains == ("omani.works", "openova.io")


@pytest.mark.parametrize(
    "given, expected",
    [
        ("postgres://u:p@db:5432/pdm", "postgresql+psycopg://u:p@db:5432/pdm"),
        ("postgresql://u@db/pdm?sslmode=require", "postgresql+psycopg://u@db/pdm?sslmode=require"),
        ("postgresql+psycopg://u@db/pdm", "postgresql+psycopg://u@db/pdm"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_database_urls(given, expected):
    assert normalise_database_url(given) == expected
    assert load_settings({**KEY, "PDM_DATABASE_URL": given}).database_url == expected


def test_durations_and_records_from_env():
    s = load_settings({**KEY, "PDM_RESERVATION_TTL": "1h30m", "PDM_SWEEPER_INTERVAL": "500ms",
                       "DYNADOT_MIN_INTERVAL": "0s", "PDM_TENANT_RECORDS": "@, *,api", "PDM_LOG_LEVEL": "warn"})
    assert (s.reservation_ttl, s.sweeper_interval, s.dynadot_min_interval) == (5400, 0.5, 0)
    assert s.tenant_records == ("@", "*", "api")
    assert s.log_level == "WARNING"


def test_resync_retention_and_max_ttl_from_env():
    s = load_settings({**KEY, "PDM_DNS_RESYNC_INTERVAL": "1h", "PDM_DNS_LATE_WRITE_WINDOW": "90s",
                       "PDM_RESERVATION_MAX_TTL": "1d12h", "PDM_HISTORY_RETENTION": "30d"})
    assert (s.dns_resync_interval, s.dns_late_write_window) == (3600, 90)
    assert (s.reservation_max_ttl, s.history_retention) == (129600, 30 * 86400)
    # 0 turns the resync off.
    assert load_settings({**KEY, "PDM_DNS_RESYNC_INTERVAL": "0"}).dns_resync_interval == 0


def test_max_ttl_may_equal_the_ttl_but_not_be_below_it():
    same = load_settings({**KEY, "PDM_RESERVATION_TTL": "30m", "PDM_RESERVATION_MAX_TTL": "30m"})
    assert same.reservation_ttl == same.reservation_max_ttl == 1800
    with pytest.raises(ConfigError, match="PDM_RESERVATION_MAX_TTL"):
        load_settings({**KEY, "PDM_RESERVATION_TTL": "30m", "PDM_RESERVATION_MAX_TTL": "20m"})
    # An existing deployment with a TTL past the default max (2h) still starts: unset,
    # the max follows the TTL.
    assert load_settings({**KEY, "PDM_RESERVATION_TTL": "3h"}).reservation_max_ttl == 3 * 3600


@pytest.mark.parametrize(
    "env, name",
    [
        ({"PDM_RESERVATION_TTL": "ten minutes"}, "PDM_RESERVATION_TTL"),
        ({"PDM_SWEEPER_INTERVAL": "0s"}, "PDM_SWEEPER_INTERVAL"),
        ({"DYNADOT_MIN_INTERVAL": "-1s"}, "DYNADOT_MIN_INTERVAL"),
        ({"PORT": "http"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"PDM_LOG_LEVEL": "loud"}, "PDM_LOG_LEVEL"),
        ({"PDM_DATABASE_URL": "mysql://x"}, "PDM_DATABASE_URL"),
        ({"PDM_TENANT_RECORDS": "a b_c"}, "PDM_TENANT_RECORDS"),
        ({"PDM_MAX_SUBHOST_RECORDS": "500"}, "PDM_MAX_SUBHOST_RECORDS"),
        ({"DYNADOT_API_KEY": ""}, "DYNADOT_API_KEY"),
        ({"PDM_DNS_RESYNC_INTERVAL": "often"}, "PDM_DNS_RESYNC_INTERVAL"),
        ({"PDM_DNS_RESYNC_INTERVAL": "-1m"}, "PDM_DNS_RESYNC_INTERVAL"),
        ({"PDM_DNS_LATE_WRITE_WINDOW": "0"}, "PDM_DNS_LATE_WRITE_WINDOW"),
        ({"PDM_DNS_LATE_WRITE_WINDOW": "3 min"}, "PDM_DNS_LATE_WRITE_WINDOW"),
        ({"PDM_RESERVATION_MAX_TTL": "0s"}, "PDM_RESERVATION_MAX_TTL"),
        ({"PDM_RESERVATION_MAX_TTL": "2 hours"}, "PDM_RESERVATION_MAX_TTL"),
        ({"PDM_HISTORY_RETENTION": "0d"}, "PDM_HISTORY_RETENTION"),
        ({"PDM_HISTORY_RETENTION": "400days"}, "PDM_HISTORY_RETENTION"),
    ],
)
def test_bad_values_name_the_variable(env, name):
    with pytest.raises(ConfigError, match=name):
        load_settings({**KEY, **env})
