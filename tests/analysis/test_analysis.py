"""The analysis modes are compositions of the same parts: detector boxes, crops, the brand classifier."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from carspot.analysis.modes import (
    DETECTOR_BOX_CAR_THRESHOLD,
    WHOLE_IMAGE_CAR_THRESHOLD,
    Analysis,
    UnsupportedMode,
    crop,
    detector_mode,
    image_top_k,
    region_search_mode,
    standard_mode,
)
from carspot.detector.detections import Detections
from carspot.pipeline.message import Post
from carspot.store.records import AnalysisRecord

IMAGE = np.zeros((100, 200, 3), np.uint8)
NO_FLOOR = {"min_box_area": 0.0}
"""These fakes' boxes are a few dozen pixels wide: the size floor (its own tests below) is off for them."""


def post(mode: str | None = None) -> Post:
    return Post(
        post_id="p",
        source="t",
        ingested_at=datetime.now(UTC),
        image_sha256=hashlib.sha256(b"x").hexdigest(),
        width=200,
        height=100,
        image=b"x",
        mode=mode,
    )


def two_cars(image: np.ndarray) -> Detections:
    return Detections(
        xyxy=np.array([[10, 10, 60, 50], [100, 20, 190, 90]], np.float32),
        confidence=np.array([0.5, 0.9], np.float32),
        class_id=np.array([2, 2], np.int32),
        labels=("car", "car"),
    )


class SizeClassifier:
    """A first-class fake: 'Big' for wide crops, 'Small' otherwise; records what it was given."""

    version = "fake-1"

    def __init__(self) -> None:
        self.calls: list[list[tuple[int, int]]] = []

    def predict(self, crops: Sequence[np.ndarray], *, top_k: int = 5) -> list[list[tuple[str, float]]]:
        self.calls.append([c.shape[:2] for c in crops])
        return [
            ([("Big", 0.7), ("Audi", 0.2), ("BMW", 0.1)] if c.shape[1] > 80 else [("Small", 0.6), ("Audi", 0.3)])[
                :top_k
            ]
            for c in crops
        ]


def test_detector_mode_classifies_each_box_in_one_batch_and_ranks_the_image_top5() -> None:
    model = SizeClassifier()
    analysis = Analysis(
        modes={"detector": detector_mode(**NO_FLOOR, detect=two_cars, detector_name="two", classifier=lambda: model)},
        default_mode="detector",
    )
    record = analysis(post(), IMAGE)
    assert len(model.calls) == 1 and len(model.calls[0]) == 2
    assert [r.score for r in record.regions] == pytest.approx([0.9, 0.5])  # most confident region first
    assert [b.make for b in record.regions[0].brands] == ["Big", "Audi", "BMW"]
    assert [(b.make, b.rank) for b in record.brands] == [("Big", 1), ("Small", 2), ("Audi", 3), ("BMW", 4)]
    assert record.brands[2].score == pytest.approx(0.3)  # a make's best score over the regions
    assert record.model_version == "fake-1" and record.detector == "two" and record.mode == "detector"


def test_what_the_default_mode_serves_is_known_before_any_image() -> None:
    model = SizeClassifier()
    runner = detector_mode(**NO_FLOOR, detect=two_cars, detector_name="two", classifier=lambda: model)
    analysis = Analysis(modes={"detector": runner}, default_mode="detector")
    assert analysis.serving() == ("fake-1", "detector", "two")
    model.version = "fake-2"  # a promotion swaps the model behind the source
    assert analysis.serving() == ("fake-2", "detector", "two") and model.calls == []


def test_detector_mode_without_cars_has_no_brands_and_does_not_call_the_classifier() -> None:
    model = SizeClassifier()
    runner = detector_mode(
        **NO_FLOOR, detect=lambda image: Detections.empty(), detector_name="none", classifier=lambda: model
    )
    record = Analysis(modes={"detector": runner}, default_mode="detector")(post(), IMAGE)
    assert record.regions == () and record.brands == () and model.calls == []


