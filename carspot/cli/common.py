"""What every command shares: the Settings built once per invocation (in the root callback, never at import),
and printing results as JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Annotated, Any

import typer

from carspot.pipeline.settings import Settings


class _Current:
    settings: Settings


_STATE = _Current()


def current_settings() -> Settings:
    return _STATE.settings


def plain(value: Any) -> Any:
    """Dataclasses and (Counter, defaultdict) mappings as plain JSON-able values.

    ``dataclasses.asdict`` cannot be used here: it rebuilds a Counter from (key, value) pairs and so counts
    the pairs instead of copying the counts."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def print_json(value: Any) -> None:
    typer.echo(json.dumps(plain(value), indent=2, default=str, ensure_ascii=False))


def database_url() -> str:
    """The database every command uses (one rule: carspot.pipeline.settings), said on stderr at start-up
    without its password, with a warning when it is the PostgreSQL of `carspot services up` and that is not
    running (a crash or a reboot, not `carspot services down`, which removes its address)."""
    settings = current_settings()
    typer.echo(settings.describe_database(), err=True)
    if settings.database_from_services:
        from carspot.infra.services import postgres_alive

        if not postgres_alive(root=settings.services_dir):
            typer.echo(
                "warning: that PostgreSQL (started by `carspot services up`) is not running: start it again with "
                "`carspot services up`, or run `carspot services down` to forget its address and use SQLite",
                err=True,
            )
    return settings.resolved_database_url


def configure(
    log_level: Annotated[str | None, typer.Option(help="Override CARSPOT_LOG_LEVEL.")] = None,
    log_json: Annotated[bool, typer.Option(help="Log JSON lines instead of key=value.")] = False,
) -> None:
    from carspot.pipeline.logs import configure_logging

    settings = Settings.load()
    if log_level:
        settings.log_level = log_level
    configure_logging(level=settings.log_level, json=log_json or settings.log_json)
    _STATE.settings = settings
