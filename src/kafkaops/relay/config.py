"""Relay settings: our `[relay]` section, kaf-relay's config.toml as it is, and its CLI flags.

Our section keeps kaf-relay's key names (snake_case: `commit_ack_type`, `offset_lag_threshold`,
`flush_frequency`, ...) so its users find theirs, but names clusters by `[[kafka]]` id instead of
repeating connection settings. One relay is a `[relay]` table; several are `[[relay]]` tables:

    [[relay]]
    name = "orders-dr"
    mode = "failover"                 # single | failover
    sources = ["dc1", "dc2"]          # [[kafka]] ids, in preference order
    target = "dr"
    topics = ["orders:orders", "payments:payments:key-hash"]   # or [[relay.topics]] tables
    delivery = "at-least-once"        # | exactly-once

    [relay.producer]                  # kaf-relay's [target] producer keys
    commit_ack_type = "cluster"
    [relay.source_pool]               # kaf-relay's [source_pool]
    offset_lag_threshold = 1000
    [relay.filters.only-prod]
    path = "header-match"
    config = { name = "env", value = "prod" }

`load_kaf_relay` + `convert_kaf_relay` take a kaf-relay config.toml unchanged and give the same
relay as our section plus `[[kafka]]` clusters.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    NonNegativeInt,
    PositiveInt,
    SecretStr,
    field_validator,
    model_validator,
)

from kafkaops.config.durations import format_duration
from kafkaops.config.kafka import Duration, Section, require_unique
from kafkaops.relay.topicmap import TopicMap, TopicRoute, check_topic_name

Mode = Literal["single", "failover"]
Delivery = Literal["at-least-once", "exactly-once"]
AckType = Literal["tcp", "leader", "cluster"]
Compression = Literal["gzip", "snappy", "lz4", "zstd", "none"]
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

_NAME = re.compile(r"[A-Za-z0-9._-]+")


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be positive")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
Retries = Annotated[int, Field(ge=-1)]
"""-1: retry forever."""


def _check_backoff(section: str, low: timedelta, high: timedelta) -> None:
    if low > high:
        raise ValueError(
            f"{section}.backoff_min ({format_duration(low)}) is larger than "
            f"{section}.backoff_max ({format_duration(high)})"
        )


class ProducerSettings(Section):
    """How the relay writes to the target: kaf-relay's `[target]` producer keys."""

    commit_ack_type: AckType = "cluster"
    """tcp: no acknowledgement (acks=0); leader: the leader's (acks=1); cluster: all in-sync
    replicas (acks=all)."""
    enable_idempotency: bool = True
    compression: Compression = "none"
    max_message_bytes: PositiveInt = 1_000_000
    flush_frequency: PositiveDuration = timedelta(milliseconds=20)
    flush_batch_size: PositiveInt = 1000
    buffer_size: PositiveInt = 100_000
    """Records in flight at most: the relay stops reading the source until the target catches up."""
    max_retries: Retries = -1
    backoff_enable: bool = True
    backoff_min: Duration = timedelta(seconds=2)
    backoff_max: Duration = timedelta(seconds=10)
    request_timeout: PositiveDuration = timedelta(seconds=5)

    @model_validator(mode="after")
    def _consistent(self) -> ProducerSettings:
        _check_backoff("producer", self.backoff_min, self.backoff_max)
        if self.enable_idempotency and self.commit_ack_type != "cluster":
            raise ValueError(
                "producer.enable_idempotency = true needs producer.commit_ack_type = 'cluster' "
                f"(got {self.commit_ack_type!r}): Kafka takes idempotent writes only with acks=all"
            )
        return self


class SourcePoolSettings(Section):
    """How sources are checked and switched: kaf-relay's `[source_pool]`."""

    healthcheck_interval: PositiveDuration = timedelta(seconds=3)
    request_timeout: PositiveDuration = timedelta(seconds=1)
    offset_lag_threshold: NonNegativeInt = 1000
    max_retries: Retries = -1
    backoff_enable: bool = True
    backoff_min: Duration = timedelta(seconds=2)
    backoff_max: Duration = timedelta(seconds=10)
    randomize_initial: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> SourcePoolSettings:
        _check_backoff("source_pool", self.backoff_min, self.backoff_max)
        return self


def _config_text(value: object) -> object:
    """A TOML table is handed to the plugin as JSON, so configs need no escaped strings."""
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return value


