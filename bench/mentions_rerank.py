"""Text mentions ranked first: top-1 on captioned posts with and without the re-ranking (issue 26).

The captioned set: every ``--every``-th photo of ``shared/data/cars-web/labels.csv`` (real, labelled photos of
recent cars; a fixed, deterministic selection), each given a caption written from templates below, in turn:
  named  - the caption names the photo's own make (a brand name, a model name, a #hashtag or an @handle, in turn),
  other  - it names a different make (one of the vocabulary, chosen by a seeded RNG),
  none   - it names no make ("Nice ride spotted downtown").
The captions go through the real matcher (carspot.mentions) and the photos through the released model in
``--mode`` as the worker analyses them; top-1 is the image's make (rank 1), then with the named make moved first
when it is in the top-5 (carspot.mentions.rerank). Asserts nothing; prints the figures.

    .venv/bin/python bench/mentions_rerank.py [--every 10] [--count 180] [--mode standard] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import tomllib
from importlib import resources
from pathlib import Path

from carspot.analysis.outcomes import analyse_outcomes
from carspot.ingest.images import decode_jpeg_rgb
from carspot.mentions.aliases import load_aliases
from carspot.mentions.matcher import mentioned_makes
from carspot.mentions.rerank import rerank
from carspot.pipeline.app import load_analysis, make_normalizer
from carspot.pipeline.settings import Settings

NAMED = (
    "Just saw this {name} downtown, what a car",
    "{model} spotted at the lights",
    "Sunday drive #{tag}",
    "Thanks @{tag} for the test drive",
)
OTHER = ("Parked next to my {name}", "Would you pick this or a {name}?", "Not my {name} but still nice")
NONE = ("Nice ride spotted downtown", "Look at this beauty", "Weekend vibes 🚗")


def captions(truth: list[str], *, seed: int = 26) -> list[tuple[str, str]]:
    """(kind, caption) per photo: named, other and none in turn; aliases from the shipped table."""
    data = tomllib.loads(resources.files("carspot.mentions").joinpath("aliases.toml").read_text("utf-8"))
    rng = random.Random(seed)
    makes = sorted(data)
    out = []
    for i, make in enumerate(truth):
        kind = ("named", "other", "none")[i % 3]
        if kind == "none":
            out.append((kind, NONE[i % len(NONE)]))
            continue
        if kind == "other":
            make = rng.choice([m for m in makes if m != make])
        entry = data[make]
        name = entry["names"][0] if entry.get("names") else entry["weak"][0]
        model = (entry.get("models") or [name])[0]
        tag = "".join(ch for ch in name if ch.isalnum())
        template = NAMED[(i // 3) % len(NAMED)] if kind == "named" else OTHER[(i // 3) % len(OTHER)]
        out.append((kind, template.format(name=name, model=model, tag=tag)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--count", type=int, default=180)
    parser.add_argument("--mode", default="standard")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    settings = Settings.load()
    labels = settings.shared_dir / "data" / "cars-web" / "labels.csv"
    with labels.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:: args.every][: args.count]
    truth = [row["make"] for row in rows]
    posts = captions(truth)
    table = load_aliases()
    named = [mentioned_makes(text, table=table) for _, text in posts]
    normalize = make_normalizer(settings)
    analysis = load_analysis(settings)
    images = (decode_jpeg_rgb(normalize(Path(labels.parent / r["path"]).read_bytes()).jpeg) for r in rows)
    outcomes = list(analyse_outcomes(analysis, mode=args.mode, images=images, batch=settings.analysis_batch_images))
    figures: dict[str, dict[str, float | int]] = {}
    for kind in ("named", "other", "none", "all"):
        picked = [i for i, (k, _) in enumerate(posts) if kind in ("all", k)]
        plain = ranked = 0
        for i in picked:
            top = [make for make, _ in outcomes[i].top]
            plain += bool(top) and top[0] == truth[i]
            moved = rerank(top, named[i])
            ranked += bool(moved) and moved[0] == truth[i]
        figures[kind] = {"posts": len(picked), "top1": plain / len(picked), "top1_reranked": ranked / len(picked)}
        print(
            f"{kind:<6} {len(picked):4d} posts  top-1 {plain / len(picked):6.1%}  re-ranked {ranked / len(picked):6.1%}"
        )
    matched = sum(1 for (k, _), n, t in zip(posts, named, truth, strict=True) if k == "named" and t in n)
    print(f"captions naming the photo's make that the matcher found: {matched}/{figures['named']['posts']}")
    print(f"{len(rows)} photos: every {args.every}th row of {labels}; mode {args.mode}")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
