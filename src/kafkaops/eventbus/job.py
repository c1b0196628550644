"""The event bus in the daemon: run every stored EventSource and Sensor, follow changes.

The job reads the definitions applied with `kafkaops events apply` from the embedded store and
polls the store's generation; when definitions change, the sources and sensors whose definition
(or whose EventBus) changed are stopped and started again. A restarted sensor rebuilds its state
from Kafka like after any restart, so a reload never loses held events.

A sensor that cannot continue (fenced by another process with the same instance id, offset
metadata over the broker's limit) stops the daemon with exit code 1: both need an operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Literal

from kafkaops.config import Config
from kafkaops.eventbus.bus import BusConnections
from kafkaops.eventbus.config import EventbusSection
from kafkaops.eventbus.metrics import EventbusMetrics
from kafkaops.eventbus.publisher import EventPublisher
from kafkaops.eventbus.sensor import SensorFatal, SensorRunner, SensorSettings
from kafkaops.eventbus.sources import SourceRunner, WebhookRegistry
from kafkaops.eventbus.spec import Definition, EventBus, EventSource, Sensor, validate_references
from kafkaops.eventbus.store import DefinitionStore
from kafkaops.kafka.membership import Membership
from kafkaops.server.runtime import Health, Runtime

__all__ = ["EventbusJob", "EventbusManager"]

log = logging.getLogger("kafkaops.eventbus")


def _fingerprint(*definitions: Definition) -> str:
    return json.dumps(
        [d.model_dump(mode="json", by_alias=True, exclude_unset=True) for d in definitions],
        sort_keys=True,
    )


@dataclass
class _Running:
    fingerprint: str
    runner: Any


class EventbusManager:
    """Keeps the running sources and sensors in line with the store."""

    def __init__(
        self,
        config: Config,
        section: EventbusSection,
        store: DefinitionStore,
        connections: BusConnections,
        metrics: EventbusMetrics,
        *,
        only: str | None = None,
    ) -> None:
        self.only = only
        self.config = config
        self.section = section
        self.store = store
        self.connections = connections
        self.metrics = metrics
        self.settings = SensorSettings.from_section(section)
        self.webhooks = WebhookRegistry()
        self.sensors: dict[tuple[str, str], _Running] = {}
        self.sources: dict[tuple[str, str], _Running] = {}
        self.publishers: dict[tuple[str, str], EventPublisher] = {}
        self.generation = -1
        self.problems: list[str] = []

    async def load(self) -> list[Definition]:
        self.generation = await asyncio.to_thread(self.store.generation)
        return await asyncio.to_thread(self.store.definitions)

    async def sync(self, definitions: list[Definition]) -> None:
        """Start, restart and stop sources and sensors to match `definitions`."""
        self.problems = validate_references(definitions)
        for problem in self.problems:
            log.warning("definition problem", extra={"problem": problem})
        buses = {(d.namespace, d.name): d for d in definitions if isinstance(d, EventBus)}
        wanted_sensors: dict[tuple[str, str], tuple[str, Sensor, EventBus]] = {}
        wanted_sources: dict[tuple[str, str], tuple[str, EventSource, EventBus]] = {}
        for d in definitions:
            if not isinstance(d, Sensor | EventSource):
                continue
            bus = buses.get((d.namespace, d.spec.event_bus_name))
            if bus is None:
                continue  # reported by validate_references; runs once the bus is applied
            key = (d.namespace, d.name)
            if isinstance(d, Sensor):
                if self.only != "sources":
                    wanted_sensors[key] = (_fingerprint(d, bus), d, bus)
            elif self.only != "sensors":
                wanted_sources[key] = (_fingerprint(d, bus), d, bus)

        for key, running in list(self.sources.items()):
            if key not in wanted_sources or wanted_sources[key][0] != running.fingerprint:
                await running.runner.stop()
                del self.sources[key]
                log.info("event source stopped", extra={"eventsource": key[1]})
        for key, running in list(self.sensors.items()):
            if key not in wanted_sensors or wanted_sensors[key][0] != running.fingerprint:
                await asyncio.to_thread(running.runner.stop)
                del self.sensors[key]
                log.info("sensor stopped", extra={"sensor": key[1]})

        for key, (fingerprint, sensor, bus) in wanted_sensors.items():
            if key in self.sensors:
                continue
            try:
                runner = SensorRunner(sensor, bus, self.connections, self.settings, self.metrics)
            except KeyError as exc:
                log.error("sensor not started", extra={"sensor": sensor.name, "error": str(exc)})
                continue
            runner.start()
            self.sensors[key] = _Running(fingerprint, runner)
            log.info("sensor started", extra={"sensor": sensor.name, "group": runner.ctx.group})
        for key, (fingerprint, source, bus) in wanted_sources.items():
            if key in self.sources:
                continue
            try:
                publisher = self._publisher(bus)
                runner = SourceRunner(
                    source,
                    publisher,
                    self.connections,
                    self.webhooks,
                    self.metrics,
                    leader=self._calendar_leader(source, bus),
                )
                runner.start()
            except KeyError as exc:
                log.error(
                    "event source not started",
                    extra={"eventsource": source.name, "error": str(exc)},
                )
                continue
            self.sources[key] = _Running(fingerprint, runner)
            log.info("event source started", extra={"eventsource": source.name})

    def _calendar_leader(self, source: EventSource, bus: EventBus) -> Membership | None:
        """The group whose one bucket says which process fires this source's calendars: on the
        bus's cluster, topic `{eventTopic}-leader`, group `{eventTopic}-calendars-{ns}-{name}`."""
        if not source.spec.calendar:
            return None
        return Membership(
            self.connections.for_ref(bus.spec.kafka),
            topic=f"{bus.event_topic}-leader",
            group_id=f"{bus.event_topic}-calendars-{source.namespace}-{source.name}",
            buckets=1,
            session_timeout=self.section.session_timeout.total_seconds(),
        )

    def _publisher(self, bus: EventBus) -> EventPublisher:
        clients = self.connections.for_ref(bus.spec.kafka)
        key = (clients.id, bus.event_topic)
        if key not in self.publishers:
            self.publishers[key] = EventPublisher(clients, bus.event_topic)
        return self.publishers[key]

    async def run(self, stopping: asyncio.Event) -> None:
        """Follow the store until the daemon stops; raise when a sensor cannot continue."""
        interval = self.section.reload_interval.total_seconds()
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=interval)
            for running in self.sensors.values():
                failure = running.runner.failure
                if failure is not None:
                    raise SensorFatal(str(failure))
            generation = await asyncio.to_thread(self.store.generation)
            if generation != self.generation:
                log.info("definitions changed; reloading")
                try:
                    definitions = await self.load()
                except ValueError as exc:
                    log.error("stored definitions do not load", extra={"error": str(exc)})
                    continue
                await self.sync(definitions)

    async def stop(self) -> None:
        for running in self.sources.values():
            await running.runner.stop()
        await asyncio.gather(*(asyncio.to_thread(r.runner.stop) for r in self.sensors.values()))
        for publisher in self.publishers.values():
            await asyncio.to_thread(publisher.close)
        self.sources.clear()
        self.sensors.clear()
        await asyncio.to_thread(self.store.close)

    def health(self) -> Health:
        failed = {
            key[1]: str(r.runner.failure)
            for key, r in self.sensors.items()
            if r.runner.failure is not None
        }
        detail: dict[str, Any] = {
            "sensors": sorted(k[1] for k in self.sensors),
            "eventsources": sorted(k[1] for k in self.sources),
        }
        if failed:
            detail["failed"] = failed
        if self.problems:
            detail["problems"] = self.problems
        return Health(not failed, (), detail)


