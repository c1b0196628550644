from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kafkaops.lag.aggregate import Totals, aggregate


def test_max_and_sum_per_group_and_per_topic() -> None:
    rows = [
        ("billing", "orders", 10, 2.0),
        ("billing", "orders", 30, 5.5),
        ("billing", "refunds", 7, 9.0),
        ("audit", "orders", 0, 0.0),
    ]
    per_group, per_topic = aggregate(rows)
    assert per_topic == {
        ("billing", "orders"): Totals(30, 40, 5.5, 7.5),
        ("billing", "refunds"): Totals(7, 7, 9.0, 9.0),
        ("audit", "orders"): Totals(0, 0, 0.0, 0.0),
    }
    assert per_group == {
        "billing": Totals(30, 47, 9.0, 16.5),
        "audit": Totals(0, 0, 0.0, 0.0),
    }


def test_unknown_seconds_count_only_in_offset_totals() -> None:
    per_group, per_topic = aggregate([("g", "a", 5, None), ("g", "a", 8, 3.0), ("g", "b", 4, None)])
    assert per_topic[("g", "a")] == Totals(8, 13, 3.0, 3.0)
    assert per_topic[("g", "b")] == Totals(4, 4, None, None)
    assert per_group["g"] == Totals(8, 17, 3.0, 3.0)


def test_no_rows_no_totals() -> None:
    assert aggregate([]) == ({}, {})


rows_strategy = st.lists(
    st.tuples(
        st.sampled_from(["g1", "g2", "g3"]),
        st.sampled_from(["t1", "t2"]),
        st.integers(0, 10**9),
        st.one_of(st.none(), st.floats(0, 1e6, allow_nan=False)),
    ),
    max_size=60,
)


@given(rows_strategy)
def test_matches_a_direct_computation(rows: list[tuple[str, str, int, float | None]]) -> None:
    per_group, per_topic = aggregate(rows)
    for group in {r[0] for r in rows}:
        mine = [r for r in rows if r[0] == group]
        seconds = [r[3] for r in mine if r[3] is not None]
        totals = per_group[group]
        assert totals.max_offsets == max(r[2] for r in mine)
        assert totals.sum_offsets == sum(r[2] for r in mine)
        assert totals.max_seconds == (max(seconds) if seconds else None)
        if seconds:
            assert totals.sum_seconds == pytest.approx(sum(seconds))
        else:
            assert totals.sum_seconds is None
    assert set(per_topic) == {(r[0], r[1]) for r in rows}
