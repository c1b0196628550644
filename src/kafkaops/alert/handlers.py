"""Event handlers: where alert events go once a topic has collected them.

The Kafka handler is the one that matters most, so it does what Kapacitor's does byte for byte
(key = alert ID, value = alert JSON or the rendered template, partition chosen by our own crc32 /
murmur2 / fnv-1a code) and adds what Kapacitor lacks: a failed delivery is retried by the
client for `delivery-timeout`, then logged with the alert ID and counted, and a shutdown waits
for every accepted alert or reports each one that did not make it.

log, post, exec and tcp handlers sit behind a bounded queue each (Kapacitor's
`topic-buffer-length`), so a slow web hook never stalls the pipeline; when the queue is full
the event is dropped, logged and counted rather than lost silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import CollectorRegistry, Counter, Gauge

from kafkaops.alert.event import AlertEvent, kafka_message_key, kafka_message_value
from kafkaops.alert.gotemplate import Template, TemplateError
from kafkaops.alert.handlerspec import (
    ExecHandlerOptions,
    HandlerOptions,
    KafkaHandlerOptions,
    LogHandlerOptions,
    PostHandlerOptions,
    TcpHandlerOptions,
)
from kafkaops.kafka import ClusterClients
from kafkaops.kafka.partitioners import PartitionAlgorithm, Partitioner

log = logging.getLogger("kafkaops.alert.handlers")

METADATA_REFRESH_S = 60.0
"""How often a writer re-reads its topic's partition count (partitions can be added)."""
_POLL_INTERVAL_S = 0.02
_POLL_EVERY = 500
_PARTITION_CACHE_SIZE = 100_000
_LOG_EVERY_S = 60.0
_RETRY_BACKOFF_S = (0.1, 5.0)


class RateLimitedLog:
    """A recurring problem is logged at most once a minute per key, with how often it happened
    since the previous line: the counters have the exact numbers, the log says what and why,
    and a dead web hook cannot flood the log."""

    def __init__(self, logger: logging.Logger, level: int = logging.WARNING) -> None:
        self._logger = logger
        self._level = level
        self._last: dict[str, float] = {}
        self._since: dict[str, int] = {}

    def log(self, key: str, message: str, **extra: object) -> None:
        self._since[key] = self._since.get(key, 0) + 1
        now = time.monotonic()
        if now - self._last.get(key, -_LOG_EVERY_S) >= _LOG_EVERY_S:
            self._last[key] = now
            self._logger.log(
                self._level, message, extra={**extra, "occurrences": self._since.pop(key)}
            )


