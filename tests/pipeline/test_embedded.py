"""The embedded default: the whole pipeline in one process on SQLite, and `carspot analyze`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from carspot.pipeline.embedded import run_embedded
from carspot.pipeline.settings import Settings

CARSPOT = str(Path(sys.executable).with_name("carspot"))


@pytest.fixture
def settings(tmp_path: Path, shared_dir: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", shared_dir=shared_dir, _env_file=None)  # type: ignore[call-arg]


def test_run_on_scenes_with_bad_files_stores_every_good_image_and_dead_letters_the_rest(
    settings: Settings, scenes_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "inbox"
    shutil.copytree(scenes_dir, folder)
    shutil.copy(scenes_dir / "dog.jpg", folder / "dog-again.jpg")  # a repost of the same picture
    (folder / "notes.jpg").write_text("not a picture")
    (folder / "empty.png").write_bytes(b"")

    summary = run_embedded(settings=settings, source=f"folder:{folder}")

    assert summary.ingest.seen == 11
    assert summary.worker.analyses == 8 and summary.worker.links == 1
    assert dict(summary.ingest.rejected) == {"not_an_image": 1, "empty": 1}
    assert table_counts(summary.database) == {"posts": 9, "analyses": 8, "regions": summary.worker.cars}
    letters = [json.loads(line) for line in summary.dead_letter_file.read_text().splitlines()]
    assert sorted(letter["reason"] for letter in letters) == ["empty", "not_an_image"]
    assert "cars found" in summary.render() and "top makes" in summary.render()
    # three scenes show cars and bus.jpg a minibus (a van class: Stanford Cars has vans); the rest none
    assert summary.top_makes and sum(n for _make, n in summary.top_makes) <= 4

    again = run_embedded(settings=settings, source=f"folder:{folder}")  # the same folder again
    assert again.ingest.seen == 11
    assert again.worker.analyses == 0 and again.worker.already_analysed == 8  # linked, not re-analysed
    assert table_counts(again.database) == {"posts": 9, "analyses": 8, "regions": summary.worker.cars}


def table_counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in ("posts", "analyses", "regions")
            }
    finally:
        engine.dispose()


def test_analyze_prints_the_cars_of_each_image_as_json(scenes_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"<html></html>")
    done = subprocess.run(
        [CARSPOT, "analyze", str(scenes_dir / "times-square.png"), str(scenes_dir / "kite.jpg"), str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    results = json.loads(done.stdout)
    by_name = {Path(r["image"]).name: r for r in results}
    assert (
        len(by_name["times-square.png"]["regions"]) >= 3
    )  # model 20261206T170207Z: 3 (its car branch refutes a 4th box)
    assert by_name["kite.jpg"]["regions"] == []
    assert by_name["bad.jpg"]["error"] == "not_an_image"
    for region in by_name["times-square.png"]["regions"]:
        x1, y1, x2, y2 = region["box"]
        assert 0 <= x1 < x2 <= by_name["times-square.png"]["width"]
        assert 0 <= y1 < y2 <= by_name["times-square.png"]["height"]
