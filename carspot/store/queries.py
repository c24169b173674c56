"""The read queries the dashboards use, returning frozen dataclasses (no SQLAlchemy rows leak out).

Each takes an Engine, a Connection or a Session, so a dashboard request can run several on one connection.
Time windows are half-open ``[since, until)`` with timezone-aware bounds; days are UTC days. Brand counts are
per image, not per post: a picture reposted a hundred times is one image. When an image has several analyses
in the window (several modes, or a re-analysis by a newer model), its latest one speaks for it. Brand share
counts confident makes only: an image marked unidentified (a car, but its best make below the confidence the
analysis asked for) is counted apart (`unidentified_images`, `DailyCount.unidentified`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeAlias

from sqlalchemy import Connection, Date, Engine, Select, case, distinct, exists, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from carspot.store.records import MODES, BrandScore
from carspot.store.tables import IMAGE_REGION, Analysis, BrandPrediction, Image, Post, PostMention, Region

Bind: TypeAlias = Engine | Connection | Session


@dataclass(frozen=True, slots=True)
class BrandShare:
    """A make's share of the images: ``images`` have it as their rank-1 brand, ``share`` of all rank-1s.

    ``top5_images`` counts the images whose top-5 mentions it at any rank (a broader "seen with" measure).
    """

    make: str
    images: int
    share: float
    top5_images: int


@dataclass(frozen=True, slots=True)
class PostSummary:
    """The post shown beside an analysis in the live feed."""

    post_id: str
    source: str
    author: str | None
    text: str | None
    url: str | None
    posted_at: datetime | None
    ingested_at: datetime


@dataclass(frozen=True, slots=True)
class RecentAnalysis:
    """An analysis for the live feed: the image, its top-5, and the latest of the posts that showed it."""

    analysis_id: int
    image_sha256: str
    width: int
    height: int
    mode: str
    detector: str
    model_version: str
    analyzed_at: datetime
    duration_ms: float
    region_count: int
    brands: tuple[BrandScore, ...]
    latest_post: PostSummary | None
    post_count: int


@dataclass(frozen=True, slots=True)
class DailyCount:
    """One UTC day: posts ingested, distinct images analysed, car regions found, and the images whose car got
    no confident make (unidentified)."""

    day: date
    posts: int
    images_analyzed: int
    cars: int
    unidentified: int = 0


@dataclass(frozen=True, slots=True)
class Counts:
    """Row counts, for the status page and for tests."""

    posts: int
    images: int
    analyses: int
    regions: int


class _utc_day(FunctionElement[date]):
    """The UTC calendar day of a timestamp column, written for each backend."""

    type = Date()
    inherit_cache = True
    name = "utc_day"


@compiles(_utc_day, "postgresql")
def _utc_day_postgresql(element: _utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(({compiler.process(element.clauses, **kw)}) AT TIME ZONE 'UTC' AS DATE)"


@compiles(_utc_day, "sqlite")
def _utc_day_sqlite(element: _utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    # UtcDateTime stores UTC wall-clock text on SQLite, so its date part is the UTC day.
    return f"date({compiler.process(element.clauses, **kw)})"


@contextmanager
def _session(bind: Bind) -> Iterator[Connection | Session]:
    """One connection for all the statements of a query, borrowed from an Engine or the caller's own."""
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            yield conn
    else:
        yield bind


def _check_window(since: datetime, until: datetime) -> None:
    for name, value in (("since", since), ("until", until)):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    if until <= since:
        raise ValueError(f"empty window: until ({until.isoformat()}) must be after since ({since.isoformat()})")


def _check_mode(mode: str | None) -> None:
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")


def _latest_analysis_per_image(since: datetime, until: datetime, mode: str | None) -> Select[tuple[int]]:
    """Ids of each image's latest analysis in the window (in ``mode`` if given)."""
    ranked = select(
        Analysis.id,
        func.row_number()
        .over(partition_by=Analysis.image_sha256, order_by=(Analysis.analyzed_at.desc(), Analysis.id.desc()))
        .label("rn"),
    ).where(Analysis.analyzed_at >= since, Analysis.analyzed_at < until)
    if mode is not None:
        ranked = ranked.where(Analysis.mode == mode)
    sub = ranked.subquery()
    return select(sub.c.id).where(sub.c.rn == 1)


