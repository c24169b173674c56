"""The one type that crosses the detector boundary: validated, immutable boxes in original-image pixels.

Detectors return `Detections`, never raw network tensors, so the classifier and the store depend on this
shape only, whichever model produced it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = ["CarDetector", "Detections"]


def _readonly(array: np.ndarray) -> np.ndarray:
    """A read-only view, so a frozen `Detections` cannot be changed through its arrays (the caller's array
    keeps its own flags)."""
    view = array.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True, eq=False, slots=True)
class Detections:
    """N boxes found in one image.

    Attributes:
        xyxy: (N, 4) float32, `x1, y1, x2, y2` in pixels of the original image, `x1 <= x2`, `y1 <= y2`.
        confidence: (N,) float32 in [0, 1].
        class_id: (N,) int32, the model's class index (COCO: 2 is 'car').
        labels: N class names, so consumers need not know the model's class list.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        xyxy, confidence, class_id = self.xyxy, self.confidence, self.class_id
        for name, value in (("xyxy", xyxy), ("confidence", confidence), ("class_id", class_id)):
            if not isinstance(value, np.ndarray):
                raise TypeError(f"Detections.{name} must be a numpy array, got {type(value).__name__}")
        if xyxy.dtype != np.float32 or xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ValueError(f"Detections.xyxy must be (N, 4) float32, got {xyxy.shape} {xyxy.dtype}")
        n = xyxy.shape[0]
        if confidence.dtype != np.float32 or confidence.shape != (n,):
            raise ValueError(f"Detections.confidence must be ({n},) float32, got {confidence.shape} {confidence.dtype}")
        if class_id.dtype != np.int32 or class_id.shape != (n,):
            raise ValueError(f"Detections.class_id must be ({n},) int32, got {class_id.shape} {class_id.dtype}")
        if not isinstance(self.labels, tuple) or not all(isinstance(label, str) for label in self.labels):
            raise TypeError("Detections.labels must be a tuple of str")
        if len(self.labels) != n:
            raise ValueError(f"Detections.labels must have {n} entries, got {len(self.labels)}")
        if not np.isfinite(xyxy).all():
            raise ValueError("Detections.xyxy must be finite")
        if (xyxy[:, 2] < xyxy[:, 0]).any() or (xyxy[:, 3] < xyxy[:, 1]).any():
            raise ValueError("Detections.xyxy must satisfy x1 <= x2 and y1 <= y2")
        # `not (a <= b)` also rejects NaN.
        if not ((confidence >= 0.0) & (confidence <= 1.0)).all():
            raise ValueError("Detections.confidence must lie in [0, 1]")
        if (class_id < 0).any():
            raise ValueError("Detections.class_id must be non-negative")
        object.__setattr__(self, "xyxy", _readonly(xyxy))
        object.__setattr__(self, "confidence", _readonly(confidence))
        object.__setattr__(self, "class_id", _readonly(class_id))

    @classmethod
    def empty(cls) -> Detections:
        """No boxes: what a detector returns for an image without cars (never None)."""
        return cls(
            xyxy=np.zeros((0, 4), dtype=np.float32),
            confidence=np.zeros((0,), dtype=np.float32),
            class_id=np.zeros((0,), dtype=np.int32),
            labels=(),
        )

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    @property
    def areas(self) -> npt.NDArray[np.float32]:
        """(N,) box areas in square pixels, e.g. to drop regions too small for the brand classifier."""
        widths = self.xyxy[:, 2] - self.xyxy[:, 0]
        heights = self.xyxy[:, 3] - self.xyxy[:, 1]
        return (widths * heights).astype(np.float32)

    def filter(self, mask: npt.ArrayLike) -> Detections:
        """The subset selected by a boolean mask of length N or by an array of integer indices.

        A wrong-length mask raises instead of broadcasting, so a mask built for other detections fails loudly.
        """
        selector = np.asarray(mask)
        if selector.dtype == np.bool_:
            if selector.shape != (len(self),):
                raise ValueError(f"mask must have shape ({len(self)},), got {selector.shape}")
            indices = np.flatnonzero(selector)
        elif selector.size == 0 or np.issubdtype(selector.dtype, np.integer):
            if selector.ndim > 1:
                raise ValueError(f"indices must be one-dimensional, got shape {selector.shape}")
            indices = selector.astype(np.intp).reshape(-1)
        else:
            raise TypeError(f"mask must be boolean or integer, got {selector.dtype}")
        return Detections(
            xyxy=self.xyxy[indices].copy(),
            confidence=self.confidence[indices].copy(),
            class_id=self.class_id[indices].copy(),
            labels=tuple(self.labels[i] for i in indices.tolist()),
        )


@runtime_checkable
class CarDetector(Protocol):
    """What the pipeline needs from any car detector: a name for the record, and image -> Detections.

    Models are loaded once and passed around as this callable, so tests can pass a small fake instead.
    """

    @property
    def name(self) -> str: ...

    def __call__(self, image_rgb: np.ndarray) -> Detections: ...
