"""A labelled composite scene set for comparing the analysis modes (``carspot scenes make``).

Stanford Cars photos are tight crops of one car, which flatters a whole-image classifier: on social media the car
often fills a small part of the frame. This module pastes car photos of the **by-model validation split** (car
models the classifier never trained on) into real car-free scenes at known scales, positions and counts:

- every composite holds 1–3 photos of the **same make**, so its label is that make; the largest car's visible box
  fills a fraction of the frame drawn from one of the *buckets* (by default 5–10 %, 10–20 %, 20–40 %, 40–80 %);
- backgrounds are random crops, flips and rescales of the real scenes without cars (`CAR_FREE_SCENES`, checked by
  eye; ``street-000230.jpg`` shows a road but no car), so no unlabelled car of another make is in the picture;
- each paste has a feathered alpha edge, the frame gets light colour jitter and one or two JPEG passes, so it looks
  like a posted photo rather than a collage of hard rectangles.

Outputs in ``out_dir``::

    images/scene-00000.jpg …     the composites
    labels.csv                   path,make,car_fraction,bucket,n_cars,boxes
    negatives/<scene>-<k>.jpg …  the car-free scenes, whole and as crops/flips
    negatives.csv                path

``path`` is relative to the CSV; ``car_fraction`` is the largest car's visible box area over the frame area;
``boxes`` is a JSON list of ``[x1, y1, x2, y2]`` in pixels (end-exclusive, clipped to the frame), largest first.
``carspot evaluate --data labels.csv`` reads ``path,make`` and ignores the rest.

The output is a pure function of the arguments: the same seed gives the same bytes. The split seed is separate
from the scene seed on purpose: it must be the one the classifier was trained with (``TrainConfig.seed``, 0 by
default), or "validation" photos could be of models the classifier saw.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Final

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from carspot.classifier.data import Sample, load_samples, split_by_model

__all__ = [
    "CAR_FREE_SCENES",
    "LABEL_COLUMNS",
    "Bucket",
    "NegativeView",
    "SceneSet",
    "buckets_for",
    "make_scenes",
    "negative_views",
    "render_negative_view",
    "validation_cars",
]

CAR_FREE_SCENES: Final = ("horses.jpg", "kite.jpg", "person.jpg", "street-000230.jpg")
"""The scenes of ``../shared/data/scenes`` that show no car (checked by eye)."""

LABEL_COLUMNS: Final = ("path", "make", "car_fraction", "bucket", "n_cars", "boxes")

_FRAME_ASPECTS: Final = (0.8, 1.0, 4 / 3, 1.5, 16 / 9)  # width / height of common posted photos
_MAX_UPSCALE: Final = 1.6  # how far a (≤ 320 px) car photo may be enlarged before the frame is made smaller
_MIN_VISIBLE: Final = 0.8  # share of each car's box that stays inside the frame
_MAX_OVERLAP: Final = 0.2  # share of either car's box that another car may cover
_MIN_EXTRA_FRACTION: Final = 0.01  # the smaller cars of a multi-car scene fill at least this much of the frame
_GROUND: Final = 0.55  # a car's bottom edge lies at least this far down the frame (when the car is small enough)
_N_CARS_WEIGHTS: Final = (0.5, 0.3, 0.2)  # 1, 2 or 3 cars


@dataclass(frozen=True)
class Bucket:
    """A range of the largest car's area fraction, ``lo <= f < hi`` (the last bucket includes ``hi``)."""

    lo: float
    hi: float

    @property
    def name(self) -> str:
        return f"{_percent(self.lo)}-{_percent(self.hi)}%"

    def holds(self, fraction: float, *, last: bool = False) -> bool:
        return self.lo <= fraction < self.hi or (last and fraction == self.hi)


@dataclass(frozen=True)
class SceneSet:
    """What `make_scenes` wrote."""

    out_dir: Path
    labels_csv: Path
    negatives_csv: Path
    count: int
    per_bucket: dict[str, int]
    """Composites per bucket name, in bucket order."""
    per_make: dict[str, int]
    per_n_cars: dict[int, int]
    negatives: int


