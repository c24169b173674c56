"""The dashboard page, rendered on the server as one self-contained HTML document.

No template engine and no external asset: inline CSS, server-drawn SVG, and a small inline script (allowed by
a per-request CSP nonce) that refreshes the live feed from ``api/recent``. Every value that comes from a post
or a model (authors, post text, URLs, makes) goes through :func:`html.escape`; links are only made from
``http(s)`` URLs. The script builds feed rows with ``textContent``, never ``innerHTML``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Final
from urllib.parse import quote, urlencode, urlsplit

from carspot.dashboards.charts import CARS_COLOUR, IMAGES_COLOUR, POSTS_COLOUR, trend_svg
from carspot.dashboards.filter_form import FILTERS_CSS, days_label, filter_form
from carspot.dashboards.filters import View
from carspot.store.queries import BrandShare, Counts, DailyCount, Facets, MentionCount, RecentAnalysis

MAX_SHARE_ROWS: Final = 12
TEXT_SNIPPET: Final = 120
SHA_PREFIX: Final = 12

TAB_DAYS: Final = (1, 7, 30)
"""The window tabs: the last 24 hours, 7 days, 30 days (``days=1|7|30``, every other filter kept)."""
HOME_DAYS: Final = 7
"""The dashboard's window when the URL names none (its links then say ``days=7``, so a brand page they lead to
shows the same window, whose own default is 14 days)."""
FORM_DAYS: Final = (1, 7, 14, 30, 90)
LEGACY_WINDOWS: Final = {"24h": 1, "7d": 7, "30d": 30}
"""``?window=24h|7d|30d``, the tabs' addresses before the filters: still read, as ``days=``."""


@dataclass(frozen=True, slots=True)
class DashboardView:
    """Everything the page shows, fetched beforehand (rendering does no I/O)."""

    title: str
    now: datetime
    view: View
    """The window and filters every figure below was computed with, and the parameters its links keep."""
    facets: Facets
    totals: Counts
    window_days: Sequence[DailyCount]
    shares: Sequence[BrandShare]
    trend: Sequence[DailyCount]
    recent: Sequence[RecentAnalysis]
    feed_limit: int
    refresh_seconds: int
    report_week: str
    nonce: str
    user: str = ""
    role: str = "viewer"
    csrf: str = ""
    """The signed-in user's session CSRF token, sent back by the sign-out form."""
    unidentified: int = 0
    """The window's images whose latest analysis found a car but no confident make (for these filters)."""
    mentions: Sequence[MentionCount] = ()
    """Per make, the window's posts whose picture shows it, whose text names it, and both."""


def window_label(view: View) -> str:
    """``Last 7 days``, ``7 days to 2026-11-20 00:00 UTC`` or ``2026-11-16 00:00 – 2026-11-23 00:00 UTC``."""
    p = view.params
    if "since" in p:
        return f"{view.since.strftime('%Y-%m-%d %H:%M')} – {view.until.strftime('%Y-%m-%d %H:%M')} UTC"
    days = int(p.get("days", HOME_DAYS))
    if "until" in p:
        return f"{'24 hours' if days == 1 else f'{days} days'} to {view.until.strftime('%Y-%m-%d %H:%M')} UTC"
    return days_label(days).capitalize()


def _narrowed(view: View) -> bool:
    f = view.filters
    return f.source is not None or f.campaign is not None or f.mode is not None


def _brand_href(make: str, view: View) -> str:
    """The brand page of ``make`` in the same view (escaped for an attribute)."""
    return escape(f"brands/{quote(make, safe='')}?{view.query()}")


