"""One car, one region: how many cars the analysis counts on single-car Stanford Cars photos, and its top-5.

Every ``--every``-th row of labels.csv (the first ``--count`` of them: a fixed, deterministic selection) is
normalised as ingest does (``carspot run``) and analysed in each mode as the worker does. A single-car photo
should count one car; "cars detected" in the dashboards is this count.

    .venv/bin/python bench/cars.py [--every 27] [--count 300] [--modes detector] [--json]

With --json the last line is {"detector": {"cars": {…, "per_image": …}, "top1": …, "top5": …}, …}.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from carspot.analysis.outcomes import analyse_outcomes, count_cars
from carspot.classifier.evaluate import report_from_predictions
from carspot.ingest.images import decode_jpeg_rgb
from carspot.pipeline.app import load_analysis, make_normalizer
from carspot.pipeline.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=27, help="take every N-th row of labels.csv")
    parser.add_argument("--count", type=int, default=300, help="how many photos")
    parser.add_argument("--modes", default="detector")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    settings = Settings.load()
    labels = settings.shared_dir / "data" / "stanford-cars" / "labels.csv"
    with labels.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:: args.every][: args.count]
    normalize = make_normalizer(settings)
    paths = [labels.parent / row["path"] for row in rows]
    truth = [row["make"] for row in rows]
    analysis = load_analysis(settings)
    figures = {}
    print(f"{len(rows)} photos: every {args.every}th row of {labels}")
    for mode in args.modes.split(","):
        images = (decode_jpeg_rgb(normalize(Path(path).read_bytes()).jpeg) for path in paths)
        outcomes = list(analyse_outcomes(analysis, mode=mode, images=images, batch=settings.analysis_batch_images))
        cars = count_cars(outcomes)
        report = report_from_predictions(truth, [o.top for o in outcomes])
        print(f"{mode:<14} {cars.render()}  top-1 {report.top1:.1%}  top-5 {report.top5:.1%}")
        figures[mode] = {"cars": cars.to_dict(), "top1": report.top1, "top5": report.top5}
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
