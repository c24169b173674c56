"""Idempotent batch writes: one transaction per batch, so the worker can commit Kafka offsets after it.

Every insert is ``INSERT ... ON CONFLICT DO NOTHING``, so replaying a batch after a crash (offsets not yet
committed) changes nothing. Order: images, then their thumbnails (the first one written stays), then analyses
(``RETURNING`` tells which are new), then the regions and brand predictions of the new analyses only (an
existing analysis is never rewritten), then posts and the makes their text names (``post_mentions``). Rows are
sent with executemany and sorted by key, so concurrent workers lock rows in the same order (no deadlock).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

from sqlalchemy import Connection, Engine, Table
from sqlalchemy.dialects import postgresql, sqlite

from carspot.store.engine import SQLITE_BEGIN_OPTION
from carspot.store.records import AnalysisRecord, PostRecord
from carspot.store.tables import IMAGE_REGION, Base

_AnalysisKey: TypeAlias = tuple[str, str, str]
_K = TypeVar("_K")
_V = TypeVar("_V")

_IMAGES: Table = Base.metadata.tables["images"]
_POSTS: Table = Base.metadata.tables["posts"]
_ANALYSES: Table = Base.metadata.tables["analyses"]
_REGIONS: Table = Base.metadata.tables["regions"]
_BRANDS: Table = Base.metadata.tables["brand_predictions"]
_THUMBNAILS: Table = Base.metadata.tables["thumbnails"]
_MENTIONS: Table = Base.metadata.tables["post_mentions"]


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a batch added: rows that were already there (a replay, a repost) are not counted."""

    posts_inserted: int
    analyses_inserted: int


class BatchConflictError(ValueError):
    """The batch contradicts itself (one image SHA-256 with two sizes); nothing was written."""


def _insert_for(engine: Engine) -> Callable[[Table], Any]:
    """The dialect's ``insert`` (the generic one has no ON CONFLICT)."""
    name = engine.dialect.name
    if name == "postgresql":
        return postgresql.insert
    if name == "sqlite":
        return sqlite.insert
    raise ValueError(f"AnalysisStore supports PostgreSQL and SQLite, not {name!r}")


class AnalysisStore:
    """Writes batches of posts and analyses; safe to share between threads (each call has its connection)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._insert = _insert_for(engine)

    def write_batch(self, *, posts: Sequence[PostRecord], analyses: Sequence[AnalysisRecord]) -> WriteResult:
        """Write a batch in one transaction; any error rolls all of it back and is raised.

        Duplicates inside the batch (the same post id, or the same image analysed twice in one mode by one
        model version) keep their first occurrence.
        """
        images = _images(posts, analyses)
        unique_analyses = _first_by_key(analyses, key=_analysis_key)
        unique_posts = _first_by_key(posts, key=lambda p: p.post_id)
        if not images:
            return WriteResult(posts_inserted=0, analyses_inserted=0)

        with (
            self._engine.connect().execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"}) as conn,
            conn.begin(),
        ):
            self._write_images(conn, images)
            self._write_thumbnails(conn, unique_analyses)
            new_ids = self._write_analyses(conn, unique_analyses)
            self._write_children(conn, unique_analyses, new_ids)
            posts_inserted = self._write_posts(conn, unique_posts)
        return WriteResult(posts_inserted=posts_inserted, analyses_inserted=len(new_ids))

    def _write_images(self, conn: Connection, images: dict[str, dict[str, Any]]) -> None:
        """Insert missing images; an analysed picture's size replaces a size a linked repost wrote first."""
        rows = [images[sha] for sha in sorted(images)]
        fields = ("sha256", "width", "height", "first_seen_at")
        linked = [{k: r[k] for k in fields} for r in rows if not r["authoritative"]]
        analysed = [{k: r[k] for k in fields} for r in rows if r["authoritative"]]
        if linked:
            conn.execute(self._insert(_IMAGES).on_conflict_do_nothing(index_elements=["sha256"]), linked)
        if analysed:
            stmt = self._insert(_IMAGES)
            stmt = stmt.on_conflict_do_update(
                index_elements=["sha256"], set_={"width": stmt.excluded.width, "height": stmt.excluded.height}
            )
            conn.execute(stmt, analysed)

    def _write_thumbnails(self, conn: Connection, analyses: dict[_AnalysisKey, AnalysisRecord]) -> None:
        """One thumbnail per image, the first analysis's; an image that has one already keeps it."""
        rows: dict[str, dict[str, Any]] = {}
        for _, a in sorted(analyses.items()):
            if a.thumbnail is not None:
                rows.setdefault(
                    a.image_sha256,
                    {
                        "image_sha256": a.image_sha256,
                        "jpeg": a.thumbnail.jpeg,
                        "width": a.thumbnail.width,
                        "height": a.thumbnail.height,
                        "created_at": a.analyzed_at,
                    },
                )
        if rows:
            stmt = self._insert(_THUMBNAILS).on_conflict_do_nothing(index_elements=["image_sha256"])
            conn.execute(stmt, [rows[sha] for sha in sorted(rows)])

    def _write_analyses(
        self, conn: Connection, analyses: dict[_AnalysisKey, AnalysisRecord]
    ) -> dict[_AnalysisKey, int]:
        """Insert the analyses; returns the ids of the new ones, by (sha256, mode, model_version).

        ``RETURNING`` yields no row for a conflict, so rows are matched by their key, not by position.
        """
        if not analyses:
            return {}
        table = _ANALYSES
        stmt = (
            self._insert(table)
            .on_conflict_do_nothing(index_elements=["image_sha256", "mode", "model_version"])
            .returning(table.c.id, table.c.image_sha256, table.c.mode, table.c.model_version)
        )
        rows = [
            {
                "image_sha256": a.image_sha256,
                "mode": a.mode,
                "detector": a.detector,
                "model_version": a.model_version,
                "analyzed_at": a.analyzed_at,
                "duration_ms": float(a.duration_ms),
                "region_count": len(a.regions),
                "unidentified": a.unidentified,
            }
            for _, a in sorted(analyses.items())
        ]
        result = conn.execute(stmt, rows)
        return {(sha, mode, version): ident for ident, sha, mode, version in result}

    def _write_children(
        self,
        conn: Connection,
        analyses: dict[_AnalysisKey, AnalysisRecord],
        new_ids: dict[_AnalysisKey, int],
    ) -> None:
        """Regions and brand predictions of the analyses this batch created (an old one stays as it was)."""
        regions: list[dict[str, Any]] = []
        brands: list[dict[str, Any]] = []
        for key, analysis_id in sorted(new_ids.items(), key=lambda kv: kv[1]):
            analysis = analyses[key]
            for b in analysis.brands:
                brands.append(_brand_row(analysis_id, IMAGE_REGION, b.rank, b.make, b.score))
            for r in sorted(analysis.regions, key=lambda r: r.index):
                regions.append(
                    {
                        "analysis_id": analysis_id,
                        "region_index": r.index,
                        "x1": float(r.x1),
                        "y1": float(r.y1),
                        "x2": float(r.x2),
                        "y2": float(r.y2),
                        "score": float(r.score),
                        "label": r.label,
                        "unidentified": r.unidentified,
                    }
                )
                for b in r.brands:
                    brands.append(_brand_row(analysis_id, r.index, b.rank, b.make, b.score))
        # Plain inserts: these rows belong to analyses created in this very transaction, so a conflict
        # would be a bug to surface, not a replay to absorb.
        if regions:
            conn.execute(self._insert(_REGIONS), regions)
        if brands:
            conn.execute(self._insert(_BRANDS), brands)

    def _write_posts(self, conn: Connection, posts: dict[str, PostRecord]) -> int:
        if not posts:
            return 0
        table = _POSTS
        stmt = self._insert(table).on_conflict_do_nothing(index_elements=["post_id"]).returning(table.c.post_id)
        rows = [
            {
                "post_id": p.post_id,
                "source": p.source,
                "author": p.author,
                "text": p.text,
                "url": p.url,
                "posted_at": p.posted_at,
                "ingested_at": p.ingested_at,
                "image_sha256": p.image_sha256,
                "campaign": p.campaign,
            }
            for _, p in sorted(posts.items())
        ]
        inserted = {post_id for (post_id,) in conn.execute(stmt, rows)}
        mentions = [
            {"post_id": post_id, "make": m.make, "via": m.via}
            for post_id, p in sorted(posts.items())
            if post_id in inserted
            for m in sorted(p.mentions, key=lambda m: m.make)
        ]
        if mentions:  # only for the posts this batch created: a replayed post keeps what it had
            conn.execute(self._insert(_MENTIONS).on_conflict_do_nothing(index_elements=["post_id", "make"]), mentions)
        return len(inserted)


