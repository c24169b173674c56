"""SafeFetcher: SSRF refusals before any connection, redirects re-vetted, size capped while streaming, content
sniffed, statuses and timeouts as reason codes, retries for timeouts and 5xx only.

All traffic goes to a real server on 127.0.0.1. Names resolve only through :class:`TableResolver`, and the
:class:`LoopbackOnlyConnector` fails the test if a connection to any other address is even attempted.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator

import pytest
from PIL import Image

from carspot.ingest.dedup import InMemoryDeduplicator
from carspot.ingest.errors import IngestError
from carspot.ingest.fetch import AddressPolicy, FetchEvent, FetchLimits, SafeFetcher
from carspot.ingest.images import normalize_image
from carspot.ingest.loop import run_ingest
from carspot.ingest.sources import RawPost
from tests.ingest.factories import BLUE, RED, encode, halves
from tests.ingest.localserver import LocalServer, LoopbackOnlyConnector, TableResolver, local_server

JPEG = encode(halves((320, 200), RED, BLUE), "JPEG", quality=90)
PNG = encode(Image.new("RGB", (50, 40), RED), "PNG")
HTML = b"<!doctype html><html><body>Please log in to see this picture</body></html>" + b" " * 200


@pytest.fixture
def server() -> Iterator[LocalServer]:
    yield from local_server()


@pytest.fixture
def connector() -> LoopbackOnlyConnector:
    return LoopbackOnlyConnector()


@pytest.fixture
def resolver() -> TableResolver:
    return TableResolver(
        {
            "images.test": ["127.0.0.1"],
            "internal.test": ["10.1.2.3"],
            "metadata.test": ["169.254.169.254"],
            "mixed.test": ["127.0.0.1", "192.168.1.20"],
            "v6private.test": ["fd00::1"],
        }
    )


def make_fetcher(
    resolver: TableResolver,
    connector: LoopbackOnlyConnector,
    *,
    allow_loopback: bool = True,
    sleeps: list[float] | None = None,
    events: list[FetchEvent] | None = None,
    **limits: object,
) -> SafeFetcher:
    defaults: dict[str, object] = {"connect_timeout_s": 2.0, "read_timeout_s": 2.0, "total_timeout_s": 10.0}
    defaults.update(limits)
    return SafeFetcher(
        policy=AddressPolicy(allow_loopback=allow_loopback),
        limits=FetchLimits(**defaults),  # type: ignore[arg-type]
        resolver=resolver,
        connector=connector,
        sleep=(sleeps.append if sleeps is not None else lambda _s: None),
        observe=(events.append if events is not None else None),
    )


def reason_of(fetcher: SafeFetcher, url: str) -> str:
    with pytest.raises(IngestError) as caught:
        fetcher.fetch(url)
    return caught.value.reason


# --- the happy path ---------------------------------------------------------------------------------------


def test_fetches_from_a_vetted_name_connecting_only_to_its_pinned_address(
    server: LocalServer, resolver: TableResolver, connector: LoopbackOnlyConnector
) -> None:
    server.serve("/car.jpg", JPEG, content_type="application/octet-stream")
    events: list[FetchEvent] = []
    with make_fetcher(resolver, connector, events=events) as fetcher:
        result = fetcher.fetch(f"http://images.test:{server.port}/car.jpg?sig=secret")
    assert result.data == JPEG and result.image_format == "JPEG" and result.attempts == 1
    assert connector.attempts == [("127.0.0.1", server.port)]
    assert resolver.calls["images.test"] == 1
    assert server.requests[0].headers["host"] == f"images.test:{server.port}"
    assert events[0].reason is None and "secret" not in events[0].url  # the query may carry tokens


def test_resolves_once_per_hop_and_connects_to_the_vetted_address_not_a_second_lookup(
    server: LocalServer, connector: LoopbackOnlyConnector
) -> None:
    """DNS rebinding: a resolver that answers loopback first, then a private address, is asked once."""
    answers = iter([["127.0.0.1"], ["10.0.0.7"], ["10.0.0.7"]])
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    server.serve("/a.jpg", JPEG)
    fetcher = SafeFetcher(policy=AddressPolicy(allow_loopback=True), resolver=rebinding, connector=connector)
    assert fetcher.fetch(f"http://rebind.test:{server.port}/a.jpg").data == JPEG
    assert calls == ["rebind.test"]
    assert connector.attempts == [("127.0.0.1", server.port)]


def test_jpeg_served_as_html_is_accepted_because_the_bytes_are_sniffed(
    server: LocalServer, resolver: TableResolver, connector: LoopbackOnlyConnector
) -> None:
    url = server.serve("/png", PNG, content_type="text/html")
    assert make_fetcher(resolver, connector).fetch(url).image_format == "PNG"


# --- SSRF ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/car.jpg",  # loopback, not allowed here
        "http://[::1]:{port}/car.jpg",
        "http://10.0.0.1/car.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]:{port}/car.jpg",  # IPv4-mapped IPv6
        "http://[::ffff:10.0.0.1]/car.jpg",
        "http://0.0.0.0:{port}/car.jpg",
        "http://224.0.0.1/car.jpg",
        "http://[fe80::1]/car.jpg",
        "http://internal.test/car.jpg",  # a name resolving to a private address
        "http://metadata.test/latest/meta-data/",
        "http://mixed.test:{port}/car.jpg",  # one loopback and one private address: refused as a whole
        "http://v6private.test/car.jpg",
    ],
)
def test_refused_addresses_never_get_a_connection(
    url: str, server: LocalServer, resolver: TableResolver, connector: LoopbackOnlyConnector
) -> None:
    server.serve("/car.jpg", JPEG)
    fetcher = make_fetcher(resolver, connector, allow_loopback=False)
    assert reason_of(fetcher, url.format(port=server.port)) == "ssrf_refused"
    assert connector.attempts == []
    assert server.hits["/car.jpg"] == 0


def test_redirect_to_a_refused_address_is_refused_before_connecting_to_it(
    server: LocalServer, resolver: TableResolver, connector: LoopbackOnlyConnector
) -> None:
    server.redirect("/to-metadata", "http://169.254.169.254/latest/meta-data/iam")
    server.redirect("/to-internal", "http://internal.test/admin.jpg", status=307)
    fetcher = make_fetcher(resolver, connector)
    assert reason_of(fetcher, server.url("/to-metadata")) == "ssrf_refused"
    assert reason_of(fetcher, server.url("/to-internal")) == "ssrf_refused"
    assert {host for host, _port in connector.attempts} == {"127.0.0.1"}


def test_redirects_are_followed_within_the_limit_and_loops_are_cut(
    server: LocalServer, resolver: TableResolver, connector: LoopbackOnlyConnector
) -> None:
    server.serve("/final.jpg", JPEG)
    server.redirect("/hop2", f"http://images.test:{server.port}/final.jpg", status=301)
    server.redirect("/hop1", "/hop2")
    server.redirect("/loop-a", "/loop-b")
    server.redirect("/loop-b", "/loop-a")
    fetcher = make_fetcher(resolver, connector, max_redirects=2)
    result = fetcher.fetch(server.url("/hop1"))
    assert result.redirects == 2 and result.data == JPEG
    assert reason_of(fetcher, server.url("/loop-a")) == "too_many_redirects"
    assert reason_of(make_fetcher(resolver, connector, max_redirects=1), server.url("/hop1")) == "too_many_redirects"


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://images.test/a.jpg",
        "gopher://x/",
        "http:///nohost",
        "http://user:pw@images.test/a.jpg",
    ],
)
def test_only_plain_http_and_https_urls(url: str, resolver: TableResolver, connector: LoopbackOnlyConnector) -> None:
    assert reason_of(make_fetcher(resolver, connector), url) == "bad_url"
    assert connector.attempts == []


def test_unknown_name_is_unresolvable(resolver: TableResolver, connector: LoopbackOnlyConnector) -> None:
    assert reason_of(make_fetcher(resolver, connector), "http://nowhere.test/a.jpg") == "unresolvable"


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("127.0.0.2", False),
        ("172.16.5.4", False),
        ("192.168.0.1", False),
        ("100.64.0.1", False),  # shared address space (carrier NAT)
        ("::", False),
        ("ff02::1", False),
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2002:a00:1::", False),  # 6to4 of 10.0.0.1
        ("::ffff:8.8.8.8", True),
    ],
)
def test_address_policy(address: str, allowed: bool) -> None:
    assert (AddressPolicy().refusal(ipaddress.ip_address(address)) is None) is allowed


# --- size and content -------------------------------------------------------------------------------------


def test_body_over_the_limit_is_aborted_while_streaming(
    server: LocalServer, resolver: TableResolver, connector: LoopbackOnlyConnector
) -> None:
    url = server.endless("/huge", JPEG[:100])
    started = time.monotonic()
    assert reason_of(make_fetcher(resolver, connector, max_bytes=256 << 10), url) == "too_large"
    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 5
    while "/huge" not in server.sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.sent["/huge"] < 64 << 20  # the server could not send it all: the reader hung up


def test_declared_content_length_over_the_limit_is_refused_unread(
    server: LocalServer, resolver: TableResolver, connector: LoopbackOnlyConnector
) -> None:
    url = server.serve("/big.jpg", JPEG)
    assert reason_of(make_fetcher(resolver, connector, max_bytes=len(JPEG) - 1), url) == "too_large"


def test_html_served_as_image_jpeg_is_not_an_image(
    server: LocalServer, resolver: TableResolver, connector: LoopbackOnlyConnector
) -> None:
    url = server.serve("/login", HTML, content_type="image/jpeg")
    with pytest.raises(IngestError) as caught:
        make_fetcher(resolver, connector).fetch(url)
    assert caught.value.reason == "not_an_image" and "HTML" in str(caught.value)


def test_empty_body_is_empty(server: LocalServer, resolver: TableResolver, connector: LoopbackOnlyConnector) -> None:
    assert reason_of(make_fetcher(resolver, connector), server.serve("/empty", b"")) == "empty"


# --- statuses, timeouts, retries --------------------------------------------------------------------------


def test_404_is_final_without_retry(
    server: LocalServer, resolver: TableResolver, connector: LoopbackOnlyConnector
) -> None:
    sleeps: list[float] = []
    assert reason_of(make_fetcher(resolver, connector, sleeps=sleeps), server.url("/missing.jpg")) == "http_404"
    assert server.hits["/missing.jpg"] == 1 and sleeps == []


def test_403_is_a_4xx_without_retry(
    server: LocalServer, resolver: TableResolver, connector: LoopbackOnlyConnector
) -> None:
    url = server.sequence("/forbidden", [403], JPEG)
    assert reason_of(make_fetcher(resolver, connector), url) == "http_4xx"
    assert server.hits["/forbidden"] == 1


def test_5xx_is_retried_with_capped_backoff_then_reported(
    server: LocalServer, resolver: TableResolver, connector: LoopbackOnlyConnector
) -> None:
    url = server.sequence("/flaky", [500], JPEG)
    sleeps: list[float] = []
    fetcher = make_fetcher(
        resolver, connector, sleeps=sleeps, attempts=5, backoff_initial_s=1.0, backoff_max_s=3.0, backoff_jitter_s=0.5
    )
    assert reason_of(fetcher, url) == "http_5xx"
    assert server.hits["/flaky"] == 5
    assert len(sleeps) == 4 and all(0 < s <= 3.0 for s in sleeps) and sleeps[0] >= 1.0


def test_5xx_then_success(server: LocalServer, resolver: TableResolver, connector: LoopbackOnlyConnector) -> None:
    url = server.sequence("/recovers", [503, 502, 200], JPEG)
    result = make_fetcher(resolver, connector).fetch(url)
    assert result.data == JPEG and result.attempts == 3


def test_read_timeout_is_retried_then_reported(
    server: LocalServer, resolver: TableResolver, connector: LoopbackOnlyConnector
) -> None:
    url = server.slow("/slow.jpg", 1.0, JPEG)
    events: list[FetchEvent] = []
    fetcher = make_fetcher(resolver, connector, read_timeout_s=0.2, attempts=2, events=events)
    assert reason_of(fetcher, url) == "fetch_timeout"
    assert server.hits["/slow.jpg"] == 2
    assert events[-1].reason == "fetch_timeout" and events[-1].attempts == 2


def test_connection_refused_is_fetch_failed(resolver: TableResolver, connector: LoopbackOnlyConnector) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert reason_of(make_fetcher(resolver, connector, attempts=3), f"http://127.0.0.1:{port}/x.jpg") == "fetch_failed"


# --- as a source's read_image: failures become dead letters with the reason -------------------------------


def test_fetch_failures_reach_the_dead_letters_with_their_reason(
    server: LocalServer, resolver: TableResolver, connector: LoopbackOnlyConnector
) -> None:
    fetcher = make_fetcher(resolver, connector)
    urls = {
        "ok": server.serve("/ok.jpg", JPEG),
        "ssrf": "http://metadata.test/latest/",
        "gone": server.url("/gone.jpg"),
        "html": server.serve("/page", HTML, content_type="image/png"),
    }
    posts = [
        RawPost(post_id=name, source="test", image_ref=url, read_image=lambda url=url: fetcher.fetch_bytes(url))
        for name, url in urls.items()
    ]
    emitted: list[str] = []
    rejected: dict[str | None, str] = {}
    stats = run_ingest(
        posts,
        emit=lambda p: emitted.append(p.post_id),
        reject=lambda r: rejected.__setitem__(r.post_id, r.reason),
        dedup=InMemoryDeduplicator(),
        normalize=normalize_image,
    )
    assert emitted == ["ok"]
    assert rejected == {"ssrf": "ssrf_refused", "gone": "http_404", "html": "not_an_image"}
    assert stats.rejected_total == 3


def test_the_pin_table_remembers_only_the_most_recent_hosts(connector: LoopbackOnlyConnector) -> None:
    from carspot.ingest.fetch import MAX_PINS, SsrfRefused, _PinnedBackend

    backend = _PinnedBackend(policy=AddressPolicy(allow_loopback=True), connector=connector)
    for i in range(MAX_PINS + 10):
        backend.pin(f"host-{i}.example", 80, "127.0.0.1")
    backend.pin("host-5.example", 80, "127.0.0.1")  # used again: now the most recent
    assert backend.pinned == MAX_PINS
    with pytest.raises(SsrfRefused, match="not vetted"):
        backend.connect_tcp("host-0.example", 80)  # forgotten: refused, never resolved
    assert "host-5.example" in {h for h, _ in backend._pins}
