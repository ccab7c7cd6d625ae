"""The tables, and only the tables: queries live with the service that runs them."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy import (
    false as sa_false,
)
from sqlalchemy import (
    true as sa_true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db.types import ExactDecimal, UtcDateTime
from shared.events import utc_now

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Role:
    """What a user may do: their own objects (`user`), or also run the deployment (`operator`)."""

    USER = "user"
    OPERATOR = "operator"


class User(Base):
    __tablename__ = "users"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(16), default=Role.USER, server_default=Role.USER)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class TokenScope:
    READ = "read"  # GET only
    WRITE = "write"  # everything the user may do


class ApiToken(Base):
    """A named API token of a user: only its SHA-256 is kept; the secret is shown once."""

    __tablename__ = "api_tokens"
    __table_args__ = (UniqueConstraint("user_id", "name"),)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(8), default=TokenScope.WRITE)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Invite(Base):
    """An operator's invitation to sign up (sign-up mode `invite`); only the code's SHA-256 is kept."""

    __tablename__ = "invites"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))  # None: anyone holding the code
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class RateLimitWindow(Base):
    """Requests counted in the current fixed window of one key (a client address, a token): kept in
    the database so that every API process counts against the same limit."""

    __tablename__ = "rate_limit_windows"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime)
    hits: Mapped[int] = mapped_column(Integer)


class Portfolio(Base):
    __tablename__ = "portfolios"
    __table_args__ = (UniqueConstraint("user_id", "name"),)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    # The seed's Portfolio.active: an inactive portfolio's accounts are not synced on schedule.
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sa_true())


class BrokerAccount(Base):
    """One account at one broker, with its sync status.

    Its current positions are the holdings of `current_snapshot_id`; a snapshot that looks like a
    broker error rather than a real change waits in `held_snapshot_id` until confirmed or accepted.

    Two writers, split by column (docs/architecture.md, "Who writes what"): the API writes what the
    user says (portfolio, broker, label, created_at, credentials_changed_at, and `needs_reauth =
    false` with new credentials); the ledger writes the sync state (the snapshot pointers,
    held_reason, the attempt and success times, consecutive_failures, last_error, `needs_reauth =
    true` on an auth failure newer than the credentials), and only through an update fenced on
    `ledger_version` and `credentials_changed_at`.
    """

    __tablename__ = "broker_accounts"
    # Half of each page left free: the ledger updates every synced account once a batch, and an
    # update with room on its page touches no index (a HOT update).
    __table_args__ = {"postgresql_with": {"fillfactor": 50}}
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    portfolio_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("portfolios.id", ondelete="CASCADE"), index=True
    )
    broker: Mapped[str] = mapped_column(String(32))
    label: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    current_snapshot_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    positions_as_of: Mapped[datetime | None] = mapped_column(UtcDateTime)
    held_snapshot_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    held_reason: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    needs_reauth: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error: Mapped[str | None] = mapped_column(Text)
    # The API's: when the user last set credentials (with `needs_reauth = false`, in one statement).
    # On the row, so that the ledger's fenced update sees it even when it waited for the API's lock.
    credentials_changed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The ledger's fence: one more on every ledger write; a write planned on another value fails.
    ledger_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Credential(Base):
    """Broker credentials as a Fernet token: never stored, logged or returned in plaintext."""

    __tablename__ = "credentials"
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("broker_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    ciphertext: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class Schedule(Base):
    """When an account syncs on its own: `kind` interval (`interval_seconds`), cron (`cron` in
    `timezone`) or once (`run_at`), within `start_at`..`end_at`. Written by the API (what it says)
    and the scheduler (`next_run_at`, `last_run_at`, `run_count`, claimed by compare-and-set on
    `next_run_at`). `next_run_at` is None once it will fire no more (a once fired, an end passed)."""

    __tablename__ = "schedules"
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("broker_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(8), default="interval", server_default="interval")
    interval_seconds: Mapped[int | None] = mapped_column(Integer)
    cron: Mapped[str | None] = mapped_column(String(200))
    timezone: Mapped[str | None] = mapped_column(String(64))
    run_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    start_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    end_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    next_run_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    last_run_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    run_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class BrokerPause(Base):
    """A broker an operator paused (an outage at the broker): nothing is requested from it while
    this row exists. Resuming deletes it."""

    __tablename__ = "broker_pauses"
    broker: Mapped[str] = mapped_column(String(32), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    paused_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    paused_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class SnapshotStatus:
    """What became of a snapshot. As-of queries read every status but HELD and DISMISSED."""

    APPLIED = "applied"  # became the account's current positions (when it arrived, or later)
    LATE = "late"  # older than the current positions when it arrived: history only
    HELD = "held"  # looked like a broker error: waiting for the next sync or the user
    DISMISSED = "dismissed"  # held, then contradicted by the next sync
    VALID = (APPLIED, LATE)


class Snapshot(Base):
    """Point-in-time history: every snapshot received, whether or not it became current."""

    __tablename__ = "snapshots"
    __table_args__ = (Index("ix_snapshots_account_taken", "account_id", "taken_at"),)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("broker_accounts.id", ondelete="CASCADE"))
    request_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    taken_at: Mapped[datetime] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    holdings_count: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=SnapshotStatus.APPLIED, server_default="applied")
    # The HoldingsChanged that announces the snapshot (none when nothing changed), and when the outbox
    # relay had it acknowledged.
    announcement_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    announced_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Where its holdings are: its own `snapshot_holdings` rows (a snapshot that never became the
    # account's positions on arrival: late, held; or one a replay corrected), or else the account's
    # `position_versions` valid at `taken_at`, priced from `instrument_prices`.
    holdings_kept: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sa_true())
    # 16 bytes of SHA-256 of the holdings but their prices: equal hashes, same positions.
    content_hash: Mapped[bytes | None] = mapped_column(LargeBinary)


class PositionVersion(Base):
    """One position of an account from `valid_from` until the account's next version of the same
    instrument: written when it opens or changes (anything but its price). A version without a
    quantity is the position closing. The account's positions at T are its newest version of each
    instrument at or before T, for T on the chain of snapshots it applied."""

    __tablename__ = "position_versions"
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("broker_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    symbol: Mapped[str] = mapped_column(String(64), primary_key=True)
    exchange: Mapped[str] = mapped_column(String(32), primary_key=True)
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    isin: Mapped[str | None] = mapped_column(String(12))
    currency: Mapped[str] = mapped_column(String(3))
    asset_type: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[Decimal | None] = mapped_column(ExactDecimal)  # None: closed
    average_price: Mapped[Decimal] = mapped_column(ExactDecimal)


class InstrumentPrice(Base):
    """An instrument's price from `at` until its next row, shared by every account holding it:
    written when a snapshot reports it moved (`source`: the broker that reported it)."""

    __tablename__ = "instrument_prices"
    # The newest price at or before T is the first entry of a backward scan (ties: the last written).
    # On Postgres it is the table's only index: partitioned by month of `at` (migration 0016), the
    # table has no key, and `id` is unique by its sequence alone.
    __table_args__ = (Index("ix_instrument_prices_instrument_at", "symbol", "exchange", "at", "id"),)
    # Integer on SQLite: only an INTEGER PRIMARY KEY counts up by itself there.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    symbol: Mapped[str] = mapped_column(String(64))
    exchange: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    price: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    source: Mapped[str] = mapped_column(String(32))


class HistoryMove(Base):
    """An account whose history was stored before versions (migration 0014) and is not moved yet:
    its applied snapshots taken at or before `through` (its newest when the schema was upgraded).
    `portfolio-sync db upgrade` moves them into versions and prices and deletes the row in the same
    transaction (`shared/db/history_moves.py`)."""

    __tablename__ = "history_moves"
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("broker_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    through: Mapped[datetime] = mapped_column(UtcDateTime)


class SnapshotHolding(Base):
    """One instrument and how much of it, as a snapshot lists it: kept for the snapshots that keep
    their holdings (`Snapshot.holdings_kept`)."""

    __tablename__ = "snapshot_holdings"
    snapshot_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("snapshots.id", ondelete="CASCADE"), primary_key=True
    )
    symbol: Mapped[str] = mapped_column(String(64), primary_key=True)
    exchange: Mapped[str] = mapped_column(String(32), primary_key=True)
    isin: Mapped[str | None] = mapped_column(String(12))
    currency: Mapped[str] = mapped_column(String(3))
    asset_type: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[Decimal] = mapped_column(ExactDecimal)
    average_price: Mapped[Decimal] = mapped_column(ExactDecimal)
    last_price: Mapped[Decimal | None] = mapped_column(ExactDecimal)


class RawAnswer(Base):
    """A broker's answer to one sync attempt, as received (no headers; credential values blanked
    out), zlib-compressed: what `portfolio-sync replay` parses again. Written by the fetcher only;
    deleted with its account (ON DELETE CASCADE, which runs as the table's owner), or after
    RAW_ARCHIVE_RETENTION_DAYS. On Postgres partitioned by month of `received_at` (migration 0016:
    a month past the retention is dropped whole), its key (run_id, attempt, received_at)."""

    __tablename__ = "raw_answers"
    __table_args__ = (
        Index("ix_raw_answers_account_received", "account_id", "received_at"),
        Index("ix_raw_answers_received", "received_at"),
    )
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("broker_accounts.id", ondelete="CASCADE"))
    broker: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)  # zlib
    body_bytes: Mapped[int] = mapped_column(Integer)  # before compression
    # The snapshot the answer became; none when it could not be parsed.
    snapshot_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)


class SyncRun(Base):
    """One requested sync and how it ended (requested, retrying, succeeded or failed), over all its
    attempts; its id is the first SyncRequested's event id."""

    __tablename__ = "sync_runs"
    __table_args__ = (
        Index("ix_sync_runs_account_requested", "account_id", "requested_at"),
        # The operator's views: runs by status (stuck ones: `requested` for long) and by when they ended
        # (counts per broker over the last day).
        Index("ix_sync_runs_status_requested", "status", "requested_at"),
        Index("ix_sync_runs_finished", "finished_at"),
    )
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("broker_accounts.id", ondelete="CASCADE"))
    trigger: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    failure_kind: Mapped[str | None] = mapped_column(String(32))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    snapshot_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # When a stuck run was last requested again (scheduler or operator), with the same request id;
    # written only while the run is `requested` (a fenced update: the ledger owns every other change).
    rerequested_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    requested_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)  # the user, for a manual sync or import
    scheduled_for: Mapped[datetime | None] = mapped_column(UtcDateTime)  # the tick, for a scheduled one


