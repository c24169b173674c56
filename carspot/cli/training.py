"""`carspot train` and `carspot evaluate`: a new brand model, and how well the modes do on labelled photos."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from carspot.cli.common import current_settings, print_json

app = typer.Typer()


def _input_side(value: int | None) -> int | None:
    """Typer callback: an input side is refused before any training starts, not after the cache."""
    from carspot.classifier.augment import checked_input_size

    if value is None:
        return None
    try:
        return checked_input_size(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command()
def train(
    data: Annotated[
        list[Path] | None,
        typer.Option(
            help="A dataset: labels.csv (Stanford), CSV path,make[,source], or folder per make. Repeat it to train on "
            "several with one make vocabulary (default: the shared stanford-cars and cars-web)."
        ),
    ] = None,
    split: Annotated[
        str, typer.Option(help="by-model (unseen car models, or unseen photos where models are unknown) or by-image.")
    ] = "by-model",
    epochs: Annotated[
        int | None,
        typer.Option(min=1, help="Fine-tuning epochs (default 8, the release's; each 7-16 min on 2 cores at 256 px)."),
    ] = None,
    input_size: Annotated[
        int | None,
        typer.Option(
            callback=_input_side,
            help="Network input side in px, a multiple of 32 (default 256, the release's; 224 is 1.3x faster per "
            "crop and 2.9 points less top-1 on unseen models, 320 2x slower).",
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(help="Continue the same data and recipe from its last fine-tuning checkpoint (one per epoch)."),
    ] = False,
    min_photos: Annotated[
        int | None, typer.Option(min=2, help="Makes with fewer photos over all datasets are left out (default 20).")
    ] = None,
) -> None:
    """Transfer learning on real car photos: cached backbone features, class-balanced head, fine-tuning."""
    from carspot.classifier.training import TrainConfig
    from carspot.classifier.training import train as run_training

    s = current_settings()
    sources = data or [s.shared_dir / "data" / name / "labels.csv" for name in ("stanford-cars", "cars-web")]
    recipe = TrainConfig()
    result = run_training(
        sources,
        model_dir=s.model_dir,
        split=split,  # type: ignore[arg-type]
        config=replace(
            recipe,
            finetune_epochs=epochs or recipe.finetune_epochs,
            input_size=input_size or recipe.input_size,
            min_photos_per_make=min_photos or recipe.min_photos_per_make,
        ),
        cache_dir=s.data_dir / "cache" / "features",
        log_dir=s.data_dir / "tensorboard",
        resume=resume,
        on_stage=lambda name, numbers: typer.echo(f"{name}: {json.dumps(numbers, default=str)}", err=True),
    )
    print_json({"version": result.version, "directory": result.directory, "metrics": result.metrics})
    typer.echo(f"not current yet: `carspot models promote {result.version} --data ...` compares it with the current")


@app.command()
def evaluate(
    data: Annotated[Path, typer.Option(help="Folder per make, or CSV with path,make columns.")],
    modes: Annotated[str | None, typer.Option(help="Comma-separated analysis modes to compare.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="End with one JSON line.")] = False,
    confusion: Annotated[Path | None, typer.Option(help="Where to save the confusion-matrix PNG.")] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="With --modes: worker processes sharing the images (one per core).")
    ] = 1,
) -> None:
    """Top-1, top-5, macro precision/recall/F1, per-make table, ECE, cars per image, the coverage / accuracy curve
    of the brand confidence; several modes side by side."""
    from carspot.analysis.evaluation import compare_path
    from carspot.analysis.outcomes import evaluate_mode
    from carspot.pipeline.app import load_analysis, single_threaded_loader

    s = current_settings()
    analysis = load_analysis(s)
    wanted = [m.strip() for m in (modes or analysis.default_mode).split(",") if m.strip()]
    if len(wanted) > 1:
        comparison = compare_path(
            data,
            analysis=analysis,
            load_analysis=single_threaded_loader(s),
            batch=s.analysis_batch_images,
            modes=wanted,
            workers=workers,
        )
        typer.echo(comparison.render())
        if json_output:
            typer.echo(json.dumps(comparison.to_json()))
        return
    png = confusion or s.data_dir / "confusion.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    result = evaluate_mode(
        analysis, data, mode=wanted[0], batch=s.analysis_batch_images, confusion_png=png, progress=True
    )
    typer.echo(result.render())
    typer.echo(f"confusion matrix: {png}")
    if json_output:
        typer.echo(result.to_json())
