"""Burrow's consumer status rules (OK, WARN, ERR, STOP, STALL, REWIND) over a window of commits.

A threshold on lag cannot tell a consumer catching up from one that died; Burrow's rules look at
the shape of the last few commits instead. We keep its rules, its status values and its
defaults, so alerts written for Burrow mean the same here.

We read committed offsets by polling, not from `__consumer_offsets`, so the commit time is the
monitor time at which we saw it. Record an observation when the committed offset changed, or
when the group has live members (a live consumer keeps committing even when stuck, which is
what tells STALL from STOP); an Empty group whose offset does not move adds nothing, so its
window ages into STOP.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum


class Status(IntEnum):
    """Burrow's numeric values: a group is NOTFOUND, OK, WARN or ERR; a partition adds the
    three error kinds."""

    NOTFOUND = 0
    OK = 1
    WARN = 2
    ERR = 3
    STOP = 4
    STALL = 5
    REWIND = 6


@dataclass(frozen=True, slots=True)
class Rules:
    """Burrow's knobs, with Burrow's defaults."""

    intervals: int = 10
    """Commits kept per partition (the window length)."""
    min_distance_ms: int = 0
    """A commit closer than this to the previous one replaces it instead of taking a slot."""
    allowed_lag: int = 0
    """Lag at or below this counts as caught up (e.g. 1 for transactional producers' markers)."""
    minimum_complete: float = 0.0
    """Share of the window that must be filled before a partition can be anything but OK."""

    def __post_init__(self) -> None:
        if self.intervals < 1:
            raise ValueError(f"intervals must be at least 1 (got {self.intervals!r})")
        if self.min_distance_ms < 0:
            raise ValueError(f"min_distance_ms must be >= 0 (got {self.min_distance_ms!r})")
        if self.allowed_lag < 0:
            raise ValueError(f"allowed_lag must be >= 0 (got {self.allowed_lag!r})")
        if not 0.0 <= self.minimum_complete <= 1.0:
            raise ValueError(
                f"minimum_complete must be within [0, 1] (got {self.minimum_complete!r})"
            )


DEFAULT_RULES = Rules()

Commit = tuple[int, int, int]
"""(committed offset, lag when observed, observation time in ms)."""


class CommitWindow:
    """The last `intervals` commits of one group-partition, oldest first.

    Stored as one flat int64 array (24 bytes a commit, in order) because there is one window per
    group-partition, tens of thousands of them; the window is short, so dropping the oldest
    commit is a small memmove, and in-order storage lets evaluation slice columns in C.
    """

    __slots__ = ("_flat", "capacity")

    def __init__(self, intervals: int = 10) -> None:
        if intervals < 1:
            raise ValueError(f"intervals must be at least 1 (got {intervals!r})")
        self.capacity = intervals
        self._flat = array("q")

    def __len__(self) -> int:
        return len(self._flat) // 3

    def record(self, offset: int, lag: int, timestamp_ms: int, min_distance_ms: int = 0) -> None:
        """Add a commit. Like Burrow, a commit within `min_distance_ms` of the previous one
        overwrites it but keeps the previous timestamp, so frequent commits still advance the
        window instead of replacing one slot forever."""
        flat = self._flat
        if flat and timestamp_ms - flat[-1] < min_distance_ms:
            flat[-3] = offset
            flat[-2] = lag
            return
        if len(flat) == 3 * self.capacity:
            del flat[:3]
        flat.extend((offset, lag, timestamp_ms))

    def commits(self) -> list[Commit]:
        flat = self._flat
        return list(zip(flat[0::3], flat[1::3], flat[2::3], strict=True))


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    status: Status
    current_lag: int
    complete: float
    """Share of the window that is filled (1.0 when full)."""


def evaluate_partition(
    window: CommitWindow,
    current_lag: int,
    now_ms: int,
    min_recent_end_offset: int | None,
    rules: Rules = DEFAULT_RULES,
) -> PartitionStatus:
    """Burrow's partition rules, in Burrow's order, when the current lag exceeds `allowed_lag`:

    1. STOP: the time since the last commit exceeds the time the window spans, unless the
       consumer was caught up recently (`min_recent_end_offset`, the smallest end offset seen
       over about `intervals` iterations, is at or below the last committed offset);
    2. REWIND: some commit went below the one before it and no later commit reached that
       earlier offset again;
    3. only if the lag exceeded `allowed_lag` at every commit: STALL when the committed offset
       never moved, else WARN when the lag never decreased;
    4. OK otherwise (including a window too incomplete to judge).
    """
    flat = window._flat
    complete = len(flat) / (3 * window.capacity)
    if not flat or complete < rules.minimum_complete or current_lag <= rules.allowed_lag:
        return PartitionStatus(Status.OK, current_lag, complete)
    status = _judge(flat, now_ms, min_recent_end_offset, rules.allowed_lag)
    return PartitionStatus(status, current_lag, complete)


def _judge(
    flat: array[int], now_ms: int, min_recent_end_offset: int | None, allowed_lag: int
) -> Status:
    offsets = flat[0::3].tolist()
    lags = flat[1::3].tolist()
    first_time, last_time = flat[2], flat[-1]
    last_offset = offsets[-1]
    stopped = now_ms - last_time > last_time - first_time
    recently_caught_up = min_recent_end_offset is not None and min_recent_end_offset <= last_offset
    if stopped and not recently_caught_up:
        return Status.STOP
    if offsets != sorted(offsets):
        highest_after = last_offset
        for i in range(len(offsets) - 1, 0, -1):
            highest_after = max(highest_after, offsets[i])
            if offsets[i] < offsets[i - 1] and highest_after < offsets[i - 1]:
                return Status.REWIND
    if min(lags) > allowed_lag:
        if min(offsets) == last_offset == max(offsets):
            return Status.STALL
        if lags == sorted(lags):
            return Status.WARN
    return Status.OK


@dataclass(frozen=True, slots=True)
class GroupStatus:
    status: Status
    """OK, WARN or ERR, as Burrow reports a group: STOP, STALL and REWIND count as ERR."""
    worst: Status
    """The worst partition status itself, so ERR can be told apart."""
    complete: float
    """Share of partitions whose window is full."""
    total_lag: int
    max_lag_partition: tuple[str, int] | None
    """(topic, partition) with the highest current lag."""


def evaluate_group(partitions: Iterable[tuple[str, int, PartitionStatus]]) -> GroupStatus:
    """Group status = worst partition, from (topic, partition, status) triples."""
    worst = Status.OK
    total = 0
    full = 0
    count = 0
    max_lag = -1
    max_at: tuple[str, int] | None = None
    for topic, partition, st in partitions:
        count += 1
        total += st.current_lag
        worst = max(worst, st.status)
        if st.complete >= 1.0:
            full += 1
        if st.current_lag > max_lag:
            max_lag = st.current_lag
            max_at = (topic, partition)
    return GroupStatus(
        status=min(worst, Status.ERR),
        worst=worst,
        complete=full / count if count else 0.0,
        total_lag=total,
        max_lag_partition=max_at,
    )
