"""A bad setting stops the service's start-up (``import wsgi`` in a process of its own) with
one line and no traceback."""
from __future__ import annotations

import os
import subprocess
import sys

from unit.test_config import KEY


def test_bad_value_stops_start_up_with_one_line(tmp_path):
    env = {**os.environ, **KEY, "PDM_RESERVATION_TTL": "forever",
           "PDM_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=root, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "PDM_RESERVATION_TTL" in lines[0] and "Traceback" not in result.stderr
