"""The wire message on ``carspot.posts``: one image post, header as JSON plus the normalised JPEG.

Layout (version 1)::

    b"CSP" | version:u8 | header_len:u32 big-endian | header (UTF-8 JSON) | image (JPEG bytes, may be empty)

The header carries the post's metadata; the image travels as raw bytes (no base64: 33 % less on the wire).
A post whose picture was already sent under the same sha256 carries no image (``image is None``): the worker
links it to the existing analysis. Anything that does not parse raises the one ``DecodeError``.

Optional header fields added later (``campaign``) are read as absent (None) from older messages, and older
workers ignore them, so the version stays 1.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from carspot.ingest.fields import check_campaign, check_id, check_text

MAGIC = b"CSP"
VERSION = 1
_PREFIX = struct.Struct(">3sBI")
_MAX_HEADER_BYTES = 1 << 20


class DecodeError(ValueError):
    """The bytes are not a CarSpot Post message of a version this code understands."""


class InvalidPost(DecodeError):
    """The message parses, but a field breaks the rules ingest applies (``carspot.ingest.fields``)."""


def _parse_time(value: object, *, name: str, required: bool) -> datetime | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise DecodeError(f"{name} must be an ISO-8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise DecodeError(f"{name} is not ISO-8601: {value!r}") from exc
    if parsed.tzinfo is None:
        raise DecodeError(f"{name} has no time zone")
    return parsed


def _optional_str(header: dict[str, Any], name: str) -> str | None:
    value = header.get(name)
    if value is not None and not isinstance(value, str):
        raise DecodeError(f"{name} must be a string or null")
    return value


def _required_str(header: dict[str, Any], name: str) -> str:
    value = header.get(name)
    if not isinstance(value, str) or not value:
        raise DecodeError(f"{name} must be a non-empty string")
    return value


def _positive_int(header: dict[str, Any], name: str) -> int:
    value = header.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise DecodeError(f"{name} must be a positive integer")
    return value


@dataclass(frozen=True, slots=True)
class Post:
    """One image post as it travels from ingest to the analysis workers."""

    post_id: str
    source: str
    ingested_at: datetime
    image_sha256: str
    width: int
    height: int
    image: bytes | None = field(repr=False)
    author: str | None = None
    text: str | None = None
    url: str | None = None
    posted_at: datetime | None = None
    mode: str | None = None  # per-message override of the analysis mode
    campaign: str | None = None  # an X rule's tag or a pushed post's campaign

    def __post_init__(self) -> None:
        check_id("post_id", self.post_id)  # ingest's own rules: what it sends, the worker accepts
        check_id("source", self.source)
        check_campaign("campaign", self.campaign)
        for name in ("author", "text", "url", "mode"):
            check_text(name, getattr(self, name))
        if len(self.image_sha256) != 64 or any(c not in "0123456789abcdef" for c in self.image_sha256):
            raise ValueError("image_sha256 must be 64 lowercase hex characters")
        if self.ingested_at.tzinfo is None or (self.posted_at is not None and self.posted_at.tzinfo is None):
            raise ValueError("timestamps must be time-zone aware")
        if self.width <= 0 or self.height <= 0:
            raise ValueError("width and height must be positive")

    @property
    def is_link(self) -> bool:
        """True when the picture was already sent: this post only links to the existing analysis."""
        return self.image is None

    def encode(self) -> bytes:
        header = {k: v for k, v in asdict(self).items() if k != "image"}
        header["ingested_at"] = self.ingested_at.isoformat()
        header["posted_at"] = self.posted_at.isoformat() if self.posted_at else None
        header["has_image"] = self.image is not None
        raw = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
        return _PREFIX.pack(MAGIC, VERSION, len(raw)) + raw + (self.image or b"")

    @classmethod
    def decode(cls, data: bytes) -> Post:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise DecodeError(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) < _PREFIX.size:
            raise DecodeError("message shorter than its prefix")
        magic, version, header_len = _PREFIX.unpack_from(data)
        if magic != MAGIC:
            raise DecodeError("not a CarSpot post (bad magic)")
        if version != VERSION:
            raise DecodeError(f"unsupported message version {version}")
        if header_len > _MAX_HEADER_BYTES or _PREFIX.size + header_len > len(data):
            raise DecodeError("header length out of range")
        try:
            header = json.loads(data[_PREFIX.size : _PREFIX.size + header_len])
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DecodeError(f"header is not JSON: {exc}") from exc
        if not isinstance(header, dict):
            raise DecodeError("header must be a JSON object")
        image = data[_PREFIX.size + header_len :]
        has_image = header.get("has_image")
        if not isinstance(has_image, bool) or has_image != bool(image):
            raise DecodeError("has_image does not match the image bytes")
        sha = _required_str(header, "image_sha256")
        if image and hashlib.sha256(image).hexdigest() != sha:
            raise DecodeError("image bytes do not match image_sha256")
        try:
            return cls(
                post_id=_required_str(header, "post_id"),
                source=_required_str(header, "source"),
                ingested_at=_parse_time(header.get("ingested_at"), name="ingested_at", required=True),  # type: ignore[arg-type]
                image_sha256=sha,
                width=_positive_int(header, "width"),
                height=_positive_int(header, "height"),
                image=image or None,
                author=_optional_str(header, "author"),
                text=_optional_str(header, "text"),
                url=_optional_str(header, "url"),
                posted_at=_parse_time(header.get("posted_at"), name="posted_at", required=False),
                mode=_optional_str(header, "mode"),
                campaign=_optional_str(header, "campaign"),
            )
        except ValueError as exc:
            if isinstance(exc, DecodeError):
                raise
            raise InvalidPost(str(exc)) from exc
