"""A recording HTTP proxy in front of PowerDNS's API, for the benchmarks: the service's
calls are counted where they leave it, whatever code the service runs, so the same
figures can be taken of any revision.

Each request is forwarded as it came (one keep-alive connection to PowerDNS per proxy
thread) and counted by method and kind (``kind_of``): calls, response bytes, seconds.
``take()`` hands back the counts since the last ``take()`` and starts afresh.
"""
from __future__ import annotations

import http.client
import socket
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

WRITES = ("PATCH", "POST", "PUT", "DELETE")
# Hop-by-hop headers are the proxy's own business on each side.
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
       "proxy-connection"}


def kind_of(path: str, pool: str) -> str:
    """What a request is about: "pool zone", "zone list", "tenant zone", each with its
    sub-resource ("pool zone cryptokeys", "tenant zone rectify"), or "server"."""
    path = unquote(path.split("?", 1)[0])
    parts = path.split("/api/v1/servers/", 1)[-1].split("/")[1:]  # after the server id
    if not parts or parts == [""]:
        return "server"
    if parts == ["zones"]:
        return "zone list"
    zone = parts[1].rstrip(".").lower() if len(parts) > 1 else ""
    which = "pool zone" if zone == pool else "tenant zone"
    rest = [p for p in parts[2:] if p]
    if rest and rest[0] == "cryptokeys":
        rest = ["cryptokeys"]  # one kind, whatever the key's id
    return " ".join([which] + rest)


class Counts:
    """Per (method, kind): calls, response bytes, seconds; and the pool zone's PATCHes one
    by one (PowerDNS rectifies the whole pool zone inside each)."""

    def __init__(self):
        self.calls = defaultdict(int)
        self.bytes = defaultdict(int)
        self.seconds = defaultdict(float)
        self.pool_patch_ms: list[float] = []
        self.statuses = defaultdict(int)

    def as_dict(self) -> dict:
        keys = sorted(set(self.calls))
        return {
            "calls": sum(self.calls.values()),
            "bytes": sum(self.bytes.values()),
            "writes": sum(n for (method, _), n in self.calls.items() if method in WRITES),
            "by_kind": {f"{m} {k}": {"calls": self.calls[(m, k)], "bytes": self.bytes[(m, k)],
                                     "ms": round(self.seconds[(m, k)] * 1000, 2)} for m, k in keys},
            "pool_patch_ms": [round(x, 2) for x in self.pool_patch_ms],
            "statuses": {str(s): n for s, n in sorted(self.statuses.items())},
        }


class RecordingProxy:
    def __init__(self, target_host: str, target_port: int, pool: str):
        self.target = (target_host, target_port)
        self.pool = pool.rstrip(".").lower()
        self._lock = threading.Lock()
        self._counts = Counts()
        # Requests forwarded since the start, never reset.
        self.total = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in one write, and at once: with Nagle on, a body
            # written after its headers waits for the client's delayed ACK (40 ms a call).
            disable_nagle_algorithm = True

            def log_message(self, *args):  # quiet
                pass

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP and k.lower() != "host"}
                started = time.perf_counter()
                status, reply_headers, data = proxy._send(self.command, self.path, body, headers)
                took = time.perf_counter() - started
                proxy._count(self.command, self.path, status, len(data), took)
                self.send_response(status)
                for k, v in reply_headers:
                    if k.lower() not in HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self._headers_buffer.append(b"\r\n" + data)
                self.flush_headers()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._local = threading.local()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "RecordingProxy":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _send(self, method: str, path: str, body, headers) -> tuple[int, list, bytes]:
        for attempt in (1, 2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection(*self.target, timeout=120)
                conn.connect()
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                conn.request(method, path, body=body, headers=headers)
                reply = conn.getresponse()
                return reply.status, reply.getheaders(), reply.read()
            except (http.client.HTTPException, OSError):
                # A kept-alive connection PowerDNS closed meanwhile: once more on a new one.
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    return 502, [("Content-Type", "text/plain")], b"proxy: PowerDNS did not answer"
        raise AssertionError("unreachable")

    def _count(self, method: str, path: str, status: int, size: int, seconds: float) -> None:
        key = (method, kind_of(path, self.pool))
        with self._lock:
            self.total += 1
            c = self._counts
            c.calls[key] += 1
            c.bytes[key] += size
            c.seconds[key] += seconds
            c.statuses[status] += 1
            if key == ("PATCH", "pool zone"):
                c.pool_patch_ms.append(seconds * 1000)

    def take(self) -> dict:
        """The counts since the last take, as a dict; counting starts afresh."""
        with self._lock:
            taken, self._counts = self._counts, Counts()
        return taken.as_dict()
