"""The car-free images always at hand: scikit-image's bundled samples, and ../shared's car-free scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from carspot.pipeline.car_free import SCIKIT_IMAGE_SAMPLES, car_free_images
from carspot.pipeline.scenes import CAR_FREE_SCENES


def test_the_scikit_image_samples_and_motorcycles_come_as_rgb_without_the_scenes() -> None:
    images = list(car_free_images())
    assert len(images) == len(SCIKIT_IMAGE_SAMPLES) + 2
    assert images[-1][0] == "scikit-image/motorcycle_right"
    for _name, image in images:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 100


def test_each_car_free_scene_comes_whole_and_as_seeded_crops(scenes_dir: Path) -> None:
    first = list(car_free_images(scenes_dir=scenes_dir, crops_per_scene=2, seed=3))
    scenes = [(name, image) for name, image in first if name.startswith("scenes/")]
    assert len(scenes) == len(CAR_FREE_SCENES) * 3
    assert len({name for name, _ in first}) == len(first)
    kite = np.asarray(Image.open(scenes_dir / "kite.jpg").convert("RGB"))
    assert np.array_equal(dict(scenes)["scenes/kite-0"], kite)
    again = dict(car_free_images(scenes_dir=scenes_dir, crops_per_scene=2, seed=3))
    assert all(np.array_equal(again[name], image) for name, image in scenes)
