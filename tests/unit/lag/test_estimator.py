"""Lag in seconds in the five situations of research/lag.md §h, with exact numbers.

Producer model used throughout: the record at offset k is written at a known time, and the
monitor samples the end offset (records written so far) every 10 s. At 10 records/s the record
at offset k is written at (k + 1) * 100 ms, so the end offset at time t is t // 100.
"""

from __future__ import annotations

import math
from bisect import bisect_right

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from kafkaops.lag.estimator import (
    CAUGHT_UP,
    LagEstimate,
    Policy,
    RecordTimestampMemo,
    RecordTimestampNeeded,
    Source,
    estimate_seconds,
    from_record,
    lag_in_offsets,
    plan_record_fetches,
)
from kafkaops.lag.history import PartitionHistory


def _history(points: list[tuple[int, int]], max_points: int = 240) -> PartitionHistory:
    history = PartitionHistory(max_points)
    for offset, t in points:
        history.add(offset, t)
    return history


STEADY = [(0, 0), (100, 10_000), (200, 20_000), (300, 30_000)]


# --- §h situation 1: steady traffic --------------------------------------------------------


def test_steady_traffic_is_exact() -> None:
    history = _history(STEADY)
    # record 150 was written at 15_100 ms
    assert estimate_seconds(history, 150, 300, 30_000) == LagEstimate(14.9, Source.INTERPOLATION)
    assert estimate_seconds(history, 0, 300, 30_000) == LagEstimate(29.9, Source.INTERPOLATION)
    assert estimate_seconds(history, 299, 300, 30_000) == LagEstimate(0.0, Source.INTERPOLATION)


# --- §h situation 2: producer idle, consumer stuck -----------------------------------------


def test_idle_producer_with_stuck_consumer_grows_one_second_per_second() -> None:
    # 300 records by 30 s, then nothing: the end offset stays 300.
    history = _history(STEADY)
    for t in (40_000, 50_000, 60_000):
        history.add(300, t)
    # record 250 was written at 25_100 ms
    at_60 = estimate_seconds(history, 250, 300, 60_000)
    assert at_60 == LagEstimate(34.9, Source.INTERPOLATION)
    history.add(300, 70_000)
    at_70 = estimate_seconds(history, 250, 300, 70_000)
    assert at_70 == LagEstimate(44.9, Source.INTERPOLATION)
    history.add(300, 130_000)
    at_130 = estimate_seconds(history, 250, 300, 130_000)
    assert at_130 == LagEstimate(104.9, Source.INTERPOLATION)


def test_idle_producer_older_segment_also_grows_one_second_per_second() -> None:
    history = _history([*STEADY, (300, 40_000), (300, 90_000)])
    assert estimate_seconds(history, 150, 300, 90_000) == LagEstimate(74.9, Source.INTERPOLATION)


def test_idle_producer_caught_up_consumer_is_zero() -> None:
    history = _history([*STEADY, (300, 40_000), (300, 90_000)])
    assert estimate_seconds(history, 300, 300, 90_000) is CAUGHT_UP


# --- §h situation 3: committed offset older than the whole history -------------------------


def test_commit_older_than_history_asks_for_the_record_timestamp() -> None:
    # Only the last 3 samples are kept: (300, 30 s), (400, 40 s), (500, 50 s).
    history = _history([*STEADY, (400, 40_000), (500, 50_000)], max_points=3)
    needed = estimate_seconds(history, 50, 500, 50_000)
    assert needed == RecordTimestampNeeded(offset=50, bound_seconds=20.0)
    assert isinstance(needed, RecordTimestampNeeded)
    # record 50 was written at 5_100 ms
    assert from_record(needed, 5_100, 50_000) == LagEstimate(44.9, Source.RECORD_TIMESTAMP)


def test_commit_older_than_history_without_fetching_reports_the_bound() -> None:
    history = _history([*STEADY, (400, 40_000), (500, 50_000)], max_points=3)
    assert estimate_seconds(history, 50, 500, 50_000, Policy.HISTORY) == LagEstimate(
        20.0, Source.HISTORY_BOUND
    )


def test_failed_record_read_falls_back_to_the_bound() -> None:
    needed = RecordTimestampNeeded(offset=50, bound_seconds=20.0)
    assert from_record(needed, None, 50_000) == LagEstimate(20.0, Source.HISTORY_BOUND)
    assert from_record(needed, -1, 50_000) == LagEstimate(20.0, Source.HISTORY_BOUND)
    unbounded = RecordTimestampNeeded(offset=50, bound_seconds=None)
    assert from_record(unbounded, None, 50_000) == LagEstimate(None, Source.UNKNOWN)


# --- §h situation 4: produce burst ---------------------------------------------------------


