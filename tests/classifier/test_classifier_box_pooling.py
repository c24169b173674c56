"""`box_means`: a box's features are the mean of the feature-map cells whose centres it holds."""

from __future__ import annotations

import numpy as np
import pytest

from carspot.classifier.regions import box_means

# a 4 x 4 map over a 400 x 200 image: each cell is 100 px wide and 50 px tall; cell (r, c) holds [r, c, 10r + c]
ROWS, COLS = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
MAP = np.stack([ROWS, COLS, 10 * ROWS + COLS], axis=-1).astype(np.float32)
SIZE = (400, 200)


def test_a_box_over_whole_cells_is_their_mean() -> None:
    boxes = np.array([[0, 0, 200, 100], [200, 100, 400, 200], [0, 0, 400, 200]], np.float32)
    means = box_means(MAP, boxes, image_size=SIZE)
    np.testing.assert_allclose(means[0], MAP[:2, :2].reshape(-1, 3).mean(0))
    np.testing.assert_allclose(means[1], MAP[2:, 2:].reshape(-1, 3).mean(0))
    np.testing.assert_allclose(means[2], MAP.reshape(-1, 3).mean(0), rtol=1e-6)


def test_a_box_smaller_than_a_cell_takes_the_cell_under_its_centre() -> None:
    means = box_means(MAP, np.array([[310, 160, 330, 170]], np.float32), image_size=SIZE)
    np.testing.assert_allclose(means[0], MAP[3, 3])


def test_a_box_holding_cell_centres_takes_only_those() -> None:
    # x 40..160 holds the centres of columns 0 (50) and 1 (150); y 20..30 holds none: the centre row (0)
    means = box_means(MAP, np.array([[40, 20, 160, 30]], np.float32), image_size=SIZE)
    np.testing.assert_allclose(means[0], MAP[0, :2].mean(0))


def test_no_boxes_and_a_wrong_map() -> None:
    assert box_means(MAP, np.zeros((0, 4), np.float32), image_size=SIZE).shape == (0, 3)
    with pytest.raises(ValueError):
        box_means(MAP[0], np.zeros((1, 4), np.float32), image_size=SIZE)