def test_standard_mode_classifies_the_whole_image() -> None:
    model = CarnessClassifier()
    analysis = Analysis(modes={"standard": standard_mode(classifier=lambda: model)}, default_mode="standard")
    record = analysis(post(), IMAGE)
    assert model.calls == [[(100, 200)]]
    assert record.regions == () and [b.make for b in record.brands] == ["Big", "Audi", "BMW"]


def test_standard_mode_gives_no_brand_to_an_image_the_car_check_refutes() -> None:
    model = CarnessClassifier()
    analysis = Analysis(modes={"standard": standard_mode(classifier=lambda: model)}, default_mode="standard")
    narrow = np.zeros((100, 20, 3), np.uint8)  # 20 px wide: not a car for this fake
    record = analysis(post(), narrow)
    assert model.calls == [[(100, 20)]]  # classified, then refused
    assert record.regions == () and record.brands == ()


@pytest.mark.parametrize(("threshold", "kept"), [(WHOLE_IMAGE_CAR_THRESHOLD, True), (0.5, False)])
def test_standard_mode_holds_the_whole_image_to_the_whole_image_car_threshold(threshold: float, kept: bool) -> None:
    model = DoubtfulCarness(0.2)
    runner = standard_mode(classifier=lambda: model, whole_image_threshold=threshold)
    record = Analysis(modes={"standard": runner}, default_mode="standard")(post(), IMAGE)
    assert bool(record.brands) is kept


def test_standard_mode_needs_a_brand_model_with_a_car_check() -> None:
    analysis = Analysis(modes={"standard": standard_mode(classifier=SizeClassifier)}, default_mode="standard")
    with pytest.raises(UnsupportedMode, match="standard"):
        analysis(post(), IMAGE)


def test_a_post_can_ask_for_another_mode_and_an_unknown_mode_is_refused() -> None:
    model = CarnessClassifier()
    analysis = Analysis(
        modes={
            "standard": standard_mode(classifier=lambda: model),
            "detector": detector_mode(**NO_FLOOR, detect=two_cars, detector_name="two", classifier=lambda: model),
        },
        default_mode="detector",
    )
    assert analysis(post("standard"), IMAGE).mode == "standard"
    with pytest.raises(UnsupportedMode) as refused:
        analysis(post("region-search"), IMAGE)
    assert refused.value.reason == "unsupported_mode"
    with pytest.raises(UnsupportedMode):
        Analysis(modes={}, default_mode="standard")


def test_crop_adds_a_margin_and_stays_inside_the_image() -> None:
    image = np.arange(100 * 200 * 3, dtype=np.uint32).reshape(100, 200, 3)
    assert crop(image, np.array([10, 10, 60, 50])).shape[:2] == (44, 56)
    assert crop(image, np.array([0, 0, 200, 100])).shape[:2] == (100, 200)
    assert crop(image, np.array([199.5, 99.5, 200, 100])).shape[:2] == (1, 1)


def test_image_top_k_keeps_each_makes_best_score() -> None:
    tops = [[("A", 0.5), ("B", 0.4)], [("B", 0.9), ("C", 0.1)], []]
    assert image_top_k(tops) == [("B", 0.9), ("A", 0.5), ("C", 0.1)]
    assert image_top_k([]) == []


def under_floor_unnamed(tops: list, car: np.ndarray, min_car: float | Sequence[float]) -> tuple[list, np.ndarray]:
    """What `predict_regions` promises: a crop whose P(car) is under its ``min_car`` gets no makes."""
    floors = np.broadcast_to(np.asarray(min_car, np.float32), (len(tops),))
    return [top if score >= floor else [] for top, score, floor in zip(tops, car, floors, strict=True)], car


class CarnessClassifier(SizeClassifier):
    """Calls a crop a car when it is wider than 30 px; one pass gives brands and car scores."""

    def predict_regions(
        self, crops: Sequence[np.ndarray], *, top_k: int = 5, min_car: float | Sequence[float] = 0.0
    ) -> tuple[list, np.ndarray]:
        car = np.array([0.9 if c.shape[1] > 30 else 0.01 for c in crops], np.float32)
        return under_floor_unnamed(self.predict(crops, top_k=top_k), car, min_car)


