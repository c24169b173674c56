"""The analysts' weekly export: brand share and daily activity for one ISO week (CSV, JSON; XLSX and PDF in
:mod:`.report_xlsx` and :mod:`.report_pdf`, from the same :meth:`WeeklyReport.tables`).

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

Besides (issue 26): each make's 95 % Wilson interval of its share, its share the week before and the change in
percentage points, the posts whose text names it and those whose picture shows it too; posts per source; the model
version(s) of the week's analyses and the share of unidentified cars (images with a car but no confident make,
of all images with a car). With ``rank_text_mentions`` an image counts for the make of its top-5 that its post's
text names (docs/mentions.md). ``to_csv`` is the old one-table export, kept for existing consumers;
``csv_tables`` / ``to_zip`` give one CSV per table.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from sqlalchemy import Engine

from carspot.dashboards.intervals import wilson
from carspot.store.queries import (
    BrandShare,
    CampaignCount,
    DailyCount,
    Filters,
    MentionCount,
    SourceCount,
    brand_share,
    campaign_counts,
    daily_counts,
    mention_counts,
    model_versions,
    source_counts,
    unidentified_images,
)

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
Cell = str | int | float | None
Table = tuple[tuple[str, ...], list[tuple[Cell, ...]]]
"""A header and its rows: what CSV files, XLSX sheets and the PDF are made from."""


def wilson_interval(successes: int, trials: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion (`carspot.dashboards.intervals.wilson`, the dashboard's);
    (0, 0) without trials, for the report's cells."""
    interval = wilson(successes, trials)
    return (0.0, 0.0) if interval is None else (interval.low, interval.high)


class ReportError(ValueError):
    """The report cannot be made as asked (a malformed or impossible week)."""


@dataclass(frozen=True, slots=True)
class WeekTotals:
    """The week as a whole: sums of the daily rows and the number of images with a rank-1 brand."""

    posts: int
    images_analyzed: int
    cars: int
    images_with_brand: int


