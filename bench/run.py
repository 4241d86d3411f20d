"""The service against the bare endpoint and the database, side by side in one run (issue 11).

    .venv/bin/python bench/run.py [--rounds 3] [--seconds 8] [--quick] [--rev HEAD]

Starts, on this machine:
- PostgreSQL: ``PDM_DATABASE_URL`` (migrated, never emptied: the bench deletes the
  allocations it made; their history events stay), else the
  local server on 127.0.0.1:5432 (user postgres; started with pg_ctlcluster if it is down),
  database ``pdm_bench``, dropped and migrated with alembic;
- the fake Dynadot on loopback (``--latency`` seconds per call; default 0: instant);
- the service: gunicorn with the shipped ``gunicorn.conf.py`` (2 workers x 8 threads),
  ``PDM_AUTH=operators`` (the chart's default) with one operator token that only the
  ``list`` call sends: the callers send no token, as the real ones do;
- the bare endpoint, ``bench/bare_app.py`` (Flask + SQLAlchemy/psycopg 3, the same
  primary-key select as ``check``) under gunicorn with the service's worker settings:
  ``-w 2 --threads 8`` and the service's worker class (``pdm_app.gunicorn_worker``, from
  the same tree as the service, ``--rev`` included), which decides how the keep-alive
  connections spread over the workers.

Drives them from separate processes, over ``--rounds`` rounds, the order alternating:
- ``check`` and the bare endpoint: ``wrk -t2 -c16 -d{seconds}s --latency`` (Debian's
  ``wrk``, installed with apt-get if missing; a Python driver only if that fails);
- the database's ceiling: ``pgbench -n -M prepared -c 16 -j 2 -T {seconds}`` on the same
  select (a custom script; the name is passed with ``-D``, as pgbench's ``\\set`` holds
  only numbers);
- the lifecycle: 8 client *processes* (multiprocessing, spawn), each with its own
  ``requests.Session`` (one keep-alive connection), looping reserve -> commit -> release
  on distinct names.
Around each GET load: new PostgreSQL connections (``pg_stat_database.sessions``) and how
the keep-alive connections landed on the two workers (a split over 75 % on one worker is
reported, not run again). RSS of every worker idle and after
the rounds. Then the scale figures: the sweeper removing 100,000 lapsed reservations
(in-process ``service.sweep()``, while another process keeps reserving through the
service), and ``list`` of a pool of 100,000 allocations through the service.

Prints one table (medians over the rounds; a ratio of the service to the bare endpoint
is the median of the rounds' ratios, each round's shown beside it) and writes
``bench/results/latest.json`` (every round's raw figures, the medians, the machine).
A bench, not a test: it asserts nothing. ``--quick``: one round of 2 s, 5,000 rows.
``--python-driver`` uses the Python GET driver even where wrk is installed.

``--rev REV`` runs the service (and its migrations and in-process sweep) from
``git archive REV`` instead of the working tree: a baseline while the tree is being edited.
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import multiprocessing
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import requests

import harness  # bench/, beside this script

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results", "latest.json")
T0 = time.monotonic()

CHECK_NAME = "probe"  # a free name: check's everyday answer
LIST_POOL = "openova.io"  # the scale rows' pool; the loads use conftest's POOL
OPERATOR_SECRET = "bench-operator-" + uuid.uuid4().hex


def say(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", file=sys.stderr, flush=True)


# -- figures ------------------------------------------------------------------------------


def pct(samples, q: float):
    """Nearest-rank percentile (q in 0..100); None for no samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return None if a is None or not b else a / b


def ms(seconds):
    return None if seconds is None else seconds * 1000.0


# -- processes: the lifecycle clients, the reserver, the fallback GET driver ------------------
# Top-level and light on imports: multiprocessing's spawn imports this file in each child.


def _wait_until(at: float) -> None:
    delay = at - time.time()
    if delay > 0:
        time.sleep(delay)


def lifecycle_client(base: str, pool: str, tag: str, k: int, start_at: float, seconds: float) -> dict:
    """reserve -> commit -> release on fresh names until the window ends; one Session
    (one keep-alive connection). Times are wall-clock (time.time) for the parent."""
    out = {"cycles": [], "errors": []}
    with requests.Session() as s:
        s.get(f"{base}/healthz", timeout=10)  # the connection is open before the window
        _wait_until(start_at)
        end = start_at + seconds
        i = 0
        while time.time() < end:
            sub = f"{tag}c{k}n{i}"
            i += 1
            try:
                t0 = time.time()
                r = s.post(f"{base}/api/v1/pool/{pool}/reserve", json={"subdomain": sub}, timeout=60)
                t1 = time.time()
                if r.status_code != 201:
                    out["errors"].append(f"reserve {r.status_code}: {r.text[:200]}")
                    continue
                body = {"subdomain": sub, "reservationToken": r.json()["reservationToken"],
                        "loadBalancerIP": "192.0.2.10"}
                r = s.post(f"{base}/api/v1/pool/{pool}/commit", json=body, timeout=60)
                t2 = time.time()
                commit_status = r.status_code
                if commit_status not in (200, 202):
                    out["errors"].append(f"commit {commit_status}: {r.text[:200]}")
                r = s.delete(f"{base}/api/v1/pool/{pool}/release", params={"sub": sub}, timeout=60)
                t3 = time.time()
                if r.status_code not in (200, 202):
                    out["errors"].append(f"release {r.status_code}: {r.text[:200]}")
                out["cycles"].append((t0, t1 - t0, t2 - t1, commit_status, t3 - t2, r.status_code, t3))
            except (requests.RequestException, ValueError, KeyError) as exc:
                out["errors"].append(f"{type(exc).__name__}: {str(exc)[:200]}")
                time.sleep(0.1)
    return out


def reserver(base: str, pool: str, tag: str, stop, results) -> None:
    """Reserve fresh names, one after another, until ``stop``; (start, end, status) each."""
    samples = []
    with requests.Session() as s:
        i = 0
        while not stop.is_set():
            t0 = time.time()
            try:
                status = s.post(f"{base}/api/v1/pool/{pool}/reserve", json={"subdomain": f"{tag}{i}"},
                                timeout=120).status_code
            except requests.RequestException:
                status = 0
            samples.append((t0, time.time(), status))
            i += 1
    results.put(samples)


