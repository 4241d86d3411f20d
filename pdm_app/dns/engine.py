"""Applies the allocation table to the pools' DNS: the one writer of every pool.

A pass for one pool reads the table and the pool's pending work from one snapshot, then
hands them to the pool's backend (``backend.ZoneBackend``), which reads what the DNS
holds, plans the changes (pure code: ``dynadot.plan`` for Dynadot's whole-zone writes,
``powerdns.plan`` for signed tenant zones) and applies them. Commit, release, the retry
job, the periodic resync and an operator's reconcile all run this same pass, whatever
the backend. The engine knows backends only by that protocol: the composition root
(``pdm_app.create_app``) builds them.

Passes of one backend account run one at a time deployment-wide (a ``DatabaseLock``):
Dynadot serves one call at a time per key, two whole-zone writes in flight can land out
of order, and PowerDNS's SQLite backend refuses parallel writers. The lock is a session
on a database connection and can be lost mid-pass, so a pass fences itself: a backend
writes only after checking on the lock's own connection that it still holds it
(``PacedIO.write``), and work is marked done only while the fencing token taken
with the lock is still the newest.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Mapping

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from .. import domain, metrics
from ..redaction import redact
from ..unit_of_work import UnitOfWork, event
from ..wakeups import PassWakeups
from .backend import Converged, NameDrift, Snapshot, ZoneBackend, foreign_records
from .errors import LockLost, RegistrarError, UnreadableZone, ZoneBlocked
from .policy import late_write_reads, next_late_write_read, retry_delay
from .zone import Record

log = logging.getLogger(__name__)

# History events of DNS work are made by the service itself.
DNS_CALLER = "dns"
# A failed read with no work behind it is tried again after this long.
RECHECK_AFTER_FAILURE = 60.0
# Below this much of its budget left, a request does not start a pass.
MIN_PASS_TIME = 0.05
# Passes quicker than this (on average) count as quick: see DnsPublisher._turn_wait.
QUICK_PASS = 0.1
# Where a request's DNS work stands (DnsPublisher._work_state).
DONE, REFUSED, PENDING = "done", "refused", "pending"


class PacedIO:
    """The engine's ``PassIO``, handed to a pass's backend: every call paced, timed
    against the pass's budget and counted; a write only while the lock is still held."""

    def __init__(self, publisher: "DnsPublisher", backend: ZoneBackend, pool: str, start: float,
                 budget: float | None, owned: Iterable[str] = ()):
        self._publisher = publisher
        self._backend = backend
        self.pool = pool
        # The pass's budget runs from ``start`` (time.monotonic()).
        self._deadline = (start, budget)
        # The hosts recorded as the service's own: the snapshot's, and those ``own`` added.
        self.owned = set(owned)

    def call(self, command: str, fn, *args, **kwargs):
        """``fn(*args, timeout=<what the budget leaves>, **kwargs)``, paced and counted."""
        p = self._publisher
        p._pace(self._backend)
        try:
            return p._call(command, fn, *args, timeout=p._remaining(*self._deadline), **kwargs)
        finally:
            p._mark_called(self._backend)

    def own(self, hosts: Iterable[str]) -> None:
        """Record ``hosts`` as the service's own -- before the write that publishes them, so
        a crash after it cannot orphan what it published."""
        new = set(hosts) - self.owned
        if new:
            with self._publisher.uow(single=True) as tx:
                tx.own_hosts(self.pool, new)
            self.owned |= new

    def write(self, command: str, fn, *args, **kwargs):
        """A call that changes the DNS: paced, then made only while the lock is still this
        pass's (checked on the lock's own connection, after any wait). A write that fails,
        times out or gets an answer that cannot be read may still be applied later: the DNS
        is read again while it could be (``DnsPublisher._late_write_possible``)."""
        p = self._publisher
        p._pace(self._backend)
        try:
            if not self._backend.lock.still_held():
                raise LockLost("the registrar lock was lost (its database connection is gone)")
            timeout = p._remaining(*self._deadline)  # a write never sent cannot land late
            try:
                return p._call(command, fn, *args, timeout=timeout, **kwargs)
            except Exception:  # whatever went wrong after the write was sent, it may land: re-raised
                p._late_write_possible(self.pool)
                raise
        finally:
            p._mark_called(self._backend)


