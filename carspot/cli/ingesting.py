"""`carspot ingest`: posts from a folder, a JSONL file, X or HTTP pushes into Kafka."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated

import typer

from carspot.cli.common import current_settings, print_json
from carspot.pipeline.settings import Settings

app = typer.Typer()


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
    from carspot.pipeline.metrics import MetricsPortTaken

    s = current_settings()
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
            print_json(summary_json(summary))
            return
        if source == "http":
            from carspot.pipeline.ingest_http import serve_http_push

            serve_http_push(s, host=host, port=port, mode=mode)
            return
    except (ConfigError, MetricsPortTaken) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    _ingest_files(s, source, max_posts=max_posts, mode=mode)


def _ingest_files(s: Settings, source: str, *, max_posts: int | None, mode: str | None) -> None:
    from carspot.ingest.loop import EmitInterrupted, IngestStats
    from carspot.pipeline.app import ingest_posts, open_source, split_source
    from carspot.pipeline.kafka_io import kafka_emitter
    from carspot.pipeline.lifecycle import install_stop_handlers
    from carspot.pipeline.metrics import MetricsPortTaken, exported_ingest

    posts = open_source(source, settings=s)
    try:
        metrics, exporting = exported_ingest(s, source=split_source(source)[0])
    except MetricsPortTaken as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    stopping = threading.Event()
    install_stop_handlers(stopping.set)
    # every post waits for Kafka's acknowledgement (and through outages) before its claim is kept
    try:
        producer, emitter = kafka_emitter(s, mode=mode, should_stop=stopping.is_set)
    except EmitInterrupted as exc:
        if exporting is not None:
            exporting.close()
        print_json(IngestStats(stop_reason="should_stop"))
        typer.echo(f"ingest: {exc}", err=True)
        return
    try:
        stats = ingest_posts(
            s,
            posts,
            emitter=emitter,
            should_stop=stopping.is_set,
            max_posts=max_posts,
            observer=metrics,
        )
    finally:
        producer.close(timeout=10)  # everything sent was acknowledged; never hang on a broker that is away
        if exporting is not None:
            exporting.close()
    print_json(stats)
