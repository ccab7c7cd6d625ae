"""A snapshot's content hash is stored and compared with hashes older code computed (retention keeps
a snapshot whose hash differs from the one before it): its definition is pinned here."""

from __future__ import annotations

from decimal import Decimal

from services.ledger.versions import content_hash
from shared.events import AssetType, Holding

HOLDINGS = [
    Holding(
        symbol="TCS",
        exchange="NSE",
        isin="INE467B01029",
        currency="INR",
        asset_type=AssetType.EQUITY,
        quantity=Decimal("10.500"),
        average_price=Decimal("3500.10"),
        last_price=Decimal("3600"),
    ),
    Holding(
        symbol="BTC",
        currency="USD",
        asset_type=AssetType.CRYPTO,
        quantity=Decimal("1e-18"),
        average_price=Decimal("1E+4"),
    ),
    Holding(
        symbol="ÄÖ",
        exchange="X",
        currency="EUR",
        asset_type=AssetType.ETF,
        quantity=Decimal("-0"),
        average_price=Decimal("0.000"),
    ),
]


def test_the_digest_is_the_one_stored_by_earlier_ledgers_whatever_the_order() -> None:
    # Computed by the ledger of commit 292abef.
    assert content_hash(HOLDINGS).hex() == "838a2f356eed41dcd077db72fcb213aa"
    assert content_hash(reversed(HOLDINGS)) == content_hash(HOLDINGS)


def test_prices_do_not_count_and_trailing_zeros_do_not_either() -> None:
    moved = Holding(**{**_fields(HOLDINGS[0]), "last_price": Decimal("1"), "quantity": Decimal("10.5")})
    assert content_hash([moved, *HOLDINGS[1:]]) == content_hash(HOLDINGS)
    resized = Holding(**{**_fields(HOLDINGS[0]), "quantity": Decimal("10.6")})
    assert content_hash([resized, *HOLDINGS[1:]]) != content_hash(HOLDINGS)


def _fields(holding: Holding) -> dict[str, object]:
    return {name: getattr(holding, name) for name in Holding.__dataclass_fields__}
