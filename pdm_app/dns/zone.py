"""A registrar-neutral picture of one domain's DNS zone."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Record:
    """One record. ``host`` is "" for the apex, else the sub-host relative to the domain
    ("console.acme", "*.acme"). ``rtype`` is lower-case ("a", "mx", "txt", ...).
    ``extra`` is Dynadot's ``Value2``/``recordx``: MX distance, forward type, stealth
    title or e-mail alias -- never a TTL."""

    host: str
    rtype: str
    value: str
    extra: str = ""

    @property
    def is_apex(self) -> bool:
        return self.host == ""


@dataclass
class Zone:
    domain: str
    records: list[Record] = field(default_factory=list)
    # One TTL for the whole zone (Dynadot has no per-record TTL); None when unknown.
    ttl: int | None = None

    @property
    def apex(self) -> list[Record]:
        return [r for r in self.records if r.is_apex]

    @property
    def subhosts(self) -> list[Record]:
        return [r for r in self.records if not r.is_apex]
