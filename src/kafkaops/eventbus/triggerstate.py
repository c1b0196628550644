"""Per-trigger state and the event stage's routing, both pure and deterministic.

Routing (event topic -> trigger/action topic): an event that passes a dependency's filters becomes
one trigger-topic record per trigger that names the dependency, keyed by the trigger name, or,
for a trigger whose condition any single dependency satisfies, an action record straight away.

State (trigger topic -> action topic): the latest event per dependency is held; after each update
the condition is evaluated, and when it holds every held event leaves as one firing and the state
clears. `conditionsReset` drops held events from before the last reset. Resets are judged on the
records' own timestamps against the cron schedule, not on the wall clock when a record happens to
be read, so replaying the trigger topic after a restart rebuilds exactly the same state: a record
at or before the newest reset seen is stale, and so is anything held from before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from kafkaops.eventbus.cloudevents import CloudEvent, DependencyEvent, parse_event
from kafkaops.eventbus.conditions import Condition
from kafkaops.eventbus.filters import DependencyMatcher, Match
from kafkaops.eventbus.spec import CronSchedule, Sensor, Trigger, reset_watermark

__all__ = [
    "ActionRecord",
    "Firing",
    "HeldEvent",
    "Routing",
    "SensorPlan",
    "TriggerPlan",
    "TriggerRecord",
    "TriggerState",
]


@dataclass(frozen=True, slots=True)
class HeldEvent:
    """A trigger-topic record being held: its item (dependency and event), offset and record
    timestamp. The item's event stays the bytes it was read as until someone looks at it."""

    item: DependencyEvent
    offset: int
    timestamp: datetime

    def __post_init__(self) -> None:
        if self.timestamp.tzinfo is None:
            raise ValueError("record timestamps must be timezone-aware (Kafka's are UTC)")

    @property
    def dependency(self) -> str:
        return self.item.dependency

    @property
    def event(self) -> CloudEvent:
        return self.item.event


@dataclass(frozen=True)
class Firing:
    """A satisfied condition: the held events, in arrival order, and the completing offset."""

    trigger: str
    events: tuple[HeldEvent, ...]
    offset: int

    @property
    def items(self) -> tuple[DependencyEvent, ...]:
        return tuple(e.item for e in self.events)


class TriggerState:
    """The held events of one trigger; lives with the trigger-topic partition the trigger's key
    hashes to, so one process owns it at a time."""

    def __init__(
        self,
        name: str,
        condition: Condition,
        resets: Sequence[CronSchedule] = (),
        *,
        now: datetime | None = None,
    ) -> None:
        """`now` (when resets exist) starts the reset watermark at the last reset before it, so a
        restart does not revive events from before a reset that passed while it was down."""
        self.name = name
        self.condition = condition
        self.resets = tuple(resets)
        self._held: dict[str, HeldEvent] = {}
        self.watermark: datetime | None = None
        self.stale = 0
        if now is not None:
            self._raise_watermark(now)

    @property
    def held(self) -> tuple[HeldEvent, ...]:
        return tuple(self._held.values())

    @property
    def oldest_offset(self) -> int | None:
        return min((h.offset for h in self._held.values()), default=None)

    def update(self, item: HeldEvent) -> Firing | None:
        """Hold `item` (replacing its dependency's previous event); fire if the condition holds.

        Records of dependencies the condition does not name, and stale records (from before the
        newest reset), change nothing.
        """
        if item.dependency not in self.condition.dependencies:
            return None
        self._raise_watermark(item.timestamp)
        if self.watermark is not None and item.timestamp <= self.watermark:
            self.stale += 1
            return None
        self._held.pop(item.dependency, None)
        self._held[item.dependency] = item
        if not self.condition.evaluate(self._held.keys()):
            return None
        firing = Firing(self.name, tuple(self._held.values()), item.offset)
        self._held.clear()
        return firing

    def advance(self, now: datetime) -> tuple[HeldEvent, ...]:
        """Apply resets due by `now`; returns the events dropped (their offsets stop pinning the
        commit). Idempotent, and a no-op without `conditionsReset`."""
        before = dict(self._held)
        self._raise_watermark(now)
        return tuple(h for d, h in before.items() if d not in self._held)

    def _raise_watermark(self, at: datetime) -> None:
        last = reset_watermark(self.resets, at)
        if last is None or (self.watermark is not None and last <= self.watermark):
            return
        self.watermark = last
        self._held = {d: h for d, h in self._held.items() if h.timestamp > last}

    def copy(self) -> TriggerState:
        clone = TriggerState(self.name, self.condition, self.resets)
        clone._held = dict(self._held)
        clone.watermark = self.watermark
        clone.stale = self.stale
        return clone


