"""Service configuration: one pydantic-settings class, read from OUTAGE_* environment variables.

Every variable is listed in the README. Defaults give the embedded mode `make run` starts:
Tansu on loopback, the two sample networks, the HTTP API on 127.0.0.1:8080.
"""

import json
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from topology.samples import HEAT_CSV, PHONES_CSV, POWER_CSV


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OUTAGE_", extra="ignore")

    broker: str | None = Field(
        default=None,
        description="Kafka bootstrap servers (host:port,...). Unset: start the embedded Tansu.",
    )
    broker_storage: str = Field(
        default="memory://tansu/",
        description="Storage of the embedded broker: 'memory://tansu/' (lost at stop), "
        "'durable' (a local S3 server keeps it in DATA_DIR/broker; see the README) or s3://.",
    )
    broker_port: int = Field(default=0, description="Port of the embedded broker (0: any free).")
    web_host: str = "127.0.0.1"
    web_port: int = 8080
    topology: Annotated[list[Path], NoDecode] = Field(
        default=[HEAT_CSV, POWER_CSV],
        description="Network model files (CSV or JSONL): comma-separated, or a JSON list.",
    )
    phone_book: Annotated[list[Path] | None, NoDecode] = Field(
        default=None,
        description="CSV files phone,premise_id (from the CRM) for the console's phone search; "
        "unset: the heat sample's when it is loaded, else none.",
    )
    rules: Path | None = Field(
        default=None, description="Correlation rules TOML overriding defaults."
    )

    @field_validator("topology", "phone_book", mode="before")
    @classmethod
    def _path_list(cls, value: Any) -> Any:
        """'a.csv,b.csv' or '["a.csv", "b.csv"]' from the environment; lists pass as they are."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]

    tansu_workarounds: bool = Field(
        default=True,
        description="Work around Tansu 0.6 (one record per produce); false on Apache Kafka.",
    )
    partitions: int = Field(default=4, ge=1, description="Partitions of every topic.")
    topic_replication: int = Field(
        default=1,
        ge=1,
        description="Replication factor of the topics this service creates (3 on a cluster).",
    )
    kafka_session_timeout: float | None = Field(
        default=None,
        gt=0,
        description="Consumer-group session timeout, seconds. Unset: 2 with the Tansu "
        "workarounds (a join then takes ~3 s, not ~30 s), else 10 (Kafka refuses sessions "
        "under its group.min.session.timeout.ms, 6 s by default).",
    )
    tick_seconds: float = Field(
        default=2.0, gt=0, description="How often timers advance correlation time (staleness...)."
    )
    data_dir: Path = Field(default=Path("var"), description="Worker state (faust tables).")
    app_id: str = "outage-correlator"
    clickhouse_url: str | None = Field(
        default=None,
        description="clickhouse://user:password@host:9000/db[?secure=true]; unset: chDB on disk.",
    )
    chdb_path: Path | None = Field(
        default=None, description="chDB directory (default DATA_DIR/chdb)."
    )
    hash_key: str | None = Field(
        default=None,
        description="HMAC key of reporter hashes in analytics (default: DATA_DIR/hash.key).",
    )
    sink_batch_size: int = Field(default=2000, ge=1, description="Rows batched per store insert.")
    sink_flush_seconds: float = Field(default=1.0, gt=0, description="Longest wait before a flush.")
    projections: bool = Field(default=True, description="Write the ClickHouse projections.")
    alerting: Path | None = Field(
        default=None,
        description="Alerting config TOML (see deploy/alerting.example.toml); unset: the log.",
    )
    timezone: str = Field(default="UTC", description="Zone of times in sentences read to callers.")

    # Access: who may do what (see docs/SECURITY.md).
    access_db: Path | None = Field(
        default=None, description="Users, API keys and sessions (default DATA_DIR/access.sqlite3)."
    )
    session_hours: float = Field(default=12.0, gt=0, description="Login lifetime (one shift).")
    cookie_secure: bool = Field(
        default=False, description="Send the session cookie over HTTPS only (true behind TLS)."
    )
    bootstrap_admin: bool = Field(
        default=True, description="Create user 'admin' with a random password when none exists."
    )
    ingest_rate: float = Field(
        default=50.0, gt=0, description="Sustained requests/s per API key or user on ingest."
    )
    ingest_burst: int = Field(default=500, ge=1, description="Requests a key may send at once.")
    lookup_rate: float = Field(
        default=100.0,
        gt=0,
        description="Sustained lookups/s (/v1/outages, /v1/suggest) per API key or user.",
    )
    lookup_burst: int = Field(default=200, ge=1, description="Lookups a key may send at once.")
    login_attempts: int = Field(
        default=5,
        ge=1,
        description="Failed logins per user name before each further try waits: 1 s, "
        "doubling up to 60 s (429 with Retry-After; the right password works after it).",
    )
    login_address_attempts: int = Field(
        default=20,
        ge=1,
        description="Failed logins per client address before each further try waits: 1 s, "
        "doubling up to 5 minutes. The address is the TCP peer's (a proxy's, behind one).",
    )
    login_failures_per_minute: float = Field(
        default=60.0,
        gt=0,
        description="Failed logins per minute across the service (as many at once) before "
        "every login waits.",
    )
    ack_link_hours: float = Field(
        default=24.0,
        gt=0,
        le=24 * 30,
        description="How long a notification's one-click acknowledge link works, hours.",
    )

    api_key: SecretStr | None = Field(
        default=None, description="Key the CLI sends when it asks a running service (reports)."
    )

    # Retention of caller data (enforced by `outage retention enforce`).
    retention_contact_days: int = Field(
        default=30, ge=1, description="Days callers' phone numbers stay for callbacks."
    )
    retention_call_days: int = Field(
        default=400, ge=1, description="Days call rows (keyed hashes, no phone) stay in analytics."
    )
    retention_every_hours: float = Field(
        default=24.0, ge=0, description="The worker enforces retention this often (0: only cron)."
    )

    # Transport security towards Kafka (ClickHouse TLS goes in OUTAGE_CLICKHOUSE_URL).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(default=None, description="CA bundle of the brokers.")
    kafka_ssl_certfile: Path | None = Field(default=None, description="Client certificate (mTLS).")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="Client key (mTLS).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"

    @property
    def session_timeout(self) -> float:
        """The correlation workers' group session, seconds (the feeds' groups take twice it)."""
        if self.kafka_session_timeout is not None:
            return self.kafka_session_timeout
        return 2.0 if self.tansu_workarounds else 10.0

    @property
    def phone_books(self) -> list[Path]:
        if self.phone_book is not None:
            return self.phone_book
        return [PHONES_CSV] if HEAT_CSV in self.topology else []

    @property
    def access_path(self) -> Path:
        return self.access_db or self.data_dir / "access.sqlite3"

    @property
    def chdb_dir(self) -> Path:
        return self.chdb_path or self.data_dir / "chdb"

    def analytics_key(self) -> bytes:
        """The HMAC key of reporter hashes: configured, or made once and kept in the data dir."""
        key = self.existing_analytics_key()
        if key is not None:
            return key
        path = self.data_dir / "hash.key"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
        return path.read_text().strip().encode()

    def existing_analytics_key(self) -> bytes | None:
        """The key if configured or made already: offline replays hash callers as live did."""
        if self.hash_key:
            return self.hash_key.encode()
        path = self.data_dir / "hash.key"
        return path.read_text().strip().encode() if path.exists() else None

    @property
    def broker_urls(self) -> list[str]:
        """faust's form of `broker`: 'h1:9092,h2:9092' -> ['kafka://h1:9092', 'kafka://h2:9092']."""
        hosts = [h.strip() for h in (self.broker or "").split(",") if h.strip()]
        return [h if "://" in h else f"kafka://{h}" for h in hosts]
