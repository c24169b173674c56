"""`carspot migrate`: the store's schema to the latest revision."""

from __future__ import annotations

import typer

from carspot.cli.common import current_settings, database_url, print_json

app = typer.Typer()


@app.command()
def migrate() -> None:
    """Bring the database (the one every command uses: it is named on stderr) to the newest schema."""
    from carspot.store.migrate import current_revision
    from carspot.store.migrate import migrate as run_migrations

    url = database_url()
    current_settings().data_dir.mkdir(parents=True, exist_ok=True)
    run_migrations(url)
    print_json({"revision": current_revision(url)})
