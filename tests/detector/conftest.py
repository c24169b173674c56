"""Fixtures for the detector tests: the shared folder's real scenes and the Yolo-FastestV2 model.

The shared folder is `$CARSPOT_SHARED_DIR`, or `shared` beside the repository's root. A missing folder fails
the tests (it does not skip them), so CI cannot pass without the real model and images.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from carspot.detector import YOLO_FASTESTV2_SHA256, YoloFastestV2Detector, load_yolo_fastest


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
