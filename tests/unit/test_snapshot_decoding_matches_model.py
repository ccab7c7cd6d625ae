"""The ledger's lean decoding of a snapshot (`shared.snapshot_decoding`) gives what the model gives:
the same verdict, the same reason when refused, and equal values of the same types when accepted
(decimals to the exponent and sign, times with their offsets), on valid snapshots, generated ones
and mutated ones alike."""

from __future__ import annotations

import dataclasses
import enum
import json
import random
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from pydantic_core import PydanticUndefined

from shared.events import (
    AssetType,
    EventDecodeError,
    Holding,
    HoldingSnapshot,
    ReportedTrade,
    TradeSide,
    decode_event,
)
from shared.snapshot_decoding import (
    WHOLE_AFTER_CHANGE,
    LeanSnapshots,
    SnapshotHolding,
    SnapshotTrade,
    _Listed,
    _Whole,
)
from tests.support.snapshots import successive_snapshots

Decode = Callable[[bytes], HoldingSnapshot]
MADE_UP = ("event_id", "occurred_at")  # the model makes them up for a message without them


def _model(raw: bytes) -> HoldingSnapshot:
    return decode_event(HoldingSnapshot, raw)


def _value(value: Any) -> Any:
    """What must be equal of a decoded value: its type and exact text, a time's offset too."""
    if isinstance(value, tuple):
        return tuple(_value(v) for v in value)
    if isinstance(value, Holding | ReportedTrade | SnapshotHolding | SnapshotTrade):
        names = [
            f.name
            for f in dataclasses.fields(
                Holding if isinstance(value, Holding | SnapshotHolding) else ReportedTrade
            )
        ]
        return tuple((name, _value(getattr(value, name))) for name in names)
    if isinstance(value, datetime):
        return (datetime, value, value.utcoffset(), value.isoformat())
    if isinstance(value, enum.Enum):
        return (type(value), value)
    return (type(value), repr(value))


def _verdict(decode: Decode, raw: bytes) -> tuple[str, Any]:
    try:
        snapshot = decode(raw)
    except EventDecodeError as exc:
        return ("refused", str(exc))
    assert type(snapshot) is HoldingSnapshot
    given = json.loads(raw)  # accepted: a JSON object
    return (
        "accepted",
        tuple(
            (name, _value(getattr(snapshot, name)) if name in given or name not in MADE_UP else "made up")
            for name in HoldingSnapshot.model_fields
        ),
    )


def _compare(raws: list[bytes]) -> Counter[str]:
    """Assert that both decoders agree on each of `raws`; count how each ended (and how many the lean
    path decoded itself)."""
    seen: Counter[str] = Counter()
    # Also decoded one after the other by one decoder, as the ledger's: where a message lists a
    # holding as the same account's previous one listed it there, that holding is reused.
    remembering = LeanSnapshots()
    for raw in raws:
        model, lean = _verdict(_model, raw), _verdict(LeanSnapshots().decode, raw)
        assert lean == model, raw
        assert _verdict(remembering.decode, raw) == model, raw
        seen[model[0]] += 1
        if model[0] == "accepted":
            holdings = LeanSnapshots().decode(raw).holdings
            seen["lean"] += bool(holdings) and type(holdings[0]) is SnapshotHolding
    return seen


def _valid() -> list[dict[str, Any]]:
    start = datetime(2026, 10, 1, tzinfo=UTC)
    account = uuid.UUID(int=7)
    made = [*successive_snapshots(account, count=3, holdings=5)]
    holdings = tuple(
        Holding(
            symbol=f"SYM{i:02d}",
            exchange="NSE",
            isin=f"INE{i:03d}A01020",
            currency="INR",
            asset_type=AssetType.ETF,
            quantity=Decimal(-i),
            average_price=Decimal("1234.5678"),
            last_price=Decimal("1240.10E-3") if i % 2 else None,
        )
        for i in range(20)
    )
    made.append(
        HoldingSnapshot(
            account_id=account, request_id=uuid.uuid4(), broker="sim", taken_at=start, holdings=holdings
        )
    )
    made.append(
        HoldingSnapshot(
            account_id=account,
            request_id=uuid.uuid4(),
            broker="alpaca",
            taken_at=start,
            holdings=(),
            attempt=3,
            fetcher_id="host:12",
            started_at=start - timedelta(seconds=2),
            duration_ms=1500,
            trades=(
                ReportedTrade(
                    trade_id="t-1",
                    symbol="AAPL",
                    side=TradeSide.SELL,
                    quantity=Decimal("0.5"),
                    price=Decimal("190.10"),
                    currency="USD",
                    executed_at=start - timedelta(hours=1),
                ),
            ),
            replaces=uuid.uuid4(),
        )
    )
    return [json.loads(s.to_bytes()) for s in made]


