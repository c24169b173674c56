"""Records refuse bad values where they are built, before any transaction starts."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from carspot.store.records import AnalysisRecord, BrandScore, PostRecord, RegionRecord

from .data import T0, analysis, post, region, sha, top


def test_valid_records_build_and_are_frozen() -> None:
    a = analysis("img")
    assert a.brands[0] == BrandScore(make="bmw", score=0.9, rank=1)
    assert [r.index for r in a.regions] == [0, 1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.mode = "detector"  # type: ignore[misc]


def test_sequences_become_tuples() -> None:
    r = RegionRecord(index=0, x1=0, y1=0, x2=1, y2=1, score=0.5, label="car", brands=list(top("bmw")))  # type: ignore[arg-type]
    assert isinstance(r.brands, tuple)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rank": 0}, "rank"),
        ({"rank": 6}, "rank"),
        ({"rank": True}, "rank"),
        ({"score": 1.01}, r"\[0, 1\]"),
        ({"score": -0.1}, r"\[0, 1\]"),
        ({"score": float("nan")}, "finite"),
        ({"make": ""}, "empty"),
        ({"make": "bm\x00w"}, "NUL"),
    ],
)
def test_brand_score_validation(kwargs: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"make": "bmw", "score": 0.5, "rank": 1} | kwargs
    with pytest.raises(ValueError, match=message):
        BrandScore(**fields)


@pytest.mark.parametrize(
    ("brands", "message"),
    [
        ((BrandScore("bmw", 0.9, 1), BrandScore("audi", 0.8, 1)), "unique"),
        ((BrandScore("bmw", 0.9, 1), BrandScore("audi", 0.8, 3)), "exactly 1..2"),
        ((BrandScore("bmw", 0.9, 2),), "exactly 1..1"),
        ((BrandScore("bmw", 0.9, 1), BrandScore("bmw", 0.8, 2)), "twice"),
        ((BrandScore("bmw", 0.5, 1), BrandScore("audi", 0.8, 2)), "increase"),
    ],
)
def test_top_k_must_be_a_real_ranking(brands: tuple[BrandScore, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(analysis("img"), brands=brands)
    with pytest.raises(ValueError, match=message):
        RegionRecord(index=0, x1=0, y1=0, x2=1, y2=1, score=0.5, label="car", brands=brands)


def test_top_k_may_be_shorter_than_five_or_empty() -> None:
    assert len(analysis("img", ("bmw",)).brands) == 1
    assert analysis("img", (), regions=()).brands == ()


@pytest.mark.parametrize(
    ("box", "score", "message"),
    [
        ((10, 10, 5, 20), 0.5, "x1 <= x2"),
        ((10, 30, 20, 20), 0.5, "y1 <= y2"),
        ((-1, 0, 20, 20), 0.5, "0 <= x1"),
        ((0, 0, float("inf"), 20), 0.5, "finite"),
        ((0, 0, 20, 20), 1.5, r"\[0, 1\]"),
    ],
)
def test_region_validation(box: tuple[float, float, float, float], score: float, message: str) -> None:
    x1, y1, x2, y2 = box
    with pytest.raises(ValueError, match=message):
        RegionRecord(index=0, x1=x1, y1=y1, x2=x2, y2=y2, score=score, label="car")


def test_a_clipped_zero_width_box_is_kept() -> None:
    assert RegionRecord(index=0, x1=640, y1=10, x2=640, y2=20, score=0.3, label="car").x1 == 640


def test_region_index_must_be_non_negative() -> None:
    with pytest.raises(ValueError, match="index"):
        region(-1)


def test_post_validation() -> None:
    good = post("p1", "img")
    with pytest.raises(ValueError, match="64 lowercase hex"):
        dataclasses.replace(good, image_sha256="abc")
    with pytest.raises(ValueError, match="64 lowercase hex"):
        dataclasses.replace(good, image_sha256=sha("img").upper())
    with pytest.raises(ValueError, match="timezone-aware"):
        dataclasses.replace(good, ingested_at=datetime(2025, 1, 1, 12))
    with pytest.raises(ValueError, match="timezone-aware"):
        dataclasses.replace(good, posted_at=datetime(2025, 1, 1, 12))
    with pytest.raises(ValueError, match="positive"):
        dataclasses.replace(good, width=0)
    with pytest.raises(ValueError, match="empty"):
        dataclasses.replace(good, post_id="")
    with pytest.raises(ValueError, match="NUL"):
        dataclasses.replace(good, text="a\x00b")
    # Optional fields may be missing; any timezone is accepted.
    plus_two = timezone(timedelta(hours=2))
    dataclasses.replace(good, author=None, text=None, url=None, posted_at=None, ingested_at=T0.astimezone(plus_two))


def test_analysis_validation() -> None:
    good = analysis("img")
    with pytest.raises(ValueError, match="mode"):
        dataclasses.replace(good, mode="fast")
    with pytest.raises(ValueError, match="no regions"):
        dataclasses.replace(good, mode="standard")
    with pytest.raises(ValueError, match="unique"):
        dataclasses.replace(good, regions=(region(0), region(0)))
    with pytest.raises(ValueError, match="outside"):
        dataclasses.replace(good, regions=(region(0, box=(10, 10, 700, 100)),))
    with pytest.raises(ValueError, match="duration_ms"):
        dataclasses.replace(good, duration_ms=-1.0)
    with pytest.raises(ValueError, match="timezone-aware"):
        dataclasses.replace(good, analyzed_at=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="model_version"):
        dataclasses.replace(good, model_version="")
    with pytest.raises(ValueError, match="RegionRecord"):
        dataclasses.replace(good, regions=({"index": 0},))  # type: ignore[arg-type]


def test_standard_mode_has_whole_image_brands_only() -> None:
    a = analysis("img", mode="standard")
    assert a.regions == ()
    assert a.detector == ""
    assert isinstance(a, AnalysisRecord)
    assert isinstance(post("p", "img"), PostRecord)


def test_confidence_is_the_best_makes_probability_and_none_without_brands() -> None:
    a = analysis("img", ("bmw", "audi"))
    assert a.confidence == 0.9 and a.regions[0].confidence == 0.9
    assert dataclasses.replace(a, brands=(), regions=()).confidence is None
    assert region(0).confidence is None


def test_only_a_car_with_a_top5_can_be_unidentified() -> None:
    a = analysis("img")
    assert dataclasses.replace(a, unidentified=True).unidentified
    with pytest.raises(ValueError, match="no brands means no car"):
        dataclasses.replace(a, brands=(), regions=(), unidentified=True)
    with pytest.raises(ValueError, match="no brands means no car"):
        dataclasses.replace(region(0), unidentified=True)
    with pytest.raises(ValueError, match="bool"):
        dataclasses.replace(a, unidentified=1)
