"""The dashboard app against a real, migrated SQLite database filled through AnalysisStore (no mocks)."""

from __future__ import annotations

import csv
import io
import re
import shutil
import socket
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from carspot.dashboards.web import MAX_RECENT
from carspot.store.engine import create_engine_for
from carspot.store.migrate import migrate
from carspot.store.writer import AnalysisStore

from .conftest import NOW
from .data import WEEK, analysis, fill_demo, fill_week, post

XSS_AUTHOR = '<script>alert("author")</script>'
XSS_TEXT = '"><img src=x onerror=alert(1)>'


def _recent(engine: Engine, *, brands: bool) -> None:
    """Two images analysed in the last hours before NOW; with or without brand predictions."""
    t1, t2 = NOW - timedelta(hours=3), NOW - timedelta(hours=1)
    AnalysisStore(engine).write_batch(
        posts=[post("p1", "one", t1, author="@alice"), post("p2", "two", t2, author="@bob", source="x")],
        analyses=[
            analysis("one", t1, ["volvo", "saab"] if brands else [], cars=2, mode="detector"),
            analysis("two", t2, ["saab", "volvo", "audi"] if brands else [], cars=1, mode="detector"),
        ],
    )


# --- the page -------------------------------------------------------------------------------------------


def test_page_without_brand_data_shows_cars_and_images(engine: Engine, client: TestClient) -> None:
    _recent(engine, brands=False)
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "No brand predictions in this window yet" in page
    assert "awaiting brand classifier" in page
    assert re.search(r"Cars detected</div><div class=\"kpi-value\">3<", page)
    assert re.search(r"Images analysed</div><div class=\"kpi-value\">2<", page)
    assert "no brand yet" in page
    assert "@alice" in page and "@bob" in page
    assert "<svg" in page


def test_an_unidentified_car_is_counted_apart_and_not_in_the_brand_share(engine: Engine, client: TestClient) -> None:
    import dataclasses

    t1, t2 = NOW - timedelta(hours=3), NOW - timedelta(hours=1)
    doubted = dataclasses.replace(analysis("two", t2, ["saab", "volvo"], cars=1, mode="detector"), unidentified=True)
    AnalysisStore(engine).write_batch(
        posts=[post("p1", "one", t1), post("p2", "two", t2)],
        analyses=[analysis("one", t1, ["volvo", "saab"], cars=1, mode="detector"), doubted],
    )
    page = client.get("/?window=24h").text
    assert re.search(r"Unidentified cars</div><div class=\"kpi-value\">1<", page)
    assert re.search(r"Images with a brand</div><div class=\"kpi-value\">1<", page)
    share = page[page.index('<table class="share">') : page.index("</table>", page.index('<table class="share">'))]
    assert list(re.findall(r'<td class="make"><a href="brands/[^"]+">([^<]+)</a></td>', share)) == ["volvo", "saab"]
    summary = client.get("/api/summary").json()["last_24h"]
    assert (summary["images_with_brand"], summary["unidentified"], summary["cars"]) == (1, 1, 2)


def test_page_with_brand_data_shows_the_share(engine: Engine, client: TestClient) -> None:
    _recent(engine, brands=True)
    page = client.get("/?window=24h").text
    assert "No brand predictions" not in page
    share = page[page.index('<table class="share">') : page.index("</table>", page.index('<table class="share">'))]
    # saab and volvo are rank 1 once each: 50.0% each, saab and volvo both in two top-5s, audi in one.
    assert list(re.findall(r'<td class="make"><a href="brands/[^"]+">([^<]+)</a></td>', share)) == [
        "saab",
        "volvo",
        "audi",
    ]
    assert share.count('<td class="num strong">50.0%</td>') == 2
    assert '<a href="?days=1" class="active">' in page  # the older ?window=24h is read as days=1


def test_empty_database_renders(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert "No analyses yet" in r.text
    assert "No brand predictions" in r.text


def test_the_default_window_is_seven_days_and_an_unknown_window_is_refused(client: TestClient) -> None:
    assert '<a href="?days=7" class="active">' in client.get("/").text
    refused = client.get("/?window=forever")
    assert refused.status_code == 422 and "24h, 7d, 30d" in refused.json()["detail"]


def test_page_is_self_contained_with_a_nonce_csp(engine: Engine, client: TestClient) -> None:
    fill_demo(engine, now=NOW, days=30)
    r = client.get("/?window=30d")
    assert r.status_code == 200
    # The one <link> is an empty inline icon, so the browser does not ask for /favicon.ico (refused: not signed in).
    page = r.text.replace('<link rel="icon" href="data:,">', "", 1)
    # Nothing is loaded from elsewhere (links to the original posts are fine: they are only followed on click).
    assert not re.search(r"(?<![-\w])src=", page[: page.index("<script nonce=")])
    assert "<link" not in page and "url(" not in page and "@import" not in page
    csp = r.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp)
    assert nonce is not None
    assert f'<script nonce="{nonce.group(1)}">' in page
    assert page.count("<script") == 1
    assert r.headers["x-content-type-options"] == "nosniff"


