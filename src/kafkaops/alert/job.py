"""The alerting job: always on, like Kapacitor, whose API is there whether or not tasks exist.

It wires the parts together (store, handlers, topics, silences, tasks, inputs, API), saves
alert state in the background, and on SIGTERM stops taking points, saves state, and waits for
every accepted alert to be delivered or reported before the daemon exits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from kafkaops.alert.api import (
    ping_routes,
    service_test_routes,
    silence_routes,
    task_routes,
    topic_routes,
)
from kafkaops.alert.config import AlertSection
from kafkaops.alert.handlers import HandlerFactory, HandlerMetrics
from kafkaops.alert.handlerspec import HandlerSpecError, validate_handler
from kafkaops.alert.ingest import Ingest, KafkaInputRunner, write_routes
from kafkaops.alert.silences import Silences
from kafkaops.alert.tasks import STATE_KIND, TaskManager
from kafkaops.alert.tickscript import TickError
from kafkaops.alert.topics import TOPIC_KIND, Topics
from kafkaops.config import Config
from kafkaops.server.runtime import Health, Runtime
from kafkaops.server.store import DocumentStore

log = logging.getLogger("kafkaops.alert")

STORE_NAME = "alert"
_RECENT_FAILURE_S = 60.0


@dataclass
class AlertService:
    """Everything the alerting job runs, reachable by tests and benchmarks."""

    section: AlertSection
    store: DocumentStore
    factory: HandlerFactory
    silences: Silences
    topics: Topics
    tasks: TaskManager
    ingest: Ingest
    inputs: list[KafkaInputRunner] = field(default_factory=list)
    stopping: bool = False
    _flush_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _closed: bool = False

    @classmethod
    def build(cls, runtime: Runtime) -> AlertService:
        config = runtime.config
        section = config.alert
        store = DocumentStore.in_data_dir(config.data_dir, STORE_NAME)
        factory = HandlerFactory(
            runtime.clients,
            metrics=HandlerMetrics(runtime.registry),
            buffer_length=section.topic_buffer_length,
            delivery_timeout=section.delivery_timeout.total_seconds(),
        )
        silences = Silences(store)
        topics = Topics(store, factory, silences, runtime.registry)
        clusters = sorted(config.clusters)
        for key, body in topics.stored_handlers().items():
            try:
                topics.put_handler(
                    validate_handler(body, source=f"stored handler {key}", known_clusters=clusters),
                    persist=False,
                )
            except (HandlerSpecError, TickError) as exc:
                log.error(
                    "stored topic handler not loaded", extra={"handler": key, "error": str(exc)}
                )
        tasks = TaskManager(store, topics, factory, clusters=clusters, registry=runtime.registry)
        tasks.start_enabled()
        ingest = Ingest(tasks, runtime.registry)
        return cls(section, store, factory, silences, topics, tasks, ingest)

    def accepting(self) -> bool:
        return not self.stopping

    def on_lag(self, rows: Any) -> None:
        if not self.stopping:
            self.ingest.lag(rows)

    async def flush_state(self) -> None:
        """Save alert states and topic events changed since the last save (one save at a
        time; none once the store is closed)."""
        async with self._flush_lock:
            if self._closed:
                return
            states = self.tasks.take_dirty()
            topics, deleted = self.topics.take_dirty()
            if not (states or topics or deleted):
                return

            def write() -> None:
                if states:
                    self.store.put_many(STATE_KIND, states)
                if topics:
                    self.store.put_many(TOPIC_KIND, topics)
                for name in deleted:
                    self.store.delete(TOPIC_KIND, name)

            await asyncio.to_thread(write)

    async def flush_loop(self) -> None:
        interval = self.section.state_flush_interval.total_seconds()
        while not self.stopping:
            await asyncio.sleep(interval)
            await self.flush_state()

    def health(self) -> Health:
        now = time.monotonic()
        failing = sorted(
            {
                w.cluster
                for w in self.factory.writers.values()
                if now - w.last_failure < _RECENT_FAILURE_S
            }
        )
        detail = {
            "tasks": len(self.tasks.records),
            "executing": len(self.tasks.runners),
            **({"failed_tasks": dict(self.tasks.failures)} if self.tasks.failures else {}),
            **({"delivery_failures": failing} if failing else {}),
        }
        return Health(not failing, tuple(failing), detail)

    async def stop(self) -> None:
        """Stop taking points, save state, then deliver or report every accepted alert."""
        self.stopping = True
        await asyncio.gather(*(i.stop() for i in self.inputs))
        await self.flush_state()
        timeout = self.section.delivery_timeout.total_seconds()
        await asyncio.gather(*(sink.close(timeout) for sink in self.topics.all_sinks()))
        undelivered = await self.factory.close()
        async with self._flush_lock:
            self._closed = True
            self.store.close()
        log.info("alerting stopped", extra={"undelivered": undelivered})


class AlertJob:
    """`kafkaops run` always starts it: `wanted` is True, as Kapacitor always serves its API."""

    name = "alert"

    def __init__(self) -> None:
        self.service: AlertService | None = None

    def wanted(self, config: Config) -> bool:
        return True

    async def start(self, runtime: Runtime) -> None:
        service = self.service = AlertService.build(runtime)
        section = service.section
        runtime.add_routes(
            write_routes(service.ingest, service.accepting)
            + ping_routes()
            + task_routes(service.tasks)
            + topic_routes(service.topics, sorted(runtime.config.clusters))
            + silence_routes(service.silences, time.time_ns)
            + service_test_routes(service.factory, sorted(runtime.config.clusters))
        )
        if section.lag_input:
            runtime.subscribe("lag", service.on_lag)
        for i, source in enumerate(section.kafka_input):
            runner = KafkaInputRunner(source, runtime.clients(source.cluster), service.ingest)
            service.inputs.append(runner)
            runtime.spawn(f"alert-kafka-input-{i}", runner.run)
        runtime.spawn("alert-state", service.flush_loop)
        runtime.add_health(self.name, service.health)
        runtime.on_stop(service.stop)
        log.info(
            "alerting started",
            extra={
                "tasks": len(service.tasks.records),
                "executing": len(service.tasks.runners),
                "kafka_inputs": len(section.kafka_input),
                "lag_input": section.lag_input,
            },
        )
