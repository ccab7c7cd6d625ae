"""`keys rotate`: every credential re-encrypted under the newest key, resumable, fenced against the
API's writes; after it the old key can go and every account still syncs."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.api.storage import store_credentials
from services.cli import main
from services.fetcher.handlers import Fetcher
from services.key_rotation import RotationReport, rotate_credential, rotate_credentials
from services.scheduler.handlers import emit_due_syncs
from shared import topics
from shared.bus.memory import InMemoryBus
from shared.credentials import CredentialCipher
from shared.db.engine import create_engine, session_factory, upgrade_schema
from shared.db.tables import Credential
from shared.events import HoldingSnapshot, SyncRequested, decode_event, utc_now
from tests.support.accounts import create_account
from tests.unit.test_fetcher import NO_RETRY, RecordingBroker

KEY_A, KEY_B, KEY_LOST = (CredentialCipher.generate_key() for _ in range(3))


def _secret(account_id: uuid.UUID) -> dict[str, str]:
    return {"api_key": "k", "access_token": f"token-{account_id}"}


async def _accounts_with_credentials(
    sessions: async_sessionmaker[AsyncSession], count: int, key: str
) -> list[uuid.UUID]:
    cipher = CredentialCipher(key)
    ids = []
    for _ in range(count):
        account = await create_account(sessions, next_run_at=utc_now() - timedelta(seconds=1))
        async with sessions() as session:
            await store_credentials(
                session, account_id=account.id, ciphertext=cipher.encrypt(_secret(account.id)), now=utc_now()
            )
        ids.append(account.id)
    return ids


async def _ciphertexts(sessions: async_sessionmaker[AsyncSession]) -> dict[uuid.UUID, str]:
    async with sessions() as session:
        rows = await session.execute(select(Credential.account_id, Credential.ciphertext))
        return {account_id: ciphertext for account_id, ciphertext in rows}


async def test_after_rotation_the_old_key_can_be_removed_and_every_account_still_syncs(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    accounts = await _accounts_with_credentials(sessions, 5, KEY_A)
    progress: list[tuple[int, int]] = []

    report = await rotate_credentials(
        sessions,
        CredentialCipher(f"{KEY_B},{KEY_A}"),
        batch_size=2,
        on_batch=lambda r: progress.append((r.done, r.total)),
    )

    assert (report.rotated, report.already_current, report.unreadable) == (5, 0, [])
    assert progress == [(2, 5), (4, 5), (5, 5)]
    only_b = CredentialCipher(KEY_B)
    assert all(only_b.is_current(c) for c in (await _ciphertexts(sessions)).values())

    # Key A retired: a scheduled sync carries ciphertext that a fetcher holding only key B opens.
    assert await emit_due_syncs(sessions, bus, now=utc_now(), limit=100) == 5
    requests = [decode_event(SyncRequested, r.value) for r in bus.records(topics.sync_requests("sim"))]
    broker = RecordingBroker([])
    fetcher = Fetcher(adapter=broker, bus=bus, cipher=only_b, slots=asyncio.Semaphore(4), retry=NO_RETRY)
    await fetcher.handle_requests(requests)

    assert bus.records(topics.SYNC_FAILURES) == []
    snapshots = [decode_event(HoldingSnapshot, r.value) for r in bus.records(topics.HOLDINGS_SNAPSHOTS)]
    assert sorted(s.account_id for s in snapshots) == sorted(accounts)
    assert {a.account_id: dict(a.credentials) for a in broker.seen} == {a: _secret(a) for a in accounts}


async def test_an_interrupted_run_resumes_and_counts_what_it_did_as_already_current(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _accounts_with_credentials(sessions, 5, KEY_A)
    cipher = CredentialCipher(f"{KEY_B},{KEY_A}")

    def interrupt(report: RotationReport) -> None:
        raise KeyboardInterrupt  # the operator's Ctrl-C, right after the first batch committed

    with pytest.raises(KeyboardInterrupt):
        await rotate_credentials(sessions, cipher, batch_size=2, on_batch=interrupt)
    halfway = await _ciphertexts(sessions)
    assert sum(CredentialCipher(KEY_B).is_current(c) for c in halfway.values()) == 2

    report = await rotate_credentials(sessions, cipher, batch_size=2)
    assert (report.done, report.rotated, report.already_current, report.unreadable) == (5, 3, 2, [])
    after = await _ciphertexts(sessions)
    assert [a for a in halfway if CredentialCipher(KEY_B).is_current(halfway[a])] == [
        a for a in after if after[a] == halfway[a]
    ], "the first batch was left as it was"


async def test_unreadable_credentials_are_listed_and_the_run_goes_on(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    readable = await _accounts_with_credentials(sessions, 3, KEY_A)
    lost = await _accounts_with_credentials(sessions, 2, KEY_LOST)

    report = await rotate_credentials(sessions, CredentialCipher(f"{KEY_B},{KEY_A}"), batch_size=1)

    assert (report.done, report.rotated, sorted(report.unreadable)) == (5, 3, sorted(lost))
    stored = await _ciphertexts(sessions)
    assert all(CredentialCipher(KEY_B).is_current(stored[a]) for a in readable)
    assert all(CredentialCipher(KEY_LOST).is_current(stored[a]) for a in lost), "left untouched"


async def test_credentials_stored_by_the_api_during_a_run_are_never_overwritten_with_older_ones(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    [account_id] = await _accounts_with_credentials(sessions, 1, KEY_A)
    cipher = CredentialCipher(f"{KEY_B},{KEY_A}")
    read_by_rotation = (await _ciphertexts(sessions))[account_id]
    # The API's PUT lands between the rotation's read and its write.
    new = CredentialCipher(KEY_B).encrypt({"api_key": "k", "access_token": "the-new-one"})
    async with sessions() as session:
        await store_credentials(session, account_id=account_id, ciphertext=new, now=utc_now())

    report = RotationReport(total=1)
    async with sessions() as session:
        await rotate_credential(session, cipher, report, account_id, read_by_rotation)
        await session.commit()

    assert (report.rotated, report.replaced_meanwhile) == (0, 1)
    stored = (await _ciphertexts(sessions))[account_id]
    assert CredentialCipher(KEY_B).decrypt(stored)["access_token"] == "the-new-one"


def test_the_cli_reports_progress_counts_and_unreadable_accounts_without_key_material(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"

    async def prepare() -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        engine = create_engine(url)
        await upgrade_schema(engine)
        sessions = session_factory(engine)
        readable = await _accounts_with_credentials(sessions, 3, KEY_A)
        lost = await _accounts_with_credentials(sessions, 1, KEY_LOST)
        await engine.dispose()
        return readable, lost

    _, lost = asyncio.run(prepare())
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("CREDENTIALS_KEYS", f"{KEY_B},{KEY_A}")

    assert main(["keys", "rotate", "--batch-size", "3"]) == 1
    out, err = capsys.readouterr()
    assert "3 rotated, 0 already current" in out and "1 unreadable" in out
    assert "keys rotate: 3/4 credentials" in err and "keys rotate: 4/4 credentials" in err
    assert str(lost[0]) in err
    for secret in (KEY_A, KEY_B, KEY_LOST, "token-"):
        assert secret not in out + err

    assert main(["keys", "rotate"]) == 1, "still unreadable: still an error"
    assert "0 rotated, 3 already current" in capsys.readouterr().out
