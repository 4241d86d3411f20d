"""`./dev run` as a newcomer meets it: started as a process (its own process group, its
own ports, its local state in a temporary PDM_LOCAL_DIR), the `curl` lines it prints
pasted into bash as they are, stopped with Ctrl-C (SIGINT to the group) and started
again -- the fake registrar's zone and the database still agree -- and `--fresh`; with
`--powerdns`, the printed `dig` line shows the tenant's signed records.

Every wait polls for an event (a port answering, the process group gone) under one
deadline per test; nothing asserts how long something took."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import requests

from conftest import free_port
from pdm_app.testing.local_powerdns import LocalPowerDns
from pdm_app.testing.local_powerdns import free_port as free_dns_port

ROOT = Path(__file__).resolve().parents[2]
POOL = "omani.works"
HOSTS = ("*", "console", "gitea", "harbor", "admin", "api")
LB = "198.51.100.7"  # the address the printed commit line publishes
DEADLINE = 300.0  # seconds for a whole test: a safety net on a loaded machine, not a bound measured

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("curl") is None, reason="the printed lines need curl")]


class Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def wait_for(self, what: str, predicate, interval: float = 0.2):
        """Poll ``predicate`` until it returns something truthy; fail at the deadline."""
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > self.end:
                raise AssertionError(f"gave up waiting for {what}")
            time.sleep(interval)


def http(url: str, token: str | None = None, method: str = "GET", body: dict | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode())
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def answers(url: str) -> bool:
    try:
        return http(url)[0] == 200
    except OSError:
        return False


def group_alive(pgid: int) -> bool:
    """Any process of the group that is not a zombie (PID 1 of a container may never
    reap the orphans)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the LISTEN sockets on ``port`` (IPv4 and IPv6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                if len(address) == 8:
                    found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
                else:
                    raw = b"".join(bytes.fromhex(address[i:i + 8])[::-1] for i in range(0, 32, 8))
                    found.add(socket.inet_ntop(socket.AF_INET6, raw))
    return found


class DevRun:
    """One `./dev run [args]`: output to a file, its own process group."""

    def __init__(self, env: dict[str, str], log: Path, deadline: Deadline, *args: str):
        self.env, self.log, self.deadline, self.args = env, log, deadline, args
        self.port, self.fake_port = int(env["PORT"]), int(env["PDM_FAKE_DYNADOT_PORT"])
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def fake_url(self) -> str:
        return f"http://127.0.0.1:{self.fake_port}/api3.json"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def start(self) -> "DevRun":
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([str(ROOT / "dev"), "run", *self.args], cwd=ROOT, env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        return self

    def _still_running(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"./dev run exited with {self.proc.returncode}:\n{self.output()[-4000:]}")

    def wait_fake(self) -> None:
        self.deadline.wait_for("the fake registrar", lambda: self._still_running() or answers(
            f"{self.fake_url}?key=dev-key&command=get_dns&domain={POOL}"))

    def wait_ready(self) -> None:
        self.deadline.wait_for("the service", lambda: self._still_running() or answers(f"{self.base}/healthz"))

    def stop(self) -> None:
        """Ctrl-C: SIGINT to the whole group, then wait until every process of it is gone."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        try:
            os.killpg(pgid, signal.SIGINT)
            self.deadline.wait_for("./dev run to stop", lambda: self.proc.poll() is not None and not group_alive(pgid))
        finally:
            if group_alive(pgid):
                os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(30)
            self.proc = None

    def try_block(self) -> list[str]:
        """The lines printed under "Try", as they would be pasted."""
        text = self.output()
        start = text.index("Try (paste these lines into a shell):")
        end = text.index("Ctrl-C stops it.", start)
        return [line.strip() for line in text[start:end].splitlines()[1:] if line.strip()]

    def fake_a_records(self) -> dict[str, str]:
        status, body = http(f"{self.fake_url}?key=dev-key&command=get_dns&domain={POOL}")
        assert status == 200, body
        settings = json.loads(body)["GetDnsResponse"]["GetDns"]["NameServerSettings"]
        return {r["Subhost"]: r["Value"] for r in settings["SubDomains"] if r["RecordType"] == "A"}


def paste(lines: list[str], deadline: Deadline) -> list[tuple[str, str, int | None]]:
    """Run ``lines`` in one bash, as pasted; per line: (line, what it printed, the HTTP
    status of its curl call). Only a reporting wrapper is added: curl also writes the
    status to stderr (``--write-out %{stderr}``), stdout stays what the user sees."""
    script = ['curl() { command curl --write-out "%{stderr}@@status %{http_code}\\n" "$@"; }']
    for i, line in enumerate(lines):
        script += [f"echo '@@line {i}'; echo '@@line {i}' >&2", line, "echo"]
    done = subprocess.run(["bash", "-c", "\n".join(script)], capture_output=True, text=True,
                          timeout=max(10.0, deadline.end - time.monotonic()))
    assert done.returncode == 0, done.stderr
    out = re.split(r"^@@line (\d+)\n", done.stdout, flags=re.M)[1:]
    err = re.split(r"^@@line (\d+)\n", done.stderr, flags=re.M)[1:]
    printed = {int(out[i]): out[i + 1].strip() for i in range(0, len(out), 2)}
    statuses = {int(err[i]): re.findall(r"@@status (\d+)", err[i + 1]) for i in range(0, len(err), 2)}
    return [(line, printed.get(i, ""), int(statuses[i][-1]) if statuses.get(i) else None)
            for i, line in enumerate(lines)]


@pytest.fixture
def dev_env(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith(("PDM_", "DYNADOT_", "GUNICORN_")) or k in ("PORT", "PROMETHEUS_MULTIPROC_DIR"))}
    if "PDM_VENV" in os.environ:
        env["PDM_VENV"] = os.environ["PDM_VENV"]
    env.update(PDM_LOCAL_DIR=str(tmp_path / "local"), PORT=str(free_port()),
               PDM_FAKE_DYNADOT_PORT=str(free_port()), GUNICORN_WORKERS="1", GUNICORN_THREADS="4")
    return env


def test_dev_run_curl_lines_work_and_a_restart_agrees_with_itself(dev_env, tmp_path):
    deadline = Deadline(DEADLINE)
    local = Path(dev_env["PDM_LOCAL_DIR"])
    first = DevRun(dev_env, tmp_path / "run1.log", deadline).start()
    try:
        first.wait_ready()
        text = first.output()
        assert f"listens on http://127.0.0.1:{first.port}" in text
        # Loopback only: --bind on the command line beats gunicorn.conf.py's 0.0.0.0.
        assert listening_addresses(first.port) == {"127.0.0.1"}
        assert listening_addresses(first.fake_port) == {"127.0.0.1"}

        lines = first.try_block()
        exports = [line for line in lines if line.startswith("export PDM_TOKEN=")]
        assert len(exports) == 1, lines
        token = re.match(r"export PDM_TOKEN='([^']+)'", exports[0]).group(1)
        assert text.count(token) == 1  # printed once; every curl line says $PDM_TOKEN
        api_lines = [line for line in lines if "/api/v1/" in line]
        assert api_lines and all('-H "Authorization: Bearer $PDM_TOKEN"' in line for line in api_lines)
        release = [line for line in lines if "/release" in line]
        assert len(release) == 1

        # Everything but the release, as pasted.
        results = paste([line for line in lines if line not in release], deadline)
        by_path = {}
        for line, printed, status in results:
            for name in ("check", "reserve", "commit", "list", "openapi.json", "metrics"):
                if re.search(rf"/{re.escape(name)}\b", line):
                    by_path[name] = (printed, status)
        assert set(by_path) == {"check", "reserve", "commit", "list", "openapi.json", "metrics"}, results
        assert by_path["check"][1] == 200 and json.loads(by_path["check"][0])["available"] is True
        assert by_path["reserve"][1] == 201  # its answer went into RESERVATION_TOKEN
        commit_body, commit_status = by_path["commit"]
        assert commit_status == 200, commit_body
        assert json.loads(commit_body)["state"] == "active"
        listed = json.loads(by_path["list"][0])
        assert by_path["list"][1] == 200
        assert [(a["subdomain"], a["state"], a["dnsPending"]) for a in listed["allocations"]] == [
            ("acme", "active", False)]
        assert by_path["openapi.json"][1] == 200 and by_path["metrics"][1] == 200

        expected = {f"{h}.acme": LB for h in HOSTS}
        assert {k: v for k, v in first.fake_a_records().items() if k.endswith(".acme")} == expected

        # The console's address, printed, and its sign-in with the run's token.
        console = re.search(r"The operators' console: (http://\S+/console/)", text).group(1)
        browser = requests.Session()
        form = browser.get(console + "login", timeout=10)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        signed_in = browser.post(console + "login", data={"token": token, "csrf_token": csrf}, timeout=10)
        assert signed_in.status_code == 200 and signed_in.url == console and "local-operator" in signed_in.text
        assert "acme" in browser.get(console + "pools/omani.works", timeout=10).text
    finally:
        first.stop()

    second = DevRun(dev_env, tmp_path / "run2.log", deadline).start()
    try:
        # The zone as the restarted fake serves it, before the service could repair anything.
        second.wait_fake()
        assert {k: v for k, v in second.fake_a_records().items() if k.endswith(".acme")} == expected
        second.wait_ready()
        token = re.search(r"export PDM_TOKEN='([^']+)'", second.output()).group(1)
        status, body = http(f"{second.base}/api/v1/pool/{POOL}/list", token)
        assert status == 200
        assert [(a["subdomain"], a["state"]) for a in json.loads(body)["allocations"]] == [("acme", "active")]
        status, body = http(f"{second.base}/api/v1/pool/{POOL}/drift", token)
        assert status == 200 and json.loads(body)["clean"] is True, body

        # The release line, pasted in this run (with this run's token).
        lines = second.try_block()
        export = next(line for line in lines if line.startswith("export PDM_TOKEN="))
        release = next(line for line in lines if "/release" in line)
        [_, (_, printed, status)] = paste([export, release], deadline)
        assert status == 200, printed
        assert not any(k.endswith(".acme") for k in second.fake_a_records())
    finally:
        second.stop()
    # The file the fake keeps its zones in (written after every set_dns2) says the same.
    state = json.loads((local / "fake-dynadot.json").read_text())
    hosts = {r["host"] for r in state["domains"][POOL]["records"]}
    assert "www" in hosts and not any(h.endswith(".acme") for h in hosts)


def test_dev_run_fresh_and_reset_start_over(dev_env, tmp_path):
    deadline = Deadline(DEADLINE)
    local = Path(dev_env["PDM_LOCAL_DIR"])
    first = DevRun(dev_env, tmp_path / "run1.log", deadline).start()
    try:
        first.wait_ready()
        token = re.search(r"export PDM_TOKEN='([^']+)'", first.output()).group(1)
        status, body = http(f"{first.base}/api/v1/pool/{POOL}/reserve", token, "POST", {"subdomain": "beta"})
        assert status == 201, body
        status, body = http(f"{first.base}/api/v1/pool/{POOL}/commit", token, "POST", {
            "subdomain": "beta", "reservationToken": json.loads(body)["reservationToken"], "loadBalancerIP": LB})
        assert status == 200, body
        assert "console.beta" in first.fake_a_records()
    finally:
        first.stop()

    fresh = DevRun(dev_env, tmp_path / "run2.log", deadline, "--fresh").start()
    try:
        fresh.wait_ready()
        assert "deleted the local database and the fake registrar's zones" in fresh.output()
        assert not any(k.endswith(".beta") for k in fresh.fake_a_records())
        token = re.search(r"export PDM_TOKEN='([^']+)'", fresh.output()).group(1)
        status, body = http(f"{fresh.base}/api/v1/pool/{POOL}/list", token)
        assert status == 200 and json.loads(body)["allocations"] == []
    finally:
        fresh.stop()

    # `./dev reset` deletes what `dev run` keeps there, and nothing else.
    (local / "notes.txt").write_text("mine")
    done = subprocess.run([str(ROOT / "dev"), "reset"], cwd=ROOT, env=dev_env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in local.iterdir()) == ["notes.txt"]


def pdns_servers_of(pdns_dir: Path) -> list[int]:
    """The pids of the live pdns_server processes serving ``pdns_dir`` (that run's, no other)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
            state = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if (argv and os.path.basename(argv[0]) == b"pdns_server" and state != "Z"
                and f"--config-dir={pdns_dir}".encode() in argv):
            found.append(int(cmdline.parent.name))
    return found


def port_refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


@pytest.mark.powerdns
def test_dev_run_with_powerdns_publishes_a_signed_tenant(dev_env, tmp_path):
    ok, why = LocalPowerDns.available()
    if not ok:
        if os.environ.get("PDM_REQUIRE_POWERDNS") == "1":
            pytest.fail(f"PowerDNS is required (PDM_REQUIRE_POWERDNS=1): {why}")
        pytest.skip(why)
    if shutil.which("dig") is None:
        pytest.skip("the printed dig line needs dig (apt-get install dnsutils)")
    deadline = Deadline(DEADLINE)
    api_port, dns_port = free_port(), free_dns_port()  # the DNS port free for UDP too
    dev_env.update(PDM_LOCAL_PDNS_API_PORT=str(api_port), PDM_LOCAL_PDNS_DNS_PORT=str(dns_port))
    pdns_dir = Path(dev_env["PDM_LOCAL_DIR"]).resolve() / "pdns"
    run = DevRun(dev_env, tmp_path / "run.log", deadline, "--powerdns").start()
    pdns_pgids: set[int] = set()
    try:
        try:
            run.wait_ready()
            assert (f"local PowerDNS: API on http://127.0.0.1:{api_port} (key in {pdns_dir}/api-key), "
                    f"DNS on 127.0.0.1:{dns_port}") in run.output()
            # This run's pdns_server: in a session of its own, so not in ./dev's group.
            [pdns_pid] = deadline.wait_for("this run's pdns_server", lambda: pdns_servers_of(pdns_dir))
            pdns_pgids.add(os.getpgid(pdns_pid))
            assert listening_addresses(api_port) == {"127.0.0.1"}
            assert listening_addresses(dns_port) == {"127.0.0.1"}
            status, body = http(f"http://127.0.0.1:{api_port}/api/v1/servers/localhost")
            assert status == 401, body  # PowerDNS's API, which wants its key

            # The lines as printed, up to the list (the dig line among them), pasted in order.
            lines = run.try_block()
            last = next(i for i, line in enumerate(lines) if re.search(r"/list\b", line))
            digs = [line for line in lines if line.startswith("dig ")]
            assert digs == [f"dig @127.0.0.1 -p {dns_port} +dnssec console.acme.{POOL} A"], lines
            results = paste(lines[:last + 1], deadline)
            by_path = {}
            for line, printed, status in results:
                for name in ("check", "reserve", "commit", "list"):
                    if re.search(rf"/{re.escape(name)}\b", line):
                        by_path[name] = (printed, status)
                if line in digs:
                    by_path["dig"] = (printed, status)
            assert set(by_path) == {"check", "reserve", "commit", "dig", "list"}, results
            assert by_path["check"][1] == 200 and json.loads(by_path["check"][0])["available"] is True
            assert by_path["reserve"][1] == 201  # its answer went into RESERVATION_TOKEN
            commit_body, commit_status = by_path["commit"]
            assert commit_status == 200, commit_body
            assert json.loads(commit_body)["state"] == "active"
            assert by_path["list"][1] == 200
            assert [(a["subdomain"], a["state"], a["dnsPending"])
                    for a in json.loads(by_path["list"][0])["allocations"]] == [("acme", "active", False)]

            # The tenant's own signed zone answers over DNS: the A record and its signature.
            dug = by_path["dig"][0]
            assert "status: NOERROR" in dug and ";; ANSWER SECTION:" in dug, dug
            answer = dug.split(";; ANSWER SECTION:", 1)[1].split("\n\n", 1)[0]
            records = [line.split() for line in answer.splitlines() if line.strip()]
            assert records and all(r[0] == f"console.acme.{POOL}." and r[2] == "IN" for r in records), dug
            assert [r[4] for r in records if r[3] == "A"] == [LB], dug
            # RRSIG: type covered, algorithm (13, ECDSA P-256), ..., signer (the tenant's zone).
            rrsigs = [r for r in records if r[3] == "RRSIG"]
            assert [(r[4], r[5], r[11]) for r in rrsigs] == [("A", "13", f"acme.{POOL}.")], dug
        finally:
            run.stop()
        # Ctrl-C took the local PowerDNS down with the rest: no pdns_server of this run is
        # left, nor anything in its process group, and nothing answers on its API port.
        deadline.wait_for("this run's pdns_server to exit", lambda: not pdns_servers_of(pdns_dir) and not any(
            group_alive(pgid) for pgid in pdns_pgids))
        assert port_refuses(api_port)
    finally:
        # Whatever failed above, leave no pdns_server of this run behind.
        for pid in pdns_servers_of(pdns_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pgid in pdns_pgids:
            if group_alive(pgid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
