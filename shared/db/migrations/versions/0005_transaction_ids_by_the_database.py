"""transactions: ids default to gen_random_uuid() on Postgres

The ledger copies derived transactions in without ids and leaves them to the database: one random
UUID made in Python per transaction cost more than the row's other values together. SQLite (the
embedded mode) keeps the model's Python-side default.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 18:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("transactions", "id", server_default=sa.text("gen_random_uuid()"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("transactions", "id", server_default=None)
