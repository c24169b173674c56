"""Which runtime serves the brand model, and the TensorFlow (GPU) runtime serving the released model.

This machine has no GPU, so the TensorFlow runtime is checked on TensorFlow's CPU device: same weights, same
code path as on a GPU."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from carspot.classifier.errors import ModelIntegrityError, ModelLoadError
from carspot.classifier.litert_runtime import EXACT_BATCHES, batch_sizes
from carspot.classifier.registry import current_version, read_manifest
from carspot.classifier.runtime import choose_runtime, gpu_visible
from carspot.classifier.serving import BrandClassifier, load_classifier

MODELS = Path(__file__).resolve().parents[2] / "models"


def never() -> bool:
    raise AssertionError("an explicit choice must not probe for a GPU")


def test_auto_serves_on_tensorflow_only_with_a_gpu_and_the_keras_weights() -> None:
    assert choose_runtime("auto", has_tensorflow_weights=True, gpu=lambda: True) == "tensorflow"
    assert choose_runtime("auto", has_tensorflow_weights=True, gpu=lambda: False) == "litert"
    assert choose_runtime("auto", has_tensorflow_weights=False, gpu=lambda: True) == "litert"


def test_an_explicit_runtime_is_kept() -> None:
    assert choose_runtime("litert", has_tensorflow_weights=True, gpu=never) == "litert"
    assert choose_runtime("tensorflow", has_tensorflow_weights=True, gpu=never) == "tensorflow"
    with pytest.raises(ValueError, match="no TensorFlow weights"):
        choose_runtime("tensorflow", has_tensorflow_weights=False, gpu=never)


def test_this_machine_has_no_gpu_so_auto_loads_litert() -> None:
    assert not gpu_visible()
    assert load_classifier(MODELS).runtime == "litert (cpu)"


@pytest.fixture(scope="module")
def on_tensorflow() -> BrandClassifier:
    return load_classifier(MODELS, runtime="tensorflow")


@pytest.fixture(scope="module")
def photos(shared_dir: Path) -> list[np.ndarray]:
    folder = shared_dir / "data" / "stanford-cars" / "images"
    return [np.asarray(Image.open(folder / f"{i:05d}.jpg").convert("RGB")) for i in range(1, 25)]


def test_the_released_version_ships_its_keras_weights() -> None:
    version = current_version(MODELS)
    assert version is not None
    weights = read_manifest(MODELS, version, verify=True)["tensorflow_weights"]
    assert weights["file"] == "classifier.weights.h5" and weights["precision"] == "float32"


def test_tensorflow_serves_the_same_model_as_litert(on_tensorflow: BrandClassifier, photos: list[np.ndarray]) -> None:
    """LiteRT serves the int8 export of these float weights: rankings agree, probabilities within int8 noise."""
    on_litert = load_classifier(MODELS, runtime="litert", threads=1)
    assert on_tensorflow.runtime == "tensorflow (/CPU:0)" and on_tensorflow.labels == on_litert.labels
    tf_probs, lite_probs = on_tensorflow.probabilities(photos), on_litert.probabilities(photos)
    assert np.allclose(tf_probs.sum(axis=1), 1.0, atol=1e-4)
    agree = np.mean(tf_probs.argmax(axis=1) == lite_probs.argmax(axis=1))
    assert agree >= 0.8
    assert float(np.abs(tf_probs - lite_probs).mean()) < 0.01
    (tf_top,) = on_tensorflow.predict([photos[0]])
    assert tf_top[0][0] == "Audi"  # 00001.jpg, as the LiteRT model says (test_classifier_released)


def test_tensorflow_gives_region_search_its_car_scores(
    on_tensorflow: BrandClassifier, photos: list[np.ndarray]
) -> None:
    tops, car = on_tensorflow.predict_regions(photos[:8])
    assert len(tops) == 8 and car.shape == (8,)
    assert np.median(car) > 0.5  # whole Stanford photos are cars
    photo = photos[0]
    h, w = photo.shape[:2]
    scores = on_tensorflow.region_car_scores(photo, np.array([[0, 0, w, h], [0, 0, w // 8, h // 8]], np.float32))
    assert scores.shape == (2,) and scores[0] > scores[1]


def test_tampered_keras_weights_are_refused(tmp_path: Path) -> None:
    version = current_version(MODELS)
    assert version is not None
    copy = tmp_path / "models"
    shutil.copytree(MODELS / "versions" / version, copy / "versions" / version)
    (copy / "CURRENT").write_text(version + "\n")
    weights = copy / "versions" / version / "classifier.weights.h5"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError):
        load_classifier(copy, runtime="tensorflow")
    assert load_classifier(copy, runtime="litert").version == version  # the LiteRT file is intact


def test_tensorflow_without_keras_weights_is_a_clear_load_error(tmp_path: Path) -> None:
    version = current_version(MODELS)
    assert version is not None
    copy = tmp_path / "models"
    folder = copy / "versions" / version
    shutil.copytree(MODELS / "versions" / version, folder)
    (copy / "CURRENT").write_text(version + "\n")
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["tensorflow_weights"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="no TensorFlow weights"):
        load_classifier(copy, runtime="tensorflow")


def test_litert_splits_crops_into_runs_without_padding() -> None:
    assert batch_sizes(0, 32) == []
    assert batch_sizes(7, 32) == [7]
    assert batch_sizes(9, 32) == [8, 1]
    assert batch_sizes(11, 32) == [8, 3]
    assert batch_sizes(31, 32) == [16, 8, 7]
    assert batch_sizes(70, 32) == [32, 32, 6]
    assert batch_sizes(5, 4) == [4, 1]
    for n in range(100):
        sizes = batch_sizes(n, 32)
        assert sum(sizes) == n
        assert all(s <= EXACT_BATCHES or s in (16, 32) for s in sizes)  # the interpreters a worker keeps


def test_a_split_batch_gives_what_each_crop_gives_alone(photos: list[np.ndarray]) -> None:
    classifier = load_classifier(MODELS, runtime="litert", threads=1)
    crops = photos[:11]
    together_probs, together_car = classifier.probabilities(crops), classifier.predict_regions(crops)[1]
    alone = [classifier.probabilities([c])[0] for c in crops]
    alone_car = [classifier.predict_regions([c])[1][0] for c in crops]
    assert np.allclose(together_probs, np.stack(alone), atol=1e-5)
    assert np.allclose(together_car, alone_car, atol=1e-5)


def test_tensorflow_runtime_without_tensorflow_installed_is_a_clear_load_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # what `import tensorflow` sees without the package
    monkeypatch.delitem(sys.modules, "carspot.classifier.keras_model", raising=False)
    with pytest.raises(ModelLoadError, match=r"needs TensorFlow \(pip install -e \.\[gpu\]\)"):
        load_classifier(MODELS, runtime="tensorflow")
