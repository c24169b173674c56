"""The read queries the dashboards use, returning frozen dataclasses (no SQLAlchemy rows leak out).

Each takes an Engine, a Connection or a Session, so a dashboard request can run several on one connection.
Time windows are half-open ``[since, until)`` with timezone-aware bounds; days are UTC days. Brand counts are
per image, not per post: a picture reposted a hundred times is one image. When an image has several analyses
in the window (several modes, or a re-analysis by a newer model), its latest one speaks for it. Brand share
counts confident makes only: an image marked unidentified (a car, but its best make below the confidence the
analysis asked for) is counted apart (`unidentified_images`, `DailyCount.unidentified`).

:class:`Filters` narrows any of them the same way: ``mode`` (of the analysis), ``source`` and ``campaign`` (an
image counts when a post of that source / campaign showed it) and ``min_confidence`` (an image whose best make
scores below it counts as unidentified, apart, like one the analysis itself marked).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, TypeAlias

from sqlalchemy import (
    ColumnElement,
    Connection,
    Date,
    Engine,
    Select,
    and_,
    case,
    delete,
    distinct,
    exists,
    false,
    func,
    or_,
    select,
    union,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from carspot.store.records import MODES, BrandScore
from carspot.store.tables import (
    IMAGE_REGION,
    Analysis,
    BrandPrediction,
    Image,
    Post,
    PostMention,
    Region,
    Thumbnail,
)

Bind: TypeAlias = Engine | Connection | Session


@dataclass(frozen=True, slots=True, kw_only=True)
class Filters:
    """What a dashboard view is narrowed to; every query taking it applies it the same way (see the module)."""

    mode: str | None = None
    source: str | None = None
    campaign: str | None = None
    min_confidence: float | None = None

    def __post_init__(self) -> None:
        if self.mode is not None and self.mode not in MODES:
            raise ValueError(f"mode must be one of {sorted(MODES)}, got {self.mode!r}")
        for name in ("source", "campaign"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{name} must be a non-empty string or None, got {value!r}")
        c = self.min_confidence
        if c is not None and (isinstance(c, bool) or not isinstance(c, int | float) or not 0.0 <= c <= 1.0):
            raise ValueError(f"min_confidence must be a number in [0, 1] or None, got {c!r}")


NO_FILTERS: Final = Filters()


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
    has_thumbnail: bool = False


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


def _merge_mode(mode: str | None, filters: Filters) -> Filters:
    """The older ``mode=`` keyword and ``filters.mode`` must agree; the result carries the one given."""
    _check_mode(mode)
    if mode is None or mode == filters.mode:
        return filters
    if filters.mode is not None:
        raise ValueError(f"mode {mode!r} contradicts filters.mode {filters.mode!r}")
    return Filters(mode=mode, source=filters.source, campaign=filters.campaign, min_confidence=filters.min_confidence)


def _post_conditions(filters: Filters, post: Any = Post) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.source is not None:
        conditions.append(post.source == filters.source)
    if filters.campaign is not None:
        conditions.append(post.campaign == filters.campaign)
    return conditions


def _shown_by_matching_post(filters: Filters) -> ColumnElement[bool] | None:
    """``Analysis``'s image was shown by a post of the filtered source and campaign (None: no such filter)."""
    shown = aliased(Post)
    conditions = _post_conditions(filters, shown)
    if not conditions:
        return None
    return exists().where(shown.image_sha256 == Analysis.image_sha256, *conditions)


def _best_score_below(threshold: float) -> ColumnElement[bool]:
    """``Analysis``'s image-level rank-1 brand scores below ``threshold`` (an alias: the outer query may
    select from ``brand_predictions`` too, and must not be correlated with)."""
    best = aliased(BrandPrediction)
    return exists().where(
        best.analysis_id == Analysis.id,
        best.region_index == IMAGE_REGION,
        best.rank == 1,
        best.score < threshold,
    )


