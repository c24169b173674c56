"""The thumbnail the worker keeps of every image it analyses, for the dashboards to show.

Made from the decoded RGB array the analysis saw (no second decode), longest side at most
:data:`THUMBNAIL_MAX_SIDE` pixels, JPEG at a quality lowered step by step until it fits in
:data:`THUMBNAIL_MAX_BYTES` (a busy 320-pixel picture is about 15-25 KB at quality 80). Region boxes are stored in
pixels of the analysed image, so a page draws them over the thumbnail by scaling, never by re-detecting.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from carspot.store.records import ThumbnailRecord

THUMBNAIL_MAX_SIDE: Final = 320
"""Longest side of a thumbnail, in pixels."""
THUMBNAIL_MAX_BYTES: Final = 32 << 10
"""Largest thumbnail kept, in bytes (the store refuses more than twice this)."""
_QUALITIES: Final = (80, 70, 60, 50, 40, 30)


class ThumbnailTooLarge(ValueError):
    """Even at the lowest quality the JPEG exceeds the byte cap (the analysis is stored without it)."""


def make_thumbnail(
    image: npt.NDArray[np.uint8], *, max_side: int = THUMBNAIL_MAX_SIDE, max_bytes: int = THUMBNAIL_MAX_BYTES
) -> ThumbnailRecord:
    """A JPEG of ``image`` (H x W x 3 RGB, uint8) scaled to fit ``max_side``, at most ``max_bytes`` long."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 RGB array, got shape {image.shape} of {image.dtype}")
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    import cv2

    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # OpenCV, not PIL: area averaging and libjpeg-turbo take 2-3 ms where PIL's Lanczos and encoder took 5-12 ms
    # of every image's ~65 ms in the worker (measured on this machine, bench/pipeline.py's stage times).
    small = image if size == (width, height) else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
    for quality in _QUALITIES:
        params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_OPTIMIZE, 1, cv2.IMWRITE_JPEG_PROGRESSIVE, 1]
        ok, encoded = cv2.imencode(".jpg", bgr, params)
        if ok and len(encoded) <= max_bytes:
            return ThumbnailRecord(jpeg=encoded.tobytes(), width=size[0], height=size[1])
    raise ThumbnailTooLarge(f"{size[0]}x{size[1]} thumbnail over {max_bytes} bytes at quality {quality}")
