"""The installed console script as a subprocess: clean JSON on stdout, logs on stderr."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import API_KEY, POOL, POOLS, truncate
from unit.test_cli import PROG

SCRIPT = os.path.join(os.path.dirname(sys.executable), PROG)


# -- the installed console script ---------------------------------------------------------


def script_env(sqlite_url, fake, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PDM_", "DYNADOT_"))}
    env.update(PDM_DATABASE_URL=sqlite_url, DYNADOT_API_KEY=API_KEY, DYNADOT_API_URL=fake.url, PDM_AUTH="disabled",
               DYNADOT_MANAGED_DOMAINS=" ".join(POOLS), PDM_RUN_JOBS="false", DYNADOT_MIN_INTERVAL="0s",
               PDM_LOG_LEVEL="info")
    env.update(extra)
    return env


def test_console_script(sqlite_url, fake, tmp_path):
    assert os.path.exists(SCRIPT), f"{SCRIPT} missing: run `.venv/bin/pip install -e .`"
    truncate(sqlite_url)
    env = script_env(sqlite_url, fake)

    done = subprocess.run([SCRIPT, "--help"], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith(f"Usage: {PROG} [OPTIONS] COMMAND")

    done = subprocess.run([SCRIPT, "pools", "--json"], env=env, capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    pools = json.loads(done.stdout)  # stdout is the answer alone
    assert [p["poolDomain"] for p in pools] == sorted(POOLS)
    assert all(p["active"] == 0 and p["pendingDnsCount"] == 0 for p in pools)
    # the service's log lines went to stderr, as JSON, without the key
    logged = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert any(entry["level"] == "warning" and "PDM_AUTH=disabled" in entry["message"] for entry in logged)
    assert API_KEY not in done.stderr

    done = subprocess.run([SCRIPT, "check", POOL, "acme"], env=env, capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == f"acme.{POOL} is available\n"

    done = subprocess.run([SCRIPT, "pools"], env=script_env(sqlite_url, fake, DYNADOT_API_KEY=""),
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"{PROG}: configuration error: DYNADOT_API_KEY")