class DoubtfulCarness(SizeClassifier):
    """Gives every crop the same middling P(car), as a real model does for an unusual view of a car."""

    def __init__(self, car: float) -> None:
        super().__init__()
        self.car = car

    def predict_regions(
        self, crops: Sequence[np.ndarray], *, top_k: int = 5, min_car: float | Sequence[float] = 0.0
    ) -> tuple[list, np.ndarray]:
        car = np.full(len(crops), self.car, np.float32)
        return under_floor_unnamed(self.predict(crops, top_k=top_k), car, min_car)


def test_region_search_keeps_the_proposals_the_model_calls_cars_and_suppresses_overlaps() -> None:
    from carspot.detector.proposals import Proposals

    boxes = np.array(
        [[10, 10, 60, 50], [12, 10, 60, 50], [100, 20, 190, 90], [0, 0, 20, 20]], np.float32
    )  # a car, a near-duplicate of it, a big car, a small non-car
    proposals = Proposals(xyxy=boxes, image_size=(200, 100), backend="fixed")
    model = CarnessClassifier()
    runner = region_search_mode(propose=lambda image: proposals, proposer_name="fixed", classifier=lambda: model)
    record = Analysis(modes={"region-search": runner}, default_mode="region-search")(post(), IMAGE)
    assert len(model.calls) == 1 and len(model.calls[0]) == 4  # one batch, every proposal
    assert sorted((r.x1, r.x2) for r in record.regions) == [(10, 60), (100, 190)]
    assert all(r.label == "car" and r.score == pytest.approx(0.9) for r in record.regions)
    assert [b.make for b in record.brands][:2] == ["Big", "Small"]
    assert record.detector == "fixed" and record.mode == "region-search"


class ScreeningCarness(CarnessClassifier):
    """Also ranks boxes from one whole-image pass: here, wider boxes first."""

    def __init__(self) -> None:
        super().__init__()
        self.screened: list[int] = []

    def region_car_scores(self, image: np.ndarray, boxes: np.ndarray, *, size: int = 448) -> np.ndarray:
        self.screened.append(len(boxes))
        return np.asarray((boxes[:, 2] - boxes[:, 0]) / 200.0, np.float32)


def run_region_search(boxes: list[list[int]], **options: Any) -> tuple[ScreeningCarness, AnalysisRecord]:
    """Region search with these proposals on the 200 x 100 test image: the fake model and the record."""
    from carspot.detector.proposals import Proposals

    proposals = Proposals(xyxy=np.array(boxes, np.float32).reshape(-1, 4), image_size=(200, 100), backend="fixed")
    model = ScreeningCarness()
    runner = region_search_mode(
        propose=lambda image: proposals,
        proposer_name="fixed",
        classifier=lambda: model,
        **options,
    )
    return model, Analysis(modes={"region-search": runner}, default_mode="region-search")(post(), IMAGE)


def test_region_search_screens_proposals_with_one_pass_then_verifies_only_the_best() -> None:
    # two cars (50 and 90 px wide), two small non-cars
    boxes = [[10, 10, 60, 50], [100, 20, 190, 90], [0, 0, 20, 20], [150, 60, 170, 80]]
    model, record = run_region_search(boxes, screen_count=2)
    assert model.screened == [4]
    assert [len(c) for c in model.calls] == [2]  # only the two best-ranked proposals get their own pass
    assert sorted((r.x1, r.x2) for r in record.regions) == [(10, 60), (100, 190)]


def test_region_search_without_screening_verifies_every_proposal() -> None:
    model, _ = run_region_search([[10, 10, 60, 50], [100, 20, 190, 90], [0, 0, 20, 20]], screen_count=0)
    assert model.screened == [] and [len(c) for c in model.calls] == [3]


