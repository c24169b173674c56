"""The store's own input types: what the pipeline converts its results into before writing.

They are validated on construction so that a bad record fails where it is built (and goes to the dead-letter
topic with a reason), not half-way through a database transaction. Coordinates are pixels of the analysed
image; datetimes must be timezone-aware (the store keeps UTC).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Final

MODES: Final = frozenset({"standard", "region-search", "detector"})
"""The analysis modes the store accepts (see ARCHITECTURE.md, "Modes of analysis")."""

MAX_RANK: Final = 5
"""The store keeps the top-5 brands per image and per region."""

MAX_THUMBNAIL_BYTES: Final = 64 << 10
"""The largest thumbnail the store accepts: the worker makes them well under it (see ``pipeline/thumbnails``)."""

MAX_THUMBNAIL_SIDE: Final = 512
"""The longest side a stored thumbnail may have, in pixels."""

_JPEG_MAGIC: Final = b"\xff\xd8\xff"

_SHA256 = re.compile(r"[0-9a-f]{64}")


def _is_number(value: object) -> bool:
    """A finite int or float (bool is an int to Python, but never a score or a coordinate)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_unit_score(what: str, score: float) -> None:
    if not _is_number(score):
        raise ValueError(f"{what}: score must be a finite number, got {score!r}")
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"{what}: score must be in [0, 1], got {score!r}")


def _check_aware(what: str, value: datetime | None, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, datetime):
        raise ValueError(f"{what} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")


def _check_sha256(what: str, value: str) -> None:
    if not isinstance(value, str) or _SHA256.fullmatch(value) is None:
        raise ValueError(f"{what} must be 64 lowercase hex characters, got {value!r}")


def _check_size(what: str, width: int, height: int) -> None:
    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{what}: {name} must be a positive int, got {v!r}")


def _check_text(what: str, value: str | None, *, optional: bool) -> None:
    """Text must be a str without NUL: PostgreSQL refuses NUL in text and would fail the whole batch."""
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a str, got {value!r}")
    if not optional and not value:
        raise ValueError(f"{what} must not be empty")
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters")


def _check_top_k(what: str, brands: tuple[BrandScore, ...]) -> None:
    """A top-k list: ranks exactly 1..k (k <= 5), distinct makes, scores not increasing with rank."""
    if not all(isinstance(b, BrandScore) for b in brands):
        raise ValueError(f"{what}: brands must be BrandScore instances")
    ranked = sorted(brands, key=lambda b: b.rank)
    ranks = [b.rank for b in ranked]
    if ranks != list(range(1, len(ranked) + 1)):
        raise ValueError(f"{what}: brand ranks must be unique and exactly 1..{len(ranked)}, got {ranks}")
    makes = [b.make for b in ranked]
    if len(set(makes)) != len(makes):
        raise ValueError(f"{what}: a make appears twice in the top-{len(ranked)}: {makes}")
    scores = [b.score for b in ranked]
    if any(later > earlier for earlier, later in pairwise(scores)):
        raise ValueError(f"{what}: brand scores must not increase with rank, got {scores}")


def _check_unidentified(what: str, unidentified: bool, brands: tuple[BrandScore, ...]) -> None:
    """Only a car with a top-5 can be unidentified: without brands there is no make to doubt."""
    if not isinstance(unidentified, bool):
        raise ValueError(f"{what}: unidentified must be a bool, got {unidentified!r}")
    if unidentified and not brands:
        raise ValueError(f"{what}: unidentified needs the top-5 it doubts; no brands means no car")


def _confidence(brands: tuple[BrandScore, ...]) -> float | None:
    return min(brands, key=lambda b: b.rank).score if brands else None


@dataclass(frozen=True, slots=True)
class BrandScore:
    """One brand of a top-5: rank 1 is the most confident."""

    make: str
    score: float
    rank: int

    def __post_init__(self) -> None:
        _check_text("BrandScore.make", self.make, optional=False)
        _check_unit_score(f"BrandScore({self.make!r})", self.score)
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or not 1 <= self.rank <= MAX_RANK:
            raise ValueError(f"BrandScore({self.make!r}): rank must be an int in 1..{MAX_RANK}, got {self.rank!r}")


