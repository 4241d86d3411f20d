"""Applies the allocation table to the registrar: the one writer of every pool's zone.

A pass for one pool reads the table and the pool's pending work from one snapshot, reads
the zone once, plans (``dns_plan.plan_zone``: the service's own records made exactly what
the table says, everything else carried over) and writes the whole zone back once if it
changed. Commit, release, the retry job, the periodic resync and an operator's reconcile
all run this same pass.

Passes of one registrar account run one at a time deployment-wide (a ``DatabaseLock``):
Dynadot serves one call at a time per key, and two whole-zone writes in flight can land
out of order. The lock is a session on a database connection and can be lost mid-pass, so
a pass fences itself: it writes only after checking on the lock's own connection that it
still holds it, and marks work done only while the fencing token it took with the lock is
still the newest.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from . import domain, metrics
from .dns_plan import ZoneBlocked, ZonePlan, plan_zone, retry_delay
from .locks import DatabaseLock
from .redaction import redact
from .registrar import Record, Registrar, RegistrarError, UnreadableZone, Zone
from .unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

# History events of DNS work are made by the service itself.
DNS_CALLER = "dns"
# A failed read with no work behind it is tried again after this long.
RECHECK_AFTER_FAILURE = 60.0


class LockLost(Exception):
    """The registrar lock's connection went away mid-pass: another process may hold it."""


@dataclass(frozen=True)
class _Snapshot:
    active: dict[str, str]
    work: list
    owned: set[str]
    last_foreign: list[Record] | None


def _foreign_json(records: Iterable[Record]) -> str:
    return json.dumps([[r.host, r.rtype, r.value, r.extra] for r in records])


def foreign_records(text: str | None) -> list[Record] | None:
    """``pool_zones.foreign_records`` read back."""
    return None if text is None else [Record(*item) for item in json.loads(text)]


