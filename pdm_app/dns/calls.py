"""A pass's calls to the DNS host, as the engine makes them for a backend (``PacedIO``, the
engine's ``PassIO``): each one paced, timed against the pass's budget and counted; a write
made only while the pass still holds its lock.

The client spaces the calls of one process; the pacing here carries that spacing, and the
registrar's request to back off, over to the next lock holder, which may be another
worker or replica (``registrar_accounts.last_call_at``).
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable, Iterable

from .. import metrics
from ..unit_of_work import UnitOfWork
from .backend import ZoneBackend
from .errors import LockLost, RegistrarError, WouldWrite

# Below this much of its budget left, a call is not made: the pass has run out of time.
LAST_MOMENT = 0.05


class PacedIO:
    """The engine's ``PassIO``, handed to a pass's backend. ``uow`` opens a unit of work;
    ``late_write_possible(pool)`` is called when a write was sent and failed (it may still
    land)."""

    def __init__(self, uow: Callable[..., UnitOfWork], backend: ZoneBackend, pool: str, start: float,
                 budget: float | None, owned: Iterable[str] = (), *,
                 late_write_possible: Callable[[str], None]):
        self._uow = uow
        self._backend = backend
        self._late_write_possible = late_write_possible
        self.pool = pool
        # The pass's budget runs from ``start`` (time.monotonic()).
        self._deadline = (start, budget)
        # The hosts recorded as the service's own: the snapshot's, and those ``own`` added.
        self.owned = set(owned)

    def call(self, command: str, fn, *args, **kwargs):
        """``fn(*args, timeout=<what the budget leaves>, **kwargs)``, paced and counted."""
        self._pace()
        try:
            return timed(self._backend.kind, command, fn, *args, timeout=remaining(*self._deadline), **kwargs)
        finally:
            self._mark_called()

    def own(self, hosts: Iterable[str]) -> None:
        """Record ``hosts`` as the service's own -- before the write that publishes them, so
        a crash after it cannot orphan what it published."""
        new = set(hosts) - self.owned
        if new:
            with self._uow(single=True) as tx:
                tx.own_hosts(self.pool, new)
            self.owned |= new

    def write(self, command: str, fn, *args, **kwargs):
        """A call that changes the DNS: paced, then made only while the lock is still this
        pass's (checked on the lock's own connection, after any wait). A write that fails,
        times out or gets an answer that cannot be read may still be applied later: the DNS
        is read again while it could be (``late_write_possible``)."""
        self._pace()
        try:
            if not self._backend.lock.still_held():
                raise LockLost("the registrar lock was lost (its database connection is gone)")
            timeout = remaining(*self._deadline)  # a write never sent cannot land late
            try:
                return timed(self._backend.kind, command, fn, *args, timeout=timeout, **kwargs)
            except Exception:  # whatever went wrong after the write was sent, it may land: re-raised
                self._late_write_possible(self.pool)
                raise
        finally:
            self._mark_called()

    def _pace(self) -> None:
        backend = self._backend
        if backend.min_interval <= 0:
            return
        with self._uow() as tx:
            account = tx.registrar_account(backend.account)
        if account is not None and account.last_call_at is not None:
            wait = backend.min_interval - (datetime.now(timezone.utc) - account.last_call_at).total_seconds()
            if wait > 0:
                time.sleep(min(wait, backend.min_interval))

    def _mark_called(self) -> None:
        if self._backend.min_interval > 0:
            with self._uow() as tx:
                tx.update_registrar_account(self._backend.account, last_call_at=datetime.now(timezone.utc))


class LookingIO:
    """A ``PassIO`` that reads and never writes, for a resync's look at a slice without the
    lock: the first write, or the first new host to own, ends the look (``WouldWrite``)."""

    def __init__(self, io: PacedIO):
        self._io = io
        self.pool = io.pool
        self.owned = io.owned

    def call(self, command: str, fn, *args, **kwargs):
        return self._io.call(command, fn, *args, **kwargs)

    def own(self, hosts: Iterable[str]) -> None:
        if set(hosts) - self.owned:
            raise WouldWrite("hosts to own")

    def write(self, command: str, fn, *args, **kwargs):
        raise WouldWrite(command)


def timed(provider: str, command: str, call, *args, **kwargs):
    """``call(*args, **kwargs)``, counted and timed as ``provider``'s (the DNS host's
    kind) ``command`` in the metrics. Outcomes: ok, throttled (the host asked every caller
    to wait), transient-error, error."""
    started = time.monotonic()
    outcome = "ok"
    try:
        return call(*args, **kwargs)
    except RegistrarError as exc:
        outcome = "throttled" if exc.retry_after else "transient-error" if exc.transient else "error"
        raise
    except Exception:  # an answer the client could not read is a failed call too: re-raised
        outcome = "error"
        raise
    finally:
        metrics.REGISTRAR_CALLS.labels(command, outcome, provider).inc()
        metrics.REGISTRAR_LATENCY.labels(command, provider).observe(time.monotonic() - started)


def remaining(start: float, budget: float | None) -> float | None:
    """What is left of ``budget`` seconds that began at ``start`` (None: no limit)."""
    if budget is None:
        return None
    left = budget - (time.monotonic() - start)
    if left <= LAST_MOMENT:
        raise RegistrarError("the request's time for the registrar ran out", transient=True)
    return left
