"""Webhooks: a burst of 1,000 changes delivered to a receiver that verifies every
signature, and what webhooks cost the write path, in one run.

    .venv/bin/python bench/webhooks.py [--reserves 1000] [--commits 30] [--clients 8] [--rounds 3]
                                       [--interval 1s] [--output bench/results/webhooks.json]

Per round, three services one after the other (the order reversed every other round), each on
a freshly migrated PostgreSQL database (the tests' server, database
``pdm_bench_webhooks``), the fake Dynadot on loopback (instant), and gunicorn as shipped
(2 workers x 8 threads, ``PDM_AUTH=operators``: the callers send no token, as the real
ones do; rate limits off; ``PDM_DNS_RETRY_INTERVAL=15s``, ``PDM_SWEEPER_INTERVAL=1h``):
- ``webhooks``: ``PDM_WEBHOOKS`` = one endpoint, the receiver
  (``pdm_app.testing.webhook_receiver``: a real HTTP server on loopback that verifies every
  request with the ``standardwebhooks`` library), ``PDM_WEBHOOK_INTERVAL`` ``--interval``
  (production's 1 s by default), the rest as shipped;
- ``queued``: the same, with the receiver down (connections refused) during the burst:
  every message is written in its change's transaction and the deliverer only tries
  once per rest (5 s), so its figures are the outbox's cost alone, without the delivery
  running beside the requests;
- ``without``: no ``PDM_WEBHOOKS``.

The burst, the same for both: ``--clients`` client processes (multiprocessing, spawn; one
``requests.Session`` each), started together, reserve ``--reserves`` fresh names in all
(over the three pools), and the first few of each client's names are also committed
(``--commits`` in all; a Dynadot pool zone holds about 16 tenants). Events: one
``allocation.reserved`` per reserve, ``allocation.committed`` and ``.published`` per
commit (each commit waits for its DNS pass, as shipped).

Figures, per round:
- the write path: requests/s of the burst (all its requests over the time from the first
  request sent to the last answer), reserve p50/p99 ms; ``webhooks`` and ``queued`` over
  ``without``;
  and the CPU seconds other processes used meanwhile (``run.foreign_cpu``);
- delivery: from the first change sent to the last delivery received (s); deliveries/s
  (messages over the time from the first delivery to the last); latency per message from
  the answer to the request that made it (the caller's clock: the change was committed
  before it answered; the payload's timestamp has whole seconds only) to its arrival at
  the receiver, p50/p99/max; and what the receiver checked: signatures refused, the same
  event under two ids, ids received more than once, messages never received.
Prints every round and the medians (a ratio's median is the median of the rounds'
ratios); writes everything to ``bench/results/webhooks.json``. A bench, not a test: it
asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, HERE)

import requests  # noqa: E402

RESULTS = os.path.join(HERE, "results", "webhooks.json")
DATABASE = "pdm_bench_webhooks"
T0 = time.monotonic()
SERVICE_ENV = {
    "PDM_AUTH": "operators",  # and one operator token (run.OPERATOR_SECRET), for wait_for_pools only
    "GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "8",
    "PDM_DNS_RETRY_INTERVAL": "15s", "PDM_SWEEPER_INTERVAL": "1h",
    "PDM_RATE_LIMITS": "off", "PDM_MAX_OPEN_RESERVATIONS": "0",
}
WARM_UP = 20  # reserves before the burst, to open both workers' connections
SERVICES = ("webhooks", "queued", "without")


def say(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", file=sys.stderr, flush=True)


# -- the client processes (top level and light: spawn imports this file in each) ---------------


def burst_client(base: str, pools: list[str], tag: str, k: int, reserves: int, commits: int,
                 start_at: float) -> dict:
    """Reserve ``reserves`` fresh names, committing the first ``commits``; every request
    as (kind, pool, name, sent, answered, status), times on the wall clock."""
    out: dict = {"requests": [], "errors": []}
    with requests.Session() as s:
        s.get(f"{base}/healthz", timeout=10)  # the connection is open before the burst
        delay = start_at - time.time()
        if delay > 0:
            time.sleep(delay)
        for i in range(reserves):
            pool, name = pools[(k + i) % len(pools)], f"{tag}c{k}n{i}"
            api = f"{base}/api/v1/pool/{pool}"
            try:
                t0 = time.time()
                r = s.post(f"{api}/reserve", json={"subdomain": name}, timeout=60)
                out["requests"].append(("reserve", pool, name, t0, time.time(), r.status_code))
                if r.status_code != 201:
                    out["errors"].append(f"reserve {r.status_code}: {r.text[:200]}")
                    continue
                if i < commits:
                    t0 = time.time()
                    c = s.post(f"{api}/commit", json={"subdomain": name, "loadBalancerIP": "192.0.2.10",
                                                      "reservationToken": r.json()["reservationToken"]}, timeout=60)
                    out["requests"].append(("commit", pool, name, t0, time.time(), c.status_code))
                    if c.status_code not in (200, 202):
                        out["errors"].append(f"commit {c.status_code}: {c.text[:200]}")
            except (requests.RequestException, ValueError, KeyError) as exc:
                out["errors"].append(f"{type(exc).__name__}: {str(exc)[:200]}")
    return out


# -- one service, one burst ------------------------------------------------------------------


def shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


def run_burst(base: str, pools: list[str], tag: str, args) -> list[tuple]:
    start_at = time.time() + 2.0  # every client connected and waiting
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(args.clients) as workers:
        results = workers.starmap(burst_client, [
            (base, pools, tag, k, r, c, start_at)
            for k, (r, c) in enumerate(zip(shares(args.reserves, args.clients), shares(args.commits, args.clients)))])
    errors = [e for r in results for e in r["errors"]]
    if errors:
        say(f"{len(errors)} request(s) failed, e.g. {errors[:3]}")
    return [tuple(req) for r in results for req in r["requests"]]


def write_path(reqs: list[tuple]) -> dict:
    from run import pct

    first, last = min(r[3] for r in reqs), max(r[4] for r in reqs)
    reserves = [r[4] - r[3] for r in reqs if r[0] == "reserve"]
    commits = [r for r in reqs if r[0] == "commit"]
    return {"requests": len(reqs), "seconds": last - first, "rps": len(reqs) / (last - first),
            "reserve_p50_ms": 1000 * pct(reserves, 50), "reserve_p99_ms": 1000 * pct(reserves, 99),
            "commits": len(commits), "commits_202": sum(r[5] == 202 for r in commits),
            "failed": sum(r[5] not in (200, 201, 202) for r in reqs), "first_sent": first}


def wait_delivered(db_url: str, receiver, prefix: str, timeout: float) -> list[dict]:
    """The burst's messages in the outbox, once none is pending (or the time is up)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            with engine.connect() as conn:
                rows = [dict(r._mapping) for r in conn.execute(text(
                    "SELECT msg_id, type, subject, delivered_at FROM webhook_messages WHERE subject LIKE :p "
                    "ORDER BY id"), {"p": f"%/{prefix}%"})]
            if all(r["delivered_at"] is not None for r in rows) or time.monotonic() > deadline:
                return rows
            time.sleep(0.5)
    finally:
        engine.dispose()


