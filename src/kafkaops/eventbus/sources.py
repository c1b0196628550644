"""Event sources that run: webhook, Kafka, calendar and alerts.

- **webhook**: an endpoint on kafkaops' one HTTP server (`[http] bind-address`; the definition's
  `port` is accepted for Argo compatibility and otherwise unused). Method and path as defined; an
  optional bearer token (`token`, or `authSecret` resolved from the environment variable
  `KAFKAOPS_SECRET_<NAME>_<KEY>`). It answers 200 only once the event is on the bus.
- **kafka**: one event per record of a topic, data `{topic, partition, key, body, timestamp,
  headers}` (body base64 unless `jsonBody`), consumed in a group (`consumerGroup.groupName`, else
  `{namespace}-{eventsource}-{event}`) and committed only after the events are published:
  at-least-once, and a re-read record gets the same event id. Up to `_IN_FLIGHT` batches await
  the broker's acknowledgement while the next ones are read; their offsets are committed in
  order as they are acknowledged, and a failed batch is read again with everything after it.
- **calendar**: a cron `schedule` (in `timezone`) or an `interval`, skipping `exclusionDates`.
- **alerts**: alerts our alerting job published to Kafka (Kapacitor's alert JSON), one event per
  alert whose level passes `levels`; otherwise like a Kafka source.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from kafkaops.eventbus.bus import BusConnections
from kafkaops.eventbus.cloudevents import (
    CloudEvent,
    EncodedEvent,
    calendar_event_data,
    encode_json_event,
    kafka_event_data,
    kafka_event_id,
    webhook_event_data,
)
from kafkaops.eventbus.metrics import EventbusMetrics
from kafkaops.eventbus.publisher import Delivery, EventPublisher, PublishError
from kafkaops.eventbus.spec import (
    AlertsSource,
    CalendarSource,
    EventSource,
    KafkaSource,
    SecretKeySelector,
    WebhookSource,
)
from kafkaops.kafka import ClusterClients
from kafkaops.kafka.membership import Membership

__all__ = [
    "KafkaSourceWorker",
    "SourceRunner",
    "WebhookEndpoint",
    "WebhookRegistry",
    "alert_event",
    "kafka_event",
    "run_calendar",
    "secret_from_env",
]

log = logging.getLogger("kafkaops.eventbus.sources")

_MAX_BATCH = 500
# Batches published and not yet acknowledged: enough to keep reading while the broker answers,
# few enough that a failure re-reads little.
_IN_FLIGHT = 4
_LEADER_POLL = 0.2
"""Seconds between looks at the calendar leadership."""


def _now() -> datetime:
    return datetime.now(UTC)


def secret_from_env(selector: SecretKeySelector) -> str | None:
    """A Kubernetes secret reference, resolved from `KAFKAOPS_SECRET_<NAME>_<KEY>`."""
    name = re.sub(r"[^A-Za-z0-9]", "_", f"KAFKAOPS_SECRET_{selector.name}_{selector.key}")
    return os.environ.get(name.upper())


# --------------------------------------------------------------------------- webhook


@dataclass(frozen=True)
class WebhookEndpoint:
    """One webhook event: where it listens and what it publishes."""

    source: str
    event: str
    spec: WebhookSource
    publisher: EventPublisher
    token: str | None
    metrics: EventbusMetrics

    @property
    def needs_token(self) -> bool:
        return self.spec.token is not None or self.spec.auth_secret is not None


class WebhookRegistry:
    """Endpoints by path, looked up per request (the daemon's fallback for paths no route
    matches), so webhooks defined or deleted while it runs are served or gone at once."""

    def __init__(self) -> None:
        self.endpoints: dict[str, WebhookEndpoint] = {}

    def add(self, endpoint: WebhookEndpoint) -> None:
        self.endpoints[endpoint.spec.endpoint] = endpoint

    def remove(self, endpoint: WebhookEndpoint) -> None:
        if self.endpoints.get(endpoint.spec.endpoint) is endpoint:
            del self.endpoints[endpoint.spec.endpoint]

    async def handle(self, request: web.Request) -> web.StreamResponse | None:
        """The endpoint's answer; None when no event source listens at the path."""
        endpoint = self.endpoints.get(request.path)
        if endpoint is None:
            return None
        if request.method != endpoint.spec.method:
            raise web.HTTPMethodNotAllowed(request.method, [endpoint.spec.method])
        if endpoint.needs_token and not _authorised(request, endpoint.token):
            raise web.HTTPUnauthorized(text="invalid or missing bearer token\n")
        limit = endpoint.spec.max_payload_size
        if limit is not None and (request.content_length or 0) > limit:
            raise web.HTTPRequestEntityTooLarge(limit, request.content_length or 0)
        body = await request.read()
        if limit is not None and len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(limit, len(body))
        headers = {k: request.headers.getall(k) for k in request.headers}
        try:
            data = webhook_event_data(headers, body, endpoint.spec.metadata)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        event = CloudEvent(
            id=uuid.uuid4().hex,
            source=endpoint.source,
            type="webhook",
            subject=endpoint.event,
            time=_now(),
            data=data,
        )
        try:
            await endpoint.publisher.publish(event)
        except (PublishError, TimeoutError) as exc:
            endpoint.metrics.publish_errors.labels(endpoint.source, endpoint.event).inc()
            raise web.HTTPServiceUnavailable(text=f"event not published: {exc}\n") from None
        endpoint.metrics.published.labels(endpoint.source, endpoint.event).inc()
        return web.Response(text="success\n")


