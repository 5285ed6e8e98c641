"""Persistence: SQLAlchemy 2.0 models, engines and the unit of work, Alembic migrations."""
