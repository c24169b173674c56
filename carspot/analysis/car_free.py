"""Images with no car in them, always at hand: what the car head must refute (`carspot.classifier.car_check`).

Two sources, both offline: the sample images bundled in the scikit-image wheel (a dependency already; only
those read from the wheel itself, none that scikit-image would download), and, when ``../shared`` is there, its
real car-free scenes (`carspot.analysis.scenes.CAR_FREE_SCENES`) whole and as seeded crops and mirror images.
Motorcycles (scikit-image's stereo pair) are in on purpose: a vehicle that is not a car. Users add their own
(``carspot models promote --car-free DIR``: what their feeds show without cars); they come after the built-in
ones, never instead, so a gate with them is never weaker than without.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

import numpy as np

from carspot.analysis.scenes import CAR_FREE_SCENES, negative_views, render_negative_view
from carspot.classifier.data import IMAGE_SUFFIXES, load_image
from carspot.classifier.errors import DatasetError

__all__ = ["SCIKIT_IMAGE_SAMPLES", "car_free_images", "images_under"]

SCIKIT_IMAGE_SAMPLES: Final = (
    "astronaut",
    "camera",
    "coffee",
    "chelsea",
    "rocket",
    "brick",
    "grass",
    "gravel",
    "coins",
    "moon",
    "page",
    "text",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "clock",
    "colorwheel",
    "logo",
    "cell",
    "checkerboard",
)
"""`skimage.data` functions that read an image bundled in the wheel (checked with scikit-image 0.26.0)."""


def _rgb(image: np.ndarray) -> np.ndarray:
    """Grey and RGBA samples as RGB."""
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3], dtype=np.uint8)


def images_under(folder: Path) -> list[Path]:
    """Every image file under ``folder`` (any depth, sorted), each checked to decode, so a bad file is reported
    before a long measurement starts rather than in the middle of it. Raises `DatasetError` (missing folder, no
    images, an unreadable file)."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a directory")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise DatasetError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    for path in paths:
        load_image(path)
    return paths


def car_free_images(
    *, scenes_dir: Path | None = None, crops_per_scene: int = 3, seed: int = 0, extra: Iterable[Path] = ()
) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, RGB uint8 image)`` one at a time: the scikit-image samples and the two motorcycle photos, then,
    when ``scenes_dir`` holds them, each car-free scene whole plus ``crops_per_scene`` crops, then the ``extra``
    image files (a user's own, e.g. from `images_under`), named ``extra/<file name>``."""
    from skimage import data

    for name in SCIKIT_IMAGE_SAMPLES:
        yield f"scikit-image/{name}", _rgb(np.asarray(getattr(data, name)()))
    left, right, _disparity = data.stereo_motorcycle()
    yield "scikit-image/motorcycle_left", _rgb(np.asarray(left))
    yield "scikit-image/motorcycle_right", _rgb(np.asarray(right))
    if scenes_dir is not None:
        scenes = [scenes_dir / name for name in CAR_FREE_SCENES if (scenes_dir / name).is_file()]
        for view in negative_views(scenes, seed=seed, per_scene=crops_per_scene):
            yield f"scenes/{view.name}", np.asarray(render_negative_view(view))
    for path in extra:
        yield f"extra/{path.name}", load_image(path)
