"""One limit and one quota shared by two services of two gunicorn workers each, on one
PostgreSQL database."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import create_engine, text

from conftest import POOL, Gunicorn


# -- real processes --------------------------------------------------------------------


def reserve_on_two_services(postgres_url, fake, tmp_path, env, count, threads) -> tuple[list, int]:
    """``count`` reserves of one caller sent at once, spread over two gunicorn services (two
    workers each) on one database: [(status, body, Retry-After)], and the rows reserved."""
    with Gunicorn(postgres_url, fake, tmp_path / "one.log", **env) as one, \
            Gunicorn(postgres_url, fake, tmp_path / "two.log", **env) as two:
        servers = [one, two]

        def one_reserve(i):
            answer = requests.post(f"{servers[i % 2].url}/api/v1/pool/{POOL}/reserve",
                                   json={"subdomain": f"n{i}"}, timeout=30)
            return answer.status_code, answer.json(), answer.headers.get("Retry-After")

        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(one_reserve, range(count)))
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT count(*) FROM pool_allocations WHERE state = 'reserved'")).scalar()
    finally:
        engine.dispose()
    return results, rows


@pytest.mark.slow
@pytest.mark.postgres
def test_two_services_of_two_workers_share_one_limit(postgres_url, fake, tmp_path):
    """Two gunicorn services (two workers each) on one database, write=20/hour: of 30
    reserves spread over both, exactly 20 pass -- not 20 per worker or per process."""
    results, rows = reserve_on_two_services(postgres_url, fake, tmp_path,
                                            {"PDM_RATE_LIMITS": "write=20/hour", "GUNICORN_THREADS": "4"}, 30, 6)
    statuses = [status for status, _, _ in results]
    assert statuses.count(201) == 20 and statuses.count(429) == 10, statuses
    for status, body, retry_after in results:
        if status == 429:
            assert body["error"] == "rate-limited" and int(retry_after) > 0
    assert rows == 20


@pytest.mark.slow
@pytest.mark.postgres
def test_two_services_of_two_workers_share_one_quota(postgres_url, fake, tmp_path):
    """The quota of open reservations across two gunicorn services (two workers each) on
    one database: of 20 reserves of one caller sent at once over both, exactly 12 pass."""
    env = {"PDM_RATE_LIMITS": "off", "PDM_MAX_OPEN_RESERVATIONS": "12", "GUNICORN_THREADS": "4"}
    results, rows = reserve_on_two_services(postgres_url, fake, tmp_path, env, 20, 8)
    statuses = [status for status, _, _ in results]
    assert statuses.count(201) == 12 and statuses.count(429) == 8, statuses
    assert {body["error"] for status, body, _ in results if status == 429} == {"too-many-reservations"}
    assert rows == 12
