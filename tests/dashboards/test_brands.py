"""Brand pages, comparisons, thumbnails and the filters in the URL answer with the numbers computed by hand.

Now is Wed 2026-11-25 12:00 UTC; the default window is the 14 days before it, its last 7 days "this week".
Detector analyses of 640 x 480 images, one car each unless said:

  previous week, Mon 2026-11-16 10:00:  T1 Toyota · B1, B2, B3 BMW
  this week,     Fri 2026-11-20 10:00:  T2 Toyota (thumbnail; campaign launch) · T3 Toyota (campaign launch)
                                        T4 Toyota scoring 0.45 · B4 BMW with a second car, a Toyota (campaign launch)
                                        U1 unidentified (a car, best make Toyota at 0.2)

By hand: Toyota 4 of 8 images with a make = 50 %, Wilson 95 % [0.2152, 0.7848]; this week 3 of 4 (75 %), the
week before 1 of 4 (25 %): +50 points, images x3 (+200 %). Seen in 5 images (T1-T4 and B4's second car), with BMW
in 1. Campaign launch: Toyota 2 of 3. Minimum confidence 0.5: T4 counts apart, Toyota 3 of 7, 2 unidentified.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine

from carspot.store.records import AnalysisRecord, BrandScore, PostRecord, RegionRecord, ThumbnailRecord
from carspot.store.writer import AnalysisStore

from .data import sha

PREVIOUS = datetime(2026, 11, 16, 10, 0, tzinfo=UTC)
THIS = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def jpeg() -> ThumbnailRecord:
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), (30, 120, 200)).save(buffer, format="JPEG", quality=80)
    return ThumbnailRecord(jpeg=buffer.getvalue(), width=320, height=240)


def car(index: int, make: str, score: float) -> RegionRecord:
    x = 20 + 300 * index
    return RegionRecord(
        index=index,
        x1=x,
        y1=40,
        x2=x + 280,
        y2=400,
        score=0.9,
        label="car",
        brands=(BrandScore(make=make, score=score, rank=1),),
    )


def image(
    name: str, at: datetime, cars: list[tuple[str, float]], *, unidentified: bool = False, thumb: bool = False
) -> AnalysisRecord:
    best = sorted(cars, key=lambda c: -c[1])
    return AnalysisRecord(
        image_sha256=sha(name),
        width=640,
        height=480,
        mode="detector",
        detector="centernet",
        model_version="v1",
        regions=tuple(car(i, m, s) for i, (m, s) in enumerate(cars)),
        brands=tuple(BrandScore(make=m, score=s, rank=i + 1) for i, (m, s) in enumerate(best)),
        analyzed_at=at,
        duration_ms=5.0,
        unidentified=unidentified,
        thumbnail=jpeg() if thumb else None,
    )


def posted(name: str, at: datetime, campaign: str | None = None) -> PostRecord:
    return PostRecord(
        post_id=f"p{name}",
        source="x" if campaign else "folder",
        author="@fan",
        text=None,
        url=f"https://x.com/fan/status/{name}",
        posted_at=None,
        ingested_at=at,
        image_sha256=sha(name),
        width=640,
        height=480,
        campaign=campaign,
    )


@pytest.fixture
def brand_engine(any_engine: Engine) -> Engine:
    analyses = [
        image("T1", PREVIOUS, [("Toyota", 0.9)]),
        *(image(n, PREVIOUS, [("BMW", 0.9)]) for n in ("B1", "B2", "B3")),
        image("T2", THIS, [("Toyota", 0.9)], thumb=True),
        image("T3", THIS, [("Toyota", 0.8)]),
        image("T4", THIS, [("Toyota", 0.45)]),
        image("B4", THIS, [("BMW", 0.9), ("Toyota", 0.7)]),
        image("U1", THIS, [("Toyota", 0.2)], unidentified=True),
    ]
    campaigns = {"T2": "launch", "T3": "launch", "B4": "launch"}
    posts = [posted(a_name, a.analyzed_at, campaigns.get(a_name)) for a_name, a in zip(NAMES, analyses, strict=True)]
    AnalysisStore(any_engine).write_batch(posts=posts, analyses=analyses)
    return any_engine


NAMES = ["T1", "B1", "B2", "B3", "T2", "T3", "T4", "B4", "U1"]


@pytest.fixture
def brand_client(brand_engine: Engine, make_client: Callable[[Engine], TestClient]) -> TestClient:
    return make_client(brand_engine)


def test_brand_json_has_the_share_interval_and_week_over_week_by_hand(brand_client: TestClient) -> None:
    body = brand_client.get("/api/brands/Toyota").json()
    assert (body["images"], body["images_with_brand"], body["unidentified"]) == (4, 8, 1)
    assert body["share"] == 0.5
    low, high = body["interval_95"]
    assert low == pytest.approx(0.2152, abs=1e-4) and high == pytest.approx(0.7848, abs=1e-4)
    wow = body["week_over_week"]
    assert (wow["this_week"]["images"], wow["this_week"]["images_with_brand"]) == (3, 4)
    assert (wow["previous_week"]["images"], wow["previous_week"]["images_with_brand"]) == (1, 4)
    assert wow["share_points"] == 50.0 and wow["images_ratio"] == 2.0
    assert body["seen_with"] == {"images": 5, "makes": [{"make": "BMW", "images": 1}]}
    friday = next(d for d in body["daily"] if d["day"] == "2026-11-20")
    assert (friday["images"], friday["images_with_brand"], friday["unidentified"], friday["share"]) == (3, 4, 1, 0.75)
    assert len(body["daily"]) == 15  # 2026-11-11 12:00 to 2026-11-25 12:00: fifteen UTC days touched
    recent = body["recent_images"]
    assert [r["image_sha256"] for r in recent][-1] == sha("T1")
    t2 = next(r for r in recent if r["image_sha256"] == sha("T2"))
    assert t2["thumbnail"] == f"thumbnails/{sha('T2')}.jpg" and t2["regions"][0]["box"] == [20, 40, 300, 400]
    assert brand_client.get("/api/brands/toyota").json()["make"] == "Toyota"  # the store's spelling


def test_filters_in_the_query_change_the_numbers(brand_client: TestClient) -> None:
    launch = brand_client.get("/api/brands/Toyota", params={"campaign": "launch"}).json()
    assert (launch["images"], launch["images_with_brand"]) == (2, 3)
    assert launch["filters"]["campaign"] == "launch"
    strict = brand_client.get("/api/brands/Toyota", params={"min_confidence": "0.5"}).json()
    assert (strict["images"], strict["images_with_brand"], strict["unidentified"]) == (3, 7, 2)
    week = brand_client.get("/api/brands/Toyota", params={"days": "3"}).json()
    assert (week["images"], week["images_with_brand"]) == (0, 0) and week["interval_95"] is None
    explicit = brand_client.get("/api/brands/Toyota", params={"since": "2026-11-16", "until": "2026-11-17"}).json()
    assert (explicit["images"], explicit["images_with_brand"]) == (1, 4)
    assert brand_client.get("/api/brands/Toyota", params={"source": "nowhere"}).json()["images"] == 0


def test_bad_filters_answer_422(client: TestClient) -> None:
    for params in (
        {"min_confidence": "high"},
        {"min_confidence": "2"},
        {"mode": "fastest"},
        {"days": "0"},
        {"since": "yesterday"},
        {"since": "2026-11-20", "until": "2026-11-19"},
    ):
        assert client.get("/api/brands/Toyota", params=params).status_code == 422, params


def test_an_unknown_make_is_404(brand_client: TestClient) -> None:
    assert brand_client.get("/api/brands/Trabant").status_code == 404
    assert brand_client.get("/brands/Trabant").status_code == 404


def test_compare_gives_each_makes_daily_share(brand_client: TestClient) -> None:
    body = brand_client.get("/api/compare", params={"makes": "Toyota, bmw"}).json()
    assert body["makes"] == ["Toyota", "BMW"]
    assert {m: (t["images"], t["share"]) for m, t in body["totals"].items()} == {
        "Toyota": (4, 0.5),
        "BMW": (4, 0.5),
    }
    monday = next(d for d in body["daily"] if d["day"] == "2026-11-16")
    assert monday["share"] == {"Toyota": 0.25, "BMW": 0.75}
    for makes in ("Toyota", "a,b,c,d,e,f"):
        assert brand_client.get("/api/compare", params={"makes": makes}).status_code == 422


def test_thumbnails_are_served_as_cached_jpegs(brand_client: TestClient) -> None:
    url = f"/thumbnails/{sha('T2')}.jpg"
    response = brand_client.get(url)
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert response.content.startswith(b"\xff\xd8")
    assert "max-age=86400" in response.headers["cache-control"] and "immutable" in response.headers["cache-control"]
    again = brand_client.get(url, headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert brand_client.get(f"/thumbnails/{sha('T3')}.jpg").status_code == 404
    assert brand_client.get("/thumbnails/not-a-sha.jpg").status_code == 422


def test_brand_page_shows_thumbnails_with_boxes_and_keeps_the_filters(brand_client: TestClient) -> None:
    page = brand_client.get("/brands/Toyota", params={"campaign": "launch"})
    assert page.status_code == 200
    html = page.text
    assert f'src="../thumbnails/{sha("T2")}.jpg"' in html
    assert 'viewBox="0 0 640 480"' in html and 'class="box mine"' in html and 'class="box other"' in html
    assert '<option value="launch" selected>' in html
    assert 'id="kpi-share"' in html and "66.7%" in html
    assert "script-src 'none'" in page.headers["content-security-policy"]


def test_compare_page_and_live_feed(brand_client: TestClient) -> None:
    page = brand_client.get("/compare", params={"makes": "Toyota,BMW", "days": "14"})
    assert page.status_code == 200 and page.text.count("<circle") == 4 and 'id="compare-table"' in page.text
    assert 'id="compare-error"' in brand_client.get("/compare", params={"makes": "Toyota"}).text
    home = brand_client.get("/")
    assert f'src="thumbnails/{sha("T2")}.jpg"' in home.text and 'href="brands/Toyota?days=7"' in home.text
    items = brand_client.get("/api/recent", params={"limit": 50}).json()["items"]
    assert {i["image_sha256"]: i["thumbnail"] for i in items}[sha("T2")] == f"thumbnails/{sha('T2')}.jpg"


def test_counts_grouped_by_campaign(brand_client: TestClient) -> None:
    body = brand_client.get("/api/campaigns").json()
    assert [(c["campaign"], c["images_with_brand"], c["unidentified"]) for c in body["campaigns"]] == [
        (None, 5, 1),
        ("launch", 3, 0),
    ]
    launch = body["campaigns"][1]["makes"]
    assert [(m["make"], m["images"]) for m in launch] == [("Toyota", 2), ("BMW", 1)]
    by_campaign = brand_client.get("/api/brands/Toyota").json()["by_campaign"]
    assert [(c["campaign"], c["images"], c["images_with_brand"]) for c in by_campaign] == [
        (None, 2, 5),
        ("launch", 2, 3),
    ]
    assert 'id="by-campaign"' in brand_client.get("/brands/Toyota").text
