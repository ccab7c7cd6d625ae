"""What every request handler needs: the process-wide clients and the settings, built once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.api.fast_reads import FastReads
from shared.brokers import BrokerType, broker_types
from shared.bus.port import MessageBus
from shared.credentials import CredentialCipher
from shared.db.engine import session_factory
from shared.settings import Settings


@dataclass(frozen=True)
class ApiResources:
    """Process-wide clients; whoever builds them owns them (starts and closes them)."""

    engine: AsyncEngine
    bus: MessageBus
    cipher: CredentialCipher
    fast_reads: FastReads | None = None
    """On Postgres, the holdings reads' own pool (fast_reads.py); None: every read through `engine`."""


@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    resources: ApiResources
    sessions: async_sessionmaker[AsyncSession]
    reads: async_sessionmaker[AsyncSession]
    """Sessions whose statements each commit by themselves (no BEGIN, no ROLLBACK): for requests that
    only read, or whose every write is one atomic statement (the guard's counters)."""
    broker_types: Mapping[str, BrokerType]  # what accounts may name, read once: plug-ins included

    @classmethod
    def create(cls, settings: Settings, resources: ApiResources) -> ApiContext:
        return cls(
            settings=settings,
            resources=resources,
            sessions=session_factory(resources.engine),
            reads=session_factory(resources.engine.execution_options(isolation_level="AUTOCOMMIT")),
            broker_types=broker_types(),
        )
