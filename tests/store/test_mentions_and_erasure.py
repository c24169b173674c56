"""Text mentions stored with their post, re-ranking in brand share, and the right to erasure (both backends)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlalchemy import Engine, insert, select

from carspot.store.erasure import FORGOTTEN_PREFIX, erasure_log, forget_posts
from carspot.store.queries import brand_share, counts, daily_counts, mention_counts
from carspot.store.records import MentionRecord
from carspot.store.tables import Post, PostMention, Thumbnail
from carspot.store.writer import AnalysisStore
from tests.store.data import T0, analysis, post

SINCE, UNTIL = T0 - timedelta(days=1), T0 + timedelta(days=1)


def _named(p_id: str, image: str, *makes: str, text: str = "look at this car") -> object:
    return replace(post(p_id, image, text=text), mentions=tuple(MentionRecord(make=m, via="name") for m in makes))


def _store(engine: Engine) -> AnalysisStore:
    store = AnalysisStore(engine)
    store.write_batch(
        posts=[
            _named("p1", "img1", "audi", text="my audi"),  # named make at rank 2 of img1
            _named("p2", "img2"),  # nothing named
            _named("p3", "img3", "ferrari", text="ferrari!"),  # named make outside the top-5
        ],
        analyses=[
            analysis("img1", ["bmw", "audi", "toyota"]),
            analysis("img2", ["bmw", "audi"]),
            analysis("img3", ["toyota", "bmw"]),
        ],
    )
    return store


def _mentions(engine: Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(select(PostMention.post_id, PostMention.make, PostMention.via).order_by(PostMention.make))
        return [tuple(r) for r in rows]  # type: ignore[misc]


def test_mentions_are_written_with_their_post_and_a_replay_adds_nothing(engine: Engine) -> None:
    store = _store(engine)
    assert _mentions(engine) == [("p1", "audi", "name"), ("p3", "ferrari", "name")]
    store.write_batch(posts=[_named("p1", "img1", "audi", "kia")], analyses=[])  # replay with other mentions
    assert _mentions(engine) == [("p1", "audi", "name"), ("p3", "ferrari", "name")]


def test_rank_text_mentions_moves_an_image_to_the_make_its_text_names_within_the_top5(engine: Engine) -> None:
    _store(engine)
    plain = {s.make: s.images for s in brand_share(engine, since=SINCE, until=UNTIL)}
    ranked = {s.make: s.images for s in brand_share(engine, since=SINCE, until=UNTIL, rank_text_mentions=True)}
    assert plain == {"bmw": 2, "toyota": 1, "audi": 0}
    assert ranked == {"bmw": 1, "toyota": 1, "audi": 1}  # ferrari is outside img3's top-5: nothing moves
    assert sum(ranked.values()) == sum(plain.values())


def test_mention_counts_seen_named_and_both(engine: Engine) -> None:
    _store(engine)
    plain = {c.make: (c.seen, c.named, c.both) for c in mention_counts(engine, since=SINCE, until=UNTIL)}
    assert plain == {"bmw": (2, 0, 0), "toyota": (1, 0, 0), "audi": (0, 1, 0), "ferrari": (0, 1, 0)}
    ranked = mention_counts(engine, since=SINCE, until=UNTIL, rank_text_mentions=True)
    assert {c.make: (c.seen, c.named, c.both) for c in ranked}["audi"] == (1, 1, 1)


def test_forget_erases_what_ties_a_post_to_a_person_and_keeps_every_count(engine: Engine) -> None:
    _store(engine)
    before = (
        counts(engine),
        daily_counts(engine, since=SINCE, until=UNTIL),
        brand_share(engine, since=SINCE, until=UNTIL, rank_text_mentions=True),
        mention_counts(engine, since=SINCE, until=UNTIL, rank_text_mentions=True),
    )
    result = forget_posts(engine, ["p1", "nope", "p1"], requested_by="dpo@example.test", now=T0)
    assert (result.requested, result.erased, result.missing) == (2, 1, ("nope",))
    after = (
        counts(engine),
        daily_counts(engine, since=SINCE, until=UNTIL),
        brand_share(engine, since=SINCE, until=UNTIL, rank_text_mentions=True),
        mention_counts(engine, since=SINCE, until=UNTIL, rank_text_mentions=True),
    )
    assert after == before
    with engine.connect() as conn:
        row = conn.execute(
            select(Post.post_id, Post.author, Post.text, Post.url, Post.posted_at, Post.source, Post.ingested_at).where(
                Post.post_id.not_in(["p2", "p3"])
            )
        ).one()
    assert row.post_id.startswith(FORGOTTEN_PREFIX)
    assert (row.author, row.text, row.url, row.posted_at) == (None, None, None, None)
    assert (row.source, row.ingested_at) == ("folder", T0)
    assert _mentions(engine)[0] == (row.post_id, "audi", "name")  # the make named stays, under the new id
    log = erasure_log(engine)
    assert [(e.requested_by, e.posts_requested, e.posts_erased, e.erased_at) for e in log] == [
        ("dpo@example.test", 2, 1, T0)
    ]


def test_forgetting_again_finds_nothing_and_is_still_logged(engine: Engine) -> None:
    _store(engine)
    forget_posts(engine, ["p2"], requested_by="ops", now=T0)
    again = forget_posts(engine, ["p2"], requested_by="ops", now=T0 + timedelta(hours=1))
    assert (again.erased, again.missing) == (0, ("p2",))
    assert [e.posts_erased for e in erasure_log(engine)] == [1, 0]


def test_forget_deletes_the_thumbnail_of_the_posts_picture(engine: Engine) -> None:
    _store(engine)
    with engine.begin() as conn:
        shas = {str(p): str(s) for p, s in conn.execute(select(Post.post_id, Post.image_sha256))}
        conn.execute(
            insert(Thumbnail),
            [
                {"image_sha256": shas[p], "jpeg": b"\xff\xd8\xff", "width": 4, "height": 3, "created_at": T0}
                for p in ("p1", "p2")
            ],
        )
    result = forget_posts(engine, ["p1"], requested_by="ops", now=T0)
    assert result.thumbnails_deleted == 1
    with engine.connect() as conn:
        assert list(conn.execute(select(Thumbnail.image_sha256)).scalars()) == [shas["p2"]]
