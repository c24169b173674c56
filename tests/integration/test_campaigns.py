"""Campaigns and thumbnails on the real services: an X rule's tag (rules file, search mode against a fake X API
on loopback) and a pushed post's ``campaign`` field travel through Kafka to ``posts.campaign``, and the worker
stores a thumbnail of each analysed picture with its analysis."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from carspot.pipeline.message import Post
from tests.ingest.fakex import TOKEN as X_TOKEN
from tests.ingest.fakex import FakeX
from tests.ingest.localserver import LocalServer, local_server
from tests.integration.conftest import Isolated
from tests.integration.support import CARSPOT, carspot, read_topic
from tests.integration.test_push_ingest import free_port, wait_healthy

pytestmark = pytest.mark.integration
PUSH_TOKEN = "push-token-for-campaigns"


@pytest.fixture
def server() -> Iterator[LocalServer]:
    yield from local_server()


def rows(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


def test_campaigns_from_a_rules_tag_and_a_push_field_reach_the_store_with_thumbnails(
    isolated: Isolated, server: LocalServer, scenes_dir: Path, tmp_path: Path
) -> None:
    fake = FakeX(server)
    fake.tweets = [fake.tweet(901, user="toyotafan")]
    rules = tmp_path / "rules.txt"
    rules.write_text("# watched\n[toyota] (#toyota OR @Toyota) has:images\n", encoding="utf-8")
    port = free_port()
    env = isolated.env(
        CARSPOT_X_BEARER_TOKEN=X_TOKEN,
        CARSPOT_X_API_BASE_URL=fake.base_url,
        CARSPOT_FETCH_ALLOW_LOOPBACK="true",
        CARSPOT_HTTP_PUSH_TOKEN=PUSH_TOKEN,
    )
    carspot("migrate", env=env)
    carspot("ingest", "x", "--rules", str(rules), "--x-mode", "search", "--max-posts", "1", env=env)

    log = tmp_path / "push.log"
    with log.open("wb") as handle:
        push = subprocess.Popen(
            [CARSPOT, "ingest", "http", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, push, log)
        files = {"image": ("bus.jpg", (scenes_dir / "bus.jpg").read_bytes(), "image/jpeg")}
        auth = {"Authorization": f"Bearer {PUSH_TOKEN}"}
        bad = httpx.post(f"{base}/v1/posts", data={"campaign": "no spaces"}, files=files, headers=auth, timeout=30)
        assert bad.status_code == 422 and "campaign" in bad.json()["detail"]
        data = {"post_id": "c-1", "campaign": "spring-launch"}
        accepted = httpx.post(f"{base}/v1/posts", data=data, files=files, headers=auth, timeout=30)
        assert accepted.status_code == 202, accepted.text
    finally:
        push.terminate()
        push.wait(timeout=30)

    on_the_wire = [Post.decode(v) for _k, v in read_topic(isolated.services.kafka_bootstrap, isolated.posts_topic)]
    assert {p.post_id: p.campaign for p in on_the_wire} == {"x:901:3_901_0": "toyota", "http:c-1": "spring-launch"}

    carspot("worker", "--idle-timeout", "8", "--timeout", "240", env=env)
    stored = dict(rows(isolated.database_url, "SELECT post_id, campaign FROM posts"))
    assert stored == {"x:901:3_901_0": "toyota", "http:c-1": "spring-launch"}
    thumbs = rows(
        isolated.database_url,
        "SELECT p.post_id, t.width, t.height, length(t.jpeg) FROM posts p JOIN thumbnails t "
        "ON t.image_sha256 = p.image_sha256 ORDER BY p.post_id",
    )
    assert [t[0] for t in thumbs] == ["http:c-1", "x:901:3_901_0"]
    bus = thumbs[0]
    assert (bus[1], bus[2]) == (240, 320) and 0 < int(bus[3]) <= 32 << 10  # type: ignore[call-overload]
