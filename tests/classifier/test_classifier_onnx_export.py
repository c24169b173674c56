"""The int8 ONNX file: the committed release is what `add_onnx` makes from the version's Keras weights, with its
brand head float; a version without Keras weights cannot be exported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from carspot.classifier.registry import read_manifest
from carspot.classifier.serving import load_classifier
from tests.classifier.released import release_copy

MODELS = Path(__file__).resolve().parents[2] / "models"
# Keras calls np.array(tensor) the numpy-1 way; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:keras.*")


@pytest.fixture(scope="module")
def photos(shared_dir: Path) -> list[np.ndarray]:
    folder = shared_dir / "data" / "stanford-cars" / "images"
    return [np.asarray(Image.open(folder / f"{i:05d}.jpg").convert("RGB")) for i in range(100, 124)]


def test_the_committed_onnx_file_is_what_add_onnx_makes_from_the_keras_weights(
    tmp_path: Path, shared_dir: Path, photos: list[np.ndarray]
) -> None:
    """Re-exported from the release's own weights and calibration photos (the recipe's), it serves what the
    committed file serves: the committed binary is no opaque blob. int8 calibration is not bit-stable from one CPU
    to another, so what users see is compared: the same top make, the same top-5 makes where the 5th and 6th are
    apart, probabilities within 0.03."""
    from carspot.classifier.onnx_export import add_onnx
    from carspot.classifier.training import version_calibration_inputs

    copy, version = release_copy(tmp_path)
    manifest = read_manifest(copy, version)
    sources = [shared_dir / "data" / name / "labels.csv" for name in manifest["training"]["datasets"]]
    calibration = version_calibration_inputs(manifest, sources)
    entry = add_onnx(copy, version, calibration=calibration)
    committed = read_manifest(MODELS, version)["onnx"]
    assert entry["calibration_images"] == committed["calibration_images"]
    assert read_manifest(copy, version, verify=True)["onnx"] == entry
    rebuilt = load_classifier(copy, runtime="onnxruntime", threads=1).probabilities(photos)
    released = load_classifier(MODELS, runtime="onnxruntime", threads=1).probabilities(photos)
    np.testing.assert_allclose(rebuilt, released, atol=0.05)
    for a, b in zip(rebuilt, released, strict=True):
        order = np.sort(b)[::-1]
        if order[0] - order[1] > 0.05:  # the same top make wherever it is not a near tie
            assert a.argmax() == b.argmax()
        if order[4] - order[5] > 0.05:
            assert set(np.argsort(-a)[:5]) == set(np.argsort(-b)[:5])


def test_the_brand_head_stays_float(photos: list[np.ndarray]) -> None:
    """int8 probabilities would be multiples of 1/256 and tie the tail of every top-5."""
    probs = load_classifier(MODELS, runtime="onnxruntime", threads=1).probabilities(photos)
    on_grid = np.isclose(probs * 256, np.round(probs * 256), atol=1e-4)
    assert on_grid.mean() < 0.5  # a quantized head: all of them (zeros included)
    assert len({round(float(p), 7) for p in np.sort(probs, axis=1)[:, -5]}) == len(photos)


def test_a_version_without_keras_weights_cannot_be_exported(tmp_path: Path) -> None:
    from carspot.classifier.onnx_export import add_onnx

    copy, version = release_copy(tmp_path)
    path = copy / "versions" / version / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["tensorflow_weights"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="no Keras weights"):
        add_onnx(copy, version, calibration=[np.zeros((1, 224, 224, 3), np.float32)])


def test_calibration_at_another_side_than_the_versions_is_refused(tmp_path: Path) -> None:
    """The graph would take it and quantize for inputs the version never serves."""
    from carspot.classifier.onnx_export import add_onnx

    copy, version = release_copy(tmp_path)
    side = read_manifest(copy, version)["input"]["size"]
    with pytest.raises(ValueError, match=f"1 x {side} x {side} x 3"):
        add_onnx(copy, version, calibration=[np.zeros((1, side + 32, side + 32, 3), np.float32)])
    onnx_file = Path("versions") / version / "classifier.onnx"
    assert (copy / onnx_file).read_bytes() == (MODELS / onnx_file).read_bytes()  # nothing half-written
    assert read_manifest(copy, version, verify=True)["onnx"] == read_manifest(MODELS, version)["onnx"]


def test_int8_export_needs_calibration_images(tmp_path: Path) -> None:
    from carspot.classifier.onnx_export import export_onnx

    with pytest.raises(ValueError, match="calibration"):
        export_onnx(object(), tmp_path / "x.onnx", calibration=[])