# --------------------------------------------------------------------------- routing


class TriggerPlan:
    """What the runtime needs to know about one trigger, read from the definition once."""

    def __init__(self, spec: Trigger) -> None:
        self.spec = spec
        self.name = spec.name
        self.condition = spec.condition
        self.resets = spec.template.reset_schedules
        # Stateful triggers can hold an event, so their events go through the trigger topic.
        self.stateful = not self.condition.simple
        self.at_least_once = spec.at_least_once

    def new_state(self, now: datetime | None = None) -> TriggerState:
        return TriggerState(self.name, self.condition, self.resets, now=now)


@dataclass(frozen=True)
class TriggerRecord:
    """A record for the trigger topic: one event for one trigger's dependency."""

    trigger: str
    item: DependencyEvent


@dataclass(frozen=True)
class ActionRecord:
    """A record for the action topic: one firing."""

    trigger: str
    items: tuple[DependencyEvent, ...]


@dataclass(frozen=True)
class Routing:
    """Where one event-topic event goes, and which dependencies rejected it (for logs)."""

    records: tuple[TriggerRecord | ActionRecord, ...]
    rejected: tuple[Match, ...]


class SensorPlan:
    """A validated Sensor compiled for the runtime: dependency matching and trigger plans."""

    def __init__(self, sensor: Sensor) -> None:
        self.sensor = sensor
        self.matcher = DependencyMatcher(sensor.spec.dependencies)
        self.triggers = {t.name: TriggerPlan(t) for t in sensor.spec.triggers}
        self._by_dependency: dict[str, list[TriggerPlan]] = {}
        for plan in self.triggers.values():
            for dep in plan.condition.dependencies:
                self._by_dependency.setdefault(dep, []).append(plan)
        self._listened = self.matcher.keys()
        self._unconditional = {
            key: tuple((dep, tuple(self._by_dependency.get(dep, ()))) for dep in deps)
            for key, deps in self.matcher.unconditional().items()
        }

    @property
    def stateful_triggers(self) -> Iterable[TriggerPlan]:
        return (p for p in self.triggers.values() if p.stateful)

    def route(self, event: CloudEvent) -> Routing:
        """The event stage for one event: deterministic, so a replayed batch routes the same.

        Records come in dependency order, then trigger order, for each matching dependency.
        """
        records: list[TriggerRecord | ActionRecord] = []
        rejected: list[Match] = []
        for match in self.matcher.match(event):
            if not match.passed:
                rejected.append(match)
                continue
            self._add(records, DependencyEvent(match.dependency, match.event))
        return Routing(tuple(records), tuple(rejected))

    def route_json(self, raw: bytes) -> tuple[TriggerRecord | ActionRecord, ...]:
        """`route(...).records` for an event-topic record's bytes; CloudEventError when they are
        not a valid event. An event whose dependencies take it unchanged is forwarded as these
        very bytes (which `route` would write too), without building a `CloudEvent`."""
        head = parse_event(raw)
        key = (head["source"], head.get("subject") or "")
        if key not in self._listened:
            return ()
        routes = self._unconditional.get(key)
        if routes is None:
            return self.route(CloudEvent.from_dict(head, raw=raw)).records
        records: list[TriggerRecord | ActionRecord] = []
        for dependency, plans in routes:
            if plans:
                self._add(records, DependencyEvent.from_raw(dependency, raw), plans)
        return tuple(records)

    def _add(
        self,
        records: list[TriggerRecord | ActionRecord],
        item: DependencyEvent,
        plans: Iterable[TriggerPlan] | None = None,
    ) -> None:
        for plan in self._by_dependency.get(item.dependency, ()) if plans is None else plans:
            if plan.stateful:
                records.append(TriggerRecord(plan.name, item))
            else:
                records.append(ActionRecord(plan.name, (item,)))
