"""The operators' console at 100,000 allocations: the server time of its pages beside the
JSON list's, in one run.

    .venv/bin/python bench/console.py [--rows 100000] [--requests 200] [--rounds 3] [--keep]
                                      [--statements 20] [--output bench/results/console.json]

Server time: the time inside the WSGI app. The app runs in this process
(``pdm_app.create_app``) and Flask's test client calls it, so no socket, no HTTP parser and
no client are counted: each request is ``time.perf_counter()`` around ``client.get`` and
reading its whole body.

Setup:
- PostgreSQL: ``PDM_DATABASE_URL``, else database ``pdm_bench_console`` on the local server
  (127.0.0.1:5432, user postgres; created if missing). Its tables are dropped and migrated
  afresh (alembic, ``tests/conftest.py`` ``reset_schema``) unless ``--keep`` and the pool
  already holds ``--rows`` allocations.
- Filled with SQLAlchemy Core, 10,000 rows a statement: ``--rows`` allocations in one pool,
  ``omani.works`` (names of 2-4 syllables, half with a ``-N`` suffix; 8 active, the rest
  reserved and not lapsing for days; 20 callers, the first ones most frequent; reserved
  and last-changed times spread over 90 days), and the history: a ``reserve`` event per
  allocation, a ``commit`` per active one, and a tenth as many ``renew``/``release``/
  ``expire`` events, some in the two other pools, in time order. VACUUM ANALYZE after
  (a table grown over months has been vacuumed by autovacuum).
- The fake Dynadot on loopback with the three pools' zones seeded as the tests do; one DNS
  pass of ``omani.works`` publishes the active tenants (so a pool zone row exists and the
  zone holds what the table says).
- The app as ``tests/conftest.py`` ``make_settings`` builds it, with the console on
  (``secret_key``), ``PDM_AUTH=operators`` with one operator token, no background jobs,
  no rate limits. The console is signed in to through its login form (CSRF token and
  all); the JSON calls send the token as a bearer. The app's log lines (one per request,
  at INFO as shipped) are written to /dev/null, not to the terminal.

Measured, per round, after 20 warm-up requests of each kind: ``--requests`` requests of
each kind, interleaved (each pass over the kinds starts one kind later), every answer
checked to be a 200. Per kind p50 and p99 (nearest rank); per console page the ratio of
its p50 to the JSON list's first page's p50. Prints every round and the median of the
rounds (a ratio's median is the median of the rounds' ratios); writes everything to
bench/results/console.json.

Then, outside the timed rounds, ``--statements`` more requests of each kind with every SQL
statement timed (SQLAlchemy's cursor events): per kind, the statements and their median
time, so what a slow page spends its time on is in the output.

A bench, not a test: it asserts nothing.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, HERE)

import harness  # noqa: E402
from conftest import API_KEY, BASE_RECORDS, POOLS, ensure_database, make_settings, reset_schema  # noqa: E402
from run import machine, median, pct  # noqa: E402
from sqlalchemy import create_engine, event, func, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from pdm_app import create_app  # noqa: E402
from pdm_app.auth import ApiToken  # noqa: E402
from pdm_app.config import normalise_database_url  # noqa: E402
from pdm_app.models import AllocationEvent, PoolAllocation  # noqa: E402
from pdm_app.testing.fake_dynadot import FakeDynadot  # noqa: E402

POOL = "omani.works"
OTHER_POOLS = [p for p in POOLS if p != POOL]
DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/pdm_bench_console"
SECRET = "b" * 24
TOKEN = ApiToken("bench", "operator", SECRET)
BATCH = 10_000
ACTIVE = 8  # a Dynadot pool zone holds ~16 tenants' records (100 sub-host records)
CALLERS = [f"ci-{name}" for name in (
    "omantel", "openova", "sandbox", "staging", "qa", "ops", "ooredoo", "vodafone", "alpha", "beta",
    "gamma", "delta", "edge", "lab", "perf", "demo", "partner", "north", "south", "east")]
SYLLABLES = ["ka", "ro", "mi", "ta", "sa", "lu", "ne", "vo", "zi", "pe", "da", "fo", "gu", "hi", "jo", "be",
             "ce", "ri", "mo", "na", "te", "ya", "wu", "xi"]
WARM_UP = 20
SEARCH_MATCHES = 36  # the search prefix is the one matching closest to this many names
RESULTS = os.path.join(HERE, "results", "console.json")
T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", file=sys.stderr, flush=True)


# -- the data -------------------------------------------------------------------------------

def names(n: int, rng: random.Random) -> list[str]:
    seen: set[str] = set()
    out = []
    while len(out) < n:
        name = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        if rng.random() < 0.5:
            name += f"-{rng.randint(1, 999)}"
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def fill(engine, rows: int) -> dict:
    """``rows`` allocations in POOL and the history; the seconds each took."""
    rng = random.Random(20261207)
    now = datetime.now(timezone.utc)
    subs = names(rows, rng)
    active = set(rng.sample(range(rows), min(ACTIVE, rows)))
    weights = [1 / (k + 1) for k in range(len(CALLERS))]  # a few callers make most of them
    allocations, events = [], []
    lb = 0
    for i, sub in enumerate(subs):
        caller = rng.choices(CALLERS, weights)[0]
        reserved_at = now - timedelta(seconds=rng.uniform(3600, 90 * 86400))
        updated_at = reserved_at + timedelta(seconds=rng.uniform(0, (now - reserved_at).total_seconds() - 60))
        is_active = i in active
        lb += is_active
        allocations.append(dict(
            pool_domain=POOL, subdomain=sub, state="active" if is_active else "reserved", reserved_at=reserved_at,
            expires_at=None if is_active else now + timedelta(seconds=rng.uniform(86400, 7 * 86400)),
            reservation_token=hashlib.sha256(sub.encode()).hexdigest(),
            sovereign_fqdn=f"{sub}.sovereign.example" if is_active else None,
            load_balancer_ip=f"198.51.100.{10 + lb}" if is_active else None,
            created_by=caller, updated_at=updated_at, reserved_by=caller, carried_over=False))
        origin = f"api 10.0.{rng.randint(0, 9)}.{rng.randint(1, 254)}"
        events.append(dict(pool_domain=POOL, subdomain=sub, action="reserve", caller=caller, at=reserved_at,
                           load_balancer_ip=None, detail=None, origin=origin))
        if is_active:
            events.append(dict(pool_domain=POOL, subdomain=sub, action="commit", caller=caller, at=updated_at,
                               load_balancer_ip=allocations[-1]["load_balancer_ip"], detail=None, origin=origin))
        elif rng.random() < 0.05:
            events.append(dict(pool_domain=POOL, subdomain=sub, action="renew", caller=caller, at=updated_at,
                               load_balancer_ip=None, detail=None, origin=origin))
    for _ in range(rows // 20):  # names gone: released or lapsed, here and in the other pools
        pool = rng.choice([POOL, *OTHER_POOLS])
        action = rng.choice(["release", "expire"])
        at = now - timedelta(seconds=rng.uniform(60, 90 * 86400))
        events.append(dict(pool_domain=pool, subdomain=names(1, rng)[0] + "-gone", action=action,
                           caller="sweeper" if action == "expire" else rng.choices(CALLERS, weights)[0], at=at,
                           load_balancer_ip=None, detail=None,
                           origin=None if action == "expire" else f"console 10.9.0.{rng.randint(1, 9)}"))
    events.sort(key=lambda e: e["at"])
    took = {}
    for table, values in ((PoolAllocation.__table__, allocations), (AllocationEvent.__table__, events)):
        started = time.monotonic()
        for k in range(0, len(values), BATCH):
            with engine.begin() as conn:
                conn.execute(insert(table), values[k:k + BATCH])
        took[table.name] = round(time.monotonic() - started, 1)
        say(f"{table.name}: {len(values):,} rows in {took[table.name]} s")
    with engine.connect() as conn:
        # VACUUM too: a table grown over months has been vacuumed (PostgreSQL 13+ vacuums
        # after inserts alone), so its visibility map allows index-only scans.
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    return {"seconds": took, "allocations": len(allocations), "history": len(events)}


def targets(engine, rows: int) -> dict:
    """What the requests ask for, read from the table (so ``--keep`` reuses them)."""
    with engine.connect() as conn:
        subs = list(conn.execute(select(PoolAllocation.subdomain).where(PoolAllocation.pool_domain == POOL)
                                 .order_by(PoolAllocation.subdomain)).scalars())
        counts = dict(conn.execute(select(PoolAllocation.created_by, func.count())
                                   .where(PoolAllocation.pool_domain == POOL).group_by(PoolAllocation.created_by)).all())
        reserved = conn.execute(select(PoolAllocation.subdomain).where(
            PoolAllocation.pool_domain == POOL, PoolAllocation.state == "reserved",
            PoolAllocation.subdomain >= subs[len(subs) // 2]).order_by(PoolAllocation.subdomain).limit(1)).scalar()
        history = conn.execute(select(func.count()).select_from(AllocationEvent)).scalar()
    prefixes: Counter = Counter()
    for sub in subs:
        for k in range(3, 9):
            prefixes[sub[:k]] += 1
    prefix = min(sorted(prefixes), key=lambda p: (abs(prefixes[p] - SEARCH_MATCHES), len(p)))
    # A caller in the middle of the pack: a few thousand of the names.
    caller = sorted(counts, key=counts.get, reverse=True)[len(counts) // 2]
    return {"allocations": len(subs), "history_events": history,
            "deep_after": subs[max(0, len(subs) - 100)], "search_prefix": prefix, "search_matches": prefixes[prefix],
            "caller": caller, "caller_allocations": counts[caller], "tenant": reserved}


def requests_of(t: dict) -> list[tuple[str, str, str]]:
    """(key, what, path) of every kind of request measured."""
    pool = f"/console/pools/{POOL}"
    json_list = f"/api/v1/pool/{POOL}/list?limit=50"
    return [
        ("json_first", "JSON list, first page (limit=50)", json_list),
        ("json_deep", "JSON list, deep page (after=, 100 names from the end)", f"{json_list}&after={t['deep_after']}"),
        ("pool_first", "console pool page, first page (50 rows, name order)", pool),
        ("pool_deep", "console pool page, deep page (after=, keyset)", f"{pool}?after={t['deep_after']}"),
        ("pool_search", f"console pool page, search q={t['search_prefix']} ({t['search_matches']} names)",
         f"{pool}?q={t['search_prefix']}"),
        ("pool_filter", f"console pool page, state=reserved caller={t['caller']} sort=updated desc",
         f"{pool}?state=reserved&caller={t['caller']}&sort=updated&order=desc"),
        ("changes", "console changes, first page (100)", "/console/changes"),
        ("changes_caller", f"console changes, caller={t['caller']}", f"/console/changes?caller={t['caller']}"),
        ("overview", "console pools overview", "/console/"),
        ("tenant", "console tenant page (reads the fake registrar's zone once)",
         f"{pool}/tenants/{t['tenant']}"),
    ]


# -- the app --------------------------------------------------------------------------------

def sign_in(client) -> None:
    form = client.get("/console/login").get_data(as_text=True)
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form)
    if not found:
        raise SystemExit("bench: no csrf_token in the console's login form")
    answer = client.post("/console/login", data={"token": SECRET, "csrf_token": found.group(1),
                                                 "next": "/console/"})
    if answer.status_code != 302 or client.get("/console/").status_code != 200:
        raise SystemExit(f"bench: signing in to the console failed ({answer.status_code})")


def timed_get(client, path: str, headers: dict) -> tuple[float, int, int]:
    started = time.perf_counter()
    answer = client.get(path, headers=headers)
    body = answer.get_data()
    return time.perf_counter() - started, answer.status_code, len(body)


def headers_for(key: str) -> dict:
    return {"Authorization": f"Bearer {SECRET}"} if key.startswith("json") else {}


def one_round(client, kinds, n: int, bad: Counter) -> dict:
    samples: dict[str, list[float]] = {key: [] for key, _, _ in kinds}
    for i in range(WARM_UP + n):
        for j in range(len(kinds)):
            key, _, path = kinds[(i + j) % len(kinds)]
            seconds, status, _ = timed_get(client, path, headers_for(key))
            if status != 200:
                bad[(key, status)] += 1
            if i >= WARM_UP:
                samples[key].append(seconds)
    return {key: {"p50_ms": pct(s, 50) * 1000, "p99_ms": pct(s, 99) * 1000, "mean_ms": statistics.fmean(s) * 1000}
            for key, s in samples.items()}


def sanity(client, kinds) -> dict:
    """Each kind once: status, body bytes, and the rows it shows."""
    out = {}
    for key, _, path in kinds:
        answer = client.get(path, headers=headers_for(key))
        body = answer.get_data(as_text=True)
        if key.startswith("json"):
            rows = len(answer.get_json().get("allocations", [])) if answer.status_code == 200 else None
        elif key.startswith("pool"):
            rows = body.count(f'href="/console/pools/{POOL}/tenants/')
        elif key.startswith("changes"):
            rows = body.count("<tr") - 1
        else:
            rows = None
        out[key] = {"status": answer.status_code, "bytes": len(body.encode()), "rows": rows}
    return out


def statements(client, engine, kinds, n: int) -> dict:
    """Per kind: each SQL statement its requests run, its median ms, and the median total."""
    per_request: list[list[tuple[str, float]]] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def after(conn, cursor, statement, parameters, context, executemany):
        started = conn.info["bench_started"].pop()
        per_request[-1].append((" ".join(statement.split()), (time.perf_counter() - started) * 1000))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    out = {}
    try:
        for key, _, path in kinds:
            per_request.clear()
            totals = []
            for _ in range(n):
                per_request.append([])
                seconds, _, _ = timed_get(client, path, headers_for(key))
                totals.append(seconds * 1000)
            by_sql: dict[str, list[float]] = defaultdict(list)
            for stmts in per_request:
                for sql, ms_ in stmts:
                    by_sql[sql].append(ms_)
            out[key] = {"request_ms_median": statistics.median(totals),
                        "sql_ms_median_per_request": statistics.median(sum(m for _, m in s) for s in per_request),
                        "statements": sorted(({"sql": sql, "count_per_request": len(ms_list) / n,
                                               "median_ms": statistics.median(ms_list)}
                                              for sql, ms_list in by_sql.items()),
                                             key=lambda s: -s["median_ms"] * s["count_per_request"])}
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
    return out


# -- printing -------------------------------------------------------------------------------

def short(sql: str) -> str:
    """A statement without its long column list."""
    return re.sub(r"^SELECT (.{80,}?) FROM ", "SELECT … FROM ", sql)[:220]


def f2(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def table(kinds, rounds: list[dict]) -> tuple[str, dict]:
    medians = {}
    lines = ["| request | p50 ms, rounds | p50 ms, median | p99 ms, rounds | p99 ms, median "
             "| p50 ÷ JSON first page, rounds | ratio, median |",
             "|---|---|---|---|---|---|---|"]
    for key, what, _ in kinds:
        p50s = [r[key]["p50_ms"] for r in rounds]
        p99s = [r[key]["p99_ms"] for r in rounds]
        ratios = [r[key]["p50_ms"] / r["json_first"]["p50_ms"] for r in rounds]
        medians[key] = {"p50_ms": median(p50s), "p99_ms": median(p99s), "p50_ratio_to_json_first": median(ratios),
                        "p50_ratios": ratios}
        ratio_cells = ("1 (the base)", "1") if key == "json_first" else (
            " / ".join(f"{x:.2f}" for x in ratios), f"{median(ratios):.2f}")
        lines.append(f"| {what} | {' / '.join(f2(x) for x in p50s)} | **{f2(median(p50s))}** "
                     f"| {' / '.join(f2(x) for x in p99s)} | **{f2(median(p99s))}** "
                     f"| {ratio_cells[0]} | **{ratio_cells[1]}** |")
    return "\n".join(lines), medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="reuse an already-filled database")
    parser.add_argument("--statements", type=int, default=20, help="requests per kind with SQL timed (0: none)")
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args()

    db_url = normalise_database_url(os.environ.get("PDM_DATABASE_URL", DEFAULT_DB))
    problem = ensure_database(db_url)
    if problem:
        sys.exit(f"bench: {problem}")
    engine = create_engine(db_url)
    filled = None
    have = 0
    if args.keep:
        try:
            with engine.connect() as conn:
                have = conn.execute(text("SELECT count(*) FROM pool_allocations WHERE pool_domain = :p"),
                                    {"p": POOL}).scalar()
        except Exception as exc:  # no schema yet
            say(f"--keep: no table to reuse ({type(exc).__name__}); filling afresh")
    if args.keep and have == args.rows:
        say(f"--keep: reusing {have:,} allocations in {make_url(db_url).database}")
    else:
        if args.keep:
            say(f"--keep: the pool holds {have:,} allocations, not {args.rows:,}: filling afresh")
        say(f"database {make_url(db_url).database}: dropping the tables, alembic upgrade head")
        engine.dispose()
        reset_schema(db_url)
        filled = fill(engine, args.rows)
    t = targets(engine, args.rows)
    with engine.connect() as conn:
        pg_version = conn.execute(text("SHOW server_version")).scalar()
    engine.dispose()
    box = machine(pg_version)
    for key in ("wrk", "pgbench", "gunicorn"):
        box.pop(key, None)
    say(f"targets: {t}")

    fake = FakeDynadot(api_key=API_KEY).start()
    for pool in POOLS:
        fake.seed(pool, list(BASE_RECORDS), ttl=300)
    settings = make_settings(db_url, fake, secret_key="x" * 40, api_tokens=(TOKEN,), auth_mode="operators",
                             auth_enabled=True, run_jobs=False)
    out = sys.stdout
    # The app's log lines (one per request) go to stdout, where it is at the time: /dev/null.
    devnull = open(os.devnull, "w")
    try:
        with contextlib.redirect_stdout(devnull):
            app = create_app(settings)
            pdm = app.extensions["pdm"]
            published = pdm.operators.retry_dns(POOL)
            say(f"DNS pass of {POOL}: {published}")
            client = app.test_client()
            sign_in(client)
            kinds = requests_of(t)
            checked = sanity(client, kinds)
            for key, c in checked.items():
                say(f"{key}: {c}")
            bad: Counter = Counter()
            rounds = []
            for k in range(args.rounds):
                say(f"round {k + 1} of {args.rounds}: {WARM_UP} + {args.requests} requests of each of "
                    f"{len(kinds)} kinds")
                rounds.append(one_round(client, kinds, args.requests, bad))
                print(f"round {k + 1}: " + "; ".join(f"{key} p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f}"
                                                     for key, r in rounds[-1].items()), file=out, flush=True)
            if args.statements:
                say(f"statements: {args.statements} requests of each kind with every SQL statement timed")
            sql = statements(client, pdm.engine, kinds, args.statements) if args.statements else {}
            pdm.jobs.stop()
            pdm.engine.dispose()
    finally:
        fake.stop()
        devnull.close()

    if bad or any(c["status"] != 200 for c in checked.values()):
        print("\n" + "!" * 78 + "\n!!! NOT EVERY ANSWER WAS A 200: "
              + ", ".join(f"{key} {status} x{n}" for (key, status), n in sorted(bad.items()))
              + " " + str({k: c["status"] for k, c in checked.items() if c["status"] != 200})
              + "\n" + "!" * 78, flush=True)

    box["loadavg_at_end"] = " ".join(harness.sh("cat", "/proc/loadavg").split()[:3])
    text_table, medians = table(kinds, rounds)
    print(f"\nserver time (Flask test client, in-process) at {t['allocations']:,} allocations in {POOL}, "
          f"{t['history_events']:,} history events; {args.requests} requests of each kind per round after "
          f"{WARM_UP} warm-up, interleaved; {args.rounds} rounds (each shown, then the median):\n")
    print(text_table)
    print("\nper request: status, body bytes, rows shown: "
          + "; ".join(f"{k} {c['status']} {c['bytes']} B {c['rows'] if c['rows'] is not None else '-'} rows"
                      for k, c in checked.items()))
    if sql:
        print(f"\nSQL per request ({args.statements} requests of each kind, statements timed; median ms):")
        for key, s in sql.items():
            print(f"  {key}: request {s['request_ms_median']:.2f} ms, SQL {s['sql_ms_median_per_request']:.2f} ms")
            for st in s["statements"][:4]:
                print(f"      {st['median_ms']:7.2f} ms x{st['count_per_request']:g}  {short(st['sql'])}")
    print(f"\nmachine: {box['cpu_count']} cores ({box['cpu_model']}), {box['memory_gib']} GiB, {box['platform']}, "
          f"Python {box['python']}, PostgreSQL {box['postgresql']}; load {box['loadavg_at_start']} at start, "
          f"{box['loadavg_at_end']} at end")

    result = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join([os.path.relpath(sys.executable, harness.REPO), "bench/console.py", *sys.argv[1:]]),
              "tree": harness.sh("git", "-C", harness.REPO, "describe", "--always", "--dirty"),
              "args": vars(args), "database": make_url(db_url).render_as_string(hide_password=True),
              "filled": filled, "targets": t,
              "requests": [{"key": k, "what": w, "path": p} for k, w, p in kinds],
              "checked": checked, "non_200": {f"{k} {s}": n for (k, s), n in bad.items()},
              "rounds": rounds, "medians": medians, "statements": sql, "machine": box}
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    say(f"wrote {args.output}")


if __name__ == "__main__":
    main()
