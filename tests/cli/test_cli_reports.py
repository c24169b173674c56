"""`carspot report weekly --format …` and `carspot forget`, run as a user would (the installed command, SQLite)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import openpyxl
from sqlalchemy import select

from carspot.dashboards.report import weekly_report
from carspot.store.engine import create_engine_for
from carspot.store.migrate import migrate
from carspot.store.tables import Erasure, Post
from tests.dashboards.data import WEEK, fill_week

CARSPOT = str(Path(sys.executable).with_name("carspot"))


def _database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'carspot.db'}"
    migrate(url)
    engine = create_engine_for(url)
    try:
        fill_week(engine)
    finally:
        engine.dispose()
    return url


def _run(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CARSPOT_DATABASE_URL": url, "CARSPOT_DATA_DIR": str(tmp_path / "data")}
    return subprocess.run([CARSPOT, *args], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)


def test_report_weekly_in_every_format(tmp_path: Path) -> None:
    url = _database(tmp_path)
    as_json = _run(url, tmp_path, "report", "weekly", "--week", WEEK, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    folder = _run(url, tmp_path, "report", "weekly", "--week", WEEK, "--format", "csv", "--output", "tables")
    assert folder.returncode == 0, folder.stderr
    assert sorted(p.name for p in (tmp_path / "tables").iterdir()) == [
        "brands.csv",
        "campaigns.csv",
        "daily.csv",
        "sources.csv",
        "summary.csv",
    ]
    for fmt in ("xlsx", "pdf"):
        done = _run(url, tmp_path, "report", "weekly", "--week", WEEK, "--format", fmt, "--output", f"w.{fmt}")
        assert done.returncode == 0, done.stderr
    book = openpyxl.load_workbook(tmp_path / "w.xlsx")
    assert dict(book["Summary"].iter_rows(values_only=True))["posts"] == data["totals"]["posts"]
    assert (tmp_path / "w.pdf").read_bytes().startswith(b"%PDF")
    bad = _run(url, tmp_path, "report", "weekly", "--format", "docx")
    assert bad.returncode != 0
    source = data["sources"][0]["source"]
    one = _run(url, tmp_path, "report", "weekly", "--week", WEEK, "--format", "json", "--source", source)
    assert one.returncode == 0, one.stderr
    narrowed = json.loads(one.stdout)
    assert narrowed["source"] == source and [s["source"] for s in narrowed["sources"]] == [source]
    assert narrowed["totals"]["posts"] == data["sources"][0]["posts"]


def test_forget_erases_reports_missing_ids_and_logs(tmp_path: Path) -> None:
    url = _database(tmp_path)
    engine = create_engine_for(url)
    now = datetime(2026, 11, 25, tzinfo=UTC)
    try:
        before = weekly_report(engine, week=WEEK, now=now, rank_text_mentions=True).to_dict()
        with engine.connect() as conn:
            post_id = conn.execute(select(Post.post_id).order_by(Post.post_id)).scalars().first()
        assert post_id is not None
        done = _run(url, tmp_path, "forget", post_id, "--by", "dpo")
        assert done.returncode == 0, done.stderr
        assert "erased 1 of 1 post(s)" in done.stdout
        missing = _run(url, tmp_path, "forget", post_id)
        assert missing.returncode == 1 and post_id in missing.stderr
        with engine.connect() as conn:
            assert conn.execute(select(Post).where(Post.post_id == post_id)).first() is None
            assert [r.posts_erased for r in conn.execute(select(Erasure.posts_erased))] == [1, 0]
        assert weekly_report(engine, week=WEEK, now=now, rank_text_mentions=True).to_dict() == before
    finally:
        engine.dispose()
