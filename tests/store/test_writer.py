"""AnalysisStore.write_batch: one transaction per batch, idempotent, all-or-nothing."""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta, timezone

import pytest
from sqlalchemy import Engine, create_mock_engine, select, text
from sqlalchemy.exc import IntegrityError

from carspot.store.queries import Counts, counts
from carspot.store.records import AnalysisRecord, BrandScore, PostRecord
from carspot.store.tables import IMAGE_REGION, Analysis, Base, BrandPrediction, Image, Post, Region
from carspot.store.writer import AnalysisStore, BatchConflictError, WriteResult

from .data import T0, analysis, post, region, sha


def _batch() -> tuple[list[PostRecord], list[AnalysisRecord]]:
    """Two posts of two images, each image analysed once with two car regions."""
    return [post("p1", "red-bmw"), post("p2", "blue-audi")], [
        analysis("red-bmw", ("bmw", "audi", "mini")),
        analysis("blue-audi", ("audi", "bmw")),
    ]


def _snapshot(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, in key order: replaying a batch must leave this unchanged."""
    with engine.connect() as conn:
        return {
            table.name: [tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key.columns))]
            for table in Base.metadata.sorted_tables
        }


def test_write_batch_stores_everything(engine: Engine) -> None:
    posts, analyses = _batch()
    result = AnalysisStore(engine).write_batch(posts=posts, analyses=analyses)
    assert result == WriteResult(posts_inserted=2, analyses_inserted=2)
    assert counts(engine) == Counts(posts=2, images=2, analyses=2, regions=4)

    rows = _snapshot(engine)
    # Per image: 3 or 2 image-level brands; per region: region 0 has 3, region 1 has 2.
    assert len(rows["brand_predictions"]) == (3 + 3 + 2) + (2 + 2 + 2)
    with engine.connect() as conn:
        first = conn.execute(
            select(BrandPrediction.make, BrandPrediction.score)
            .join(Analysis, Analysis.id == BrandPrediction.analysis_id)
            .where(
                Analysis.image_sha256 == sha("red-bmw"),
                BrandPrediction.region_index == IMAGE_REGION,
                BrandPrediction.rank == 1,
            )
        ).one()
        assert tuple(first) == ("bmw", pytest.approx(0.9))
        region_count = conn.execute(
            select(Analysis.region_count).where(Analysis.image_sha256 == sha("red-bmw"))
        ).scalar_one()
        assert region_count == 2


def test_timestamps_come_back_as_the_same_instant_in_utc(engine: Engine) -> None:
    plus_five = timezone(timedelta(hours=5))
    p = dataclasses.replace(post("p1", "img"), ingested_at=T0.astimezone(plus_five), posted_at=None)
    AnalysisStore(engine).write_batch(posts=[p], analyses=[])
    with engine.connect() as conn:
        ingested_at, stored_at, posted_at = conn.execute(select(Post.ingested_at, Post.stored_at, Post.posted_at)).one()
        first_seen = conn.execute(select(Image.first_seen_at)).scalar_one()
    assert ingested_at == T0 and ingested_at.utcoffset() == timedelta(0)
    assert first_seen == T0
    assert posted_at is None
    assert stored_at.tzinfo is not None  # server default now(), read back as UTC


def test_replaying_a_batch_changes_nothing(engine: Engine) -> None:
    store = AnalysisStore(engine)
    posts, analyses = _batch()
    store.write_batch(posts=posts, analyses=analyses)
    before = _snapshot(engine)

    again = store.write_batch(posts=posts, analyses=analyses)

    assert again == WriteResult(posts_inserted=0, analyses_inserted=0)
    assert _snapshot(engine) == before  # same rows, same ids, same stored_at


def test_an_existing_analysis_is_not_rewritten(engine: Engine) -> None:
    """A replay carrying different results for the same (image, mode, model) keeps the first ones."""
    store = AnalysisStore(engine)
    store.write_batch(posts=[], analyses=[analysis("img", ("bmw", "audi"))])
    before = _snapshot(engine)
    different = analysis("img", ("toyota",), regions=(region(0, "toyota"),))

    result = store.write_batch(posts=[], analyses=[different])

    assert result.analyses_inserted == 0
    assert _snapshot(engine) == before


def test_a_repost_links_to_the_existing_analysis_through_the_image(engine: Engine) -> None:
    store = AnalysisStore(engine)
    store.write_batch(posts=[post("p1", "img")], analyses=[analysis("img")])
    later = T0 + timedelta(hours=3)

    # The worker found the image already analysed: the new post is written without an analysis.
    result = store.write_batch(posts=[post("p2", "img", at=later)], analyses=[])

    assert result == WriteResult(posts_inserted=1, analyses_inserted=0)
    assert counts(engine) == Counts(posts=2, images=1, analyses=1, regions=2)
    with engine.connect() as conn:
        linked = conn.execute(
            select(Post.post_id, Analysis.id)
            .join(Analysis, Analysis.image_sha256 == Post.image_sha256)
            .order_by(Post.post_id)
        ).all()
        first_seen = conn.execute(select(Image.first_seen_at)).scalar_one()
    assert [p for p, _ in linked] == ["p1", "p2"]
    assert linked[0][1] == linked[1][1]
    assert first_seen == T0  # the image row is the first sighting's


def test_another_mode_or_model_version_is_another_analysis(engine: Engine) -> None:
    store = AnalysisStore(engine)
    result = store.write_batch(
        posts=[post("p1", "img")],
        analyses=[
            analysis("img"),
            analysis("img", model_version="brands-v2"),
            analysis("img", mode="standard"),
            analysis("img", mode="detector", regions=(region(0, "bmw"),)),
        ],
    )
    assert result == WriteResult(posts_inserted=1, analyses_inserted=4)
    assert counts(engine) == Counts(posts=1, images=1, analyses=4, regions=2 + 2 + 0 + 1)


def test_duplicates_inside_a_batch_keep_the_first(engine: Engine) -> None:
    first = post("p1", "img", text="first")
    result = AnalysisStore(engine).write_batch(
        posts=[first, dataclasses.replace(first, text="second")],
        analyses=[analysis("img", ("bmw",)), analysis("img", ("audi",))],
    )
    assert result == WriteResult(posts_inserted=1, analyses_inserted=1)
    with engine.connect() as conn:
        assert conn.execute(select(Post.text)).scalar_one() == "first"
        make = conn.execute(
            select(BrandPrediction.make).where(BrandPrediction.region_index == IMAGE_REGION, BrandPrediction.rank == 1)
        ).scalar_one()
        assert make == "bmw"


def test_one_bad_record_rolls_the_whole_batch_back(engine: Engine) -> None:
    """The database refuses the last brand row; images and analyses written before it must vanish too."""
    store = AnalysisStore(engine)
    store.write_batch(posts=[post("p0", "old")], analyses=[analysis("old")])
    before = _snapshot(engine)

    bad = analysis("new-2", ("bmw", "audi"))
    corrupted = BrandScore(make="audi", score=0.5, rank=2)
    object.__setattr__(corrupted, "score", 7.0)  # bypasses validation, as a bug upstream would
    bad = dataclasses.replace(bad, regions=())
    object.__setattr__(bad, "brands", (bad.brands[0], corrupted))
    posts = [post("p1", "new-1"), post("p2", "new-2")]

    with pytest.raises(IntegrityError):
        store.write_batch(posts=posts, analyses=[analysis("new-1"), bad])

    assert _snapshot(engine) == before
    # The store is usable afterwards, and the good part of the batch can be written on its own.
    assert store.write_batch(posts=posts[:1], analyses=[analysis("new-1")]) == WriteResult(1, 1)


def test_a_self_contradicting_batch_is_refused_before_writing(engine: Engine) -> None:
    with pytest.raises(BatchConflictError, match="640x480 and as 320x240"):
        AnalysisStore(engine).write_batch(
            posts=[post("p1", "img")],
            analyses=[analysis("img", regions=()), analysis("img", size=(320, 240), regions=(), model_version="v9")],
        )
    assert counts(engine) == Counts(posts=0, images=0, analyses=0, regions=0)


@pytest.mark.parametrize("link_first", [True, False])
def test_the_analysed_pictures_size_wins_over_a_linked_near_copy(engine: Engine, link_first: bool) -> None:
    """A resized repost linked to the original carries its own size; the image keeps the analysed size,
    whichever batch arrives first."""
    store = AnalysisStore(engine)
    link = {"posts": [post("p-copy", "img", size=(320, 240))], "analyses": []}
    original = {"posts": [post("p-orig", "img")], "analyses": [analysis("img", regions=())]}
    for batch in (link, original) if link_first else (original, link):
        store.write_batch(**batch)  # type: ignore[arg-type]
    store.write_batch(posts=[post("p-copy2", "img", size=(100, 75))], analyses=[analysis("img", regions=())])
    with engine.connect() as conn:
        assert conn.execute(text("SELECT width, height FROM images")).all() == [(640, 480)]
    assert counts(engine) == Counts(posts=3, images=1, analyses=1, regions=0)


def test_an_empty_batch_writes_nothing(engine: Engine) -> None:
    assert AnalysisStore(engine).write_batch(posts=[], analyses=[]) == WriteResult(0, 0)
    assert counts(engine) == Counts(posts=0, images=0, analyses=0, regions=0)


def test_a_large_batch(engine: Engine) -> None:
    n = 600
    posts = [post(f"p{i}", f"img{i % 300}") for i in range(n)]
    analyses = [analysis(f"img{i}") for i in range(300)]
    assert AnalysisStore(engine).write_batch(posts=posts, analyses=analyses) == WriteResult(n, 300)
    assert counts(engine) == Counts(posts=n, images=300, analyses=300, regions=600)


def test_concurrent_workers_writing_overlapping_batches(engine: Engine) -> None:
    """Two workers share images and replay each other's posts; both succeed and nothing is doubled."""
    store = AnalysisStore(engine)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for round_ in range(10):
                images = [f"img{(round_ * 3 + offset + k) % 12}" for k in range(4)]
                store.write_batch(
                    posts=[post(f"p-{name}", name) for name in images],
                    analyses=[analysis(name) for name in images],
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(offset,)) for offset in (0, 1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert counts(engine) == Counts(posts=12, images=12, analyses=12, regions=24)


def test_unsupported_backend_is_refused() -> None:
    mysql = create_mock_engine("mysql://u@localhost/db", executor=lambda *args, **kwargs: None)
    with pytest.raises(ValueError, match="mysql"):
        AnalysisStore(mysql)  # type: ignore[arg-type]


def test_unidentified_analyses_and_regions_are_stored_as_such_and_a_replay_changes_nothing(engine: Engine) -> None:
    doubted = dataclasses.replace(
        analysis("blurry-car", ("bmw", "audi")),
        regions=(dataclasses.replace(region(0, "bmw", "audi"), unidentified=True), region(1, "audi")),
        unidentified=True,
    )
    store = AnalysisStore(engine)
    store.write_batch(posts=[post("p1", "blurry-car")], analyses=[doubted, analysis("red-bmw")])
    before = _snapshot(engine)
    store.write_batch(posts=[post("p1", "blurry-car")], analyses=[doubted, analysis("red-bmw")])
    assert _snapshot(engine) == before
    with engine.connect() as conn:
        flags = conn.execute(select(Analysis.image_sha256, Analysis.unidentified)).all()
        assert sorted(flags) == sorted([(sha("blurry-car"), True), (sha("red-bmw"), False)])
        regions = conn.execute(
            select(Region.region_index, Region.unidentified)
            .join(Analysis, Analysis.id == Region.analysis_id)
            .where(Analysis.image_sha256 == sha("blurry-car"))
            .order_by(Region.region_index)
        ).all()
        assert [tuple(r) for r in regions] == [(0, True), (1, False)]
        top = conn.execute(
            select(BrandPrediction.make)
            .join(Analysis, Analysis.id == BrandPrediction.analysis_id)
            .where(Analysis.image_sha256 == sha("blurry-car"), BrandPrediction.region_index == IMAGE_REGION)
            .order_by(BrandPrediction.rank)
        ).scalars()
        assert list(top) == ["bmw", "audi"]  # its top-5 is kept
