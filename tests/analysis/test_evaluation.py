"""Modes measured side by side: the same images, each mode's top-5, and the subset standard mode gets wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from carspot.analysis.evaluation import compare_path
from carspot.analysis.modes import Analysis, AnalysisParts, ImageWork, ModeRunner
from carspot.store.records import BrandScore


def fixed(makes_by_red: dict[int, list[str]]) -> ModeRunner:
    """A mode that answers by the image's red value (each test image is one flat colour)."""

    def prepare(image: np.ndarray, model: object) -> ImageWork:
        makes = makes_by_red[int(image[0, 0, 0])]
        brands = tuple(BrandScore(make=m, score=0.5 / (i + 1), rank=i + 1) for i, m in enumerate(makes))
        return ImageWork(crops=(), finish=lambda *_: AnalysisParts((), brands, "v"))

    return ModeRunner(prepare=prepare, detector="fake")


@pytest.fixture
def labels(tmp_path: Path) -> Path:
    rows = ["path,make,bucket"]
    for red, make, bucket in [
        (10, "Audi", "5-10%"),
        (20, "BMW", "5-10%"),
        (30, "Audi", "40-80%"),
        (40, "Kia", "40-80%"),
    ]:
        Image.new("RGB", (8, 8), (red, 0, 0)).save(tmp_path / f"{red}.png")
        rows.append(f"{red}.png,{make},{bucket}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "labels.csv"


def test_each_mode_is_scored_overall_on_standards_misses_and_per_bucket(labels: Path) -> None:
    analysis = Analysis(
        modes={
            # standard: right on the big cars only
            "standard": fixed({10: ["Kia"], 20: ["Kia"], 30: ["Audi"], 40: ["Kia"]}),
            # region-search: finds the small Audi (rank 2) but not the small BMW
            "region-search": fixed({10: ["Kia", "Audi"], 20: ["Audi"], 30: ["Audi"], 40: ["Kia"]}),
        },
        default_mode="standard",
    )
    comparison = compare_path(labels, analysis=analysis, modes=["standard", "region-search"])
    by_mode = {r.mode: r.report for r in comparison.results}
    assert (by_mode["standard"].top1, by_mode["standard"].top5) == (0.5, 0.5)
    assert (by_mode["region-search"].top1, by_mode["region-search"].top5) == (0.5, 0.75)
    assert comparison.standard_wrong["region-search"].n == 2
    assert comparison.standard_wrong["region-search"].top5 == 0.5
    assert comparison.standard_wrong["standard"].top5 == 0.0
    assert list(comparison.by_bucket) == ["5-10%", "40-80%"]
    assert comparison.by_bucket["5-10%"]["region-search"].top5 == 0.5
    assert comparison.by_bucket["5-10%"]["standard"].top5 == 0.0
    figures = comparison.to_json()
    assert set(figures["modes"]) == {"standard", "region-search"}
    assert figures["modes"]["standard"]["seconds_per_image"] > 0
    assert "images standard mode gets wrong" in comparison.render()


def test_worker_processes_give_the_same_answers_as_one_process(tmp_path: Path, shared_dir: Path) -> None:
    from carspot.pipeline.app import load_analysis, single_threaded_loader
    from carspot.pipeline.settings import Settings

    scenes = shared_dir / "data" / "scenes"
    rows = ["path,make"] + [f"{scenes / name},Audi" for name in ("bus.jpg", "dog.jpg", "kite.jpg", "horses.jpg")]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    settings = Settings(shared_dir=shared_dir, classifier_threads=1, _env_file=None)  # type: ignore[call-arg]
    modes = ["standard", "detector"]
    alone = compare_path(tmp_path / "labels.csv", analysis=load_analysis(settings), modes=modes)
    pooled = compare_path(
        tmp_path / "labels.csv", load_analysis=single_threaded_loader(settings), modes=modes, workers=2
    )
    for one, two in zip(alone.results, pooled.results, strict=True):
        assert one.mode == two.mode
        assert [[m for m, _ in p] for p in one.predictions] == [[m for m, _ in p] for p in two.predictions]
        assert two.seconds_per_image > 0


def test_worker_processes_that_cannot_load_the_models_fail_the_run(tmp_path: Path, labels: Path) -> None:
    from carspot.pipeline.app import single_threaded_loader
    from carspot.pipeline.settings import Settings

    broken = Settings(model_dir=tmp_path / "no-models", _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(RuntimeError, match="could not load the analysis"):
        compare_path(labels, load_analysis=single_threaded_loader(broken), modes=["standard"], workers=2)
