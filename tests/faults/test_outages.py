"""Real outages while ingest and a worker run (issue 24, defect 4; the fault suite's "PostgreSQL stop + start"
and "broker kill + restart"): on a private Kafka, PostgreSQL and Redis, so the shared ones are never touched.
Afterwards every good post is stored once, each picture analysed once, every planted bad input has exactly one
dead letter, and the worker that lived through the outage stops on SIGTERM with status 0: it never needed a
hand to restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kafka.admin import KafkaAdminClient, NewTopic
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.faults.stack import PrivateStack
from tests.integration.corpus import Corpus, build_corpus
from tests.integration.support import carspot, dead_letters, read_topic, start_carspot

pytestmark = pytest.mark.integration

DUPLICATES = {
    "posts": "SELECT post_id FROM posts GROUP BY post_id HAVING count(*) > 1",
    "analyses": """SELECT image_sha256, mode, model_version FROM analyses
                   GROUP BY image_sha256, mode, model_version HAVING count(*) > 1""",
}


@dataclass(frozen=True)
class Run:
    """One test's topics, database and Redis prefix on the private stack, and the CLI's environment."""

    stack: PrivateStack
    env: dict[str, str]
    database_url: str
    dlq_topic: str


@pytest.fixture
def run(stack: PrivateStack, tmp_path: Path) -> Run:
    tag = uuid.uuid4().hex[:8]
    posts, dlq = f"f-{tag}.posts", f"f-{tag}.dlq"
    admin = KafkaAdminClient(bootstrap_servers=stack.endpoints.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(posts, 2, 1), NewTopic(dlq, 1, 1)])
    finally:
        admin.close()
    server = make_url(stack.endpoints.database_url)
    with psycopg.connect(
        server.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True
    ) as c:
        c.execute(f'CREATE DATABASE "f_{tag}"')
    database_url = server.set(database=f"f_{tag}").render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARSPOT_")}
    env.update(
        CARSPOT_DATA_DIR=str(stack.root.parent),
        CARSPOT_SHARED_DIR=os.environ.get(
            "CARSPOT_SHARED_DIR", str(Path(__file__).resolve().parents[2].parent / "shared")
        ),
        CARSPOT_DATABASE_URL=database_url,
        CARSPOT_POSTS_TOPIC=posts,
        CARSPOT_DLQ_TOPIC=dlq,
        CARSPOT_CONSUMER_GROUP=f"f-{tag}",
        CARSPOT_REDIS_KEY_PREFIX=f"f-{tag}:",
        CARSPOT_BATCH_MAX_MESSAGES="8",
    )
    carspot("migrate", env=env)
    return Run(stack, env, database_url, dlq)


@pytest.fixture
def corpus(tmp_path: Path, scenes_dir: Path) -> Corpus:
    return build_corpus(tmp_path / "corpus", scenes_dir, total=40, reposts=6)


def halves(corpus: Corpus) -> tuple[Path, Path]:
    lines = corpus.jsonl.read_text().splitlines(keepends=True)
    first, second = corpus.jsonl.with_name("first.jsonl"), corpus.jsonl.with_name("second.jsonl")
    first.write_text("".join(lines[: len(lines) // 2]))
    second.write_text("".join(lines[len(lines) // 2 :]))
    return first, second


def scalar(url: str, sql: str) -> object:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()
    except Exception:  # the database is down: nothing to count yet
        return None
    finally:
        engine.dispose()


def wait_for(what: str, predicate: object, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout_s:.0f} s: {what}")


def stop_worker(worker: subprocess.Popen[bytes], log: Path) -> None:
    assert worker.poll() is None, f"the worker died during the outage:\n{log.read_text()[-3000:]}"
    worker.send_signal(signal.SIGTERM)
    try:
        code = worker.wait(timeout=120)
    except subprocess.TimeoutExpired:
        worker.kill()
        raise AssertionError(f"the worker ignored SIGTERM:\n{log.read_text()[-3000:]}") from None
    assert code == 0, f"worker exited {code}:\n{log.read_text()[-3000:]}"


def printed_stats(log: Path) -> dict[str, Any]:
    """The JSON summary ingest printed, among its log lines."""
    output = log.read_text()
    stats, _end = json.JSONDecoder().raw_decode(output, output.index("{\n"))
    return dict(stats)


def check_counts(run: Run, corpus: Corpus, emitted: int) -> None:
    engine = create_engine(run.database_url)
    try:
        with engine.connect() as conn:
            stored = set(conn.execute(text("SELECT post_id FROM posts")).scalars())
            analyses = conn.execute(text("SELECT count(*) FROM analyses")).scalar_one()
            duplicated = {name: conn.execute(text(sql)).all() for name, sql in DUPLICATES.items()}
    finally:
        engine.dispose()
    assert stored == corpus.good, "every good post stored, nothing else"
    assert analyses == emitted, "each distinct picture analysed once"
    assert duplicated == {"posts": [], "analyses": []}
    letters = dead_letters(run.stack.endpoints.kafka_bootstrap, run.dlq_topic)
    assert sorted(letter.post_id or "" for letter in letters) == sorted(corpus.bad), "one dead letter per bad input"
    assert {letter.post_id: letter.reason for letter in letters} == corpus.bad


def test_postgresql_stopped_and_started_while_ingest_and_a_worker_run(run: Run, corpus: Corpus, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    worker = start_carspot("worker", "--timeout", "900", env=run.env, log=log)
    try:
        first, second = halves(corpus)
        emitted = carspot("ingest", f"jsonl:{first}", env=run.env)["emitted"]
        wait_for(
            "some posts stored",
            lambda: (scalar(run.database_url, "SELECT count(*) FROM posts") or 0) > 0,
            timeout_s=300,
        )
        run.stack.stop_postgres()
        emitted += carspot("ingest", f"jsonl:{second}", env=run.env)["emitted"]
        wait_for("the worker warns while it waits", lambda: log.read_text().count("retrying in") >= 2, timeout_s=120)
        assert worker.poll() is None, f"the worker died during the outage:\n{log.read_text()[-3000:]}"
        run.stack.restart()
        wait_for(
            "every good post stored after the outage",
            lambda: scalar(run.database_url, "SELECT count(*) FROM posts") == len(corpus.good),
            timeout_s=300,
        )
        stop_worker(worker, log)
    finally:
        if worker.poll() is None:
            worker.kill()
    check_counts(run, corpus, emitted)


def test_the_broker_killed_and_restarted_while_ingest_and_a_worker_run(
    run: Run, corpus: Corpus, tmp_path: Path
) -> None:
    log, ingest_log = tmp_path / "worker.log", tmp_path / "ingest.log"
    worker = start_carspot("worker", "--timeout", "900", env=run.env, log=log)
    ingest: subprocess.Popen[bytes] | None = None
    try:
        first, second = halves(corpus)
        emitted = carspot("ingest", f"jsonl:{first}", env=run.env)["emitted"]
        wait_for(
            "some posts stored",
            lambda: (scalar(run.database_url, "SELECT count(*) FROM posts") or 0) > 0,
            timeout_s=300,
        )
        run.stack.kill_kafka()
        ingest = start_carspot("ingest", f"jsonl:{second}", env=run.env, log=ingest_log)
        wait_for(
            "ingest waits and says so",
            lambda: "waiting" in ingest_log.read_text() or "again" in ingest_log.read_text(),
            timeout_s=120,
        )
        assert ingest.poll() is None, f"ingest died during the outage:\n{ingest_log.read_text()[-3000:]}"
        assert worker.poll() is None, f"the worker died during the outage:\n{log.read_text()[-3000:]}"
        run.stack.restart()
        assert ingest.wait(timeout=300) == 0, ingest_log.read_text()[-3000:]
        emitted += printed_stats(ingest_log)["emitted"]
        wait_for(
            "every good post stored after the outage",
            lambda: scalar(run.database_url, "SELECT count(*) FROM posts") == len(corpus.good),
            timeout_s=300,
        )
        stop_worker(worker, log)
    finally:
        for process in (worker, ingest):
            if process is not None and process.poll() is None:
                process.kill()
    check_counts(run, corpus, emitted)
    again = carspot("ingest", f"jsonl:{corpus.jsonl}", env=run.env)
    assert again["emitted"] == 0 and again["duplicate_posts"] == corpus.total, "nothing was claimed and lost"


def test_sigterm_during_a_broker_outage_stops_ingest_and_a_rerun_sends_the_rest(
    run: Run, corpus: Corpus, tmp_path: Path
) -> None:
    ingest_log = tmp_path / "ingest.log"
    run.stack.kill_kafka()
    try:
        ingest = start_carspot("ingest", f"jsonl:{corpus.jsonl}", env=run.env, log=ingest_log)
        try:
            wait_for(
                "ingest waits and says so",
                lambda: "again" in ingest_log.read_text() or "waiting" in ingest_log.read_text(),
                timeout_s=120,
            )
            ingest.send_signal(signal.SIGTERM)
            code = ingest.wait(timeout=60)
        finally:
            if ingest.poll() is None:
                ingest.kill()
        assert code == 0, ingest_log.read_text()[-3000:]
        stopped = printed_stats(ingest_log)
        assert stopped["stop_reason"] == "should_stop"
    finally:
        run.stack.restart()
    rerun = carspot("ingest", f"jsonl:{corpus.jsonl}", env=run.env)
    assert rerun["duplicate_posts"] == stopped["emitted"] + stopped["emitted_links"] + sum(stopped["rejected"].values())
    posts = {
        key.decode()
        for key, _value in read_topic(run.stack.endpoints.kafka_bootstrap, run.env["CARSPOT_POSTS_TOPIC"])
        if key
    }
    assert posts == corpus.good, "every good post reached Kafka, over the two runs"
