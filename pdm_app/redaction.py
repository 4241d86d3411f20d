"""Keeps credentials out of every line the service writes.

``requests`` and urllib3 put the whole URL -- the Dynadot key is a query parameter --
into their exception messages and their DEBUG lines (and a WARNING when urllib3 retries a
broken connection). Every secret the service knows is registered here; ``redact`` masks
them, and any ``key=`` URL parameter, wherever text is about to leave the process.
"""
from __future__ import annotations

import logging
import re
import threading
from urllib.parse import quote, quote_plus

# ``key=...`` in any URL-ish text, whether or not the key was registered.
_KEY_IN_URL = re.compile(r"(?i)([?&;](?:api)?key=)[^&\s'\"<>)]+")

# Raw and URL-encoded forms. Never removed: a key once used stays secret.
_SECRETS: set[str] = set()
_LOCK = threading.Lock()
# The same, longest first, as redact applies them: sorted when one is added, not on every
# line (redact runs on every line the service writes, one per request at least).
_ORDERED: tuple[str, ...] = ()


# Masking a very short value would garble every line it occurs in and protect nothing.
MIN_SECRET_LENGTH = 8


def register_secret(secret: str | None) -> None:
    global _ORDERED
    if not secret or len(secret) < MIN_SECRET_LENGTH:
        return
    with _LOCK:
        for form in (secret, quote(secret, safe=""), quote_plus(secret)):
            if form:
                _SECRETS.add(form)
        _ORDERED = tuple(sorted(_SECRETS, key=len, reverse=True))


def redact(text: str) -> str:
    for secret in _ORDERED:
        text = text.replace(secret, "***")
    return _KEY_IN_URL.sub(r"\1***", text)


class RedactFilter(logging.Filter):
    """Rewrites a record before any handler -- ours, a test's, a library's -- sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to fix
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info:
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            record.exc_text, record.exc_info = redact(text), None
        return True


_URLLIB3_LOGGERS = (
    "urllib3", "urllib3.connectionpool", "urllib3.connection", "urllib3.response",
    "urllib3.poolmanager", "urllib3.util.retry", "urllib3.contrib.pyopenssl",
)
_FILTER = RedactFilter()
for _name in _URLLIB3_LOGGERS:
    # Logger filters only see records of that exact logger, hence one per module.
    if not any(isinstance(f, RedactFilter) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_FILTER)
