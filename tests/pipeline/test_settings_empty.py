"""A setting that is set but empty means unset (issue 24, defect 11): ``CARSPOT_REDIS_URL=`` is in-memory
de-duplication, not a traceback from redis-py; the same for every optional URL, token and path."""

from __future__ import annotations

from pathlib import Path

import pytest

from carspot.ingest.dedup import InMemoryDeduplicator
from carspot.pipeline.app import make_deduplicator
from carspot.pipeline.settings import Settings

OPTIONAL = ("REDIS_URL", "X_BEARER_TOKEN", "HTTP_PUSH_TOKEN", "X_RULES_FILE", "DETECTOR_WEIGHTS")


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CARSPOT_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def test_empty_optional_settings_in_the_environment_are_unset(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (*OPTIONAL, "DATABASE_URL", "KAFKA_BOOTSTRAP"):
        monkeypatch.setenv(f"CARSPOT_{name}", "")
    settings = Settings.load()
    assert settings.redis_url is None and settings.x_bearer_token is None and settings.http_push_token is None
    assert settings.x_rules_file is None and settings.detector_weights is None
    assert settings.resolved_database_url.startswith("sqlite:///")
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert isinstance(make_deduplicator(settings), InMemoryDeduplicator)


def test_empty_lines_in_the_env_file_are_unset_too(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OPTIONAL:
        monkeypatch.delenv(f"CARSPOT_{name}", raising=False)
    (isolated_env / ".env").write_text("".join(f"CARSPOT_{name}=\n" for name in OPTIONAL))
    settings = Settings.load()
    assert settings.redis_url is None and settings.detector_weights is None and settings.x_rules_file is None
