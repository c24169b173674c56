"""The filters of a view as a plain GET form, shared by the dashboard, the brand pages and the comparison: applying
it makes the URL that shares the view (no script needed). Every value put into the HTML is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Final

from carspot.dashboards.filters import DEFAULT_DAYS, View
from carspot.store.queries import Facets

MODES: Final = ("standard", "region-search", "detector")
DAY_CHOICES: Final = (7, 14, 28, 90)

FILTERS_CSS: Final = """
.filters{display:flex;flex-wrap:wrap;gap:10px 14px;align-items:flex-end}
.filters label{display:flex;flex-direction:column;font-size:11px;text-transform:uppercase;letter-spacing:.5px;
color:#6b7280;gap:3px}
.filters label.wide{flex:1 1 260px}
.filters select,.filters input{font:inherit;font-size:13px;padding:5px 7px;border:1px solid #d1d5db;border-radius:6px;
background:#fff;color:#111827;text-transform:none;letter-spacing:0}
.filters button{font:inherit;font-weight:600;padding:6px 16px;border:0;border-radius:6px;background:#4f46e5;
color:#fff;cursor:pointer}
"""


def days_label(days: int) -> str:
    """``last 24 hours`` for one day, ``last N days`` otherwise."""
    return "last 24 hours" if days == 1 else f"last {days} days"


def _with(values: Sequence[str], chosen: str | None) -> list[str]:
    """The menu's values, and the chosen one even when the store holds no post of it (yet), so the form shows
    the view the URL asks for."""
    return [*values, chosen] if chosen and chosen not in values else list(values)


DATE_LENGTH = len("2026-11-16")


def _select(name: str, label: str, options: Sequence[tuple[str, str]], chosen: str | None) -> str:
    items = "".join(
        f'<option value="{escape(v)}"{" selected" if v == (chosen or "") else ""}>{escape(text)}</option>'
        for v, text in options
    )
    return f'<label>{escape(label)}<select name="{name}" id="f-{name}">{items}</select></label>'


def _instant(name: str, label: str, raw: str) -> str:
    """A date picker for a date; for a datetime (a time of day and a zone, from a link or an address typed by hand)
    a text field holding it whole: a date picker would cut it to its day, and the next Apply to 00:00 UTC."""
    if len(raw.strip()) <= DATE_LENGTH:
        return f'<label>{label}<input type="date" name="{name}" value="{escape(raw.strip())}"></label>'
    return (
        f'<label>{label}<input type="text" name="{name}" value="{escape(raw)}" size="22"'
        ' title="an ISO 8601 date, or a date and time with its zone (2026-11-16T08:00Z)"></label>'
    )


def filter_form(
    view: View,
    facets: Facets,
    *,
    extra: str = "",
    day_choices: Sequence[int] = DAY_CHOICES,
    default_days: int = DEFAULT_DAYS,
) -> str:
    """The form for ``view``: window, since/until, source, campaign, mode, minimum confidence. ``facets`` fill the
    source and campaign menus; ``extra`` is trusted HTML put first (another page's own fields)."""
    p = view.params
    days = p.get("days", "" if "since" in p else str(default_days))
    day_options = [(str(d), days_label(d)) for d in day_choices]
    if days and days not in {v for v, _ in day_options}:
        day_options.append((days, days_label(int(days))))
    if not days:
        day_options.append(("", "custom (since/until)"))
    sources = [("", "any source")] + [(s, s) for s in _with(facets.sources, p.get("source"))]
    campaigns = [("", "any campaign")] + [(c, c) for c in _with(facets.campaigns, p.get("campaign"))]
    modes = [("", "any mode")] + [(m, m) for m in MODES]
    confidence = p.get("min_confidence", "")
    return (
        '<form class="filters card" method="get" id="filters">'
        + extra
        + _select("days", "Window", day_options, days)
        + _instant("since", "Since", p.get("since", ""))
        + _instant("until", "Until", p.get("until", ""))
        + _select("source", "Source", sources, p.get("source"))
        + _select("campaign", "Campaign", campaigns, p.get("campaign"))
        + _select("mode", "Mode", modes, p.get("mode"))
        + f'<label>Min. confidence<input type="number" name="min_confidence" id="f-min_confidence" min="0" max="1"'
        f' step="0.05" value="{escape(confidence)}" placeholder="0.0"></label>'
        + '<button type="submit" id="apply">Apply</button></form>'
    )
