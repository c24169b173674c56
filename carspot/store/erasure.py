"""Right to erasure: a post loses everything that ties it to a person, and every aggregate count stays.

``forget_posts`` replaces the post's id (the platform's id leads back to the person) by a random one, and blanks its
author, text, URL and posting time; the thumbnail of its picture is deleted (the picture is the person's, even where
another post shows it too). What stays is what the counts need: the source, when it was ingested, the image's
SHA-256 (the link to the analysis of the picture) and the makes its text named (``post_mentions``, re-keyed with the
post). So posts per day, brand share and "named in the text" are the same before and after. Each run is logged in
``erasures``: when, by whom, how many posts asked and found, never which posts nor what they said. See
docs/mentions.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, delete, insert, select, update

from carspot.store.engine import SQLITE_BEGIN_OPTION
from carspot.store.tables import Erasure, Post, PostMention, Thumbnail

FORGOTTEN_PREFIX = "forgotten:"
"""The ids of erased posts start with it, followed by a random UUID."""


@dataclass(frozen=True, slots=True)
class ErasureResult:
    """How many posts were asked for and erased; ``missing`` are the ids not found (unknown, or already erased)."""

    requested: int
    erased: int
    missing: tuple[str, ...]
    thumbnails_deleted: int


def forget_posts(engine: Engine, post_ids: Sequence[str], *, requested_by: str, now: datetime) -> ErasureResult:
    """Erase the posts in one transaction, and log the run (also when none was found)."""
    if not requested_by.strip():
        raise ValueError("requested_by must name who asked for the erasure")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got naive {now.isoformat()}")
    wanted = sorted(set(post_ids))
    with engine.connect().execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"}) as conn, conn.begin():
        found = {
            str(pid): str(sha)
            for pid, sha in conn.execute(select(Post.post_id, Post.image_sha256).where(Post.post_id.in_(wanted)))
        }
        thumbnails = _delete_thumbnails(conn, shas=sorted(set(found.values())))
        for old in sorted(found):
            new = FORGOTTEN_PREFIX + uuid.uuid4().hex
            conn.execute(
                update(Post)
                .where(Post.post_id == old)
                .values(post_id=new, author=None, text=None, url=None, posted_at=None)
            )
            # ON UPDATE CASCADE has moved them already where foreign keys are enforced; this covers the rest.
            conn.execute(update(PostMention).where(PostMention.post_id == old).values(post_id=new))
        conn.execute(
            insert(Erasure).values(
                erased_at=now, requested_by=requested_by, posts_requested=len(wanted), posts_erased=len(found)
            )
        )
    return ErasureResult(
        requested=len(wanted),
        erased=len(found),
        missing=tuple(pid for pid in wanted if pid not in found),
        thumbnails_deleted=thumbnails,
    )


def _delete_thumbnails(conn: Connection, *, shas: list[str]) -> int:
    """Delete the thumbnails of these pictures; how many there were."""
    if not shas:
        return 0
    return int(conn.execute(delete(Thumbnail).where(Thumbnail.image_sha256.in_(shas))).rowcount or 0)


@dataclass(frozen=True, slots=True)
class ErasureEntry:
    """One logged run of ``carspot forget``."""

    erased_at: datetime
    requested_by: str
    posts_requested: int
    posts_erased: int


def erasure_log(engine: Engine) -> list[ErasureEntry]:
    """Every logged erasure, oldest first."""
    stmt = select(Erasure.erased_at, Erasure.requested_by, Erasure.posts_requested, Erasure.posts_erased).order_by(
        Erasure.id
    )
    with engine.connect() as conn:
        return [ErasureEntry(*row) for row in conn.execute(stmt)]
