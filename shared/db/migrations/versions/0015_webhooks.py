"""webhooks: endpoints and replay requests (the API's), the delivery log, endpoint states and
replays carried out (the webhook delivery service's)

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db.types import UtcDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def _endpoint_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["endpoint_id"],
        ["webhook_endpoints.id"],
        name=f"fk_{table}_endpoint_id_webhook_endpoints",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("portfolio_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("event_types", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("previous_secret", sa.String(length=100), nullable=True),
        sa.Column("previous_secret_until", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("enabled_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["portfolio_id"],
            ["portfolios.id"],
            name="fk_webhook_endpoints_portfolio_id_portfolios",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_endpoints"),
    )
    op.create_index("ix_webhook_endpoints_portfolio_id", "webhook_endpoints", ["portfolio_id"])
    op.create_table(
        "webhook_replays",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("delivery_id", sa.Uuid(), nullable=True),
        sa.Column("since", UtcDateTime(), nullable=True),
        sa.Column("requested_at", UtcDateTime(), nullable=False),
        _endpoint_fk("webhook_replays"),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_replays"),
    )
    op.create_index("ix_webhook_replays_endpoint_id", "webhook_replays", ["endpoint_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=100), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("replay_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=True),
        sa.Column("last_attempt_at", UtcDateTime(), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("delivered_at", UtcDateTime(), nullable=True),
        _endpoint_fk("webhook_deliveries"),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.UniqueConstraint("dedupe_key", name="uq_webhook_deliveries_dedupe_key"),
    )
    op.create_index(
        "ix_webhook_deliveries_endpoint_created", "webhook_deliveries", ["endpoint_id", "created_at"]
    )
    op.create_index("ix_webhook_deliveries_status_next", "webhook_deliveries", ["status", "next_attempt_at"])
    op.create_table(
        "webhook_endpoint_states",
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("failing_since", UtcDateTime(), nullable=True),
        sa.Column("last_success_at", UtcDateTime(), nullable=True),
        sa.Column("disabled_at", UtcDateTime(), nullable=True),
        sa.Column("disabled_reason", sa.String(length=500), nullable=True),
        _endpoint_fk("webhook_endpoint_states"),
        sa.PrimaryKeyConstraint("endpoint_id", name="pk_webhook_endpoint_states"),
    )
    op.create_table(
        "webhook_replays_done",
        sa.Column("replay_id", sa.Uuid(), nullable=False),
        sa.Column("done_at", UtcDateTime(), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["replay_id"],
            ["webhook_replays.id"],
            name="fk_webhook_replays_done_replay_id_webhook_replays",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("replay_id", name="pk_webhook_replays_done"),
    )


def downgrade() -> None:
    op.drop_table("webhook_replays_done")
    op.drop_table("webhook_endpoint_states")
    op.drop_index("ix_webhook_deliveries_status_next", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_endpoint_created", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_webhook_replays_endpoint_id", table_name="webhook_replays")
    op.drop_table("webhook_replays")
    op.drop_index("ix_webhook_endpoints_portfolio_id", table_name="webhook_endpoints")
    op.drop_table("webhook_endpoints")