class SyncAttempt(Base):
    """One attempt of a sync run as the fetcher reported it (a snapshot or a failure), written by the
    ledger with the event it handles; keyed by that event's id, so a redelivery adds nothing."""

    __tablename__ = "sync_attempts"
    __table_args__ = (Index("ix_sync_attempts_run", "run_id", "attempt"),)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sync_runs.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    fetcher_id: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    reported_at: Mapped[datetime] = mapped_column(UtcDateTime)  # the event's occurred_at
    outcome: Mapped[str] = mapped_column(String(16))  # snapshot, retrying, failed
    failure_kind: Mapped[str | None] = mapped_column(String(32))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    holdings_count: Mapped[int | None] = mapped_column(Integer)


REPORTED_TRADE = text("trade_id IS NOT NULL")


class Transaction(Base):
    """A trade: derived from the change between consecutive snapshots, or reported by the broker."""

    __tablename__ = "transactions"
    __table_args__ = (
        Index("ix_transactions_account_time", "account_id", "occurred_at"),
        # Reported trades only: derived ones, most of them, have no trade id to keep unique.
        Index(
            "uq_transactions_reported_trade",
            "account_id",
            "trade_id",
            unique=True,
            postgresql_where=REPORTED_TRADE,
            sqlite_where=REPORTED_TRADE,
        ),
    )
    # On Postgres the column also defaults to gen_random_uuid() (migration 0005): the ledger leaves
    # ids to the database.
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("broker_accounts.id", ondelete="CASCADE"))
    symbol: Mapped[str] = mapped_column(String(64))
    exchange: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[Decimal] = mapped_column(ExactDecimal)
    price: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    price_source: Mapped[str | None] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    origin: Mapped[str] = mapped_column(String(16))  # "derived" or "reported"
    snapshot_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    trade_id: Mapped[str | None] = mapped_column(String(64))  # the broker's id, for reported trades


