"""The Detections boundary type: validation, immutability, empty, filter, areas."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from carspot.detector import CarDetector, Detections


def make(n: int = 3) -> Detections:
    xyxy = np.array([[0, 0, 10, 20], [5, 5, 15, 10], [100, 50, 101, 51]], dtype=np.float32)[:n]
    return Detections(
        xyxy=xyxy,
        confidence=np.array([0.9, 0.5, 0.3], dtype=np.float32)[:n],
        class_id=np.array([2, 7, 2], dtype=np.int32)[:n],
        labels=("car", "truck", "car")[:n],
    )


def test_valid_detections_expose_their_fields() -> None:
    detections = make()
    assert len(detections) == 3
    assert detections.labels == ("car", "truck", "car")
    np.testing.assert_allclose(detections.areas, [200.0, 50.0, 1.0])
    assert detections.areas.dtype == np.float32


def test_empty_detections_behave_like_any_other() -> None:
    empty = Detections.empty()
    assert len(empty) == 0
    assert not empty.labels
    assert empty.xyxy.shape == (0, 4)
    assert empty.areas.shape == (0,)
    assert len(empty.filter(np.zeros(0, dtype=bool))) == 0
    assert len(empty.filter(np.array([], dtype=np.int64))) == 0
    assert len(empty.filter([])) == 0


def test_filter_by_mask_and_by_indices() -> None:
    detections = make()
    cars = detections.filter(np.array(detections.labels) == "car")
    assert cars.labels == ("car", "car")
    np.testing.assert_array_equal(cars.class_id, [2, 2])
    reordered = detections.filter(np.array([2, 0]))
    np.testing.assert_allclose(reordered.confidence, [0.3, 0.9])
    assert reordered.labels == ("car", "car")


def test_filter_rejects_a_mask_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="mask"):
        make().filter(np.array([True, False]))
    with pytest.raises(TypeError):
        make().filter(np.array([0.5, 1.0, 0.0]))


def test_detections_are_immutable() -> None:
    detections = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        detections.labels = ()  # type: ignore[misc]
    with pytest.raises(ValueError):
        detections.xyxy[0, 0] = 99.0


def test_the_callers_arrays_stay_writable() -> None:
    xyxy = np.zeros((1, 4), dtype=np.float32)
    Detections(xyxy=xyxy, confidence=np.ones(1, np.float32), class_id=np.zeros(1, np.int32), labels=("car",))
    xyxy[0, 0] = 0.0  # the detector may keep working on its own buffers


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("xyxy", np.zeros((3, 3), np.float32), "xyxy"),
        ("xyxy", np.zeros((3, 4), np.float64), "xyxy"),
        ("xyxy", np.zeros(12, np.float32), "xyxy"),
        ("confidence", np.zeros(2, np.float32), "confidence"),
        ("confidence", np.zeros((3, 1), np.float32), "confidence"),
        ("confidence", np.zeros(3, np.float64), "confidence"),
        ("class_id", np.zeros(3, np.int64), "class_id"),
        ("class_id", np.zeros(4, np.int32), "class_id"),
        ("labels", ("car", "car"), "labels"),
    ],
)
def test_rejects_bad_shapes_and_dtypes(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(make(), **{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("xyxy", np.array([[10, 0, 5, 5], [0, 0, 1, 1], [0, 0, 1, 1]], np.float32)),  # x1 > x2
        ("xyxy", np.array([[0, 10, 5, 5], [0, 0, 1, 1], [0, 0, 1, 1]], np.float32)),  # y1 > y2
        ("xyxy", np.array([[0, 0, np.nan, 5], [0, 0, 1, 1], [0, 0, 1, 1]], np.float32)),
        ("confidence", np.array([1.5, 0.5, 0.5], np.float32)),
        ("confidence", np.array([-0.1, 0.5, 0.5], np.float32)),
        ("confidence", np.array([np.nan, 0.5, 0.5], np.float32)),
        ("class_id", np.array([-1, 0, 0], np.int32)),
    ],
)
def test_rejects_values_out_of_range(field: str, value: Any) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(make(), **{field: value})


def test_rejects_non_arrays_and_non_string_labels() -> None:
    with pytest.raises(TypeError):
        dataclasses.replace(make(), xyxy=[[0.0, 0.0, 1.0, 1.0]] * 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        dataclasses.replace(make(), labels=["car", "truck", "car"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        dataclasses.replace(make(), labels=("car", 7, "car"))  # type: ignore[arg-type]


def test_a_plain_callable_is_a_car_detector() -> None:
    """The pipeline takes any object with `name` and `__call__`, so tests can inject fakes."""

    class FakeDetector:
        name = "fake"

        def __call__(self, image_rgb: np.ndarray) -> Detections:
            return Detections.empty()

    assert isinstance(FakeDetector(), CarDetector)
