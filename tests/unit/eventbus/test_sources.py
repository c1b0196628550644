"""Event sources without a broker: the webhook endpoint, calendar timing, Kafka/alert events."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from confluent_kafka import KafkaError

from kafkaops.config import Config
from kafkaops.eventbus.cloudevents import CloudEvent, EncodedEvent
from kafkaops.eventbus.metrics import EventbusMetrics
from kafkaops.eventbus.publisher import Delivery, PublishError
from kafkaops.eventbus.sources import (
    _IN_FLIGHT,
    KafkaSourceWorker,
    WebhookEndpoint,
    WebhookRegistry,
    alert_event,
    kafka_event,
    run_calendar,
    secret_from_env,
)
from kafkaops.eventbus.spec import EventSource, SecretKeySelector, load_definitions
from kafkaops.server.runtime import Runtime


def source(spec: str) -> EventSource:
    head = "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {name: src}\n"
    text = f"{head}spec:\n{spec}"
    return load_definitions(text, "s.yaml").definitions[0]


class FakePublisher:
    def __init__(self, fail: bool = False) -> None:
        self.events: list[CloudEvent] = []
        self.fail = fail

    async def publish(self, event: CloudEvent) -> None:
        if self.fail:
            raise PublishError("broker down")
        self.events.append(event)


async def client_for(registry: WebhookRegistry) -> TestClient:
    runtime = Runtime(Config())
    runtime.add_fallback(registry.handle)
    runtime.route_fallbacks()
    client = TestClient(TestServer(runtime.app))
    await client.start_server()
    return client


async def test_webhook_publishes_a_cloudevent_and_checks_method_and_token() -> None:
    src = source(
        "  webhook:\n    push: {port: '12000', endpoint: /push, method: POST, token: s3cret,"
        " metadata: {team: ops}}\n"
    )
    publisher = FakePublisher()
    registry = WebhookRegistry()
    client = await client_for(registry)
    registry.add(
        WebhookEndpoint(
            "src", "push", src.spec.webhook["push"], publisher, "s3cret", EventbusMetrics()
        )
    )  # type: ignore[arg-type]
    try:
        ok = await client.post("/push", json={"n": 1}, headers={"Authorization": "Bearer s3cret"})
        assert (ok.status, await ok.text()) == (200, "success\n")
        assert (await client.post("/push", json={})).status == 401
        assert (await client.post("/push", headers={"Authorization": "Bearer nope"})).status == 401
        assert (await client.get("/push", headers={"Authorization": "Bearer s3cret"})).status == 405
        bad = await client.post(
            "/push", data=b"{not json", headers={"Authorization": "Bearer s3cret"}
        )
        assert bad.status == 400
    finally:
        await client.close()
    [event] = publisher.events
    assert (event.source, event.subject, event.type) == ("src", "push", "webhook")
    assert event.data["body"] == {"n": 1}
    assert event.data["metadata"] == {"team": "ops"}
    assert event.data["header"]["Authorization"] == ["Bearer s3cret"]


async def test_webhook_answers_503_when_the_event_is_not_published() -> None:
    src = source("  webhook:\n    push: {port: '1', endpoint: /p}\n")
    registry = WebhookRegistry()
    client = await client_for(registry)
    registry.add(
        WebhookEndpoint(
            "src", "push", src.spec.webhook["push"], FakePublisher(True), None, EventbusMetrics()
        )
    )  # type: ignore[arg-type]
    try:
        response = await client.post("/p", json={})
        assert response.status == 503
        assert "broker down" in await response.text()
        registry.endpoints.clear()
        assert (await client.post("/p", json={})).status == 404
    finally:
        await client.close()


def test_auth_secret_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("KAFKAOPS_SECRET_WEBHOOK_AUTH_TOKEN", "t0k")
    assert secret_from_env(SecretKeySelector(name="webhook-auth", key="token")) == "t0k"
    assert secret_from_env(SecretKeySelector(name="other", key="token")) is None


async def test_calendar_interval_fires_on_schedule() -> None:
    src = source("  calendar:\n    tick: {interval: 10s, metadata: {k: v}}\n")
    start = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    clock = {"now": start}
    published: list[CloudEvent] = []
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock["now"] += timedelta(seconds=seconds)

    async def publish(event: CloudEvent) -> None:
        published.append(event)
        if len(published) == 3:
            raise _Done

    with pytest.raises(_Done):
        await run_calendar(
            "src",
            "tick",
            src.spec.calendar["tick"],
            publish,
            clock=lambda: clock["now"],
            sleep=sleep,
        )
    assert waits == [10.0, 10.0, 10.0]
    assert [e.time for e in published] == [start + timedelta(seconds=10 * i) for i in (1, 2, 3)]
    assert published[0].data == {
        "eventTime": "2024-01-01 12:00:10 +0000 UTC",
        "metadata": {"k": "v"},
    }


async def test_calendar_cron_in_a_time_zone() -> None:
    src = source("  calendar:\n    daily: {schedule: '30 9 * * *', timezone: Europe/Berlin}\n")
    clock = {"now": datetime(2024, 7, 1, 0, 0, tzinfo=UTC)}
    published: list[CloudEvent] = []

    async def sleep(seconds: float) -> None:
        clock["now"] += timedelta(seconds=seconds)

    async def publish(event: CloudEvent) -> None:
        published.append(event)
        raise _Done

    with pytest.raises(_Done):
        await run_calendar(
            "src",
            "daily",
            src.spec.calendar["daily"],
            publish,
            clock=lambda: clock["now"],
            sleep=sleep,
        )
    assert published[0].time == datetime(2024, 7, 1, 7, 30, tzinfo=UTC)  # 09:30 CEST


class _Done(Exception):
    pass


class FakeMessage:
    def __init__(self, value: bytes, key: bytes | None = b"k", headers: Any = None) -> None:
        self._value, self._key, self._headers = value, key, headers

    def topic(self) -> str:
        return "orders"

    def partition(self) -> int:
        return 2

    def offset(self) -> int:
        return 41

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes:
        return self._value

    def headers(self) -> Any:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)


def test_kafka_event_has_argos_data_layout_and_a_stable_id() -> None:
    src = source("  kafka:\n    orders: {url: 'k1:9092,k2:9092', topic: orders}\n")
    spec = src.spec.kafka["orders"]
    encoded = kafka_event(
        "src", "orders", spec, "k1:9092,k2:9092", FakeMessage(b"\x00raw", headers=[("h", b"v")])
    )
    event = CloudEvent.from_json(encoded.value)
    assert encoded.key == b"src.orders"
    assert event.id == "src:orders:k1:9092:orders:2:41"
    assert (event.source, event.subject, event.type) == ("src", "orders", "kafka")
    assert event.data["body"] == base64.b64encode(b"\x00raw").decode()
    assert event.data["headers"] == {"h": "v"}
    assert event.data["timestamp"] == "2023-11-14 22:13:20 +0000 UTC"
    assert (event.data["topic"], event.data["partition"], event.data["key"]) == ("orders", 2, "k")
    as_json = source("  kafka:\n    orders: {url: 'k1:9092', topic: orders, jsonBody: true}\n")
    parsed = CloudEvent.from_json(
        kafka_event(
            "src", "orders", as_json.spec.kafka["orders"], "k1:9092", FakeMessage(b'{"x": 1}')
        ).value
    )
    assert parsed.data["body"] == {"x": 1}


def test_alert_events_follow_the_levels_filter() -> None:
    src = source("  alerts:\n    cpu: {cluster: main, topic: alerts, levels: [CRITICAL]}\n")
    spec = src.spec.alerts["cpu"]
    critical = FakeMessage(b'{"id": "cpu:host1", "level": "CRITICAL", "message": "hot"}')
    event = alert_event("src", "cpu", spec, critical)
    assert event is not None
    assert (event.type, event.subject, event.data["id"]) == ("alerts", "cpu", "cpu:host1")
    assert alert_event("src", "cpu", spec, FakeMessage(b'{"level": "OK"}')) is None
    with pytest.raises(ValueError, match="not JSON"):
        alert_event("src", "cpu", spec, FakeMessage(b"nope"))


# --------------------------------------------------------------------------- Kafka source batches


class OffsetMessage:
    """A record of partition 0 of `rows` at a given offset."""

    def __init__(self, offset: int) -> None:
        self._offset = offset

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return "rows"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> None:
        return None

    def value(self) -> bytes:
        return b"row"

    def headers(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)


class SourceConsumer:
    """Hands out one record per poll and records commits and seeks."""

    def __init__(self) -> None:
        self.next = 0
        self.commits: list[tuple[dict[int, int], bool]] = []
        self.seeks: list[int] = []

    def poll(self, _timeout: float) -> OffsetMessage:
        self.next += 1
        return OffsetMessage(self.next - 1)

    def consume(self, _count: int, _timeout: float) -> list[OffsetMessage]:
        return []

    def commit(self, offsets: list[Any], asynchronous: bool) -> None:
        self.commits.append(({tp.partition: tp.offset for tp in offsets}, asynchronous))

    def seek(self, tp: Any) -> None:
        self.seeks.append(tp.offset)


class HeldPublisher:
    """Sends nothing: each batch's Delivery is settled by the test."""

    timeout = 0.01

    def __init__(self) -> None:
        self.sent: list[Delivery] = []

    def send(self, events: list[EncodedEvent]) -> Delivery:
        self.sent.append(Delivery(len(events)))
        return self.sent[-1]


