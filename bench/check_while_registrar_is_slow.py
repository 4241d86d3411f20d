"""Does /check keep answering while commits wait on a slow registrar?

Starts the fake Dynadot with a per-call latency, and gunicorn with the project's
gunicorn.conf.py, then measures /check latency twice, side by side in one run: with the
server idle, and while clients keep committing (each commit waits on the registrar).
Prints the figures and the loaded/idle ratios.

    .venv/bin/python bench/check_while_registrar_is_slow.py [--latency 2] [--committers 8]

Uses the PostgreSQL server of the tests (PDM_TEST_DATABASE_URL or 127.0.0.1:5432) with a
database of its own, ``pdm_bench``; falls back to SQLite without one.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from conftest import API_KEY, BASE_RECORDS, PG_URL, POOL, POOLS, Gunicorn, ensure_database, reset_schema  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from pdm_app.testing.fake_dynadot import FakeDynadot  # noqa: E402


def measure(url: str, n: int) -> list[float]:
    out = []
    with requests.Session() as s:
        for i in range(n):
            started = time.perf_counter()
            r = s.get(url, params={"sub": f"probe{i % 50}"}, timeout=30)
            out.append(time.perf_counter() - started)
            assert r.status_code == 200
    return out


def figures(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50": statistics.median(ordered), "p95": ordered[int(len(ordered) * 0.95) - 1], "max": ordered[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=2.0, help="seconds the fake registrar takes per call")
    parser.add_argument("--committers", type=int, default=8, help="clients committing at once")
    parser.add_argument("--checks", type=int, default=200, help="/check requests per phase")
    args = parser.parse_args()

    # A database of its own: never the one a test run may be using.
    bench_url = make_url(PG_URL).set(database="pdm_bench").render_as_string(hide_password=False)
    db_url = bench_url if ensure_database(bench_url) is None else f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
    reset_schema(db_url)
    fake = FakeDynadot(api_key=API_KEY).start()
    for pool in POOLS:
        fake.seed(pool, list(BASE_RECORDS), ttl=300)
    # One client sends every check: the per-caller limit would answer part of them 429.
    server = Gunicorn(db_url, fake, PDM_RATE_LIMITS="off").start()
    check_url = f"{server.url}/api/v1/pool/{POOL}/check"
    try:
        measure(check_url, 20)  # warm up connections
        idle = measure(check_url, args.checks)

        fake.latency = args.latency
        stop = threading.Event()
        outcomes: list[int] = []

        def committer(k: int) -> None:
            i = 0
            while not stop.is_set():
                sub = f"c{k}x{i}"
                i += 1
                r = requests.post(f"{server.url}/api/v1/pool/{POOL}/reserve", json={"subdomain": sub}, timeout=60)
                body = {"subdomain": sub, "reservationToken": r.json()["reservationToken"], "loadBalancerIP": "192.0.2.1"}
                outcomes.append(requests.post(f"{server.url}/api/v1/pool/{POOL}/commit", json=body, timeout=60).status_code)
                requests.delete(f"{server.url}/api/v1/pool/{POOL}/release", params={"sub": sub}, timeout=60)

        threads = [threading.Thread(target=committer, args=(k,), daemon=True) for k in range(args.committers)]
        for t in threads:
            t.start()
        time.sleep(args.latency)  # let the commits pile up on the registrar
        loaded = measure(check_url, args.checks)
        stop.set()
        for t in threads:
            t.join(120)
    finally:
        server.stop()
        fake.stop()

    a, b = figures(idle), figures(loaded)
    print(f"database: {db_url.split(':')[0]}; registrar latency {args.latency}s per call; "
          f"{args.committers} clients committing; {args.checks} /check requests per phase")
    print(f"{'':8}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    print(f"{'idle':8}{a['p50'] * 1000:10.1f}{a['p95'] * 1000:10.1f}{a['max'] * 1000:10.1f}")
    print(f"{'loaded':8}{b['p50'] * 1000:10.1f}{b['p95'] * 1000:10.1f}{b['max'] * 1000:10.1f}")
    print(f"ratio loaded/idle: p50 {b['p50'] / a['p50']:.2f}x, p95 {b['p95'] / a['p95']:.2f}x")
    print(f"commits answered meanwhile: {len(outcomes)} ({outcomes.count(200)} x 200, {outcomes.count(202)} x 202)")


if __name__ == "__main__":
    main()
