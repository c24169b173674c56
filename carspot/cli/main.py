"""The ``carspot`` command: the command groups of this package under one root. Settings are built in the root
callback (`carspot.cli.common.configure`), never at import."""

from __future__ import annotations

import typer

from carspot.cli import (
    common,
    dashboards,
    database,
    ingesting,
    models,
    operations,
    pictures,
    privacy,
    running,
    scenes,
    services,
    training,
    users,
)

app = typer.Typer(
    help="CarSpot: which car brands appear in the images people post.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.callback()(common.configure)
app.add_typer(services.app, name="services")
app.add_typer(database.app)
app.add_typer(ingesting.app)
app.add_typer(running.app)
app.add_typer(models.app, name="models")
app.add_typer(training.app)
app.add_typer(scenes.app, name="scenes")
app.add_typer(dashboards.app)
app.add_typer(operations.app)
app.add_typer(users.app, name="users")
app.add_typer(pictures.app, name="thumbnails")
app.add_typer(privacy.app)


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
