"""Initial schema: images, posts, analyses, regions, brand_predictions.

Revision ID: 0001
Revises:
Create Date: 2025-11-22

Written by hand with the names ``tables.py`` gets from its naming convention (``op.f`` marks them final
so the convention is not applied twice); a test checks with Alembic's ``compare_metadata`` that the two
agree on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the five tables and the indexes the dashboards query by."""
    op.create_table(
        "images",
        sa.Column("sha256", sa.CHAR(64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("first_seen_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_images")),
        sa.CheckConstraint("width > 0 AND height > 0", name=op.f("ck_images_size")),
    )
    op.create_table(
        "posts",
        sa.Column("post_id", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("author", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("posted_at", _TS, nullable=True),
        sa.Column("ingested_at", _TS, nullable=False),
        sa.Column("stored_at", _TS, server_default=sa.func.now(), nullable=False),
        sa.Column("image_sha256", sa.CHAR(64), nullable=False),
        sa.PrimaryKeyConstraint("post_id", name=op.f("pk_posts")),
        sa.ForeignKeyConstraint(["image_sha256"], ["images.sha256"], name=op.f("fk_posts_image_sha256_images")),
    )
    op.create_index(op.f("ix_posts_ingested_at"), "posts", ["ingested_at"])
    op.create_index(op.f("ix_posts_image_sha256"), "posts", ["image_sha256"])
    op.create_table(
        "analyses",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("image_sha256", sa.CHAR(64), nullable=False),
        sa.Column("mode", sa.Text(), nullable=False),
        sa.Column("detector", sa.Text(), nullable=False),
        sa.Column("model_version", sa.Text(), nullable=False),
        sa.Column("analyzed_at", _TS, nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("region_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analyses")),
        sa.ForeignKeyConstraint(["image_sha256"], ["images.sha256"], name=op.f("fk_analyses_image_sha256_images")),
        sa.UniqueConstraint(
            "image_sha256", "mode", "model_version", name=op.f("uq_analyses_image_sha256_mode_model_version")
        ),
        sa.CheckConstraint("mode IN ('standard', 'region-search', 'detector')", name=op.f("ck_analyses_mode")),
        sa.CheckConstraint("region_count >= 0", name=op.f("ck_analyses_region_count")),
        sa.CheckConstraint("duration_ms >= 0", name=op.f("ck_analyses_duration_ms")),
    )
    op.create_index(op.f("ix_analyses_analyzed_at"), "analyses", ["analyzed_at"])
    op.create_table(
        "regions",
        sa.Column("analysis_id", _ID, nullable=False),
        sa.Column("region_index", sa.Integer(), nullable=False),
        sa.Column("x1", sa.Float(), nullable=False),
        sa.Column("y1", sa.Float(), nullable=False),
        sa.Column("x2", sa.Float(), nullable=False),
        sa.Column("y2", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("analysis_id", "region_index", name=op.f("pk_regions")),
        sa.ForeignKeyConstraint(
            ["analysis_id"], ["analyses.id"], name=op.f("fk_regions_analysis_id_analyses"), ondelete="CASCADE"
        ),
        sa.CheckConstraint("region_index >= 0", name=op.f("ck_regions_region_index")),
        sa.CheckConstraint("x1 >= 0 AND y1 >= 0 AND x1 <= x2 AND y1 <= y2", name=op.f("ck_regions_box")),
        sa.CheckConstraint("score >= 0 AND score <= 1", name=op.f("ck_regions_score")),
    )
    op.create_table(
        "brand_predictions",
        sa.Column("analysis_id", _ID, nullable=False),
        sa.Column("region_index", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("make", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("analysis_id", "region_index", "rank", name=op.f("pk_brand_predictions")),
        sa.ForeignKeyConstraint(
            ["analysis_id"],
            ["analyses.id"],
            name=op.f("fk_brand_predictions_analysis_id_analyses"),
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("region_index >= -1", name=op.f("ck_brand_predictions_region_index")),
        sa.CheckConstraint("rank >= 1 AND rank <= 5", name=op.f("ck_brand_predictions_rank")),
        sa.CheckConstraint("score >= 0 AND score <= 1", name=op.f("ck_brand_predictions_score")),
    )
    op.create_index(op.f("ix_brand_predictions_make"), "brand_predictions", ["make"])


def downgrade() -> None:
    """Drop everything, children first."""
    op.drop_index(op.f("ix_brand_predictions_make"), table_name=op.f("brand_predictions"))
    op.drop_table("brand_predictions")
    op.drop_table("regions")
    op.drop_index(op.f("ix_analyses_analyzed_at"), table_name=op.f("analyses"))
    op.drop_table("analyses")
    op.drop_index(op.f("ix_posts_image_sha256"), table_name=op.f("posts"))
    op.drop_index(op.f("ix_posts_ingested_at"), table_name=op.f("posts"))
    op.drop_table("posts")
    op.drop_table("images")