class FilterSettings(Section):
    enabled: bool = True
    path: str = Field(min_length=1)
    """`module:Name`, a bundled filter's name, or an entry-point name (group
    `kafkaops.relay.filters`)."""
    config: Annotated[str, BeforeValidator(_config_text)] = ""


class TopicSettings(Section):
    source: str
    target: str
    partition: Literal["same", "key-hash"] | NonNegativeInt = "same"

    @field_validator("source", "target")
    @classmethod
    def _legal(cls, value: str) -> str:
        return check_topic_name(value)

    def route(self) -> TopicRoute:
        return TopicRoute(self.source, self.target, self.partition)


def _topic_item(value: object) -> object:
    if isinstance(value, str):
        route = TopicRoute.parse(value)
        return {"source": route.source, "target": route.target, "partition": route.partition}
    return value


def _one_or_many(value: object) -> object:
    return [value] if isinstance(value, str) else value


class RelayConfig(Section):
    """One relay: sources, target, topics, and how to copy."""

    name: str = "relay"
    """Names the relay in metrics, logs, checkpoint headers and the transactional id."""
    enabled: bool = True
    mode: Mode = "single"
    sources: Annotated[list[str], BeforeValidator(_one_or_many)] = Field(min_length=1)
    target: str = Field(min_length=1)
    topics: list[Annotated[TopicSettings, BeforeValidator(_topic_item)]] = Field(min_length=1)
    delivery: Delivery = "at-least-once"
    stop_at_end: bool = False
    position_mapping: Literal["timestamp", "offset"] = "timestamp"
    """How a position moves to another source: by record timestamp, or as the same offset
    (only right when the sources are offset-identical copies)."""
    timestamp_skew: Duration = timedelta(0)
    """How far timestamps may step back along a partition; a timestamp switch re-reads that much."""
    start_at: Literal["earliest", "latest"] = "earliest"
    """Where to start a source partition the target holds nothing from."""
    checkpoint_interval: PositiveInt = 1000
    """Records per target partition between position checkpoints (bounds the restart read-back)."""
    resume_scan_limit: PositiveInt = 100_000
    """Records read back per target partition at most before a resume gives up."""
    exclusive_target: bool = False
    """Nothing but this relay writes to its target partitions: then the records of a run that
    have no headers of their own carry none of the relay's either (position.py), which saves
    librdkafka a header per record."""
    transactional_id: str = ""
    """exactly-once: the target transactional.id; empty means `kafkaops-relay-<name>`."""
    producer: ProducerSettings = Field(default_factory=ProducerSettings)
    source_pool: SourcePoolSettings = Field(default_factory=SourcePoolSettings)
    filters: dict[str, FilterSettings] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(f"name {value!r}: use letters, digits, '.', '_' and '-' only")
        return value

    @field_validator("filters")
    @classmethod
    def _filter_ids(cls, value: dict[str, FilterSettings]) -> dict[str, FilterSettings]:
        for fid in value:
            if not _NAME.fullmatch(fid):
                raise ValueError(f"filter id {fid!r}: use letters, digits, '.', '_' and '-' only")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RelayConfig:
        if len(set(self.sources)) != len(self.sources):
            raise ValueError(f"sources lists a cluster twice: {self.sources}")
        if self.mode == "single" and len(self.sources) != 1:
            raise ValueError(
                f"mode = 'single' reads one source, but sources = {self.sources}; "
                "set mode = 'failover' or list one source"
            )
        topic_map = self.topic_map()
        if self.target in self.sources:
            loops = [r.source for r in topic_map.routes if r.source == r.target]
            if loops:
                raise ValueError(
                    f"target {self.target!r} is also a source and topic(s) {loops} map onto "
                    "themselves: the relay would copy its own output forever"
                )
        if self.delivery == "exactly-once" and not self.producer.enable_idempotency:
            raise ValueError(
                "delivery = 'exactly-once' needs producer.enable_idempotency = true "
                "(transactions are built on the idempotent producer)"
            )
        return self

    def topic_map(self) -> TopicMap:
        return TopicMap(t.route() for t in self.topics)

    @property
    def effective_transactional_id(self) -> str:
        return self.transactional_id or f"kafkaops-relay-{self.name}"

    def clusters(self) -> list[str]:
        """Every [[kafka]] id this relay uses, sources first."""
        return [*self.sources, *([] if self.target in self.sources else [self.target])]

    def check_clusters(self, known_ids: Collection[str], where: str = "relay") -> None:
        """Raise ValueError naming any cluster that no enabled `[[kafka]]` section defines."""
        known = ", ".join(map(repr, sorted(known_ids))) or "none"
        for i, cid in enumerate(self.sources):
            if cid not in known_ids:
                raise ValueError(
                    f"{where}.sources[{i}]: unknown cluster {cid!r}; [[kafka]] ids are {known}"
                )
        if self.target not in known_ids:
            raise ValueError(
                f"{where}.target: unknown cluster {self.target!r}; [[kafka]] ids are {known}"
            )