def test_region_search_can_verify_the_whole_image_too() -> None:
    model, record = run_region_search([[0, 0, 20, 20]], whole_image=True)
    assert model.calls == [[(100, 200), (20, 20)]]  # the whole image first, then the proposal
    assert [(r.x1, r.y1, r.x2, r.y2) for r in record.regions] == [(0, 0, 200, 100)]  # only it is a car
    assert record.brands[0].make == "Big"


def test_region_search_counts_a_car_found_by_a_proposal_and_by_the_whole_image_once() -> None:
    model, record = run_region_search([[20, 10, 180, 90]], whole_image=True)
    assert [len(c) for c in model.calls] == [2]
    assert [(r.x1, r.y1, r.x2, r.y2) for r in record.regions] == [(20, 10, 180, 90)]  # the proposal, once
    assert record.brands[0].make == "Big"


def test_region_search_drops_a_car_part_inside_a_more_likely_car() -> None:
    boxes = [[100, 20, 190, 90], [110, 40, 150, 90]]  # a car and its front, 40 px wide: both "cars" to the fake
    _, every_part = run_region_search(boxes)
    _, whole_cars = run_region_search(boxes, max_inside=0.8)
    assert len(every_part.regions) == 2
    assert [(r.x1, r.x2) for r in whole_cars.regions] == [(100, 190)]


def test_detector_mode_verifies_the_whole_image_in_the_same_batch_as_the_boxes() -> None:
    model = CarnessClassifier()  # a crop wider than 30 px is a car
    runner = detector_mode(
        **NO_FLOOR, detect=two_cars, detector_name="fake", classifier=lambda: model, whole_image=True
    )
    record = Analysis(modes={"detector": runner}, default_mode="detector")(post(), IMAGE)
    assert len(model.calls) == 1 and model.calls[0][0] == (100, 200)  # one batch, the whole image first
    assert [(r.x1, r.x2) for r in record.regions] == [(100.0, 190.0), (10.0, 60.0)]  # the boxes' cars, once each


def one_frame_filling_car(image: np.ndarray) -> Detections:
    return Detections(
        xyxy=np.array([[20, 10, 180, 90]], np.float32),
        confidence=np.array([0.8], np.float32),
        class_id=np.array([2], np.int32),
        labels=("car",),
    )


class WholeImageKnowsBest(CarnessClassifier):
    """Names the make only from the whole image (200 px wide): a box's crop shows it less well."""

    def predict(self, crops: Sequence[np.ndarray], *, top_k: int = 5) -> list[list[tuple[str, float]]]:
        self.calls.append([c.shape[:2] for c in crops])
        return [[("Spyker", 0.8), ("Audi", 0.1)] if c.shape[1] == 200 else [("Audi", 0.4), ("BMW", 0.3)] for c in crops]


def test_a_car_found_by_the_detector_and_by_the_whole_image_check_is_one_car_region() -> None:
    model = WholeImageKnowsBest()
    runner = detector_mode(
        **NO_FLOOR, detect=one_frame_filling_car, detector_name="fake", classifier=lambda: model, whole_image=True
    )
    record = Analysis(modes={"detector": runner}, default_mode="detector")(post(), IMAGE)
    assert [(r.x1, r.y1, r.x2, r.y2) for r in record.regions] == [(20, 10, 180, 90)]  # the detector's box, once
    assert [b.make for b in record.regions[0].brands] == ["Audi", "BMW"]
    assert [b.make for b in record.brands] == ["Spyker", "Audi", "BMW"]  # the whole image still names the make


def test_the_whole_image_is_the_car_region_when_the_detector_found_no_box() -> None:
    model = WholeImageKnowsBest()
    runner = detector_mode(
        **NO_FLOOR,
        detect=lambda image: Detections.empty(),
        detector_name="fake",
        classifier=lambda: model,
        whole_image=True,
    )
    record = Analysis(modes={"detector": runner}, default_mode="detector")(post(), IMAGE)
    assert [(r.x1, r.y1, r.x2, r.y2) for r in record.regions] == [(0, 0, 200, 100)]
    assert record.regions[0].score == pytest.approx(0.9)  # its P(car)
    assert [b.make for b in record.brands] == [b.make for b in record.regions[0].brands] == ["Spyker", "Audi"]


