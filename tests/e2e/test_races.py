"""Races across processes: processes of threads reserve one name on PostgreSQL, and one
of them gets it."""
from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from integration.test_races import _reserve_status
from pdm_app import create_app


def _process_reserves(db_url, fake_url, api_key, n_threads, start_event, queue):
    from conftest import make_settings as settings_for

    class _Fake:
        url = fake_url

    settings = settings_for(db_url, _Fake)
    app = create_app(settings)
    barrier = threading.Barrier(n_threads)

    def one(_):
        barrier.wait()
        return _reserve_status(app, "contested")

    start_event.wait(30)
    with ThreadPoolExecutor(n_threads) as pool:
        queue.put(list(pool.map(one, range(n_threads))))


@pytest.mark.postgres
def test_processes_reserve_one_name(postgres_url, fake):
    ctx = multiprocessing.get_context("spawn")
    start, queue = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_process_reserves, args=(postgres_url, fake.url, None, 8, start, queue))
             for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    statuses = Counter(s for r in results for s in r)
    assert statuses == Counter({201: 1, 409: 31})
