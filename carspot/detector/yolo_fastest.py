"""Yolo-FastestV2 (COCO-80, ONNX) run through `cv2.dnn`: the only module that touches this model's tensors.

OpenCV is imported inside `load_yolo_fastest`, never at package import, so importing `carspot.detector` stays
cheap for processes that never detect.

The exported graph (read from the ONNX itself, opset 11, input `1x3x352x352`, fixed by baked-in reshapes):

- input: float32 NCHW, BGR channel order, values `pixel / 255`, the image stretched to 352x352 (no letterbox).
  BGR scores higher than RGB on every street scene in `shared/data/scenes` (e.g. bus 0.82 vs 0.68, the dog
  picture's pickup 0.68 vs 0.54), so callers pass RGB and we swap.
- one output `(605, 95)`: rows are grid cells, first the 22x22 grid (stride 16) then the 11x11 grid (stride
  32), each in row-major (y, x) order. Columns: 12 box values (3 anchors x `tx, ty, tw, th`, grouped by
  anchor), 3 objectness values (one per anchor), 80 class probabilities shared by the cell's anchors. The
  graph already applies sigmoid to box and objectness values and softmax to the classes.
- decoding (ours): `cx = (2 tx - 0.5 + cell_x) * stride`, `w = (2 tw)^2 * anchor_w`, likewise y and h, in
  352-pixel units; the 22x22 grid uses the three smaller anchors, the 11x11 grid the three larger ones.
  Score = objectness x best class probability; a box is labelled with its best class and kept only if that
  class is one of `car_classes`.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from carspot.detector.detections import Detections
from carspot.detector.errors import (
    ModelFormatError,
    ModelIntegrityError,
    ModelNotFoundError,
)
from carspot.detector.images import check_image
from carspot.detector.nms import suppress

__all__ = [
    "YOLO_FASTESTV2_ANCHORS",
    "YOLO_FASTESTV2_SHA256",
    "YoloFastestV2Detector",
    "load_yolo_fastest",
]

YOLO_FASTESTV2_SHA256: Final = "27c34bbd0d054cf799ab45d31cba11dcf86cf482ccfb43fa002349f495db7671"
"""The sha256 of the ONNX export this decoding was written against (`shared/models/yolo-fastestv2`)."""

YOLO_FASTESTV2_ANCHORS: Final[tuple[tuple[float, float], ...]] = (
    (12.64, 19.39),
    (37.88, 51.48),
    (55.71, 138.31),
    (126.91, 78.23),
    (131.57, 214.55),
    (279.92, 258.87),
)
"""Anchor (width, height) in network-input pixels, three per output scale, smallest scale first."""

_STRIDES: Final = (16, 32)
_ANCHORS_PER_CELL: Final = 3
_BOX_VALUES: Final = 4
_HEAD_COLUMNS: Final = _ANCHORS_PER_CELL * (_BOX_VALUES + 1)  # 12 box values + 3 objectness values
_SHA256_PATTERN: Final = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True, slots=True)
class _Grid:
    """Per output row: its cell's x, y and stride; per row and anchor: the anchor's width and height."""

    cell_x: npt.NDArray[np.float32]
    cell_y: npt.NDArray[np.float32]
    stride: npt.NDArray[np.float32]
    anchor_wh: npt.NDArray[np.float32]  # (rows, 3, 2)

    @classmethod
    def build(cls, input_size: int) -> _Grid:
        xs, ys, strides, anchors = [], [], [], []
        table = np.asarray(YOLO_FASTESTV2_ANCHORS, dtype=np.float32).reshape(len(_STRIDES), _ANCHORS_PER_CELL, 2)
        for scale, stride in enumerate(_STRIDES):
            cells = input_size // stride
            cell_y, cell_x = np.mgrid[0:cells, 0:cells]
            xs.append(cell_x.reshape(-1))
            ys.append(cell_y.reshape(-1))
            strides.append(np.full(cells * cells, stride))
            anchors.append(np.broadcast_to(table[scale], (cells * cells, _ANCHORS_PER_CELL, 2)))
        return cls(
            cell_x=np.concatenate(xs).astype(np.float32),
            cell_y=np.concatenate(ys).astype(np.float32),
            stride=np.concatenate(strides).astype(np.float32),
            anchor_wh=np.concatenate(anchors).astype(np.float32),
        )

    @property
    def rows(self) -> int:
        return int(self.stride.shape[0])


class YoloFastestV2Detector:
    """A loaded Yolo-FastestV2 network as a `CarDetector`: `detector(image_rgb) -> Detections`.

    Build it with `load_yolo_fastest`. One instance holds one `cv2.dnn.Net`, loaded once and reused; calls are
    serialised by a lock because a `cv2.dnn.Net` must not run two forwards at once. OpenCV's thread count is
    the caller's choice (`cv2.setNumThreads`).
    """

    name: str = "yolo-fastestv2"

    def __init__(
        self,
        *,
        net: Any,
        blob_from_image: Any,
        sha256: str,
        class_names: tuple[str, ...],
        car_classes: tuple[str, ...],
        score_threshold: float,
        nms_threshold: float,
        input_size: int,
        max_detections: int,
    ) -> None:
        self._net = net
        self._blob_from_image = blob_from_image
        self._lock = threading.Lock()
        self._grid = _Grid.build(input_size)
        self.sha256 = sha256
        self.class_names = class_names
        self.car_classes = car_classes
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.input_size = input_size
        self.max_detections = max_detections
        self._wanted = np.isin(np.asarray(class_names), np.asarray(car_classes))

    def __repr__(self) -> str:
        return (
            f"YoloFastestV2Detector(car_classes={self.car_classes}, score_threshold={self.score_threshold}, "
            f"nms_threshold={self.nms_threshold}, input_size={self.input_size}, sha256={self.sha256[:12]}…)"
        )

    def __call__(self, image_rgb: np.ndarray) -> Detections:
        """Car boxes in `image_rgb` (HxWx3 uint8, RGB), in its own pixel coordinates, most confident first."""
        check_image(image_rgb)
        height, width = image_rgb.shape[:2]
        output = self.forward(image_rgb)
        boxes, scores, class_ids = self._decode(output)
        if boxes.shape[0] == 0:
            return Detections.empty()
        # Undo the stretch to the square input, then keep boxes inside the picture.
        boxes *= np.array([width, height, width, height], dtype=np.float32) / np.float32(self.input_size)
        np.clip(boxes[:, 0::2], 0.0, float(width), out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0.0, float(height), out=boxes[:, 1::2])
        visible = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        candidates = Detections(
            xyxy=boxes[visible],
            confidence=scores[visible],
            class_id=class_ids[visible],
            labels=tuple(self.class_names[i] for i in class_ids[visible].tolist()),
        )
        return suppress(candidates, iou_threshold=self.nms_threshold, max_detections=self.max_detections)

    def forward(self, image_rgb: np.ndarray) -> npt.NDArray[np.float32]:
        """The raw `(rows, 95)` output for one image; kept public for inspection and benchmarks only."""
        check_image(image_rgb)
        # RGB in, BGR to the network (see the module docstring); blobFromImage resizes with INTER_LINEAR.
        blob = self._blob_from_image(
            image_rgb,
            scalefactor=1.0 / 255.0,
            size=(self.input_size, self.input_size),
            swapRB=True,
            crop=False,
        )
        with self._lock:
            self._net.setInput(blob)
            output = self._net.forward()
        return np.asarray(output, dtype=np.float32).reshape(self._grid.rows, -1)

    def _decode(
        self, output: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int32]]:
        """Boxes (xyxy, input pixels), scores and class ids of the anchors that pass the score threshold."""
        grid = self._grid
        box = output[:, : _ANCHORS_PER_CELL * _BOX_VALUES].reshape(-1, _ANCHORS_PER_CELL, _BOX_VALUES)
        objectness = output[:, _ANCHORS_PER_CELL * _BOX_VALUES : _HEAD_COLUMNS]
        class_probs = output[:, _HEAD_COLUMNS:]
        best_class = class_probs.argmax(axis=1)
        best_prob = np.take_along_axis(class_probs, best_class[:, None], axis=1)
        scores = objectness * best_prob
        rows, anchors = np.nonzero((scores >= self.score_threshold) & self._wanted[best_class][:, None])
        t = box[rows, anchors]
        stride = grid.stride[rows]
        center_x = (2.0 * t[:, 0] - 0.5 + grid.cell_x[rows]) * stride
        center_y = (2.0 * t[:, 1] - 0.5 + grid.cell_y[rows]) * stride
        half_w = 0.5 * np.square(2.0 * t[:, 2]) * grid.anchor_wh[rows, anchors, 0]
        half_h = 0.5 * np.square(2.0 * t[:, 3]) * grid.anchor_wh[rows, anchors, 1]
        boxes = np.stack([center_x - half_w, center_y - half_h, center_x + half_w, center_y + half_h], axis=1)
        return (
            boxes.astype(np.float32),
            scores[rows, anchors].astype(np.float32),
            best_class[rows].astype(np.int32),
        )


def _read_class_names(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        raise ModelNotFoundError(f"class names file not found: {path}")
    names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    while names and not names[-1]:
        names = names[:-1]
    if not names or not all(names):
        raise ModelFormatError(f"{path} must list one non-empty class name per line")
    return names


def load_yolo_fastest(
    *,
    weights: Path,
    sha256: str | None,
    names: Path | None = None,
    car_classes: Sequence[str] = ("car",),
    score_threshold: float = 0.3,
    nms_threshold: float = 0.45,
    input_size: int = 352,
    max_detections: int = 100,
) -> YoloFastestV2Detector:
    """Load, verify and probe Yolo-FastestV2 once; returns the detector to pass to the pipeline.

    Args:
        weights: the ONNX file.
        sha256: its expected hex digest (`YOLO_FASTESTV2_SHA256`); a mismatch raises `ModelIntegrityError`
            because the decoding is only known to be right for that export. `None` skips the check, for
            experiments only.
        names: class names, one per line; defaults to `coco.names` beside the weights.
        car_classes: class names to keep, e.g. `("car", "truck", "bus")`; each must be in `names`.
        score_threshold: minimum objectness x class probability.
        nms_threshold: IoU above which a less confident box of the same class is dropped.
        input_size: the network's square input; this export accepts 352 only, checked by a probe forward.
        max_detections: most boxes returned per image.

    Raises:
        ModelNotFoundError, ModelIntegrityError, ModelFormatError; ValueError for bad options.
    """
    car_classes = tuple(car_classes)
    if not car_classes:
        raise ValueError("car_classes must name at least one class")
    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score_threshold must lie in [0, 1], got {score_threshold}")
    if not 0.0 <= nms_threshold <= 1.0:
        raise ValueError(f"nms_threshold must lie in [0, 1], got {nms_threshold}")
    if input_size <= 0 or input_size % max(_STRIDES):
        raise ValueError(f"input_size must be a positive multiple of {max(_STRIDES)}, got {input_size}")
    if max_detections < 1:
        raise ValueError(f"max_detections must be >= 1, got {max_detections}")
    if sha256 is not None and not _SHA256_PATTERN.fullmatch(sha256):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")

    weights = Path(weights)
    if not weights.is_file():
        raise ModelNotFoundError(f"Yolo-FastestV2 weights not found: {weights}")
    # Hash the very bytes we hand to OpenCV, so the file cannot change between the check and the load.
    data = weights.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if sha256 is not None and actual != sha256.lower():
        raise ModelIntegrityError(f"sha256 of {weights} is {actual}, expected {sha256.lower()}")

    class_names = _read_class_names(names if names is not None else weights.with_name("coco.names"))
    unknown = [name for name in car_classes if name not in class_names]
    if unknown:
        raise ValueError(f"car_classes not in the model's class names: {unknown}")

    import cv2  # Heavy: only when a model is actually loaded.

    try:
        net = cv2.dnn.readNetFromONNX(np.frombuffer(data, dtype=np.uint8))
    except cv2.error as error:
        raise ModelFormatError(f"OpenCV cannot read {weights} as ONNX: {error}") from error

    detector = YoloFastestV2Detector(
        net=net,
        blob_from_image=cv2.dnn.blobFromImage,
        sha256=actual,
        class_names=class_names,
        car_classes=car_classes,
        score_threshold=score_threshold,
        nms_threshold=nms_threshold,
        input_size=input_size,
        max_detections=max_detections,
    )
    _probe(detector, net=net, cv2_error=cv2.error, weights=weights)
    return detector


def _probe(detector: YoloFastestV2Detector, *, net: Any, cv2_error: type[Exception], weights: Path) -> None:
    """One forward on a blank input: proves the layout we decode before the first image, and warms up."""
    size = detector.input_size
    try:
        net.setInput(np.zeros((1, 3, size, size), dtype=np.float32))
        output = np.asarray(net.forward())
    except cv2_error as error:
        raise ModelFormatError(f"{weights} does not run at input {size}x{size}: {error}") from error
    expected = (_Grid.build(size).rows, _HEAD_COLUMNS + len(detector.class_names))
    if output.size != expected[0] * expected[1] or output.shape[-1] != expected[1]:
        raise ModelFormatError(
            f"{weights} outputs {output.shape}, expected {expected} "
            f"(2 scales x 3 anchors, {len(detector.class_names)} classes)"
        )