class DnsPublisher:
    def __init__(
        self,
        session_factory: sessionmaker,
        registrar: Registrar,
        lock: DatabaseLock,
        *,
        record_names: tuple[str, ...],
        account: str,
        min_interval: float,
        max_waiting_requests: int = 4,
        max_subhost_records: int | None = None,
        max_apex_records: int | None = None,
        late_write_window: float = 180.0,
        resync_interval: float = 600.0,
        clock: Callable[[], datetime] = domain.utcnow,
    ):
        self.session_factory = session_factory
        self.registrar = registrar
        self.lock = lock
        self.record_names = record_names
        # Only a hash of the key is stored, to pace callers across processes.
        self.account = hashlib.sha256(account.encode()).hexdigest()
        self.min_interval = min_interval
        self.max_waiting_requests = max_waiting_requests
        self.max_subhost_records = max_subhost_records
        self.max_apex_records = max_apex_records
        self.late_write_window = late_write_window
        self.resync_interval = resync_interval
        self._request_slots = threading.BoundedSemaphore(max_waiting_requests)
        self.clock = clock

    def uow(self, *, snapshot: bool = False) -> UnitOfWork:
        return UnitOfWork(self.session_factory, snapshot=snapshot)

    # -- entry points ----------------------------------------------------------------

    def publish_for_request(self, pool: str, work_ids: list[int], budget: float, *, verify: bool = False) -> bool:
        """``publish`` from a request: only a few requests of this process wait on the
        registrar at once, so a slow registrar cannot take every worker thread from
        /check; the others answer 202 at once (their work is queued all the same)."""
        if not self._request_slots.acquire(blocking=False):
            log.info("dns pass for %s: %d requests already wait on the registrar; left to the retry job",
                     pool, self.max_waiting_requests)
            return False
        try:
            return self.publish(pool, work_ids, budget, verify=verify)
        finally:
            self._request_slots.release()

    def publish(self, pool: str, work_ids: list[int], budget: float | None, *, verify: bool = False,
                accept: bool = False, adopt: frozenset[str] = frozenset()) -> bool:
        """Run a pass for ``pool`` within ``budget`` seconds (None: no limit). True when
        the work ``work_ids`` is done -- by this pass or one before it -- and, with
        ``verify``, the zone was read and is now what the table says even without work.
        ``accept``: take the zone as it now is (an operator's ``reconcile --force``);
        ``adopt``: hosts to treat as the service's own (orphans an operator removes)."""
        start = time.monotonic()
        try:
            if not self.lock.acquire(timeout=budget):
                log.warning("dns pass for %s: registrar lock busy past %.1fs; left pending", pool, budget or 0)
                return False
            try:
                with self.uow() as tx:
                    fence = tx.take_fence(self.account)
                return self._pass(pool, set(work_ids), start, budget, fence, verify=verify or accept or bool(adopt),
                                  accept=accept, adopt=adopt)
            finally:
                self.lock.release()
        except SQLAlchemyError as exc:
            # The work is in the table: a database hiccup only delays it to the next pass.
            log.error("dns pass for %s: database error, left pending: %s", pool, type(exc).__name__)
            return False

    def read_zone(self, pool: str, budget: float | None) -> Zone:
        """One read of the zone, for a drift report: under the registrar lock and its
        pacing like every other call."""
        start = time.monotonic()
        if not self.lock.acquire(timeout=budget):
            raise RegistrarError("the registrar is busy with other work; try again", transient=True)
        try:
            paused = self._paused_until()
            if paused is not None:
                raise RegistrarError(f"registrar calls are paused until {paused:%H:%M:%S} UTC (it throttled this key)",
                                     transient=True)
            return self._read(pool, start, budget)
        finally:
            self.lock.release()

    def publish_due(self, pools: Iterable[str]) -> int:
        """The retry job: a pass for every pool with work that is due, a read owed, a
        resync due or a changed record-name list (``pools``: the managed ones). Returns
        how many passes succeeded."""
        now = self.clock()
        with self.uow() as tx:
            due_work = set(tx.pools_with_due_work(now))
            zones = tx.pool_zones()
        names = ",".join(self.record_names)
        managed = set(pools)
        due = set(due_work)
        for pool in managed | set(zones):
            zone = zones.get(pool)
            if zone is not None and zone.recheck_at is not None and zone.recheck_at <= now:
                due.add(pool)
            elif zone is not None and zone.record_names is not None and zone.record_names != names:
                due.add(pool)
            elif pool in managed and self.resync_interval > 0 and (
                zone is None or zone.synced_at is None
                or (now - zone.synced_at).total_seconds() >= self.resync_interval
            ):
                due.add(pool)
        return sum(1 for pool in sorted(due) if self.publish(pool, [], budget=None, verify=pool not in due_work))

    # -- the pass --------------------------------------------------------------------

    def _snapshot(self, pool: str) -> _Snapshot:
        # The work and the rows it names, read from one snapshot: every work item seen
        # comes with the row change that made it (a release read as still active would
        # put the records back and call the removal done).
        with self.uow(snapshot=True) as tx:
            active = tx.active_ips(pool)
            work = tx.pending_work(pool)
            owned = tx.owned_hosts(pool)
            zone = tx.pool_zone(pool)
        return _Snapshot(active, work, owned, foreign_records(zone.foreign_records if zone else None))

    def _pass(self, pool: str, wanted: set[int], start: float, budget: float | None, fence: int, *,
              verify: bool, accept: bool, adopt: frozenset[str]) -> bool:
        began = self.clock()
        snap = self._snapshot(pool)
        ids = [w.id for w in snap.work]
        if wanted and not wanted.intersection(ids):
            return True  # an earlier pass already carried it out
        if not snap.work and not verify:
            return True
        paused = self._paused_until()
        if paused is not None:
            # Not an attempt: the work is due again the moment the pause ends.
            why = f"registrar calls paused until {paused.isoformat()} (it throttled this key); not attempted"
            with self.uow() as tx:
                tx.defer_work(ids, paused, why)
                tx.schedule_recheck(pool, paused, began)
            log.info("dns pass for %s: %s; %d change(s) wait", pool, why, len(ids))
            return False
        try:
            current = self._read(pool, start, budget)
            plan = plan_zone(current, snap.active, self.record_names, snap.owned | adopt, snap.last_foreign,
                             accept=accept, max_subhost_records=self.max_subhost_records,
                             max_apex_records=self.max_apex_records)
            if plan.changed:
                self._write(pool, plan, start, budget)
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
            self._fail(pool, snap.work, exc)
            return False
        return self._finish(pool, snap, plan, fence, began, accepted=accept)

    def _read(self, pool: str, start: float, budget: float | None) -> Zone:
        self._pace()
        try:
            return self._call("get_dns", self.registrar.get_zone, pool, timeout=self._remaining(start, budget))
        finally:
            self._mark_called()

    def _write(self, pool: str, plan: ZonePlan, start: float, budget: float | None) -> None:
        with self.uow() as tx:
            # Owned before the write: a crash after it cannot orphan what it published.
            tx.own_hosts(pool, set(plan.owned))
        self._pace()
        if not self.lock.still_held():
            raise LockLost("the registrar lock was lost (its database connection is gone)")
        try:
            self._call("set_dns2", self.registrar.set_zone, plan.zone, timeout=self._remaining(start, budget))
        except RegistrarError:
            # The write may still be applied later (Dynadot has been seen doing so): read
            # the zone again once that could have happened.
            with self.uow() as tx:
                now = self.clock()
                tx.schedule_recheck(pool, now + timedelta(seconds=self.late_write_window), now)
            raise
        finally:
            self._mark_called()

    def _finish(self, pool: str, snap: _Snapshot, plan: ZonePlan, fence: int, began: datetime, *,
                accepted: bool) -> bool:
        now = self.clock()
        with self.uow() as tx:
            if tx.fence(self.account) != fence:
                # Another process took the lock after ours was lost: what it did and
                # what we wrote may have crossed. Leave the work; read again.
                metrics.LOCK_LOST.inc()
                log.warning("dns pass for %s: the registrar lock changed hands during the pass; "
                            "work left pending and the zone read again", pool)
                tx.schedule_recheck(pool, now, now)
                return False
            tx.finish_work([w.id for w in snap.work])
            zone = tx.pool_zone(pool)
            was_blocked = zone.blocked_reason if zone is not None else None
            recheck = zone.recheck_at if zone is not None else None
            late_write_possible = recheck is not None and recheck > began
            if not late_write_possible:
                # Forget hosts only once a read shows them gone and no abandoned write
                # can bring them back.
                tx.set_owned_hosts(pool, set(plan.owned | plan.removing))
            tx.update_pool_zone(
                pool,
                synced_at=now,
                foreign_subhost_records=plan.foreign_subhost_records,
                foreign_records=_foreign_json(plan.foreign),
                record_names=",".join(self.record_names),
                blocked_reason=None, blocked_detail=None, blocked_since=None,
                # A read owed later (a write that may still land) stays owed.
                recheck_at=recheck if late_write_possible else None,
            )
            self._record_events(tx, pool, snap, plan, now, accepted)
        if was_blocked:
            log.info("dns for %s is no longer blocked (%s)", pool, was_blocked)
        log.info(
            "dns pass for %s: %d change(s) applied, %s", pool, len(snap.work),
            f"zone written ({', '.join(plan.touched)})" if plan.changed else "zone already right",
        )
        return True

    def _record_events(self, tx: UnitOfWork, pool: str, snap: _Snapshot, plan: ZonePlan, now: datetime,
                       accepted: bool) -> None:
        worked = set()
        for w in snap.work:
            if (w.subdomain, w.action) in worked:
                continue
            worked.add((w.subdomain, w.action))
            if w.action == domain.REMOVE:
                tx.record_event(pool, w.subdomain, "dns-removed", DNS_CALLER, now)
            elif w.subdomain in snap.active:
                tx.record_event(pool, w.subdomain, "dns-published", DNS_CALLER, now, snap.active[w.subdomain])
        for sub, hosts in plan.touched.items():
            if not any(s == sub for s, _ in worked):
                tx.record_event(pool, sub, "drift-repaired", DNS_CALLER, now, snap.active.get(sub),
                                detail="records made right: " + ", ".join(hosts))
        if accepted:
            tx.record_event(pool, "", "zone-accepted", DNS_CALLER, now,
                            detail="an operator accepted the zone as it was read (reconcile --force)")

    def _fail(self, pool: str, work: list, exc: RegistrarError) -> None:
        attempts = max((w.attempts for w in work), default=0)
        now = self.clock()
        when = now + timedelta(seconds=retry_delay(attempts, exc.retry_after))
        error = redact(f"{type(exc).__name__}: {exc}")
        log.log(logging.WARNING if exc.transient else logging.ERROR,
                "dns pass for %s failed (attempt %d), retry at %s: %s", pool, attempts + 1, when.isoformat(), exc)
        with self.uow() as tx:
            self._record_failure(tx, pool, work, error, now)
            tx.fail_work([w.id for w in work], error, when)
            tx.schedule_recheck(pool, when if work else now + timedelta(seconds=RECHECK_AFTER_FAILURE), now)
            if exc.retry_after:
                # The registrar throttles the key, not the pool: every caller waits.
                tx.update_registrar_account(self.account, paused_until=now + timedelta(seconds=exc.retry_after))

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
    def _record_failure(tx: UnitOfWork, pool: str, work: list, error: str, now: datetime) -> None:
        # Once per change and error: a long outage is one event, not one per retry.
        seen = set()
        for w in work:
            if w.last_error != error[:500] and (w.subdomain, w.action) not in seen:
                seen.add((w.subdomain, w.action))
                tx.record_event(pool, w.subdomain, "dns-failed", DNS_CALLER, now, detail=error[:500])

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

    def _paused_until(self) -> datetime | None:
        with self.uow() as tx:
            account = tx.registrar_account(self.account)
        if account is not None and account.paused_until is not None and account.paused_until > self.clock():
            return account.paused_until
        return None

    def _pace(self) -> None:
        if self.min_interval <= 0:
            return
        with self.uow() as tx:
            account = tx.registrar_account(self.account)
        if account is not None and account.last_call_at is not None:
            wait = self.min_interval - (datetime.now(timezone.utc) - account.last_call_at).total_seconds()
            if wait > 0:
                time.sleep(min(wait, self.min_interval))

    def _mark_called(self) -> None:
        if self.min_interval > 0:
            with self.uow() as tx:
                tx.update_registrar_account(self.account, last_call_at=datetime.now(timezone.utc))
