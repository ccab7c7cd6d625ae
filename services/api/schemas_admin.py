"""What the operator's routes answer (`/v1/admin/...`). Nothing here carries a credential, a token
or a dead letter's original bytes."""

from __future__ import annotations

import uuid

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class _Response(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class AdminUserOut(_Response):
    id: uuid.UUID
    email: str
    role: str
    created_at: AwareDatetime
    accounts: int = Field(description="How many broker accounts the user holds.")


class AdminUserPage(BaseModel):
    items: list[AdminUserOut] = Field(description="Oldest first (by created_at, then id).")
    next_cursor: str | None


class AdminAccountOut(_Response):
    id: uuid.UUID
    user_id: uuid.UUID
    portfolio_id: uuid.UUID
    broker: str
    label: str
    created_at: AwareDatetime
    last_attempt_at: AwareDatetime | None
    last_success_at: AwareDatetime | None = Field(description="None: never synced.")
    consecutive_failures: int
    needs_reauth: bool
    last_error: str | None


class AdminAccountPage(BaseModel):
    items: list[AdminAccountOut] = Field(description="Oldest first (by created_at, then id).")
    next_cursor: str | None


class AdminSyncRunOut(_Response):
    id: uuid.UUID
    account_id: uuid.UUID
    user_id: uuid.UUID
    broker: str
    trigger: str
    status: str
    requested_at: AwareDatetime
    rerequested_at: AwareDatetime | None = Field(description="When a stuck run was last requested again.")
    finished_at: AwareDatetime | None
    failure_kind: str | None
    failure_reason: str | None
    attempts: int
    next_attempt_at: AwareDatetime | None


class AdminSyncRunPage(BaseModel):
    items: list[AdminSyncRunOut] = Field(description="Newest first (by requested_at, then id).")
    next_cursor: str | None


class OutcomeCounts(BaseModel):
    succeeded: int
    failed: int = Field(description="Runs that ended failed (after their last attempt).")


class BrokerStats(BaseModel):
    broker: str
    last_5_minutes: OutcomeCounts
    last_hour: OutcomeCounts
    last_day: OutcomeCounts


class BrokerStatsOut(BaseModel):
    at: AwareDatetime = Field(description="The time the windows end at.")
    brokers: list[BrokerStats] = Field(description="Brokers with a run that ended in the last day.")


class BrokerHistory(BaseModel):
    broker: str
    succeeded: list[int] = Field(description="Runs that ended succeeded in each hour, oldest first.")
    failed: list[int] = Field(description="Runs that ended failed (after their last attempt), each hour.")


class BrokerHistoryOut(BaseModel):
    hours: list[AwareDatetime] = Field(
        description="Where each hour begins, oldest first; the last ends at `at`."
    )
    at: AwareDatetime
    brokers: list[BrokerHistory] = Field(description="Brokers with a run that ended in those hours.")


class RunRequested(BaseModel):
    run_id: uuid.UUID = Field(
        description="The run requested: the same id for a re-request, a new one for a retry."
    )


class FetcherOut(BaseModel):
    fetcher_id: str
    broker: str
    host: str
    pid: int
    started_at: AwareDatetime
    last_seen_at: AwareDatetime
    in_flight: int
    handled: int
    alive: bool = Field(description="False once the last heartbeat is older than FETCHER_GONE_AFTER_SECONDS.")


class FetchersOut(BaseModel):
    items: list[FetcherOut] = Field(description="Alive ones and those gone without a clean stop.")


class LagOut(BaseModel):
    group: str
    topic: str
    partition: int
    committed: int = Field(description="The group's committed offset: the next record it will read.")
    end: int = Field(description="The partition's log end offset.")
    lag: int


class LagReport(BaseModel):
    items: list[LagOut]
    total: int = Field(description="The sum of every row's lag.")


class DeadLetterOut(BaseModel):
    partition: int
    offset: int
    source_topic: str = Field(description="The topic the message was taken from, where a replay puts it.")
    key: str | None
    reason: str = Field(description="Why it could not be processed (anything like a secret redacted).")
    consumer_group: str
    failed_at: AwareDatetime
    replayed: bool


class DeadLetterTopicOut(BaseModel):
    topic: str
    count: int = Field(description="Messages the topic holds.")
    newest: list[DeadLetterOut] = Field(description="The newest few, newest first; never the message itself.")


class DeadLettersOut(BaseModel):
    items: list[DeadLetterTopicOut]


class ReplayOut(BaseModel):
    replayed: int
    already_replayed: int = Field(description="Replayed before: not published again.")
    skipped_before_since: int
