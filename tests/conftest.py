"""Fixtures every test package shares: where the read-only shared folder is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# TensorFlow's oneDNN kernels pick their arithmetic by the CPU's instruction set: on an AVX-512 machine the CenterNet
# SavedModel drifted 1.05e-3 from its LiteRT file (AVX2 machines, and this one with oneDNN off: within 1e-3). Tests
# that compare a conversion with its TensorFlow reference need the reference to be the same on every CI machine, so
# TensorFlow runs its portable kernels here (set before any test imports it; subprocesses inherit it).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


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
