"""The released model committed under ``models/``: one current version, small, verified, serving real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from carspot.classifier.registry import CURRENT_FILE, current_version, list_versions, read_manifest
from carspot.classifier.serving import load_classifier

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_one_current_version_within_25_mb() -> None:
    version = current_version(MODELS)
    assert version is not None and list_versions(MODELS) == [version]
    committed = [MODELS / CURRENT_FILE, *(MODELS / "versions" / version).iterdir()]
    assert sum(p.stat().st_size for p in committed) <= 25 * 1024 * 1024
    manifest = read_manifest(MODELS, version, verify=True)
    assert len(manifest["labels"]) == 53  # Stanford Cars' 49 makes and cars-web's Kia, Lexus, Alfa Romeo, Maserati
    assert {"Kia", "Lexus", "Alfa Romeo", "Maserati"} <= set(manifest["labels"])
    assert {
        "combined/released",
        "stanford-cars by-model/released-onnx-int8",
        "cars-web by-photo/released-onnx-int8",
        "by-image/head",
    } <= set(manifest["metrics"])


def test_loads_and_ranks_makes_on_a_real_photo(shared_dir: Path) -> None:
    classifier = load_classifier(MODELS)  # its load time is a benchmark figure (bench/classifier.py)
    photo = np.asarray(Image.open(shared_dir / "data" / "stanford-cars" / "images" / "00001.jpg").convert("RGB"))
    (ranking,) = classifier.predict([photo])
    assert len(ranking) == 5 and all(make in classifier.labels for make, _ in ranking)
    assert ranking[0][0] == "Audi"  # an Audi TTS from the training split: the model must at least know it
    assert 0.0 < sum(score for _, score in ranking) <= 1.0 + 1e-6


def test_the_release_was_made_by_the_default_recipe() -> None:
    """So `train()` with `TrainConfig()` defaults (the README's recipe) reproduces the committed model."""
    from dataclasses import asdict

    from carspot.classifier.training import TrainConfig

    version = current_version(MODELS)
    assert version is not None
    manifest = read_manifest(MODELS, version)
    recipe, defaults = manifest["training"]["recipe"], asdict(TrainConfig())
    assert recipe == defaults  # every option of today's recipe, at its default
    assert defaults["input_size"] == manifest["input"]["size"] == 256
    assert manifest["precision"] == "int8" and manifest["training"]["split"] == "combined"
    assert {name: d["split"] for name, d in manifest["training"]["datasets"].items()} == {
        "stanford-cars": "by-model",
        "cars-web": "by-photo",
    }
    assert manifest["car_branch"]["input_downscale"] == 2  # the car check reads its own frozen ImageNet branch
    assert manifest["car_head"]["logit_scale"] == 4.0  # what training fits: the designed scale, reached at once