def safe_url(url: str | None) -> str | None:
    """``url`` if it is an absolute http(s) URL (so never ``javascript:``), else ``None``."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme in ("http", "https") and parts.netloc else None


def snippet(text: str | None, limit: int = TEXT_SNIPPET) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _n(value: int) -> str:
    return f"{value:,}"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _kpi(label: str, value: str, sub: str, accent: str, *, ident: str) -> str:
    return (
        f'<div class="kpi" id="{ident}" style="--accent:{accent}"><div class="kpi-label">{escape(label)}</div>'
        f'<div class="kpi-value">{escape(value)}</div><div class="kpi-sub">{escape(sub)}</div></div>'
    )


def _kpis(view: DashboardView) -> str:
    posts = sum(d.posts for d in view.window_days)
    images = sum(d.images_analyzed for d in view.window_days)
    cars = sum(d.cars for d in view.window_days)
    branded = sum(s.images for s in view.shares)
    per_image = f"{cars / images:.2f} cars per image" if images else "no images analysed yet"
    branded_sub = f"{_pct(branded / images)} of images analysed" if images and branded else "awaiting brand classifier"
    label = window_label(view.view)
    label = label[0].lower() + label[1:]
    doubt = "a car, no confident make: not in brand share"
    if view.view.filters.min_confidence:
        doubt = f"a car, best make below {view.view.filters.min_confidence:g} or not confident: not in brand share"
    return (
        '<section class="kpis">'
        + _kpi("Posts ingested", _n(posts), label, POSTS_COLOUR, ident="kpi-posts")
        + _kpi("Images analysed", _n(images), label, IMAGES_COLOUR, ident="kpi-images")
        + _kpi("Cars detected", _n(cars), per_image, CARS_COLOUR, ident="kpi-cars")
        + _kpi("Images with a brand", _n(branded), branded_sub, "#10b981", ident="kpi-branded")
        + _kpi("Unidentified cars", _n(view.unidentified), doubt, "#9ca3af", ident="kpi-unidentified")
        + "</section>"
    )


def _share_section(view: DashboardView) -> str:
    head = (
        '<section class="card" id="brand-share"><div class="card-head"><h2>Brand share</h2>'
        f'<span class="muted">{escape(window_label(view.view))} · <a href="compare?{escape(view.view.query())}">'
        "compare makes</a></span></div>"
    )
    if not view.shares:
        return (
            head + '<div class="empty"><strong>No brand predictions in this window yet.</strong> '
            "Brand share appears as soon as the brand classifier labels images; until then the cars detected "
            "and images analysed are counted above and charted below.</div></section>"
        )
    total = sum(s.images for s in view.shares)
    leader = max(s.images for s in view.shares) or 1
    rows = []
    for i, s in enumerate(view.shares[:MAX_SHARE_ROWS], start=1):
        width = 100 * s.images / leader
        mention = s.top5_images / total if total else 0.0
        rows.append(
            f'<tr><td class="rank">{i}</td><td class="make"><a href="{_brand_href(s.make, view.view)}">'
            f"{escape(s.make)}</a></td>"
            f'<td class="barcell"><div class="bar"><span style="width:{width:.1f}%"></span></div></td>'
            f'<td class="num strong">{_pct(s.share)}</td><td class="num">{_n(s.images)}</td>'
            f'<td class="num">{_n(s.top5_images)} <span class="muted">({_pct(mention)})</span></td></tr>'
        )
    more = len(view.shares) - MAX_SHARE_ROWS
    foot = (
        f'<p class="note">{more} more make{"s" if more != 1 else ""} in the JSON API and the weekly report.</p>'
        if more > 0
        else ""
    )
    return (
        head + '<table class="share"><thead><tr><th></th><th>Make</th><th></th><th class="num">Share</th>'
        '<th class="num">Images (rank 1)</th><th class="num">Top-5 mentions</th></tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table>"
        + foot
        + f'<p class="note">Share of the {_n(total)} images with a brand, by their most confident brand. '
        "Top-5 mentions: images whose five most likely brands include the make.</p></section>"
    )


def _mentions_section(view: DashboardView) -> str:
    """Seen in the picture, named in the text, both: how far what people write and what they show agree."""
    head = (
        '<section class="card" id="mentions"><div class="card-head"><h2>Seen in the picture, named in the text</h2>'
        f'<span class="muted">{escape(window_label(view.view))}</span></div>'
    )
    shown = sorted(view.mentions, key=lambda m: (-(m.seen + m.named), m.make))[:MAX_SHARE_ROWS]
    if not shown:
        return head + '<div class="empty">No post in this window shows or names a make yet.</div></section>'
    rows = "".join(
        f'<tr><td class="make"><a href="{_brand_href(m.make, view.view)}">{escape(m.make)}</a></td>'
        f'<td class="num">{_n(m.seen)}</td><td class="num">{_n(m.named)}</td><td class="num">{_n(m.both)}</td></tr>'
        for m in shown
    )
    return (
        head + '<table class="share mentions"><thead><tr><th>Make</th><th class="num">Seen in the picture</th>'
        '<th class="num">Named in the text</th><th class="num">Both</th></tr></thead><tbody>'
        + rows
        + '</tbody></table><p class="note">Posts whose picture shows the make (its brand share count), whose text '
        "names it (hashtags, handles, brand and model names), and both.</p></section>"
    )


def _trend_section(view: DashboardView) -> str:
    days = view.trend
    if not days:
        label = "Daily activity"
    elif "until" in view.view.params:
        label = f"Daily activity, {len(days)} UTC days, {days[0].day.isoformat()} to {days[-1].day.isoformat()}"
    else:
        label = f"Daily activity, last {len(days)} days (UTC, today so far)"
    legend = "".join(
        f'<span class="legend-item"><i style="background:{c}"></i>{escape(n)}</span>'
        for n, c in (("Posts", POSTS_COLOUR), ("Images analysed", IMAGES_COLOUR), ("Cars detected", CARS_COLOUR))
    )
    rows = "".join(
        f'<tr><td>{d.day.isoformat()}</td><td class="num">{_n(d.posts)}</td>'
        f'<td class="num">{_n(d.images_analyzed)}</td><td class="num">{_n(d.cars)}</td></tr>'
        for d in reversed(days)
    )
    return (
        '<section class="card" id="trend"><div class="card-head"><h2>Daily trend</h2>'
        f'<span class="muted">{escape(label)}</span></div><div class="legend">{legend}</div>'
        f"{trend_svg(days, label=label)}"
        '<details><summary>Show as table</summary><table class="days"><thead><tr><th>Day</th>'
        '<th class="num">Posts</th><th class="num">Images analysed</th><th class="num">Cars</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></details></section>"
    )


def _brand_chips(a: RecentAnalysis) -> str:
    if not a.brands:
        return '<span class="muted">no brand yet</span>'
    return "".join(
        f'<span class="chip{" first" if b.rank == 1 else ""}">{escape(b.make)} <b>{round(100 * b.score)}%</b></span>'
        for b in sorted(a.brands, key=lambda b: b.rank)
    )


def feed_row(a: RecentAnalysis) -> str:
    """One live-feed row; the inline script builds the same structure from ``/api/recent``."""
    post = a.latest_post
    if post is None:
        who = '<span class="muted">no post</span>'
        meta = ""
        text = ""
    else:
        author = escape(post.author or "unknown author")
        link = safe_url(post.url)
        who = f'<a href="{escape(link)}" rel="noopener noreferrer nofollow">{author}</a>' if link else author
        posts = f" · {a.post_count} posts" if a.post_count > 1 else ""
        meta = f'<div class="sub">{escape(post.source)}{posts}</div>'
        text = f'<div class="sub text">{escape(snippet(post.text))}</div>' if post.text else ""
    return (
        f'<tr><td class="mono nowrap">{a.analyzed_at.strftime("%Y-%m-%d %H:%M:%S")}</td>'
        f"<td>{_feed_thumbnail(a)}"
        f'<code title="{escape(a.image_sha256)}">{escape(a.image_sha256[:SHA_PREFIX])}</code>'
        f'<div class="sub">{a.width}×{a.height} · {escape(a.mode)}</div></td>'
        f'<td class="post"><div class="who">{who}</div>{meta}{text}</td>'
        f'<td class="num strong">{a.region_count}</td><td class="brands">{_brand_chips(a)}</td></tr>'
    )


def _feed_thumbnail(a: RecentAnalysis) -> str:
    if not a.has_thumbnail:
        return ""
    return (
        f'<img class="feed-thumb" src="thumbnails/{escape(a.image_sha256)}.jpg" alt="" width="96" loading="lazy" '
        f'decoding="async">'
    )


def feed_source(view: DashboardView) -> str:
    """The address the live feed refreshes from: ``api/recent`` in the page's window, source, campaign and mode
    (the feed lists every analysis, so the minimum confidence is not sent)."""
    query = view.view.query(min_confidence=None)
    return f"api/recent?limit={view.feed_limit}" + (f"&{query}" if query else "")


def _feed_section(view: DashboardView) -> str:
    rows = "".join(feed_row(a) for a in view.recent) or _EMPTY_FEED
    return (
        '<section class="card"><div class="card-head"><h2>Live feed</h2>'
        f'<span id="feed-status" class="live ok">Live · refreshes every {view.refresh_seconds} s</span></div>'
        '<table class="feed"><thead><tr><th>Analysed (UTC)</th><th>Image</th><th>Post</th>'
        '<th class="num">Cars</th><th>Top-5 brands</th></tr></thead>'
        f'<tbody id="feed-body" data-src="{escape(feed_source(view))}" '
        f'data-refresh="{view.refresh_seconds}">{rows}</tbody></table></section>'
    )


_EMPTY_FEED: Final = (
    '<tr><td colspan="5" class="empty">No analyses yet: images appear here as they are analysed.</td></tr>'
)


def _account(view: DashboardView) -> str:
    """Who is signed in, the admins' link, and the sign-out form (a POST with the session's CSRF token)."""
    admin = '<a href="/admin/users">Users</a>' if view.role == "admin" else ""
    return (
        f'<div class="account"><span class="who-am-i">{escape(view.user)} · {escape(view.role)}</span>{admin}'
        f'<form method="post" action="/logout"><input type="hidden" name="csrf_token" value="{escape(view.csrf)}">'
        '<button type="submit">Sign out</button></form></div>'
    )


def render_dashboard(view: DashboardView) -> str:
    """The whole page."""
    p = view.view.params
    relative = "since" not in p and "until" not in p
    tabs = "".join(
        f'<a href="?{escape(view.view.query(days=str(d), since=None, until=None))}" '
        f'class="{"active" if relative and p.get("days") == str(d) else ""}">{escape(days_label(d).capitalize())}</a>'
        for d in TAB_DAYS
    )
    t = view.totals
    alltime = "All time, for this source, campaign and mode" if _narrowed(view.view) else "All time"
    week = escape(view.report_week)
    # The weekly report of this view's mode, source and campaign (a report has its own week, not the window).
    report = escape(
        urlencode([("week", view.report_week)] + [(k, p[k]) for k in ("mode", "source", "campaign") if p.get(k)])
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(view.title)} · brand dashboard</title><link rel="icon" href="data:,">
<style>{_CSS}</style></head>
<body><header class="top"><div class="wrap top-inner"><div><h1>{escape(view.title)}</h1>
<div class="tagline">Car brands in social-media images</div></div>
<nav class="tabs" aria-label="Time window">{tabs}</nav>{_account(view)}</div></header>
<main class="wrap">
{filter_form(view.view, view.facets, day_choices=FORM_DAYS, default_days=HOME_DAYS)}
{_kpis(view)}
<p class="alltime" id="alltime">{alltime}: {_n(t.posts)} posts · {_n(t.images)} images · {_n(t.analyses)} analyses ·
{_n(t.regions)} car regions</p>
{_share_section(view)}
{_mentions_section(view)}
{_trend_section(view)}
{_feed_section(view)}
<footer><span>Weekly report for {week}: <a href="reports/weekly.xlsx?{report}">Excel</a> ·
<a href="reports/weekly.pdf?{report}">PDF</a> · <a href="reports/weekly.zip?{report}">CSV tables</a> ·
<a href="reports/weekly.json?{report}">JSON</a></span>
<span>Page generated {view.now.strftime("%Y-%m-%d %H:%M")} UTC · <a href="openapi.json">API schema</a></span></footer>
</main>
<script nonce="{escape(view.nonce)}">{_SCRIPT}</script>
</body></html>
"""


