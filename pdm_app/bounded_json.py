"""JSON text that someone else wrote -- a request body, a provider's answer -- parsed
without letting its nesting exhaust the parser's recursion: the depth is measured first,
by a linear scan, and text nested past the limit is refused before ``json.loads`` sees it
(whose RecursionError is not a ValueError, and would escape every ``except ValueError``).
"""
from __future__ import annotations

import json
from typing import Any

# Every answer the service reads nests a handful of levels; 32 leaves room for providers
# that wrap theirs in a few more, and is the request bodies' limit too.
MAX_DEPTH = 32


class UnreadableJson(ValueError):
    """Not UTF-8 JSON, or nested deeper than allowed. The text is never quoted."""


def too_deep(text: str, limit: int) -> bool:
    """Whether JSON ``text`` nests arrays/objects deeper than ``limit`` (brackets inside
    strings do not count). Linear; runs before the recursive parser sees the text."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def parse(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """``raw`` as JSON (UTF-8, a BOM allowed), nested at most ``max_depth`` levels; else
    UnreadableJson."""
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, (bytes, bytearray)) else raw
    except UnicodeDecodeError:
        raise UnreadableJson("not UTF-8") from None
    if too_deep(text, max_depth):
        raise UnreadableJson(f"nested deeper than {max_depth} levels")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # malformed, NaN/Infinity, an integer of too many digits
        raise UnreadableJson("not valid JSON") from None