@dataclass(frozen=True)
class NegativeView:
    """One negative: ``scene`` cropped to ``box`` (x1, y1, x2, y2 in the scene's pixels), then mirrored if ``flip``."""

    scene: Path
    box: tuple[int, int, int, int]
    flip: bool
    name: str


def _percent(x: float) -> str:
    return f"{x * 100:g}"


def buckets_for(min_fraction: float, max_fraction: float) -> tuple[Bucket, ...]:
    """Doubling ranges from ``min_fraction`` up to ``max_fraction``: 0.05, 0.8 → 5–10, 10–20, 20–40, 40–80 %."""
    if not 0 < min_fraction < max_fraction <= 1:
        raise ValueError(f"need 0 < min_fraction < max_fraction <= 1, got {min_fraction}, {max_fraction}")
    edges = [min_fraction]
    while edges[-1] * 2 < max_fraction * 0.999:
        edges.append(edges[-1] * 2)
    if len(edges) > 1 and max_fraction / edges[-1] < 1.5:
        edges[-1] = max_fraction  # no sliver of a last bucket
    else:
        edges.append(max_fraction)
    return tuple(Bucket(round(a, 6), round(b, 6)) for a, b in pairwise(edges))


def validation_cars(stanford: Path, *, val_fraction: float = 0.2, split_seed: int = 0) -> dict[str, list[Sample]]:
    """The by-model validation split's photos, per make (makes with at least one photo), in a stable order."""
    samples = load_samples(stanford)
    split = split_by_model(samples, val_fraction=val_fraction, seed=split_seed)
    out: dict[str, list[Sample]] = {}
    for i in split.val:
        out.setdefault(samples[i].make, []).append(samples[i])
    return dict(sorted(out.items()))


def negative_views(scenes: Sequence[Path], *, seed: int = 0, per_scene: int = 3) -> list[NegativeView]:
    """Each scene whole, then ``per_scene`` random crops (50–90 % of the area), some mirrored."""
    rng = np.random.default_rng([seed, 2])
    views = []
    for scene in scenes:
        with Image.open(scene) as im:
            sw, sh = im.size
        views.append(NegativeView(scene, (0, 0, sw, sh), False, f"{scene.stem}-0"))
        for k in range(1, per_scene + 1):
            aspect = float(rng.choice(_FRAME_ASPECTS))
            box = _random_crop(rng, sw, sh, aspect, float(rng.uniform(0.5, 0.9)))
            views.append(NegativeView(scene, box, bool(rng.random() < 0.5), f"{scene.stem}-{k}"))
    return views


