"""`carspot forget`: the right to erasure (carspot.store.erasure), logged without the content."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from carspot.cli.common import database_url

app = typer.Typer()


@app.command()
def forget(
    post_ids: Annotated[list[str], typer.Argument(help="The ids of the posts to erase.")],
    by: Annotated[str | None, typer.Option(help="Who asks (logged); default the operating-system user.")] = None,
) -> None:
    """Erase posts' text, author, link and thumbnail; the counts stay (docs/mentions.md, "Right to erasure")."""
    from datetime import UTC, datetime

    from carspot.store.engine import create_engine_for
    from carspot.store.erasure import forget_posts

    engine = create_engine_for(database_url())
    try:
        result = forget_posts(engine, post_ids, requested_by=by or getpass.getuser(), now=datetime.now(UTC))
    finally:
        engine.dispose()
    typer.echo(f"erased {result.erased} of {result.requested} post(s); {result.thumbnails_deleted} thumbnail(s)")
    for post_id in result.missing:
        typer.echo(f"not found (unknown or already erased): {post_id}", err=True)
    if result.missing:
        raise typer.Exit(1)
