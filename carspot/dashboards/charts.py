"""Inline SVG charts drawn on the server: no JavaScript library, no external asset, nothing to fetch.

Every piece of text put into the SVG is escaped; the charts take the store's own result types.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Final

from carspot.store.queries import DailyCount

POSTS_COLOUR: Final = "#4f46e5"
IMAGES_COLOUR: Final = "#0891b2"
CARS_COLOUR: Final = "#f59e0b"

_WIDTH: Final = 1000
_HEIGHT: Final = 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 12, 14, 30
_MAX_X_LABELS: Final = 10


def nice_step(raw: float) -> int:
    """The smallest of 1, 2, 5 × 10^k that is at least ``raw`` (and at least 1: the axes count things)."""
    if raw <= 1:
        return 1
    exponent = math.floor(math.log10(raw))
    base = 10**exponent
    for factor in (1, 2, 5, 10):
        if factor * base >= raw:
            return int(factor * base)
    return int(10 * base)  # pragma: no cover - the loop always returns


def compact(n: int) -> str:
    """``950`` → ``950``, ``12_300`` → ``12.3k``, ``4_000_000`` → ``4M``."""
    for limit, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if abs(n) >= limit:
            text = f"{n / limit:.1f}".rstrip("0").rstrip(".")
            return f"{text}{suffix}"
    return str(n)


def trend_svg(days: Sequence[DailyCount], *, label: str) -> str:
    """Cars per day as bars, posts and images analysed as lines, on one count axis.

    ``label`` is the chart's accessible name. An empty or all-zero series still draws the axes.
    """
    top_value = max((max(d.posts, d.images_analyzed, d.cars) for d in days), default=0)
    # The tightest of 4 or 5 gridlines at a nice step: 41 gets 0-50 by 10, not 0-80 by 20.
    ticks, step = min(((t, nice_step(top_value / t)) for t in (4, 5)), key=lambda ts: (ts[0] * ts[1], ts[0]))
    y_max = step * ticks
    plot_w = _WIDTH - _LEFT - _RIGHT
    plot_h = _HEIGHT - _TOP - _BOTTOM
    n = max(len(days), 1)
    slot = plot_w / n

    def x(i: int) -> float:
        return _LEFT + slot * (i + 0.5)

    def y(v: int) -> float:
        return _TOP + plot_h - plot_h * v / y_max

    parts = [
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" aria-label="{escape(label)}" '
        'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet">'
    ]
    for t in range(ticks + 1):
        value = step * t
        gy = y(value)
        parts.append(
            f'<line x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{gy:.1f}" y2="{gy:.1f}" '
            f'class="grid{" base" if t == 0 else ""}"/>'
            f'<text x="{_LEFT - 8}" y="{gy + 4:.1f}" class="tick" text-anchor="end">{compact(value)}</text>'
        )

    bar_w = min(slot * 0.55, 26)
    label_every = max(1, math.ceil(len(days) / _MAX_X_LABELS))
    for i, d in enumerate(days):
        cx = x(i)
        tip = escape(f"{d.day.isoformat()}: {d.posts:,} posts, {d.images_analyzed:,} images analysed, {d.cars:,} cars")
        bar_top = y(d.cars)
        parts.append(
            f'<g><title>{tip}</title><rect x="{_LEFT + slot * i:.1f}" y="{_TOP}" width="{slot:.1f}" '
            f'height="{plot_h}" class="hover"/>'
            f'<rect x="{cx - bar_w / 2:.1f}" y="{bar_top:.1f}" width="{bar_w:.1f}" '
            f'height="{_TOP + plot_h - bar_top:.1f}" rx="2" fill="{CARS_COLOUR}" fill-opacity="0.75"/></g>'
        )
        if i % label_every == 0:
            parts.append(
                f'<text x="{cx:.1f}" y="{_HEIGHT - 10}" class="tick" text-anchor="middle">'
                f"{d.day.strftime('%b %d')}</text>"
            )

    for values, colour in (
        ([d.posts for d in days], POSTS_COLOUR),
        ([d.images_analyzed for d in days], IMAGES_COLOUR),
    ):
        if not values:
            continue
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2.5" '
            'stroke-linejoin="round" stroke-linecap="round"/>'
        )
        if len(values) <= 45:
            parts.extend(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3.5" fill="#fff" stroke="{colour}" stroke-width="2"/>'
                for i, v in enumerate(values)
            )
    parts.append("</svg>")
    return "".join(parts)
