"""Labelled images for training and evaluation, the validation splits, and the training-data hash.

Three layouts are read, so users can bring their own makes:

- the Stanford Cars ``labels.csv`` (``path, class_id, class_name, make, ...``): ``class_id`` becomes the sample's
  *group* (its car model), which the by-model split keeps together;
- any CSV with at least ``path, make`` columns (paths relative to the CSV, other columns ignored);
- a folder per make, ``DIR/<make>/*.jpg`` (jpg, jpeg, png, webp, bmp).

Why split by model: a make's unseen models are what social media shows, and a by-image split puts sibling photos
of the same model on both sides, which flatters the score. Both are offered so the difference can be reported.
"""

from __future__ import annotations

import csv
import hashlib
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
    "Sample",
    "Split",
    "dataset_sha256",
    "load_image",
    "load_samples",
    "split_by_image",
    "split_by_model",
]

T = TypeVar("T")

IMAGE_SUFFIXES: Final = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})


@dataclass(frozen=True)
class Sample:
    """One labelled image; ``group`` is its car model when known (Stanford Cars ``class_id``)."""

    path: Path
    make: str
    group: str | None = None


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


def _from_csv(path: Path) -> list[Sample]:
    root = path.parent
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
            samples.append(Sample(image, make, group))
    return samples


def _from_folders(root: Path) -> list[Sample]:
    samples = []
    for make_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for image in sorted(make_dir.iterdir()):
            if image.suffix.lower() in IMAGE_SUFFIXES and image.is_file():
                samples.append(Sample(image, make_dir.name))
    return samples


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
