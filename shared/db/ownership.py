"""Who writes what, as data: each table's one owning service, and exactly what each service may
write and read. `portfolio-sync db roles` grants each service's Postgres role this and nothing
more; docs/architecture.md#who-writes-what shows the same table (rendered by `markdown_table`, and
a unit test keeps the two equal).

The owner inserts a table's rows (and deletes them, where anyone does). A second writer gets only
the columns it owns (an UPDATE grant per column) and fences its update; the exceptions are written
beside the grants below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Service = Literal["api", "scheduler", "ledger", "fetcher", "webhooks"]
# The services that connect to the database (the fetcher for its archive of raw answers only).
SERVICES: tuple[Service, ...] = ("api", "scheduler", "ledger", "fetcher", "webhooks")

# Every service reads it: a service refuses to start on an out-of-date schema.
SCHEMA_VERSION_TABLE = "alembic_version"


@dataclass(frozen=True)
class Writes:
    """What one service may write in one table: insert rows, delete rows, update which columns
    (`EVERY_COLUMN`, or the names of the columns it owns)."""

    insert: bool = False
    delete: bool = False
    update: tuple[str, ...] | Literal["*"] = ()

    def describe(self) -> str:
        parts = [name for name, granted in (("INSERT", self.insert), ("DELETE", self.delete)) if granted]
        if self.update == EVERY_COLUMN:
            parts.append("UPDATE")
        elif self.update:
            parts.append("UPDATE (" + ", ".join(f"`{c}`" for c in self.update) + ")")
        return ", ".join(parts)


EVERY_COLUMN: Literal["*"] = "*"
OWNS = Writes(insert=True, delete=True, update=EVERY_COLUMN)
APPENDS = Writes(insert=True)


@dataclass(frozen=True)
class Access:
    """One service's grants: the tables it reads (`EVERY_TABLE`, or their names) and its writes."""

    reads: frozenset[str] | Literal["*"]
    writes: Mapping[str, Writes]


EVERY_TABLE: Literal["*"] = "*"

_API_TABLES = (
    "users",
    "api_tokens",
    "invites",
    "rate_limit_windows",
    "portfolios",
    "credentials",
    "broker_pauses",
    "dead_letter_replays",
    "webhook_endpoints",
    "webhook_replays",
)
_LEDGER_TABLES = (
    "snapshots",
    "snapshot_holdings",
    "position_versions",
    "instrument_prices",
    "transactions",
    "outbox",
    "processed_events",
    "sync_attempts",
    "history_moves",
)
# broker_accounts: what the ledger learns from syncs; `needs_reauth` only to set it (fenced), and
# `ledger_version` is its fence. The API's columns are the account's identity and its credentials time.
LEDGER_ACCOUNT_COLUMNS = (
    "current_snapshot_id",
    "positions_as_of",
    "held_snapshot_id",
    "held_reason",
    "last_attempt_at",
    "last_success_at",
    "consecutive_failures",
    "needs_reauth",
    "last_error",
    "ledger_version",
)
API_ACCOUNT_COLUMNS = ("label", "credentials_changed_at", "needs_reauth")
# transactions: what a derived trade says beside its instrument and snapshot (a replay corrects them).
TRADE_COLUMNS = ("kind", "quantity", "price", "price_source", "currency")
# schedules: the API writes what a schedule says (and its next fire when that changes); the
# scheduler claims fires by compare-and-set on `next_run_at`.
API_SCHEDULE_COLUMNS = (
    "kind",
    "interval_seconds",
    "cron",
    "timezone",
    "run_at",
    "start_at",
    "end_at",
    "enabled",
    "next_run_at",
)
SCHEDULER_SCHEDULE_COLUMNS = ("next_run_at", "last_run_at", "run_count")
# sync_runs: a requester inserts the run; the ledger writes its outcome (and inserts a run nobody
# recorded); a stuck run's re-request is marked by whoever re-requests it; the API closes a run whose
# request it could not publish.
LEDGER_RUN_COLUMNS = (
    "status",
    "attempts",
    "finished_at",
    "snapshot_id",
    "failure_kind",
    "failure_reason",
    "next_attempt_at",
)
API_RUN_COLUMNS = ("status", "finished_at", "failure_kind", "failure_reason", "rerequested_at")

# The delivery log and each endpoint's state: what the webhook delivery service learns by sending.
_WEBHOOKS_TABLES = ("webhook_deliveries", "webhook_endpoint_states", "webhook_replays_done")

OWNERS: Mapping[str, Service] = {
    **dict.fromkeys(_API_TABLES, "api"),
    "broker_accounts": "api",
    "schedules": "api",
    **dict.fromkeys(_LEDGER_TABLES, "ledger"),
    "sync_runs": "ledger",
    "raw_answers": "fetcher",
    **dict.fromkeys(_WEBHOOKS_TABLES, "webhooks"),
}

