"""A training run killed after an epoch and resumed gives the model an uninterrupted run gives (a tiny real set)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from carspot.classifier.data import load_image, load_samples

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:keras.*")


class Killed(Exception):
    """What a kill after the first epoch's checkpoint looks like to the run."""


def _subset(shared_dir: Path) -> list[Any]:
    samples = load_samples(shared_dir / "data" / "stanford-cars" / "labels.csv")
    return [s for make in ("smart", "Tesla") for s in [x for x in samples if x.make == make][:12]]


def test_a_resumed_run_gives_the_model_of_an_uninterrupted_one(tmp_path: Path, shared_dir: Path) -> None:
    from carspot.classifier.serving import load_classifier
    from carspot.classifier.training import TrainConfig, train

    subset = _subset(shared_dir)
    config = TrainConfig(views=1, head_epochs=2, finetune_epochs=2, batch_size=8, input_size=64, quantize=False)
    options: dict[str, Any] = dict(
        split="by-image", config=config, compare_by_image=False, progress=False, cache_dir=tmp_path / "cache"
    )

    def run(version: str, *, resume: bool, kill_after: int | None = None) -> tuple[Any, list[int]]:
        epochs: list[int] = []

        def on_stage(stage: str, numbers: dict[str, Any]) -> None:
            if stage == "finetune/epoch":
                epochs.append(numbers["epochs_done"])
                if numbers["epochs_done"] == kill_after:
                    raise Killed

        result = train(
            subset, model_dir=tmp_path / "models", version=version, resume=resume, on_stage=on_stage, **options
        )
        return result, epochs

    with pytest.raises(Killed):
        run("killed", resume=False, kill_after=1)
    resumed, resumed_epochs = run("resumed", resume=True)
    assert resumed_epochs == [2]  # only the epoch the kill cost is trained again
    whole, whole_epochs = run("whole", resume=False)
    assert whole_epochs == [1, 2]  # without --resume a run starts afresh, whatever checkpoint is there
    photos = [load_image(s.path) for s in subset[::3]]
    a = load_classifier(tmp_path / "models", "whole", runtime="litert", threads=1).probabilities(photos)
    b = load_classifier(tmp_path / "models", "resumed", runtime="litert", threads=1).probabilities(photos)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert whole.metrics["by-image/finetuned"] == resumed.metrics["by-image/finetuned"]