def make_scenes(
    *,
    stanford: Path,
    scenes_dir: Path,
    out_dir: Path,
    count: int = 300,
    seed: int = 0,
    val_fraction: float = 0.2,
    min_fraction: float = 0.05,
    max_fraction: float = 0.8,
    split_seed: int = 0,
    negatives_per_scene: int = 3,
    overwrite: bool = False,
) -> SceneSet:
    """Write ``count`` labelled composites and the car-free negatives to ``out_dir``; see the module docstring.

    ``stanford`` is the Stanford Cars ``labels.csv`` (or its folder); ``val_fraction`` and ``split_seed`` must be
    the classifier's training split settings. Makes are used round-robin (balanced as far as the split allows),
    buckets equally often. ``out_dir`` must not hold a scene set unless ``overwrite``.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    buckets = buckets_for(min_fraction, max_fraction)
    backgrounds = [scenes_dir / name for name in CAR_FREE_SCENES]
    missing = [str(p) for p in backgrounds if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"car-free scenes missing: {', '.join(missing)}")
    cars = validation_cars(stanford, val_fraction=val_fraction, split_seed=split_seed)
    cars = {make: photos for make, photos in cars.items() if photos}
    if not cars:
        raise ValueError(f"{stanford}: the by-model validation split is empty")

    out_dir = Path(out_dir)
    labels_csv, negatives_csv = out_dir / "labels.csv", out_dir / "negatives.csv"
    images_dir, negatives_dir = out_dir / "images", out_dir / "negatives"
    if labels_csv.exists() or images_dir.exists() or negatives_dir.exists():
        if not overwrite:
            raise FileExistsError(f"{out_dir} already holds a scene set (pass overwrite=True to replace it)")
        for d in (images_dir, negatives_dir):
            if d.exists():
                shutil.rmtree(d)
    images_dir.mkdir(parents=True)
    negatives_dir.mkdir(parents=True)

    plan = _plan(cars, buckets, count, seed)
    scene_images = [_load_rgb(p) for p in backgrounds]
    rows: list[list[str]] = []
    for i, (make, bucket_index, photos) in enumerate(plan):
        rng = np.random.default_rng([seed, 1, i])
        bucket = buckets[bucket_index]
        image, boxes = _composite(
            rng, scene_images, [_load_rgb(s.path) for s in photos], bucket, last=bucket_index == len(buckets) - 1
        )
        rel = f"images/scene-{i:05d}.jpg"
        _save_jpeg(image, out_dir / rel, rng)
        frac = _box_area(boxes[0]) / (image.width * image.height)
        rows.append([rel, make, f"{frac:.6f}", bucket.name, str(len(boxes)), json.dumps([list(b) for b in boxes])])
    _write_csv(labels_csv, LABEL_COLUMNS, rows)

    neg_rows: list[list[str]] = []
    for view in negative_views(backgrounds, seed=seed, per_scene=negatives_per_scene):
        rel = f"negatives/{view.name}.jpg"
        _save_jpeg(render_negative_view(view), out_dir / rel, np.random.default_rng([seed, 3, len(neg_rows)]))
        neg_rows.append([rel])
    _write_csv(negatives_csv, ("path",), neg_rows)

    per_bucket = Counter(r[3] for r in rows)
    return SceneSet(
        out_dir=out_dir,
        labels_csv=labels_csv,
        negatives_csv=negatives_csv,
        count=len(rows),
        per_bucket={b.name: per_bucket.get(b.name, 0) for b in buckets},
        per_make=dict(sorted(Counter(r[1] for r in rows).items())),
        per_n_cars=dict(sorted(Counter(int(r[4]) for r in rows).items())),
        negatives=len(neg_rows),
    )


# --- planning -------------------------------------------------------------------------------------------------


def _plan(
    cars: dict[str, list[Sample]], buckets: Sequence[Bucket], count: int, seed: int
) -> list[tuple[str, int, list[Sample]]]:
    """(make, bucket index, 1–3 photos of the make) per composite: makes round-robin in a fresh random order each
    round, buckets shuffled in equal shares, each make's photos drawn without repeats until all were used."""
    rng = np.random.default_rng([seed, 0])
    makes = sorted(cars)
    make_order: list[str] = []
    while len(make_order) < count:
        make_order.extend(makes[j] for j in rng.permutation(len(makes)))
    bucket_order = [i % len(buckets) for i in range(count)]
    rng.shuffle(bucket_order)
    queues: dict[str, deque[Sample]] = {m: deque() for m in makes}
    plan = []
    for make, bucket_index in zip(make_order[:count], bucket_order, strict=True):
        pool = cars[make]
        n = min(int(rng.choice(3, p=_N_CARS_WEIGHTS)) + 1, len(pool))
        photos: list[Sample] = []
        while len(photos) < n:
            if not queues[make]:
                queues[make].extend(pool[j] for j in rng.permutation(len(pool)))
            photo = queues[make].popleft()
            if photo not in photos:
                photos.append(photo)
        plan.append((make, bucket_index, photos))
    return plan


# --- rendering ------------------------------------------------------------------------------------------------

Box = tuple[int, int, int, int]


def _load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def _box_area(box: Box) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def _clip(box: Box, width: int, height: int) -> Box:
    return (max(box[0], 0), max(box[1], 0), min(box[2], width), min(box[3], height))


