"""The X source with the real tweepy client, over real sockets, against the local X API on 127.0.0.1:
rules sync, the stream's conditions (keep-alives, malformed lines, mid-stream drops, 429 with reset, 5xx),
search pagination, checkpoints across restarts, one post per picture."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from carspot.ingest.dedup import InMemoryDeduplicator
from carspot.ingest.fetch import AddressPolicy, FetchLimits, SafeFetcher
from carspot.ingest.images import normalize_image
from carspot.ingest.loop import IngestedPost, IngestStats, Rejection, run_ingest
from carspot.ingest.x import (
    InMemoryCheckpoint,
    XApiError,
    XRule,
    XSource,
    make_rules_client,
    parse_rules,
    sync_rules,
)
from tests.ingest.fakex import TOKEN, Connection, FakeX
from tests.ingest.localserver import LocalServer, LoopbackOnlyConnector, local_server

NOW = 1_900_000_000.0  # the fake clock for x-rate-limit-reset arithmetic


@pytest.fixture
def server() -> Iterator[LocalServer]:
    yield from local_server()


@pytest.fixture
def fake(server: LocalServer) -> FakeX:
    return FakeX(server)


@pytest.fixture
def connector() -> LoopbackOnlyConnector:
    return LoopbackOnlyConnector()


@pytest.fixture
def fetcher(connector: LoopbackOnlyConnector) -> Iterator[SafeFetcher]:
    with SafeFetcher(
        policy=AddressPolicy(allow_loopback=True), limits=FetchLimits(attempts=1, read_timeout_s=2), connector=connector
    ) as f:
        yield f


class Collected:
    def __init__(self) -> None:
        self.posts: list[IngestedPost] = []
        self.rejections: list[Rejection] = []

    @property
    def ids(self) -> list[str]:
        return [p.post_id for p in self.posts]


def source(fake: FakeX, fetcher: SafeFetcher, **options: Any) -> XSource:
    defaults: dict[str, Any] = {
        "bearer_token": TOKEN,
        "fetch": fetcher.fetch_bytes,
        "checkpoint": InMemoryCheckpoint(),
        "base_url": fake.base_url,
        "backoff_initial_s": 0.05,
        "backoff_cap_s": 0.2,
        "interval_s": 0.05,
        "clock": lambda: NOW,
        "rng": random.Random(1),
        "rules": [XRule("#toyota has:images", "toyota")],
    }
    defaults.update(options)
    return XSource(**defaults)


def ingest(
    src: XSource, *, max_posts: int, dedup: InMemoryDeduplicator | None = None, limit_s: float = 15
) -> tuple[Collected, IngestStats]:
    """run_ingest over the source, bounded by ``max_posts`` and a watchdog that stops the source."""
    out = Collected()
    watchdog = threading.Timer(limit_s, src.stop)
    watchdog.start()
    try:
        stats = run_ingest(
            src,
            emit=out.posts.append,
            reject=out.rejections.append,
            dedup=dedup or InMemoryDeduplicator(),
            normalize=normalize_image,
            max_posts=max_posts,
        )
    finally:
        watchdog.cancel()
        src.stop()
    return out, stats


# --- rules ------------------------------------------------------------------------------------------------


def test_rules_file_format() -> None:
    rules = parse_rules(
        "# brands we watch\n\n[toyota] (#toyota OR @Toyota) has:images -is:retweet\n#bmw has:images\n#\n"
    )
    assert rules == [XRule("(#toyota OR @Toyota) has:images -is:retweet", "toyota"), XRule("#bmw has:images", None)]
    with pytest.raises(ValueError):
        parse_rules("#a\n#a\n")


@pytest.mark.parametrize("tag", ["two words", "-dash", "x" * 65, "a/b"])
def test_a_rule_tag_that_is_not_a_valid_campaign_is_refused_with_its_line(tag: str) -> None:
    with pytest.raises(ValueError, match="line 2: tag"):
        parse_rules(f"#bmw has:images\n[{tag}] #toyota has:images\n")


def test_stream_posts_carry_their_matching_rules_tag_as_campaign(fake: FakeX, fetcher: SafeFetcher) -> None:
    tagged = fake.tweet(301)
    tagged["matching_rules"] = [{"id": "9", "tag": "toyota"}, {"id": "8", "tag": "launch"}]
    untagged = fake.tweet(302)
    untagged["matching_rules"] = [{"id": "7"}]
    fake.connections = [Connection([("tweet", tagged), ("tweet", untagged), ("hold",)])]
    out, _stats = ingest(source(fake, fetcher), max_posts=2)
    assert [(p.post_id, p.campaign) for p in out.posts] == [("x:301:3_301_0", "launch"), ("x:302:3_302_0", None)]


def test_search_by_rules_tags_each_post_with_its_rules_campaign(fake: FakeX, fetcher: SafeFetcher) -> None:
    fake.tweets = [fake.tweet(710)]
    src = source(fake, fetcher, mode="search", rules=[XRule("#toyota has:images", "toyota")])
    out, _stats = ingest(src, max_posts=1)
    assert [(p.post_id, p.campaign) for p in out.posts] == [("x:710:3_710_0", "toyota")]


def test_rules_sync_adds_missing_and_removes_stale(fake: FakeX) -> None:
    fake.rules = {
        "1": {"id": "1", "value": "#old has:images", "tag": "old"},
        "2": {"id": "2", "value": "#bmw has:images"},
    }
    client = make_rules_client(TOKEN, base_url=fake.base_url)
    wanted = [XRule("#bmw has:images"), XRule("#toyota has:images", "toyota")]
    result = sync_rules(client, wanted)
    assert result.added == [XRule("#toyota has:images", "toyota")]
    assert result.removed == [XRule("#old has:images", "old")] and result.kept == [XRule("#bmw has:images")]
    assert sorted((r["value"], r.get("tag")) for r in fake.rules.values()) == [
        ("#bmw has:images", None),
        ("#toyota has:images", "toyota"),
    ]
    again = sync_rules(client, wanted)
    assert again.added == [] and again.removed == []


# --- the stream -------------------------------------------------------------------------------------------


def test_stream_posts_one_per_picture_with_keepalives_videos_and_text_only(
    fake: FakeX, fetcher: SafeFetcher, connector: LoopbackOnlyConnector
) -> None:
    fake.connections = [
        Connection(
            [
                ("keepalive",),
                ("tweet", fake.tweet(101, photos=2)),
                ("keepalive",),
                ("tweet", fake.tweet(102, photos=0)),
                ("tweet", fake.tweet(103, kind="video")),
                ("tweet", fake.tweet(104, kind="animated_gif")),
                ("hold",),
            ]
        )
    ]
    src = source(fake, fetcher)
    out, stats = ingest(src, max_posts=4)
    assert out.ids == ["x:101:3_101_0", "x:101:3_101_1", "x:103:3_103_0", "x:104:3_104_0"]
    first = out.posts[0]
    assert first.author == "@fan" and first.url == "https://x.com/fan/status/101" and first.image is not None
    assert src.stats.keep_alives >= 2 and src.stats.tweets_without_pictures == 1
    assert stats.rejected_total == 0
    stream_requests = [r for r in fake.server.requests if r.path == "/2/tweets/search/stream"]
    assert stream_requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert "attachments.media_keys" in stream_requests[0].query["expansions"][0]
    assert "preview_image_url" in stream_requests[0].query["media.fields"][0]
    assert {host for host, _ in connector.attempts} == {"127.0.0.1"}


def test_malformed_lines_are_dead_lettered_and_the_stream_goes_on(fake: FakeX, fetcher: SafeFetcher) -> None:
    fake.connections = [
        Connection(
            [
                ("line", b'{"data": {"id": "1", "text": "cut'),
                ("line", b"[1, 2, 3]"),
                ("tweet", fake.tweet(201)),
                ("hold",),
            ]
        )
    ]
    src = source(fake, fetcher)
    out, _stats = ingest(src, max_posts=3)
    assert out.ids == ["x:201:3_201_0"]
    assert [r.reason for r in out.rejections] == ["broken_record", "broken_record"]
    assert src.stats.malformed_lines == 2 and src.stats.connects == 1


def test_mid_stream_disconnect_reconnects_with_capped_jittered_backoff(fake: FakeX, fetcher: SafeFetcher) -> None:
    fake.connections = [
        Connection([("tweet", fake.tweet(301)), ("drop",)]),
        Connection([("tweet", fake.tweet(302)), ("end",)]),
        Connection([("tweet", fake.tweet(303)), ("hold",)]),
    ]
    src = source(fake, fetcher)
    out, _stats = ingest(src, max_posts=3)
    assert out.ids == ["x:301:3_301_0", "x:302:3_302_0", "x:303:3_303_0"]
    assert src.stats.connects == 3 and src.stats.disconnects == 2
    assert len(src.stats.waits) == 2 and all(0 < w <= 0.2 for w in src.stats.waits)


def test_stream_429_waits_until_rate_limit_reset(fake: FakeX, fetcher: SafeFetcher) -> None:
    fake.connections = [
        Connection(status=429, headers={"x-rate-limit-reset": str(int(NOW) + 1)}),
        Connection([("tweet", fake.tweet(401)), ("hold",)]),
    ]
    src = source(fake, fetcher)
    out, _stats = ingest(src, max_posts=1)
    assert out.ids == ["x:401:3_401_0"]
    assert src.stats.rate_limited == 1
    assert 1.0 <= src.stats.waits[0] <= 2.0  # until the reset (+ jitter), not the 0.2 s backoff cap


def test_stream_5xx_backs_off_and_reconnects(fake: FakeX, fetcher: SafeFetcher) -> None:
    fake.connections = [
        Connection(status=503),
        Connection(status=500),
        Connection([("tweet", fake.tweet(501)), ("hold",)]),
    ]
    src = source(fake, fetcher)
    out, _stats = ingest(src, max_posts=1)
    assert out.ids == ["x:501:3_501_0"]
    assert src.stats.server_errors == 2 and src.stats.connects == 3
    assert all(0 < w <= 0.2 for w in src.stats.waits)


def test_stream_401_is_fatal(fake: FakeX, fetcher: SafeFetcher) -> None:
    src = source(fake, fetcher, bearer_token="wrong")
    with pytest.raises(XApiError, match="401"):
        ingest(src, max_posts=1)


def test_a_missing_picture_is_dead_lettered_under_its_post_id(fake: FakeX, fetcher: SafeFetcher) -> None:
    payload = fake.tweet(601, photos=2)
    payload["includes"]["media"][1]["url"] = fake.server.url("/media/gone.jpg")
    fake.connections = [Connection([("tweet", payload), ("hold",)])]
    out, _stats = ingest(source(fake, fetcher), max_posts=2)
    assert out.ids == ["x:601:3_601_0"]
    assert [(r.post_id, r.reason) for r in out.rejections] == [("x:601:3_601_1", "http_404")]


# --- search polling ---------------------------------------------------------------------------------------


def test_search_follows_next_token_and_hands_out_oldest_first(fake: FakeX, fetcher: SafeFetcher) -> None:
    fake.tweets = [fake.tweet(tweet_id) for tweet_id in range(700, 705)]
    src = source(fake, fetcher, mode="search", query="#toyota has:images", page_size=2)
    out, _stats = ingest(src, max_posts=5)
    assert out.ids == [f"x:{i}:3_{i}_0" for i in range(700, 705)]
    first_poll = fake.search_calls[:3]
    assert [c.get("next_token") for c in first_poll] == [None, ["2"], ["4"]]
    assert all("since_id" not in c for c in first_poll)


def test_search_429_waits_for_reset_and_5xx_backs_off(fake: FakeX, fetcher: SafeFetcher) -> None:
    fake.tweets = [fake.tweet(801)]
    fake.search_statuses = [(429, {"x-rate-limit-reset": str(int(NOW) + 1)}), (503, {})]
    src = source(fake, fetcher, mode="search", query="#toyota")
    out, _stats = ingest(src, max_posts=1)
    assert out.ids == ["x:801:3_801_0"]
    assert src.stats.rate_limited == 1 and src.stats.server_errors == 1
    assert 1.0 <= src.stats.waits[0] <= 2.0 and 0 < src.stats.waits[1] <= 0.2


def test_checkpoint_restart_neither_loses_nor_duplicates(fake: FakeX, fetcher: SafeFetcher) -> None:
    fake.tweets = [fake.tweet(tweet_id) for tweet_id in range(900, 906)]
    checkpoint = InMemoryCheckpoint()
    dedup = InMemoryDeduplicator()
    first = source(fake, fetcher, mode="search", query="#toyota", checkpoint=checkpoint)
    out1, _ = ingest(first, max_posts=3, dedup=dedup)
    assert first.commit_checkpoint() == 901  # the third post was taken but not finished: not checkpointed
    assert checkpoint.value == 901

    fake.tweets.append(fake.tweet(906))  # posted while we were down
    second = source(fake, fetcher, mode="search", query="#toyota", checkpoint=checkpoint)
    out2, stats2 = ingest(second, max_posts=5, dedup=dedup)
    assert fake.search_calls[-1].get("since_id") in (["901"], ["906"])  # restarted from the checkpoint
    all_ids = out1.ids + out2.ids
    assert all_ids == [f"x:{i}:3_{i}_0" for i in range(900, 907)]  # every post once, none twice
    assert stats2.duplicate_posts == 1  # 902 was produced by the first run, skipped by its post id


def test_stream_restart_catches_up_the_gap_with_search_since_the_checkpoint(fake: FakeX, fetcher: SafeFetcher) -> None:
    fake.tweets = [fake.tweet(tweet_id) for tweet_id in (950, 951, 952)]
    fake.connections = [Connection([("tweet", fake.tweet(953)), ("hold",)])]
    src = source(fake, fetcher, checkpoint=InMemoryCheckpoint(950))
    out, _stats = ingest(src, max_posts=3)
    assert sorted(out.ids) == ["x:951:3_951_0", "x:952:3_952_0", "x:953:3_953_0"]
    assert fake.search_calls[0]["since_id"] == ["950"] and fake.search_calls[0]["query"] == ["#toyota has:images"]


def test_the_bearer_token_never_reaches_the_logs(fake: FakeX, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sync_rules(make_rules_client(TOKEN, base_url=fake.base_url), [XRule("#a has:images")])
    assert caplog.records and TOKEN not in caplog.text