@dataclass(frozen=True, slots=True)
class RegionRecord:
    """A car region of an analysed image (pixel box, detector score, label) and its own top-5 brands."""

    index: int
    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    label: str
    brands: tuple[BrandScore, ...] = ()
    unidentified: bool = False
    """A car whose best make is below the confidence the analysis asks for: its top-5 is kept, not counted."""

    @property
    def confidence(self) -> float | None:
        """The calibrated probability of its best make (None without brands)."""
        return _confidence(self.brands)

    def __post_init__(self) -> None:
        what = f"RegionRecord({self.index!r})"
        if not isinstance(self.index, int) or isinstance(self.index, bool) or self.index < 0:
            raise ValueError(f"{what}: index must be an int >= 0")
        coords = (self.x1, self.y1, self.x2, self.y2)
        if not all(_is_number(c) for c in coords):
            raise ValueError(f"{what}: box coordinates must be finite numbers, got {coords}")
        # Degenerate (zero-width) boxes are allowed: the detector clips boxes to the image and may keep one.
        if not (0 <= self.x1 <= self.x2 and 0 <= self.y1 <= self.y2):
            raise ValueError(f"{what}: box must satisfy 0 <= x1 <= x2 and 0 <= y1 <= y2, got {coords}")
        _check_unit_score(what, self.score)
        _check_text(f"{what}.label", self.label, optional=False)
        object.__setattr__(self, "brands", tuple(self.brands))
        _check_top_k(what, self.brands)
        _check_unidentified(what, self.unidentified, self.brands)


MENTION_VIA: Final = frozenset({"handle", "hashtag", "name", "model"})


@dataclass(frozen=True, slots=True)
class MentionRecord:
    """A make the post's text names, and how (``handle``, ``hashtag``, ``name`` or ``model``)."""

    make: str
    via: str

    def __post_init__(self) -> None:
        _check_text("MentionRecord.make", self.make, optional=False)
        if self.via not in MENTION_VIA:
            allowed = sorted(MENTION_VIA)
            raise ValueError(f"MentionRecord({self.make!r}): via must be one of {allowed}, got {self.via!r}")


@dataclass(frozen=True, slots=True)
class ThumbnailRecord:
    """A small JPEG of the analysed image, for the dashboards (not for analysis: it is lossy and tiny)."""

    jpeg: bytes = field(repr=False)
    width: int
    height: int

    def __post_init__(self) -> None:
        if not isinstance(self.jpeg, bytes) or not self.jpeg.startswith(_JPEG_MAGIC):
            raise ValueError("ThumbnailRecord.jpeg must be JPEG bytes")
        if len(self.jpeg) > MAX_THUMBNAIL_BYTES:
            raise ValueError(f"ThumbnailRecord: {len(self.jpeg)} bytes, the limit is {MAX_THUMBNAIL_BYTES}")
        _check_size("ThumbnailRecord", self.width, self.height)
        if max(self.width, self.height) > MAX_THUMBNAIL_SIDE:
            raise ValueError(
                f"ThumbnailRecord: {self.width}x{self.height} is not a thumbnail (longest side <= {MAX_THUMBNAIL_SIDE})"
            )