_SAFE_NAME: Final = re.compile(r"[^A-Za-z0-9_-]")


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
    previous: tuple[BrandShare, ...] = ()
    """The week before's brand share, for the change."""
    mentions: tuple[MentionCount, ...] = ()
    sources: tuple[SourceCount, ...] = ()
    campaigns: tuple[CampaignCount, ...] = ()
    """Brand counts per campaign (None: posts collected without one)."""
    model_versions: tuple[str, ...] = ()
    unidentified: int = 0
    rank_text_mentions: bool = False
    source: str | None = None
    """Only posts of this source (and the images they show), when given."""
    campaign: str | None = None
    """Only posts of this campaign (and the images they show), when given."""

    @property
    def unidentified_share(self) -> float:
        """Unidentified cars among the images with a car (identified or not)."""
        cars = self.totals.images_with_brand + self.unidentified
        return self.unidentified / cars if cars else 0.0

    def brand_rows(self) -> list[dict[str, Any]]:
        """Per make (the week's makes, then makes named in the text only): share, interval, change, mentions."""
        total = self.totals.images_with_brand
        before = {m.make: m for m in self.previous}
        named = {m.make: m for m in self.mentions}
        rows = []
        listed = [m.make for m in self.makes]
        extra = sorted((m for m in self.mentions if m.make not in set(listed)), key=lambda m: (-m.named, m.make))
        shares = {m.make: m for m in self.makes}
        for make in listed + [m.make for m in extra]:
            share = shares.get(make)
            images = share.images if share else 0
            low, high = wilson_interval(images, total)
            prev = before.get(make)
            prev_share = prev.share if prev else 0.0
            mention = named.get(make)
            rows.append(
                {
                    "make": make,
                    "images": images,
                    "share": round(share.share if share else 0.0, 6),
                    "share_low_95": round(low, 6),
                    "share_high_95": round(high, 6),
                    "previous_images": prev.images if prev else 0,
                    "previous_share": round(prev_share, 6),
                    "share_change_points": round(100 * ((share.share if share else 0.0) - prev_share), 4),
                    "top5_images": share.top5_images if share else 0,
                    "posts_seen": mention.seen if mention else 0,
                    "posts_named_in_text": mention.named if mention else 0,
                    "posts_both": mention.both if mention else 0,
                }
            )
        return rows

    def tables(self) -> dict[str, Table]:
        """The report as tables: ``summary``, ``brands``, ``daily``, ``sources`` and ``campaigns``."""
        t = self.totals
        summary: list[tuple[Cell, ...]] = [
            ("week", self.week),
            ("since", self.since.isoformat()),
            ("until", self.until.isoformat()),
            ("complete", "yes" if self.complete else "no"),
            ("mode", self.mode or "all"),
            ("source", _cell(self.source or "all")),
            ("campaign", _cell(self.campaign or "all")),
            ("model versions", ", ".join(self.model_versions) or "none"),
            ("text mentions rank first", "yes" if self.rank_text_mentions else "no"),
            ("posts", t.posts),
            ("images analysed", t.images_analyzed),
            ("cars", t.cars),
            ("images with a brand", t.images_with_brand),
            ("unidentified cars", self.unidentified),
            ("unidentified share", round(self.unidentified_share, 6)),
            ("generated at", self.generated_at.isoformat()),
        ]
        rows = self.brand_rows()
        brand_columns = tuple(rows[0]) if rows else BRAND_COLUMNS
        brands = [tuple(_cell(v) if k == "make" else v for k, v in r.items()) for r in rows]
        daily: list[tuple[Cell, ...]] = [
            (d.day.isoformat(), d.posts, d.images_analyzed, d.cars, d.unidentified) for d in self.days
        ]
        sources: list[tuple[Cell, ...]] = [(_cell(s.source), s.posts, s.images) for s in self.sources]
        campaigns: list[tuple[Cell, ...]] = [
            (_cell(c.campaign or "(none)"), c.identified, c.unidentified, *_top_make(c)) for c in self.campaigns
        ]
        return {
            "summary": (("item", "value"), summary),
            "brands": (brand_columns, brands),
            "daily": (("day", "posts", "images_analyzed", "cars", "unidentified"), daily),
            "sources": (("source", "posts", "images"), sources),
            "campaigns": (("campaign", "images_with_brand", "unidentified", "top_make", "top_make_share"), campaigns),
        }

    def csv_tables(self) -> dict[str, str]:
        """One CSV text per table, by file name (``summary.csv``…), RFC 4180 with CRLF line ends."""
        out = {}
        for name, (header, rows) in self.tables().items():
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\r\n")
            writer.writerow(header)
            writer.writerows(rows)
            out[f"{name}.csv"] = buf.getvalue()
        return out

    def to_zip(self) -> bytes:
        """The CSV tables in one zip, in a folder named like the report."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, text in self.csv_tables().items():
                info = zipfile.ZipInfo(f"{self.filename_stem}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
                archive.writestr(info, text.encode("utf-8"), compress_type=zipfile.ZIP_DEFLATED)
        return buf.getvalue()

    @property
    def filename_stem(self) -> str:
        """``carspot-weekly-2026-W47`` (plus the mode, source and campaign chosen, other characters than letters,
        digits, ``-`` and ``_`` replaced): a safe download name."""
        chosen = [value for value in (self.mode, self.source, self.campaign) if value]
        return f"carspot-weekly-{self.week}" + "".join(f"-{_SAFE_NAME.sub('_', value)}" for value in chosen)

    def to_dict(self) -> dict[str, Any]:
        return {
            "week": self.week,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "complete": self.complete,
            "mode": self.mode,
            "source": self.source,
            "campaign": self.campaign,
            "generated_at": self.generated_at.isoformat(),
            "model_versions": list(self.model_versions),
            "rank_text_mentions": self.rank_text_mentions,
            "totals": {
                "posts": self.totals.posts,
                "images_analyzed": self.totals.images_analyzed,
                "cars": self.totals.cars,
                "images_with_brand": self.totals.images_with_brand,
            },
            "unidentified": self.unidentified,
            "unidentified_share": round(self.unidentified_share, 6),
            "makes": self.brand_rows(),
            "sources": [{"source": s.source, "posts": s.posts, "images": s.images} for s in self.sources],
            "campaigns": [
                {
                    "campaign": c.campaign,
                    "images_with_brand": c.identified,
                    "unidentified": c.unidentified,
                    "makes": dict(c.makes),
                }
                for c in self.campaigns
            ],
            "days": [
                {
                    "day": d.day.isoformat(),
                    "posts": d.posts,
                    "images_analyzed": d.images_analyzed,
                    "cars": d.cars,
                    "unidentified": d.unidentified,
                }
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


BRAND_COLUMNS: Final = (
    "make",
    "images",
    "share",
    "share_low_95",
    "share_high_95",
    "previous_images",
    "previous_share",
    "share_change_points",
    "top5_images",
    "posts_seen",
    "posts_named_in_text",
    "posts_both",
)


def _top_make(count: CampaignCount) -> tuple[str, float]:
    """A campaign's most frequent rank-1 make and its share of the campaign's images with a brand."""
    if not count.makes or not count.identified:
        return "", 0.0
    make, images = max(count.makes.items(), key=lambda item: (item[1], item[0]))
    return _cell(make), round(images / count.identified, 6)


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


def weekly_report(
    engine: Engine,
    *,
    week: str | None,
    now: datetime,
    mode: str | None = None,
    source: str | None = None,
    campaign: str | None = None,
    rank_text_mentions: bool = False,
) -> WeeklyReport:
    """The report for ``week`` (``"2026-W47"``; ``None`` = the last complete week before ``now``).

    ``mode`` restricts it to one analysis mode (``standard``, ``region-search``, ``detector``); ``None``
    takes every mode, each image counted once through its latest analysis. ``source`` and ``campaign`` restrict
    it to the posts of one source or campaign and the images they show, as the dashboard's filters do (a
    campaign team's own weekly report). Raises :class:`ReportError` for a bad week, mode or filter.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ReportError(f"now must be timezone-aware, got naive {now.isoformat()}")
    since, until = parse_week(last_complete_week(now) if week is None else week)
    ranked = rank_text_mentions
    name = format_week(since.date())
    try:
        f = Filters(mode=mode or None, source=source or None, campaign=campaign or None)
        with engine.connect() as conn:
            makes = brand_share(conn, since=since, until=until, filters=f, rank_text_mentions=ranked)
            days = daily_counts(conn, since=since, until=until, filters=f)
            previous = (
                brand_share(conn, since=since - timedelta(days=7), until=since, filters=f, rank_text_mentions=ranked)
                if since.date() > date.min + timedelta(days=7)
                else []
            )
            mentions = mention_counts(conn, since=since, until=until, filters=f, rank_text_mentions=ranked)
            sources = source_counts(conn, since=since, until=until, filters=f)
            campaigns = campaign_counts(conn, since=since, until=until, filters=f)
            uses = model_versions(conn, since=since, until=until)
            versions = sorted({u.model_version for u in uses if mode is None or u.mode == mode})
            unidentified = unidentified_images(conn, since=since, until=until, filters=f)
    except ValueError as exc:  # the queries' own argument checks (an unknown mode, a bad filter)
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
        previous=tuple(previous),
        mentions=tuple(mentions),
        sources=tuple(sources),
        campaigns=tuple(campaigns),
        model_versions=tuple(versions),
        unidentified=unidentified,
        rank_text_mentions=rank_text_mentions,
        source=f.source,
        campaign=f.campaign,
    )
