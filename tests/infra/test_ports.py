"""Free-port picking: free, loopback, outside the ephemeral range, never an excluded or busy port."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from carspot.infra.ports import (
    LOOPBACK,
    ephemeral_range,
    is_port_free,
    pick_free_port,
    port_answers,
    reuse_or_pick,
)


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_picked_port_is_free_and_below_the_ephemeral_range() -> None:
    port = pick_free_port()
    assert is_port_free(port)
    assert 20000 <= port < ephemeral_range()[0]


def test_pick_never_returns_an_excluded_port() -> None:
    first = pick_free_port(rng=random.Random(7))
    again = pick_free_port(rng=random.Random(7), exclude={first})
    assert again != first


def test_a_listening_port_is_busy_and_answers(listening: int) -> None:
    assert not is_port_free(listening)
    assert port_answers(listening)


def test_reuse_keeps_a_free_port_and_replaces_a_busy_one(listening: int) -> None:
    free = pick_free_port()
    assert reuse_or_pick(free) == free
    replacement = reuse_or_pick(listening)
    assert replacement != listening
    assert is_port_free(replacement)
    assert reuse_or_pick(free, exclude={free}) != free


def test_ephemeral_range_falls_back_when_unreadable(tmp_path: Path) -> None:
    assert ephemeral_range(path=tmp_path / "missing") == (32768, 60999)
