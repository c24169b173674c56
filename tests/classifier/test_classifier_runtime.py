"""Which runtime serves the brand model, and each runtime serving the released model: ONNX Runtime (the CPU
default, its int8 ONNX file), LiteRT (its int8 .tflite file) and TensorFlow (GPU, its float Keras weights).

This machine has no GPU, so the TensorFlow runtime is checked on TensorFlow's CPU device: same weights, same
code path as on a GPU. It is the reference the two int8 files are held to."""

from __future__ import annotations

import hashlib
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
    assert choose_runtime("auto", has_tensorflow_weights=True, has_onnx=True, gpu=lambda: True) == "tensorflow"
    assert choose_runtime("auto", has_tensorflow_weights=False, has_onnx=True, gpu=lambda: True) == "onnxruntime"


def test_auto_serves_on_onnxruntime_on_cpu_when_the_version_ships_its_onnx_file() -> None:
    assert choose_runtime("auto", has_tensorflow_weights=True, has_onnx=True, gpu=lambda: False) == "onnxruntime"
    assert choose_runtime("auto", has_tensorflow_weights=True, has_onnx=False, gpu=lambda: False) == "litert"
    assert choose_runtime("auto", has_tensorflow_weights=False, has_onnx=False, gpu=lambda: True) == "litert"


def test_an_explicit_runtime_is_kept() -> None:
    for choice in ("litert", "onnxruntime", "tensorflow"):
        assert choose_runtime(choice, has_tensorflow_weights=True, has_onnx=True, gpu=never) == choice  # type: ignore[arg-type]
    assert choose_runtime("litert", has_tensorflow_weights=False, has_onnx=False, gpu=never) == "litert"
    with pytest.raises(ValueError, match="no TensorFlow weights"):
        choose_runtime("tensorflow", has_tensorflow_weights=False, has_onnx=True, gpu=never)
    with pytest.raises(ValueError, match="no ONNX file"):
        choose_runtime("onnxruntime", has_tensorflow_weights=True, has_onnx=False, gpu=never)


def test_this_machine_has_no_gpu_so_auto_loads_onnxruntime() -> None:
    assert not gpu_visible()
    classifier = load_classifier(MODELS)
    assert classifier.runtime == "onnxruntime (cpu)"
    assert classifier.model_path is not None and classifier.model_path.name == "classifier.onnx"
    assert load_classifier(MODELS, runtime="litert").model_path.name == "classifier.tflite"  # type: ignore[union-attr]


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
    assert weights["file"] == "classifier.weights.h5" and weights["precision"].startswith("float16")


def test_the_released_version_ships_its_int8_onnx_file() -> None:
    version = current_version(MODELS)
    assert version is not None
    onnx_file = read_manifest(MODELS, version, verify=True)["onnx"]
    assert onnx_file["file"] == "classifier.onnx" and onnx_file["precision"] == "int8"


@pytest.mark.parametrize("runtime", ["onnxruntime", "litert"])
def test_each_int8_file_serves_the_keras_models_rankings(
    runtime: str, on_tensorflow: BrandClassifier, photos: list[np.ndarray]
) -> None:
    """Both CPU files are int8 exports of the float weights TensorFlow serves: rankings agree, probabilities
    within int8 noise."""
    on_cpu = load_classifier(MODELS, runtime=runtime, threads=1)  # type: ignore[arg-type]
    assert on_tensorflow.runtime == "tensorflow (/CPU:0)" and on_cpu.runtime == f"{runtime} (cpu)"
    assert on_cpu.labels == on_tensorflow.labels
    tf_probs, cpu_probs = on_tensorflow.probabilities(photos), on_cpu.probabilities(photos)
    assert np.allclose(cpu_probs.sum(axis=1), 1.0, atol=1e-4)
    assert np.mean(tf_probs.argmax(axis=1) == cpu_probs.argmax(axis=1)) >= 0.8
    assert float(np.abs(tf_probs - cpu_probs).mean()) < 0.01
    assert on_cpu.predict([photos[0]])[0][0][0] == "Audi"  # 00001.jpg (test_classifier_released)


def test_onnxruntime_gives_region_search_its_car_scores(
    on_tensorflow: BrandClassifier, photos: list[np.ndarray]
) -> None:
    on_onnx = load_classifier(MODELS, runtime="onnxruntime", threads=1)
    tops, car = on_onnx.predict_regions(photos)
    assert len(tops) == len(photos) and car.shape == (len(photos),)
    assert np.median(car) > 0.5  # whole Stanford photos are cars
    # the float model's P(car), within int8 noise (measured on 80 photos: mean 0.043, LiteRT's file 0.024)
    assert float(np.abs(car - on_tensorflow.predict_regions(photos)[1]).mean()) < 0.1
    photo = photos[0]
    h, w = photo.shape[:2]
    boxes = np.array([[0, 0, w, h], [0, 0, w // 8, h // 8]], np.float32)
    scores = on_onnx.region_car_scores(photo, boxes)  # the feature map of one 448 px run
    assert scores.shape == (2,) and scores[0] > scores[1]


def test_onnxruntime_batches_give_what_each_crop_gives_alone(photos: list[np.ndarray]) -> None:
    classifier = load_classifier(MODELS, runtime="onnxruntime", threads=1, max_batch=8)
    crops = photos[:11]  # runs of 8 and 3
    together_probs, together_car = classifier.probabilities(crops), classifier.predict_regions(crops)[1]
    assert np.allclose(together_probs, np.stack([classifier.probabilities([c])[0] for c in crops]), atol=1e-5)
    assert np.allclose(together_car, [classifier.predict_regions([c])[1][0] for c in crops], atol=1e-5)


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


def _release_copy(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the models folder holding the current version: (model dir, version folder)."""
    version = current_version(MODELS)
    assert version is not None
    copy = tmp_path / "models"
    shutil.copytree(MODELS / "versions" / version, copy / "versions" / version)
    (copy / "CURRENT").write_text(version + "\n")
    return copy, copy / "versions" / version


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("runtime", "file"), [("tensorflow", "classifier.weights.h5"), ("onnxruntime", "classifier.onnx")]
)
def test_a_tampered_file_is_refused_and_the_others_still_serve(tmp_path: Path, runtime: str, file: str) -> None:
    copy, folder = _release_copy(tmp_path)
    _flip_a_byte(folder / file)
    with pytest.raises(ModelIntegrityError):
        load_classifier(copy, runtime=runtime)  # type: ignore[arg-type]
    assert load_classifier(copy, runtime="litert").version == folder.name  # the LiteRT file is intact


@pytest.mark.parametrize(("runtime", "key"), [("tensorflow", "tensorflow_weights"), ("onnxruntime", "onnx")])
def test_a_runtime_whose_file_the_version_lacks_is_a_clear_load_error(tmp_path: Path, runtime: str, key: str) -> None:
    copy, folder = _release_copy(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest[key]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match=f"no {'TensorFlow weights' if key != 'onnx' else 'ONNX file'}"):
        load_classifier(copy, runtime=runtime)  # type: ignore[arg-type]
    if key == "onnx":  # a version released before the ONNX file serves on LiteRT
        assert load_classifier(copy).runtime == "litert (cpu)"


def test_an_onnx_file_onnxruntime_cannot_read_is_a_load_error(tmp_path: Path) -> None:
    copy, folder = _release_copy(tmp_path)
    (folder / "classifier.onnx").write_bytes(b"not a model")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["onnx"]["sha256"] = hashlib.sha256(b"not a model").hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="ONNX Runtime cannot load it"):
        load_classifier(copy)


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
