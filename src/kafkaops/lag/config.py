"""Settings of the lag monitor: our `[lag]` section, and Kafka Lag Go's config.yaml as it is.

Key names follow Kafka Lag Go's (snake_case) wherever it has the setting, so its users find
theirs; `convert_kafka_lag_go` turns its file into our section plus `[[kafka]]` clusters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from kafkaops.config.durations import format_duration
from kafkaops.config.kafka import Duration, require_unique
from kafkaops.lag.estimator import Policy
from kafkaops.lag.status import Rules


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError(f"must be positive, got {format_duration(value)!r}")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]

DEFAULT_NUM_WORKERS = 10

PARTITION_LABELS = ("clustername", "group", "topic", "partition")
"""Labels our series carry already; extra labels may not reuse them."""

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_PROTOCOL_HEADERS = frozenset(
    {"content-encoding", "content-type", "x-prometheus-remote-write-version"}
)
_LOG_LEVELS = ("panic", "fatal", "error", "warn", "warning", "info", "debug", "trace")
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class ConsumerGroups(_Section):
    """Which groups to monitor: those the whitelist matches (anywhere in the name, as Go's
    MatchString) and the blacklist does not. An empty pattern means no filter.

    Kafka Lag Go ignores the blacklist whenever a whitelist is set, so its own example
    (whitelist ".*", blacklist "test.*") would monitor the test groups; we apply both, which is
    what that example asks for.
    """

    whitelist: str | None = None
    blacklist: str | None = None
    _allow: re.Pattern[str] | None = PrivateAttr(default=None)
    _deny: re.Pattern[str] | None = PrivateAttr(default=None)

    @field_validator("whitelist", "blacklist")
    @classmethod
    def _compiles(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value:
            return None
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(
                f"consumer_groups.{info.field_name}: invalid regex {value!r}: {exc}"
            ) from None
        return value

    def model_post_init(self, context: Any, /) -> None:
        self._allow = re.compile(self.whitelist) if self.whitelist else None
        self._deny = re.compile(self.blacklist) if self.blacklist else None

    def admits(self, group: str) -> bool:
        allow, deny = self._allow, self._deny
        return (allow is None or allow.search(group) is not None) and (
            deny is None or deny.search(group) is None
        )


class LagCluster(_Section):
    """A `[[kafka]]` cluster to monitor; its id is the `clustername` label."""

    name: str = Field(min_length=1)
    consumer_groups: ConsumerGroups = Field(default_factory=ConsumerGroups)


class BasicAuth(_Section):
    username: str = ""
    password: SecretStr = SecretStr("")


class TlsConfig(_Section):
    enabled: bool = False
    cert_file: str = ""
    key_file: str = ""
    ca_cert_file: str = ""
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError(
                "tls_config: cert_file and key_file go together "
                f"(cert_file={self.cert_file!r}, key_file={self.key_file!r})"
            )
        return self


class _RemoteWriteBase(_Section):
    enabled: bool = False
    url: str = ""
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: PositiveDuration = timedelta(seconds=30)
    basic_auth: BasicAuth = Field(default_factory=BasicAuth)
    bearer_token: SecretStr = SecretStr("")
    tls_config: TlsConfig = Field(default_factory=TlsConfig)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"url must be an http(s) URL, got {value!r}")
        return value

    @field_validator("headers")
    @classmethod
    def _no_protocol_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for header in value:
            if header.lower() in _PROTOCOL_HEADERS:
                raise ValueError(f"headers: {header!r} is set by the remote-write protocol")
        return value

    @model_validator(mode="after")
    def _usable(self) -> _RemoteWriteBase:
        if self.enabled and not self.url:
            raise ValueError("url is required when remote write is enabled (url='')")
        if (self.basic_auth.username or self.bearer_token.get_secret_value()) and any(
            h.lower() == "authorization" for h in self.headers
        ):
            raise ValueError(
                "headers: 'Authorization' conflicts with basic_auth / bearer_token; use one"
            )
        return self


class RemoteWrite(_RemoteWriteBase):
    """Prometheus remote write of our own series, sent once per iteration."""

    @model_validator(mode="after")
    def _one_auth(self) -> RemoteWrite:
        if self.basic_auth.username and self.bearer_token.get_secret_value():
            raise ValueError(
                "set basic_auth or bearer_token, not both "
                f"(basic_auth.username={self.basic_auth.username!r})"
            )
        return self


class SslSettings(_Section):
    """TLS to Kafka or Redis, in Kafka Lag Go's spelling."""

    enabled: bool = False
    client_certificate_file: str = ""
    client_key_file: str = ""
    insecure_skip_verify: bool = False
    ca_cert_file: str = ""

    @model_validator(mode="after")
    def _pair(self) -> SslSettings:
        if bool(self.client_certificate_file) != bool(self.client_key_file):
            raise ValueError(
                "ssl: client_certificate_file and client_key_file go together "
                f"(client_certificate_file={self.client_certificate_file!r}, "
                f"client_key_file={self.client_key_file!r})"
            )
        return self


