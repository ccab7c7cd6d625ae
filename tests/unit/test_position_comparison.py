"""The ledger's one pass over a snapshot's positions decides what the separate functions it replaced
for applied snapshots decide: the same moved instruments, versions and content hash, whatever
content-hash text the account kept."""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.ledger import current_holdings
from services.ledger.comparison import Comparison, Hashed, compare
from services.ledger.plan import AccountState, BatchPlan, plan_batch
from services.ledger.positions import HeldLike, InstrumentKey, moved, positions_of
from services.ledger.versions import PriceMemo, content_digest, content_hash, version_rows
from shared import topics
from shared.db.tables import SnapshotStatus
from shared.events import AssetType, Holding, HoldingSnapshot

ACCOUNT = uuid.UUID(int=1)
AT = datetime(2026, 12, 1, tzinfo=UTC)
NUMBERS = [Decimal(t) for t in ("0", "-0", "0.00", "100", "100.0", "1E+2", "-5", "12.5", "12.50")]


def _holding(symbol: str, rng: random.Random) -> Holding:
    return Holding(
        symbol=symbol,
        exchange=rng.choice(["NSE", "BSE"]),
        isin=rng.choice([None, "INE000A01020"]),
        currency=rng.choice(["INR", "USD"]),
        asset_type=rng.choice([AssetType.EQUITY, AssetType.ETF]),
        quantity=rng.choice(NUMBERS),
        average_price=rng.choice([n for n in NUMBERS if n >= 0]),
        last_price=rng.choice([None, Decimal("1.5"), Decimal("2")]),
    )


def _hashed(positions: dict[InstrumentKey, HeldLike]) -> Hashed:
    return _compare({}, None, positions).hashed


def _compare(
    before: dict[InstrumentKey, HeldLike], hashed: Hashed | None, after: dict[InstrumentKey, HeldLike]
) -> Comparison:
    return compare(ACCOUNT, before, hashed, after, at=AT, source="sim", memo=PriceMemo(), pending={})


def _hash_of(compared: Comparison) -> bytes:
    return content_digest(compared.hashed.text)


def _again(holding: Holding, rng: random.Random) -> Holding:
    """The same position in a later snapshot: the very object (the decoder keeps an unchanged
    holding's), or another, its numbers maybe written otherwise (equal), its price maybe moved."""
    if rng.random() < 0.3:
        return holding
    fields = {name: getattr(holding, name) for name in Holding.__dataclass_fields__}
    same = [n for n in NUMBERS if n == holding.quantity]
    return Holding(**{**fields, "quantity": rng.choice(same), "last_price": rng.choice([None, Decimal(3)])})


@pytest.mark.parametrize("seed", range(300))
def test_one_pass_decides_what_the_separate_functions_do(seed: int) -> None:
    rng = random.Random(seed)
    # Symbols with the hash's separators in them too: such a text is made whole again.
    symbols = (
        ["S0", "S1", "S", "S\x1f", "S\x1e1", "T"] if seed % 3 == 0 else ["S0", "S1", "S2", "S3", "T", "U"]
    )
    earlier = {s: _holding(s, rng) for s in rng.sample(symbols, rng.randint(0, 6))}
    before = positions_of(earlier.values())
    after = positions_of(
        _again(earlier[s], rng) if s in earlier and rng.random() < 0.7 else _holding(s, rng)
        for s in rng.sample(symbols, rng.randint(0, 6))
    )
    for hashed in (None, _hashed(before), _hashed(dict(before)), _hashed(after)):
        compared = compare(ACCOUNT, before, hashed, after, at=AT, source="sim", memo=PriceMemo(), pending={})
        assert compared.moved == moved(before, after)
        assert compared.versions == version_rows(ACCOUNT, AT, before, after)
        assert content_digest(compared.hashed.text) == content_hash(after.values())
        assert compared.hashed.positions is after
        assert compared.same_instruments == (before.keys() == after.keys())


def test_a_kept_text_is_used_only_for_the_positions_it_was_made_of() -> None:
    def tcs(quantity: str) -> Holding:
        return Holding(symbol="TCS", currency="INR", quantity=Decimal(quantity), average_price=Decimal(10))

    before, after = positions_of([tcs("7")]), positions_of([tcs("7")])
    assert _hash_of(_compare(before, _hashed(positions_of([tcs("5")])), after)) == content_hash([tcs("7")])

    zero, negative_zero = positions_of([tcs("0")]), positions_of([tcs("-0")])  # equal, hashed apart
    compared = _compare(zero, _hashed(zero), negative_zero)
    assert compared.versions == []
    assert _hash_of(compared) == content_hash(negative_zero.values()) != content_hash(zero.values())


