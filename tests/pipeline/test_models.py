"""A promoted model replaces the current one in a running worker, between images, without a restart."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from carspot.pipeline.models import CurrentClassifier


class Versioned:
    def __init__(self, version: str) -> None:
        self.version = version

    def predict(self, crops: Sequence[np.ndarray], *, top_k: int = 5) -> list[list[tuple[str, float]]]:
        return [[(self.version, 1.0)] for _ in crops]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_new_current_version_is_picked_up_after_the_check_interval() -> None:
    registry = {"current": "v1"}
    loads: list[str] = []
    clock = Clock()

    def load(version: str) -> Versioned:
        loads.append(version)
        if version == "broken":
            raise RuntimeError("corrupt model")
        return Versioned(version)

    source = CurrentClassifier(
        load=load, current_version=lambda: registry["current"], check_interval_s=5, monotonic=clock
    )
    assert source().version == "v1"
    registry["current"] = "v2"
    clock.now = 4.9
    assert source().version == "v1"  # not checked yet
    clock.now = 5.0
    assert source().version == "v2" and source.swaps == 1

    registry["current"] = "broken"  # a version that cannot load keeps the current one in service
    clock.now = 10.0
    assert source().version == "v2"
    clock.now = 20.0
    assert source().version == "v2"
    assert loads == ["v1", "v2", "broken"]  # the broken one is not retried in a loop


def test_a_registry_without_current_version_is_refused() -> None:
    with pytest.raises(LookupError):
        CurrentClassifier(load=Versioned, current_version=lambda: None)
