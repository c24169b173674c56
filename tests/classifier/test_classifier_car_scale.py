"""Each version's car head scale: fitted on its own training photos, recorded in its manifest, served by it.

Fine-tuning and a larger input side shrank the ImageNet logits on the features of versions whose car head read the
brand network; at the designed scale their car photos scored low and car-free images high against the analysis'
fixed thresholds, and the fitted scale put the car photos back. Today's release reads a frozen branch of its own,
whose features reach the target at the designed scale."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from carspot.classifier.car_head import (
    CAR_MEDIAN_TARGET,
    LOGIT_SCALE,
    car_probability,
    fit_logit_scale,
    imagenet_head,
)
from carspot.classifier.car_scale import fit_car_head
from carspot.classifier.data import load_samples, split_by_model
from carspot.classifier.errors import ManifestError
from carspot.classifier.registry import current_version, read_manifest
from carspot.classifier.serving import BrandClassifier, load_classifier
from carspot.classifier.training import calibration_photos
from tests.classifier.released import release_copy

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="module")
def photos(shared_dir: Path) -> list[np.ndarray]:
    """Every 64th of the release's Stanford Cars training photos (the kind of photos training fits the scale on)."""
    samples = load_samples(shared_dir / "data" / "stanford-cars" / "labels.csv")
    return calibration_photos(samples, split_by_model(samples).train[::4])


@pytest.fixture(scope="module")
def released() -> BrandClassifier:
    return load_classifier(MODELS)


@pytest.fixture(scope="module")
def features(released: BrandClassifier, photos: list[np.ndarray]) -> np.ndarray:
    return released.pooled_features(photos)


def test_the_released_scale_is_what_fitting_its_training_photos_gives(features: np.ndarray) -> None:
    head = imagenet_head()
    scale = read_manifest(MODELS, current_version(MODELS) or "")["car_head"]["logit_scale"]
    assert fit_logit_scale(features, head) == scale == LOGIT_SCALE  # the frozen car branch: no drift to undo
    assert float(np.median(car_probability(features, head, scale=scale))) >= CAR_MEDIAN_TARGET


def test_features_that_already_reach_the_target_keep_the_designed_scale(features: np.ndarray) -> None:
    assert fit_logit_scale(features * 1.5, imagenet_head()) == LOGIT_SCALE


def test_shrunken_logits_get_a_sharper_scale_that_restores_the_car_photos(features: np.ndarray) -> None:
    """What fine-tuning does to a version's features: flatter ImageNet logits, a lower median P(car)."""
    head = imagenet_head()
    shrunk = next(  # the mildest shrink that takes the median under the target: flatter ImageNet logits
        features * a
        for a in (0.5, 0.2, 0.1, 0.05, 0.02, 0.01)
        if float(np.median(car_probability(features * a, head))) < CAR_MEDIAN_TARGET
    )
    scale = fit_logit_scale(shrunk, head)
    assert scale > LOGIT_SCALE
    assert float(np.median(car_probability(shrunk, head, scale=scale))) >= CAR_MEDIAN_TARGET
    assert float(np.median(car_probability(shrunk, head, scale=scale - 0.5))) < CAR_MEDIAN_TARGET  # the smallest


def test_a_scale_needs_car_photos() -> None:
    with pytest.raises(ValueError, match="car photos"):
        fit_logit_scale(np.zeros((0, 1280), np.float32), imagenet_head())


def test_fitting_records_the_scale_and_serving_uses_it(
    tmp_path: Path, photos: list[np.ndarray], released: BrandClassifier
) -> None:
    copy, version = release_copy(tmp_path)
    path = copy / "versions" / version / "manifest.json"
    path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "car_head"}))
    assert load_classifier(copy, version).car_logit_scale == LOGIT_SCALE  # a version from before: the designed

    entry = fit_car_head(copy, version, car_photos=photos[:64])

    assert entry["logit_scale"] == fit_logit_scale(released.pooled_features(photos[:64]), imagenet_head())
    assert entry["photos"] == 64 and entry["reached_target"] is True
    assert read_manifest(copy, version, verify=True)["car_head"] == entry  # the served files untouched
    assert load_classifier(copy, version).car_logit_scale == entry["logit_scale"]
    path.write_text(json.dumps({**json.loads(path.read_text()), "car_head": {**entry, "logit_scale": 1.0}}))
    flatter = load_classifier(copy, version)
    crops = photos[:4]
    _, served = flatter.predict_regions(crops)
    expected = car_probability(released.pooled_features(crops), imagenet_head(), scale=1.0)
    np.testing.assert_allclose(served, expected, rtol=1e-5)
    assert not np.allclose(served, released.predict_regions(crops)[1])


def test_a_target_no_scale_reaches_is_recorded_and_warned_about(
    tmp_path: Path, photos: list[np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    copy, version = release_copy(tmp_path)

    with caplog.at_level("WARNING", logger="carspot.classifier.car_scale"):
        entry = fit_car_head(copy, version, car_photos=photos[:16], target_median=1.01)  # beyond any probability

    assert entry["reached_target"] is False and entry["logit_scale"] == 10.0  # the largest it tries
    assert entry["median_car_probability"] <= 1.0
    assert "will likely fail the promote check" in caplog.text


@pytest.mark.parametrize("scale", [0, -4.0, "4", None, True, float("nan")])
def test_an_impossible_scale_in_a_manifest_is_refused_at_load(tmp_path: Path, scale: object) -> None:
    copy, version = release_copy(tmp_path)
    path = copy / "versions" / version / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "car_head": {"logit_scale": scale}}))
    with pytest.raises(ManifestError, match=r"car_head\.logit_scale"):
        load_classifier(copy, version)