def _unique_names(relays: list[RelayConfig]) -> list[RelayConfig]:
    require_unique((r.name for r in relays), "two relays are named {}; give each a unique name")
    return relays


def _as_list(value: object) -> object:
    return [value] if isinstance(value, dict) else value


RelayList = Annotated[list[RelayConfig], BeforeValidator(_as_list), AfterValidator(_unique_names)]
"""The root config's `relay` key: one `[relay]` table or several `[[relay]]` tables."""


def check_relay_clusters(relays: Sequence[RelayConfig], known_ids: Collection[str]) -> None:
    for i, relay in enumerate(relays):
        relay.check_clusters(known_ids, where=f"relay[{i}]")


# --- kaf-relay's CLI flags -------------------------------------------------------------------


def parse_mode_flag(value: str) -> Mode:
    if value not in ("single", "failover"):
        raise ValueError(f"--mode {value!r}: expected single or failover")
    return value  # type: ignore[return-value]


def parse_topic_flag(value: str) -> TopicSettings:
    """`--topic source:target[:partition]` (`key-hash` may stand for the partition)."""
    try:
        route = TopicRoute.parse(value)
    except ValueError as exc:
        raise ValueError(f"--topic {exc}") from None
    return TopicSettings(source=route.source, target=route.target, partition=route.partition)


def merge_topics(
    topics: Sequence[TopicSettings], overrides: Sequence[TopicSettings]
) -> list[TopicSettings]:
    """kaf-relay's rule: a `--topic` replaces the mapping of its source topic, others stay."""
    merged = {t.source: t for t in topics}
    for t in overrides:
        merged[t.source] = t
    return list(merged.values())


def apply_flags(
    relay: RelayConfig,
    *,
    mode: str | None = None,
    stop_at_end: bool | None = None,
    topics: Sequence[str] = (),
) -> RelayConfig:
    """The relay with `--mode`, `--stop-at-end` and `--topic` applied, validated again.

    `--mode single` keeps only the first source, as kaf-relay does.
    """
    data = relay.model_dump(mode="json")
    if mode is not None:
        data["mode"] = parse_mode_flag(mode)
        if mode == "single":
            data["sources"] = data["sources"][:1]
    if stop_at_end is not None:
        data["stop_at_end"] = stop_at_end
    if topics:
        merged = merge_topics(relay.topics, [parse_topic_flag(t) for t in topics])
        data["topics"] = [t.model_dump(mode="json") for t in merged]
    return RelayConfig.model_validate(data)


# --- kaf-relay's config.toml, every key it documents (v1.4.0) ---------------------------------
#
# Keys left out take the sample config's values; booleans left out are off, as in kaf-relay
# (Go's zero value). Keys kaf-relay reads but that mean nothing here are accepted and ignored:
# enable_log, max_wait_time, max_failovers, batch_size, initial_offset.


class KafRelayApp(Section):
    log_level: str = "info"
    metrics_server_addr: str = ":7081"


class _KafRelayClient(Section):
    name: str = ""
    servers: list[str] = Field(min_length=1)
    session_timeout: Duration = timedelta(seconds=6)
    enable_auth: bool = False
    sasl_mechanism: str = ""
    username: str = ""
    password: SecretStr = SecretStr("")
    enable_tls: bool = False
    client_key_path: str = ""
    client_cert_path: str = ""
    ca_cert_path: str = ""
    enable_log: bool = False

    @model_validator(mode="after")
    def _auth(self) -> _KafRelayClient:
        if self.enable_auth and self.sasl_mechanism.upper() not in SASL_MECHANISMS:
            raise ValueError(
                f"sasl_mechanism must be one of {', '.join(SASL_MECHANISMS)} when enable_auth "
                f"is true, got {self.sasl_mechanism!r}"
            )
        return self


