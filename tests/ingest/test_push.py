"""The HTTP push endpoint: bearer auth, size limit, reasons for invalid input, 202 once submitted, OpenAPI.

The app runs in-process (Starlette's TestClient); its submit is a first-class in-memory sink, and image URLs go
through the real SafeFetcher to a server on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from carspot.ingest.dedup import InMemoryDeduplicator
from carspot.ingest.fetch import AddressPolicy, FetchLimits, SafeFetcher
from carspot.ingest.images import normalize_image
from carspot.ingest.loop import IngestedPost, Rejection
from carspot.ingest.push import PushIngest, create_push_app
from tests.ingest.factories import BLUE, RED, encode, halves, noise
from tests.ingest.localserver import LocalServer, LoopbackOnlyConnector, TableResolver, local_server

TOKEN = "s3cret-push-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JPEG = encode(halves((300, 200), RED, BLUE), "JPEG", quality=90)
MAX_IMAGE = 200_000


class MemorySink:
    """What the Kafka wiring does, in memory: keeps submitted posts and dead letters; can be made to fail."""

    def __init__(self) -> None:
        self.posts: list[IngestedPost] = []
        self.dead_letters: list[Rejection] = []
        self.down = False

    def submit(self, post: IngestedPost) -> None:
        if self.down:
            raise ConnectionError("broker unreachable")
        self.posts.append(post)

    def dead_letter(self, rejection: Rejection) -> None:
        self.dead_letters.append(rejection)


@pytest.fixture
def server() -> Iterator[LocalServer]:
    yield from local_server()


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def connector() -> LoopbackOnlyConnector:
    return LoopbackOnlyConnector()


@pytest.fixture
def client(sink: MemorySink, connector: LoopbackOnlyConnector) -> Iterator[TestClient]:
    fetcher = SafeFetcher(
        policy=AddressPolicy(allow_loopback=True),
        limits=FetchLimits(max_bytes=MAX_IMAGE, attempts=1, read_timeout_s=2.0),
        resolver=TableResolver({"metadata.test": ["169.254.169.254"]}),
        connector=connector,
    )
    ingest_one = PushIngest(
        submit=sink.submit, dead_letter=sink.dead_letter, dedup=InMemoryDeduplicator(), normalize=normalize_image
    )
    app = create_push_app(
        token=SecretStr(TOKEN), ingest_one=ingest_one, fetch=fetcher.fetch_bytes, max_image_bytes=MAX_IMAGE
    )
    with TestClient(app) as test_client:
        yield test_client
    fetcher.close()


def upload(client: TestClient, data: bytes, **fields: str) -> object:
    return client.post("/v1/posts", headers=AUTH, data=fields, files={"image": ("car.jpg", data, "image/jpeg")})


def test_multipart_upload_is_accepted_once_submitted(client: TestClient, sink: MemorySink) -> None:
    response = client.post(
        "/v1/posts",
        headers=AUTH,
        data={"post_id": "abc-1", "author": "@fan", "text": "new car!", "posted_at": "2026-05-01T10:00:00Z"},
        files={"image": ("car.jpg", JPEG, "image/jpeg")},
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["post_id"] == "http:abc-1" and body["status"] == "accepted" and len(body["image_sha256"]) == 64
    [post] = sink.posts
    assert post.post_id == "http:abc-1" and post.source == "http" and post.author == "@fan"
    assert post.image is not None and post.posted_at is not None


def test_the_campaign_field_travels_with_the_post(client: TestClient, sink: MemorySink) -> None:
    assert upload(client, JPEG, post_id="c1", campaign="spring-2026").status_code == 202  # type: ignore[attr-defined]
    assert upload(client, JPEG, post_id="c2").status_code == 202  # type: ignore[attr-defined]
    assert [(p.post_id, p.campaign) for p in sink.posts] == [("http:c1", "spring-2026"), ("http:c2", None)]


def test_json_with_image_url_is_fetched_safely(client: TestClient, sink: MemorySink, server: LocalServer) -> None:
    url = server.serve("/car.jpg", JPEG)
    response = client.post("/v1/posts", headers=AUTH, json={"post_id": "j1", "image_url": url, "text": "hi"})
    assert response.status_code == 202, response.text
    assert sink.posts[0].image_ref == url and server.hits["/car.jpg"] == 1


def test_retry_with_the_same_post_id_is_a_duplicate_and_same_picture_is_a_link(
    client: TestClient, sink: MemorySink
) -> None:
    assert upload(client, JPEG, post_id="p1").json()["status"] == "accepted"  # type: ignore[attr-defined]
    assert upload(client, JPEG, post_id="p1").json()["status"] == "duplicate"  # type: ignore[attr-defined]
    assert upload(client, JPEG, post_id="p2").json()["status"] == "linked"  # type: ignore[attr-defined]
    assert [p.image is None for p in sink.posts] == [False, True]


def test_missing_token_is_401_and_wrong_token_is_403(client: TestClient, sink: MemorySink) -> None:
    missing = client.post("/v1/posts", json={"image_url": "http://x.test/a.jpg"})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["reason"] == "unauthorized"
    wrong = client.post("/v1/posts", headers={"Authorization": "Bearer nope"}, json={"image_url": "http://x/a.jpg"})
    assert wrong.status_code == 403 and wrong.json()["reason"] == "forbidden"
    assert sink.posts == [] and sink.dead_letters == []


def test_body_over_the_limit_is_413(client: TestClient, sink: MemorySink) -> None:
    big = encode(noise((600, 600)), "PNG")
    assert len(big) > MAX_IMAGE
    response = upload(client, big)
    assert response.status_code == 413 and response.json()["reason"] == "too_large"  # type: ignore[attr-defined]
    assert sink.posts == []


def test_chunked_body_over_the_limit_is_413_without_content_length(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"x" * 60_000

    response = client.post("/v1/posts", headers={**AUTH, "Content-Type": "application/json"}, content=chunks())
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"image_url": "ftp://example.test/a.jpg"}, "image_url"),
        ({"text": "no picture"}, "image_url"),
        ({"image_url": "http://a.test/x.jpg", "posted_at": "2026-05-01T10:00:00"}, "posted_at"),
        ({"image_url": "http://a.test/x.jpg", "post_id": "has space"}, "post_id"),
        ({"image_url": "http://a.test/x.jpg", "colour": "red"}, "colour"),
        ({"image_url": "http://a.test/x.jpg", "campaign": "spring launch"}, "campaign"),
        ({"image_url": "http://a.test/x.jpg", "campaign": "x" * 65}, "campaign"),
        ({"image_url": "http://a.test/x.jpg", "campaign": "-leading-dash"}, "campaign"),
    ],
)
def test_invalid_json_fields_are_422_with_a_reason(client: TestClient, payload: dict[str, str], fragment: str) -> None:
    response = client.post("/v1/posts", headers=AUTH, json=payload)
    assert response.status_code == 422
    assert response.json()["reason"] == "invalid_request" and fragment in response.json()["detail"]


def test_refused_pictures_are_422_with_their_reason_and_dead_lettered(
    client: TestClient, sink: MemorySink, server: LocalServer, connector: LoopbackOnlyConnector
) -> None:
    html = server.serve("/page", b"<html><body>login</body></html>" + b" " * 100, content_type="image/jpeg")
    cases = {
        "ssrf": ("http://metadata.test/latest/meta-data/", "ssrf_refused"),
        "gone": (server.url("/gone.jpg"), "http_404"),
        "html": (html, "not_an_image"),
    }
    for post_id, (url, reason) in cases.items():
        response = client.post("/v1/posts", headers=AUTH, json={"post_id": post_id, "image_url": url})
        assert response.status_code == 422 and response.json()["reason"] == reason, response.text
    assert {r.post_id: r.reason for r in sink.dead_letters} == {
        f"http:{k}": reason for k, (_u, reason) in cases.items()
    }
    assert {host for host, _port in connector.attempts} <= {"127.0.0.1"}
    text = upload(client, b"just some text, not a picture at all" * 4)
    assert text.status_code == 422 and text.json()["reason"] == "not_an_image"  # type: ignore[attr-defined]


def test_multipart_without_image_and_other_content_types(client: TestClient) -> None:
    no_image = client.post("/v1/posts", headers=AUTH, data={"post_id": "x"}, files={"other": ("a", b"a")})
    assert no_image.status_code == 422 and "image" in no_image.json()["detail"]
    plain = client.post("/v1/posts", headers={**AUTH, "Content-Type": "text/plain"}, content=b"hello")
    assert plain.status_code == 415


def test_kafka_down_is_503_and_the_retry_is_not_a_duplicate(client: TestClient, sink: MemorySink) -> None:
    sink.down = True
    assert upload(client, JPEG, post_id="k1").status_code == 503  # type: ignore[attr-defined]
    sink.down = False
    retry = upload(client, JPEG, post_id="k1")
    assert retry.status_code == 202 and retry.json()["status"] == "accepted"  # type: ignore[attr-defined]


def test_openapi_schema_and_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/v1/posts"]["post"]
    assert set(operation["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert {"202", "401", "403", "413", "422"} <= set(operation["responses"])
    assert any(scheme["scheme"] == "bearer" for scheme in schema["components"]["securitySchemes"].values())
