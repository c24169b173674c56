"""Thumbnails of analysed images, and the campaign a post was collected for.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

``thumbnails`` keeps one small JPEG per image (the dashboards show it), deleted in cascade with its image and
purged after the retention period. ``posts.campaign`` is the X rule's tag or a pushed post's ``campaign``;
rows written before it existed have none (NULL), which is what they were collected under.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add ``posts.campaign`` (indexed: dashboards filter by it) and the ``thumbnails`` table."""
    op.add_column("posts", sa.Column("campaign", sa.Text(), nullable=True))
    op.create_index(op.f("ix_posts_campaign"), "posts", ["campaign"])
    op.create_table(
        "thumbnails",
        sa.Column("image_sha256", sa.CHAR(64), nullable=False),
        sa.Column("jpeg", sa.LargeBinary(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("image_sha256", name=op.f("pk_thumbnails")),
        sa.ForeignKeyConstraint(
            ["image_sha256"],
            ["images.sha256"],
            name=op.f("fk_thumbnails_image_sha256_images"),
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("width > 0 AND height > 0", name=op.f("ck_thumbnails_size")),
    )
    op.create_index(op.f("ix_thumbnails_created_at"), "thumbnails", ["created_at"])


def downgrade() -> None:
    """Drop the table and the column (a plain ``DROP COLUMN``: a batch rebuild of ``posts`` is not needed)."""
    op.drop_index(op.f("ix_thumbnails_created_at"), table_name="thumbnails")
    op.drop_table("thumbnails")
    op.drop_index(op.f("ix_posts_campaign"), table_name="posts")
    op.execute("ALTER TABLE posts DROP COLUMN campaign")
