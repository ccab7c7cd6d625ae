"""Whether decimals fit the database's NUMERIC(38, 18): at most 18 decimal places and 20 digits
before the point, counted the way pydantic's `max_digits`/`decimal_places` count them.

Decoded from JSON, an event checks all of its numbers at once (`check_fit`) instead of one field
at a time: a snapshot carries some sixty, and pydantic's per-value check calls back into Python for
each, which made it half the cost of decoding a snapshot. Nearly every value is short, and a value whose text
has at most 20 characters and no exponent cannot exceed either limit, so one pass over the texts
settles a whole snapshot; only when it does not is each value counted exactly.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from itertools import chain
from operator import attrgetter
from typing import Any

MAX_DIGITS = 38
DECIMAL_PLACES = 18
WHOLE_DIGITS = MAX_DIGITS - DECIMAL_PLACES
# A value written in at most 20 characters without an exponent has at most 20 digits, and as a digit
# and the point come before its decimals, at most 18 of those.
_SURELY_FITS = 20
EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)
"""The decimal module's recipe for unrounded arithmetic: sums, differences and products (of two
stored amounts, up to 76 digits; the default context keeps 28) are exact, and `normalize` only drops
trailing zeros. Never for a division, whose exact result may have no end."""


def check_fit(
    items: Sequence[Any],
    names: tuple[str, str, *tuple[str, ...]],
    *,
    field: str = "",
    at_least_zero: Collection[str] = (),
) -> None:
    """Raise ValueError naming the first of `items`' decimal attributes `names` (None allowed) that
    does not fit, is not finite, or (of those named in `at_least_zero`) is below zero:
    `<field>.<index>.<name>`, or just `<name>` without a field."""
    if not items:
        return
    texts = list(map(str, chain.from_iterable(map(attrgetter(*names), items))))
    joined = "".join(texts)
    if (
        max(map(len, texts)) <= _SURELY_FITS
        and "E" not in joined  # an exponent: counted exactly
        and "a" not in joined  # NaN, sNaN (None has no "a")
        and "I" not in joined  # Infinity
        and not (at_least_zero and "-" in joined)
    ):
        return
    for index, item in enumerate(items):
        for name in names:
            value = getattr(item, name)
            problem = None if value is None else precision_problem(value)
            if problem is None and value is not None and name in at_least_zero and value < 0:
                problem = "should be greater than or equal to 0"
            if problem:
                where = f"{field}.{index}.{name}" if field else name
                raise ValueError(f"{where}: {value} {problem}")


def precision_problem(value: Decimal) -> str | None:
    """What keeps `value` from fitting, or None. Like pydantic, a value fails a limit only when it
    fails it both as written and normalized (so trailing zeros do not count against it)."""
    if not value.is_finite():
        return "is not a finite number"
    written, normalized = _counts(value), _counts(value.normalize(EXACT))
    if min(written[0], normalized[0]) > MAX_DIGITS:
        return f"has more than {MAX_DIGITS} digits"
    if min(written[1], normalized[1]) > DECIMAL_PLACES:
        return f"has more than {DECIMAL_PLACES} decimal places"
    if min(w[0] - w[1] for w in (written, normalized)) > WHOLE_DIGITS:
        return f"has more than {WHOLE_DIGITS} digits before the decimal point"
    return None


def _counts(value: Decimal) -> tuple[int, int]:
    """(digits, decimal places) as pydantic counts them."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    if exponent >= 0:
        return len(digits) + exponent, 0
    return max(len(digits), -exponent), -exponent
