"""Kafka clients for one cluster, built only from `kafka.settings`.

Every client reports librdkafka errors to one `ClientErrors` record per cluster, so health checks
can say *why* a cluster is unhealthy (authentication refused, SSL handshake) instead of "timeout".
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.aio import AIOConsumer, AIOProducer

from kafkaops.config.kafka import KafkaCluster
from kafkaops.kafka.settings import client_settings

log = logging.getLogger("kafkaops.kafka")
_librdkafka_log = logging.getLogger("kafkaops.librdkafka")


@dataclass(frozen=True)
class ClientError:
    code: str
    reason: str
    at: float


class ClientErrors:
    """The most recent librdkafka error of any client of a cluster (thread-safe)."""

    def __init__(self, cluster_id: str) -> None:
        self.cluster_id = cluster_id
        self._lock = threading.Lock()
        self._last: ClientError | None = None

    def __call__(self, err: KafkaError) -> None:
        event = ClientError(err.name(), err.str(), time.time())
        with self._lock:
            repeated = self._last is not None and self._last.reason == event.reason
            self._last = event
        if not repeated:
            log.warning(
                "kafka client error",
                extra={"cluster": self.cluster_id, "code": event.code, "reason": event.reason},
            )

    def since(self, t: float) -> ClientError | None:
        with self._lock:
            return self._last if self._last and self._last.at >= t else None


class ClusterClients:
    """Factory for the producers, consumers and admin clients of one `[[kafka]]` cluster."""

    def __init__(self, cluster: KafkaCluster) -> None:
        self.cluster = cluster
        self.errors = ClientErrors(cluster.id)

    @property
    def id(self) -> str:
        return self.cluster.id

    def settings(self, role: str, **overrides: Any) -> dict[str, Any]:
        settings = client_settings(self.cluster, role, **overrides)  # type: ignore[arg-type]
        settings.setdefault("error_cb", self.errors)
        settings.setdefault("logger", _librdkafka_log)
        return settings

    def producer(self, **overrides: Any) -> Producer:
        return Producer(self.settings("producer", **overrides))

    def consumer(self, group_id: str | None = None, **overrides: Any) -> Consumer:
        if group_id is not None:
            overrides["group.id"] = group_id
        overrides.setdefault("group.id", f"kafkaops-{self.id}")
        overrides.setdefault("enable.auto.commit", False)
        return Consumer(self.settings("consumer", **overrides))

    def admin(self, **overrides: Any) -> AdminClient:
        return AdminClient(self.settings("admin", **overrides))

    def aio_producer(self, **overrides: Any) -> AIOProducer:
        return AIOProducer(self.settings("producer", **overrides))

    def aio_consumer(self, group_id: str | None = None, **overrides: Any) -> AIOConsumer:
        if group_id is not None:
            overrides["group.id"] = group_id
        overrides.setdefault("group.id", f"kafkaops-{self.id}")
        overrides.setdefault("enable.auto.commit", False)
        return AIOConsumer(self.settings("consumer", **overrides))
