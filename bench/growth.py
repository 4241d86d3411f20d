"""How a PowerDNS pool's cost grows with its size: the same operations on pools of 10,
1,000 and 10,000 tenants, measured from outside the service.

    .venv/bin/python bench/growth.py [--sizes 10,1000,10000] [--commits 20] [--rev REV]
        [--max-paced 120] [--resync "dns retry"] [--skip-drift] [--database D] [--output F]

Per size, a fresh pool ``omani.works``:
- PostgreSQL database ``pdm_growth_bench`` (``--database``) dropped, created and
  migrated (alembic of the tree measured); a throwaway PowerDNS (``LocalPowerDns``)
  behind a recording proxy (``bench/pdns_proxy.py``), which the service's
  ``PDM_PDNS_BASE_URL`` points at;
- the pool filled: the service creates the pool zone (``dns retry``) and commits one
  tenant through HTTP, ``bench/pdns_bulk.py`` copies that tenant N-1 times into PowerDNS's
  database and the service's; then one full resync (the CLI's ``dns retry omani.works``,
  or ``--resync``'s command) must write nothing to PowerDNS, which proves the copies are
  the service's own state;
- the service under gunicorn as shipped, one worker (its CPU and RSS are one process's),
  no background jobs (``PDM_RUN_JOBS=false``): only this script starts passes.

Then, in order: (1) K sequential commits (reserve + commit of fresh names) and K releases
of them, per operation: PowerDNS calls and bytes read (at the proxy), database rows read
(``pg_stat_user_tables`` ``seq_tup_read + idx_tup_fetch``, all tables, delta over the K
operations after the statistics are flushed, divided by K), worker CPU ms (utime + stime),
wall ms p50/p99, the pool zone's PATCH time (PowerDNS rectifies the whole pool zone in
it); the worker's RSS around each step and its peak growth (VmHWM) over the step. (2) 16
commits at once. (3) a full resync by the CLI while one commit a second arrives over
HTTP (from its first PowerDNS call on; a pass first carries any pending work, since a
pass with work reads only what it names), against the same number of commits without
it; the lock is watched in ``pg_locks`` (advisory locks, sampled every 10 ms) and the
CLI's log lines are kept.
(4) drift of the whole pool (``GET .../drift``). (5) ``list``, unpaged and ``?limit=100``.

Prints a table per size and a slope table (largest size / smallest), writes every raw
figure to bench/results/growth.json (``--output``). A bench: it asserts nothing.
``--rev REV`` runs the service, its migrations and its CLI from ``git archive REV``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import harness  # noqa: E402
import pdns_bulk  # noqa: E402
from pdns_proxy import RecordingProxy  # noqa: E402

from pdm_app.testing.local_powerdns import LocalPowerDns  # noqa: E402

POOL = "omani.works"
LB_IP = "198.51.100.7"
TEMPLATE = "t0"
# PostgreSQL 15 backends flush their table statistics when idle at most every 10 s.
STATS_FLUSH = 11.0
T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {message}", file=sys.stderr, flush=True)


def pct(samples, q: float):
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def statuses(samples: list[dict]) -> dict:
    """HTTP status -> how many answered it (None: the reserve before it failed)."""
    counts: dict = {}
    for sample in samples:
        counts[str(sample.get("status"))] = counts.get(str(sample.get("status")), 0) + 1
    return dict(sorted(counts.items()))


def r1(x):
    return None if x is None else round(x, 1)


class Pool:
    """The service, its PowerDNS, the proxy and the database for one pool size."""

    def __init__(self, root: str, tmp: str, size: int, resync_command: list[str], database: str):
        self.root, self.size = root, size
        self.resync_command = resync_command
        self.dir = os.path.join(tmp, f"size-{size}")
        os.makedirs(self.dir)
        self.pdns = LocalPowerDns(os.path.join(self.dir, "pdns"))
        self.proxy: RecordingProxy | None = None
        self.db_url = harness.fresh_database(database)
        self.pg = psycopg.connect(harness.plain_url(self.db_url), autocommit=True)
        self.service: harness.Service | None = None
        self.http = requests.Session()
        self.seq = 0

    def start(self) -> None:
        self.pdns.start()
        self.proxy = RecordingProxy("127.0.0.1", self.pdns.api_port, POOL).start()
        self.service = harness.Service(self.root, self.db_url, self.proxy.url, self.pdns.api_key, POOL,
                                       os.path.join(self.dir, "service.log"))
        self.service.migrate()

    def close(self) -> None:
        for stop in (lambda: self.service and self.service.stop(), lambda: self.proxy and self.proxy.stop(),
                     self.pdns.stop, self.pg.close):
            try:
                stop()
            except Exception as exc:  # a bench: report, carry on stopping the rest
                say(f"stopping: {type(exc).__name__}: {exc}")

    # -- the callers -------------------------------------------------------------------

    def name(self, tag: str) -> str:
        self.seq += 1
        return f"{tag}{self.seq}"

    def commit(self, sub: str, session: requests.Session | None = None) -> dict:
        http = session or self.http
        base = f"{self.service.url}/api/v1/pool/{POOL}"
        t0 = time.perf_counter()
        r = http.post(f"{base}/reserve", json={"subdomain": sub}, timeout=120)
        t1 = time.perf_counter()
        out = {"sub": sub, "reserve_status": r.status_code, "reserve_ms": (t1 - t0) * 1000}
        if r.status_code != 201:
            out.update(status=None, ms=out["reserve_ms"], error=r.text[:300])
            return out
        c = http.post(f"{base}/commit", json={"subdomain": sub, "reservationToken": r.json()["reservationToken"],
                                              "loadBalancerIP": LB_IP}, timeout=120)
        t2 = time.perf_counter()
        out.update(status=c.status_code, commit_ms=(t2 - t1) * 1000, ms=(t2 - t0) * 1000)
        if c.status_code not in (200, 202):
            out["error"] = c.text[:300]
        return out

    def release(self, sub: str) -> dict:
        t0 = time.perf_counter()
        r = self.http.delete(f"{self.service.url}/api/v1/pool/{POOL}/release", params={"sub": sub}, timeout=120)
        out = {"sub": sub, "status": r.status_code, "ms": (time.perf_counter() - t0) * 1000}
        if r.status_code not in (200, 202):
            out["error"] = r.text[:300]
        return out

    # -- what is measured beside ---------------------------------------------------------

    def worker(self) -> int:
        return self.service.worker()

    def memory(self) -> dict:
        return harness.memory_mib(self.worker())

    def rows_read(self, wait: bool = True) -> int:
        """Rows the database has handed out so far, all tables: sequential tuples read plus
        index fetches, once the backends' statistics have been flushed."""
        if wait:
            time.sleep(STATS_FLUSH)
        self.pg.execute("SELECT pg_stat_clear_snapshot()")
        return int(self.pg.execute("SELECT COALESCE(SUM(seq_tup_read + COALESCE(idx_tup_fetch, 0)), 0) "
                                   "FROM pg_stat_user_tables").fetchone()[0])

    def resync(self) -> dict:
        """A full resync by the CLI (``--resync``, default ``dns retry POOL``), its INFO
        lines on: what it calls, and its log."""
        self.proxy.take()
        t0 = time.perf_counter()
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = self.service.cli("-v", *self.resync_command, POOL)
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        took = time.perf_counter() - t0
        cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
        return {"seconds": round(took, 2), "cli_cpu_s": round(cpu, 2), "exit": done.returncode,
                "stdout": done.stdout.strip()[-2000:],
                "log": [line for line in done.stderr.splitlines() if line.startswith("{")][-200:],
                "stderr_other": [line for line in done.stderr.splitlines() if not line.startswith("{")][-20:],
                "powerdns": self.proxy.take()}


