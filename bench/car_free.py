"""Car-free images given a brand, per analysis mode: what a brand dashboard would wrongly count.

The images: scikit-image's bundled samples (people, animals, textures, text, motorcycles), the shared car-free
scenes (horses, kite, person, bus) whole and as seeded crops, and any folders given with --extra (your feeds'
car-free pictures). An image is "given a brand" when the analysis returns any make for it.

    .venv/bin/python bench/car_free.py [--modes standard,region-search,detector] [--crops-per-scene 8]
                                       [--extra DIR ...] [--json]

Target (issue 23): at most 2 % given a brand. Asserts nothing.
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
    for mode in [m for m in args.modes.split(",") if m in analysis.modes]:
        predict = predictor(analysis, mode)
        branded = [(name, top[0]) for name, image in images if (top := predict(image))]
        rate = len(branded) / len(images)
        results[mode] = {"images": len(images), "given_a_brand": len(branded), "rate": rate}
        print(f"{mode:14s} given a brand {len(branded):3d} of {len(images)} ({100 * rate:.1f} %)")
        for name, (make, score) in branded:
            print(f"    {name}: {make} {score:.3f}")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
