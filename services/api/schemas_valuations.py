"""The body of a portfolio's value over time."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, Field

from services.api.schemas import DecimalText


class ValuationPointOut(BaseModel):
    at: AwareDatetime
    currency: str
    value: DecimalText = Field(
        description="Quantity x last price summed over the portfolio's positions in this currency as "
        "they stood at `at` (holdings without a price count for nothing), to 8 decimal places."
    )


class ValuationsOut(BaseModel):
    since: AwareDatetime | None = Field(
        description="Where the range starts: as asked, or the first snapshot's time; None when the "
        "portfolio has never synced."
    )
    until: AwareDatetime
    points: list[ValuationPointOut] = Field(
        description="Oldest first, one per currency at each time. Values in different currencies are "
        "never added up."
    )
