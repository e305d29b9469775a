"""Settings of every slotstream component, read once at each entry point.

All values come from environment variables with the prefix ``SLOTSTREAM_``; nested
groups use ``__``, e.g. ``SLOTSTREAM_KAFKA__BOOTSTRAP_SERVERS=kafka:19092`` or
``SLOTSTREAM_POSTGRES__PORT=5432``. The defaults describe the local stack started by
``slotstream stack up`` (everything on loopback). ``main()`` of each entry point calls
:func:`load_settings` once and passes the frozen object down; nothing else reads the
environment.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from slotstream.topics import Topics

__all__ = [
    "GrafanaSettings",
    "KafkaSettings",
    "PostgresSettings",
    "Settings",
    "SinkSettings",
    "StackSettings",
    "StreamSettings",
    "load_settings",
]

_REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/slotstream``, else ``~/.cache/slotstream`` (downloads, builds)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "slotstream"


def _default_state_dir() -> Path:
    """``$XDG_STATE_HOME/slotstream``; for root ``/var/lib/slotstream``.

    Root's home is usually mode 0700, and PostgreSQL refuses to run as root, so its
    data directory must be reachable by the ``postgres`` user: /var/lib is.
    """
    if os.environ.get("XDG_STATE_HOME"):
        return Path(os.environ["XDG_STATE_HOME"]) / "slotstream"
    if os.geteuid() == 0:
        return Path("/var/lib/slotstream")
    return Path.home() / ".local" / "state" / "slotstream"


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Group):
    """Where Kafka is, and how the local broker runs."""

    bootstrap_servers: str = Field("127.0.0.1:9092", description="host:port[,host:port]")
    #: KRaft controller port of the local single-node broker (loopback only).
    controller_port: int = 9093
    #: JVM heap of the local broker, e.g. ``1g``.
    heap: str = "1g"
    #: Seconds to wait for the broker to answer a metadata request after start.
    start_timeout_s: float = 90.0
    #: Prefix of every slotstream topic (see slotstream.topics).
    topic_prefix: str = "slotstream."

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    @property
    def host(self) -> str:
        return self.bootstrap_servers.split(",")[0].rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.bootstrap_servers.split(",")[0].rsplit(":", 1)[1])


class PostgresSettings(_Group):
    """PostgreSQL/TimescaleDB connection and roles.

    ``user`` owns the schema (the sink writes with it); ``reader_user`` may only read
    (Grafana's datasource uses it).
    """

    host: str = "127.0.0.1"
    #: Not 5432, so the local stack never collides with a system PostgreSQL.
    port: int = 5433
    database: str = "slotstream"
    #: Schema holding slotstream's tables (created by the sink's migrations).
    db_schema: str = Field("slotstream", pattern=r"^[a-z_][a-z0-9_]*$")
    user: str = "slotstream"
    password: SecretStr = SecretStr("slotstream")
    reader_user: str = "slotstream_reader"
    reader_password: SecretStr = SecretStr("slotstream_reader")
    #: Seconds to wait for the server to accept connections after start.
    start_timeout_s: float = 60.0

    def conninfo(self, *, reader: bool = False) -> str:
        """libpq connection string for the owner role, or the read-only role."""
        user = self.reader_user if reader else self.user
        secret = self.reader_password if reader else self.password
        return (
            f"host={self.host} port={self.port} dbname={self.database} user={user} password={secret.get_secret_value()}"
        )


class StreamSettings(_Group):
    """The Faust stream worker (``slotstream stream``)."""

    #: Faust app id: the consumer group and the prefix of its changelog topics.
    app_id: str = "slotstream-stream"
    #: Worker processes `slotstream demo` (and the tests) start; they share the
    #: partitions as one consumer group, so more than one uses more cores.
    workers: int = Field(2, ge=1, le=8)
    #: Name of this worker process (its own Faust data directory).
    instance: str = Field("stream", pattern=r"^[a-z0-9.]+$")
    #: Records per batch (``Stream.take``) and the longest wait for a batch, seconds.
    batch_size: int = Field(2000, ge=1)
    batch_within_s: float = Field(0.2, gt=0)
    #: Rooms per hotel; hotel capacity is not in the data. Defaults: the peak of rooms
    #: held at once in hotel_bookings.csv.gz (shared/data/README.md).
    hotel_capacity: dict[str, int] = Field(default_factory=lambda: {"Resort Hotel": 188, "City Hotel": 235})
    #: Capacity of a hotel missing from ``hotel_capacity``.
    default_capacity: int = Field(200, ge=1)


class SinkSettings(_Group):
    """The TimescaleDB sink (``slotstream sink``)."""

    #: Kafka consumer group of the sink.
    group_id: str = "slotstream-sink"
    #: Records per database transaction at most, and the longest wait for them (ms).
    #: Larger batches share the per-key probes that close state intervals (the hotel
    #: data has 1,609 slot keys): ``bench.sink_write`` over the full replay's records,
    #: side by side on 2 cores, 5,000 → 54.1 s and 61.3 s, 20,000 → 37.7 s, 50,000 →
    #: 36.0 s of database time (a batch then takes ~0.9 s).
    batch_size: int = Field(20_000, ge=1)
    batch_wait_ms: int = Field(200, ge=0)
    #: Seconds between pipeline health samples (table ``pipeline_metrics``); 0: none.
    health_interval_s: float = Field(10.0, ge=0)


class GrafanaSettings(_Group):
    """Grafana server; the admin password has no default (set it in the environment)."""

    host: str = "127.0.0.1"
    port: int = 3000
    admin_user: str = "admin"
    admin_password: SecretStr | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class StackSettings(_Group):
    """Where the local stack keeps its state and caches (never inside the repository)."""

    state_dir: Path = Field(default_factory=_default_state_dir)
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    #: Binaries of the PostgreSQL major in ``slotstream.versions.POSTGRES_MAJOR``.
    pg_bin_dir: Path = Path("/usr/lib/postgresql/15/bin")

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"


class Settings(BaseSettings):
    """All settings; build it with :func:`load_settings` in ``main()`` only."""

    model_config = SettingsConfigDict(
        env_prefix="SLOTSTREAM_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    kafka: KafkaSettings = KafkaSettings()
    postgres: PostgresSettings = PostgresSettings()
    grafana: GrafanaSettings = GrafanaSettings()
    stream: StreamSettings = StreamSettings()
    sink: SinkSettings = SinkSettings()
    stack: StackSettings = Field(default_factory=StackSettings)
    #: Folder with the real input data (``hotel_bookings.csv.gz``, ``store_monitoring/``).
    data_dir: Path = _REPO_ROOT.parent / "shared" / "data"


def load_settings() -> Settings:
    """Read the environment once; raises ``pydantic.ValidationError`` on bad values."""
    return Settings()
