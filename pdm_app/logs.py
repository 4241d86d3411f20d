"""Logging: one JSON object per line on stdout, every known secret masked, and the
request id of the request being served on every line logged while serving it."""
from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

from .config import Settings
from .redaction import redact, register_secret

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# Where the changes made while serving come from ("api 10.1.2.3", "console 10.1.2.3",
# "cli"): the history records it beside each event (``unit_of_work.event``).
origin: contextvars.ContextVar[str | None] = contextvars.ContextVar("origin", default=None)

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is logged.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


# Anything json cannot write (a datetime, an exception passed in extra) as its str().
_ENCODER = json.JSONEncoder(default=str)


class JsonFormatter(logging.Formatter):
    # (second, "2026-01-31T12:00:59"): a line per request, most of them in the same second.
    _second: tuple[int, str] = (-1, "")

    def timestamp(self, created: float) -> str:
        """``created`` in UTC, ISO 8601 to the millisecond: ``2026-01-31T12:00:59.123+00:00``."""
        second = int(created)
        micros = round((created - second) * 1e6)  # rounded to the microsecond as datetime does
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        cached = self._second
        if cached[0] != second:
            cached = self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return f"{cached[1]}.{micros // 1000:03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid:
            entry["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # The line as a whole is what leaves the process: mask secrets last.
        return redact(_ENCODER.encode(entry))


class CurrentStreamHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` (or ``sys.stderr``) is at the time (test capture,
    a redirected stream), not the one that existed when logging was set up."""

    def __init__(self, which: str = "stdout"):
        self.which = which
        super().__init__()

    @property
    def stream(self):
        return getattr(sys, self.which)

    @stream.setter
    def stream(self, _value):
        pass


class StdoutHandler(CurrentStreamHandler):
    """The service's log lines: stdout."""


def configure_logging(settings: Settings) -> None:
    register_secret(settings.dynadot_api_key)
    register_secret(settings.dynadot_api_secret)
    for token in settings.api_tokens:
        register_secret(token.secret)
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, StdoutHandler)), None)
    if handler is None:
        handler = StdoutHandler()
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter())
    root.setLevel(settings.log_level)
    # APScheduler logs every run of every job at INFO: only its warnings are news.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