def test_produce_burst_is_exact_inside_and_after_the_burst() -> None:
    # 10/s until 20 s, 100/s from 20 s to 30 s (records 200..1199), then 10/s again.
    history = _history([(0, 0), (100, 10_000), (200, 20_000), (1200, 30_000), (1300, 40_000)])
    # record 700 at 20_000 + 501 * 10 = 25_010 ms; record 1250 at 30_000 + 51 * 100 = 35_100 ms
    assert estimate_seconds(history, 700, 1300, 40_000) == LagEstimate(14.99, Source.INTERPOLATION)
    assert estimate_seconds(history, 1250, 1300, 40_000) == LagEstimate(4.9, Source.INTERPOLATION)
    assert estimate_seconds(history, 150, 1300, 40_000) == LagEstimate(24.9, Source.INTERPOLATION)


# --- §h situation 5: caught up -------------------------------------------------------------


def test_caught_up_is_zero() -> None:
    history = _history(STEADY)
    assert estimate_seconds(history, 300, 300, 30_000) == LagEstimate(0.0, Source.CAUGHT_UP)
    assert estimate_seconds(history, 305, 300, 30_000) is CAUGHT_UP
    assert estimate_seconds(None, 7, 7, 30_000) is CAUGHT_UP
    assert estimate_seconds(history, 300, 300, 30_000, Policy.RECORD_TIMESTAMP) is CAUGHT_UP


# --- the other edges -----------------------------------------------------------------------


def test_too_young_history_asks_for_the_record() -> None:
    assert estimate_seconds(None, 5, 10, 1_000) == RecordTimestampNeeded(5, None)
    assert estimate_seconds(_history([(10, 1_000)]), 5, 10, 1_000) == RecordTimestampNeeded(5, None)
    assert estimate_seconds(None, 5, 10, 1_000, Policy.HISTORY) == LagEstimate(None, Source.UNKNOWN)


def test_current_sample_counts_even_if_not_added() -> None:
    history = _history([(0, 0), (100, 10_000)])
    assert estimate_seconds(history, 150, 200, 20_000) == LagEstimate(4.9, Source.INTERPOLATION)


def test_current_sample_is_ignored_when_the_clock_went_back() -> None:
    history = _history([(0, 0), (100, 10_000)])
    assert estimate_seconds(history, 150, 200, 9_000) == RecordTimestampNeeded(150, None)


def test_record_timestamp_policy_always_reads_the_record() -> None:
    history = _history(STEADY)
    needed = estimate_seconds(history, 150, 300, 30_000, Policy.RECORD_TIMESTAMP)
    assert needed == RecordTimestampNeeded(offset=150, bound_seconds=10.0)
    assert isinstance(needed, RecordTimestampNeeded)
    assert from_record(needed, 15_100, 30_000) == LagEstimate(14.9, Source.RECORD_TIMESTAMP)


def test_record_clock_ahead_of_our_samples_yields_to_the_bound() -> None:
    needed = RecordTimestampNeeded(offset=150, bound_seconds=10.0)
    assert from_record(needed, 29_000, 30_000) == LagEstimate(10.0, Source.HISTORY_BOUND)
    future = RecordTimestampNeeded(offset=150, bound_seconds=None)
    assert from_record(future, 31_000, 30_000) == LagEstimate(0.0, Source.RECORD_TIMESTAMP)


def test_lag_in_offsets_is_never_negative() -> None:
    assert lag_in_offsets(300, 150) == 150
    assert lag_in_offsets(300, 300) == 0
    assert lag_in_offsets(300, 310) == 0


def test_fetch_rounds_hold_one_offset_per_partition_and_drop_duplicates() -> None:
    a, b = ("c", "t", 0), ("c", "t", 1)
    rounds = plan_record_fetches([(a, 5), (b, 7), (a, 5), (a, 9), (a, 11), (b, 7)])
    assert rounds == [{a: 5, b: 7}, {a: 9}, {a: 11}]
    assert plan_record_fetches([]) == []


def test_fetch_rounds_stop_at_the_limit_of_distinct_reads() -> None:
    a, b = ("c", "t", 0), ("c", "t", 1)
    requests = [(a, 5), (a, 5), (b, 7), (a, 9), (b, 8)]
    assert plan_record_fetches(requests, limit=2) == [{a: 5, b: 7}]
    assert plan_record_fetches(requests, limit=3) == [{a: 5, b: 7}, {a: 9}]
    assert plan_record_fetches(requests, limit=0) == []


def test_memo_remembers_and_drops_the_oldest_beyond_capacity() -> None:
    memo = RecordTimestampMemo(capacity=2)
    memo.put("p0", 5, 100)
    memo.put("p0", 6, 200)
    assert memo.get("p0", 5) == 100
    memo.put("p1", 5, 300)
    assert len(memo) == 2
    assert memo.get("p0", 5) is None
    assert (memo.get("p0", 6), memo.get("p1", 5)) == (200, 300)
    with pytest.raises(ValueError, match="capacity"):
        RecordTimestampMemo(0)


