"""Labelled images for training and evaluation, the validation splits, and the training-data hash.

Three layouts are read, so users can bring their own makes:

- the Stanford Cars ``labels.csv`` (``path, class_id, class_name, make, ...``): ``class_id`` becomes the sample's
  *group* (its car model), which the by-model split keeps together;
- any CSV with at least ``path, make`` columns (paths relative to the CSV); an optional ``source`` column names
  where each photo came from (reported apart), an optional ``orig_path`` groups the re-encoded copies of one
  original photo (Roboflow's ``NAME_jpg.rf.HASH.jpg``) so that a split never puts one photo on both sides;
- a folder per make, ``DIR/<make>/*.jpg`` (jpg, jpeg, png, webp, bmp).

Why split by model: a make's unseen models are what social media shows, and a by-image split puts sibling photos
of the same model on both sides, which flatters the score. Both are offered so the difference can be reported.

Several datasets train one model (`load_datasets`): one make vocabulary across them, makes with too few photos
left out (and said so), and each dataset split on its own (`split_datasets`), so the validation of each measures
what it can: unseen car models where models are known (Stanford Cars), unseen photos elsewhere (cars-web).
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

import numpy as np
from PIL import Image

from carspot.classifier.errors import DatasetError

__all__ = [
    "IMAGE_SUFFIXES",
    "MIN_PHOTOS_PER_MAKE",
    "Datasets",
    "Sample",
    "Split",
    "dataset_sha256",
    "load_datasets",
    "load_image",
    "load_samples",
    "split_by_image",
    "split_by_model",
    "split_datasets",
]

T = TypeVar("T")

IMAGE_SUFFIXES: Final = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
MIN_PHOTOS_PER_MAKE: Final = 20
"""Fewer photos than this (over all datasets) and a make is left out of the vocabulary: with a 20 % validation
hold-out it would train on a dozen photos, and its scores would be noise (Stanford's rarest make, Maybach, has 29)."""
_ROBOFLOW_COPY = re.compile(r"_(jpe?g|png|webp|bmp)\.rf\.[0-9a-f]+\.\w+$", re.IGNORECASE)


@dataclass(frozen=True)
class Sample:
    """One labelled image; ``group`` is its car model when known (Stanford Cars ``class_id``), or the original
    photo its file is a copy of; ``source`` is the dataset (and the CSV's ``source`` column, after a slash)."""

    path: Path
    make: str
    group: str | None = None
    source: str = ""

    @property
    def dataset(self) -> str:
        return self.source.split("/", 1)[0]


@dataclass(frozen=True)
class Split:
    """Indices into a sample list; ``kind`` is ``"by-model"`` or ``"by-image"``."""

    kind: str
    train: tuple[int, ...]
    val: tuple[int, ...]


def load_samples(source: Path | str) -> list[Sample]:
    """Samples from a CSV (``path, make`` [, ``class_id``]) or a folder-per-make directory, in a stable order."""
    source = Path(source)
    if source.is_dir():
        csv_in_dir = source / "labels.csv"
        samples = _from_csv(csv_in_dir) if csv_in_dir.is_file() else _from_folders(source)
    elif source.is_file():
        samples = _from_csv(source)
    else:
        raise DatasetError(f"{source}: no such file or directory")
    if not samples:
        raise DatasetError(f"{source}: no labelled images")
    return samples


def _dataset_name(path: Path) -> str:
    """The folder that names a dataset: ``.../stanford-cars/labels.csv`` -> ``stanford-cars``."""
    return path.parent.name if path.name == "labels.csv" else path.stem


def _photo_group(make: str, orig_path: str) -> str:
    return f"{make}:{_ROBOFLOW_COPY.sub('', orig_path.rsplit('/', 1)[-1])}"


def _from_csv(path: Path) -> list[Sample]:
    root = path.parent
    dataset = _dataset_name(path)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = set(reader.fieldnames or ())
        if not {"path", "make"} <= fields:
            raise DatasetError(f"{path}: a CSV needs 'path' and 'make' columns, found {sorted(fields)}")
        samples = []
        for line, row in enumerate(reader, start=2):
            rel, make = (row.get("path") or "").strip(), (row.get("make") or "").strip()
            if not rel or not make:
                raise DatasetError(f"{path}:{line}: empty path or make")
            image = root / rel
            if not image.is_file():
                raise DatasetError(f"{path}:{line}: {image} does not exist")
            group = (row.get("class_id") or "").strip() or None
            orig = (row.get("orig_path") or "").strip()
            if group is None and orig:
                group = _photo_group(make, orig)
            origin = (row.get("source") or "").strip()
            samples.append(Sample(image, make, group, f"{dataset}/{origin}" if origin else dataset))
    return samples


def _from_folders(root: Path) -> list[Sample]:
    samples = []
    for make_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for image in sorted(make_dir.iterdir()):
            if image.suffix.lower() in IMAGE_SUFFIXES and image.is_file():
                samples.append(Sample(image, make_dir.name, source=root.name))
    return samples


@dataclass(frozen=True)
class Datasets:
    """Samples of one or more datasets over one make vocabulary."""

    samples: tuple[Sample, ...]
    labels: tuple[str, ...]
    """The vocabulary: every make with at least the minimum photos, sorted."""
    left_out: dict[str, int]
    """Makes dropped for too few photos, with their counts."""


def load_datasets(sources: Sequence[Path | str], *, min_photos: int = MIN_PHOTOS_PER_MAKE) -> Datasets:
    """Samples of every source (as `load_samples`) over one vocabulary: a make's photos from every dataset count
    together; a make with fewer than ``min_photos`` is left out (listed in ``left_out``)."""
    if not sources:
        raise DatasetError("no training data given")
    samples = [s for source in sources for s in load_samples(source)]
    counts: dict[str, int] = defaultdict(int)
    for s in samples:
        counts[s.make] += 1
    left_out = {m: n for m, n in sorted(counts.items()) if n < min_photos}
    kept = tuple(s for s in samples if s.make not in left_out)
    labels = tuple(sorted({s.make for s in kept}))
    if len(labels) < 2:
        raise DatasetError(f"training needs at least two makes with {min_photos} photos or more")
    return Datasets(kept, labels, left_out)


def split_datasets(samples: Sequence[Sample], *, val_fraction: float = 0.2, seed: int = 0) -> dict[str, Split]:
    """Each dataset split on its own: by model where every sample has a group (car model or original photo),
    by image otherwise. Indices are into ``samples``; keys are dataset names, in order of first appearance."""
    order: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        order.setdefault(s.dataset, []).append(i)
    out = {}
    for name, idx in order.items():
        part = [samples[i] for i in idx]
        if all(s.group is not None for s in part):
            sp = split_by_model(part, val_fraction=val_fraction, seed=seed)
        else:
            sp = split_by_image(part, val_fraction=val_fraction, seed=seed)
        modelled = any(s.group and ":" not in s.group for s in part)
        kind = sp.kind if sp.kind == "by-image" or modelled else "by-photo"
        out[name] = Split(kind, tuple(idx[i] for i in sp.train), tuple(idx[i] for i in sp.val))
    return out


def load_image(path: Path) -> np.ndarray:
    """An image file as HxWx3 RGB uint8."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read the image: {exc}") from exc


def _by_make(samples: Sequence[Sample], indices: Iterable[int]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for i in indices:
        out[samples[i].make].append(i)
    return out


def _holdout(items: list[T], fraction: float, rng: np.random.Generator) -> tuple[list[T], list[T]]:
    """(train, val) after a shuffle: about ``fraction`` to validation, at least one item on each side when
    there are two or more, everything in training when there is one."""
    order = list(items)
    rng.shuffle(order)
    if len(order) < 2:
        return order, []
    n_val = min(max(round(fraction * len(order)), 1), len(order) - 1)
    return order[n_val:], order[:n_val]


def split_by_model(samples: Sequence[Sample], *, val_fraction: float = 0.2, seed: int = 0) -> Split:
    """Whole car models (groups) go to validation, about ``val_fraction`` of each make's models.

    A make with a single model stays entirely in training (validating it would mean never training on it).
    Samples without a group are split by image within their make. Deterministic for a given seed.
    """
    rng = np.random.default_rng(seed)
    train: list[int] = []
    val: list[int] = []
    for _make, idx in sorted(_by_make(samples, range(len(samples))).items()):
        groups: dict[str, list[int]] = defaultdict(list)
        loose = []
        for i in idx:
            g = samples[i].group
            if g is None:
                loose.append(i)
            else:
                groups[g].append(i)
        train_groups, val_groups = _holdout(sorted(groups), val_fraction, rng)
        train.extend(i for g in train_groups for i in groups[g])
        val.extend(i for g in val_groups for i in groups[g])
        loose_train, loose_val = _holdout(loose, val_fraction, rng)
        train.extend(loose_train)
        val.extend(loose_val)
    return Split("by-model", tuple(sorted(train)), tuple(sorted(val)))


def split_by_image(samples: Sequence[Sample], *, val_fraction: float = 0.2, seed: int = 0) -> Split:
    """About ``val_fraction`` of each make's images to validation, regardless of model."""
    rng = np.random.default_rng(seed)
    train: list[int] = []
    val: list[int] = []
    for _make, idx in sorted(_by_make(samples, range(len(samples))).items()):
        t, v = _holdout(idx, val_fraction, rng)
        train.extend(t)
        val.extend(v)
    return Split("by-image", tuple(sorted(train)), tuple(sorted(val)))


def dataset_sha256(samples: Iterable[Sample]) -> str:
    """A hash of what the model learned from: each image's bytes and its label, in a path-independent order."""
    rows = []
    for s in samples:
        rows.append(f"{hashlib.sha256(s.path.read_bytes()).hexdigest()}\t{s.make}\t{s.group or ''}")
    digest = hashlib.sha256()
    for row in sorted(rows):
        digest.update(row.encode() + b"\n")
    return digest.hexdigest()
