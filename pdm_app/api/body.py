"""The request edge: the one place where a request's body becomes a JSON object and its
query parameters become strings the handlers may use.

Nothing a client sends reaches the service or the database unchecked:

- the body is read from the stream up to the limit (``MAX_CONTENT_LENGTH``, 16 KiB) plus
  one byte, whatever the framing: a body past the limit is ``413 too-large``, also when it
  comes chunked (no ``Content-Length``) -- it is never cut at the limit and parsed;
- it must be UTF-8 JSON (``400 invalid-json``), an object, nested at most ``MAX_DEPTH``
  levels (checked before parsing, so a deep body cannot exhaust the parser's recursion);
- no string in it -- key or value, at any depth -- and no query parameter a handler reads
  may hold a NUL character or a lone UTF-16 surrogate (``"\\ud800"`` in JSON): PostgreSQL
  cannot store the one, nothing can encode the other. They are refused
  (``400 invalid-request``, naming the field), never stripped. Names are the exception:
  a ``subdomain`` field (``NAME_FIELDS``) and ``?sub=`` (``query_name``) come as they
  are, and the name rule (``domain.label_problem``) refuses such a name as
  ``invalid-format`` before any database work -- the answer ``/check`` gives it, and
  ``422`` on reserve, commit, release and renew.
"""
from __future__ import annotations

import json
import re

from flask import request
from marshmallow import Schema, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_input_stream

from ..bounded_json import too_deep as _too_deep
from .errors import ApiError

# Every body of the contract is a flat object; clients may add fields we ignore.
MAX_DEPTH = 32
DEFAULT_LIMIT = 16 * 1024  # when the app sets no MAX_CONTENT_LENGTH

_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
_BAD_TEXT_DETAIL = "must not contain a NUL character or a lone UTF-16 surrogate"
# Top-level body fields that hold a name (see the module's docstring).
NAME_FIELDS = ("subdomain",)


class NotJson(ApiError):
    """The body cannot be read as a JSON object (release then falls back to ``?sub=``)."""

    def __init__(self, detail: str):
        super().__init__("invalid-json", detail, 400)


def _too_large(limit: int) -> RequestEntityTooLarge:
    return RequestEntityTooLarge(f"the request body is larger than {limit} bytes")


def _limit() -> int:
    return request.max_content_length or DEFAULT_LIMIT


def read_body() -> bytes:
    """The raw body, at most the limit: read ``limit + 1`` bytes at most, refuse past it."""
    cached = getattr(request, "_pdm_body", None)
    if cached is not None:
        return cached
    limit = _limit()
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    # The server's stream as it is: bounded by Content-Length when there is one, or
    # terminated by the server (chunked: wsgi.input_terminated); else empty.
    stream = get_input_stream(request.environ, max_content_length=None)
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = stream.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise _too_large(limit)
    body = b"".join(chunks)
    request._pdm_body = body
    return body


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _where(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    name = key if not _BAD_TEXT.search(key) else ascii(key)
    return f"{path}.{name}" if path else name


def check_text(value, path: str = "", names: tuple[str, ...] = ()) -> None:
    """Refuse a NUL or a lone surrogate in any string of ``value`` (keys too), except in
    the string values of ``value``'s own keys in ``names`` (left to the name rule)."""
    if isinstance(value, str):
        if _BAD_TEXT.search(value):
            raise ApiError("invalid-request", f"{path or 'the body'}: {_BAD_TEXT_DETAIL}", 400)
    elif isinstance(value, dict):
        for key, item in value.items():
            if _BAD_TEXT.search(key):
                raise ApiError("invalid-request", f"a key ({_where(path, key)}) {_BAD_TEXT_DETAIL}", 400)
            if key in names and isinstance(item, str):
                continue
            check_text(item, _where(path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_text(item, _where(path, index))


def parse_json(raw: bytes, names: tuple[str, ...] = ()):
    """UTF-8 JSON text -> its value, within the depth limit and with clean strings (but
    for the top-level ``names``, see ``check_text``)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise NotJson("the request body is not UTF-8") from None
    if _too_deep(text, MAX_DEPTH):
        raise ApiError("invalid-json", f"the request body is nested deeper than {MAX_DEPTH} levels", 400)
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError:  # json.JSONDecodeError, NaN/Infinity, an integer of too many digits
        raise NotJson("the request body is not valid JSON") from None
    check_text(value, names=names if isinstance(value, dict) else ())
    return value


def json_object(names: tuple[str, ...] = ()) -> dict | None:
    """The body as a JSON object; None when there is no body (or only whitespace).
    ``names``: its fields that hold a name (``NAME_FIELDS``)."""
    raw = read_body()
    if not raw.strip():
        return None
    data = parse_json(raw, names)
    if not isinstance(data, dict):
        raise NotJson("the request body must be a JSON object")
    return data


def load(schema: Schema, data: dict | None) -> dict:
    """``data`` (a body from ``json_object`` or ``query``) through a request schema."""
    if data is None:
        raise NotJson("a JSON object body is required")
    try:
        return schema.load(data)
    except ValidationError as err:
        fields = ", ".join(f"{name}: {' '.join(map(str, msgs))}" for name, msgs in sorted(err.messages.items()))
        raise ApiError("invalid-request", f"invalid field(s) -- {fields}", 400) from None


def query_text(name: str, default: str = "") -> str:
    """One query parameter a handler reads (the first, if repeated), checked like the body."""
    value = request.args.get(name)
    if value is None:
        return default
    if _BAD_TEXT.search(value):
        raise ApiError("invalid-request", f"{name}: {_BAD_TEXT_DETAIL}", 400)
    return value


def query_name(name: str) -> str:
    """A query parameter that holds a name (``?sub=``), as it came: a NUL or a lone
    surrogate in it is left to the name rule, which answers ``invalid-format``."""
    return request.args.get(name, "")


def query_args(*names: str) -> dict[str, str]:
    """The named query parameters that are present, each checked by ``query_text``."""
    return {name: query_text(name) for name in names if name in request.args}
