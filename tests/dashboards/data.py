"""Hand-made records for the dashboard tests, small enough to count by hand, and a larger demo set.

The hand-made week is ISO week 2026-W47 (Monday 2026-11-16 to Monday 2026-11-23, UTC)::

  A  region-search Mon 10:00, top bmw,audi,mini, 2 cars; posts pA1 (Mon 09:59) and pA2 (Tue 08:00, a repost)
  B  region-search Tue 12:00, top audi,bmw, 3 cars; post pB1 (Tue 11:59)
  C  detector Wed 23:30, top bmw,toyota, 1 car; post pC (Wed 23:29);
     re-analysed by model v2 Thu 01:00, top toyota,bmw, 1 car (the latest analysis speaks for C)
  D  detector Fri 15:00, no brands (detector only), 2 cars; post pD (Fri 14:59)
  E  post pE (Sat 09:00) only, never analysed
  F  just before the week (Sun 2026-11-15 23:59:59), top bmw, 1 car, post pF   -- outside
  G  exactly at the week's end (Mon 2026-11-23 00:00), top audi, 1 car, post pG -- outside

By hand: rank-1 bmw 1 (A), audi 1 (B), toyota 1 (C latest); top-5 mentions bmw 3, audi 2, toyota 1, mini 1.
Days Mon..Sun: posts 1,2,1,0,1,1,0 (6); images analysed 1,1,1,1,1,0,0 (5); cars 2,3,1,1,2,0,0 (9).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from carspot.store.records import AnalysisRecord, BrandScore, PostRecord, RegionRecord
from carspot.store.writer import AnalysisStore

WEEK = "2026-W47"
MONDAY = datetime(2026, 11, 16, tzinfo=UTC)
NEXT_MONDAY = MONDAY + timedelta(days=7)
SIZE = (640, 480)


def sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def top(*makes: str) -> tuple[BrandScore, ...]:
    return tuple(BrandScore(make=m, score=round(0.9 - 0.15 * i, 2), rank=i + 1) for i, m in enumerate(makes))


def post(
    post_id: str,
    image: str,
    at: datetime,
    *,
    author: str | None = "@driver",
    text: str | None = "look at this car",
    url: str | None = None,
    source: str = "folder",
) -> PostRecord:
    return PostRecord(
        post_id=post_id,
        source=source,
        author=author,
        text=text,
        url=url if url is not None else f"https://example.test/{post_id}",
        posted_at=at - timedelta(minutes=1),
        ingested_at=at,
        image_sha256=sha(image),
        width=SIZE[0],
        height=SIZE[1],
    )


def analysis(
    image: str,
    at: datetime,
    brands: Sequence[str],
    *,
    cars: int,
    mode: str = "region-search",
    model_version: str = "brands-v1",
) -> AnalysisRecord:
    regions = tuple(
        RegionRecord(index=i, x1=10 + i, y1=10, x2=200 + i, y2=150, score=0.8, label="car") for i in range(cars)
    )
    return AnalysisRecord(
        image_sha256=sha(image),
        width=SIZE[0],
        height=SIZE[1],
        mode=mode,
        detector="yolo-fastest" if mode == "detector" else "selective-search+svm",
        model_version=model_version,
        regions=regions,
        brands=top(*brands),
        analyzed_at=at,
        duration_ms=42.0,
    )


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """``day`` 0 = Monday of the hand-made week."""
    return MONDAY + timedelta(days=day, hours=hour, minutes=minute, seconds=second)


def fill_week(engine: Engine) -> None:
    """Write the hand-made week described in the module docstring."""
    posts = [
        post("pA1", "A", at(0, 9, 59)),
        post("pA2", "A", at(1, 8)),
        post("pB1", "B", at(1, 11, 59)),
        post("pC", "C", at(2, 23, 29)),
        post("pD", "D", at(4, 14, 59)),
        post("pE", "E", at(5, 9)),
        post("pF", "F", MONDAY - timedelta(seconds=1)),
        post("pG", "G", NEXT_MONDAY),
    ]
    analyses = [
        analysis("A", at(0, 10), ["bmw", "audi", "mini"], cars=2),
        analysis("B", at(1, 12), ["audi", "bmw"], cars=3),
        analysis("C", at(2, 23, 30), ["bmw", "toyota"], cars=1, mode="detector"),
        analysis("C", at(3, 1), ["toyota", "bmw"], cars=1, mode="detector", model_version="brands-v2"),
        analysis("D", at(4, 15), [], cars=2, mode="detector"),
        analysis("F", MONDAY - timedelta(seconds=1), ["bmw"], cars=1),
        analysis("G", NEXT_MONDAY, ["audi"], cars=1),
    ]
    AnalysisStore(engine).write_batch(posts=posts, analyses=analyses)


DEMO_MAKES = (
    ("toyota", 18),
    ("volkswagen", 15),
    ("bmw", 13),
    ("mercedes-benz", 12),
    ("ford", 10),
    ("audi", 9),
    ("honda", 7),
    ("tesla", 6),
    ("porsche", 4),
    ("volvo", 3),
    ("mini", 2),
    ("fiat", 2),
    ("kia", 2),
    ("hyundai", 2),
)
DEMO_AUTHORS = ("@carspotter", "@weekend.drives", "@urban_autos", "@petrolhead_max", "@daily.commute", "@jdm.club")
DEMO_TEXTS = (
    "Spotted this beauty downtown this morning",
    "Road trip day 3 - still can't believe the views",
    "New ride! What do you think?",
    "Classic meets modern at the car meet",
    "Parking garage finds #carspotting",
    None,
)


def fill_demo(engine: Engine, *, now: datetime, days: int = 30, seed: int = 7, with_brands: bool = True) -> None:
    """A plausible month of traffic (deterministic for a seed): growing volume, a weekly rhythm, reposts."""
    rng = random.Random(seed)
    makes = [m for m, _ in DEMO_MAKES]
    weights = [w for _, w in DEMO_MAKES]
    store = AnalysisStore(engine)
    start = now - timedelta(days=days)
    serial = 0
    for d in range(days + 1):
        day_start = start + timedelta(days=d)
        volume = int((6 + d * 0.5) * (0.7 if day_start.weekday() < 5 else 1.3) + rng.randint(0, 4))
        posts: list[PostRecord] = []
        analyses: list[AnalysisRecord] = []
        for _ in range(volume):
            moment = day_start + timedelta(seconds=rng.randint(0, 86_399))
            if moment >= now:
                continue
            serial += 1
            image = f"demo-{seed}-{serial}"
            posts.append(
                post(
                    f"demo-{seed}-{serial}",
                    image,
                    moment,
                    author=rng.choice(DEMO_AUTHORS),
                    text=rng.choice(DEMO_TEXTS),
                    source=rng.choice(("x", "x", "folder", "jsonl")),
                )
            )
            if rng.random() < 0.1:
                posts.append(post(f"demo-{seed}-{serial}-repost", image, moment + timedelta(minutes=3)))
            if rng.random() < 0.9 and moment + timedelta(seconds=2) < now:
                cars = rng.choices((0, 1, 2, 3, 4), weights=(1, 6, 3, 1, 1))[0]
                brands: list[str] = []
                if with_brands and cars:
                    while len(brands) < 5:
                        m = rng.choices(makes, weights=weights)[0]
                        if m not in brands:
                            brands.append(m)
                analyses.append(analysis(image, moment + timedelta(seconds=2), brands, cars=cars, mode="detector"))
        store.write_batch(posts=posts, analyses=analyses)
