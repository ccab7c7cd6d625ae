"""identity and limits: roles, named API tokens, invites, rate-limit windows, portfolio.active

- `users.role` (`user` or `operator`).
- `api_tokens`: a user holds several named tokens (scope, expiry, revocation). Each user's existing
  token moves here as a `write` token named `default`; `users.api_token_hash` goes.
- `invites`: sign-up by invitation.
- `rate_limit_windows`: request counts shared by every API process.
- `portfolios.active`: an inactive portfolio is not synced on schedule.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 08:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db.types import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("role", sa.String(length=16), server_default="user", nullable=False))
    with op.batch_alter_table("portfolios", schema=None) as batch_op:
        batch_op.add_column(sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False))

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.Column("last_used_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
        sa.UniqueConstraint("user_id", "name", name=op.f("uq_api_tokens_user_id")),
    )
    op.create_index(op.f("ix_api_tokens_user_id"), "api_tokens", ["user_id"], unique=False)
    op.execute(
        "INSERT INTO api_tokens (id, user_id, name, token_hash, scope, created_at) "
        "SELECT id, id, 'default', api_token_hash, 'write', created_at FROM users"
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint("uq_users_api_token_hash", type_="unique")
        batch_op.drop_column("api_token_hash")

    op.create_table(
        "invites",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("used_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_invites_created_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invites")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_invites_code_hash")),
    )
    op.create_table(
        "rate_limit_windows",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("window_start", UtcDateTime(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_limit_windows")),
    )


def downgrade() -> None:
    op.drop_table("rate_limit_windows")
    op.drop_table("invites")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("api_token_hash", sa.String(length=64), nullable=True))
    op.execute(
        "UPDATE users SET api_token_hash = (SELECT token_hash FROM api_tokens "
        "WHERE api_tokens.user_id = users.id ORDER BY created_at LIMIT 1)"
    )
    op.execute("UPDATE users SET api_token_hash = 'revoked:' || id WHERE api_token_hash IS NULL")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("api_token_hash", nullable=False)
        batch_op.create_unique_constraint("uq_users_api_token_hash", ["api_token_hash"])
    op.drop_index(op.f("ix_api_tokens_user_id"), table_name="api_tokens")
    op.drop_table("api_tokens")
    with op.batch_alter_table("portfolios", schema=None) as batch_op:
        batch_op.drop_column("active")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("role")
