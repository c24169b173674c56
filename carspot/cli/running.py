"""`carspot worker`, `carspot run` (the embedded default) and `carspot analyze` (one-off files)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from carspot.cli.common import current_settings, database_url, print_json

app = typer.Typer()


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
    from carspot.pipeline.mentioning import mention_finder
    from carspot.pipeline.metrics import MetricsPortTaken, exported_worker
    from carspot.pipeline.worker import Worker
    from carspot.store.migrate import current_revision

    s = current_settings()
    url = database_url()
    if current_revision(url) is None:
        typer.echo("error: the database has no schema yet: run `carspot migrate` first", err=True)
        raise typer.Exit(1)
    try:
        metrics, exporting = exported_worker(s)  # first: a taken port fails before the models load
    except MetricsPortTaken as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    analysis = load_analysis(s)
    version, mode, detector = analysis.serving()
    metrics.model(version=version, mode=mode, detector=detector)  # known before the first image, for ops
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
        metrics=metrics,
        partition_lag=source.lags,
        find_mentions=mention_finder(),
    )
    install_stop_handlers(the_worker.stop)
    try:
        stats = the_worker.run(max_messages=max_messages, timeout_s=timeout, idle_timeout_s=idle_timeout)
    finally:
        outcome.close()
        if exporting is not None:
            exporting.close()
    print_json(stats)


# --- the embedded default -------------------------------------------------------------------------------
@app.command()
def run(
    source: Annotated[str, typer.Option(help="folder:PATH or jsonl:PATH")],
    max_posts: Annotated[int | None, typer.Option(help="Stop after this many posts.")] = None,
) -> None:
    """Everything in one process: ingest → in-process queue → analysis → the database (SQLite unless told
    otherwise: the same one every command uses). Nothing to install."""
    from carspot.pipeline.embedded import run_embedded

    summary = run_embedded(settings=current_settings(), source=source, max_posts=max_posts, database_url=database_url())
    typer.echo(summary.render())


# --- one-off analysis -----------------------------------------------------------------------------------
@app.command()
def analyze(images: Annotated[list[Path], typer.Argument(help="Local image files.", exists=True)]) -> None:
    """Analyse local images and print the results as JSON (nothing is stored)."""
    from carspot.pipeline.embedded import analyze_files

    print_json(analyze_files(settings=current_settings(), paths=images))