def test_user_text_is_escaped(engine: Engine, client: TestClient) -> None:
    at = NOW - timedelta(minutes=5)
    AnalysisStore(engine).write_batch(
        posts=[post("evil", "evil-image", at, author=XSS_AUTHOR, text=XSS_TEXT, url="javascript:alert(1)")],
        analyses=[analysis("evil-image", at, ["<b>make</b>", "audi"], cars=1, mode="detector")],
    )
    page = client.get("/?window=24h").text
    body = page[: page.index("<script nonce=")]  # the page's own script comes last
    assert "<script>" not in body
    assert "&lt;script&gt;alert(&quot;author&quot;)&lt;/script&gt;" in body
    assert "<img" not in body
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in body
    assert "javascript:" not in page
    assert "<b>make</b>" not in body and "&lt;b&gt;make&lt;/b&gt;" in body
    # The JSON API returns the text as data; the page's script renders it with textContent.
    item = client.get("/api/recent").json()["items"][0]
    assert item["post"]["author"] == XSS_AUTHOR


# --- the JSON API ----------------------------------------------------------------------------------------


def test_summary(engine: Engine, client: TestClient) -> None:
    fill_week(engine)
    _recent(engine, brands=True)
    data = client.get("/api/summary").json()
    assert data["totals"] == {"posts": 10, "images": 9, "analyses": 9, "regions": 14}
    assert data["last_24h"] == {"posts": 2, "images_analyzed": 2, "cars": 3, "images_with_brand": 2, "unidentified": 0}
    assert data["latest_analysis_at"] == (NOW - timedelta(hours=1)).isoformat()
    assert data["generated_at"] == NOW.isoformat()


def test_brand_share_api(engine: Engine, client: TestClient) -> None:
    fill_week(engine)
    r = client.get("/api/brand-share", params={"since": "2026-11-16", "until": "2026-11-23T00:00:00Z"})
    assert r.status_code == 200
    data = r.json()
    assert data["since"] == "2026-11-16T00:00:00+00:00"
    assert data["images_with_brand"] == 3
    assert [(m["make"], m["images"], m["top5_images"]) for m in data["makes"]] == [
        ("bmw", 1, 3),
        ("audi", 1, 2),
        ("toyota", 1, 1),
        ("mini", 0, 1),
    ]
    r = client.get("/api/brand-share", params={"since": "2026-11-16", "until": "2026-11-23", "mode": "detector"})
    assert [m["make"] for m in r.json()["makes"]] == ["toyota", "bmw"]
    # An offset is converted to UTC: 01:00+01:00 is midnight UTC.
    r = client.get("/api/brand-share", params={"since": "2026-11-16T01:00:00+01:00", "until": "2026-11-23"})
    assert r.json()["since"] == "2026-11-16T00:00:00+00:00"


def test_daily_api_lists_every_day(engine: Engine, client: TestClient) -> None:
    fill_week(engine)
    data = client.get("/api/daily", params={"since": "2026-11-16", "until": "2026-11-23"}).json()
    assert [(d["day"], d["posts"], d["images_analyzed"], d["cars"]) for d in data["days"]] == [
        ("2026-11-16", 1, 1, 2),
        ("2026-11-17", 2, 1, 3),
        ("2026-11-18", 1, 1, 1),
        ("2026-11-19", 0, 1, 1),
        ("2026-11-20", 1, 1, 2),
        ("2026-11-21", 1, 0, 0),
        ("2026-11-22", 0, 0, 0),
    ]
    default = client.get("/api/daily").json()
    assert [d["day"] for d in default["days"]] == [f"2026-11-{n}" for n in range(19, 26)]
    assert len(default["days"]) == 7


@pytest.mark.parametrize("path", ["/api/brand-share", "/api/daily"])
@pytest.mark.parametrize(
    "params",
    [
        {"since": "yesterday"},
        {"since": "2026-11-16T00:00:00"},  # naive: refused, not guessed
        {"until": "2026-13-01"},
        {"since": "2026-11-20", "until": "2026-11-20"},  # empty window
        {"since": "2026-11-20", "until": "2026-11-10"},
        {"since": "2020-01-01", "until": "2026-01-01"},  # longer than a year
        {"until": "0001-01-01T00:00:00Z"},
        {"mode": "turbo"},
    ],
)
def test_window_validation(client: TestClient, path: str, params: dict[str, str]) -> None:
    r = client.get(path, params=params)
    assert r.status_code == 422, r.text
    assert "detail" in r.json()


