"""When passes run without a request: the retry job's round of the pools that are due
(``publish_due``), and the resync that checks every name of a pool -- on a scoped
backend (PowerDNS) in slices, so that a pool of 10,000 tenants is walked a few names at
a time between commits' passes instead of under one lock for a minute.

A mixin of ``engine.DnsPublisher``: it runs its passes through the publisher's own
(``_publish``, ``_snapshot``, ``_io``).
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Iterable

from sqlalchemy.exc import SQLAlchemyError

from . import bookkeeping
from .backend import ZoneBackend
from .calls import LookingIO
from .policy import MIN_PASS_TIME, RESYNC_TICK

if TYPE_CHECKING:
    from ..models import PoolZone

log = logging.getLogger(__name__)


class Resyncs:
    resync_interval: float  # seconds from one whole resync's start to the next's (0: none)
    resync_slice: int  # names per slice

    def publish_due(self, pools: Iterable[str]) -> int:
        """The retry job: a pass for every pool with work that is due, a read owed, a
        resync due or a changed record-name list (``pools``: the managed ones). Returns
        how many passes succeeded. A resync is due ``resync_interval`` after the last one
        began, whatever commits' passes did meanwhile; on a scoped backend it goes on
        where it stopped, a few seconds of slices each tick (``RESYNC_TICK``)."""
        now = self.clock()
        with self.uow() as tx:
            due_work = set(tx.pools_with_due_work(now))
            zones = tx.pool_zones()
        managed = set(pools)
        resync = set()
        for pool in managed | set(zones):
            zone = zones.get(pool)
            if zone is not None and zone.recheck_at is not None:
                if zone.recheck_at <= now:
                    resync.add(pool)
                # else a read owed later (a failed pass's back-off) comes first
            elif (zone is not None and zone.record_names is not None
                  and zone.record_names != ",".join(self.backend(pool).record_names)):
                resync.add(pool)
            elif zone is not None and zone.resync_started_at is not None:
                resync.add(pool)  # under way
            elif pool in managed and self.resync_interval > 0 and (
                zone is None or zone.resynced_at is None
                or (now - zone.resynced_at).total_seconds() >= self.resync_interval
            ):
                resync.add(pool)
        done = 0
        for pool in sorted(due_work | resync):
            backend = self.backend(pool)
            if not backend.scoped:  # one pass does the work and reads the whole zone
                done += self._publish(backend, pool, [], budget=None, verify=pool not in due_work)
                continue
            if pool in due_work:
                worked = self._publish(backend, pool, [], budget=None)
                done += worked
                if not worked:
                    continue  # failing: the resync waits for the pass's back-off
            if pool in resync:
                done += self.resync(pool, None, time_limit=RESYNC_TICK)
        return done

    def resync(self, pool: str, budget: float | None, *, accept: bool = False, adopt: frozenset[str] = frozenset(),
               restart: bool = False, time_limit: float | None = None) -> bool:
        """Check every name of a pool on a scoped backend, and repair what is not as the
        table says, in slices: one read of the whole pool without the lock (``survey``:
        what is foreign where, and the service's zones of names no longer listed), then
        passes of ``resync_slice`` names each in name order, each taking the lock and
        letting go of it, so commits' passes run between them (and each slice carries out
        whatever work is pending). Where it stands is kept in ``pool_zones``: a resync
        stopped by ``time_limit`` or a failed slice goes on from there next time;
        ``restart`` (an operator's) begins a new one. True once every name was checked and
        each is now as the table says (none refused)."""
        backend = self.backend(pool)
        if not backend.scoped:  # one pass reads and writes the whole zone
            return self._publish(backend, pool, [], budget, verify=True, accept=accept, adopt=adopt)
        started = time.monotonic()
        with self.uow() as tx:
            zone = tx.pool_zone(pool)
        first: frozenset[str] | None = None
        right = True  # every slice found its names as the table says, or made them so
        if restart or zone is None or zone.resync_started_at is None:
            first = self._survey(backend, pool, budget, adopt)
            if first is None:
                return False
        while True:
            left = None if budget is None else budget - (time.monotonic() - started)
            if left is not None and left <= MIN_PASS_TIME:
                return False
            with self.uow() as tx:
                zone = tx.pool_zone(pool)
                after = zone.resync_after if zone is not None else None
                if after is None:
                    return False  # another process finished it meanwhile
                checked = zone.resync_checked
                ordered = [] if first is not None else tx.resync_names(pool, after, self.resync_slice)
                names = first if first is not None else frozenset(ordered)
            if first is None and not names:
                self._resync_done(backend, pool)
                return right
            # The place in the name order is the database's (its collation, not Python's);
            # the first slice (the survey's names) leaves it as it is.
            step = (ordered[-1] if ordered else after, len(names))
            began = time.monotonic()
            right &= self._slice(backend, pool, zone, names, left, step, accept=accept, adopt=adopt)
            took = time.monotonic() - began
            with self.uow() as tx:
                zone = tx.pool_zone(pool)
            if zone is None or zone.resync_checked != checked + len(names):
                return False  # the slice failed (or another process moved on): from here next time
            log.info("dns resync of %s: a slice of %d name(s) in %.3fs, %d of %d checked", pool, len(names), took,
                     zone.resync_checked, zone.resync_total)
            checked, first = zone.resync_checked, None
            if time_limit is not None and time.monotonic() - started >= time_limit:
                return False

    def _slice(self, backend: ZoneBackend, pool: str, zone: PoolZone, names: frozenset[str], budget: float | None,
               step: tuple[str, int], *, accept: bool, adopt: frozenset[str]) -> bool:
        """One slice of a resync: first a look at its names without the lock -- most
        slices find everything as the table says, and moving on past them needs no lock,
        so commits never wait for them; only a slice with something to change (or an
        operator's accept or adopt) is a pass under the lock, which reads its names again
        before it writes. ``zone``: the pool's row as the slice was chosen. True if its
        names are as the table says, or now made so."""
        if not (accept or adopt) and self._looked_right(backend, pool, zone, names, budget, step):
            return True
        return self._publish(backend, pool, [], budget, verify=True, accept=accept, adopt=adopt, scope=names,
                             step=step)

    def _looked_right(self, backend: ZoneBackend, pool: str, zone: PoolZone, names: frozenset[str],
                      budget: float | None, step: tuple[str, int]) -> bool:
        """The slice's names read without the lock and planned like a pass: True (and the
        resync moved on) if the plan writes nothing and leaves every row as it is."""
        snap = self._snapshot(backend, pool, scope=names)
        if snap.work or zone.recheck_at is not None or zone.last_error or zone.blocked_reason \
                or self._paused(snap) is not None:
            return False  # a pass is owed anyway: work to carry, a read owed, a state to clear
        io = LookingIO(self._io(backend, pool, time.monotonic(), budget, snap))
        try:
            done = backend.converge(pool, snap, io, accept=False, adopt=frozenset())
        except SQLAlchemyError:
            raise
        except Exception:  # WouldWrite, or a failed read: the pass reads again (and records a failure)
            return False
        scoped = snap.scope or frozenset()
        if done.touched or done.refused or set(done.owned | done.removing) != set(snap.owned) \
                or any(getattr(zone, field) != value for field, value in done.state.items()) \
                or {k: v for k, v in (done.conflicts or {}).items() if k in scoped} != dict(snap.conflicts):
            return False
        with self.uow() as tx:
            # Unless another process moved it on meanwhile: the caller sees that.
            tx.advance_resync(pool, (zone.resync_after, zone.resync_checked), step)
        return True

    def _survey(self, backend: ZoneBackend, pool: str, budget: float | None,
                adopt: frozenset[str]) -> frozenset[str] | None:
        """A resync's start: the whole pool read once, the pool's conflicts stored; the
        names of its first slice (the stray ones and those an operator adopts); None if
        the read failed (the pool's next pass tries again)."""
        began = self.clock()
        try:
            snap = self._snapshot(backend, pool)
            survey = backend.survey(pool, snap, self._io(backend, pool, time.monotonic(), budget, snap), adopt)
        except SQLAlchemyError as exc:
            log.error("dns resync of %s: database error, tried again later: %s", pool, type(exc).__name__)
            return None
        except Exception as exc:  # a failed read, like a failed pass without work: shown, read again later
            bookkeeping.fail(self.uow, backend, pool, [], exc, self.clock())
            return None
        with self.uow() as tx:
            tx.replace_conflicts(pool, dict(survey.conflicts))
            total = tx.count_resync_names(pool) + len(survey.stray)
            tx.update_pool_zone(pool, resync_started_at=began, resync_after="", resync_checked=0,
                                resync_total=total)
        log.info("dns resync of %s: %d name(s) to check, %d slice(s) of %d", pool, total,
                 -(-total // self.resync_slice), self.resync_slice)
        return survey.stray

    def _resync_done(self, backend: ZoneBackend, pool: str) -> None:
        with self.uow() as tx:
            zone = tx.pool_zone(pool)
            tx.update_pool_zone(pool, resynced_at=zone.resync_started_at, resync_started_at=None, resync_after=None,
                                record_names=",".join(backend.record_names))
        log.info("dns resync of %s: done, %d name(s) checked", pool, zone.resync_checked)
