"""Evaluation on a hand-made 6-image set: every number is a hand count (see the table in the test)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from carspot.classifier.data import load_samples
from carspot.classifier.evaluate import evaluate, evaluate_path

# image colour -> (true make, ranked predictions)
CASES = {
    (255, 0, 0): ("Audi", [("Audi", 0.9), ("BMW", 0.05), ("Fiat", 0.05)]),  # top-1 hit, bin 9
    (0, 255, 0): ("Audi", [("BMW", 0.6), ("Audi", 0.3), ("Fiat", 0.1)]),  # top-5 hit only, bin 6
    (0, 0, 255): ("BMW", [("BMW", 0.8), ("Audi", 0.2)]),  # top-1 hit, bin 8
    (255, 255, 0): ("BMW", [("Fiat", 0.5), ("Audi", 0.3), ("Kia", 0.2)]),  # miss, bin 5
    (0, 255, 255): ("Ford", [("Ford", 0.95), ("Fiat", 0.05)]),  # top-1 hit, bin 9
    (255, 0, 255): ("Ford", [("Audi", 0.7), ("Ford", 0.3)]),  # top-5 hit only, bin 7
}


def _predict(image: np.ndarray) -> list[tuple[str, float]]:
    colour = tuple(int(c) for c in image[0, 0])
    return CASES[colour][1]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "by-make"
    for i, (colour, (make, _)) in enumerate(CASES.items()):
        (root / make).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 6), colour).save(root / make / f"{i}.png")
    return root


def test_hand_counted_numbers(folder: Path, tmp_path: Path) -> None:
    png = tmp_path / "confusion.png"
    report = evaluate(load_samples(folder), _predict, confusion_png=png)
    assert report.n == 6
    assert report.top1 == pytest.approx(3 / 6)
    assert report.top5 == pytest.approx(5 / 6)  # the yellow BMW is the only miss
    per = {s.make: s for s in report.per_make}
    # Audi: predicted top-1 twice (red, magenta), correct once (red); true twice
    assert (per["Audi"].predicted, per["Audi"].correct, per["Audi"].support) == (2, 1, 2)
    assert per["Audi"].precision == pytest.approx(1 / 2)
    assert per["Audi"].recall == pytest.approx(1 / 2)
    # BMW: predicted twice (green, blue), correct once (blue); true twice
    assert (per["BMW"].precision, per["BMW"].recall) == (pytest.approx(1 / 2), pytest.approx(1 / 2))
    # Ford: predicted once (cyan), correct once; true twice
    assert (per["Ford"].precision, per["Ford"].recall) == (pytest.approx(1.0), pytest.approx(1 / 2))
    assert per["Ford"].f1 == pytest.approx(2 / 3)
    assert per["Audi"].top5 == 1.0 and per["BMW"].top5 == 0.5 and per["Ford"].top5 == 1.0
    assert "Fiat" not in per  # macro averages run over the true makes only
    assert report.macro_precision == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    assert report.macro_recall == pytest.approx(1 / 2)
    assert report.macro_f1 == pytest.approx((1 / 2 + 1 / 2 + 2 / 3) / 3)
    # ECE, 10 bins, one image per bin: |acc - conf| = 0.1, 0.6, 0.2, 0.5, 0.05, 0.7 -> mean
    assert report.ece == pytest.approx((0.1 + 0.6 + 0.2 + 0.5 + 0.05 + 0.7) / 6)
    # confusion: rows Audi, BMW, Ford; columns Audi, BMW, Ford, Fiat
    assert report.confusion_labels == ("Audi", "BMW", "Ford", "Fiat")
    assert report.confusion == ((1, 1, 0, 0), (0, 1, 0, 1), (1, 0, 1, 0))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_has_the_cli_fields_and_csv_input_gives_the_same_numbers(folder: Path, tmp_path: Path) -> None:
    csv_path = tmp_path / "eval.csv"
    rows = ["path,make,notes"]
    for make_dir in sorted(folder.iterdir()):
        for image in sorted(make_dir.iterdir()):
            rows.append(f"by-make/{make_dir.name}/{image.name},{make_dir.name},ignored")
    csv_path.write_text("\n".join(rows) + "\n")
    from_csv = evaluate_path(csv_path, _predict)
    from_folder = evaluate_path(folder, _predict)
    assert from_csv == from_folder
    payload = json.loads(from_csv.to_json())
    for key in ("n", "top1", "top5", "macro_precision", "macro_recall", "macro_f1", "ece", "per_make"):
        assert key in payload
    assert payload["per_make"]["Ford"]["precision"] == 1.0
    assert "Ford" in from_csv.table()
