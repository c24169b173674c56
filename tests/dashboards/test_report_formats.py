"""The weekly report's CSV tables, XLSX and PDF hold the JSON's numbers (read back with openpyxl, rendered with
pdftoppm), and state the model version and the share of unidentified cars."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import zipfile
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import openpyxl
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine
from sqlalchemy import text as sql

from carspot.dashboards.report import weekly_report, wilson_interval
from carspot.dashboards.report_pdf import to_pdf
from carspot.dashboards.report_xlsx import to_xlsx
from carspot.store.records import MentionRecord
from carspot.store.writer import AnalysisStore

from .conftest import NOW
from .data import WEEK, at, fill_week, post


def test_wilson_interval_known_values() -> None:
    low, high = wilson_interval(1, 3)
    assert (round(low, 4), round(high, 4)) == (0.0615, 0.7923)  # textbook value for 1/3, z = 1.96
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 0.0)
    with pytest.raises(ValueError):
        wilson_interval(4, 3)


def test_csv_tables_are_one_file_per_table_with_the_json_numbers(engine: Engine) -> None:
    fill_week(engine)
    report = weekly_report(engine, week=WEEK, now=NOW)
    data = json.loads(report.to_json())
    with zipfile.ZipFile(io.BytesIO(report.to_zip())) as archive:
        names = sorted(archive.namelist())
        assert names == [
            f"{report.filename_stem}/{n}.csv" for n in ("brands", "campaigns", "daily", "sources", "summary")
        ]
        brands = list(csv.DictReader(io.StringIO(archive.read(names[0]).decode())))
        summary = dict(csv.reader(io.StringIO(archive.read(names[4]).decode())))
    assert [(b["make"], int(b["images"]), float(b["share"])) for b in brands] == [
        (m["make"], m["images"], m["share"]) for m in data["makes"]
    ]
    assert summary["model versions"] == ", ".join(data["model_versions"]) != "none"
    assert float(summary["unidentified share"]) == data["unidentified_share"]


def test_xlsx_opens_with_openpyxl_and_holds_the_json_numbers(engine: Engine, tmp_path: Path) -> None:
    fill_week(engine)
    report = weekly_report(engine, week=WEEK, now=NOW)
    data = json.loads(report.to_json())
    path = tmp_path / "weekly.xlsx"
    path.write_bytes(to_xlsx(report))
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["Summary", "Brands", "Daily", "Sources", "Campaigns"]
    rows = list(book["Brands"].iter_rows(values_only=True))
    header, body = rows[0], rows[1:]
    assert [dict(zip(header, r, strict=True)) for r in body] == data["makes"]
    daily = list(book["Daily"].iter_rows(values_only=True))
    assert [dict(zip(daily[0], r, strict=True)) for r in daily[1:]] == data["days"]
    summary = dict(book["Summary"].iter_rows(values_only=True))
    assert summary["model versions"] == ", ".join(data["model_versions"])
    assert summary["unidentified share"] == data["unidentified_share"]
    assert summary["posts"] == data["totals"]["posts"]
    assert len(book["Brands"]._charts) == 1 and len(book["Daily"]._charts) == 1  # native charts survive a read


def test_campaigns_are_a_table_of_their_own_with_the_json_numbers(engine: Engine, tmp_path: Path) -> None:
    fill_week(engine)
    with engine.begin() as conn:
        conn.execute(sql("UPDATE posts SET campaign = 'launch' WHERE post_id IN (SELECT min(post_id) FROM posts)"))
    report = weekly_report(engine, week=WEEK, now=NOW)
    campaigns = json.loads(report.to_json())["campaigns"]
    assert {c["campaign"] for c in campaigns} == {"launch", None}
    launch = next(c for c in campaigns if c["campaign"] == "launch")
    assert launch["images_with_brand"] + launch["unidentified"] == 1
    path = tmp_path / "weekly.xlsx"
    path.write_bytes(to_xlsx(report))
    rows = list(openpyxl.load_workbook(path)["Campaigns"].iter_rows(values_only=True))
    assert rows[0] == ("campaign", "images_with_brand", "unidentified", "top_make", "top_make_share")
    assert sorted((r[0], r[1], r[2]) for r in rows[1:]) == sorted(
        (c["campaign"] or "(none)", c["images_with_brand"], c["unidentified"]) for c in campaigns
    )


def test_a_campaign_or_source_report_counts_only_its_posts_and_says_so(
    engine: Engine, make_client: Callable[..., TestClient]
) -> None:
    fill_week(engine)
    with engine.begin() as conn:
        conn.execute(sql("UPDATE posts SET campaign = 'launch' WHERE post_id IN (SELECT min(post_id) FROM posts)"))
    whole = weekly_report(engine, week=WEEK, now=NOW)
    launch = weekly_report(engine, week=WEEK, now=NOW, campaign="launch")
    by_campaign = {c.campaign: c for c in whole.campaigns}
    assert launch.totals.posts == 1 < whole.totals.posts
    assert launch.totals.images_with_brand + launch.unidentified == 1
    assert launch.totals.images_with_brand == by_campaign["launch"].identified
    assert [c.campaign for c in launch.campaigns] == ["launch"]
    summary = dict(launch.tables()["summary"][1])
    assert (summary["campaign"], summary["source"]) == ("launch", "all")
    assert json.loads(launch.to_json())["campaign"] == "launch"
    assert launch.filename_stem == f"carspot-weekly-{WEEK}-launch"
    sources = {s.source for s in whole.sources}
    one = sorted(sources)[0]
    assert {s.source for s in weekly_report(engine, week=WEEK, now=NOW, source=one).sources} == {one}
    assert weekly_report(engine, week=WEEK, now=NOW, campaign="nobody").totals.posts == 0

    client = make_client(engine, role="viewer")
    answer = client.get("/reports/weekly.json", params={"week": WEEK, "campaign": "launch"})
    assert answer.status_code == 200 and answer.json()["totals"] == json.loads(launch.to_json())["totals"]
    assert f"carspot-weekly-{WEEK}-launch.json" in answer.headers["content-disposition"]
    page = client.get("/", params={"campaign": "launch", "days": "30"}).text
    assert "reports/weekly.xlsx?week=" in page and "&amp;campaign=launch" in page.split("<footer>")[1]


def test_pdf_renders_to_a_non_blank_page(engine: Engine, tmp_path: Path) -> None:
    fill_week(engine)
    pdf = tmp_path / "weekly.pdf"
    pdf.write_bytes(to_pdf(weekly_report(engine, week=WEEK, now=NOW)))
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(tmp_path / "page")], check=True, timeout=60)
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) == 1
    pixels = np.asarray(Image.open(pages[0]).convert("L"))
    assert (pixels < 128).mean() > 0.01  # text and bars, not a white page
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "Model version(s): brands-v1, brands-v2" in text
    assert "unidentified cars" in text


def test_the_dashboard_serves_every_format(engine: Engine, make_client: Callable[..., TestClient]) -> None:
    fill_week(engine)
    client = make_client(engine, role="viewer")
    assert make_client(engine, signed_in=False).get(f"/reports/weekly.xlsx?week={WEEK}").status_code in (303, 401)
    expected = {
        "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "pdf": "application/pdf",
        "zip": "application/zip",
        "json": "application/json",
    }
    for ext, media in expected.items():
        response = client.get(f"/reports/weekly.{ext}?week={WEEK}")
        assert response.status_code == 200, ext
        assert response.headers["content-type"].startswith(media)
        assert f"carspot-weekly-{WEEK}.{ext}" in response.headers["content-disposition"]
    assert client.get("/reports/weekly.xlsx?week=2026-W99").status_code == 422
    mentions = client.get("/api/mentions?since=2026-11-16&until=2026-11-23").json()
    assert mentions["rank_text_mentions"] is True
    assert all({"seen_in_picture", "named_in_text", "both"} <= set(m) for m in mentions["makes"])


def test_the_dashboard_page_shows_seen_named_and_both_and_links_every_report_format(
    engine: Engine, make_client: Callable[..., TestClient]
) -> None:
    fill_week(engine)
    named_posts = [
        replace(post("pM1", "A", at(0, 11)), mentions=(MentionRecord(make="bmw", via="hashtag"),)),
        replace(post("pM2", "B", at(1, 13)), mentions=(MentionRecord(make="toyota", via="name"),)),
    ]
    AnalysisStore(engine).write_batch(posts=named_posts, analyses=[])
    client = make_client(engine, role="viewer")
    api = client.get(
        "/api/mentions", params={"since": (NOW - timedelta(days=30)).isoformat(), "until": NOW.isoformat()}
    )
    named = [m for m in api.json()["makes"] if m["named_in_text"]]
    assert {m["make"] for m in named} == {"bmw", "toyota"}
    page = client.get("/?window=30d").text
    assert "Seen in the picture, named in the text" in page
    for m in named:
        cells = f'{m["make"]}</a></td><td class="num">{m["seen_in_picture"]}</td><td class="num">{m["named_in_text"]}'
        assert cells + f'</td><td class="num">{m["both"]}</td>' in page
    for ext in ("xlsx", "pdf", "zip", "json"):
        assert f"reports/weekly.{ext}?week=" in page
