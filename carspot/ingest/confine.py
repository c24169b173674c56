"""Which files a replay may read: a JSONL line names its picture by path, and a hostile file could name any
file the process can read (``/etc/passwd``, the data dir's ``services.env`` with the database password)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from carspot.ingest.errors import PathNotAllowed


@dataclass(frozen=True, slots=True)
class PathPolicy:
    """Files under one of ``allowed`` and under none of ``denied``, all compared as resolved real paths."""

    allowed: tuple[Path, ...]
    denied: tuple[Path, ...] = ()

    @classmethod
    def of(cls, *, allowed: Iterable[Path], denied: Iterable[Path] = ()) -> PathPolicy:
        return cls(tuple(Path(p).resolve() for p in allowed), tuple(Path(p).resolve() for p in denied))

    def check(self, path: str | Path) -> None:
        """Raise ``PathNotAllowed`` unless the real path (symlinks followed) lies where it may."""
        real = Path(os.path.realpath(path))
        if not any(real.is_relative_to(root) for root in self.allowed):
            raise PathNotAllowed(f"{path}: outside the folders images may be read from")
        if any(real.is_relative_to(root) for root in self.denied):
            raise PathNotAllowed(f"{path}: inside CarSpot's data folder")

    def check_open(self, fd: int, path: str | Path) -> None:
        """The same check on what an open descriptor really is, so a link swapped after ``check`` cannot fool
        it (Linux's ``/proc/self/fd``; elsewhere the path is resolved again)."""
        try:
            opened = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            opened = os.path.realpath(path)
        self.check(opened)


__all__ = ["PathPolicy"]
