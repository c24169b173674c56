"""The input contract every detector and proposer checks (numpy only, no framework import)."""

from __future__ import annotations

from typing import Any

import numpy as np

from carspot.detector.errors import InvalidImageError


def check_image(image: Any) -> None:
    """Every detector's input contract: a non-empty HxWx3 uint8 RGB array (one message for all of them)."""
    if not isinstance(image, np.ndarray):
        raise InvalidImageError(f"expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InvalidImageError(f"expected an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidImageError(f"the image is empty: {image.shape}")
