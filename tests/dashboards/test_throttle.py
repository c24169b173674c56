"""The sign-in throttle: free tries, then an exponential lockout per key, forgotten in time, bounded memory."""

from __future__ import annotations

import pytest

from carspot.dashboards.throttle import LoginThrottle, ThrottlePolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_lockout_doubles_after_the_free_tries_up_to_the_cap() -> None:
    policy = ThrottlePolicy(free=3, base_s=2, max_s=60)
    assert [policy.lockout_s(n) for n in range(8)] == [0, 0, 0, 2, 4, 8, 16, 32]
    assert policy.lockout_s(9) == 60 and policy.lockout_s(10_000) == 60


def test_a_key_is_locked_after_its_free_tries_and_free_again_once_the_wait_is_over() -> None:
    clock = Clock()
    throttle = LoginThrottle(user_policy=ThrottlePolicy(free=2, base_s=10), clock=clock)
    keys = throttle.keys(user="ann", address="192.0.2.1")
    throttle.failure(keys)
    assert throttle.retry_after(keys) == 0
    throttle.failure(keys)
    assert throttle.retry_after(keys) == 10
    clock.now += 4
    assert throttle.retry_after(keys) == 6
    clock.now += 6
    assert throttle.retry_after(keys) == 0
    throttle.failure(keys)
    assert throttle.retry_after(keys) == 20  # one more failure: twice as long


def test_success_clears_the_user_but_not_the_address() -> None:
    clock = Clock()
    throttle = LoginThrottle(
        user_policy=ThrottlePolicy(free=1, base_s=5), address_policy=ThrottlePolicy(free=2, base_s=7), clock=clock
    )
    keys = throttle.keys(user="ann", address="192.0.2.1")
    throttle.failure(keys)
    throttle.failure(keys)
    throttle.success(user="ann")
    assert throttle.retry_after(["user:ann"]) == 0
    assert throttle.retry_after(["addr:192.0.2.1"]) == 7
    assert throttle.retry_after(throttle.keys(user="bob", address="192.0.2.1")) == 7


def test_failures_are_forgotten_after_the_longest_lockout() -> None:
    clock = Clock()
    throttle = LoginThrottle(user_policy=ThrottlePolicy(free=3, base_s=1, max_s=100), clock=clock)
    for _ in range(2):
        throttle.failure(["user:ann"])
    clock.now += 100
    throttle.failure(["user:ann"])  # counts from one again: still within the free tries
    assert throttle.retry_after(["user:ann"]) == 0


def test_memory_is_bounded_and_the_least_recently_failed_key_goes_first() -> None:
    clock = Clock()
    throttle = LoginThrottle(user_policy=ThrottlePolicy(free=1, base_s=50), max_keys=100, clock=clock)
    throttle.failure(["user:first"])
    for i in range(1000):
        throttle.failure([f"user:spray{i}"])
    assert len(throttle) == 100
    assert throttle.retry_after(["user:first"]) == 0  # dropped
    assert throttle.retry_after(["user:spray999"]) == 50


def test_max_keys_must_hold_a_user_and_an_address() -> None:
    with pytest.raises(ValueError, match="max_keys"):
        LoginThrottle(max_keys=1)
