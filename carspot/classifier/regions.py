"""Many boxes scored from one whole-image pass: the feature map pooled inside each box (Fast R-CNN's idea).

Verifying every selective-search proposal with its own backbone run (R-CNN, the reference paper) costs one
network pass per box: 32 boxes are 32 passes. The backbone's last 1280-channel map, computed once for the whole
image at a higher resolution, already describes every part of it; averaging the cells inside a box gives
features of the same kind the pooled classifier sees, so the ImageNet head's car probability ranks all boxes at
the cost of one pass. Region search uses that ranking only to choose which few boxes get the exact per-crop
check (`carspot.analysis.modes.region_search_mode`), so a coarse grid costs little accuracy.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["box_means"]


def box_means(
    feature_map: npt.NDArray[np.float32], boxes: npt.NDArray[np.float32], *, image_size: tuple[int, int]
) -> npt.NDArray[np.float32]:
    """Per box, the mean of the map's cells whose centres lie inside it (the centre cell when none do).

    ``feature_map`` is ``H x W x C`` over the whole (squashed) image of ``image_size = (width, height)``;
    ``boxes`` are ``N x 4`` ``x1, y1, x2, y2`` in that image's pixels. O(C) per box via an integral image."""
    if feature_map.ndim != 3:
        raise ValueError(f"feature_map must be H x W x C, got {feature_map.shape}")
    grid_h, grid_w, channels = feature_map.shape
    if len(boxes) == 0:
        return np.zeros((0, channels), dtype=np.float32)
    width, height = image_size
    integral = np.zeros((grid_h + 1, grid_w + 1, channels), dtype=np.float64)
    integral[1:, 1:] = feature_map.astype(np.float64).cumsum(axis=0).cumsum(axis=1)
    gx1 = boxes[:, 0] * grid_w / width - 0.5
    gy1 = boxes[:, 1] * grid_h / height - 0.5
    gx2 = boxes[:, 2] * grid_w / width - 0.5
    gy2 = boxes[:, 3] * grid_h / height - 0.5
    c1, c2 = np.ceil(gx1).astype(int), np.floor(gx2).astype(int)
    r1, r2 = np.ceil(gy1).astype(int), np.floor(gy2).astype(int)
    centre_c = np.clip(np.floor((gx1 + gx2) / 2 + 0.5).astype(int), 0, grid_w - 1)
    centre_r = np.clip(np.floor((gy1 + gy2) / 2 + 0.5).astype(int), 0, grid_h - 1)
    c1, c2 = np.clip(c1, 0, grid_w - 1), np.clip(c2, 0, grid_w - 1)
    r1, r2 = np.clip(r1, 0, grid_h - 1), np.clip(r2, 0, grid_h - 1)
    empty_c, empty_r = c2 < c1, r2 < r1
    c1, c2 = np.where(empty_c, centre_c, c1), np.where(empty_c, centre_c, c2)
    r1, r2 = np.where(empty_r, centre_r, r1), np.where(empty_r, centre_r, r2)
    sums = integral[r2 + 1, c2 + 1] - integral[r1, c2 + 1] - integral[r2 + 1, c1] + integral[r1, c1]
    counts = ((r2 - r1 + 1) * (c2 - c1 + 1)).astype(np.float64)[:, None]
    return (sums / counts).astype(np.float32)
