"""Composes the detector and the brand classifier into the one analysis function the worker runs.

Each mode is a composition of the same parts, none a copy of another:

- ``standard``: the whole image → brand classifier → the image's top-5.
- ``detector``: the detector's car boxes → the brand classifier on each box (one batch) → each region's top-5;
  the image's top-5 = the 5 most confident makes over all its regions (as in the reference paper).
- ``region-search`` (the paper's): region proposals → one backbone pass per proposal gives both "is this a car"
  (the ImageNet head summed over its car classes) and the brand top-5 → the car regions (score threshold, NMS,
  at most ``max_regions``) → the image's top-5 over them, as in ``detector`` mode. Optionally one whole-image
  pass first ranks all proposals so only the best few get their own pass (``screen_count``).

Every mode is split in two: a per-image step (detect, propose, screen) that says which crops the brand classifier
must see, and a finish that turns its answers into the image's analysis. Between them, `Analysis.analyse_batch`
sends the crops of all the images of a batch to the classifier in one call (one model for the whole batch, so a
promotion never splits a batch between versions): what makes a GPU pay, and on CPU a few per cent (the network
runs ~72 crops/s per core one at a time, ~76 in batches of 16). A failure stays with its image.

Models are loaded once by the caller and passed in as callables; this module only turns their validated
outputs into the store's records, so no framework type crosses a stage boundary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol, TypeVar, cast

import numpy as np

from carspot.detector.detections import Detections
from carspot.detector.nms import box_inside, non_max_suppression, suppress_contained
from carspot.detector.proposals import Proposals
from carspot.store.records import AnalysisRecord, BrandScore, RegionRecord


class Post(Protocol):
    """What the analysis reads of a post (the wire message `carspot.pipeline.message.Post` has it): its image's
    identity and size for the record, and the mode it asks for (None: the default one)."""

    @property
    def image_sha256(self) -> str: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def mode(self) -> str | None: ...


CarDetector = Callable[[np.ndarray], Detections]
TopK = list[tuple[str, float]]
DETECTOR_ONLY_VERSION = "detector-only"
TOP_K = 5
WHOLE_IMAGE_CAR_THRESHOLD = 0.05
"""P(car) from which the whole image counts as a car region. Lower than a proposal's 0.5: it is one test per
image, not dozens. Measured with the released model (20261130T002120Z): of the 1,681 by-model validation
Stanford Cars photos 97.5 % reach 0.05 and 82.5 % reach 0.5 (5th percentile 0.11, median 0.90); the 30 images
without a car we have (4 ../shared scenes and 26 scikit-image sample images: motorcycles, a rocket, an astronaut…)
stay at or below 0.007."""
DETECTOR_BOX_CAR_THRESHOLD = 0.005
"""P(car) (the brand model's car head on the box's crop) below which a detector's box is dropped as not a car.
Very low on purpose: the detector already says "car", this only catches its plain mistakes. Measured with the
released model on 42 car-free images (the 16 composite negatives, 4 shared scenes, 22 scikit-image samples): the
boxes the detectors put there from a 0.2 score (YOLO-FastestV2 on the astronaut, CenterNet on street-000230.jpg
and its variants; 4 boxes, 0.15 adds 3) have P(car) <= 0.0013; on the 400 composites at a 0.3 score it changed
top-5 by 0 (YOLO-FastestV2) and -0.25 points (CenterNet, one image), against -0.5 / -1.0 at 0.02."""
DETECTOR_MIN_BOX_AREA = 2304.0
"""Square pixels (48 x 48) below which a detector box is dropped before the brand classifier sees it: a crop
that small, blown up to 224 px, shows no make, yet it gets a confident one (Hyundai, Aston Martin, Lamborghini
on wheels, reflections and distant specks of whole car photos, most under 1,500 px²), and the image's top-5
takes each make's best region. Measured with CenterNet from a 0.1 score, the brand model on ONNX Runtime,
by-model photos top-1 / top-5 for no floor / 1,600 / 2,304 / 4,096 px²: 50.7 / 73.5, 52.4 / 74.9, 52.6 / 74.8,
52.9 / 74.8 %; composites the same with any floor (their cars fill at least 5 % of the frame). 4,096 gained
0.3 point more on the photos but dropped the distant taxis of times-square.png once analysed at 1,024 px (their
boxes are 2,500-3,700 px² there), cars a street photo's viewer does see."""
DETECTOR_MAX_INSIDE = 0.8
"""A detector box with more than this share of its area inside a more confident box is dropped before the brand
classifier sees it: a part of a car (or a "car" inside a pickup's "truck" box) adds a crop whose brands are
noise. Measured with CenterNet from a 0.2 score: by-model photos top-1 / top-5 52.7 / 74.0 -> 53.3 / 74.2 %; 400
composites 46.8 / 64.0 -> 47.0 / 64.0 %, held-out composites 41.5 / 61.3 -> 41.5 / 61.8 %; 0.7 was about the
same, 0.9 gained less."""
_T = TypeVar("_T")


