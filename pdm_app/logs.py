"""Logging set-up: one handler on stdout whose formatter keeps credentials out of every
line, tracebacks included (``requests`` and urllib3 put the whole URL, key and all, into
their errors and debug lines)."""
from __future__ import annotations

import logging
import sys

from .config import Settings


class RedactingFormatter(logging.Formatter):
    def __init__(self, fmt: str, secrets: list[str]):
        super().__init__(fmt)
        self.secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        for secret in self.secrets:
            line = line.replace(secret, "***")
        return line


class StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time (test capture, a redirected
    stream), not the one that existed when logging was set up."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value):
        pass


FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_pdm", False)), None)
    if handler is None:
        handler = StdoutHandler()
        handler._pdm = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    handler.setFormatter(RedactingFormatter(FORMAT, [settings.dynadot_api_key or "", settings.dynadot_api_secret or ""]))
    root.setLevel(settings.log_level)
