"""The weekly report equals a hand count of the hand-made week (see data.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine

from carspot.dashboards.report import (
    CSV_COLUMNS,
    ReportError,
    last_complete_week,
    parse_week,
    weekly_report,
)
from carspot.store.writer import AnalysisStore

from .conftest import NOW
from .data import MONDAY, NEXT_MONDAY, WEEK, analysis, fill_week, post

HAND_DAYS = [  # (day, posts, images analysed, cars), Monday..Sunday
    (date(2026, 11, 16), 1, 1, 2),
    (date(2026, 11, 17), 2, 1, 3),
    (date(2026, 11, 18), 1, 1, 1),
    (date(2026, 11, 19), 0, 1, 1),
    (date(2026, 11, 20), 1, 1, 2),
    (date(2026, 11, 21), 1, 0, 0),
    (date(2026, 11, 22), 0, 0, 0),
]
HAND_MAKES = [  # (make, rank-1 images, top-5 images), in the report's order
    ("bmw", 1, 3),
    ("audi", 1, 2),
    ("toyota", 1, 1),
    ("mini", 0, 1),
]


def test_weekly_report_equals_the_hand_count(any_engine: Engine) -> None:
    fill_week(any_engine)
    report = weekly_report(any_engine, week=WEEK, now=NOW)

    assert (report.week, report.since, report.until, report.complete) == (WEEK, MONDAY, NEXT_MONDAY, True)
    assert [(m.make, m.images, m.top5_images) for m in report.makes] == HAND_MAKES
    assert [m.share for m in report.makes] == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0.0])
    assert [(d.day, d.posts, d.images_analyzed, d.cars) for d in report.days] == HAND_DAYS
    t = report.totals
    assert (t.posts, t.images_analyzed, t.cars, t.images_with_brand) == (6, 5, 9, 3)


def test_mode_restricts_the_report_to_one_pipeline(engine: Engine) -> None:
    fill_week(engine)
    report = weekly_report(engine, week=WEEK, now=NOW, mode="detector")
    # Detector analyses only: C (latest = v2, toyota first) and D (no brands); A and B are region-search.
    assert [(m.make, m.images, m.top5_images) for m in report.makes] == [("toyota", 1, 1), ("bmw", 0, 1)]
    assert [d.cars for d in report.days] == [0, 0, 1, 1, 2, 0, 0]
    assert report.filename_stem == "carspot-weekly-2026-W47-detector"
    with pytest.raises(ReportError, match="mode"):
        weekly_report(engine, week=WEEK, now=NOW, mode="bogus")


def test_csv_is_one_well_formed_table_with_the_hand_counts(engine: Engine) -> None:
    fill_week(engine)
    text = weekly_report(engine, week=WEEK, now=NOW).to_csv()

    assert text.endswith("\r\n")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == list(CSV_COLUMNS)
    assert all(len(r) == len(CSV_COLUMNS) for r in rows)
    records = list(csv.DictReader(io.StringIO(text, newline="")))
    assert {r["week"] for r in records} == {WEEK}
    makes = [r for r in records if r["section"] == "make"]
    assert [(r["key"], int(r["images"]), int(r["top5_images"])) for r in makes] == HAND_MAKES
    assert [r["share"] for r in makes] == ["0.333333", "0.333333", "0.333333", "0.000000"]
    days = [r for r in records if r["section"] == "day"]
    assert [
        (date.fromisoformat(r["key"]), int(r["posts"]), int(r["images_analyzed"]), int(r["cars"])) for r in days
    ] == (HAND_DAYS)
    (total,) = [r for r in records if r["section"] == "total"]
    assert (total["images"], total["posts"], total["images_analyzed"], total["cars"]) == ("3", "6", "5", "9")
    assert [r["section"] for r in records] == ["make"] * 4 + ["day"] * 7 + ["total"]


def test_csv_quotes_awkward_makes_and_defuses_formulas(engine: Engine) -> None:
    at = MONDAY + timedelta(hours=1)
    AnalysisStore(engine).write_batch(
        posts=[post("p1", "X", at)],
        analyses=[analysis("X", at, ['=HYPERLINK("http://evil")', 'Rolls, "Royce"'], cars=1)],
    )
    text = weekly_report(engine, week=WEEK, now=NOW).to_csv()
    records = list(csv.DictReader(io.StringIO(text, newline="")))
    keys = [r["key"] for r in records if r["section"] == "make"]
    assert keys == ['\'=HYPERLINK("http://evil")', 'Rolls, "Royce"']


def test_json_matches_and_is_deterministic(engine: Engine) -> None:
    fill_week(engine)
    first = weekly_report(engine, week=WEEK, now=NOW).to_json()
    again = weekly_report(engine, week=WEEK, now=NOW).to_json()
    assert first == again
    data = json.loads(first)
    assert data["week"] == WEEK
    assert data["since"] == "2026-11-16T00:00:00+00:00"
    assert data["until"] == "2026-11-23T00:00:00+00:00"
    assert data["totals"] == {"posts": 6, "images_analyzed": 5, "cars": 9, "images_with_brand": 3}
    assert [(m["make"], m["images"], m["top5_images"]) for m in data["makes"]] == HAND_MAKES
    assert [d["cars"] for d in data["days"]] == [c for *_, c in HAND_DAYS]


def test_a_week_without_brands_still_reports_activity(engine: Engine) -> None:
    at = MONDAY + timedelta(days=2, hours=3)
    AnalysisStore(engine).write_batch(
        posts=[post("p1", "X", at), post("p2", "Y", at)],
        analyses=[analysis("X", at, [], cars=2, mode="detector"), analysis("Y", at, [], cars=1, mode="detector")],
    )
    report = weekly_report(engine, week=WEEK, now=NOW)
    assert report.makes == ()
    t = report.totals
    assert (t.posts, t.images_analyzed, t.cars, t.images_with_brand) == (2, 2, 3, 0)
    rows = list(csv.DictReader(io.StringIO(report.to_csv(), newline="")))
    assert [r["section"] for r in rows] == ["day"] * 7 + ["total"]


def test_default_week_is_the_last_complete_one(engine: Engine) -> None:
    assert weekly_report(engine, week=None, now=NOW).week == "2026-W47"
    assert last_complete_week(datetime(2026, 11, 23, 0, 0, tzinfo=UTC)) == "2026-W47"
    assert last_complete_week(datetime(2026, 11, 22, 23, 59, tzinfo=UTC)) == "2026-W46"
    # Monday 00:30 in Berlin is still Sunday in UTC: the week is decided in UTC.
    berlin_monday = datetime.fromisoformat("2026-11-23T00:30:00+01:00")
    assert last_complete_week(berlin_monday) == "2026-W46"
    # Across a year boundary: 2027-01-05 is in 2027-W01, so the last complete week is 2026-W53.
    assert last_complete_week(datetime(2027, 1, 5, tzinfo=UTC)) == "2026-W53"


def test_an_unfinished_week_is_marked_incomplete(engine: Engine) -> None:
    assert weekly_report(engine, week="2026-W48", now=NOW).complete is False


@pytest.mark.parametrize("week", ["2026W47", "2026-W7", "2026-w47x", "2026-W00", "2025-W53", "2026-W54", "", "nope"])
def test_bad_weeks_are_refused(engine: Engine, week: str) -> None:
    with pytest.raises(ReportError):
        weekly_report(engine, week=week, now=NOW)


def test_parse_week_bounds() -> None:
    assert parse_week("2026-W53") == (datetime(2026, 12, 28, tzinfo=UTC), datetime(2027, 1, 4, tzinfo=UTC))
    assert parse_week("2026-W01") == (datetime(2025, 12, 29, tzinfo=UTC), datetime(2026, 1, 5, tzinfo=UTC))


def test_naive_now_is_refused(engine: Engine) -> None:
    with pytest.raises(ReportError, match="timezone"):
        weekly_report(engine, week=WEEK, now=datetime(2026, 11, 25, 12, 0))