class EventbusJob:
    """`[eventbus]` in `kafkaops run`, or `kafkaops events run` (which always wants it)."""

    name = "eventbus"

    def __init__(
        self,
        *,
        always: bool = False,
        instance_id: str | None = None,
        only: Literal["sources", "sensors"] | None = None,
    ) -> None:
        """`only` runs just the event sources or just the sensors, as Argo deploys them apart:
        sensors then scale (and fail) independently of the sources feeding them."""
        self.always = always
        self.instance_id = instance_id
        self.only = only
        self.manager: EventbusManager | None = None

    def wanted(self, config: Config) -> bool:
        return self.always or getattr(config, "eventbus", None) is not None

    def section(self, config: Config) -> EventbusSection:
        section = getattr(config, "eventbus", None) or EventbusSection()
        if self.instance_id is not None:
            data = section.model_dump(by_alias=True)
            data["instance-id"] = self.instance_id
            section = EventbusSection.model_validate(data)
        return section

    async def start(self, runtime: Runtime) -> None:
        config = runtime.config
        section = self.section(config)
        store = DefinitionStore.in_data_dir(config.data_dir, section.store)
        manager = EventbusManager(
            config,
            section,
            store,
            BusConnections(config, runtime.clients),
            EventbusMetrics(runtime.registry),
            only=self.only,
        )
        self.manager = manager
        definitions = await manager.load()
        runtime.add_fallback(manager.webhooks.handle)
        await manager.sync(definitions)
        runtime.add_health(self.name, manager.health)
        runtime.spawn("eventbus", lambda: manager.run(runtime.stopping))
        runtime.on_stop(manager.stop)
        log.info(
            "event bus started",
            extra={
                "store": str(store.path),
                "instance": section.instance_id,
                "sensors": len(manager.sensors),
                "eventsources": len(manager.sources),
            },
        )