class RedisAuth(_Section):
    enabled: bool = False
    username: str = ""
    password: SecretStr = SecretStr("")

    @model_validator(mode="after")
    def _has_password(self) -> RedisAuth:
        if self.enabled and not self.password.get_secret_value():
            raise ValueError("auth.password is required when auth is enabled (password='')")
        return self


class RedisSettings(_Section):
    address: str = Field("localhost", min_length=1)
    port: int = Field(6379, ge=1, le=65535)
    client_request_timeout: PositiveDuration = timedelta(seconds=60)
    client_idle_timeout: PositiveDuration = timedelta(minutes=5)
    auth: RedisAuth = Field(default_factory=RedisAuth)
    ssl: SslSettings = Field(default_factory=SslSettings)


class Storage(_Section):
    """Where partition histories live: memory (default, per process) or Redis (shared by
    instances, survives restarts)."""

    type: Literal["memory", "redis"] = "memory"
    max_points: int = Field(240, ge=2)
    """Points kept per (cluster, topic, partition)."""
    retention_ttl_seconds: int = Field(7200, ge=1)
    """Points older than this are dropped; also the TTL of the Redis keys."""
    redis: RedisSettings = Field(default_factory=RedisSettings)


class StatusSettings(_Section):
    """Burrow's evaluation knobs, with Burrow's defaults."""

    intervals: int = Field(10, ge=1)
    min_distance: Duration = timedelta(0)
    allowed_lag: int = Field(0, ge=0)
    minimum_complete: float = Field(0.0, ge=0.0, le=1.0)

    def rules(self) -> Rules:
        return Rules(
            intervals=self.intervals,
            min_distance_ms=round(self.min_distance.total_seconds() * 1000),
            allowed_lag=self.allowed_lag,
            minimum_complete=self.minimum_complete,
        )


class LagConfig(_Section):
    """The `[lag]` section; its presence makes `kafkaops run` start the monitor."""

    iteration_interval: PositiveDuration = timedelta(seconds=30)
    num_workers: int = Field(DEFAULT_NUM_WORKERS, ge=1)
    """Committed-offset fetches in flight at once, per cluster."""
    lag_in_seconds_source: Policy = Policy.AUTO
    max_record_reads: int = Field(2000, ge=0)
    """Records read per iteration and cluster to time commits the history cannot place; the
    rest report the history's lower bound until a later iteration (cold starts)."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Extra labels on every series we export."""
    sharding: bool = False
    """Split the groups among the instances monitoring the same cluster."""
    clusters: list[LagCluster] = Field(default_factory=list)
    """Clusters to monitor; empty means every `[[kafka]]` cluster, with no group filter."""
    storage: Storage = Field(default_factory=Storage)
    status: StatusSettings = Field(default_factory=StatusSettings)
    prometheus_remote_write: RemoteWrite = Field(default_factory=RemoteWrite)

    @field_validator("labels")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, label_value in value.items():
            if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
                raise ValueError(f"labels: {name!r} is not a valid Prometheus label name")
            if name in PARTITION_LABELS:
                raise ValueError(f"labels: {name!r} is already set on every lag series")
            if not label_value:
                raise ValueError(f"labels: {name!r} has an empty value")
        return value

    @field_validator("clusters")
    @classmethod
    def _unique_clusters(cls, value: list[LagCluster]) -> list[LagCluster]:
        seen: set[str] = set()
        for cluster in value:
            if cluster.name in seen:
                raise ValueError(f"clusters: {cluster.name!r} is listed twice")
            seen.add(cluster.name)
        return value

    def group_filter(self, cluster_id: str) -> ConsumerGroups | None:
        """The group filter for a `[[kafka]]` cluster, or None if it is not monitored."""
        if not self.clusters:
            return _ADMIT_ALL
        for cluster in self.clusters:
            if cluster.name == cluster_id:
                return cluster.consumer_groups
        return None

    def check_clusters(self, known_ids: Iterable[str]) -> None:
        """Raise ValueError naming any listed cluster that no `[[kafka]]` section defines."""
        known_ids = set(known_ids)
        unknown = [c.name for c in self.clusters if c.name not in known_ids]
        if unknown:
            raise ValueError(
                f"lag.clusters: unknown cluster id(s) {', '.join(map(repr, unknown))}; "
                f"[[kafka]] ids are {', '.join(map(repr, sorted(known_ids))) or 'none'}"
            )


