"""The web dashboard and its JSON API, as a FastAPI app over the store's read queries.

Routes (every one but ``/healthz`` and ``/login`` needs a signed-in user or, under ``/api/`` and ``/reports/``,
an API token: see :mod:`carspot.dashboards.auth`)::

    GET /                          the dashboard page, with the filters of carspot.dashboards.filters
                                   (?days=&since=&until=&source=&campaign=&mode=&min_confidence=; default the
                                   last 7 days; the older ?window=24h|7d|30d still means days=1|7|30)
    GET /api/summary               row counts and the last 24 hours
    GET /api/brand-share           ?since=&until=&mode=&source=&campaign=&min_confidence=  (default: the last 7 days)
    GET /api/daily                 ?since=&until=&mode=&source=&campaign=&min_confidence=  (the last 7 UTC days)
    GET /api/recent                ?limit=                (1..200; larger values are capped)
                                   &days=&since=&until=&source=&campaign=&mode=  (the dashboard's feed)
    GET /reports/weekly.csv|.json|.zip|.xlsx|.pdf  ?week=2026-W47&mode=&source=&campaign=
                                   (default: the last complete ISO week, every mode, source and campaign;
                                   .zip = one CSV per table, .csv = the old one-table export)
    GET /healthz                   SELECT 1 on the database: 200, or 503 when it cannot be reached
    GET|POST /login · POST /logout the sign-in form, signing out
    GET /admin/users               (admin) the users; POST /admin/users/{name}/remove
    GET /brands/{make}, /compare, /thumbnails/{sha256}.jpg, /api/brands/{make}, /api/compare
                                   brand pages, comparisons and pictures (carspot.dashboards.brands)

Times are ISO 8601 with a timezone (``2026-11-16T00:00:00Z``) or plain dates (UTC midnight); windows are
half-open ``[since, until)``. A database that cannot be reached answers 503, not 500. The app reads the
analyses and writes only sign-in state (sessions); the caller owns the Engine (and disposes of it).
"""

from __future__ import annotations

import logging
import secrets
import time as timer
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any, Final, Literal

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from starlette.middleware.base import RequestResponseEndpoint

from carspot.dashboards.accounts import Accounts
from carspot.dashboards.auth import UNAVAILABLE_PAGE as _UNAVAILABLE_PAGE
from carspot.dashboards.auth import AuthOptions, csrf_protect, install_auth, is_api_path, principal
from carspot.dashboards.brands import add_brand_routes
from carspot.dashboards.filters import (
    CampaignParam,
    ConfidenceParam,
    DaysParam,
    SinceParam,
    SourceParam,
    UntilParam,
    View,
    ViewQuery,
    parse_instant,
    read_filters,
    read_view,
)
from carspot.dashboards.page import HOME_DAYS, LEGACY_WINDOWS, DashboardView, render_dashboard
from carspot.dashboards.report import ReportError, WeeklyReport, last_complete_week, weekly_report
from carspot.store.queries import (
    BrandShare,
    DailyCount,
    Filters,
    RecentAnalysis,
    brand_share,
    counts,
    daily_counts,
    facets,
    mention_counts,
    unidentified_images,
)
from carspot.store.queries import recent_analyses as query_recent

log = logging.getLogger("carspot.dashboards.web")

Mode = Literal["standard", "region-search", "detector"]
MAX_RECENT: Final = 200
DEFAULT_RECENT: Final = 20
FEED_ROWS: Final = 20
MAX_WINDOW: Final = timedelta(days=366)
DEFAULT_API_WINDOW: Final = timedelta(days=7)
TREND_MIN_DAYS: Final = 7
"""The daily chart shows the window's UTC days, and at least this many (a 24-hour window gets a week of context)."""
WindowParam = Annotated[str | None, Query(description="the older tabs' 24h, 7d or 30d: days=1, 7 or 30")]

_SECURITY_HEADERS: Final = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


