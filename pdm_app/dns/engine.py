"""Applies the allocation table to the pools' DNS: the one writer of every pool.

A pass for one pool reads the table and the pool's pending work from one snapshot, then
hands them to the pool's backend (``backend.ZoneBackend``), which reads what the DNS
holds, plans the changes (pure code: ``dynadot.plan`` for Dynadot's whole-zone writes,
``powerdns.plan`` for signed tenant zones) and applies them. Commit, release, the retry
job, the periodic resync and an operator's reconcile all run this same pass, whatever
the backend. On a backend that can (``scoped``: PowerDNS, a zone per tenant) a pass that
carries out work covers the names of its work alone -- its reads, its rows and its
bookkeeping -- and a resync walks the pool in slices (``resync``). The engine knows
backends only by that protocol: the composition root (``pdm_app.create_app``) builds them.

Passes of one backend account run one at a time deployment-wide (a ``DatabaseLock``):
Dynadot serves one call at a time per key, two whole-zone writes in flight can land out
of order, and PowerDNS's SQLite backend refuses parallel writers. The lock is a session
on a database connection and can be lost mid-pass, so a pass fences itself: a backend
writes only after checking on the lock's own connection that it still holds it
(``calls.PacedIO.write``), and work is marked done only while the fencing token taken
with the lock is still the newest (``bookkeeping.finish``: what a pass leaves in the table).
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Callable, Mapping

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from .. import domain, metrics
from ..unit_of_work import UnitOfWork
from ..wakeups import PassWakeups
from . import bookkeeping
from .backend import NameDrift, Snapshot, ZoneBackend, foreign_records
from .calls import PacedIO
from .errors import LockLost, RegistrarError, UnreadableZone, ZoneBlocked
from .policy import MIN_PASS_TIME, RESYNC_SLICE
from .resync import Resyncs
from .zone import Record

log = logging.getLogger(__name__)

# Passes quicker than this (on average) count as quick: see DnsPublisher._turn_wait.
QUICK_PASS = 0.1
# Where a request's DNS work stands (DnsPublisher._work_state).
DONE, REFUSED, PENDING = "done", "refused", "pending"


class DnsPublisher(Resyncs):
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
        resync_slice: int = RESYNC_SLICE,
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
        self.resync_slice = resync_slice
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
                    return self._locked_pass(backend, pool, work_ids, time.monotonic(), left, verify=verify,
                                             scope=self._work_scope(backend, verify))
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
        ``adopt``: hosts to treat as the service's own (orphans an operator removes).
        On a scoped backend a pass that verifies is a whole resync (``resync``)."""
        backend = self.backend(pool)
        if backend.scoped and (verify or accept or adopt):
            return self.resync(pool, budget, accept=accept, adopt=adopt, restart=True)
        return self._publish(backend, pool, work_ids, budget, verify=verify, accept=accept, adopt=adopt)

    def _publish(self, backend: ZoneBackend, pool: str, work_ids: list[int], budget: float | None, *,
                 verify: bool = False, accept: bool = False, adopt: frozenset[str] = frozenset(),
                 scope: frozenset[str] | None = None, step: tuple[str, int] | None = None) -> bool:
        """``publish`` with the pass's scope chosen (None: the whole pool); ``step``: a
        resync's slice (``bookkeeping.finish``)."""
        start = time.monotonic()
        if scope is None:
            scope = self._work_scope(backend, verify or accept or bool(adopt))
        try:
            if not backend.lock.acquire(timeout=budget):
                log.warning("dns pass for %s: registrar lock busy past %.1fs; left pending", pool, budget or 0)
                return False
        except SQLAlchemyError as exc:
            return self._left_pending(pool, exc)
        return self._locked_pass(backend, pool, work_ids, start, budget, verify=verify, accept=accept, adopt=adopt,
                                 scope=scope, step=step)

    @staticmethod
    def _work_scope(backend: ZoneBackend, verify: bool) -> frozenset[str] | None:
        """A pass that only carries out work covers the names of its work alone (plus none
        more: the empty extra scope), where the backend can; else the whole pool."""
        return frozenset() if backend.scoped and not verify else None

    def _locked_pass(self, backend: ZoneBackend, pool: str, work_ids: list[int], start: float,
                     budget: float | None, *, verify: bool, accept: bool = False,
                     adopt: frozenset[str] = frozenset(), scope: frozenset[str] | None = None,
                     step: tuple[str, int] | None = None) -> bool:
        """A pass, with ``backend.lock`` just taken; lets go of it and wakes the waiters."""
        began = time.monotonic()
        try:
            return self._pass(backend, pool, set(work_ids), start, budget,
                              verify=verify or accept or bool(adopt), accept=accept, adopt=adopt, scope=scope,
                              step=step)
        except SQLAlchemyError as exc:
            return self._left_pending(pool, exc)
        except Exception as exc:  # a fault around the backend's pass (its bookkeeping) is this pool's alone too
            return self._failed_around(backend, pool, exc)
        finally:
            backend.lock.release()
            self.wakeups.announce()
            # A moving average of how long passes take in this process.
            self._recent_pass += 0.3 * (time.monotonic() - began - self._recent_pass)
            metrics.DNS_LOCK_HELD.labels(backend.kind).observe(time.monotonic() - began)

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
        pending work like any other (``bookkeeping.fail``)."""
        try:
            with self.uow() as tx:  # ORM rows: not a ``single`` (Core) read
                work = tx.pending_work(pool)
            bookkeeping.fail(self.uow, backend, pool, work, exc, self.clock())
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
        the registrar lock and its pacing like every other call -- but on a scoped backend
        (PowerDNS), whose reads may run beside a pass's writes, without the lock: a drift
        of 10,000 tenants reads for minutes, and commits go on meanwhile (a name changed
        during the read may show as drift; a reconcile reads each name again under the
        lock before it changes anything)."""
        return self._read_only(pool, budget, None)

    def look(self, pool: str, names: frozenset[str], budget: float | None) -> tuple[list[NameDrift], list[Record]]:
        """The drift of ``names`` alone and every record the DNS holds at or under them
        (the console's tenant page): a read like ``drift``'s, of those names only."""
        _, drift, held = self._read_only(pool, budget, names)
        return drift, held

    def _read_only(self, pool: str, budget: float | None,
                   scope: frozenset[str] | None) -> tuple[Snapshot, list[NameDrift], list[Record]]:
        start = time.monotonic()
        backend = self.backend(pool)
        locked = not backend.scoped
        if locked and not backend.lock.acquire(timeout=budget):
            raise RegistrarError("the registrar is busy with other work; try again", transient=True)
        try:
            snap = self._snapshot(backend, pool, states=True, scope=scope, with_work=scope is None)
            paused = self._paused(snap)
            if paused is not None:
                raise RegistrarError(f"registrar calls are paused until {paused:%H:%M:%S} UTC (it throttled this key)",
                                     transient=True)
            io = self._io(backend, pool, start, budget, snap)
            names, found = (backend.drift if scope is None else backend.look)(pool, snap, io)
            return snap, names, found
        finally:
            if locked:
                backend.lock.release()
                self.wakeups.announce()

    # -- the pass --------------------------------------------------------------------

    def _snapshot(self, backend: ZoneBackend, pool: str, *, states: bool = False, fence: bool = False,
                  scope: frozenset[str] | None = None, with_work: bool = True) -> Snapshot:
        # The work and the rows it names, read from one snapshot: every work item seen
        # comes with the row change that made it (a release read as still active would
        # put the records back and call the removal done). One transaction, taking the
        # pass's fencing token first: a pass's bookkeeping costs round trips, and passes
        # run one at a time. With a ``scope``, the rows of those names and of the work's
        # alone: what a pass reads grows with its work, not with the pool (``with_work``
        # False: those names alone, the work's left out -- a look at one tenant).
        with self.uow(snapshot=True) as tx:
            if fence:
                token, paused_until = tx.take_fence(backend.account)
            else:
                account = tx.registrar_account(backend.account)
                token, paused_until = None, account.paused_until if account is not None else None
            work = tx.pending_work(pool) if with_work else [w for w in tx.pending_work(pool) if w.subdomain in scope]
            names = None if scope is None else frozenset(scope | {w.subdomain for w in work})
            active, carried = tx.active_tenants(pool, names)
            owned = tx.owned_hosts(pool, names)
            conflicts = tx.conflicts(pool, names) if names is not None else {}
            zone = tx.pool_zone(pool)
            allocated = tx.allocation_states(pool, names) if states else {}
        return Snapshot(active, work, owned, foreign_records(zone.foreign_records if zone else None), allocated,
                        carried, token, paused_until, names, conflicts)

    def _io(self, backend: ZoneBackend, pool: str, start: float, budget: float | None, snap: Snapshot) -> PacedIO:
        """The pass's calls to the DNS host, within ``budget`` seconds from ``start``."""
        return PacedIO(self.uow, backend, pool, start, budget, snap.owned, late_write_possible=lambda p: (
            bookkeeping.late_write_possible(self.uow, p, self.clock(), self.late_write_window)))

    def _paused(self, snap: Snapshot) -> datetime | None:
        """Until when registrar calls are paused (the registrar throttled the key), or None."""
        paused = snap.paused_until
        return paused if paused is not None and paused > self.clock() else None

    def _pass(self, backend: ZoneBackend, pool: str, wanted: set[int], start: float, budget: float | None,
              *, verify: bool, accept: bool, adopt: frozenset[str], scope: frozenset[str] | None = None,
              step: tuple[str, int] | None = None) -> bool:
        began = self.clock()
        snap = self._snapshot(backend, pool, fence=True, scope=scope)
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
        io = self._io(backend, pool, start, budget, snap)
        try:
            done = backend.converge(pool, snap, io, accept=accept, adopt=adopt)
        except (ZoneBlocked, UnreadableZone) as exc:
            bookkeeping.block(self.uow, pool, snap.work, exc, self.clock())
            return False
        except LockLost as exc:
            metrics.LOCK_LOST.inc()
            log.warning("dns pass for %s: %s; nothing written, the work stays pending", pool, exc)
            with self.uow() as tx:
                tx.schedule_recheck(pool, self.clock(), began)
            return False
        except RegistrarError as exc:
            bookkeeping.fail(self.uow, backend, pool, snap.work, exc, self.clock())
            return False
        except SQLAlchemyError:
            raise  # the database's trouble, not the pool's: the work is left pending (_locked_pass)
        except Exception as exc:  # any other fault (an answer no client expected, a bug) fails this pool alone
            bookkeeping.fail(self.uow, backend, pool, snap.work, exc, self.clock())
            return False
        return bookkeeping.finish(self.uow, backend, pool, snap, done, io.owned, began, wanted, self.clock(),
                                  accepted=accept, late_write_window=self.late_write_window, step=step)
