"""Bounded outbound HTTP: every call the service makes to a provider (a customer's
registrar, the pool's Dynadot, PowerDNS) has one total deadline -- connecting, the
headers and the body together -- and a cap on the answer's size, checked while it is
read.

A socket timeout bounds each read, not the call: a server that sends one byte a second
never trips it. Here a watchdog timer shuts the call's connection at the deadline. It
shuts a duplicate of the socket's descriptor, which acts on the connection itself, so the
read blocked in whatever layer (TLS, status line, headers, body) wakes up at once; no
object another thread is using is touched. urllib3's retries stop once the deadline is
spent, and each attempt's connect and read timeouts are cut to what is left.

The body is streamed (``stream=True``), at most the cap plus one byte: a larger answer
fails as soon as the cap is passed (or at once, when Content-Length says so). Answers are
asked for uncompressed, so the cap is on what the caller gets.

Errors name what went wrong, never the URL or an exception's text (some providers carry
a secret in the query string).
"""
from __future__ import annotations

import http.client
import socket
import threading
import time
from typing import Any, cast

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.util import Retry, Timeout

# Below this much time left, no new attempt is started.
_MIN_ATTEMPT = 0.05
_CHUNK = 64 * 1024


class OutboundError(Exception):
    """A call that gave no usable answer. ``permanent``: repeating it cannot help."""

    permanent = False


class TimedOut(OutboundError):
    def __init__(self) -> None:
        super().__init__("no whole answer within the deadline")


