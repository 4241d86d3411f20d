"""How the operators' webhook surfaces read times and show ages (no database)."""
from __future__ import annotations

from datetime import datetime, timezone

import click
import pytest

from pdm_app.api.webhook_schemas import parse_instant
from pdm_app.cli.webhooks import Instant, age

UTC = timezone.utc


@pytest.mark.parametrize("text, expected", [
    ("2026-12-07T17:50:00Z", datetime(2026, 12, 7, 17, 50, tzinfo=UTC)),
    ("2026-12-07T21:50:00+04:00", datetime(2026, 12, 7, 17, 50, tzinfo=UTC)),
    ("2026-12-07T17:50:00.250000-00:30", datetime(2026, 12, 7, 18, 20, 0, 250000, tzinfo=UTC)),
])
def test_the_api_takes_rfc_3339_with_an_offset(text, expected):
    assert parse_instant(text) == expected


@pytest.mark.parametrize("text", [
    "2026-12-07T17:50:00",  # no offset: which time is it?
    "2026-12-07", "2026-12-07 17:50:00Z", "20261207T175000Z", "2026-W49-1T17:50:00Z", "2026-12-07T17:50:00Z\n",
    "２０２６-12-07T17:50:00Z",  # digits of another script
    "2026-13-07T17:50:00Z", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "", "now",
])
def test_anything_else_is_refused(text):
    with pytest.raises(ValueError):
        parse_instant(text)


@pytest.mark.parametrize("text, expected", [
    ("2026-12-07", datetime(2026, 12, 7, tzinfo=UTC)),
    ("2026-12-07T17:50", datetime(2026, 12, 7, 17, 50, tzinfo=UTC)),
    ("2026-12-07T21:50:00+04:00", datetime(2026, 12, 7, 17, 50, tzinfo=UTC)),
    ("2026-12-07T17:50:00Z", datetime(2026, 12, 7, 17, 50, tzinfo=UTC)),
])
def test_the_cli_takes_iso_8601_and_reads_no_offset_as_utc(text, expected):
    assert Instant().convert(text, None, None) == expected


@pytest.mark.parametrize("text", ["tomorrow", "9999-12-31T23:59:59-23:59", "2026-02-30"])
def test_the_cli_refuses_other_times_as_a_usage_error(text):
    with pytest.raises(click.BadParameter):
        Instant().convert(text, None, None)


@pytest.mark.parametrize("seconds, shown", [(None, None), (0, "0s"), (59, "59s"), (95, "1m35s"), (3600, "1h00m"),
                                            (7300, "2h01m"), (90000, "1d01h")])
def test_ages_read_at_a_glance(seconds, shown):
    assert age(seconds) == shown