def test_a_whole_image_that_fails_its_car_check_gives_no_brands_beside_the_boxes() -> None:
    model = CarnessByWidth({200: WHOLE_IMAGE_CAR_THRESHOLD / 2, SMALL_BOX_WIDTH: 0.9, BIG_BOX_WIDTH: 0.9})
    runner = detector_mode(
        **NO_FLOOR, detect=two_cars, detector_name="fake", classifier=lambda: model, whole_image=True
    )
    record = Analysis(modes={"detector": runner}, default_mode="detector")(post(), IMAGE)
    assert len(record.regions) == 2
    assert [b.make for b in record.brands] == ["Big", "Small", "Audi", "BMW"]


def test_detector_mode_drops_a_whole_image_that_is_not_a_car() -> None:
    model = CarnessClassifier()
    tiny = np.zeros((20, 20, 3), np.uint8)  # 20 px wide: not a car for this fake
    runner = detector_mode(
        **NO_FLOOR,
        detect=lambda image: Detections.empty(),
        detector_name="fake",
        classifier=lambda: model,
        whole_image=True,
    )
    record = Analysis(modes={"detector": runner}, default_mode="detector")(post(), tiny)
    assert model.calls == [[(20, 20)]]
    assert record.regions == () and record.brands == ()


@pytest.mark.parametrize(("threshold", "kept"), [(WHOLE_IMAGE_CAR_THRESHOLD, True), (0.5, False)])
def test_detector_mode_keeps_a_doubtful_whole_image_above_its_own_lower_threshold(threshold: float, kept: bool) -> None:
    model = DoubtfulCarness(0.2)
    runner = detector_mode(
        **NO_FLOOR,
        detect=lambda image: Detections.empty(),
        detector_name="fake",
        classifier=lambda: model,
        whole_image=True,
        whole_image_threshold=threshold,
    )
    record = Analysis(modes={"detector": runner}, default_mode="detector")(post(), IMAGE)
    assert bool(record.brands) is kept and len(record.regions) == int(kept)


class CarnessByWidth(SizeClassifier):
    """P(car) per crop from a table of crop widths: the car head's verdict on each detector box."""

    def __init__(self, car_by_width: dict[int, float]) -> None:
        super().__init__()
        self.car_by_width = car_by_width

    def predict_regions(
        self, crops: Sequence[np.ndarray], *, top_k: int = 5, min_car: float | Sequence[float] = 0.0
    ) -> tuple[list, np.ndarray]:
        car = np.array([self.car_by_width[c.shape[1]] for c in crops], np.float32)
        return under_floor_unnamed(self.predict(crops, top_k=top_k), car, min_car)


# two_cars' crops with crop()'s 5 % margin: the small box is 56 px wide, the big one 100 px
SMALL_BOX_WIDTH, BIG_BOX_WIDTH = 56, 100


def test_detector_mode_drops_a_box_the_car_head_says_is_not_a_car_and_gives_it_no_brands() -> None:
    model = CarnessByWidth({SMALL_BOX_WIDTH: DETECTOR_BOX_CAR_THRESHOLD / 10, BIG_BOX_WIDTH: 0.8})
    runner = detector_mode(**NO_FLOOR, detect=two_cars, detector_name="fake", classifier=lambda: model)
    record = Analysis(modes={"detector": runner}, default_mode="detector")(post(), IMAGE)
    assert len(model.calls) == 1 and len(model.calls[0]) == 2  # both checked in the one pass
    assert [(r.x1, r.x2) for r in record.regions] == [(100.0, 190.0)]
    assert [b.make for b in record.brands] == ["Big", "Audi", "BMW"]  # the dropped box's "Small" is gone


