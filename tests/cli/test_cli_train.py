"""`carspot train`: the recipe's defaults unless the user sets the fine-tuning length or the input side; a side
the network cannot take is refused before any image is read. Training itself is faked here (it takes hours; its
own tests run it on a tiny subset): these tests check what the command asks of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from carspot.classifier import training
from carspot.classifier.training import TrainConfig
from carspot.cli.main import app
from carspot.pipeline import logs


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict[str, Any]]:
    """Every call the command makes to training, with its arguments; each returns a finished version."""
    monkeypatch.setenv("CARSPOT_MODEL_DIR", str(tmp_path / "models"))
    # the command configures the process' logging; in-process that would outlive this test and change others'
    monkeypatch.setattr(logs, "configure_logging", lambda **_: None)
    monkeypatch.setenv("CARSPOT_DATA_DIR", str(tmp_path / "data"))
    calls: list[dict[str, Any]] = []

    def recorded_training(data: Any, **options: Any) -> training.TrainResult:
        calls.append({"data": data, **options})
        return training.TrainResult(
            version="20261201T000000Z",
            directory=tmp_path / "models" / "versions" / "20261201T000000Z",
            split=options["split"],
            metrics={"by-model": {"top1": 0.5}},
            report=None,  # type: ignore[arg-type]  # the command prints metrics, never the report
            seconds=1.0,
        )

    monkeypatch.setattr(training, "train", recorded_training)
    return calls


def _train(*args: str) -> Any:
    """``carspot train ARGS`` in-process, on a terminal wide enough that an error is one line."""
    return CliRunner().invoke(app, ["train", *args], env={"COLUMNS": "200"})


def test_without_options_it_trains_the_released_recipe(asked: list[dict[str, Any]], tmp_path: Path) -> None:
    data = tmp_path / "labels.csv"

    done = _train("--data", str(data))

    assert done.exit_code == 0, done.output
    assert len(asked) == 1
    assert asked[0]["data"] == [data]
    assert asked[0]["resume"] is False
    assert asked[0]["config"] == TrainConfig()
    assert asked[0]["split"] == "by-model"
    assert asked[0]["cache_dir"] == tmp_path / "data" / "cache" / "features"
    printed = json.loads(done.output[: done.output.rindex("}") + 1])
    assert printed["version"] == "20261201T000000Z"
    assert "carspot models promote 20261201T000000Z" in done.output


def test_epochs_and_input_side_reach_the_training_config(asked: list[dict[str, Any]], tmp_path: Path) -> None:
    done = _train("--data", str(tmp_path), "--epochs", "3", "--input-size", "256")

    assert done.exit_code == 0, done.output
    assert asked[0]["config"] == TrainConfig(finetune_epochs=3, input_size=256)


@pytest.mark.parametrize(("option", "value"), [("--input-size", "200"), ("--input-size", "0"), ("--epochs", "0")])
def test_an_impossible_option_is_refused_before_training(
    asked: list[dict[str, Any]], tmp_path: Path, option: str, value: str
) -> None:
    done = _train("--data", str(tmp_path), option, value)

    assert done.exit_code == 2
    assert option in done.output
    assert asked == []


def test_an_input_side_gets_the_reason_it_is_refused(asked: list[dict[str, Any]], tmp_path: Path) -> None:
    done = _train("--data", str(tmp_path), "--input-size", "200")

    assert "multiple of 32" in done.output
