"""How values read on a console page (Jinja filters), and in its CSV export."""
from __future__ import annotations

from datetime import datetime, timezone

from ..domain import utcnow


_DNS_CLASSES = {"published": "ok", "pending": "warn", "removing": "warn", "conflict": "bad", "refused": "bad"}
_RECORD_CLASSES = {"ok": "ok", "held": "plain", "missing": "bad", "wrong": "bad", "left over": "warn",
                   "not ours": "plain"}


def when(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "never"
    text = value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{text} ({age(value, now)})" if now is not None else text


def age(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "never"
    seconds = int(((now or utcnow()) - value).total_seconds())
    ahead, seconds = seconds < 0, abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            amount = f"{seconds // size}{unit}"
            break
    else:
        amount = f"{seconds}s"
    return f"in {amount}" if ahead else f"{amount} ago"


def duration(seconds: float) -> str:
    seconds = int(seconds)
    parts = [f"{seconds // 3600}h" if seconds >= 3600 else "", f"{seconds % 3600 // 60}m" if seconds % 3600 >= 60
             else "", f"{seconds % 60}s" if seconds % 60 else ""]
    return "".join(parts) or "0s"


def dns_class(state: str) -> str:
    return _DNS_CLASSES.get(state, "plain")


def record_class(status: str) -> str:
    return _RECORD_CLASSES.get(status, "plain")


def csv_cell(value) -> str:
    """A CSV cell a spreadsheet shows as text: never a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def now() -> datetime:
    return utcnow()


FILTERS = {"when": when, "age": age, "duration": duration, "dns_class": dns_class, "record_class": record_class}
