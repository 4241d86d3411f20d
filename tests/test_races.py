"""Races that really run: threads and processes against PostgreSQL (and threads against
SQLite), and the fake registrar's zone checked record by record afterwards."""
from __future__ import annotations

import multiprocessing
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import BASE_FOREIGN, POOL, foreign_records, make_settings, tenant_records
from pdm_app import create_app

LB = "198.51.100.7"


def _reserve_status(app, sub):
    client = app.test_client()
    return client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": sub}).status_code


def test_32_threads_reserve_one_name(app):
    barrier = threading.Barrier(32)

    def one(_):
        barrier.wait()
        return _reserve_status(app, "race")

    with ThreadPoolExecutor(32) as pool:
        statuses = Counter(pool.map(one, range(32)))
    assert statuses == Counter({201: 1, 409: 31})


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


def _converge(app):
    """Run the retry pass until no DNS work is left."""
    publisher = app.extensions["pdm"].publisher
    for _ in range(5):
        publisher.publish(POOL, [], budget=None)
        listing = app.extensions["pdm"].service.list_pool(POOL)
        if not listing.pending:
            return listing
    raise AssertionError(f"DNS work still pending: {listing.pending}")


def _assert_zone_matches_table(app, fake):
    listing = _converge(app)
    zone = fake.zone(POOL)
    active = {a.subdomain: a.load_balancer_ip for a in listing.allocations if a.state == "active"}
    subs = {a.subdomain for a in listing.allocations} | set(active)
    everyone = subs | {f"n{i}" for i in range(40)} | {"hot"}
    for sub in everyone:
        expected = {h: active[sub] for h in tenant_records_hosts(sub)} if sub in active else {}
        assert tenant_records(zone, sub) == expected, sub
    assert foreign_records(zone, everyone) == BASE_FOREIGN


def tenant_records_hosts(sub):
    return [f"{n}.{sub}" for n in ("*", "console", "gitea", "harbor", "admin", "api")]


@pytest.mark.parametrize("round_", range(5))  # the interleaving differs run to run
def test_concurrent_commits_and_releases_of_different_names(app, fake, round_):
    client = app.test_client()
    names = [f"n{i}" for i in range(12)]
    tokens = {n: client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": n}).get_json()["reservationToken"]
              for n in names}
    for n in names[:6]:  # these are live before the storm and get released in it
        assert client.post(f"/api/v1/pool/{POOL}/commit", json={
            "subdomain": n, "reservationToken": tokens[n], "loadBalancerIP": LB}).status_code == 200

    def act(n):
        c = app.test_client()
        if n in names[:6]:
            return c.delete(f"/api/v1/pool/{POOL}/release", json={"subdomain": n}).status_code
        ip = f"203.0.113.{names.index(n)}"
        return c.post(f"/api/v1/pool/{POOL}/commit", json={
            "subdomain": n, "reservationToken": tokens[n], "loadBalancerIP": ip}).status_code

    work = names[:]
    random.shuffle(work)
    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(act, work))
    assert set(statuses) <= {200, 202}
    _assert_zone_matches_table(app, fake)
    zone = fake.zone(POOL)
    for n in names[6:]:
        assert set(tenant_records(zone, n).values()) == {f"203.0.113.{names.index(n)}"}
    for n in names[:6]:
        assert tenant_records(zone, n) == {}
    assert fake.max_in_flight == 1  # one registrar call at a time


def test_commit_release_sweeper_on_one_name(app, fake):
    """Commit, release and the sweeper fight over one name, round after round; the table
    never holds two rows, nothing answers 5xx, and the zone ends as the table says."""
    service = app.extensions["pdm"].service
    statuses = Counter()
    for round_ in range(15):
        service.reservation_ttl = 0 if round_ % 3 == 0 else 600  # some rounds race the sweeper
        c = app.test_client()
        r = c.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "hot"})
        if r.status_code != 201:
            statuses[f"reserve-{r.status_code}"] += 1
            continue
        token = r.get_json()["reservationToken"]
        barrier = threading.Barrier(3)

        def do_commit():
            barrier.wait()
            return app.test_client().post(f"/api/v1/pool/{POOL}/commit", json={
                "subdomain": "hot", "reservationToken": token, "loadBalancerIP": LB}).status_code

        def do_release():
            barrier.wait()
            return app.test_client().delete(f"/api/v1/pool/{POOL}/release?sub=hot").status_code

        def do_sweep():
            barrier.wait()
            service.sweep()
            return "swept"

        with ThreadPoolExecutor(3) as pool:
            results = [f.result() for f in [pool.submit(do_commit), pool.submit(do_release), pool.submit(do_sweep)]]
        statuses.update(str(s) for s in results)
        assert all(s == "swept" or s < 500 for s in results), results
        # clean up whatever is left so the next round starts free
        app.test_client().delete(f"/api/v1/pool/{POOL}/release?sub=hot")
        _assert_zone_matches_table(app, fake)
    assert statuses["200"] + statuses["202"] > 0  # the race was really run


@pytest.mark.postgres
def test_sweeper_never_deletes_a_committed_row(postgres_url, fake):
    """The sweeper's DELETE waits for a commit holding the row and re-checks it."""
    app = create_app(make_settings(postgres_url, fake))
    service = app.extensions["pdm"].service
    service.reservation_ttl = 1
    client = app.test_client()
    tokens = [client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": f"n{i}"}).get_json()["reservationToken"]
              for i in range(10)]
    # Expiry falls within the next second (second precision): land the race around it.
    time.sleep(random.uniform(0.3, 1.0))
    results = {}

    def commit(i):
        results[i] = app.test_client().post(f"/api/v1/pool/{POOL}/commit", json={
            "subdomain": f"n{i}", "reservationToken": tokens[i], "loadBalancerIP": LB}).status_code

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(10)]
    sweeps = [threading.Thread(target=service.sweep) for _ in range(5)]
    for t in threads + sweeps:
        t.start()
    for t in threads + sweeps:
        t.join(60)
    service.sweep()
    listing = service.list_pool(POOL)
    active = {a.subdomain for a in listing.allocations if a.state == "active"}
    committed = {f"n{i}" for i, s in results.items() if s in (200, 202)}
    assert active == committed
    assert all(s in (200, 202, 404, 410) for s in results.values()), results  # 404: swept first
    _assert_zone_matches_table(app, fake)
    app.extensions["pdm"].engine.dispose()
