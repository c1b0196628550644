"""Shares of work among processes, decided by Kafka's own group protocol.

Each process joins one consumer group on a small coordination topic with `buckets` partitions and
never reads from it: the partitions it is assigned are the buckets it owns. Kafka's group
coordinator thereby gives exactly-one ownership, failure detection (the session timeout) and,
with the cooperative-sticky assignor, moves only about 1/N of the buckets when a process joins or
leaves. Every deployment already has the Kafka cluster, and its protocol has settled the edge
cases (fencing, stalls, rejoin) that a home-made lease would have to.

Users: the lag monitor's instances split consumer groups by bucket (`lag/monitor.py`); the event
bus runs calendar sources only in the process that owns the one bucket of its leader topic.

The consumer polls on a thread of its own: the rebalance protocol only advances inside poll,
and a dedicated thread keeps it independent of how busy the event loop or worker pool is.
"""

from __future__ import annotations

import logging
import threading

from confluent_kafka import Consumer, KafkaException
from confluent_kafka.admin import NewTopic

from kafkaops.kafka.clients import ClusterClients

log = logging.getLogger("kafkaops.kafka.membership")


class Membership:
    """This process's buckets of one coordination group.

    `owned` is replaced as a whole (a frozenset) by the polling thread, so readers on other
    threads always see one consistent assignment.
    """

    def __init__(
        self,
        clients: ClusterClients,
        topic: str,
        group_id: str,
        buckets: int,
        session_timeout: float = 10.0,
    ) -> None:
        self.clients = clients
        self.topic = topic
        self.group_id = group_id
        self.buckets = buckets
        self.session_timeout = session_timeout
        self.owned: frozenset[int] = frozenset()
        self.error = ""
        self._consumer: Consumer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"membership-{self.group_id}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Leave the group at once, so the others take over without waiting for a timeout."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._poll_once()
                except KafkaException as exc:
                    # Broker unreachable while creating the topic: try again, keep what we own
                    # (the coordinator, not us, decides when it is gone).
                    self.error = str(exc)
                    self._stop.wait(1.0)
        finally:
            self._close()

    def ensure_topic(self) -> None:
        """Create the coordination topic, or adopt the partition count of an existing one."""
        admin = self.clients.admin()
        timeout = self.clients.cluster.timeout.total_seconds()
        metadata = admin.list_topics(timeout=timeout)
        if self.topic in metadata.topics:
            existing = len(metadata.topics[self.topic].partitions)
            if existing and existing != self.buckets:
                log.warning(
                    "coordination topic has another partition count; using it",
                    extra={"topic": self.topic, "partitions": existing},
                )
                self.buckets = existing
            return
        replication = min(3, len(metadata.brokers))
        futures = admin.create_topics([NewTopic(self.topic, self.buckets, replication)])
        try:
            futures[self.topic].result(timeout)
        except KafkaException as exc:
            if "already exists" not in str(exc).lower():
                raise

    def _poll_once(self) -> None:
        if self._consumer is None:
            self.ensure_topic()
            ms = int(self.session_timeout * 1000)
            self._consumer = self.clients.consumer(
                self.group_id,
                **{
                    "partition.assignment.strategy": "cooperative-sticky",
                    "session.timeout.ms": ms,
                    "heartbeat.interval.ms": max(100, ms // 5),
                    "enable.auto.commit": False,
                    "auto.offset.reset": "latest",
                },
            )
            self._consumer.subscribe([self.topic])
        self._consumer.poll(0.2)
        owned = frozenset(tp.partition for tp in self._consumer.assignment())
        if owned != self.owned:
            log.info(
                "share of the work changed",
                extra={
                    "cluster": self.clients.id,
                    "group": self.group_id,
                    "buckets": len(owned),
                    "of": self.buckets,
                },
            )
            self.owned = owned
        self.error = ""

    def _close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()
            except (KafkaException, RuntimeError) as exc:
                log.debug("closing the membership consumer failed", extra={"error": str(exc)})
            self._consumer = None
        self.owned = frozenset()
