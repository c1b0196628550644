from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kafkaops.lag.history import HistoryStore, PartitionHistory


def _history(points: list[tuple[int, int]], max_points: int = 240) -> PartitionHistory:
    history = PartitionHistory(max_points)
    for offset, t in points:
        history.add(offset, t)
    return history


def test_steady_traffic_keeps_every_sample() -> None:
    history = _history([(0, 0), (100, 10_000), (200, 20_000)])
    assert list(history) == [(0, 0), (100, 10_000), (200, 20_000)]
    assert len(history) == 3
    assert history.first() == (0, 0)
    assert history.last() == (200, 20_000)


def test_flat_stretch_keeps_its_first_and_last_point() -> None:
    history = _history([(100, 0), (300, 10_000)])
    for t in range(20_000, 100_000, 10_000):
        history.add(300, t)
    assert list(history) == [(100, 0), (300, 10_000), (300, 90_000)]
    history.add(350, 100_000)
    history.add(350, 110_000)
    history.add(350, 120_000)
    assert list(history) == [
        (100, 0),
        (300, 10_000),
        (300, 90_000),
        (350, 100_000),
        (350, 120_000),
    ]


def test_stale_or_repeated_time_is_rejected() -> None:
    history = _history([(10, 1_000)])
    assert history.add(20, 1_000) is False
    assert history.add(20, 999) is False
    assert history.add(20, 1_001) is True
    assert list(history) == [(10, 1_000), (20, 1_001)]


def test_end_offset_below_every_point_restarts_the_history() -> None:
    """The partition was recreated: the old points describe another log."""
    history = _history([(500, 0), (600, 10_000)])
    assert history.add(3, 20_000) is True
    assert list(history) == [(3, 20_000)]


def test_brief_dip_of_the_end_offset_is_dropped() -> None:
    """A new leader's high watermark can lag for a moment after a failover."""
    history = _history([(500, 0), (600, 10_000)])
    assert history.add(590, 20_000) is False
    assert history.add(595, 30_000) is False
    assert history.add(650, 40_000) is True
    assert history.add(640, 50_000) is False, "the count of dips restarted"
    assert list(history) == [(500, 0), (600, 10_000), (650, 40_000)]


def test_persistent_dip_restarts_the_history() -> None:
    history = _history([(500, 0), (600, 10_000)])
    assert history.add(590, 20_000) is False
    assert history.add(590, 30_000) is False
    assert history.add(591, 40_000) is True
    assert list(history) == [(591, 40_000)]


def test_oldest_points_are_evicted_beyond_the_bound() -> None:
    history = _history([(i * 10, i * 1_000) for i in range(100)], max_points=8)
    assert len(history) == 8
    assert list(history) == [(i * 10, i * 1_000) for i in range(92, 100)]
    assert history.first() == (920, 92_000)


def test_bracket_finds_the_points_around_a_record() -> None:
    history = _history([(100, 0), (200, 10_000), (200, 20_000), (300, 30_000)])
    assert history.bracket(150) == ((100, 0), (200, 10_000))
    assert history.bracket(200) == ((200, 20_000), (300, 30_000))
    assert history.bracket(99) == (None, (100, 0))
    assert history.bracket(300) == ((300, 30_000), None)
    assert PartitionHistory().bracket(5) == (None, None)


def test_bracket_ignores_evicted_points() -> None:
    history = _history([(i * 10, i * 1_000) for i in range(40)], max_points=4)
    assert history.bracket(5) == (None, (360, 36_000))


def test_drop_older_than_keeps_points_at_or_after_the_cutoff() -> None:
    history = _history([(0, 0), (10, 1_000), (20, 2_000), (30, 3_000)])
    history.drop_older_than(2_000)
    assert list(history) == [(20, 2_000), (30, 3_000)]
    history.drop_older_than(10_000)
    assert len(history) == 0
    assert history.first() is None and history.last() is None


def test_first_offset_since() -> None:
    history = _history([(0, 0), (10, 1_000), (10, 5_000), (30, 6_000)])
    assert history.first_offset_since(0) == 0
    assert history.first_offset_since(500) == 10
    assert history.first_offset_since(5_500) == 30
    assert history.first_offset_since(6_001) is None


def test_max_points_below_two_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        PartitionHistory(1)


def test_encode_decode_round_trip_and_compact_size() -> None:
    history = _history([(5, 1_700_000_000_000), (9, 1_700_000_010_000), (2**40, 1_800_000_000_000)])
    data = history.encode()
    assert len(data) == 1 + 16 * 3
    assert list(PartitionHistory.decode(data)) == list(history)


