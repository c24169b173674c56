"""`carspot users`: who may sign in to the dashboard (viewer or admin), and API tokens for programs."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from carspot.cli.common import database_url, print_json

if TYPE_CHECKING:
    from carspot.dashboards.accounts import Accounts

app = typer.Typer(help="Dashboard users (viewer or admin) and their API tokens.", no_args_is_help=True)

_T = TypeVar("_T")
NameArg = Annotated[str, typer.Argument(help="User name (case-insensitive).")]


@contextmanager
def _accounts() -> Iterator[Accounts]:
    from carspot.dashboards.accounts import Accounts
    from carspot.store.engine import create_engine_for

    engine = create_engine_for(database_url())
    try:
        yield Accounts(engine)
    finally:
        engine.dispose()


def _run(action: Callable[[], _T]) -> _T:
    """A wrong name, role or password, or a database without the users table, is one line and exit 2."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from carspot.dashboards.accounts import AccountError

    try:
        return action()
    except AccountError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except (OperationalError, ProgrammingError) as exc:
        typer.echo(f"error: cannot use the users table ({type(exc).__name__}): run `carspot migrate` first", err=True)
        raise typer.Exit(2) from exc


def _read_password(*, from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@app.command("add")
def add(
    name: NameArg,
    role: Annotated[str, typer.Option(help="viewer (reads everything) or admin (also manages users).")] = "viewer",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin, no prompt.")
    ] = False,
) -> None:
    """Add a user; the password is asked twice (or read from stdin) and stored as an argon2 hash."""
    password = _read_password(from_stdin=password_stdin)
    with _accounts() as accounts:
        account = _run(lambda: accounts.add_user(name, role=role, password=password, now=datetime.now(UTC)))
    print_json({"added": account.name, "role": account.role})


@app.command("password")
def password(
    name: NameArg,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read it from stdin, no prompt.")] = False,
) -> None:
    """Set a new password; the user's browsers are signed out (API tokens stay: revoke them apart)."""
    new = _read_password(from_stdin=password_stdin)
    with _accounts() as accounts:
        _run(lambda: accounts.set_password(name, password=new))
    print_json({"password_changed": name.strip().lower()})


@app.command("list")
def list_users() -> None:
    """Every user with role, creation time and the ids of their API tokens."""
    with _accounts() as accounts:
        print_json(_run(accounts.list_users))


@app.command("remove")
def remove(name: NameArg) -> None:
    """Remove a user with their sessions and tokens; the last admin stays (add another admin first)."""
    with _accounts() as accounts:

        def act() -> None:
            rows = {u.name: u for u in accounts.list_users()}
            user = rows.get(name.strip().lower())
            if user is not None and user.role == "admin" and accounts.count_admins() == 1:
                typer.echo(f"error: {user.name} is the last admin: add another admin first", err=True)
                raise typer.Exit(1)
            accounts.remove_user(name)

        _run(act)
    print_json({"removed": name.strip().lower()})


@app.command("token")
def token(
    name: NameArg,
    label: Annotated[str | None, typer.Option(help="What the token is for (shown nowhere but the database).")] = None,
    revoke: Annotated[
        list[int] | None, typer.Option(help="Revoke this token id (see `users list`); repeatable.")
    ] = None,
    revoke_all: Annotated[bool, typer.Option(help="Revoke every token of the user.")] = False,
) -> None:
    """Issue an API token (printed once: only its hash is kept) for `Authorization: Bearer` on /api/… and
    /reports/…, acting as the user; or revoke tokens."""
    with _accounts() as accounts:
        if revoke or revoke_all:
            count = _run(lambda: accounts.revoke_tokens(name, token_ids=None if revoke_all else list(revoke or [])))
            print_json({"revoked": count})
            return
        token_id, value = _run(lambda: accounts.issue_token(name, label=label, now=datetime.now(UTC)))
    typer.echo(f"token id {token_id} for {name.strip().lower()} (shown once, keep it secret):", err=True)
    typer.echo(value)