def test_detector_mode_keeps_every_box_when_the_car_head_doubts_but_does_not_refute_it() -> None:
    model = CarnessByWidth({SMALL_BOX_WIDTH: DETECTOR_BOX_CAR_THRESHOLD, BIG_BOX_WIDTH: 0.01})
    runner = detector_mode(**NO_FLOOR, detect=two_cars, detector_name="fake", classifier=lambda: model)
    record = Analysis(modes={"detector": runner}, default_mode="detector")(post(), IMAGE)
    assert len(record.regions) == 2 and record.brands[0].make == "Big"


def test_detector_mode_checks_boxes_and_the_whole_image_each_against_its_own_threshold() -> None:
    model = CarnessByWidth({200: 0.2, SMALL_BOX_WIDTH: 0.9, BIG_BOX_WIDTH: 0.001})
    runner = detector_mode(
        **NO_FLOOR, detect=two_cars, detector_name="fake", classifier=lambda: model, whole_image=True
    )
    record = Analysis(modes={"detector": runner}, default_mode="detector")(post(), IMAGE)
    assert model.calls[0][0] == (100, 200)  # the whole image first, in the same pass
    found = [(r.x1, r.x2, r.score) for r in record.regions]  # the box its car check kept, the whole image a witness
    assert found == [(10.0, 60.0, 0.5)]
    assert record.regions[0].brands[0].make == "Small"
    assert [b.make for b in record.brands][:2] == ["Big", "Small"]  # the whole image's top-5 (200 px: "Big")


def test_detector_mode_with_a_zero_box_threshold_keeps_what_the_detector_found() -> None:
    model = CarnessByWidth({SMALL_BOX_WIDTH: 0.0, BIG_BOX_WIDTH: 0.0})
    runner = detector_mode(
        **NO_FLOOR, detect=two_cars, detector_name="fake", classifier=lambda: model, box_threshold=0.0
    )
    record = Analysis(modes={"detector": runner}, default_mode="detector")(post(), IMAGE)
    assert len(record.regions) == 2


def car_and_its_wheel(image: np.ndarray) -> Detections:
    return Detections(
        xyxy=np.array([[100, 20, 190, 90], [110, 60, 130, 90]], np.float32),
        confidence=np.array([0.9, 0.4], np.float32),
        class_id=np.array([2, 2], np.int32),
        labels=("car", "car"),
    )


def test_detector_mode_does_not_classify_a_box_inside_a_more_confident_one() -> None:
    model = SizeClassifier()
    runner = detector_mode(**NO_FLOOR, detect=car_and_its_wheel, detector_name="fake", classifier=lambda: model)
    record = Analysis(modes={"detector": runner}, default_mode="detector")(post(), IMAGE)
    assert len(model.calls[0]) == 1  # the wheel never reaches the classifier
    assert [(r.x1, r.x2) for r in record.regions] == [(100.0, 190.0)]
    assert "Small" not in [b.make for b in record.brands]


def test_detector_mode_with_max_inside_one_classifies_every_box() -> None:
    model = SizeClassifier()
    runner = detector_mode(
        **NO_FLOOR, detect=car_and_its_wheel, detector_name="fake", classifier=lambda: model, max_inside=1.0
    )
    record = Analysis(modes={"detector": runner}, default_mode="detector")(post(), IMAGE)
    assert len(model.calls[0]) == 2 and len(record.regions) == 2


def test_region_search_holds_proposals_to_the_car_threshold_and_the_whole_image_to_its_own() -> None:
    from carspot.detector.proposals import Proposals

    proposals = Proposals(xyxy=np.array([[100, 20, 190, 90]], np.float32), image_size=(200, 100), backend="fixed")
    model = DoubtfulCarness(0.2)  # below the proposals' 0.5, above the whole image's 0.05
    runner = region_search_mode(
        propose=lambda image: proposals, proposer_name="fixed", classifier=lambda: model, whole_image=True
    )
    record = Analysis(modes={"region-search": runner}, default_mode="region-search")(post(), IMAGE)
    assert [(r.x1, r.y1, r.x2, r.y2) for r in record.regions] == [(0, 0, 200, 100)]
    assert record.regions[0].score == pytest.approx(0.2)


