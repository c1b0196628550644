"""The trigger topic's restart protocol: held-back commits plus `{trigger: next offset}` metadata.

Held events live only in memory, so a trigger-topic partition's committed offset is held back to
the oldest event any trigger on it still holds; a restart replays from there and rebuilds the
state. Replay would also re-run firings that already happened (their records sit after the
held-back offset), so the commit carries, as its metadata, the offset after each trigger's last
firing: on replay a trigger skips its records below that offset.

Entries at or below the committed offset can never apply again (replay starts there) and are
pruned, which bounds the metadata by the triggers that fired while something older is held. The
broker refuses metadata over `offset.metadata.max.bytes` (default 4096 in Kafka's
GroupCoordinatorConfig); encoding checks the limit first so the failure names its cause.

`TriggerPartition` applies all this to one partition and keeps a snapshot of the last committed
state: when a transaction fails, `rollback` restores it, so a firing whose action record was
not committed is neither lost nor half-recorded (Argo clears the state before it knows).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, Literal, TypeVar

from kafkaops.eventbus.cloudevents import DependencyEvent
from kafkaops.eventbus.triggerstate import Firing, HeldEvent, SensorPlan, TriggerState

__all__ = [
    "OFFSET_METADATA_MAX_BYTES",
    "Batcher",
    "Checkpoint",
    "CommitPosition",
    "MetadataError",
    "TriggerPartition",
    "auto_offset_reset",
    "commit_offset",
    "decode_metadata",
    "encode_metadata",
    "must_skip",
    "prune",
]

OFFSET_METADATA_MAX_BYTES = 4096


class MetadataError(ValueError):
    """Commit metadata that does not parse, or would not fit the broker's limit."""


def encode_metadata(fired: Mapping[str, int], *, max_bytes: int = OFFSET_METADATA_MAX_BYTES) -> str:
    """`{"T1":13}` (compact JSON, sorted), or "" when nothing fired, as Argo writes it.

    The limit is checked on UTF-8 bytes, never fewer than the UTF-16 units the broker counts.
    """
    if not fired:
        return ""
    text = json.dumps(dict(sorted(fired.items())), separators=(",", ":"), ensure_ascii=False)
    size = len(text.encode())
    if size > max_bytes:
        raise MetadataError(
            f"offset metadata for {len(fired)} fired triggers is {size} bytes, over the broker's"
            f" offset.metadata.max.bytes ({max_bytes}); spread triggers over more trigger-topic"
            " partitions or raise the broker limit"
        )
    return text


def decode_metadata(text: str | None) -> dict[str, int]:
    """Parse commit metadata; unlike Argo, garbage is an error, not an empty map (an empty map
    would let every fired trigger fire again on replay)."""
    if not text:
        return {}
    try:
        value: Any = json.loads(text)
    except ValueError:
        raise MetadataError(f"offset metadata is not JSON: {text[:80]!r}") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for k, v in value.items()
    ):
        raise MetadataError(f"offset metadata is not a {{trigger: offset}} map: {text[:80]!r}")
    return dict(value)


def prune(fired: Mapping[str, int], committed: int) -> dict[str, int]:
    """Drop entries at or below the committed offset: replay starts there, so they never apply."""
    return {t: o for t, o in fired.items() if o > committed}


def must_skip(fired: Mapping[str, int], trigger: str, offset: int) -> bool:
    """The replay rule: a trigger's record below the offset after its last firing was already
    consumed by that firing (or replaced before it), so processing it again could re-fire."""
    return offset < fired.get(trigger, 0)


def commit_offset(next_offset: int, held_offsets: Iterable[int]) -> int:
    """The offset to commit: the next one to read, held back to the oldest held event."""
    return min([next_offset, *held_offsets])


def auto_offset_reset(role: Literal["event", "trigger", "action"], start_oldest: bool) -> str:
    """Where a partition without a committed offset starts.

    Only the event topic honours `startOldest`. The trigger and action topics are the sensor's
    own; everything in them was written for it, so they always start at the beginning, which
    also makes Argo's "commit the first message at once" workaround unnecessary.
    """
    if role == "event":
        return "earliest" if start_oldest else "latest"
    return "earliest"


@dataclass(frozen=True)
class CommitPosition:
    """What to commit for one partition, inside the batch's transaction."""

    offset: int
    metadata: str = ""


@dataclass
class Checkpoint:
    """A `TriggerPartition`'s state as of one batch (copies, unaffected by later batches)."""

    next_offset: int
    fired: dict[str, int]
    states: dict[str, TriggerState]


