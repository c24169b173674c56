"""Dead-letter records: bad input is kept, with the reason, never dropped silently.

Layout: ``b"CSD" | version:u8 | header_len:u32 | header (JSON) | original bytes (possibly a capped prefix)``.
The header says at which stage it failed, the reason code, a human detail, where the input came from (post
id, image reference, or the Kafka topic/partition/offset of the original message) and whether the original was
cut to fit.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from carspot.pipeline.message import DecodeError

MAGIC = b"CSD"
VERSION = 1
_PREFIX = struct.Struct(">3sBI")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One input CarSpot could not process, and why."""

    stage: str  # "ingest" | "worker"
    reason: str  # a stable machine-readable code, e.g. "truncated", "decode_error"
    detail: str
    original: bytes = field(repr=False)
    post_id: str | None = None
    source: str | None = None
    image_ref: str | None = None
    original_size: int | None = None
    truncated: bool = False
    origin_topic: str | None = None
    origin_partition: int | None = None
    origin_offset: int | None = None
    failed_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def key(self) -> bytes:
        """Kafka key: the post id when known, else where the original came from."""
        if self.post_id:
            return self.post_id.encode("utf-8", "backslashreplace")
        if self.origin_topic is not None:
            return f"{self.origin_topic}/{self.origin_partition}/{self.origin_offset}".encode()
        return (self.image_ref or "unknown").encode("utf-8", "backslashreplace")

    def encode(self) -> bytes:
        header: dict[str, Any] = {k: v for k, v in asdict(self).items() if k != "original"}
        header["failed_at"] = self.failed_at.isoformat()
        # ASCII escapes: a dead letter must be writable whatever it carries (a lone surrogate included)
        raw = json.dumps(header, ensure_ascii=True, separators=(",", ":")).encode()
        return _PREFIX.pack(MAGIC, VERSION, len(raw)) + raw + self.original

    @classmethod
    def decode(cls, data: bytes) -> DeadLetter:
        if len(data) < _PREFIX.size:
            raise DecodeError("dead letter shorter than its prefix")
        magic, version, header_len = _PREFIX.unpack_from(data)
        if magic != MAGIC or version != VERSION or _PREFIX.size + header_len > len(data):
            raise DecodeError("not a CarSpot dead letter of a known version")
        try:
            header = json.loads(data[_PREFIX.size : _PREFIX.size + header_len])
            header["failed_at"] = datetime.fromisoformat(header["failed_at"])
            return cls(original=bytes(data[_PREFIX.size + header_len :]), **header)
        except (ValueError, TypeError, KeyError) as exc:
            raise DecodeError(f"bad dead-letter header: {exc}") from exc

    def as_json(self) -> dict[str, Any]:
        """A printable summary (without the original bytes)."""
        summary = {k: v for k, v in asdict(self).items() if k != "original"}
        summary["failed_at"] = self.failed_at.isoformat()
        summary["original_bytes"] = len(self.original)
        return summary
