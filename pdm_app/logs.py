"""Logging set-up: one handler on stdout whose formatter masks every known secret."""
from __future__ import annotations

import logging
import sys

from .config import Settings
from .redaction import RedactingFormatter, register_secret


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
    register_secret(settings.dynadot_api_key)
    register_secret(settings.dynadot_api_secret)
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, StdoutHandler)), None)
    if handler is None:
        handler = StdoutHandler()
        root.addHandler(handler)
    handler.setFormatter(RedactingFormatter(FORMAT))
    root.setLevel(settings.log_level)