_ADMIT_ALL = ConsumerGroups()


# --- Kafka Lag Go's config.yaml, every key it reads (pkg/config/config.go) ---


class KlgPrometheusLocal(_Section):
    metrics_port: int = Field(9090, ge=1, le=65535)
    labels: dict[str, str] = Field(default_factory=dict)


class KlgRemoteWrite(_RemoteWriteBase):
    """Both auth methods may be set, as in Kafka Lag Go's own example; the bearer token wins,
    as it does in Kafka Lag Go's sender."""


class KlgSasl(_Section):
    enabled: bool = False
    mechanism: str = ""
    user: str = ""
    password: SecretStr = SecretStr("")

    @model_validator(mode="after")
    def _complete(self) -> KlgSasl:
        if not self.enabled:
            return self
        if self.mechanism.upper() not in _SASL_MECHANISMS:
            raise ValueError(
                f"sasl.mechanism must be one of {', '.join(_SASL_MECHANISMS)}, "
                f"got {self.mechanism!r}"
            )
        if not self.user or not self.password.get_secret_value():
            raise ValueError(f"sasl: user and password are required (user={self.user!r})")
        return self


class KlgKafkaCluster(_Section):
    name: str = Field(min_length=1)
    brokers: list[str] = Field(min_length=1)
    client_request_timeout: PositiveDuration = timedelta(seconds=30)
    metadata_fetch_timeout: PositiveDuration = timedelta(seconds=5)
    consumer_groups: ConsumerGroups = Field(default_factory=ConsumerGroups)
    ssl: SslSettings = Field(default_factory=SslSettings)
    sasl: KlgSasl = Field(default_factory=KlgSasl)


class KlgRedis(RedisSettings):
    retention_ttl_seconds: int = Field(7200, ge=1)


class KlgStorage(_Section):
    type: Literal["redis", "memory"] = "redis"
    redis: KlgRedis = Field(default_factory=KlgRedis)


