"""The weekly report as a one-page PDF brief (matplotlib, already a dependency): headline figures, the top makes'
share with its 95 % interval and the change on the week before, daily activity, and what the text names.

The page states the model version(s) and the share of unidentified cars, like every other format.
"""

from __future__ import annotations

import io
from typing import Final

from carspot.dashboards.report import WeeklyReport

TOP: Final = 10


def to_pdf(report: WeeklyReport) -> bytes:
    """One A4 page, as PDF bytes (matplotlib's Agg-free PDF backend; no display needed)."""
    from matplotlib.backends.backend_pdf import FigureCanvasPdf
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.27, 11.69))
    FigureCanvasPdf(fig)
    t = report.totals
    fig.text(0.06, 0.965, f"CarSpot weekly brief · {report.week}", fontsize=17, weight="bold")
    lines = [
        f"{report.since:%Y-%m-%d} to {report.until:%Y-%m-%d} (UTC){'' if report.complete else ' · week not over'}"
        f" · mode: {report.mode or 'all'} · source: {report.source or 'all'} · campaign: {report.campaign or 'all'}",
        f"Model version(s): {', '.join(report.model_versions) or 'none'}"
        f" · text mentions ranked first: {'yes' if report.rank_text_mentions else 'no'}",
        f"{t.posts} posts · {t.images_analyzed} images analysed · {t.cars} cars · {t.images_with_brand} with a brand"
        f" · unidentified cars: {report.unidentified} ({report.unidentified_share:.1%})",
    ]
    for i, line in enumerate(lines):
        fig.text(0.06, 0.94 - 0.018 * i, line, fontsize=9)

    rows = [r for r in report.brand_rows() if r["images"] > 0][:TOP]
    ax = fig.add_axes((0.22, 0.58, 0.72, 0.28))
    if rows:
        names = [r["make"] for r in rows][::-1]
        shares = [100 * r["share"] for r in rows][::-1]
        err = [
            [100 * (r["share"] - r["share_low_95"]) for r in rows][::-1],
            [100 * (r["share_high_95"] - r["share"]) for r in rows][::-1],
        ]
        ax.barh(names, shares, xerr=err, color="#2563eb", ecolor="#374151", capsize=3)
        for y, r in enumerate(rows[::-1]):
            ax.text(0.5, y, f"{r['share_change_points']:+.1f} pts", va="center", fontsize=7, color="white")
    else:
        ax.text(0.5, 0.5, "no identified car this week", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(
        "share of images with a brand, %\n(whiskers: 95 % Wilson interval; label: change on the week before, points)"
    )
    ax.set_title("Top makes", loc="left", fontsize=11)

    ax2 = fig.add_axes((0.1, 0.3, 0.84, 0.2))
    days = [d.day.strftime("%a %d") for d in report.days]
    width = 0.27
    xs = range(len(days))
    ax2.bar([x - width for x in xs], [d.posts for d in report.days], width, label="posts", color="#94a3b8")
    ax2.bar(list(xs), [d.images_analyzed for d in report.days], width, label="images analysed", color="#2563eb")
    ax2.bar(
        [x + width for x in xs], [d.unidentified for d in report.days], width, label="unidentified", color="#f59e0b"
    )
    ax2.set_xticks(list(xs), days, fontsize=8)
    ax2.legend(fontsize=7, loc="upper right")
    ax2.set_title("Daily activity", loc="left", fontsize=11)

    mentioned = sorted(
        (r for r in report.brand_rows() if r["posts_named_in_text"]), key=lambda r: -r["posts_named_in_text"]
    )
    fig.text(0.06, 0.24, "Named in the text: posts · also seen", fontsize=11)
    text = "\n".join(f"{r['make']}: {r['posts_named_in_text']} · {r['posts_both']}" for r in mentioned[:8]) or "none"
    fig.text(0.06, 0.225, text, fontsize=8, va="top", family="monospace")
    sources = "\n".join(f"{s.source}: {s.posts} posts, {s.images} images" for s in report.sources[:4]) or "none"
    campaigns = [f"{c.campaign or '(none)'}: {c.identified} with a brand" for c in report.campaigns[:4]]
    sources += "\n" + ("\n".join(campaigns) if campaigns else "no campaign")
    fig.text(0.6, 0.24, "Sources and campaigns", fontsize=11)
    fig.text(0.6, 0.225, sources, fontsize=8, va="top", family="monospace")
    fig.text(0.06, 0.03, f"Generated {report.generated_at:%Y-%m-%d %H:%M} UTC by CarSpot.", fontsize=7, color="#6b7280")
    buf = io.BytesIO()
    fig.savefig(buf, format="pdf", metadata={"CreationDate": None, "Title": f"CarSpot weekly {report.week}"})
    return buf.getvalue()
