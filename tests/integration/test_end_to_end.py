"""One image post end to end through the real services: ingest → Kafka → worker → PostgreSQL (+ DLQ).

The CLI runs as real processes, exactly as an operator runs it; the results are read back from PostgreSQL and
from the dead-letter topic.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Isolated
from tests.integration.corpus import Corpus, build_corpus
from tests.integration.support import (
    analyses_per_post,
    carspot,
    count_analyses,
    dead_letters,
    snapshot,
    start_carspot,
)

pytestmark = pytest.mark.integration
WORKER_BOUNDS = ("--idle-timeout", "10", "--timeout", "600")


@pytest.fixture
def corpus(tmp_path: Path, scenes_dir: Path) -> Corpus:
    built = build_corpus(tmp_path / "corpus", scenes_dir, total=200, reposts=40)
    with built.jsonl.open("a") as handle:  # a line that is not even JSON
        handle.write('{"post_id": "bad-json-line", "image": \n')
    return built


def test_every_good_post_is_analysed_once_and_every_bad_one_is_dead_lettered(
    isolated: Isolated, corpus: Corpus
) -> None:
    env = isolated.env()
    carspot("migrate", env=env)
    ingested = carspot("ingest", f"jsonl:{corpus.jsonl}", env=env)
    assert ingested["seen"] == corpus.total + 1
    assert ingested["emitted"] + ingested["emitted_links"] == len(corpus.good)
    # Reposts are links; so are crops of a scene close enough to count as the same picture (perceptual hash).
    assert ingested["emitted_links"] >= len(corpus.reposts)

    carspot("worker", *WORKER_BOUNDS, env=env)

    per_post = analyses_per_post(isolated.database_url)
    assert set(per_post) == corpus.good, "every good post stored, and nothing else"
    assert set(per_post.values()) == {1}, "exactly one analysis per good post"
    assert count_analyses(isolated.database_url) == ingested["emitted"], "each distinct picture analysed once"

    letters = dead_letters(isolated.services.kafka_bootstrap, isolated.dlq_topic)
    by_post = {letter.post_id: letter for letter in letters}
    assert len(by_post) == len(letters), "no dead letter twice"
    assert {pid: by_post[pid].reason for pid in corpus.bad} == corpus.bad
    broken = [letter for letter in letters if letter.reason == "broken_record"]
    assert len(broken) == 1 and b"bad-json-line" in broken[0].original
    assert len(letters) == len(corpus.bad) + 1
    huge = by_post["bad-huge.jpg"]
    assert huge.original_size == 50 * 2**20 and huge.truncated and len(huge.original) <= 1 << 20

    # Replaying the whole topic (a new consumer group from the beginning) changes nothing.
    before = snapshot(isolated.database_url)
    carspot("worker", *WORKER_BOUNDS, env=isolated.env(CARSPOT_CONSUMER_GROUP="replay"))
    assert snapshot(isolated.database_url) == before
    # Ingesting the same source again produces nothing new: every post id was seen (Redis).
    again = carspot("ingest", f"jsonl:{corpus.jsonl}", env=env)
    assert again["emitted"] == 0 and again["duplicate_posts"] == corpus.total
    assert len(dead_letters(isolated.services.kafka_bootstrap, isolated.dlq_topic)) == len(letters)


def _wait_for_analyses(url: str, *, at_least: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        n = count_analyses(url)
        if n >= at_least:
            return n
        time.sleep(0.2)
    raise AssertionError(f"fewer than {at_least} analyses after {timeout_s}s")


def test_a_worker_killed_mid_run_and_restarted_leaves_the_same_database(
    isolated: Isolated, corpus: Corpus, tmp_path: Path
) -> None:
    env = isolated.env(CARSPOT_BATCH_MAX_MESSAGES="4")
    carspot("migrate", env=env)
    carspot("ingest", f"jsonl:{corpus.jsonl}", env=env)

    reference = isolated.database("reference_" + isolated.redis_prefix.strip(":").replace("-", "_"))
    ref_env = isolated.env(CARSPOT_DATABASE_URL=reference, CARSPOT_CONSUMER_GROUP="reference")
    carspot("migrate", env=ref_env)
    carspot("worker", *WORKER_BOUNDS, env=ref_env)
    expected = snapshot(reference)

    worker = start_carspot("worker", *WORKER_BOUNDS, env=env, log=tmp_path / "killed.log")
    try:
        stored = _wait_for_analyses(isolated.database_url, at_least=8, timeout_s=120)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert stored < count_analyses(reference), "killed before the end"

    carspot("worker", *WORKER_BOUNDS, env=env)
    assert snapshot(isolated.database_url) == expected


def test_sigterm_finishes_the_batch_commits_and_exits_cleanly(
    isolated: Isolated, corpus: Corpus, tmp_path: Path
) -> None:
    env = isolated.env(CARSPOT_BATCH_MAX_MESSAGES="4")
    carspot("migrate", env=env)
    carspot("ingest", f"jsonl:{corpus.jsonl}", env=env)
    worker = start_carspot("worker", *WORKER_BOUNDS, env=env, log=tmp_path / "terminated.log")
    try:
        _wait_for_analyses(isolated.database_url, at_least=4, timeout_s=120)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, (tmp_path / "terminated.log").read_text()[-3000:]
    finally:
        if worker.poll() is None:
            worker.kill()
    carspot("worker", *WORKER_BOUNDS, env=env)
    per_post = analyses_per_post(isolated.database_url)
    assert set(per_post) == corpus.good and set(per_post.values()) == {1}