class HandlerMetrics:
    """Counters every handler reports to, registered on the daemon's registry."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.kafka_sent = Counter(
            "kafkaops_alert_kafka_messages",
            "Alert records the Kafka handler delivered (acknowledged by the broker).",
            ["cluster", "topic"],
            registry=registry,
        )
        self.kafka_errors = Counter(
            "kafkaops_alert_kafka_write_errors",
            "Alert records the Kafka handler could not deliver (each one is also logged).",
            ["cluster", "topic"],
            registry=registry,
        )
        self.template_errors = Counter(
            "kafkaops_alert_kafka_template_errors",
            "Alerts whose Kafka template failed; sent with a null value, as Kapacitor does.",
            ["cluster", "topic"],
            registry=registry,
        )
        self.kafka_pending = Gauge(
            "kafkaops_alert_kafka_pending",
            "Alert records accepted by the Kafka handler and not yet acknowledged.",
            ["cluster", "topic"],
            registry=registry,
        )
        self.sent = Counter(
            "kafkaops_alert_handler_events",
            "Events a log, post, exec or tcp handler delivered.",
            ["kind", "handler"],
            registry=registry,
        )
        self.errors = Counter(
            "kafkaops_alert_handler_errors",
            "Events a log, post, exec or tcp handler failed to deliver (each one is logged).",
            ["kind", "handler"],
            registry=registry,
        )
        self.dropped = Counter(
            "kafkaops_alert_events_dropped",
            "Events dropped because a handler's buffer (topic-buffer-length) was full.",
            ["kind", "handler"],
            registry=registry,
        )


class Sink(Protocol):
    """One handler instance as a topic sees it: `submit` never blocks."""

    kind: str
    name: str

    def submit(self, event: AlertEvent) -> None: ...

    async def close(self, timeout: float) -> None: ...


# --------------------------------------------------------------------------------------------
# Kafka


@dataclass(slots=True)
class _Pending:
    key: bytes
    value: bytes | None
    since: float


class KafkaWriter:
    """One producer for one (cluster, topic, algorithm, partition-by-id), shared by handlers.

    Kapacitor keys its writers by topic alone, so the first handler fixes the partitioner for
    every later one; keying by the algorithm too keeps each handler's promise. The partition is
    computed here from the topic's partition count and passed explicitly, so it never depends
    on librdkafka's partitioner. Records wait in a backlog (bounded by topic-buffer-length)
    while the partition count is unknown or librdkafka's queue is full, so the order of one
    alert ID's events is kept. Idempotence is on for the same reason: a retried batch cannot
    overtake a later one.

    librdkafka reports failed deliveries only (`delivery.report.only.error`): an alert needs
    attention only when it did not arrive, so a Python call per acknowledged record would be
    work for nothing. Delivered records are counted in bulk instead, as those handed to
    librdkafka that are neither still in its queue nor reported failed.
    """

    def __init__(
        self,
        clients: ClusterClients,
        topic: str,
        partitioner: Partitioner,
        *,
        metrics: HandlerMetrics,
        buffer_length: int,
        delivery_timeout: float,
    ) -> None:
        self.cluster = clients.id
        self.topic = topic
        self.partitioner = partitioner
        self.partitions: int | None = None
        self._buffer_length = buffer_length
        self._delivery_timeout = delivery_timeout
        self._clients = clients
        linger = clients.cluster.batch_timeout.total_seconds()
        request = clients.cluster.timeout.total_seconds()
        # librdkafka refuses a delivery timeout shorter than linger + request timeout.
        timeout_ms = max(round(delivery_timeout * 1000), round((linger + request + 1) * 1000))
        self.producer = clients.producer(
            **{
                "enable.idempotence": True,
                "delivery.timeout.ms": timeout_ms,
                "delivery.report.only.error": True,
                "on_delivery": self._undelivered,
            }
        )
        self._produced = 0
        self._reported_failed = 0
        self._counted_sent = 0
        self._sent = metrics.kafka_sent.labels(self.cluster, topic)
        self._errors = metrics.kafka_errors.labels(self.cluster, topic)
        metrics.kafka_pending.labels(self.cluster, topic).set_function(self.pending)
        self._backlog: deque[_Pending] = deque()
        # Alert IDs recur, and murmur2/fnv-1a are byte loops in Python: remember the answer.
        self._partition_of: dict[bytes, int] = {}
        self.last_failure = float("-inf")
        """time.monotonic() of the latest record reported undelivered (for health)."""
        self._wake = asyncio.Event()
        self._idle = False
        self._closing = False
        self._writes = 0
        self._task = asyncio.get_running_loop().create_task(self._run())

    def pending(self) -> int:
        """Records accepted and not yet acknowledged or reported failed."""
        return len(self._backlog) + len(self.producer)

    def write(self, key: bytes, value: bytes | None) -> None:
        """Accept one record (never blocks): it is delivered, or logged and counted later."""
        if self._closing:
            self._failed(key, "the daemon is shutting down")
            return
        if self.partitions is None or self._backlog or not self._produce(key, value):
            if len(self._backlog) >= self._buffer_length:
                self._failed(
                    key, f"buffer of {self._buffer_length} records is full (topic-buffer-length)",
                )  # fmt: skip
                return
            self._backlog.append(_Pending(key, value, time.monotonic()))
        self._writes += 1
        if self._writes % _POLL_EVERY == 0:
            self.producer.poll(0)
        if self._idle:
            self._idle = False
            self._wake.set()

    def _produce(self, key: bytes, value: bytes | None) -> bool:
        """False when librdkafka's queue is full (the caller keeps the record)."""
        partition = self._partition_of.get(key)
        if partition is None:
            assert self.partitions is not None
            partition = self.partitioner.partition(key, self.partitions)
            # Only ID-keyed choices repeat (an empty crc32 key and no-affinity are random).
            if key and self.partitioner.partition_by_id:
                if len(self._partition_of) >= _PARTITION_CACHE_SIZE:
                    self._partition_of.clear()
                self._partition_of[key] = partition
        try:
            self.producer.produce(self.topic, value, key, partition)
        except BufferError:
            return False
        except KafkaException as exc:
            self._failed(key, exc.args[0].str())
            return True
        self._produced += 1
        return True

    def _count_delivered(self) -> None:
        """Bring the delivered counter up to date (see the class docstring)."""
        delivered = self._produced - len(self.producer) - self._reported_failed
        if delivered > self._counted_sent:
            self._sent.inc(delivered - self._counted_sent)
            self._counted_sent = delivered

    def _undelivered(self, err: KafkaError, msg: Any) -> None:
        """The producer's delivery report callback, called for failed records only."""
        self._reported_failed += 1
        self._failed(msg.key() or b"", err.str())

    def _failed(self, key: bytes, reason: str) -> None:
        self._errors.inc()
        self.last_failure = time.monotonic()
        log.error(
            "alert not delivered to Kafka",
            extra={
                "cluster": self.cluster,
                "topic": self.topic,
                "alert_id": key.decode("utf-8", "replace"),
                "error": reason,
            },
        )

    def _fetch_partitions(self) -> int | str:
        """Partition count from metadata, or the reason there is none yet."""
        timeout = self._clients.cluster.timeout.total_seconds()
        try:
            md = self.producer.list_topics(self.topic, timeout=timeout)
        except KafkaException as exc:
            return exc.args[0].str()
        topic = md.topics.get(self.topic)
        if topic is None:
            return "topic missing from metadata"
        if topic.error is not None:
            return topic.error.str()
        return len(topic.partitions) or "topic has no partitions"

    async def _refresh(self) -> bool:
        result = await asyncio.to_thread(self._fetch_partitions)
        if isinstance(result, int):
            if result != self.partitions:
                self._partition_of.clear()
                log.info(
                    "alert topic partitions",
                    extra={"cluster": self.cluster, "topic": self.topic, "partitions": result},
                )
            self.partitions = result
            return True
        log.warning(
            "alert topic metadata unavailable",
            extra={"cluster": self.cluster, "topic": self.topic, "error": result},
        )
        return False

    async def _run(self) -> None:
        """Metadata, backlog and delivery reports. librdkafka reports deliveries only from
        poll(), which runs here and every few hundred writes, in the event loop: a polling
        thread would fight the loop for the GIL on every report."""
        backoff, max_backoff = _RETRY_BACKOFF_S
        refreshed = 0.0
        while not self._closing:
            if self.partitions is None or time.monotonic() - refreshed > METADATA_REFRESH_S:
                if await self._refresh():
                    refreshed = time.monotonic()
                    backoff = _RETRY_BACKOFF_S[0]
                else:
                    self._expire_backlog()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, max_backoff)
                    continue
            drained = self._drain()
            self.producer.poll(0)
            self._count_delivered()
            if not drained or len(self.producer):
                await asyncio.sleep(_POLL_INTERVAL_S)  # records in flight: report them soon
                continue
            self._wake.clear()
            self._idle = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), METADATA_REFRESH_S)
            self._idle = False

    def _drain(self) -> bool:
        """Move the backlog into librdkafka; False if its queue filled up first."""
        self._expire_backlog()
        while self._backlog:
            item = self._backlog[0]
            if not self._produce(item.key, item.value):
                return False
            self._backlog.popleft()
        return True

    def _expire_backlog(self) -> None:
        limit = time.monotonic() - self._delivery_timeout
        while self._backlog and self._backlog[0].since < limit:
            item = self._backlog.popleft()
            self._failed(item.key, "delivery-timeout passed before the record was sent")

    async def close(self, timeout: float) -> int:
        """Deliver everything accepted within `timeout`; report each record that was not.
        Returns how many were not delivered."""
        deadline = time.monotonic() + timeout
        self._closing = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        while self._backlog and time.monotonic() < deadline:
            if self.partitions is None:
                if not await self._refresh():
                    await asyncio.sleep(0.2)
                continue
            if not self._drain():
                self.producer.poll(0)
                await asyncio.sleep(0.01)
        left = await asyncio.to_thread(self.producer.flush, max(0.0, deadline - time.monotonic()))
        if left:
            # Purged records come back through the delivery callback, each reported there.
            self.producer.purge(in_queue=True, in_flight=True, blocking=False)
            await asyncio.to_thread(self.producer.flush, 1.0)
        self._count_delivered()
        undelivered = left + len(self._backlog)
        while self._backlog:
            item = self._backlog.popleft()
            self._failed(item.key, "not sent before shutdown")
        if undelivered:
            log.error(
                "alerts not delivered at shutdown",
                extra={"cluster": self.cluster, "topic": self.topic, "count": undelivered},
            )
        return undelivered