class BrandClassifier(Protocol):
    """What the analysis needs of a brand model: its version and batched top-k predictions."""

    @property
    def version(self) -> str: ...

    def predict(self, crops: Sequence[np.ndarray], *, top_k: int = TOP_K) -> list[TopK]: ...


class RegionClassifier(BrandClassifier, Protocol):
    """A brand model that also says how likely each crop shows a car (its car check)."""

    def predict_regions(
        self, crops: Sequence[np.ndarray], *, top_k: int = TOP_K, min_car: float | Sequence[float] = 0.0
    ) -> tuple[list[TopK], np.ndarray]:
        """Per crop: the top-k makes (none under its ``min_car``), and (as a float array) the probability that it
        shows a car."""
        ...


class UnsupportedMode(ValueError):
    """The post asks for an analysis mode this worker has no models for."""

    reason = "unsupported_mode"


def brand_scores(top: TopK) -> tuple[BrandScore, ...]:
    """A classifier's top-k as ranked store records (scores clipped into [0, 1] against float noise)."""
    ranked = sorted(top, key=lambda pair: -pair[1])[:TOP_K]
    return tuple(
        BrandScore(make=make, score=min(1.0, max(0.0, float(score))), rank=rank)
        for rank, (make, score) in enumerate(ranked, start=1)
    )


def image_top_k(region_tops: Sequence[TopK], *, k: int = TOP_K) -> TopK:
    """The ``k`` most confident makes over all regions, each make with its best score."""
    best: dict[str, float] = {}
    for top in region_tops:
        for make, score in top:
            best[make] = max(score, best.get(make, 0.0))
    return sorted(best.items(), key=lambda pair: (-pair[1], pair[0]))[:k]


def crop(image: np.ndarray, box: np.ndarray, *, margin: float = 0.05) -> np.ndarray:
    """The box with a small margin of context, clipped to the image (Stanford crops include a little)."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = max(0, int(x1 - dx)), max(0, int(y1 - dy))
    right, bottom = min(width, int(np.ceil(x2 + dx))), min(height, int(np.ceil(y2 + dy)))
    return image[top : max(bottom, top + 1), left : max(right, left + 1)]


def whole_image_box(image: np.ndarray) -> np.ndarray:
    """The image's own frame as a (1, 4) float32 ``x1, y1, x2, y2`` box."""
    height, width = image.shape[:2]
    return np.array([[0, 0, width, height]], np.float32)


@dataclass(frozen=True)
class AnalysisParts:
    regions: tuple[RegionRecord, ...]
    brands: tuple[BrandScore, ...]
    model_version: str


Finish = Callable[[Sequence[TopK], np.ndarray], AnalysisParts]
"""Per crop the classifier's top-k and P(car) (NaN when not asked for) -> the image's analysis."""


@dataclass(frozen=True)
class ImageWork:
    """What one image needs from the brand classifier, and how the answers become its analysis."""

    crops: Sequence[np.ndarray]
    finish: Finish
    car_scores: bool = False
    """The finish needs P(car) per crop (`RegionClassifier.predict_regions`), not only the brands."""
    brand_floors: Sequence[float] = ()
    """With ``car_scores``: per crop, the P(car) under which the finish never reads its makes (its own threshold);
    such crops get none and cost no brand pass where the model can skip it. Empty: every crop's makes."""


Prepare = Callable[[np.ndarray, BrandClassifier | None], ImageWork]
"""A mode's per-image step, given the batch's brand model (None: the detector alone)."""


