"""Alembic environment: always run with a connection handed over by shared.db.engine."""

from __future__ import annotations

from alembic import context

from shared.db.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `portfolio-sync db upgrade`, which opens the connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