def test_prices_that_did_not_move_are_not_written_again_unless_older() -> None:
    holdings = [
        Holding(
            symbol=s, currency="INR", quantity=Decimal(1), average_price=Decimal(1), last_price=Decimal(p)
        )
        for s, p in itertools.product(("A", "B"), ("3",))
    ]
    memo = PriceMemo()
    memo.remember([("A", "", AT, Decimal(3), "sim")])
    positions = positions_of(holdings)
    rows = compare(ACCOUNT, {}, None, positions, at=AT, source="sim", memo=memo, pending={}).prices
    assert rows == [("B", "", AT, Decimal(3), "sim")]
    pending = {("B", ""): (AT, Decimal(3))}
    earlier = AT.replace(year=2025)
    rows = compare(ACCOUNT, {}, None, positions, at=earlier, source="sim", memo=memo, pending=pending).prices
    assert rows == [("A", "", earlier, Decimal(3), "sim"), ("B", "", earlier, Decimal(3), "sim")]


def test_the_very_object_held_changes_nothing_but_its_price_is_still_looked_at() -> None:
    """The decoder keeps an unchanged holding's object: nothing of the position can differ, but the
    instrument's price series is every account's, and another account's snapshot moved it since."""
    held = Holding(
        symbol="TCS", currency="INR", quantity=Decimal(-0), average_price=Decimal(1), last_price=Decimal(3)
    )
    before = positions_of([held])
    after = positions_of([held])
    memo = PriceMemo()
    memo.remember([("TCS", "", AT.replace(minute=1), Decimal(4), "sim")])
    kept = _hashed(before)
    later = AT.replace(minute=2)
    compared = compare(ACCOUNT, before, kept, after, at=later, source="sim", memo=memo, pending={})
    assert (compared.moved, compared.versions, compared.same_instruments) == ([], [], True)
    assert compared.prices == [("TCS", "", later, Decimal(3), "sim")]
    assert compared.hashed.text == kept.text
    memo.remember(compared.prices)
    assert compare(ACCOUNT, before, kept, after, at=later, source="sim", memo=memo, pending={}).prices == []


def test_each_snapshot_row_keeps_the_content_hash_of_its_own_holdings_through_a_chain() -> None:
    account = AccountState(
        id=ACCOUNT, portfolio_id=ACCOUNT, current_snapshot_id=None, positions_as_of=None, positions={}
    )
    rng = random.Random(7)
    earlier = {s: _holding(s, rng) for s in ("A", "B", "C", "D")}
    for n in range(12):
        listed = [_again(h, rng) if rng.random() < 0.8 else _holding(s, rng) for s, h in earlier.items()]
        if n == 5:
            listed.append(listed[0])  # an instrument listed twice: hashed twice, held once
        if n == 8:
            account.positions = dict(account.positions)  # loaded again: the kept text is not of these
        plan = _planned(account, listed, minute=n)
        assert plan.snapshots[0][BatchPlan.SNAPSHOT_COLUMNS.index("content_hash")] == content_hash(listed)
        assert plan.snapshots[0][BatchPlan.SNAPSHOT_COLUMNS.index("status")] == SnapshotStatus.APPLIED
        earlier = {h.symbol: h for h in listed}


def _planned(account: AccountState, listed: list[Holding], *, minute: int) -> BatchPlan:
    """The plan of the account's snapshot listing `listed`, taken at `minute` past `AT`."""
    snapshot = HoldingSnapshot(
        account_id=ACCOUNT,
        request_id=uuid.uuid4(),
        broker="sim",
        taken_at=AT.replace(minute=minute),
        holdings=tuple(listed),
    )
    return plan_batch([snapshot], {ACCOUNT: account}, {}, consumer="ledger")


def test_holdings_current_is_the_positions_whichever_objects_stay_through_a_chain() -> None:
    """The ledger's own chain: a row's text is kept once some positions are the objects held before;
    a snapshot of the very objects held writes no row and keeps it; a later row takes from it the
    positions not replaced; positions all new (prices moved, say) keep none."""
    account = AccountState(
        id=ACCOUNT, portfolio_id=ACCOUNT, current_snapshot_id=None, positions_as_of=None, positions={}
    )

    def held(symbol: str, quantity: str) -> Holding:
        return Holding(symbol=symbol, currency="INR", quantity=Decimal(quantity), average_price=Decimal(2))

    a, b, c, d = held("A", "1"), held("B", "3"), held("C", "5"), held("D", "7")
    chain = [
        [held("A", "1"), held("B", "2"), c, d],
        [a, b, c, d],
        [a, b, c, d],
        [a, held("B", "2"), held("C", "5.0"), held("D", "8")],
        [held("A", "1"), held("B", "2"), held("C", "5"), held("D", "9")],
    ]
    rows = []
    for n, listed in enumerate(chain):
        plan = _planned(account, listed, minute=n)
        rows += [row[3] for row in plan.outbox if row[1] == topics.HOLDINGS_CURRENT]
        whole = current_holdings.listed(account.positions, None)
        assert account.hashed is not None
        assert account.hashed.listed == (whole if n in (1, 2, 3) else None)  # 2 wrote no row
        if n != 2:
            assert rows[-1].endswith(f',"positions":[{whole}]}}')
    assert len(rows) == 4
