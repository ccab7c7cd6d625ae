"""Operator tasks behind `portfolio-sync db upgrade`, `db roles`, `topics create`, `keys rotate` and
`dlq replay`."""

from __future__ import annotations

import sys
from datetime import datetime

from sqlalchemy.engine import make_url

from services.key_rotation import RotationReport, rotate_credentials
from shared import topics
from shared.bus.kafka import create_topics
from shared.credentials import CredentialCipher
from shared.db.engine import assert_schema_current, create_engine, session_factory, upgrade_schema
from shared.db.grants import RoleSetupError, ServiceRole, grant_service_roles
from shared.db.history_moves import MoveProgress, accounts_to_move, move_history
from shared.db.ownership import SERVICES
from shared.settings import Settings


async def upgrade_database(settings: Settings, *, history_batch: int) -> None:
    """The schema, then the history stored before versions moved into them (migration 0014), a batch
    of `history_batch` accounts per transaction: the services may run meanwhile, and a run stopped
    anywhere is continued by the next `db upgrade`. Progress on stderr."""
    engine = create_engine(settings.database_url)
    try:
        await upgrade_schema(engine)
        print("database schema is up to date", flush=True)
        if await accounts_to_move(engine):
            moved = await move_history(engine, accounts_per_batch=history_batch, on_batch=_print_moved)
            print(f"history moved into versions: {moved.describe()}")
    finally:
        await engine.dispose()


def _print_moved(progress: MoveProgress) -> None:
    print(f"db upgrade: history {progress.describe()}", file=sys.stderr, flush=True)


def service_roles(settings: Settings) -> list[ServiceRole]:
    """The role of each service whose own database URL is set (`<SERVICE>_DATABASE_URL`): its user
    and password. Each must name DATABASE_URL's database, as a user other than DATABASE_URL's."""
    owner = make_url(settings.database_url)
    roles = []
    for service in SERVICES:
        url = settings.service_database_url(service)
        if url == settings.database_url:
            continue
        own = make_url(url)
        variable = f"{service.upper()}_DATABASE_URL"
        if own.database != owner.database:
            raise RoleSetupError(
                f"{variable} names database {own.database!r}, DATABASE_URL {owner.database!r}: grants "
                "are made in DATABASE_URL's"
            )
        if own.username is None or own.username == owner.username:
            raise RoleSetupError(f"{variable} must connect as a user of its own, not DATABASE_URL's")
        roles.append(ServiceRole(service=service, name=own.username, password=own.password or ""))
    return roles


async def grant_database_roles(settings: Settings) -> int:
    """`db roles`: each service's role, granted its writes; exit status 2 when misconfigured."""
    if not settings.database_url.startswith("postgresql"):
        print("portfolio-sync db roles: service roles need Postgres (DATABASE_URL)", file=sys.stderr)
        return 2
    try:
        roles = service_roles(settings)
    except RoleSetupError as exc:
        print(f"portfolio-sync db roles: {exc}", file=sys.stderr)
        return 2
    if not roles:
        print(
            "no service has a database URL of its own (API_DATABASE_URL, SCHEDULER_DATABASE_URL, "
            "LEDGER_DATABASE_URL, FETCHER_DATABASE_URL, WEBHOOKS_DATABASE_URL): every service connects "
            "as DATABASE_URL's role; nothing to grant"
        )
        return 0
    engine = create_engine(settings.database_url)
    try:
        await assert_schema_current(engine)
        done = await grant_service_roles(engine, roles)
    except RoleSetupError as exc:
        print(f"portfolio-sync db roles: {exc}", file=sys.stderr)
        return 2
    finally:
        await engine.dispose()
    for line in done:
        print(line)
    return 0


async def create_kafka_topics(settings: Settings, brokers: list[str]) -> None:
    wanted = topics.all_topics(brokers)
    created = await create_topics(
        settings.bootstrap_servers,
        wanted,
        partitions=settings.kafka_topic_partitions,
        namespace=settings.kafka_namespace,
        replication_factor=settings.kafka_replication_factor,
        min_insync_replicas=settings.kafka_min_insync_replicas,
    )
    print(f"{len(created)} topic(s) created, {len(wanted) - len(created)} already there")
    for name in created:
        print(f"  + {name}")


async def rotate_credential_keys(settings: Settings, *, batch_size: int) -> int:
    """Re-encrypt every stored credential under the first of CREDENTIALS_KEYS; progress on stderr,
    counts on stdout. Exit status 1 when some credentials no configured key opens (listed by account)."""
    cipher = CredentialCipher(settings.credentials_keys.get_secret_value())
    engine = create_engine(settings.database_url)
    try:
        await assert_schema_current(engine)
        report = await rotate_credentials(
            session_factory(engine), cipher, batch_size=batch_size, on_batch=_print_progress
        )
    finally:
        await engine.dispose()
    print(
        f"{report.rotated} rotated, {report.already_current} already current, "
        f"{report.replaced_meanwhile} replaced meanwhile by new credentials, "
        f"{len(report.unreadable)} unreadable"
    )
    if not report.unreadable:
        return 0
    print(
        "no configured key opens the credentials of these accounts (add the key they were stored "
        "under to CREDENTIALS_KEYS and run again, or have their owners set new credentials):",
        file=sys.stderr,
    )
    for account_id in report.unreadable:
        print(f"  {account_id}", file=sys.stderr)
    return 1


def _print_progress(report: RotationReport) -> None:
    print(f"keys rotate: {report.done}/{report.total} credentials", file=sys.stderr, flush=True)


async def replay_dead_letter_topic(settings: Settings, topic: str, *, since: datetime | None) -> int:
    """Replay `topic`'s dead letters not replayed before (shared/dead_letter_replay.py); exit status
    2 for a topic that is not a dead-letter topic."""
    from shared.dead_letter_replay import NotADeadLetterTopic, replay_dead_letters
    from shared.runtime import checked_engine, started_bus

    async with checked_engine(settings) as engine, started_bus(settings, client_id="dlq-replay") as bus:
        try:
            report = await replay_dead_letters(session_factory(engine), bus, topic, since=since)
        except NotADeadLetterTopic as exc:
            print(f"portfolio-sync dlq replay: {exc}", file=sys.stderr)
            return 2
    print(
        f"{report.replayed} replayed, {report.already_replayed} replayed before (skipped), "
        f"{report.skipped_before_since} older than --since"
    )
    return 0
