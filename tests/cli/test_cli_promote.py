"""`carspot models promote`: champion and challenger side by side, brands and car head, on the same images."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from carspot.classifier.registry import current_version, set_current

CARSPOT = str(Path(sys.executable).with_name("carspot"))
MODELS = Path(__file__).resolve().parents[2] / "models"


def _registry_with_a_twin(tmp_path: Path) -> tuple[Path, str]:
    """A model folder holding the released version, current, and an identical copy of it named ``twin``."""
    released = current_version(MODELS)
    assert released is not None
    model_dir = tmp_path / "models"
    shutil.copytree(MODELS / "versions" / released, model_dir / "versions" / released)
    twin = model_dir / "versions" / "twin"
    shutil.copytree(model_dir / "versions" / released, twin)
    manifest = json.loads((twin / "manifest.json").read_text())
    (twin / "manifest.json").write_text(json.dumps({**manifest, "version": "twin"}))
    set_current(model_dir, released)
    return model_dir, released


def _promote(*args: str, model_dir: Path, shared_dir: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CARSPOT_MODEL_DIR": str(model_dir), "CARSPOT_SHARED_DIR": str(shared_dir)}
    return subprocess.run(
        [CARSPOT, "models", "promote", *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd
    )


def test_an_identical_challenger_is_refused_with_both_car_heads_measured(shared_dir: Path, tmp_path: Path) -> None:
    model_dir, released = _registry_with_a_twin(tmp_path)
    stanford = shared_dir / "data" / "stanford-cars"
    data = tmp_path / "photos.csv"
    data.write_text("path,make\n" + "".join(f"{stanford / p},{m}\n" for p, m in [("images/00001.jpg", "Audi")] * 2))
    own = tmp_path / "our-feed-without-cars"  # the user's own car-free images, in a subfolder too
    (own / "week-2").mkdir(parents=True)
    (own / "kite.jpg").write_bytes((shared_dir / "data" / "scenes" / "kite.jpg").read_bytes())
    (own / "week-2" / "horses.jpg").write_bytes((shared_dir / "data" / "scenes" / "horses.jpg").read_bytes())
    (own / "notes.txt").write_text("not an image, skipped")

    done = _promote(
        "twin", "--data", str(data), "--car-free", str(own), model_dir=model_dir, shared_dir=shared_dir, cwd=tmp_path
    )

    assert done.returncode == 1, done.stderr[-2000:]
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines() if line.strip()}
    assert rows["car_recall"][0] == rows["car_recall"][1] == "1.0000"  # the Audi photo, twice
    assert rows["false_car_rate"][0] == rows["false_car_rate"][1]
    assert "REFUSED: not better than the champion" in done.stdout  # a tie keeps the champion
    assert current_version(model_dir) == released
    log = json.loads((model_dir / "promotions.log").read_text().splitlines()[-1])
    assert log["candidate_car_check"]["car_free"] == 38 + 2  # the built-in ones and the user's
    assert log["candidate_car_check"] == log["champion_car_check"]


def test_an_unreadable_car_free_image_is_reported_before_any_version_is_measured(
    shared_dir: Path, tmp_path: Path
) -> None:
    model_dir, released = _registry_with_a_twin(tmp_path)
    data = tmp_path / "photos.csv"
    data.write_text(f"path,make\n{shared_dir / 'data' / 'stanford-cars' / 'images' / '00001.jpg'},Audi\n")
    own = tmp_path / "car-free"
    own.mkdir()
    (own / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a JPEG")

    done = _promote(
        "twin", "--data", str(data), "--car-free", str(own), model_dir=model_dir, shared_dir=shared_dir, cwd=tmp_path
    )

    assert done.returncode == 2
    assert f"error: {own / 'broken.jpg'}: cannot read the image" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (model_dir / "promotions.log").exists()  # refused before anything was measured or logged
    assert current_version(model_dir) == released