def get_client(url: str, threads: int, start_at: float, seconds: float) -> dict:
    """The fallback GET driver (only without wrk): ``threads`` threads, a Session each."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def loop():
        mine = []
        with requests.Session() as s:
            s.get(url, timeout=30)
            _wait_until(start_at)
            end = start_at + seconds
            while time.time() < end:
                t0 = time.perf_counter()
                try:
                    ok = s.get(url, timeout=30).status_code == 200
                except requests.RequestException:
                    ok = False
                mine.append(time.perf_counter() - t0)
                if not ok:
                    with lock:
                        errors[0] += 1
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return {"latencies": latencies, "errors": errors[0]}


def _noop(_):
    return os.getpid()


# -- the machine, the tools ---------------------------------------------------------------


def sh(*cmd) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine(pg_version: str) -> dict:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
        with open("/proc/meminfo") as f:
            mem_kb = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
    except (OSError, StopIteration, ValueError):
        mem_kb = 0
    return {
        "cpu_count": os.cpu_count(), "cpu_model": model, "memory_gib": round(mem_kb / 1048576, 1),
        "platform": platform.platform(), "python": platform.python_version(),
        "postgresql": pg_version, "wrk": (sh("wrk", "-v").splitlines() or [""])[0] if shutil.which("wrk") else None,
        "pgbench": sh(find_pgbench() or "pgbench", "--version") or None,
        "gunicorn": sh(sys.executable, "-m", "gunicorn", "--version"),
        "loadavg_at_start": loadavg(),
    }


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return ""


def cpu_snapshot() -> dict[int, tuple[int, str, int, int]]:
    """pid -> (ppid, command, CPU ticks so far, start time) of every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        rest = raw[raw.rindex(")") + 2:].split()
        out[int(entry)] = (int(rest[1]), comm, int(rest[11]) + int(rest[12]), int(rest[19]))
    return out


def foreign_cpu(before: dict, after: dict) -> dict:
    """CPU seconds used between two snapshots by processes that are neither this run's
    (descendants of this process: the servers, wrk, pgbench, the clients) nor PostgreSQL:
    how busy the machine was with something else (another test run, ...)."""
    mine = {os.getpid()}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, *_) in after.items():
            if ppid in mine and pid not in mine:
                mine.add(pid)
                grew = True
    per: dict[str, float] = {}
    hz = os.sysconf("SC_CLK_TCK")
    for pid, (_, comm, ticks, start) in after.items():
        if pid in mine or comm in ("postgres", "postmaster"):
            continue
        used = (ticks - before[pid][2]) if pid in before and before[pid][3] == start else ticks
        if used > 0:
            name = comm.split("/")[0]  # kworker/0:1-events -> kworker
            per[name] = per.get(name, 0.0) + used / hz
    top = sorted(per.items(), key=lambda kv: -kv[1])[:3]
    return {"cpu_s": round(sum(per.values()), 2), "top": [f"{c} {v:.1f}s" for c, v in top]}


def ensure_wrk() -> str | None:
    found = shutil.which("wrk")
    if found:
        return found
    say("wrk is not installed: installing it (DEBIAN_FRONTEND=noninteractive apt-get install -y wrk)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=300)
            done = subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, capture_output=True, text=True,
                                  timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        say(f"apt-get failed ({type(exc).__name__})")
    found = shutil.which("wrk")
    if not found:
        say("wrk could not be installed: the GET loads use the Python driver (2 processes x 8 threads, "
            "requests.Session each), which is slower than wrk -- its figures are not comparable with wrk's")
    return found


def find_pgbench() -> str | None:
    def version(path):
        m = re.search(r"/postgresql/(\d+)/", path)
        return int(m.group(1)) if m else 0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), key=version, reverse=True)
    return found[0] if found else shutil.which("pgbench")


# -- the processes under test --------------------------------------------------------------


