"""Failpoints act only when the harness asks, at the n-th arrival."""

from __future__ import annotations

import pytest

from kafkaops.eventbus.failpoints import Failpoints, InjectedFailure


def test_unset_does_nothing() -> None:
    points = Failpoints("")
    assert not points
    for _ in range(5):
        points.hit("event-produced")


def test_error_mode_raises_at_the_nth_arrival_only() -> None:
    points = Failpoints("trigger-produced:2:error, action-ran:1:error")
    points.hit("trigger-produced")
    with pytest.raises(InjectedFailure, match="trigger-produced:2"):
        points.hit("trigger-produced")
    points.hit("trigger-produced")  # counted past: never again
    with pytest.raises(InjectedFailure):
        points.hit("action-ran")
    points.hit("event-produced")  # not armed


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nowhere:1", "unknown window 'nowhere'"),
        ("rebalance", "is not <window>:<n>"),
        ("rebalance:0", "is not <window>:<n>"),
        ("rebalance:1:explode", "mode 'explode'"),
    ],
)
def test_bad_specs_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Failpoints(spec)