def test_decode_keeps_the_newest_points_within_the_bound() -> None:
    history = _history([(i, i) for i in range(1, 11)])
    assert list(PartitionHistory.decode(history.encode(), max_points=3)) == [
        (8, 8),
        (9, 9),
        (10, 10),
    ]


def test_decode_rejects_foreign_or_broken_bytes() -> None:
    good = _history([(1, 1), (2, 2)]).encode()
    with pytest.raises(ValueError, match="version"):
        PartitionHistory.decode(b"\x07" + good[1:])
    with pytest.raises(ValueError, match="version"):
        PartitionHistory.decode(b"")
    with pytest.raises(ValueError, match="truncated"):
        PartitionHistory.decode(good[:-1])
    swapped = bytes([good[0]]) + good[9:17] + good[1:9] + good[17:]
    with pytest.raises(ValueError, match="out of order"):
        PartitionHistory.decode(swapped)


def test_store_shares_one_history_per_partition() -> None:
    store = HistoryStore(max_points=10, retention_ms=60_000)
    key = ("c1", "orders", 0)
    first = store.observe(key, 100, 1_000)
    assert store.observe(key, 200, 2_000) is first
    assert list(first) == [(100, 1_000), (200, 2_000)]
    assert key in store and len(store) == 1
    assert store.get(("c1", "orders", 1)) is None
    assert store.total_points() == 2


def test_store_applies_retention_as_points_arrive() -> None:
    store = HistoryStore(max_points=10, retention_ms=5_000)
    key = ("c1", "t", 0)
    for t in range(0, 10_001, 1_000):
        store.observe(key, t, t)
    history = store.get(key)
    assert history is not None
    assert history.first() == (5_000, 5_000)


def test_store_expire_removes_partitions_no_longer_observed() -> None:
    store = HistoryStore(max_points=10, retention_ms=5_000)
    store.observe(("c", "gone", 0), 1, 0)
    store.observe(("c", "live", 0), 1, 0)
    store.observe(("c", "live", 0), 1, 8_000)
    assert store.expire(9_000) == [("c", "gone", 0)]
    assert len(store) == 1


def test_store_put_installs_a_loaded_history() -> None:
    store = HistoryStore()
    loaded = PartitionHistory.decode(_history([(1, 1), (5, 9)]).encode())
    store.put(("c", "t", 3), loaded)
    assert store.get(("c", "t", 3)) is loaded


@pytest.mark.parametrize(
    ("max_points", "retention_ms", "complaint"),
    [(1, 1_000, "max_points must be at least 2"), (10, 0, "retention_ms must be positive")],
)
def test_store_refuses_bad_bounds(max_points: int, retention_ms: int, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        HistoryStore(max_points, retention_ms)


samples = st.lists(
    st.tuples(st.integers(0, 10**12), st.integers(-5, 50)),
    max_size=300,
)


@given(samples, st.integers(2, 40))
def test_invariants_hold_for_any_sample_sequence(steps: list[tuple[int, int]], bound: int) -> None:
    """Offsets never decrease, times strictly increase, the bound holds, a flat stretch keeps at
    most two points, and the newest accepted sample is always the last point."""
    history = PartitionHistory(bound)
    t = 0
    for offset, dt in steps:
        t += dt
        before = history.last()
        accepted = history.add(offset, t)
        if accepted:
            assert history.last() == (offset, t)
        else:
            assert history.last() == before
    points = list(history)
    assert len(points) <= bound
    for (o1, t1), (o2, t2) in pairwise(points):
        assert o1 <= o2
        assert t1 < t2
    for a, b, c in zip(points, points[1:], points[2:], strict=False):
        assert not (a[0] == b[0] == c[0])
    assert list(PartitionHistory.decode(history.encode(), bound)) == points


@given(st.lists(st.integers(0, 1_000), min_size=1, max_size=60), st.integers(-10, 1_100))
def test_bracket_agrees_with_a_linear_scan(increments: list[int], probe: int) -> None:
    history = PartitionHistory(100)
    offset = 0
    for i, inc in enumerate(increments):
        offset += inc
        history.add(offset, i * 1_000)
    points = list(history)
    below = [p for p in points if p[0] <= probe]
    above = [p for p in points if p[0] > probe]
    assert history.bracket(probe) == (below[-1] if below else None, above[0] if above else None)
