"""Random (version 4) UUIDs for the events the ledger writes to its outbox, drawn from the system's
randomness many at a time.

`uuid.uuid4` makes a system call per id, and `os.urandom` lets go of the GIL for it: in the thread
that plans a batch, each id then waits to get the GIL back from the event loop's thread (up to its
switch interval), two ids a snapshot. One call per `_DRAWN` ids spares that; the ids are as random.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator

_DRAWN = 256


class _Drawn(threading.local):
    """Each thread's ids drawn and not yet given."""

    def __init__(self) -> None:
        self.ids: Iterator[uuid.UUID] = iter(())


_drawn = _Drawn()


def uuid4() -> uuid.UUID:
    """Like `uuid.uuid4`."""
    new = next(_drawn.ids, None)
    if new is None:
        _drawn.ids = _draw()
        new = next(_drawn.ids)
    return new


def _draw() -> Iterator[uuid.UUID]:
    data = os.urandom(16 * _DRAWN)
    return (uuid.UUID(bytes=data[i : i + 16], version=4) for i in range(0, len(data), 16))
