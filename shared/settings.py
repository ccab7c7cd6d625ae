"""All configuration, read from the environment in one typed class.

Every variable is documented in the README and set in docker-compose.yml; a test keeps the three in
step. Defaults describe the embedded mode, so `portfolio-sync demo` needs no configuration at all.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.db.ownership import Service


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    database_url: str = Field(
        default="sqlite+aiosqlite:///portfolio-sync.db",
        description="SQLAlchemy async URL: postgresql+asyncpg://... or sqlite+aiosqlite:///file.db",
    )
    api_database_url: str = Field(
        default="",
        description="The API's database URL, as its own Postgres role (granted by `db roles`); "
        "empty: DATABASE_URL.",
    )
    scheduler_database_url: str = Field(
        default="",
        description="The scheduler's database URL, as its own Postgres role (granted by `db roles`); "
        "empty: DATABASE_URL.",
    )
    ledger_database_url: str = Field(
        default="",
        description="The ledger's database URL, as its own Postgres role (granted by `db roles`); "
        "empty: DATABASE_URL.",
    )
    fetcher_database_url: str = Field(
        default="",
        description="The fetcher's database URL (its archive of raw answers), as its own Postgres role "
        "(granted by `db roles`); empty: DATABASE_URL.",
    )
    webhooks_database_url: str = Field(
        default="",
        description="The webhook delivery service's database URL, as its own Postgres role (granted by "
        "`db roles`); empty: DATABASE_URL.",
    )
    bus: Literal["kafka", "memory"] = Field(
        default="kafka", description="Message bus of the distributed services; the demo always uses memory."
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="Comma-separated host:port list."
    )
    kafka_namespace: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Prefix of every topic and consumer group, so several deployments can share a cluster.",
    )
    kafka_topic_partitions: int = Field(
        default=4, ge=1, description="Partitions of topics created by `topics create`."
    )
    kafka_replication_factor: int = Field(
        default=0,
        ge=0,
        description="Replicas of each topic `topics create` makes; 0: from the brokers that answer "
        "(3 on three or more, else one per broker). More than the cluster has is an error.",
    )
    kafka_min_insync_replicas: int = Field(
        default=0,
        ge=0,
        description="Replicas that must have a write before Kafka acknowledges it (min.insync.replicas "
        "of each topic `topics create` makes); 0: one fewer than the replication factor, at least 1.",
    )
    credentials_keys: SecretStr = Field(
        default=SecretStr(""),
        description="Comma-separated Fernet keys, newest first; older keys only decrypt (rotation).",
    )
    api_host: str = Field(default="127.0.0.1", description="Address the API binds to.")
    api_port: int = Field(default=8000, ge=1, le=65535, description="Port the API binds to.")
    api_max_body_bytes: int = Field(
        default=1_048_576,
        ge=1,
        description="Largest request body the API reads (413 beyond it); statement uploads: 5 MB.",
    )
    scheduler_tick_seconds: float = Field(
        default=5.0, gt=0, description="How often the scheduler looks for due syncs."
    )
    scheduler_batch_size: int = Field(default=500, ge=1, description="Most schedules claimed per tick.")
    scheduler_publish_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Longest wait for one broker's sync requests to be accepted (a missing topic waits "
        "this long) before the broker is set aside.",
    )
    scheduler_broker_backoff_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How long a broker whose publish failed is set aside; doubles per failure.",
    )
    scheduler_broker_max_backoff_seconds: float = Field(
        default=300.0, gt=0, description="Longest time a failing broker is set aside before another try."
    )
    default_sync_interval_seconds: int = Field(
        default=3600, ge=10, description="Interval of a new account's schedule."
    )
    min_sync_interval_seconds: int = Field(
        default=60,
        ge=1,
        description="Shortest time between two scheduled syncs of one account that a schedule may ask "
        "for (an interval, or two fires of a cron expression); less is a 422.",
    )
    fetcher_max_attempts: int = Field(
        default=5, ge=1, description="Attempts of a sync (the first included) before its failure is final."
    )
    fetcher_backoff_seconds: float = Field(
        default=2.0, gt=0, description="First retry delay; doubles per attempt, with full jitter."
    )
    fetcher_max_backoff_seconds: float = Field(
        default=120.0,
        gt=0,
        description="Longest retry delay; a broker's longer Retry-After is cut to it.",
    )
    fetcher_max_inline_wait_seconds: float = Field(
        default=5.0,
        gt=0,
        # Well under Kafka's max poll interval (shared.bus.kafka.MAX_POLL_INTERVAL_MS, 300 s): a batch
        # that outlives it costs the fetcher its partitions and is delivered again.
        le=60,
        description="Longest a fetcher waits inside a batch for a retry's not_before; a retry due later "
        "goes back on sync.requests.<broker>.retry and is looked at again.",
    )
    broker_limits: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description='JSON overrides of brokers\' documented limits, e.g. {"zerodha": {"rate_per_s": 5, '
        '"burst": 5, "concurrency": 20}}.',
    )
    broker_base_urls: dict[str, str] = Field(
        default_factory=dict,
        description='JSON overrides of brokers\' API base URLs, e.g. {"alpaca": "https://api.alpaca.markets"}.',
    )
    signup_mode: Literal["open", "invite", "closed"] = Field(
        default="open",
        description="Who may sign up: anyone (open), holders of an operator's invite code (invite), "
        "nobody (closed).",
    )
    signup_rate_limit_per_hour: int = Field(
        default=20,
        ge=0,
        description="Sign-ups per client address per hour, over all API processes; 0: no limit.",
    )
    token_rate_limit_per_minute: int = Field(
        default=600,
        ge=0,
        description="Requests per API token per minute, over all API processes; 0: no limit.",
    )
    api_trusted_proxies: str = Field(
        default="",
        description="Comma-separated addresses or networks of reverse proxies whose X-Forwarded-For is "
        "believed; empty: the client address is the socket peer.",
    )
    max_portfolios_per_user: int = Field(default=50, ge=1, description="Most portfolios one user may hold.")
    max_accounts_per_user: int = Field(
        default=200, ge=1, description="Most broker accounts one user may hold, over all their portfolios."
    )
    ledger_batch_size: int = Field(
        default=2000, ge=1, description="Most events the ledger applies in one database transaction."
    )
    ledger_decode_ahead: int = Field(
        default=500,
        ge=0,
        description="Records of the next batch the ledger decodes while it prepares one (fetching it then "
        "too), filling the wait on that batch's reads; 500 cost 12 MB more at the memory peak; 0: none.",
    )
    snapshot_retention_days: float = Field(
        default=2.0,
        ge=0,
        description="Snapshots older than this that changed nothing (same positions as the one before) "
        "are deleted by the ledger (hourly), but for the last before a pause of 4 hours or more (a "
        "trading day's close); their positions stay in the versions, and sync runs keep every sync; "
        "0: kept forever.",
    )
    raw_archive: Literal["database", "files", "none"] = Field(
        default="database",
        description="Where fetchers keep each sync's raw broker answer (headers dropped, credential "
        "values blanked, compressed) for `replay`: the database (table raw_answers), files under "
        "RAW_ARCHIVE_DIR, or none.",
    )
    raw_archive_dir: str = Field(
        default="raw-answers", description="Directory of the archive when RAW_ARCHIVE is files."
    )
    raw_archive_retention_days: float = Field(
        default=30.0,
        ge=0,
        description="Raw answers older than this are deleted by the fetchers (hourly); 0: kept forever.",
    )
    simulated_latency_ms: float = Field(default=50.0, ge=0, description="Latency of the simulated broker.")
    simulated_failure_rate: float = Field(
        default=0.0, ge=0, le=1, description="Share of simulated syncs that fail."
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="Address the process's Prometheus /metrics server binds to."
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of the process's Prometheus /metrics server; 0: not served. Give each process "
        "on one host its own.",
    )
    fetcher_heartbeat_seconds: float = Field(
        default=5.0, gt=0, description="How often each fetcher announces itself on `fetchers.heartbeats`."
    )
    fetcher_gone_after_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A fetcher whose last heartbeat is older than this is listed as gone "
        "(GET /v1/admin/fetchers).",
    )
    stuck_run_after_seconds: int = Field(
        default=600,
        ge=1,
        description="A sync run still `requested` this long after it was (last) requested is stuck: "
        "listed to operators and requested again by the scheduler.",
    )
    webhooks_retry_schedule_seconds: str = Field(
        default="5,300,1800,7200,18000,36000,36000",
        pattern=r"^\s*\d+(\.\d+)?(\s*,\s*\d+(\.\d+)?)*\s*$",
        description="Comma-separated waits before each retry of a failed webhook delivery (seconds); "
        "a delivery is given up after the last. The default retries for about 27 hours.",
    )
    webhooks_disable_after_failures: int = Field(
        default=40,
        ge=1,
        description="A webhook endpoint whose last this many attempts all failed (none succeeded in "
        "between) is disabled until its owner enables it again.",
    )
    webhooks_allowed_networks: str = Field(
        default="",
        description="Comma-separated networks webhooks may be sent to although private, loopback or "
        "link-local (say 10.0.0.0/8 for receivers on the operator's own network); empty: only public "
        "addresses.",
    )
    webhooks_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=60,
        description="Longest a webhook delivery waits to connect, and then for each read of the answer.",
    )
    webhooks_poll_seconds: float = Field(
        default=1.0, gt=0, description="How often the delivery service looks for deliveries due."
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> Settings:
        factor, min_insync = self.kafka_replication_factor, self.kafka_min_insync_replicas
        if factor and min_insync > factor:
            raise ValueError(
                f"KAFKA_MIN_INSYNC_REPLICAS={min_insync} exceeds KAFKA_REPLICATION_FACTOR={factor}: "
                "no write could ever be acknowledged"
            )
        return self

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {value!r}")
        return level

    @field_validator("api_trusted_proxies", "webhooks_allowed_networks")
    @classmethod
    def _networks(cls, value: str, info: ValidationInfo) -> str:
        for part in value.split(","):
            if part.strip():
                try:
                    ipaddress.ip_network(part.strip(), strict=False)
                except ValueError:
                    raise ValueError(
                        f"{(info.field_name or '').upper()}: {part.strip()!r} is not an address or network"
                    ) from None
        return value

    @property
    def webhooks_allowed(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [
            ipaddress.ip_network(p.strip(), strict=False)
            for p in self.webhooks_allowed_networks.split(",")
            if p.strip()
        ]

    @property
    def webhooks_retry_schedule(self) -> tuple[float, ...]:
        return tuple(float(p) for p in self.webhooks_retry_schedule_seconds.split(","))

    @property
    def trusted_proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [
            ipaddress.ip_network(p.strip(), strict=False)
            for p in self.api_trusted_proxies.split(",")
            if p.strip()
        ]

    def service_database_url(self, service: Service) -> str:
        """The URL `service` connects with: its own when set, else DATABASE_URL (the schema owner's,
        which operator tasks such as `db upgrade` and `users create` use)."""
        own = {
            "api": self.api_database_url,
            "scheduler": self.scheduler_database_url,
            "ledger": self.ledger_database_url,
            "fetcher": self.fetcher_database_url,
            "webhooks": self.webhooks_database_url,
        }[service]
        return own or self.database_url

    @property
    def bootstrap_servers(self) -> list[str]:
        return [s.strip() for s in self.kafka_bootstrap_servers.split(",") if s.strip()]
