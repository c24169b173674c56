"""Region proposals by selective search: boxes that may hold an object, for a car verifier to check.

Two backends produce the same `Proposals`:

- ``"opencv"`` (default): `cv2.ximgproc.segmentation.createSelectiveSearchSegmentation`, fast mode by default
  (``mode="quality"`` for the slower, denser strategy list, ``mode="single"`` for one fast strategy). C++,
  releases the GIL.
- ``"selectivesearch"``: the `selectivesearch` package (0.4, pure Python over scikit-image's Felzenszwalb
  segmentation), the reference paper's design card. Works unchanged with numpy 2 and scikit-image 0.26; the
  only adaptation is that its harmless "local_binary_pattern on floating-point images" warning is silenced
  (its float copy of the image holds whole numbers). Several times slower than OpenCV, holds the GIL.

Both run on a copy downscaled so its longer side is at most `max_side` (never upscaled), and the boxes are
mapped back to the original image's pixels. Then, identically for both:

1. size filters in original pixels: `min_side_px` (width and height) and `min_area_fraction` /
   `max_area_fraction` of the image area; `aspect_range` bounds width / height;
2. near-duplicate merge: of boxes whose IoU exceeds `duplicate_iou`, the larger one is kept;
3. order and cap: boxes are ordered by area, largest first; if more than `max_count` remain, an evenly spaced
   sample of that order is kept, so small regions (small cars) survive the cap as well as large ones.

Why this order rather than the backend's own: OpenCV ranks its output by hierarchy level times a random number
drawn from an RNG Python cannot seed (two runs give the same set in different orders), so its order is not
reproducible; sorting makes every backend deterministic and the cap scale-fair.

Threads: OpenCV's worker pool is process-global (`cv2.setNumThreads`, pthreads backend in the wheels).
`load_proposer(backend="opencv", num_threads=1)` sets it once at load time (the default: run single-threaded
and get parallelism from the pipeline's own workers, each calling from its own Python thread or process);
``num_threads=None`` leaves the process's setting alone. That setting also applies to every other OpenCV user
in the process (e.g. the Yolo-FastestV2 detector). Selective search itself gains little from more threads.

OpenCV, scikit-image and `selectivesearch` are imported when a proposer is loaded, never at package import.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import numpy as np
import numpy.typing as npt

from carspot.detector.detections import Detections
from carspot.detector.images import check_image
from carspot.detector.nms import non_max_suppression

__all__ = [
    "BACKENDS",
    "ProposalFilters",
    "ProposalMode",
    "Proposals",
    "Proposer",
    "load_proposer",
    "propose",
]

Backend = Literal["opencv", "selectivesearch"]
BACKENDS: Final[tuple[str, ...]] = ("opencv", "selectivesearch")
ProposalMode = Literal["fast", "quality", "single"]
MODES: Final[tuple[str, ...]] = get_args(ProposalMode)
PROPOSAL_LABEL: Final = "proposal"


def _readonly(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True, eq=False, slots=True)
class Proposals:
    """Candidate regions of one image, in its own pixels; no class and no score (that is the verifier's job).

    A type of its own rather than `Detections` with made-up confidences, so a proposal cannot be stored or
    classified as a car by mistake; `as_detections` turns verified proposals into `Detections`.

    Attributes:
        xyxy: (N, 4) float32 `x1, y1, x2, y2`, inside `[0, width] x [0, height]`, `x1 < x2`, `y1 < y2`.
        image_size: `(width, height)` of the image the boxes belong to.
        backend: which backend produced them (``"opencv"`` or ``"selectivesearch"``).
    """

    xyxy: np.ndarray
    image_size: tuple[int, int]
    backend: str

    def __post_init__(self) -> None:
        xyxy = self.xyxy
        if not isinstance(xyxy, np.ndarray):
            raise TypeError(f"Proposals.xyxy must be a numpy array, got {type(xyxy).__name__}")
        if xyxy.dtype != np.float32 or xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ValueError(f"Proposals.xyxy must be (N, 4) float32, got {xyxy.shape} {xyxy.dtype}")
        width, height = self.image_size
        if width <= 0 or height <= 0:
            raise ValueError(f"Proposals.image_size must be positive, got {self.image_size}")
        if not np.isfinite(xyxy).all():
            raise ValueError("Proposals.xyxy must be finite")
        if (xyxy[:, 2] <= xyxy[:, 0]).any() or (xyxy[:, 3] <= xyxy[:, 1]).any():
            raise ValueError("Proposals.xyxy must satisfy x1 < x2 and y1 < y2")
        if (xyxy[:, :2] < 0).any() or (xyxy[:, 2] > width).any() or (xyxy[:, 3] > height).any():
            raise ValueError(f"Proposals.xyxy must lie inside the {width}x{height} image")
        object.__setattr__(self, "xyxy", _readonly(xyxy))

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    @property
    def areas(self) -> npt.NDArray[np.float32]:
        """(N,) box areas in square pixels."""
        return ((self.xyxy[:, 2] - self.xyxy[:, 0]) * (self.xyxy[:, 3] - self.xyxy[:, 1])).astype(np.float32)

    def as_detections(
        self,
        confidence: npt.ArrayLike | None = None,
        *,
        label: str = PROPOSAL_LABEL,
        class_id: int = 0,
    ) -> Detections:
        """These boxes as `Detections`, e.g. with a verifier's car probabilities as `confidence`.

        Without `confidence` every box gets 1.0 (an unverified proposal), labelled `label`.
        """
        n = len(self)
        scores = np.ones(n, dtype=np.float32) if confidence is None else np.asarray(confidence, dtype=np.float32).copy()
        return Detections(
            xyxy=self.xyxy.copy(),
            confidence=scores,
            class_id=np.full(n, class_id, dtype=np.int32),
            labels=(label,) * n,
        )


@dataclass(frozen=True, slots=True)
class ProposalFilters:
    """Which raw selective-search boxes survive; sizes are in original-image pixels.

    Attributes:
        min_side_px: smallest width and height kept.
        min_area_fraction: smallest box area as a fraction of the image area.
        max_area_fraction: largest box area as a fraction of the image area (1.0 keeps the whole image).
        aspect_range: `(low, high)` bounds of width / height.
        duplicate_iou: two boxes whose IoU exceeds this are near-duplicates; the larger one is kept.
        max_count: most proposals returned (an evenly spaced sample of the area-ranked boxes).
    """

    min_side_px: float = 16.0
    min_area_fraction: float = 0.002
    max_area_fraction: float = 1.0
    aspect_range: tuple[float, float] = (0.25, 4.0)
    duplicate_iou: float = 0.8
    max_count: int = 64

    def __post_init__(self) -> None:
        if self.min_side_px < 0:
            raise ValueError(f"min_side_px must be >= 0, got {self.min_side_px}")
        if not 0.0 <= self.min_area_fraction <= self.max_area_fraction <= 1.0:
            raise ValueError(
                "need 0 <= min_area_fraction <= max_area_fraction <= 1, got "
                f"{self.min_area_fraction} and {self.max_area_fraction}"
            )
        low, high = self.aspect_range
        if not 0.0 < low <= high:
            raise ValueError(f"aspect_range must be (low, high) with 0 < low <= high, got {self.aspect_range}")
        if not 0.0 <= self.duplicate_iou <= 1.0:
            raise ValueError(f"duplicate_iou must lie in [0, 1], got {self.duplicate_iou}")
        if self.max_count < 1:
            raise ValueError(f"max_count must be >= 1, got {self.max_count}")

    def apply(self, xyxy: npt.NDArray[np.float32], *, width: int, height: int) -> npt.NDArray[np.float32]:
        """The surviving boxes, largest first (see the module docstring for the order and the cap)."""
        box_w = xyxy[:, 2] - xyxy[:, 0]
        box_h = xyxy[:, 3] - xyxy[:, 1]
        area = box_w * box_h
        image_area = float(width) * float(height)
        aspect = np.divide(box_w, box_h, out=np.zeros_like(box_w), where=box_h > 0)
        keep = (
            (box_w >= self.min_side_px)
            & (box_h >= self.min_side_px)
            & (box_w > 0)
            & (box_h > 0)
            & (area >= self.min_area_fraction * image_area)
            & (area <= self.max_area_fraction * image_area)
            & (aspect >= self.aspect_range[0])
            & (aspect <= self.aspect_range[1])
        )
        boxes, area = xyxy[keep], area[keep]
        # Exact duplicates first (cheap), then near-duplicates by greedy IoU, larger box first.
        boxes, first = np.unique(boxes, axis=0, return_index=True)
        area = area[first]
        order = np.lexsort((boxes[:, 1], boxes[:, 0], -area))  # area desc, ties by position: deterministic
        boxes, area = boxes[order], area[order]
        if self.duplicate_iou < 1.0 and len(boxes) > 1:
            rank_score = np.linspace(1.0, 0.0, num=len(boxes))  # keeps the area order, stable
            kept = non_max_suppression(boxes, rank_score, iou_threshold=self.duplicate_iou, class_agnostic=True)
            boxes = boxes[np.sort(kept)]
        if len(boxes) > self.max_count:
            picks = np.unique(np.round(np.linspace(0, len(boxes) - 1, num=self.max_count)).astype(np.intp))
            boxes = boxes[picks]
        return np.ascontiguousarray(boxes, dtype=np.float32)


Proposer = Callable[[np.ndarray], Proposals]
"""What the pipeline passes around: `proposer(image_rgb) -> Proposals`, loaded once."""


def load_proposer(
    *,
    backend: str = "opencv",
    max_side: int | None = 256,
    mode: ProposalMode = "fast",
    num_threads: int | None = 1,
    filters: ProposalFilters | None = None,
    ss_scale: float = 500.0,
    ss_sigma: float = 0.9,
    ss_min_size: int = 10,
) -> Proposer:
    """A region proposer, `proposer(image_rgb) -> Proposals`, ready to be called from many threads.

    Args:
        backend: ``"opencv"`` or ``"selectivesearch"``.
        max_side: the longer side of the copy selective search runs on (never upscaled); `None` = full size.
        mode: OpenCV's strategy set, ``"fast"`` or ``"quality"``, or ``"single"``: one segmentation (k=150,
            sigma 0.8) and one combined strategy, about 6x faster than fast mode with a quarter of the boxes
            (65 ms vs 383 ms at 256 px here); enough when a whole-image pass screens them (opencv only).
        num_threads: set `cv2.setNumThreads` to this once, now (process-global; see the module docstring);
            `None` leaves it unchanged (opencv backend only).
        filters: size, aspect, duplicate and count filters; `ProposalFilters()` by default.
        ss_scale, ss_sigma, ss_min_size: the Felzenszwalb parameters of the selectivesearch backend, in
            pixels of the downscaled copy (its README's values by default).

    Raises:
        ValueError: an unknown backend or mode, or a bad option.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if max_side is not None and max_side < 16:
        raise ValueError(f"max_side must be >= 16 or None, got {max_side}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if num_threads is not None and num_threads < 0:
        raise ValueError(f"num_threads must be >= 0 or None, got {num_threads}")
    chosen = filters if filters is not None else ProposalFilters()

    import cv2  # Heavy: only when a proposer is loaded (resizing for both backends, segmentation for one).

    if num_threads is not None and backend == "opencv":
        cv2.setNumThreads(num_threads)

    if backend == "opencv":
        segmentation = cv2.ximgproc.segmentation

        def raw_boxes(small: np.ndarray) -> npt.NDArray[np.float32]:
            search = segmentation.createSelectiveSearchSegmentation()  # one per call: not thread-safe
            search.setBaseImage(small[:, :, ::-1].copy())  # OpenCV's strategies expect BGR
            if mode == "fast":
                search.switchToSelectiveSearchFast()
            elif mode == "single":
                search.switchToSingleStrategy(k=150, sigma=0.8)
            else:
                search.switchToSelectiveSearchQuality()
            rects = np.asarray(search.process(), dtype=np.float32).reshape(-1, 4)  # x, y, w, h
            return np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)

    else:
        if ss_scale <= 0 or ss_sigma < 0 or ss_min_size < 1:
            raise ValueError("need ss_scale > 0, ss_sigma >= 0 and ss_min_size >= 1")
        import selectivesearch

        def raw_boxes(small: np.ndarray) -> npt.NDArray[np.float32]:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r"Applying `local_binary_pattern`", category=UserWarning)
                _, regions = selectivesearch.selective_search(
                    small, scale=ss_scale, sigma=ss_sigma, min_size=ss_min_size
                )
            if not regions:
                return np.zeros((0, 4), dtype=np.float32)
            # 'rect' is (min_x, min_y, max_x - min_x, max_y - min_y) with inclusive pixel indices: +1 to the edge.
            rects = np.asarray([region["rect"] for region in regions], dtype=np.float32).reshape(-1, 4)
            return np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:] + 1.0], axis=1)

    def proposer(image_rgb: np.ndarray) -> Proposals:
        check_image(image_rgb)
        height, width = image_rgb.shape[:2]
        small = _downscale(image_rgb, max_side=max_side, resize=cv2.resize, interpolation=cv2.INTER_AREA)
        boxes = raw_boxes(small)
        # Back to the original's pixels, then clipped (the last row/column can round past the edge).
        scale = np.array(
            [width / small.shape[1], height / small.shape[0], width / small.shape[1], height / small.shape[0]],
            dtype=np.float32,
        )
        boxes = boxes * scale
        np.clip(boxes[:, 0::2], 0.0, float(width), out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0.0, float(height), out=boxes[:, 1::2])
        kept = chosen.apply(boxes.astype(np.float32), width=width, height=height)
        return Proposals(xyxy=kept, image_size=(width, height), backend=backend)

    return proposer


def propose(
    image_rgb: np.ndarray,
    *,
    backend: str = "opencv",
    max_side: int | None = 256,
    mode: ProposalMode = "fast",
    num_threads: int | None = 1,
    filters: ProposalFilters | None = None,
    **backend_options: Any,
) -> Proposals:
    """One-off proposals for one image: `load_proposer(...)(image_rgb)`. Workers should load a proposer once."""
    proposer = load_proposer(
        backend=backend,
        max_side=max_side,
        mode=mode,
        num_threads=num_threads,
        filters=filters,
        **backend_options,
    )
    return proposer(image_rgb)


def _downscale(image: np.ndarray, *, max_side: int | None, resize: Any, interpolation: int) -> np.ndarray:
    height, width = image.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return np.ascontiguousarray(image)
    factor = max_side / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return np.asarray(resize(image, size, interpolation=interpolation))