def _named_rank(chosen: Select[tuple[int]]) -> Select[tuple[int, int]]:
    """Per analysis of ``chosen``, the best rank of its image's top-5 held by a make that a post showing the
    image names in its text (analyses without such a make have no row)."""
    return (
        select(BrandPrediction.analysis_id, func.min(BrandPrediction.rank).label("named_rank"))
        .join(Analysis, Analysis.id == BrandPrediction.analysis_id)
        .join(Post, Post.image_sha256 == Analysis.image_sha256)
        .join(PostMention, (PostMention.post_id == Post.post_id) & (PostMention.make == BrandPrediction.make))
        .where(BrandPrediction.region_index == IMAGE_REGION, BrandPrediction.analysis_id.in_(chosen))
        .group_by(BrandPrediction.analysis_id)
    )


def _first_makes(chosen: Select[tuple[int]], *, rank_text_mentions: bool) -> Select[tuple[int, str]]:
    """(analysis id, the make that counts for it): rank 1, or with ``rank_text_mentions`` the best-ranked make of
    its top-5 that a post showing the image names (issue 26's re-ranking; rank 1 when none is named)."""
    where = [BrandPrediction.region_index == IMAGE_REGION, BrandPrediction.analysis_id.in_(chosen)]
    if not rank_text_mentions:
        return select(BrandPrediction.analysis_id, BrandPrediction.make).where(*where, BrandPrediction.rank == 1)
    named = _named_rank(chosen).subquery()
    return (
        select(BrandPrediction.analysis_id, BrandPrediction.make)
        .outerjoin(named, named.c.analysis_id == BrandPrediction.analysis_id)
        .where(*where, BrandPrediction.rank == func.coalesce(named.c.named_rank, 1))
    )


def brand_share(
    session_or_engine: Bind,
    *,
    since: datetime,
    until: datetime,
    mode: str | None = None,
    rank_text_mentions: bool = False,
) -> list[BrandShare]:
    """Brand share over the images analysed in ``[since, until)``, largest first.

    Share is of rank-1 brands (each image counts once, for its most confident make), so shares add up to 1;
    makes that only ever appear at ranks 2-5 are listed with ``images == 0``. An image whose latest analysis is
    unidentified counts for no make (`unidentified_images` counts those). With ``rank_text_mentions`` an image
    counts for the make of its top-5 that the text of a post showing it names, when there is one (the best-ranked
    such make): the setting ``CARSPOT_RANK_TEXT_MENTIONS``.
    """
    _check_window(since, until)
    _check_mode(mode)
    latest = _latest_analysis_per_image(since, until, mode)
    chosen = select(Analysis.id).where(Analysis.id.in_(latest), Analysis.unidentified.is_(False))
    top5 = func.count(distinct(BrandPrediction.analysis_id))
    stmt = (
        select(BrandPrediction.make, top5)
        .where(BrandPrediction.region_index == IMAGE_REGION, BrandPrediction.analysis_id.in_(chosen))
        .group_by(BrandPrediction.make)
    )
    firsts = _first_makes(chosen, rank_text_mentions=rank_text_mentions).subquery()
    first_stmt = select(firsts.c.make, func.count()).group_by(firsts.c.make)
    with _session(session_or_engine) as s:
        first_counts = {make: int(n) for make, n in s.execute(first_stmt)}
        rows = [(make, first_counts.get(make, 0), int(any_rank)) for make, any_rank in s.execute(stmt)]
    total = sum(first for _, first, _ in rows)
    shares = [
        BrandShare(make=make, images=first, share=first / total if total else 0.0, top5_images=any_rank)
        for make, first, any_rank in rows
    ]
    return sorted(shares, key=lambda b: (-b.images, -b.top5_images, b.make))


def unidentified_images(session_or_engine: Bind, *, since: datetime, until: datetime, mode: str | None = None) -> int:
    """Images analysed in ``[since, until)`` whose latest analysis found a car but no confident make."""
    _check_window(since, until)
    _check_mode(mode)
    latest = _latest_analysis_per_image(since, until, mode)
    stmt = select(func.count()).select_from(Analysis).where(Analysis.id.in_(latest), Analysis.unidentified.is_(True))
    with _session(session_or_engine) as s:
        return int(s.execute(stmt).scalar_one())


