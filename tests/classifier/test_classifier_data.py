"""Datasets and splits: by-model keeps every car model on one side, stratified by make, deterministic."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from carspot.classifier.data import Sample, load_samples, split_by_image, split_by_model
from carspot.classifier.errors import DatasetError


def _samples() -> list[Sample]:
    out = []
    for make, models in {"Audi": 5, "BMW": 4, "Maybach": 1}.items():
        for m in range(models):
            for k in range(6):
                out.append(Sample(Path(f"/x/{make}{m}_{k}.jpg"), make, f"{make}-{m}"))
    return out


def test_by_model_split_never_shares_a_model_and_keeps_single_model_makes_in_training() -> None:
    samples = _samples()
    split = split_by_model(samples, val_fraction=0.2, seed=0)
    train_groups = {samples[i].group for i in split.train}
    val_groups = {samples[i].group for i in split.val}
    assert not train_groups & val_groups
    assert sorted(split.train + split.val) == list(range(len(samples)))
    val_makes = Counter(samples[i].make for i in split.val)
    assert val_makes == {"Audi": 6, "BMW": 6}  # one model each (20 % of 5 and of 4, at least one)
    assert split == split_by_model(samples, val_fraction=0.2, seed=0)


def test_by_image_split_is_stratified() -> None:
    samples = _samples()
    split = split_by_image(samples, val_fraction=0.2, seed=1)
    assert Counter(samples[i].make for i in split.val) == {"Audi": 6, "BMW": 5, "Maybach": 1}


def test_csv_loader_needs_path_and_make_and_existing_files(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "ok.csv").write_text("path,make,extra\na.jpg,Audi,1\n")
    assert load_samples(tmp_path / "ok.csv") == [Sample(tmp_path / "a.jpg", "Audi", None, "ok")]
    (tmp_path / "bad.csv").write_text("file,brand\na.jpg,Audi\n")
    with pytest.raises(DatasetError, match="'path' and 'make'"):
        load_samples(tmp_path / "bad.csv")
    (tmp_path / "missing.csv").write_text("path,make\nb.jpg,Audi\n")
    with pytest.raises(DatasetError, match="does not exist"):
        load_samples(tmp_path / "missing.csv")