@dataclass(frozen=True, slots=True)
class PostRecord:
    """A social-media post as ingested; it links to its (normalised) image by SHA-256."""

    post_id: str
    source: str
    author: str | None
    text: str | None
    url: str | None
    posted_at: datetime | None
    ingested_at: datetime
    image_sha256: str
    width: int
    height: int
    campaign: str | None = None
    """The campaign it was collected for (an X rule's tag, a pushed post's field); ingest checks its form."""
    mentions: tuple[MentionRecord, ...] = ()
    """The makes its text names (stored with the post, in the same transaction)."""

    def __post_init__(self) -> None:
        _check_text("PostRecord.post_id", self.post_id, optional=False)
        what = f"PostRecord({self.post_id!r})"
        _check_text(f"{what}.source", self.source, optional=False)
        _check_text(f"{what}.author", self.author, optional=True)
        _check_text(f"{what}.text", self.text, optional=True)
        _check_text(f"{what}.url", self.url, optional=True)
        _check_text(f"{what}.campaign", self.campaign, optional=True)
        if self.campaign == "":
            raise ValueError(f"{what}.campaign must be None or non-empty")
        _check_aware(f"{what}.posted_at", self.posted_at, optional=True)
        _check_aware(f"{what}.ingested_at", self.ingested_at)
        _check_sha256(f"{what}.image_sha256", self.image_sha256)
        _check_size(what, self.width, self.height)
        object.__setattr__(self, "mentions", tuple(self.mentions))
        if not all(isinstance(m, MentionRecord) for m in self.mentions):
            raise ValueError(f"{what}: mentions must be MentionRecord instances")
        named = [m.make for m in self.mentions]
        if len(set(named)) != len(named):
            raise ValueError(f"{what}: a make is mentioned twice: {named}")


@dataclass(frozen=True, slots=True)
class AnalysisRecord:
    """One analysis of one image in one mode by one model version: its car regions and image top-5.

    ``(image_sha256, mode, model_version)`` identifies it: the same picture reposted is analysed once.
    """

    image_sha256: str
    width: int
    height: int
    mode: str
    detector: str
    model_version: str
    regions: tuple[RegionRecord, ...]
    brands: tuple[BrandScore, ...]
    analyzed_at: datetime
    duration_ms: float
    unidentified: bool = False
    """The image shows a car but its best make is below the confidence the analysis asks for: its top-5 is kept
    (for a later, lower threshold) but brand share does not count it."""
    thumbnail: ThumbnailRecord | None = None
    """The image's thumbnail, written in the same transaction (kept once per image, whatever the mode)."""

    @property
    def confidence(self) -> float | None:
        """The calibrated probability of the image's best make (None without brands: no car)."""
        return _confidence(self.brands)

    def __post_init__(self) -> None:
        _check_sha256("AnalysisRecord.image_sha256", self.image_sha256)
        what = f"AnalysisRecord({self.image_sha256[:12]}, {self.mode!r})"
        _check_size(what, self.width, self.height)
        if self.mode not in MODES:
            raise ValueError(f"{what}: mode must be one of {sorted(MODES)}")
        if not isinstance(self.detector, str) or "\x00" in self.detector:
            raise ValueError(f"{what}: detector must be a str without NUL (empty when none was used)")
        _check_text(f"{what}.model_version", self.model_version, optional=False)
        object.__setattr__(self, "regions", tuple(self.regions))
        object.__setattr__(self, "brands", tuple(self.brands))
        if not all(isinstance(r, RegionRecord) for r in self.regions):
            raise ValueError(f"{what}: regions must be RegionRecord instances")
        indexes = [r.index for r in self.regions]
        if len(set(indexes)) != len(indexes):
            raise ValueError(f"{what}: region indexes must be unique, got {indexes}")
        if self.mode == "standard" and self.regions:
            raise ValueError(f"{what}: the standard mode classifies the whole image and has no regions")
        for r in self.regions:
            if r.x2 > self.width or r.y2 > self.height:
                raise ValueError(
                    f"{what}: region {r.index} box {(r.x1, r.y1, r.x2, r.y2)} lies outside the "
                    f"{self.width}x{self.height} image (boxes are in pixels)"
                )
        _check_top_k(what, self.brands)
        _check_unidentified(what, self.unidentified, self.brands)
        _check_aware(f"{what}.analyzed_at", self.analyzed_at)
        if self.thumbnail is not None and not isinstance(self.thumbnail, ThumbnailRecord):
            raise ValueError(f"{what}: thumbnail must be a ThumbnailRecord")
        d = self.duration_ms
        if not _is_number(d) or d < 0:
            raise ValueError(f"{what}: duration_ms must be a finite number >= 0, got {d!r}")
