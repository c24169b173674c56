"""The analysis modes side by side on the labelled composite scenes: throughput and top-5 accuracy.

Throughput is the whole pipeline from a decoded image to its top-5 makes on this machine's cores: by default
one worker process per core, each single-threaded, sharing the images (how ops deploy CarSpot); with
``--workers 1``, one process whose libraries use their own threads.

    .venv/bin/python bench/modes.py [--scenes DIR] [--count 120] [--modes standard,region-search,detector]
                                    [--workers N] [--json]

With --json the last line is {"standard": {"images_per_s": …, "top5": …}, "region-search": {…}, "detector": {…}}.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from carspot.analysis.evaluation import compare_path
from carspot.analysis.scenes import make_scenes
from carspot.pipeline.app import load_analysis, single_threaded_loader
from carspot.pipeline.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=Path, help="an existing `carspot scenes make` folder")
    parser.add_argument("--count", type=int, default=120, help="composites to make when --scenes is not given")
    parser.add_argument("--modes", default="standard,region-search,detector")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: cores)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    settings = Settings.load()
    analysis = load_analysis(settings)
    modes = [m for m in args.modes.split(",") if m in analysis.modes]
    missing = sorted(set(args.modes.split(",")) - set(modes))
    if missing:
        print(f"not available in this build: {missing}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.scenes
        if folder is None:
            folder = Path(tmp) / "scenes"
            shared = settings.shared_dir
            make_scenes(
                stanford=shared / "data" / "stanford-cars" / "labels.csv",
                scenes_dir=shared / "data" / "scenes",
                out_dir=folder,
                count=args.count,
            )
        comparison = compare_path(
            folder / "labels.csv",
            analysis=analysis,
            load_analysis=single_threaded_loader(settings),
            batch=settings.analysis_batch_images,
            modes=modes,
            workers=args.workers,
        )
    source = analysis.runner(analysis.default_mode).classifier
    model = source() if source else None
    served = f"brand model {model.version} on {model.runtime}, " if model else ""
    print(
        f"{served}{args.workers} worker process(es) on {os.cpu_count()} cores, "
        f"{settings.analysis_batch_images} images per classifier call (CARSPOT_ANALYSIS_BATCH_IMAGES)"
    )
    print(comparison.render())
    figures = {
        r.mode: {
            "images_per_s": round(1.0 / r.seconds_per_image, 2),
            "top5": round(r.report.top5, 4),
            "top1": round(r.report.top1, 4),
            "n": r.report.n,
        }
        for r in comparison.results
    }
    for mode, figure in figures.items():
        print(f"{mode:<15}{figure['images_per_s']:>8.2f} images/s")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
