"""What the per-caller rate limits cost /check: the service with its limiter counting every
check in PostgreSQL, beside the same service with the limits off, in one run.

    .venv/bin/python bench/rate_limits.py [--rounds 3] [--seconds 8] [--connections 16]

Starts two gunicorn services (the shipped gunicorn.conf.py, 2 workers x 8 threads) on one
PostgreSQL database (the tests' server, database ``pdm_bench``) and the fake Dynadot:
- ``on``: ``PDM_RATE_LIMITS=check=1000000/second`` -- every check is counted (one upsert
  of the caller's row in ``rate_limit_counters``) and none refused, so the figure is the
  limiter's cost, not its refusals;
- ``off``: ``PDM_RATE_LIMITS=off``.
wrk (``-t2 -c{connections} --latency``) loads /check of each in turn, the order alternating
per round. Prints every round and the medians, and the on/off ratios. A bench, not a
test: it asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, HERE)

from conftest import API_KEY, BASE_RECORDS, PG_URL, POOL, POOLS, Gunicorn, ensure_database, reset_schema  # noqa: E402
from run import ensure_wrk, get_load, start_local_postgres  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from pdm_app.testing.fake_dynadot import FakeDynadot  # noqa: E402

SERVICES = {"on": "check=1000000/second", "off": "off"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()

    db_url = make_url(PG_URL).set(database="pdm_bench").render_as_string(hide_password=False)
    if ensure_database(db_url) is not None:
        start_local_postgres()
    problem = ensure_database(db_url)
    if problem:
        sys.exit(f"bench: {problem}")
    reset_schema(db_url)
    wrk = ensure_wrk()
    fake = FakeDynadot(api_key=API_KEY).start()
    for pool in POOLS:
        fake.seed(pool, list(BASE_RECORDS), ttl=300)
    servers = {name: Gunicorn(db_url, fake, PDM_RATE_LIMITS=limits, PDM_RUN_JOBS="false").start()
               for name, limits in SERVICES.items()}
    rounds = []
    try:
        for url in (s.url for s in servers.values()):  # warm up: connections, imports
            get_load(wrk, f"{url}/api/v1/pool/{POOL}/check?sub=probe", 2, args.connections)
        for k in range(args.rounds):
            order = list(SERVICES) if k % 2 == 0 else list(reversed(SERVICES))
            figures = {}
            for name in order:
                figures[name] = get_load(wrk, f"{servers[name].url}/api/v1/pool/{POOL}/check?sub=probe",
                                         args.seconds, args.connections)
                figures[name].pop("raw", None)
            rounds.append(figures)
            print(f"round {k + 1} ({' then '.join(order)}): " + "; ".join(
                f"{name} {f['rps']:.0f} req/s, p50 {f['p50_ms']:.2f} ms, p99 {f['p99_ms']:.2f} ms, "
                f"non-2xx {f['non_2xx']}" for name, f in figures.items()), flush=True)
    finally:
        for server in servers.values():
            server.stop()
        fake.stop()

    def med(name: str, key: str) -> float:
        return statistics.median(r[name][key] for r in rounds)

    print(f"\nmedians of {args.rounds} rounds, {args.seconds:g} s each, wrk -t2 -c{args.connections}:")
    for key, label in (("rps", "req/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms")):
        on, off = med("on", key), med("off", key)
        print(f"  {label:7} on {on:9.2f}   off {off:9.2f}   on/off {on / off:.2f}")


if __name__ == "__main__":
    main()
