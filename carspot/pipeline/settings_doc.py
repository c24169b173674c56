"""The settings reference (docs/configuration.md), generated from the Settings class so it cannot drift from
the code: every field's variable, default and description (its attribute docstring or ``description``).

Regenerate with ``python -m carspot.pipeline.settings_doc > docs/configuration.md``; a test checks the file.
"""

from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from carspot.pipeline.settings import Settings

_REPO_ROOT = Path(__file__).resolve().parents[2]
HEADER = """# Configuration

<!-- Generated from carspot.pipeline.settings.Settings by `python -m carspot.pipeline.settings_doc`; do not edit. -->

Every setting is an environment variable (or a line in `.env`). `carspot services up` writes the addresses of the
services it started to `.carspot/services/services.env`, which is read after `.env` until `carspot services down`
removes it (which database every command uses: docs/dashboard-access.md). A variable set but empty means unset.
Paths are shown relative to the repository.

| variable | default | meaning |
|---|---|---|
"""


def shown_default(field: FieldInfo) -> str:
    """The default as a reader should see it: paths relative to the repository, secrets and empties named."""
    value: Any = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None or value == "":
        return "none"
    if isinstance(value, Path):
        shown = os.path.relpath(value, _REPO_ROOT) if value.is_absolute() else str(value)
        return f"`{shown}`"
    if isinstance(value, Enum):
        return f"`{value.value}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple | list):
        return f"`{json.dumps(list(value))}`"
    return f"`{value}`"


def settings_table() -> str:
    rows = []
    for name, field in Settings.model_fields.items():
        meaning = " ".join((field.description or "").split()).replace("|", "\\|")
        rows.append(f"| `CARSPOT_{name.upper()}` | {shown_default(field)} | {meaning} |")
    return HEADER + "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(settings_table(), end="")
