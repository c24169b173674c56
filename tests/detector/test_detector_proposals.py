"""Region proposals: both backends, the same format, and every filter respected."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from carspot.detector import (
    BACKENDS,
    Detections,
    InvalidImageError,
    ProposalFilters,
    Proposals,
    box_iou,
    load_proposer,
    propose,
)

LoadScene = Callable[[str], np.ndarray]

STRICT = ProposalFilters(
    min_side_px=40.0,
    min_area_fraction=0.01,
    max_area_fraction=0.5,
    aspect_range=(0.5, 2.5),
    duplicate_iou=0.5,
    max_count=12,
)


@pytest.fixture(scope="module")
def times_square_proposals(load_scene: LoadScene) -> dict[str, Proposals]:
    """One run per backend with the default filters (the selectivesearch backend takes about half a second)."""
    image = load_scene("times-square.png")
    return {backend: load_proposer(backend=backend, max_side=256)(image) for backend in BACKENDS}


@pytest.fixture(scope="module")
def strict_proposals(load_scene: LoadScene) -> dict[str, Proposals]:
    image = load_scene("dog.jpg")
    return {backend: load_proposer(backend=backend, max_side=200, filters=STRICT)(image) for backend in BACKENDS}


def assert_respects(proposals: Proposals, filters: ProposalFilters, *, width: int, height: int) -> None:
    """The specification of the filters, checked box by box in original-image pixels."""
    boxes = proposals.xyxy
    assert proposals.image_size == (width, height)
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert 1 <= len(proposals) <= filters.max_count
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    box_w, box_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (box_w >= filters.min_side_px).all() and (box_h >= filters.min_side_px).all()
    area_fraction = proposals.areas / (width * height)
    assert (area_fraction >= filters.min_area_fraction - 1e-6).all()
    assert (area_fraction <= filters.max_area_fraction + 1e-6).all()
    aspect = box_w / box_h
    assert (aspect >= filters.aspect_range[0] - 1e-6).all() and (aspect <= filters.aspect_range[1] + 1e-6).all()
    overlaps = box_iou(boxes, boxes)
    np.fill_diagonal(overlaps, 0.0)
    assert overlaps.max(initial=0.0) <= filters.duplicate_iou + 1e-6, "near-duplicates must be merged"
    assert (np.diff(proposals.areas) <= 0).all(), "largest first"


@pytest.mark.parametrize("backend", BACKENDS)
def test_default_filters_are_respected_on_times_square(
    backend: str, times_square_proposals: dict[str, Proposals], load_scene: LoadScene
) -> None:
    height, width = load_scene("times-square.png").shape[:2]
    proposals = times_square_proposals[backend]
    assert proposals.backend == backend
    assert_respects(proposals, ProposalFilters(), width=width, height=height)


@pytest.mark.parametrize("backend", BACKENDS)
def test_strict_filters_are_respected(
    backend: str, strict_proposals: dict[str, Proposals], load_scene: LoadScene
) -> None:
    height, width = load_scene("dog.jpg").shape[:2]
    assert_respects(strict_proposals[backend], STRICT, width=width, height=height)


def test_both_backends_give_the_same_format(times_square_proposals: dict[str, Proposals]) -> None:
    opencv, skimage = times_square_proposals["opencv"], times_square_proposals["selectivesearch"]
    assert type(opencv) is type(skimage) is Proposals
    assert opencv.xyxy.dtype == skimage.xyxy.dtype == np.float32
    assert opencv.image_size == skimage.image_size
    for proposals in (opencv, skimage):
        detections = proposals.as_detections()
        assert isinstance(detections, Detections)
        assert set(detections.labels) == {"proposal"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_boxes_are_mapped_back_to_the_original_pixels(backend: str) -> None:
    """A bright rectangle on a dark 640x480 image, searched at 128 px, is proposed where it is at full size."""
    image = np.full((480, 640, 3), 30, dtype=np.uint8)
    rectangle = [320, 120, 560, 300]
    image[rectangle[1] : rectangle[3], rectangle[0] : rectangle[2]] = (230, 200, 40)
    proposals = load_proposer(backend=backend, max_side=128, filters=ProposalFilters(max_count=500))(image)
    assert box_iou([rectangle], proposals.xyxy).max() >= 0.85


def test_opencv_results_are_deterministic_and_propose_matches_the_factory(load_scene: LoadScene) -> None:
    """OpenCV's own order is random; ours is not."""
    image = load_scene("street-000004.jpg")
    first = propose(image, backend="opencv", max_side=160)
    second = load_proposer(backend="opencv", max_side=160)(image)
    np.testing.assert_array_equal(first.xyxy, second.xyxy)


def test_small_images_are_not_upscaled(load_scene: LoadScene) -> None:
    image = load_scene("street-000004.jpg")  # 500 px wide
    at_full_size = propose(image, backend="opencv", max_side=None)
    with_a_larger_limit = propose(image, backend="opencv", max_side=800)
    np.testing.assert_array_equal(at_full_size.xyxy, with_a_larger_limit.xyxy)


