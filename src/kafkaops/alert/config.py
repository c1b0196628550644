"""The optional `[alert]` section: where points come from and how alerts leave.

Alerting always runs (as Kapacitor always serves its API), so every key has a default and the
section may be absent. Key names follow Kapacitor's kebab-case (`topic-buffer-length` is its
`[alert]` key); the Kafka line-protocol inputs are ours, since Kapacitor only reads Kafka
through Telegraf.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator

from kafkaops.alert.lineprotocol import PRECISIONS
from kafkaops.config.kafka import Duration, Section

DEFAULT_TOPIC_BUFFER_LENGTH = 5000
DEFAULT_GROUP = "kafkaops-alert"
LAG_DATABASE = "kafkaops"
"""The database lag points are written to, so tasks can select them with
`dbrp "kafkaops"."autogen"` (or take every point by declaring no dbrp)."""
DEFAULT_RP = "autogen"


class KafkaInput(Section):
    """One `[[alert.kafka-input]]`: line-protocol records read from Kafka topics.

    Records are committed only after their points went through every enabled task, so a
    crash replays them (at least once) instead of losing them.
    """

    cluster: str
    topics: list[str] = Field(min_length=1)
    group: str = DEFAULT_GROUP
    auto_offset_reset: Literal["latest", "earliest"] = Field(
        default="latest", alias="auto-offset-reset"
    )
    """Where a group without committed offsets starts: new points only (latest, so a first
    start does not alert on old data), or the whole topic (earliest)."""
    precision: str = "ns"
    database: str = Field(default="", alias="db")
    retention_policy: str = Field(default="", alias="rp")

    @field_validator("precision")
    @classmethod
    def _known_precision(cls, value: str) -> str:
        if value not in PRECISIONS:
            known = ", ".join(p for p in PRECISIONS if p)
            raise ValueError(f"unknown precision {value!r} (expected one of {known})")
        return value

    @field_validator("topics")
    @classmethod
    def _no_empty_topic(cls, value: list[str]) -> list[str]:
        if any(not t for t in value):
            raise ValueError("topic names must not be empty")
        return value


class AlertSection(Section):
    """`[alert]`: every key optional."""

    topic_buffer_length: int = Field(
        default=DEFAULT_TOPIC_BUFFER_LENGTH, alias="topic-buffer-length", ge=1
    )
    """Events each non-Kafka handler (log, post, exec, tcp) and each Kafka writer may hold
    while its target is slow; beyond that new events are dropped, logged and counted."""
    lag_input: bool = Field(default=True, alias="lag-input")
    """Feed the lag monitor's results in as `kafka_consumer_group_lag` points."""
    kafka_input: list[KafkaInput] = Field(default_factory=list, alias="kafka-input")
    delivery_timeout: Duration = Field(default=timedelta(seconds=30), alias="delivery-timeout")
    """How long the Kafka handler keeps retrying one alert before it is reported as failed;
    also the most a shutdown waits for alerts still in flight."""
    state_flush_interval: Duration = Field(
        default=timedelta(seconds=1), alias="state-flush-interval"
    )
    """Alert state and topic events are saved to the data directory this often (and at
    shutdown); a crash loses at most this much state, never a task definition."""

    @field_validator("delivery_timeout", "state_flush_interval")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value

    def check_clusters(self, known: Collection[str]) -> None:
        """Config-time check that every Kafka input names a configured cluster."""
        for i, source in enumerate(self.kafka_input):
            if source.cluster not in known:
                listed = ", ".join(sorted(known)) or "none configured"
                raise ValueError(
                    f"alert.kafka-input[{i}].cluster: unknown cluster {source.cluster!r} "
                    f"(known: {listed})"
                )