_CSS: Final = (
    """
*{box-sizing:border-box}
body{margin:0;background:#f4f6fa;color:#1f2937;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
a{color:#4f46e5;text-decoration:none}a:hover{text-decoration:underline}
.wrap{max-width:1200px;margin:0 auto;padding:0 24px}
.top{background:#111827;color:#f9fafb;margin-bottom:20px}
.top-inner{display:flex;align-items:center;justify-content:space-between;padding-top:14px;padding-bottom:14px}
h1{margin:0;font-size:20px;letter-spacing:.2px}.tagline{color:#9ca3af;font-size:13px}
.tabs{display:flex;background:#1f2937;border-radius:8px;padding:3px}
.tabs a{color:#d1d5db;padding:6px 14px;border-radius:6px;font-size:13px}
.tabs a.active{background:#f9fafb;color:#111827;font-weight:600}.tabs a:hover{text-decoration:none}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:16px}
.kpi{background:#fff;border:1px solid #e5e7eb;border-radius:10px;padding:14px 16px;
border-top:3px solid var(--accent)}
.kpi-label{color:#6b7280;font-size:12px;text-transform:uppercase;letter-spacing:.6px}
.kpi-value{font-size:28px;font-weight:650;margin:2px 0;font-variant-numeric:tabular-nums}
.kpi-sub{color:#6b7280;font-size:12px}
.alltime{color:#6b7280;font-size:12px;margin:10px 2px 18px}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:10px;padding:16px 18px;margin-bottom:18px}
.card-head{display:flex;align-items:baseline;justify-content:space-between;margin-bottom:10px}
h2{font-size:16px;margin:0}
.muted{color:#6b7280}.note{color:#6b7280;font-size:12px;margin:10px 0 0}
.empty{color:#4b5563;background:#f9fafb;border:1px dashed #d1d5db;border-radius:8px;padding:16px;
text-align:center}
table{width:100%;border-collapse:collapse}
th{font-size:11px;text-transform:uppercase;letter-spacing:.5px;color:#6b7280;font-weight:600;text-align:left;
padding:6px 8px;border-bottom:1px solid #e5e7eb}
td{padding:7px 8px;border-bottom:1px solid #f1f3f6;vertical-align:top}
tbody tr:last-child td{border-bottom:none}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}.strong{font-weight:600}
.rank{color:#9ca3af;width:28px}.make{font-weight:600;white-space:nowrap}
.share td{vertical-align:middle}.barcell{width:42%}
.bar{background:#eef2ff;border-radius:4px;height:12px;overflow:hidden}
.bar span{display:block;height:100%;background:linear-gradient(90deg,#6366f1,#4f46e5);border-radius:4px}
.legend{display:flex;gap:18px;font-size:12px;color:#4b5563;margin-bottom:4px}
.legend-item i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
.chart{width:100%;height:auto;display:block}
.chart .grid{stroke:#eef0f4;stroke-width:1}.chart .grid.base{stroke:#cbd5e1}
.chart .tick{fill:#6b7280;font-size:11px}.chart .hover{fill:transparent}.chart g:hover .hover{fill:#f3f4f6}
.chart circle,.chart polyline{pointer-events:none}
details{margin-top:8px;font-size:13px}summary{cursor:pointer;color:#4f46e5}
.days{max-width:560px;margin-top:6px}
.feed td{font-size:13px}.mono,code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
code{background:#f3f4f6;padding:1px 5px;border-radius:4px;font-size:12px}.nowrap{white-space:nowrap}
.sub{color:#6b7280;font-size:12px}.text{max-width:360px;overflow-wrap:anywhere}
.who{font-weight:600;overflow-wrap:anywhere}.post{max-width:380px}
.brands{max-width:380px}
.feed-thumb{display:block;width:96px;height:auto;border-radius:4px;margin-bottom:4px;background:#f3f4f6}
.chip{display:inline-block;background:#f3f4f6;border-radius:999px;padding:1px 9px;margin:0 4px 4px 0;
font-size:12px;white-space:nowrap}.chip b{font-weight:600;color:#6b7280}
.chip.first{background:#eef2ff;color:#3730a3}.chip.first b{color:#4f46e5}
.live{font-size:12px}.live:before{content:"";display:inline-block;width:8px;height:8px;border-radius:50%;
margin-right:6px;background:#9ca3af}
.live.ok:before{background:#10b981}.live.down:before{background:#ef4444}
.account{display:flex;align-items:center;gap:12px;font-size:13px;color:#d1d5db}.account a{color:#c7d2fe}
.account form{margin:0}.account button{background:#374151;color:#f9fafb;border:0;border-radius:6px;padding:5px 12px;
font:inherit;cursor:pointer}
footer{display:flex;justify-content:space-between;color:#6b7280;font-size:12px;padding:4px 2px 28px}
@media (max-width:900px){.kpis{grid-template-columns:repeat(2,1fr)}.barcell{width:30%}}
"""
    + FILTERS_CSS
)

