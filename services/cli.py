"""`portfolio-sync`: one subcommand per service, plus the embedded demo and operator tasks."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from shared.db.history_moves import ACCOUNTS_PER_BATCH
from shared.logs import configure_logging
from shared.settings import Settings


def _startup_errors() -> tuple[type[Exception], ...]:
    from services.fetcher.registry import UnknownBroker
    from shared.bus.port import BusUnavailable
    from shared.bus.replication import ReplicationUnsatisfiable
    from shared.credentials import CredentialsKeyError
    from shared.db.engine import DatabaseUnavailable, SchemaOutOfDate
    from shared.db.grants import MissingGrants

    return (
        BusUnavailable,
        CredentialsKeyError,
        DatabaseUnavailable,
        MissingGrants,
        ReplicationUnsatisfiable,
        SchemaOutOfDate,
        UnknownBroker,
    )


# What a misconfigured or unreachable deployment raises: said in one line, not a traceback.
_STARTUP_ERRORS = _startup_errors()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portfolio-sync",
        description="Keep investment portfolios in sync with their broker accounts. "
        "Configuration comes from environment variables (see README).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run everything in one process over an in-memory bus and SQLite")
    demo.add_argument(
        "--cycles", type=int, metavar="N", help="run N sync cycles, print the holdings and exit"
    )
    demo.add_argument("--host", default="127.0.0.1", help="address the demo API binds to (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=8000, help="port the demo API binds to (default 8000)")
    demo.add_argument("--database", type=Path, help="SQLite file to keep (default: a fresh temporary one)")

    api = commands.add_parser("api", help="serve the HTTP API (FastAPI) on API_HOST:API_PORT")
    api.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="serve with N processes sharing the port, each with its own database pool and its metrics "
        "on METRICS_PORT + its index (default 1: this process serves)",
    )
    commands.add_parser("scheduler", help="emit sync requests for due schedules")
    fetcher = commands.add_parser("fetcher", help="fetch holdings for one broker's sync requests")
    fetcher.add_argument("--broker", required=True, metavar="CODE", help="broker code, e.g. sim")
    commands.add_parser("ledger", help="record snapshots, failures and reviews; announce changes")
    commands.add_parser(
        "webhooks", help="send holdings changes and sync failures to the webhook endpoints users registered"
    )

    db = commands.add_parser("db", help="database schema tasks")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser(
        "upgrade",
        help="apply pending migrations, then move history stored before versions into them (migration "
        "0014) while the services may run; stopped anywhere, the next run continues",
    )
    upgrade.add_argument(
        "--history-batch",
        type=_positive_int,
        default=ACCOUNTS_PER_BATCH,
        metavar="N",
        help=f"accounts whose history moves per transaction ({ACCOUNTS_PER_BATCH})",
    )
    db_commands.add_parser(
        "roles",
        help="create each service's Postgres role (API_DATABASE_URL, SCHEDULER_DATABASE_URL, "
        "LEDGER_DATABASE_URL, FETCHER_DATABASE_URL, WEBHOOKS_DATABASE_URL) and grant it exactly its "
        "writes; run after `db upgrade`, again safely",
    )

    topics = commands.add_parser("topics", help="Kafka topic tasks")
    create = topics.add_subparsers(dest="topics_command", required=True).add_parser(
        "create", help="create every topic (and its .dlq) that is missing"
    )
    create.add_argument(
        "--brokers",
        metavar="CODES",
        help="comma-separated broker codes (default: every registered broker: "
        "the built-in adapters, sim included, and installed plug-ins)",
    )

    users = commands.add_parser("users", help="user tasks")
    create_user = users.add_subparsers(dest="users_command", required=True).add_parser(
        "create", help="create a user and print their API token (shown once)"
    )
    create_user.add_argument("email", metavar="EMAIL")
    create_user.add_argument("--operator", action="store_true", help="with the operator role")

    trace = commands.add_parser(
        "trace", help="show one sync run's path: requested, each attempt, stored, announced"
    )
    trace.add_argument("run_id", type=uuid.UUID, metavar="RUN_ID", help="the run's id (its request_id)")

    replay_answers = commands.add_parser(
        "replay",
        help="parse an account's archived broker answers (RAW_ARCHIVE) again with today's adapters and "
        "send the corrected holdings to the ledger, which replaces the stored snapshots' (the broker "
        "is not asked); running it again changes nothing",
    )
    replay_answers.add_argument(
        "--account", required=True, type=uuid.UUID, metavar="ID", help="the broker account's id"
    )
    replay_answers.add_argument(
        "--since",
        type=_aware_time,
        default=None,
        metavar="T",
        help="only answers received at or after T (ISO 8601 with a zone); default: all archived",
    )

    keys = commands.add_parser("keys", help="credential encryption keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    key_commands.add_parser("generate", help="print a new Fernet key for CREDENTIALS_KEYS")
    rotate = key_commands.add_parser(
        "rotate",
        help="re-encrypt every stored credential under the first of CREDENTIALS_KEYS, so that the "
        "others can be removed; safe to interrupt and run again",
    )
    rotate.add_argument(
        "--batch-size", type=_positive_int, default=500, metavar="N", help="credentials per transaction (500)"
    )
    dlq = commands.add_parser("dlq", help="dead-letter topics")
    replay = dlq.add_subparsers(dest="dlq_command", required=True).add_parser(
        "replay",
        help="publish a .dlq topic's messages back to their original topic, each one once "
        "(a second run skips those replayed)",
    )
    replay.add_argument("topic", metavar="TOPIC", help="the dead-letter topic, e.g. holdings.snapshots.dlq")
    replay.add_argument(
        "--since",
        type=_aware_time,
        default=None,
        metavar="T",
        help="only those dead-lettered at or after T (ISO 8601 with a zone)",
    )
    return parser


def _aware_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give the time zone, e.g. {text}Z or {text}+00:00")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"portfolio-sync: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    if args.command == "demo":
        # The demo talks to a person: plain lines, and only problems unless LOG_LEVEL asks for more.
        configure_logging(settings.log_level if "LOG_LEVEL" in os.environ else "WARNING", json_lines=False)
    else:
        configure_logging(settings.log_level)
    try:
        return _dispatch(args, settings)
    except KeyboardInterrupt:
        return 130
    except _STARTUP_ERRORS as exc:
        print(f"portfolio-sync {args.command}: {exc}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "demo":
        from services.demo import run_demo

        return asyncio.run(
            run_demo(settings, cycles=args.cycles, host=args.host, port=args.port, database=args.database)
        )
    if args.command == "api":
        from services.api.main import run

        return run(settings, workers=args.workers)
    elif args.command == "scheduler":
        from services.scheduler.main import serve as serve_scheduler

        asyncio.run(serve_scheduler(settings))
    elif args.command == "fetcher":
        from services.fetcher.main import serve as serve_fetcher

        asyncio.run(serve_fetcher(settings, args.broker))
    elif args.command == "ledger":
        from services.ledger.main import serve as serve_ledger

        asyncio.run(serve_ledger(settings))
    elif args.command == "webhooks":
        from services.webhooks.main import serve as serve_webhooks

        asyncio.run(serve_webhooks(settings))
    elif args.command == "db" and args.db_command == "roles":
        from services.operations import grant_database_roles

        return asyncio.run(grant_database_roles(settings))
    elif args.command == "db":
        from services.operations import upgrade_database

        asyncio.run(upgrade_database(settings, history_batch=args.history_batch))
    elif args.command == "topics":
        from services.operations import create_kafka_topics
        from shared.brokers import fetched_broker_codes

        chosen = fetched_broker_codes() if args.brokers is None else args.brokers.split(",")
        asyncio.run(create_kafka_topics(settings, [b.strip() for b in chosen if b.strip()]))
    elif args.command == "keys" and args.keys_command == "rotate":
        from services.operations import rotate_credential_keys

        return asyncio.run(rotate_credential_keys(settings, batch_size=args.batch_size))
    elif args.command == "trace":
        from services.trace_command import print_run_trace

        return asyncio.run(print_run_trace(settings, args.run_id))
    elif args.command == "replay":
        from services.fetcher.replay import run_replay

        return asyncio.run(run_replay(settings, args.account, since=args.since))
    elif args.command == "users":
        from services.user_admin import UserCreationFailed, create_user

        try:
            token = asyncio.run(create_user(settings, args.email, operator=args.operator))
        except UserCreationFailed as exc:
            print(f"portfolio-sync users create: {exc}", file=sys.stderr)
            return 1
        role = "operator" if args.operator else "user"
        print(
            f"{role} {args.email.strip().lower()} created; their API token (shown only now):", file=sys.stderr
        )
        print(token)
    elif args.command == "dlq":
        from services.operations import replay_dead_letter_topic

        return asyncio.run(replay_dead_letter_topic(settings, args.topic, since=args.since))
    elif args.command == "keys":
        from shared.credentials import CredentialCipher

        print(CredentialCipher.generate_key())
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


if __name__ == "__main__":
    sys.exit(main())