def _authorised(request: web.Request, token: str | None) -> bool:
    if not token:
        return False  # a secret that did not resolve: refuse rather than serve openly
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), token)


# --------------------------------------------------------------------------- kafka and alerts


def _timestamp(msg: Message) -> datetime:
    kind, ms = msg.timestamp()
    return _now() if kind == TIMESTAMP_NOT_AVAILABLE else datetime.fromtimestamp(ms / 1000, UTC)


def kafka_event(
    source: str, event: str, spec: KafkaSource, brokers: str, msg: Message
) -> EncodedEvent:
    """The event for one record of a Kafka source (Argo's data layout and id)."""
    topic, partition = msg.topic(), msg.partition()
    data = kafka_event_data(
        topic=topic,
        partition=partition,
        key=msg.key(),
        value=msg.value(),
        timestamp=_timestamp(msg),
        headers=msg.headers(),
        json_body=spec.json_body,
        metadata=spec.metadata,
    )
    return encode_json_event(
        id=kafka_event_id(
            source, event, broker=brokers, topic=topic, partition=partition, offset=msg.offset()
        ),
        source=source,
        type="kafka",
        subject=event,
        time=_now(),
        data=data,
    )


def alert_event(source: str, event: str, spec: AlertsSource, msg: Message) -> CloudEvent | None:
    """The event for one alert record, or None when its level is filtered out."""
    try:
        alert = json.loads(msg.value() or b"")
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"alert record is not JSON: {msg.value()!r:.80}") from None
    if not spec.accepts(alert):
        return None
    return CloudEvent(
        id=f"{source}:{event}:{msg.topic()}:{msg.partition()}:{msg.offset()}",
        source=source,
        type="alerts",
        subject=event,
        time=_now(),
        data=alert,
    )


@dataclass
class _Batch:
    """A batch of records whose events were sent: where it starts and ends per partition."""

    delivery: Delivery
    starts: dict[tuple[str, int], int]
    nexts: dict[tuple[str, int], int]


