"""The service as it runs in production: gunicorn processes, killed without warning."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import requests
from sqlalchemy import create_engine, text

from conftest import API_KEY, BASE_FOREIGN, POOL, ROOT, Gunicorn, foreign_records, free_port, tenant_records

pytestmark = pytest.mark.slow
LB = "198.51.100.7"


def test_gunicorn_serves_the_contract(db_url, fake):
    server = Gunicorn(db_url, fake).start()
    try:
        api = f"{server.url}/api/v1/pool/{POOL}"
        assert requests.get(f"{api}/check", params={"sub": "acme"}).json() == {"available": True, "fqdn": f"acme.{POOL}"}
        r = requests.post(f"{api}/reserve", json={"subdomain": "acme"})
        assert r.status_code == 201
        token = r.json()["reservationToken"]
        assert requests.post(f"{api}/reserve", json={"subdomain": "acme"}).json()["error"] == "conflict"
        r = requests.post(f"{api}/commit", json={"subdomain": "acme", "reservationToken": token,
                                                 "sovereignFQDN": "acme.example", "loadBalancerIP": LB})
        assert r.status_code == 200 and r.json()["state"] == "active"
        assert len(tenant_records(fake.zone(POOL), "acme")) == 6
        listing = requests.get(f"{api}/list").json()
        assert [a["subdomain"] for a in listing["allocations"]] == ["acme"]
        r = requests.post(f"{api}/reserve", data="{oops", headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"] == "invalid-json"
        r = requests.delete(f"{api}/release", params={"sub": "acme"})
        assert r.status_code == 200 and r.json()["freed"]["subdomain"] == "acme"
        assert tenant_records(fake.zone(POOL), "acme") == {}
        assert foreign_records(fake.zone(POOL), []) == BASE_FOREIGN

        # /metrics adds up every worker's samples (prometheus_client multiprocess mode)
        for _ in range(30):
            requests.get(f"{api}/check", params={"sub": "x"})
        text = requests.get(f"{server.url}/metrics").text
        checks = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                     if line.startswith('pdm_http_requests_total{endpoint="/api/v1/pool/<domain>/check"'))
        assert checks == 31
        leaders = [line for line in text.splitlines() if line.startswith("pdm_job_leader{")]
        assert sum(float(line.rsplit(" ", 1)[1]) for line in leaders) == 1  # one leader of two workers
    finally:
        server.stop()


def test_killed_between_row_commit_and_registrar_then_restart_publishes(db_url, fake):
    """SIGKILL the whole server while a commit's registrar call hangs (the row is
    committed, nothing is written): after a restart, the records are published."""
    fake.hang_seconds = 60
    server = Gunicorn(db_url, fake, PDM_DNS_REQUEST_BUDGET="30s").start()
    api = f"{server.url}/api/v1/pool/{POOL}"
    token = requests.post(f"{api}/reserve", json={"subdomain": "acme"}).json()["reservationToken"]
    engine = create_engine(db_url)
    # The job leader reads every pool's zone once it starts; then the commit's own read hangs.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(text("SELECT synced_at FROM pool_zones WHERE pool_domain = :p"), {"p": POOL}).scalar():
                break
        time.sleep(0.05)
    fake.inject("timeout", times=1, command="get_dns")
    fake.reset_calls()

    def hanging_commit():
        try:
            requests.post(f"{api}/commit", json={"subdomain": "acme", "reservationToken": token,
                                                 "loadBalancerIP": LB}, timeout=60)
        except requests.RequestException:
            pass  # the server dies under it

    t = threading.Thread(target=hanging_commit, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                state = conn.execute(text("SELECT state FROM pool_allocations WHERE subdomain = 'acme'")).scalar()
                work = conn.execute(text("SELECT count(*) FROM dns_work")).scalar()
            if state == "active" and work == 1 and any(c == "get_dns" for c, _ in fake.calls):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the commit never reached the registrar")
        server.kill()
        assert tenant_records(fake.zone(POOL), "acme") == {}
        fake.clear_faults()

        restarted = Gunicorn(db_url, fake).start()
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(tenant_records(fake.zone(POOL), "acme")) < 6:
                time.sleep(0.2)
            assert len(tenant_records(fake.zone(POOL), "acme")) == 6
            assert foreign_records(fake.zone(POOL), ["acme"]) == BASE_FOREIGN
            listing = requests.get(f"{restarted.url}/api/v1/pool/{POOL}/list").json()
            deadline = time.monotonic() + 10
            while listing["pendingDns"] and time.monotonic() < deadline:
                time.sleep(0.2)
                listing = requests.get(f"{restarted.url}/api/v1/pool/{POOL}/list").json()
            assert listing["pendingDns"] == []
        finally:
            restarted.stop()
    finally:
        engine.dispose()
        server.stop()


def test_bad_configuration_stops_gunicorn_with_one_line(tmp_path, fake):
    env = {**os.environ, "PORT": str(free_port()), "DYNADOT_API_KEY": API_KEY, "PDM_SWEEPER_INTERVAL": "often",
           "PDM_AUTH": "disabled",
           "PDM_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    result = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "PDM_SWEEPER_INTERVAL" in result.stderr and "Traceback" not in result.stderr


def test_two_servers_never_overlap_registrar_calls(db_url, fake):
    """Two gunicorn servers (two workers each) on one database: their commits and
    releases race, the registrar never sees two calls at once, and the zone ends exactly
    as the table says."""
    fake.latency = 0.05  # widen the window in which calls could overlap
    servers = [Gunicorn(db_url, fake).start(), Gunicorn(db_url, fake).start()]
    try:
        names = [f"t{i}" for i in range(10)]
        tokens = {}
        for i, n in enumerate(names):
            api = f"{servers[i % 2].url}/api/v1/pool/{POOL}"
            tokens[n] = requests.post(f"{api}/reserve", json={"subdomain": n}).json()["reservationToken"]

        def commit(i, n):
            api = f"{servers[i % 2].url}/api/v1/pool/{POOL}"
            return requests.post(f"{api}/commit", json={"subdomain": n, "reservationToken": tokens[n],
                                                        "loadBalancerIP": f"192.0.2.{i + 1}"}, timeout=60).status_code

        def release(i, n):
            api = f"{servers[(i + 1) % 2].url}/api/v1/pool/{POOL}"
            return requests.delete(f"{api}/release", params={"sub": n}, timeout=60).status_code

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(10) as pool:
            assert set(pool.map(lambda a: commit(*a), enumerate(names))) <= {200, 202}
        with ThreadPoolExecutor(10) as pool:
            assert set(pool.map(lambda a: release(*a), list(enumerate(names))[::2])) <= {200, 202}

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not requests.get(f"{servers[0].url}/api/v1/pool/{POOL}/list").json()["pendingDns"]:
                break
            time.sleep(0.2)
        zone = fake.zone(POOL)
        for i, n in enumerate(names):
            expected = {} if i % 2 == 0 else {h: f"192.0.2.{i + 1}" for h in (
                f"*.{n}", f"console.{n}", f"gitea.{n}", f"harbor.{n}", f"admin.{n}", f"api.{n}")}
            assert tenant_records(zone, n) == expected, n
        assert foreign_records(zone, names) == BASE_FOREIGN
        assert fake.max_in_flight == 1
    finally:
        for s in servers:
            s.stop()
