"""Applies the DNS work queue to the registrar.

A pass for one pool reads the pool's pending work, reads the zone once, changes exactly
the records of the tenants named in that work -- to what the allocation table says now,
so the order in which passes run cannot resurrect or lose a record -- and writes the whole
zone back once. Everything else in the zone is carried over untouched.

Passes for every pool of one registrar account run one at a time deployment-wide (a
``DatabaseLock``): Dynadot serves one call at a time per key, and two whole-zone writes
in flight can land out of order.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from sqlalchemy.exc import SQLAlchemyError

from sqlalchemy.orm import sessionmaker

from . import domain, metrics
from .locks import DatabaseLock
from .registrar import Record, Registrar, RegistrarError, Zone
from .unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

DEFAULT_ZONE_TTL = 300


class UnsafeZone(Exception):
    """The zone snapshot is not one we may write back."""


@dataclass(frozen=True)
class ZonePlan:
    zone: Zone
    changed: bool
    foreign_subhost_records: int


def plan_zone(
    current: Zone,
    dirty: set[str],
    active_ips: dict[str, str],
    record_names: tuple[str, ...],
) -> ZonePlan:
    """The zone as it must be: every record of ``current`` kept as it is, except the A
    records at the hosts of the ``dirty`` tenants, which become exactly what
    ``active_ips`` says (none for a tenant that is no longer active).

    ``active_ips`` holds every active tenant of the pool; the tenants not being changed
    must already be in the snapshot, or the snapshot is not trusted (an incomplete read
    written back would wipe records)."""
    hosts_of = {sub: domain.tenant_hosts(sub, record_names) for sub in set(active_ips) | dirty}
    present = {(r.host, r.value) for r in current.records if r.rtype == "a"}
    missing = [
        host
        for sub, ip in sorted(active_ips.items())
        if sub not in dirty
        for host in hosts_of[sub]
        if (host, ip) not in present
    ]
    if missing:
        raise UnsafeZone(
            f"the zone read back lacks {len(missing)} record(s) of active tenants "
            f"(first: {missing[0]}); refusing to write it back"
        )

    owned = {host for sub in dirty for host in hosts_of[sub]}
    kept = [r for r in current.records if not (r.rtype == "a" and r.host in owned)]
    added = [
        Record(host=host, rtype="a", value=active_ips[sub])
        for sub in sorted(dirty)
        if sub in active_ips
        for host in hosts_of[sub]
    ]
    zone = Zone(domain=current.domain, records=kept + added, ttl=current.ttl or DEFAULT_ZONE_TTL)
    tenant_hosts = {host for sub in active_ips for host in hosts_of[sub]}
    foreign = sum(1 for r in zone.subhosts if not (r.rtype == "a" and r.host in tenant_hosts))
    changed = sorted(zone.records, key=_record_key) != sorted(current.records, key=_record_key) or (
        zone.ttl != current.ttl
    )
    return ZonePlan(zone=zone, changed=changed, foreign_subhost_records=foreign)


def _record_key(r: Record) -> tuple[str, str, str, str]:
    return (r.host, r.rtype, r.value, r.extra)


def retry_delay(attempts: int, error: RegistrarError | None) -> float:
    """Exponential back-off for failed work, capped at five minutes; the registrar's own
    hint (a minute on its throttle error) wins when it is longer."""
    delay = min(300.0, 5.0 * (2 ** min(attempts, 6)))
    if error is not None and error.retry_after:
        delay = max(delay, error.retry_after)
    return delay


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
        self._request_slots = threading.BoundedSemaphore(max_waiting_requests)
        self.clock = clock

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.session_factory)

    def publish_for_request(self, pool: str, work_ids: list[int], budget: float) -> bool:
        """``publish`` from a request: only a few requests of this process wait on the
        registrar at once, so a slow registrar cannot take every worker thread from
        /check; the others answer 202 at once (their work is queued all the same)."""
        if not self._request_slots.acquire(blocking=False):
            log.info("dns pass for %s: %d requests already wait on the registrar; left to the retry job",
                     pool, self.max_waiting_requests)
            return False
        try:
            return self.publish(pool, work_ids, budget)
        finally:
            self._request_slots.release()

    def publish(self, pool: str, work_ids: list[int], budget: float | None) -> bool:
        """Run a pass for ``pool`` within ``budget`` seconds (None: no limit). True when
        the work ``work_ids`` is done -- by this pass or one that ran before it."""
        start = time.monotonic()
        try:
            if not self.lock.acquire(timeout=budget):
                log.warning("dns pass for %s: registrar lock busy past %.1fs; left pending", pool, budget or 0)
                return False
            try:
                return self._pass(pool, set(work_ids), start, budget)
            finally:
                self.lock.release()
        except SQLAlchemyError as exc:
            # The work is in the table: a database hiccup only delays it to the next pass.
            log.error("dns pass for %s: database error, left pending: %s", pool, type(exc).__name__)
            return False

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

    def _remaining(self, start: float, budget: float | None) -> float | None:
        if budget is None:
            return None
        left = budget - (time.monotonic() - start)
        if left <= 0.05:
            raise RegistrarError("the request's time for the registrar ran out", transient=True)
        return left

    def _pass(self, pool: str, wanted: set[int], start: float, budget: float | None) -> bool:
        # The work and the rows it names, read from one snapshot: every work item seen
        # comes with the row change that made it (a release read as still active would
        # put the records back and call the removal done).
        with UnitOfWork(self.session_factory, snapshot=True) as tx:
            active = tx.active_ips(pool)
            work = tx.pending_work(pool)
        ids = [w.id for w in work]
        if wanted and not wanted.intersection(ids):
            return True  # an earlier pass already carried it out
        if not work:
            return True
        dirty = {w.subdomain for w in work}
        try:
            self._wait_for_registrar()
            try:
                current = self._call("get_dns", self.registrar.get_zone, pool, timeout=self._remaining(start, budget))
                plan = plan_zone(current, dirty, active, self.record_names)
                # Known before the write, so a zone too big to write is refused up front
                # at the next commit.
                with self.uow() as tx:
                    tx.record_zone_shape(pool, plan.foreign_subhost_records, self.clock())
                if plan.changed:
                    self._call("set_dns2", self.registrar.set_zone, plan.zone, timeout=self._remaining(start, budget))
            finally:
                self._mark_called()
        except (RegistrarError, UnsafeZone) as exc:
            self._fail(pool, work, exc)
            return False
        with self.uow() as tx:
            tx.finish_work(ids)
        log.info(
            "dns pass for %s applied %d change(s) for %s (%s)",
            pool, len(ids), ",".join(sorted(dirty)), "zone written" if plan.changed else "zone already right",
        )
        return True

    def _fail(self, pool: str, work: list, exc: Exception) -> None:
        attempts = max(w.attempts for w in work)
        error = exc if isinstance(exc, RegistrarError) else None
        when = self.clock() + timedelta(seconds=retry_delay(attempts, error))
        level = logging.ERROR if isinstance(exc, UnsafeZone) or (error and not error.transient) else logging.WARNING
        log.log(level, "dns pass for %s failed (attempt %d), retry at %s: %s", pool, attempts + 1,
                when.isoformat(), exc)
        with self.uow() as tx:
            tx.fail_work([w.id for w in work], f"{type(exc).__name__}: {exc}", when)
            if error is not None and error.retry_after:
                # The registrar throttles the key, not the pool: every caller waits.
                tx.update_registrar_account(self.account,
                                            paused_until=self.clock() + timedelta(seconds=error.retry_after))

    # -- pacing across processes ---------------------------------------------------

    # The client spaces the calls of one process; these carry the spacing, and the
    # registrar's request to back off, over to the next lock holder, which may be
    # another worker or replica.

    def _wait_for_registrar(self) -> None:
        with self.uow() as tx:
            account = tx.registrar_account(self.account)
        if account is None:
            return
        if account.paused_until is not None and account.paused_until > self.clock():
            left = (account.paused_until - self.clock()).total_seconds()
            raise RegistrarError(f"registrar calls paused for {left:.0f}s more (it throttled this key)",
                                 transient=True, retry_after=left)
        if account.last_call_at is not None and self.min_interval > 0:
            wait = self.min_interval - (datetime.now(timezone.utc) - account.last_call_at).total_seconds()
            if wait > 0:
                time.sleep(min(wait, self.min_interval))

    def _mark_called(self) -> None:
        if self.min_interval > 0:
            with self.uow() as tx:
                tx.update_registrar_account(self.account, last_call_at=datetime.now(timezone.utc))

    # -- background ----------------------------------------------------------------

    def publish_due(self) -> int:
        """The retry job: one pass for every pool with work that is due. Returns how
        many pools were brought up to date."""
        with self.uow() as tx:
            pools = tx.pools_with_due_work(self.clock())
        return sum(1 for pool in pools if self.publish(pool, [], budget=None))