class KafkaSink:
    """`.kafka()` / `kind: kafka`: the record key is the alert ID, the value the alert JSON or
    the rendered `template`.

    A template that fails to execute gives a record with a null value, as Kapacitor writes
    one; we also log the error and count it, so the null is explained. (On a compacted topic
    that record is a tombstone for the alert ID, which is Kapacitor's behaviour too.)
    """

    kind = "kafka"

    def __init__(
        self, name: str, writer: KafkaWriter, template: Template | None, metrics: HandlerMetrics
    ) -> None:
        self.name = name
        self.writer = writer
        self.template = template
        self._template_errors = metrics.template_errors.labels(writer.cluster, writer.topic)

    def submit(self, event: AlertEvent) -> None:
        key = kafka_message_key(event)
        try:
            value: bytes | None = kafka_message_value(event, self.template)
        except TemplateError as exc:
            self._template_errors.inc()
            log.error(
                "kafka template failed; sending a null value",
                extra={"handler": self.name, "alert_id": event.id, "error": str(exc)},
            )
            value = None
        self.writer.write(key, value)

    async def close(self, timeout: float) -> None:
        """The writer is shared and closed by the factory at shutdown."""


# --------------------------------------------------------------------------------------------
# Queued handlers: log, post, exec, tcp


class QueuedSink:
    """A bounded queue and one worker: delivery order is kept, a slow target never blocks."""

    kind = ""

    def __init__(self, name: str, buffer_length: int, metrics: HandlerMetrics, timeout: float):
        self.name = name
        self.timeout = timeout
        self._queue: asyncio.Queue[AlertEvent | None] = asyncio.Queue(maxsize=buffer_length)
        self._sent = metrics.sent.labels(self.kind, name)
        self._errors = metrics.errors.labels(self.kind, name)
        self._dropped = metrics.dropped.labels(self.kind, name)
        self._problems = RateLimitedLog(log, logging.ERROR)
        self._worker = asyncio.get_running_loop().create_task(self._work())

    def submit(self, event: AlertEvent) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._dropped.inc()
            self._problems.log(
                "dropped",
                "handler buffer full (topic-buffer-length); events dropped",
                handler=self.name,
                kind=self.kind,
                alert_id=event.id,
            )

    async def _work(self) -> None:
        while (event := await self._queue.get()) is not None:
            try:
                await asyncio.wait_for(self.send(event), self.timeout)
            except Exception as exc:
                self._errors.inc()
                self._problems.log(
                    "failed",
                    "handler failed",
                    handler=self.name,
                    kind=self.kind,
                    alert_id=event.id,
                    error=str(exc) or type(exc).__name__,
                )
            else:
                self._sent.inc()

    async def send(self, event: AlertEvent) -> None:
        raise NotImplementedError

    async def close(self, timeout: float) -> None:
        """Deliver what is queued within `timeout`, then report what is left."""
        try:
            await asyncio.wait_for(self._queue.put(None), timeout)
            await asyncio.wait_for(asyncio.shield(self._worker), timeout)
        except TimeoutError:
            self._worker.cancel()
            left = self._queue.qsize()
            self._errors.inc(left)
            log.error(
                "handler events not delivered at shutdown",
                extra={"handler": self.name, "kind": self.kind, "count": left},
            )
        await self.cleanup()

    async def cleanup(self) -> None:
        """Release what the handler holds (files, sessions)."""