class KlgApp(_Section):
    iteration_interval: PositiveDuration = timedelta(seconds=30)
    num_workers: int | None = Field(None, ge=1)
    log_level: str = "info"
    health_check_port: int = Field(8080, ge=1, le=65535)
    health_check_path: str = "/healthz"

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.lower() not in _LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(_LOG_LEVELS)}, got {value!r}")
        return value.lower()

    @field_validator("health_check_path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"health_check_path must start with '/', got {value!r}")
        return value


class KlgConfig(_Section):
    """Kafka Lag Go's config.yaml. A missing `storage` section means in-memory history here
    (Kafka Lag Go would assume a Redis on localhost)."""

    prometheus_local: KlgPrometheusLocal = Field(default_factory=KlgPrometheusLocal)
    prometheus_remote_write: KlgRemoteWrite = Field(default_factory=KlgRemoteWrite)
    kafka_clusters: list[KlgKafkaCluster] = Field(min_length=1)
    storage: KlgStorage | None = None
    app: KlgApp = Field(default_factory=KlgApp)

    @field_validator("kafka_clusters")
    @classmethod
    def _unique_names(cls, value: list[KlgKafkaCluster]) -> list[KlgKafkaCluster]:
        require_unique((c.name for c in value), "kafka_clusters: name {} is used twice")
        return value


def load_kafka_lag_go(text: str) -> KlgConfig:
    """Parse and validate a Kafka Lag Go config.yaml (YAML errors propagate as yaml.YAMLError)."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"a Kafka Lag Go config must be a YAML mapping, got {type(data).__name__}")
    return KlgConfig.model_validate(data)


@dataclass(frozen=True)
class KlgConversion:
    """A Kafka Lag Go config in our terms."""

    lag: LagConfig
    kafka: list[dict[str, Any]]
    """One dict per cluster, in `[[kafka]]` key spelling."""
    log_level: str
    metrics_port: int
    """Where Kafka Lag Go served /metrics (prometheus_local.metrics_port)."""
    health_check_port: int
    health_check_path: str


def convert_kafka_lag_go(cfg: KlgConfig) -> KlgConversion:
    """Our `[lag]` section and `[[kafka]]` clusters for a Kafka Lag Go config.

    `metadata_fetch_timeout` has no counterpart (our client has one request timeout, taken from
    `client_request_timeout`), and Kafka Lag Go always shards groups across the instances that
    share its Redis, so Redis storage turns `sharding` on.
    """
    rw = cfg.prometheus_remote_write
    remote_write = RemoteWrite(
        enabled=rw.enabled,
        url=rw.url,
        headers=rw.headers,
        timeout=rw.timeout,
        basic_auth=BasicAuth() if rw.bearer_token.get_secret_value() else rw.basic_auth,
        bearer_token=rw.bearer_token,
        tls_config=rw.tls_config,
    )
    if cfg.storage is None:
        storage = Storage()
    else:
        redis = cfg.storage.redis
        storage = Storage(
            type=cfg.storage.type,
            retention_ttl_seconds=redis.retention_ttl_seconds,
            redis=RedisSettings(
                **{name: getattr(redis, name) for name in RedisSettings.model_fields}
            ),
        )
    lag = LagConfig(
        iteration_interval=cfg.app.iteration_interval,
        num_workers=cfg.app.num_workers or DEFAULT_NUM_WORKERS,
        labels=cfg.prometheus_local.labels,
        sharding=storage.type == "redis",
        clusters=[
            LagCluster(name=c.name, consumer_groups=c.consumer_groups) for c in cfg.kafka_clusters
        ],
        storage=storage,
        prometheus_remote_write=remote_write,
    )
    return KlgConversion(
        lag=lag,
        kafka=[_kafka_section(c) for c in cfg.kafka_clusters],
        log_level=cfg.app.log_level,
        metrics_port=cfg.prometheus_local.metrics_port,
        health_check_port=cfg.app.health_check_port,
        health_check_path=cfg.app.health_check_path,
    )


def _kafka_section(cluster: KlgKafkaCluster) -> dict[str, Any]:
    section: dict[str, Any] = {
        "id": cluster.name,
        "brokers": list(cluster.brokers),
        "timeout": format_duration(cluster.client_request_timeout),
        "use-ssl": cluster.ssl.enabled,
        "insecure-skip-verify": cluster.ssl.insecure_skip_verify,
    }
    if cluster.ssl.enabled:
        for key, value in (
            ("ssl-ca", cluster.ssl.ca_cert_file),
            ("ssl-cert", cluster.ssl.client_certificate_file),
            ("ssl-key", cluster.ssl.client_key_file),
        ):
            if value:
                section[key] = value
    if cluster.sasl.enabled:
        section["sasl-username"] = cluster.sasl.user
        section["sasl-password"] = cluster.sasl.password.get_secret_value()
        section["sasl-mechanism"] = cluster.sasl.mechanism.upper()
    return section
