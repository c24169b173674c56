"""`carspot dashboard` and `carspot report`: what marketing teams and analysts read."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from carspot.cli.common import current_settings, database_url

if TYPE_CHECKING:
    from sqlalchemy import Engine

app = typer.Typer()
report = typer.Typer(help="Reports for analysts.")
app.add_typer(report, name="report")


@app.command()
def dashboard(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    refresh: Annotated[int, typer.Option(help="Live feed refresh, seconds.")] = 10,
) -> None:
    """Serve the web dashboard: brand share, daily trend, live feed, weekly report downloads. Everyone signs in
    (users: `carspot users add`); programs use API tokens (`carspot users token`)."""
    from datetime import timedelta

    from carspot.dashboards.auth import AuthOptions
    from carspot.dashboards.web import serve
    from carspot.pipeline.metrics import MetricsPortTaken, exported_dashboard
    from carspot.store.engine import create_engine_for

    s = current_settings()
    try:
        metrics, exporting = exported_dashboard(s)
    except MetricsPortTaken as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    engine = create_engine_for(database_url())
    auth = AuthOptions(
        session_ttl=timedelta(hours=s.dashboard_session_hours),
        cookie_secure=s.dashboard_cookie_secure,
        trusted_proxies=tuple(s.dashboard_trusted_proxies),
    )
    try:
        _say_who_can_sign_in(engine)
        serve(
            engine=engine,
            host=host,
            port=port,
            refresh_seconds=refresh,
            on_request=lambda route, code, seconds: metrics.request(route=route, code=code, seconds=seconds),
            auth=auth,
        )
    finally:
        engine.dispose()
        if exporting is not None:
            exporting.close()


def _say_who_can_sign_in(engine: Engine) -> None:
    """A dashboard nobody can sign in to is a set-up step missed: say which, without refusing to start."""
    from sqlalchemy.exc import SQLAlchemyError

    from carspot.store.accounts import count_admins, count_users

    try:
        users, admins = count_users(engine), count_admins(engine)
    except SQLAlchemyError as exc:
        typer.echo(f"warning: cannot read the users ({type(exc).__name__}): is the database migrated and up?", err=True)
        return
    if users == 0:
        typer.echo("warning: no users yet: create the first admin with `carspot users add NAME --role admin`", err=True)
    elif admins == 0:
        typer.echo("note: no admin among the users (`carspot users add NAME --role admin`)", err=True)


@report.command("weekly")
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
    from sqlalchemy.exc import SQLAlchemyError

    engine = create_engine_for(database_url())
    try:
        report = weekly_report(engine, week=week, now=datetime.now(UTC), mode=mode)
    except ReportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except SQLAlchemyError as exc:  # never migrated, or not running: one line, not a traceback
        typer.echo(f"error: cannot read the database ({type(exc).__name__}): is it up and migrated?", err=True)
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()
    text = report.to_csv() if output_format == "csv" else report.to_json()
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)
