"""The analysts' weekly export: brand share and daily activity for one ISO week, as CSV or JSON.

A week is an ISO 8601 week (``2026-W47``), Monday 00:00 UTC to the next Monday 00:00 UTC, half-open like the
store's windows. Without a week, the report covers the last *complete* week before ``now``. The numbers come
only from :mod:`carspot.store.queries`, so the report, the dashboard and the JSON API always agree:

* per make: ``images`` (images whose rank-1 brand it is), ``share`` of all rank-1s, and ``top5_images``
  (images whose top-5 mentions it at any rank); an image analysed several times speaks through its latest
  analysis in the week;
* per UTC day: posts ingested, distinct images analysed that day, car regions found;
* totals: the sums of the daily rows, plus ``images_with_brand`` (distinct images with a rank-1 brand).
  An image re-analysed on two days counts on each of them in ``images_analyzed``.

Makes are listed by rank-1 images, then top-5 mentions, then name; days in calendar order.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from sqlalchemy import Engine

from carspot.store.queries import BrandShare, DailyCount, brand_share, daily_counts

_WEEK: Final = re.compile(r"(\d{4})-W(\d{2})")
CSV_COLUMNS: Final = (
    "week",
    "section",
    "key",
    "images",
    "share",
    "top5_images",
    "posts",
    "images_analyzed",
    "cars",
)
"""One flat table: ``section`` is ``make``, ``day`` or ``total``; cells that do not apply are empty."""

_FORMULA_PREFIXES: Final = ("=", "+", "-", "@", "\t", "\r")


class ReportError(ValueError):
    """The report cannot be made as asked (a malformed or impossible week)."""


@dataclass(frozen=True, slots=True)
class WeekTotals:
    """The week as a whole: sums of the daily rows and the number of images with a rank-1 brand."""

    posts: int
    images_analyzed: int
    cars: int
    images_with_brand: int


@dataclass(frozen=True, slots=True)
class WeeklyReport:
    """Brand share and daily counts of one ISO week; :meth:`to_csv` and :meth:`to_json` are the exports."""

    week: str
    since: datetime
    until: datetime
    complete: bool
    mode: str | None
    generated_at: datetime
    makes: tuple[BrandShare, ...]
    days: tuple[DailyCount, ...]
    totals: WeekTotals

    @property
    def filename_stem(self) -> str:
        """``carspot-weekly-2026-W47`` (plus the mode when one was chosen): a safe download name."""
        return f"carspot-weekly-{self.week}" + (f"-{self.mode}" if self.mode else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "week": self.week,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "complete": self.complete,
            "mode": self.mode,
            "generated_at": self.generated_at.isoformat(),
            "totals": {
                "posts": self.totals.posts,
                "images_analyzed": self.totals.images_analyzed,
                "cars": self.totals.cars,
                "images_with_brand": self.totals.images_with_brand,
            },
            "makes": [
                {"make": m.make, "images": m.images, "share": round(m.share, 6), "top5_images": m.top5_images}
                for m in self.makes
            ],
            "days": [
                {"day": d.day.isoformat(), "posts": d.posts, "images_analyzed": d.images_analyzed, "cars": d.cars}
                for d in self.days
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def to_csv(self) -> str:
        """One header row, then the makes, the days and one total row (RFC 4180, CRLF line ends)."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        for m in self.makes:
            writer.writerow([self.week, "make", _cell(m.make), m.images, f"{m.share:.6f}", m.top5_images, "", "", ""])
        for d in self.days:
            writer.writerow([self.week, "day", d.day.isoformat(), "", "", "", d.posts, d.images_analyzed, d.cars])
        t = self.totals
        share = "1.000000" if t.images_with_brand else "0.000000"
        writer.writerow([self.week, "total", "all", t.images_with_brand, share, "", t.posts, t.images_analyzed, t.cars])
        return buf.getvalue()


def _cell(text: str) -> str:
    """Neutralise spreadsheet formulas (CSV injection): a make is model output, not trusted text."""
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def parse_week(week: str) -> tuple[datetime, datetime]:
    """``"2026-W47"`` → ``[Monday 00:00 UTC, next Monday 00:00 UTC)``; :class:`ReportError` if invalid."""
    match = _WEEK.fullmatch(week.strip())
    if match is None:
        raise ReportError(f"week must look like 2026-W47 (ISO year, 'W', two-digit week), got {week!r}")
    year, number = int(match.group(1)), int(match.group(2))
    try:
        monday = date.fromisocalendar(year, number, 1)
    except ValueError as exc:
        raise ReportError(f"no ISO week {week!r}: {exc}") from None
    since = datetime.combine(monday, time.min, tzinfo=UTC)
    try:
        return since, since + timedelta(days=7)
    except OverflowError:  # 9999-W52 ends after the last date Python (and so the store) can hold
        raise ReportError(f"week {week!r} ends after 9999-12-31, the last supported date") from None


def format_week(day: date) -> str:
    """The ISO week holding ``day``, as ``2026-W47``."""
    iso = day.isocalendar()
    return f"{iso.year:04d}-W{iso.week:02d}"


def last_complete_week(now: datetime) -> str:
    """The ISO week before the one ``now`` (timezone-aware) falls in, in UTC."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ReportError(f"now must be timezone-aware, got naive {now.isoformat()}")
    return format_week(now.astimezone(UTC).date() - timedelta(days=7))


def weekly_report(engine: Engine, *, week: str | None, now: datetime, mode: str | None = None) -> WeeklyReport:
    """The report for ``week`` (``"2026-W47"``; ``None`` = the last complete week before ``now``).

    ``mode`` restricts it to one analysis mode (``standard``, ``region-search``, ``detector``); ``None``
    takes every mode, each image counted once through its latest analysis. Raises :class:`ReportError` for
    a bad week or mode.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ReportError(f"now must be timezone-aware, got naive {now.isoformat()}")
    since, until = parse_week(last_complete_week(now) if week is None else week)
    name = format_week(since.date())
    try:
        with engine.connect() as conn:
            makes = brand_share(conn, since=since, until=until, mode=mode)
            days = daily_counts(conn, since=since, until=until, mode=mode)
    except ValueError as exc:  # the queries' own argument checks (an unknown mode)
        raise ReportError(str(exc)) from None
    totals = WeekTotals(
        posts=sum(d.posts for d in days),
        images_analyzed=sum(d.images_analyzed for d in days),
        cars=sum(d.cars for d in days),
        images_with_brand=sum(m.images for m in makes),
    )
    return WeeklyReport(
        week=name,
        since=since,
        until=until,
        complete=until <= now,
        mode=mode,
        generated_at=now.astimezone(UTC),
        makes=tuple(makes),
        days=tuple(days),
        totals=totals,
    )