class KafRelaySource(_KafRelayClient):
    max_wait_time: Duration | None = None
    max_failovers: int | None = None


def _ack_type(value: object) -> object:
    """kaf-relay treats anything but tcp and leader (`default` included) as all replicas."""
    return "cluster" if value == "default" else value


class KafRelayTarget(_KafRelayClient):
    enable_idempotency: bool = False
    commit_ack_type: Annotated[AckType, BeforeValidator(_ack_type)] = "cluster"
    flush_frequency: PositiveDuration = timedelta(milliseconds=20)
    flush_batch_size: PositiveInt = 1000
    batch_size: NonNegativeInt = 1000
    buffer_size: PositiveInt = 100_000
    max_message_bytes: PositiveInt = 10_000_000
    max_retries: Retries = -1
    backoff_enable: bool | None = None
    enable_backoff: bool | None = None
    """The spelling of kaf-relay's TargetCfg struct; the sample config writes backoff_enable."""
    backoff_min: Duration = timedelta(seconds=2)
    backoff_max: Duration = timedelta(seconds=10)
    request_timeout: PositiveDuration = timedelta(milliseconds=100)
    compression: Compression = "none"


class KafRelaySourcePool(Section):
    initial_offset: str = "start"
    healthcheck_interval: PositiveDuration = timedelta(seconds=3)
    offset_lag_threshold: NonNegativeInt = 1000
    max_retries: Retries = -1
    backoff_enable: bool = False
    backoff_min: Duration = timedelta(seconds=2)
    backoff_max: Duration = timedelta(seconds=10)
    request_timeout: PositiveDuration = timedelta(milliseconds=100)
    randomize_initial: bool = False


class KafRelayFilter(Section):
    enabled: bool = False
    path: str = ""
    config: str = ""


def _topic_tables(value: object) -> object:
    """`[[topics]]` (the sample) or a single `[topics]` table: both are source → "target[:p]"."""
    return [value] if isinstance(value, dict) else value


class KafRelayConfig(Section):
    app: KafRelayApp = Field(default_factory=KafRelayApp)
    topics: Annotated[list[dict[str, str]], BeforeValidator(_topic_tables)] = Field(
        default_factory=list
    )
    source_pool: KafRelaySourcePool = Field(default_factory=KafRelaySourcePool)
    sources: list[KafRelaySource] = Field(min_length=1)
    target: KafRelayTarget
    filters: dict[str, KafRelayFilter] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _topics_parse(self) -> KafRelayConfig:
        self.topic_specs()
        return self

    def topic_specs(self) -> list[TopicSettings]:
        out = []
        for table in self.topics:
            for source, spec in table.items():
                target, sep, partition = spec.partition(":")
                if sep and not partition.isdigit():
                    raise ValueError(
                        f"topics.{source} = {spec!r}: expected target_topic or "
                        "target_topic:partition"
                    )
                out.append(
                    TopicSettings(
                        source=source,
                        target=target,
                        partition=int(partition) if sep else "same",
                    )
                )
        return merge_topics([], out)


def load_kaf_relay(text: str) -> KafRelayConfig:
    """Parse and validate a kaf-relay config.toml (TOML errors propagate as TOMLDecodeError)."""
    return KafRelayConfig.model_validate(tomllib.loads(text))


def looks_like_kaf_relay(data: dict[str, Any]) -> bool:
    """A parsed TOML document shaped like kaf-relay's config rather than ours."""
    return "sources" in data and "target" in data and "relay" not in data and "kafka" not in data


@dataclass(frozen=True)
class KafRelayConversion:
    """A kaf-relay config in our terms."""

    relay: RelayConfig
    kafka: list[dict[str, Any]]
    """One dict per cluster, in `[[kafka]]` key spelling; sources first, then the target."""
    log_level: str
    metrics_server_addr: str
    """Where kaf-relay served /metrics (`[app] metrics_server_addr`, Go's `:port` form)."""


def _kafka_section(cid: str, client: _KafRelayClient) -> dict[str, Any]:
    section: dict[str, Any] = {
        "id": cid,
        "brokers": list(client.servers),
        "timeout": format_duration(client.session_timeout),
        "use-ssl": client.enable_tls,
        "insecure-skip-verify": False,
    }
    if client.enable_tls:
        for key, value in (
            ("ssl-ca", client.ca_cert_path),
            ("ssl-cert", client.client_cert_path),
            ("ssl-key", client.client_key_path),
        ):
            if value:
                section[key] = value
    if client.enable_auth:
        section["sasl-username"] = client.username
        section["sasl-password"] = client.password.get_secret_value()
        section["sasl-mechanism"] = client.sasl_mechanism.upper()
    return section


