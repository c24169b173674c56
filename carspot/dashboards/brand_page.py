"""The brand page and the comparison page, rendered on the server like the dashboard: inline CSS and SVG, no
script, no external asset. Every value from a post or a model goes through :func:`html.escape`.

A thumbnail's car boxes are an SVG laid over the ``<img>``: its ``viewBox`` is the analysed image's size in
pixels, the unit the boxes are stored in, so the browser scales them with the picture.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Final
from urllib.parse import quote

from carspot.dashboards.brand_figures import BrandFigures, Period
from carspot.dashboards.filter_form import filter_form
from carspot.dashboards.filters import View
from carspot.dashboards.intervals import Interval, wilson
from carspot.dashboards.page import _CSS as DASHBOARD_CSS
from carspot.dashboards.page import safe_url
from carspot.store.queries import BrandImage, DailyBrands, Facets

LINE_COLOURS: Final = ("#4f46e5", "#f59e0b", "#10b981", "#ef4444", "#0891b2")
_W, _H = 1000, 240
_L, _R, _T, _B = 52, 12, 14, 30


@dataclass(frozen=True, slots=True)
class BrandView:
    title: str
    figures: BrandFigures
    facets: Facets
    now: datetime


@dataclass(frozen=True, slots=True)
class CompareView:
    title: str
    view: View
    makes: Sequence[str]
    days: Sequence[DailyBrands]
    totals: Mapping[str, Period]
    facets: Facets
    now: datetime
    error: str | None


def brand_link(make: str, *, base: str = "", query: str = "") -> str:
    """The relative address of a make's brand page."""
    return f"{base}brands/{quote(make, safe='')}" + (f"?{query}" if query else "")


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _interval(interval: Interval | None) -> str:
    return "—" if interval is None else f"{_pct(interval.low)} – {_pct(interval.high)}"


def _kpi(ident: str, label: str, value: str, sub: str) -> str:
    return (
        f'<div class="kpi" id="{ident}"><div class="kpi-label">{escape(label)}</div>'
        f'<div class="kpi-value">{escape(value)}</div><div class="kpi-sub">{escape(sub)}</div></div>'
    )


def _change(this: Period, previous: Period) -> tuple[str, str]:
    points = 100 * (this.share - previous.share)
    sign = "+" if points >= 0 else "−"
    ratio = f"{this.images / previous.images - 1:+.0%} images" if previous.images else "no images the week before"
    return f"{sign}{abs(points):.1f} pts", f"{_pct(previous.share)} → {_pct(this.share)} · {ratio}"


