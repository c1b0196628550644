"""Reference model for the chaos test: the firings a run must produce, computed from its logs.

A crash-free, single-threaded reading of the sensor semantics over what the run recorded:

- the event topic, per partition in offset order, gives the routing every event must get
  (trigger-topic records for stateful triggers, one firing each for simple triggers);
- the trigger topic, per partition in offset order (read back with read_committed), gives the
  order each stateful trigger saw its events, and so its exact firings. That order cannot be
  derived from the event topic: records from several event partitions interleave as their
  batches commit, and any interleaving that keeps each event partition's order is legal.

The state machine here is written out again instead of reusing TriggerState, so that a bug there
shows up as a disagreement. Filters and transforms come from SensorPlan.route; the model checks
delivery (losses, duplicates, stale or mixed state), not filter logic, which has its own tests.

Firings are compared as multisets of `FiringKey` (trigger + the (dependency, event id) pairs):
exactly-once hops must be equal, at-least-once actions may repeat expected firings, and
at-most-once actions may miss some; no guarantee allows a firing the model does not know.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from kafkaops.eventbus.cloudevents import CloudEvent, DependencyEvent
from kafkaops.eventbus.spec import reset_watermark
from kafkaops.eventbus.triggerstate import ActionRecord, SensorPlan, TriggerPlan, TriggerRecord

__all__ = [
    "FiringKey",
    "ObservedRecord",
    "Verdict",
    "compare",
    "expected_firings",
    "expected_trigger_records",
    "order_violations",
]

Guarantee = Literal["exactly-once", "at-least-once", "at-most-once"]


@dataclass(frozen=True, order=True)
class FiringKey:
    """A firing's identity: the trigger and its sorted (dependency, event id) pairs."""

    trigger: str
    events: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, trigger: str, items: Iterable[DependencyEvent]) -> FiringKey:
        """Build from an action record's (or a side effect's) dependency events."""
        return cls(trigger, tuple(sorted((i.dependency, i.event.id) for i in items)))


@dataclass(frozen=True)
class ObservedRecord:
    """One trigger-topic record as read back after the run."""

    partition: int
    offset: int
    trigger: str
    dependency: str
    event_id: str
    timestamp: datetime


def _route_all(
    plan: SensorPlan, event_log: Mapping[int, Sequence[CloudEvent]]
) -> Iterable[TriggerRecord | ActionRecord]:
    for partition in sorted(event_log):
        for event in event_log[partition]:
            yield from plan.route(event).records


def expected_trigger_records(
    plan: SensorPlan, event_log: Mapping[int, Sequence[CloudEvent]]
) -> Counter[tuple[str, str, str]]:
    """The trigger-topic records (trigger, dependency, event id) the event stage must write,
    each exactly once."""
    out: Counter[tuple[str, str, str]] = Counter()
    for record in _route_all(plan, event_log):
        if isinstance(record, TriggerRecord):
            out[(record.trigger, record.item.dependency, record.item.event.id)] += 1
    return out


def expected_firings(
    plan: SensorPlan,
    event_log: Mapping[int, Sequence[CloudEvent]],
    trigger_log: Mapping[int, Sequence[ObservedRecord]],
    *,
    start: datetime | None = None,
) -> Counter[FiringKey]:
    """Every firing the run must produce: simple triggers from the event log, stateful ones by
    replaying the trigger log. `start` is when the sensor first started (for resets)."""
    out: Counter[FiringKey] = Counter()
    for record in _route_all(plan, event_log):
        if isinstance(record, ActionRecord):
            out[FiringKey.of(record.trigger, record.items)] += 1
    for partition in sorted(trigger_log):
        records = sorted(trigger_log[partition], key=lambda r: r.offset)
        for trigger in plan.triggers.values():
            if trigger.stateful:
                mine = [r for r in records if r.trigger == trigger.name]
                out.update(_fire(trigger, mine, start))
    return out


def _fire(
    trigger: TriggerPlan, records: Sequence[ObservedRecord], start: datetime | None
) -> list[FiringKey]:
    """Latest event per dependency; fire and clear when the condition holds; a reset (judged on
    record timestamps) drops what is held and makes older records stale."""
    schedules = trigger.spec.template.reset_schedules
    names = set(trigger.condition.dependencies)
    held: dict[str, tuple[str, datetime]] = {}
    last_reset = reset_watermark(schedules, start) if start is not None else None
    fired: list[FiringKey] = []
    for record in records:
        if record.dependency not in names:
            continue
        reset = reset_watermark(schedules, record.timestamp)
        if reset is not None and (last_reset is None or reset > last_reset):
            last_reset = reset
            held = {d: v for d, v in held.items() if v[1] > reset}
        if last_reset is not None and record.timestamp <= last_reset:
            continue
        held.pop(record.dependency, None)
        held[record.dependency] = (record.event_id, record.timestamp)
        if trigger.condition.evaluate(held.keys()):
            fired.append(FiringKey(trigger.name, tuple(sorted((d, v[0]) for d, v in held.items()))))
            held = {}
    return fired


def order_violations(
    event_log: Mapping[int, Sequence[CloudEvent]],
    trigger_log: Mapping[int, Sequence[ObservedRecord]],
) -> list[str]:
    """Check that each trigger saw the events of each event partition in that partition's order
    (one process handles a partition's batches in order and commits them in order, so any
    reordering is a bug)."""
    where = {e.id: (p, i) for p, events in event_log.items() for i, e in enumerate(events)}
    problems: list[str] = []
    for partition, records in trigger_log.items():
        last: dict[tuple[str, int], tuple[int, str]] = {}
        for record in sorted(records, key=lambda r: r.offset):
            source = where.get(record.event_id)
            if source is None:
                problems.append(
                    f"trigger partition {partition} offset {record.offset}:"
                    f" event {record.event_id!r} is not in the event log"
                )
                continue
            key = (record.trigger, source[0])
            previous = last.get(key)
            if previous is not None and previous[0] > source[1]:
                problems.append(
                    f"trigger {record.trigger!r} saw {record.event_id!r} after {previous[1]!r},"
                    f" against event partition {source[0]}'s order"
                )
            last[key] = (source[1], record.event_id)
    return problems


@dataclass(frozen=True)
class Verdict:
    """How observed firings compare with the model under a delivery guarantee."""

    guarantee: Guarantee
    missing: Counter[FiringKey]  # expected, observed fewer times
    extra: Counter[FiringKey]  # observed more times than expected
    unknown: frozenset[FiringKey]  # observed, but no expected firing has this key

    @property
    def ok(self) -> bool:
        if self.unknown:
            return False
        if self.guarantee == "at-least-once":
            return not self.missing
        if self.guarantee == "at-most-once":
            return not self.extra
        return not self.missing and not self.extra

    def describe(self) -> str:
        parts = [f"{self.guarantee}: {'ok' if self.ok else 'VIOLATED'}"]
        for label, items in (("missing", self.missing), ("extra", self.extra)):
            if items:
                parts.append(f"{label} {sum(items.values())}: {sorted(items)[:5]}")
        if self.unknown:
            parts.append(f"unknown {len(self.unknown)}: {sorted(self.unknown)[:5]}")
        return "; ".join(parts)


def compare(
    observed: Iterable[FiringKey], expected: Counter[FiringKey], guarantee: Guarantee
) -> Verdict:
    """exactly-once: equal multisets; at-least-once: ⊇ (repeats allowed); at-most-once: ⊆."""
    seen = Counter(observed)
    return Verdict(
        guarantee=guarantee,
        missing=expected - seen,
        extra=seen - expected,
        unknown=frozenset(k for k in seen if k not in expected),
    )
