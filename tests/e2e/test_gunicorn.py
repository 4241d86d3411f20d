"""What gunicorn itself says, with the real gunicorn.conf.py: its refusals of requests it
cannot parse are the contract's JSON error body, and its log lines are JSON; and how its
workers share the connections."""
from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest
import requests

from conftest import Gunicorn, truncate

pytestmark = pytest.mark.slow


def server_for(db_url, fake, log_path, **env) -> Gunicorn:
    """One worker, its output kept: what gunicorn itself writes is what is checked."""
    return Gunicorn(db_url, fake, log_path, GUNICORN_WORKERS="1", GUNICORN_THREADS="2", **env)


def raw(server: Gunicorn, data: bytes) -> bytes:
    """Send bytes as they are; the whole answer (gunicorn closes the connection)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(data)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


@pytest.fixture
def server(sqlite_url, fake, tmp_path):
    truncate(sqlite_url)
    with server_for(sqlite_url, fake, tmp_path / "gunicorn.log") as running:
        yield running


def assert_json_error(response, statuses, code):
    assert response.status_code in statuses, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"] == code
    assert isinstance(body["detail"], str) and body["detail"] and "<" not in body["detail"]


def test_request_refused_by_gunicorn_gets_the_json_error_body(server):
    # a 10 KB header: over limit_request_field_size (8190)
    response = requests.get(server.url + "/healthz", headers={"X-Padding": "a" * 10240}, timeout=10)
    assert_json_error(response, (431, 400), "headers-too-large")
    # a request line over limit_request_line (4094)
    response = requests.get(server.url + "/api/v1/reserved", params={"q": "a" * 5000}, timeout=10)
    assert_json_error(response, (414,), "request-line-too-long")
    # more headers than limit_request_fields (100)
    response = requests.get(server.url + "/healthz", headers={f"X-H{i}": "1" for i in range(120)}, timeout=10)
    assert_json_error(response, (431, 400), "headers-too-large")
    # not HTTP at all
    answer = raw(server, b"HELLO THERE\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"Content-Type: application/json" in head
    assert json.loads(body)["error"] == "bad-request"
    # the worker is fine afterwards
    assert requests.get(server.url + "/healthz", timeout=10).status_code == 200


def test_every_line_gunicorn_writes_is_json(sqlite_url, fake, tmp_path):
    truncate(sqlite_url)
    with server_for(sqlite_url, fake, tmp_path / "gunicorn.log") as server:
        requests.get(server.url + "/healthz", headers={"X-Padding": "a" * 10240}, timeout=10)
        requests.get(server.url + "/api/v1/reserved", timeout=10)
    lines = [line for line in server.output().splitlines() if line.strip()]
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}\n--- the whole output:\n" + "\n".join(lines))
    assert all(isinstance(e, dict) and {"ts", "level", "logger", "message"} <= set(e) for e in entries)
    own = [e["message"] for e in entries if e["logger"] == "gunicorn.error"]
    # the arbiter's and the worker's lines, start to shutdown, and a refused request
    for expected in ("Starting gunicorn", "Listening at", "Booting worker", "Invalid request from ip=127.0.0.1",
                     "Handling signal: term", "Shutting down"):
        assert any(m.startswith(expected) for m in own), (expected, own)
    # the service's own lines are there too, once each
    ready = [e for e in entries if e["message"].startswith("pool-domain-manager ready")]
    assert len(ready) == 1
    requests_logged = [e for e in entries if e["logger"] == "pdm_app.access" and e.get("path") == "/api/v1/reserved"]
    assert len(requests_logged) == 1


def test_gunicorn_log_level_follows_pdm_log_level(sqlite_url, fake, tmp_path):
    truncate(sqlite_url)
    with server_for(sqlite_url, fake, tmp_path / "gunicorn.log", PDM_LOG_LEVEL="warn") as server:
        requests.get(server.url + "/healthz", headers={"X-Padding": "a" * 10240}, timeout=10)
    entries = [json.loads(line) for line in server.output().splitlines() if line.strip()]
    own = [e for e in entries if e["logger"] == "gunicorn.error"]
    assert own and all(e["level"] in ("warning", "error", "critical") for e in own)
    assert any(e["message"].startswith("Invalid request from") for e in own)


# -- connections over the workers ----------------------------------------------------------


def workers_of(server: Gunicorn) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == server.proc.pid:
            pids.append(int(stat.parent.name))
    return sorted(pids)


def held_by(pid: int, server: Gunicorn) -> int:
    """The established connections to the server that worker ``pid`` holds."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[3] == "01" and int(parts[1].rsplit(":", 1)[1], 16) == server.port:
            inodes.add(parts[9])
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        held += link.startswith("socket:[") and link[8:-1] in inodes
    return held


def kept_alive(server: Gunicorn) -> socket.socket:
    """A connection that has had one answer and stays open (HTTP/1.1 keep-alive)."""
    conn = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: pdm\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += conn.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += conn.recv(65536)
    assert head.startswith(b"HTTP/1.1 200 ")
    return conn


@pytest.fixture
def two_workers(sqlite_url, fake, tmp_path):
    truncate(sqlite_url)
    with Gunicorn(sqlite_url, fake, tmp_path / "gunicorn.log", GUNICORN_WORKERS="2", GUNICORN_THREADS="2",
                  PDM_RUN_JOBS="false") as server:
        yield server


def both_serving(server: Gunicorn, second: int) -> None:
    """Until the second worker has taken a connection: gunicorn answers once one worker is
    up, and the other may still be loading the app."""
    for _ in range(100):
        with kept_alive(server):
            if held_by(second, server):
                return
        time.sleep(0.1)
    pytest.fail("the second worker took no connection")


def test_new_connections_go_to_the_worker_holding_fewer(two_workers):
    first, second = workers_of(two_workers)
    both_serving(two_workers, second)
    held = []
    try:
        # While the second worker is stopped, the first takes every connection.
        os.kill(second, signal.SIGSTOP)
        try:
            held += [kept_alive(two_workers) for _ in range(6)]
        finally:
            os.kill(second, signal.SIGCONT)
        assert (held_by(first, two_workers), held_by(second, two_workers)) == (6, 0)
        # Then the second, holding fewer, takes the next ones: the first leaves each to it
        # (and takes one itself only if the second has not within ACCEPT_WAIT, which a
        # loaded machine may make happen once).
        held += [kept_alive(two_workers) for _ in range(6)]
        assert held_by(first, two_workers) <= 7 and held_by(second, two_workers) >= 5
    finally:
        for conn in held:
            conn.close()


def test_a_new_caller_is_answered_while_every_thread_holds_a_kept_alive_connection(two_workers):
    # 2 workers x 2 threads: 24 held connections are 6 per thread; a probe is still answered.
    held = [kept_alive(two_workers) for _ in range(24)]
    try:
        assert requests.get(two_workers.url + "/healthz", timeout=10).status_code == 200
    finally:
        for conn in held:
            conn.close()
