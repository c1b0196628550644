"""Lag of one group-partition, in offsets and in seconds.

Lag in seconds is how long ago the record at the committed offset (the next one the group will
read) was written. The history of end offsets brackets that write time between two monitor
samples, and we interpolate inside the bracket. Where no bracket exists (the history is too
young, or the committed offset is older than all of it) we do not extrapolate a trend, which is
what makes the peers report years or NaN: we ask the caller to read that record's timestamp from
Kafka and finish from it. Every value carries the source that produced it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from kafkaops.lag.history import PartitionHistory


class Policy(StrEnum):
    """Where lag in seconds may come from (config: `lag_in_seconds_source`)."""

    AUTO = "auto"
    """Interpolate in the history; read the record's timestamp only when the history cannot
    answer."""
    HISTORY = "history"
    """Never read records: where the history cannot answer, report the lower bound it gives."""
    RECORD_TIMESTAMP = "record-timestamp"
    """Read the timestamp of the record at every lagging committed offset (exact, one fetch per
    lagging partition per iteration)."""


class Source(StrEnum):
    """Which method produced a lag-in-seconds value."""

    CAUGHT_UP = "caught-up"
    INTERPOLATION = "interpolation"
    RECORD_TIMESTAMP = "record-timestamp"
    HISTORY_BOUND = "history-bound"
    """A lower bound: the record is older than the oldest history point."""
    UNKNOWN = "unknown"
    """Nothing could be said; the value is None and must not be exported."""


@dataclass(frozen=True, slots=True)
class LagEstimate:
    seconds: float | None
    """Non-negative and finite, or None only when `source` is UNKNOWN."""
    source: Source


@dataclass(frozen=True, slots=True)
class RecordTimestampNeeded:
    """The caller must read the timestamp of the record at `offset` and call `from_record`."""

    offset: int
    bound_seconds: float | None
    """What the history can still say (a lower bound), used if the record cannot be read."""


CAUGHT_UP = LagEstimate(0.0, Source.CAUGHT_UP)
_UNKNOWN = LagEstimate(None, Source.UNKNOWN)


def lag_in_offsets(end_offset: int, committed: int) -> int:
    """Records the group has still to read; 0 when its commit is at or past our end offset
    sample (the end offset may have been read a moment before the commit)."""
    return max(0, end_offset - committed)


def estimate_seconds(
    history: PartitionHistory | None,
    committed: int,
    end_offset: int,
    now_ms: int,
    policy: Policy = Policy.AUTO,
) -> LagEstimate | RecordTimestampNeeded:
    """Lag in seconds of a group whose committed offset is `committed`, at monitor time `now_ms`.

    `committed` must be a real offset (>= 0); partitions without a commit have no lag to report.
    The current sample (`end_offset`, `now_ms`) counts as a history point even if the caller has
    not added it. A history point (o, t) means records below o existed at t, so the record at
    offset c was written in (t1, t2] for the points either side of c, and with a steady rate
    inside that stretch it was written at t1 + (c + 1 - o1) * (t2 - t1) / (o2 - o1).
    """
    if committed >= end_offset:
        return CAUGHT_UP
    below, above = history.bracket(committed) if history is not None else (None, None)
    bound = None
    if above is not None and now_ms > above[1]:
        bound = (now_ms - above[1]) / 1000.0
    if policy is Policy.RECORD_TIMESTAMP:
        return RecordTimestampNeeded(committed, bound)
    if below is not None:
        if above is None:
            above = (end_offset, now_ms)
        if above[0] > below[0] and above[1] > below[1]:
            lo_offset, lo_time = below
            written = lo_time + (committed + 1 - lo_offset) * (above[1] - lo_time) / (
                above[0] - lo_offset
            )
            return LagEstimate(max(0.0, (now_ms - written) / 1000.0), Source.INTERPOLATION)
    if policy is Policy.HISTORY:
        return _UNKNOWN if bound is None else LagEstimate(bound, Source.HISTORY_BOUND)
    return RecordTimestampNeeded(committed, bound)


def from_record(
    needed: RecordTimestampNeeded, record_timestamp_ms: int | None, now_ms: int
) -> LagEstimate:
    """Finish an estimate with the timestamp of the record at `needed.offset`.

    Pass None when the record could not be read (fetch failed, offset below the log start, or
    the record has no timestamp, i.e. a negative one): the history's bound is used if there is
    one. The record's timestamp comes from the producer's clock; when it claims a later write
    than our own samples prove (clock ahead), the history's bound wins and is labelled as such.
    """
    bound = needed.bound_seconds
    if record_timestamp_ms is None or record_timestamp_ms < 0:
        return _UNKNOWN if bound is None else LagEstimate(bound, Source.HISTORY_BOUND)
    seconds = max(0.0, (now_ms - record_timestamp_ms) / 1000.0)
    if bound is not None and bound > seconds:
        return LagEstimate(bound, Source.HISTORY_BOUND)
    return LagEstimate(seconds, Source.RECORD_TIMESTAMP)


def plan_record_fetches(
    requests: Iterable[tuple[Hashable, int]], limit: int | None = None
) -> list[dict[Hashable, int]]:
    """Group (partition key, offset) record reads into rounds of at most one offset per partition.

    One consumer assignment can position each partition at one offset only, so each round is one
    assignment (librdkafka then sends one Fetch per leader broker). Duplicates collapse: groups
    stuck at the same offset cost one read. `limit` caps the distinct reads, keeping the first
    ones in request order (sort by lag to read the worst first), so a cold start with an empty
    history cannot turn one iteration into tens of thousands of reads; requests left out are
    finished with `from_record(needed, None, now)`, i.e. the history's bound.
    """
    rounds: list[dict[Hashable, int]] = []
    seen: dict[Hashable, set[int]] = {}
    planned = 0
    for key, offset in requests:
        offsets = seen.setdefault(key, set())
        if offset in offsets:
            continue
        if limit is not None and planned >= limit:
            break
        offsets.add(offset)
        planned += 1
        depth = len(offsets) - 1
        if depth == len(rounds):
            rounds.append({})
        rounds[depth][key] = offset
    return rounds


class RecordTimestampMemo:
    """Timestamps of records already read, so a consumer stuck on one offset costs one read.

    A record's timestamp never changes, so entries never go stale unless a topic is deleted and
    recreated under the same name; the bound on entries (oldest dropped first) limits that too.
    """

    __slots__ = ("_entries", "capacity")

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1 (got {capacity!r})")
        self.capacity = capacity
        self._entries: dict[tuple[Hashable, int], int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, offset: int) -> int | None:
        return self._entries.get((key, offset))

    def put(self, key: Hashable, offset: int, timestamp_ms: int) -> None:
        entries = self._entries
        entries[key, offset] = timestamp_ms
        if len(entries) > self.capacity:
            del entries[next(iter(entries))]
