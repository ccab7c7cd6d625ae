"""The ledger's Python per snapshot, without Kafka or Postgres: decoding, planning, COPY text.

    .venv/bin/python bench/ledger_python.py [--accounts 300] [--repeats 4] [--prices still|move]

The bench-ledger workload (accounts x 10 successive snapshots of 20 holdings, each changing one
position), with its prices unchanged as bench-ledger's are (`--prices still`, the default) or moving
every sync as real ones do (`--prices move`), goes through what the ledger's own Python
does with it in batches of 2,000: `decode_on_topic` of each message (as the ledger decodes them:
`LeanSnapshots`, shared/snapshot_decoding.py), `plan_batch`, and
`LedgerStore.encode` (the COPY text). CPU µs per snapshot for each, the best of `--repeats` passes:
on a shared machine this moves far less than bench-ledger's holdings/s, so two commits can be
compared by running each in turn (this script, from the other commit's checkout:
`cd OTHER && PYTHONPATH=. .venv/bin/python PATH/bench/ledger_python.py`). Ids and clocks are fixed,
so that `digest` (of the COPY text and the outbox rows) is the same for two commits that write the
same rows.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import itertools
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from ledger import bench_snapshot

from services.ledger import ids
from services.ledger.plan import AccountState, plan_batch
from services.ledger.store import LedgerStore
from services.ledger.versions import PriceMemo
from shared.events import decode_on_topic
from shared.snapshot_decoding import LeanSnapshots

SNAPSHOTS = 10
BATCH = 2000
START = datetime(2026, 10, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)


def _messages(accounts: list[uuid.UUID], *, prices_move: bool) -> list[bytes]:
    messages = []
    for n, account_id in itertools.product(range(SNAPSHOTS), accounts):
        number = len(messages) + 1
        snapshot = bench_snapshot(
            account_id,
            n,
            START,
            prices_move=prices_move,
            event_id=uuid.UUID(int=10**9 + number),
            occurred_at=START + timedelta(minutes=n, seconds=1),
            request_id=uuid.UUID(int=10**10 + number),
        )
        messages.append(snapshot.to_bytes())
    return messages


def _fixed_ids_and_clocks() -> None:
    counter = itertools.count(1)
    ids.uuid4 = lambda: uuid.UUID(int=next(counter))  # type: ignore[assignment]
    for name, module in list(sys.modules.items()):  # each module of the ledger's that took it by name
        if name.startswith("services.ledger.") and hasattr(module, "utc_now"):
            module.utc_now = lambda: NOW


def one_pass(accounts: list[uuid.UUID], messages: list[bytes]) -> tuple[dict[str, float], str]:
    """CPU seconds of each step over all `messages`, and the digest of what they would write."""
    _fixed_ids_and_clocks()
    states = {
        a: AccountState(
            id=a, portfolio_id=uuid.UUID(int=5), current_snapshot_id=None, positions_as_of=None, positions={}
        )
        for a in accounts
    }
    postgres = SimpleNamespace(dialect=SimpleNamespace(name="postgresql"))
    store = LedgerStore(SimpleNamespace(get_bind=lambda: postgres), consumer="ledger")  # type: ignore[arg-type]
    memo = PriceMemo()
    spent = dict.fromkeys(("decode", "plan", "encode"), 0.0)
    snapshots = LeanSnapshots()
    digest = hashlib.sha256()
    for start in range(0, len(messages), BATCH):
        began = time.process_time()
        events = [decode_on_topic(snapshots, raw) for raw in messages[start : start + BATCH]]
        decoded = time.process_time()
        batch: dict[uuid.UUID, Any] = {e.account_id: states[e.account_id] for e in events}
        for state in batch.values():
            state.touched = False
        planned = plan_batch(events, batch, {}, consumer="ledger", prices=memo)
        made = time.process_time()
        encoded = store.encode(planned)
        spent["decode"] += decoded - began
        spent["plan"] += made - decoded
        spent["encode"] += time.process_time() - made
        memo.remember(planned.prices)
        for _, _, pieces in encoded:
            for piece in pieces:
                digest.update(piece)
        for row in planned.outbox:
            digest.update(repr(row).encode())
    return spent, digest.hexdigest()[:16]


def main(accounts_count: int, repeats: int, prices: str) -> None:
    accounts = [uuid.UUID(int=10**6 + i) for i in range(accounts_count)]
    messages = _messages(accounts, prices_move=prices == "move")
    best: dict[str, float] = {}
    digests = set()
    gc.disable()  # as the ledger does while a batch is in flight
    for _ in range(repeats):
        spent, digest = one_pass(accounts, messages)
        best = {k: min(v, best.get(k, v)) for k, v in spent.items()}
        digests.add(digest)
        gc.collect()
    per = {k: round(v / len(messages) * 1e6, 1) for k, v in best.items()}
    print(
        f"{len(messages)} snapshots, prices {prices}, CPU µs per snapshot (best of {repeats}): {per}, "
        f"total {round(sum(per.values()), 1)}; digest {', '.join(sorted(digests))}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--prices", choices=("still", "move"), default="still")
    args = parser.parse_args()
    main(args.accounts, args.repeats, args.prices)
