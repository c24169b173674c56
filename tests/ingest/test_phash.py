"""Perceptual-hash de-duplication: re-encoded and resized copies match, different pictures do not, the band
index finds every hash within the threshold, and the producer loop links near-copies to the first picture."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from carspot.ingest.dedup import InMemoryDeduplicator
from carspot.ingest.images import normalize_image
from carspot.ingest.loop import IngestedPost, run_ingest
from carspot.ingest.phash import InMemoryPhashIndex, RedisPhashIndex, bands, hamming, phash_bytes
from carspot.ingest.sources import RawPost
from tests.ingest.factories import encode
from tests.ingest.test_dedup import REDIS_SERVER, RedisServer, free_port


def variant(data: bytes, *, scale: float = 1.0, quality: int = 75, fmt: str = "JPEG") -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")
        if scale != 1.0:
            rgb = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.BICUBIC)
        return encode(rgb, fmt, **({"quality": quality} if fmt == "JPEG" else {}))


@pytest.fixture
def scenes(scenes_dir: Path) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in sorted(scenes_dir.glob("*.jpg"))}


def test_reencoded_and_resized_copies_are_near_and_other_pictures_far(scenes: dict[str, bytes]) -> None:
    for name, data in scenes.items():
        original = phash_bytes(normalize_image(data).jpeg)
        for copy in (variant(data, quality=55), variant(data, scale=0.5), variant(data, scale=0.5, fmt="PNG")):
            assert hamming(original, phash_bytes(normalize_image(copy).jpeg)) <= 4, name
    hashes = [phash_bytes(normalize_image(d).jpeg) for d in scenes.values()]
    distances = [hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :]]
    assert min(distances) > 12


def test_bands_guarantee_a_shared_band_within_the_threshold() -> None:
    rng = random.Random(5)
    for threshold in (0, 2, 4, 6, 8):
        for _ in range(300):
            a = rng.getrandbits(64)
            flips = rng.sample(range(64), rng.randint(0, threshold))
            b = a
            for bit in flips:
                b ^= 1 << bit
            assert any(x == y for x, y in zip(bands(a, threshold), bands(b, threshold), strict=True))
        assert len(bands(0, threshold)) == threshold + 1


def test_in_memory_index_finds_the_closest_and_removes() -> None:
    index = InMemoryPhashIndex(threshold=4)
    assert index.find_or_add(0b1111, "a" * 64) is None
    assert index.find_or_add(0b1110, "b" * 64) == "a" * 64  # 1 bit away: not added
    assert index.find_or_add(0xFFFF_0000_0000_0000, "c" * 64) is None
    index.remove(0b1111, "a" * 64)
    assert index.find_or_add(0b1110, "b" * 64) is None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if not Path(REDIS_SERVER).exists():
        pytest.fail(f"redis-server not found at {REDIS_SERVER}")
    server = RedisServer(free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_redis_index_is_shared_and_degrades_when_redis_is_down(redis_server: RedisServer) -> None:
    first = RedisPhashIndex.from_url(redis_server.url, threshold=4, prefix="t:", ttl_s=60)
    second = RedisPhashIndex.from_url(redis_server.url, threshold=4, prefix="t:", ttl_s=60)
    assert first.find_or_add(0xABCD_0000_1234_5678, "a" * 64) is None
    assert second.find_or_add(0xABCD_0000_1234_5679, "b" * 64) == "a" * 64
    keys = redis_server.client().keys("t:phash:t4:*")
    assert len(keys) == 5 and all(0 < redis_server.client().ttl(k) <= 60 for k in keys)
    redis_server.stop()
    assert second.find_or_add(0x1, "c" * 64) is None and second.degraded


def test_the_loop_links_a_near_copy_to_the_first_picture(scenes: dict[str, bytes]) -> None:
    dog = scenes["dog"]
    small = variant(dog, scale=0.5, quality=60)
    posts = [
        RawPost(post_id=f"p{i}", source="test", image_ref=f"mem:{i}", read_image=lambda d=d: d)
        for i, d in enumerate([dog, small, small, scenes["bus"]])
    ]
    emitted: list[IngestedPost] = []
    stats = run_ingest(
        posts,
        emit=emitted.append,
        reject=lambda r: pytest.fail(f"rejected {r}"),
        dedup=InMemoryDeduplicator(),
        normalize=normalize_image,
        near_duplicates=InMemoryPhashIndex(threshold=4),
    )
    original = emitted[0].image_sha256
    assert [p.image is None for p in emitted] == [False, True, True, False]
    assert emitted[1].image_sha256 == original and emitted[2].image_sha256 == original  # never to itself
    assert stats.emitted == 2 and stats.emitted_links == 2 and stats.near_duplicates == 2


def test_a_failed_emit_removes_the_picture_from_the_index(scenes: dict[str, bytes]) -> None:
    index = InMemoryPhashIndex(threshold=4)

    def failing(_post: IngestedPost) -> None:
        raise ConnectionError("sink down")

    post = RawPost(post_id="p", source="test", image_ref="mem", read_image=lambda: scenes["dog"])
    with pytest.raises(ConnectionError):
        run_ingest(
            [post],
            emit=failing,
            reject=print,
            dedup=InMemoryDeduplicator(),
            normalize=normalize_image,
            near_duplicates=index,
        )
    assert index.find_or_add(phash_bytes(normalize_image(scenes["dog"]).jpeg), "x" * 64) is None