def test_region_search_gives_no_pass_to_proposals_the_screen_calls_unlikely() -> None:
    boxes = [[10, 10, 60, 50], [100, 20, 190, 90], [0, 0, 20, 20]]  # rough P(car): .25 .45 .1
    model, _ = run_region_search(boxes, screen_count=10, screen_threshold=0.2)
    assert model.screened == [3] and [len(c) for c in model.calls] == [2]


def test_region_search_with_no_proposals_still_checks_the_whole_image() -> None:
    model, record = run_region_search([], whole_image=True)
    assert model.calls == [[(100, 200)]] and len(record.regions) == 1


def batch_of(modes: Sequence[str | None], images: Sequence[np.ndarray]) -> list[tuple[Post, np.ndarray]]:
    """Posts p0, p1, … asking for these modes (None: the default), with these images."""
    posts = [dataclasses.replace(post(mode), post_id=f"p{i}") for i, mode in enumerate(modes)]
    return list(zip(posts, images, strict=True))


def test_a_batch_sends_the_regions_of_all_its_images_to_the_classifier_in_one_call() -> None:
    model = CarnessClassifier()
    proposals = [[10, 10, 60, 50], [0, 0, 20, 20]]
    from carspot.detector.proposals import Proposals

    analysis = Analysis(
        modes={
            "standard": standard_mode(classifier=lambda: model),
            "detector": detector_mode(**NO_FLOOR, detect=two_cars, detector_name="two", classifier=lambda: model),
            "region-search": region_search_mode(
                propose=lambda image: Proposals(np.array(proposals, np.float32), (200, 100), "fixed"),
                proposer_name="fixed",
                classifier=lambda: model,
            ),
        },
        default_mode="detector",
    )
    batch = batch_of([None, "standard", "region-search", None], [IMAGE] * 4)
    together = analysis.analyse_batch(batch)
    assert [len(call) for call in model.calls] == [2 + 1 + 2 + 2]  # every image's crops, one call
    model.calls.clear()
    alone = [analysis(p, image) for p, image in batch]
    assert len(model.calls) == 4
    assert all(isinstance(r, AnalysisRecord) for r in together)
    assert [(r.mode, r.regions, r.brands) for r in together] == [(r.mode, r.regions, r.brands) for r in alone]


def test_a_failing_image_in_a_batch_gets_its_error_and_the_others_their_analyses() -> None:
    model = SizeClassifier()

    def detect(image: np.ndarray) -> Detections:
        if image.shape[0] == 13:
            raise ValueError("the detector cannot read this image")
        return two_cars(image)

    analysis = Analysis(
        modes={"detector": detector_mode(**NO_FLOOR, detect=detect, detector_name="two", classifier=lambda: model)},
        default_mode="detector",
    )
    odd = np.zeros((13, 200, 3), np.uint8)
    results = analysis.analyse_batch(batch_of([None, None, "no-such-mode", None], [IMAGE, odd, IMAGE, IMAGE]))
    assert isinstance(results[1], ValueError) and isinstance(results[2], UnsupportedMode)
    assert [len(r.regions) for r in results if isinstance(r, AnalysisRecord)] == [2, 2]
    assert [len(c) for c in model.calls] == [4]


class RefusesNarrowCrops(CarnessClassifier):
    def predict(self, crops: Sequence[np.ndarray], *, top_k: int = 5) -> list[list[tuple[str, float]]]:
        if any(c.shape[1] < 10 for c in crops):
            raise ValueError("crop too narrow")
        return super().predict(crops, top_k=top_k)


def test_when_the_joint_classifier_call_fails_each_image_is_retried_alone_to_isolate_the_culprit() -> None:
    model = RefusesNarrowCrops()
    analysis = Analysis(modes={"standard": standard_mode(classifier=lambda: model)}, default_mode="standard")
    narrow = np.zeros((100, 5, 3), np.uint8)
    results = analysis.analyse_batch(batch_of([None] * 3, [IMAGE, narrow, IMAGE]))
    assert isinstance(results[1], ValueError)
    assert [r.brands[0].make for r in results if isinstance(r, AnalysisRecord)] == ["Big", "Big"]


