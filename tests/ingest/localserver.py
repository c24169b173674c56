"""A real HTTP server on 127.0.0.1 for the fetcher and X tests: routes are plain functions, requests recorded.

Traffic stays on loopback; every handler is bounded in time (no handler sleeps longer than a few seconds), and
the fixture shuts the server down. :class:`LoopbackOnlyConnector` is the fetcher's connector for tests: it
fails the test if a connection to anything but loopback is even attempted.
"""

from __future__ import annotations

import contextlib
import ipaddress
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpcore
import pytest


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = field(repr=False)


Route = Callable[["Handler", Seen], None]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stalls
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _handle(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = Seen(
            self.command, split.path, parse_qs(split.query), {k.lower(): v for k, v in self.headers.items()}, body
        )
        owner = self.server.owner
        with owner.lock:
            owner.requests.append(seen)
            owner.hits[split.path] += 1
        route = owner.routes.get(split.path)
        if route is None:
            self.send_bytes(404, b"not found", "text/plain")
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            route(self, seen)

    do_GET = _handle
    do_POST = _handle
    do_DELETE = _handle

    def send_bytes(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def start_chunked(self, status: int = 200, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def drop(self) -> None:
        """Cut the connection without finishing the response (a mid-stream disconnect)."""
        self.close_connection = True
        self.wfile.flush()
        try:
            import socket

            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: LocalServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LocalServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Seen] = []
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.owner = self
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def start(self) -> LocalServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- ready-made routes ------------------------------------------------------------------------------

    def serve(self, path: str, body: bytes, content_type: str = "image/jpeg", status: int = 200) -> str:
        self.routes[path] = lambda h, _s: h.send_bytes(status, body, content_type)
        return self.url(path)

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        self.routes[path] = lambda h, _s: h.send_bytes(status, b"", "text/plain", {"Location": location})
        return self.url(path)

    def sequence(self, path: str, statuses: Sequence[int], body: bytes, content_type: str = "image/jpeg") -> str:
        """Answer the n-th request with ``statuses[n]`` (the last one repeats); 200 carries ``body``."""
        calls = iter(range(1_000_000))

        def route(h: Handler, _s: Seen) -> None:
            status = statuses[min(next(calls), len(statuses) - 1)]
            h.send_bytes(status, body if status == 200 else b"error", content_type if status == 200 else "text/plain")

        self.routes[path] = route
        return self.url(path)

    def endless(self, path: str, head: bytes, chunk_size: int = 64 << 10, max_bytes: int = 64 << 20) -> str:
        """A chunked body without Content-Length that goes on (up to ``max_bytes``): only a reader's cap ends it."""
        self.sent: dict[str, int] = getattr(self, "sent", {})

        def route(h: Handler, _s: Seen) -> None:
            h.start_chunked(content_type="image/jpeg")
            sent = 0
            h.chunk(head)
            try:
                while sent < max_bytes:
                    h.chunk(b"\0" * chunk_size)
                    sent += chunk_size
            finally:
                self.sent[path] = sent
                h.drop()

        self.routes[path] = route
        return self.url(path)

    def slow(self, path: str, delay_s: float, body: bytes) -> str:
        def route(h: Handler, _s: Seen) -> None:
            time.sleep(delay_s)
            h.send_bytes(200, body, "image/jpeg")

        self.routes[path] = route
        return self.url(path)


class LoopbackOnlyConnector(httpcore.NetworkBackend):
    """The fetcher's connector in tests: records every attempt and FAILS THE TEST on a non-loopback address
    (``pytest.fail`` raises a BaseException, which no ``except Exception`` of the fetcher can swallow)."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, int]] = []
        self._real = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        self.attempts.append((host, port))
        if not ipaddress.ip_address(host).is_loopback:
            pytest.fail(f"the fetcher tried to connect to {host}:{port}, which is not loopback")
        return self._real.connect_tcp(host, port, timeout, local_address, socket_options)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        pytest.fail("the fetcher tried to open a unix socket")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class TableResolver:
    """Names resolve only through this table (nothing reaches real DNS); calls are counted."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: Counter[str] = Counter()

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls[host] += 1
        if host not in self.table:
            raise OSError(f"{host}: unknown to the test resolver")
        answer = self.table[host]
        return list(answer)


def local_server() -> Iterator[LocalServer]:
    server = LocalServer().start()
    try:
        yield server
    finally:
        server.stop()
