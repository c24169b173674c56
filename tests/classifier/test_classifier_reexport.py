"""`carspot models reexport`: a version's brand weights in a new version, its files made again by today's code."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from carspot.classifier.data import load_image, load_samples

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:keras.*")


def _tiny_dataset(shared_dir: Path, folder: Path) -> Path:
    """24 Stanford Cars photos of two makes, as a dataset of its own (a CSV beside absolute paths)."""
    samples = load_samples(shared_dir / "data" / "stanford-cars" / "labels.csv")
    chosen = [s for make in ("smart", "Tesla") for s in [x for x in samples if x.make == make][:12]]
    folder.mkdir()
    labels = folder / "labels.csv"
    with labels.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "make"])
        writer.writerows([str(s.path), s.make] for s in chosen)
    return labels


def test_a_reexported_version_keeps_the_brand_weights_and_answers_as_the_original(
    tmp_path: Path, shared_dir: Path
) -> None:
    from carspot.classifier.reexport import reexport
    from carspot.classifier.registry import read_manifest
    from carspot.classifier.serving import load_classifier
    from carspot.classifier.training import TrainConfig, train

    labels = _tiny_dataset(shared_dir, tmp_path / "tiny")
    models = tmp_path / "models"
    config = TrainConfig(views=1, head_epochs=2, finetune_epochs=1, batch_size=8, input_size=64, min_photos_per_make=10)
    train(
        [labels],
        model_dir=models,
        version="original",
        split="by-image",
        config=config,
        progress=False,
        compare_by_image=False,
        cache_dir=tmp_path / "cache",
    )
    name = reexport(models, "original", sources=[labels], new_version="again")
    assert name == "again"
    original, again = read_manifest(models, "original"), read_manifest(models, "again", verify=True)
    assert again["derived_from"]["version"] == "original"
    assert again["tensorflow_weights"]["sha256"] == original["tensorflow_weights"]["sha256"]
    assert again["labels"] == original["labels"] and again["training"] == original["training"]
    assert again["car_head"]["photos"] == original["car_head"]["photos"]
    assert set(again["metrics"]) >= {"combined/released", "combined/released-onnx-int8"}
    trained = {k: v for k, v in original["metrics"].items() if "/released" not in k}
    assert trained and all(again["metrics"][k] == v for k, v in trained.items())  # the weights' own figures
    assert not {k for k in again["metrics"] if "released-float32" in k or "released-int8" in k}  # other files'

    assert (models / "versions" / "again" / "validation.json").is_file()
    with pytest.raises(FileExistsError):  # a version is never rewritten
        reexport(models, "original", sources=[labels], new_version="again")
    read_manifest(models, "again", verify=True)
    photos = [load_image(s.path) for s in load_samples(labels)[::4]]
    for runtime in ("onnxruntime", "litert"):
        before = load_classifier(models, "original", runtime=runtime, threads=1)
        after = load_classifier(models, "again", runtime=runtime, threads=1)
        assert [top[0][0] for top in after.predict(photos)] == [top[0][0] for top in before.predict(photos)]
        np.testing.assert_allclose(after.probabilities(photos), before.probabilities(photos), atol=0.05)
        np.testing.assert_allclose(after.predict_regions(photos)[1], before.predict_regions(photos)[1], atol=0.1)