def share_bars_svg(make: str, days: Sequence[DailyBrands]) -> str:
    """The make's daily share as bars, each with its 95 % Wilson interval as a whisker."""
    n = max(len(days), 1)
    slot = (_W - _L - _R) / n
    plot_h = _H - _T - _B

    def y(v: float) -> float:
        return _T + plot_h - plot_h * v

    parts = [
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(make)} daily share" '
        'xmlns="http://www.w3.org/2000/svg">'
    ]
    for t in range(5):
        gy = y(t / 4)
        parts.append(
            f'<line x1="{_L}" x2="{_W - _R}" y1="{gy:.1f}" y2="{gy:.1f}" class="grid"/>'
            f'<text x="{_L - 8}" y="{gy + 4:.1f}" class="tick" text-anchor="end">{25 * t}%</text>'
        )
    every = max(1, -(-len(days) // 10))
    for i, d in enumerate(days):
        k, total = d.makes.get(make, 0), d.identified
        cx = _L + slot * (i + 0.5)
        share = k / total if total else 0.0
        interval = wilson(k, total)
        tip = escape(f"{d.day.isoformat()}: {k} of {total} images ({_pct(share)}), 95% {_interval(interval)}")
        bar_w = min(slot * 0.6, 28)
        parts.append(
            f'<g><title>{tip}</title><rect x="{cx - bar_w / 2:.1f}" y="{y(share):.1f}" width="{bar_w:.1f}" '
            f'height="{plot_h * share:.1f}" fill="#6366f1" fill-opacity="0.8" rx="2"/>'
        )
        if interval is not None:
            parts.append(
                f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(interval.low):.1f}" y2="{y(interval.high):.1f}" '
                'stroke="#111827" stroke-width="1.5"/>'
            )
        parts.append("</g>")
        if i % every == 0:
            parts.append(
                f'<text x="{cx:.1f}" y="{_H - 10}" class="tick" text-anchor="middle">{d.day.strftime("%b %d")}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def share_lines_svg(makes: Sequence[str], days: Sequence[DailyBrands]) -> str:
    """Each make's daily share as a line (a day without identified images leaves a gap)."""
    n = max(len(days), 1)
    slot = (_W - _L - _R) / n
    plot_h = _H - _T - _B
    top = max((d.share(m) for d in days for m in makes), default=0.0)
    y_max = min(1.0, max(0.1, -(-top * 10 // 1) / 10))

    def y(v: float) -> float:
        return _T + plot_h - plot_h * v / y_max

    parts = [
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" aria-label="daily share" '
        'xmlns="http://www.w3.org/2000/svg">'
    ]
    for t in range(5):
        value = y_max * t / 4
        parts.append(
            f'<line x1="{_L}" x2="{_W - _R}" y1="{y(value):.1f}" y2="{y(value):.1f}" class="grid"/>'
            f'<text x="{_L - 8}" y="{y(value) + 4:.1f}" class="tick" text-anchor="end">{100 * value:.0f}%</text>'
        )
    every = max(1, -(-len(days) // 10))
    for i, d in enumerate(days):
        if i % every == 0:
            parts.append(
                f'<text x="{_L + slot * (i + 0.5):.1f}" y="{_H - 10}" class="tick" text-anchor="middle">'
                f"{d.day.strftime('%b %d')}</text>"
            )
    for colour, make in zip(LINE_COLOURS, makes, strict=False):
        runs: list[list[str]] = [[]]
        for i, d in enumerate(days):
            if d.identified:
                runs[-1].append(f"{_L + slot * (i + 0.5):.1f},{y(d.share(make)):.1f}")
            elif runs[-1]:
                runs.append([])
        for run in runs:
            if len(run) > 1:
                parts.append(
                    f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" stroke-width="2.5" '
                    f'stroke-linejoin="round"><title>{escape(make)}</title></polyline>'
                )
            parts.extend(
                f'<circle cx="{pt.split(",")[0]}" cy="{pt.split(",")[1]}" r="3" fill="{colour}"/>' for pt in run
            )
    parts.append("</svg>")
    return "".join(parts)


def _boxes_svg(image: BrandImage, make: str) -> str:
    rects = []
    for r in image.regions:
        kind = "mine" if r.make == make else ("doubt" if r.make is None else "other")
        label = r.make or "unidentified car"
        score = f" {round(100 * r.score)}%" if r.score is not None else ""
        rects.append(
            f'<rect class="box {kind}" x="{r.x1:.1f}" y="{r.y1:.1f}" width="{r.x2 - r.x1:.1f}" '
            f'height="{r.y2 - r.y1:.1f}"><title>{escape(label + score)}</title></rect>'
        )
    return (
        f'<svg class="boxes" viewBox="0 0 {image.width} {image.height}" preserveAspectRatio="none" '
        f'xmlns="http://www.w3.org/2000/svg" aria-hidden="true">{"".join(rects)}</svg>'
    )


def _image_card(image: BrandImage, make: str, *, base: str) -> str:
    ratio = f"{image.width} / {image.height}"
    picture = (
        f'<img class="thumb-img" src="{base}thumbnails/{image.image_sha256}.jpg" alt="analysed image '
        f'{escape(image.image_sha256[:12])}" loading="lazy" decoding="async">'
        if image.has_thumbnail
        else '<div class="no-thumb">no thumbnail kept</div>'
    )
    chips = "".join(
        f'<li class="{"mine" if b.make == make else ""}"><a href="{escape(brand_link(b.make, base=base))}">'
        f"{escape(b.make)}</a> <b>{round(100 * b.score)}%</b></li>"
        for b in image.brands
    )
    post = image.latest_post
    who = ""
    if post is not None:
        author = escape(post.author or "unknown author")
        link = safe_url(post.url)
        who = f'<a href="{escape(link)}" rel="noopener noreferrer nofollow">{author}</a>' if link else author
        who = f'<div class="sub">{who} · {escape(post.source)}</div>'
    return (
        f'<figure class="shot"><div class="frame" style="aspect-ratio:{ratio}">{picture}'
        f'{_boxes_svg(image, make)}</div><figcaption><ol class="top5">{chips}</ol>{who}'
        f'<div class="sub">{image.analyzed_at.strftime("%Y-%m-%d %H:%M")} UTC · {escape(image.mode)}</div>'
        "</figcaption></figure>"
    )


def _page(title: str, heading: str, body: str, *, base: str, now: datetime) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(heading)} · {escape(title)}</title><link rel="icon" href="data:,">
<style>{DASHBOARD_CSS}{_CSS}</style></head>
<body><header class="top"><div class="wrap top-inner"><div><h1>{escape(heading)}</h1>
<div class="tagline"><a href="{base or "./"}">{escape(title)} dashboard</a> · <a href="{base}compare">compare makes</a>
</div></div></div></header>
<main class="wrap">{body}
<footer><span>Shares are of the images with a confident make; unidentified images are counted apart.</span>
<span>Page generated {now.strftime("%Y-%m-%d %H:%M")} UTC</span></footer></main></body></html>
"""


def render_brand(page: BrandView, *, base: str) -> str:
    f = page.figures
    make, view = f.make, f.view
    points, detail = _change(f.this_week, f.previous_week)
    window = f"{view.since.strftime('%Y-%m-%d %H:%M')} – {view.until.strftime('%Y-%m-%d %H:%M')} UTC"
    kpis = (
        '<section class="kpis">'
        + _kpi("kpi-images", "Images", f"{f.total.images:,}", f"with {make} as their best make")
        + _kpi(
            "kpi-share", "Share", _pct(f.total.share), f"95% {_interval(f.total.interval)} of {f.total.identified:,}"
        )
        + _kpi("kpi-wow", "Week over week", points, detail)
        + _kpi("kpi-unidentified", "Unidentified", f"{f.total.unidentified:,}", "images with a car, no confident make")
        + "</section>"
    )
    rows = "".join(
        f'<tr><td>{d.day.isoformat()}</td><td class="num">{d.makes.get(make, 0):,}</td><td class="num">'
        f'{d.identified:,}</td><td class="num strong">{_pct(d.share(make))}</td><td class="num">'
        f'{_interval(wilson(d.makes.get(make, 0), d.identified))}</td><td class="num">{d.unidentified:,}</td></tr>'
        for d in reversed(f.days)
    )
    daily = (
        '<section class="card"><div class="card-head"><h2>Daily share</h2><span class="muted">bars: share of the '
        "day's images with a confident make; whiskers: 95% Wilson interval</span></div>"
        + share_bars_svg(make, f.days)
        + '<details><summary>Show as table</summary><table class="days" id="daily-table"><thead><tr><th>Day</th>'
        '<th class="num">Images</th><th class="num">With a make</th><th class="num">Share</th>'
        f'<th class="num">95% interval</th><th class="num">Unidentified</th></tr></thead><tbody>{rows}</tbody></table>'
        "</details></section>"
    )
    query = view.query()
    others = "".join(
        f'<li><a href="{escape(brand_link(m.make, base=base, query=query))}">{escape(m.make)}</a> '
        f'<span class="muted">{m.images:,} image{"s" if m.images != 1 else ""}</span></li>'
        for m in f.seen.others
    )
    compare_with = ",".join([make, *(m.make for m in f.seen.others[:2])])
    seen = (
        '<section class="card" id="seen-with"><div class="card-head"><h2>Seen with</h2>'
        f'<span class="muted">other makes in the {f.seen.images:,} image{"s" if f.seen.images != 1 else ""} where '
        f"{escape(make)} is seen</span></div>"
        + (f'<ul class="cooc">{others}</ul>' if others else '<p class="muted">No other make in the same images.</p>')
        + f'<p class="note"><a href="{base}compare?{escape(view.query(makes=compare_with))}">Compare over time</a></p>'
        "</section>"
    )
    campaign_rows = "".join(
        f"<tr><td>{escape(c.campaign) if c.campaign else '<span class=muted>none</span>'}</td>"
        f'<td class="num">{c.makes.get(make, 0):,}</td><td class="num">{c.identified:,}</td>'
        f'<td class="num strong">{_pct(c.makes.get(make, 0) / c.identified if c.identified else 0.0)}</td>'
        f'<td class="num">{_interval(wilson(c.makes.get(make, 0), c.identified))}</td></tr>'
        for c in f.campaigns
    )
    by_campaign = (
        '<section class="card" id="by-campaign"><div class="card-head"><h2>By campaign</h2><span class="muted">'
        "an image shown in two campaigns counts in both</span></div>"
        + (
            '<table><thead><tr><th>Campaign</th><th class="num">Images</th><th class="num">With a make</th>'
            f'<th class="num">Share</th><th class="num">95% interval</th></tr></thead><tbody>{campaign_rows}</tbody>'
            "</table>"
            if campaign_rows
            else '<p class="muted">No image in this view.</p>'
        )
        + "</section>"
    )
    cards = "".join(_image_card(i, make, base=base) for i in f.images)
    gallery = (
        '<section class="card"><div class="card-head"><h2>Latest images</h2><span class="muted">boxes: '
        f'<i class="key mine"></i>{escape(make)} <i class="key other"></i>another make '
        '<i class="key doubt"></i>unidentified car</span></div>'
        + (f'<div class="gallery" id="gallery">{cards}</div>' if cards else '<div class="empty">No image yet.</div>')
        + "</section>"
    )
    hidden = ""
    body = (
        filter_form(view, page.facets, extra=hidden)
        + f'<p class="alltime">{escape(window)}</p>'
        + kpis
        + daily
        + seen
        + by_campaign
        + gallery
        + f'<p class="note"><a href="{escape(base)}api/brands/{quote(make, safe="")}?{escape(query)}">JSON</a></p>'
    )
    return _page(page.title, make, body, base=base, now=page.now)


def render_compare(page: CompareView, *, base: str) -> str:
    view = page.view
    makes_field = (
        f'<label class="wide">Makes (2–5, comma-separated)<input type="text" name="makes" id="f-makes" '
        f'value="{escape(view.params.get("makes", ""))}" placeholder="Toyota, BMW"></label>'
    )
    body = filter_form(View(view.since, view.until, view.filters, view.params), page.facets, extra=makes_field)
    if page.error:
        body += f'<div class="empty" id="compare-error">{escape(page.error)}</div>'
    elif not page.makes:
        body += '<div class="empty">Name two to five makes to compare their share over time.</div>'
    else:
        query = view.query(makes=None)
        legend = "".join(
            f'<span class="legend-item"><i style="background:{c}"></i>'
            f'<a href="{escape(brand_link(m, base=base, query=query))}">{escape(m)}</a></span>'
            for c, m in zip(LINE_COLOURS, page.makes, strict=False)
        )
        rows = "".join(
            f'<tr><td class="make">{escape(m)}</td><td class="num">{page.totals[m].images:,}</td>'
            f'<td class="num strong">{_pct(page.totals[m].share)}</td><td class="num">'
            f"{_interval(page.totals[m].interval)}</td></tr>"
            for m in page.makes
        )
        body += (
            '<section class="card"><div class="card-head"><h2>Daily share</h2><span class="muted">of the images with a '
            f'confident make</span></div><div class="legend">{legend}</div>{share_lines_svg(page.makes, page.days)}'
            '</section><section class="card"><h2>Over the window</h2><table id="compare-table"><thead><tr><th>Make</th>'
            '<th class="num">Images</th><th class="num">Share</th><th class="num">95% interval</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></section>"
            f'<p class="note"><a href="{base}api/compare?{escape(view.query())}">JSON</a></p>'
        )
    return _page(page.title, "Compare makes", body, base=base, now=page.now)


_CSS: Final = """
.top a{color:#c7d2fe}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:16px}
.shot{margin:0;display:flex;gap:10px;flex-direction:column}
.frame{position:relative;width:100%;background:#f3f4f6;border-radius:6px;overflow:hidden}
.frame img,.frame .boxes{position:absolute;inset:0;width:100%;height:100%}
.frame img{object-fit:fill}
.no-thumb{position:absolute;inset:0;display:flex;align-items:center;justify-content:center;color:#9ca3af;font-size:12px}
.box{fill:none;stroke-width:2.5;vector-effect:non-scaling-stroke;paint-order:stroke}
.box.mine{stroke:#22c55e}.box.other{stroke:#f59e0b}.box.doubt{stroke:#e5e7eb;stroke-dasharray:5 3}
.key{display:inline-block;width:10px;height:10px;border:2px solid;margin:0 4px 0 10px;vertical-align:-1px}
.key.mine{border-color:#22c55e}.key.other{border-color:#f59e0b}.key.doubt{border-color:#9ca3af}
.top5{margin:0;padding-left:20px;font-size:13px}.top5 li.mine{font-weight:650}.top5 b{color:#6b7280;font-weight:500}
.cooc{display:flex;flex-wrap:wrap;gap:8px 18px;list-style:none;padding:0;margin:0}
.feed-thumb{display:block;width:96px;height:auto;border-radius:4px;margin-bottom:4px}
"""
