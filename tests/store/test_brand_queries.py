"""Brand pages, comparisons, campaigns and thumbnails: the store's read queries on a small hand-made data set,
on SQLite and PostgreSQL, with every filter.

Day 1 = 2025-03-10, day 2 = 2025-03-11 (UTC); detector mode unless said; scores as written:
  P  day1 10:00  cars: toyota 0.9, bmw 0.6          image top: toyota 0.9, bmw 0.6    post x     campaign toyota
  Q  day1 11:00  cars: toyota 0.9                   image top: toyota 0.9             post http  campaign spring
  L  day1 12:00  standard, no car boxes             image top: toyota 0.4             post x     campaign toyota
  R  day2 10:00  cars: bmw 0.9, audi 0.8            image top: bmw 0.9, audi 0.8      post folder
  S  day2 11:00  marked unidentified                image top: toyota 0.2             post folder
P has a thumbnail.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image as PILImage
from sqlalchemy import Engine, delete, event, select
from sqlalchemy.exc import IntegrityError

from carspot.store.queries import (
    CoMake,
    Counts,
    Facets,
    Filters,
    brand_images,
    brand_share,
    campaign_counts,
    counts,
    daily_brand_counts,
    daily_counts,
    facets,
    mention_counts,
    purge_thumbnails,
    recent_analyses,
    seen_with,
    thumbnail,
    unidentified_images,
)
from carspot.store.records import AnalysisRecord, BrandScore, PostRecord, RegionRecord, ThumbnailRecord
from carspot.store.tables import Post, Thumbnail
from carspot.store.writer import AnalysisStore

from .data import MODEL, sha

DAY1 = datetime(2025, 3, 10, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
DAY3 = DAY1 + timedelta(days=2)


def jpeg(width: int = 32, height: int = 24) -> ThumbnailRecord:
    buffer = io.BytesIO()
    PILImage.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="JPEG", quality=80)
    return ThumbnailRecord(jpeg=buffer.getvalue(), width=width, height=height)


def brands(*scored: tuple[str, float]) -> tuple[BrandScore, ...]:
    return tuple(BrandScore(make=m, score=s, rank=i + 1) for i, (m, s) in enumerate(scored))


def car(index: int, make: str, score: float) -> RegionRecord:
    x = 10 + 300 * index
    return RegionRecord(
        index=index, x1=x, y1=20, x2=x + 250, y2=200, score=0.8, label="car", brands=brands((make, score))
    )


def analysed(
    image: str,
    at: datetime,
    top: Sequence[tuple[str, float]],
    cars: Sequence[RegionRecord] = (),
    *,
    mode: str = "detector",
    unidentified: bool = False,
    thumb: ThumbnailRecord | None = None,
) -> AnalysisRecord:
    return AnalysisRecord(
        image_sha256=sha(image),
        width=640,
        height=480,
        mode=mode,
        detector="" if mode == "standard" else "centernet",
        model_version=MODEL,
        regions=tuple(cars),
        brands=brands(*top),
        analyzed_at=at,
        duration_ms=10.0,
        unidentified=unidentified,
        thumbnail=thumb,
    )


def posted(post_id: str, image: str, at: datetime, source: str, campaign: str | None = None) -> PostRecord:
    return PostRecord(
        post_id=post_id,
        source=source,
        author="@someone",
        text=None,
        url=None,
        posted_at=None,
        ingested_at=at,
        image_sha256=sha(image),
        width=640,
        height=480,
        campaign=campaign,
    )


@pytest.fixture
def data(engine: Engine) -> Engine:
    h = timedelta(hours=1)
    AnalysisStore(engine).write_batch(
        posts=[
            posted("pP", "P", DAY1 + 10 * h, "x", "toyota"),
            posted("pQ", "Q", DAY1 + 11 * h, "http", "spring"),
            posted("pL", "L", DAY1 + 12 * h, "x", "toyota"),
            posted("pR", "R", DAY2 + 10 * h, "folder"),
            posted("pS", "S", DAY2 + 11 * h, "folder"),
        ],
        analyses=[
            analysed(
                "P",
                DAY1 + 10 * h,
                [("toyota", 0.9), ("bmw", 0.6)],
                [car(0, "toyota", 0.9), car(1, "bmw", 0.6)],
                thumb=jpeg(),
            ),
            analysed("Q", DAY1 + 11 * h, [("toyota", 0.9)], [car(0, "toyota", 0.9)]),
            analysed("L", DAY1 + 12 * h, [("toyota", 0.4)], mode="standard"),
            analysed("R", DAY2 + 10 * h, [("bmw", 0.9), ("audi", 0.8)], [car(0, "bmw", 0.9), car(1, "audi", 0.8)]),
            analysed("S", DAY2 + 11 * h, [("toyota", 0.2)], unidentified=True),
        ],
    )
    return engine


def shares(engine: Engine, filters: Filters) -> dict[str, int]:
    return {s.make: s.images for s in brand_share(engine, since=DAY1, until=DAY3, filters=filters) if s.images}


def test_brand_share_by_campaign_source_mode_and_confidence(data: Engine) -> None:
    assert shares(data, Filters()) == {"toyota": 3, "bmw": 1}
    assert shares(data, Filters(campaign="toyota")) == {"toyota": 2}
    assert shares(data, Filters(source="http")) == {"toyota": 1}
    assert shares(data, Filters(mode="standard")) == {"toyota": 1}
    assert shares(data, Filters(campaign="nobody")) == {}
    # L's best make scores 0.4: below a 0.5 minimum it counts apart, like S, which the analysis marked itself.
    assert shares(data, Filters(min_confidence=0.5)) == {"toyota": 2, "bmw": 1}
    assert unidentified_images(data, since=DAY1, until=DAY3) == 1
    assert unidentified_images(data, since=DAY1, until=DAY3, filters=Filters(min_confidence=0.5)) == 2
    assert (
        unidentified_images(data, since=DAY1, until=DAY3, filters=Filters(campaign="toyota", min_confidence=0.5)) == 1
    )


def test_mode_keyword_and_filters_must_agree(data: Engine) -> None:
    assert brand_share(data, since=DAY1, until=DAY3, mode="standard", filters=Filters(mode="standard"))
    with pytest.raises(ValueError, match="contradicts"):
        brand_share(data, since=DAY1, until=DAY3, mode="standard", filters=Filters(mode="detector"))
    with pytest.raises(ValueError, match="min_confidence"):
        Filters(min_confidence=1.5)
    with pytest.raises(ValueError, match="mode"):
        Filters(mode="fastest")


def test_daily_brand_counts_add_up_to_the_share_and_keep_unidentified_apart(data: Engine) -> None:
    days = daily_brand_counts(data, since=DAY1, until=DAY3)
    assert [(d.day.day, d.identified, d.unidentified, d.makes) for d in days] == [
        (10, 3, 0, {"toyota": 3}),
        (11, 1, 1, {"bmw": 1}),
    ]
    assert days[0].share("toyota") == 1.0 and days[1].share("toyota") == 0.0
    confident = daily_brand_counts(data, since=DAY1, until=DAY3, filters=Filters(min_confidence=0.5))
    assert [(d.identified, d.unidentified) for d in confident] == [(2, 1), (1, 1)]
    by_campaign = daily_brand_counts(data, since=DAY1, until=DAY3, filters=Filters(campaign="spring"))
    assert [d.makes for d in by_campaign] == [{"toyota": 1}, {}]


def test_daily_counts_filter_posts_and_images_alike(data: Engine) -> None:
    days = daily_counts(data, since=DAY1, until=DAY3, filters=Filters(source="x"))
    assert [(d.posts, d.images_analyzed, d.unidentified) for d in days] == [(2, 2, 0), (0, 0, 0)]
    days = daily_counts(data, since=DAY1, until=DAY3, filters=Filters(source="x", min_confidence=0.5))
    assert [d.unidentified for d in days] == [1, 0]


def test_store_totals_follow_source_campaign_and_mode_but_not_the_confidence(data: Engine) -> None:
    assert counts(data) == Counts(posts=5, images=5, analyses=5, regions=5)
    assert counts(data, filters=Filters(campaign="toyota")) == Counts(posts=2, images=2, analyses=2, regions=2)
    # A post has no mode: the posts stay, the images, analyses and regions are the standard mode's (L, no box).
    assert counts(data, filters=Filters(mode="standard")) == Counts(posts=5, images=1, analyses=1, regions=0)
    assert counts(data, filters=Filters(source="x", mode="detector")) == Counts(
        posts=2, images=1, analyses=1, regions=2
    )
    assert counts(data, filters=Filters(min_confidence=0.9)) == counts(data)


def test_mention_counts_follow_the_filters(data: Engine) -> None:
    def seen(filters: Filters) -> dict[str, int]:
        return {c.make: c.seen for c in mention_counts(data, since=DAY1, until=DAY3, filters=filters)}

    assert seen(Filters()) == {"toyota": 3, "bmw": 1}  # S is unidentified: it shows no make
    assert seen(Filters(campaign="toyota")) == {"toyota": 2}
    assert seen(Filters(source="folder")) == {"bmw": 1}
    assert seen(Filters(mode="standard")) == {"toyota": 1}
    assert seen(Filters(min_confidence=0.5)) == {"toyota": 2, "bmw": 1}  # L's 0.4 counts apart
    with pytest.raises(ValueError, match="contradicts"):
        mention_counts(data, since=DAY1, until=DAY3, mode="standard", filters=Filters(mode="detector"))


def test_the_feed_can_be_kept_to_a_window(data: Engine) -> None:
    found = recent_analyses(data, since=DAY2, until=DAY3, filters=Filters(source="folder"))
    assert [r.image_sha256 for r in found] == [sha("S"), sha("R")]
    assert recent_analyses(data, since=DAY1, until=DAY1 + timedelta(hours=10)) == []  # half-open: P is at 10:00
    with pytest.raises(ValueError, match="both"):
        recent_analyses(data, since=DAY2)


def test_seen_with_counts_the_makes_of_the_other_cars_in_the_same_images(data: Engine) -> None:
    toyota = seen_with(data, make="toyota", since=DAY1, until=DAY3)
    assert toyota.images == 3  # P, Q (its car), L (its best make); S is unidentified
    assert toyota.others == (CoMake(make="bmw", images=1),)  # P's second car
    bmw = seen_with(data, make="bmw", since=DAY1, until=DAY3)
    assert (bmw.images, bmw.others) == (2, (CoMake(make="audi", images=1), CoMake(make="toyota", images=1)))
    # P's bmw scores 0.6: below a 0.7 minimum it is not a bmw any more.
    strict = seen_with(data, make="toyota", since=DAY1, until=DAY3, filters=Filters(min_confidence=0.7))
    assert (strict.images, strict.others) == (2, ())


def test_brand_images_newest_first_with_boxes_top5_and_thumbnail_flag(data: Engine) -> None:
    found = brand_images(data, make="toyota", since=DAY1, until=DAY3)
    assert [i.image_sha256 for i in found] == [sha("L"), sha("Q"), sha("P")]
    p = found[-1]
    assert p.has_thumbnail and not found[0].has_thumbnail
    assert [(r.make, r.x1, r.x2) for r in p.regions] == [("toyota", 10, 260), ("bmw", 310, 560)]
    assert [b.make for b in p.brands] == ["toyota", "bmw"]
    assert p.latest_post is not None and p.latest_post.post_id == "pP"
    strict = brand_images(data, make="toyota", since=DAY1, until=DAY3, filters=Filters(min_confidence=0.7))
    assert [r.make for r in strict[-1].regions] == ["toyota", None]
    assert strict[-1].regions[1].unidentified
    assert brand_images(data, make="toyota", since=DAY2, until=DAY3) == []


def test_recent_feed_filters_and_flags_thumbnails(data: Engine) -> None:
    feed = recent_analyses(data, limit=10, filters=Filters(campaign="toyota"))
    assert [(a.image_sha256, a.has_thumbnail) for a in feed] == [(sha("L"), False), (sha("P"), True)]


def test_facets_list_sources_and_campaigns(data: Engine) -> None:
    assert facets(data) == Facets(sources=("folder", "http", "x"), campaigns=("spring", "toyota"))


def test_thumbnail_is_kept_once_per_image_and_purged_by_age_or_with_its_last_post(data: Engine) -> None:
    stored = thumbnail(data, image_sha256=sha("P"))
    assert stored is not None and stored.jpeg.startswith(b"\xff\xd8") and (stored.width, stored.height) == (32, 24)
    assert stored.created_at == DAY1 + timedelta(hours=10)
    # Another mode's analysis of the same picture brings another thumbnail: the first one stays.
    again = analysed("P", DAY2, [("toyota", 0.9)], mode="standard", thumb=jpeg(48, 36))
    AnalysisStore(data).write_batch(posts=[], analyses=[again])
    assert thumbnail(data, image_sha256=sha("P")) == stored
    assert thumbnail(data, image_sha256=sha("Q")) is None

    assert purge_thumbnails(data, older_than=DAY1) == 0
    with data.begin() as conn:
        conn.execute(delete(Post).where(Post.post_id == "pP"))
    assert purge_thumbnails(data, older_than=None) == 1  # no post shows P any more
    assert thumbnail(data, image_sha256=sha("P")) is None


def test_thumbnails_expire_after_the_retention(engine: Engine) -> None:
    store = AnalysisStore(engine)
    for name, at in (("old", DAY1), ("new", DAY2)):
        store.write_batch(
            posts=[posted(f"p-{name}", name, at, "folder")],
            analyses=[analysed(name, at, [("bmw", 0.9)], mode="standard", thumb=jpeg())],
        )
    assert purge_thumbnails(engine, older_than=DAY2) == 1
    with engine.connect() as conn:
        assert conn.execute(select(Thumbnail.image_sha256)).scalars().all() == [sha("new")]


def test_campaign_is_stored_with_the_post(data: Engine) -> None:
    with data.connect() as conn:
        rows = dict(conn.execute(select(Post.post_id, Post.campaign)).tuples().all())
    assert rows == {"pP": "toyota", "pQ": "spring", "pL": "toyota", "pR": None, "pS": None}


def test_a_thumbnail_is_not_kept_when_its_batch_fails(engine: Engine) -> None:
    """The posts insert fails after the thumbnail's: the transaction takes the thumbnail back with it."""

    def refuse_posts(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO POSTS"):
            raise IntegrityError(statement, None, Exception("refused by the test"))

    event.listen(engine, "before_cursor_execute", refuse_posts)
    try:
        with pytest.raises(IntegrityError):
            AnalysisStore(engine).write_batch(
                posts=[posted("p1", "img", DAY1, "folder")],
                analyses=[analysed("img", DAY1, [("bmw", 0.9)], mode="standard", thumb=jpeg())],
            )
    finally:
        event.remove(engine, "before_cursor_execute", refuse_posts)
    assert thumbnail(engine, image_sha256=sha("img")) is None


def test_thumbnail_records_refuse_what_is_not_a_small_jpeg() -> None:
    with pytest.raises(ValueError, match="JPEG"):
        ThumbnailRecord(jpeg=b"\x89PNG....", width=10, height=10)
    with pytest.raises(ValueError, match="not a thumbnail"):
        dataclasses.replace(jpeg(), width=4000)
    with pytest.raises(ValueError, match="limit"):
        ThumbnailRecord(jpeg=b"\xff\xd8\xff" + bytes(70_000), width=10, height=10)


def test_campaign_counts_group_the_brands_by_campaign(data: Engine) -> None:
    found = campaign_counts(data, since=DAY1, until=DAY3)
    assert [(c.campaign, c.identified, c.unidentified, c.makes) for c in found] == [
        ("toyota", 2, 0, {"toyota": 2}),
        (None, 1, 1, {"bmw": 1}),
        ("spring", 1, 0, {"toyota": 1}),
    ]
    strict = campaign_counts(data, since=DAY1, until=DAY3, filters=Filters(min_confidence=0.5, source="x"))
    assert [(c.campaign, c.identified, c.unidentified) for c in strict] == [("toyota", 1, 1)]
