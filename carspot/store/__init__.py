"""SQLAlchemy tables, Alembic migrations, idempotent writes and the read queries dashboards use."""
