"""The committed release, copied where a test may change it."""

from __future__ import annotations

import shutil
from pathlib import Path

from carspot.classifier.registry import current_version

MODELS = Path(__file__).resolve().parents[2] / "models"


def release_copy(tmp_path: Path) -> tuple[Path, str]:
    """A model directory at ``tmp_path`` holding the current release (its version folder and ``CURRENT``)."""
    version = current_version(MODELS)
    assert version is not None
    shutil.copytree(MODELS / "versions" / version, tmp_path / "versions" / version)
    (tmp_path / "CURRENT").write_text(version + "\n")
    return tmp_path, version
