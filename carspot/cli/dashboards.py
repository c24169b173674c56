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
            rank_text_mentions=s.rank_text_mentions,
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


FORMATS = ("csv", "json", "xlsx", "pdf")


@report.command("weekly")
def report_weekly(
    week: Annotated[str | None, typer.Option(help="ISO week, e.g. 2026-W47; default: the last complete week.")] = None,
    output_format: Annotated[str, typer.Option("--format", help="csv, json, xlsx or pdf")] = "csv",
    output: Annotated[
        Path | None,
        typer.Option(
            help="Where to write: a file (json, xlsx, pdf; default stdout for json), a folder or a .zip for csv "
            "(one file per table; default a folder named like the report)."
        ),
    ] = None,
    mode: Annotated[str | None, typer.Option(help="Only analyses of this mode.")] = None,
    source: Annotated[str | None, typer.Option(help="Only posts of this source (x, http, folder, jsonl).")] = None,
    campaign: Annotated[str | None, typer.Option(help="Only posts of this campaign.")] = None,
) -> None:
    """The weekly brand report: share with its 95 % interval and weekly change, text mentions, daily counts,
    sources, model version(s) and the share of unidentified cars."""
    from datetime import UTC, datetime

    from carspot.dashboards.report import ReportError, weekly_report
    from carspot.store.engine import create_engine_for

    if output_format not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}")
    from sqlalchemy.exc import SQLAlchemyError

    settings = current_settings()
    engine = create_engine_for(database_url())
    try:
        report = weekly_report(
            engine,
            week=week,
            now=datetime.now(UTC),
            mode=mode,
            source=source,
            campaign=campaign,
            rank_text_mentions=settings.rank_text_mentions,
        )
    except ReportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except SQLAlchemyError as exc:  # never migrated, or not running: one line, not a traceback
        typer.echo(f"error: cannot read the database ({type(exc).__name__}): is it up and migrated?", err=True)
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()
    if output_format == "json" and output is None:
        typer.echo(report.to_json(), nl=False)
        return
    if output_format == "csv":
        target = output or Path(report.filename_stem)
        if target.suffix == ".zip":
            target.write_bytes(report.to_zip())
        else:
            target.mkdir(parents=True, exist_ok=True)
            for name, text in report.csv_tables().items():
                (target / name).write_text(text, encoding="utf-8", newline="")
        typer.echo(f"wrote {target}", err=True)
        return
    target = output or Path(f"{report.filename_stem}.{output_format}")
    if output_format == "json":
        target.write_text(report.to_json(), encoding="utf-8")
    elif output_format == "xlsx":
        from carspot.dashboards.report_xlsx import to_xlsx

        target.write_bytes(to_xlsx(report))
    else:
        from carspot.dashboards.report_pdf import to_pdf

        target.write_bytes(to_pdf(report))
    typer.echo(f"wrote {target}", err=True)
