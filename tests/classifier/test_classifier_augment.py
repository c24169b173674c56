"""The network's input: any photo becomes a size x size RGB array without aliasing (`carspot.classifier.augment`)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from carspot.classifier.augment import augment, checked_input_size, to_input


@pytest.mark.parametrize("shape", [(100, 60), (224, 224), (240, 320), (360, 480), (448, 448), (1080, 1920)])
def test_every_photo_becomes_a_224_square_of_uint8_rgb(shape: tuple[int, int]) -> None:
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    out = to_input(image)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8


def test_an_image_already_the_input_size_is_passed_through() -> None:
    image = np.zeros((224, 224, 3), np.uint8)
    assert to_input(image) is image


@pytest.mark.parametrize(
    ("scale", "tolerance"),
    [(0.35, 1.5), (0.6, 1.5), (1.0, 3.5)],  # 256x504, 439x865 (up to twice the input), 731x1441 (larger)
)
def test_a_real_photo_looks_as_an_exact_area_average_would_make_it(
    scenes_dir: Path, scale: float, tolerance: float
) -> None:
    """The fast path (bilinear to twice the size, then 2:1 area) stays close to OpenCV's exact but slow box filter;
    beyond twice the input the bilinear step skips pixels, so the tolerance is wider there."""
    photo = np.asarray(Image.open(scenes_dir / "times-square.png").convert("RGB"))
    image = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    exact = cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32)
    assert float(np.abs(to_input(image).astype(np.float32) - exact).mean()) <= tolerance


def test_a_flat_colour_keeps_its_value() -> None:
    image = np.full((360, 480, 3), (200, 40, 90), np.uint8)
    assert np.array_equal(to_input(image), np.full((224, 224, 3), (200, 40, 90), np.uint8))


def test_augmented_views_have_the_input_shape_and_differ() -> None:
    image = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    rng = np.random.default_rng(2)
    first, second = augment(image, rng), augment(image, rng)
    assert first.shape == second.shape == (224, 224, 3) and not np.array_equal(first, second)


@pytest.mark.parametrize("size", [32, 192, 224, 320])
def test_an_input_side_is_a_positive_multiple_of_32(size: int) -> None:
    assert checked_input_size(size) == size
    assert to_input(np.zeros((100, 150, 3), np.uint8), size=size).shape == (size, size, 3)


@pytest.mark.parametrize("size", [0, 16, 200, -64, 224.0, "224", True, None])
def test_any_other_input_side_is_refused(size: object) -> None:
    with pytest.raises(ValueError, match="input size must be a positive multiple of 32"):
        checked_input_size(size)
