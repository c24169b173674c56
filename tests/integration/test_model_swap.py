"""A worker under load picks up a newly promoted brand model without a restart, losing and duplicating nothing,
and every stored analysis records the model version that made it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from carspot.classifier.registry import current_version, set_current
from tests.integration.conftest import Isolated
from tests.integration.corpus import Corpus, build_corpus
from tests.integration.support import analyses_per_post, carspot, dead_letters, start_carspot
from tests.integration.test_end_to_end import WORKER_BOUNDS, _wait_for_analyses

pytestmark = pytest.mark.integration
REPO_MODELS = Path(__file__).resolve().parents[2] / "models"


def registry_with_two_versions(folder: Path) -> tuple[str, str]:
    """A copy of the released registry plus a second version (same weights, its own name)."""
    shutil.copytree(REPO_MODELS, folder, ignore=shutil.ignore_patterns("backbone", ".cache", ".logs"))
    first = current_version(folder)
    assert first is not None
    second = "zz-swapped-in"
    shutil.copytree(folder / "versions" / first, folder / "versions" / second)
    manifest_path = folder / "versions" / second / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["version"] = second
    manifest_path.write_text(json.dumps(manifest))
    return first, second


def versions_in_database(url: str) -> dict[str, int]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT model_version, count(*) FROM analyses GROUP BY model_version"))
            return {str(version): int(n) for version, n in rows}
    finally:
        engine.dispose()


def test_a_promoted_model_is_swapped_in_under_load(isolated: Isolated, scenes_dir: Path, tmp_path: Path) -> None:
    corpus: Corpus = build_corpus(tmp_path / "corpus", scenes_dir, total=160, reposts=20)
    models = tmp_path / "models"
    first, second = registry_with_two_versions(models)
    env = isolated.env(
        CARSPOT_MODEL_DIR=str(models), CARSPOT_MODEL_CHECK_INTERVAL_S="0.2", CARSPOT_BATCH_MAX_MESSAGES="4"
    )
    carspot("migrate", env=env)
    ingested = carspot("ingest", f"jsonl:{corpus.jsonl}", env=env)
    worker = start_carspot("worker", *WORKER_BOUNDS, env=env, log=tmp_path / "worker.log")
    try:
        _wait_for_analyses(isolated.database_url, at_least=10, timeout_s=120)
        set_current(models, second)  # what `carspot models promote` does once the candidate wins
        assert worker.wait(timeout=600) == 0, (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        if worker.poll() is None:
            worker.kill()

    per_post = analyses_per_post(isolated.database_url)
    assert set(per_post) == corpus.good and set(per_post.values()) == {1}, "nothing lost, nothing twice"
    by_version = versions_in_database(isolated.database_url)
    assert set(by_version) == {first, second}, by_version
    assert sum(by_version.values()) == ingested["emitted"]  # each distinct picture analysed once
    assert {letter.post_id for letter in dead_letters(isolated.services.kafka_bootstrap, isolated.dlq_topic)} == set(
        corpus.bad
    )
    assert "brand model" in (tmp_path / "worker.log").read_text()