def test_quality_mode_runs_and_respects_the_filters(load_scene: LoadScene) -> None:
    image = load_scene("kite.jpg")
    proposals = propose(image, backend="opencv", mode="quality", max_side=96, filters=STRICT)
    assert_respects(proposals, STRICT, width=image.shape[1], height=image.shape[0])


def test_concurrent_calls_match_serial_calls(load_scene: LoadScene) -> None:
    proposer = load_proposer(backend="opencv", max_side=128)
    images = [load_scene(name) for name in ("dog.jpg", "bus.jpg")] * 2
    serial = [proposer(image) for image in images]
    with ThreadPoolExecutor(max_workers=2) as pool:
        parallel = list(pool.map(proposer, images))
    for one, other in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(one.xyxy, other.xyxy)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tiny_and_flat_images_give_valid_possibly_empty_proposals(backend: str) -> None:
    proposer = load_proposer(backend=backend, max_side=64)
    for image in (np.zeros((1, 1, 3), np.uint8), np.zeros((3, 90, 3), np.uint8), np.full((40, 40, 3), 7, np.uint8)):
        proposals = proposer(image)
        assert isinstance(proposals, Proposals)
        assert proposals.image_size == (image.shape[1], image.shape[0])


def test_filters_merge_near_duplicates_keeping_the_larger_and_cap_evenly_over_sizes() -> None:
    boxes = np.array(
        [
            [0, 0, 100, 100],  # largest
            [0, 0, 98, 99],  # near-duplicate of the largest: dropped
            [0, 0, 100, 100],  # exact duplicate: dropped
            [200, 0, 260, 60],
            [300, 0, 340, 40],
            [400, 0, 420, 20],  # smallest
            [500, 0, 505, 95],  # too thin (aspect 0.05): dropped
        ],
        dtype=np.float32,
    )
    kept = ProposalFilters(min_side_px=1, min_area_fraction=0.0, duplicate_iou=0.9).apply(boxes, width=600, height=100)
    np.testing.assert_array_equal(kept, boxes[[0, 3, 4, 5]])
    capped = ProposalFilters(min_side_px=1, min_area_fraction=0.0, max_count=2).apply(boxes, width=600, height=100)
    np.testing.assert_array_equal(capped, boxes[[0, 5]], "the cap keeps the smallest region as well as the largest")


def test_as_detections_carries_verifier_scores() -> None:
    proposals = Proposals(xyxy=np.array([[0, 0, 5, 5], [1, 1, 4, 9]], np.float32), image_size=(10, 10), backend="x")
    detections = proposals.as_detections([0.9, 0.2], label="car", class_id=2)
    assert detections.labels == ("car", "car")
    np.testing.assert_allclose(detections.confidence, [0.9, 0.2])
    assert detections.class_id.tolist() == [2, 2]
    np.testing.assert_allclose(proposals.as_detections().confidence, [1.0, 1.0])


@pytest.mark.parametrize(
    "xyxy",
    [
        np.array([[0, 0, 11, 5]], np.float32),  # outside on the right
        np.array([[-1, 0, 5, 5]], np.float32),  # outside on the left
        np.array([[5, 0, 5, 5]], np.float32),  # empty
        np.array([[0, 0, 5, 5]], np.float64),  # wrong dtype
        np.array([[0, 0, np.nan, 5]], np.float32),
    ],
)
def test_proposals_reject_invalid_boxes(xyxy: np.ndarray) -> None:
    with pytest.raises(ValueError):
        Proposals(xyxy=xyxy, image_size=(10, 10), backend="opencv")


def test_proposals_are_immutable() -> None:
    proposals = Proposals(xyxy=np.array([[0, 0, 5, 5]], np.float32), image_size=(10, 10), backend="opencv")
    with pytest.raises(dataclasses.FrozenInstanceError):
        proposals.backend = "other"  # type: ignore[misc]
    with pytest.raises(ValueError):
        proposals.xyxy[0, 0] = 1.0


@pytest.mark.parametrize(
    "options",
    [
        {"min_side_px": -1.0},
        {"min_area_fraction": 0.5, "max_area_fraction": 0.2},
        {"aspect_range": (2.0, 1.0)},
        {"aspect_range": (0.0, 1.0)},
        {"duplicate_iou": 1.5},
        {"max_count": 0},
    ],
)
def test_filters_reject_bad_options(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ProposalFilters(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options",
    [{"backend": "edgeboxes"}, {"max_side": 8}, {"mode": "slow"}, {"num_threads": -1}],
)
def test_load_proposer_rejects_bad_options(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        load_proposer(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "image",
    [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8), np.zeros((0, 10, 3), np.uint8), [[[0, 0, 0]]]],
)
def test_rejects_images_that_are_not_hxwx3_uint8(image: object) -> None:
    proposer = load_proposer(backend="opencv")
    with pytest.raises(InvalidImageError):
        proposer(image)  # type: ignore[arg-type]


def test_importing_the_package_imports_no_heavy_framework() -> None:
    code = (
        "import sys, carspot.detector\n"
        "heavy = [m for m in ('cv2', 'tensorflow', 'skimage', 'selectivesearch') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
