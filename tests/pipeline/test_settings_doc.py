"""docs/configuration.md is the Settings class, rendered: a setting added, renamed or re-described without
regenerating it fails here, and so does a setting without a description."""

from __future__ import annotations

from pathlib import Path

from carspot.pipeline.settings import Settings
from carspot.pipeline.settings_doc import settings_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_says_what_it_means() -> None:
    assert [name for name, field in Settings.model_fields.items() if not (field.description or "").strip()] == []


def test_the_configuration_reference_is_generated_from_the_settings_class() -> None:
    assert DOC.read_text(encoding="utf-8") == settings_table(), (
        "regenerate: python -m carspot.pipeline.settings_doc > docs/configuration.md"
    )


def test_every_setting_has_one_row_under_its_environment_variable() -> None:
    table = settings_table()
    for name in Settings.model_fields:
        assert table.count(f"| `CARSPOT_{name.upper()}` |") == 1
