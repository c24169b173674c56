"""``carspot ingest x`` through a broker outage (issue 24, defect 3 for X): the local X API (tests/ingest/fakex)
serves tweets, the suite's private Kafka is SIGKILLed while ingest runs and started again. Ingest says it waits,
takes nothing more from X meanwhile (its /metrics says Kafka is down), and resumes: every picture reaches Kafka
exactly once, the checkpoint never runs ahead of what Kafka has, and a rerun finds every post claimed (nothing was
claimed and lost)."""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kafka.admin import KafkaAdminClient, NewTopic
from pydantic import SecretStr

from carspot.infra.ports import pick_free_port
from carspot.pipeline.ingest_x import XRunSummary, run_x_ingest
from carspot.pipeline.settings import Settings
from tests.faults.stack import PrivateStack
from tests.ingest.fakex import TOKEN, FakeX
from tests.ingest.localserver import LocalServer, local_server
from tests.integration.support import read_topic

pytestmark = pytest.mark.integration

BEFORE, DURING = range(700, 703), range(703, 706)  # tweet ids posted before and during the outage


@pytest.fixture
def fake() -> Iterator[FakeX]:
    server: LocalServer
    for server in local_server():
        yield FakeX(server)


@pytest.fixture
def settings(stack: PrivateStack, fake: FakeX, tmp_path: Path) -> Settings:
    tag = uuid.uuid4().hex[:8]
    posts, dlq = f"x-{tag}.posts", f"x-{tag}.dlq"
    admin = KafkaAdminClient(bootstrap_servers=stack.endpoints.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(posts, 1, 1), NewTopic(dlq, 1, 1)])
    finally:
        admin.close()
    return Settings(
        data_dir=tmp_path,
        kafka_bootstrap=stack.endpoints.kafka_bootstrap,
        posts_topic=posts,
        dlq_topic=dlq,
        redis_url=SecretStr(stack.endpoints.redis_url),
        redis_key_prefix=f"x-{tag}:",
        x_bearer_token=SecretStr(TOKEN),
        x_api_base_url=fake.base_url,
        x_search_interval_s=0.2,
        fetch_allow_loopback=True,
        metrics_port=pick_free_port(),
        metrics_probe_interval_s=0.5,
    )


def ingest(settings: Settings, *, max_posts: int) -> XRunSummary:
    return run_x_ingest(settings, mode="search", query="#toyota", max_posts=max_posts, install_signals=False)


def sent(settings: Settings) -> Counter[str]:
    return Counter(key.decode() for key, _ in read_topic(settings.kafka_bootstrap, settings.posts_topic) if key)


KAFKA_UP = 'carspot_service_up{service="kafka"}'


def scraped(settings: Settings, series: str) -> float | None:
    """One series' value on the ingest's own /metrics (None when absent or not answering)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{settings.metrics_port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


def wait_for(what: str, predicate: object, *, timeout_s: float) -> None:
    done = threading.Event()
    for _ in range(int(timeout_s * 2)):  # bounded
        if predicate():  # type: ignore[operator]
            return
        done.wait(0.5)
    raise AssertionError(f"not within {timeout_s:.0f} s: {what}")


def test_x_ingest_waits_out_a_broker_outage_and_loses_nothing(
    stack: PrivateStack, fake: FakeX, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="carspot")
    fake.tweets = [fake.tweet(tweet_id) for tweet_id in BEFORE]
    outcome: list[XRunSummary | BaseException] = []

    def run() -> None:
        try:
            outcome.append(ingest(settings, max_posts=len(BEFORE) + len(DURING)))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, name="x-ingest", daemon=True)
    thread.start()
    wait_for("the first tweets in Kafka", lambda: len(sent(settings)) == len(BEFORE), timeout_s=180)

    stack.kill_kafka()
    fake.tweets += [fake.tweet(tweet_id) for tweet_id in DURING]
    wait_for(
        "ingest says it waits for Kafka",
        lambda: any(
            "Kafka" in r.getMessage() and ("waiting" in r.getMessage() or "again" in r.getMessage())
            for r in caplog.records
        ),
        timeout_s=180,
    )
    assert thread.is_alive(), f"ingest ended during the outage: {outcome}"
    # What ops see meanwhile on its /metrics: the pictures sent so far, and Kafka down.
    wait_for("carspot_service_up says Kafka is down", lambda: scraped(settings, KAFKA_UP) == 0.0, timeout_s=60)
    assert scraped(settings, 'carspot_ingest_posts_emitted_total{kind="picture",source="x"}') == len(BEFORE)
    assert scraped(settings, 'carspot_service_up{service="redis"}') == 1.0
    stack.restart()
    thread.join(timeout=300)
    assert not thread.is_alive(), "ingest did not resume after the broker came back"

    summary = outcome[0]
    assert isinstance(summary, XRunSummary), f"ingest failed: {summary!r}"
    expected = {f"x:{tweet_id}:3_{tweet_id}_0" for tweet_id in (*BEFORE, *DURING)}
    assert sent(settings) == Counter(expected), "every picture in Kafka exactly once"
    assert summary.ingest.emitted == len(expected)
    # the last post taken is sent but the loop never asked for the next one: it is not checkpointed yet
    assert summary.checkpoint == max(DURING) - 1

    rerun = ingest(settings, max_posts=1)  # from the checkpoint: the last tweet again, a duplicate of a sent post
    assert (rerun.ingest.emitted, rerun.ingest.duplicate_posts) == (0, 1), "its claim was kept: it was sent"
    assert sent(settings) == Counter(expected)
