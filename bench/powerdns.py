"""How fast does a pool on PowerDNS take tenants, and how does the pool's own zone slow
down as it grows?

Runs the service in-process (``pdm_app.build``, no HTTP) against a PowerDNS, one pool
``omani.works`` on it, and measures, sequentially:

(a) tenants committed per second: ``service.reserve`` + ``service.commit``, each commit
    waiting for its DNS pass (dns_done), and the PowerDNS API calls each one makes;
(b) the pool zone's PATCH time as the pool grows: the median of 5 PATCHes of one
    tenant's NS+DS (REPLACE, same content) after 1, 100, 250, ... tenants;
(c) tenants released per second (each release waits for its pass too).

    .venv/bin/python bench/powerdns.py [--tenants 100] [--max 500]

PowerDNS: a throwaway local one in a temp dir (``pdns_server`` must be installed), or the
one at PDM_PDNS_BASE_URL / PDM_PDNS_API_KEY. Database: a temp SQLite file, or
PDM_DATABASE_URL (migrated to head, never emptied: the tenants get names of their own).
Prints a table and writes bench/results/powerdns.json. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402

from pdm_app import build  # noqa: E402
from pdm_app.config import Settings, normalise_database_url, parse_ip_ranges  # noqa: E402
from pdm_app.dns.powerdns import plan  # noqa: E402
from pdm_app.testing.local_powerdns import LocalPowerDns  # noqa: E402

POOL = "omani.works"
LB_IP = "198.51.100.7"
CALLER = "bench"
PATCH_SAMPLES = 5


def migrate(url: str) -> None:
    # As tests/conftest.py's alembic_config, without dropping anything first.
    cfg = Config(os.path.join(ROOT, "alembic.ini"))
    cfg.set_main_option("script_location", os.path.join(ROOT, "alembic"))
    cfg.attributes["url"] = url
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class CallCounter:
    """Wraps the PowerDNS client's session: every API request counted and timed, by
    method and kind."""

    def __init__(self, session):
        self.calls: Counter = Counter()
        self.seconds: Counter = Counter()
        inner = session.request

        def request(method, url, *args, **kwargs):
            what = (method.upper(), kind_of(url))
            started = time.perf_counter()
            try:
                return inner(method, url, *args, **kwargs)
            finally:
                self.calls[what] += 1
                self.seconds[what] += time.perf_counter() - started

        session.request = request

    def take(self) -> tuple[Counter, Counter]:
        taken = self.calls, self.seconds
        self.calls, self.seconds = Counter(), Counter()
        return taken


def kind_of(url: str) -> str:
    path = url.split("/api/v1/servers/", 1)[-1].split("?", 1)[0]
    parts = path.split("/")[1:]  # after the server id
    if not parts:
        return "server"
    if parts == ["zones"]:
        return "zones"
    zone = parts[1] if len(parts) > 1 else ""
    which = "pool" if zone.rstrip(".") == POOL else "tenant"
    return f"{which} zone" + (f" {'/'.join(parts[2:])}" if len(parts) > 2 else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=100, help="tenants committed for the throughput figure (a)")
    parser.add_argument("--max", type=int, default=500, help="tenants in the pool at the last PATCH timing (b)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "powerdns.json"))
    args = parser.parse_args()
    total = max(args.tenants, args.max)
    checkpoints = sorted({n for n in (1, 100, 250, 500, args.max) if n <= args.max} | {1})

    logging.basicConfig(level=logging.WARNING)  # one line per pass otherwise
    work = tempfile.mkdtemp(prefix="pdm-bench-pdns-")
    server = None
    try:
        if os.environ.get("PDM_PDNS_BASE_URL"):
            api_url, api_key = os.environ["PDM_PDNS_BASE_URL"], os.environ.get("PDM_PDNS_API_KEY", "")
            where = f"PowerDNS at {api_url}"
        else:
            ok, why = LocalPowerDns.available()
            if not ok:
                print(why, file=sys.stderr)
                return 1
            server = LocalPowerDns(os.path.join(work, "pdns")).start()
            api_url, api_key = server.api_url, server.api_key
            where = "local PowerDNS (gsqlite3, loopback, caches off)"
        db_url = normalise_database_url(os.environ.get("PDM_DATABASE_URL", "")) or \
            f"sqlite:///{os.path.join(work, 'pdm.sqlite3')}"
        migrate(db_url)
        pdm = build(Settings(
            database_url=db_url,
            managed_domains=(POOL,),
            pdns_base_url=api_url,
            pdns_api_key=api_key,
            lb_ip_allowed_ranges=parse_ip_ranges("198.51.100.0/24"),
            run_jobs=False,
            auth_enabled=False,
        ))
        try:
            return run(pdm, args, total, checkpoints, where, db_url)
        finally:
            pdm.engine.dispose()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


def run(pdm, args, total: int, checkpoints: list[int], where: str, db_url: str) -> int:
    service = pdm.lifecycle
    backend = pdm.publisher.backend(POOL)
    client = backend.client
    counter = CallCounter(client.session)
    version = client.ping().get("version", "?")
    run_id = uuid.uuid4().hex[:6]
    names = [f"b{run_id}-{i}" for i in range(total)]

    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
               "processor": platform.processor() or platform.machine()}
    print(f"# PowerDNS bench: {machine['cpus']} CPUs, {machine['platform']}, Python {machine['python']}")
    print(f"# PowerDNS {version}: {where}; database {db_url.split('://')[0]}")
    print(f"# {args.tenants} tenants for (a), pool grown to {total} for (b), all released for (c)")

    def commit(sub: str) -> tuple[float, bool]:
        started = time.perf_counter()
        reservation = service.reserve(POOL, sub, "bench", CALLER)
        outcome = service.commit(POOL, sub, reservation.token, None, LB_IP, CALLER)
        return time.perf_counter() - started, outcome.dns_done

    def time_parent_patch(sub: str) -> list[float]:
        ds = plan.kept_key(plan.key_from_api(k) for k in client.list_keys(f"{sub}.{POOL}")).ds
        rrsets = plan.delegation_rrsets(POOL, sub, plan.Delegation(backend.nameservers, ds))
        samples = []
        for _ in range(PATCH_SAMPLES):
            started = time.perf_counter()
            client.patch_rrsets(POOL, rrsets)
            samples.append(time.perf_counter() - started)
        return samples

    # (a) and (b): the pool grows one committed tenant at a time.
    commit_times: list[float] = []
    not_done = 0
    first_calls, first_secs, last_calls, last_secs = Counter(), Counter(), Counter(), Counter()
    last_from = max(1, total - 99)
    patch_rows = []
    for i, sub in enumerate(names, start=1):
        counter.take()
        took, done = commit(sub)
        commit_times.append(took)
        not_done += not done
        calls, secs = counter.take()
        if i <= args.tenants:
            first_calls += calls
            first_secs += secs
        if i >= last_from:
            last_calls += calls
            last_secs += secs
        if i in checkpoints:
            samples = time_parent_patch(names[0])
            counter.take()
            patch_rows.append({"tenants": i, "median_ms": statistics.median(samples) * 1000,
                               "samples_ms": [round(s * 1000, 2) for s in samples]})
    first = commit_times[:args.tenants]
    last = commit_times[last_from - 1:]
    commits = {
        "tenants": len(first), "seconds": sum(first), "per_second": len(first) / sum(first),
        "median_ms": statistics.median(first) * 1000, "p95_ms": percentile(first, 0.95) * 1000,
        "api_calls_per_commit": sum(first_calls.values()) / len(first),
        "dns_not_done": not_done,
        "last": {"tenants_before": f"{last_from - 1}..{total - 1}", "per_second": len(last) / sum(last),
                 "median_ms": statistics.median(last) * 1000},
        # Per API call kind: calls and ms per commit, over the first commits and the last 100.
        "by_kind": {f"{m} {k}": {"calls": first_calls[(m, k)] / len(first),
                                 "ms_first": first_secs[(m, k)] * 1000 / len(first),
                                 "ms_last": last_secs[(m, k)] * 1000 / len(last)}
                    for m, k in sorted(set(first_calls) | set(last_calls))},
    }

    # (c) every tenant released, newest first.
    release_times: list[float] = []
    release_not_done = 0
    for sub in reversed(names):
        started = time.perf_counter()
        outcome = service.release(POOL, sub, CALLER)
        release_times.append(time.perf_counter() - started)
        release_not_done += not outcome.dns_done
    release_calls, release_secs = counter.take()
    n = len(release_times)
    releases = {
        "tenants": n, "seconds": sum(release_times), "per_second": n / sum(release_times),
        "median_ms": statistics.median(release_times) * 1000, "p95_ms": percentile(release_times, 0.95) * 1000,
        "api_calls_per_release": sum(release_calls.values()) / n,
        "dns_not_done": release_not_done,
        "by_kind": {f"{m} {k}": {"calls": release_calls[(m, k)] / n, "ms": release_secs[(m, k)] * 1000 / n}
                    for m, k in sorted(release_calls)},
    }

    print()
    print(f"(a) commits: {commits['tenants']} tenants into an empty pool, {commits['per_second']:.1f}/s, "
          f"median {commits['median_ms']:.1f} ms, p95 {commits['p95_ms']:.1f} ms, "
          f"{commits['api_calls_per_commit']:.1f} API calls each; not done: {commits['dns_not_done']}")
    print(f"    the last {len(last)} (pool already holding {commits['last']['tenants_before']}): "
          f"{commits['last']['per_second']:.1f}/s, median {commits['last']['median_ms']:.1f} ms")
    print(f"    {'API call':<34} {'calls':>6} {'ms first':>9} {'ms last':>8}")
    for name, row in commits["by_kind"].items():
        print(f"    {name:<34} {row['calls']:6.2f} {row['ms_first']:9.2f} {row['ms_last']:8.2f}")
    print(f"(b) pool zone PATCH of one tenant's NS+DS (REPLACE), median of {PATCH_SAMPLES}")
    for row in patch_rows:
        print(f"    {row['tenants']:>6} tenants  {row['median_ms']:7.2f} ms")
    print(f"(c) releases: {releases['tenants']} tenants, {releases['per_second']:.1f}/s, "
          f"median {releases['median_ms']:.1f} ms, p95 {releases['p95_ms']:.1f} ms, "
          f"{releases['api_calls_per_release']:.1f} API calls each; not done: {releases['dns_not_done']}")
    for name, row in releases["by_kind"].items():
        print(f"    {name:<34} {row['calls']:6.2f} {row['ms']:9.2f}")

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"machine": machine, "powerdns_version": version, "powerdns": where,
                   "database": db_url.split("://")[0], "commits": commits, "parent_patch": patch_rows,
                   "releases": releases, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, f, indent=1)
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
