"""Where the event bus's Kafka clients come from, and the settings every role needs.

A definition reaches Kafka either by a `[[kafka]]` cluster id (with that section's TLS/SASL) or,
as Argo spells it, by a `url` of brokers. A `url` that lists exactly the brokers of a configured
cluster uses that cluster, security included, so an Argo file runs unchanged against a secured
cluster; any other `url` gets a plain cluster section of its own. Either way the clients come
from `kafkaops.kafka.ClusterClients`, never from settings made up here.

Settings that matter for correctness, for every producer of the bus:

- keyed records are hash-partitioned with murmur2 (`murmur2_random`, the Java client's
  choice): deterministic, so one trigger's records stay in one partition and other clients agree
  on where a key lives. Argo's later `random` default breaks `a && b` across replicas;
- idempotence and acks=all; the sensor's producers are transactional;
- `retry.backoff.ms` is short because the broker answers CONCURRENT_TRANSACTIONS while the
  previous transaction's markers are written, and librdkafka's 100 ms default backoff then adds
  ~100 ms to every transaction (measured: 100 ms -> 8 ms per transaction on a local broker).

Consumers read `read_committed` with auto-commit off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic

from kafkaops.config import Config, KafkaCluster
from kafkaops.kafka import ClusterClients

__all__ = [
    "PRODUCER_SETTINGS",
    "BusConnections",
    "ClusterRef",
    "consumer_settings",
    "ensure_topics",
    "partition_count",
]

log = logging.getLogger("kafkaops.eventbus")

PRODUCER_SETTINGS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "partitioner": "murmur2_random",
    "linger.ms": 5,
    "retry.backoff.ms": 5,
    "retry.backoff.max.ms": 1000,
}


def consumer_settings(
    *,
    offset_reset: str,
    strategy: str = "range",
    session_timeout_ms: int = 10_000,
    max_poll_interval_ms: int = 300_000,
    instance_id: str | None = None,
) -> dict[str, Any]:
    """librdkafka consumer overrides for a bus consumer."""
    out: dict[str, Any] = {
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": offset_reset,
        "partition.assignment.strategy": strategy,
        "session.timeout.ms": session_timeout_ms,
        "heartbeat.interval.ms": max(500, session_timeout_ms // 4),
        "max.poll.interval.ms": max(max_poll_interval_ms, session_timeout_ms),
        "fetch.wait.max.ms": 50,
    }
    if instance_id is not None:
        out["group.instance.id"] = instance_id
    return out


class ClusterRef(Protocol):
    """A definition's way to Kafka (`spec._ClusterRef`): a cluster id or a broker list."""

    @property
    def cluster(self) -> str | None: ...

    @property
    def url(self) -> str | None: ...


class BusConnections:
    """Client factories by cluster reference, shared by everything one process runs."""

    def __init__(self, config: Config, clients: Callable[[str], ClusterClients]) -> None:
        self.config = config
        self._clients = clients
        self._by_url: dict[str, ClusterClients] = {}

    def for_ref(self, ref: ClusterRef) -> ClusterClients:
        """Clients for a definition; KeyError names an unknown cluster id."""
        if ref.cluster:
            return self._clients(ref.cluster)
        assert ref.url
        return self.for_url(ref.url)

    def for_url(self, url: str) -> ClusterClients:
        brokers = [b.strip() for b in url.split(",") if b.strip()]
        for cluster in self.config.clusters.values():
            if sorted(cluster.brokers) == sorted(brokers):
                return self._clients(cluster.id)
        key = ",".join(brokers)
        if key not in self._by_url:
            self._by_url[key] = ClusterClients(
                KafkaCluster.model_validate({"id": f"url:{key}", "brokers": brokers})
            )
        return self._by_url[key]

    def key(self, ref: ClusterRef) -> str:
        """A stable identity for the cluster a reference resolves to."""
        return self.for_ref(ref).id


def partition_count(clients: ClusterClients, topic: str, timeout: float = 10.0) -> int | None:
    """Partitions of `topic`, or None when it does not exist."""
    admin = clients.admin()
    md = admin.list_topics(topic, timeout=timeout)
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None:
        return None
    return len(meta.partitions)


def ensure_topics(
    clients: ClusterClients, topics: Mapping[str, int], timeout: float = 30.0
) -> list[str]:
    """Create the topics that do not exist (name -> partitions, -1 for the broker default);
    returns those created. Racing creators are fine: "already exists" counts as done."""
    admin = clients.admin()
    md = admin.list_topics(timeout=timeout)
    missing = [t for t in topics if t not in md.topics]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(t, topics[t], -1) for t in missing], operation_timeout=timeout
    )
    created: list[str] = []
    for name, future in futures.items():
        try:
            future.result(timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    if created:
        log.info("created topics", extra={"topics": ",".join(created)})
    return created
