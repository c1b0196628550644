"""The source side: offsets and partition counts, health checks of every source, consumers.

Health is what kaf-relay checks too: each source's end offsets, asked with `request_timeout`.
The checks run on their own thread at `healthcheck_interval`, all sources at once, so a dead
source costs the relay loop nothing; the loop picks up each finished round (`HealthMonitor`)
and hands it to the failover policy.

End offsets are read `read_committed` (the last stable offset): the relay reads sources that
way, so an open transaction's records are not counted as data it could copy yet.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from kafkaops.kafka import ClusterClients
from kafkaops.relay.config import RelayConfig
from kafkaops.relay.failover import SourceHealth
from kafkaops.relay.metrics import ERR_CLIENT_CREATION, ERR_CONNECTION_FAILED, RelayStats
from kafkaops.relay.topicmap import SourceKey

log = logging.getLogger("kafkaops.relay")

Watermarks = dict[SourceKey, tuple[int, int]]

_LEADER_MOVING = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.OFFSET_NOT_AVAILABLE,
        KafkaError.FENCED_LEADER_EPOCH,
        KafkaError.UNKNOWN_LEADER_EPOCH,
    }
)
"""Per-partition ListOffsets answers that librdkafka does not mark retriable but that pass."""


class OffsetsUnavailable(RuntimeError):
    """A cluster did not answer a metadata or offsets request in time; the text says why."""


def _reason(clients: ClusterClients, exc: BaseException, since: float) -> str:
    """The client's own error (refused connection, failed authentication) says more than the
    admin request's timeout does."""
    err = clients.errors.since(since)
    detail = exc.args[0] if isinstance(exc, KafkaException) and exc.args else exc
    text = detail.str() if hasattr(detail, "str") else str(detail)
    return f"{text} ({err.reason})" if err and err.reason not in text else text


def partition_counts(
    clients: ClusterClients, admin: AdminClient, topics: Iterable[str], timeout: float
) -> dict[str, int]:
    """Partition count of each of `topics` that exists (missing topics are left out)."""
    started = time.time()
    try:
        md = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise OffsetsUnavailable(_reason(clients, exc, started)) from None
    out = {}
    for topic in topics:
        tmd = md.topics.get(topic)
        if tmd is not None and tmd.error is None and tmd.partitions:
            out[topic] = len(tmd.partitions)
    return out


def list_offsets(
    clients: ClusterClients,
    admin: AdminClient,
    partitions: Collection[SourceKey],
    spec: Callable[[], OffsetSpec],
    timeout: float,
) -> dict[SourceKey, int]:
    """ListOffsets for every partition (read_committed), bounded by `timeout`.

    A retriable answer (a leader moving, a topic created a moment ago whose leader is not known
    yet) is asked again until `timeout` ends, so it costs milliseconds instead of a failed
    attempt and its backoff."""
    if not partitions:
        return {}
    started = time.time()
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        request = {TopicPartition(t, p): spec() for t, p in partitions}
        left = max(0.001, deadline - time.monotonic())
        try:
            futures = admin.list_offsets(
                request, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=left
            )
            return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            retriable = isinstance(err, KafkaError) and (
                err.retriable() or err.code() in _LEADER_MOVING
            )
            if not retriable or time.monotonic() + pause >= deadline:
                raise OffsetsUnavailable(_reason(clients, exc, started)) from None
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


def watermarks(
    clients: ClusterClients, admin: AdminClient, partitions: Collection[SourceKey], timeout: float
) -> Watermarks:
    """(log start, last stable offset) of every partition."""
    low = list_offsets(clients, admin, partitions, OffsetSpec.earliest, timeout)
    high = list_offsets(clients, admin, partitions, OffsetSpec.latest, timeout)
    return {key: (low[key], high[key]) for key in partitions}


def all_partitions(counts: Mapping[str, int]) -> list[SourceKey]:
    return [(topic, p) for topic, n in counts.items() for p in range(n)]


