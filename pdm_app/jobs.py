"""Background jobs on APScheduler: the sweeper; the DNS pass for pools with work due, a
read owed or a resync due; sending webhooks; the look at each PowerDNS pool's DS at its
registrar; and pruning the history and the webhooks past their retention.

Every gunicorn worker of every replica starts a scheduler, but a job only does work in
the one process that holds the deployment-wide ``jobs`` lock (a PostgreSQL advisory lock
on a connection of its own). When that process dies its connection closes, the lock is
freed, and the next tick of another process takes over.

Start the scheduler after the fork (gunicorn's ``post_worker_init``), never in the
application factory: threads and pooled connections do not survive ``fork()``.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler

from . import metrics
from .locks import DatabaseLock

log = logging.getLogger(__name__)

# Pruning is a cheap indexed delete; hourly keeps the table near its retention.
PRUNE_INTERVAL = 3600.0
# A PowerDNS pool's DS at its registrar changes when an operator acts: a look every five
# minutes keeps pdm_dns_ds_status (and its alerts) current at one DNS query per pool.
DS_CHECK_INTERVAL = 300.0


class _SkippedTicks(logging.Filter):
    """A tick that finds the previous one still running is skipped (``max_instances=1``,
    on purpose: a slow webhook receiver keeps one tick busy): APScheduler says so at
    warning level every interval, which would flood the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


logging.getLogger("apscheduler.scheduler").addFilter(_SkippedTicks())


class JobRunner:
    def __init__(self, pdm):
        self.pdm = pdm
        self.leader = DatabaseLock(pdm.engine, "pdm-jobs")
        self.scheduler: BackgroundScheduler | None = None
        self._leader_guard = threading.Lock()

    def is_leader(self) -> bool:
        """Hold, or try to take, the jobs lock; False if another process has it."""
        with self._leader_guard:
            leading = self._hold_or_take()
            metrics.JOB_LEADER.set(1 if leading else 0)
            return leading

    def _hold_or_take(self) -> bool:
        if self.leader.held:
            if self.leader.is_alive():
                return True
            log.warning("lost the jobs lock (database connection gone)")
        if self.leader.acquire(timeout=0):
            log.info("this process now runs the background jobs")
            return True
        return False

    def sweep(self) -> int:
        if not self.is_leader():
            return 0
        swept = self.pdm.lifecycle.sweep()
        metrics.SWEPT.inc(swept)
        return swept

    def retry_dns(self) -> int:
        if not self.is_leader():
            return 0
        return self.pdm.publisher.publish_due(self.pdm.settings.managed_domains)

    def deliver_webhooks(self) -> int:
        if not self.is_leader():
            return 0
        # Asked again before each batch: a leader that lost its lock stops sending.
        return self.pdm.deliverer.deliver(self.is_leader)

    def check_ds(self) -> int:
        if not self.is_leader():
            return 0
        return len(self.pdm.operators.record_ds_checks())

    def prune_history(self) -> int:
        if not self.is_leader():
            return 0
        webhooks = self.pdm.deliverer.prune()
        if webhooks:
            log.info("pruned %d webhook message(s) past the retention", webhooks)
        pruned = self.pdm.lifecycle.prune_history()
        metrics.HISTORY_PRUNED.inc(pruned)
        if pruned:
            log.info("pruned %d history event(s) past the retention", pruned)
        return pruned

    def _guarded(self, job):
        def run():
            try:
                job()
            except Exception:  # a failed tick must not kill the schedule
                log.exception("background job %s failed", job.__name__)

        run.__name__ = job.__name__
        return run

    def start(self) -> None:
        if self.scheduler is not None:
            return
        settings = self.pdm.settings
        now = datetime.now(timezone.utc)
        scheduler = BackgroundScheduler(timezone=timezone.utc, daemon=True)
        common = dict(max_instances=1, coalesce=True, next_run_time=now)
        scheduler.add_job(self._guarded(self.sweep), "interval", seconds=settings.sweeper_interval,
                          id="sweeper", name="sweeper", **common)
        scheduler.add_job(self._guarded(self.retry_dns), "interval", seconds=settings.dns_retry_interval,
                          id="dns-retry", name="dns-retry", **common)
        scheduler.add_job(self._guarded(self.prune_history), "interval", seconds=PRUNE_INTERVAL,
                          id="history-prune", name="history-prune", **common)
        if any(settings.dns_backend(pool) == "powerdns" for pool in settings.managed_domains):
            scheduler.add_job(self._guarded(self.check_ds), "interval", seconds=DS_CHECK_INTERVAL,
                              id="ds-check", name="ds-check", **common)
        if settings.webhooks.endpoints:
            scheduler.add_job(self._guarded(self.deliver_webhooks), "interval", seconds=settings.webhooks.interval,
                              id="webhooks", name="webhooks", **common)
        scheduler.start()
        self.scheduler = scheduler
        log.info("background jobs scheduled (sweeper every %ss, dns retry every %ss)",
                 settings.sweeper_interval, settings.dns_retry_interval)

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.scheduler = None
        self.leader.release()
        metrics.JOB_LEADER.set(0)
