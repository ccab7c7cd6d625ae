"""What each broker is: code, name, the credential fields it needs and its documented limits.

One description per broker, read by every service that needs it without importing another service:
the fetcher's adapters take their limits, base URL and credential keys from here, the API lists them
(`GET /v1/brokers`) and checks accounts and credentials against them, and `topics create` makes the
topics of the brokers a fetcher can sync. A plug-in package declares its broker's description in the
`portfolio_sync.broker_types` entry-point group (beside its adapter in `portfolio_sync.brokers`):

    [project.entry-points."portfolio_sync.broker_types"]
    mybroker = "mypackage.mybroker:BROKER_TYPE"
"""

from __future__ import annotations

from enum import StrEnum
from importlib.metadata import entry_points

from pydantic import BaseModel, ConfigDict, Field

ENTRY_POINT_GROUP = "portfolio_sync.broker_types"
CODE_PATTERN = r"^[a-z][a-z0-9_]{1,31}$"


class LimitScope(StrEnum):
    """What a broker counts its rate limit against."""

    # One budget for every account the deployment syncs through the broker with the same application
    # key (`key_fields`), whichever fetcher process sends: the processes split it between them.
    APPLICATION = "application"
    # A budget per account credential (`key_fields`): each account has the whole limit to itself.
    ACCOUNT = "account"


class BrokerLimits(BaseModel):
    """A broker's request limits. Adapters declare their documented defaults; settings override them."""

    model_config = ConfigDict(frozen=True)

    rate_per_s: float = Field(gt=0, description="Requests per second, sustained.")
    burst: int = Field(default=1, ge=1, description="Requests that may go at once after a quiet spell.")
    concurrency: int = Field(default=10, ge=1, description="Most accounts fetched at the same time.")
    scope: LimitScope = Field(
        default=LimitScope.APPLICATION,
        description="Whom the broker counts the rate against: the application key (shared by every "
        "account and fetcher process) or each account's credential.",
    )
    key_fields: tuple[str, ...] = Field(
        default=(),
        description="Credential fields naming the key the broker counts by (Kite: api_key); none: "
        "one budget for the whole deployment.",
    )
    window_s: float = Field(
        default=1.0,
        gt=0,
        description="The window the broker counts in: rate_per_s x window_s requests per window.",
    )


class BrokerType(BaseModel):
    """One kind of broker account this deployment can hold (the seed's `BrokerType`)."""

    model_config = ConfigDict(frozen=True)

    code: str = Field(pattern=CODE_PATTERN, description="What accounts name their broker by.")
    name: str
    credential_fields: tuple[str, ...] = Field(description="Credential fields an account must set.")
    optional_credential_fields: tuple[str, ...] = ()
    limits: BrokerLimits | None = Field(description="Documented request limits; None: no broker API.")
    doc_url: str = Field(description="The broker's API reference; for ours, the repository document.")
    base_url: str = ""
    fetched: bool = Field(
        default=True, description="Synced by a fetcher from `sync.requests.<code>`; False: imported."
    )

    def adapter_limits(self) -> BrokerLimits:
        """The limits an adapter of this broker runs under; a type without them has no adapter."""
        if self.limits is None:
            raise ValueError(f"broker type {self.code!r} declares no limits: it cannot have an adapter")
        return self.limits

    def missing_credentials(self, given: dict[str, str]) -> list[str]:
        """The required fields absent or blank in `given` (names only: values are secrets)."""
        return [f for f in self.credential_fields if not given.get(f, "").strip()]