def delivery(reqs: list[tuple], rows: list[dict], receiver, first_sent: float) -> dict:
    from run import pct

    answered = {}  # (type, pool, name) -> when the request that made it was answered
    for kind, pool, name, _, end, status in reqs:
        if kind == "reserve" and status == 201:
            answered[("allocation.reserved", pool, name)] = end
        elif kind == "commit" and status in (200, 202):
            answered[("allocation.committed", pool, name)] = end
            answered[("allocation.published", pool, name)] = end
    ours = {r["msg_id"] for r in rows}
    deliveries = [d for d in receiver.deliveries if d.msg_id in ours]
    first_seen: dict = {}
    for d in deliveries:
        if d.accepted and d.msg_id not in first_seen:
            first_seen[d.msg_id] = d
    latencies = [d.received_at - answered[(d.type, *d.subject)] for d in first_seen.values()
                 if (d.type, *d.subject) in answered]
    times = sorted(d.received_at for d in first_seen.values())
    seen_twice = sum(n > 1 for i, n in receiver.duplicates().items() if i in ours)
    return {
        "messages": len(rows), "received": len(first_seen), "missing": len(ours - set(first_seen)),
        "first_change_to_last_delivery_s": (times[-1] - first_sent) if times else None,
        "deliveries_per_s": (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else None,
        "latency_p50_ms": 1000 * pct(latencies, 50), "latency_p99_ms": 1000 * pct(latencies, 99),
        "latency_max_ms": 1000 * max(latencies) if latencies else None,
        "signatures_refused": sum(not d.verified for d in deliveries),
        "events_under_two_ids": len(receiver.events_under_several_ids()), "ids_received_twice": seen_twice,
        "by_type": {t: sum(r["type"] == t for r in rows) for t in sorted({r["type"] for r in rows})},
    }


def one_service(project, name: str, db_url: str, fake, receiver, round_no: int, args, tmp: str) -> dict:
    from run import OPERATOR_SECRET, cpu_snapshot, foreign_cpu, wait_for_pools

    project.reset_schema(db_url)
    env = {**SERVICE_ENV, "PDM_API_TOKENS": f"bench-operator:operator:{OPERATOR_SECRET}"}
    if name != "without":
        env.update(PDM_WEBHOOKS=json.dumps([{"url": receiver.url, "secret": args.secret, "name": "bench"}]),
                   PDM_WEBHOOK_INTERVAL=args.interval)
    log = os.path.join(tmp, f"service-{name}-{round_no}.log")
    server = project.Gunicorn(db_url, fake, log_path=log, **env).start()
    try:
        wait_for_pools(server.url)
        for i in range(WARM_UP):
            requests.post(f"{server.url}/api/v1/pool/{project.POOL}/reserve", json={"subdomain": f"warm{i}"},
                          timeout=30)
        if name != "without":
            wait_delivered(db_url, receiver, "warm", 60)  # the burst starts with an empty outbox
        if name == "queued":
            receiver.down()  # refused: one attempt per rest (the schedule's first delay), nothing delivered
        tag = f"r{round_no}{name[0]}"
        before = cpu_snapshot()
        try:
            reqs = run_burst(server.url, list(project.POOLS), tag, args)
        finally:
            receiver.up()
        figures = {"write": write_path(reqs)}
        # How busy the machine was with something else meanwhile (a shared VM shows up here).
        figures["write"]["other_processes"] = foreign_cpu(before, cpu_snapshot())
        if name == "webhooks":
            rows = wait_delivered(db_url, receiver, tag, args.timeout)
            figures["delivery"] = delivery(reqs, rows, receiver, figures["write"]["first_sent"])
        return figures
    finally:
        server.stop()


# -- the run ------------------------------------------------------------------------------


def fmt(value, spec=".0f") -> str:
    return "n/a" if value is None else f"{value:{spec}}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reserves", type=int, default=1000)
    parser.add_argument("--commits", type=int, default=30, help="of the reserved names (a pool holds ~16 tenants)")
    parser.add_argument("--clients", type=int, default=8, help="client processes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interval", default="1s", help="PDM_WEBHOOK_INTERVAL (production's: 1s)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for every delivery")
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args()

    import tempfile

    import conftest as project
    from run import loadavg, machine, median, ratio, start_local_postgres
    from sqlalchemy.engine import make_url

    from pdm_app.testing.fake_dynadot import FakeDynadot
    from pdm_app.testing.webhook_receiver import WebhookReceiver, new_secret

    args.secret = new_secret()
    db_url = make_url(project.PG_URL).set(database=DATABASE).render_as_string(hide_password=False)
    if project.ensure_database(db_url) is not None:
        start_local_postgres()
    problem = project.ensure_database(db_url)
    if problem:
        sys.exit(f"bench: {problem}")
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    with engine.connect() as conn:
        pg_version = conn.execute(text("SHOW server_version")).scalar()
    engine.dispose()
    tmp = tempfile.mkdtemp(prefix="pdm-bench-webhooks-")
    fake = FakeDynadot(api_key=project.API_KEY).start()
    receiver = WebhookReceiver(args.secret).start()
    started = time.time()
    say(f"logs in {tmp}; receiver on {receiver.url}; database {DATABASE}")
    rounds = []
    try:
        for k in range(args.rounds):
            order = list(SERVICES) if k % 2 == 0 else list(reversed(SERVICES))
            say(f"round {k + 1}/{args.rounds}: {' then '.join(order)} (load average {loadavg()})")
            figures: dict = {"order": order}
            for name in order:
                for pool in project.POOLS:  # every service starts from the same zones
                    fake.seed(pool, list(project.BASE_RECORDS), ttl=300)
                figures[name] = one_service(project, name, db_url, fake, receiver, k + 1, args, tmp)
            without = figures["without"]["write"]
            for name in ("webhooks", "queued"):
                figures[f"{name}_over_without"] = {
                    "rps": ratio(figures[name]["write"]["rps"], without["rps"]),
                    "reserve_p50_ms": ratio(figures[name]["write"]["reserve_p50_ms"], without["reserve_p50_ms"]),
                    "reserve_p99_ms": ratio(figures[name]["write"]["reserve_p99_ms"], without["reserve_p99_ms"])}
            rounds.append(figures)
            d = figures["webhooks"]["delivery"]
            print(f"round {k + 1} ({' then '.join(order)}): write path req/s " + ", ".join(
                f"{n} {figures[n]['write']['rps']:.0f}" for n in SERVICES) +
                f" (webhooks/without {figures['webhooks_over_without']['rps']:.2f}, queued/without "
                f"{figures['queued_over_without']['rps']:.2f}); {d['received']}/{d['messages']} delivered, first "
                f"change to last delivery {fmt(d['first_change_to_last_delivery_s'], '.1f')} s, "
                f"{fmt(d['deliveries_per_s'])} deliveries/s, latency p50 {fmt(d['latency_p50_ms'])} / "
                f"p99 {fmt(d['latency_p99_ms'])} ms", flush=True)
    finally:
        receiver.stop()
        fake.stop()

    def cell(path: tuple[str, ...] | None, spec: str) -> str:
        """The median of the rounds' values at ``path``, and every round's."""
        if path is None:
            return ""
        values = []
        for r in rounds:
            for key in path:
                r = r[key]
            values.append(r)
        return f"{fmt(median(values), spec)} ({' / '.join(fmt(v, spec) for v in values)})"

    write_rows = [("write path: requests/s of the burst", "rps", ".0f"), ("reserve p50 ms", "reserve_p50_ms", ".1f"),
                  ("reserve p99 ms", "reserve_p99_ms", ".1f")]
    out = [("figure: median (rounds)", "webhooks (delivering)", "queued (receiver down)", "without",
            "webhooks / without", "queued / without")]
    for label, key, spec in write_rows:
        out.append((label, *(cell((n, "write", key), spec) for n in SERVICES),
                    cell(("webhooks_over_without", key), ".2f"), cell(("queued_over_without", key), ".2f")))
    out.append(("burst seconds", *(cell((n, "write", "seconds"), ".2f") for n in SERVICES), "", ""))
    for label, key, spec in [("messages (each delivered: see below)", "messages", ".0f"),
                             ("first change to last delivery, s", "first_change_to_last_delivery_s", ".1f"),
                             ("deliveries/s", "deliveries_per_s", ".0f"),
                             ("latency p50 ms (caller's answer to arrival)", "latency_p50_ms", ".0f"),
                             ("latency p99 ms", "latency_p99_ms", ".0f"), ("latency max ms", "latency_max_ms", ".0f")]:
        out.append((label, cell(("webhooks", "delivery", key), spec), "", "", "", ""))
    mc = machine(pg_version)
    print(f"\nwebhooks: a burst of {args.reserves:,} reserves + {args.commits} commits by {args.clients} client "
          f"processes, gunicorn 2 x 8 on PostgreSQL {pg_version}, PDM_WEBHOOK_INTERVAL={args.interval}; "
          f"{args.rounds} rounds; {mc['cpu_count']} CPUs ({mc['cpu_model']}), {mc['platform']}, Python {mc['python']}")
    widths = [max(len(r[i]) for r in out) for i in range(len(out[0]))]
    lines = ["| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(r)) + " |" for r in out]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print("\n".join(lines))
    checked = [r["webhooks"]["delivery"] for r in rounds]
    print("receiver, per round: " + "; ".join(
        f"{d['received']}/{d['messages']} received ({', '.join(f'{t} {n}' for t, n in d['by_type'].items())}), "
        f"{d['missing']} missing, {d['signatures_refused']} signatures refused, {d['events_under_two_ids']} events "
        f"under two ids, {d['ids_received_twice']} ids received twice" for d in checked))
    failed = [r[n]["write"]["failed"] for r in rounds for n in r["order"]]
    commits_202 = [r[n]["write"]["commits_202"] for r in rounds for n in r["order"]]
    print(f"requests not answered 2xx per run: {failed}; commits answered 202 per run: {commits_202}")
    busy = [r[n]["write"]["other_processes"]["cpu_s"] for r in rounds for n in r["order"]]
    print(f"CPU seconds other processes (not this run's, not PostgreSQL) used during each burst, in run order: "
          f"{busy}")

    result = {"started": datetime.fromtimestamp(started).isoformat(timespec="seconds"),
              "settings": {k: v for k, v in vars(args).items() if k != "secret"}, "service_env": SERVICE_ENV,
              "rounds": rounds, "machine": mc, "wall_seconds": round(time.time() - started, 1)}
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=1, default=str)
        f.write("\n")
    print(f"wall time {result['wall_seconds']:.0f} s; raw figures in {os.path.abspath(args.output)}")


if __name__ == "__main__":
    main()
