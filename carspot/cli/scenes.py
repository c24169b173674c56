"""`carspot scenes`: the labelled composite scene set for comparing analysis modes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from carspot.cli.common import current_settings, print_json

app = typer.Typer(help="The labelled composite scene set for comparing analysis modes.")


@app.command("make")
def scenes_make(
    out: Annotated[Path, typer.Option("--out", help="Output folder (labels.csv, negatives.csv, images/).")],
    count: Annotated[int, typer.Option(help="How many composite scenes.")] = 300,
    seed: Annotated[int, typer.Option(help="Scene seed; the split seed stays the classifier's.")] = 0,
    split_seed: Annotated[int, typer.Option(help="Seed of the by-model split the classifier used.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing scene set.")] = False,
) -> None:
    """Composite validation-split car photos into the real car-free scenes at known sizes and labels."""
    from carspot.analysis.scenes import make_scenes

    shared = current_settings().shared_dir
    result = make_scenes(
        stanford=shared / "data" / "stanford-cars" / "labels.csv",
        scenes_dir=shared / "data" / "scenes",
        out_dir=out,
        count=count,
        seed=seed,
        split_seed=split_seed,
        overwrite=overwrite,
    )
    print_json(result)