class KafkaSourceWorker:
    """A Kafka (or alerts) source: consume, publish, then commit, in a thread of its own."""

    def __init__(
        self,
        source: EventSource,
        event: str,
        spec: KafkaSource | AlertsSource,
        *,
        clients: ClusterClients,
        publisher: EventPublisher,
        metrics: EventbusMetrics,
    ) -> None:
        self.source = source
        self.event = event
        self.spec = spec
        self.clients = clients
        self.publisher = publisher
        self.metrics = metrics
        self.stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.brokers = spec.url or ",".join(clients.cluster.brokers)
        group = spec.consumer_group
        self.group = (group.group_name if group and group.group_name else None) or (
            f"{source.namespace}-{source.name}-{event}"
        )
        self.oldest = bool(group and group.from_oldest)
        self._next_slot = 0.0
        self._in_flight: deque[_Batch] = deque()

    @property
    def topics(self) -> list[str]:
        if isinstance(self.spec, AlertsSource):
            return self.spec.all_topics
        return [self.spec.topic]

    def convert(self, msg: Message) -> EncodedEvent | None:
        if isinstance(self.spec, AlertsSource):
            event = alert_event(self.source.name, self.event, self.spec, msg)
            return None if event is None else event.encoded()
        return kafka_event(self.source.name, self.event, self.spec, self.brokers, msg)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._supervise, name=f"source-{self.source.name}-{self.event}", daemon=True
        )
        self._thread.start()

    def stop_and_join(self, timeout: float = 30.0) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _supervise(self) -> None:
        delay = 1.0
        while not self.stop.is_set():
            try:
                self.run()
                return
            except Exception as exc:
                self.metrics.stage_restarts.labels(f"source/{self.source.name}/{self.event}").inc()
                log.error(
                    "event source failed; restarting",
                    extra={"eventsource": self.source.name, "event": self.event, "error": str(exc)},
                )
                if self.stop.wait(delay):
                    return
                delay = min(delay * 2, 30.0)

    def run(self) -> None:
        consumer = self.clients.consumer(
            self.group,
            **{
                "auto.offset.reset": "earliest" if self.oldest else "latest",
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed",
            },
        )
        self._in_flight.clear()
        try:
            partition = getattr(self.spec, "partition", None)
            if partition is not None and self.spec.consumer_group is None:
                # Argo reads one partition when no group is given; offsets still go to ours.
                consumer.assign([TopicPartition(self.topics[0], int(partition))])
            else:
                consumer.subscribe(self.topics, on_revoke=self._revoked)
            while not self.stop.is_set():
                self._batch(consumer)
            self._settle(consumer, len(self._in_flight), final=True)
        finally:
            consumer.close()

    def _revoked(self, consumer: Any, _partitions: list[TopicPartition]) -> None:
        """Before partitions go: commit what the broker has taken, so the next owner does not
        publish it again. Read positions restart from the commits after the rebalance."""
        self._settle(consumer, len(self._in_flight), final=True)

    def _batch(self, consumer: Any) -> None:
        first = consumer.poll(0.02 if self._in_flight else 0.2)
        if first is None:
            self._settle(consumer, 0)
            return
        messages = [first, *consumer.consume(_MAX_BATCH - 1, 0)]
        events: list[EncodedEvent] = []
        nexts: dict[tuple[str, int], int] = {}
        starts: dict[tuple[str, int], int] = {}
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("source consumer error", extra={"error": err.str()})
                continue
            tp = (msg.topic(), msg.partition())
            starts.setdefault(tp, msg.offset())
            nexts[tp] = msg.offset() + 1
            try:
                event = self.convert(msg)
            except ValueError as exc:
                log.warning(
                    "record skipped",
                    extra={"eventsource": self.source.name, "event": self.event, "error": str(exc)},
                )
                continue
            if event is not None:
                events.append(event)
        self._pace(len(events))
        self._in_flight.append(_Batch(self.publisher.send(events), starts, nexts))
        self._settle(consumer, 1 if len(self._in_flight) >= _IN_FLIGHT else 0)

    def _settle(self, consumer: Any, wait: int, *, final: bool = False) -> None:
        """Commit the input of the oldest batches the broker has acknowledged, in order,
        waiting for the first `wait` of them. A batch that failed is read again from its start,
        with every batch after it (unless `final`: then reading restarts from the commit).
        """
        done: dict[tuple[str, int], int] = {}
        try:
            while self._in_flight and (wait > 0 or self._in_flight[0].delivery.complete):
                head = self._in_flight.popleft()
                wait -= 1
                try:
                    head.delivery.wait(self.publisher.timeout)
                except PublishError as exc:
                    self._failed(consumer, head, exc, final)
                    return
                self.metrics.published.labels(self.source.name, self.event).inc(head.delivery.count)
                done.update(head.nexts)
        finally:
            if done:
                self._commit(consumer, done, final)

    def _commit(self, consumer: Any, done: dict[tuple[str, int], int], final: bool) -> None:
        """Commit (waiting for it only when `final`); a commit that fails only means those
        records are read and published again, which at-least-once allows."""
        try:
            consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in done.items()],
                asynchronous=not final,
            )
        except KafkaException as exc:
            log.warning("source offsets not committed", extra={"error": str(exc)})

    def _failed(self, consumer: Any, head: _Batch, exc: PublishError, final: bool) -> None:
        self.metrics.publish_errors.labels(self.source.name, self.event).inc(head.delivery.count)
        log.error("publishing failed; reading again", extra={"error": str(exc)})
        starts: dict[tuple[str, int], int] = {}
        for batch in (head, *self._in_flight):
            for tp, offset in batch.starts.items():
                starts.setdefault(tp, offset)
        self._in_flight.clear()
        if final:
            return
        for (topic, partition), offset in starts.items():
            consumer.seek(TopicPartition(topic, partition, offset))
        self.stop.wait(1.0)

    def _pace(self, count: int) -> None:
        """`limitEventsPerSecond`: wait so this batch stays within the rate."""
        limit = getattr(self.spec, "limit_events_per_second", None)
        if not limit or not count:
            return
        now = time.monotonic()
        start = max(self._next_slot, now)
        self._next_slot = start + count / limit
        if start > now:
            self.stop.wait(start - now)


# --------------------------------------------------------------------------- calendar


