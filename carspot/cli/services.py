"""`carspot services`: real Kafka, PostgreSQL and Redis on loopback, without Docker."""

from __future__ import annotations

from typing import Annotated

import typer

from carspot.cli.common import current_settings, plain, print_json

app = typer.Typer(help="Real Kafka, PostgreSQL and Redis on loopback, without Docker.")


@app.command("up")
def services_up(
    install: Annotated[bool, typer.Option(help="apt-get / Maven install what is missing.")] = True,
) -> None:
    """Install what is missing, start Kafka (KRaft), PostgreSQL and Redis, create the topics."""
    from carspot.infra.services import ServiceStartError, up

    s = current_settings()
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
    print_json({**plain(endpoints), "database_url": shown, "env_file": str(s.services_dir / "services.env")})


@app.command("down")
def services_down() -> None:
    """Stop the services this project started (and nothing else)."""
    from carspot.infra.services import down

    print_json({"stopped": down(root=current_settings().services_dir.resolve())})


@app.command("status")
def services_status() -> None:
    """Show which services run, where, and with which pid; exit 1 when one is down."""
    from carspot.infra.services import status

    statuses = status(root=current_settings().services_dir.resolve())
    print_json(statuses)
    if not all(st.running for st in statuses.values()):
        raise typer.Exit(1)