# -- the steps -------------------------------------------------------------------------------


def fill(p: Pool) -> dict:
    """The pool holds ``p.size`` committed tenants in the service's own state; a full
    resync then writes nothing (checked)."""
    out = {}
    p.proxy.take()
    made = p.service.cli("dns", "retry", POOL)  # creates and signs the pool's zone
    out["pool_zone_created"] = {"exit": made.returncode, "powerdns": p.proxy.take()}
    p.service.start()
    out["template_commit"] = p.commit(TEMPLATE)
    p.service.stop()
    subs = [f"t{i}" for i in range(1, p.size)]
    t0 = time.perf_counter()
    p.pdns.stop()
    ds_of = pdns_bulk.load_powerdns(str(p.pdns.database), POOL, TEMPLATE, subs)
    p.pdns.start()
    pdns_bulk.load_database(harness.plain_url(p.db_url), POOL, TEMPLATE, subs)
    out["load_seconds"] = round(time.perf_counter() - t0, 2)
    # The DS computed for a loaded key is the one PowerDNS derives from it.
    sample = subs[:: max(1, len(subs) // 3)][:3]
    checks = []
    for sub in sample:
        keys = requests.get(f"{p.pdns.server_url}/zones/{sub}.{POOL}./cryptokeys",
                            headers={"X-API-Key": p.pdns.api_key}, timeout=30).json()
        theirs = [line for k in keys for line in k.get("ds", []) if line.split()[2] == "2"]
        checks.append({"sub": sub, "ours": ds_of[sub], "powerdns": theirs, "equal": theirs == [ds_of[sub]]})
    out["ds_check"] = checks
    time.sleep(1)  # the loader's session has ended: its statistics are in
    before = p.rows_read(wait=False)
    proof = p.resync()
    proof["rows_read"] = p.rows_read(wait=False) - before  # the CLI has exited: its statistics are in
    writes = proof["powerdns"]["writes"]
    out["takeover_check"] = {**proof, "powerdns_writes": writes, "clean": writes == 0 and proof["exit"] == 0}
    ds_ok = "ok" if all(c["equal"] for c in checks) else "FAILED"
    say(f"size {p.size}: loaded in {out['load_seconds']} s; DS check {ds_ok}; first full resync "
        f"{proof['seconds']} s, {proof['powerdns']['calls']} calls, {proof['powerdns']['bytes'] / 1e6:.1f} MB read, "
        f"{writes} writes (exit {proof['exit']})")
    return out


def per_op(samples: list[dict], calls: list[dict], cpu: list[float], rows: int) -> dict:
    n = len(samples)
    walls = [s["ms"] for s in samples]
    read = [c["bytes"] for c in calls]
    patches = [ms for c in calls for ms in c["pool_patch_ms"]]
    return {
        "n": n,
        "statuses": statuses(samples),
        "wall_ms_p50": r1(pct(walls, 50)), "wall_ms_p99": r1(pct(walls, 99)), "wall_ms_max": r1(max(walls)),
        "powerdns_bytes": sum(read) / n, "powerdns_calls": sum(c["calls"] for c in calls) / n,
        "powerdns_writes": sum(c["writes"] for c in calls) / n,
        "db_rows": rows / n,
        "cpu_ms": sum(cpu) / n,
        "pool_patch_ms_p50": r1(pct(patches, 50)), "pool_patch_ms_max": r1(max(patches, default=None) or None),
        "by_kind": merge_kinds(calls, n),
        "samples": samples,
    }


def merge_kinds(calls: list[dict], n: int) -> dict:
    out: dict = {}
    for c in calls:
        for kind, v in c["by_kind"].items():
            o = out.setdefault(kind, {"calls": 0, "bytes": 0, "ms": 0.0})
            for key in o:
                o[key] += v[key]
    return {kind: {key: round(value / n, 2) for key, value in v.items()} for kind, v in sorted(out.items())}


def one_by_one(p: Pool, pid: int, op, names: list[str], rows0: int) -> tuple[dict, int]:
    """``op(name)`` for each name in turn: the figures per operation, and the rows-read
    counter after them."""
    samples, calls, cpu = [], [], []
    for sub in names:
        c0 = harness.cpu_ms(pid)
        samples.append(op(sub))
        cpu.append(harness.cpu_ms(pid) - c0)
        calls.append(p.proxy.take())
    rows1 = p.rows_read()
    return per_op(samples, calls, cpu, rows1 - rows0), rows1


def commits_and_releases(p: Pool, k: int) -> dict:
    pid = p.worker()
    mem = {"before": p.memory()}
    harness.reset_peak(pid)
    names = [p.name("c") for _ in range(k)]
    commits, rows = one_by_one(p, pid, p.commit, names, p.rows_read())
    mem["after_commits"] = p.memory()
    releases, _ = one_by_one(p, pid, p.release, names, rows)
    mem["after_releases"] = p.memory()
    mem["peak_growth_mib"] = r1(mem["after_releases"]["hwm"] - mem["before"]["rss"])
    return {"commits": commits, "releases": releases, "memory": mem}


def burst(p: Pool, n: int = 16) -> dict:
    pid = p.worker()
    mem = {"before": p.memory()}
    harness.reset_peak(pid)
    names = [p.name("b") for _ in range(n)]
    p.proxy.take()
    c0 = harness.cpu_ms(pid)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(lambda sub: p.commit(sub, requests.Session()), names))
    took = time.perf_counter() - t0
    cpu = harness.cpu_ms(pid) - c0
    calls = p.proxy.take()
    mem["after"] = p.memory()
    mem["peak_growth_mib"] = r1(mem["after"]["hwm"] - mem["before"]["rss"])
    published = published_now(p, names)
    return {"n": n, "seconds": round(took, 2), "statuses": statuses(results),
            "commit_ms_p50": r1(pct([r["ms"] for r in results], 50)),
            "commit_ms_max": r1(max(r["ms"] for r in results)),
            "cpu_ms": round(cpu, 1), "powerdns": calls, "memory": mem, "published": published, "samples": results}


def published_now(p: Pool, names: list[str]) -> dict:
    """Of ``names``: how many the list shows active without pending DNS, and how many
    zones PowerDNS holds (asked directly, not through the proxy)."""
    listing = requests.get(f"{p.service.url}/api/v1/pool/{POOL}/list", timeout=600).json()
    rows = {a["subdomain"]: a for a in listing.get("allocations", [])}
    active = [s for s in names if rows.get(s, {}).get("state") == "active"]
    pending = [s for s in names if rows.get(s, {}).get("dnsPending")]
    zones = {z["name"].rstrip(".") for z in requests.get(f"{p.pdns.server_url}/zones",
                                                         headers={"X-API-Key": p.pdns.api_key}, timeout=120).json()}
    held = [s for s in names if f"{s}.{POOL}" in zones]
    return {"active": len(active), "dns_pending": len(pending), "zones_in_powerdns": len(held), "of": len(names),
            "all": len(active) == len(names) and len(held) == len(names) and not pending}


class LockWatch:
    """Advisory locks held, sampled from ``pg_locks`` every 10 ms: the longest any one
    backend held one lock without letting go (as far as 10 ms samples can tell). Locks
    already held when the watch begins are left out."""

    def __init__(self, url: str):
        self.conn = psycopg.connect(url, autocommit=True)
        self.stop = threading.Event()
        self.holds: list[dict] = []
        self.before: list = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        open_: dict = {}
        first = True
        while not self.stop.is_set():
            now = time.perf_counter()
            held = {row for row in self.conn.execute(
                "SELECT pid, classid, objid FROM pg_locks WHERE locktype = 'advisory' AND granted").fetchall()}
            if first:
                # Held before the watch began (not the resync's): left out until let go.
                self.before = sorted(held)
                skip = set(held)
                first = False
            skip &= held
            for key in held - set(open_) - skip:
                open_[key] = now
            for key in set(open_) - held:
                self.holds.append({"pid": key[0], "key": [key[1], key[2]], "seconds": now - open_.pop(key)})
            self.stop.wait(0.01)
        now = time.perf_counter()
        self.holds += [{"pid": key[0], "key": [key[1], key[2]], "seconds": now - t, "still_held": True}
                       for key, t in open_.items()]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.conn.close()

    def summary(self) -> dict:
        top = sorted(self.holds, key=lambda h: -h["seconds"])
        return {"holds": len(top), "longest_s": round(top[0]["seconds"], 3) if top else None,
                "top5": [{**h, "seconds": round(h["seconds"], 3)} for h in top[:5]],
                "held_before_the_watch": [list(k) for k in self.before]}


def paced_commits(p: Pool, stop: threading.Event | None, count: int | None, cap: int) -> list[dict]:
    """One commit a second, each on its own thread (arrivals do not wait for answers):
    until ``stop`` is set or ``count`` have been sent, at most ``cap``."""
    results, threads = [], []
    start = time.monotonic()
    i = 0
    while i < cap and (count is None or i < count) and not (stop is not None and stop.is_set()):
        sub = p.name("p")
        t = threading.Thread(target=lambda s=sub: results.append(p.commit(s, requests.Session())))
        t.start()
        threads.append(t)
        i += 1
        next_at = start + i
        while time.monotonic() < next_at and not (stop is not None and stop.is_set()):
            time.sleep(0.02)
    for t in threads:
        t.join()
    return results


def summarise_paced(results: list[dict]) -> dict:
    ms = [r["ms"] for r in results]
    return {"n": len(results), "p50_ms": r1(pct(ms, 50)), "p99_ms": r1(pct(ms, 99)),
            "max_ms": r1(max(ms, default=None)), "statuses": statuses(results)}


def resync_under_load(p: Pool, cap: int) -> dict:
    """A resync reads the whole pool only when no DNS work is pending as it begins (with
    work, the pass carries that work alone), so the pool's pending work is carried first,
    and the commits start once the resync has made its first PowerDNS call."""
    drain = p.resync()
    pid = p.worker()
    mem = {"before": p.memory()}
    stop = threading.Event()
    holder: dict = {}
    resync = threading.Thread(target=lambda: holder.update(run=p.resync()))
    loader = threading.Thread(target=lambda: holder.update(results=paced_commits(p, stop, None, cap)))
    with LockWatch(harness.plain_url(p.db_url)) as watch:
        c0 = harness.cpu_ms(pid)
        seen = p.proxy.total
        resync.start()
        while p.proxy.total == seen and resync.is_alive():
            time.sleep(0.01)
        loader.start()
        resync.join()
        stop.set()
        loader.join()
    run = holder["run"]
    run["service_cpu_ms"] = round(harness.cpu_ms(pid) - c0, 1)
    during = holder["results"]
    calls = p.proxy.take()
    mem["after"] = p.memory()
    baseline = paced_commits(p, None, len(during), cap)
    base_calls = p.proxy.take()
    return {"pending_work_carried_first": {k: drain[k] for k in ("seconds", "exit", "powerdns")},
            "resync": {k: v for k, v in run.items() if k != "powerdns"}, "resync_and_commits_powerdns": run["powerdns"],
            "after_resync_powerdns": calls, "lock": watch.summary(), "log_passes": pass_lines(run["log"]),
            "commits_during": summarise_paced(during), "commits_without": summarise_paced(baseline),
            "baseline_powerdns": base_calls, "memory": mem,
            "samples_during": during, "samples_without": baseline}


def pass_lines(lines: list[str]) -> list[dict]:
    """The CLI's log lines about passes or slices (their messages and any durations)."""
    found = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        message = str(entry.get("message", ""))
        if "pass" in message or "slice" in message or any("duration" in k or k.endswith("_ms") for k in entry):
            found.append(entry)
    return found


def drift(p: Pool) -> dict:
    pid = p.worker()
    mem = {"before": p.memory()}
    harness.reset_peak(pid)
    rows0 = p.rows_read()
    p.proxy.take()
    c0 = harness.cpu_ms(pid)
    t0 = time.perf_counter()
    r = requests.get(f"{p.service.url}/api/v1/pool/{POOL}/drift", timeout=3600)
    took = time.perf_counter() - t0
    cpu = harness.cpu_ms(pid) - c0
    calls = p.proxy.take()
    rows = p.rows_read() - rows0
    mem["after"] = p.memory()
    mem["peak_growth_mib"] = r1(mem["after"]["hwm"] - mem["before"]["rss"])
    body = r.json() if r.headers.get("Content-Type", "").startswith("application/json") else {}
    return {"status": r.status_code, "seconds": round(took, 2), "cpu_ms": round(cpu, 1), "db_rows": rows,
            "answer_bytes": len(r.content), "clean": body.get("clean"), "names": len(body.get("names") or []),
            "error": None if r.status_code == 200 else r.text[:500], "powerdns": calls, "memory": mem,
            "cli": drift_by_cli(p)}


def drift_by_cli(p: Pool) -> dict:
    """The same report by the operators' CLI, which (where the tree allows it) reads as
    long as the pool takes, not within a request's budget."""
    p.proxy.take()
    t0 = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = p.service.cli("drift", POOL, "--json")
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    took = time.perf_counter() - t0
    try:
        names = len(json.loads(done.stdout).get("names") or [])
    except ValueError:
        names = None
    return {"exit": done.returncode, "seconds": round(took, 2),
            "cli_cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 2), "names": names,
            "error": done.stderr.strip()[-300:] if done.returncode not in (0, 1) else None,
            "powerdns": p.proxy.take()}


def listing(p: Pool) -> dict:
    pid = p.worker()
    out = {}
    for label, params in (("unpaged", {}), ("page_100", {"limit": 100})):
        mem = {"before": p.memory()}
        harness.reset_peak(pid)
        rows0 = p.rows_read()
        c0 = harness.cpu_ms(pid)
        t0 = time.perf_counter()
        r = requests.get(f"{p.service.url}/api/v1/pool/{POOL}/list", params=params, timeout=600)
        took = time.perf_counter() - t0
        cpu = harness.cpu_ms(pid) - c0
        rows = p.rows_read() - rows0
        mem["after"] = p.memory()
        mem["peak_growth_mib"] = r1(mem["after"]["hwm"] - mem["before"]["rss"])
        body = r.json() if r.status_code == 200 else {}
        out[label] = {"status": r.status_code, "ms": round(took * 1000, 1), "bytes": len(r.content),
                      "allocations": len(body.get("allocations") or []), "paged": "nextAfter" in body,
                      "cpu_ms": round(cpu, 1), "db_rows": rows, "memory": mem, "powerdns": p.proxy.take()}
    return out


def measure(root: str, tmp: str, size: int, args) -> dict:
    say(f"size {size}: a fresh pool")
    started = time.monotonic()
    p = Pool(root, tmp, size, args.resync.split(), args.database)
    result: dict = {"size": size}
    try:
        p.start()
        result["fill"] = fill(p)
        p.service.start()
        result["idle_memory"] = p.memory()
        say(f"size {size}: {args.commits} commits, then their releases")
        result["lifecycle"] = commits_and_releases(p, args.commits)
        say(f"size {size}: 16 commits at once")
        result["burst"] = burst(p)
        say(f"size {size}: a full resync while a commit a second arrives, then as many commits without it")
        result["resync"] = resync_under_load(p, args.max_paced)
        if not args.skip_drift:
            say(f"size {size}: drift")
            result["drift"] = drift(p)
        say(f"size {size}: list")
        result["list"] = listing(p)
        result["final_memory"] = p.memory()
        log = open(p.service.log_path, encoding="utf-8", errors="replace").read().splitlines()
        result["service_log"] = {"lines": len(log), "warnings_or_errors": [
            line for line in log if '"level": "warning"' in line or '"level": "error"' in line][-50:]}
    finally:
        p.close()
    result["seconds"] = round(time.monotonic() - started, 1)
    say(f"size {size}: done in {result['seconds']} s")
    return result


# -- output ----------------------------------------------------------------------------------


def fmt(value, spec=".1f") -> str:
    return "n/a" if value is None else f"{value:{spec}}"


def size_rows(r: dict) -> list[tuple[str, str]]:
    c, rel = r["lifecycle"]["commits"], r["lifecycle"]["releases"]
    f, b, rs = r["fill"], r["burst"], r["resync"]
    take = f["takeover_check"]
    rows = [
        ("first full resync (takeover check)", f"{take['seconds']} s (CLI CPU {take['cli_cpu_s']} s), "
         f"{take['powerdns']['calls']} calls, "
         f"{take['powerdns']['bytes'] / 1e6:.2f} MB, {take['rows_read']} rows; writes {take['powerdns_writes']} "
         f"({'clean' if take['clean'] else 'NOT CLEAN'})"),
    ]
    for label, o in (("commit", c), ("release", rel)):
        rows.append((f"{label}: PowerDNS KB read / calls per op", f"{o['powerdns_bytes'] / 1e3:.1f} / "
                     f"{o['powerdns_calls']:.1f}"))
        rows.append((f"{label}: DB rows read per op", fmt(o["db_rows"])))
        rows.append((f"{label}: worker CPU ms per op", fmt(o["cpu_ms"])))
        rows.append((f"{label}: wall ms p50 / p99", f"{fmt(o['wall_ms_p50'])} / {fmt(o['wall_ms_p99'])}"))
        rows.append((f"{label}: pool zone PATCH ms p50 / max", f"{fmt(o['pool_patch_ms_p50'])} / "
                     f"{fmt(o['pool_patch_ms_max'])}"))
        rows.append((f"{label}: statuses", json.dumps(o["statuses"])))
    m = r["lifecycle"]["memory"]
    rows.append(("worker RSS MiB idle / before / after commits / after releases; peak growth",
                 f"{r['idle_memory']['rss']} / {m['before']['rss']} / {m['after_commits']['rss']} / "
                 f"{m['after_releases']['rss']}; +{m['peak_growth_mib']}"))
    rows.append(("16 at once: s, statuses, published", f"{b['seconds']} s, {json.dumps(b['statuses'])}, "
                 f"{'all' if b['published']['all'] else json.dumps(b['published'])}; {b['powerdns']['calls']} calls"))
    carried = rs["pending_work_carried_first"]
    rows.append(("the pass before the resync (carries pending work): s, calls",
                 f"{carried['seconds']} s, {carried['powerdns']['calls']} calls"))
    rows.append(("resync under 1 commit/s: s, calls, MB", f"{rs['resync']['seconds']} s (exit {rs['resync']['exit']}), "
                 f"{rs['resync_and_commits_powerdns']['calls']} calls, "
                 f"{rs['resync_and_commits_powerdns']['bytes'] / 1e6:.2f} MB (with the commits')"))
    rows.append(("longest lock hold s (pg_locks, 10 ms samples)", fmt(rs["lock"]["longest_s"], ".2f")))
    d, w = rs["commits_during"], rs["commits_without"]
    rows.append(("commits during resync: n, p50 / p99 ms, statuses", f"{d['n']}, {fmt(d['p50_ms'])} / "
                 f"{fmt(d['p99_ms'])}, {json.dumps(d['statuses'])}"))
    rows.append(("same commits without resync: p50 / p99 ms, statuses", f"{fmt(w['p50_ms'])} / {fmt(w['p99_ms'])}, "
                 f"{json.dumps(w['statuses'])}"))
    if "drift" in r:
        dr = r["drift"]
        rows.append(("drift: status, s, calls, MB read", f"{dr['status']}, {dr['seconds']} s, "
                     f"{dr['powerdns']['calls']} calls, {dr['powerdns']['bytes'] / 1e6:.2f} MB; CPU "
                     f"{dr['cpu_ms']:.0f} ms, {dr['db_rows']} rows"))
        cli = dr["cli"]
        rows.append(("drift by the CLI: exit, s, calls, MB read, names", f"{cli['exit']}, {cli['seconds']} s "
                     f"(CLI CPU {cli['cli_cpu_s']} s), {cli['powerdns']['calls']} calls, "
                     f"{cli['powerdns']['bytes'] / 1e6:.2f} MB, {cli['names']}"))
    for label in ("unpaged", "page_100"):
        li = r["list"][label]
        rows.append((f"list {label}: ms, KB, allocations", f"{li['ms']} ms, {li['bytes'] / 1e3:.1f} KB, "
                     f"{li['allocations']}{'' if label == 'unpaged' or li['paged'] else ' (no paging)'}"))
    rows.append(("run time for this size", f"{r['seconds']} s (loading {f['load_seconds']} s)"))
    return rows


SLOPES = [
    ("commit PowerDNS bytes", lambda r: r["lifecycle"]["commits"]["powerdns_bytes"]),
    ("commit PowerDNS calls", lambda r: r["lifecycle"]["commits"]["powerdns_calls"]),
    ("commit DB rows", lambda r: r["lifecycle"]["commits"]["db_rows"]),
    ("commit worker CPU ms", lambda r: r["lifecycle"]["commits"]["cpu_ms"]),
    ("commit wall p50 ms", lambda r: r["lifecycle"]["commits"]["wall_ms_p50"]),
    ("release PowerDNS bytes", lambda r: r["lifecycle"]["releases"]["powerdns_bytes"]),
    ("release PowerDNS calls", lambda r: r["lifecycle"]["releases"]["powerdns_calls"]),
    ("release DB rows", lambda r: r["lifecycle"]["releases"]["db_rows"]),
    ("release worker CPU ms", lambda r: r["lifecycle"]["releases"]["cpu_ms"]),
    ("release wall p50 ms", lambda r: r["lifecycle"]["releases"]["wall_ms_p50"]),
    ("full resync s", lambda r: r["fill"]["takeover_check"]["seconds"]),
    ("full resync PowerDNS calls", lambda r: r["fill"]["takeover_check"]["powerdns"]["calls"]),
    ("full resync PowerDNS bytes", lambda r: r["fill"]["takeover_check"]["powerdns"]["bytes"]),
    ("drift s", lambda r: r["drift"]["seconds"] if "drift" in r else None),
    ("list unpaged ms", lambda r: r["list"]["unpaged"]["ms"]),
    ("list unpaged bytes", lambda r: r["list"]["unpaged"]["bytes"]),
]


def slopes(results: list[dict]) -> dict:
    lo, hi = results[0], results[-1]
    out = {}
    for label, get in SLOPES:
        a, b = get(lo), get(hi)
        out[label] = {"at_smallest": a, "at_largest": b, "ratio": round(b / a, 1) if a and b is not None else None}
    return out


def print_tables(result: dict) -> None:
    sizes = [r["size"] for r in result["sizes"]]
    by_size = [dict(size_rows(r)) for r in result["sizes"]]
    labels = [label for label, _ in size_rows(result["sizes"][0])]
    for label in {lbl for rows in by_size for lbl in rows} - set(labels):
        labels.append(label)
    print(f"\nPowerDNS pool growth, service {result['service_source']}; {result['machine']['cpu_count']} CPUs "
          f"({result['machine']['cpu_model']}), {result['machine']['platform']}")
    print("| figure | " + " | ".join(f"{s:,} tenants" for s in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for label in labels:
        print(f"| {label} | " + " | ".join(rows.get(label, "") for rows in by_size) + " |")
    if len(sizes) > 1:
        print(f"\nSlopes: figure at {sizes[-1]:,} / figure at {sizes[0]:,}")
        print("| figure | at smallest | at largest | ratio |")
        print("|---|---|---|---|")
        for label, s in result["slopes"].items():
            print(f"| {label} | {fmt(s['at_smallest'], ',.1f')} | {fmt(s['at_largest'], ',.1f')} | "
                  f"{fmt(s['ratio'], ',.1f')} |")


def machine() -> dict:
    model = ""
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    with open("/proc/meminfo") as f:
        mem_kb = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
    with psycopg.connect(harness.PG_ADMIN) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
    return {"cpu_count": os.cpu_count(), "cpu_model": model, "memory_gib": round(mem_kb / 1048576, 1),
            "platform": platform.platform(), "python": platform.python_version(), "postgresql": pg,
            "powerdns": harness.sh("dpkg-query", "-W", "-f=${Version}", "pdns-server"),
            "gunicorn": harness.sh(sys.executable, "-m", "gunicorn", "--version")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,1000,10000", help="pool sizes, comma-separated")
    parser.add_argument("--commits", type=int, default=20, help="K: sequential commits (and releases) per size")
    parser.add_argument("--max-paced", type=int, default=120,
                        help="at most this many 1/s commits during the resync (and as many without)")
    parser.add_argument("--resync", default="dns retry",
                        help="the CLI command that resyncs a whole pool to the end (the pool's name is appended)")
    parser.add_argument("--skip-drift", action="store_true", help="leave out the drift step")
    parser.add_argument("--database", default="pdm_growth_bench",
                        help="the PostgreSQL database (127.0.0.1:5432, user postgres) dropped and made afresh per size")
    parser.add_argument("--rev", help="run the service from `git archive REV`, not the working tree")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "growth.json"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    ok, why = LocalPowerDns.available()
    if not ok:
        print(why, file=sys.stderr)
        return 1
    started = time.time()
    tmp = tempfile.mkdtemp(prefix="pdm-growth-")
    root, described = harness.source_tree(args.rev, tmp)
    say(f"the service from {'git archive ' + args.rev if args.rev else 'the working tree'} ({described}); "
        f"files in {tmp}")
    result = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
              "service_source": {"rev": args.rev or "working tree", "describe": described},
              "settings": {"sizes": sizes, "commits": args.commits, "max_paced": args.max_paced,
                           "resync": f"pool-domain-manager -v {args.resync} {POOL}",
                           "service": "gunicorn -c gunicorn.conf.py wsgi:app, GUNICORN_WORKERS=1 (8 threads), "
                           "PDM_RUN_JOBS=false, PDM_AUTH=disabled, PDM_RATE_LIMITS=off, "
                           "PDM_TENANT_RECORDS=@,*,console,api,gitea,harbor",
                           "db_rows": "pg_stat_user_tables seq_tup_read + idx_tup_fetch, all tables, delta over "
                           f"the step after {STATS_FLUSH:g} s for the statistics to flush, divided by the operations"},
              "machine": machine(), "sizes": []}
    try:
        for size in sizes:
            result["sizes"].append(measure(root, tmp, size, args))
            result["slopes"] = slopes(result["sizes"])
            write(result, args.output, started)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_tables(result)
    print(f"\nwall time {time.time() - started:.0f} s; raw figures in {os.path.abspath(args.output)}")
    return 0


def write(result: dict, path: str, started: float) -> None:
    result["wall_seconds"] = round(time.time() - started, 1)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1, default=str)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
