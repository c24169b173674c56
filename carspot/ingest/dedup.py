"""De-duplication: has this post id, or this exact normalised picture, been sent before?

Two kinds of claims, both "first caller wins": a post id (the same post seen twice, e.g. a replay) and the
sha256 of the normalised JPEG (the same picture re-posted: sent once, later posts only link to it). A claim
can be released when producing the post failed, so a retry is not mistaken for a duplicate.

Redis is an optimisation, not a dependency: when it is down the producer keeps going and every claim
succeeds (duplicates may then reach the workers, whose writes are idempotent). That state is visible as
``degraded`` and in ``counters``, logged once per outage, and Redis is retried at most every
``retry_interval_s`` so an outage does not cost a connection timeout per post.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger("carspot.ingest.dedup")

THIRTY_DAYS_S = 30 * 24 * 3600


class Deduplicator(Protocol):
    """What the producer loop needs; ``True`` from a claim means "first time seen, go ahead"."""

    @property
    def degraded(self) -> bool:
        """True while duplicates cannot be detected (the backing store is unreachable)."""
        ...

    def claim_post(self, post_id: str) -> bool: ...

    def claim_image(self, sha256: str) -> bool: ...

    def release(self, *, post_id: str | None = None, sha256: str | None = None) -> None:
        """Undo claims (after producing failed) so the next attempt is not taken for a duplicate."""
        ...


class InMemoryDeduplicator:
    """Process-local claims, bounded: the least recently seen keys are forgotten beyond ``max_entries``.

    For the embedded single-process mode and tests; thread-safe so an embedded app may share it.
    """

    def __init__(self, *, max_entries: int = 1_000_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self.max_entries = max_entries
        self._posts: OrderedDict[str, None] = OrderedDict()
        self._images: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def degraded(self) -> bool:
        return False

    def claim_post(self, post_id: str) -> bool:
        return self._claim(self._posts, post_id)

    def claim_image(self, sha256: str) -> bool:
        return self._claim(self._images, sha256)

    def release(self, *, post_id: str | None = None, sha256: str | None = None) -> None:
        with self._lock:
            if post_id is not None:
                self._posts.pop(post_id, None)
            if sha256 is not None:
                self._images.pop(sha256, None)

    @property
    def entries(self) -> int:
        """Keys held (posts + pictures). Not ``__len__``: an empty deduplicator must not be falsy."""
        return len(self._posts) + len(self._images)

    def _claim(self, seen: OrderedDict[str, None], key: str) -> bool:
        with self._lock:
            if key in seen:
                seen.move_to_end(key)
                return False
            seen[key] = None
            if len(seen) > self.max_entries:
                seen.popitem(last=False)
            return True


@dataclass
class DedupCounters:
    """What happened to claims; ``unchecked`` ones were let through without asking Redis."""

    claims: int = 0
    duplicates: int = 0
    unchecked: int = 0
    errors: int = 0
    outages: int = 0


class RedisDeduplicator:
    """Claims as ``SET key 1 NX EX ttl`` in Redis, shared by every producer; keeps going when Redis is down.

    Keys are ``{prefix}post:{post_id}`` and ``{prefix}image:{sha256}``; they expire after ``ttl_s`` so Redis
    does not grow without bound. ``client_factory`` is called lazily, on first use, so building this object
    never blocks; :meth:`from_url` makes a client with short timeouts and no retry backoff.
    """

    def __init__(
        self,
        client_factory: Callable[[], redis.Redis],
        *,
        ttl_s: int = THIRTY_DAYS_S,
        prefix: str = "carspot:",
        retry_interval_s: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s < 1:
            raise ValueError("ttl_s must be positive")
        self._client_factory = client_factory
        self._client: redis.Redis | None = None
        self.ttl_s = ttl_s
        self.prefix = prefix
        self.retry_interval_s = retry_interval_s
        self._monotonic = monotonic
        self._degraded = False
        self._next_attempt = 0.0
        self.counters = DedupCounters()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        ttl_s: int = THIRTY_DAYS_S,
        prefix: str = "carspot:",
        retry_interval_s: float = 30.0,
        timeout_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> RedisDeduplicator:
        """A client that fails fast: ``timeout_s`` for connect and commands, one immediate retry (a pooled
        connection that a Redis restart closed), instead of redis-py's default backoff of seconds."""

        def factory() -> redis.Redis:
            return redis.Redis.from_url(
                url,
                socket_connect_timeout=timeout_s,
                socket_timeout=timeout_s,
                retry=Retry(NoBackoff(), 1),
            )

        return cls(factory, ttl_s=ttl_s, prefix=prefix, retry_interval_s=retry_interval_s, monotonic=monotonic)

    @property
    def degraded(self) -> bool:
        return self._degraded

    def claim_post(self, post_id: str) -> bool:
        return self._claim(f"{self.prefix}post:{post_id}")

    def claim_image(self, sha256: str) -> bool:
        return self._claim(f"{self.prefix}image:{sha256}")

    def release(self, *, post_id: str | None = None, sha256: str | None = None) -> None:
        keys = []
        if post_id is not None:
            keys.append(f"{self.prefix}post:{post_id}")
        if sha256 is not None:
            keys.append(f"{self.prefix}image:{sha256}")
        if keys:
            self._call(lambda client: client.delete(*keys), default=0)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _claim(self, key: str) -> bool:
        self.counters.claims += 1
        created = self._call(lambda client: client.set(key, b"1", nx=True, ex=self.ttl_s), default=True)
        if not created:
            self.counters.duplicates += 1
            return False
        return True

    def _call(self, operation: Callable[[redis.Redis], Any], *, default: object) -> object:
        """Run one Redis command; on failure answer ``default`` and go degraded until the next retry time."""
        now = self._monotonic()
        if self._degraded and now < self._next_attempt:
            self.counters.unchecked += 1
            return default
        try:
            if self._client is None:
                self._client = self._client_factory()
            result = operation(self._client)
        except (redis.RedisError, OSError) as exc:
            self.counters.errors += 1
            self.counters.unchecked += 1
            self._next_attempt = now + self.retry_interval_s
            if not self._degraded:
                self._degraded = True
                self.counters.outages += 1
                logger.warning(
                    "Redis unreachable (%s: %s): de-duplication is off, every post counts as new; "
                    "retrying at most every %.0f s",
                    type(exc).__name__,
                    exc,
                    self.retry_interval_s,
                )
            return default
        if self._degraded:
            self._degraded = False
            logger.info(
                "Redis reachable again: de-duplication resumed (%d claims went unchecked so far)",
                self.counters.unchecked,
            )
        return result


__all__ = ["DedupCounters", "Deduplicator", "InMemoryDeduplicator", "RedisDeduplicator"]
