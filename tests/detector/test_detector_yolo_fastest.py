"""Yolo-FastestV2 through cv2.dnn on the shared real scenes, and its load-time checks."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from carspot.detector import (
    YOLO_FASTESTV2_SHA256,
    CarDetector,
    Detections,
    InvalidImageError,
    ModelFormatError,
    ModelIntegrityError,
    ModelNotFoundError,
    YoloFastestV2Detector,
    box_iou,
    load_yolo_fastest,
)
from tests.detector.scenes import PICKUP_IN_DOG, SCENES, TAXI_IN_TIMES_SQUARE

LoadScene = Callable[[str], np.ndarray]


def test_times_square_has_at_least_four_cars_and_the_taxi(
    car_detector: YoloFastestV2Detector, load_scene: LoadScene
) -> None:
    detections = car_detector(load_scene("times-square.png"))
    assert len(detections) >= 4
    assert set(detections.labels) == {"car"}
    assert box_iou([TAXI_IN_TIMES_SQUARE], detections.xyxy).max() >= 0.6


def test_kite_has_no_car(
    car_detector: YoloFastestV2Detector, vehicle_detector: YoloFastestV2Detector, load_scene: LoadScene
) -> None:
    image = load_scene("kite.jpg")
    assert len(car_detector(image)) == 0
    assert len(vehicle_detector(image)) == 0


def test_dog_finds_the_pickup_with_trucks_enabled(
    vehicle_detector: YoloFastestV2Detector, load_scene: LoadScene
) -> None:
    detections = vehicle_detector(load_scene("dog.jpg"))
    vehicles = detections.filter(np.isin(np.array(detections.labels, dtype=object), ["car", "truck"]))
    assert len(vehicles) >= 1
    assert box_iou([PICKUP_IN_DOG], vehicles.xyxy).max() >= 0.6


def test_dog_finds_the_pickup_as_a_car(car_detector: YoloFastestV2Detector, load_scene: LoadScene) -> None:
    detections = car_detector(load_scene("dog.jpg"))
    assert box_iou([PICKUP_IN_DOG], detections.xyxy).max() >= 0.6


def test_bus_is_found_only_when_buses_are_enabled(
    car_detector: YoloFastestV2Detector, vehicle_detector: YoloFastestV2Detector, load_scene: LoadScene
) -> None:
    image = load_scene("bus.jpg")
    assert "bus" in vehicle_detector(image).labels
    assert "bus" not in car_detector(image).labels


@pytest.mark.parametrize("scene", SCENES)
def test_boxes_are_valid_and_inside_the_image(
    scene: str, vehicle_detector: YoloFastestV2Detector, load_scene: LoadScene
) -> None:
    image = load_scene(scene)
    height, width = image.shape[:2]
    detections = vehicle_detector(image)
    assert isinstance(detections, Detections)
    assert set(detections.labels) <= {"car", "truck", "bus"}
    if len(detections):
        assert detections.xyxy[:, [0, 2]].min() >= 0 and detections.xyxy[:, [0, 2]].max() <= width
        assert detections.xyxy[:, [1, 3]].min() >= 0 and detections.xyxy[:, [1, 3]].max() <= height
        assert (detections.areas > 0).all()
        assert (detections.confidence >= vehicle_detector.score_threshold).all()
        assert (np.diff(detections.confidence) <= 0).all(), "most confident first"


def test_detector_is_a_named_car_detector_and_deterministic(
    car_detector: YoloFastestV2Detector, load_scene: LoadScene
) -> None:
    assert isinstance(car_detector, CarDetector)
    assert car_detector.name == "yolo-fastestv2"
    assert car_detector.sha256 == YOLO_FASTESTV2_SHA256
    image = load_scene("street-000004.jpg")
    first, second = car_detector(image), car_detector(image)
    np.testing.assert_array_equal(first.xyxy, second.xyxy)
    assert first.labels == second.labels


def test_concurrent_calls_match_serial_calls(car_detector: YoloFastestV2Detector, load_scene: LoadScene) -> None:
    images = [load_scene(name) for name in ("times-square.png", "street-000004.jpg", "dog.jpg")] * 2
    serial = [car_detector(image) for image in images]
    with ThreadPoolExecutor(max_workers=3) as pool:
        parallel = list(pool.map(car_detector, images))
    for one, other in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(one.xyxy, other.xyxy)


def test_max_detections_caps_the_result(yolo_weights: Path, load_scene: LoadScene) -> None:
    detector = load_yolo_fastest(weights=yolo_weights, sha256=YOLO_FASTESTV2_SHA256, max_detections=2)
    detections = detector(load_scene("street-000004.jpg"))
    assert len(detections) == 2


def test_odd_sized_images_work(car_detector: YoloFastestV2Detector) -> None:
    for shape in [(1, 1, 3), (7, 2000, 3), (600, 5, 3)]:
        assert isinstance(car_detector(np.zeros(shape, dtype=np.uint8)), Detections)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((10, 10, 3), np.float32),
        np.zeros((0, 10, 3), np.uint8),
        [[[0, 0, 0]]],
    ],
)
def test_rejects_images_that_are_not_hxwx3_uint8(car_detector: YoloFastestV2Detector, image: object) -> None:
    with pytest.raises(InvalidImageError):
        car_detector(image)  # type: ignore[arg-type]


def test_sha256_mismatch_raises_model_integrity_error(yolo_weights: Path, tmp_path: Path) -> None:
    corrupted = tmp_path / "model.onnx"
    data = bytearray(yolo_weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupted.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        load_yolo_fastest(weights=corrupted, sha256=YOLO_FASTESTV2_SHA256, names=yolo_weights.with_name("coco.names"))


def test_missing_weights_raise_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.onnx"
    with pytest.raises(ModelNotFoundError, match="not found") as raised:
        load_yolo_fastest(weights=missing, sha256=YOLO_FASTESTV2_SHA256)
    assert isinstance(raised.value, FileNotFoundError)
    assert str(missing) in str(raised.value)


def test_missing_class_names_raise_a_clear_error(yolo_weights: Path, tmp_path: Path) -> None:
    shutil.copy(yolo_weights, tmp_path / "model.onnx")
    with pytest.raises(ModelNotFoundError, match=r"coco\.names"):
        load_yolo_fastest(weights=tmp_path / "model.onnx", sha256=YOLO_FASTESTV2_SHA256)


def test_sha256_none_skips_the_check_and_names_default_beside_the_weights(
    yolo_weights: Path, tmp_path: Path, load_scene: LoadScene
) -> None:
    shutil.copy(yolo_weights, tmp_path / "model.onnx")
    shutil.copy(yolo_weights.with_name("coco.names"), tmp_path / "coco.names")
    detector = load_yolo_fastest(weights=tmp_path / "model.onnx", sha256=None)
    assert detector.class_names[2] == "car"
    assert len(detector(load_scene("times-square.png"))) >= 4


@pytest.mark.parametrize(
    "options",
    [
        {"car_classes": ("car", "spaceship")},
        {"car_classes": ()},
        {"score_threshold": 1.5},
        {"nms_threshold": -0.1},
        {"input_size": 350},
        {"max_detections": 0},
        {"sha256": "not-a-digest"},
    ],
)
def test_rejects_bad_options(yolo_weights: Path, options: dict[str, object]) -> None:
    arguments: dict[str, object] = {"weights": yolo_weights, "sha256": YOLO_FASTESTV2_SHA256, **options}
    with pytest.raises(ValueError):
        load_yolo_fastest(**arguments)  # type: ignore[arg-type]


def test_an_input_size_the_export_cannot_run_raises_model_format_error(yolo_weights: Path) -> None:
    with pytest.raises(ModelFormatError, match="320"):
        load_yolo_fastest(weights=yolo_weights, sha256=YOLO_FASTESTV2_SHA256, input_size=320)


def test_a_file_that_is_not_onnx_raises_model_format_error(yolo_weights: Path, tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not an onnx graph")
    with pytest.raises(ModelFormatError):
        load_yolo_fastest(weights=tmp_path / "model.onnx", sha256=None, names=yolo_weights.with_name("coco.names"))


def test_importing_the_package_does_not_import_opencv() -> None:
    code = "import sys, carspot.detector; assert 'cv2' not in sys.modules, 'cv2 imported at package import'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_detector_imports_no_other_carspot_package() -> None:
    package = Path(__file__).resolve().parents[2] / "carspot" / "detector"
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            for module in modules:
                if module.startswith("carspot"):
                    assert module.startswith("carspot.detector"), f"{source.name} imports {module}"