RequestObserver = Callable[[str, int, float], None]
"""Told of each answered request: its route template (``/api/brand-share``, never the raw URL, so metrics
labels stay bounded; ``unmatched`` for a 404 of no route), status code and seconds."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    *,
    engine: Engine,
    title: str = "CarSpot",
    refresh_seconds: int = 10,
    clock: Callable[[], datetime] = utc_now,
    on_request: RequestObserver | None = None,
    auth: AuthOptions | None = None,
    rank_text_mentions: bool = True,
) -> FastAPI:
    """The dashboard app reading from ``engine``, signed in against its users; ``clock`` (timezone-aware) is
    injectable for tests; ``on_request`` is told of each request (the process's metrics). ``rank_text_mentions``
    is the setting ``CARSPOT_RANK_TEXT_MENTIONS`` (reports and brand share)."""
    if refresh_seconds < 1:
        raise ValueError(f"refresh_seconds must be >= 1, got {refresh_seconds}")
    app = FastAPI(
        title=f"{title} dashboard",
        summary="Which car brands appear in social-media images: brand share, trends, live feed, reports.",
        docs_url=None,  # the interactive docs load scripts from a CDN; the schema stays at /openapi.json
        redoc_url=None,
        dependencies=[Depends(csrf_protect)],
    )
    options = auth or AuthOptions()

    def now() -> datetime:
        value = clock()
        if value.tzinfo is None or value.utcoffset() is None:
            raise RuntimeError("the dashboard clock must return timezone-aware datetimes")
        return value.astimezone(UTC)

    accounts = Accounts(engine, hasher=options.hasher, session_ttl=options.session_ttl)
    install_auth(app, accounts=accounts, options=options, now=now, title=title)

    @app.middleware("http")  # after install_auth: outermost, so refusals get the headers too
    async def security_headers(request: Request, call_next: RequestResponseEndpoint) -> Response:
        started = timer.perf_counter()
        response = await call_next(request)
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if on_request is not None:
            route = request.scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            on_request(template, response.status_code, timer.perf_counter() - started)
        return response

    @app.exception_handler(OperationalError)
    async def database_unavailable(request: Request, exc: OperationalError) -> Response:
        log.error("database unavailable for %s: %s", request.url.path, exc.orig if exc.orig is not None else exc)
        if not is_api_path(request.url.path):
            return HTMLResponse(_UNAVAILABLE_PAGE, status_code=503)
        return JSONResponse({"detail": "database unavailable"}, status_code=503)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard(request: Request, query: Annotated[ViewQuery, Depends()], window: WindowParam = None) -> HTMLResponse:
        who = principal(request)
        at = now()
        if window:
            if window not in LEGACY_WINDOWS:
                raise HTTPException(422, f"window must be one of {', '.join(LEGACY_WINDOWS)}, got {window!r}")
            query = replace(query, days=query.days or str(LEGACY_WINDOWS[window]))
        view = query.read(now=at, default_days=HOME_DAYS)
        f = view.filters
        with engine.connect() as conn:
            page = DashboardView(
                title=title,
                now=at,
                view=view,
                facets=facets(conn),
                totals=counts(conn, filters=f),
                window_days=daily_counts(conn, since=view.since, until=view.until, filters=f),
                shares=brand_share(
                    conn, since=view.since, until=view.until, filters=f, rank_text_mentions=rank_text_mentions
                ),
                trend=daily_counts(conn, since=_trend_start(view), until=view.until, filters=f),
                recent=query_recent(conn, limit=FEED_ROWS, filters=f, since=view.since, until=view.until),
                feed_limit=FEED_ROWS,
                refresh_seconds=refresh_seconds,
                report_week=last_complete_week(at),
                nonce=secrets.token_urlsafe(16),
                user=who.account.name,
                role=who.account.role,
                csrf=who.csrf or "",
                unidentified=unidentified_images(conn, since=view.since, until=view.until, filters=f),
                mentions=mention_counts(
                    conn, since=view.since, until=view.until, filters=f, rank_text_mentions=rank_text_mentions
                ),
            )
        csp = (
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
            f"script-src 'nonce-{page.nonce}'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        )
        return HTMLResponse(
            render_dashboard(page), headers={"Content-Security-Policy": csp, "Cache-Control": "no-store"}
        )

    @app.get("/api/summary")
    def summary() -> dict[str, Any]:
        """Row counts of the store, the last 24 hours, and when the latest analysis was made."""
        at = now()
        with engine.connect() as conn:
            totals = counts(conn)
            days = daily_counts(conn, since=at - timedelta(hours=24), until=at)
            shares = brand_share(conn, since=at - timedelta(hours=24), until=at, rank_text_mentions=rank_text_mentions)
            latest = query_recent(conn, limit=1)
        return {
            "generated_at": at.isoformat(),
            "totals": {
                "posts": totals.posts,
                "images": totals.images,
                "analyses": totals.analyses,
                "regions": totals.regions,
            },
            "last_24h": {
                "posts": sum(d.posts for d in days),
                "images_analyzed": sum(d.images_analyzed for d in days),
                "cars": sum(d.cars for d in days),
                "images_with_brand": sum(s.images for s in shares),
                "unidentified": sum(d.unidentified for d in days),
            },
            "latest_analysis_at": latest[0].analyzed_at.isoformat() if latest else None,
        }

    @app.get("/api/brand-share")
    def api_brand_share(
        since: Annotated[str | None, Query(description="ISO 8601 with timezone, or a date (UTC)")] = None,
        until: Annotated[str | None, Query(description="exclusive end; default now")] = None,
        *,
        f: ApiFilters,
    ) -> dict[str, Any]:
        """Share of rank-1 brands over the images analysed in ``[since, until)``, largest first."""
        start, end = _window(since, until, now=now())
        shares = brand_share(engine, since=start, until=end, filters=f, rank_text_mentions=rank_text_mentions)
        return {
            "since": start.isoformat(),
            "until": end.isoformat(),
            **_filters_json(f),
            "images_with_brand": sum(s.images for s in shares),
            "makes": [_share_json(s) for s in shares],
        }

    @app.get("/api/daily")
    def api_daily(
        since: Annotated[str | None, Query(description="ISO 8601 with timezone, or a date (UTC)")] = None,
        until: Annotated[str | None, Query(description="exclusive end; default now")] = None,
        *,
        f: ApiFilters,
    ) -> dict[str, Any]:
        """Posts, distinct images analysed and cars per UTC day (every day listed, zeros included)."""
        at = now()
        default_since = datetime.combine(at.date() - timedelta(days=6), time.min, tzinfo=UTC)
        start, end = _window(since, until, now=at, default_since=default_since)
        days = daily_counts(engine, since=start, until=end, filters=f)
        return {
            "since": start.isoformat(),
            "until": end.isoformat(),
            **_filters_json(f),
            "days": [_day_json(d) for d in days],
        }

    @app.get("/api/recent")
    def api_recent(
        limit: Annotated[int, Query(ge=1, description=f"rows to return; values above {MAX_RECENT} are capped")] = (
            DEFAULT_RECENT
        ),
        mode: Mode | None = None,
        days: DaysParam = None,
        since: SinceParam = None,
        until: UntilParam = None,
        source: SourceParam = None,
        campaign: CampaignParam = None,
    ) -> dict[str, Any]:
        """The latest analyses, newest first, with their top-5 brands and the latest post showing the image.

        The dashboard's filters narrow them (every analysis, unidentified ones too: no minimum confidence); the
        window applies only when ``days``, ``since`` or ``until`` is given (else: the latest, whenever made)."""
        capped = min(limit, MAX_RECENT)
        view = read_view(
            now=now(),
            days=days,
            since=since,
            until=until,
            source=source,
            campaign=campaign,
            mode=mode,
            min_confidence=None,
        )
        windowed = bool(days or since or until)
        items = query_recent(
            engine,
            limit=capped,
            filters=view.filters,
            since=view.since if windowed else None,
            until=view.until if windowed else None,
        )
        return {"limit": capped, "items": [_recent_json(a) for a in items]}

    def _report(
        week: str | None = None,
        mode: Mode | None = None,
        source: SourceParam = None,
        campaign: CampaignParam = None,
    ) -> WeeklyReport:
        """The weekly report a ``/reports/weekly.*`` address asks for (its query: week, mode, source, campaign)."""
        try:
            return weekly_report(
                engine,
                week=week or None,
                now=now(),
                mode=mode,
                source=source,
                campaign=campaign,
                rank_text_mentions=rank_text_mentions,
            )
        except ReportError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None

    # ``Depends`` as a default, not in ``Annotated``: ``_report`` is local to this function, and FastAPI resolves
    # the (postponed) annotations against the module's names only.
    @app.get("/reports/weekly.csv", response_class=Response)
    def weekly_csv(report: WeeklyReport = Depends(_report)) -> Response:
        """The weekly report as one CSV table (``section`` = make, day or total)."""
        return Response(
            report.to_csv(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{report.filename_stem}.csv"'},
        )

    @app.get("/reports/weekly.json", response_class=Response)
    def weekly_json(report: WeeklyReport = Depends(_report)) -> Response:
        """The weekly report as JSON: totals, makes and days."""
        return Response(
            report.to_json(),
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="{report.filename_stem}.json"'},
        )

    @app.get("/reports/weekly.zip", response_class=Response)
    def weekly_zip(report: WeeklyReport = Depends(_report)) -> Response:
        """The weekly report as one CSV file per table (summary, brands, daily, sources), zipped."""
        return _download(report.to_zip(), "application/zip", f"{report.filename_stem}.zip")

    @app.get("/reports/weekly.xlsx", response_class=Response)
    def weekly_xlsx(report: WeeklyReport = Depends(_report)) -> Response:
        """The weekly report as an Excel workbook with native charts."""
        from carspot.dashboards.report_xlsx import to_xlsx

        return _download(to_xlsx(report), XLSX_TYPE, f"{report.filename_stem}.xlsx")

    @app.get("/reports/weekly.pdf", response_class=Response)
    def weekly_pdf(report: WeeklyReport = Depends(_report)) -> Response:
        """The weekly report as a one-page PDF brief."""
        from carspot.dashboards.report_pdf import to_pdf

        return _download(to_pdf(report), "application/pdf", f"{report.filename_stem}.pdf")

    @app.get("/api/mentions")
    def api_mentions(
        since: Annotated[str | None, Query(description="ISO 8601 with timezone, or a date (UTC)")] = None,
        until: Annotated[str | None, Query(description="exclusive end; default now")] = None,
        *,
        f: ApiFilters,
    ) -> dict[str, Any]:
        """Per make, the posts whose picture shows it, whose text names it, and both (default: the last 7 days)."""
        start, end = _window(since, until, now=now())
        found = mention_counts(engine, since=start, until=end, filters=f, rank_text_mentions=rank_text_mentions)
        return {
            "since": start.isoformat(),
            "until": end.isoformat(),
            **_filters_json(f),
            "rank_text_mentions": rank_text_mentions,
            "makes": [
                {"make": c.make, "seen_in_picture": c.seen, "named_in_text": c.named, "both": c.both} for c in found
            ],
        }

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        """200 when ``SELECT 1`` succeeds on the database, 503 (with the error's type) when it does not."""
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1")).scalar_one()
        except (SQLAlchemyError, OSError) as exc:
            log.warning("health check failed: %s: %s", type(exc).__name__, exc)
            return JSONResponse({"status": "unavailable", "error": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok", "database": engine.dialect.name})

    add_brand_routes(app, engine=engine, now=now, title=title)
    return app


XLSX_TYPE: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _download(body: bytes, media_type: str, filename: str) -> Response:
    return Response(body, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def serve(
    *,
    engine: Engine,
    host: str = "127.0.0.1",
    port: int = 8080,
    title: str = "CarSpot",
    refresh_seconds: int = 10,
    log_level: str = "info",
    on_request: RequestObserver | None = None,
    auth: AuthOptions | None = None,
    rank_text_mentions: bool = True,
) -> None:
    """Serve the dashboard with uvicorn until SIGINT or SIGTERM (the first stops gracefully, a second at once).

    Blocks, and returns once a SIGINT (Ctrl-C) has stopped the server: uvicorn re-raises the signal after its
    graceful shutdown, and that KeyboardInterrupt is the expected end here, not an error. A SIGTERM is
    re-raised the same way and ends the process with its default action unless the caller has installed a
    handler. The caller owns ``engine`` and disposes of it afterwards. Proxy headers are read by the app itself,
    and only from ``auth.trusted_proxies`` (uvicorn's own handling stays off).
    """
    app = create_app(
        engine=engine,
        title=title,
        refresh_seconds=refresh_seconds,
        on_request=on_request,
        auth=auth,
        rank_text_mentions=rank_text_mentions,
    )
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, server_header=False, proxy_headers=False)
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:
        log.info("dashboard stopped by SIGINT")


def _trend_start(view: View) -> datetime:
    """Midnight (UTC) of the window's first day, or earlier so that the chart shows at least
    :data:`TREND_MIN_DAYS` days."""
    last = (view.until - timedelta(microseconds=1)).date()
    first = min(view.since.date(), last - timedelta(days=TREND_MIN_DAYS - 1))
    return datetime.combine(first, time.min, tzinfo=UTC)


def api_filters(
    mode: Mode | None = None,
    source: SourceParam = None,
    campaign: CampaignParam = None,
    min_confidence: ConfidenceParam = None,
) -> Filters:
    """The filters of the JSON APIs besides their window (a FastAPI dependency: one parameter list for them all)."""
    return read_filters(source=source, campaign=campaign, mode=mode, min_confidence=min_confidence)


ApiFilters = Annotated[Filters, Depends(api_filters)]


def _filters_json(f: Filters) -> dict[str, Any]:
    """The filters an API answer was computed with (``mode`` as before; the others too)."""
    return {"mode": f.mode, "source": f.source, "campaign": f.campaign, "min_confidence": f.min_confidence}


def _window(
    since: str | None, until: str | None, *, now: datetime, default_since: datetime | None = None
) -> tuple[datetime, datetime]:
    end = parse_instant("until", until) if until else now
    try:
        if since:
            start = parse_instant("since", since)
        elif default_since is not None and not until:
            start = default_since
        else:
            start = end - DEFAULT_API_WINDOW
        span = end - start
    except OverflowError:
        raise HTTPException(status_code=422, detail="the window lies outside the supported dates") from None
    if span <= timedelta(0):
        raise HTTPException(status_code=422, detail="until must be after since")
    if span > MAX_WINDOW:
        raise HTTPException(status_code=422, detail=f"the window may span at most {MAX_WINDOW.days} days")
    return start, end


def _share_json(s: BrandShare) -> dict[str, Any]:
    return {"make": s.make, "images": s.images, "share": round(s.share, 6), "top5_images": s.top5_images}


def _day_json(d: DailyCount) -> dict[str, Any]:
    return {
        "day": d.day.isoformat(),
        "posts": d.posts,
        "images_analyzed": d.images_analyzed,
        "cars": d.cars,
        "unidentified": d.unidentified,
    }


def _recent_json(a: RecentAnalysis) -> dict[str, Any]:
    p = a.latest_post
    return {
        "analysis_id": a.analysis_id,
        "image_sha256": a.image_sha256,
        "width": a.width,
        "height": a.height,
        "mode": a.mode,
        "detector": a.detector,
        "model_version": a.model_version,
        "analyzed_at": a.analyzed_at.isoformat(),
        "duration_ms": a.duration_ms,
        "cars": a.region_count,
        "brands": [{"make": b.make, "score": b.score, "rank": b.rank} for b in a.brands],
        "post_count": a.post_count,
        "thumbnail": f"thumbnails/{a.image_sha256}.jpg" if a.has_thumbnail else None,
        "post": None
        if p is None
        else {
            "post_id": p.post_id,
            "source": p.source,
            "author": p.author,
            "text": p.text,
            "url": p.url,
            "posted_at": p.posted_at.isoformat() if p.posted_at else None,
            "ingested_at": p.ingested_at.isoformat(),
        },
    }
