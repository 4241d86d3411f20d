"""Races that really run: threads against PostgreSQL and SQLite, and the fake registrar's
zone checked record by record afterwards. Processes: tests/e2e/test_races.py.

A reservation lapses when the service's clock says so (``Clock``), not when the wall
clock happens to pass a second boundary: the sweeper races commits on a reservation that
lapses in the middle of the race, whatever the machine's load. Where an interleaving
must happen for the test to mean anything, the test makes it happen (``Interleave``:
pause points inside the service's transactions, released on events)."""
from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import text

from conftest import BASE_FOREIGN, POOL, foreign_records, make_settings, tenant_records
from pdm_app import create_app
from pdm_app.domain import utcnow
from pdm_app.unit_of_work import UnitOfWork

LB = "198.51.100.7"


def _reserve_status(app, sub):
    client = app.test_client()
    return client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": sub}).status_code


def test_32_threads_reserve_one_name(app):
    barrier = threading.Barrier(32)

    def one(_):
        barrier.wait()
        return _reserve_status(app, "race")

    with ThreadPoolExecutor(32) as pool:
        statuses = Counter(pool.map(one, range(32)))
    assert statuses == Counter({201: 1, 409: 31})


def _converge(app):
    """Run the retry pass until no DNS work is left."""
    publisher = app.extensions["pdm"].publisher
    for _ in range(5):
        publisher.publish(POOL, [], budget=None)
        listing = app.extensions["pdm"].operators.list_pool(POOL)
        if not listing.pending:
            return listing
    raise AssertionError(f"DNS work still pending: {listing.pending}")


def _assert_zone_matches_table(app, fake):
    listing = _converge(app)
    zone = fake.zone(POOL)
    active = {a.subdomain: a.load_balancer_ip for a in listing.allocations if a.state == "active"}
    subs = {a.subdomain for a in listing.allocations} | set(active)
    everyone = subs | {f"n{i}" for i in range(40)} | {"hot"}
    for sub in everyone:
        expected = {h: active[sub] for h in tenant_records_hosts(sub)} if sub in active else {}
        assert tenant_records(zone, sub) == expected, sub
    assert foreign_records(zone, everyone) == BASE_FOREIGN


def tenant_records_hosts(sub):
    return [f"{n}.{sub}" for n in ("*", "console", "gitea", "harbor", "admin", "api")]


@pytest.mark.parametrize("round_", range(5))  # the interleaving differs run to run
def test_concurrent_commits_and_releases_of_different_names(app, fake, round_):
    client = app.test_client()
    names = [f"n{i}" for i in range(12)]
    tokens = {n: client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": n}).get_json()["reservationToken"]
              for n in names}
    for n in names[:6]:  # these are live before the storm and get released in it
        assert client.post(f"/api/v1/pool/{POOL}/commit", json={
            "subdomain": n, "reservationToken": tokens[n], "loadBalancerIP": LB}).status_code == 200

    def act(n):
        c = app.test_client()
        if n in names[:6]:
            return c.delete(f"/api/v1/pool/{POOL}/release", json={"subdomain": n}).status_code
        ip = f"203.0.113.{names.index(n)}"
        return c.post(f"/api/v1/pool/{POOL}/commit", json={
            "subdomain": n, "reservationToken": tokens[n], "loadBalancerIP": ip}).status_code

    work = names[:]
    random.shuffle(work)
    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(act, work))
    assert set(statuses) <= {200, 202}
    _assert_zone_matches_table(app, fake)
    zone = fake.zone(POOL)
    for n in names[6:]:
        assert set(tenant_records(zone, n).values()) == {f"203.0.113.{names.index(n)}"}
    for n in names[:6]:
        assert tenant_records(zone, n) == {}
    assert fake.max_in_flight == 1  # one registrar call at a time


def _until_blocked_or_done(engine, thread: threading.Thread, what: str) -> None:
    """PostgreSQL: wait until ``thread`` waits on a lock in the database, or has finished."""
    for _ in range(1200):
        if not thread.is_alive() or _blocked_on_a_row_lock(engine):
            return
        thread.join(0.05)
    raise AssertionError(f"{what} neither blocked nor finished")


