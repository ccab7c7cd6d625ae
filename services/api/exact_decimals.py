"""Decimal arithmetic that never rounds, for the amounts the holdings reads derive.

Amounts are stored as NUMERIC(38, 18): a product of two (up to 76 digits) or a sum of many does not
fit the 28 significant digits of Python's default context, which would round it where Postgres's
numeric does not; the fast reads build the same responses in Postgres (holdings_sql_json.py), and
both paths must give the exact value."""

from __future__ import annotations

from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal

EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)
"""The decimal module's recipe for unrounded arithmetic: sums, differences and products are exact,
and so is `normalize`. Never for a division, whose exact result may have no end: see
`rounded_quotient`."""


def rounded_quotient(numerator: Decimal, denominator: Decimal, places: int) -> Decimal:
    """`numerator / denominator` rounded half-even to `places` decimal places from the exact
    quotient, not from one already rounded to a context's precision (as `(a / b).quantize(..)` is),
    with exponent `-places` as quantize gives. The denominator is not zero."""
    top, top_scale = numerator.as_integer_ratio()
    bottom, bottom_scale = denominator.as_integer_ratio()
    # numerator / denominator * 10**places as the fraction top / bottom, bottom > 0.
    top *= bottom_scale * 10**places
    bottom *= top_scale
    if bottom < 0:
        top, bottom = -top, -bottom
    quotient, remainder = divmod(top, bottom)  # floor: 0 <= remainder < bottom
    if 2 * remainder > bottom or (2 * remainder == bottom and quotient % 2):
        quotient += 1
    return Decimal(quotient).scaleb(-places, EXACT)
