"""The registrar boundary: what the service needs from whoever hosts a pool's DNS.

The service only ever reads a whole zone and writes a whole zone back (Dynadot's
``set_dns2`` replaces the zone; see ``dynadot.py``), so the interface is two calls.
"""
from __future__ import annotations

from typing import Protocol

from .zone import Record, Zone


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


class Registrar(Protocol):
    def get_zone(self, domain: str, *, timeout: float | None = None) -> Zone:
        """The complete current zone of ``domain``; raises RegistrarError if it cannot be
        read completely (never a partial zone)."""

    def set_zone(self, zone: Zone, *, timeout: float | None = None) -> None:
        """Replace the whole zone of ``zone.domain`` with exactly ``zone``."""


__all__ = ["Record", "Registrar", "RegistrarError", "UnreadableZone", "Zone"]
