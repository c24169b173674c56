"""The dashboard queries return the expected numbers on a small hand-made data set.

Images (day 1 = 2025-03-10, day 2 = 2025-03-11, all UTC):
  A  region-search v1 at day1 12:00 top bmw,audi,mini; posts pA1, pA2;
     re-analysed by model v2 at day2 13:00 top mini,bmw
  B  region-search at day1 13:00 top audi,bmw; post pB1 at day1 23:30 UTC (given as day2 01:30 +02:00)
  C  region-search at day2 12:00 top bmw,toyota; post pC1
  D  standard at day1 14:00 top bmw (no regions); post pD
  E  post pE only, never analysed
Every region-search analysis has 2 car regions.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from carspot.store.queries import (
    BrandShare,
    Counts,
    DailyCount,
    ModelVersionUse,
    analysed_images,
    brand_share,
    counts,
    daily_counts,
    last_analysis_at,
    model_versions,
    posts_without_analysis,
    recent_analyses,
    unidentified_images,
)
from carspot.store.records import BrandScore
from carspot.store.writer import AnalysisStore

from .data import MODEL, T0, analysis, post, sha

DAY1 = datetime(2025, 3, 10, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
DAY3 = DAY1 + timedelta(days=2)
ONE_DAY, TWO_DAYS = (DAY1, DAY2), (DAY1, DAY3)


@pytest.fixture
def data(engine: Engine) -> Engine:
    assert DAY1 + timedelta(hours=12) == T0
    late_b = datetime(2025, 3, 10, 23, 30, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    AnalysisStore(engine).write_batch(
        posts=[
            post("pA1", "A", at=T0),
            post("pA2", "A", at=T0 + timedelta(hours=1)),
            post("pB1", "B", at=late_b),
            post("pC1", "C", at=T0 + timedelta(days=1)),
            post("pD", "D", at=T0 + timedelta(hours=2)),
            post("pE", "E", at=T0 + timedelta(days=1, hours=5)),
        ],
        analyses=[
            analysis("A", ("bmw", "audi", "mini"), at=T0),
            analysis("A", ("mini", "bmw"), at=T0 + timedelta(days=1, hours=1), model_version="brands-v2"),
            analysis("B", ("audi", "bmw"), at=T0 + timedelta(hours=1)),
            analysis("C", ("bmw", "toyota"), at=T0 + timedelta(days=1)),
            analysis("D", ("bmw",), mode="standard", at=T0 + timedelta(hours=2)),
        ],
    )
    return engine


def test_counts(data: Engine) -> None:
    assert counts(data) == Counts(posts=6, images=5, analyses=5, regions=8)


def test_brand_share_uses_each_images_latest_analysis(data: Engine) -> None:
    # Latest per image: A→v2 (mini), B (audi), C (bmw), D (bmw); rank-1 total 4.
    assert brand_share(data, since=DAY1, until=DAY3) == [
        BrandShare(make="bmw", images=2, share=0.5, top5_images=4),
        BrandShare(make="audi", images=1, share=0.25, top5_images=1),
        BrandShare(make="mini", images=1, share=0.25, top5_images=1),
        BrandShare(make="toyota", images=0, share=0.0, top5_images=1),
    ]


def test_brand_share_in_one_mode(data: Engine) -> None:
    shares = brand_share(data, since=DAY1, until=DAY3, mode="region-search")
    assert [(s.make, s.images, s.top5_images) for s in shares] == [
        ("bmw", 1, 3),
        ("audi", 1, 1),
        ("mini", 1, 1),
        ("toyota", 0, 1),
    ]
    assert [s.share for s in shares] == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0.0])
    assert sum(s.share for s in shares) == pytest.approx(1.0)


def test_brand_share_window_is_half_open(data: Engine) -> None:
    # Day 1 only: A→v1 (bmw), B (audi), D (bmw).
    shares = brand_share(data, since=DAY1, until=DAY2)
    assert [(s.make, s.images, s.top5_images) for s in shares] == [
        ("bmw", 2, 3),
        ("audi", 1, 2),
        ("mini", 0, 1),
    ]
    assert shares[0].share == pytest.approx(2 / 3)
    # An analysis exactly at ``until`` is outside, exactly at ``since`` inside.
    assert brand_share(data, since=T0 - timedelta(hours=1), until=T0) == []
    at_since = brand_share(data, since=T0, until=T0 + timedelta(seconds=1))
    assert [(s.make, s.images) for s in at_since] == [("bmw", 1), ("audi", 0), ("mini", 0)]


def test_brand_share_of_nothing_is_empty(engine: Engine) -> None:
    assert brand_share(engine, since=DAY1, until=DAY3) == []


def test_daily_counts(data: Engine) -> None:
    assert daily_counts(data, since=DAY1, until=DAY3) == [
        DailyCount(day=date(2025, 3, 10), posts=4, images_analyzed=3, cars=4),
        DailyCount(day=date(2025, 3, 11), posts=2, images_analyzed=2, cars=4),
    ]


def test_daily_counts_fill_empty_days_and_filter_by_mode(data: Engine) -> None:
    days = daily_counts(data, since=DAY1 - timedelta(days=1), until=DAY3 + timedelta(hours=1), mode="standard")
    assert days == [
        DailyCount(day=date(2025, 3, 9), posts=0, images_analyzed=0, cars=0),
        DailyCount(day=date(2025, 3, 10), posts=4, images_analyzed=1, cars=0),
        DailyCount(day=date(2025, 3, 11), posts=2, images_analyzed=0, cars=0),
        DailyCount(day=date(2025, 3, 12), posts=0, images_analyzed=0, cars=0),
    ]


def test_posts_without_analysis(data: Engine) -> None:
    assert posts_without_analysis(data, mode="region-search") == 2  # pD, pE
    assert posts_without_analysis(data, mode="standard") == 5
    assert posts_without_analysis(data, mode="detector") == 6


def test_recent_analyses(data: Engine) -> None:
    recent = recent_analyses(data, limit=3)
    assert [(r.image_sha256, r.model_version) for r in recent] == [
        (sha("A"), "brands-v2"),
        (sha("C"), "brands-v1"),
        (sha("D"), "brands-v1"),
    ]
    a = recent[0]
    assert a.brands == (BrandScore("mini", 0.9, 1), BrandScore("bmw", 0.75, 2))
    assert (a.width, a.height, a.mode, a.region_count) == (640, 480, "region-search", 2)
    assert a.analyzed_at == T0 + timedelta(days=1, hours=1)
    assert a.latest_post is not None and a.latest_post.post_id == "pA2"
    assert a.post_count == 2
    assert recent[2].brands == (BrandScore("bmw", 0.9, 1),)
    assert [r.image_sha256 for r in recent_analyses(data, mode="standard")] == [sha("D")]


def test_recent_analysis_without_a_post(engine: Engine) -> None:
    AnalysisStore(engine).write_batch(posts=[], analyses=[analysis("lonely", ())])
    (only,) = recent_analyses(engine)
    assert only.latest_post is None and only.post_count == 0 and only.brands == ()


def test_queries_accept_a_connection_or_a_session(data: Engine) -> None:
    with data.connect() as conn:
        assert counts(conn).posts == 6
        assert len(recent_analyses(conn, limit=2)) == 2
    with Session(data) as session:
        assert brand_share(session, since=DAY1, until=DAY3)[0].make == "bmw"
        assert posts_without_analysis(session, mode="region-search") == 2


def test_bad_arguments_are_refused(engine: Engine) -> None:
    naive = datetime(2025, 3, 10)
    with pytest.raises(ValueError, match="timezone-aware"):
        brand_share(engine, since=naive, until=DAY2)
    with pytest.raises(ValueError, match="must be after"):
        daily_counts(engine, since=DAY2, until=DAY1)
    with pytest.raises(ValueError, match="mode"):
        posts_without_analysis(engine, mode="fast")
    with pytest.raises(ValueError, match="limit"):
        recent_analyses(engine, limit=0)


def test_analysed_images_answers_by_image_and_mode_whatever_the_model_version(data: Engine) -> None:
    asked = {(sha("A"), "region-search"), (sha("A"), "standard"), (sha("D"), "standard"), (sha("E"), "detector")}
    assert analysed_images(data, keys=asked) == {(sha("A"), "region-search"), (sha("D"), "standard")}
    assert analysed_images(data, keys=set()) == set()


def test_brand_share_counts_confident_makes_only_and_unidentified_cars_are_counted_apart(engine: Engine) -> None:
    import dataclasses

    AnalysisStore(engine).write_batch(
        posts=[post("p1", "sure"), post("p2", "doubt"), post("p3", "nothing")],
        analyses=[
            analysis("sure", ("bmw", "audi")),
            dataclasses.replace(analysis("doubt", ("audi", "bmw")), unidentified=True),
            analysis("nothing", (), regions=()),
        ],
    )
    shares = brand_share(engine, since=DAY1, until=DAY2)
    assert [(s.make, s.images, s.top5_images) for s in shares] == [("bmw", 1, 1), ("audi", 0, 1)]
    assert unidentified_images(engine, since=DAY1, until=DAY2) == 1
    (day,) = daily_counts(engine, since=DAY1, until=DAY2)
    assert (day.images_analyzed, day.unidentified) == (3, 1)


def test_an_images_latest_analysis_decides_whether_it_is_unidentified(engine: Engine) -> None:
    import dataclasses

    doubted = dataclasses.replace(analysis("A", ("audi",), at=T0), unidentified=True)
    sure = analysis("A", ("audi",), at=T0 + timedelta(hours=1), model_version="brands-v2")
    AnalysisStore(engine).write_batch(posts=[post("pA", "A")], analyses=[doubted, sure])
    assert unidentified_images(engine, since=DAY1, until=DAY2) == 0
    assert [(s.make, s.images) for s in brand_share(engine, since=DAY1, until=DAY2)] == [("audi", 1)]
    assert unidentified_images(engine, since=DAY1, until=T0 + timedelta(minutes=30)) == 1


def test_last_analysis_is_the_newest_analysis_time(data: Engine) -> None:
    assert last_analysis_at(data) == T0 + timedelta(days=1, hours=1)


def test_last_analysis_of_an_empty_store_is_none(engine: Engine) -> None:
    assert last_analysis_at(engine) is None


def test_model_versions_of_a_window_newest_use_first(data: Engine) -> None:
    assert model_versions(data, since=DAY1, until=DAY3) == [
        ModelVersionUse("brands-v2", "region-search", 1, T0 + timedelta(days=1, hours=1)),
        ModelVersionUse(MODEL, "region-search", 3, T0 + timedelta(days=1)),
        ModelVersionUse(MODEL, "standard", 1, T0 + timedelta(hours=2)),
    ]
    assert model_versions(data, since=DAY2, until=DAY3) == [
        ModelVersionUse("brands-v2", "region-search", 1, T0 + timedelta(days=1, hours=1)),
        ModelVersionUse(MODEL, "region-search", 1, T0 + timedelta(days=1)),
    ]
