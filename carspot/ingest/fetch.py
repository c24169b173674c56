"""Fetch an image URL without letting the URL choose what we connect to (SSRF), for every source with URLs.

One request, hop by hop::

    URL ──▶ scheme http/https, a host, no credentials                         else BadUrl        "bad_url"
        ──▶ resolve the host (the injected ``resolver``; an IP literal is taken as is)
        ──▶ every address allowed by the :class:`AddressPolicy`              else SsrfRefused   "ssrf_refused"
        ──▶ connect to that vetted address (pinned: no second DNS lookup, so DNS rebinding cannot swap it)
            through the injected ``connector`` (an httpcore ``NetworkBackend``), which re-checks the policy
        ──▶ 3xx: the next hop goes through all of the above again (at most ``max_redirects`` hops)
        ──▶ 2xx: stream the body, aborting past ``max_bytes`` (and at once on a bigger Content-Length);
            the first bytes must announce a picture (sniffed; Content-Type is never trusted)

Refusals happen before a socket is opened: a test can inject a resolver that knows only its own names and a
connector that fails the test on any non-loopback address. Timeouts and 5xx are retried with capped
exponential backoff and jitter (tenacity); everything else fails at once. Every failure is an
:class:`~carspot.ingest.errors.IngestError` with a reason code, so it reaches the dead-letter topic.

httpx does the HTTP (URL parsing, redirects' ``Location`` joining, streaming); its connection pool is httpcore's,
built here with the pinning network backend, which is the seam httpx's own ``HTTPTransport`` does not expose.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from carspot.ingest.errors import (
    BadUrl,
    EmptyImage,
    FetchError,
    FetchTimeout,
    HttpClientError,
    HttpNotFound,
    HttpServerError,
    ImageTooLarge,
    IngestError,
    SsrfRefused,
    TooManyRedirects,
    UnresolvableHost,
)
from carspot.ingest.images import refusal_for, sniff_image_format

logger = logging.getLogger("carspot.ingest.fetch")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``resolver(host, port)`` → the IP addresses (as text) the host resolves to; raise ``OSError`` if none.
Resolver = Callable[[str, int], Sequence[str]]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_PINS = 4096
"""Most vetted host addresses the transport remembers (the least recently used are forgotten)."""
_SNIFF_BYTES = 64
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")


def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver (``getaddrinfo``), addresses in its order, without repeats."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which addresses the fetcher may connect to: public unicast only, unless told otherwise.

    Refused: private (10/8, 172.16/12, 192.168/16, fc00::/7), loopback, link-local (169.254/16 with the cloud
    metadata address, fe80::/10), multicast, unspecified, reserved, shared (100.64/10) and documentation
    ranges, and IPv6 forms that embed such an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, NAT64, 6to4,
    Teredo). ``allow_loopback`` lets 127/8 and ::1 through (tests, a local mirror); nothing else can be allowed.
    """

    allow_loopback: bool = False

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` is refused, or None when it may be connected to."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            why = self.refusal(address.ipv4_mapped)  # a socket to ::ffff:a.b.c.d goes to a.b.c.d
            return None if why is None else f"{why} (IPv4-mapped {address})"
        for embedded in _embedded_ipv4(address):
            why = self.refusal(embedded)
            if why is not None:
                return f"{why} (embedded in {address})"
        if address.is_loopback:
            return None if self.allow_loopback else "loopback"
        if address.is_multicast:
            return "multicast"
        if address.is_link_local:
            return "link-local"
        if address.is_unspecified:
            return "unspecified"
        if address.is_private:
            return "private"
        if address.is_reserved:
            return "reserved"
        if not address.is_global:
            return "not globally routable"
        return None


def _embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.teredo is not None:
        found.append(address.teredo[1])
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchLimits:
    """Bounds of one fetch; ``attempts`` counts the first try (timeouts and 5xx only are tried again)."""

    max_bytes: int = 20 << 20
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    total_timeout_s: float = 30.0  # per attempt, redirects included: a slow drip cannot hold a worker
    max_redirects: int = 5
    attempts: int = 3
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 8.0
    backoff_jitter_s: float = 0.5

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.attempts < 1 or self.max_redirects < 0:
            raise ValueError("max_bytes and attempts must be positive, max_redirects >= 0")
        if min(self.connect_timeout_s, self.read_timeout_s, self.total_timeout_s) <= 0:
            raise ValueError("timeouts must be positive")


@dataclass(frozen=True, slots=True)
class FetchResult:
    """The body of the last hop and how it was obtained."""

    url: str
    data: bytes = field(repr=False)
    image_format: str
    content_type: str | None
    seconds: float
    redirects: int
    attempts: int


@dataclass(frozen=True, slots=True)
class FetchEvent:
    """What an ``observe`` callback gets once per :meth:`SafeFetcher.fetch`: ``reason`` is None on success."""

    url: str
    seconds: float
    reason: str | None
    attempts: int
    size: int


class SafeFetcher:
    """Thread-safe; one per process is enough (it pools connections to the vetted addresses).

    ``resolver`` and ``connector`` are the seams: tests pass a resolver that knows only their own names and a
    connector (an httpcore ``NetworkBackend``) that fails on any non-loopback address. ``sleep`` is the
    backoff's sleep; ``observe`` is told the outcome and latency of each fetch (metrics, benchmarks).
    """

    def __init__(
        self,
        *,
        policy: AddressPolicy | None = None,
        limits: FetchLimits | None = None,
        resolver: Resolver = system_resolver,
        connector: httpcore.NetworkBackend | None = None,
        user_agent: str = "CarSpot-ingest/0.1",
        sleep: Callable[[float], None] = time.sleep,
        observe: Callable[[FetchEvent], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy or AddressPolicy()
        self.limits = limits or FetchLimits()
        self._sleep = sleep
        self._observe = observe
        self._monotonic = monotonic
        self._transport = _VettedTransport(
            policy=self.policy, resolver=resolver, connector=connector or httpcore.SyncBackend()
        )
        lim = self.limits
        self._client = httpx.Client(
            transport=self._transport,
            follow_redirects=False,
            trust_env=False,  # a proxy from the environment would connect on our behalf, unvetted
            timeout=httpx.Timeout(
                connect=lim.connect_timeout_s, read=lim.read_timeout_s, write=lim.read_timeout_s, pool=5.0
            ),
            # identity: a compressed body would be inflated in memory before the size check could see it
            headers={"User-Agent": user_agent, "Accept": "image/*", "Accept-Encoding": "identity"},
        )

    def fetch(self, url: str) -> FetchResult:
        """The picture at ``url``; raises an ``IngestError`` subclass (with its reason) on any failure."""
        started = self._monotonic()
        attempts = 0

        def attempt() -> FetchResult:
            nonlocal attempts
            attempts += 1
            return self._fetch_once(url, started_attempt=self._monotonic(), attempt=attempts)

        lim = self.limits
        retrying = Retrying(
            stop=stop_after_attempt(lim.attempts),
            wait=wait_exponential_jitter(
                initial=lim.backoff_initial_s, max=lim.backoff_max_s, jitter=lim.backoff_jitter_s
            ),
            retry=retry_if_exception_type((FetchTimeout, HttpServerError)),
            sleep=self._sleep,
            before_sleep=lambda state: logger.info(
                "fetch of %s failed (%s), attempt %d of %d; backing off",
                _safe(url),
                state.outcome.exception() if state.outcome else "?",
                state.attempt_number,
                lim.attempts,
            ),
            reraise=True,
        )
        try:
            result = retrying(attempt)
        except IngestError as exc:
            self._report(url, started, exc.reason, attempts, 0)
            raise
        except Exception as exc:  # a bug of ours or of a library: still a reasoned failure, never silent
            self._report(url, started, FetchError.reason, attempts, 0)
            raise FetchError(f"{type(exc).__name__}: {exc}", url=_safe(url)) from exc
        self._report(url, started, None, attempts, len(result.data))
        return result

    def fetch_bytes(self, url: str) -> bytes:
        """Just the bytes: what a :class:`~carspot.ingest.sources.RawPost`'s ``read_image`` returns."""
        return self.fetch(url).data

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SafeFetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- one attempt ------------------------------------------------------------------------------------

    def _fetch_once(self, url: str, *, started_attempt: float, attempt: int) -> FetchResult:
        lim = self.limits
        current = _parse(url)
        seen = {str(current)}
        for hop in range(lim.max_redirects + 1):
            request = self._client.build_request("GET", current)
            response = self._client.send(request, stream=True)
            try:
                if response.status_code in _REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise HttpClientError(
                            f"{response.status_code} without a Location",
                            status=response.status_code,
                            url=_safe(current),
                        )
                    following = _parse(current.join(location))
                    if str(following) in seen:
                        raise TooManyRedirects(f"redirect loop back to {_safe(following)}", url=_safe(current))
                    seen.add(str(following))
                    logger.debug("redirect %d: %s -> %s", hop + 1, _safe(current), _safe(following))
                    current = following
                    continue
                _check_status(response, current)
                data, image_format = self._read_body(response, current, deadline=started_attempt + lim.total_timeout_s)
            finally:
                response.close()
            return FetchResult(
                url=_safe(current),
                data=data,
                image_format=image_format,
                content_type=response.headers.get("content-type"),
                seconds=self._monotonic() - started_attempt,
                redirects=hop,
                attempts=attempt,
            )
        raise TooManyRedirects(f"more than {lim.max_redirects} redirects", url=_safe(url))

    def _read_body(self, response: httpx.Response, url: httpx.URL, *, deadline: float) -> tuple[bytes, str]:
        limit = self.limits.max_bytes
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ImageTooLarge(
                f"{_safe(url)}: Content-Length {declared}, limit {limit}", size=int(declared), limit=limit
            )
        chunks: list[bytes] = []
        size = 0
        image_format: str | None = None
        for chunk in response.iter_raw():
            size += len(chunk)
            if size > limit:
                raise ImageTooLarge(f"{_safe(url)}: more than {limit} bytes (aborted while streaming)", limit=limit)
            chunks.append(chunk)
            if image_format is None and size >= _SNIFF_BYTES:
                image_format = _sniff(b"".join(chunks), url)
            if self._monotonic() > deadline:
                raise FetchTimeout(
                    f"{_safe(url)}: not complete after {self.limits.total_timeout_s:.0f} s", url=_safe(url)
                )
        data = b"".join(chunks)
        if not data:
            raise EmptyImage(f"{_safe(url)}: zero bytes")
        return data, image_format or _sniff(data, url)

    def _report(self, url: str, started: float, reason: str | None, attempts: int, size: int) -> None:
        if self._observe is not None:
            self._observe(FetchEvent(_safe(url), self._monotonic() - started, reason, attempts, size))


def _sniff(head: bytes, url: httpx.URL) -> str:
    image_format = sniff_image_format(head)
    if image_format is None:
        error = refusal_for(head)
        raise type(error)(f"{_safe(url)}: {error}")
    return image_format


def _check_status(response: httpx.Response, url: httpx.URL) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    detail = f"{_safe(url)}: HTTP {status}"
    if status in (404, 410):
        raise HttpNotFound(detail, status=status, url=_safe(url))
    if status >= 500:
        raise HttpServerError(detail, status=status, url=_safe(url))
    raise HttpClientError(detail, status=status, url=_safe(url))


def _parse(url: str | httpx.URL) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise BadUrl(f"not a URL: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise BadUrl(f"scheme {parsed.scheme or '(none)'!r} is not http or https", url=_safe(parsed))
    if not parsed.host:
        raise BadUrl("URL without a host", url=_safe(parsed))
    if parsed.userinfo:
        raise BadUrl("URL with credentials", url=_safe(parsed))
    return parsed


def _safe(url: str | httpx.URL) -> str:
    """The URL for logs and dead letters: without credentials or the query (it may carry tokens)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "<invalid URL>"
    return str(parsed.copy_with(userinfo=b"", query=None, fragment=None))


# --- the transport: vet, pin, connect --------------------------------------------------------------------


class _VettedTransport(httpx.BaseTransport):
    """Resolves and vets the host of every request, pins the vetted address, then lets httpcore connect."""

    def __init__(self, *, policy: AddressPolicy, resolver: Resolver, connector: httpcore.NetworkBackend) -> None:
        self._policy = policy
        self._resolver = resolver
        self._backend = _PinnedBackend(policy=policy, connector=connector)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=64,
            max_keepalive_connections=16,
            keepalive_expiry=30.0,
            network_backend=self._backend,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.raw_host.decode("ascii")
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        self._backend.pin(host, port, self.vet(host, port, url=request.url))
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _mapped_errors(request.url):
            response = self._pool.handle_request(core_request)
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream, request.url),
            extensions=response.extensions,
        )

    def vet(self, host: str, port: int, *, url: httpx.URL) -> str:
        """The address to connect to: all of the host's addresses must be allowed (a host that resolves to
        one public and one private address is refused: which one is used is not ours to choose)."""
        addresses = self._addresses(host, port, url=url)
        for address in addresses:
            why = self._policy.refusal(address)
            if why is not None:
                raise SsrfRefused(f"{host} is {address}: {why}", url=_safe(url))
        return str(addresses[0])

    def _addresses(self, host: str, port: int, *, url: httpx.URL) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host)]  # a literal is vetted as it is, never resolved
        except ValueError:
            pass
        try:
            resolved = self._resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise UnresolvableHost(f"{host}: {exc}", url=_safe(url)) from exc
        addresses = []
        for text in resolved:
            try:
                addresses.append(ipaddress.ip_address(text.split("%", 1)[0]))
            except ValueError as exc:
                raise UnresolvableHost(f"{host}: resolver gave {text!r}", url=_safe(url)) from exc
        if not addresses:
            raise UnresolvableHost(f"{host}: no address", url=_safe(url))
        return addresses

    def close(self) -> None:
        self._pool.close()


class _PinnedBackend(httpcore.NetworkBackend):
    """httpcore asks to connect to a host name; this connects to the address vetted for it, and nothing else."""

    def __init__(self, *, policy: AddressPolicy, connector: httpcore.NetworkBackend) -> None:
        self._policy = policy
        self._connector = connector
        self._pins: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._lock = threading.Lock()

    def pin(self, host: str, port: int, address: str) -> None:
        """Every request re-pins its host just before connecting, so only recent pins are needed: the table
        keeps the `MAX_PINS` most recent (a long-running ingest sees millions of image hosts)."""
        with self._lock:
            key = (host.lower(), port)
            self._pins[key] = address
            self._pins.move_to_end(key)
            while len(self._pins) > MAX_PINS:
                self._pins.popitem(last=False)

    @property
    def pinned(self) -> int:
        return len(self._pins)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        with self._lock:
            address = self._pins.get((host.lower(), port))
        if address is None:  # never happens through _VettedTransport; refuse rather than resolve here
            raise SsrfRefused(f"{host}:{port} was not vetted")
        why = self._policy.refusal(ipaddress.ip_address(address))
        if why is not None:
            raise SsrfRefused(f"{host} is {address}: {why}")
        return self._connector.connect_tcp(
            address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise SsrfRefused("unix sockets are never connected to")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes], url: httpx.URL) -> None:
        self._stream = stream
        self._url = url

    def __iter__(self) -> Iterator[bytes]:
        with _mapped_errors(self._url):
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


@contextmanager
def _mapped_errors(url: httpx.URL) -> Iterator[None]:
    """httpcore's exceptions as our reasons: timeouts are ``fetch_timeout``, the rest ``fetch_failed``."""
    try:
        yield
    except IngestError:
        raise
    except (httpcore.TimeoutException, TimeoutError) as exc:
        safe = _safe(url)
        raise FetchTimeout(f"{safe}: {type(exc).__name__}: {exc or 'timed out'}", url=safe) from exc
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol, OSError) as exc:
        safe = _safe(url)
        raise FetchError(f"{safe}: {type(exc).__name__}: {exc}", url=safe) from exc


__all__ = [
    "AddressPolicy",
    "FetchEvent",
    "FetchLimits",
    "FetchResult",
    "Resolver",
    "SafeFetcher",
    "system_resolver",
]
