"""The target side: the producer kaf-relay's `[target]` keys describe, and what the resume needs.

How the keys map onto librdkafka:

| key                   | librdkafka                                                       |
|-----------------------|------------------------------------------------------------------|
| commit_ack_type       | acks: tcp → 0, leader → 1, cluster → all                         |
| enable_idempotency    | enable.idempotence (and enable.gapless.guarantee, see below)     |
| compression           | compression.type                                                 |
| max_message_bytes     | message.max.bytes (and batch.size, which may not exceed it)      |
| flush_frequency       | linger.ms                                                        |
| flush_batch_size      | batch.num.messages; exactly-once: records per transaction        |
| buffer_size           | records in flight at most (the relay stops reading beyond it)    |
| max_retries, backoff  | the relay's own retries of a stalled or failed flush             |
| request_timeout       | request.timeout.ms, and how long without an acknowledgement is a stall |

Why the idempotent producer gets `enable.gapless.guarantee` and no message timeout: the resume
takes "the newest relayed record of a partition" as proof that everything before it landed. A
record dropped on a timeout while later ones land would break that silently, so records never
time out (the relay counts stalls and gives up after `max_retries` instead), and any other
failure that could leave a gap stops the producer before anything after it is written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from kafkaops.kafka import ClusterClients
from kafkaops.relay.config import RelayConfig
from kafkaops.relay.metrics import ERR_CLIENT_CREATION, ERR_CONNECTION_FAILED, RelayStats
from kafkaops.relay.source import (
    OffsetsUnavailable,
    Watermarks,
    partition_counts,
    watermarks,
)
from kafkaops.relay.topicmap import TargetKey

ACKS = {"tcp": 0, "leader": 1, "cluster": "all"}
CONSUME_BATCH = 2000
"""Records read per consume call at most; the producer queue holds buffer_size plus one batch."""


class _KnownWarnings(logging.Filter):
    """librdkafka warns that enable.gapless.guarantee is experimental on every producer; the
    relay chose it on purpose (module doc), so that one line is not repeated per session."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "enable.gapless.guarantee is experimental" not in record.getMessage()


_producer_log = logging.getLogger("kafkaops.librdkafka.relay")
_producer_log.addFilter(_KnownWarnings())


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def producer_overrides(relay: RelayConfig) -> dict[str, Any]:
    """librdkafka settings for the relay's producer (see the module doc for the mapping)."""
    p = relay.producer
    out: dict[str, Any] = {
        "acks": ACKS[p.commit_ack_type],
        "enable.idempotence": p.enable_idempotency,
        "compression.type": p.compression,
        "message.max.bytes": p.max_message_bytes,
        "batch.size": min(1_000_000, p.max_message_bytes),
        "linger.ms": _ms(p.flush_frequency.total_seconds()),
        "batch.num.messages": p.flush_batch_size,
        "queue.buffering.max.messages": p.buffer_size + CONSUME_BATCH,
        "request.timeout.ms": _ms(p.request_timeout.total_seconds()),
    }
    if relay.delivery == "exactly-once":
        # librdkafka keeps message.timeout.ms below transaction.timeout.ms itself.
        out["transactional.id"] = relay.effective_transactional_id
    else:
        out["message.timeout.ms"] = 0
        if p.enable_idempotency:
            out["enable.gapless.guarantee"] = True
    return out


class TargetUnavailable(RuntimeError):
    """The target could not be reached or refused the producer; the text says why."""


class Target:
    """The target cluster: producers, partition counts, and readers for the resume."""

    def __init__(
        self,
        relay: RelayConfig,
        clients: ClusterClients,
        stats: RelayStats,
    ) -> None:
        self.relay = relay
        self.clients = clients
        self.stats = stats
        self.transactional = relay.delivery == "exactly-once"
        self.timeout = max(
            relay.producer.request_timeout.total_seconds(),
            clients.cluster.timeout.total_seconds(),
        )
        self._admin: AdminClient | None = None

    @property
    def id(self) -> str:
        return self.clients.id

    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = self.clients.admin()
        return self._admin

    def producer(self, on_error: Callable[[KafkaError], None] | None = None) -> Producer:
        """A new producer; with exactly-once, transactions initialised, which fences any older
        producer of this relay and aborts its open transaction before the resume reads back."""
        overrides = producer_overrides(self.relay)
        overrides["logger"] = _producer_log
        if on_error is not None:
            overrides["error_cb"] = on_error
        try:
            producer = self.clients.producer(**overrides)
        except KafkaException as exc:
            self.stats.target_errors[ERR_CLIENT_CREATION] += 1
            raise TargetUnavailable(f"cannot create a producer for {self.id!r}: {exc}") from None
        if self.transactional:
            started = time.time()
            try:
                producer.init_transactions(self.timeout)
            except KafkaException as exc:
                self.stats.target_errors[ERR_CONNECTION_FAILED] += 1
                err = self.clients.errors.since(started)
                why = f" ({err.reason})" if err else ""
                raise TargetUnavailable(
                    f"target {self.id!r}: init_transactions failed: {exc}{why}"
                ) from None
        return producer

    def partition_counts(self, topics: Iterable[str]) -> dict[str, int]:
        try:
            return partition_counts(self.clients, self.admin(), topics, self.timeout)
        except OffsetsUnavailable as exc:
            self.stats.target_errors[ERR_CONNECTION_FAILED] += 1
            raise TargetUnavailable(f"target {self.id!r}: {exc}") from None

    def watermarks(self, partitions: Collection[TargetKey]) -> Watermarks:
        try:
            return watermarks(self.clients, self.admin(), partitions, self.timeout)
        except OffsetsUnavailable as exc:
            self.stats.target_errors[ERR_CONNECTION_FAILED] += 1
            raise TargetUnavailable(f"target {self.id!r}: {exc}") from None

    def tail_reader(self) -> Consumer:
        """Reads the target back at resume: committed records only (aborted transactions of a
        crashed run are not positions), end-of-partition events to know a window is done."""
        return self.clients.consumer(
            f"kafkaops-relay-{self.relay.name}-resume",
            **{
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            },
        )

    def close(self) -> None:
        self._admin = None