ClassifierSource = Callable[[], BrandClassifier]
"""Returns the current classifier; a registry-backed source swaps in a newly promoted model."""


@dataclass(frozen=True)
class ModeRunner:
    """One analysis mode: its per-image step, the classifier it uses, and the detector name stored with it."""

    prepare: Prepare
    detector: str
    classifier: ClassifierSource | None = None

    def run(self, image: np.ndarray) -> AnalysisParts:
        """One image on its own: the same steps a batch takes (`analyse_images`)."""
        (result,) = analyse_images([(self, image)])
        if isinstance(result, Exception):
            raise result
        return result.parts


def classify_together(model: BrandClassifier | None, works: Sequence[ImageWork]) -> list[tuple[list[TopK], np.ndarray]]:
    """The crops of every image in one classifier call, the answers split back per image.

    P(car) is computed for all when any image needs it; a crop gets no makes under its `ImageWork.brand_floors`
    (none for the works that ask for no car scores)."""
    counts = [len(work.crops) for work in works]
    crops = [c for work in works for c in work.crops]
    if not crops:
        return [([], np.zeros(0, np.float32)) for _ in works]
    if model is None:
        raise ValueError("crops to classify but no brand model")
    if any(work.car_scores for work in works):
        floors = [floor for work in works for floor in _floors(work)]
        tops, car = _region_model(model).predict_regions(crops, min_car=floors)
        car = np.asarray(car, dtype=np.float32)
    else:
        tops, car = model.predict(crops), np.full(len(crops), np.nan, np.float32)
    if len(tops) != len(crops) or len(car) != len(crops):
        raise ValueError(f"the classifier answered {len(tops)} of {len(crops)} crops")
    answers, start = [], 0
    for count in counts:
        answers.append((list(tops[start : start + count]), car[start : start + count]))
        start += count
    return answers


def _floors(work: ImageWork) -> Sequence[float]:
    if not work.car_scores or not work.brand_floors:
        return [0.0] * len(work.crops)
    if len(work.brand_floors) != len(work.crops):
        raise ValueError(f"{len(work.brand_floors)} brand floors for {len(work.crops)} crops")
    return work.brand_floors


def _region_model(model: BrandClassifier | None, *, mode: str = "region-search") -> RegionClassifier:
    if model is None or not hasattr(model, "predict_regions"):
        raise UnsupportedMode(f"this brand model gives no car scores (predict_regions): {mode} is unavailable")
    return cast(RegionClassifier, model)


def regions_from(detections: Detections, tops: Sequence[TopK] | None = None) -> tuple[RegionRecord, ...]:
    """The detector's boxes (with their top-5 makes when classified) as stored regions, most confident first."""
    order = np.argsort(-detections.confidence, kind="stable")
    return tuple(
        RegionRecord(
            index=rank,
            x1=float(detections.xyxy[i, 0]),
            y1=float(detections.xyxy[i, 1]),
            x2=float(detections.xyxy[i, 2]),
            y2=float(detections.xyxy[i, 3]),
            score=float(detections.confidence[i]),
            label=detections.labels[i],
            brands=brand_scores(tops[i]) if tops is not None else (),
        )
        for rank, i in enumerate(order)
    )


def one_car_one_region(
    image: np.ndarray, found: Detections, tops: Sequence[TopK], *, witness: TopK | None, whole_car: float
) -> tuple[tuple[RegionRecord, ...], tuple[BrandScore, ...]]:
    """The car regions and the image's top-5, from the boxes found (with their top-k) and the whole image's
    top-k when it passed its car check (``witness``; ``whole_car`` its P(car)).

    The whole image and a box of the same car are one car, counted once: the whole image is a car region only
    when no box was found. Otherwise it is a witness: its top-k still feeds the image's top-5 (it often frames a
    car best), so the brand answer is the one it gave when it was a region of its own. Measured with model
    20261201T032453Z and CenterNet (defaults; `bench/cars.py`): 300 Stanford photos (every 27th of labels.csv)
    had 2.01 car regions per photo in detector mode and 2.09 in region search; now 1.04 and 1.30 (parts of a car
    dropped too, ``max_inside``), top-1 / top-5 93.0 / 95.3 % in detector mode both ways, region search 90.3 /
    94.0 -> 91.0 / 94.3 %; the 1,681 by-model validation photos (detector mode) 2.02 -> 1.05 cars per photo,
    56.8 / 77.2 % both ways; 400 seed-7 composites (1.53 pasted cars per image) 1.98 -> 1.56, 50.5 / 68.8 % both
    ways. Leaving the witness out when boxes were found cost 0.6 points of top-5 on the composites."""
    if witness is not None and not len(found):
        whole = Detections(
            xyxy=whole_image_box(image),
            confidence=np.array([min(1.0, max(0.0, whole_car))], np.float32),
            class_id=np.zeros(1, np.int32),
            labels=("car",),
        )
        return regions_from(whole, [witness]), brand_scores(witness)
    witnesses = [witness] if witness is not None else []
    return regions_from(found, tops), brand_scores(image_top_k([*tops, *witnesses]))


