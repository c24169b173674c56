"""Several datasets train one model: one make vocabulary, rare makes left out and said so, each dataset split on
its own so that its validation measures what it can (unseen car models, or unseen photos)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from carspot.classifier.data import load_datasets, load_samples, split_datasets


def _write_csv(folder: Path, rows: list[dict[str, str]], images: list[Path]) -> Path:
    (folder / "images").mkdir(parents=True)
    for row, image in zip(rows, images, strict=True):
        shutil.copy(image, folder / row["path"])
    path = folder / "labels.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def photos(shared_dir: Path) -> list[Path]:
    return sorted((shared_dir / "data" / "stanford-cars" / "images").glob("000*.jpg"))[:40]


@pytest.fixture
def two_datasets(tmp_path: Path, photos: list[Path]) -> tuple[Path, Path]:
    """A Stanford-like set (models known) and a web-like set (sources, Roboflow copies of one photo)."""
    stanford = [{"path": f"images/s{i}.jpg", "class_id": str(i % 4), "make": ("Audi", "BMW")[i % 2]} for i in range(16)]
    web = [
        {
            "path": f"images/w{i}.jpg",
            "make": ("Audi", "Kia", "Kia", "Lexus")[i % 4],
            "source": ("roboflow", "scraped")[i % 2],
            "orig_path": f"train/photo{i // 6}_jpg.rf.{i:032x}.jpg",
        }
        for i in range(24)
    ]
    return (
        _write_csv(tmp_path / "stanford-like", stanford, photos[:16]),
        _write_csv(tmp_path / "web-like", web, photos[16:40]),
    )


def test_makes_of_every_dataset_form_one_vocabulary(two_datasets: tuple[Path, Path]) -> None:
    data = load_datasets(list(two_datasets), min_photos=2)
    assert data.labels == ("Audi", "BMW", "Kia", "Lexus")
    assert data.left_out == {}
    assert {s.dataset for s in data.samples} == {"stanford-like", "web-like"}
    assert {s.source for s in data.samples if s.dataset == "web-like"} == {"web-like/roboflow", "web-like/scraped"}


def test_a_make_with_too_few_photos_is_left_out_and_said_so(two_datasets: tuple[Path, Path]) -> None:
    data = load_datasets(list(two_datasets), min_photos=9)  # Audi 8 + 6, Kia 12, BMW 8, Lexus 6
    assert data.labels == ("Audi", "Kia")
    assert data.left_out == {"BMW": 8, "Lexus": 6}
    assert {s.make for s in data.samples} == {"Audi", "Kia"}


def test_a_single_remaining_make_cannot_train(two_datasets: tuple[Path, Path]) -> None:
    from carspot.classifier.errors import DatasetError

    with pytest.raises(DatasetError, match="at least two makes"):
        load_datasets(list(two_datasets), min_photos=13)


def test_copies_of_one_original_photo_are_one_group(two_datasets: tuple[Path, Path]) -> None:
    web = load_samples(two_datasets[1])
    groups = {s.group for s in web}
    assert all(g is not None and g.split(":", 1)[1].startswith("photo") for g in groups)
    by_group: dict[str | None, set[str]] = {}
    for s in web:
        by_group.setdefault(s.group, set()).add(s.path.name)
    assert len(by_group) < len(web)  # some original photos have several copies (w1, w2 and w5: Kia's photo0)
    assert by_group["Kia:photo0"] == {"w1.jpg", "w2.jpg", "w5.jpg"}


def test_each_dataset_is_split_on_its_own_and_no_group_straddles_a_split(two_datasets: tuple[Path, Path]) -> None:
    data = load_datasets(list(two_datasets), min_photos=2)
    splits = split_datasets(data.samples, val_fraction=0.25, seed=0)
    assert {name: sp.kind for name, sp in splits.items()} == {"stanford-like": "by-model", "web-like": "by-photo"}
    for name, sp in splits.items():
        assert sp.val, name
        assert all(data.samples[i].dataset == name for i in (*sp.train, *sp.val))
        train_groups = {data.samples[i].group for i in sp.train}
        assert not train_groups & {data.samples[i].group for i in sp.val}
    every = sorted(i for sp in splits.values() for i in (*sp.train, *sp.val))
    assert every == list(range(len(data.samples)))
