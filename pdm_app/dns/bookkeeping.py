"""What a pass leaves in the table, whatever its backend: the work done, refused, failed
or blocked; the hosts the service owns; the pool's state (``pool_zones``); and the history
events. Each outcome is one transaction; ``uow`` opens it, ``now`` is the engine's clock.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Callable

from .. import domain, metrics
from ..redaction import redact
from ..unit_of_work import UnitOfWork, event
from .backend import Converged, Snapshot, ZoneBackend
from .errors import RegistrarError, UnreadableZone, ZoneBlocked
from .policy import late_write_reads, next_late_write_read, retry_delay

log = logging.getLogger(__name__)

# History events of DNS work are made by the service itself.
DNS_CALLER = "dns"
# Where its events come from, whichever request or job ran the pass.
DNS_ORIGIN = "dns pass"
# A failed read with no work behind it is tried again after this long.
RECHECK_AFTER_FAILURE = 60.0

Uow = Callable[..., UnitOfWork]


def finish(uow: Uow, backend: ZoneBackend, pool: str, snap: Snapshot, done: Converged, owned: set[str],
           began: datetime, wanted: set[int], now: datetime, *, accepted: bool, late_write_window: float,
           step: tuple[str, int] | None = None) -> bool:
    """A converged pass's bookkeeping, in one transaction. ``owned``: the hosts recorded as
    the service's own when the pass ends. False when work of ``wanted`` was refused (with
    none wanted: when any active tenant was): its tenant is not published.

    A pass of some names only (``snap.scope``) leaves every other name's rows as they are;
    only a pass of the whole pool counts as a resync (``resynced_at``) and settles a new
    ``PDM_TENANT_RECORDS``. ``step``: the pass is a resync's slice, which moves the resync
    on (the last name checked, and how many) in the same transaction."""
    refused = [w for w in snap.work if w.action == domain.PUBLISH and w.subdomain in done.refused]
    with uow() as tx:
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
            record_failure(tx, pool, [w], why, now, action="dns-refused")
            tx.fail_work([w.id], why, now + timedelta(seconds=retry_delay(w.attempts)), refusal=code)
        if done.conflicts is not None:
            tx.replace_conflicts(pool, dict(done.conflicts), snap.scope)
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
        whole = {} if snap.scope is not None else dict(resynced_at=now, record_names=",".join(backend.record_names))
        if step is not None:
            whole.update(resync_after=step[0], resync_checked=zone.resync_checked + step[1])
        tx.update_pool_zone(
            pool,
            synced_at=now,
            last_pass_at=now,
            **whole,
            blocked_reason=None, blocked_detail=None, blocked_since=None,
            last_error=None, failing_since=None,
            # While a write may still land, the zone is read again on its schedule (a
            # pass that began before the window's end and ended after it: read now).
            recheck_at=(next_late_write_read(until, late_write_window, now) or now)
            if late_write_possible else None,
            late_write_until=until if late_write_possible else None,
            **done.state,
        )
        record_events(tx, pool, snap, done, now, accepted, was_blocked)
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


def record_events(tx: UnitOfWork, pool: str, snap: Snapshot, done: Converged, now: datetime,
                  accepted: bool, was_blocked: str | None = None) -> None:
    events, worked = [], set()
    if was_blocked:
        events.append(event(pool, "", "pool-unblocked", DNS_CALLER, now, detail=f"was blocked ({was_blocked})",
                            origin=DNS_ORIGIN))
    # A tenant released since the pass read the table is not told "published" after its
    # release (its removal follows); the rows are share-locked, so a release cannot commit
    # between this look and the event.
    published = {w.subdomain for w in snap.work if w.action == domain.PUBLISH and w.subdomain in snap.active}
    live = tx.still_active(pool, published) if published else set()
    for w in snap.work:
        if (w.subdomain, w.action) in worked:
            continue
        worked.add((w.subdomain, w.action))
        if w.subdomain in done.refused and w.action == domain.PUBLISH:
            continue  # recorded as dns-refused
        if w.action == domain.REMOVE:
            events.append(event(pool, w.subdomain, "dns-removed", DNS_CALLER, now, origin=DNS_ORIGIN))
        elif w.subdomain in live:
            events.append(event(pool, w.subdomain, "dns-published", DNS_CALLER, now, snap.active[w.subdomain],
                                    origin=DNS_ORIGIN))
    for sub, hosts in done.touched.items():
        if not any(s == sub for s, _ in worked):
            events.append(event(pool, sub, "drift-repaired", DNS_CALLER, now, snap.active.get(sub),
                                detail="records made right: " + ", ".join(hosts), origin=DNS_ORIGIN))
    if accepted:
        events.append(event(pool, "", "zone-accepted", DNS_CALLER, now,
                            detail="an operator accepted the zone as it was read (reconcile --force)", origin=DNS_ORIGIN))
    tx.record_events(events)


def fail(uow: Uow, backend: ZoneBackend, pool: str, work: list, exc: Exception, now: datetime) -> None:
    """A failed pass: a registrar error, or any other exception (an answer the client
    could not read, a bug) -- either way this pool's alone. Its work is retried with
    back-off, and the pool shows as failing (``last_error``) until a pass succeeds."""
    attempts = max((w.attempts for w in work), default=0)
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
    with uow() as tx:
        record_failure(tx, pool, work, error, now, for_pool=True)
        zone = tx.pool_zone(pool)
        since = zone.failing_since if zone is not None and zone.last_error else None
        tx.update_pool_zone(pool, last_error=error[:500], failing_since=since or now, last_pass_at=now)
        tx.fail_work([w.id for w in work], error, when)
        tx.schedule_recheck(pool, when if work else now + timedelta(seconds=RECHECK_AFTER_FAILURE), now)
        if retry_after:
            # The registrar throttles the key, not the pool: every caller waits.
            tx.update_registrar_account(backend.account, paused_until=now + timedelta(seconds=retry_after))


def block(uow: Uow, pool: str, work: list, exc: ZoneBlocked | UnreadableZone, now: datetime) -> None:
    """The pool's DNS must not be written (a broken read, a zone that cannot be written):
    blocked, visibly, until a good read or an operator's ``reconcile --force``."""
    reason = exc.reason
    detail = redact(exc.detail if isinstance(exc, ZoneBlocked) else str(exc))
    attempts = max((w.attempts for w in work), default=0)
    when = now + timedelta(seconds=retry_delay(attempts))
    log.error("dns for %s is blocked (%s): %s", pool, reason, detail)
    with uow() as tx:
        zone = tx.pool_zone(pool)
        since = zone.blocked_since if zone is not None and zone.blocked_reason == reason else None
        newly_blocked = zone is None or zone.blocked_reason is None
        tx.update_pool_zone(pool, blocked_reason=reason, blocked_detail=detail, blocked_since=since or now,
                            last_pass_at=now)
        if newly_blocked:
            tx.record_event(pool, "", "pool-blocked", DNS_CALLER, now, detail=f"{reason}: {detail}"[:500],
                            origin=DNS_ORIGIN)
        record_failure(tx, pool, work, f"blocked ({reason}): {detail}", now)
        tx.fail_work([w.id for w in work], f"blocked ({reason}): {detail}", when)
        # A block lasts until someone acts: no work behind it, no need to read often.
        tx.schedule_recheck(pool, when if work else now + timedelta(seconds=RECHECK_AFTER_FAILURE), now)


