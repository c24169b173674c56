"""`carspot thumbnails purge` applies the retention to the configured database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from carspot.cli.main import app
from carspot.store.engine import create_engine_for
from carspot.store.migrate import migrate
from carspot.store.queries import thumbnail
from carspot.store.writer import AnalysisStore
from tests.store.data import sha
from tests.store.test_brand_queries import analysed, jpeg, posted


def test_purge_deletes_what_is_older_than_the_retention(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'carspot.db'}"
    migrate(url)
    engine = create_engine_for(url)
    now = datetime.now(UTC)
    for name, age in (("old", timedelta(days=40)), ("new", timedelta(days=2))):
        AnalysisStore(engine).write_batch(
            posts=[posted(f"p-{name}", name, now - age, "folder")],
            analyses=[analysed(name, now - age, [("BMW", 0.9)], mode="standard", thumb=jpeg())],
        )
    env = {"CARSPOT_DATA_DIR": str(tmp_path), "CARSPOT_DATABASE_URL": url, "CARSPOT_THUMBNAIL_RETENTION_DAYS": "30"}
    result = CliRunner().invoke(app, ["thumbnails", "purge"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["deleted"] == 1
    assert thumbnail(engine, image_sha256=sha("old")) is None
    assert thumbnail(engine, image_sha256=sha("new")) is not None
    engine.dispose()
