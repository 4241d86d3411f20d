"""A throwaway PowerDNS Authoritative server (gsqlite3, DNSSEC on) on loopback, for the
tests and for ``./dev run --powerdns``.

Everything lives in one folder: ``pdns.conf``, the database ``pdns.sqlite3`` and the
server's output ``pdns.log``. The database is kept across ``stop()``/``start()`` (and
across runs on the same folder), so a restarted server still has its zones and keys.

    with LocalPowerDns(tmp_dir) as pdns:
        requests.get(pdns.api_url + "/api/v1/servers/localhost",
                     headers={"X-API-Key": pdns.api_key})

or ``python -m pdm_app.testing.local_powerdns --dir D [--api-port N] [--dns-port N]
[--api-key K]`` in the foreground until SIGINT/SIGTERM.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import secrets
import shutil
import signal
import socket
import sqlite3
# pdns_server, a fixed local binary with arguments of our own, started without a shell.
import subprocess  # nosec B404
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import requests

SCHEMA = Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql")
FALLBACK_DIRS = ("/usr/sbin", "/usr/local/sbin")
INSTALL_HINT = "apt-get install pdns-server pdns-backend-sqlite3"
READY_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
HOST = "127.0.0.1"


def find_pdns_server() -> str | None:
    found = shutil.which("pdns_server")
    if found:
        return found
    for folder in FALLBACK_DIRS:
        candidate = os.path.join(folder, "pdns_server")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _port_free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((HOST, port))
            except OSError:
                return False
    return True


def free_port() -> int:
    """A port free on loopback for TCP and UDP both (DNS needs the two)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if _port_free(port):
            return port
    raise RuntimeError("no free port on 127.0.0.1 for both TCP and UDP")


def _die_with_parent() -> Callable[[], None] | None:
    """Linux: the server gets SIGTERM when the process that started it dies, so a crashed
    test run or a killed ``./dev run`` leaves no pdns_server behind."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    PR_SET_PDEATHSIG = 1

    def child() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return child


class LocalPowerDns:
    """One pdns_server child process serving ``directory``'s database."""

    def __init__(self, directory: str | os.PathLike, api_port: int = 0, dns_port: int = 0,
                 api_key: str | None = None):
        self.directory = Path(directory).resolve()
        # Chosen once: a restart listens where the clients already point.
        self.api_port = api_port or free_port()
        self._dns_port = dns_port or free_port()
        self._api_key = api_key or secrets.token_urlsafe(24)
        self.binary = find_pdns_server()
        self.proc: subprocess.Popen | None = None
        self._log = None

    # -- what a client needs ---------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    @property
    def server_url(self) -> str:
        """The API's base for this server (``…/api/v1/servers/localhost``)."""
        return f"{self.api_url}/api/v1/servers/localhost"

    @property
    def api_key(self) -> str:
        return self._api_key

    @property
    def dns_host(self) -> str:
        return HOST

    @property
    def dns_port(self) -> int:
        return self._dns_port

    @property
    def dns_server(self) -> tuple[str, int]:
        return (HOST, self._dns_port)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def database(self) -> Path:
        return self.directory / "pdns.sqlite3"

    @property
    def log_path(self) -> Path:
        return self.directory / "pdns.log"

    @staticmethod
    def available() -> tuple[bool, str]:
        """(True, "") when pdns_server and the gsqlite3 schema are installed, else (False,
        what is missing and how to install it)."""
        missing = []
        if find_pdns_server() is None:
            missing.append("pdns_server (package pdns-server)")
        if not SCHEMA.is_file():
            missing.append(f"{SCHEMA} (package pdns-backend-sqlite3)")
        if missing:
            return False, f"PowerDNS is not installed: no {' and no '.join(missing)}; {INSTALL_HINT}"
        return True, ""

    # -- life cycle ------------------------------------------------------------------

    def _prepare(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.database.exists():
            schema = SCHEMA.read_text()
            db = sqlite3.connect(self.database)
            try:
                db.executescript(schema)
                db.commit()
            finally:
                db.close()
        settings = {
            "launch": "gsqlite3",
            "gsqlite3-database": str(self.database),
            "gsqlite3-dnssec": "yes",  # without it every cryptokeys call is 422
            "local-address": HOST,
            "local-port": self._dns_port,
            "webserver": "yes",
            "webserver-address": HOST,
            "webserver-port": self.api_port,
            "webserver-allow-from": HOST,
            "api": "yes",
            "api-key": self._api_key,
            "security-poll-suffix": "",  # no network
            # Caches off: a test reads over DNS what it has just written.
            "cache-ttl": 0,
            "query-cache-ttl": 0,
            "negquery-cache-ttl": 0,
        }
        conf = self.directory / "pdns.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the key
        with os.fdopen(fd, "w") as f:
            f.write("".join(f"{name}={value}\n" for name, value in settings.items()))

    def start(self) -> "LocalPowerDns":
        """Launch (again, on the same ports and database) and wait until the API answers."""
        if self.running:
            return self
        ok, why = self.available()
        if not ok:
            raise RuntimeError(why)
        self._prepare()
        self._close_log()
        self._log = open(self.log_path, "ab")
        self._log.write(f"--- starting pdns_server at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self._log.flush()
        command = [self.binary, f"--config-dir={self.directory}", f"--socket-dir={self.directory}",
                   "--daemon=no", "--guardian=no", "--disable-syslog", "--write-pid=no"]
        self.proc = subprocess.Popen(  # nosec B603
            command, cwd=self.directory, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent())
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pdns_server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                answer = requests.get(self.server_url, headers={"X-API-Key": self._api_key}, timeout=1)
                if answer.status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"pdns_server did not answer on {self.api_url} within "
                                   f"{READY_TIMEOUT:.0f} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after 10 s). The database stays."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL: gone at once, mid-request if need be."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> "LocalPowerDns":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LocalPowerDns {self.directory} api={self.api_url} dns={HOST}:{self._dns_port} {state}>"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pdm_app.testing.local_powerdns",
                                     description="Run a local PowerDNS (gsqlite3, DNSSEC) until SIGINT/SIGTERM.")
    parser.add_argument("--dir", required=True, help="folder for pdns.conf, pdns.sqlite3 and pdns.log")
    parser.add_argument("--api-port", type=int, default=0, help="HTTP API port (0: a free one)")
    parser.add_argument("--dns-port", type=int, default=0, help="DNS port, UDP and TCP (0: a free one)")
    parser.add_argument("--api-key", default=None,
                        help="the API key (default: PDM_PDNS_API_KEY, else a new one for this run)")
    args = parser.parse_args(argv)

    ok, why = LocalPowerDns.available()
    if not ok:
        print(f"local PowerDNS: {why}", file=sys.stderr)
        return 1
    done = threading.Event()
    # Explicit handlers: a shell may start background jobs with SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    server = LocalPowerDns(args.dir, api_port=args.api_port, dns_port=args.dns_port,
                           api_key=args.api_key or os.environ.get("PDM_PDNS_API_KEY") or None)
    try:
        server.start()
    except RuntimeError as exc:
        print(f"local PowerDNS did not start: {exc}", file=sys.stderr)
        return 1
    print(f"local PowerDNS: API on {server.api_url} (server id localhost), DNS on "
          f"{server.dns_host}:{server.dns_port}, data in {server.directory}; Ctrl-C to stop", flush=True)
    try:
        while not done.wait(0.5):
            if not server.running:
                print(f"local PowerDNS exited with {server.proc.returncode}:\n{server.log_tail()}",
                      file=sys.stderr)
                return 1
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
