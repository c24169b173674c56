"""Settings: one typed class, read from the environment and the services file (documented in
docs/configuration.md, generated from it: tests/pipeline/test_settings_doc.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from carspot.pipeline.settings import AnalysisMode, Settings

REPO = Path(__file__).resolve().parents[2]


def test_the_readme_names_only_settings_that_exist() -> None:
    named = set(re.findall(r"`(CARSPOT_[A-Z0-9_]+)`", (REPO / "README.md").read_text()))
    declared = {f"CARSPOT_{name.upper()}" for name in Settings.model_fields}
    assert named - declared == set()


def test_the_services_file_is_read_and_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    services = tmp_path / "data" / "services"
    services.mkdir(parents=True)
    (services / "services.env").write_text(
        "CARSPOT_KAFKA_BOOTSTRAP=127.0.0.1:1234\nCARSPOT_DATABASE_URL=postgresql+psycopg://u:hunter2@127.0.0.1:5/db\n"
    )
    monkeypatch.chdir(tmp_path)
    for name in ("CARSPOT_KAFKA_BOOTSTRAP", "CARSPOT_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CARSPOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CARSPOT_MODE", "detector")
    settings = Settings.load()
    assert settings.kafka_bootstrap == "127.0.0.1:1234"
    assert settings.resolved_database_url.endswith("@127.0.0.1:5/db")
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())
    assert settings.mode is AnalysisMode.DETECTOR

    monkeypatch.setenv("CARSPOT_KAFKA_BOOTSTRAP", "127.0.0.2:9")
    assert Settings.load().kafka_bootstrap == "127.0.0.2:9"


def test_the_default_database_is_sqlite_in_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARSPOT_DATABASE_URL", raising=False)
    settings = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    assert settings.resolved_database_url == f"sqlite:///{tmp_path.resolve()}/carspot.db"


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARSPOT_IMAGE_MAX_SIDE", "10")
    with pytest.raises(ValueError, match="image_max_side"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_choice_settings_match_the_modules_that_define_the_choices() -> None:
    """Settings spells these out (importing the detector and classifier packages would slow every CLI start)."""
    from typing import get_args

    from carspot.classifier.runtime import RuntimeChoice
    from carspot.detector.proposals import ProposalMode

    fields = Settings.model_fields
    assert get_args(fields["proposal_mode"].annotation) == get_args(ProposalMode)
    assert get_args(fields["classifier_runtime"].annotation) == get_args(RuntimeChoice)


def test_the_whole_image_car_threshold_defaults_to_the_measured_value_the_analysis_documents() -> None:
    from carspot.analysis.modes import WHOLE_IMAGE_CAR_THRESHOLD

    assert Settings.model_fields["whole_image_car_threshold"].default == WHOLE_IMAGE_CAR_THRESHOLD
    assert Settings.model_fields["region_car_threshold"].default > WHOLE_IMAGE_CAR_THRESHOLD


def test_the_detector_box_car_threshold_defaults_to_the_value_the_analysis_documents(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from carspot.analysis.modes import DETECTOR_BOX_CAR_THRESHOLD

    assert Settings.model_fields["detector_box_car_threshold"].default == DETECTOR_BOX_CAR_THRESHOLD
    monkeypatch.setenv("CARSPOT_DETECTOR_BOX_CAR_THRESHOLD", "0")
    assert Settings(_env_file=None).detector_box_car_threshold == 0.0  # type: ignore[call-arg]


def test_the_detector_max_inside_defaults_to_the_value_the_analysis_documents() -> None:
    from carspot.analysis.modes import DETECTOR_MAX_INSIDE

    assert Settings.model_fields["detector_max_inside"].default == DETECTOR_MAX_INSIDE


def test_the_detector_size_floor_defaults_to_the_value_the_analysis_documents() -> None:
    from carspot.analysis.modes import DETECTOR_MIN_BOX_AREA

    assert Settings.model_fields["detector_min_box_area"].default == DETECTOR_MIN_BOX_AREA


def test_centernet_input_size_takes_exactly_the_sizes_the_detector_has_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from carspot.detector.centernet import INPUT_SIZES

    for size in INPUT_SIZES:
        monkeypatch.setenv("CARSPOT_CENTERNET_INPUT_SIZE", str(size))
        assert Settings(_env_file=None).centernet_input_size == size  # type: ignore[call-arg]
    for size in (256, 448, 640):
        monkeypatch.setenv("CARSPOT_CENTERNET_INPUT_SIZE", str(size))
        with pytest.raises(ValueError, match="centernet_input_size"):
            Settings(_env_file=None)  # type: ignore[call-arg]


def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("CARSPOT_DATABASE_URL", "CARSPOT_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CARSPOT_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data" / "services" / "services.env"


def test_one_rule_chooses_the_database_and_says_which(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment, then the services `up` started while its file is there, then .env, then SQLite."""
    services_env = _clean_env(monkeypatch, tmp_path)
    sqlite = f"sqlite:///{(tmp_path / 'data').resolve()}/carspot.db"

    settings = Settings.load()
    assert settings.resolved_database_url == sqlite
    assert "the default: SQLite" in settings.describe_database() and not settings.database_from_services

    (tmp_path / ".env").write_text("CARSPOT_DATABASE_URL=postgresql://dotenv:pw1@127.0.0.1:1/db\n")
    assert Settings.load().database_origin == "CARSPOT_DATABASE_URL in .env"

    services_env.parent.mkdir(parents=True)
    services_env.write_text("CARSPOT_DATABASE_URL=postgresql+psycopg://carspot:pw2@127.0.0.1:2/carspot\n")
    settings = Settings.load()
    assert settings.resolved_database_url.endswith("@127.0.0.1:2/carspot") and settings.database_from_services
    line = settings.describe_database()
    assert line.startswith("database: postgresql+psycopg://carspot:***@127.0.0.1:2/carspot (")
    assert "pw2" not in line and "carspot services up" in line

    monkeypatch.setenv("CARSPOT_DATABASE_URL", "postgresql://env:pw3@127.0.0.1:3/db")
    assert Settings.load().database_origin == "CARSPOT_DATABASE_URL in the environment"

    monkeypatch.delenv("CARSPOT_DATABASE_URL")
    services_env.unlink()  # what `carspot services down` does
    (tmp_path / ".env").unlink()
    assert Settings.load().resolved_database_url == sqlite


def test_the_data_dir_may_come_from_dotenv_and_its_services_file_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _clean_env(monkeypatch, tmp_path)
    monkeypatch.delenv("CARSPOT_DATA_DIR")
    (tmp_path / ".env").write_text("CARSPOT_DATA_DIR=elsewhere\n")
    services_env = tmp_path / "elsewhere" / "services" / "services.env"
    services_env.parent.mkdir(parents=True)
    services_env.write_text("CARSPOT_DATABASE_URL=postgresql+psycopg://carspot:pw@127.0.0.1:2/carspot\n")
    assert Settings.load().database_from_services
