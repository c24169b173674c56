"""Car-free images given a brand, per analysis mode: what a brand dashboard would wrongly count.

The images: scikit-image's bundled samples (people, animals, textures, text, motorcycles), the shared car-free
scenes (horses, kite, person, bus) whole and as seeded crops, and any folders given with --extra (your feeds'
car-free pictures). Two rates per mode: "counted as a brand", the image's best make at least as confident as
CARSPOT_MIN_BRAND_CONFIDENCE, which brand share counts (below it the image is an unidentified car, counted apart);
and "given any make", a top-5 stored at all.

    .venv/bin/python bench/car_free.py [--modes standard,region-search,detector] [--crops-per-scene 8]
                                       [--extra DIR ...] [--json]

Target (issue 23): at most 2 % counted as a brand. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from carspot.analysis.car_free import car_free_images, images_under
from carspot.analysis.predictors import predictor
from carspot.classifier.registry import current_version
from carspot.pipeline.app import load_analysis
from carspot.pipeline.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="standard,region-search,detector")
    parser.add_argument("--crops-per-scene", type=int, default=8)
    parser.add_argument("--extra", type=Path, action="append", default=[], help="a folder of car-free images")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    settings = Settings.load()
    analysis = load_analysis(settings)
    extra = [path for folder in args.extra for path in images_under(folder)]
    images = list(
        car_free_images(
            scenes_dir=settings.shared_dir / "data" / "scenes", crops_per_scene=args.crops_per_scene, extra=extra
        )
    )
    results = {}
    print(f"model {current_version(settings.model_dir)}: {len(images)} car-free images")
    floor = analysis.min_brand_confidence
    print(f"brand counted from a best-make probability of {floor} (CARSPOT_MIN_BRAND_CONFIDENCE)")
    for mode in [m for m in args.modes.split(",") if m in analysis.modes]:
        predict = predictor(analysis, mode)
        given = [(name, top[0]) for name, image in images if (top := predict(image))]
        counted = [(name, best) for name, best in given if best[1] >= floor]
        n = len(images)
        results[mode] = {
            "images": n,
            "counted_as_a_brand": len(counted),
            "counted_rate": len(counted) / n,
            "given_any_make": len(given),
            "given_rate": len(given) / n,
        }
        print(
            f"{mode:14s} counted as a brand {len(counted):3d} of {n} ({100 * len(counted) / n:.1f} %); "
            f"given any make {len(given):3d} ({100 * len(given) / n:.1f} %)"
        )
        for name, (make, score) in given:
            print(f"    {name}: {make} {score:.3f}{'' if score >= floor else ' (unidentified)'}")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
