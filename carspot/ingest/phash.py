"""Near-duplicate pictures: a 64-bit perceptual hash (DCT pHash) and an index queried by Hamming distance.

sha256 catches the same file re-posted; a copy that was re-encoded, resized or re-compressed on its way
through a social network has other bytes but almost the same hash. Two pictures whose hashes differ in at
most ``threshold`` bits are taken as one: the later post links to the first one's analysis.

The hash (Zauner's pHash): greyscale, 32x32, 2-D DCT-II, the 8x8 lowest frequencies, each bit = coefficient
above their median (the DC term left out of the median). numpy only; JPEGs are decoded at 1/8 scale by libjpeg
(``draft``), so hashing a normalised picture costs about a millisecond.

Looking up "any hash within distance t" without comparing against everything: the 64 bits are cut into
``t + 1`` bands. Two hashes within distance t differ in at most t bits, so (pigeonhole) at least one band is
identical: a picture is indexed under each of its ``t + 1`` band values, and only the pictures sharing a
band value with the query are compared bit by bit. In Redis each (band, value) is one set; a lookup is one
pipelined round trip of ``t + 1`` ``SMEMBERS``. Bands are ``64 / (t + 1)`` bits wide, so with t = 4 (13-bit
bands) a million pictures put ~120 in each bucket: ~600 candidates per lookup, compared in microseconds. A
larger t widens buckets fast; the keys carry t, so changing it starts a fresh index instead of a wrong one.
"""

from __future__ import annotations

import io
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Protocol

import numpy as np
import numpy.typing as npt
import redis
from PIL import Image
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger("carspot.ingest.phash")

HASH_BITS = 64
_SIZE = 32
_LOW = 8


@lru_cache(maxsize=1)
def _dct_matrix() -> npt.NDArray[np.float64]:
    """Orthonormal DCT-II matrix ``D`` (32x32): ``D @ X @ D.T`` is the 2-D DCT of ``X``."""
    n = np.arange(_SIZE)
    matrix = np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / (2 * _SIZE)) * np.sqrt(2.0 / _SIZE)
    matrix[0, :] = np.sqrt(1.0 / _SIZE)
    return matrix


