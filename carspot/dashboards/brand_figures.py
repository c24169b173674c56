"""A make's figures over a view: its count and share in the window, the two last weeks, the daily series, the
makes seen with it and its latest images (what the brand page and its JSON show, computed once)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Connection

from carspot.dashboards.filters import View
from carspot.dashboards.intervals import Interval, wilson
from carspot.store.queries import (
    BrandImage,
    CampaignCount,
    DailyBrands,
    SeenWith,
    brand_images,
    brand_share,
    campaign_counts,
    daily_brand_counts,
    seen_with,
    unidentified_images,
)

BRAND_IMAGES: Final = 24
WEEK: Final = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Period:
    """A make's count in a window and its share of the identified images."""

    images: int
    identified: int
    unidentified: int

    @property
    def share(self) -> float:
        return self.images / self.identified if self.identified else 0.0

    @property
    def interval(self) -> Interval | None:
        return wilson(self.images, self.identified)


@dataclass(frozen=True, slots=True)
class BrandFigures:
    """Everything the brand page and its JSON show."""

    make: str
    view: View
    total: Period
    this_week: Period
    previous_week: Period
    days: Sequence[DailyBrands]
    seen: SeenWith
    images: Sequence[BrandImage]
    campaigns: Sequence[CampaignCount]


def period(conn: Connection, make: str, view: View, since: datetime, until: datetime) -> Period:
    shares = brand_share(conn, since=since, until=until, filters=view.filters)
    images = next((s.images for s in shares if s.make == make), 0)
    doubted = unidentified_images(conn, since=since, until=until, filters=view.filters)
    return Period(images=images, identified=sum(s.images for s in shares), unidentified=doubted)


def brand_figures(conn: Connection, *, make: str, view: View) -> BrandFigures:
    """The brand page's numbers; the two weeks end where the view's window ends."""
    until = view.until
    return BrandFigures(
        make=make,
        view=view,
        total=period(conn, make, view, view.since, until),
        this_week=period(conn, make, view, until - WEEK, until),
        previous_week=period(conn, make, view, until - 2 * WEEK, until - WEEK),
        days=daily_brand_counts(conn, since=view.since, until=until, filters=view.filters),
        seen=seen_with(conn, make=make, since=view.since, until=until, filters=view.filters),
        campaigns=campaign_counts(conn, since=view.since, until=until, filters=view.filters),
        images=brand_images(conn, make=make, since=view.since, until=until, filters=view.filters, limit=BRAND_IMAGES),
    )