def detector_mode(
    *,
    detect: CarDetector,
    detector_name: str,
    classifier: ClassifierSource | None,
    whole_image: bool = False,
    whole_image_threshold: float = WHOLE_IMAGE_CAR_THRESHOLD,
    box_threshold: float = DETECTOR_BOX_CAR_THRESHOLD,
    max_inside: float = DETECTOR_MAX_INSIDE,
    min_box_area: float = DETECTOR_MIN_BOX_AREA,
) -> ModeRunner:
    """Car boxes from the detector; with a classifier, each box's top-5 and the image's top-5.

    A box smaller than ``min_box_area`` square pixels is dropped first (0: none is), then a box with more than
    ``max_inside`` of its area inside a more confident box (1: none is).

    With a model that has ``predict_regions``, each box's crop is also checked by the car head (same call) and
    dropped when its P(car) is below ``box_threshold`` (0: keep every box), so a detector's plain mistake gives
    no brands. ``whole_image``: the whole image is verified too, in the same batch as the boxes; when its P(car)
    reaches ``whole_image_threshold`` its top-5 feeds the image's top-5, and it is a car region of its own only
    when no box was kept (`one_car_one_region`). A car that fills the frame, the typical car photo, is often
    missed by a detector trained on street scenes (measured: YOLO-FastestV2 found no car in 1,121 of 1,681
    Stanford Cars photos)."""

    def prepare(image: np.ndarray, model: BrandClassifier | None) -> ImageWork:
        raw = detect(image)
        detections = suppress_contained(raw.filter(raw.areas >= min_box_area), max_inside=max_inside)
        if model is None:
            return ImageWork(
                crops=(), finish=lambda *_: AnalysisParts(regions_from(detections), (), DETECTOR_ONLY_VERSION)
            )
        version = model.version
        car_head = hasattr(model, "predict_regions")
        verify_whole = whole_image and car_head
        check_boxes = car_head and box_threshold > 0.0
        crops = [crop(image, box) for box in detections.xyxy]

        def finish(tops: Sequence[TopK], car: np.ndarray) -> AnalysisParts:
            whole_top, box_tops = (tops[0], list(tops[1:])) if verify_whole else (None, list(tops))
            found = detections
            if check_boxes:
                keep = car[1:] >= box_threshold if verify_whole else car >= box_threshold
                found = found.filter(keep)
                box_tops = [top for top, kept in zip(box_tops, keep, strict=True) if kept]
            whole_car = float(car[0]) if verify_whole else 0.0
            witness = whole_top if whole_top is not None and whole_car >= whole_image_threshold else None
            regions, brands = one_car_one_region(image, found, box_tops, witness=witness, whole_car=whole_car)
            return AnalysisParts(regions, brands, version)

        box_floors = [box_threshold if check_boxes else 0.0] * len(crops)
        return ImageWork(
            crops=[image, *crops] if verify_whole else crops,
            finish=finish,
            car_scores=verify_whole or check_boxes,
            brand_floors=[whole_image_threshold, *box_floors] if verify_whole else box_floors,
        )

    return ModeRunner(prepare=prepare, detector=detector_name, classifier=classifier)


