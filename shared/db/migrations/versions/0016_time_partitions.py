"""instrument_prices and raw_answers partitioned by month on Postgres; prices without an id index

The two tables that grow with time become range-partitioned by their time column (`at`,
`received_at`), one partition a month in schema `history_partitions` (out of the application's
schema: the models describe the parents only), a first partition for every time before the
months and a last one for every time after them (`<table>_from_<YYYY_MM>`, not a DEFAULT partition,
which would make a read of the newest row before a time probe every month), so that an insert never
fails for want of a month. `create_history_partitions(table, months)` creates the partitions of this
month and the `months` after it; the owning services call it hourly (the ledger for prices, the
fetcher for raw answers); it runs as the schema's owner (SECURITY DEFINER), since only a table's
owner may add partitions to it. `drop_raw_answer_partitions(before)` drops the raw answers' months
that ended before a time: retention without deleting row by row. Each runs only for a role granted
the matching write on the table (INSERT to create months, DELETE to drop them): no grant of its
own, so shared/db/ownership.py still says alone who may do what.

instrument_prices loses its primary key on `id`: the index (symbol, exchange, at, id) is the one
every read uses and `id` stays unique by its sequence (on a partitioned table a key must hold the
partition column anyway). One index a price row instead of two.

Online for tables with rows: the old table becomes the first partition (attached, not copied: a
read-only scan checks its rows fit), covering every time up to next month. SQLite (the embedded
mode) keeps plain tables: nothing changes there.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 17:00:00
"""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

SCHEMA = "history_partitions"
MONTHS_AHEAD = 2

_CREATE_PARTITIONS = """
CREATE FUNCTION {app}.create_history_partitions(parent text, months integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '10s' AS $$
DECLARE
    first timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
    wanted timestamp := first + make_interval(months => months + 1);
    later text;
    month timestamp;
    name text;
    has_rows boolean;
    created integer := 0;
BEGIN
    IF parent NOT IN ('instrument_prices', 'raw_answers') THEN
        RAISE EXCEPTION 'not a table partitioned by month: %', parent;
    END IF;
    IF NOT has_table_privilege(session_user, format('{app}.%I', parent), 'INSERT') THEN
        RAISE EXCEPTION 'only a role that may insert into % creates its months', parent
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- Every time after the months made so far is in one partition, `<parent>_from_<YYYY_MM>`:
    -- unlike a DEFAULT partition it keeps the partitions ordered, so that the newest price before
    -- a time is read from one month's index, not from every month's.
    SELECT c.relname INTO later FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = format('{app}.%I', parent)::regclass AND starts_with(c.relname, parent || '_from_');
    IF later IS NOT NULL THEN
        IF to_date(right(later, 7), 'YYYY_MM') >= wanted THEN
            RETURN 0;  -- the months wanted are made (or covered by the first partition)
        END IF;
        EXECUTE format('SELECT EXISTS (SELECT FROM {schema}.%I)', later) INTO has_rows;
        IF has_rows THEN
            RETURN 0;  -- rows dated ahead of their months stay there, read and pruned as well
        END IF;
        EXECUTE format('DROP TABLE {schema}.%I', later);
    END IF;
    FOR i IN 0..months LOOP
        month := first + make_interval(months => i);
        name := parent || '_' || to_char(month, 'YYYY_MM');
        CONTINUE WHEN to_regclass(format('{schema}.%I', name)) IS NOT NULL;
        BEGIN
            EXECUTE format(
                'CREATE TABLE {schema}.%I PARTITION OF {app}.%I FOR VALUES FROM (%L) TO (%L)',
                name, parent, month AT TIME ZONE 'UTC', (month + interval '1 month') AT TIME ZONE 'UTC'
            );
            created := created + 1;
        EXCEPTION WHEN invalid_object_definition THEN
            NULL;  -- the first partition covers it (the table's rows before migration 0016)
        END;
    END LOOP;
    EXECUTE format(
        'CREATE TABLE {schema}.%I PARTITION OF {app}.%I FOR VALUES FROM (%L) TO (MAXVALUE)',
        parent || '_from_' || to_char(wanted, 'YYYY_MM'), parent, wanted AT TIME ZONE 'UTC'
    );
    RETURN created;
END $$
"""

