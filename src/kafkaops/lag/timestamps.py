"""Stage 3 of the lag pipeline: read the timestamp of the record at a committed offset.

Where the end-offset history cannot place a committed offset in time (a cold start, or a commit
older than the whole history) the estimator asks for the record's own timestamp instead of
guessing. One plain consumer per cluster, never in a group (assign only, no commits), reads
each planned round: one assignment positions every partition at its offset, librdkafka sends one
Fetch per leader broker, and the first record at or after the offset answers for its partition.

Deliberate settings: read_uncommitted, so a commit that points into an open transaction is
timed instead of blocking; tiny fetch sizes and a tiny prefetch queue, because one record per
partition is all we want; auto.offset.reset=earliest, so a commit below the log start is timed
by the first record still there, which is what the group will read next if it resets the same
way (and a lower bound on its real lag otherwise).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from kafkaops.kafka import ClusterClients

log = logging.getLogger("kafkaops.lag.timestamps")

PartitionKey = tuple[str, int]

_READER_SETTINGS = {
    "isolation.level": "read_uncommitted",
    "auto.offset.reset": "earliest",
    "enable.partition.eof": True,
    "enable.auto.offset.store": False,
    "fetch.max.bytes": 4 * 1024 * 1024,
    "max.partition.fetch.bytes": 16 * 1024,
    "queued.min.messages": 1000,
    "fetch.queue.backoff.ms": 10,
    "fetch.error.backoff.ms": 50,
    "queued.max.messages.kbytes": 8 * 1024,
    "fetch.wait.max.ms": 50,
}


class RecordTimestampReader:
    """Reads record timestamps from one cluster; blocking, run it in a worker thread."""

    def __init__(self, clients: ClusterClients, group_id: str = "kafkaops-lag-reader") -> None:
        self.clients = clients
        self.group_id = group_id
        self.reads = 0
        """Records whose timestamp was read, since start (a metric)."""
        self._consumer: Consumer | None = None
        self._known_topics: set[str] = set()

    def _get_consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = self.clients.consumer(self.group_id, **_READER_SETTINGS)
        return self._consumer

    def read(
        self, rounds: list[dict[Hashable, int]], timeout: float
    ) -> dict[tuple[Hashable, int], int]:
        """Timestamps (ms) of the records at the planned (partition, offset) reads.

        Keys of `rounds` are (topic, partition). Reads that fail, time out or find no record
        (the offset is at the end of the log by now) are simply absent from the answer; the
        caller falls back to the history's bound for those. `timeout` bounds all rounds.
        """
        found: dict[tuple[Hashable, int], int] = {}
        deadline = time.monotonic() + timeout
        for wanted in rounds:
            if time.monotonic() >= deadline:
                break
            found.update(self._read_round(wanted, deadline))
        self.reads += len(found)
        return found

    def _read_round(
        self, wanted: dict[Hashable, int], deadline: float
    ) -> dict[tuple[Hashable, int], int]:
        consumer = self._get_consumer()
        self._learn_topics(consumer, {t for t, _ in wanted}, deadline)  # type: ignore[misc]
        pending: dict[PartitionKey, int] = dict(wanted)  # type: ignore[arg-type]
        out: dict[tuple[Hashable, int], int] = {}
        consumer.assign([TopicPartition(t, p, offset) for (t, p), offset in pending.items()])
        try:
            while pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                for msg in consumer.consume(num_messages=10_000, timeout=min(0.02, remaining)):
                    key = (msg.topic(), msg.partition())
                    offset = pending.get(key)
                    if offset is None:
                        continue
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF or not err.retriable():
                            del pending[key]
                        continue
                    if msg.offset() < offset:
                        continue
                    kind, timestamp = msg.timestamp()
                    del pending[key]
                    if kind != TIMESTAMP_NOT_AVAILABLE and timestamp >= 0:
                        out[key, offset] = timestamp
        finally:
            consumer.unassign()
        if pending:
            log.debug(
                "record timestamps not read in time",
                extra={"cluster": self.clients.id, "partitions": len(pending)},
            )
        return out

    def _learn_topics(self, consumer: Consumer, topics: set[str], deadline: float) -> None:
        """Fetch metadata for topics this consumer has not assigned before.

        Without it, librdkafka learns a newly assigned topic's leaders on its next periodic
        metadata scan (about a second later), which would dominate a read's latency.
        """
        new = topics - self._known_topics
        if not new:
            return
        timeout = max(0.1, deadline - time.monotonic())
        try:
            if len(new) == 1:
                consumer.list_topics(next(iter(new)), timeout=timeout)
            else:
                consumer.list_topics(timeout=timeout)
        except KafkaException:
            return
        self._known_topics |= new

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