class TriggerPartition:
    """The trigger-topic stage of one partition: replay guard, trigger states and commit point.

    Feed it the partition's records in order (`process`, or `skip` for one that does not
    decode); after each batch produce the firings' action records and commit `position()` in
    one transaction, then call `committed()`. If the transaction fails, call `rollback()` and
    seek the consumer to the offset it returns.
    """

    def __init__(
        self,
        plan: SensorPlan,
        *,
        committed: int,
        metadata: str = "",
        now: datetime,
        max_metadata_bytes: int = OFFSET_METADATA_MAX_BYTES,
    ) -> None:
        """Start from a committed offset and its metadata (`committed` is where reading starts:
        the committed offset, or the partition's start when there is none)."""
        self.plan = plan
        self.max_metadata_bytes = max_metadata_bytes
        self.next_offset = committed
        self.fired = decode_metadata(metadata)
        self.states = {p.name: p.new_state(now) for p in plan.stateful_triggers}
        self.replayed_skips = 0
        self.unknown_triggers = 0
        self._baseline = self._snapshot()

    def process(
        self, offset: int, trigger: str, item: DependencyEvent, timestamp: datetime
    ) -> Firing | None:
        """One trigger-topic record; returns the firing it completes, if any."""
        if offset < self.next_offset:
            return None  # re-delivered after a seek: already applied
        self.next_offset = offset + 1
        state = self.states.get(trigger)
        if state is None:
            self.unknown_triggers += 1
            return None
        if must_skip(self.fired, trigger, offset):
            self.replayed_skips += 1
            return None
        firing = state.update(HeldEvent(item, offset, timestamp))
        if firing is not None:
            self.fired[trigger] = offset + 1
        return firing

    def skip(self, offset: int) -> None:
        """Move past a record that cannot be decoded (Argo logs and skips these too)."""
        self.next_offset = max(self.next_offset, offset + 1)

    def advance(self, now: datetime) -> tuple[HeldEvent, ...]:
        """Apply `conditionsReset` schedules due by `now` to every trigger."""
        return tuple(h for s in self.states.values() for h in s.advance(now))

    @property
    def held(self) -> dict[str, tuple[HeldEvent, ...]]:
        return {name: s.held for name, s in self.states.items() if s.held}

    def position(self) -> CommitPosition:
        """The offset and metadata to commit now; raises MetadataError if over the limit."""
        held = [o for s in self.states.values() if (o := s.oldest_offset) is not None]
        offset = commit_offset(self.next_offset, held)
        self.fired = prune(self.fired, offset)
        return CommitPosition(
            offset, encode_metadata(self.fired, max_bytes=self.max_metadata_bytes)
        )

    def checkpoint(self) -> Checkpoint:
        """This state, to pass to `committed` once the batch's transaction committed: the
        stage may process the next batch while it commits."""
        return self._snapshot()

    def committed(self, checkpoint: Checkpoint | None = None) -> None:
        """The batch's transaction committed: its state (`checkpoint`, else the current one)
        is the new point to roll back to."""
        self._baseline = self._snapshot() if checkpoint is None else checkpoint

    def rollback(self) -> int:
        """The transaction failed: return to the last committed state; seek to the result."""
        base = self._baseline
        self.next_offset = base.next_offset
        self.fired = dict(base.fired)
        self.states = {name: s.copy() for name, s in base.states.items()}
        return self.next_offset

    def _snapshot(self) -> Checkpoint:
        return Checkpoint(
            self.next_offset,
            dict(self.fired),
            {name: s.copy() for name, s in self.states.items()},
        )


T = TypeVar("T")


@dataclass
class Batcher(Generic[T]):
    """Per-partition batching: a batch closes at `max_records` or `max_wait` after its first
    record, whichever comes first (Argo: 100 records or 1 s). Time is passed in."""

    max_records: int = 100
    max_wait: timedelta = timedelta(seconds=1)
    _items: list[T] = field(default_factory=list)
    _deadline: datetime | None = None

    def add(self, item: T, now: datetime) -> list[T] | None:
        """Add a record; returns the closed batch when this record fills it."""
        if not self._items:
            self._deadline = now + self.max_wait
        self._items.append(item)
        if len(self._items) >= self.max_records:
            return self._take()
        return None

    def due(self, now: datetime) -> list[T] | None:
        """The open batch if its time is up, else None."""
        if self._items and self._deadline is not None and now >= self._deadline:
            return self._take()
        return None

    @property
    def deadline(self) -> datetime | None:
        """When the open batch closes (for the poll timeout), None when empty."""
        return self._deadline if self._items else None

    def flush(self) -> list[T]:
        """Everything pending, e.g. before partitions are revoked."""
        return self._take() if self._items else []

    def _take(self) -> list[T]:
        items, self._items, self._deadline = self._items, [], None
        return items
