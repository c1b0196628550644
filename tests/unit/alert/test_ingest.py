"""Lag rows as points, and what a write body turns into."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from prometheus_client import CollectorRegistry

from kafkaops.alert.ingest import LAG_MEASUREMENT, Ingest, describe_errors, lag_points
from kafkaops.alert.lineprotocol import Point, parse_lines


class Tasks:
    def __init__(self) -> None:
        self.calls: list[tuple[list[Point], str, str]] = []

    def process(self, points: list[Point], db: str = "", rp: str = "") -> None:
        self.calls.append((list(points), db, rp))


def test_lag_rows_become_points_without_unknown_seconds() -> None:
    rows: list[dict[str, Any]] = [
        {
            "clustername": "main",
            "group": "etl",
            "topic": "orders",
            "partition": 3,
            "lag_in_offsets": 120,
            "lag_in_seconds": 42.5,
            "status": "WARN",
            "time_ns": 7,
        },
        {
            "clustername": "main",
            "group": "etl",
            "topic": "orders",
            "partition": 4,
            "lag_in_offsets": 0,
            "lag_in_seconds": None,
            "status": "OK",
            "time_ns": 8,
        },
    ]
    first, second = lag_points(rows)
    assert first == Point(
        LAG_MEASUREMENT,
        {"clustername": "main", "group": "etl", "topic": "orders", "partition": "3"},
        {"lag_in_offsets": 120, "status": "WARN", "lag_in_seconds": 42.5},
        7,
    )
    assert "lag_in_seconds" not in second.fields
    assert second.time == 8


def test_row_objects_with_enum_status_work_too() -> None:
    class Status(IntEnum):
        STALL = 5

    @dataclass
    class Row:
        clustername: str = "c"
        group: str = "g"
        topic: str = "t"
        partition: int = 0
        lag_in_offsets: int = 9
        lag_in_seconds: float | None = 1.0
        status: Status = Status.STALL

    (p,) = lag_points([Row()], now=99)
    assert (p.fields["status"], p.time, p.fields["lag_in_seconds"]) == ("STALL", 99, 1.0)


def test_ingest_routes_points_with_db_and_default_rp() -> None:
    tasks = Tasks()
    registry = CollectorRegistry()
    ingest = Ingest(tasks, registry)  # type: ignore[arg-type]
    result = ingest.write(b"cpu v=1 10\ncpu v= 11\n", db="telegraf", now=0)
    assert [(len(p), db, rp) for p, db, rp in tasks.calls] == [(1, "telegraf", "autogen")]
    assert len(result.errors) == 1
    ingest.write("cpu v=1", now=0)
    assert tasks.calls[-1][1:] == ("", "")
    ingest.lag([{"clustername": "c", "partition": 0, "lag_in_offsets": 1, "status": "OK"}])
    assert tasks.calls[-1][1:] == ("kafkaops", "autogen")
    assert registry.get_sample_value("kafkaops_alert_points_total", {"source": "http"}) == 2
    assert (
        registry.get_sample_value("kafkaops_alert_points_rejected_total", {"source": "http"}) == 1
    )
    assert registry.get_sample_value("kafkaops_alert_points_total", {"source": "lag"}) == 1


def test_error_answer_names_lines_and_counts_accepted_points() -> None:
    body = "\n".join(["m v=1"] * 3 + [f"m,bad{i} v=1" for i in range(25)])
    answer = describe_errors(parse_lines(body, now=0))
    assert answer["accepted"] == 3
    assert len(answer["errors"]) == 25
    assert answer["error"].startswith("25 line(s) rejected, 3 point(s) accepted: line 4 column")
    assert answer["error"].endswith("; and 5 more")
