"""History of a partition's end offset over monitor time, the input of the lag-in-seconds estimate.

One history per (cluster, topic, partition) is shared by every group reading that partition, so
the cost grows with distinct partitions, not with group-partitions. Points live in two int64
arrays (16 bytes a point) instead of tuples or dicts, to keep tens of thousands of histories
within the memory budget.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Hashable, Iterator

Point = tuple[int, int]
"""(end offset, monitor time in ms): at that time, records below that offset existed."""

_FORMAT_VERSION = 1
_MIN_SLACK = 8
_DIPS_BEFORE_RESET = 3


class PartitionHistory:
    """Bounded, time-ordered (end offset, time) points with offsets never decreasing.

    A flat stretch (idle producer) keeps only its first and last point: the first says when the
    producer stopped, which the estimate needs so a stuck consumer's lag keeps growing 1 s per s;
    the last says the offset is still current. The oldest points are evicted beyond
    `max_points`. Evicted slots are reclaimed in batches so `add` stays amortised O(1) and
    lookups can bisect a contiguous slice.
    """

    __slots__ = ("_dips", "_offsets", "_start", "_times", "max_points")

    def __init__(self, max_points: int = 240) -> None:
        if max_points < 2:
            raise ValueError(f"max_points must be at least 2 (got {max_points!r})")
        self.max_points = max_points
        self._offsets = array("q")
        self._times = array("q")
        self._start = 0
        self._dips = 0

    def __len__(self) -> int:
        return len(self._offsets) - self._start

    def __iter__(self) -> Iterator[Point]:
        return zip(self._offsets[self._start :], self._times[self._start :], strict=True)

    def __repr__(self) -> str:
        return f"PartitionHistory({list(self)!r}, max_points={self.max_points})"

    def add(self, end_offset: int, now_ms: int) -> bool:
        """Record one end-offset sample; False when it is dropped.

        Dropped: a sample not newer than the last point, and an end offset below the last one,
        which a new leader's high watermark can show for a moment after a failover. If the
        drop persists, or goes below every point we hold, the partition was recreated or
        truncated: the old points describe another log, so the history restarts from here.
        """
        offsets, times = self._offsets, self._times
        n = len(offsets)
        if n > self._start:
            if now_ms <= times[-1]:
                return False
            last = offsets[-1]
            if end_offset < last:
                self._dips += 1
                if self._dips < _DIPS_BEFORE_RESET and end_offset >= offsets[self._start]:
                    return False
                self.clear()
            elif end_offset == last and n - self._start >= 2 and offsets[-2] == last:
                times[-1] = now_ms
                self._dips = 0
                return True
        self._dips = 0
        offsets.append(end_offset)
        times.append(now_ms)
        if len(offsets) - self._start > self.max_points:
            self._drop_front(1)
        return True

    def drop_older_than(self, cutoff_ms: int) -> None:
        """Forget points taken before `cutoff_ms` (the retention limit)."""
        times = self._times
        first_kept = bisect_left(times, cutoff_ms, self._start, len(times))
        self._drop_front(first_kept - self._start)

    def clear(self) -> None:
        del self._offsets[:]
        del self._times[:]
        self._start = 0
        self._dips = 0

    def first(self) -> Point | None:
        if len(self._offsets) == self._start:
            return None
        return self._offsets[self._start], self._times[self._start]

    def last(self) -> Point | None:
        if len(self._offsets) == self._start:
            return None
        return self._offsets[-1], self._times[-1]

    def bracket(self, offset: int) -> tuple[Point | None, Point | None]:
        """The last point with end offset <= `offset` and the first with end offset > `offset`.

        The record at `offset` was written after the first of these points and by the second.
        """
        offsets, times, start = self._offsets, self._times, self._start
        i = bisect_right(offsets, offset, start, len(offsets))
        below = (offsets[i - 1], times[i - 1]) if i > start else None
        above = (offsets[i], times[i]) if i < len(offsets) else None
        return below, above

    def first_offset_since(self, t_ms: int) -> int | None:
        """The smallest end offset seen at or after `t_ms`: offsets never decrease, so this is
        the minimum over that window (what Burrow's recent-broker-offsets check needs)."""
        times = self._times
        i = bisect_left(times, t_ms, self._start, len(times))
        return self._offsets[i] if i < len(times) else None

    def encode(self) -> bytes:
        """Compact bytes for shared storage: a version byte, then int64 LE offsets and times.

        Copies the arrays' memory in C, so writing thousands of histories per iteration is cheap.
        """
        offsets = self._offsets[self._start :]
        times = self._times[self._start :]
        if sys.byteorder != "little":
            offsets.byteswap()
            times.byteswap()
        return bytes((_FORMAT_VERSION,)) + offsets.tobytes() + times.tobytes()

    @classmethod
    def decode(cls, data: bytes, max_points: int = 240) -> PartitionHistory:
        """Inverse of `encode`, keeping the newest `max_points` points.

        Raises ValueError on bytes that are not a valid history: they come from a store that
        another version may have written, or that may be corrupted.
        """
        if not data or data[0] != _FORMAT_VERSION:
            raise ValueError(f"not an encoded lag history (version byte {data[:1]!r})")
        body = memoryview(data)[1:]
        if len(body) % 16:
            raise ValueError(f"encoded lag history has a truncated body ({len(body)} bytes)")
        half = len(body) // 2
        offsets = array("q", body[:half].tobytes())
        times = array("q", body[half:].tobytes())
        if sys.byteorder != "little":
            offsets.byteswap()
            times.byteswap()
        for i in range(1, len(offsets)):
            if offsets[i] < offsets[i - 1] or times[i] <= times[i - 1]:
                raise ValueError(f"encoded lag history is out of order at point {i}")
        history = cls(max_points)
        keep = max(0, len(offsets) - max_points)
        history._offsets = offsets[keep:]
        history._times = times[keep:]
        return history

    def _drop_front(self, count: int) -> None:
        if count <= 0:
            return
        self._start += count
        if self._start >= max(_MIN_SLACK, self.max_points // 8) or self._start == len(
            self._offsets
        ):
            del self._offsets[: self._start]
            del self._times[: self._start]
            self._start = 0


class HistoryStore:
    """All partition histories of one process, keyed by (cluster, topic, partition).

    Age and size bounds are applied as points arrive, so memory stays bounded without a sweep;
    `expire` removes partitions that stopped being observed (deleted topics).
    """

    __slots__ = ("_histories", "max_points", "retention_ms")

    def __init__(self, max_points: int = 240, retention_ms: int = 7_200_000) -> None:
        if max_points < 2:
            raise ValueError(f"max_points must be at least 2 (got {max_points!r})")
        if retention_ms <= 0:
            raise ValueError(f"retention_ms must be positive (got {retention_ms!r})")
        self.max_points = max_points
        self.retention_ms = retention_ms
        self._histories: dict[Hashable, PartitionHistory] = {}

    def __len__(self) -> int:
        return len(self._histories)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._histories

    def get(self, key: Hashable) -> PartitionHistory | None:
        return self._histories.get(key)

    def put(self, key: Hashable, history: PartitionHistory) -> None:
        """Install a history loaded from shared storage (Redis) for `key`."""
        self._histories[key] = history

    def observe(self, key: Hashable, end_offset: int, now_ms: int) -> PartitionHistory:
        """Add this iteration's end offset of one partition (call once per partition)."""
        history = self._histories.get(key)
        if history is None:
            history = self._histories[key] = PartitionHistory(self.max_points)
        history.drop_older_than(now_ms - self.retention_ms)
        history.add(end_offset, now_ms)
        return history

    def expire(self, now_ms: int) -> list[Hashable]:
        """Remove histories whose newest point is older than the retention; returns their keys."""
        cutoff = now_ms - self.retention_ms
        gone = []
        for key, history in self._histories.items():
            last = history.last()
            if last is None or last[1] < cutoff:
                gone.append(key)
        for key in gone:
            del self._histories[key]
        return gone

    def total_points(self) -> int:
        return sum(len(h) for h in self._histories.values())
