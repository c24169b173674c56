"""`carspot thumbnails purge`: the thumbnails' retention (run it daily, e.g. from cron or a Kubernetes CronJob)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from carspot.cli.common import current_settings, print_json

app = typer.Typer(help="The thumbnails of analysed images the dashboards show.", no_args_is_help=True)


@app.command()
def purge(
    days: Annotated[
        int | None, typer.Option(min=0, help="Keep this many days (default CARSPOT_THUMBNAIL_RETENTION_DAYS).")
    ] = None,
) -> None:
    """Delete the thumbnails older than the retention, and those of images no post shows any more."""
    from carspot.store.engine import create_engine_for
    from carspot.store.queries import purge_thumbnails

    settings = current_settings()
    keep = settings.thumbnail_retention_days if days is None else days
    older_than = datetime.now(UTC) - timedelta(days=keep) if keep else None
    engine = create_engine_for(settings.resolved_database_url)
    try:
        deleted = purge_thumbnails(engine, older_than=older_than)
    finally:
        engine.dispose()
    print_json({"deleted": deleted, "older_than": older_than.isoformat() if older_than else None})
