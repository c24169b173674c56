"""The thumbnail the worker keeps of every image it analyses, for the dashboards to show.

Made from the decoded RGB array the analysis saw (no second decode), longest side at most
:data:`THUMBNAIL_MAX_SIDE` pixels, JPEG at a quality lowered step by step until it fits in
:data:`THUMBNAIL_MAX_BYTES` (a busy 320-pixel picture is about 15-25 KB at quality 80). Region boxes are stored in
pixels of the analysed image, so a page draws them over the thumbnail by scaling, never by re-detecting.
"""

from __future__ import annotations

import io
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image

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
    picture = Image.fromarray(image, mode="RGB")
    picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    for quality in _QUALITIES:
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=quality, optimize=True, progressive=True)
        if buffer.tell() <= max_bytes:
            return ThumbnailRecord(jpeg=buffer.getvalue(), width=picture.width, height=picture.height)
    raise ThumbnailTooLarge(f"{picture.width}x{picture.height} thumbnail over {max_bytes} bytes at quality {quality}")
