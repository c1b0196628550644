"""Produce and read back records in tests and benchmarks, with every wait bounded."""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create_topic(
    admin: AdminClient,
    name: str,
    *,
    partitions: int = 1,
    replication: int = 1,
    config: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> None:
    futures = admin.create_topics(
        [NewTopic(name, partitions, replication, config=config or {})], operation_timeout=timeout
    )
    futures[name].result(timeout)


def produce(
    producer: Producer,
    topic: str,
    values: Iterable[bytes],
    *,
    key: bytes | None = None,
    partition: int | None = None,
    timeout: float = 30.0,
) -> int:
    """Produce and wait for every delivery; raises on the first failed delivery."""
    failures: list[str] = []

    def on_delivery(err, _msg) -> None:
        if err is not None:
            failures.append(err.str())

    count = 0
    for value in values:
        kwargs = {"partition": partition} if partition is not None else {}
        producer.produce(topic, value, key, on_delivery=on_delivery, **kwargs)
        producer.poll(0)
        count += 1
    remaining = producer.flush(timeout)
    if failures:
        raise KafkaException(f"{len(failures)} deliveries failed, first: {failures[0]}")
    if remaining:
        raise TimeoutError(f"{remaining} records not delivered within {timeout}s")
    return count


def consume(
    consumer: Consumer,
    topic: str,
    count: int,
    timeout: float = 30.0,
    partitions: list[int] | None = None,
) -> list[Message]:
    """Read `count` records from the start of `topic` (assign, no group rebalance)."""
    if partitions is None:
        md = consumer.list_topics(topic, timeout=timeout)
        partitions = sorted(md.topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            raise KafkaException(msg.error())
        out.append(msg)
    if len(out) < count:
        raise TimeoutError(f"read {len(out)} of {count} records from {topic} in {timeout}s")
    return out