def worker_pids(master: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                ppid = next(int(line.split()[1]) for line in f if line.startswith("PPid:"))
        except (OSError, StopIteration, ValueError):
            continue
        if ppid == master:
            pids.append(int(entry))
    return sorted(pids)


def memory(pid: int) -> dict:
    """VmRSS and VmHWM (peak RSS) in MiB."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return {"pid": pid, "rss_mib": out.get("VmRSS"), "hwm_mib": out.get("VmHWM")}


def socket_inodes(local_port: int, *, established: bool = False) -> set[str]:
    """The inodes of the TCP sockets bound locally to ``local_port`` (from /proc/net)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if (not established or parts[3] == "01") and int(parts[1].rsplit(":", 1)[1], 16) == local_port:
                        inodes.add(parts[9])
        except OSError:
            continue
    return inodes


def connection_split(pids: list[int], port: int) -> list[int]:
    """Established TCP connections on ``port`` held by each of ``pids`` (the workers)."""
    inodes = socket_inodes(port, established=True)
    split = []
    for pid in pids:
        n = 0
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    n += 1
        except OSError:
            pass
        split.append(n)
    return split


# The service's worker class (gunicorn.conf.py): the bare endpoint runs under it too, so
# that both spread their connections over the workers alike.
WORKER_CLASS = "pdm_app.gunicorn_worker.JsonErrorThreadWorker"


class BareServer:
    """bench/bare_app.py under gunicorn with the service's worker settings and worker
    class (imported from ``root``, the tree the service runs from)."""

    def __init__(self, db_url: str, port: int, root: str, workers: int = 2, threads: int = 8):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.cmd = [sys.executable, "-m", "gunicorn", "-k", WORKER_CLASS, "--pythonpath", root, "-w", str(workers),
                    "--threads", str(threads), "-b", f"127.0.0.1:{port}", "--chdir", HERE, "--timeout", "60",
                    "bare_app:app"]
        self.env = {**os.environ, "BARE_DATABASE_URL": db_url, "BARE_THREADS": str(threads)}
        self.proc = None

    def start(self, log_path: str) -> "BareServer":
        self.log = open(log_path, "wb")
        # cwd bench/: gunicorn reads ./gunicorn.conf.py by default, and the project's is not
        # the bare endpoint's.
        self.proc = subprocess.Popen(self.cmd, cwd=HERE, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise SystemExit(f"the bare endpoint did not come up; see {log_path}")

    def stop(self) -> None:
        if self.proc:
            harness.stop_group(self.proc)
        self.log.close()


# -- the database --------------------------------------------------------------------------


class Pg:
    """One autocommit connection of the bench's own, open for the whole run (so its
    queries add no session to the churn figure)."""

    def __init__(self, sa_url: str):
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(sa_url)
        self.dbname = url.database
        self.conn = psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False),
                                    autocommit=True)

    def one(self, sql: str, params=None):
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone()

    def all(self, sql: str, params=None) -> list:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def run(self, sql: str, params=None) -> int:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.rowcount

    def sessions(self) -> int:
        return int(self.one("SELECT sessions FROM pg_stat_database WHERE datname = %s", (self.dbname,))[0])

    def backends(self) -> int:
        return int(self.one("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (self.dbname,))[0])


def start_local_postgres() -> None:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions:
        raise SystemExit("no PostgreSQL server at 127.0.0.1:5432 and none installed here; set PDM_DATABASE_URL")
    say(f"PostgreSQL is down: pg_ctlcluster --skip-systemctl-redirect {versions[-1]} main start")
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"], check=False)


# -- the loads -----------------------------------------------------------------------------

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def _found(pattern: str, text: str, convert, default=None):
    """``convert`` of the first group of ``pattern``'s first match in ``text`` (lines
    anchored with ^), or ``default`` when it does not match."""
    m = re.search(pattern, text, re.M)
    return convert(m.group(1)) if m else default


def parse_wrk(output: str) -> dict:
    in_ms = lambda text: ms(_duration(text))  # noqa: E731
    figures = {f"p{q}_ms": _found(rf"^\s+{q}%\s+(\S+)", output, in_ms) for q in ("50", "75", "90", "99")}
    figures.update(
        rps=_found(r"^Requests/sec:\s+([\d.]+)", output, float),
        max_ms=_found(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", output, in_ms),
        requests=_found(r"^\s+(\d+) requests in", output, int),
        non_2xx=_found(r"Non-2xx or 3xx responses:\s+(\d+)", output, int, 0),
        socket_errors=0,
    )
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if m:
        figures["socket_errors"] = sum(int(x) for x in m.groups())
    return figures


def get_load(wrk: str | None, url: str, seconds: float, connections: int, *, sample=None) -> dict:
    """wrk (or the Python driver) against ``url``; ``sample()`` is called half-way."""
    if wrk:
        cmd = [wrk, "-t2", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "--latency", url]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(seconds / 2)
        sampled = sample() if sample else None
        output, _ = proc.communicate(timeout=seconds + 60)
        figures = parse_wrk(output)
        figures["driver"] = "wrk -t2 -c%d" % connections
        figures["raw"] = output
    else:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(2) as pool:
            pool.map(_noop, range(2))
            start_at = time.time() + 1.0
            pending = pool.starmap_async(get_client, [(url, connections // 2, start_at, seconds)] * 2)
            _wait_until(start_at + seconds / 2)
            sampled = sample() if sample else None
            parts = pending.get(seconds + 120)
        lat = [x for p in parts for x in p["latencies"]]
        figures = {"rps": len(lat) / seconds, "p50_ms": ms(pct(lat, 50)), "p75_ms": ms(pct(lat, 75)),
                   "p90_ms": ms(pct(lat, 90)), "p99_ms": ms(pct(lat, 99)), "max_ms": ms(max(lat) if lat else None),
                   "requests": len(lat), "non_2xx": sum(p["errors"] for p in parts), "socket_errors": 0,
                   "driver": f"python: 2 processes x {connections // 2} threads, a requests.Session each"}
    figures["connection_split"] = sampled
    return figures


def owner_of(local_port: int) -> str:
    """The process holding the client end of a loopback TCP connection (by its port)."""
    inodes = socket_inodes(local_port)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                link = os.readlink(f"/proc/{entry}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    with open(f"/proc/{entry}/cmdline", "rb") as f:
                        return f"pid {entry}: " + f.read().replace(b"\0", b" ").decode(errors="replace")[:120].strip()
        except OSError:
            continue
    return "gone"


# wrk opens its keep-alive connections at once: a split of 15/1 puts nearly the whole load
# on one worker's GIL, and then the split, not the code, decides the figure (0.32 against
# 0.89 for the same code in one run). The worker class is meant to prevent that; a load
# whose connections landed more unevenly than this is reported (never run again).
UNEVEN = 0.75


def uneven(split) -> bool:
    return bool(split) and max(split) > UNEVEN * sum(split)


def measured_get(name: str, wrk, url: str, seconds: float, connections: int, pg: Pg, workers, port) -> dict:
    before = pg.sessions()
    window_start = pg.one("SELECT now()")[0]
    figures = get_load(wrk, url, seconds, connections, sample=lambda: connection_split(workers(), port))
    time.sleep(1.5)  # a backend's counters reach pg_stat_database within a second
    new = pg.sessions() - before
    figures["new_pg_connections"] = new
    # Who opened them, for those still open: the owner of the client end.
    alive = pg.all("SELECT client_port FROM pg_stat_activity WHERE datname = %s AND backend_start >= %s "
                   "AND backend_type = 'client backend' AND pid <> pg_backend_pid()", (pg.dbname, window_start))
    figures["new_pg_connections_still_open"] = [owner_of(p) if p else "unix socket" for (p,) in alive]
    # A pool growing to the load keeps what it opens; churn is what is closed again.
    figures["new_pg_connections_closed_again"] = max(0, new - len(alive))
    figures["new_pg_connections_closed_again_per_8s"] = figures["new_pg_connections_closed_again"] * 8.0 / seconds
    figures["new_pg_connections_per_8s"] = new * 8.0 / seconds
    figures["loadavg"] = loadavg()
    say(f"{name}: {figures['rps']:.0f} req/s, p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
        f"{new} new PG connections ({figures['new_pg_connections_closed_again']} closed again), "
        f"connections per worker {figures['connection_split']}"
        + (" (uneven)" if uneven(figures["connection_split"]) else "")
        + (f", {figures['non_2xx']} non-2xx" if figures["non_2xx"] else ""))
    return figures


PGBENCH_SCRIPT = """\
-- check's select; :p and :s come from -D (pgbench's \\set holds numbers only)
SELECT state, expires_at FROM pool_allocations WHERE pool_domain = :p AND subdomain = :s;
"""


def run_pgbench(pgbench: str, sa_url: str, pool: str, sub: str, seconds: float, clients: int, script: str) -> dict:
    from sqlalchemy.engine import make_url

    url = make_url(sa_url)
    cmd = [pgbench, "-n", "-M", "prepared", "-c", str(clients), "-j", "2", "-T", str(int(max(1, seconds))),
           "-f", script, "-D", f"p={pool}", "-D", f"s={sub}",
           "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or "postgres",
           url.database]
    env = {**os.environ}
    if url.password:
        env["PGPASSWORD"] = url.password
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 120)
    output = done.stdout + done.stderr
    figures = {"tps": _found(r"^tps = ([\d.]+)", output, float),
               "latency_avg_ms": _found(r"^latency average = ([\d.]+) ms", output, float),
               "driver": f"pgbench -M prepared -c {clients} -j 2", "raw": output, "loadavg": loadavg()}
    say(f"pgbench: {figures['tps'] or 0:.0f} tps, latency average {figures['latency_avg_ms']} ms"
        + ("" if done.returncode == 0 else f" (exit {done.returncode}: {output.strip()[-300:]})"))
    return figures


def run_lifecycle(base: str, pool: str, tag: str, seconds: float, clients: int, workers, port) -> dict:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(clients) as procs:
        procs.map(_noop, range(clients))
        start_at = time.time() + 1.0
        pending = procs.starmap_async(lifecycle_client, [(base, pool, tag, k, start_at, seconds)
                                                         for k in range(clients)])
        _wait_until(start_at + seconds / 2)
        split = connection_split(workers(), port)
        parts = pending.get(seconds + 300)
    cycles = [c for p in parts for c in p["cycles"]]
    errors = [e for p in parts for e in p["errors"]]
    end = max((c[6] for c in cycles), default=start_at + seconds)
    elapsed = max(end - start_at, 1e-9)
    commits = [c[3] for c in cycles]
    releases = [c[5] for c in cycles]
    cycle_times = [c[1] + c[2] + c[4] for c in cycles]
    figures = {
        "driver": f"{clients} processes (multiprocessing spawn), one requests.Session each",
        "cycles": len(cycles), "elapsed_s": elapsed, "cycles_per_s": len(cycles) / elapsed,
        "cycle_p50_ms": ms(pct(cycle_times, 50)), "cycle_p99_ms": ms(pct(cycle_times, 99)),
        "cycle_max_ms": ms(max(cycle_times, default=None)),
        "reserve_p50_ms": ms(pct([c[1] for c in cycles], 50)), "reserve_p99_ms": ms(pct([c[1] for c in cycles], 99)),
        "commit_p50_ms": ms(pct([c[2] for c in cycles], 50)), "commit_p99_ms": ms(pct([c[2] for c in cycles], 99)),
        "release_p50_ms": ms(pct([c[4] for c in cycles], 50)), "release_p99_ms": ms(pct([c[4] for c in cycles], 99)),
        "commit_202_share": commits.count(202) / len(commits) if commits else None,
        "release_202_share": releases.count(202) / len(releases) if releases else None,
        "commit_statuses": {str(s): commits.count(s) for s in sorted(set(commits))},
        "release_statuses": {str(s): releases.count(s) for s in sorted(set(releases))},
        "errors": len(errors), "error_samples": errors[:5], "connection_split": split, "loadavg": loadavg(),
    }
    say(f"lifecycle: {figures['cycles_per_s']:.1f} cycles/s, cycle p50 {figures['cycle_p50_ms'] or 0:.0f} / p99 "
        f"{figures['cycle_p99_ms'] or 0:.0f} ms, commits 202: {100 * (figures['commit_202_share'] or 0):.0f} %, "
        f"releases 202: {100 * (figures['release_202_share'] or 0):.0f} %, connections per worker {split}"
        + (f", {len(errors)} errors (first: {errors[0]})" if errors else ""))
    return figures


# -- scale ---------------------------------------------------------------------------------


def scale_sweep(project, db_url: str, fake, base: str, pg: Pg, rows: int, tmp: str) -> dict:
    import logging

    from pdm_app import build
    from pdm_app.logs import JsonFormatter

    pg.run("""
        INSERT INTO pool_allocations (pool_domain, subdomain, state, reserved_at, expires_at, reservation_token,
                                      sovereign_fqdn, load_balancer_ip, created_by, updated_at)
        SELECT %s, 'bench-lapsed-' || g, 'reserved', now() - interval '2 hours', now() - interval '1 hour',
               md5(g::text) || md5(g::text), NULL, NULL, 'catalyst-api', now() - interval '2 hours'
        FROM generate_series(1, %s) AS g
    """, (project.POOL, rows))
    pg.run("ANALYZE pool_allocations")
    lapsed = pg.one("SELECT count(*) FROM pool_allocations WHERE state = 'reserved' AND expires_at <= now()")[0]
    say(f"sweep: {lapsed} lapsed reservations in the table; sweeping in-process while a process keeps reserving")

    pdm = build(project.make_settings(db_url, fake))
    # The sweeper logs a line per name, as in production (a JSON line each, to a file here).
    root = logging.getLogger()
    handler = logging.FileHandler(os.path.join(tmp, "sweep.log"))
    handler.setFormatter(JsonFormatter())
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    ctx = multiprocessing.get_context("spawn")
    stop, results = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=reserver, args=(base, project.POOL, f"bsw{uuid.uuid4().hex[:6]}n", stop, results))
    proc.start()
    time.sleep(2.0)  # the reserver's own baseline before the sweep
    # Whether anything waits on a lock meanwhile (pg_stat_activity sampled every few ms):
    # what slows a reserve is then the shared CPU and WAL, not the sweep's locks.
    watching, lock_waits = threading.Event(), []

    def watch() -> None:
        own = Pg(db_url)
        try:
            while not watching.is_set():
                lock_waits.extend(own.all(
                    "SELECT left(query, 80) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
                    (own.dbname,)))
                time.sleep(0.002)
        finally:
            own.conn.close()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    began = time.time()
    try:
        swept = pdm.lifecycle.sweep()
    finally:
        ended = time.time()
        watching.set()
        watcher.join(10)
        time.sleep(1.0)
        stop.set()
        samples = results.get(timeout=120)
        proc.join(30)
        root.removeHandler(handler)
        handler.close()
        root.setLevel(old_level)
        pdm.engine.dispose()
    during = [s for s in samples if s[1] >= began and s[0] <= ended]
    before = [s for s in samples if s[1] < began]
    figures = {
        "rows": rows, "swept": swept, "seconds": ended - began,
        "reserves_during": len(during),
        "reserve_max_during_ms": ms(max((s[1] - s[0] for s in during), default=None)),
        "reserve_p50_during_ms": ms(pct([s[1] - s[0] for s in during], 50)),
        "reserve_p50_before_ms": ms(pct([s[1] - s[0] for s in before], 50)),
        # The same machine's noise without a sweep: the 2 s of reserves before it.
        "reserve_max_before_ms": ms(max((s[1] - s[0] for s in before), default=None)),
        "reserve_p99_during_ms": ms(pct([s[1] - s[0] for s in during], 99)),
        "reserves_before": len(before),
        "lock_wait_samples": len(lock_waits), "lock_waits_seen": sorted(set(q for (q,) in lock_waits))[:5],
        "reserve_non_201": sum(1 for s in samples if s[2] != 201),
    }
    say(f"sweep: {swept} swept in {figures['seconds']:.2f} s; {len(during)} reserves meanwhile, the longest "
        f"{figures['reserve_max_during_ms'] or 0:.0f} ms, p99 {figures['reserve_p99_during_ms'] or 0:.0f} ms (in the 2 s "
        f"before: p50 {figures['reserve_p50_before_ms'] or 0:.1f} ms, longest {figures['reserve_max_before_ms'] or 0:.0f} ms); "
        f"sessions seen waiting on a lock: {len(lock_waits)}")
    pg.run("DELETE FROM pool_allocations WHERE subdomain LIKE 'bsw%%' OR subdomain LIKE 'bench-lapsed-%%'")
    return figures


def scale_list(base: str, pg: Pg, rows: int, workers) -> dict:
    auth = {"Authorization": f"Bearer {OPERATOR_SECRET}"}
    # Keep the leader's periodic resync (PDM_DNS_RESYNC_INTERVAL) off this pool while it
    # holds 100,000 tenants the zone never had: the list is what is measured.
    pg.run("UPDATE pool_zones SET synced_at = now() WHERE pool_domain = %s", (LIST_POOL,))
    pg.run("""
        INSERT INTO pool_allocations (pool_domain, subdomain, state, reserved_at, expires_at, reservation_token,
                                      sovereign_fqdn, load_balancer_ip, created_by, updated_at)
        SELECT %s, 'bench-t' || g, 'active', now() - interval '1 day', NULL, md5(g::text) || md5(g::text),
               'bench-t' || g || '.sovereign.example', '192.0.2.' || (g %% 250 + 1), 'catalyst-api',
               now() - interval '1 day'
        FROM generate_series(1, %s) AS g
    """, (LIST_POOL, rows))
    pg.run("ANALYZE pool_allocations")
    figures: dict = {"rows": rows, "pool": LIST_POOL}
    try:
        before = [memory(p) for p in workers()]
        t0 = time.perf_counter()
        r = requests.get(f"{base}/api/v1/pool/{LIST_POOL}/list", headers=auth, timeout=600)
        figures["seconds"] = time.perf_counter() - t0
        figures["status"] = r.status_code
        figures["body_mib"] = round(len(r.content) / 1048576, 2)
        body = r.json() if r.status_code == 200 else {}
        figures["allocations"] = len(body.get("allocations", []))
        time.sleep(0.5)
        after = [memory(p) for p in workers()]
        growth = [round((a["hwm_mib"] or 0) - (b["hwm_mib"] or 0), 1) for b, a in zip(before, after)]
        figures["workers_before"], figures["workers_after"] = before, after
        figures["peak_rss_growth_mib"] = max(growth) if growth else None
        figures["rss_after_mib"] = [a["rss_mib"] for a in after]
        # Paging, where the service has it: the answer to ?limit= carries nextAfter (a
        # service without it ignores ?limit= and answers the whole list again).
        figures["paging"] = False
        for limit in (1000, 500, 100):
            t0 = time.perf_counter()
            r = requests.get(f"{base}/api/v1/pool/{LIST_POOL}/list", params={"limit": limit}, headers=auth,
                             timeout=600)
            first_s = time.perf_counter() - t0
            page = r.json() if r.status_code == 200 else {}
            if "nextAfter" in page:
                # A page from the middle: after the name that sorts at the half-way point.
                after_name = sorted(f"bench-t{g}" for g in range(1, rows + 1))[rows // 2]
                t0 = time.perf_counter()
                r = requests.get(f"{base}/api/v1/pool/{LIST_POOL}/list", params={"limit": limit, "after": after_name},
                                 headers=auth, timeout=600)
                figures.update(paging=True, page_limit=limit, page_first_ms=ms(first_s),
                               page_middle_ms=ms(time.perf_counter() - t0), page_status=r.status_code,
                               page_allocations=len(r.json().get("allocations", [])) if r.status_code == 200 else None)
                break
            if r.status_code == 200:
                break  # ?limit= ignored: that was a second whole list
        say(f"list: {figures['allocations']} allocations, {figures['body_mib']} MiB in {figures['seconds']:.2f} s "
            f"(HTTP {figures['status']}), a worker's peak RSS +{figures['peak_rss_growth_mib']} MiB; paging: "
            + (f"a page of {figures['page_limit']} in {figures['page_first_ms']:.0f} ms (first) / "
               f"{figures['page_middle_ms']:.0f} ms (middle)" if figures["paging"] else "none"))
    finally:
        pg.run("DELETE FROM pool_allocations WHERE pool_domain = %s AND subdomain LIKE 'bench-t%%'", (LIST_POOL,))
    return figures


# -- the run -------------------------------------------------------------------------------


def load_project(rev: str | None, tmp: str):
    """conftest (and through it pdm_app) from the working tree, or from ``git archive rev``."""
    root = REPO
    described = sh("git", "-C", REPO, "describe", "--always", "--dirty")
    if rev:
        root = os.path.join(tmp, "rev")
        os.makedirs(root)
        archive = subprocess.run(["git", "-C", REPO, "archive", rev], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", root], input=archive, check=True)
        described = sh("git", "-C", REPO, "rev-parse", "--short", rev)
    sys.path.insert(0, os.path.join(root, "tests"))
    sys.path.insert(0, root)
    import conftest

    if os.path.dirname(os.path.dirname(os.path.abspath(conftest.__file__))) != root:
        raise SystemExit(f"conftest came from {conftest.__file__}, not {root}")
    return conftest, root, described


def database(project) -> tuple[str, bool]:
    """The URL, and whether the bench owns the database (may drop its tables)."""
    from pdm_app.config import normalise_database_url
    from sqlalchemy.engine import make_url

    given = os.environ.get("PDM_DATABASE_URL", "").strip()
    if given:
        url = normalise_database_url(given)
        if not url.startswith("postgresql+psycopg://"):
            raise SystemExit("PDM_DATABASE_URL must be a PostgreSQL URL (postgres:// or postgresql://)")
        problem = project.ensure_database(url)
        if problem:
            raise SystemExit(problem)
        return url, False
    url = make_url("postgresql+psycopg://postgres@127.0.0.1:5432/pdm_bench").render_as_string(hide_password=False)
    problem = project.ensure_database(url)
    if problem:
        start_local_postgres()
        for _ in range(30):
            problem = project.ensure_database(url)
            if problem is None:
                break
            time.sleep(1)
        if problem:
            raise SystemExit(problem)
    return url, True


def wait_for_pools(base: str, seconds: float = 30) -> None:
    """The job leader's first pass reads every pool's zone: let it finish before measuring."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            r = requests.get(f"{base}/api/v1/pools", headers={"Authorization": f"Bearer {OPERATOR_SECRET}"}, timeout=5)
            if r.status_code == 200 and all(p.get("syncedAt") for p in r.json()["pools"]):
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    say("the pools' first zone reads did not finish in time; measuring anyway")


def fmt(value, spec=".0f", unit="") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def table(result: dict) -> str:
    m = result["medians"]
    c, b, p, lc = m["check"], m["bare"], m["pgbench"], m["lifecycle"]
    worst = result["worst"]
    mem, scale = result["memory"], result.get("scale", {})

    def per_round(key: str) -> str:
        """The median of the rounds' ratios (each round runs both loads side by side),
        and every round's."""
        values = [r[key] for r in result["ratios"]["per_round"]]
        shown = " / ".join(fmt(v, ".2f") for v in values)
        return fmt(median(values), ".2f") + (f" (rounds: {shown})" if len(values) > 1 else "")
    rows = [
        ("figure", "service", "bare endpoint", "ratio: median of the rounds'", "target"),
        ("check requests/s", fmt(c["rps"]), fmt(b["rps"]), per_round("check_over_bare_rps"), ">= 0.9"),
        ("check p50 ms", fmt(c["p50_ms"], ".1f"), fmt(b["p50_ms"], ".1f"), fmt(ratio(c["p50_ms"], b["p50_ms"]), ".2f"),
         ""),
        ("check p99 ms", fmt(c["p99_ms"], ".1f"), fmt(b["p99_ms"], ".1f"), per_round("check_over_bare_p99"), "<= 2"),
        ("check p99 ms, worst round", fmt(worst["check_p99_ms"], ".1f"), fmt(worst["bare_p99_ms"], ".1f"), "", ""),
        ("new PG connections per 8 s of load (closed again)",
         f"{fmt(c['new_pg_connections_per_8s'], '.0f')} ({fmt(c['new_pg_connections_closed_again_per_8s'], '.0f')})",
         f"{fmt(b['new_pg_connections_per_8s'], '.0f')} ({fmt(b['new_pg_connections_closed_again_per_8s'], '.0f')})",
         "", "0"),
        ("database ceiling: pgbench tps (same select)", "", fmt(p["tps"]),
         "check/pgbench " + fmt(ratio(c["rps"], p["tps"]), ".3f"), ""),
        ("bare/pgbench", "", "", fmt(ratio(b["rps"], p["tps"]), ".3f"), ""),
        ("lifecycle cycles/s (8 clients)", fmt(lc["cycles_per_s"], ".1f"), "", "", ">= 200"),
        ("lifecycle cycle p50 / p99 ms", f"{fmt(lc['cycle_p50_ms'], '.0f')} / {fmt(lc['cycle_p99_ms'], '.0f')}", "",
         "", "p99 <= 100"),
        ("commit p50 / p99 ms", f"{fmt(lc['commit_p50_ms'], '.0f')} / {fmt(lc['commit_p99_ms'], '.0f')}", "", "", ""),
        ("commits / releases answered 202",
         f"{fmt(100 * lc['commit_202_share'] if lc['commit_202_share'] is not None else None, '.0f', ' %')} / "
         f"{fmt(100 * lc['release_202_share'] if lc['release_202_share'] is not None else None, '.0f', ' %')}",
         "", "", "0 %"),
        ("worker RSS MiB, idle -> after load",
         ", ".join(f"{a['rss_mib']} -> {z['rss_mib']}" for a, z in zip(mem["service_idle"], mem["service_after"])),
         ", ".join(f"{a['rss_mib']} -> {z['rss_mib']}" for a, z in zip(mem["bare_idle"], mem["bare_after"])), "", ""),
    ]
    sw, ls = scale.get("sweep"), scale.get("list")
    if sw:
        rows.append((f"sweeper, {sw['rows']:,} lapsed: total s / reserve p99, longest ms (longest without a "
                     "sweep) / lock waits seen",
                     f"{fmt(sw['seconds'], '.2f')} / {fmt(sw.get('reserve_p99_during_ms'), '.0f')}, "
                     f"{fmt(sw['reserve_max_during_ms'], '.0f')} ({fmt(sw.get('reserve_max_before_ms'), '.0f')}) / "
                     f"{sw.get('lock_wait_samples', 'n/a')}", "", "", "reserve blocked a few ms"))
    if ls:
        paged = (f"; a page of {ls.get('page_limit')}: {fmt(ls.get('page_middle_ms'), '.0f')} ms" if ls.get("paging")
                 else "; no paging")
        rows.append((f"list of {ls['rows']:,}: s / MiB / peak RSS growth MiB",
                     f"{fmt(ls.get('seconds'), '.2f')} / {ls.get('body_mib')} / {ls.get('peak_rss_growth_mib')}{paged}",
                     "", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="each load's duration")
    parser.add_argument("--quick", action="store_true", help="a smoke test: one round of 2 s, 5,000 scale rows")
    parser.add_argument("--latency", type=float, default=0.0, help="the fake registrar's seconds per call")
    parser.add_argument("--clients", type=int, default=8, help="lifecycle clients")
    parser.add_argument("--connections", type=int, default=16, help="wrk's connections (and pgbench's clients)")
    parser.add_argument("--scale-rows", type=int, default=100_000, help="rows for the sweeper and list figures "
                                                                          "(0: skip them)")
    parser.add_argument("--rev", help="run the service from `git archive REV` (e.g. HEAD), not the working tree")
    parser.add_argument("--python-driver", action="store_true",
                        help="drive the GET loads with the Python driver even where wrk is installed")
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.scale_rows = 1, 2.0, min(args.scale_rows, 5_000)
    warmup = 1.0 if args.quick else 3.0
    started_wall = time.time()

    tmp = tempfile.mkdtemp(prefix="pdm-bench-")
    project, root, described = load_project(args.rev, tmp)
    say(f"the service from {'git archive ' + args.rev if args.rev else 'the working tree'} ({described}); "
        f"logs in {tmp}")
    db_url, owned = database(project)
    if owned:
        project.reset_schema(db_url)  # drop everything, migrate to head
    else:
        from alembic import command

        command.upgrade(project.alembic_config(db_url), "head")
    pg = Pg(db_url)
    pg_version = pg.one("SHOW server_version")[0]
    wrk = None if args.python_driver else ensure_wrk()
    pgbench = find_pgbench()
    if not pgbench:
        say("pgbench not found (/usr/lib/postgresql/*/bin or PATH): no database ceiling")
    script = os.path.join(tmp, "check.sql")
    with open(script, "w") as f:
        f.write(PGBENCH_SCRIPT)

    fake = project.FakeDynadot(api_key=project.API_KEY).start()
    for pool in project.POOLS:
        fake.seed(pool, list(project.BASE_RECORDS), ttl=300)
    fake.latency = args.latency
    service_env = {
        "PDM_AUTH": "operators",  # the chart's default; the callers send no token
        "PDM_API_TOKENS": f"bench-operator:operator:{OPERATOR_SECRET}",  # for list and /pools only
        "GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "8",
        # Production's DNS retry interval (conftest's launcher says 1s); the sweeper held
        # off so that only the in-process sweep below removes the lapsed reservations.
        "PDM_DNS_RETRY_INTERVAL": "15s", "PDM_SWEEPER_INTERVAL": "1h",
        # One client address drives thousands of requests a second: the per-caller safety
        # nets would measure their own 429s.
        "PDM_RATE_LIMITS": "off", "PDM_MAX_OPEN_RESERVATIONS": "0",
    }
    service = project.Gunicorn(db_url, fake, log_path=os.path.join(tmp, "service.log"), **service_env)
    bare = BareServer(db_url, project.free_port(), root)
    result: dict = {
        "issue": 11, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started_wall)),
        "service_source": {"rev": args.rev or "working tree", "describe": described},
        "settings": {"rounds": args.rounds, "seconds": args.seconds, "connections": args.connections,
                     "lifecycle_clients": args.clients, "registrar_latency_s": args.latency,
                     "scale_rows": args.scale_rows, "warmup_s": warmup, "database": "owned (pdm_bench)" if owned
                     else "PDM_DATABASE_URL", "service": "gunicorn -c gunicorn.conf.py wsgi:app, 2 x 8, "
                     "PDM_AUTH=operators (callers send no token; an operator token for list only), "
                     "DYNADOT_MIN_INTERVAL=0s, PDM_DNS_RETRY_INTERVAL=15s, PDM_SWEEPER_INTERVAL=1h, "
                     "PDM_RATE_LIMITS=off, PDM_MAX_OPEN_RESERVATIONS=0",
                     "bare": f"gunicorn -k {WORKER_CLASS} -w 2 --threads 8 bench/bare_app.py, pool 8 + 2",
                     "get_driver": "wrk" if wrk else "python", "lifecycle_driver": "processes"},
        "rounds": [],
    }
    try:
        service.start()
        bare.start(os.path.join(tmp, "bare.log"))
        say(f"service on {service.url} (pid {service.proc.pid}), bare endpoint on {bare.url}, fake registrar "
            f"at {fake.url} ({args.latency:g} s per call), PostgreSQL {pg_version} database {pg.dbname}")
        wait_for_pools(service.url)
        svc_workers = lambda: worker_pids(service.proc.pid)  # noqa: E731
        bare_workers = lambda: worker_pids(bare.proc.pid)  # noqa: E731
        time.sleep(1.0)
        memory_idle = ([memory(p) for p in svc_workers()], [memory(p) for p in bare_workers()])

        check_url = f"{service.url}/api/v1/pool/{project.POOL}/check?sub={CHECK_NAME}"
        bare_url = f"{bare.url}/api/v1/pool/{project.POOL}/check?sub={CHECK_NAME}"
        say(f"warm-up: {warmup:g} s of each GET load")
        get_load(wrk, check_url, warmup, args.connections)
        get_load(wrk, bare_url, warmup, args.connections)

        systems = {
            "check": lambda r: measured_get("check", wrk, check_url, args.seconds, args.connections, pg, svc_workers,
                                            service.port),
            "bare": lambda r: measured_get("bare", wrk, bare_url, args.seconds, args.connections, pg, bare_workers,
                                           bare.port),
            "pgbench": lambda r: (run_pgbench(pgbench, db_url, project.POOL, CHECK_NAME, args.seconds,
                                              args.connections, script) if pgbench else {"tps": None}),
            "lifecycle": lambda r: run_lifecycle(service.url, project.POOL, f"b{uuid.uuid4().hex[:4]}r{r}",
                                                 args.seconds, args.clients, svc_workers, service.port),
        }
        order = list(systems)
        for r in range(args.rounds):
            this = order if r % 2 == 0 else order[::-1]
            say(f"round {r + 1}/{args.rounds}: {', '.join(this)} (load average {loadavg()})")
            figures = {"order": this}
            for name in this:
                before = cpu_snapshot()
                figures[name] = systems[name](r)
                figures[name]["other_processes"] = foreign_cpu(before, cpu_snapshot())
                time.sleep(0.5)
            result["rounds"].append(figures)
        time.sleep(1.0)
        result["memory"] = {
            "service_idle": memory_idle[0], "bare_idle": memory_idle[1],
            "service_after": [memory(p) for p in svc_workers()], "bare_after": [memory(p) for p in bare_workers()],
        }
        result["scale"] = {}
        if args.scale_rows > 0:
            result["scale"]["sweep"] = scale_sweep(project, db_url, fake, service.url, pg, args.scale_rows, tmp)
            result["scale"]["list"] = scale_list(service.url, pg, args.scale_rows, svc_workers)
    finally:
        for stop in (service.stop, bare.stop, fake.stop):
            try:
                stop()
            except Exception as exc:  # a bench: report, carry on stopping the rest
                say(f"stopping: {type(exc).__name__}: {exc}")

    keys = {
        "check": ("rps", "p50_ms", "p75_ms", "p90_ms", "p99_ms", "max_ms", "new_pg_connections_per_8s",
                  "new_pg_connections_closed_again_per_8s", "non_2xx"),
        "bare": ("rps", "p50_ms", "p75_ms", "p90_ms", "p99_ms", "max_ms", "new_pg_connections_per_8s",
                 "new_pg_connections_closed_again_per_8s", "non_2xx"),
        "pgbench": ("tps", "latency_avg_ms"),
        "lifecycle": ("cycles_per_s", "cycle_p50_ms", "cycle_p99_ms", "reserve_p50_ms", "reserve_p99_ms",
                      "commit_p50_ms", "commit_p99_ms", "release_p50_ms", "release_p99_ms", "commit_202_share",
                      "release_202_share", "errors"),
    }
    result["medians"] = {name: {k: median([r[name].get(k) for r in result["rounds"]]) for k in ks}
                         for name, ks in keys.items()}
    m = result["medians"]
    result["ratios"] = {
        "check_rps_over_bare_rps": ratio(m["check"]["rps"], m["bare"]["rps"]),
        "check_p99_over_bare_p99": ratio(m["check"]["p99_ms"], m["bare"]["p99_ms"]),
        "check_rps_over_pgbench_tps": ratio(m["check"]["rps"], m["pgbench"]["tps"]),
        "bare_rps_over_pgbench_tps": ratio(m["bare"]["rps"], m["pgbench"]["tps"]),
        "per_round": [{"check_over_bare_rps": ratio(r["check"]["rps"], r["bare"]["rps"]),
                       "check_over_bare_p99": ratio(r["check"]["p99_ms"], r["bare"]["p99_ms"])}
                      for r in result["rounds"]],
    }
    for key in ("check_over_bare_rps", "check_over_bare_p99"):  # the table's figure
        result["ratios"][f"{key}_median_of_rounds"] = median([r[key] for r in result["ratios"]["per_round"]])
    result["worst"] = {"check_p99_ms": max((r["check"]["p99_ms"] or 0 for r in result["rounds"]), default=None),
                       "bare_p99_ms": max((r["bare"]["p99_ms"] or 0 for r in result["rounds"]), default=None)}
    result["uneven_splits"] = {name: sum(uneven(r[name]["connection_split"]) for r in result["rounds"])
                               for name in ("check", "bare")}
    result["machine"] = machine(pg_version)
    result["wall_seconds"] = round(time.time() - started_wall, 1)
    pg.conn.close()

    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=1, default=str)
        f.write("\n")
    mc = result["machine"]
    print(f"pool-domain-manager vs the bare endpoint ({described}): {args.rounds} round(s) of {args.seconds:g} s, "
          f"medians; {mc['cpu_count']} CPUs ({mc['cpu_model']}), {mc['platform']}, Python {mc['python']}, "
          f"PostgreSQL {pg_version}; GET load: {'wrk -t2 -c%d' % args.connections if wrk else 'Python driver'}; "
          f"lifecycle: {args.clients} client processes; registrar {args.latency:g} s per call")
    print(table(result))
    splits = {name: [r[name]["connection_split"] for r in result["rounds"]] for name in ("check", "bare", "lifecycle")}
    over = result["uneven_splits"]
    print(f"keep-alive connections per worker, per round: check {splits['check']}, bare {splits['bare']}, "
          f"lifecycle {splits['lifecycle']}; rounds with a split over {UNEVEN:.0%} on one worker: "
          f"check {over['check']}, bare {over['bare']} (none run again)")
    busy = [round(r[n]["other_processes"]["cpu_s"], 1) for r in result["rounds"] for n in r["order"]]
    print(f"CPU seconds other processes (not this run's, not PostgreSQL) used during each load: {busy} "
          f"(of {os.cpu_count() * args.seconds:g} per load)")
    print(f"wall time {result['wall_seconds']:.0f} s; raw figures in {os.path.abspath(args.output)}")


if __name__ == "__main__":
    main()
