"""The main dashboard page takes the filters of the brand pages from its URL: every figure on it follows them, its
links (tabs, brand pages, compare, the live feed's refresh) keep them, and a bad value answers 422.

Now is Wed 2026-11-25 12:00 UTC; the page's default window is the 7 days before it. One car per image:

  Mon 2026-11-16 10:00 (9 days ago)  T1 Toyota 0.9 · B1 BMW 0.9                    (detector, source folder)
  Fri 2026-11-20 10:00 (5 days ago)  T2 Toyota 0.9, campaign launch (source x), its text names Toyota
                                     T3 Toyota 0.45 · U1 unidentified (Toyota 0.2)   (detector, folder)
                                     B4 BMW 0.9 in region-search mode; its text names Toyota (folder)

By hand, the last 7 days: 4 posts, 4 images, 4 cars; with a make T2, T3, B4 (Toyota 2, BMW 1); U1 unidentified.
Seen/named/both: Toyota 2/2/1 (T2 shows and names it, B4's post names it), BMW 1/0/0.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from carspot.store.records import MentionRecord
from carspot.store.writer import AnalysisStore

from .data import sha
from .test_brands import PREVIOUS, THIS, image, posted

Figures = dict[str, int]


def fill(engine: Engine) -> None:
    named = (MentionRecord(make="Toyota", via="name"),)
    analyses = [
        image("T1", PREVIOUS, [("Toyota", 0.9)]),
        image("B1", PREVIOUS, [("BMW", 0.9)]),
        image("T2", THIS, [("Toyota", 0.9)], thumb=True),
        image("T3", THIS, [("Toyota", 0.45)]),
        image("U1", THIS, [("Toyota", 0.2)], unidentified=True),
        dataclasses.replace(image("B4", THIS, [("BMW", 0.9)]), mode="region-search"),
    ]
    posts = [
        posted("T1", PREVIOUS),
        posted("B1", PREVIOUS),
        dataclasses.replace(posted("T2", THIS, "launch"), text="my Toyota", mentions=named),
        posted("T3", THIS),
        posted("U1", THIS),
        dataclasses.replace(posted("B4", THIS), text="better than a Toyota", mentions=named),
    ]
    AnalysisStore(engine).write_batch(posts=posts, analyses=analyses)


@pytest.fixture
def home(engine: Engine, make_client: Callable[[Engine], TestClient]) -> TestClient:
    fill(engine)
    return make_client(engine)


def page(client: TestClient, **params: str) -> str:
    r = client.get("/", params=params)
    assert r.status_code == 200, r.text[:300]
    return r.text


def kpis(html: str) -> Figures:
    found = re.findall(r'<div class="kpi" id="kpi-([a-z]+)"[^>]*>.*?<div class="kpi-value">([\d,]+)</div>', html)
    return {name: int(value.replace(",", "")) for name, value in found}


def shares(html: str) -> Figures:
    """Brand share table: make -> images (rank 1)."""
    table = html[html.index('id="brand-share"') : html.index("</section>", html.index('id="brand-share"'))]
    rows = re.findall(r'<td class="make"><a href="[^"]*">([^<]+)</a>.*?<td class="num">([\d,]+)</td>', table)
    return {make: int(n) for make, n in rows}


def mentions(html: str) -> dict[str, tuple[int, int, int]]:
    table = html[html.index('id="mentions"') : html.index("</section>", html.index('id="mentions"'))]
    rows = re.findall(
        r'<td class="make"><a href="[^"]*">([^<]+)</a></td><td class="num">(\d+)</td><td class="num">(\d+)</td>'
        r'<td class="num">(\d+)</td>',
        table,
    )
    return {make: (int(s), int(n), int(b)) for make, s, n, b in rows}


def trend_images(html: str) -> dict[str, int]:
    """The daily table under the trend chart: day -> images analysed (days with none left out)."""
    table = html[html.index('id="trend"') : html.index("</section>", html.index('id="trend"'))]
    rows = re.findall(r'<tr><td>(\d{4}-\d\d-\d\d)</td><td class="num">\d+</td><td class="num">(\d+)</td>', table)
    return {day: int(n) for day, n in rows if n != "0"}


def feed(html: str) -> set[str]:
    body = html[html.index('id="feed-body"') : html.index("</tbody>", html.index('id="feed-body"'))]
    return set(re.findall(r'<code title="([0-9a-f]{64})">', body))


def shas(*names: str) -> set[str]:
    return {sha(n) for n in names}


def test_every_figure_follows_the_window(any_engine: Engine, make_client: Callable[[Engine], TestClient]) -> None:
    fill(any_engine)
    client = make_client(any_engine)
    week = page(client)
    assert kpis(week) == {"posts": 4, "images": 4, "cars": 4, "branded": 3, "unidentified": 1}
    assert shares(week) == {"Toyota": 2, "BMW": 1}
    assert mentions(week) == {"Toyota": (2, 2, 1), "BMW": (1, 0, 0)}
    assert trend_images(week) == {"2026-11-20": 4}
    assert feed(week) == shas("T2", "T3", "U1", "B4")
    assert "Last 7 days" in week

    fortnight = page(client, days="14")
    assert kpis(fortnight) == {"posts": 6, "images": 6, "cars": 6, "branded": 5, "unidentified": 1}
    assert shares(fortnight) == {"Toyota": 3, "BMW": 2}
    assert trend_images(fortnight) == {"2026-11-16": 2, "2026-11-20": 4}
    assert feed(fortnight) == shas("T1", "B1", "T2", "T3", "U1", "B4")

    monday = page(client, since="2026-11-16", until="2026-11-17")
    assert kpis(monday) == {"posts": 2, "images": 2, "cars": 2, "branded": 2, "unidentified": 0}
    assert shares(monday) == {"Toyota": 1, "BMW": 1}
    assert feed(monday) == shas("T1", "B1")
    assert "2026-11-16 00:00 – 2026-11-17 00:00 UTC" in monday
    # The chart still shows a week (for context), ending with the window's last day.
    assert trend_images(monday) == {"2026-11-16": 2}
    assert "7 UTC days, 2026-11-10 to 2026-11-16" in monday


def test_source_campaign_mode_and_confidence_each_change_the_numbers(
    any_engine: Engine, make_client: Callable[[Engine], TestClient]
) -> None:
    fill(any_engine)
    client = make_client(any_engine)

    launch = page(client, campaign="launch")
    assert kpis(launch) == {"posts": 1, "images": 1, "cars": 1, "branded": 1, "unidentified": 0}
    assert shares(launch) == {"Toyota": 1}
    assert mentions(launch) == {"Toyota": (1, 1, 1)}
    assert feed(launch) == shas("T2")
    assert trend_images(launch) == {"2026-11-20": 1}
    assert "All time, for this source, campaign and mode: 1 posts · 1 images · 1 analyses" in launch

    folder = page(client, source="folder")
    assert kpis(folder) == {"posts": 3, "images": 3, "cars": 3, "branded": 2, "unidentified": 1}
    assert shares(folder) == {"Toyota": 1, "BMW": 1}
    assert feed(folder) == shas("T3", "U1", "B4")
    assert "5 posts · 5 images · 5 analyses" in folder

    searched = page(client, mode="region-search")
    # Posts have no mode: they stay; the analyses and what they found are those of the mode.
    assert kpis(searched) == {"posts": 4, "images": 1, "cars": 1, "branded": 1, "unidentified": 0}
    assert shares(searched) == {"BMW": 1}
    assert mentions(searched) == {"BMW": (1, 0, 0), "Toyota": (0, 2, 0)}
    assert feed(searched) == shas("B4")

    strict = page(client, min_confidence="0.5")
    # T3 (0.45) now counts apart with U1; the feed still lists every analysis.
    assert kpis(strict) == {"posts": 4, "images": 4, "cars": 4, "branded": 2, "unidentified": 2}
    assert shares(strict) == {"Toyota": 1, "BMW": 1}
    assert mentions(strict) == {"Toyota": (1, 2, 1), "BMW": (1, 0, 0)}
    assert feed(strict) == shas("T2", "T3", "U1", "B4")
    assert "best make below 0.5" in strict


def test_the_links_keep_the_filters(home: TestClient) -> None:
    html = page(home, campaign="launch", min_confidence="0.5")
    tabs = re.findall(r'<nav class="tabs"[^>]*>(.*?)</nav>', html)[0]
    assert re.findall(r'href="\?([^"]+)"', tabs) == [
        "campaign=launch&amp;days=1&amp;min_confidence=0.5",
        "campaign=launch&amp;days=7&amp;min_confidence=0.5",
        "campaign=launch&amp;days=30&amp;min_confidence=0.5",
    ]
    assert '<a href="?campaign=launch&amp;days=7&amp;min_confidence=0.5" class="active">' in tabs
    assert 'href="brands/Toyota?campaign=launch&amp;days=7&amp;min_confidence=0.5"' in html
    assert 'href="compare?campaign=launch&amp;days=7&amp;min_confidence=0.5"' in html
    # The live feed refreshes in the same window, source, campaign and mode (it lists unidentified cars too).
    assert 'data-src="api/recent?limit=20&amp;campaign=launch&amp;days=7"' in html
    # The form shows the view it makes.
    assert '<option value="launch" selected>' in html and 'name="min_confidence"' in html
    assert 'value="0.5"' in html and '<option value="7" selected>' in html
    # A tab leaves an explicit window for the last N days, keeping the rest.
    explicit = page(home, since="2026-11-16", until="2026-11-17", source="folder")
    assert 'href="?days=30&amp;source=folder"' in explicit and 'class="active"' not in explicit
    assert 'value="2026-11-16"' in explicit and '<option value="" selected>custom (since/until)</option>' in explicit


def test_the_form_and_the_older_window_addresses_give_the_same_view(home: TestClient) -> None:
    # The form sends every field, empty ones meaning "any" (and an empty window: since/until decide).
    form = page(
        home, days="", since="2026-11-16", until="2026-11-17", source="", campaign="", mode="", min_confidence=""
    )
    assert kpis(form) == kpis(page(home, since="2026-11-16", until="2026-11-17"))
    # The brand pages read the same form the same way (an empty window was once refused there).
    brand = home.get("/api/brands/Toyota", params={"days": "", "since": "2026-11-16", "until": "2026-11-17"})
    assert brand.status_code == 200 and brand.json()["images"] == 1
    assert kpis(page(home, window="30d")) == kpis(page(home, days="30"))
    assert kpis(page(home, window="24h")) == {"posts": 0, "images": 0, "cars": 0, "branded": 0, "unidentified": 0}


def form_fields(html: str) -> dict[str, str]:
    """What submitting the filter form as it is sends: each input's value, each select's chosen option."""
    form = html[html.index('<form class="filters') : html.index("</form>", html.index('<form class="filters'))]
    fields = dict(re.findall(r'<input type="[a-z]+" name="([a-z_]+)"[^>]*?value="([^"]*)"', form))
    for name, options in re.findall(r'<select name="([a-z_]+)"[^>]*>(.*?)</select>', form):
        chosen = re.search(r'<option value="([^"]*)" selected>', options)
        fields[name] = chosen.group(1) if chosen else ""
    return fields


def test_a_window_with_times_of_day_survives_the_form(home: TestClient) -> None:
    """A link or a hand-typed address may give since/until with a time; Apply must not cut it to 00:00 UTC."""
    hours = page(home, since="2026-11-20T09:00:00Z", until="2026-11-20T11:00:00+00:00")
    assert kpis(hours)["images"] == 4
    fields = form_fields(hours)
    assert fields["since"] == "2026-11-20T09:00:00Z" and fields["until"] == "2026-11-20T11:00:00+00:00"
    assert kpis(page(home, **fields)) == kpis(hours)
    days = form_fields(page(home, since="2026-11-16", until="2026-11-17"))
    assert (days["since"], days["until"]) == ("2026-11-16", "2026-11-17")  # a day keeps its date picker
    assert 'type="date" name="since"' in page(home, since="2026-11-16")


def test_the_feed_api_takes_the_same_filters(home: TestClient) -> None:
    def items(**params: str) -> set[str]:
        r = home.get("/api/recent", params=params)
        assert r.status_code == 200, r.text
        return {i["image_sha256"] for i in r.json()["items"]}

    assert items() == shas("T1", "B1", "T2", "T3", "U1", "B4")  # no window asked: the latest, whenever
    assert items(days="7", campaign="launch") == shas("T2")
    assert items(days="7", source="folder", mode="detector") == shas("T3", "U1")
    assert items(since="2026-11-16", until="2026-11-17") == shas("T1", "B1")
    assert home.get("/api/recent", params={"days": "0"}).status_code == 422


def test_the_json_apis_take_the_filters_too(home: TestClient) -> None:
    friday = {"since": "2026-11-20", "until": "2026-11-21"}

    def api(path: str, **params: str) -> dict:  # type: ignore[type-arg]
        r = home.get(path, params={**friday, **params})
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def share(**params: str) -> Figures:
        return {m["make"]: m["images"] for m in api("/api/brand-share", **params)["makes"]}

    assert share() == {"Toyota": 2, "BMW": 1}
    assert share(campaign="launch") == {"Toyota": 1}
    assert share(source="folder", mode="detector") == {"Toyota": 1}  # T3; U1 is unidentified
    assert share(min_confidence="0.5") == {"Toyota": 1, "BMW": 1}  # T3 (0.45) is left out
    answer = api("/api/brand-share", source="folder", min_confidence="0.5")
    assert (answer["source"], answer["campaign"], answer["min_confidence"]) == ("folder", None, 0.5)

    def images(**params: str) -> int:
        return sum(d["images_analyzed"] for d in api("/api/daily", **params)["days"])

    assert (images(), images(campaign="launch"), images(source="folder")) == (4, 1, 3)

    def seen_named(**params: str) -> dict[str, tuple[int, int]]:
        found = api("/api/mentions", **params)["makes"]
        return {m["make"]: (m["seen_in_picture"], m["named_in_text"]) for m in found}

    assert seen_named()["Toyota"] == (2, 2)
    assert seen_named(campaign="launch") == {"Toyota": (1, 1)}
    assert home.get("/api/brand-share", params={"min_confidence": "high"}).status_code == 422


@pytest.mark.parametrize(
    "params",
    [
        {"min_confidence": "high"},
        {"min_confidence": "1.5"},
        {"mode": "fastest"},
        {"days": "0"},
        {"days": "week"},
        {"since": "yesterday"},
        {"since": "2026-11-20T00:00:00"},
        {"since": "2026-11-20", "until": "2026-11-19"},
        {"window": "forever"},
    ],
)
def test_a_bad_filter_answers_422_saying_what_was_expected(home: TestClient, params: dict[str, str]) -> None:
    r = home.get("/", params=params)
    assert r.status_code == 422, params
    assert r.json()["detail"]


def test_filter_values_are_escaped(home: TestClient) -> None:
    evil = '"><img src=x onerror=alert(1)>'
    html = page(home, source=evil, campaign="<script>alert(1)</script>")
    body = html[: html.index("<script nonce=")]
    assert "<img src=x" not in body and "<script>alert" not in body
    assert kpis(html)["images"] == 0  # no such source: nothing counted
    assert "source=%22%3E%3Cimg+src%3Dx+onerror%3Dalert%281%29%3E" in body  # kept in the links, URL-encoded
    assert '<option value="&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" selected>' in body  # and in the form