def record_failure(tx: UnitOfWork, pool: str, work: list, error: str, now: datetime, *,
                   action: str = "dns-failed", for_pool: bool = False) -> None:
    # Once per change and error: a long outage is one event, not one per retry. With
    # ``for_pool``, a pass with no work behind it (a resync, a read owed) is one event
    # for the pool, once per error (the pool's ``last_error``, read before it is set).
    seen = set()
    for w in work:
        if w.last_error != error[:500] and (w.subdomain, w.action) not in seen:
            seen.add((w.subdomain, w.action))
            tx.record_event(pool, w.subdomain, action, DNS_CALLER, now, detail=error[:500], origin=DNS_ORIGIN)
    if for_pool and not work:
        zone = tx.pool_zone(pool)
        if (zone.last_error if zone is not None else None) != error[:500]:
            tx.record_event(pool, "", action, DNS_CALLER, now, detail=error[:500], origin=DNS_ORIGIN)


def late_write_possible(uow: Uow, pool: str, now: datetime, window: float) -> None:
    """A write of ``pool`` failed or timed out: the registrar may still apply it until
    the late-write window ends. The zone is read again soon, about a minute later and
    at the window's end (``late_write_reads``; ``finish`` schedules each next one)."""
    with uow() as tx:
        tx.update_pool_zone(pool, late_write_until=now + timedelta(seconds=window))
        tx.schedule_recheck(pool, now + timedelta(seconds=late_write_reads(window)[0]), now)