def test_two_commits_race_for_the_last_room(app, fake, monkeypatch):
    """A pool with room for one more tenant, and two commits at once: the first holds the
    pool from counting its tenants to its COMMIT, so the second counts the first's tenant
    too and answers 409 pool-full -- never two tenants in a zone that holds one. The
    first pauses after its count; on PostgreSQL the test waits until the second is
    blocked on the pool's lock (or done) before letting the first go on."""
    pdm = app.extensions["pdm"]
    service = pdm.lifecycle
    service.max_subhost_records = 6 * 1 + 2  # one tenant's 6 records beside the 2 foreign ones
    assert service.publisher.publish(POOL, [], budget=None, verify=True)  # the zone's shape is known
    client = app.test_client()
    tokens = {sub: client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": sub}).get_json()["reservationToken"]
              for sub in ("first", "second")}
    interleave = Interleave(monkeypatch)
    counted, go_on = threading.Event(), threading.Event()

    def first_pause():
        counted.set()
        _wait(go_on, "the second commit to queue")

    interleave.at("first", "save_allocation", first_pause)
    statuses: dict[str, int] = {}

    def do_commit(sub):
        statuses[sub] = app.test_client().post(f"/api/v1/pool/{POOL}/commit", json={
            "subdomain": sub, "reservationToken": tokens[sub], "loadBalancerIP": LB}).status_code

    first = threading.Thread(target=do_commit, args=("first",), name="first")
    first.start()
    _wait(counted, "the first commit to count the tenants")
    second = threading.Thread(target=do_commit, args=("second",), name="second")
    second.start()
    if pdm.engine.dialect.name == "postgresql":
        _until_blocked_or_done(pdm.engine, second, "the second commit")
    go_on.set()
    first.join(60)
    second.join(60)
    assert statuses == {"first": 200, "second": 409}, statuses
    assert {a.subdomain: a.state for a in pdm.operators.list_pool(POOL).allocations} == {
        "first": "active", "second": "reserved"}
    assert tenant_records(fake.zone(POOL), "second") == {}


class Clock:
    """The service's clock, moved by the test. ``lapse_after``: from that many reads on,
    it reads ``lapsed`` instead -- the moment a reservation lapses falls inside a race
    among the threads reading it."""

    def __init__(self, now):
        self.now = now
        self._lock = threading.Lock()
        self._reads_left: int | None = None
        self._lapsed = None

    def lapse_after(self, reads: int, lapsed) -> None:
        with self._lock:
            self._reads_left, self._lapsed = reads, lapsed

    def set(self, now) -> None:
        with self._lock:
            self.now, self._reads_left = now, None

    def __call__(self):
        with self._lock:
            if self._reads_left is not None:
                if self._reads_left <= 0:
                    self.now, self._reads_left = self._lapsed, None
                else:
                    self._reads_left -= 1
            return self.now


class Interleave:
    """Pause points in ``UnitOfWork``: ``at(thread_name, method, hook)`` runs ``hook``
    in that thread right before the method (inside its transaction)."""

    METHODS = ("lock_pool", "save_allocation", "delete_expired_reservations")

    def __init__(self, monkeypatch):
        self.hooks: dict[tuple[str, str], object] = {}
        for name in self.METHODS:
            self._wrap(monkeypatch, name)

    def _wrap(self, monkeypatch, name):
        original = getattr(UnitOfWork, name)
        hooks = self.hooks

        def wrapper(uow, *args, **kwargs):
            hook = hooks.get((threading.current_thread().name, name))
            if hook is not None:
                hook()
            return original(uow, *args, **kwargs)

        monkeypatch.setattr(UnitOfWork, name, wrapper)

    def at(self, thread: str, method: str, hook) -> None:
        self.hooks[(thread, method)] = hook

    def clear(self) -> None:
        self.hooks.clear()


def _wait(event: threading.Event, what: str) -> None:
    assert event.wait(60), f"gave up waiting: {what}"  # a safety net, never the point


def _blocked_on_a_row_lock(engine) -> bool:
    """PostgreSQL: another session waits on a lock in this database."""
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")).scalar() > 0


