"""The root of the one config file every job reads."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, field_validator, model_validator

from kafkaops.alert.config import AlertSection
from kafkaops.config.kafka import KafkaCluster, Section, require_unique
from kafkaops.eventbus.config import EventbusSection
from kafkaops.lag.config import LagConfig
from kafkaops.relay.config import RelayList, check_relay_clusters


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("kafkaops"))


class HttpSection(Section):
    """Kapacitor's `[http]`, moved off :9092 because that is Kafka's own port."""

    bind_address: str = Field(default="127.0.0.1:9470", alias="bind-address")

    @field_validator("bind_address")
    @classmethod
    def _host_port(cls, v: str) -> str:
        _host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"bind-address {v!r} is not [host]:port")
        return v

    @property
    def host(self) -> str:
        host = self.bind_address.rpartition(":")[0].strip("[]")
        return host or "0.0.0.0"

    @property
    def port(self) -> int:
        return int(self.bind_address.rpartition(":")[2])


class LoggingSection(Section):
    level: Literal["DEBUG", "INFO", "WARN", "WARNING", "ERROR"] = "INFO"
    format: Literal["logfmt", "json"] = "logfmt"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v


class Config(Section):
    """Everything kafkaops reads from its config file."""

    data_dir: Path = Field(default_factory=default_data_dir)
    http: HttpSection = HttpSection()
    logging: LoggingSection = LoggingSection()
    kafka: list[KafkaCluster] = Field(default_factory=list)
    lag: LagConfig | None = None
    alert: AlertSection = Field(default_factory=AlertSection)
    eventbus: EventbusSection | None = None
    relay: RelayList = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_cluster_ids(self) -> Config:
        require_unique((c.id for c in self.kafka), "duplicate [[kafka]] id {}")
        return self

    @model_validator(mode="after")
    def _jobs_name_known_clusters(self) -> Config:
        if self.lag is not None:
            self.lag.check_clusters(self.clusters)
        self.alert.check_clusters(self.clusters)
        check_relay_clusters(self.relay, self.clusters)
        return self

    @property
    def clusters(self) -> dict[str, KafkaCluster]:
        """Enabled clusters by id: the only ones jobs may use."""
        return {c.id: c for c in self.kafka if c.enabled}

    def cluster(self, cluster_id: str) -> KafkaCluster:
        try:
            return self.clusters[cluster_id]
        except KeyError:
            known = ", ".join(sorted(self.clusters)) or "none"
            raise KeyError(f"unknown cluster {cluster_id!r} (configured: {known})") from None
