from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kafkaops.lag.status import (
    CommitWindow,
    PartitionStatus,
    Rules,
    Status,
    evaluate_group,
    evaluate_partition,
)


def _window(commits: list[tuple[int, int, int]], intervals: int | None = None) -> CommitWindow:
    """Commits as (offset, timestamp ms, lag), the order Burrow's fixtures list them."""
    window = CommitWindow(intervals or len(commits))
    for offset, timestamp_ms, lag in commits:
        window.record(offset, lag, timestamp_ms)
    return window


# Burrow's evaluator fixtures (core/internal/evaluator/caching_test.go), timestamps in ms.
RISING = [(1000, 100_000, 0), (2000, 200_000, 50), (3000, 300_000, 100), (4000, 400_000, 150)]
RISING += [(5000, 500_000, 200)]
ALWAYS_LAGGING = [(o, t, lag + 50) for o, t, lag in RISING]
STUCK_FROM_ZERO = [(1000, t, lag) for _, t, lag in RISING]
STUCK = [(1000, t, lag + 100) for _, t, lag in RISING]
STUCK_FLAT = [(1000, t, 100) for _, t, _ in RISING]
REWOUND_AND_RECOVERED = [
    (1000, 100_000, 100),
    (2000, 200_000, 150),
    (3000, 300_000, 200),
    (2000, 400_000, 1250),
    (4000, 500_000, 300),
]
_MS_PAST_1512224600000 = [
    18356,
    19362,
    20366,
    21367,
    22370,
    23373,
    24378,
    25379,
    26383,
    27383,
    28383,
]
_MS_PAST_1512224600000 += [29388, 30391, 31394, 32397]
CAUGHT_UP_EACH_COMMIT = [
    (792748079 + i, 1512224600000 + ms, 0) for i, ms in enumerate(_MS_PAST_1512224600000)
]


@pytest.mark.parametrize(
    ("commits", "min_end", "current_lag", "now_s", "expected"),
    [
        pytest.param(RISING, 5200, 200, 600, Status.OK, id="burrow-0"),
        pytest.param(RISING, 5200, 200, 900, Status.OK, id="burrow-1"),
        pytest.param(RISING, 5200, 200, 1000, Status.STOP, id="burrow-2"),
        pytest.param(ALWAYS_LAGGING, 5250, 250, 1000, Status.STOP, id="burrow-3"),
        pytest.param(STUCK_FROM_ZERO, 1200, 200, 600, Status.OK, id="burrow-4"),
        pytest.param(STUCK, 1300, 300, 600, Status.STALL, id="burrow-5"),
        pytest.param(STUCK_FLAT, 1100, 100, 600, Status.STALL, id="burrow-6"),
        pytest.param(REWOUND_AND_RECOVERED, 4300, 300, 600, Status.OK, id="burrow-7"),
        pytest.param(ALWAYS_LAGGING, 5250, 0, 1000, Status.OK, id="burrow-8"),
        pytest.param(CAUGHT_UP_EACH_COMMIT, 792748500, 931, 1512224650, Status.STOP, id="burrow-9"),
        pytest.param(CAUGHT_UP_EACH_COMMIT, 792748093, 1, 1512224650, Status.OK, id="burrow-10"),
    ],
)
def test_burrow_fixtures(
    commits: list[tuple[int, int, int]],
    min_end: int,
    current_lag: int,
    now_s: int,
    expected: Status,
) -> None:
    """Burrow's own evaluator cases. Case 7 was REWIND before Burrow learnt (PR #716) that a
    rewind the consumer has since recovered from is not an error; the rules in lag.md are the
    current ones, so it is OK here."""
    result = evaluate_partition(_window(commits), current_lag, now_s * 1000, min_end)
    assert result.status is expected


def test_rewind_not_yet_recovered_is_rewind() -> None:
    commits = [*REWOUND_AND_RECOVERED[:4], (2500, 500_000, 1300)]
    assert evaluate_partition(_window(commits), 1300, 600_000, 3800).status is Status.REWIND


def test_rewind_after_zero_lag_is_still_caught() -> None:
    """Burrow issue #714: caught up, then a reset to an older offset."""
    commits = [(10, 1_000, 0), (20, 2_000, 0), (30, 3_000, 0), (20, 4_000, 10)]
    assert evaluate_partition(_window(commits), 20, 4_000, 40).status is Status.REWIND


def test_rewind_recovered_past_the_old_offset_is_ok() -> None:
    """Burrow issue #714, later: the consumer reached its pre-rewind offset again."""
    commits = [(20, 2_000, 0), (30, 3_000, 0), (20, 4_000, 10), (30, 5_000, 15)]
    assert evaluate_partition(_window(commits), 15, 5_000, 45).status is Status.OK


def test_any_unrecovered_rewind_counts() -> None:
    commits = [(10, 1_000, 5), (5, 2_000, 10), (12, 3_000, 8), (3, 4_000, 20), (4, 5_000, 25)]
    assert evaluate_partition(_window(commits), 25, 5_000, 30).status is Status.REWIND


def test_lag_growing_while_offsets_move_is_warn() -> None:
    commits = [(100, 1_000, 10), (110, 2_000, 20), (120, 3_000, 20), (130, 4_000, 35)]
    assert evaluate_partition(_window(commits), 35, 4_000, 150).status is Status.WARN


def test_lag_decreasing_somewhere_is_ok() -> None:
    commits = [(100, 1_000, 10), (110, 2_000, 20), (120, 3_000, 15), (130, 4_000, 35)]
    assert evaluate_partition(_window(commits), 35, 4_000, 150).status is Status.OK