def _intersection(a: Box, b: Box) -> int:
    return _box_area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def _random_crop(rng: np.random.Generator, sw: int, sh: int, aspect: float, area: float) -> Box:
    """A crop of ``aspect`` (w/h) covering about ``area`` of the largest such crop, at a random place."""
    if aspect >= sw / sh:
        cw, ch = float(sw), sw / aspect
    else:
        cw, ch = sh * aspect, float(sh)
    s = math.sqrt(area)
    w, h = max(1, round(cw * s)), max(1, round(ch * s))
    x = int(rng.integers(0, sw - w + 1))
    y = int(rng.integers(0, sh - h + 1))
    return (x, y, x + w, y + h)


def render_negative_view(view: NegativeView) -> Image.Image:
    """The negative's pixels (RGB): the scene cropped to its box, mirrored if asked."""
    image = _load_rgb(view.scene).crop(view.box)
    return ImageOps.mirror(image) if view.flip else image


def _frame_size(rng: np.random.Generator, fraction: float, car: Image.Image) -> tuple[int, int]:
    """A frame in which the largest car, at ``fraction`` of the area, fits whole and is not enlarged much."""
    a = car.width / car.height
    lo, hi = fraction * a * 1.08, a / (fraction * 1.08)  # frame aspects where the car's box fits inside
    fitting = [f for f in _FRAME_ASPECTS if lo <= f <= hi]
    aspect = float(rng.choice(fitting)) if fitting else min(max(float(rng.choice(_FRAME_ASPECTS)), lo), hi)
    # long side: 480–800 px, smaller when the car would otherwise be blown up more than _MAX_UPSCALE
    car_w_over_frame_w = math.sqrt(fraction * a / aspect)
    frame_w_limit = _MAX_UPSCALE * car.width / car_w_over_frame_w
    long_limit = frame_w_limit if aspect >= 1 else frame_w_limit / aspect
    hi_long = max(320.0, min(800.0, long_limit))
    lo_long = min(480.0, hi_long)
    long_side = float(rng.uniform(lo_long, hi_long))
    if aspect >= 1:
        return round(long_side), round(long_side / aspect)
    return round(long_side * aspect), round(long_side)


def _place(
    rng: np.random.Generator, w: int, h: int, width: int, height: int, *, overhang: bool
) -> tuple[int, int] | None:
    """A top-left corner for a ``w``×``h`` box whose bottom edge lies below ``_GROUND`` of the frame's height when
    it can (cars stand on the ground), biased further down; with ``overhang`` the box may leave the frame by up to
    ``1 - _MIN_VISIBLE`` of its size on each axis."""
    slack_x = int(w * (1 - _MIN_VISIBLE)) if overhang else 0
    slack_y = int(h * (1 - _MIN_VISIBLE)) if overhang else 0
    x_lo, x_hi = -slack_x, width - w + slack_x
    y_lo, y_hi = -slack_y // 2, height - h + slack_y
    if x_hi < x_lo or y_hi < y_lo:
        return None
    y_lo = max(y_lo, min(y_hi, math.ceil(_GROUND * height) - h))  # no car floating in the sky
    x = int(rng.integers(x_lo, x_hi + 1))
    y = y_lo + round((y_hi - y_lo) * math.sqrt(float(rng.random())))
    return x, y


def _feather_mask(w: int, h: int) -> Image.Image:
    """Opaque in the middle, fading to transparent over ~4 % of the shorter side, with rounded corners."""
    f = max(2, round(0.04 * min(w, h)))
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).rounded_rectangle((f, f, w - 1 - f, h - 1 - f), radius=2 * f, fill=255)
    return mask.filter(ImageFilter.GaussianBlur(f / 2))