def _analysis_key(a: AnalysisRecord) -> _AnalysisKey:
    return (a.image_sha256, a.mode, a.model_version)


def _first_by_key(items: Sequence[_V], *, key: Callable[[_V], _K]) -> dict[_K, _V]:
    out: dict[_K, _V] = {}
    for item in items:
        out.setdefault(key(item), item)
    return out


def _brand_row(analysis_id: int, region_index: int, rank: int, make: str, score: float) -> dict[str, Any]:
    return {
        "analysis_id": analysis_id,
        "region_index": region_index,
        "rank": rank,
        "make": make,
        "score": float(score),
    }


def _images(posts: Sequence[PostRecord], analyses: Sequence[AnalysisRecord]) -> dict[str, dict[str, Any]]:
    """One image row per SHA-256, first seen at the earliest time the batch mentions it.

    The analysed picture's size is authoritative (``authoritative`` rows overwrite a stored size); a post only
    says which picture it shows, and a near-duplicate repost linked to another picture carries its own size,
    so a post's size is used only when no analysis in the batch mentions the image. Two analyses of the same
    bytes with two sizes are a bug upstream, refused before anything is written.
    """
    images: dict[str, dict[str, Any]] = {}
    for a in analyses:
        row = images.get(a.image_sha256)
        if row is None:
            images[a.image_sha256] = {
                "sha256": a.image_sha256,
                "width": a.width,
                "height": a.height,
                "first_seen_at": a.analyzed_at,
                "authoritative": True,
            }
        elif (row["width"], row["height"]) != (a.width, a.height):
            raise BatchConflictError(
                f"image {a.image_sha256} analysed as {row['width']}x{row['height']} and as {a.width}x{a.height}"
            )
        else:
            row["first_seen_at"] = min(row["first_seen_at"], a.analyzed_at)
    for p in posts:
        row = images.get(p.image_sha256)
        if row is None:
            images[p.image_sha256] = {
                "sha256": p.image_sha256,
                "width": p.width,
                "height": p.height,
                "first_seen_at": p.ingested_at,
                "authoritative": False,
            }
        else:
            row["first_seen_at"] = min(row["first_seen_at"], p.ingested_at)
    return images