def not_contained(boxes: np.ndarray, scores: np.ndarray, *, max_inside: float) -> np.ndarray:
    """Indices of the boxes to keep, best score first: a box with more than ``max_inside`` of its area inside a
    kept, better box is dropped (1 keeps every box). IoU-based NMS keeps a part inside a whole."""
    order = np.argsort(-scores, kind="stable")
    inside = box_inside(boxes, boxes)
    keep: list[int] = []
    for index in order.tolist():
        if not keep or inside[index, keep].max() <= max_inside:
            keep.append(index)
    return np.asarray(keep, dtype=np.intp)


Proposer = Callable[[np.ndarray], Proposals]
RegionClassifierSource = Callable[[], RegionClassifier]


def region_search_mode(
    *,
    propose: Proposer,
    proposer_name: str,
    classifier: RegionClassifierSource,
    car_threshold: float = 0.5,
    nms_iou: float = 0.5,
    max_regions: int = 10,
    screen_count: int = 0,
    screen_size: int = 448,
    screen_threshold: float = 0.0,
    whole_image: bool = False,
    whole_image_threshold: float = WHOLE_IMAGE_CAR_THRESHOLD,
    max_inside: float = 1.0,
) -> ModeRunner:
    """Selective-search proposals verified as cars by the brand model's own ImageNet head, R-CNN style.

    With ``screen_count`` > 0 and a model that has ``region_car_scores``, one whole-image pass at
    ``screen_size`` first ranks every proposal (its feature map pooled in the box, `carspot.classifier.regions`)
    and only the ``screen_count`` best (after NMS) whose rough P(car) reaches ``screen_threshold`` get their own
    backbone pass (a photo without cars then costs no crop pass at all); 0 verifies every proposal, as
    the paper did. The final car decision and the brands always come from the per-crop pass. ``whole_image``
    adds the whole image to the verified boxes: when its P(car) reaches ``whole_image_threshold`` its top-5
    feeds the image's, and it is the car region when no proposal is (`one_car_one_region`), so a car that fills
    the frame is found as it is in ``standard`` mode, even when no proposal frames it. A car region with more than
    ``max_inside`` of its area inside a likelier one (a part of the same car) is dropped after NMS."""

    def prepare(image: np.ndarray, model: BrandClassifier | None) -> ImageWork:
        region_model = _region_model(model)
        version = region_model.version
        boxes = propose(image).xyxy
        if (
            screen_count > 0
            and len(boxes)
            and (screen_threshold > 0 or screen_count < len(boxes))
            and hasattr(region_model, "region_car_scores")
        ):
            rough = np.clip(
                np.asarray(region_model.region_car_scores(image, boxes, size=screen_size), np.float32), 0, 1
            )
            best = non_max_suppression(
                boxes,
                rough,
                np.zeros(len(boxes), np.int32),
                iou_threshold=max(nms_iou, 0.7),  # loose: near boxes differ in how well they frame the car
                score_threshold=screen_threshold,
                max_detections=screen_count,
            )
            boxes = boxes[best]
        if whole_image:
            boxes = np.concatenate([whole_image_box(image), boxes])

        def finish(tops: Sequence[TopK], car: np.ndarray) -> AnalysisParts:
            if not len(boxes):
                return AnalysisParts((), (), version)
            car = np.clip(np.asarray(car, dtype=np.float32), 0.0, 1.0)
            first = 1 if whole_image else 0
            passing = first + np.flatnonzero(car[first:] >= car_threshold)
            keep = passing[
                non_max_suppression(
                    boxes[passing],
                    car[passing],
                    np.zeros(len(passing), np.int32),
                    iou_threshold=nms_iou,
                    score_threshold=0.0,
                    max_detections=max_regions,
                )
            ]
            keep = keep[not_contained(boxes[keep], car[keep], max_inside=max_inside)]
            found = Detections(
                xyxy=boxes.copy(), confidence=car, class_id=np.zeros(len(car), np.int32), labels=("car",) * len(car)
            ).filter(keep)
            whole_car = float(car[0]) if whole_image else 0.0
            witness = tops[0] if whole_image and whole_car >= whole_image_threshold else None
            regions, brands = one_car_one_region(
                image, found, [tops[i] for i in keep], witness=witness, whole_car=whole_car
            )
            return AnalysisParts(regions, brands, version)

        crops = [crop(image, box, margin=0.0) for box in boxes]
        floors = [car_threshold] * len(boxes)
        if whole_image and floors:
            floors[0] = whole_image_threshold
        return ImageWork(crops=crops, finish=finish, car_scores=True, brand_floors=floors)

    return ModeRunner(prepare=prepare, detector=proposer_name, classifier=classifier)


