"""The car-free images always at hand: scikit-image's bundled samples, and ../shared's car-free scenes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from carspot.analysis.car_free import SCIKIT_IMAGE_SAMPLES, car_free_images, images_under
from carspot.analysis.scenes import CAR_FREE_SCENES
from carspot.classifier.errors import DatasetError


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


def test_a_users_own_car_free_images_come_after_the_built_in_ones(scenes_dir: Path, tmp_path: Path) -> None:
    own = tmp_path / "own"
    (own / "b").mkdir(parents=True)
    (own / "b" / "kite.JPG").write_bytes((scenes_dir / "kite.jpg").read_bytes())
    (own / "a.png").write_bytes((scenes_dir / "times-square.png").read_bytes())
    (own / "readme.txt").write_text("skipped: not an image")

    paths = images_under(own)
    images = list(car_free_images(extra=paths))

    assert paths == [own / "a.png", own / "b" / "kite.JPG"]
    assert [name for name, _ in images[-2:]] == ["extra/a.png", "extra/kite.JPG"]
    assert len(images) == len(SCIKIT_IMAGE_SAMPLES) + 2 + 2
    kite = np.asarray(Image.open(scenes_dir / "kite.jpg").convert("RGB"))
    assert np.array_equal(images[-1][1], kite)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, "not a directory"),
        (lambda root: root.mkdir(), "no images"),
        (lambda root: (root.mkdir(), (root / "x.jpg").write_bytes(b"\xff\xd8 truncated")), "cannot read the image"),
    ],
    ids=["missing", "empty", "corrupt"],
)
def test_a_folder_that_gives_no_usable_images_is_refused_up_front(
    tmp_path: Path, make: Callable[[Path], object], message: str
) -> None:
    root = tmp_path / "own"
    make(root)
    with pytest.raises(DatasetError, match=message):
        images_under(root)
