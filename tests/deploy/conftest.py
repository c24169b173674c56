"""The deploy/ folder's files, and promtool (Debian's prometheus package, installed by `carspot services up`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture(scope="session")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:  # a missing tool fails, never skips
        pytest.fail("promtool not found: `carspot services up` installs Debian's prometheus package (scripts/test)")
    return found