def test_one_batch_is_analysed_by_one_model_version_even_while_a_promotion_swaps_it() -> None:
    versions = iter(["v1", "v2", "v3"])

    def current() -> CarnessClassifier:
        model = CarnessClassifier()
        model.version = next(versions)
        return model

    analysis = Analysis(modes={"standard": standard_mode(classifier=current)}, default_mode="standard")
    first = analysis.analyse_batch(batch_of([None] * 3, [IMAGE] * 3))
    second = analysis.analyse_batch(batch_of([None], [IMAGE]))
    assert [r.model_version for r in first if isinstance(r, AnalysisRecord)] == ["v1"] * 3
    assert [r.model_version for r in second if isinstance(r, AnalysisRecord)] == ["v2"]


def test_detector_mode_drops_a_box_below_the_size_floor_before_the_classifier_sees_it() -> None:
    """A crop of a few dozen pixels, blown up to 224, shows no make but gets a confident one."""
    model = SizeClassifier()
    runner = detector_mode(detect=two_cars, detector_name="fake", classifier=lambda: model, min_box_area=2001.0)
    record = Analysis(modes={"detector": runner}, default_mode="detector")(post(), IMAGE)
    assert [[w > 80 for _, w in call] for call in model.calls] == [[True]]  # the 50 x 40 box (2,000 px²) did not
    assert [(r.x1, r.y1, r.x2, r.y2) for r in record.regions] == [(100, 20, 190, 90)]
    assert "Small" not in [b.make for b in record.brands]


def test_detector_mode_keeps_a_box_exactly_at_the_size_floor() -> None:
    model = SizeClassifier()
    runner = detector_mode(detect=two_cars, detector_name="fake", classifier=lambda: model, min_box_area=2000.0)
    record = Analysis(modes={"detector": runner}, default_mode="detector")(post(), IMAGE)
    assert len(record.regions) == 2 and "Small" in [b.make for b in record.brands]


def test_an_image_whose_best_make_is_below_the_confidence_asked_for_is_an_unidentified_car() -> None:
    model = SizeClassifier()  # "Big" at 0.7 for the 90 px car, "Small" at 0.6 for the 50 px one
    runner = detector_mode(**NO_FLOOR, detect=two_cars, detector_name="two", classifier=lambda: model)
    doubtful = Analysis(modes={"detector": runner}, default_mode="detector", min_brand_confidence=0.65)
    record = doubtful(post(), IMAGE)
    assert not record.unidentified and record.confidence == pytest.approx(0.7)  # the image: its best make, 0.7
    assert [(r.x1, r.unidentified) for r in record.regions] == [(100.0, False), (10.0, True)]  # "Small" at 0.6
    strict = Analysis(modes={"detector": runner}, default_mode="detector", min_brand_confidence=0.75)(post(), IMAGE)
    assert strict.unidentified and all(r.unidentified for r in strict.regions)
    assert [b.make for b in strict.brands] == [b.make for b in record.brands]  # its top-5 is kept


def test_an_image_without_a_car_is_not_an_unidentified_car_and_zero_marks_nothing() -> None:
    model = SizeClassifier()
    no_car = detector_mode(
        **NO_FLOOR, detect=lambda image: Detections.empty(), detector_name="x", classifier=lambda: model
    )
    record = Analysis(modes={"detector": no_car}, default_mode="detector", min_brand_confidence=1.0)(post(), IMAGE)
    assert record.brands == () and not record.unidentified and record.confidence is None
    runner = detector_mode(**NO_FLOOR, detect=two_cars, detector_name="two", classifier=lambda: model)
    anything = Analysis(modes={"detector": runner}, default_mode="detector")(post(), IMAGE)
    assert not anything.unidentified and not any(r.unidentified for r in anything.regions)
    with pytest.raises(ValueError, match="min_brand_confidence"):
        Analysis(modes={"detector": runner}, default_mode="detector", min_brand_confidence=1.5)