def test_commit_release_sweeper_on_one_name(app, fake, monkeypatch):
    """Commit, release and the sweeper fight over one name while its reservation lapses,
    round after round: a committed row is never swept, nothing answers 5xx, the history
    never holds both a commit and an expiry of one reservation, and the zone always ends
    as the table says.

    Four kinds of round. ``commit-holds-row``: the commit has the row locked (and read
    the clock while the reservation was live) when the sweeper, whose clock says it has
    lapsed, runs its DELETE -- on PostgreSQL the test waits until that DELETE is blocked
    on the row lock, so the DELETE re-checks a row that is now active and must leave it.
    ``sweeper-first``: the commit read a live clock but the sweeper deletes the lapsed row
    before the commit locks it: the commit must answer 404 and publish nothing. ``free``
    (commit, release, sweeper) and ``free-no-release`` (commit, sweeper): they start
    together and the clock lapses after a random number of reads; the sweeper sweeps
    until the others are done."""
    pdm = app.extensions["pdm"]
    service = pdm.lifecycle
    start = utcnow()
    clock = Clock(start)
    service.clock = clock
    service.reservation_ttl = 60
    interleave = Interleave(monkeypatch)
    postgres = pdm.engine.dialect.name == "postgresql"
    kinds = ["commit-holds-row", "sweeper-first", "free", "free-no-release"] * 4
    outcomes = Counter()

    for round_, kind in enumerate(kinds):
        t0 = start + timedelta(hours=round_)
        clock.set(t0)
        r = app.test_client().post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": "hot"})
        assert r.status_code == 201, r.get_json()
        token = r.get_json()["reservationToken"]
        reserved_id = pdm.operators.history(POOL, "hot", limit=1).events[0].id
        clock.set(t0 + timedelta(seconds=59))  # live for one more second
        lapsed = t0 + timedelta(seconds=60)
        results: dict[str, object] = {}

        def do_commit():
            results["commit"] = app.test_client().post(f"/api/v1/pool/{POOL}/commit", json={
                "subdomain": "hot", "reservationToken": token, "loadBalancerIP": LB}).status_code

        def do_release():
            results["release"] = app.test_client().delete(f"/api/v1/pool/{POOL}/release?sub=hot").status_code

        def do_sweep_once():
            results["swept"] = service.sweep()

        if kind == "commit-holds-row":
            commit_locked, sweeper_deleting, go_on = threading.Event(), threading.Event(), threading.Event()

            def commit_pause():
                commit_locked.set()
                _wait(go_on, "the sweeper's DELETE")

            interleave.at("commit", "save_allocation", commit_pause)
            interleave.at("sweeper", "delete_expired_reservations", sweeper_deleting.set)
            committer = threading.Thread(target=do_commit, name="commit")
            committer.start()
            _wait(commit_locked, "the commit to lock the row")
            clock.set(lapsed)  # the sweeper's clock: the reservation has lapsed
            sweeper = threading.Thread(target=do_sweep_once, name="sweeper")
            sweeper.start()
            _wait(sweeper_deleting, "the sweeper to start its DELETE")
            if postgres:  # until the DELETE waits on the commit's row lock (or is done)
                _until_blocked_or_done(pdm.engine, sweeper, "the sweeper's DELETE")
            go_on.set()
            committer.join(60)
            sweeper.join(60)
            assert results["commit"] == 200 and results["swept"] == 0, results
        elif kind == "sweeper-first":
            commit_read_clock, swept = threading.Event(), threading.Event()

            def commit_pause():
                commit_read_clock.set()
                _wait(swept, "the sweeper")

            interleave.at("commit", "lock_pool", commit_pause)
            committer = threading.Thread(target=do_commit, name="commit")
            committer.start()
            _wait(commit_read_clock, "the commit to read the clock")
            clock.set(lapsed)
            do_sweep_once()
            swept.set()
            committer.join(60)
            assert results["commit"] == 404 and results["swept"] == 1, results
        else:
            clock.lapse_after(random.randint(0, 4), lapsed)
            racers = ["commit", "sweeper"] + (["release"] if kind == "free" else [])
            barrier = threading.Barrier(len(racers))
            sweeps = []

            def do_sweep_until_done():
                barrier.wait()
                for _ in range(50):
                    others_done = all(not t.is_alive() for t in threads if t.name != "sweeper")
                    sweeps.append(service.sweep())
                    if others_done:
                        break
                results["swept"] = sum(sweeps)

            def after_barrier(target):
                def run():
                    barrier.wait()
                    target()
                return run

            targets = {"commit": after_barrier(do_commit), "release": after_barrier(do_release),
                       "sweeper": do_sweep_until_done}
            threads = [threading.Thread(target=targets[name], name=name) for name in racers]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        interleave.clear()
        assert not any(t.is_alive() for t in threading.enumerate() if t.name in ("commit", "release", "sweeper"))

        statuses = [v for k, v in results.items() if k in ("commit", "release")]
        assert all(s < 500 for s in statuses), results
        committed = results["commit"] in (200, 202)
        actions = [e.action for e in pdm.operators.history(POOL, "hot").events if e.id > reserved_id]
        # A committed row is never swept.
        assert not (committed and results["swept"]), (kind, results, actions)
        assert not ("commit" in actions and "expire" in actions), (kind, results, actions)
        rows = {a.subdomain: a for a in pdm.operators.list_pool(POOL).allocations}
        if kind != "free":  # no release in the race: a committed row is still there, active
            assert ("hot" in rows) == committed, (kind, results, actions)
            if committed:
                assert rows["hot"].state == "active"
        elif committed:  # the release came after the commit, and freed it
            assert results["release"] in (200, 202) and "hot" not in rows, (kind, results, actions)
        _assert_zone_matches_table(app, fake)
        zone = fake.zone(POOL)
        assert (tenant_records(zone, "hot") != {}) == ("hot" in rows and rows["hot"].state == "active")
        outcomes[(kind, "committed" if committed else "swept" if results["swept"] else "other")] += 1

        # clean up whatever is left so the next round starts free
        app.test_client().delete(f"/api/v1/pool/{POOL}/release?sub=hot")
        _assert_zone_matches_table(app, fake)
    # The forced rounds ran the race both ways, every time.
    assert outcomes[("commit-holds-row", "committed")] == 4 and outcomes[("sweeper-first", "swept")] == 4, outcomes


