"""Text mentions and the erasure log: ``post_mentions`` and ``erasures``.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-06

``post_mentions`` holds the makes a post's text names (issue 26), written with the post; posts stored before it
have none (their text is still there, so a re-run of the matcher could fill them, but nothing does it yet).
``erasures`` logs each ``carspot forget``: when, who, how many posts, never which.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create both tables, empty."""
    op.create_table(
        "post_mentions",
        sa.Column("post_id", sa.Text(), nullable=False),
        sa.Column("make", sa.Text(), nullable=False),
        sa.Column("via", sa.Text(), nullable=False),
        sa.CheckConstraint("via IN ('handle', 'hashtag', 'name', 'model')", name=op.f("ck_post_mentions_via")),
        sa.ForeignKeyConstraint(
            ["post_id"],
            ["posts.post_id"],
            name=op.f("fk_post_mentions_post_id_posts"),
            ondelete="CASCADE",
            onupdate="CASCADE",
        ),
        sa.PrimaryKeyConstraint("post_id", "make", name=op.f("pk_post_mentions")),
    )
    op.create_index(op.f("ix_post_mentions_make"), "post_mentions", ["make"], unique=False)
    op.create_table(
        "erasures",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("erased_at", _TS, nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("posts_requested", sa.Integer(), nullable=False),
        sa.Column("posts_erased", sa.Integer(), nullable=False),
        sa.CheckConstraint("posts_erased >= 0 AND posts_erased <= posts_requested", name=op.f("ck_erasures_counts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasures")),
    )


def downgrade() -> None:
    """Drop both (the mentions and the log are lost; posts and analyses are untouched)."""
    op.drop_table("erasures")
    op.drop_index(op.f("ix_post_mentions_make"), table_name="post_mentions")
    op.drop_table("post_mentions")