class DnsPublisher:
    """The queue's one consumer: passes per pool, each through the pool's backend."""

    def __init__(
        self,
        session_factory: sessionmaker,
        backends: Mapping[str, ZoneBackend],
        default: ZoneBackend,
        *,
        max_waiting_requests: int = 4,
        late_write_window: float = 180.0,
        resync_interval: float = 600.0,
        clock: Callable[[], datetime] = domain.utcnow,
        wakeups: PassWakeups | None = None,
    ):
        self.session_factory = session_factory
        self.wakeups = wakeups or PassWakeups(session_factory.kw["bind"])
        # pool -> its backend; a pool not named uses ``default``.
        self.backends = dict(backends)
        self.default = default
        self.max_waiting_requests = max_waiting_requests
        self.late_write_window = late_write_window
        self.resync_interval = resync_interval
        self._request_slots = threading.BoundedSemaphore(max_waiting_requests)
        self._recent_pass = QUICK_PASS / 2
        self.clock = clock

    def backend(self, pool: str) -> ZoneBackend:
        return self.backends.get(pool, self.default)

    def uow(self, *, snapshot: bool = False, single: bool = False) -> UnitOfWork:
        return UnitOfWork(self.session_factory, snapshot=snapshot, single=single)

    # -- entry points ----------------------------------------------------------------

    def publish_for_request(self, pool: str, work_ids: list[int], budget: float, *, verify: bool = False) -> bool:
        """``publish`` from a request, as a group commit: the request waits for the pass
        that carries its work -- a pass already running may, or the next one, which the
        first waiter to find the lock free runs for everything queued by then -- and is
        woken when a pass ends (``PassWakeups``), not by polling the lock.

        Only a few requests of this process wait at once (``max_waiting_requests``), so a
        slow registrar cannot take every worker thread from /check; the others answer 202
        (their work is queued all the same) -- at once while passes are slow, and after a
        short wait for a turn while they are quick (``_turn_wait``)."""
        deadline = time.monotonic() + budget
        if not self._request_slots.acquire(timeout=min(self._turn_wait(), budget)):
            log.info("dns pass for %s: %d requests already wait on the registrar; left to the retry job",
                     pool, self.max_waiting_requests)
            return False
        try:
            backend = self.backend(pool)
            while True:
                mark = self.wakeups.generation()
                left = deadline - time.monotonic()
                if left <= MIN_PASS_TIME:
                    return False
                if backend.lock.acquire(timeout=0):
                    # The pass itself sees when an earlier one already carried the work.
                    return self._locked_pass(backend, pool, work_ids, time.monotonic(), left, verify=verify)
                self.wakeups.wait(mark, left)
                if work_ids and not verify:
                    state = self._work_state(work_ids)
                    if state != PENDING:
                        return state == DONE  # the pass that just ended carried it, or refused it
        except SQLAlchemyError as exc:
            return self._left_pending(pool, exc)
        finally:
            self._request_slots.release()

    def publish(self, pool: str, work_ids: list[int], budget: float | None, *, verify: bool = False,
                accept: bool = False, adopt: frozenset[str] = frozenset()) -> bool:
        """Run a pass for ``pool`` within ``budget`` seconds (None: no limit). True when
        the work ``work_ids`` is done -- by this pass or one before it -- and, with
        ``verify``, the DNS was read and is now what the table says even without work.
        ``accept``: take the zone as it now is (an operator's ``reconcile --force``);
        ``adopt``: hosts to treat as the service's own (orphans an operator removes)."""
        start = time.monotonic()
        backend = self.backend(pool)
        try:
            if not backend.lock.acquire(timeout=budget):
                log.warning("dns pass for %s: registrar lock busy past %.1fs; left pending", pool, budget or 0)
                return False
        except SQLAlchemyError as exc:
            return self._left_pending(pool, exc)
        return self._locked_pass(backend, pool, work_ids, start, budget, verify=verify, accept=accept, adopt=adopt)

    def _locked_pass(self, backend: ZoneBackend, pool: str, work_ids: list[int], start: float,
                     budget: float | None, *, verify: bool, accept: bool = False,
                     adopt: frozenset[str] = frozenset()) -> bool:
        """A pass, with ``backend.lock`` just taken; lets go of it and wakes the waiters."""
        began = time.monotonic()
        try:
            return self._pass(backend, pool, set(work_ids), start, budget,
                              verify=verify or accept or bool(adopt), accept=accept, adopt=adopt)
        except SQLAlchemyError as exc:
            return self._left_pending(pool, exc)
        except Exception as exc:  # a fault around the backend's pass (its bookkeeping) is this pool's alone too
            return self._failed_around(backend, pool, exc)
        finally:
            backend.lock.release()
            self.wakeups.announce()
            # A moving average of how long passes take in this process.
            self._recent_pass += 0.3 * (time.monotonic() - began - self._recent_pass)

    def _turn_wait(self) -> float:
        """How long a request beyond the waiting slots may wait for one: a few passes'
        time while passes are quick (turns come fast, and a 202 would be for nothing);
        nothing once they are slow (a slow registrar must not hold more threads)."""
        recent = self._recent_pass
        return 0.0 if recent >= QUICK_PASS else 4 * recent

    @staticmethod
    def _left_pending(pool: str, exc: SQLAlchemyError) -> bool:
        # The work is in the table: a database hiccup only delays it to the next pass.
        log.error("dns pass for %s: database error, left pending: %s", pool, type(exc).__name__)
        return False

    def _failed_around(self, backend: ZoneBackend, pool: str, exc: Exception) -> bool:
        """A pass that failed outside ``backend.converge``: a failure of the pool's
        pending work like any other (``_fail``)."""
        try:
            with self.uow(single=True) as tx:
                work = tx.pending_work(pool)
            self._fail(backend, pool, work, exc)
        except SQLAlchemyError as db_exc:
            return self._left_pending(pool, db_exc)
        return False

    def _work_state(self, work_ids: list[int]) -> str:
        """DONE (gone from the queue), REFUSED (a pass would not publish it) or PENDING."""
        with self.uow(single=True) as tx:
            queued = tx.queued_work(work_ids)
        if not queued:
            return DONE
        return REFUSED if any(refusal for refusal, _ in queued.values()) else PENDING

    def drift(self, pool: str, budget: float | None) -> tuple[Snapshot, list[NameDrift], list[Record]]:
        """One read of the pool's DNS compared with the table, for a drift report: under
        the registrar lock and its pacing like every other call."""
        start = time.monotonic()
        backend = self.backend(pool)
        if not backend.lock.acquire(timeout=budget):
            raise RegistrarError("the registrar is busy with other work; try again", transient=True)
        try:
            snap = self._snapshot(backend, pool, states=True)
            paused = self._paused(snap)
            if paused is not None:
                raise RegistrarError(f"registrar calls are paused until {paused:%H:%M:%S} UTC (it throttled this key)",
                                     transient=True)
            names, lost = backend.drift(pool, snap, PacedIO(self, backend, pool, start, budget, snap.owned))
            return snap, names, lost
        finally:
            backend.lock.release()
            self.wakeups.announce()

    def publish_due(self, pools: Iterable[str]) -> int:
        """The retry job: a pass for every pool with work that is due, a read owed, a
        resync due or a changed record-name list (``pools``: the managed ones). Returns
        how many passes succeeded."""
        now = self.clock()
        with self.uow() as tx:
            due_work = set(tx.pools_with_due_work(now))
            zones = tx.pool_zones()
        managed = set(pools)
        due = set(due_work)
        for pool in managed | set(zones):
            zone = zones.get(pool)
            if zone is not None and zone.recheck_at is not None and zone.recheck_at <= now:
                due.add(pool)
            elif (zone is not None and zone.record_names is not None
                  and zone.record_names != ",".join(self.backend(pool).record_names)):
                due.add(pool)
            elif pool in managed and self.resync_interval > 0 and (
                zone is None or zone.synced_at is None
                or (now - zone.synced_at).total_seconds() >= self.resync_interval
            ):
                due.add(pool)
        return sum(1 for pool in sorted(due) if self.publish(pool, [], budget=None, verify=pool not in due_work))

    # -- the pass --------------------------------------------------------------------

    def _snapshot(self, backend: ZoneBackend, pool: str, *, states: bool = False, fence: bool = False) -> Snapshot:
        # The work and the rows it names, read from one snapshot: every work item seen
        # comes with the row change that made it (a release read as still active would
        # put the records back and call the removal done). One transaction, taking the
        # pass's fencing token first: a pass's bookkeeping costs round trips, and passes
        # run one at a time.
        with self.uow(snapshot=True) as tx:
            if fence:
                token, paused_until = tx.take_fence(backend.account)
            else:
                account = tx.registrar_account(backend.account)
                token, paused_until = None, account.paused_until if account is not None else None
            active, carried = tx.active_tenants(pool)
            work = tx.pending_work(pool)
            owned = tx.owned_hosts(pool)
            zone = tx.pool_zone(pool)
            allocated = tx.allocation_states(pool) if states else {}
        return Snapshot(active, work, owned, foreign_records(zone.foreign_records if zone else None), allocated,
                        carried, token, paused_until)

    def _late_write_possible(self, pool: str) -> None:
        """A write of ``pool`` failed or timed out: the registrar may still apply it until
        the late-write window ends. The zone is read again soon, about a minute later and
        at the window's end (``late_write_reads``; ``_finish`` schedules each next one)."""
        now = self.clock()
        with self.uow() as tx:
            tx.update_pool_zone(pool, late_write_until=now + timedelta(seconds=self.late_write_window))
            tx.schedule_recheck(pool, now + timedelta(seconds=late_write_reads(self.late_write_window)[0]), now)

    def _paused(self, snap: Snapshot) -> datetime | None:
        """Until when registrar calls are paused (the registrar throttled the key), or None."""
        paused = snap.paused_until
        return paused if paused is not None and paused > self.clock() else None

    def _pass(self, backend: ZoneBackend, pool: str, wanted: set[int], start: float, budget: float | None,
              *, verify: bool, accept: bool, adopt: frozenset[str]) -> bool:
        began = self.clock()
        snap = self._snapshot(backend, pool, fence=True)
        ids = [w.id for w in snap.work]
        if wanted and not wanted.intersection(ids):
            return True  # an earlier pass already carried it out
        if not snap.work and not verify:
            return True
        paused = self._paused(snap)
        if paused is not None:
            # Not an attempt: the work is due again the moment the pause ends.
            why = f"registrar calls paused until {paused.isoformat()} (it throttled this key); not attempted"
            with self.uow() as tx:
                tx.defer_work(ids, paused, why)
                tx.schedule_recheck(pool, paused, began)
            log.info("dns pass for %s: %s; %d change(s) wait", pool, why, len(ids))
            return False
        io = PacedIO(self, backend, pool, start, budget, snap.owned)
        try:
            done = backend.converge(pool, snap, io, accept=accept, adopt=adopt)
        except (ZoneBlocked, UnreadableZone) as exc:
            self._block(pool, snap.work, exc)
            return False
        except LockLost as exc:
            metrics.LOCK_LOST.inc()
            log.warning("dns pass for %s: %s; nothing written, the work stays pending", pool, exc)
            with self.uow() as tx:
                tx.schedule_recheck(pool, self.clock(), began)
            return False
        except RegistrarError as exc:
            self._fail(backend, pool, snap.work, exc)
            return False
        except SQLAlchemyError:
            raise  # the database's trouble, not the pool's: the work is left pending (_locked_pass)
        except Exception as exc:  # any other fault (an answer no client expected, a bug) fails this pool alone
            self._fail(backend, pool, snap.work, exc)
            return False
        return self._finish(backend, pool, snap, done, io.owned, began, wanted, accepted=accept)

    def _finish(self, backend: ZoneBackend, pool: str, snap: Snapshot, done: Converged, owned: set[str],
                began: datetime, wanted: set[int], *, accepted: bool) -> bool:
        """The pass's bookkeeping, in one transaction. ``owned``: the hosts recorded as the
        service's own when the pass ends. False when work of ``wanted`` was refused (with
        none wanted: when any active tenant was): its tenant is not published."""
        now = self.clock()
        refused = [w for w in snap.work if w.action == domain.PUBLISH and w.subdomain in done.refused]
        with self.uow() as tx:
            if tx.fence(backend.account) != snap.fence:
                # Another process took the lock after ours was lost: what it did and
                # what we wrote may have crossed. Leave the work; read again.
                metrics.LOCK_LOST.inc()
                log.warning("dns pass for %s: the registrar lock changed hands during the pass; "
                            "work left pending and the zone read again", pool)
                tx.schedule_recheck(pool, now, now)
                return False
            tx.finish_work([w.id for w in snap.work if w not in refused])
            for w in refused:
                code, why = done.refused[w.subdomain]
                self._record_failure(tx, pool, [w], why, now, action="dns-refused")
                tx.fail_work([w.id], why, now + timedelta(seconds=retry_delay(w.attempts)), refusal=code)
            if done.conflicts is not None:
                tx.replace_conflicts(pool, dict(done.conflicts))
            zone = tx.pool_zone(pool)
            was_blocked = zone.blocked_reason if zone is not None else None
            was_failing = zone.last_error if zone is not None else None
            # A write that failed or timed out may still land until ``late_write_until``,
            # perhaps after this pass read the zone.
            until = zone.late_write_until if zone is not None else None
            late_write_possible = until is not None and until > began
            if not late_write_possible:
                # Forget hosts only once a read shows them gone and no abandoned write
                # can bring them back.
                keep = set(done.owned | done.removing)
                tx.disown_hosts(pool, owned - keep)
                tx.own_hosts(pool, keep - owned)
            tx.update_pool_zone(
                pool,
                synced_at=now,
                record_names=",".join(backend.record_names),
                blocked_reason=None, blocked_detail=None, blocked_since=None,
                last_error=None, failing_since=None,
                # While a write may still land, the zone is read again on its schedule (a
                # pass that began before the window's end and ended after it: read now).
                recheck_at=(next_late_write_read(until, self.late_write_window, now) or now)
                if late_write_possible else None,
                late_write_until=until if late_write_possible else None,
                **done.state,
            )
            self._record_events(tx, pool, snap, done, now, accepted)
        if refused:
            log.warning("dns pass for %s: not published, to take over nothing that is not the service's: %s", pool,
                        "; ".join(f"{sub} ({code})" for sub, (code, _) in sorted(done.refused.items())))
        if was_blocked:
            log.info("dns for %s is no longer blocked (%s)", pool, was_blocked)
        if was_failing:
            log.info("dns passes for %s succeed again (the last failed: %s)", pool, was_failing)
        log.info(
            "dns pass for %s: %d change(s) applied, %s", pool, len(snap.work),
            f"changed ({', '.join(done.touched)})" if done.touched else "already right",
        )
        return not ({w.id for w in refused} & wanted if wanted else done.refused)

    def _record_events(self, tx: UnitOfWork, pool: str, snap: Snapshot, done: Converged, now: datetime,
                       accepted: bool) -> None:
        events, worked = [], set()
        for w in snap.work:
            if (w.subdomain, w.action) in worked:
                continue
            worked.add((w.subdomain, w.action))
            if w.subdomain in done.refused and w.action == domain.PUBLISH:
                continue  # recorded as dns-refused
            if w.action == domain.REMOVE:
                events.append(event(pool, w.subdomain, "dns-removed", DNS_CALLER, now))
            elif w.subdomain in snap.active:
                events.append(event(pool, w.subdomain, "dns-published", DNS_CALLER, now, snap.active[w.subdomain]))
        for sub, hosts in done.touched.items():
            if not any(s == sub for s, _ in worked):
                events.append(event(pool, sub, "drift-repaired", DNS_CALLER, now, snap.active.get(sub),
                                    detail="records made right: " + ", ".join(hosts)))
        if accepted:
            events.append(event(pool, "", "zone-accepted", DNS_CALLER, now,
                                detail="an operator accepted the zone as it was read (reconcile --force)"))
        tx.record_events(events)

    def _fail(self, backend: ZoneBackend, pool: str, work: list, exc: Exception) -> None:
        """A failed pass: a registrar error, or any other exception (an answer the client
        could not read, a bug) -- either way this pool's alone. Its work is retried with
        back-off, and the pool shows as failing (``last_error``) until a pass succeeds."""
        attempts = max((w.attempts for w in work), default=0)
        now = self.clock()
        registrar = isinstance(exc, RegistrarError)
        retry_after = exc.retry_after if registrar else None
        when = now + timedelta(seconds=retry_delay(attempts, retry_after))
        error = redact(f"{type(exc).__name__}: {exc}")
        if registrar:
            reason = "registrar-transient" if exc.transient else "registrar-error"
            log.log(logging.WARNING if exc.transient else logging.ERROR,
                    "dns pass for %s failed (attempt %d), retry at %s: %s", pool, attempts + 1, when.isoformat(),
                    error)
        else:
            # Nothing planned for: the traceback goes to the log (redacted like every line).
            reason = "unexpected"
            log.error("dns pass for %s failed on an unexpected %s (attempt %d), retry at %s: %s", pool,
                      type(exc).__name__, attempts + 1, when.isoformat(), error, exc_info=exc)
        metrics.DNS_PASS_FAILURES.labels(pool, reason).inc()
        with self.uow() as tx:
            self._record_failure(tx, pool, work, error, now, for_pool=True)
            zone = tx.pool_zone(pool)
            since = zone.failing_since if zone is not None and zone.last_error else None
            tx.update_pool_zone(pool, last_error=error[:500], failing_since=since or now)
            tx.fail_work([w.id for w in work], error, when)
            tx.schedule_recheck(pool, when if work else now + timedelta(seconds=RECHECK_AFTER_FAILURE), now)
            if retry_after:
                # The registrar throttles the key, not the pool: every caller waits.
                tx.update_registrar_account(backend.account, paused_until=now + timedelta(seconds=retry_after))

    def _block(self, pool: str, work: list, exc: ZoneBlocked | UnreadableZone) -> None:
        reason = exc.reason
        detail = redact(exc.detail if isinstance(exc, ZoneBlocked) else str(exc))
        attempts = max((w.attempts for w in work), default=0)
        now = self.clock()
        when = now + timedelta(seconds=retry_delay(attempts))
        log.error("dns for %s is blocked (%s): %s", pool, reason, detail)
        with self.uow() as tx:
            zone = tx.pool_zone(pool)
            since = zone.blocked_since if zone is not None and zone.blocked_reason == reason else None
            tx.update_pool_zone(pool, blocked_reason=reason, blocked_detail=detail, blocked_since=since or now)
            self._record_failure(tx, pool, work, f"blocked ({reason}): {detail}", now)
            tx.fail_work([w.id for w in work], f"blocked ({reason}): {detail}", when)
            # A block lasts until someone acts: no work behind it, no need to read often.
            tx.schedule_recheck(pool, when if work else now + timedelta(seconds=RECHECK_AFTER_FAILURE), now)

    @staticmethod
    def _record_failure(tx: UnitOfWork, pool: str, work: list, error: str, now: datetime, *,
                        action: str = "dns-failed", for_pool: bool = False) -> None:
        # Once per change and error: a long outage is one event, not one per retry. With
        # ``for_pool``, a pass with no work behind it (a resync, a read owed) is one event
        # for the pool, once per error (the pool's ``last_error``, read before it is set).
        seen = set()
        for w in work:
            if w.last_error != error[:500] and (w.subdomain, w.action) not in seen:
                seen.add((w.subdomain, w.action))
                tx.record_event(pool, w.subdomain, action, DNS_CALLER, now, detail=error[:500])
        if for_pool and not work:
            zone = tx.pool_zone(pool)
            if (zone.last_error if zone is not None else None) != error[:500]:
                tx.record_event(pool, "", action, DNS_CALLER, now, detail=error[:500])

    # -- calls, pacing and pauses across processes -------------------------------------

    @staticmethod
    def _call(command: str, call, *args, **kwargs):
        started = time.monotonic()
        outcome = "ok"
        try:
            return call(*args, **kwargs)
        except RegistrarError as exc:
            outcome = "transient-error" if exc.transient else "error"
            raise
        except Exception:  # an answer the client could not read is a failed call too: re-raised
            outcome = "error"
            raise
        finally:
            metrics.REGISTRAR_CALLS.labels(command, outcome).inc()
            metrics.REGISTRAR_LATENCY.labels(command).observe(time.monotonic() - started)

    @staticmethod
    def _remaining(start: float, budget: float | None) -> float | None:
        if budget is None:
            return None
        left = budget - (time.monotonic() - start)
        if left <= 0.05:
            raise RegistrarError("the request's time for the registrar ran out", transient=True)
        return left

    # The client spaces the calls of one process; these carry the spacing, and the
    # registrar's request to back off, over to the next lock holder, which may be
    # another worker or replica.

    def _pace(self, backend: ZoneBackend) -> None:
        if backend.min_interval <= 0:
            return
        with self.uow() as tx:
            account = tx.registrar_account(backend.account)
        if account is not None and account.last_call_at is not None:
            wait = backend.min_interval - (datetime.now(timezone.utc) - account.last_call_at).total_seconds()
            if wait > 0:
                time.sleep(min(wait, backend.min_interval))

    def _mark_called(self, backend: ZoneBackend) -> None:
        if backend.min_interval > 0:
            with self.uow() as tx:
                tx.update_registrar_account(backend.account, last_call_at=datetime.now(timezone.utc))
