"""Bodies of an account's schedule and of operators' broker pauses.

A schedule is one of three kinds, told apart by `kind` (as django-celery-beat's interval, crontab
and clocked schedules): `interval` (every `interval_seconds`), `cron` (`cron` in the IANA zone
`timezone`) and `once` (at `run_at`). Each may be paused (`enabled`) and bounded by `start_at` and
`end_at`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from services.api.input_types import NO_CONTROL_CHARACTERS, Timestamp
from shared.schedule_times import InvalidSchedule, check_cron, zone_named

MAX_SYNC_INTERVAL_SECONDS = 366 * 24 * 3600

CronText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=9, max_length=200), NO_CONTROL_CHARACTERS
]
ZoneText = Annotated[str, StringConstraints(min_length=1, max_length=64), NO_CONTROL_CHARACTERS]
Reason = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), NO_CONTROL_CHARACTERS
]

_ENABLED = "False pauses the schedule (nothing fires, `next_runs` is empty); true resumes it."
_START = "No fire before this time (ISO 8601 with a zone); null: from now."
_END = "No fire after this time; once it has passed the schedule has ended (state `ended`). Null: never."


class _Window(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description=_ENABLED)
    start_at: Timestamp | None = Field(default=None, description=_START)
    end_at: Timestamp | None = Field(default=None, description=_END)

    @model_validator(mode="after")
    def _end_after_start(self) -> Self:
        if self.start_at is not None and self.end_at is not None and self.end_at <= self.start_at:
            raise ValueError("end_at must be after start_at")
        return self


class IntervalScheduleIn(_Window):
    kind: Literal["interval"]
    interval_seconds: int = Field(
        ge=1,
        le=MAX_SYNC_INTERVAL_SECONDS,
        description="Seconds between syncs; at least the deployment's MIN_SYNC_INTERVAL_SECONDS (422 below).",
        examples=[3600],
    )


class CronScheduleIn(_Window):
    kind: Literal["cron"]
    cron: CronText = Field(
        description="Five fields: minute hour day-of-month month day-of-week, read by cronsim; fires no "
        "more often than MIN_SYNC_INTERVAL_SECONDS allows (422 otherwise).",
        examples=["*/15 9-15 * * 1-5"],
    )
    timezone: ZoneText = Field(
        description="The IANA time zone the expression is read in (daylight saving included).",
        examples=["Asia/Kolkata", "America/New_York"],
    )

    @field_validator("cron")
    @classmethod
    def _cron_reads(cls, value: str) -> str:
        try:
            return check_cron(value)
        except InvalidSchedule as exc:
            raise ValueError(str(exc)) from None

    @field_validator("timezone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        try:
            zone_named(value)
        except InvalidSchedule as exc:
            raise ValueError(str(exc)) from None
        return value


class OnceScheduleIn(_Window):
    kind: Literal["once"]
    run_at: Timestamp = Field(description="When to sync (a time in the past syncs at once).")


ScheduleIn = Annotated[IntervalScheduleIn | CronScheduleIn | OnceScheduleIn, Field(discriminator="kind")]
"""A whole schedule, as PUT takes it."""


class SchedulePatch(BaseModel):
    """Partial: a field left out keeps its value; `start_at` / `end_at` null removes the bound. A
    new `kind` needs that kind's fields (the other kinds' are dropped)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["interval", "cron", "once"] | None = None
    interval_seconds: int | None = Field(default=None, ge=1, le=MAX_SYNC_INTERVAL_SECONDS)
    cron: CronText | None = None
    timezone: ZoneText | None = None
    run_at: Timestamp | None = None
    enabled: bool | None = Field(default=None, description=_ENABLED)
    start_at: Timestamp | None = Field(default=None, description=_START)
    end_at: Timestamp | None = Field(default=None, description=_END)


ScheduleState = Literal["active", "paused", "ended", "paused_by_operator"]


class ScheduleOut(BaseModel):
    account_id: uuid.UUID
    kind: Literal["interval", "cron", "once"]
    interval_seconds: int | None = Field(description="interval: seconds between syncs.")
    cron: str | None = Field(description="cron: the expression.")
    timezone: str | None = Field(description="cron: the IANA zone it is read in.")
    run_at: AwareDatetime | None = Field(description="once: when.")
    enabled: bool
    start_at: AwareDatetime | None
    end_at: AwareDatetime | None
    state: ScheduleState = Field(
        description="active; paused (enabled false); ended (a once that fired, an end passed); "
        "paused_by_operator (the broker is paused: see paused_by_operator)."
    )
    paused_by_operator: str | None = Field(
        description="Why an operator paused the account's broker; null when it is not paused. Nothing "
        "fires meanwhile; a tick that came due fires once after the broker is resumed."
    )
    next_run_at: AwareDatetime | None = Field(description="The next fire (UTC); null when none is coming.")
    next_runs: list[AwareDatetime] = Field(
        description="The next five fire times (UTC), the first being next_run_at; empty when paused or ended."
    )
    last_run_at: AwareDatetime | None = Field(description="When the scheduler last fired it.")
    run_count: int = Field(description="How many times the scheduler fired it.")


class BrokerPauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason = Field(
        description="Shown to the broker's users.", examples=["Kite API outage since 09:20 IST"]
    )


class BrokerPauseOut(BaseModel):
    reason: str
    paused_by: uuid.UUID | None = Field(description="The operator (null once that user is deleted).")
    paused_at: datetime


class BrokerStateOut(BaseModel):
    code: str
    name: str
    paused: BrokerPauseOut | None = Field(description="Null: requests flow as usual.")
