"""Rules of a pool's DNS that every backend shares, pure: how much an operator's repair may
change at once, how failed work backs off, and when a zone is read again after a write
that may land late.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from .backend import NameDrift

# -- how much an operator's repair may change at once ---------------------------------

# As OctoDNS's MAX_SAFE_UPDATE_PCENT, MAX_SAFE_DELETE_PCENT and MIN_EXISTING_RECORDS: a
# repair that would change, or remove, more than this share of the service's records in
# a zone holding at least this many is refused unless the operator forces it.
MAX_SAFE_UPDATE_PCENT = 0.30
MAX_SAFE_DELETE_PCENT = 0.30
MIN_EXISTING_RECORDS = 10


def unsafe_plan(names: list[NameDrift], active_tenants: int, record_names: tuple[str, ...]) -> str | None:
    """Why the repair of the drift ``names`` is too large to make without ``--force``, as
    a sentence; None when it is not. Counted in hosts (a host's A records are what a pass
    rewrites):

    - the service's records in the zone: every host of the pool's ``active_tenants``
      (``len(record_names)`` each), less those the report finds missing, plus the
      orphans it finds (hosts with records that no tenant wants: they are in the zone);
    - changes: the hosts with a wrong address; removals: the orphans.

    Missing hosts are additions: they never make a repair unsafe."""
    missing = sum(len(n.missing) for n in names)
    changes = sum(len(n.wrong) for n in names)
    removals = sum(len(n.orphans) for n in names)
    existing = max(0, active_tenants * len(record_names) - missing) + removals
    if existing < MIN_EXISTING_RECORDS:
        return None
    too_many = [f"{count} of them ({count / existing:.0%}) {what}, more than {limit:.0%}"
                for count, limit, what in ((changes, MAX_SAFE_UPDATE_PCENT, "changed"),
                                           (removals, MAX_SAFE_DELETE_PCENT, "removed"))
                if count / existing > limit]
    if not too_many:
        return None
    return (f"the repair would touch too much of the service's {existing} record(s) in the zone: "
            f"{' and '.join(too_many)}; read the plan, and if it is right run it with --force")


# -- retry policy -------------------------------------------------------------------


def retry_delay(attempts: int, retry_after: float | None = None) -> float:
    """Exponential back-off for failed work, capped at five minutes; the registrar's own
    hint (a minute on its throttle error) wins when it is longer."""
    delay = min(300.0, 5.0 * (2 ** min(attempts, 6)))
    if retry_after:
        delay = max(delay, retry_after)
    return delay


# After a write that failed or timed out, the zone is read again soon, and again about a
# minute later: Dynadot has been seen applying such a write a minute late, and a read
# then repairs it within about a minute of landing rather than at the window's end.
LATE_WRITE_SOON = 5.0
LATE_WRITE_MINUTE = 60.0


def late_write_reads(window: float) -> tuple[float, ...]:
    """Seconds after a write that failed or timed out at which the zone is read again:
    soon, about a minute later, and when ``window`` (PDM_DNS_LATE_WRITE_WINDOW), the time
    the registrar may still apply it, ends."""
    return tuple(sorted({min(d, window) for d in (LATE_WRITE_SOON, LATE_WRITE_MINUTE, window)}))


def next_late_write_read(until: datetime, window: float, now: datetime) -> datetime | None:
    """The next of those reads after ``now``, for a write whose window ends at ``until``;
    None once the last is past."""
    failed_at = until - timedelta(seconds=window)
    return next((at for at in (failed_at + timedelta(seconds=d) for d in late_write_reads(window)) if at > now),
                None)


# Below this much of its budget left, a request (or a resync's slice) does not start a pass.
MIN_PASS_TIME = 0.05

# A resync of a scoped backend (PowerDNS) checks this many names per slice, each slice
# holding the lock for its names only; the retry job gives a resync under way this many
# seconds of slices per tick, so other pools' due work is not held up behind a large one.
RESYNC_SLICE = 50
RESYNC_TICK = 10.0