# --- properties ----------------------------------------------------------------------------


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[PartitionHistory, int, int]:
    """A history, the current end offset and the current time, from random steps."""
    max_points = draw(st.integers(2, 30))
    history = PartitionHistory(max_points)
    offset, t = draw(st.integers(0, 10**6)), draw(st.integers(0, 10**12))
    for inc, dt in draw(st.lists(st.tuples(st.integers(0, 10**4), st.integers(1, 10**5)))):
        offset += inc
        t += dt
        history.add(offset, t)
    end_offset = offset + draw(st.integers(0, 10**4))
    now = t + draw(st.integers(0, 10**5))
    return history, end_offset, now


def _value(
    result: LagEstimate | RecordTimestampNeeded,
) -> float | None:
    if isinstance(result, RecordTimestampNeeded):
        return result.bound_seconds
    return result.seconds


def _committed(data: st.DataObject, history: PartitionHistory, end_offset: int) -> int:
    """A committed offset around the history, where the interesting cases are."""
    first = history.first()
    low = max(0, (first[0] if first else end_offset) - 1_000)
    return data.draw(st.integers(low, end_offset + 10))


@given(scenarios(), st.sampled_from(list(Policy)), st.data())
def test_values_are_never_negative_nan_or_infinite(
    scenario: tuple[PartitionHistory, int, int], policy: Policy, data: st.DataObject
) -> None:
    history, end_offset, now = scenario
    committed = _committed(data, history, end_offset)
    result = estimate_seconds(history, committed, end_offset, now, policy)
    value = _value(result)
    if isinstance(result, LagEstimate) and result.source is not Source.UNKNOWN:
        assert value is not None
    if value is not None:
        assert math.isfinite(value)
        assert value >= 0.0
    if isinstance(result, RecordTimestampNeeded):
        finished = from_record(result, max(0, now - 1_000), now)
        assert finished.seconds is not None and math.isfinite(finished.seconds)
        assert finished.seconds >= 0.0


@given(scenarios(), st.data())
def test_monotone_in_committed_offset(
    scenario: tuple[PartitionHistory, int, int], data: st.DataObject
) -> None:
    """A group further ahead never shows more lag than one behind it."""
    history, end_offset, now = scenario
    low, high = sorted(
        (_committed(data, history, end_offset), _committed(data, history, end_offset))
    )
    lag_low = _value(estimate_seconds(history, low, end_offset, now, Policy.HISTORY))
    lag_high = _value(estimate_seconds(history, high, end_offset, now, Policy.HISTORY))
    assume(lag_low is not None and lag_high is not None)
    assert lag_high <= lag_low


@given(
    st.lists(st.integers(1, 5_000), min_size=1, max_size=200),
    st.lists(st.integers(1, 20_000), min_size=1, max_size=40),
    st.data(),
)
def test_error_is_within_one_sampling_gap_of_the_truth(
    gaps: list[int], sample_gaps: list[int], data: st.DataObject
) -> None:
    """Whatever the produce pattern (bursts, idle stretches), the estimate is off by less than
    the gap between the two samples around the record; the record read is exact."""
    written = []
    t = 0
    for gap in gaps:
        t += gap
        written.append(t)
    history = PartitionHistory(data.draw(st.integers(2, 50)))
    now = 0
    for gap in sample_gaps:
        now += gap
        history.add(bisect_right(written, now), now)
    end_offset = bisect_right(written, now)
    assume(end_offset > 0)
    committed = data.draw(st.integers(0, end_offset - 1))
    truth = (now - written[committed]) / 1000.0
    result = estimate_seconds(history, committed, end_offset, now)
    if isinstance(result, RecordTimestampNeeded):
        result = from_record(result, written[committed], now)
        assert result == LagEstimate(truth, Source.RECORD_TIMESTAMP)
        return
    below, above = history.bracket(committed)
    assert below is not None
    gap_s = ((above[1] if above else now) - below[1]) / 1000.0
    assert result.source is Source.INTERPOLATION
    assert result.seconds is not None
    assert abs(result.seconds - truth) < gap_s + 1e-9


@given(st.integers(1, 1_000), st.lists(st.integers(1, 50), min_size=2, max_size=30), st.data())
def test_constant_rate_is_exact(spacing: int, sample_steps: list[int], data: st.DataObject) -> None:
    """Record k written at (k + 1) * spacing ms, samples at multiples of spacing: no error."""
    history = PartitionHistory(100)
    now = 0
    for step in sample_steps:
        now += step * spacing
        history.add(now // spacing, now)
    end_offset = now // spacing
    committed = data.draw(st.integers(sample_steps[0], end_offset - 1))
    result = estimate_seconds(history, committed, end_offset, now)
    assert result == LagEstimate((now - (committed + 1) * spacing) / 1000.0, Source.INTERPOLATION)
