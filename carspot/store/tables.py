"""The tables, as SQLAlchemy 2 declarative models; they work on PostgreSQL (production) and SQLite (embedded).

A post links to its image by SHA-256; analyses hang off the image, not the post, so the same picture reposted
is analysed once and every post showing it reaches that analysis through the image. Brand predictions are the
top-5 per region, and per image under ``region_index = -1``. The migrations in ``migrations/versions`` must
create exactly this (a test compares them).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    CHAR,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

IMAGE_REGION: int = -1
"""``brand_predictions.region_index`` of the whole image's top-5."""

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Deterministic constraint names: SQLite batch migrations and autogenerate comparisons need them."""

# An autoincrementing 64-bit key on PostgreSQL; SQLite autoincrements only an INTEGER PRIMARY KEY.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp that always comes back in UTC on both backends.

    SQLite has no time zones: SQLAlchemy stores the wall-clock text and returns naive values, so binds are
    converted to UTC here and results are marked UTC. Naive datetimes are refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given to a timezone-aware column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Image(Base):
    """A normalised image, identified by the SHA-256 of its bytes."""

    __tablename__ = "images"
    __table_args__ = (CheckConstraint("width > 0 AND height > 0", name="size"),)

    sha256: Mapped[str] = mapped_column(CHAR(64), primary_key=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Post(Base):
    """A social-media post; several posts may show the same image."""

    __tablename__ = "posts"

    post_id: Mapped[str] = mapped_column(Text, primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text)
    posted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    ingested_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    stored_at: Mapped[datetime] = mapped_column(UtcDateTime(), server_default=func.now())
    image_sha256: Mapped[str] = mapped_column(CHAR(64), ForeignKey("images.sha256"), index=True)
    campaign: Mapped[str | None] = mapped_column(Text, index=True)
    """The campaign the post was collected for: an X rule's tag, or the ``campaign`` of a pushed post."""


class Thumbnail(Base):
    """A small JPEG of an analysed image, for the dashboards; purged after the retention period, and with the
    last post that showed its image (``purge_thumbnails``), or in cascade with the image row."""

    __tablename__ = "thumbnails"
    __table_args__ = (CheckConstraint("width > 0 AND height > 0", name="size"),)

    image_sha256: Mapped[str] = mapped_column(
        CHAR(64), ForeignKey("images.sha256", ondelete="CASCADE"), primary_key=True
    )
    jpeg: Mapped[bytes] = mapped_column(LargeBinary)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    """When the image was analysed: retention counts from here."""


class Analysis(Base):
    """One analysis of one image in one mode by one model version (at most one per such triple)."""

    __tablename__ = "analyses"
    __table_args__ = (
        UniqueConstraint("image_sha256", "mode", "model_version"),
        CheckConstraint("mode IN ('standard', 'region-search', 'detector')", name="mode"),
        CheckConstraint("region_count >= 0", name="region_count"),
        CheckConstraint("duration_ms >= 0", name="duration_ms"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    image_sha256: Mapped[str] = mapped_column(CHAR(64), ForeignKey("images.sha256"))
    mode: Mapped[str] = mapped_column(Text)
    detector: Mapped[str] = mapped_column(Text)
    model_version: Mapped[str] = mapped_column(Text)
    analyzed_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    duration_ms: Mapped[float] = mapped_column(Float)
    region_count: Mapped[int] = mapped_column(Integer)
    unidentified: Mapped[bool] = mapped_column(Boolean, server_default=false())
    """A car whose best make is below the confidence asked for: its top-5 is stored, brand share skips it."""


class Region(Base):
    """A car region of an analysis, a box in pixels of the image."""

    __tablename__ = "regions"
    __table_args__ = (
        CheckConstraint("region_index >= 0", name="region_index"),
        CheckConstraint("x1 >= 0 AND y1 >= 0 AND x1 <= x2 AND y1 <= y2", name="box"),
        CheckConstraint("score >= 0 AND score <= 1", name="score"),
    )

    analysis_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("analyses.id", ondelete="CASCADE"), primary_key=True)
    region_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    label: Mapped[str] = mapped_column(Text)
    unidentified: Mapped[bool] = mapped_column(Boolean, server_default=false())


class BrandPrediction(Base):
    """One brand of a top-5: of a region, or of the whole image when ``region_index = -1``."""

    __tablename__ = "brand_predictions"
    __table_args__ = (
        CheckConstraint("region_index >= -1", name="region_index"),
        CheckConstraint("rank >= 1 AND rank <= 5", name="rank"),
        CheckConstraint("score >= 0 AND score <= 1", name="score"),
    )

    analysis_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("analyses.id", ondelete="CASCADE"), primary_key=True)
    region_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    make: Mapped[str] = mapped_column(Text, index=True)
    score: Mapped[float] = mapped_column(Float)


ROLES: tuple[str, ...] = ("viewer", "admin")
"""Dashboard roles: a viewer reads everything; an admin also manages users (and what later needs an admin)."""


class User(Base):
    """A person who may sign in to the dashboard; only a hash of the password is kept (argon2, PHC string)."""

    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("name"),
        CheckConstraint("role IN ('viewer', 'admin')", name="role"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class UserSession(Base):
    """A signed-in browser: the SHA-256 of the random cookie value (the value itself is never stored)."""

    __tablename__ = "user_sessions"

    token_sha256: Mapped[str] = mapped_column(CHAR(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class ApiToken(Base):
    """A bearer token for ``/api/…`` and ``/reports/…``, acting as its user; stored as the SHA-256 of the token."""

    __tablename__ = "api_tokens"
    __table_args__ = (UniqueConstraint("token_sha256"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_sha256: Mapped[str] = mapped_column(CHAR(64))
    label: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


MENTION_VIA: tuple[str, ...] = ("handle", "hashtag", "name", "model")
"""How a post's text names a make (``carspot.mentions.matcher.Via``), strongest first."""


class PostMention(Base):
    """A make named in a post's text (hashtag, handle, brand or model name), once per post and make.

    It follows its post when the post id is replaced by :func:`carspot.store.erasure.forget_posts` (ON UPDATE
    CASCADE) and goes with it when the post is deleted.
    """

    __tablename__ = "post_mentions"
    __table_args__ = (CheckConstraint("via IN ('handle', 'hashtag', 'name', 'model')", name="via"),)

    post_id: Mapped[str] = mapped_column(
        Text, ForeignKey("posts.post_id", ondelete="CASCADE", onupdate="CASCADE"), primary_key=True
    )
    make: Mapped[str] = mapped_column(Text, primary_key=True, index=True)
    via: Mapped[str] = mapped_column(Text)


class Erasure(Base):
    """One ``carspot forget`` run: who asked, when, how many posts; never which posts nor what they said."""

    __tablename__ = "erasures"
    __table_args__ = (CheckConstraint("posts_erased >= 0 AND posts_erased <= posts_requested", name="counts"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    erased_at: Mapped[datetime] = mapped_column(UtcDateTime())
    requested_by: Mapped[str] = mapped_column(Text)
    posts_requested: Mapped[int] = mapped_column(Integer)
    posts_erased: Mapped[int] = mapped_column(Integer)