def phash_image(image: Image.Image) -> int:
    """The 64-bit perceptual hash of a decoded picture."""
    grey = image.convert("L").resize((_SIZE, _SIZE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    pixels = np.asarray(grey, dtype=np.float64)
    dct = _dct_matrix()
    low = (dct @ pixels @ dct.T)[:_LOW, :_LOW].ravel()
    bits = low > np.median(low[1:])
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def phash_bytes(data: bytes) -> int:
    """The hash of an encoded picture (a JPEG is decoded at reduced scale, greyscale)."""
    with Image.open(io.BytesIO(data)) as image:
        if image.format == "JPEG":
            image.draft("L", (_SIZE * 2, _SIZE * 2))
        return phash_image(image)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def bands(phash: int, threshold: int) -> list[int]:
    """The ``threshold + 1`` band values of ``phash`` (consecutive bit ranges; the first ones a bit wider)."""
    count = threshold + 1
    width, extra = divmod(HASH_BITS, count)
    values = []
    shift = HASH_BITS
    for index in range(count):
        bits = width + (1 if index < extra else 0)
        shift -= bits
        values.append((phash >> shift) & ((1 << bits) - 1))
    return values


class NearDuplicateIndex(Protocol):
    """What the producer loop asks once per new picture (after its sha256 claim succeeded)."""

    threshold: int

    def find_or_add(self, phash: int, sha256: str) -> str | None:
        """The sha256 of an indexed picture within ``threshold`` bits of ``phash``; else index this one, None."""
        ...

    def remove(self, phash: int, sha256: str) -> None:
        """Undo :meth:`find_or_add` (producing the post failed, so its picture was never sent)."""
        ...


def _check_threshold(threshold: int) -> None:
    if not 0 <= threshold <= 16:
        raise ValueError("threshold must be within 0..16 bits")


class InMemoryPhashIndex:
    """Process-local index (embedded mode, tests, measurements); thread-safe."""

    def __init__(self, *, threshold: int = 4) -> None:
        _check_threshold(threshold)
        self.threshold = threshold
        self._buckets: defaultdict[tuple[int, int], dict[str, int]] = defaultdict(dict)
        self._lock = threading.Lock()

    def find_or_add(self, phash: int, sha256: str) -> str | None:
        keys = list(enumerate(bands(phash, self.threshold)))
        with self._lock:
            match = _closest(
                phash, ((s, h) for key in keys for s, h in self._buckets.get(key, {}).items()), self.threshold
            )
            if match is None:
                for key in keys:
                    self._buckets[key][sha256] = phash
            return match

    def remove(self, phash: int, sha256: str) -> None:
        with self._lock:
            for key in enumerate(bands(phash, self.threshold)):
                self._buckets.get(key, {}).pop(sha256, None)


class RedisPhashIndex:
    """The index in Redis, shared by every producer: sets ``{prefix}phash:t{t}:{band}:{value}`` whose members
    are ``"<phash hex>:<sha256>"``, expiring ``ttl_s`` after the last picture added to them.

    Like the sha256 claims, Redis is an optimisation: when it fails the picture counts as new (sent whole,
    analysed again), logged once per outage. Two producers adding near-copies at the same instant may both
    send theirs; the worker's idempotent writes make that harmless.
    """

    def __init__(
        self,
        client_factory: Callable[[], redis.Redis],
        *,
        threshold: int = 4,
        prefix: str = "carspot:",
        ttl_s: int = 30 * 24 * 3600,
    ) -> None:
        _check_threshold(threshold)
        self.threshold = threshold
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._client_factory = client_factory
        self._client: redis.Redis | None = None
        self.degraded = False

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 1.0, **options: object) -> RedisPhashIndex:
        def factory() -> redis.Redis:
            return redis.Redis.from_url(
                url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, retry=Retry(NoBackoff(), 1)
            )

        return cls(factory, **options)  # type: ignore[arg-type]

    def _keys(self, phash: int) -> list[str]:
        base = f"{self.prefix}phash:t{self.threshold}"
        return [f"{base}:{index}:{value:x}" for index, value in enumerate(bands(phash, self.threshold))]

    def find_or_add(self, phash: int, sha256: str) -> str | None:
        keys = self._keys(phash)
        try:
            client = self._connect()
            with client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.smembers(key)
                members = pipe.execute()
            candidates = (_parse_member(m) for found in members for m in found)
            match = _closest(phash, ((s, h) for s, h in candidates if s), self.threshold)
            if match is None:
                member = f"{phash:016x}:{sha256}"
                with client.pipeline(transaction=False) as pipe:
                    for key in keys:
                        pipe.sadd(key, member)
                        pipe.expire(key, self.ttl_s)
                    pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._failed(exc)
            return None
        self._recovered()
        return match

    def remove(self, phash: int, sha256: str) -> None:
        member = f"{phash:016x}:{sha256}"
        try:
            client = self._connect()
            with client.pipeline(transaction=False) as pipe:
                for key in self._keys(phash):
                    pipe.srem(key, member)
                pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._failed(exc)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _connect(self) -> redis.Redis:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def _failed(self, exc: Exception) -> None:
        if not self.degraded:
            self.degraded = True
            logger.warning(
                "Redis unreachable for near-duplicate lookups (%s: %s): pictures count as new", type(exc).__name__, exc
            )

    def _recovered(self) -> None:
        if self.degraded:
            self.degraded = False
            logger.info("Redis reachable again: near-duplicate lookups resumed")


def _parse_member(member: bytes | str) -> tuple[str, int]:
    text = member.decode() if isinstance(member, bytes) else member
    hex_hash, _, sha256 = text.partition(":")
    try:
        return sha256, int(hex_hash, 16)
    except ValueError:
        return "", 0


def _closest(phash: int, candidates: Iterable[tuple[str, int]], threshold: int) -> str | None:
    best: tuple[int, str] | None = None
    for sha256, other in candidates:
        distance = hamming(phash, other)
        if distance <= threshold and (best is None or distance < best[0]):
            best = (distance, sha256)
    return None if best is None else best[1]


__all__ = [
    "InMemoryPhashIndex",
    "NearDuplicateIndex",
    "RedisPhashIndex",
    "bands",
    "hamming",
    "phash_bytes",
    "phash_image",
]
