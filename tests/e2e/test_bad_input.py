"""Bad input that only gunicorn sees: a chunked body over the limit is refused before
anything runs, and a TTL past ten years stops start-up with one line."""
from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import create_engine, text

from conftest import API_KEY, ROOT, Gunicorn
from integration.test_bad_input import API


# -- a real gunicorn ---------------------------------------------------------------------------------


def _chunked_post(url: str, path: str, chunks: list[bytes]) -> tuple[int, dict]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        # An iterable body and no Content-Length: http.client sends it chunked.
        conn.request("POST", path, body=iter(chunks), headers={"Content-Type": "application/json"},
                     encode_chunked=True)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


@pytest.mark.slow
def test_gunicorn_refuses_a_chunked_body_over_the_limit_and_executes_nothing(db_url, fake):
    server = Gunicorn(db_url, fake).start()
    try:
        body = json.dumps({"subdomain": "chunky"}).encode()
        status, answer = _chunked_post(server.url, f"{API}/reserve", [body, b" " * 8500, b" " * 8500])
        assert (status, answer["error"]) == (413, "too-large")
        engine = create_engine(db_url)
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM pool_allocations")).scalar() == 0
        finally:
            engine.dispose()
        # A chunked body within the limit is read whole and served.
        status, answer = _chunked_post(server.url, f"{API}/reserve", [body[:5], body[5:], b" " * 100])
        assert status == 201 and answer["subdomain"] == "chunky"
    finally:
        server.stop()


@pytest.mark.slow
def test_gunicorn_stops_with_one_line_on_a_ttl_past_ten_years(tmp_path):
    env = {**os.environ, "PORT": "8080", "DYNADOT_API_KEY": API_KEY, "PDM_AUTH": "disabled",
           "PDM_RESERVATION_TTL": "100000000h", "PDM_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    result = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "PDM_RESERVATION_TTL" in result.stderr and "Traceback" not in result.stderr
