"""The unit layer asks for nothing outside this process: a test here that requests one of
tests/conftest.py's database, app, fake or PowerDNS fixtures fails at setup (it belongs in
tests/integration or tests/e2e)."""
from __future__ import annotations

import pytest

OUT_OF_LAYER = frozenset({
    "pg_url", "sqlite_url", "db_url", "postgres_url", "fake", "settings", "app", "app_factory", "client",
    "powerdns_server", "powerdns", "powerdns_proxy",
})


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    wanted = OUT_OF_LAYER.intersection(getattr(item, "fixturenames", ()))
    if wanted:
        pytest.fail(f"a unit test may not use {', '.join(sorted(wanted))}: move it to tests/integration")
