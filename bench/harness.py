"""What bench/growth.py runs the service with: its source tree (the working tree or
``git archive REV``), its database, the service under gunicorn and the operators' CLI,
all as separate processes, so that whatever revision is measured is only ever driven
from outside (HTTP, the CLI, PowerDNS behind bench/pdns_proxy.py)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import psycopg
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
NOWHERE = "http://127.0.0.1:9"  # the discard port: any registrar call is refused at once
CUSTOMER_REGISTRAR_URLS = ("PDM_CLOUDFLARE_API_URL", "PDM_NAMECHEAP_API_URL", "PDM_GODADDY_API_URL",
                           "PDM_DYNADOT_CUSTOMER_API_URL", "PDM_OVH_API_URL")


def sh(*cmd, cwd=None) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=cwd).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def source_tree(rev: str | None, tmp: str) -> tuple[str, str]:
    """(the root the service runs from, what it is): ``git archive rev`` unpacked in
    ``tmp``, or the working tree."""
    if not rev:
        return REPO, "working tree at " + sh("git", "-C", REPO, "describe", "--always", "--dirty")
    root = os.path.join(tmp, "rev")
    os.makedirs(root)
    archive = subprocess.run(["git", "-C", REPO, "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", root], input=archive, check=True)
    return root, sh("git", "-C", REPO, "rev-parse", "--short", rev)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_database(name: str) -> str:
    """Drop and create ``name`` on the local PostgreSQL; its SQLAlchemy URL."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def plain_url(sa_url: str) -> str:
    return sa_url.replace("postgresql+psycopg://", "postgresql://", 1)


class Service:
    """The service of ``root``: its environment, gunicorn as shipped with one worker, the
    CLI, and the migrations (alembic, from the same tree)."""

    def __init__(self, root: str, db_url: str, pdns_url: str, pdns_key: str, pool: str, log_path: str, **extra):
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {
            **{k: v for k, v in os.environ.items()
               if not k.startswith(("PDM_", "DYNADOT_", "GUNICORN_")) and k != "PROMETHEUS_MULTIPROC_DIR"},
            "PYTHONPATH": root,
            "PORT": str(self.port),
            "PDM_DATABASE_URL": db_url,
            "PDM_AUTH": "disabled",
            "PDM_RATE_LIMITS": "off",
            "PDM_MAX_OPEN_RESERVATIONS": "0",
            "PDM_RUN_JOBS": "false",
            "PDM_POOL_DNS": f"{pool}=powerdns",
            "PDM_PDNS_BASE_URL": pdns_url,
            "PDM_PDNS_API_KEY": pdns_key,
            "PDM_PDNS_SERVER_ID": "localhost",
            "PDM_TENANT_RECORDS": "@,*,console,api,gitea,harbor",
            "PDM_LB_IP_ALLOWED_RANGES": "198.51.100.0/24",
            "DYNADOT_MANAGED_DOMAINS": pool,
            "DYNADOT_API_KEY": "unused",
            "DYNADOT_API_URL": NOWHERE,
            "GUNICORN_WORKERS": "1",
            **{name: NOWHERE for name in CUSTOMER_REGISTRAR_URLS},
            **extra,
        }
        self.proc: subprocess.Popen | None = None
        self._log = None

    def migrate(self) -> None:
        subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=self.root, env=self.env, check=True,
                       capture_output=True)

    def cli(self, *args, timeout: float = 3600) -> subprocess.CompletedProcess:
        """``pool-domain-manager ARGS`` of this tree; stdout and stderr captured."""
        return subprocess.run([sys.executable, "-c", "import sys; from pdm_app.cli import main; main(sys.argv[1:])",
                               *args], cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout)

    def start(self) -> "Service":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                                     cwd=self.root, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200 and self.worker():
                    return self
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}; see {self.log_path}")
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not come up; see {self.log_path}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)
        if self._log is not None:
            self._log.close()
            self._log = None

    def worker(self) -> int | None:
        """The one worker: the gunicorn master's child."""
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if self.proc is not None and ppid == self.proc.pid:
                return int(entry)
        return None


def stop_group(proc: subprocess.Popen) -> None:
    """Stop a process started in its own group (gunicorn and its workers): SIGTERM, and
    SIGKILL if it is still there after 30 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def cpu_ms(pid: int) -> float:
    """utime + stime of ``pid`` so far, in ms."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = round(int(line.split()[1]) / 1024, 1)
    return {"rss": out.get("VmRSS"), "hwm": out.get("VmHWM")}


def reset_peak(pid: int) -> bool:
    """Start VmHWM afresh from the current RSS (Linux 4.0+: write 5 to clear_refs)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