class LogSink(QueuedSink):
    """`.log(path)`: one alert JSON per line, appended; the file is created with `mode`."""

    kind = "log"

    def __init__(self, name: str, options: LogHandlerOptions, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.path = options.path
        self.mode = options.mode

    async def send(self, event: AlertEvent) -> None:
        data = event.to_json()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, self.mode)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


class PostSink(QueuedSink):
    """`.post(url)`: POST the alert JSON; a non-2xx answer is a failure."""

    kind = "post"

    def __init__(self, name: str, options: PostHandlerOptions, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.url = Template.parse(options.url, name="url") if "{{" in options.url else None
        self.plain_url = options.url
        self.headers = {"Content-Type": "application/json", **options.headers}
        self.capture = options.capture_response
        self.verify = not options.skip_ssl_verification
        if options.timeout.total_seconds() > 0:
            self.timeout = options.timeout.total_seconds()
        self._session: aiohttp.ClientSession | None = None

    async def send(self, event: AlertEvent) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        url = self.url.execute(event.alert_data()) if self.url else self.plain_url
        async with self._session.post(
            url, data=event.to_json(), headers=self.headers, ssl=self.verify
        ) as response:
            if response.status // 100 != 2:
                body = (await response.text())[:500] if self.capture else ""
                raise RuntimeError(f"POST {url} answered {response.status} {body}".rstrip())

    async def cleanup(self) -> None:
        if self._session is not None:
            await self._session.close()


class ExecSink(QueuedSink):
    """`.exec(prog, args...)`: run the program with the alert JSON on standard input."""

    kind = "exec"

    def __init__(self, name: str, options: ExecHandlerOptions, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.argv = [options.prog, *options.args]

    async def send(self, event: AlertEvent) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, stderr = await proc.communicate(event.to_json())
        except asyncio.CancelledError:
            proc.kill()
            raise
        if proc.returncode:
            text = stderr.decode("utf-8", "replace").strip()[:500]
            raise RuntimeError(f"{self.argv[0]} exited with {proc.returncode}: {text}")


class TcpSink(QueuedSink):
    """`.tcp(address)`: connect, send the alert JSON, close (as Kapacitor does)."""

    kind = "tcp"

    def __init__(self, name: str, options: TcpHandlerOptions, **kw: Any) -> None:
        super().__init__(name, **kw)
        host, _, port = options.address.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)

    async def send(self, event: AlertEvent) -> None:
        _, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(event.to_json())
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


_QUEUED: dict[type, type[QueuedSink]] = {
    LogHandlerOptions: LogSink,
    PostHandlerOptions: PostSink,
    ExecHandlerOptions: ExecSink,
    TcpHandlerOptions: TcpSink,
}


class HandlerFactory:
    """Builds handlers from validated options and owns the Kafka writers they share."""

    def __init__(
        self,
        clients: Callable[[str], ClusterClients],
        *,
        metrics: HandlerMetrics,
        buffer_length: int,
        delivery_timeout: float,
    ) -> None:
        self._clients = clients
        self.metrics = metrics
        self.buffer_length = buffer_length
        self.delivery_timeout = delivery_timeout
        self.writers: dict[tuple[str, str, PartitionAlgorithm, bool], KafkaWriter] = {}

    def writer(
        self, cluster: str, topic: str, algorithm: PartitionAlgorithm, partition_by_id: bool
    ) -> KafkaWriter:
        key = (cluster, topic, algorithm, partition_by_id)
        if key not in self.writers:
            self.writers[key] = KafkaWriter(
                self._clients(cluster),
                topic,
                Partitioner(algorithm, partition_by_id=partition_by_id),
                metrics=self.metrics,
                buffer_length=self.buffer_length,
                delivery_timeout=self.delivery_timeout,
            )
        return self.writers[key]

    def build(self, name: str, options: HandlerOptions) -> Sink:
        """A running handler; must be called inside the event loop."""
        if isinstance(options, KafkaHandlerOptions):
            writer = self.writer(
                options.cluster,
                options.topic,
                options.partition_algorithm,
                options.partition_by_id,
            )
            template = Template.parse(options.template, name="kafka") if options.template else None
            return KafkaSink(name, writer, template, self.metrics)
        sink_type = _QUEUED[type(options)]
        return sink_type(
            name,
            options,  # type: ignore[arg-type]
            buffer_length=self.buffer_length,
            metrics=self.metrics,
            timeout=self.delivery_timeout,
        )

    async def send_test(
        self, cluster: str, topic: str, key: str, message: str, timeout: float
    ) -> str | None:
        """Kapacitor's Kafka service test: one record, partitioned by its key with fnv-1a (its
        test writer has partition-by-ID off, so sarama's FNV-1a hashes the key). Unlike
        Kapacitor, which reports success once the record is queued, this waits for the broker's
        answer, on a producer of its own: the handlers' writers report failures only, and a
        busy writer's queue never drains to show that this record made it.
        Returns None on success, else the error."""
        producer = self._clients(cluster).producer(partitioner="fnv1a")
        answers: list[KafkaError | None] = []
        try:
            producer.produce(
                topic, message.encode(), key.encode(), on_delivery=lambda e, _m: answers.append(e)
            )
        except KafkaException as exc:
            return str(exc.args[0].str())
        left = await asyncio.to_thread(producer.flush, timeout)
        if left:
            producer.purge(in_queue=True, in_flight=True, blocking=False)
            return f"no answer from the brokers within {timeout:g}s"
        return None if answers[0] is None else str(answers[0].str())

    async def close(self) -> int:
        """Close every writer at once; the number of records reported undelivered."""
        results = await asyncio.gather(
            *(w.close(self.delivery_timeout) for w in self.writers.values())
        )
        return sum(results)
