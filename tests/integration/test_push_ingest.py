"""The HTTP push endpoint on the real services: a post pushed over HTTP is in Kafka when the 202 comes back,
and a worker stores its analysis; a refused picture is dead-lettered with its reason."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from carspot.pipeline.message import Post
from tests.integration.conftest import Isolated
from tests.integration.support import CARSPOT, analyses_per_post, carspot, dead_letters, read_topic

pytestmark = pytest.mark.integration
TOKEN = "push-token-for-tests"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"push endpoint exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"push endpoint not healthy after 60 s: {log.read_text()[-3000:]}")


def test_pushed_posts_reach_kafka_and_the_database(isolated: Isolated, scenes_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    env = isolated.env(CARSPOT_HTTP_PUSH_TOKEN=TOKEN)
    carspot("migrate", env=env)
    log = tmp_path / "push.log"
    with log.open("wb") as handle:
        server = subprocess.Popen(
            [CARSPOT, "ingest", "http", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        wait_healthy(base, server, log)
        image = (scenes_dir / "times-square.png").read_bytes()
        files = {"image": ("times-square.png", image, "image/png")}
        data = {"post_id": "pushed-1", "author": "@integration"}
        assert httpx.post(f"{base}/v1/posts", data=data, files=files, timeout=30).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert httpx.post(f"{base}/v1/posts", data=data, files=files, headers=wrong, timeout=30).status_code == 403
        accepted = httpx.post(f"{base}/v1/posts", data=data, files=files, headers=auth, timeout=30)
        assert accepted.status_code == 202, accepted.text
        post_id = accepted.json()["post_id"]
        # Once 202 came back, the post is in Kafka.
        posts = [
            Post.decode(value) for _key, value in read_topic(isolated.services.kafka_bootstrap, isolated.posts_topic)
        ]
        assert [p.post_id for p in posts] == [post_id] and posts[0].author == "@integration"

        bad = {"image": ("notes.jpg", b"just text, not a picture", "image/jpeg")}
        refused = httpx.post(f"{base}/v1/posts", data={"post_id": "pushed-2"}, files=bad, headers=auth, timeout=30)
        assert refused.status_code == 422 and refused.json()["reason"] == "not_an_image"
    finally:
        server.terminate()
        server.wait(timeout=30)

    carspot("worker", "--idle-timeout", "8", "--timeout", "120", env=env)
    assert analyses_per_post(isolated.database_url) == {post_id: 1}
    letters = dead_letters(isolated.services.kafka_bootstrap, isolated.dlq_topic)
    assert [(letter.reason, letter.stage) for letter in letters] == [("not_an_image", "ingest")]
