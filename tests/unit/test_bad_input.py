"""Settings no process can take are refused when read: a duration past ten years, and
gunicorn's request sizes out of bounds. The request edge itself:
tests/integration/test_bad_input.py; gunicorn itself: tests/e2e/test_bad_input.py."""
from __future__ import annotations

import pytest

from pdm_app.config import ConfigError, load_settings


# -- settings --------------------------------------------------------------------------------------

DURATIONS = ["PDM_RESERVATION_TTL", "PDM_RESERVATION_MAX_TTL", "PDM_SWEEPER_INTERVAL", "DYNADOT_MIN_INTERVAL",
             "PDM_DNS_REQUEST_BUDGET", "PDM_DNS_RETRY_INTERVAL", "PDM_DNS_RESYNC_INTERVAL",
             "PDM_DNS_LATE_WRITE_WINDOW", "PDM_HISTORY_RETENTION"]
BASE_ENV = {"DYNADOT_API_KEY": "k", "PDM_AUTH": "disabled"}


@pytest.mark.parametrize("name", DURATIONS)
@pytest.mark.parametrize("value", ["100000000h", "3651d", "9" * 400 + "h"])
def test_a_duration_past_ten_years_is_a_config_error(name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings({**BASE_ENV, name: value})


@pytest.mark.parametrize("name", DURATIONS)
def test_ten_years_is_accepted(name):
    env = {**BASE_ENV, name: "3650d"}
    if name == "PDM_RESERVATION_TTL":
        env["PDM_RESERVATION_MAX_TTL"] = "3650d"
    load_settings(env)


@pytest.mark.parametrize("name", ["GUNICORN_WORKERS", "GUNICORN_THREADS"])
@pytest.mark.parametrize("value", ["0", "-1", "many", "100000"])
def test_gunicorn_sizes_are_bounded(name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings({**BASE_ENV, name: value})


def test_gunicorn_sizes_default_to_two_by_eight():
    s = load_settings(BASE_ENV)
    assert (s.gunicorn_workers, s.gunicorn_threads) == (2, 8)