class SourcePool:
    """The relay's sources: one admin client each for checks, consumers created on demand."""

    def __init__(
        self,
        relay: RelayConfig,
        clients_of: Callable[[str], ClusterClients],
        stats: RelayStats,
    ) -> None:
        self.relay = relay
        self.topics = relay.topic_map().source_topics
        self.timeout = relay.source_pool.request_timeout.total_seconds()
        self.stats = stats
        self._clients = {name: clients_of(name) for name in relay.sources}
        self._admins: dict[str, AdminClient] = {}
        self._lock = threading.Lock()

    def clients(self, name: str) -> ClusterClients:
        return self._clients[name]

    def admin(self, name: str) -> AdminClient:
        with self._lock:
            if name not in self._admins:
                self._admins[name] = self._clients[name].admin()
            return self._admins[name]

    def metadata_timeout(self, name: str) -> float:
        """For start-up lookups: the cluster's own timeout, at least the health timeout."""
        return max(self.timeout, self._clients[name].cluster.timeout.total_seconds())

    def partition_counts(self, name: str) -> dict[str, int]:
        return partition_counts(
            self._clients[name], self.admin(name), self.topics, self.metadata_timeout(name)
        )

    def watermarks(self, name: str, partitions: Collection[SourceKey]) -> Watermarks:
        return watermarks(
            self._clients[name], self.admin(name), partitions, self.metadata_timeout(name)
        )

    def check(self, name: str) -> SourceHealth:
        """End offsets of every partition of the relayed topics, within `request_timeout`."""
        clients = self._clients[name]
        try:
            admin = self.admin(name)
            counts = partition_counts(clients, admin, self.topics, self.timeout)
            ends = list_offsets(
                clients, admin, all_partitions(counts), OffsetSpec.latest, self.timeout
            )
        except (OffsetsUnavailable, KafkaException) as exc:
            self.stats.source_errors[name, ERR_CONNECTION_FAILED] += 1
            self.stats.source_highwatermark[name] = -1
            return SourceHealth(name, error=str(exc))
        self.stats.source_highwatermark[name] = sum(ends.values())
        return SourceHealth(name, end_offsets=ends)

    def consumer(self, name: str) -> Consumer:
        """A group-less reader (assign only, nothing committed): positions live on the target."""
        try:
            consumer = self._clients[name].consumer(
                f"kafkaops-relay-{self.relay.name}", **consumer_overrides(self.relay)
            )
        except KafkaException:
            self.stats.source_errors[name, ERR_CLIENT_CREATION] += 1
            raise
        self.stats.source_connections[name] += 1
        return consumer

    def close(self) -> None:
        with self._lock:
            self._admins.clear()


def consumer_overrides(relay: RelayConfig) -> dict[str, Any]:
    """Source reads: committed data only, end-of-partition events for stop-at-end, and an
    error instead of a silent jump when a position falls out of the log."""
    return {
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
        "auto.offset.reset": "error",
        "fetch.wait.max.ms": 100,
        "queued.max.messages.kbytes": 32 * 1024,
        "fetch.queue.backoff.ms": 10,
    }


class HealthMonitor:
    """Checks every source each `healthcheck_interval` on a thread of its own.

    `generation` grows with every finished round; `latest` is that round's result.
    """

    def __init__(self, pool: SourcePool, interval: float) -> None:
        self.pool = pool
        self.interval = interval
        self.generation = 0
        self.latest: list[SourceHealth] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._executor = ThreadPoolExecutor(
            max_workers=len(pool.relay.sources), thread_name_prefix="relay-health"
        )
        self._thread = threading.Thread(target=self._run, name="relay-health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            results = list(self._executor.map(self._check, self.pool.relay.sources))
            with self._cond:
                self.latest = results
                self.generation += 1
                self._cond.notify_all()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _check(self, name: str) -> SourceHealth:
        """A check that fails unexpectedly is an unhealthy source, never a dead health thread
        (the relay would wait for a round that never comes)."""
        try:
            return self.pool.check(name)
        except Exception as exc:
            log.exception("health check failed", extra={"source": name})
            return SourceHealth(name, error=f"health check failed: {exc!r}")

    def wait(self, after: int, timeout: float) -> int:
        """Block until a round newer than `after` finished (or timeout); returns the generation."""
        with self._cond:
            self._cond.wait_for(lambda: self.generation > after or self._stop.is_set(), timeout)
            return self.generation

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=self.pool.timeout * 2 + 5)
        self._executor.shutdown(wait=False, cancel_futures=True)