def test_recent_limit_is_validated_and_capped(engine: Engine, client: TestClient) -> None:
    fill_week(engine)
    assert client.get("/api/recent", params={"limit": 0}).status_code == 422
    assert client.get("/api/recent", params={"limit": "ten"}).status_code == 422
    assert client.get("/api/recent", params={"limit": -5}).status_code == 422
    big = client.get("/api/recent", params={"limit": 10**9}).json()
    assert big["limit"] == MAX_RECENT
    two = client.get("/api/recent", params={"limit": 2}).json()
    assert two["limit"] == 2
    assert two["items"] == big["items"][:2]
    times = [i["analyzed_at"] for i in big["items"]]
    assert times == sorted(times, reverse=True)
    first = big["items"][0]
    assert first["analyzed_at"] == "2026-11-23T00:00:00+00:00"
    assert first["brands"] == [{"make": "audi", "score": 0.9, "rank": 1}]
    assert first["post"]["post_id"] == "pG"
    assert len(big["items"]) == 7


# --- the weekly report endpoints -------------------------------------------------------------------------


def test_weekly_csv_endpoint(engine: Engine, client: TestClient) -> None:
    fill_week(engine)
    r = client.get("/reports/weekly.csv")  # default: the last complete week before NOW = 2026-W47
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == f'attachment; filename="carspot-weekly-{WEEK}.csv"'
    rows = list(csv.DictReader(io.StringIO(r.text, newline="")))
    (total,) = [row for row in rows if row["section"] == "total"]
    assert (total["images"], total["posts"], total["images_analyzed"], total["cars"]) == ("3", "6", "5", "9")
    same = client.get("/reports/weekly.csv", params={"week": WEEK})
    assert same.content == r.content


def test_weekly_json_endpoint(engine: Engine, client: TestClient) -> None:
    fill_week(engine)
    r = client.get("/reports/weekly.json", params={"week": WEEK, "mode": "region-search"})
    assert r.status_code == 200
    assert r.headers["content-disposition"] == f'attachment; filename="carspot-weekly-{WEEK}-region-search.json"'
    data = r.json()
    assert data["totals"] == {"posts": 6, "images_analyzed": 2, "cars": 5, "images_with_brand": 2}
    assert [m["make"] for m in data["makes"]] == ["audi", "bmw", "mini"]


@pytest.mark.parametrize("week", ["2026-W99", "2026/47", "<script>"])
def test_weekly_report_rejects_bad_weeks(client: TestClient, week: str) -> None:
    for fmt in ("csv", "json"):
        r = client.get(f"/reports/weekly.{fmt}", params={"week": week})
        assert r.status_code == 422
        assert r.headers["content-type"].startswith("application/json")


# --- health ----------------------------------------------------------------------------------------------


def test_healthz_ok(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "database": "sqlite"}


def test_healthz_503_when_the_sqlite_directory_is_gone(
    tmp_path: Path, make_client: Callable[[Engine], TestClient]
) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    url = f"sqlite:///{folder / 'carspot.db'}"
    migrate(url)
    engine = create_engine_for(url)
    try:
        client = make_client(engine)
        assert client.get("/healthz").status_code == 200
        engine.dispose()  # close pooled connections: the next request must open the file again
        shutil.rmtree(folder)
        r = client.get("/healthz")
        assert r.status_code == 503
        assert r.json() == {"status": "unavailable", "error": "OperationalError"}
        # The other routes answer 503 too, not 500.
        assert client.get("/api/summary").status_code == 503
        page = client.get("/")
        assert page.status_code == 503
        assert "temporarily unavailable" in page.text
    finally:
        engine.dispose()


def _closed_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: nothing listens there


def test_healthz_503_when_postgres_is_unreachable(make_client: Callable[..., TestClient]) -> None:
    """Nobody can sign in without the database, and checking a request's sign-in answers 503 too, not 500."""
    engine = create_engine_for(f"postgresql://carspot:secret@127.0.0.1:{_closed_loopback_port()}/carspot")
    try:
        client = make_client(engine, signed_in=False)
        client.cookies.set("carspot_session", "whatever")
        r = client.get("/healthz")
        assert r.status_code == 503
        assert "secret" not in r.text
        assert client.get("/api/recent").status_code == 503
        assert client.get("/reports/weekly.csv").status_code == 503
        assert client.get("/").status_code == 503
    finally:
        engine.dispose()
