"""Unidentified cars: ``analyses.unidentified`` and ``regions.unidentified``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06

A car whose best make is below the confidence the analysis asks for (``CARSPOT_MIN_BRAND_CONFIDENCE``) keeps its
top-5 but is marked, so brand share counts only confident makes and dashboards count unidentified cars apart.
Rows written before it existed are read as identified (the server default), which is what they were shown as.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the two flags, false for every existing row."""
    for table in ("analyses", "regions"):
        op.add_column(table, sa.Column("unidentified", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    """Drop them with a plain ``ALTER TABLE … DROP COLUMN`` (SQLite >= 3.35 has it): a batch rebuild would drop
    the old ``analyses`` table, and with foreign keys on, SQLite deletes its regions and brands in cascade."""
    for table in ("regions", "analyses"):
        op.execute(f"ALTER TABLE {table} DROP COLUMN unidentified")
