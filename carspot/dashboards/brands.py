"""Brand pages, comparisons and thumbnails: the routes a marketing team follows one make (or a few) with.

Routes (every filter of :mod:`carspot.dashboards.filters` applies, and is kept in the page's links)::

    GET /thumbnails/{image_sha256}.jpg  the analysed image's thumbnail (cached: its address names its content)
    GET /brands/{make}                  the brand page: images with boxes, daily share with a 95 % interval,
                                        week-over-week change, the makes seen with it
    GET /api/brands/{make}              the same as JSON
    GET /compare?makes=a,b              2-5 makes' daily share as lines
    GET /api/compare?makes=a,b          the same as JSON
    GET /api/campaigns                  brand counts grouped by campaign

A share is of the images with a confident make (rank 1 of the image's top-5), as on the dashboard; unidentified
images are counted apart. "Seen with": the makes of the other cars in the same images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Connection, Engine

from carspot.dashboards.brand_figures import BrandFigures, Period, brand_figures, period
from carspot.dashboards.brand_page import BrandView, CompareView, render_brand, render_compare
from carspot.dashboards.filters import View, ViewQuery
from carspot.dashboards.intervals import Interval, wilson
from carspot.store.queries import (
    BrandImage,
    DailyBrands,
    campaign_counts,
    daily_brand_counts,
    facets,
    find_make,
    thumbnail,
)

MIN_COMPARE, MAX_COMPARE = 2, 5
THUMBNAIL_CACHE: Final = "private, max-age=86400, immutable"
"""A thumbnail's address is its image's SHA-256: its bytes never change, so browsers keep it a day without
asking; private, since the dashboard sits behind sign-in."""


def _interval_json(interval: Interval | None) -> list[float] | None:
    return None if interval is None else [round(interval.low, 6), round(interval.high, 6)]


def _period_json(p: Period) -> dict[str, Any]:
    return {
        "images": p.images,
        "images_with_brand": p.identified,
        "unidentified": p.unidentified,
        "share": round(p.share, 6),
        "interval_95": _interval_json(p.interval),
    }


def week_over_week(this: Period, previous: Period) -> dict[str, Any]:
    """The change from the previous week: share in percentage points, images as a ratio (None from zero)."""
    return {
        "share_points": round(100 * (this.share - previous.share), 4),
        "images_ratio": round(this.images / previous.images - 1, 6) if previous.images else None,
    }


def _filters_json(view: View) -> dict[str, Any]:
    f = view.filters
    return {"source": f.source, "campaign": f.campaign, "mode": f.mode, "min_confidence": f.min_confidence}


def _image_json(image: BrandImage) -> dict[str, Any]:
    post = image.latest_post
    return {
        "image_sha256": image.image_sha256,
        "thumbnail": f"thumbnails/{image.image_sha256}.jpg" if image.has_thumbnail else None,
        "width": image.width,
        "height": image.height,
        "mode": image.mode,
        "model_version": image.model_version,
        "analyzed_at": image.analyzed_at.isoformat(),
        "brands": [{"make": b.make, "score": b.score, "rank": b.rank} for b in image.brands],
        "regions": [
            {"box": [r.x1, r.y1, r.x2, r.y2], "make": r.make, "score": r.score, "unidentified": r.unidentified}
            for r in image.regions
        ],
        "post_count": image.post_count,
        "post": None
        if post is None
        else {"post_id": post.post_id, "source": post.source, "author": post.author, "url": post.url},
    }


def brand_json(figures: BrandFigures) -> dict[str, Any]:
    view = figures.view
    return {
        "make": figures.make,
        "since": view.since.isoformat(),
        "until": view.until.isoformat(),
        "filters": _filters_json(view),
        **_period_json(figures.total),
        "week_over_week": {
            "this_week": _period_json(figures.this_week),
            "previous_week": _period_json(figures.previous_week),
            **week_over_week(figures.this_week, figures.previous_week),
        },
        "daily": [
            {
                "day": d.day.isoformat(),
                "images": d.makes.get(figures.make, 0),
                "images_with_brand": d.identified,
                "unidentified": d.unidentified,
                "share": round(d.share(figures.make), 6),
                "interval_95": _interval_json(wilson(d.makes.get(figures.make, 0), d.identified)),
            }
            for d in figures.days
        ],
        "seen_with": {
            "images": figures.seen.images,
            "makes": [{"make": m.make, "images": m.images} for m in figures.seen.others],
        },
        "by_campaign": [
            {
                "campaign": c.campaign,
                "images": c.makes.get(figures.make, 0),
                "images_with_brand": c.identified,
                "share": round(c.makes.get(figures.make, 0) / c.identified, 6) if c.identified else 0.0,
                "interval_95": _interval_json(wilson(c.makes.get(figures.make, 0), c.identified)),
            }
            for c in figures.campaigns
        ],
        "recent_images": [_image_json(i) for i in figures.images],
    }


def _makes(raw: str) -> list[str]:
    makes = list(dict.fromkeys(m.strip() for m in raw.split(",") if m.strip()))
    if not MIN_COMPARE <= len(makes) <= MAX_COMPARE:
        raise HTTPException(422, f"makes: give {MIN_COMPARE} to {MAX_COMPARE} distinct makes, comma-separated")
    return makes


def compare_json(
    makes: Sequence[str], view: View, days: Sequence[DailyBrands], totals: dict[str, Period]
) -> dict[str, Any]:
    return {
        "makes": list(makes),
        "since": view.since.isoformat(),
        "until": view.until.isoformat(),
        "filters": _filters_json(view),
        "totals": {m: _period_json(totals[m]) for m in makes},
        "daily": [
            {
                "day": d.day.isoformat(),
                "images_with_brand": d.identified,
                "unidentified": d.unidentified,
                "images": {m: d.makes.get(m, 0) for m in makes},
                "share": {m: round(d.share(m), 6) for m in makes},
            }
            for d in days
        ],
    }


def add_brand_routes(app: FastAPI, *, engine: Engine, now: Callable[[], datetime], title: str) -> None:
    """Add the routes to ``app``, over ``engine``; ``now`` is the dashboard's clock. Added to the app itself (not
    an included router) so they sit in its flat route table with the others, where the sign-in walk finds them."""
    router = app

    def view_of(query: Annotated[ViewQuery, Depends()]) -> View:
        """The filters of the query string, read once for every route (a FastAPI dependency)."""
        return query.read(now=now())

    def known(conn: Connection, make: str) -> str:
        found = find_make(conn, make=make)
        if found is None:
            raise HTTPException(404, f"no analysis has named the make {make!r}")
        return found

    @router.get("/thumbnails/{image_sha256}.jpg", response_class=Response, tags=["pictures"])
    def get_thumbnail(request: Request, image_sha256: Annotated[str, Path(pattern="^[0-9a-f]{64}$")]) -> Response:
        """The image's thumbnail (JPEG, longest side <= 320 px); 404 when none is kept (purged, or never made)."""
        etag = f'"{image_sha256}"'
        headers = {"Cache-Control": THUMBNAIL_CACHE, "ETag": etag}
        stored = thumbnail(engine, image_sha256=image_sha256)
        if stored is None:
            raise HTTPException(404, "no thumbnail for this image")
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(stored.jpeg, media_type="image/jpeg", headers=headers)

    @router.get("/api/brands/{make}", tags=["brands"])
    def api_brand(
        make: str,
        view: View = Depends(view_of),
    ) -> dict[str, Any]:
        """A make's count, share (95 % Wilson interval), daily series, week-over-week change, co-occurring makes and
        latest images with their boxes."""
        with engine.connect() as conn:
            return brand_json(brand_figures(conn, make=known(conn, make), view=view))

    @router.get("/brands/{make}", response_class=HTMLResponse, include_in_schema=False)
    def brand_page(
        make: str,
        view: View = Depends(view_of),
    ) -> HTMLResponse:
        with engine.connect() as conn:
            figures = brand_figures(conn, make=known(conn, make), view=view)
            choices = facets(conn)
        page = BrandView(title=title, figures=figures, facets=choices, now=now())
        return _html(render_brand(page, base="../"))

    def compare(makes: str, view: View) -> tuple[list[str], list[DailyBrands], dict[str, Period]]:
        wanted = _makes(makes)
        with engine.connect() as conn:
            found = [find_make(conn, make=m) or m for m in wanted]
            days = daily_brand_counts(conn, since=view.since, until=view.until, filters=view.filters)
            totals = {m: period(conn, m, view, view.since, view.until) for m in found}
        return found, days, totals

    @router.get("/api/campaigns", tags=["brands"])
    def api_campaigns(
        view: View = Depends(view_of),
    ) -> dict[str, Any]:
        """Brand counts grouped by campaign (``null``: posts without one); an image shown in two campaigns counts
        in both."""
        with engine.connect() as conn:
            found = campaign_counts(conn, since=view.since, until=view.until, filters=view.filters)
        return {
            "since": view.since.isoformat(),
            "until": view.until.isoformat(),
            "filters": _filters_json(view),
            "campaigns": [
                {
                    "campaign": c.campaign,
                    "images_with_brand": c.identified,
                    "unidentified": c.unidentified,
                    "makes": [
                        {"make": m, "images": n, "share": round(n / c.identified, 6)} for m, n in c.makes.items()
                    ],
                }
                for c in found
            ],
        }

    @router.get("/api/compare", tags=["brands"])
    def api_compare(
        makes: Annotated[str, Query(max_length=1024, description="2-5 makes, comma-separated")],
        view: View = Depends(view_of),
    ) -> dict[str, Any]:
        """The daily share of 2-5 makes over the window, and each one's total with its 95 % interval."""
        found, series, totals = compare(makes, view)
        return compare_json(found, view, series, totals)

    @router.get("/compare", response_class=HTMLResponse, include_in_schema=False)
    def compare_page(
        view: View = Depends(view_of),
        makes: Annotated[str, Query(max_length=1024)] = "",
    ) -> HTMLResponse:
        view = View(since=view.since, until=view.until, filters=view.filters, params={**view.params, "makes": makes})
        with engine.connect() as conn:
            choices = facets(conn)
        if not makes.strip():
            page = CompareView(
                title=title, view=view, makes=[], days=[], totals={}, facets=choices, now=now(), error=None
            )
        else:
            try:
                found, series, totals = compare(makes, view)
                page = CompareView(
                    title=title,
                    view=view,
                    makes=found,
                    days=series,
                    totals=totals,
                    facets=choices,
                    now=now(),
                    error=None,
                )
            except HTTPException as exc:
                page = CompareView(
                    title=title,
                    view=view,
                    makes=[],
                    days=[],
                    totals={},
                    facets=choices,
                    now=now(),
                    error=str(exc.detail),
                )
        return _html(render_compare(page, base=""))


_CSP: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; script-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
"""The pages need no script: filters are a plain GET form, so the URL is the view."""


def _html(body: str) -> HTMLResponse:
    return HTMLResponse(body, headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store"})