def _identified(filters: Filters) -> ColumnElement[bool]:
    """``Analysis`` counts for its make: not marked unidentified, and confident enough for the filter."""
    condition: ColumnElement[bool] = Analysis.unidentified.is_(False)
    if filters.min_confidence:
        condition = and_(condition, ~_best_score_below(filters.min_confidence))
    return condition


def _unidentified(filters: Filters) -> ColumnElement[bool]:
    """``Analysis`` found a car without a confident make: marked so, or below the filter's confidence."""
    condition: ColumnElement[bool] = Analysis.unidentified.is_(True)
    if filters.min_confidence:
        condition = or_(condition, _best_score_below(filters.min_confidence))
    return condition


def _latest_analysis_per_image(
    since: datetime, until: datetime, mode: str | None, filters: Filters = NO_FILTERS
) -> Select[tuple[int]]:
    """Ids of each image's latest analysis in the window (in ``mode`` if given, of images the filters keep)."""
    filters = _merge_mode(mode, filters)
    ranked = select(
        Analysis.id,
        func.row_number()
        .over(partition_by=Analysis.image_sha256, order_by=(Analysis.analyzed_at.desc(), Analysis.id.desc()))
        .label("rn"),
    ).where(Analysis.analyzed_at >= since, Analysis.analyzed_at < until)
    if filters.mode is not None:
        ranked = ranked.where(Analysis.mode == filters.mode)
    shown = _shown_by_matching_post(filters)
    if shown is not None:
        ranked = ranked.where(shown)
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
    filters: Filters = NO_FILTERS,
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
    filters = _merge_mode(mode, filters)
    latest = _latest_analysis_per_image(since, until, None, filters)
    chosen = select(Analysis.id).where(Analysis.id.in_(latest), _identified(filters))
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


def unidentified_images(
    session_or_engine: Bind,
    *,
    since: datetime,
    until: datetime,
    mode: str | None = None,
    filters: Filters = NO_FILTERS,
) -> int:
    """Images analysed in ``[since, until)`` whose latest analysis found a car but no confident make."""
    _check_window(since, until)
    filters = _merge_mode(mode, filters)
    latest = _latest_analysis_per_image(since, until, None, filters)
    stmt = select(func.count()).select_from(Analysis).where(Analysis.id.in_(latest), _unidentified(filters))
    with _session(session_or_engine) as s:
        return int(s.execute(stmt).scalar_one())