class OutboxMessage(Base):
    """A message committed with the change it announces; the relay publishes it, then deletes it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_event_id", "event_id", unique=True),
        Index("ix_outbox_key_id", "message_key", "id"),  # an account's rows in order (the relay's rule)
    )
    # Integer on SQLite: only an INTEGER PRIMARY KEY counts up by itself there.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    topic: Mapped[str] = mapped_column(String(255))
    message_key: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    snapshot_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)  # what it announces: marked once relayed
    # A sweep may have published it (see services/ledger/outbox.py): look on the topic before publishing.
    in_doubt: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())


class ProcessedEvent(Base):
    """Dedupe record: an event id here was already applied by `consumer`; redelivery is a no-op."""

    __tablename__ = "processed_events"
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    consumer: Mapped[str] = mapped_column(String(64), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class DeadLetterReplay(Base):
    """A dead letter put back on its original topic: the key makes a second replay of it a no-op."""

    __tablename__ = "dead_letter_replays"
    dlq_topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    replayed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class WebhookEndpoint(Base):
    """A user's webhook endpoint for one portfolio (the API's). `secret` signs every delivery; after a
    rotation `previous_secret` signs too, until `previous_secret_until`. `enabled_at` is when the user
    last (re-)enabled it: the delivery service's disabling before then no longer counts."""

    __tablename__ = "webhook_endpoints"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    portfolio_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("portfolios.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    event_types: Mapped[str] = mapped_column(String(200))  # comma-separated, in WEBHOOK_EVENT_TYPES order
    description: Mapped[str] = mapped_column(String(200), default="")
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    enabled_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class WebhookReplay(Base):
    """A user's request to send again one logged delivery (`delivery_id`) or every delivery of the
    endpoint since `since` (the API's); the delivery service carries it out once."""

    __tablename__ = "webhook_replays"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    delivery_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class WebhookDelivery(Base):
    """One event to send to one endpoint, and how its attempts went: the delivery log (the delivery
    service's). `dedupe_key` makes an event redelivered by Kafka, or a replay carried out twice,
    one row."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at"),
        Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
    )
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    dedupe_key: Mapped[str] = mapped_column(String(100), unique=True)
    message_id: Mapped[str] = mapped_column(String(64))  # the webhook-id header: the same on a replay
    event_type: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)
    replay_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    status: Mapped[str] = mapped_column(String(16))  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class WebhookEndpointState(Base):
    """How an endpoint's deliveries go, and whether the delivery service disabled it (and why)."""

    __tablename__ = "webhook_endpoint_states"
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), primary_key=True
    )
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    failing_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(String(500))


class WebhookReplayDone(Base):
    """A replay the delivery service carried out, and how many deliveries it queued."""

    __tablename__ = "webhook_replays_done"
    replay_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_replays.id", ondelete="CASCADE"), primary_key=True
    )
    done_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    deliveries: Mapped[int] = mapped_column(Integer)