@pytest.mark.postgres
def test_sweeper_never_deletes_a_committed_row(postgres_url, fake):
    """The sweeper's DELETE waits for a commit holding the row and re-checks it. Ten
    commits and five sweepers run while the service's clock lapses the reservations after
    a random number of reads; the sweepers keep sweeping until the commits are done."""
    app = create_app(make_settings(postgres_url, fake))
    service = app.extensions["pdm"].lifecycle
    t0 = utcnow()
    clock = Clock(t0)
    service.clock = clock
    service.reservation_ttl = 60
    client = app.test_client()
    tokens = [client.post(f"/api/v1/pool/{POOL}/reserve", json={"subdomain": f"n{i}"}).get_json()["reservationToken"]
              for i in range(10)]
    clock.set(t0 + timedelta(seconds=59))
    clock.lapse_after(random.randint(0, 20), t0 + timedelta(seconds=60))
    results = {}

    def commit(i):
        results[i] = app.test_client().post(f"/api/v1/pool/{POOL}/commit", json={
            "subdomain": f"n{i}", "reservationToken": tokens[i], "loadBalancerIP": LB}).status_code

    def sweep():
        for _ in range(100):
            if not any(t.is_alive() for t in threads):
                break
            service.sweep()

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(10)]
    sweeps = [threading.Thread(target=sweep) for _ in range(5)]
    for t in threads + sweeps:
        t.start()
    for t in threads + sweeps:
        t.join(60)
    service.sweep()
    listing = app.extensions["pdm"].operators.list_pool(POOL)
    active = {a.subdomain for a in listing.allocations if a.state == "active"}
    committed = {f"n{i}" for i, s in results.items() if s in (200, 202)}
    assert active == committed
    assert all(s in (200, 202, 404, 410) for s in results.values()), results  # 404: swept first
    _assert_zone_matches_table(app, fake)
    app.extensions["pdm"].engine.dispose()