def _jitter_colour(image: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    image = ImageEnhance.Brightness(image).enhance(float(rng.uniform(1 - strength, 1 + strength)))
    image = ImageEnhance.Contrast(image).enhance(float(rng.uniform(1 - strength, 1 + strength)))
    return ImageEnhance.Color(image).enhance(float(rng.uniform(1 - 1.5 * strength, 1 + 1.5 * strength)))


def _composite(
    rng: np.random.Generator, scenes: Sequence[Image.Image], photos: Sequence[Image.Image], bucket: Bucket, last: bool
) -> tuple[Image.Image, list[Box]]:
    """One composite and its cars' clipped boxes, largest first. Retries until the largest car's visible
    fraction lies in ``bucket``; the smaller cars are dropped when they cannot be placed."""
    photos = [ImageOps.mirror(p) if rng.random() < 0.5 else p for p in photos]
    main = photos[0]
    # aim inside the bucket, away from its edges, so rounding to whole pixels cannot leave it
    lo, hi = bucket.lo + 0.02 * (bucket.hi - bucket.lo), bucket.hi - 0.02 * (bucket.hi - bucket.lo)
    for _attempt in range(200):
        target = math.exp(float(rng.uniform(math.log(lo), math.log(hi))))
        width, height = _frame_size(rng, target, main)
        frame_area = width * height
        visible = 1.0 if rng.random() < 0.7 else float(rng.uniform(0.85, 1.0))
        box_area = target * frame_area / visible
        w = round(math.sqrt(box_area * main.width / main.height))
        h = round(w * main.height / main.width)
        corner = _place(rng, w, h, width, height, overhang=visible < 1) or _place(
            rng, w, h, width, height, overhang=False
        )
        if corner is None:
            continue
        full = (corner[0], corner[1], corner[0] + w, corner[1] + h)
        shown = _clip(full, width, height)
        if _box_area(shown) < _MIN_VISIBLE * w * h or not bucket.holds(_box_area(shown) / frame_area, last=last):
            continue
        break
    else:
        raise RuntimeError(f"cannot place a {main.size} car in bucket {bucket.name}")  # pragma: no cover

    placed: list[tuple[Image.Image, Box, Box]] = [(main, full, shown)]
    for photo in photos[1:]:
        for _try in range(40):
            ratio = float(rng.uniform(0.15, 0.9))
            area = ratio * w * h
            if area < _MIN_EXTRA_FRACTION * frame_area:
                continue
            ew = max(8, round(math.sqrt(area * photo.width / photo.height)))
            eh = max(8, round(ew * photo.height / photo.width))
            corner = _place(rng, ew, eh, width, height, overhang=rng.random() < 0.3)
            if corner is None:
                continue
            efull = (corner[0], corner[1], corner[0] + ew, corner[1] + eh)
            eshown = _clip(efull, width, height)
            if _box_area(eshown) < _MIN_VISIBLE * ew * eh or _box_area(eshown) >= 0.95 * _box_area(shown):
                continue
            if any(
                _intersection(eshown, other) > _MAX_OVERLAP * min(_box_area(eshown), _box_area(other))
                for _, _, other in placed
            ):
                continue
            placed.append((photo, efull, eshown))
            break

    scene = scenes[int(rng.integers(len(scenes)))]
    crop = _random_crop(rng, scene.width, scene.height, width / height, float(rng.uniform(0.45, 1.0)))
    canvas = scene.resize((width, height), Image.Resampling.LANCZOS, box=crop)
    if rng.random() < 0.5:
        canvas = ImageOps.mirror(canvas)
    # smaller (farther) cars first, the largest on top
    for photo, full_box, _ in sorted(placed, key=lambda p: _box_area(p[2])):
        fw, fh = full_box[2] - full_box[0], full_box[3] - full_box[1]
        car = _jitter_colour(photo.resize((fw, fh), Image.Resampling.LANCZOS), rng, 0.08)
        canvas.paste(car, (full_box[0], full_box[1]), _feather_mask(fw, fh))
    canvas = _jitter_colour(canvas, rng, 0.1)
    if rng.random() < 0.2:
        canvas = canvas.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 0.8))))
    return canvas, [shown for _, _, shown in placed]


def _save_jpeg(image: Image.Image, path: Path, rng: np.random.Generator) -> None:
    """JPEG at quality 85–95, after an earlier lossy pass half the time (posted photos are re-encoded)."""
    if rng.random() < 0.5:
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=int(rng.integers(70, 96)))
        buf.seek(0)
        with Image.open(buf) as im:
            image = im.convert("RGB")
    image.save(path, "JPEG", quality=int(rng.integers(85, 96)), optimize=False)


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
