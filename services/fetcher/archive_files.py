"""The archive as files (RAW_ARCHIVE=files): one file per answer under RAW_ARCHIVE_DIR, for a
deployment that keeps answers out of the database (a volume, or a bucket mounted as one).

`<dir>/<account id>/<received at>_<run id>_<attempt>.zz`, zlib of one JSON line of what the answer
is, then the body. Names sort by time, so `since` and pruning read names, not contents. A file is
written under a temporary name and renamed into place: a reader never sees half of one.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from services.fetcher.archive import ArchivedAnswer, compressed, decompressed

_TIME = "%Y%m%dT%H%M%S%fZ"
_SUFFIX = ".zz"


class FileArchive:
    def __init__(self, root: Path) -> None:
        self._root = root

    async def keep(self, answers: Sequence[ArchivedAnswer]) -> None:
        if answers:
            await asyncio.to_thread(self._write, answers)

    async def answers_of(self, account_id: uuid.UUID, *, since: datetime | None) -> list[ArchivedAnswer]:
        return await asyncio.to_thread(self._read, account_id, since)

    async def prune(self, *, received_before: datetime) -> int:
        return await asyncio.to_thread(self._prune, received_before)

    def _write(self, answers: Sequence[ArchivedAnswer]) -> None:
        for answer in answers:
            folder = self._root / str(answer.account_id)
            folder.mkdir(parents=True, exist_ok=True)
            if any(folder.glob(f"*_{answer.run_id}_{answer.attempt}{_SUFFIX}")):
                continue  # a redelivered attempt: the first answer stays, as the first snapshot does
            name = f"{answer.received_at.astimezone(UTC).strftime(_TIME)}_{answer.run_id}_{answer.attempt}"
            header = {
                "run_id": str(answer.run_id),
                "attempt": answer.attempt,
                "account_id": str(answer.account_id),
                "broker": answer.broker,
                "received_at": answer.received_at.isoformat(),
                "status_code": answer.status_code,
                "snapshot_id": str(answer.snapshot_id) if answer.snapshot_id else None,
            }
            temporary = folder / f".{name}.tmp"
            temporary.write_bytes(compressed(json.dumps(header).encode() + b"\n" + answer.body))
            os.replace(temporary, folder / f"{name}{_SUFFIX}")

    def _read(self, account_id: uuid.UUID, since: datetime | None) -> list[ArchivedAnswer]:
        folder = self._root / str(account_id)
        if not folder.is_dir():
            return []
        answers = []
        for path in sorted(folder.glob(f"*{_SUFFIX}")):
            if since is not None and _received_at(path) < since:
                continue
            header, _, body = decompressed(path.read_bytes()).partition(b"\n")
            fields = json.loads(header)
            answers.append(
                ArchivedAnswer(
                    run_id=uuid.UUID(fields["run_id"]),
                    attempt=fields["attempt"],
                    account_id=uuid.UUID(fields["account_id"]),
                    broker=fields["broker"],
                    received_at=datetime.fromisoformat(fields["received_at"]),
                    status_code=fields["status_code"],
                    body=body,
                    snapshot_id=uuid.UUID(fields["snapshot_id"]) if fields["snapshot_id"] else None,
                )
            )
        return answers

    def _prune(self, received_before: datetime) -> int:
        pruned = 0
        for path in self._root.glob(f"*/*{_SUFFIX}"):
            if _received_at(path) < received_before:
                path.unlink(missing_ok=True)  # another fetcher may prune the same file
                pruned += 1
        return pruned


def _received_at(path: Path) -> datetime:
    return datetime.strptime(path.name.split("_", 1)[0], _TIME).replace(tzinfo=UTC)