ACCESS: Mapping[Service, Access] = {
    "api": Access(
        reads=EVERY_TABLE,
        writes={
            **dict.fromkeys(_API_TABLES, OWNS),
            "broker_accounts": Writes(insert=True, delete=True, update=API_ACCOUNT_COLUMNS),
            "schedules": Writes(insert=True, delete=True, update=API_SCHEDULE_COLUMNS),
            "sync_runs": Writes(insert=True, update=API_RUN_COLUMNS),
            # Deleting an account takes its unrelayed announcements with it (services/api/removal.py);
            # the rest of the ledger's rows go by ON DELETE CASCADE, which runs as the table's owner.
            "outbox": Writes(delete=True),
        },
    ),
    "scheduler": Access(
        reads=frozenset(
            {"schedules", "broker_accounts", "portfolios", "credentials", "broker_pauses", "sync_runs"}
        ),
        writes={
            "schedules": Writes(update=SCHEDULER_SCHEDULE_COLUMNS),
            "sync_runs": Writes(insert=True, update=("rerequested_at",)),
        },
    ),
    "ledger": Access(
        reads=frozenset({*_LEDGER_TABLES, "broker_accounts", "sync_runs"}),
        writes={
            # History is appended, and rewritten only by a replay (`portfolio-sync replay`): a
            # snapshot changes its status and announcement, and a replay replaces its holdings.
            # Unchanged snapshots past SNAPSHOT_RETENTION_DAYS are deleted (services/ledger/retention.py).
            "snapshots": Writes(
                insert=True,
                delete=True,
                update=("status", "announcement_id", "announced_at", "holdings_count", "holdings_kept"),
            ),
            "snapshot_holdings": Writes(insert=True, delete=True),
            # Versions are appended; a replay that corrects the current snapshot rewrites its own.
            "position_versions": Writes(insert=True, delete=True),
            "instrument_prices": APPENDS,
            # Derived transactions are appended; a replay's correction derives a snapshot's again:
            # a changed trade keeps its row (and id), a trade gone is deleted.
            "transactions": Writes(insert=True, delete=True, update=TRADE_COLUMNS),
            **dict.fromkeys(("processed_events", "sync_attempts"), APPENDS),
            # The accounts whose history stored before versions is still to move (migration 0014):
            # moved, and their rows deleted, by `db upgrade` as the schema's owner (an operator's
            # task, like `keys rotate`, which also bumps the moved accounts' `ledger_version`, the
            # ledger's fence); the history is the ledger's, so is the list, but the ledger never
            # writes it: the grant is the owner's minimum.
            "history_moves": APPENDS,
            # The relay locks its rows (FOR UPDATE needs an UPDATE grant) and deletes them once relayed.
            "outbox": OWNS,
            "broker_accounts": Writes(update=LEDGER_ACCOUNT_COLUMNS),
            "sync_runs": Writes(insert=True, update=LEDGER_RUN_COLUMNS),
        },
    ),
    # Raw answers are kept as received, never rewritten: appended, and deleted after the retention.
    "fetcher": Access(
        reads=frozenset({"raw_answers"}),
        writes={"raw_answers": Writes(insert=True, delete=True)},
    ),
    # The endpoints and replay requests it reads are the API's; an account's portfolio says whose
    # endpoints an event goes to.
    "webhooks": Access(
        reads=frozenset({"webhook_endpoints", "webhook_replays", "broker_accounts"}),
        writes=dict.fromkeys(_WEBHOOKS_TABLES, OWNS),
    ),
}


def reads_of(service: Service, tables: frozenset[str]) -> frozenset[str]:
    """The tables of `tables` that `service` may read (the schema version's included)."""
    reads = ACCESS[service].reads
    readable = tables if reads == EVERY_TABLE else tables & (reads | set(ACCESS[service].writes))
    return readable | {SCHEMA_VERSION_TABLE}


def markdown_table() -> str:
    """The ownership table as docs/architecture.md shows it: a row per table, its owner and every
    service's writes (the owner's first)."""
    lines = ["| Table | Owner | Writes granted |", "|---|---|---|"]
    for table in sorted(OWNERS, key=lambda t: (SERVICES.index(OWNERS[t]), t)):
        owner = OWNERS[table]
        writers = sorted(
            (s for s in SERVICES if table in ACCESS[s].writes), key=lambda s: (s != owner, SERVICES.index(s))
        )
        grants = "; ".join(f"{s}: {ACCESS[s].writes[table].describe()}" for s in writers)
        lines.append(f"| `{table}` | {owner} | {grants} |")
    return "\n".join(lines)
