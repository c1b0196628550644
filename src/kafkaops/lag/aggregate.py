"""Max and sum of both lags per group and per (group, topic), as Kafka Lag Go exports them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Totals:
    max_offsets: int
    sum_offsets: int
    max_seconds: float | None
    """None when no partition had a lag in seconds (nothing to export)."""
    sum_seconds: float | None


class _Running:
    __slots__ = ("max_o", "max_s", "sum_o", "sum_s")

    def __init__(self) -> None:
        self.max_o = 0
        self.sum_o = 0
        self.max_s: float | None = None
        self.sum_s: float | None = None

    def add(self, max_o: int, sum_o: int, max_s: float | None, sum_s: float | None) -> None:
        self.max_o = max(self.max_o, max_o)
        self.sum_o += sum_o
        if max_s is not None and sum_s is not None:
            if self.max_s is None or self.sum_s is None:
                self.max_s, self.sum_s = max_s, sum_s
            else:
                self.max_s = max(self.max_s, max_s)
                self.sum_s += sum_s

    def totals(self) -> Totals:
        return Totals(self.max_o, self.sum_o, self.max_s, self.sum_s)


def aggregate(
    rows: Iterable[tuple[str, str, int, float | None]],
) -> tuple[dict[str, Totals], dict[tuple[str, str], Totals]]:
    """Totals per group and per (group, topic) from (group, topic, lag offsets, lag seconds) rows.

    Call once per cluster. Partitions whose lag in seconds is unknown (None) count in the offset
    totals only, so one unreadable partition does not hide the others' seconds. One pass over
    the rows, then a roll-up over the (group, topic) pairs, keeps it cheap at 50,000 rows.
    """
    per_topic: dict[tuple[str, str], _Running] = {}
    for group, topic, offsets, seconds in rows:
        running = per_topic.get((group, topic))
        if running is None:
            running = per_topic[group, topic] = _Running()
        running.add(offsets, offsets, seconds, seconds)
    per_group: dict[str, _Running] = {}
    for (group, _), running in per_topic.items():
        total = per_group.get(group)
        if total is None:
            total = per_group[group] = _Running()
        total.add(running.max_o, running.sum_o, running.max_s, running.sum_s)
    return (
        {group: r.totals() for group, r in per_group.items()},
        {key: r.totals() for key, r in per_topic.items()},
    )