_SCRIPT: Final = """
(function () {
  "use strict";
  var body = document.getElementById("feed-body");
  var status = document.getElementById("feed-status");
  if (!body || !window.fetch) { return; }
  var every = Math.max(2, Number(body.dataset.refresh) || 10) * 1000;
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function safeUrl(u) {
    try { var p = new URL(u); return (p.protocol === "http:" || p.protocol === "https:") ? p.href : null; }
    catch (err) { return null; }
  }
  function snippet(t) {
    var flat = String(t || "").split(/\\s+/).join(" ").trim();
    return flat.length <= 120 ? flat : flat.slice(0, 119).trimEnd() + "\\u2026";
  }
  function row(a) {
    var tr = el("tr");
    tr.appendChild(el("td", "mono nowrap", String(a.analyzed_at).slice(0, 19).replace("T", " ")));
    var img = el("td");
    if (a.thumbnail) {
      var pic = el("img", "feed-thumb");
      pic.src = a.thumbnail; pic.alt = ""; pic.width = 96; pic.loading = "lazy";
      img.appendChild(pic);
    }
    var code = el("code", "", a.image_sha256.slice(0, 12));
    code.title = a.image_sha256;
    img.appendChild(code);
    img.appendChild(el("div", "sub", a.width + "\\u00d7" + a.height + " \\u00b7 " + a.mode));
    tr.appendChild(img);
    var post = el("td", "post");
    var who = el("div", "who");
    if (!a.post) {
      who.appendChild(el("span", "muted", "no post"));
      post.appendChild(who);
    } else {
      var name = a.post.author || "unknown author";
      var link = safeUrl(a.post.url);
      if (link) {
        var anchor = el("a", "", name);
        anchor.href = link;
        anchor.rel = "noopener noreferrer nofollow";
        who.appendChild(anchor);
      } else { who.textContent = name; }
      post.appendChild(who);
      var many = a.post_count > 1 ? " \\u00b7 " + a.post_count + " posts" : "";
      post.appendChild(el("div", "sub", a.post.source + many));
      if (a.post.text) { post.appendChild(el("div", "sub text", snippet(a.post.text))); }
    }
    tr.appendChild(post);
    tr.appendChild(el("td", "num strong", a.cars));
    var brands = el("td", "brands");
    if (!a.brands.length) { brands.appendChild(el("span", "muted", "no brand yet")); }
    a.brands.forEach(function (b) {
      var chip = el("span", b.rank === 1 ? "chip first" : "chip", b.make + " ");
      chip.appendChild(el("b", "", Math.round(100 * b.score) + "%"));
      brands.appendChild(chip);
    });
    tr.appendChild(brands);
    return tr;
  }
  function refresh() {
    if (document.hidden) { return; }
    fetch(body.dataset.src, { headers: { "Accept": "application/json" }, cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); }  // signed out meanwhile: back to the sign-in page
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      })
      .then(function (data) {
        if (data.items.length) { body.replaceChildren.apply(body, data.items.map(row)); }
        else {
          var tr = el("tr"); var td = el("td", "empty", "No analyses yet: images appear here as they are analysed.");
          td.colSpan = 5; tr.appendChild(td); body.replaceChildren(tr);
        }
        status.className = "live ok";
        status.textContent = "Live \\u00b7 updated " + new Date().toISOString().slice(11, 19) + " UTC";
      })
      .catch(function () { status.className = "live down"; status.textContent = "Reconnecting\\u2026"; });
  }
  window.setInterval(refresh, every);
})();
"""
