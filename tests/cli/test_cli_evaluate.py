"""`carspot evaluate`: the paper's numbers on the user's photos through the worker's analysis; a bad path is one
line of error, not a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CARSPOT = str(Path(sys.executable).with_name("carspot"))


def _run(*args: str, shared_dir: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CARSPOT_SHARED_DIR": str(shared_dir), "CARSPOT_DATA_DIR": str(cwd / ".carspot")}
    return subprocess.run([CARSPOT, *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


def test_a_csv_of_real_photos_ends_with_one_json_line_and_saves_the_confusion_matrix(
    shared_dir: Path, tmp_path: Path
) -> None:
    images = shared_dir / "data" / "stanford-cars" / "images"
    (tmp_path / "photos").mkdir()
    rows = [("00001.jpg", "Audi"), ("00002.jpg", "Acura"), ("00003.jpg", "Dodge")]
    for name, _make in rows:
        (tmp_path / "photos" / name).write_bytes((images / name).read_bytes())
    data = tmp_path / "photos.csv"  # paths relative to the CSV, an extra column ignored
    data.write_text("path,make,note\n" + "".join(f"photos/{name},{make},x\n" for name, make in rows))
    png = tmp_path / "confusion.png"

    done = _run("evaluate", "--data", str(data), "--json", "--confusion", str(png), shared_dir=shared_dir, cwd=tmp_path)

    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"n", "top1", "top5", "macro_precision", "macro_recall", "macro_f1", "ece", "per_make"} <= set(result)
    assert result["n"] == 3
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "top-1" in done.stdout  # the human-readable table comes first
    cars = result["cars"]
    assert cars["images"] == 3 and cars["none"] + cars["one"] + cars["several"] == 3
    assert "cars per image" in done.stdout
    curve = result["coverage"]  # the share answered and how right, at each confidence threshold
    assert [round(point["threshold"], 1) for point in curve] == [round(0.1 * i, 1) for i in range(10)]
    answered = [point["answered"] for point in curve]
    assert answered == sorted(answered, reverse=True) and answered[0] <= 3
    assert all(0.0 <= point["top1"] <= point["top5"] <= 1.0 for point in curve)
    assert 0.0 <= result["min_brand_confidence"] <= 1.0
    assert "<- CARSPOT_MIN_BRAND_CONFIDENCE" in done.stdout


def test_a_missing_data_path_is_one_line_of_error_and_exit_status_2(shared_dir: Path, tmp_path: Path) -> None:
    done = _run("evaluate", "--data", str(tmp_path / "nowhere.csv"), shared_dir=shared_dir, cwd=tmp_path)

    assert done.returncode == 2
    assert f"error: {tmp_path / 'nowhere.csv'}: no such file or directory" in done.stderr
    assert "Traceback" not in done.stderr
