"""Reading the target back on start: the tail of every target partition, newest window first.

`ResumeScan` (position.py) decides how far back to read; this module does the reading. All
target partitions are read at once, one window each per round: assign every partition at its
window's first offset, collect until the window's end (or end of partition), pause it. Each
round reads windows four times larger, so the usual case (the newest checkpoint is a few hundred
records back) costs one short round, and a long filtered or idle stretch still ends quickly.

The reader is `read_committed`: with exactly-once, the previous run's open transaction was
aborted by `init_transactions` before this read, and aborted records are no positions.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from kafkaops.relay.position import (
    BoundaryDedupe,
    PositionFormatError,
    ResumeScan,
    Stamps,
    TailRecord,
)
from kafkaops.relay.target import Target, TargetUnavailable
from kafkaops.relay.topicmap import SourceKey, TargetKey

FIRST_WINDOW = 256
MAX_WINDOW = 65_536

Recent = tuple[SourceKey, int, bytes | None, bytes | None]
"""(source partition, timestamp, key, value) of a record the relay wrote."""


@dataclass
class TailRead:
    """What the read-back saw besides positions: relayed records, newest first per partition."""

    recent: dict[TargetKey, list[Recent]] = field(default_factory=dict)
    windows: int = 0

    def dedupe_from(self, lookups: Mapping[SourceKey, int]) -> BoundaryDedupe:
        """For a restart that maps positions by timestamp: the target's records at or after
        each partition's lookup timestamp, so re-read copies of them are dropped."""
        return BoundaryDedupe(
            r
            for records in self.recent.values()
            for r in records
            if r[0] in lookups and r[1] >= lookups[r[0]]
        )


def read_tails(
    target: Target,
    scan: ResumeScan,
    clusters: Collection[str],
    *,
    timeout: float,
    keep: int = 0,
) -> TailRead:
    """Feed `scan` the tail of every target partition until it has what it needs.

    `keep`: per target partition, how many of the newest relayed records to remember (with key
    and value) for `TailRead.dedupe_from`. Raises TargetUnavailable when the target does not
    answer within `timeout`.
    """
    targets = scan.targets
    bounds = target.watermarks(targets)
    low = {t: bounds[t][0] for t in targets}
    high = {t: bounds[t][1] for t in targets}
    size = dict.fromkeys(targets, FIRST_WINDOW)
    out = TailRead({t: [] for t in targets})
    kept: dict[TargetKey, list[list[Message]]] = {t: [] for t in targets}
    deadline = time.monotonic() + timeout
    reader = target.tail_reader()
    try:
        while todo := [t for t in targets if scan.wants_more(t)]:
            ranges = {t: (max(low[t], high[t] - size[t]), high[t]) for t in todo}
            windows = _read_windows(reader, ranges, deadline, target.id)
            out.windows += 1
            for t in todo:
                lo = ranges[t][0]
                msgs = windows.get(t, [])
                scan.feed(
                    t,
                    [TailRecord(m.offset(), m.timestamp()[1], m.headers()) for m in msgs],
                    reached_start=lo <= low[t],
                )
                if keep and sum(map(len, kept[t])) < keep:
                    kept[t].append(msgs)
                high[t] = lo
                size[t] = min(size[t] * 4, MAX_WINDOW)
    finally:
        reader.close()
    for t, windows in kept.items():
        out.recent[t] = _relayed(windows, clusters, keep)
    return out


def _relayed(windows: list[list[Message]], clusters: Collection[str], limit: int) -> list[Recent]:
    """The newest `limit` relayed records of the windows (newest window first), each with its
    source partition: read forwards, so that a run's token-only records find their stamp."""
    stamps = Stamps()
    out: list[Recent] = []
    for window in reversed(windows):
        for m in window:
            try:
                stamp = stamps.of(m.headers())
            except PositionFormatError:
                continue
            if stamp is not None and stamp.cluster in clusters:
                out.append((stamp.source, m.timestamp()[1], m.key(), m.value()))
    return out[: -limit - 1 : -1] if limit else []


def _read_windows(
    reader: Consumer,
    ranges: Mapping[TargetKey, tuple[int, int]],
    deadline: float,
    target_id: str,
) -> dict[TargetKey, list[Message]]:
    """Records in [lo, hi) of every partition, in offset order."""
    pending = {t: hi for t, (lo, hi) in ranges.items() if lo < hi}
    out: dict[TargetKey, list[Message]] = {t: [] for t in pending}
    if not pending:
        return out
    assignment = [TopicPartition(t, p, ranges[t, p][0]) for t, p in pending]
    reader.assign(assignment)
    reader.resume(assignment)  # paused when its previous window was done; assign keeps that
    last_error = ""
    while pending:
        if time.monotonic() > deadline:
            short = ", ".join(f"{t}[{p}]" for t, p in sorted(pending))
            raise TargetUnavailable(
                f"target {target_id!r}: reading back {short} did not finish in time"
                + (f" ({last_error})" if last_error else "")
            )
        for m in reader.consume(1000, 0.2):
            key = (m.topic(), m.partition())
            hi = pending.get(key)
            if hi is None:
                continue
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    _done(reader, pending, key)
                elif err.fatal():
                    raise TargetUnavailable(f"target {target_id!r}: {err.str()}")
                else:
                    last_error = err.str()
                continue
            offset = m.offset()
            if offset >= hi:
                _done(reader, pending, key)
                continue
            out[key].append(m)
            if offset == hi - 1:
                _done(reader, pending, key)
    return out


def _done(reader: Consumer, pending: dict[TargetKey, int], key: TargetKey) -> None:
    del pending[key]
    reader.pause([TopicPartition(key[0], key[1])])