class TooLarge(OutboundError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the answer is larger than {limit} bytes")
        self.limit = limit


class Unreachable(OutboundError):
    """No answer: refused, reset, cut short, not HTTP; or (``permanent``) the URL is
    unusable."""

    def __init__(self, kind: str, *, permanent: bool = False) -> None:
        super().__init__(f"no answer ({kind})")
        self.kind = kind
        self.permanent = permanent


class Unsendable(OutboundError):
    """A header value that cannot be sent (a credential with characters no header holds)."""

    permanent = True

    def __init__(self) -> None:
        super().__init__("a header value cannot be sent")


# -- the watchdog --------------------------------------------------------------------------

_current = threading.local()


class _Watch:
    """One call's deadline, and a duplicate of the descriptor of the socket it is using
    right now (its own, closed when the call ends or the connection goes back to the
    pool: the watchdog never touches a socket another call may be using)."""

    def __init__(self, end: float) -> None:
        self.end = end
        self._lock = threading.Lock()
        self._conn: Any = None
        self._dup: socket.socket | None = None
        self.fired = False
        self._done = False

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def attach(self, conn: Any, sock: socket.socket) -> None:
        with self._lock:
            if self._done:
                return
            self._close_dup()
            try:
                self._dup = socket.fromfd(sock.fileno(), sock.family, sock.type)
            except OSError:
                return
            self._conn = conn
            if self.fired:  # connected after the deadline
                self._cut()

    def detach(self, conn: Any) -> None:
        """The connection went back to the pool: it may serve another call now."""
        with self._lock:
            if self._conn is conn:
                self._close_dup()

    def fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            self._cut()

    def finish(self) -> None:
        with self._lock:
            self._done = True
            self._close_dup()

    def _cut(self) -> None:
        # shutdown acts on the connection, not the descriptor: the read blocked on the
        # original wakes with an EOF.
        if self._dup is not None:
            try:
                self._dup.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the peer

    def _close_dup(self) -> None:
        self._conn = None
        if self._dup is not None:
            self._dup.close()
            self._dup = None


def _watch() -> _Watch | None:
    return getattr(_current, "watch", None)


class _Watched:
    """Mixed into urllib3's connections: a new socket, and a pooled connection about to be
    used, report themselves to the current call's watch."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        watch = _watch()
        if watch is not None:
            watch.attach(self, sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> Any:
        watch = _watch()
        sock = getattr(self, "sock", None)
        if watch is not None and sock is not None:
            watch.attach(self, sock)
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _PoolMixin:
    def _put_conn(self, conn: Any) -> None:
        watch = _watch()
        if watch is not None and conn is not None:
            watch.detach(conn)
        super()._put_conn(conn)  # type: ignore[misc]


class _WatchedHTTPPool(_PoolMixin, HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(_PoolMixin, HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class DeadlineRetry(Retry):
    """urllib3 Retry that starts no attempt once the call's deadline is (nearly) spent and
    never sleeps past it. Outside ``request`` it is a plain Retry."""

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        new_retry = super().increment(method, url, response, error, _pool, _stacktrace)
        watch = _watch()
        # No attempt that would start (after its backoff) with no time left.
        if watch is not None and (watch.fired or watch.remaining() - new_retry.get_backoff_time() < _MIN_ATTEMPT):
            raise MaxRetryError(_pool, url, error or ResponseError("deadline spent"))  # type: ignore[arg-type]
        return new_retry

    def get_backoff_time(self) -> float:
        backoff = super().get_backoff_time()
        watch = _watch()
        return backoff if watch is None else min(backoff, max(0.0, watch.remaining()))


class _DeadlineTimeout(Timeout):
    """urllib3 clones the timeout for every attempt: each clone's connect and read limits
    are cut to what is left of the call."""

    def __init__(self, connect: float, read: float, end: float) -> None:
        super().__init__(connect=connect, read=read)
        self._end = end

    def clone(self) -> Timeout:
        left = max(self._end - time.monotonic(), 0.01)
        return Timeout(connect=min(float(self._connect), left), read=min(float(self._read), left))  # type: ignore[arg-type]


class BoundedAdapter(HTTPAdapter):
    """The transport adapter ``request`` needs on the session: its connections answer to
    the watchdog. ``max_retries`` should be a ``DeadlineRetry`` (or 0)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if hasattr(manager, "pool_classes_by_scheme"):
            manager.pool_classes_by_scheme = dict(_POOLS)
        return manager


def mount(session: requests.Session, retry: Retry | int = 0, *, prefixes: tuple[str, ...] = ("http://", "https://"),
          pool_maxsize: int = 10) -> requests.Session:
    """Put a ``BoundedAdapter`` with ``retry`` on ``session`` for ``prefixes``."""
    for prefix in prefixes:
        session.mount(prefix, BoundedAdapter(max_retries=retry, pool_connections=1, pool_maxsize=pool_maxsize))
    return session


# -- one call --------------------------------------------------------------------------


def request(session: requests.Session, method: str, url: str, *, deadline: float, max_bytes: int,
            connect_timeout: float | None = None, read_timeout: float | None = None,
            **kwargs: Any) -> requests.Response:
    """One HTTP call that ends, answer read, within ``deadline`` seconds, with a body of at
    most ``max_bytes`` (``response.content`` holds it); ``connect_timeout`` and
    ``read_timeout`` may bound each connect and each read further. Redirects are not
    followed. Any status is returned; failures are OutboundError subclasses without URL or
    exception text, raised with no exception chained. The session needs a BoundedAdapter
    (``mount``)."""
    adapter = session.get_adapter(url)
    if not isinstance(adapter, BoundedAdapter):
        raise TypeError("the session has no BoundedAdapter for this URL (outbound.mount)")
    end = time.monotonic() + deadline
    if deadline < _MIN_ATTEMPT:
        raise TimedOut()
    headers = dict(kwargs.pop("headers", None) or {})
    headers["Accept-Encoding"] = "identity"
    timeout = _DeadlineTimeout(min(connect_timeout or deadline, deadline), min(read_timeout or deadline, deadline),
                               end)
    watch = _Watch(end)
    timer = threading.Timer(deadline, watch.fire)
    timer.daemon = True
    _current.watch = watch
    timer.start()
    failure: OutboundError | None = None
    response: requests.Response | None = None
    try:
        response = session.request(method, url, headers=headers, timeout=timeout, stream=True,
                                   allow_redirects=False, **kwargs)
        body = _read(response, max_bytes)
        if watch.fired:  # a body without a length ends at the cut: it may be short
            raise TimedOut()
        response._content = body
        response._content_consumed = True
    except OutboundError as exc:
        failure = exc
    except (UnicodeError, requests.exceptions.InvalidHeader):
        failure = Unsendable()
    except (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError,
            ValueError) as exc:
        if watch.fired or watch.remaining() < _MIN_ATTEMPT or isinstance(
                exc, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
            failure = TimedOut()
        else:
            permanent = isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                                         requests.exceptions.InvalidSchema))
            failure = Unreachable(type(exc).__name__, permanent=permanent)
    finally:
        # First stop the watchdog, then let the connection go back to the pool.
        timer.cancel()
        watch.finish()
        _current.watch = None
        if response is not None:
            response.close()
    if failure is not None:
        raise failure  # outside the except: no exception (with its URL) chained or kept as context
    return cast(requests.Response, response)


def _read(response: requests.Response, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes; TooLarge as soon as more arrives."""
    length = response.headers.get("Content-Length", "")
    if length.isascii() and length.isdigit() and int(length) > limit:
        raise TooLarge(limit)
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise Unreachable("a compressed answer, which was not asked for")
    raw = response.raw
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = raw.read(min(_CHUNK, limit + 1 - size), decode_content=False)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise TooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