async def run_calendar(
    source: str,
    event: str,
    spec: CalendarSource,
    publish: Callable[[CloudEvent], Any],
    *,
    clock: Callable[[], datetime] = _now,
    sleep: Callable[[float], Any] = asyncio.sleep,
) -> None:
    """Publish one event per fire time until cancelled; `interval` counts from the start.

    A publish failure is logged and the schedule goes on: a calendar event is about a moment,
    and sending it late after a long broker outage would mislead more than it helps.
    """
    anchor = clock()
    last = anchor
    while True:
        due = spec.next_fire(last, anchor)
        wait = (due - clock()).total_seconds()
        if wait > 0:
            await sleep(wait)
        cloud = CloudEvent(
            id=uuid.uuid4().hex,
            source=source,
            type="calendar",
            subject=event,
            time=due,
            data=calendar_event_data(due, spec.metadata),
        )
        try:
            await publish(cloud)
        except (PublishError, TimeoutError) as exc:
            log.error(
                "calendar event not published",
                extra={"eventsource": source, "event": event, "error": str(exc)},
            )
        last = due


# --------------------------------------------------------------------------- one EventSource


class SourceRunner:
    """Everything one EventSource emits, published to its bus's event topic.

    Kafka sources share their consumer group across processes and webhooks answer whoever is
    asked, but a calendar would fire once in every process that runs sources. So calendars run
    only in the process that owns the one bucket of `leader` (given when the source has
    calendars); another takes over when it leaves (at once) or dies (within the group's session
    timeout). A handover may overlap by the membership's and this runner's polling (a few
    tenths of a second).
    """

    def __init__(
        self,
        source: EventSource,
        publisher: EventPublisher,
        connections: BusConnections,
        webhooks: WebhookRegistry,
        metrics: EventbusMetrics,
        *,
        leader: Membership | None = None,
    ) -> None:
        self.source = source
        self.publisher = publisher
        self.connections = connections
        self.webhooks = webhooks
        self.metrics = metrics
        self.leader = leader
        self._workers: list[KafkaSourceWorker] = []
        self._calendars: list[asyncio.Task[None]] = []
        self._following: asyncio.Task[None] | None = None
        self._endpoints: list[WebhookEndpoint] = []

    @property
    def name(self) -> str:
        return self.source.name

    def start(self) -> None:
        spec = self.source.spec
        for event, kafka in {**spec.kafka, **spec.alerts}.items():
            worker = KafkaSourceWorker(
                self.source,
                event,
                kafka,
                clients=self.connections.for_ref(kafka),
                publisher=self.publisher,
                metrics=self.metrics,
            )
            worker.start()
            self._workers.append(worker)
        if self.leader is not None:
            self.leader.start()
            self._following = asyncio.create_task(
                self._follow(self.leader), name=f"calendars-{self.name}"
            )
        for event, hook in spec.webhook.items():
            token = hook.token
            if hook.auth_secret is not None:
                token = secret_from_env(hook.auth_secret)
                if token is None:
                    log.error(
                        "webhook authSecret not found in the environment; refusing requests",
                        extra={"eventsource": self.name, "event": event},
                    )
            endpoint = WebhookEndpoint(self.name, event, hook, self.publisher, token, self.metrics)
            self.webhooks.add(endpoint)
            self._endpoints.append(endpoint)

    def _start_calendars(self) -> None:
        self._calendars = [
            asyncio.create_task(
                run_calendar(self.name, event, calendar, self._publish_counted(event)),
                name=f"calendar-{self.name}-{event}",
            )
            for event, calendar in self.source.spec.calendar.items()
        ]

    async def _stop_calendars(self) -> None:
        for task in self._calendars:
            task.cancel()
        await asyncio.gather(*self._calendars, return_exceptions=True)
        self._calendars = []

    async def _follow(self, leader: Membership) -> None:
        """Run the calendars while this process owns the leader bucket, and only then."""
        while True:
            leading = bool(leader.owned)
            if leading != bool(self._calendars):
                log.info(
                    "calendars started: this process leads" if leading else "calendars stopped",
                    extra={"eventsource": self.name, "group": leader.group_id},
                )
                if leading:
                    self._start_calendars()
                else:
                    await self._stop_calendars()
            await asyncio.sleep(_LEADER_POLL)

    def _publish_counted(self, event: str) -> Callable[[CloudEvent], Any]:
        async def publish(cloud: CloudEvent) -> None:
            try:
                await self.publisher.publish(cloud)
            except (PublishError, TimeoutError):
                self.metrics.publish_errors.labels(self.name, event).inc()
                raise
            self.metrics.published.labels(self.name, event).inc()

        return publish

    async def stop(self) -> None:
        for endpoint in self._endpoints:
            self.webhooks.remove(endpoint)
        if self._following is not None:
            self._following.cancel()
            await asyncio.gather(self._following, return_exceptions=True)
        await self._stop_calendars()
        if self.leader is not None:
            await asyncio.to_thread(self.leader.stop)  # leaves the group: another leads at once
        for worker in self._workers:
            worker.stop.set()
        await asyncio.gather(*(asyncio.to_thread(w.stop_and_join) for w in self._workers))
