"""Failed sign-ins slow down guessing: per user name and per client address, an exponentially growing lockout.

After ``free`` failures on a key, each further failure locks that key for ``base_s * 2**(n - free)`` seconds,
capped at ``max_s``; while a key is locked, a sign-in is refused before the password is even checked, so a
guesser gets no answer and costs no hash. A key forgets its failures ``max_s`` after the last one, and a
successful sign-in clears the user's key (not the address's: one good account must not open the door to
guessing the others from the same place). Memory is bounded: at most ``max_keys`` keys, the least recently
failed dropped first. State is per process (the dashboard runs as one).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(slots=True)
class _Failures:
    count: int
    last: float


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """How many failures are free, and how the lockout grows."""

    free: int
    base_s: float = 1.0
    max_s: float = 900.0

    def lockout_s(self, failures: int) -> float:
        if failures < self.free:
            return 0.0
        return min(self.max_s, self.base_s * 2.0 ** min(failures - self.free, 32))


USER_POLICY = ThrottlePolicy(free=5)
"""A person mistyping: five tries, then 1 s, 2 s, 4 s … up to 15 minutes."""
ADDRESS_POLICY = ThrottlePolicy(free=20)
"""An office behind one address holds many people: more free tries, the same growth."""


class LoginThrottle:
    """Failures per key (``user:NAME``, ``addr:IP``), each key with its policy; thread-safe."""

    def __init__(
        self,
        *,
        user_policy: ThrottlePolicy = USER_POLICY,
        address_policy: ThrottlePolicy = ADDRESS_POLICY,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_keys < 2:
            raise ValueError(f"max_keys must be at least 2, got {max_keys}")
        self.policies = {"user": user_policy, "addr": address_policy}
        self.max_keys = max_keys
        self.clock = clock
        self._failures: OrderedDict[str, _Failures] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def keys(*, user: str, address: str | None) -> list[str]:
        keys = [f"user:{user}"]
        if address:
            keys.append(f"addr:{address}")
        return keys

    def _policy(self, key: str) -> ThrottlePolicy:
        return self.policies[key.split(":", 1)[0]]

    def retry_after(self, keys: Iterable[str]) -> int:
        """Whole seconds until these keys may try again; 0 when they may now."""
        now = self.clock()
        wait = 0.0
        with self._lock:
            for key in keys:
                entry = self._failures.get(key)
                if entry is None:
                    continue
                policy = self._policy(key)
                if now - entry.last >= policy.max_s:
                    del self._failures[key]
                    continue
                wait = max(wait, entry.last + policy.lockout_s(entry.count) - now)
        return math.ceil(wait) if wait > 0 else 0

    def failure(self, keys: Iterable[str]) -> None:
        now = self.clock()
        with self._lock:
            for key in keys:
                entry = self._failures.pop(key, None)
                if entry is None or now - entry.last >= self._policy(key).max_s:
                    entry = _Failures(0, now)
                entry.count += 1
                entry.last = now
                self._failures[key] = entry  # most recently failed last
                while len(self._failures) > self.max_keys:
                    self._failures.popitem(last=False)

    def success(self, *, user: str) -> None:
        with self._lock:
            self._failures.pop(f"user:{user}", None)

    def __len__(self) -> int:
        return len(self._failures)