def _unique_ids(names: list[str], fallbacks: list[str]) -> list[str]:
    """kaf-relay names are optional and need not be unique; `[[kafka]]` ids must be both."""
    out: list[str] = []
    for name, fallback in zip(names, fallbacks, strict=True):
        base = name or fallback
        cid, n = base, 2
        while cid in out:
            cid, n = f"{base}-{n}", n + 1
        out.append(cid)
    return out


def _is_go_plugin(path: str) -> bool:
    return ":" not in path and ("/" in path or path.endswith((".so", ".bin")))


def convert_kaf_relay(
    cfg: KafRelayConfig,
    *,
    mode: str = "single",
    stop_at_end: bool = False,
    topics: Sequence[str] = (),
    name: str = "relay",
) -> KafRelayConversion:
    """Our relay and `[[kafka]]` clusters for a kaf-relay config plus its command-line flags.

    As in kaf-relay: `single` keeps the first `[[sources]]` entry; `--topic` replaces the mapping
    of its source topic. Unlike kaf-relay, filters and stop-at-end also work in failover mode.
    An enabled filter must name a Python filter: Go plugins cannot be loaded here.
    """
    mode = parse_mode_flag(mode)
    ids = _unique_ids(
        [s.name for s in cfg.sources] + [cfg.target.name],
        [f"source-{i + 1}" for i in range(len(cfg.sources))] + ["target"],
    )
    source_ids, target_id = ids[:-1], ids[-1]
    kafka = [_kafka_section(cid, s) for cid, s in zip(source_ids, cfg.sources, strict=True)]
    kafka.append(_kafka_section(target_id, cfg.target))

    routes = merge_topics(cfg.topic_specs(), [parse_topic_flag(t) for t in topics])
    if not routes:
        raise ValueError("no topics: kaf-relay's [[topics]] is empty and no --topic was given")

    filters: dict[str, dict[str, Any]] = {}
    for fid, f in cfg.filters.items():
        if not f.enabled:
            continue
        if _is_go_plugin(f.path):
            raise ValueError(
                f"filters.{fid}.path = {f.path!r}: kaf-relay's Go plugins cannot be loaded; "
                "point path at a Python filter ('module:Name', a bundled filter or an entry "
                "point name)"
            )
        filters[fid] = {"path": f.path, "config": f.config}

    target = cfg.target
    backoff = target.enable_backoff if target.enable_backoff is not None else target.backoff_enable
    pool = cfg.source_pool
    relay = RelayConfig.model_validate(
        {
            "name": name,
            "mode": mode,
            "sources": source_ids[:1] if mode == "single" else source_ids,
            "target": target_id,
            "topics": [t.model_dump(mode="json") for t in routes],
            "stop_at_end": stop_at_end,
            "position_mapping": "offset",
            "producer": {
                "commit_ack_type": target.commit_ack_type,
                "enable_idempotency": target.enable_idempotency,
                "compression": target.compression,
                "max_message_bytes": target.max_message_bytes,
                "flush_frequency": format_duration(target.flush_frequency),
                "flush_batch_size": target.flush_batch_size,
                "buffer_size": target.buffer_size,
                "max_retries": target.max_retries,
                "backoff_enable": bool(backoff),
                "backoff_min": format_duration(target.backoff_min),
                "backoff_max": format_duration(target.backoff_max),
                "request_timeout": format_duration(target.request_timeout),
            },
            "source_pool": {
                "healthcheck_interval": format_duration(pool.healthcheck_interval),
                "request_timeout": format_duration(pool.request_timeout),
                "offset_lag_threshold": pool.offset_lag_threshold,
                "max_retries": pool.max_retries,
                "backoff_enable": pool.backoff_enable,
                "backoff_min": format_duration(pool.backoff_min),
                "backoff_max": format_duration(pool.backoff_max),
                "randomize_initial": pool.randomize_initial,
            },
            "filters": filters,
        }
    )
    return KafRelayConversion(
        relay=relay,
        kafka=kafka,
        log_level=cfg.app.log_level,
        metrics_server_addr=cfg.app.metrics_server_addr,
    )
