"""Fixtures every test package shares: where the read-only shared folder is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_path() -> Path:
    return Path(os.environ.get("CARSPOT_SHARED_DIR", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``$CARSPOT_SHARED_DIR`` or ``shared`` beside the repository; missing fails the run, never skips."""
    path = shared_path()
    if not path.is_dir():
        pytest.fail(f"shared folder not found at {path}; set CARSPOT_SHARED_DIR")
    return path


@pytest.fixture(scope="session")
def scenes_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "scenes"