def worker(publisher: HeldPublisher) -> KafkaSourceWorker:
    src = source("  kafka:\n    rows: {url: 'k1:9092', topic: rows}\n")
    worker = KafkaSourceWorker(
        src,
        "rows",
        src.spec.kafka["rows"],
        clients=None,  # type: ignore[arg-type]
        publisher=publisher,  # type: ignore[arg-type]
        metrics=EventbusMetrics(),
    )
    worker.stop.set()  # no pause after a failed batch
    return worker


def test_source_commits_acknowledged_batches_in_order_only() -> None:
    publisher, consumer = HeldPublisher(), SourceConsumer()
    w = worker(publisher)
    w._batch(consumer)
    w._batch(consumer)
    publisher.sent[1].report(None)  # the second batch is acknowledged first
    w._settle(consumer, 0)
    assert consumer.commits == []
    publisher.sent[0].report(None)
    w._settle(consumer, 0)
    assert consumer.commits == [({0: 2}, True)]


def test_a_failed_batch_is_read_again_with_every_batch_after_it() -> None:
    publisher, consumer = HeldPublisher(), SourceConsumer()
    w = worker(publisher)
    for _ in range(3):
        w._batch(consumer)
    publisher.sent[0].report(None)
    publisher.sent[1].report(KafkaError(KafkaError._MSG_TIMED_OUT))
    publisher.sent[2].report(None)
    w._settle(consumer, 0)
    assert consumer.commits == [({0: 1}, True)]  # only the batch before the failure
    assert consumer.seeks == [1]  # offsets 1 and 2 are read and published again
    assert not w._in_flight


def test_a_full_window_waits_for_the_oldest_batch() -> None:
    publisher, consumer = HeldPublisher(), SourceConsumer()
    w = worker(publisher)
    for _ in range(_IN_FLIGHT - 1):
        w._batch(consumer)
    assert len(w._in_flight) == _IN_FLIGHT - 1 and consumer.seeks == []
    w._batch(consumer)  # the window is full: the oldest batch is awaited and times out
    assert consumer.seeks == [0]
    assert consumer.commits == [] and not w._in_flight


def test_stopping_commits_what_was_acknowledged_and_waits_for_it() -> None:
    publisher, consumer = HeldPublisher(), SourceConsumer()
    w = worker(publisher)
    w._batch(consumer)
    w._batch(consumer)
    publisher.sent[0].report(None)
    publisher.sent[1].report(None)
    w._settle(consumer, len(w._in_flight), final=True)
    assert consumer.commits == [({0: 2}, False)]
