"""Background jobs: the sweeper, one leader among apps, and the scheduler running them.
The leader killed in another process: tests/e2e/test_jobs.py."""
from __future__ import annotations

import time

from conftest import POOL, make_settings
from pdm_app import create_app


def test_sweeper_deletes_only_lapsed_reservations(app, client):
    service = app.extensions["pdm"].lifecycle
    service.reservation_ttl = 0
    client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "gone"})
    service.reservation_ttl = 600
    client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "kept"})
    token = client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "live"}).get_json()["reservationToken"]
    client.post(f"/api/v1/pool/{POOL}/commit", json={"subdomain": "live", "reservationToken": token,
                                                      "loadBalancerIP": "198.51.100.7"})
    assert service.sweep() == 1
    assert [a.subdomain for a in app.extensions["pdm"].operators.list_pool(POOL).allocations] == ["kept", "live"]
    assert service.sweep() == 0


def test_one_leader_among_apps(db_url, fake):
    apps = [create_app(make_settings(db_url, fake)) for _ in range(3)]
    runners = [a.extensions["pdm"].jobs for a in apps]
    leaders = [r.is_leader() for r in runners]
    assert leaders.count(True) == 1
    # the others' ticks do nothing
    followers = [r for r, lead in zip(runners, leaders) if not lead]
    assert all(r.sweep() == 0 for r in followers)
    # the leader goes away: exactly one follower takes over
    runners[leaders.index(True)].stop()
    assert [r.is_leader() for r in followers].count(True) == 1
    for a in apps:
        a.extensions["pdm"].jobs.stop()
        a.extensions["pdm"].engine.dispose()


def test_scheduler_runs_the_jobs(db_url, fake):
    from dataclasses import replace

    settings = replace(make_settings(db_url, fake), sweeper_interval=0.2, dns_retry_interval=0.2, run_jobs=True)
    app = create_app(settings)
    service = app.extensions["pdm"].lifecycle
    service.reservation_ttl = 0
    app.test_client().post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "gone"})
    app.extensions["pdm"].jobs.start()
    try:
        deadline = time.monotonic() + 10
        while app.extensions["pdm"].operators.list_pool(POOL).allocations and time.monotonic() < deadline:
            time.sleep(0.1)
        assert app.extensions["pdm"].operators.list_pool(POOL).allocations == []
    finally:
        app.extensions["pdm"].jobs.stop()
        app.extensions["pdm"].engine.dispose()