def test_allowed_lag_counts_as_caught_up() -> None:
    """Transactional producers leave a commit marker, so a lag of 1 can be 'caught up'."""
    commits = [(100, 1_000, 1), (100, 2_000, 1), (100, 3_000, 1)]
    window = _window(commits)
    assert evaluate_partition(window, 1, 3_000, 101).status is Status.STALL
    assert evaluate_partition(window, 1, 3_000, 101, Rules(allowed_lag=1)).status is Status.OK
    lagging = _window([(100, 1_000, 1), (100, 2_000, 5), (100, 3_000, 5)])
    assert evaluate_partition(lagging, 5, 3_000, 105, Rules(allowed_lag=1)).status is Status.OK


def test_incomplete_window_is_ok_below_minimum_complete() -> None:
    window = CommitWindow(10)
    for t in (1_000, 2_000, 3_000, 4_000):
        window.record(100, 50, t)
    rules = Rules(minimum_complete=0.5)
    result = evaluate_partition(window, 50, 4_000, 150, rules)
    assert result == PartitionStatus(Status.OK, 50, 0.4)
    window.record(100, 50, 5_000)
    assert evaluate_partition(window, 50, 5_000, 150, rules).status is Status.STALL


def test_empty_window_is_ok_and_incomplete() -> None:
    assert evaluate_partition(CommitWindow(10), 99, 1_000, None) == PartitionStatus(
        Status.OK, 99, 0.0
    )


def test_polling_live_but_stuck_consumer_stalls_and_silent_group_stops() -> None:
    """How the poller feeds the window: a group with members that re-commits the same offset
    gets an entry each iteration (STALL); an Empty group gets none and ages into STOP."""
    live = CommitWindow(10)
    silent = CommitWindow(10)
    silent.record(500, 0, 0)
    for i in range(5):
        now = i * 30_000
        live.record(500, 40 + i * 10, now)
    assert evaluate_partition(live, 80, 120_000, 540).status is Status.STALL
    assert evaluate_partition(silent, 80, 120_000, 540).status is Status.STOP
    assert evaluate_partition(silent, 80, 120_000, 500).status is Status.OK, "caught up lately"


def test_window_keeps_the_last_commits_oldest_first() -> None:
    window = CommitWindow(3)
    for i in range(7):
        window.record(i * 10, i, i * 1_000)
    assert window.commits() == [(40, 4, 4_000), (50, 5, 5_000), (60, 6, 6_000)]
    assert len(window) == 3


def test_min_distance_merges_close_commits_into_the_previous_slot() -> None:
    window = CommitWindow(5)
    window.record(10, 5, 1_000, min_distance_ms=2_000)
    window.record(20, 4, 2_500, min_distance_ms=2_000)
    window.record(30, 3, 3_500, min_distance_ms=2_000)
    assert window.commits() == [(20, 4, 1_000), (30, 3, 3_500)]
    window.record(35, 2, 4_000, min_distance_ms=2_000)
    assert window.commits() == [(20, 4, 1_000), (35, 2, 3_500)]


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"intervals": 0}, "intervals"),
        ({"min_distance_ms": -1}, "min_distance_ms"),
        ({"allowed_lag": -1}, "allowed_lag"),
        ({"minimum_complete": 1.5}, "minimum_complete"),
    ],
)
def test_rules_reject_bad_values(kwargs: dict, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        Rules(**kwargs)
    with pytest.raises(ValueError, match="intervals"):
        CommitWindow(0)


def test_group_status_is_the_worst_partition_with_errors_as_err() -> None:
    group = evaluate_group(
        [
            ("orders", 0, PartitionStatus(Status.OK, 5, 1.0)),
            ("orders", 1, PartitionStatus(Status.STALL, 70, 1.0)),
            ("audit", 0, PartitionStatus(Status.WARN, 90, 0.5)),
        ]
    )
    assert group.status is Status.ERR
    assert group.worst is Status.STALL
    assert group.total_lag == 165
    assert group.max_lag_partition == ("audit", 0)
    assert group.complete == pytest.approx(2 / 3)


def test_group_of_warnings_is_warn_and_empty_group_is_ok() -> None:
    warn = evaluate_group([("t", 0, PartitionStatus(Status.WARN, 3, 1.0))])
    assert (warn.status, warn.worst) == (Status.WARN, Status.WARN)
    empty = evaluate_group([])
    assert (empty.status, empty.complete, empty.max_lag_partition) == (Status.OK, 0.0, None)


def test_status_values_are_burrows() -> None:
    assert [s.value for s in Status] == [0, 1, 2, 3, 4, 5, 6]
    assert [s.name for s in Status] == ["NOTFOUND", "OK", "WARN", "ERR", "STOP", "STALL", "REWIND"]


commit_lists = st.lists(
    st.tuples(st.integers(0, 1_000), st.integers(0, 1_000), st.integers(0, 50)),
    min_size=1,
    max_size=15,
)


@given(commit_lists, st.integers(0, 2_000), st.integers(0, 10_000))
def test_zero_current_lag_is_always_ok(
    steps: list[tuple[int, int, int]], min_end: int, extra_ms: int
) -> None:
    window = CommitWindow(10)
    t = 0
    for offset, lag, dt in steps:
        t += dt
        window.record(offset, lag, t)
    assert evaluate_partition(window, 0, t + extra_ms, min_end).status is Status.OK


@given(commit_lists, st.integers(1, 2_000), st.integers(0, 10_000))
def test_partition_status_is_never_a_group_only_value(
    steps: list[tuple[int, int, int]], lag: int, extra_ms: int
) -> None:
    window = CommitWindow(10)
    t = 0
    for offset, commit_lag, dt in steps:
        t += dt
        window.record(offset, commit_lag, t)
    result = evaluate_partition(window, lag, t + extra_ms, None)
    assert result.status not in (Status.NOTFOUND, Status.ERR)
    assert 0.0 < result.complete <= 1.0
