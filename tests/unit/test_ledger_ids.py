"""The ledger's outbox event ids: version 4 UUIDs, none given twice, also past a draw."""

from __future__ import annotations

import threading
import uuid

from services.ledger import ids


def test_ids_are_random_uuids_never_given_twice_across_draws() -> None:
    given = [ids.uuid4() for _ in range(3 * ids._DRAWN + 1)]
    assert all(isinstance(i, uuid.UUID) and i.version == 4 and i.variant == uuid.RFC_4122 for i in given)
    assert len(set(given)) == len(given)


def test_each_thread_draws_its_own() -> None:
    here = [ids.uuid4() for _ in range(10)]
    there: list[uuid.UUID] = []
    thread = threading.Thread(target=lambda: there.extend(ids.uuid4() for _ in range(10)))
    thread.start()
    thread.join()
    assert len(set(here) | set(there)) == 20
