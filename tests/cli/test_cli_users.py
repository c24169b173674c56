"""`carspot users`: add (prompt or stdin), list, token, remove; mistakes are one line and exit 2."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from carspot.cli.main import app
from carspot.store.engine import create_engine_for
from carspot.store.migrate import migrate
from carspot.store.tables import ApiToken, User

PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str


def _run(*args: str, cwd: Path, stdin: str | None = None) -> Done:
    """The command in this process (a subprocess per call costs seconds on a busy machine), in ``cwd``."""
    assert Path.cwd() == cwd
    env = {k: None for k in os.environ if k.startswith("CARSPOT_")}
    env.update(CARSPOT_DATA_DIR=str(cwd / ".carspot"), CARSPOT_LOG_LEVEL="WARNING")
    result = CliRunner().invoke(app, list(args), input=stdin, env=env)
    return Done(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".carspot").mkdir()
    migrate(f"sqlite:///{tmp_path / '.carspot' / 'carspot.db'}")
    return tmp_path


def test_users_are_added_listed_given_tokens_and_removed(workdir: Path) -> None:
    added = _run("users", "add", "Ann", "--role", "admin", "--password-stdin", cwd=workdir, stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {"added": "ann", "role": "admin"}
    assert f"database: sqlite:///{(workdir / '.carspot').resolve()}/carspot.db" in added.stderr
    prompted = _run("users", "add", "bob", cwd=workdir, stdin=f"{PASSWORD}\n{PASSWORD}\n")  # asked twice
    assert prompted.returncode == 0, prompted.stderr

    issued = _run("users", "token", "bob", "--label", "exports", cwd=workdir)
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    assert token.startswith("cst_") and "shown once" in issued.stderr
    engine = create_engine_for(f"sqlite:///{workdir / '.carspot' / 'carspot.db'}")
    try:
        with engine.connect() as conn:
            hashes = conn.execute(select(User.password_hash)).scalars().all()
            tokens = conn.execute(select(ApiToken.id, ApiToken.token_sha256, ApiToken.label)).all()
    finally:
        engine.dispose()
    assert all(h.startswith("$argon2id$") and PASSWORD not in h for h in hashes)
    assert len(tokens) == 1 and token not in tokens[0].token_sha256 and tokens[0].label == "exports"

    listed = json.loads(_run("users", "list", cwd=workdir).stdout)
    assert [(u["name"], u["role"], u["token_ids"]) for u in listed] == [
        ("ann", "admin", []),
        ("bob", "viewer", [tokens[0].id]),
    ]
    revoked = _run("users", "token", "bob", "--revoke", str(tokens[0].id), cwd=workdir)
    assert json.loads(revoked.stdout) == {"revoked": 1}

    last_admin = _run("users", "remove", "ann", cwd=workdir)
    assert last_admin.returncode == 1 and "last admin" in last_admin.stderr
    assert _run("users", "remove", "bob", cwd=workdir).returncode == 0
    assert [u["name"] for u in json.loads(_run("users", "list", cwd=workdir).stdout)] == ["ann"]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("users", "add", "ann", "--role", "owner", "--password-stdin"), PASSWORD, "role must be one of"),
        (("users", "add", "ann", "--password-stdin"), "short", "at least 10 characters"),
        (("users", "add", "a b", "--password-stdin"), PASSWORD, "user name"),
        (("users", "remove", "nobody"), None, "no user 'nobody'"),
        (("users", "token", "nobody"), None, "no user 'nobody'"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(
    workdir: Path, args: tuple[str, ...], stdin: str | None, message: str
) -> None:
    done = _run(*args, cwd=workdir, stdin=stdin)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_a_database_never_migrated_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    done = _run("users", "list", cwd=tmp_path)
    assert done.returncode == 2 and "run `carspot migrate` first" in done.stderr