_DROP_RAW_ANSWERS = """
CREATE FUNCTION {app}.drop_raw_answer_partitions(before timestamptz) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    part record;
    dropped integer := 0;
BEGIN
    IF NOT has_table_privilege(session_user, '{app}.raw_answers', 'DELETE') THEN
        RAISE EXCEPTION 'only a role that may delete raw answers drops their months'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    FOR part IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = '{app}.raw_answers'::regclass
          AND c.relname ~ '^raw_answers_[0-9]{{4}}_[0-9]{{2}}$'
    LOOP
        CONTINUE WHEN to_date(right(part.relname, 7), 'YYYY_MM') + interval '1 month'
            > before AT TIME ZONE 'UTC';
        EXECUTE format('DROP TABLE {schema}.%I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite: plain tables
    app = op.get_bind().exec_driver_sql("SELECT current_schema()").scalar_one()
    op.execute(f"CREATE SCHEMA {SCHEMA}")
    op.execute(_CREATE_PARTITIONS.format(app=app, schema=SCHEMA))
    op.execute(_DROP_RAW_ANSWERS.format(app=app, schema=SCHEMA))
    _partition_prices()
    _partition_raw_answers()
    for table in ("instrument_prices", "raw_answers"):
        op.execute(f"SELECT create_history_partitions('{table}', {MONTHS_AHEAD})")


def _month_start(offset: int) -> str:
    """The first instant (UTC) of this month plus `offset` months."""
    now = datetime.now(UTC)
    months = now.year * 12 + now.month - 1 + offset
    return datetime(months // 12, months % 12 + 1, 1, tzinfo=UTC).isoformat()


def _keep_as_first_partition(table: str) -> bool:
    """Move `table` (renamed `<table>_legacy` first) into the partitions' schema if it has rows, to
    be attached as the partition of every time up to next month; else drop it."""
    has_rows = op.get_bind().exec_driver_sql(f"SELECT EXISTS (SELECT FROM {table})").scalar_one()
    if not has_rows:
        op.execute(f"DROP TABLE {table}")
        return False
    op.execute(f"ALTER TABLE {table} RENAME TO {table}_legacy")
    op.execute(f"ALTER TABLE {table}_legacy SET SCHEMA {SCHEMA}")
    return True


def _partition_prices() -> None:
    # The id sequence outlives the old table: the new one draws from it.
    op.execute("ALTER SEQUENCE instrument_prices_id_seq OWNED BY NONE")
    op.execute("ALTER INDEX ix_instrument_prices_instrument_at RENAME TO ix_instrument_prices_legacy_at")
    op.execute("ALTER TABLE instrument_prices DROP CONSTRAINT pk_instrument_prices")
    legacy = _keep_as_first_partition("instrument_prices")
    op.execute(
        """
        CREATE TABLE instrument_prices (
            -- The 8-byte columns first: no padding before them (8 bytes a row of 70).
            at timestamptz NOT NULL,
            id bigint NOT NULL DEFAULT nextval('instrument_prices_id_seq'),
            price numeric(38, 18),
            symbol varchar(64) NOT NULL,
            exchange varchar(32) NOT NULL,
            source varchar(32) NOT NULL
        ) PARTITION BY RANGE (at)
        """
    )
    op.execute("ALTER SEQUENCE instrument_prices_id_seq OWNED BY instrument_prices.id")
    op.execute(
        "CREATE INDEX ix_instrument_prices_instrument_at ON instrument_prices (symbol, exchange, at, id)"
    )
    _attach_first("instrument_prices", legacy)


def _partition_raw_answers() -> None:
    op.execute("ALTER TABLE raw_answers DROP CONSTRAINT pk_raw_answers")
    for index in ("ix_raw_answers_account_received", "ix_raw_answers_received"):
        op.execute(f"ALTER INDEX {index} RENAME TO {index.replace('raw_answers', 'raw_answers_legacy')}")
    # The parent's foreign key is cloned onto the partition when it is attached.
    op.execute("ALTER TABLE raw_answers DROP CONSTRAINT fk_raw_answers_account_id_broker_accounts")
    legacy = _keep_as_first_partition("raw_answers")
    op.execute(
        """
        CREATE TABLE raw_answers (
            run_id uuid NOT NULL,
            attempt integer NOT NULL,
            account_id uuid NOT NULL,
            broker varchar(32) NOT NULL,
            received_at timestamptz NOT NULL,
            status_code integer NOT NULL,
            body bytea NOT NULL,
            body_bytes integer NOT NULL,
            snapshot_id uuid,
            -- A key must hold the partition column: (run, attempt) alone is unique per month.
            CONSTRAINT pk_raw_answers PRIMARY KEY (run_id, attempt, received_at),
            CONSTRAINT fk_raw_answers_account_id_broker_accounts FOREIGN KEY (account_id)
                REFERENCES broker_accounts (id) ON DELETE CASCADE
        ) PARTITION BY RANGE (received_at)
        """
    )
    op.execute("CREATE INDEX ix_raw_answers_account_received ON raw_answers (account_id, received_at)")
    op.execute("CREATE INDEX ix_raw_answers_received ON raw_answers (received_at)")
    _attach_first("raw_answers", legacy)


def _attach_first(table: str, legacy: bool) -> None:
    """The partition of every time before the months: the old table if it had rows (up to next
    month), else an empty one (up to this month)."""
    if legacy:
        # Its matching indexes become the parent's partitions of them; the others are built.
        op.execute(
            f"ALTER TABLE {table} ATTACH PARTITION {SCHEMA}.{table}_legacy "
            f"FOR VALUES FROM (MINVALUE) TO ('{_month_start(1)}')"
        )
    else:
        op.execute(
            f"CREATE TABLE {SCHEMA}.{table}_before PARTITION OF {table} "
            f"FOR VALUES FROM (MINVALUE) TO ('{_month_start(0)}')"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, key in (("instrument_prices", "id"), ("raw_answers", "run_id, attempt")):
        op.execute(f"CREATE TABLE {table}_plain (LIKE {table} INCLUDING DEFAULTS)")
        op.execute(f"INSERT INTO {table}_plain SELECT * FROM {table}")
        if table == "instrument_prices":
            op.execute("ALTER SEQUENCE instrument_prices_id_seq OWNED BY NONE")
        op.execute(f"DROP TABLE {table}")
        op.execute(f"ALTER TABLE {table}_plain RENAME TO {table}")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY ({key})")
    op.execute("ALTER SEQUENCE instrument_prices_id_seq OWNED BY instrument_prices.id")
    op.execute(
        "CREATE INDEX ix_instrument_prices_instrument_at ON instrument_prices (symbol, exchange, at, id)"
    )
    op.execute(
        "ALTER TABLE raw_answers ADD CONSTRAINT fk_raw_answers_account_id_broker_accounts "
        "FOREIGN KEY (account_id) REFERENCES broker_accounts (id) ON DELETE CASCADE"
    )
    op.execute("CREATE INDEX ix_raw_answers_account_received ON raw_answers (account_id, received_at)")
    op.execute("CREATE INDEX ix_raw_answers_received ON raw_answers (received_at)")
    op.execute("DROP FUNCTION create_history_partitions(text, integer)")
    op.execute("DROP FUNCTION drop_raw_answer_partitions(timestamptz)")
    op.execute(f"DROP SCHEMA {SCHEMA}")
