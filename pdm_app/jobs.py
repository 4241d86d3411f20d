"""Background jobs on APScheduler: the sweeper; the DNS pass for pools with work due, a
read owed or a resync due; and pruning the history past its retention.

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

    def prune_history(self) -> int:
        if not self.is_leader():
            return 0
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
