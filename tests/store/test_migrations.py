"""The shipped migrations create exactly what tables.py declares, on both backends, and can be undone."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import CheckConstraint, Column, Integer, MetaData, inspect

from carspot.store.engine import create_engine_for
from carspot.store.migrate import current_revision, downgrade, head_revision, migrate
from carspot.store.tables import Base

TABLES = {
    "images",
    "posts",
    "analyses",
    "regions",
    "brand_predictions",
    "users",
    "user_sessions",
    "api_tokens",
    "thumbnails",
}


def _diff(url: str, metadata: MetaData) -> list[object]:
    engine = create_engine_for(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_empty_database_migrates_to_head(db_url: str) -> None:
    assert current_revision(db_url) is None
    migrate(db_url)
    assert current_revision(db_url) == head_revision() == "0005"
    engine = create_engine_for(db_url)
    try:
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_migration_matches_the_models(db_url: str) -> None:
    migrate(db_url)
    assert _diff(db_url, Base.metadata) == []


def test_the_comparison_would_see_a_difference(db_url: str) -> None:
    """Guards the test above against comparing nothing: a model change must show up."""
    migrate(db_url)
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["posts"].append_column(Column("likes", Integer, nullable=True))
    diff = _diff(db_url, changed)
    assert [d[0] for d in diff if isinstance(d, tuple)] == ["add_column"]


def test_check_constraints_match_the_models(db_url: str) -> None:
    """Alembic does not compare CHECK constraints, so their names are compared here."""
    migrate(db_url)
    engine = create_engine_for(db_url)
    try:
        inspector = inspect(engine)
        for table in Base.metadata.sorted_tables:
            declared = {c.name for c in table.constraints if isinstance(c, CheckConstraint)}
            found = {c["name"] for c in inspector.get_check_constraints(table.name)}
            assert found == declared, table.name
    finally:
        engine.dispose()


def test_migrate_is_idempotent_and_reversible(db_url: str) -> None:
    migrate(db_url)
    migrate(db_url)  # start-up of a second worker: nothing to do
    assert current_revision(db_url) == head_revision() == "0005"
    downgrade(db_url, revision="base")
    assert current_revision(db_url) is None
    engine = create_engine_for(db_url)
    try:
        assert not TABLES & set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    migrate(db_url)
    assert _diff(db_url, Base.metadata) == []


def test_in_memory_sqlite_migrates_through_its_engine() -> None:
    engine = create_engine_for("sqlite://")
    try:
        migrate(engine)
        assert current_revision(engine) == head_revision()
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_0002_keeps_what_0001_stored_as_identified_and_its_downgrade_keeps_every_row(db_url: str) -> None:
    from sqlalchemy import func, insert, select

    from carspot.store.tables import Analysis, BrandPrediction, Image, Region

    from .data import T0, sha

    migrate(db_url, revision="0001")
    engine = create_engine_for(db_url)
    try:
        with engine.begin() as conn:  # what a 0001 writer stored: no unidentified columns yet
            conn.execute(insert(Image).values(sha256=sha("old"), width=640, height=480, first_seen_at=T0))
            conn.execute(
                insert(Analysis).values(
                    id=1,
                    image_sha256=sha("old"),
                    mode="detector",
                    detector="centernet",
                    model_version="v1",
                    analyzed_at=T0,
                    duration_ms=1.0,
                    region_count=1,
                )
            )
            conn.execute(
                insert(Region).values(analysis_id=1, region_index=0, x1=0, y1=0, x2=9, y2=9, score=0.9, label="car")
            )
            conn.execute(insert(BrandPrediction).values(analysis_id=1, region_index=-1, rank=1, make="BMW", score=0.8))
        migrate(db_url)
        with engine.connect() as conn:
            assert conn.execute(select(Analysis.unidentified)).scalars().all() == [False]
            assert conn.execute(select(Region.unidentified)).scalars().all() == [False]
        downgrade(db_url, revision="0001")
        assert current_revision(db_url) == "0001"
        with engine.connect() as conn:
            assert "unidentified" not in {c["name"] for c in inspect(conn).get_columns("analyses")}
            for table in (Analysis, Region, BrandPrediction):
                assert conn.execute(select(func.count()).select_from(table.__table__)).scalar_one() == 1
    finally:
        engine.dispose()
