"""The Wilson score interval, against values computed by hand."""

from __future__ import annotations

import pytest

from carspot.dashboards.intervals import wilson


def test_three_of_ten_by_hand() -> None:
    # p = 0.3, z = 1.96: centre (0.3 + 1.96²/20) / (1 + 1.96²/10) = 0.35551,
    # margin 1.96 · sqrt(0.3 · 0.7 / 10 + 1.96² / 400) / 1.38415 = 0.24772.
    interval = wilson(3, 10)
    assert interval is not None
    assert interval.low == pytest.approx(0.10779, abs=1e-5)
    assert interval.high == pytest.approx(0.60322, abs=1e-5)


def test_the_ends_stay_inside_zero_and_one_and_nothing_is_said_of_no_trials() -> None:
    none = wilson(0, 5)
    every = wilson(5, 5)
    assert none is not None and none.low == 0.0 and 0.4 < none.high < 0.5
    assert every is not None and every.high == 1.0 and 0.5 < every.low < 0.6
    assert wilson(0, 0) is None
    with pytest.raises(ValueError):
        wilson(6, 5)