def recent_analyses(
    session_or_engine: Bind,
    *,
    limit: int = 50,
    mode: str | None = None,
    filters: Filters = NO_FILTERS,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[RecentAnalysis]:
    """The latest analyses, newest first, with the image's top-5 and the latest post that showed it.

    ``filters``: mode, source and campaign narrow the feed; ``min_confidence`` does not (the feed shows
    every analysis, unidentified ones too). ``since``/``until`` (both or neither) keep the analyses made in
    ``[since, until)``, so a dashboard's feed stays in its window."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if (since is None) != (until is None):
        raise ValueError("give both since and until, or neither")
    filters = _merge_mode(mode, filters)
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
            _has_thumbnail(),
        )
        .join(Image, Image.sha256 == Analysis.image_sha256)
        .order_by(Analysis.analyzed_at.desc(), Analysis.id.desc())
        .limit(limit)
    )
    if since is not None and until is not None:
        _check_window(since, until)
        stmt = stmt.where(Analysis.analyzed_at >= since, Analysis.analyzed_at < until)
    if filters.mode is not None:
        stmt = stmt.where(Analysis.mode == filters.mode)
    shown = _shown_by_matching_post(filters)
    if shown is not None:
        stmt = stmt.where(shown)
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
    for ident, sha, m, detector, version, analyzed_at, duration_ms, region_count, width, height, thumb in found:
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
                has_thumbnail=bool(thumb),
            )
        )
    return out


def _has_thumbnail() -> ColumnElement[bool]:
    return exists().where(Thumbnail.image_sha256 == Analysis.image_sha256).label("has_thumbnail")


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
    session_or_engine: Bind,
    *,
    since: datetime,
    until: datetime,
    mode: str | None = None,
    filters: Filters = NO_FILTERS,
) -> list[DailyCount]:
    """Per UTC day of ``[since, until)``, every day listed (zeros included) so charts have no gaps.

    Images analysed are distinct images; cars are the car regions of those analyses (with several modes in
    one day an image's cars count once per mode, so pass ``mode`` for a chart of one pipeline); unidentified are
    the distinct images with an analysis marked unidentified.
    """
    _check_window(since, until)
    filters = _merge_mode(mode, filters)
    post_day = _utc_day(Post.ingested_at)
    posts_stmt = (
        select(post_day, func.count())
        .where(Post.ingested_at >= since, Post.ingested_at < until, *_post_conditions(filters))
        .group_by(post_day)
    )
    analysis_day = _utc_day(Analysis.analyzed_at)
    unidentified = func.count(distinct(case((_unidentified(filters), Analysis.image_sha256))))
    analyses_stmt = (
        select(analysis_day, func.count(distinct(Analysis.image_sha256)), func.sum(Analysis.region_count), unidentified)
        .where(Analysis.analyzed_at >= since, Analysis.analyzed_at < until)
        .group_by(analysis_day)
    )
    if filters.mode is not None:
        analyses_stmt = analyses_stmt.where(Analysis.mode == filters.mode)
    shown = _shown_by_matching_post(filters)
    if shown is not None:
        analyses_stmt = analyses_stmt.where(shown)
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


def counts(session_or_engine: Bind, *, filters: Filters = NO_FILTERS) -> Counts:
    """How many posts, images, analyses and regions the store holds, at any time.

    ``filters`` narrow them as a dashboard view does: posts of the source and campaign; analyses in the mode
    whose image such a post showed, and their regions; images shown by such a post (and analysed in the mode,
    when one is given). ``min_confidence`` does not apply: it sorts images into counted and unidentified, it
    removes no row."""
    shown = _shown_by_matching_post(filters)
    analyses = select(Analysis.id)
    if filters.mode is not None:
        analyses = analyses.where(Analysis.mode == filters.mode)
    if shown is not None:
        analyses = analyses.where(shown)
    images = select(func.count()).select_from(Image)
    post_conditions = _post_conditions(filters)
    if post_conditions:
        images = images.where(exists().where(Post.image_sha256 == Image.sha256, *post_conditions))
    if filters.mode is not None:
        images = images.where(exists().where(Analysis.image_sha256 == Image.sha256, Analysis.mode == filters.mode))
    narrowed = filters.mode is not None or shown is not None
    stmt = select(
        select(func.count()).select_from(Post).where(*post_conditions).scalar_subquery(),
        images.scalar_subquery(),
        select(func.count()).select_from(analyses.subquery()).scalar_subquery(),
        select(func.count())
        .select_from(Region)
        .where(*([Region.analysis_id.in_(analyses)] if narrowed else []))
        .scalar_subquery(),
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


# --- brands, campaigns and pictures ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DailyBrands:
    """One UTC day of brand counts: ``identified`` images with a confident make (the share's denominator),
    ``makes`` how many of them have each make at rank 1, ``unidentified`` images counted apart."""

    day: date
    identified: int
    unidentified: int
    makes: dict[str, int]

    def share(self, make: str) -> float:
        """``make``'s share of the day's identified images (0 on a day without any)."""
        return self.makes.get(make, 0) / self.identified if self.identified else 0.0


@dataclass(frozen=True, slots=True)
class RegionBox:
    """A car region of an image, with its most confident make (None when it has no brand or is doubted)."""

    index: int
    x1: float
    y1: float
    x2: float
    y2: float
    make: str | None
    score: float | None
    unidentified: bool


@dataclass(frozen=True, slots=True)
class BrandImage:
    """An image in which a make is seen: its boxes, its top-5, and the latest post that showed it."""

    analysis_id: int
    image_sha256: str
    width: int
    height: int
    mode: str
    model_version: str
    analyzed_at: datetime
    brands: tuple[BrandScore, ...]
    regions: tuple[RegionBox, ...]
    has_thumbnail: bool
    latest_post: PostSummary | None
    post_count: int


@dataclass(frozen=True, slots=True)
class CoMake:
    """Another make seen in ``images`` of the images where the page's make is seen."""

    make: str
    images: int


@dataclass(frozen=True, slots=True)
class SeenWith:
    """Where a make is seen (``images``: a car of that make, or the image's best make) and with which others."""

    make: str
    images: int
    others: tuple[CoMake, ...]


@dataclass(frozen=True, slots=True)
class StoredThumbnail:
    """A thumbnail as the dashboard serves it."""

    image_sha256: str
    jpeg: bytes
    width: int
    height: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Facets:
    """The values a filter can take, for the dashboard's menus."""

    sources: tuple[str, ...]
    campaigns: tuple[str, ...]


def _chosen(since: datetime, until: datetime, filters: Filters) -> Select[tuple[int]]:
    """Ids of the analyses that speak for their image in the window and count for a make."""
    latest = _latest_analysis_per_image(since, until, None, filters)
    return select(Analysis.id).where(Analysis.id.in_(latest), _identified(filters))


def daily_brand_counts(
    session_or_engine: Bind, *, since: datetime, until: datetime, filters: Filters = NO_FILTERS
) -> list[DailyBrands]:
    """Per UTC day of ``[since, until)`` (every day listed), rank-1 makes and the unidentified images.

    Each image counts once, on the day of its latest analysis in the window, so the days add up to
    :func:`brand_share` over the whole window."""
    _check_window(since, until)
    latest = _latest_analysis_per_image(since, until, None, filters)
    day = _utc_day(Analysis.analyzed_at)
    makes_stmt = (
        select(day, BrandPrediction.make, func.count())
        .join(BrandPrediction, BrandPrediction.analysis_id == Analysis.id)
        .where(
            Analysis.id.in_(latest),
            _identified(filters),
            BrandPrediction.region_index == IMAGE_REGION,
            BrandPrediction.rank == 1,
        )
        .group_by(day, BrandPrediction.make)
    )
    doubted_stmt = select(day, func.count()).where(Analysis.id.in_(latest), _unidentified(filters)).group_by(day)
    per_day: dict[date, dict[str, int]] = {}
    with _session(session_or_engine) as s:
        for d, make, n in s.execute(makes_stmt):
            per_day.setdefault(d, {})[str(make)] = int(n)
        doubted = {d: int(n) for d, n in s.execute(doubted_stmt)}
    return [
        DailyBrands(
            day=d,
            identified=sum(per_day.get(d, {}).values()),
            unidentified=doubted.get(d, 0),
            makes=dict(sorted(per_day.get(d, {}).items())),
        )
        for d in _days(since, until)
    ]


def _days(since: datetime, until: datetime) -> list[date]:
    first = since.astimezone(UTC).date()
    last = (until.astimezone(UTC) - timedelta(microseconds=1)).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _seen(since: datetime, until: datetime, filters: Filters) -> Any:
    """(analysis id, make) pairs: the makes seen in each counted image, as a CTE.

    A make is seen in an image when it is the image's best make, or the best make of one of its car regions
    (a region marked unidentified, or below ``min_confidence``, shows no make)."""
    chosen = _chosen(since, until, filters)
    image_best = select(BrandPrediction.analysis_id, BrandPrediction.make).where(
        BrandPrediction.analysis_id.in_(chosen),
        BrandPrediction.region_index == IMAGE_REGION,
        BrandPrediction.rank == 1,
    )
    region_best = (
        select(BrandPrediction.analysis_id, BrandPrediction.make)
        .join(
            Region,
            and_(
                Region.analysis_id == BrandPrediction.analysis_id,
                Region.region_index == BrandPrediction.region_index,
            ),
        )
        .where(
            BrandPrediction.analysis_id.in_(chosen),
            BrandPrediction.region_index >= 0,
            BrandPrediction.rank == 1,
            Region.unidentified.is_(False),
            BrandPrediction.score >= (filters.min_confidence or 0.0),
        )
    )
    return union(image_best, region_best).cte("seen")


def seen_with(
    session_or_engine: Bind,
    *,
    make: str,
    since: datetime,
    until: datetime,
    filters: Filters = NO_FILTERS,
    limit: int = 10,
) -> SeenWith:
    """The images where ``make`` is seen in ``[since, until)``, and the other makes seen in those same images
    (most frequent first, at most ``limit``)."""
    _check_window(since, until)
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    seen = _seen(since, until, filters)
    mine = seen.alias("mine")
    other = seen.alias("other")
    n = func.count(distinct(other.c.analysis_id))
    others_stmt = (
        select(other.c.make, n)
        .join(mine, mine.c.analysis_id == other.c.analysis_id)
        .where(mine.c.make == make, other.c.make != make)
        .group_by(other.c.make)
        .order_by(n.desc(), other.c.make)
        .limit(limit)
    )
    total_stmt = select(func.count(distinct(seen.c.analysis_id))).where(seen.c.make == make)
    with _session(session_or_engine) as s:
        total = int(s.execute(total_stmt).scalar_one())
        others = tuple(CoMake(make=str(m), images=int(k)) for m, k in s.execute(others_stmt))
    return SeenWith(make=make, images=total, others=others)


def brand_images(
    session_or_engine: Bind,
    *,
    make: str,
    since: datetime,
    until: datetime,
    filters: Filters = NO_FILTERS,
    limit: int = 24,
) -> list[BrandImage]:
    """The latest images where ``make`` is seen (as in :func:`seen_with`), newest first, with their boxes."""
    _check_window(since, until)
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    seen = _seen(since, until, filters)
    stmt = (
        select(
            Analysis.id,
            Analysis.image_sha256,
            Analysis.mode,
            Analysis.model_version,
            Analysis.analyzed_at,
            Image.width,
            Image.height,
            _has_thumbnail(),
        )
        .join(Image, Image.sha256 == Analysis.image_sha256)
        .where(Analysis.id.in_(select(seen.c.analysis_id).where(seen.c.make == make)))
        .order_by(Analysis.analyzed_at.desc(), Analysis.id.desc())
        .limit(limit)
    )
    with _session(session_or_engine) as s:
        found = list(s.execute(stmt).tuples())
        if not found:
            return []
        ids = [row[0] for row in found]
        brands: dict[int, list[BrandScore]] = {}
        best: dict[tuple[int, int], tuple[str, float]] = {}
        for analysis_id, region_index, make_, score, rank in s.execute(
            select(
                BrandPrediction.analysis_id,
                BrandPrediction.region_index,
                BrandPrediction.make,
                BrandPrediction.score,
                BrandPrediction.rank,
            )
            .where(BrandPrediction.analysis_id.in_(ids))
            .order_by(BrandPrediction.analysis_id, BrandPrediction.region_index, BrandPrediction.rank)
        ):
            if region_index == IMAGE_REGION:
                brands.setdefault(analysis_id, []).append(BrandScore(make=make_, score=score, rank=rank))
            elif rank == 1:
                best[(analysis_id, region_index)] = (make_, score)
        boxes: dict[int, list[RegionBox]] = {}
        region_rows = s.execute(
            select(
                Region.analysis_id,
                Region.region_index,
                Region.x1,
                Region.y1,
                Region.x2,
                Region.y2,
                Region.unidentified,
            )
            .where(Region.analysis_id.in_(ids))
            .order_by(Region.analysis_id, Region.region_index)
        )
        for r in region_rows:
            top1 = best.get((r.analysis_id, r.region_index))
            shown = top1 is not None and not r.unidentified and top1[1] >= (filters.min_confidence or 0.0)
            boxes.setdefault(r.analysis_id, []).append(
                RegionBox(
                    index=r.region_index,
                    x1=r.x1,
                    y1=r.y1,
                    x2=r.x2,
                    y2=r.y2,
                    make=top1[0] if shown and top1 else None,
                    score=top1[1] if shown and top1 else None,
                    unidentified=r.unidentified or (top1 is not None and not shown),
                )
            )
        posts = _latest_posts(s, sorted({row[1] for row in found}))
    out = []
    for ident, sha, m, version, analyzed_at, width, height, thumb in found:
        latest, post_count = posts.get(sha, (None, 0))
        out.append(
            BrandImage(
                analysis_id=ident,
                image_sha256=sha,
                width=width,
                height=height,
                mode=m,
                model_version=version,
                analyzed_at=analyzed_at,
                brands=tuple(brands.get(ident, ())),
                regions=tuple(boxes.get(ident, ())),
                has_thumbnail=bool(thumb),
                latest_post=latest,
                post_count=post_count,
            )
        )
    return out


def thumbnail(session_or_engine: Bind, *, image_sha256: str) -> StoredThumbnail | None:
    """The image's thumbnail, if one is kept."""
    with _session(session_or_engine) as s:
        row = s.execute(
            select(
                Thumbnail.image_sha256, Thumbnail.jpeg, Thumbnail.width, Thumbnail.height, Thumbnail.created_at
            ).where(Thumbnail.image_sha256 == image_sha256)
        ).first()
    if row is None:
        return None
    sha, jpeg, width, height, created_at = row
    return StoredThumbnail(image_sha256=sha, jpeg=bytes(jpeg), width=width, height=height, created_at=created_at)


def purge_thumbnails(engine: Engine, *, older_than: datetime | None) -> int:
    """Delete, in one transaction, the thumbnails made before ``older_than`` (None: keep them whatever their
    age) and those of images no post shows any more (a forgotten post takes its picture with it); returns how
    many went."""
    if older_than is not None and (older_than.tzinfo is None or older_than.utcoffset() is None):
        raise ValueError(f"older_than must be timezone-aware, got naive {older_than.isoformat()}")
    orphan = ~exists().where(Post.image_sha256 == Thumbnail.image_sha256)
    expired = Thumbnail.created_at < older_than if older_than is not None else false()
    with engine.begin() as conn:
        result = conn.execute(delete(Thumbnail).where(or_(expired, orphan)))
    return int(result.rowcount or 0)


def facets(session_or_engine: Bind) -> Facets:
    """The sources and campaigns the store holds posts for, sorted."""
    with _session(session_or_engine) as s:
        sources = tuple(str(v) for v in s.execute(select(Post.source).distinct().order_by(Post.source)).scalars())
        campaigns = tuple(
            str(v)
            for v in s.execute(
                select(Post.campaign).where(Post.campaign.is_not(None)).distinct().order_by(Post.campaign)
            ).scalars()
        )
    return Facets(sources=sources, campaigns=campaigns)


def find_make(session_or_engine: Bind, *, make: str) -> str | None:
    """The make as the store spells it (``toyota`` finds ``Toyota``), or None if no analysis ever named it."""
    exact = select(BrandPrediction.make).where(BrandPrediction.make == make).limit(1)
    folded = (
        select(BrandPrediction.make)
        .where(func.lower(BrandPrediction.make) == make.lower())
        .order_by(BrandPrediction.make)
        .limit(1)
    )
    with _session(session_or_engine) as s:
        found = s.execute(exact).scalar() or s.execute(folded).scalar()
    return str(found) if found is not None else None


@dataclass(frozen=True, slots=True)
class CampaignCount:
    """One campaign (None: posts collected without one): its images with a confident make, by rank-1 make, and
    its unidentified images."""

    campaign: str | None
    identified: int
    unidentified: int
    makes: dict[str, int]


def campaign_counts(
    session_or_engine: Bind, *, since: datetime, until: datetime, filters: Filters = NO_FILTERS
) -> list[CampaignCount]:
    """Brand counts grouped by campaign, largest campaign first. An image shown by posts of two campaigns counts
    in both (each campaign reached it); within one campaign each image counts once."""
    _check_window(since, until)
    latest = _latest_analysis_per_image(since, until, None, filters)
    shown = aliased(Post)
    linked = and_(shown.image_sha256 == Analysis.image_sha256, *_post_conditions(filters, shown))
    images = func.count(distinct(Analysis.id))
    makes_stmt = (
        select(shown.campaign, BrandPrediction.make, images)
        .select_from(Analysis)
        .join(BrandPrediction, BrandPrediction.analysis_id == Analysis.id)
        .join(shown, linked)
        .where(
            Analysis.id.in_(latest),
            _identified(filters),
            BrandPrediction.region_index == IMAGE_REGION,
            BrandPrediction.rank == 1,
        )
        .group_by(shown.campaign, BrandPrediction.make)
    )
    doubted_stmt = (
        select(shown.campaign, images)
        .select_from(Analysis)
        .join(shown, linked)
        .where(Analysis.id.in_(latest), _unidentified(filters))
        .group_by(shown.campaign)
    )
    per: dict[str | None, dict[str, int]] = {}
    with _session(session_or_engine) as s:
        for campaign, make, n in s.execute(makes_stmt):
            per.setdefault(campaign, {})[str(make)] = int(n)
        doubted = {campaign: int(n) for campaign, n in s.execute(doubted_stmt)}
    out = [
        CampaignCount(
            campaign=c,
            identified=sum(per.get(c, {}).values()),
            unidentified=doubted.get(c, 0),
            makes=dict(sorted(per.get(c, {}).items(), key=lambda kv: (-kv[1], kv[0]))),
        )
        for c in set(per) | set(doubted)
    ]
    return sorted(out, key=lambda c: (-c.identified, -c.unidentified, c.campaign is None, c.campaign or ""))


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
    filters: Filters = NO_FILTERS,
    rank_text_mentions: bool = False,
) -> list[MentionCount]:
    """Per make, the posts ingested in ``[since, until)`` that show it, name it, or both; most seen first.

    Posts, not images: the text belongs to a post. A post "shows" the make its image counts for in brand share
    (through the image's latest analysis, in ``mode`` if given, at any time; none when it is unidentified, below
    ``filters.min_confidence`` or not analysed yet), re-ranked by text mentions when ``rank_text_mentions``.
    ``filters.source`` and ``filters.campaign`` keep the posts of that source and campaign.
    """
    _check_window(since, until)
    filters = _merge_mode(mode, filters)
    mode = filters.mode
    in_window = select(Post.post_id, Post.image_sha256).where(
        Post.ingested_at >= since, Post.ingested_at < until, *_post_conditions(filters)
    )
    ranked = select(
        Analysis.id,
        func.row_number()
        .over(partition_by=Analysis.image_sha256, order_by=(Analysis.analyzed_at.desc(), Analysis.id.desc()))
        .label("rn"),
    ).where(Analysis.image_sha256.in_(select(in_window.subquery().c.image_sha256)))
    if mode is not None:
        ranked = ranked.where(Analysis.mode == mode)
    sub = ranked.subquery()
    chosen = select(Analysis.id).where(Analysis.id.in_(select(sub.c.id).where(sub.c.rn == 1)), _identified(filters))
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


def source_counts(
    session_or_engine: Bind, *, since: datetime, until: datetime, filters: Filters = NO_FILTERS
) -> list[SourceCount]:
    """Per source, the posts ingested in ``[since, until)`` (of the filters' source and campaign), most posts
    first."""
    _check_window(since, until)
    stmt = (
        select(Post.source, func.count(), func.count(distinct(Post.image_sha256)))
        .where(Post.ingested_at >= since, Post.ingested_at < until, *_post_conditions(filters))
        .group_by(Post.source)
    )
    with _session(session_or_engine) as s:
        rows = [SourceCount(source=str(src), posts=int(n), images=int(i)) for src, n, i in s.execute(stmt)]
    return sorted(rows, key=lambda r: (-r.posts, r.source))