def _dump(message: Any) -> bytes:
    """As the fetcher writes it (no spaces), a lone surrogate written as is: bytes not UTF-8."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


def test_valid_snapshots_are_decoded_alike_and_by_the_lean_path() -> None:
    raws = [_dump(m) for m in _valid()]
    seen = _compare(raws)
    assert seen["accepted"] == len(raws)
    assert seen["lean"] == len(raws) - 1  # the one without holdings: its trades are the lean path's


# Odd values for any field: wrong types, edge decimals, odd and naive times, odd ids, long strings.
ODD: list[Any] = [
    None,
    True,
    0,
    -1,
    1,
    2**70,
    1.5,
    1.50,
    1e400,
    "",
    " ",
    "x",
    "USD",
    "€€€",
    "x" * 12,
    "x" * 13,
    "x" * 32,
    "x" * 33,
    "x" * 64,
    "x" * 65,
    "\ud800",
    "\x00",
    "💶💶💶",
    "e\u0301",
    [],
    {},
    [1, "a"],
    {"symbol": "X"},
    "0",
    "-0",
    "+1",
    "1.50",
    " 1.5 ",
    "1_000",
    "١٢",
    "1E+2",
    "1e-19",
    "1E-18",
    "0.1234567890123456789",
    "0.123456789012345678",
    "12345678901234567890.123456789012345678",
    "123456789012345678901",
    "123456789012345678901E-1",
    "0E+30",
    "1.000000000000000000000",
    "-1",
    "-0.01",
    "NaN",
    "-NaN",
    "sNaN",
    "Infinity",
    "-inf",
    "0x10",
    "2026-10-01T00:00:00Z",
    "2026-10-01T00:00:00+05:30",
    "2026-10-01T00:00:00-00:00",
    "2026-10-01T00:00:00.123456789Z",
    "2026-10-01T00:00:00.1234565Z",
    "2026-10-01T00:00:00.1Z",
    "2026-10-01 00:00:00Z",
    "2026-10-01t00:00:00z",
    "2026-10-01T00:00:00",
    "2026-10-01",
    "2026-10-01T00:00Z",
    "2026-10-01T00:00:60Z",
    "2026-10-01T24:00:00Z",
    "2026-10-01T00:00:00+0530",
    "2026-10-01T00:00:00+24:00",
    "2026-10-01T00:00:00+23:59",
    "1700000000",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999-01:00",
    "equity",
    "EQUITY",
    "buy",
    "Sell",
    "mutual_fund",
    "8c5f7d5e-2b8a-4c1e-9f3e-1b2c3d4e5f60",
    "8C5F7D5E-2B8A-4C1E-9F3E-1B2C3D4E5F60",
    "8c5f7d5e2b8a4c1e9f3e1b2c3d4e5f60",
    "{8c5f7d5e-2b8a-4c1e-9f3e-1b2c3d4e5f60}",
    "urn:uuid:8c5f7d5e-2b8a-4c1e-9f3e-1b2c3d4e5f60",
    "8c5f7d5e-2b8a-4c1e-9f3e-1b2c3d4e5f6",
    "00000000-0000-0000-0000-000000000000",
    "1",
]


def _paths(message: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    """Every field of the message, of its first holding and of its first trade."""
    yield from ((message, name) for name in [*HoldingSnapshot.model_fields, "unknown"])
    for part, model in (("holdings", Holding), ("trades", ReportedTrade)):
        if message.get(part):
            item = message[part][0]
            yield from ((item, f.name) for f in [*dataclasses.fields(model)])
            yield item, "unknown"


def _mutated(message: dict[str, Any]) -> Iterator[bytes]:
    for target, name in list(_paths(message)):
        had, original = name in target, target.get(name)
        target.pop(name, None)
        yield _dump(message)
        for odd in ODD:
            target[name] = odd
            yield _dump(message)
        if had:
            target[name] = original
        else:
            del target[name]


def test_every_field_removed_or_replaced_by_odd_values_is_decoded_alike() -> None:
    raws = [raw for message in _valid()[-2:] for raw in _mutated(message)]
    seen = _compare(raws)
    assert len(raws) > 3000
    assert seen["refused"] > 1000 and seen["accepted"] > 500 and seen["lean"] > 300, seen


def _decimal_text(rng: random.Random) -> str:
    whole = str(rng.choice([0, 1, 7, 100, 1234, 10 ** rng.randint(0, 21) + rng.randint(0, 999)]))
    text = (
        whole
        if rng.random() < 0.3
        else f"{whole}.{rng.randint(0, 10 ** (19 if rng.random() < 0.002 else rng.choice([1, 2, 4, 8])))}"
    )
    sign = "-" if rng.random() < 0.02 else ""
    return sign + text + ("" if rng.random() < 0.99 else rng.choice(["0", "E+3", "e-5", "E-20"]))


def _time_text(rng: random.Random) -> str:
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 10**8))
    fraction = rng.choice(["", "", ".5", f".{rng.randint(0, 999999):06d}"] * 10 + [".1234567", ".1234565"])
    zone = rng.choice(["Z", "Z", "+00:00", "+05:30", "-08:00"] * 10 + ["", "z", "+0530", "+05"])
    return at.strftime("%Y-%m-%dT%H:%M:%S") + fraction + zone


def _generated(rng: random.Random) -> dict[str, Any]:
    def pick(*good: Any, bad: tuple[Any, ...] = ()) -> Any:
        """Mostly one of the good values, now and then a bad or an odd one."""
        return rng.choice(good) if rng.random() < 0.99 else rng.choice((*bad, *ODD))

    def holding() -> dict[str, Any]:
        item = {
            "symbol": pick("AAPL", "RELIANCE", "BRK.B", "ÄÖÜ", "x" * rng.randint(1, 64), bad=("x" * 65,)),
            "currency": pick("USD", "INR", "EUR", bad=("US", "USDT")),
            "quantity": pick(_decimal_text(rng)),
            "average_price": pick(_decimal_text(rng)),
        }
        optional = {
            "exchange": pick("", "NSE", "NASDAQ", bad=("x" * 33,)),
            "isin": pick(None, "US0378331005", bad=("US03783310051",)),
            "asset_type": pick(*AssetType),
            "last_price": pick(None, _decimal_text(rng)),
        }
        return item | {k: v for k, v in optional.items() if rng.random() < 0.7}

    def trade() -> dict[str, Any]:
        return {
            "trade_id": pick(f"t-{rng.randint(0, 10**6)}"),
            "symbol": "AAPL",
            "side": pick(*TradeSide),
            "quantity": pick(_decimal_text(rng)),
            "price": pick(_decimal_text(rng)),
            "currency": "USD",
            "executed_at": pick(_time_text(rng)),
        }

    message: dict[str, Any] = {
        "event_id": pick(str(uuid.UUID(int=rng.getrandbits(128)))),
        "occurred_at": pick(_time_text(rng)),
        "account_id": pick(str(uuid.UUID(int=rng.getrandbits(128)))),
        "request_id": pick(str(uuid.UUID(int=rng.getrandbits(128)))),
        "broker": pick("sim", "zerodha", ""),
        "taken_at": pick(_time_text(rng)),
        "holdings": [holding() for _ in range(rng.choice([0, 1, 3, 20]))],
    }
    optional = {
        "schema_version": pick(1),
        "attempt": pick(1, 2, 3, bad=(0,)),
        "fetcher_id": pick("host:1"),
        "started_at": pick(_time_text(rng)),
        "duration_ms": pick(rng.randint(-1, 5000)),
        "trades": [trade() for _ in range(rng.choice([0, 0, 1, 2]))],
        "replaces": pick(None, str(uuid.uuid4())),
    }
    return message | {k: v for k, v in optional.items() if rng.random() < 0.5}


def test_generated_snapshots_are_decoded_alike() -> None:
    rng = random.Random(13)
    raws = [_dump(_generated(rng)) for _ in range(3000)]
    seen = _compare(raws)
    assert seen["refused"] > 500 and seen["accepted"] > 1500 and seen["lean"] > 800, seen


def _texts(valid: bytes) -> Iterator[bytes]:
    """The same snapshot written differently, or broken as bytes."""
    message = json.loads(valid)
    yield json.dumps(message, indent=2).encode()
    yield json.dumps(message, ensure_ascii=True).replace('"symbol"', '"\\u0073ymbol"').encode()
    yield b"\xef\xbb\xbf" + valid
    yield valid + b" \n"
    yield valid + b"x"
    yield valid + b"{}"
    yield valid[:-1]
    yield valid[: len(valid) // 2]
    yield valid.replace(b"SYM", b"S\xffM")
    yield valid.replace(b"SYM", b"S\xc3M")
    yield valid.replace(b"SYM", b"S\\u00e9M")
    yield valid.replace(b"SYM", b"S\\ud83d\\udcb6M")
    yield valid.replace(b"SYM", b"S\\ud800M")
    yield valid.replace(b"SYM", b"S\\nM")
    yield valid.replace(b"SYM", b"S\nM")
    yield valid.replace(b'"broker":"sim"', b'"broker":"sim","broker":"zerodha"')
    yield valid.replace(b'"quantity":"', b'"quantity":"1","quantity":"')
    yield valid.replace(b'"holdings":[', b'"holdings":[],"holdings":[')
    yield valid.replace(b'"last_price":"', b'"last_price":')
    yield valid.replace(b'"schema_version":1', b'"schema_version":1.0')
    yield valid.replace(b'"schema_version":1', b'"schema_version":"1"')
    yield valid.replace(b'"schema_version":1', b'"schema_version":true')
    yield valid.replace(b"{", b"[", 1)
    for junk in [b"01", b"nan", b"[1,]", b'"a\tb"', b"{'a': 1}", b'"\\x"', b"1.", b"-", b"tru", b'"\\ud800"']:
        yield valid.replace(b'"broker":', b'"unknown":' + junk + b',"broker":')
    for depth in (3, 200, 300, 10_000):  # the model's parser refuses nesting deeper than about 250
        yield valid.replace(b'"broker":', b'"unknown":' + b"[" * depth + b"]" * depth + b',"broker":')
    yield b""
    yield b"null"
    yield b"[]"
    yield b"{}"
    yield b"\x00"
    yield '{"broker": "é"}'.encode("latin-1")


def test_the_same_snapshot_written_differently_or_broken_as_bytes_is_decoded_alike() -> None:
    raws = [text for message in _valid() for text in _texts(_dump(message))]
    seen = _compare(raws)
    assert seen["refused"] > 50 and seen["lean"] > 20, seen


def _declared(model: type) -> dict[str, Any]:
    fields = model.model_fields if hasattr(model, "model_fields") else model.__pydantic_fields__
    return {
        name: ("required" if field.is_required() else field.get_default(call_default_factory=False))
        for name, field in fields.items()
    }


def _lean_declared(struct: type[msgspec.Struct]) -> dict[str, Any]:
    return {f.name: "required" if f.required else f.default for f in msgspec.structs.fields(struct)}


@pytest.mark.parametrize(
    ("model", "struct"),
    [
        (HoldingSnapshot, _Whole),
        (HoldingSnapshot, _Listed),
        (Holding, SnapshotHolding),
        (ReportedTrade, SnapshotTrade),
    ],
)
def test_the_lean_schema_names_exactly_the_models_fields_with_their_defaults(
    model: type, struct: type
) -> None:
    """A field added to the model must be added to the lean schema too, or this fails."""
    declared, lean = _declared(model), _lean_declared(struct)
    assert sorted(lean) == sorted(declared)  # in any order: every field is given by name
    # The model makes up an event id and a time when a message has none: the lean path leaves those
    # messages to it.
    made_up = {name for name, default in declared.items() if default is PydanticUndefined}
    assert made_up == ({"event_id", "occurred_at"} if model is HoldingSnapshot else set())
    assert {k: v for k, v in lean.items() if k not in made_up} == {
        k: v for k, v in declared.items() if k not in made_up
    }


def test_holdings_share_their_strings_as_the_models_do() -> None:
    """The ledger keeps decoded holdings as positions: a string each would cost 200 bytes a holding."""
    raw = _dump(_valid()[-2])  # twenty holdings, an ISIN each
    decode = LeanSnapshots().decode
    before, after = decode(raw).holdings, decode(raw).holdings
    assert type(after[0]) is SnapshotHolding
    for name in ("symbol", "exchange", "currency", "isin"):
        assert all(
            getattr(a, name) is getattr(b, name) is not None for a, b in zip(before, after, strict=True)
        )
    forgetful = LeanSnapshots(texts_at_most=10).decode
    before = forgetful(raw).holdings  # more than 10 texts: forgotten before the next snapshot
    another_account = _dump(_valid()[-2] | {"account_id": str(uuid.UUID(int=8))})
    assert forgetful(another_account).holdings[-1].symbol is not before[-1].symbol


def test_a_holding_listed_as_the_accounts_previous_snapshot_listed_it_is_that_holding() -> None:
    """Not decoded again: the ledger then finds an unchanged position to be the same object."""
    first = _valid()[-2]  # twenty holdings
    second = first | {"holdings": [*first["holdings"]]}
    second["holdings"][3] = first["holdings"][3] | {"quantity": "7"}
    decoder = LeanSnapshots()
    before, after = decoder.decode(_dump(first)).holdings, decoder.decode(_dump(second)).holdings
    assert [a is b for a, b in zip(before, after, strict=True)] == [i != 3 for i in range(20)]
    assert after[3].quantity == Decimal(7)
    assert _verdict(LeanSnapshots().decode, _dump(second)) == _verdict(_model, _dump(second))
    # Another account, or a holding moved to another place in the list: decoded.
    elsewhere = second | {"account_id": str(uuid.UUID(int=8))}
    assert not any(a is b for a, b in zip(after, decoder.decode(_dump(elsewhere)).holdings, strict=True))
    shifted = second | {"holdings": second["holdings"][1:]}
    assert not any(a is b for a, b in zip(after[1:], decoder.decode(_dump(shifted)).holdings, strict=True))


def test_quantities_and_prices_are_shared_across_accounts_where_written_alike() -> None:
    """A decimal is 104 bytes: equal ones are one object, unless `str()` would write them otherwise."""
    message = _valid()[-2]
    holding = message["holdings"][0] | {"last_price": "1240.10"}
    written = [("100", "1240.10"), ("100", "1240.10"), ("100.0", "1240.1"), ("-0", "0"), ("0", "-0")]
    decoder = LeanSnapshots()
    decoded = [
        decoder.decode(
            _dump(
                message
                | {
                    "account_id": str(uuid.UUID(int=n)),
                    "holdings": [holding | {"quantity": q, "last_price": p}],
                }
            )
        ).holdings[0]
        for n, (q, p) in enumerate(written, start=8)
    ]
    assert [(str(h.quantity), str(h.last_price)) for h in decoded] == written
    assert decoded[1].quantity is decoded[0].quantity and decoded[1].last_price is decoded[0].last_price
    assert (
        decoded[2].quantity is not decoded[0].quantity and decoded[2].last_price is not decoded[0].last_price
    )
    assert (
        decoded[4].quantity is not decoded[3].quantity and decoded[4].last_price is not decoded[3].last_price
    )


def test_an_account_whose_every_holding_changed_is_decoded_whole_for_a_while() -> None:
    """Comparing a snapshot whose prices all moved costs more than decoding it: an account found so
    is decoded whole for its next few snapshots, then compared again."""
    message = _valid()[-2]
    moved = message | {"holdings": [h | {"last_price": "9.5"} for h in message["holdings"]]}
    decoder = LeanSnapshots()
    decoder.decode(_dump(message))
    latest = decoder.decode(_dump(moved)).holdings  # every holding changed
    reused = []
    for _ in range(WHOLE_AFTER_CHANGE + 2):
        holdings = decoder.decode(_dump(moved)).holdings
        reused.append(holdings[0] is latest[0])
        assert holdings == latest
        latest = holdings
    # Whole, then once to have something to compare with, then compared.
    assert reused == [False] * (WHOLE_AFTER_CHANGE + 1) + [True]


@pytest.mark.parametrize("depth", [10, 1_000, 100_000])
def test_a_holding_nested_deep_is_refused_alike(depth: int) -> None:
    nested = _dump(_valid()[-2]).replace(
        b'"holdings":[', b'"holdings":[' + b"[" * depth + b"]" * depth + b",", 1
    )
    assert _verdict(LeanSnapshots().decode, nested) == _verdict(_model, nested)
    assert _verdict(LeanSnapshots().decode, nested)[0] == "refused"


def test_the_holdings_kept_to_compare_with_are_bounded() -> None:
    decoder = LeanSnapshots(holdings_at_most=30)  # one account's twenty, but not two accounts'
    message = _valid()[-2]
    accounts = [message | {"account_id": str(uuid.UUID(int=n))} for n in (8, 9)]
    first = [decoder.decode(_dump(m)).holdings for m in accounts]
    assert decoder.decode(_dump(accounts[1])).holdings[0] is first[1][0]  # 40 kept when it was told
    assert decoder.decode(_dump(accounts[0])).holdings[0] is not first[0][0]  # over 30: forgotten
