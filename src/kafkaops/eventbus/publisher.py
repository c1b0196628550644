"""Event sources' way onto the bus: CloudEvents 1.0 JSON on the event topic.

Every event is keyed `"{eventSourceName}.{eventName}"`, so one source's events of one name keep
their order in one partition (the sensor relies on it), and is produced by an idempotent producer
with acks=all: a retried send never duplicates or reorders. Delivery is at-least-once: a source
acknowledges its own input (commits a Kafka offset, answers a webhook) only after the broker has
the event, so a crash in between publishes it again.

One publisher serves every source of a bus in a process; a small thread serves its delivery
reports so that both thread-based sources (Kafka) and coroutines (webhooks, calendars) can wait.
`send` does not wait: a Kafka source reads and converts its next batch while the broker
acknowledges the previous one, and commits each batch's input once its `Delivery` is complete.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError

from kafkaops.eventbus.bus import PRODUCER_SETTINGS
from kafkaops.eventbus.cloudevents import CloudEvent, EncodedEvent
from kafkaops.kafka import ClusterClients

__all__ = ["Delivery", "EventPublisher", "PublishError"]


class PublishError(RuntimeError):
    """The broker did not take an event (after the producer's own retries)."""


class Delivery:
    """The delivery reports of one `send` (filled from the poller thread)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.remaining = count
        self.errors: list[str] = []
        self._done = threading.Event()
        self._lock = threading.Lock()
        if count == 0:
            self._done.set()

    def report(self, err: KafkaError | None, _msg: Any = None) -> None:
        with self._lock:
            if err is not None:
                self.errors.append(err.str())
            self.remaining -= 1
            if self.remaining <= 0:
                self._done.set()

    @property
    def complete(self) -> bool:
        """Every event has its report (delivered or failed)."""
        return self._done.is_set()

    def wait(self, timeout: float) -> None:
        """Wait for every report; PublishError if one is missing after `timeout` or failed."""
        if not self._done.wait(timeout):
            raise PublishError(
                f"{self.remaining} of {self.count} events not acknowledged in {timeout}s"
            )
        if self.errors:
            raise PublishError(f"{len(self.errors)} events not published: {self.errors[0]}")


class EventPublisher:
    """Produces CloudEvents to one event topic."""

    def __init__(self, clients: ClusterClients, topic: str, *, timeout: float = 30.0) -> None:
        self.topic = topic
        self.timeout = timeout
        self.producer = clients.producer(**PRODUCER_SETTINGS)
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name=f"publisher-{topic}", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._closed.is_set():
            self.producer.poll(0.1)

    def _produce(self, event: EncodedEvent, on_delivery: Any) -> None:
        while True:
            try:
                self.producer.produce(self.topic, event.value, event.key, on_delivery=on_delivery)
                return
            except BufferError:
                # The local queue is full; the poller drains it as deliveries complete.
                self._closed.wait(0.05)

    def send(self, events: Sequence[EncodedEvent]) -> Delivery:
        """Hand events to the producer, in order; the result completes as the broker answers."""
        delivery = Delivery(len(events))
        report = delivery.report
        for event in events:
            self._produce(event, report)
        return delivery

    async def publish(self, event: CloudEvent) -> None:
        """Publish one event and wait for the broker's acknowledgement (without blocking)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str | None] = loop.create_future()

        def delivered(err: KafkaError | None, _msg: Any) -> None:
            text = None if err is None else err.str()
            loop.call_soon_threadsafe(_settle, future, text)

        self._produce(event.encoded(), delivered)
        error = await asyncio.wait_for(future, self.timeout)
        if error is not None:
            raise PublishError(f"event {event.id} not published: {error}")

    def close(self) -> None:
        self.producer.flush(self.timeout)
        self._closed.set()
        self._poller.join(1.0)


def _settle(future: asyncio.Future[str | None], error: str | None) -> None:
    if not future.done():
        future.set_result(error)
