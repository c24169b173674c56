"""Hand-made records for the store tests: small, explicit, and easy to count."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from carspot.store.records import AnalysisRecord, BrandScore, PostRecord, RegionRecord

T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
MODEL = "brands-v1"


def sha(name: str) -> str:
    """A stable SHA-256 standing for the image called ``name``."""
    return hashlib.sha256(name.encode()).hexdigest()


def top(*makes: str) -> tuple[BrandScore, ...]:
    """A top-k with decreasing scores: ``top("bmw", "audi")`` has bmw at rank 1."""
    return tuple(BrandScore(make=make, score=round(0.9 - 0.15 * i, 2), rank=i + 1) for i, make in enumerate(makes))


def post(
    post_id: str,
    image: str,
    *,
    at: datetime = T0,
    size: tuple[int, int] = (640, 480),
    text: str | None = "look at this car",
) -> PostRecord:
    return PostRecord(
        post_id=post_id,
        source="folder",
        author="@someone",
        text=text,
        url=f"https://example.test/{post_id}",
        posted_at=at - timedelta(minutes=5),
        ingested_at=at,
        image_sha256=sha(image),
        width=size[0],
        height=size[1],
    )


def region(index: int, *makes: str, box: tuple[float, float, float, float] = (10, 20, 200, 180)) -> RegionRecord:
    x1, y1, x2, y2 = box
    return RegionRecord(
        index=index, x1=x1, y1=y1, x2=x2, y2=y2, score=0.8, label="car", brands=top(*makes) if makes else ()
    )


def analysis(
    image: str,
    brands: Sequence[str] = ("bmw", "audi", "mercedes-benz", "volkswagen", "toyota"),
    *,
    mode: str = "region-search",
    at: datetime = T0,
    regions: Sequence[RegionRecord] | None = None,
    model_version: str = MODEL,
    size: tuple[int, int] = (640, 480),
) -> AnalysisRecord:
    if regions is None:
        regions = () if mode == "standard" else (region(0, *brands[:3]), region(1, *brands[:2]))
    return AnalysisRecord(
        image_sha256=sha(image),
        width=size[0],
        height=size[1],
        mode=mode,
        detector="" if mode == "standard" else "selective-search+svm",
        model_version=model_version,
        regions=tuple(regions),
        brands=top(*brands),
        analyzed_at=at,
        duration_ms=123.4,
    )