def recent_analyses(session_or_engine: Bind, *, limit: int = 50, mode: str | None = None) -> list[RecentAnalysis]:
    """The latest analyses, newest first, with the image's top-5 and the latest post that showed it."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    _check_mode(mode)
    stmt = (
        select(
            Analysis.id,
            Analysis.image_sha256,
            Analysis.mode,
            Analysis.detector,
            Analysis.model_version,
            Analysis.analyzed_at,
            Analysis.duration_ms,
            Analysis.region_count,
            Image.width,
            Image.height,
        )
        .join(Image, Image.sha256 == Analysis.image_sha256)
        .order_by(Analysis.analyzed_at.desc(), Analysis.id.desc())
        .limit(limit)
    )
    if mode is not None:
        stmt = stmt.where(Analysis.mode == mode)
    with _session(session_or_engine) as s:
        found = list(s.execute(stmt).tuples())
        if not found:
            return []
        ids = [row[0] for row in found]
        shas = sorted({row[1] for row in found})
        brands: dict[int, list[BrandScore]] = {}
        brand_rows = s.execute(
            select(BrandPrediction.analysis_id, BrandPrediction.make, BrandPrediction.score, BrandPrediction.rank)
            .where(BrandPrediction.analysis_id.in_(ids), BrandPrediction.region_index == IMAGE_REGION)
            .order_by(BrandPrediction.analysis_id, BrandPrediction.rank)
        )
        for analysis_id, make, score, rank in brand_rows:
            brands.setdefault(analysis_id, []).append(BrandScore(make=make, score=score, rank=rank))
        posts = _latest_posts(s, shas)

    out = []
    for ident, sha, m, detector, version, analyzed_at, duration_ms, region_count, width, height in found:
        latest, post_count = posts.get(sha, (None, 0))
        out.append(
            RecentAnalysis(
                analysis_id=ident,
                image_sha256=sha,
                width=width,
                height=height,
                mode=m,
                detector=detector,
                model_version=version,
                analyzed_at=analyzed_at,
                duration_ms=duration_ms,
                region_count=region_count,
                brands=tuple(brands.get(ident, ())),
                latest_post=latest,
                post_count=post_count,
            )
        )
    return out


def _latest_posts(s: Connection | Session, shas: list[str]) -> dict[str, tuple[PostSummary, int]]:
    """For each image, its most recently ingested post and how many posts showed it."""
    ranked = (
        select(
            Post.image_sha256,
            Post.post_id,
            Post.source,
            Post.author,
            Post.text,
            Post.url,
            Post.posted_at,
            Post.ingested_at,
            func.row_number()
            .over(partition_by=Post.image_sha256, order_by=(Post.ingested_at.desc(), Post.post_id.desc()))
            .label("rn"),
            func.count().over(partition_by=Post.image_sha256).label("n"),
        )
        .where(Post.image_sha256.in_(shas))
        .subquery()
    )
    rows = s.execute(select(ranked).where(ranked.c.rn == 1))
    out: dict[str, tuple[PostSummary, int]] = {}
    for row in rows:
        summary = PostSummary(
            post_id=row.post_id,
            source=row.source,
            author=row.author,
            text=row.text,
            url=row.url,
            posted_at=row.posted_at,
            ingested_at=row.ingested_at,
        )
        out[row.image_sha256] = (summary, int(row.n))
    return out


def daily_counts(
    session_or_engine: Bind, *, since: datetime, until: datetime, mode: str | None = None
) -> list[DailyCount]:
    """Per UTC day of ``[since, until)``, every day listed (zeros included) so charts have no gaps.

    Images analysed are distinct images; cars are the car regions of those analyses (with several modes in
    one day an image's cars count once per mode, so pass ``mode`` for a chart of one pipeline); unidentified are
    the distinct images with an analysis marked unidentified.
    """
    _check_window(since, until)
    _check_mode(mode)
    post_day = _utc_day(Post.ingested_at)
    posts_stmt = (
        select(post_day, func.count()).where(Post.ingested_at >= since, Post.ingested_at < until).group_by(post_day)
    )
    analysis_day = _utc_day(Analysis.analyzed_at)
    unidentified = func.count(distinct(case((Analysis.unidentified.is_(True), Analysis.image_sha256))))
    analyses_stmt = (
        select(analysis_day, func.count(distinct(Analysis.image_sha256)), func.sum(Analysis.region_count), unidentified)
        .where(Analysis.analyzed_at >= since, Analysis.analyzed_at < until)
        .group_by(analysis_day)
    )
    if mode is not None:
        analyses_stmt = analyses_stmt.where(Analysis.mode == mode)
    with _session(session_or_engine) as s:
        posts = {day: int(n) for day, n in s.execute(posts_stmt)}
        analysed = {
            day: (int(images), int(cars or 0), int(doubted)) for day, images, cars, doubted in s.execute(analyses_stmt)
        }

    first = since.astimezone(UTC).date()
    last = (until.astimezone(UTC) - timedelta(microseconds=1)).date()
    out = []
    day = first
    while day <= last:
        images, cars, doubted = analysed.get(day, (0, 0, 0))
        out.append(
            DailyCount(day=day, posts=posts.get(day, 0), images_analyzed=images, cars=cars, unidentified=doubted)
        )
        day += timedelta(days=1)
    return out


def counts(session_or_engine: Bind) -> Counts:
    """How many posts, images, analyses and regions the store holds."""
    stmt = select(
        select(func.count()).select_from(Post).scalar_subquery(),
        select(func.count()).select_from(Image).scalar_subquery(),
        select(func.count()).select_from(Analysis).scalar_subquery(),
        select(func.count()).select_from(Region).scalar_subquery(),
    )
    with _session(session_or_engine) as s:
        posts, images, analyses, regions = s.execute(stmt).one()
    return Counts(posts=int(posts), images=int(images), analyses=int(analyses), regions=int(regions))


def posts_without_analysis(session_or_engine: Bind, *, mode: str) -> int:
    """Posts whose image has no analysis in ``mode`` yet: the backlog, or what a re-run must catch up."""
    _check_mode(mode)
    analysed = exists().where(Analysis.image_sha256 == Post.image_sha256, Analysis.mode == mode)
    stmt = select(func.count()).select_from(Post).where(~analysed)
    with _session(session_or_engine) as s:
        return int(s.execute(stmt).scalar_one())


def analysed_images(session_or_engine: Bind, *, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (image sha256, mode) pairs already have an analysis, by any model version.

    The worker asks before analysing a batch: a replayed message, or one that arrives after a model swap, is
    then linked to the existing analysis instead of being analysed (and stored) a second time."""
    if not keys:
        return set()
    shas = sorted({sha for sha, _mode in keys})
    stmt = select(Analysis.image_sha256, Analysis.mode).where(Analysis.image_sha256.in_(shas)).distinct()
    with _session(session_or_engine) as s:
        found = {(str(sha), str(mode)) for sha, mode in s.execute(stmt)}
    return found & set(keys)


@dataclass(frozen=True, slots=True)
class ModelVersionUse:
    """A model version's analyses in one mode over a window, and the last of them (``carspot status``)."""

    model_version: str
    mode: str
    analyses: int
    last_analyzed_at: datetime


def last_analysis_at(session_or_engine: Bind) -> datetime | None:
    """When the newest analysis was made (None: the store has none): is anything being analysed at all?"""
    with _session(session_or_engine) as s:
        value = s.execute(select(func.max(Analysis.analyzed_at))).scalar_one()
    if value is not None and value.tzinfo is None:  # max() over SQLite text comes back naive, in UTC
        value = datetime.fromisoformat(str(value)).replace(tzinfo=UTC)
    return value


def model_versions(session_or_engine: Bind, *, since: datetime, until: datetime) -> list[ModelVersionUse]:
    """The model versions (per mode) that made the analyses of ``[since, until)``, newest use first: after a
    promotion both the old and the new one show until the old one's last worker has swapped."""
    _check_window(since, until)
    stmt = (
        select(Analysis.model_version, Analysis.mode, func.count(), func.max(Analysis.analyzed_at))
        .where(Analysis.analyzed_at >= since, Analysis.analyzed_at < until)
        .group_by(Analysis.model_version, Analysis.mode)
    )
    with _session(session_or_engine) as s:
        rows = s.execute(stmt).all()
    out = []
    for version, mode, count, last in rows:
        if last is not None and last.tzinfo is None:
            last = datetime.fromisoformat(str(last)).replace(tzinfo=UTC)
        out.append(
            ModelVersionUse(model_version=str(version), mode=str(mode), analyses=int(count), last_analyzed_at=last)
        )
    return sorted(out, key=lambda u: u.last_analyzed_at, reverse=True)


@dataclass(frozen=True, slots=True)
class MentionCount:
    """Posts of a make: whose picture shows it (``seen``), whose text names it (``named``), and ``both``."""

    make: str
    seen: int
    named: int
    both: int


def mention_counts(
    session_or_engine: Bind,
    *,
    since: datetime,
    until: datetime,
    mode: str | None = None,
    rank_text_mentions: bool = False,
) -> list[MentionCount]:
    """Per make, the posts ingested in ``[since, until)`` that show it, name it, or both; most seen first.

    Posts, not images: the text belongs to a post. A post "shows" the make its image counts for in brand share
    (through the image's latest analysis, in ``mode`` if given, at any time; none when it is unidentified or not
    analysed yet), re-ranked by text mentions when ``rank_text_mentions``.
    """
    _check_window(since, until)
    _check_mode(mode)
    in_window = select(Post.post_id, Post.image_sha256).where(Post.ingested_at >= since, Post.ingested_at < until)
    ranked = select(
        Analysis.id,
        Analysis.image_sha256,
        Analysis.unidentified,
        func.row_number()
        .over(partition_by=Analysis.image_sha256, order_by=(Analysis.analyzed_at.desc(), Analysis.id.desc()))
        .label("rn"),
    ).where(Analysis.image_sha256.in_(select(in_window.subquery().c.image_sha256)))
    if mode is not None:
        ranked = ranked.where(Analysis.mode == mode)
    sub = ranked.subquery()
    chosen = select(sub.c.id).where(sub.c.rn == 1, sub.c.unidentified.is_(False))
    firsts = _first_makes(chosen, rank_text_mentions=rank_text_mentions).subquery()
    image_make = select(Analysis.image_sha256, firsts.c.make).join(firsts, firsts.c.analysis_id == Analysis.id)
    mentions = select(PostMention.post_id, PostMention.make).where(
        PostMention.post_id.in_(select(in_window.subquery().c.post_id))
    )
    with _session(session_or_engine) as s:
        posts = list(s.execute(in_window).tuples())
        shows = {str(sha): str(make) for sha, make in s.execute(image_make)}
        names: dict[str, set[str]] = {}
        for post_id, make in s.execute(mentions):
            names.setdefault(str(post_id), set()).add(str(make))
    seen: dict[str, int] = {}
    named: dict[str, int] = {}
    both: dict[str, int] = {}
    for post_id, sha in posts:
        shown = shows.get(sha)
        if shown is not None:
            seen[shown] = seen.get(shown, 0) + 1
        for make in names.get(post_id, ()):
            named[make] = named.get(make, 0) + 1
            if make == shown:
                both[make] = both.get(make, 0) + 1
    out = [
        MentionCount(make=m, seen=seen.get(m, 0), named=named.get(m, 0), both=both.get(m, 0))
        for m in set(seen) | set(named)
    ]
    return sorted(out, key=lambda c: (-c.seen, -c.named, c.make))


@dataclass(frozen=True, slots=True)
class SourceCount:
    """Posts ingested from one source (``x``, ``folder``, ``push``…) and the distinct images they showed."""

    source: str
    posts: int
    images: int


def source_counts(session_or_engine: Bind, *, since: datetime, until: datetime) -> list[SourceCount]:
    """Per source, the posts ingested in ``[since, until)``, most posts first."""
    _check_window(since, until)
    stmt = (
        select(Post.source, func.count(), func.count(distinct(Post.image_sha256)))
        .where(Post.ingested_at >= since, Post.ingested_at < until)
        .group_by(Post.source)
    )
    with _session(session_or_engine) as s:
        rows = [SourceCount(source=str(src), posts=int(n), images=int(i)) for src, n, i in s.execute(stmt)]
    return sorted(rows, key=lambda r: (-r.posts, r.source))
