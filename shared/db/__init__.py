"""Database tables (SQLAlchemy 2), engine set-up and Alembic migrations, for Postgres and SQLite."""