def standard_mode(
    *, classifier: ClassifierSource, whole_image_threshold: float = WHOLE_IMAGE_CAR_THRESHOLD
) -> ModeRunner:
    """The whole image through the brand classifier (the reference paper's fast mode), with brands only when
    the car check calls it a car: P(car) from the same call reaches ``whole_image_threshold``, the test the
    other modes hold the whole image to. Without it a photo of horses or a bus got the makes of some car.
    A brand model with no car check (no ``predict_regions``) cannot serve this mode: `UnsupportedMode`."""

    def prepare(image: np.ndarray, model: BrandClassifier | None) -> ImageWork:
        version = _region_model(model, mode="standard").version

        def finish(tops: Sequence[TopK], car: np.ndarray) -> AnalysisParts:
            if not float(car[0]) >= whole_image_threshold:  # NaN is no car either
                return AnalysisParts((), (), version)
            return AnalysisParts((), brand_scores(tops[0]), version)

        return ImageWork(crops=[image], finish=finish, car_scores=True, brand_floors=[whole_image_threshold])

    return ModeRunner(prepare=prepare, detector="none", classifier=classifier)


@dataclass(frozen=True)
class TimedParts:
    """An image's analysis and the seconds it took (its own steps plus its share of the joint classifier call)."""

    parts: AnalysisParts
    seconds: float


@dataclass
class _Prepared:
    index: int
    model: BrandClassifier | None
    work: ImageWork
    seconds: float


def analyse_images(items: Sequence[tuple[ModeRunner, np.ndarray]]) -> list[TimedParts | Exception]:
    """Each image's per-image step, then one classifier call per model for all their crops, then each image's
    finish. An image whose step fails gets its exception in its place and the others are unaffected (if the
    joint call fails, each image's crops are retried on their own to find the one at fault). Each classifier
    source is asked once, so one batch is analysed by one model version even while a promotion swaps it."""
    results: list[TimedParts | Exception | None] = [None] * len(items)
    models: dict[int, BrandClassifier | None] = {}
    prepared: list[_Prepared] = []
    for index, (runner, image) in enumerate(items):
        started = time.perf_counter()
        try:
            source = runner.classifier
            if id(source) not in models:
                models[id(source)] = source() if source is not None else None
            model = models[id(source)]
            work = runner.prepare(image, model)
        except Exception as exc:
            results[index] = exc
            continue
        prepared.append(_Prepared(index, model, work, time.perf_counter() - started))
    for group in _by_model(prepared):
        for item, answer in zip(group, _classify(group), strict=True):
            if isinstance(answer, Exception):
                results[item.index] = answer
                continue
            started = time.perf_counter()
            try:
                parts = item.work.finish(*answer)
            except Exception as exc:
                results[item.index] = exc
                continue
            results[item.index] = TimedParts(parts, item.seconds + time.perf_counter() - started)
    return _every_one_set(results)


def _every_one_set(results: list[_T | None]) -> list[_T]:
    """Every image has its result or its error by construction; a gap would be a bug here, not bad input."""
    assert all(result is not None for result in results), "an image was left without a result"
    return cast(list[_T], results)


def _by_model(prepared: Sequence[_Prepared]) -> list[list[_Prepared]]:
    groups: dict[int, list[_Prepared]] = {}
    for item in prepared:
        groups.setdefault(id(item.model), []).append(item)
    return list(groups.values())


def _classify(group: Sequence[_Prepared]) -> list[tuple[list[TopK], np.ndarray] | Exception]:
    """One call for the group, its time shared by crop count; on failure, each image alone."""
    model = group[0].model
    started = time.perf_counter()
    try:
        answers: list[tuple[list[TopK], np.ndarray] | Exception] = list(
            classify_together(model, [item.work for item in group])
        )
    except Exception:
        answers = []
        for item in group:
            try:
                answers.extend(classify_together(model, [item.work]))
            except Exception as exc:
                answers.append(exc)
    seconds = time.perf_counter() - started
    total = sum(len(item.work.crops) for item in group)
    for item in group:
        item.seconds += seconds * len(item.work.crops) / total if total else 0.0
    return answers


