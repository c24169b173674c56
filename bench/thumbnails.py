"""Thumbnails: what keeping one per analysed image costs the worker (milliseconds) and the database (bytes).

Each picture goes through ingest's normaliser and decoder first (as the worker receives it), then
``make_thumbnail`` is timed alone, the best of ``--repeat`` runs per picture.

    .venv/bin/python bench/thumbnails.py [--images DIR] [--limit N] [--repeat 3]

Prints one line per picture and a summary; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from carspot.ingest.images import decode_jpeg_rgb, normalize_image
from carspot.pipeline.thumbnails import make_thumbnail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = Path(os.environ.get("CARSPOT_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--images", type=Path, default=shared / "data" / "scenes")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    files = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[: args.limit]
    if not files:
        raise SystemExit(f"no pictures under {args.images}")
    millis, sizes = [], []
    for path in files:
        image = decode_jpeg_rgb(normalize_image(path.read_bytes()).jpeg)
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            thumb = make_thumbnail(image)
            best = min(best, time.perf_counter() - t0)
        millis.append(1000 * best)
        sizes.append(len(thumb.jpeg))
        h, w = image.shape[:2]
        size = f"{w}x{h} -> {thumb.width}x{thumb.height}"
        print(f"{path.name:32} {size:22} {len(thumb.jpeg):6} B {1000 * best:6.1f} ms")
    print(
        f"{len(files)} pictures: median {statistics.median(millis):.1f} ms (max {max(millis):.1f}), "
        f"median {statistics.median(sizes) / 1024:.1f} KB (max {max(sizes) / 1024:.1f} KB)"
    )


if __name__ == "__main__":
    main()
