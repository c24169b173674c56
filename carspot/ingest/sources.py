"""Where posts come from: iterables of :class:`RawPost`, and :class:`BrokenRecord` for unparsable input.

A source never decides whether a picture is good: it hands over a lazy ``read_image`` so the producer loop can
skip duplicates without reading them, and so a huge file is refused from its size (``stat``) before a byte is
read. Bad files and bad lines are yielded, not skipped, so they reach the dead-letter topic with a reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from carspot.ingest.confine import PathPolicy
from carspot.ingest.errors import ImageMissing, ImageTooLarge, SourceError
from carspot.ingest.fields import check_campaign, check_id, check_text

logger = logging.getLogger("carspot.ingest.sources")


@dataclass(frozen=True, slots=True, kw_only=True)
class RawPost:
    """One post as a source saw it; the picture is read only when ``read_image()`` is called.

    ``read_head(n)``, when the source can, returns the first ``n`` bytes: the dead letter of a file refused
    for its size (before reading) still shows what it was.
    """

    post_id: str
    source: str
    author: str | None = None
    text: str | None = None
    url: str | None = None
    posted_at: datetime | None = None
    image_ref: str
    read_image: Callable[[], bytes] = field(repr=False, compare=False)
    read_head: Callable[[int], bytes] | None = field(default=None, repr=False, compare=False)
    campaign: str | None = None
    """The campaign it was collected for: an X rule's tag, a pushed post's ``campaign``."""

    def __post_init__(self) -> None:
        check_id("post_id", self.post_id)
        check_id("source", self.source)
        check_campaign("campaign", self.campaign)
        for name in ("author", "text", "url"):
            check_text(name, getattr(self, name))
        if self.posted_at is not None:
            if self.posted_at.tzinfo is None:
                raise ValueError("posted_at must be time-zone aware")
            object.__setattr__(self, "posted_at", self.posted_at.astimezone(UTC))


@dataclass(frozen=True, slots=True)
class BrokenRecord:
    """A source record that could not even be turned into a post; the loop dead-letters it as is."""

    line_no: int
    reason: str
    raw: bytes = field(repr=False)
    source: str = "jsonl"
    ref: str = ""  # where it came from, e.g. "posts.jsonl:12"
    post_id: str | None = None  # when the record got as far as having one


def read_file_capped(path: Path, *, max_bytes: int, policy: PathPolicy | None = None) -> bytes:
    """Read a regular file of at most ``max_bytes``, refusing a bigger one from its size, before reading it.

    The size is taken from ``fstat`` of the opened file, and the read itself stops at ``max_bytes + 1`` in
    case the file grows meanwhile (or its size is not known, as in ``/proc``). With a ``policy``, a path that
    resolves outside it is refused before it is opened, and checked again once open.
    """
    with _open_regular(path, policy) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > max_bytes:
            raise ImageTooLarge(f"{path}: {size} bytes, limit {max_bytes}", size=size, limit=max_bytes)
        data = _read(handle, path, max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageTooLarge(f"{path}: more than {max_bytes} bytes (grew while reading)", limit=max_bytes)
    return data


def read_file_head(path: Path, size: int, *, policy: PathPolicy | None = None) -> bytes:
    """The first ``size`` bytes of a regular file: what a dead letter keeps of a file refused unread."""
    with _open_regular(path, policy) as handle:
        return _read(handle, path, size)


def _open_regular(path: Path, policy: PathPolicy | None = None) -> BinaryIO:
    """Open for reading without ever blocking: FIFOs, devices and folders are refused (they could block,
    never end, or are not pictures), after opening, so a swap between a check and the open cannot fool it."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if policy is not None:
        policy.check(path)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        raise ImageMissing(f"{path}: no such file") from exc
    except OSError as exc:
        raise SourceError(f"{path}: {exc.strerror or exc}") from exc
    try:
        if policy is not None:
            policy.check_open(fd, path)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SourceError(f"{path}: not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read(handle: BinaryIO, path: Path, size: int) -> bytes:
    try:
        return handle.read(size)
    except OSError as exc:
        raise SourceError(f"{path}: {exc.strerror or exc}") from exc


class FolderSource:
    """Every regular file under a folder, in sorted order, as one post each.

    All files, not only ``*.jpg``: a stray PDF or a broken download must show up in the DLQ, not vanish.
    ``post_id`` is ``"folder:" + sha1(relative path)``, so re-running over the same folder (even moved or
    mounted elsewhere) produces the same ids and de-duplication skips what was already sent.
    """

    source_name = "folder"

    def __init__(self, path: Path, *, recursive: bool = True, max_bytes: int) -> None:
        self.path = Path(path)
        self.recursive = recursive
        self.max_bytes = max_bytes

    def __iter__(self) -> Iterator[RawPost]:
        if not self.path.is_dir():
            raise NotADirectoryError(f"{self.path} is not a folder")
        for relative in self._relative_files():
            file = self.path / relative
            try:
                posted_at: datetime | None = datetime.fromtimestamp(file.stat().st_mtime, UTC)
            except OSError:  # vanished or a dangling link: reading will say why, in the DLQ
                posted_at = None
            yield RawPost(
                post_id=_path_id(relative),
                source=self.source_name,
                posted_at=posted_at,
                image_ref=str(file),
                read_image=partial(read_file_capped, file, max_bytes=self.max_bytes),
                read_head=partial(read_file_head, file),
            )

    def _relative_files(self) -> list[str]:
        """Relative POSIX paths of the files (and links to files), sorted so runs are repeatable."""
        found: list[str] = []
        if self.recursive:
            for dirpath, _dirnames, filenames in os.walk(self.path, onerror=_log_walk_error):
                base = Path(dirpath).relative_to(self.path)
                files = (name for name in filenames if _is_file_like(Path(dirpath, name)))
                found.extend((base / name).as_posix() for name in files)
        else:
            with os.scandir(self.path) as entries:
                found.extend(entry.name for entry in entries if _is_file_like(Path(entry.path)))
        return sorted(found)


class JsonlSource:
    """A replay file, one JSON post per line::

        {"post_id": "123", "image": "img/123.jpg", "author": "a", "text": "t", "url": "https://...",
         "posted_at": "2024-05-01T10:00:00Z", "source": "x", "campaign": "toyota"}

    ``image`` is a path, relative to the JSONL file's folder unless absolute, and must resolve (symlinks too)
    under that folder or one of ``image_dirs``, and never under one of ``denied_dirs`` (the data dir): any
    other is refused as ``path_not_allowed`` without a byte of it read. A line that is not valid JSON,
    lacks ``post_id``/``image`` or has a field of the wrong type becomes a :class:`BrokenRecord` and the run
    goes on. Blank lines are skipped; a naive ``posted_at`` is taken as UTC; an integer ``post_id`` is
    accepted (tweet ids often are) and turned into a string.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int,
        max_line_bytes: int = 1 << 20,
        default_source: str = "jsonl",
        image_dirs: Sequence[Path] = (),
        denied_dirs: Sequence[Path] = (),
    ) -> None:
        self.path = Path(path)
        self.policy = PathPolicy.of(allowed=[self.path.parent, *image_dirs], denied=denied_dirs)
        self.max_bytes = max_bytes
        self.max_line_bytes = max_line_bytes
        self.default_source = default_source

    def __iter__(self) -> Iterator[RawPost | BrokenRecord]:
        with self.path.open("rb") as handle:
            line_no = 0
            while line := handle.readline(self.max_line_bytes + 1):
                line_no += 1
                if len(line) > self.max_line_bytes and not line.endswith(b"\n"):
                    while (rest := handle.readline(self.max_line_bytes + 1)) and not rest.endswith(b"\n"):
                        pass  # skip the remainder of the over-long line without holding it
                    yield self._broken(line_no, f"line longer than {self.max_line_bytes} bytes", line)
                    continue
                if line.strip():
                    yield self._parse(line_no, line)

    def _broken(self, line_no: int, reason: str, raw: bytes, post_id: str | None = None) -> BrokenRecord:
        return BrokenRecord(
            line_no,
            reason,
            raw,
            source=self.default_source,
            ref=f"{self.path.absolute()}:{line_no}",
            post_id=post_id,
        )

    def _parse(self, line_no: int, line: bytes) -> RawPost | BrokenRecord:
        try:
            record = json.loads(line)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            return self._broken(line_no, f"invalid JSON: {exc}", line)
        if not isinstance(record, dict):
            return self._broken(line_no, f"expected a JSON object, got {type(record).__name__}", line)
        post_id = record.get("post_id")
        if isinstance(post_id, int) and not isinstance(post_id, bool):
            post_id = str(post_id)
        if post_id is None:
            return self._broken(line_no, "post_id missing", line)
        try:
            post_id = check_id("post_id", post_id)
        except ValueError as exc:  # not kept as the dead letter's post id: it could not be encoded or stored
            return self._broken(line_no, str(exc), line)
        try:
            image = _required_str(record, "image")
            check_text("image", image)
            if "://" in image:
                raise ValueError("image must be a file path (URLs need a fetching source)")
            fields = {name: check_text(name, record.get(name)) for name in ("author", "text", "url", "source")}
            if fields["source"]:
                check_id("source", fields["source"])
            campaign = check_campaign("campaign", record.get("campaign"))
            posted_at = _parse_time(record.get("posted_at"))
        except ValueError as exc:
            return self._broken(line_no, str(exc), line, post_id=post_id)
        image_path = Path(image)
        if not image_path.is_absolute():
            image_path = self.path.parent / image_path
        return RawPost(
            post_id=post_id,
            source=fields["source"] or self.default_source,
            author=fields["author"],
            text=fields["text"],
            url=fields["url"],
            posted_at=posted_at,
            image_ref=str(image_path),
            read_image=partial(read_file_capped, image_path, max_bytes=self.max_bytes, policy=self.policy),
            read_head=partial(read_file_head, image_path, policy=self.policy),
            campaign=campaign,
        )


def _required_str(record: dict[str, Any], name: str) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} missing or not a non-empty string")
    return value


def _parse_time(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"posted_at must be an ISO-8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"posted_at is not ISO-8601: {value!r}") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _is_file_like(path: Path) -> bool:
    """Regular files and symlinks (a dangling link still becomes a post, rejected as "missing")."""
    try:
        mode = path.lstat().st_mode
    except OSError:
        return True  # vanished between listing and now: let reading report it
    if stat.S_ISLNK(mode):
        return not path.is_dir()
    if stat.S_ISREG(mode):
        return True
    logger.warning("skipping %s: not a regular file", path)
    return False


def _path_id(relative: str) -> str:
    digest = hashlib.sha1(relative.encode("utf-8", "surrogateescape"), usedforsecurity=False)
    return "folder:" + digest.hexdigest()


def _log_walk_error(error: OSError) -> None:
    logger.warning("cannot list %s: %s", error.filename, error.strerror or error)


__all__ = ["BrokenRecord", "FolderSource", "JsonlSource", "RawPost", "read_file_capped", "read_file_head"]