def mark_unidentified(
    regions: Sequence[RegionRecord], brands: Sequence[BrandScore], *, min_confidence: float
) -> tuple[tuple[RegionRecord, ...], bool]:
    """The regions, each marked unidentified when its best make's probability is below ``min_confidence``, and
    whether the image is (its best make over every region below it). Without brands nothing is unidentified:
    no car was found."""

    def doubted(top: Sequence[BrandScore]) -> bool:
        return bool(top) and min(top, key=lambda b: b.rank).score < min_confidence

    marked = tuple(replace(r, unidentified=doubted(r.brands)) for r in regions)
    return marked, doubted(brands)


class Analysis:
    """``analyse_batch([(post, image), …])`` -> per image its analysis (or the error that stopped it), each in
    the post's mode or the default one; ``analysis(post, image)`` for one image.

    ``min_brand_confidence``: an image (a region) whose best make's calibrated probability is below it keeps its
    top-5 but is marked unidentified, a car without a confident make (`mark_unidentified`)."""

    def __init__(
        self, *, modes: Mapping[str, ModeRunner], default_mode: str, min_brand_confidence: float = 0.0
    ) -> None:
        if default_mode not in modes:
            raise UnsupportedMode(f"default mode {default_mode!r} has no models (available: {sorted(modes)})")
        if not 0.0 <= min_brand_confidence <= 1.0:
            raise ValueError(f"min_brand_confidence must lie in [0, 1], got {min_brand_confidence}")
        self._modes = dict(modes)
        self._default_mode = default_mode
        self.min_brand_confidence = min_brand_confidence

    @property
    def default_mode(self) -> str:
        return self._default_mode

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(sorted(self._modes))

    def mode_for(self, post: Post) -> str:
        return post.mode or self._default_mode

    def serving(self) -> tuple[str, str, str]:
        """(brand model version, mode, detector) of the default mode as it stands (the version is asked of the
        classifier source, which a promotion swaps): what a worker reports before its first image."""
        runner = self.runner(self._default_mode)
        version = runner.classifier().version if runner.classifier is not None else DETECTOR_ONLY_VERSION
        return version, self._default_mode, runner.detector

    def runner(self, mode: str) -> ModeRunner:
        runner = self._modes.get(mode)
        if runner is None:
            raise UnsupportedMode(f"mode {mode!r} is not available (available: {sorted(self._modes)})")
        return runner

    def __call__(self, post: Post, image: np.ndarray) -> AnalysisRecord:
        (result,) = self.analyse_batch([(post, image)])
        if isinstance(result, Exception):
            raise result
        return result

    def analyse_batch(self, items: Sequence[tuple[Post, np.ndarray]]) -> list[AnalysisRecord | Exception]:
        """The worker's call: the images of a batch analysed together (`analyse_images`), as store records."""
        results: list[AnalysisRecord | Exception | None] = [None] * len(items)
        runnable: list[tuple[int, str, ModeRunner, np.ndarray]] = []
        for index, (post, image) in enumerate(items):
            mode = self.mode_for(post)
            try:
                runnable.append((index, mode, self.runner(mode), image))
            except UnsupportedMode as exc:
                results[index] = exc
        analysed = analyse_images([(runner, image) for _, _, runner, image in runnable])
        for (index, mode, runner, _), result in zip(runnable, analysed, strict=True):
            if isinstance(result, Exception):
                results[index] = result
                continue
            post = items[index][0]
            regions, unidentified = mark_unidentified(
                result.parts.regions, result.parts.brands, min_confidence=self.min_brand_confidence
            )
            results[index] = AnalysisRecord(
                image_sha256=post.image_sha256,
                width=post.width,
                height=post.height,
                mode=mode,
                detector=runner.detector,
                model_version=result.parts.model_version,
                regions=regions,
                brands=result.parts.brands,
                analyzed_at=datetime.now(UTC),
                duration_ms=result.seconds * 1000.0,
                unidentified=unidentified,
            )
        return _every_one_set(results)