SIM = BrokerType(
    code="sim",
    name="Simulated broker (demo, no account needed)",
    credential_fields=(),
    optional_credential_fields=("market",),  # `in` (NSE, INR) or `us` (US exchanges, USD); else both
    # No real broker behind it: generous enough for the benchmarks, overridable by BROKER_LIMITS.
    # Application-wide, the cautious scope, so that the demo's fetchers behave as against a real key.
    limits=BrokerLimits(rate_per_s=5000, burst=500, concurrency=512),
    doc_url="README.md#the-demo",
)
ZERODHA = BrokerType(
    code="zerodha",
    name="Zerodha Kite Connect",
    credential_fields=("api_key", "access_token"),
    # "All other endpoints" (holdings among them): 10 requests per second, no burst documented
    # (https://kite.trade/docs/connect/v3/exceptions/#api-rate-limit). Per API key, over every user
    # logged in through it: "Kite Connect API rate limits are enforced at the API key level, not per
    # individual user or access token ... aggregated across users and endpoints" (Zerodha staff,
    # https://kite.trade/forum/discussion/comment/51559; also comment/35335: "All the rate limits are
    # per api_key"). So: application scope, keyed by the credentials' api_key.
    limits=BrokerLimits(
        rate_per_s=10, burst=1, concurrency=10, scope=LimitScope.APPLICATION, key_fields=("api_key",)
    ),
    doc_url="https://kite.trade/docs/connect/v3/portfolio/",
    base_url="https://api.kite.trade",
)
UPSTOX = BrokerType(
    code="upstox",
    name="Upstox",
    credential_fields=("access_token",),
    # Standard APIs: 50 requests/second (and 500/minute, 2000 per 30 minutes) "per user, per API"
    # (https://upstox.com/developer/api-documentation/rate-limiting): account scope, keyed by the
    # user's access token (the only credential; one token is one user's session).
    limits=BrokerLimits(
        rate_per_s=50, burst=50, concurrency=10, scope=LimitScope.ACCOUNT, key_fields=("access_token",)
    ),
    doc_url="https://upstox.com/developer/api-documentation/get-holdings",
    base_url="https://api.upstox.com/v2",
)
DHAN = BrokerType(
    code="dhan",
    name="Dhan",
    credential_fields=("access_token",),
    # "Non Trading APIs" 20/s (https://dhanhq.co/docs/v2/ "Rate Limit"; Dhan's support:
    # https://dhan.freshdesk.com/support/solutions/articles/82000891163); burst 1 keeps every second
    # under 20. Counted per user: past it Dhan answers DH-904 "too many requests from a single user"
    # (https://dhanhq.co/docs/v2/annexure), so account scope, keyed by the user's access token.
    limits=BrokerLimits(
        rate_per_s=20, burst=1, concurrency=10, scope=LimitScope.ACCOUNT, key_fields=("access_token",)
    ),
    doc_url="https://dhanhq.co/docs/v2/portfolio/",
    base_url="https://api.dhan.co/v2",
)
ALPACA = BrokerType(
    code="alpaca",
    name="Alpaca (Trading API v2)",
    credential_fields=("key_id", "secret_key"),
    optional_credential_fields=("environment",),  # live (default) or paper
    # "200 requests every minute per API key" (https://alpaca.markets/docs/api-references/trading-api/),
    # "200 requests per minute, per account" (https://alpaca.markets/support/usage-limit-api-calls/):
    # a key pair belongs to one account, so account scope, keyed by the key id; counted per minute.
    limits=BrokerLimits(
        rate_per_s=200 / 60,
        burst=1,
        concurrency=10,
        scope=LimitScope.ACCOUNT,
        key_fields=("key_id",),
        window_s=60,
    ),
    doc_url="https://docs.alpaca.markets/reference/positions",
    base_url="https://api.alpaca.markets",
)
CSV = BrokerType(
    code="csv",
    name="Statement import (CSV upload)",
    credential_fields=(),
    limits=None,
    doc_url="docs/statements.md",
    fetched=False,
)

BUILT_IN: tuple[BrokerType, ...] = (SIM, ZERODHA, UPSTOX, DHAN, ALPACA, CSV)


class UnknownBrokerType(LookupError):
    pass


def broker_types() -> dict[str, BrokerType]:
    """Every broker type this installation knows: the built-in ones and installed plug-ins'."""
    found = {t.code: t for t in BUILT_IN}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            declared = entry_point.load()
        except Exception as exc:
            raise RuntimeError(f"broker type {entry_point.value} failed to load: {exc!r}") from exc
        if not isinstance(declared, BrokerType) or declared.code != entry_point.name:
            raise RuntimeError(
                f"broker type plug-in {entry_point.value} is not a BrokerType with code {entry_point.name!r}"
            )
        if found.get(declared.code, declared) != declared:
            raise RuntimeError(f"broker type {declared.code!r} is declared twice, differently")
        found[declared.code] = declared
    return dict(sorted(found.items()))


def broker_type(code: str) -> BrokerType:
    known = broker_types()
    try:
        return known[code]
    except KeyError:
        raise UnknownBrokerType(f"unknown broker {code!r}; known: {', '.join(known)}") from None


def fetched_broker_codes() -> list[str]:
    """The brokers a fetcher syncs: each has a `sync.requests.<code>` topic."""
    return [code for code, t in broker_types().items() if t.fetched]
