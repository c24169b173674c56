"""Confidence intervals for shares: how sure a share of *n* images is, so a 50 % of 4 images reads as unsure.

The Wilson score interval (Wilson 1927; Brown, Cai & DasGupta 2001 recommend it over the normal approximation),
which stays inside [0, 1] and behaves for small counts and for shares near 0 or 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

Z_95: Final = 1.959963984540054
"""The standard normal quantile of 0.975: a two-sided 95 % interval."""


@dataclass(frozen=True, slots=True)
class Interval:
    low: float
    high: float


def wilson(successes: int, trials: int, *, z: float = Z_95) -> Interval | None:
    """The Wilson score interval of ``successes`` out of ``trials`` (None without trials: nothing to say)."""
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return None
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    margin = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    return Interval(low=max(0.0, centre - margin), high=min(1.0, centre + margin))
