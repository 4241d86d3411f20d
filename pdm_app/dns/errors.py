"""What goes wrong with a pool's DNS, as the engine and every backend raise it.

``RegistrarError``: a call to the pool's DNS host (the registrar, or PowerDNS) failed;
``UnreadableZone`` and ``ZoneBlocked``: the pool is blocked until a good read or an
operator steps in; ``LockLost``: the pass lost its lock and must stop writing;
``WouldWrite``: a look without the lock found something to change.
"""
from __future__ import annotations


class RegistrarError(Exception):
    """A registrar call failed. The message never carries credentials.

    ``transient`` errors (transport, 5xx, throttling, "try again" envelopes) are worth
    retrying; ``retry_after`` is a hint in seconds (a minute for the throttle error).
    """

    def __init__(self, message: str, *, transient: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


class UnreadableZone(RegistrarError):
    """The registrar answered, but with a zone snapshot that must not be written back:
    it cannot be parsed completely (``reason`` "unreadable-zone") or the domain is served
    by other name servers ("not-dynadot-dns"). Retrying soon will not help; the pool is
    blocked until a read is good again or an operator steps in."""

    def __init__(self, message: str, reason: str):
        super().__init__(message, transient=False)
        self.reason = reason


# Why a pool's zone is not written back (``pool_zones.blocked_reason``).
UNREADABLE = "unreadable-zone"
NOT_DYNADOT = "not-dynadot-dns"
LOST_FOREIGN = "lost-foreign-records"
TOO_LARGE = "zone-too-large"


class ZoneBlocked(Exception):
    """The snapshot looks like a broken read, or the wanted zone cannot be written: the
    pool is blocked (visibly) until a good read or an operator's ``reconcile --force``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class LockLost(Exception):
    """The registrar lock's connection went away mid-pass: another process may hold it."""


class WouldWrite(Exception):
    """A look at some names without the lock (``calls.LookingIO``) came to a write: the
    names are not as the table says, and a pass under the lock must read them again."""
