"""One leader across processes that hands over when it dies (the holder is killed)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

from conftest import ROOT
from pdm_app.locks import DatabaseLock


HOLDER = """
import sys, time
from pdm_app.db import make_engine
from pdm_app.locks import DatabaseLock
lock = DatabaseLock(make_engine(sys.argv[1]), "pdm-jobs")
assert lock.acquire(timeout=5)
print("held", flush=True)
time.sleep(120)
"""


def test_leader_killed_hands_over(db_url):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, db_url], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        from pdm_app.db import make_engine

        engine = make_engine(db_url)
        lock = DatabaseLock(engine, "pdm-jobs")
        assert not lock.acquire(timeout=0.3)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        assert lock.acquire(timeout=10)
        lock.release()
        engine.dispose()
    finally:
        if holder.poll() is None:
            holder.kill()
