"""The composite scene set: validation-split cars pasted into car-free real scenes, with known labels and boxes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from carspot.analysis.scenes import (
    CAR_FREE_SCENES,
    LABEL_COLUMNS,
    SceneSet,
    buckets_for,
    make_scenes,
    negative_views,
    validation_cars,
)
from carspot.classifier.data import load_samples, split_by_model

COUNT = 12
SCENES_WITH_CARS = {"bus.jpg", "dog.jpg", "street-000004.jpg", "times-square.png"}


@pytest.fixture(scope="module")
def stanford(shared_dir: Path) -> Path:
    return shared_dir / "data" / "stanford-cars" / "labels.csv"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, stanford: Path, scenes_dir: Path) -> SceneSet:
    return make_scenes(stanford=stanford, scenes_dir=scenes_dir, out_dir=tmp_path_factory.mktemp("s0"), count=COUNT)


def rows(csv_path: Path) -> list[dict[str, str]]:
    with csv_path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_scenes(
    built: SceneSet, tmp_path: Path, stanford: Path, scenes_dir: Path
) -> None:
    again = make_scenes(stanford=stanford, scenes_dir=scenes_dir, out_dir=tmp_path / "again", count=COUNT)
    other = make_scenes(stanford=stanford, scenes_dir=scenes_dir, out_dir=tmp_path / "other", count=COUNT, seed=1)
    first = tree(built.out_dir)
    assert len(first) == 2 + COUNT + built.negatives
    assert tree(again.out_dir) == first
    assert again.per_bucket == built.per_bucket and again.per_make == built.per_make
    assert other.labels_csv.read_bytes() != built.labels_csv.read_bytes()


def test_an_existing_set_is_not_overwritten_unless_asked(built: SceneSet, stanford: Path, scenes_dir: Path) -> None:
    with pytest.raises(FileExistsError):
        make_scenes(stanford=stanford, scenes_dir=scenes_dir, out_dir=built.out_dir, count=COUNT)


def test_only_validation_cars_of_unseen_models_are_used(built: SceneSet, stanford: Path) -> None:
    samples = load_samples(stanford)
    split = split_by_model(samples, val_fraction=0.2, seed=0)
    train_models = {samples[i].group for i in split.train}
    val_models = {samples[i].group for i in split.val}
    assert val_models and not (train_models & val_models)

    cars = validation_cars(stanford)
    val_paths = {samples[i].path for i in split.val}
    assert all(s.path in val_paths and s.group in val_models for photos in cars.values() for s in photos)
    val_makes = {samples[i].make for i in split.val}
    assert set(cars) == val_makes
    assert {r["make"] for r in rows(built.labels_csv)} <= val_makes


def test_makes_and_buckets_are_balanced(built: SceneSet) -> None:
    assert built.count == COUNT
    assert list(built.per_bucket) == ["5-10%", "10-20%", "20-40%", "40-80%"]
    assert set(built.per_bucket.values()) == {COUNT // 4}
    assert max(built.per_make.values()) == 1  # fewer scenes than validation makes: all different
    assert sum(built.per_n_cars.values()) == COUNT and set(built.per_n_cars) <= {1, 2, 3}


def test_boxes_lie_inside_the_image_and_match_the_bucket(built: SceneSet) -> None:
    buckets = {b.name: b for b in buckets_for(0.05, 0.8)}
    table = rows(built.labels_csv)
    assert tuple(table[0]) == LABEL_COLUMNS
    for row in table:
        with Image.open(built.out_dir / row["path"]) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            width, height = im.size
        boxes = json.loads(row["boxes"])
        assert len(boxes) == int(row["n_cars"]) in (1, 2, 3)
        areas = []
        for x1, y1, x2, y2 in boxes:
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height, (row["path"], boxes)
            areas.append((x2 - x1) * (y2 - y1))
        assert areas[0] == max(areas)
        fraction = areas[0] / (width * height)
        assert fraction == pytest.approx(float(row["car_fraction"]), abs=1e-6)
        bucket = buckets[row["bucket"]]
        assert bucket.lo <= fraction <= bucket.hi, row


def test_labels_are_readable_by_the_classifier_data_loader(built: SceneSet) -> None:
    samples = load_samples(built.labels_csv)
    table = rows(built.labels_csv)
    assert [s.make for s in samples] == [r["make"] for r in table]
    assert all(s.path.is_file() and s.path.parent == built.out_dir / "images" for s in samples)


def test_negatives_are_the_car_free_scenes_with_nothing_pasted(built: SceneSet, scenes_dir: Path) -> None:
    assert not SCENES_WITH_CARS & set(CAR_FREE_SCENES)
    table = rows(built.negatives_csv)
    assert table and all(list(r) == ["path"] for r in table)
    views = negative_views([scenes_dir / name for name in CAR_FREE_SCENES], seed=0)
    assert [r["path"] for r in table] == [f"negatives/{v.name}.jpg" for v in views]
    assert {v.scene.name for v in views} == set(CAR_FREE_SCENES)
    for row, view in zip(table, views, strict=True):
        with Image.open(view.scene) as src:
            expected = src.convert("RGB").crop(view.box)
        if view.flip:
            expected = expected.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        with Image.open(built.out_dir / row["path"]) as im:
            got = im.convert("RGB")
        assert got.size == expected.size
        # at 1/8 scale JPEG noise averages out (99th percentile <= 3 levels on these scenes), while a car pasted
        # into kite.jpg lifts it to 10 levels when it fills 1 % of the frame and to 94 at 4 %
        diff = np.abs(np.asarray(got.reduce(8), np.int16) - np.asarray(expected.reduce(8), np.int16)).mean(axis=2)
        assert diff.mean() < 2.0 and np.percentile(diff, 99) < 8.0, (row, diff.mean(), np.percentile(diff, 99))


def test_buckets_double_from_the_smallest_fraction() -> None:
    assert [(b.lo, b.hi) for b in buckets_for(0.05, 0.8)] == [(0.05, 0.1), (0.1, 0.2), (0.2, 0.4), (0.4, 0.8)]
    assert [(b.lo, b.hi) for b in buckets_for(0.1, 0.45)] == [(0.1, 0.2), (0.2, 0.45)]
    with pytest.raises(ValueError):
        buckets_for(0.5, 0.2)
