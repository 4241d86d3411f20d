"""Commits against a slow registrar: one alone, then many at once (issue 11's "figures that
already win").

Starts the service under its shipped gunicorn config (2 workers x 8 threads) against the
fake Dynadot answering each call after ``--latency`` seconds, then measures, for each
revision given (the working tree, and ``--rev REV`` ones from ``git archive``), side by
side in one run:

- one commit alone: its time, and the registrar calls it took;
- ``--burst`` commits sent at once (one thread each): the time until the last answer, how
  many answered 200 and 202, the registrar calls, the most calls in flight at once, and
  how long until every record was in the zone.

    .venv/bin/python bench/slow_registrar.py [--latency 0.3] [--burst 16] [--rev a4ae4ab]

Database: the local PostgreSQL (as bench/run.py), database ``pdm_bench``, dropped and
migrated for each revision.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (load_project, database, say)

LB = "192.0.2.1"


def commit(base: str, pool: str, sub: str) -> tuple[int, float]:
    token = requests.post(f"{base}/api/v1/pool/{pool}/reserve", json={"subdomain": sub},
                          timeout=60).json()["reservationToken"]
    started = time.perf_counter()
    status = requests.post(f"{base}/api/v1/pool/{pool}/commit", timeout=120, json={
        "subdomain": sub, "reservationToken": token, "loadBalancerIP": LB}).status_code
    return status, time.perf_counter() - started


def published(fake, pool: str, subs: list[str]) -> bool:
    hosts = {r.host for r in fake.zone(pool).records}
    return all(f"api.{sub}" in hosts for sub in subs)


def measure(project, latency: float, burst: int, tmp: str) -> dict:
    db_url, owned = bench.database(project)
    if not owned:
        raise SystemExit("bench/slow_registrar.py drops its database: unset PDM_DATABASE_URL")
    project.reset_schema(db_url)
    fake = project.FakeDynadot(api_key=project.API_KEY).start()
    for pool in project.POOLS:
        fake.seed(pool, list(project.BASE_RECORDS), ttl=300)
    service = project.Gunicorn(db_url, fake, log_path=os.path.join(tmp, "service.log"),
                               PDM_DNS_RETRY_INTERVAL="15s", PDM_SWEEPER_INTERVAL="1h")
    pool = project.POOL
    try:
        service.start()
        bench.wait_for_pools(service.url)
        commit(service.url, pool, "warm")  # the zone read once, connections open
        fake.latency = latency
        time.sleep(1.0)
        fake.reset_calls()
        status, alone = commit(service.url, pool, "alone")
        alone_calls = len(fake.calls)
        for sub in ("warm", "alone"):  # the zone holds 16 tenants' records at most (100 sub-hosts)
            requests.delete(f"{service.url}/api/v1/pool/{pool}/release", params={"sub": sub}, timeout=120)

        fake.reset_calls()
        subs = [f"burst{k}" for k in range(burst)]
        tokens = {sub: requests.post(f"{service.url}/api/v1/pool/{pool}/reserve", json={"subdomain": sub},
                                     timeout=60).json()["reservationToken"] for sub in subs}
        answers: dict[str, int] = {}
        go = threading.Event()

        def one(sub: str) -> None:
            go.wait()
            answers[sub] = requests.post(f"{service.url}/api/v1/pool/{pool}/commit", timeout=120, json={
                "subdomain": sub, "reservationToken": tokens[sub], "loadBalancerIP": LB}).status_code

        threads = [threading.Thread(target=one, args=(sub,)) for sub in subs]
        for t in threads:
            t.start()
        started = time.perf_counter()
        go.set()
        for t in threads:
            t.join(300)
        answered = time.perf_counter() - started
        while not published(fake, pool, subs) and time.perf_counter() - started < 120:
            time.sleep(0.05)
        all_published = time.perf_counter() - started
        return {
            "commit_alone_s": alone, "commit_alone_status": status, "commit_alone_registrar_calls": alone_calls,
            "burst": burst, "burst_last_answer_s": answered, "burst_statuses": sorted(answers.values()),
            "burst_200": list(answers.values()).count(200), "burst_202": list(answers.values()).count(202), "burst_registrar_calls": len(fake.calls),
            "burst_max_in_flight": fake.max_in_flight, "burst_all_published_s": all_published,
        }
    finally:
        service.stop()
        fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.3, help="the fake registrar's seconds per call")
    parser.add_argument("--burst", type=int, default=16, help="commits sent at once")
    parser.add_argument("--rev", action="append", default=[], help="also a revision from git archive (repeatable)")
    parser.add_argument("--output", default=os.path.join(bench.REPO, "bench", "results", "slow_registrar.json"))
    args = parser.parse_args()
    results = {}
    # Each revision in a process of its own: conftest and pdm_app are imported once per process.
    if os.environ.get("PDM_BENCH_ONE_REV") is not None:
        rev = os.environ["PDM_BENCH_ONE_REV"] or None
        tmp = tempfile.mkdtemp(prefix="pdm-slow-")
        project, _root, described = bench.load_project(rev, tmp)
        figures = measure(project, args.latency, args.burst, tmp)
        print(json.dumps({"described": described, **figures}))
        return
    import subprocess

    for rev in [""] + args.rev:
        out = subprocess.run([sys.executable, __file__, "--latency", str(args.latency), "--burst", str(args.burst)],
                             env={**os.environ, "PDM_BENCH_ONE_REV": rev}, capture_output=True, text=True, check=True)
        results[rev or "working tree"] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"registrar {args.latency:g} s per call; {args.burst} commits at once")
    print(f"| {'figure':44} | " + " | ".join(f"{r['described']:>14}" for r in results.values()) + " |")
    rows = [
        ("one commit alone: s (registrar calls)",
         lambda r: f"{r['commit_alone_s']:.3f} ({r['commit_alone_registrar_calls']})"),
        (f"{args.burst} at once: last answer s", lambda r: f"{r['burst_last_answer_s']:.2f}"),
        (f"{args.burst} at once: answered 200 / 202", lambda r: f"{r['burst_200']} / {r['burst_202']}"),
        (f"{args.burst} at once: registrar calls (most at once)",
         lambda r: f"{r['burst_registrar_calls']} ({r['burst_max_in_flight']})"),
        (f"{args.burst} at once: all records in the zone s", lambda r: f"{r['burst_all_published_s']:.2f}"),
    ]
    for name, cell in rows:
        print(f"| {name:44} | " + " | ".join(f"{cell(r):>14}" for r in results.values()) + " |")
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump({"latency_s": args.latency, "burst": args.burst, "results": results}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
