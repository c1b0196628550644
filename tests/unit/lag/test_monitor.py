"""The per-cluster pipeline after the Kafka reads: history, estimates, record reads, status,
vanishing rows and ownership filtering, fed with made-up collections (no broker)."""

from __future__ import annotations

from collections.abc import Hashable

import pytest

from kafkaops.config import Config
from kafkaops.config.loader import validate
from kafkaops.kafka import ClusterClients
from kafkaops.lag.collector import Collection, GroupOffsets
from kafkaops.lag.estimator import Source
from kafkaops.lag.monitor import ClusterMonitor, Monitor
from kafkaops.lag.status import Status
from kafkaops.lag.storage import MemoryStorage


class FakeReader:
    """Stands in for the Kafka record reader: knows the timestamp of every record."""

    def __init__(self, written: dict[tuple[str, int, int], int]) -> None:
        self.written = written
        self.asked: list[dict[Hashable, int]] = []
        self.reads = 0

    def read(self, rounds, timeout):
        out = {}
        for wanted in rounds:
            self.asked.append(dict(wanted))
            for (topic, partition), offset in wanted.items():
                if (topic, partition, offset) in self.written:
                    out[(topic, partition), offset] = self.written[topic, partition, offset]
        self.reads += len(out)
        return out

    def close(self) -> None:
        return None


def config(**lag) -> Config:
    return validate(
        Config,
        {
            "kafka": [{"id": "main", "brokers": ["127.0.0.1:1"]}],
            "lag": {"iteration_interval": "10s", **lag},
        },
        "test",
    )


def cluster_monitor(written=None, **lag) -> tuple[ClusterMonitor, FakeReader]:
    cfg = config(**lag)
    monitor = ClusterMonitor(ClusterClients(cfg.cluster("main")), cfg.lag, MemoryStorage())
    reader = FakeReader(written or {})
    monitor.reader = reader  # type: ignore[assignment]
    return monitor, reader


def collection(t_s: float, groups: list[GroupOffsets], ends: dict[tuple[str, int], int]):
    return Collection("main", t_s, groups, ends)


def test_first_iteration_reads_records_then_the_history_interpolates() -> None:
    # 10 records/s on t[0]: the record at offset k was written at (k + 1) * 100 ms
    written = {("t", 0, k): (k + 1) * 100 for k in range(10_000)}
    monitor, reader = cluster_monitor(written)
    group = [GroupOffsets("g", "Empty", {("t", 0): 50})]
    first, _ = monitor.compute(collection(10.0, group, {("t", 0): 100}), 0.0)
    (row,) = first.rows
    assert (row.lag_in_offsets, row.source) == (50, Source.RECORD_TIMESTAMP)
    assert row.lag_in_seconds == pytest.approx(10.0 - 5.1)
    assert reader.asked == [{("t", 0): 50}]

    group = [GroupOffsets("g", "Empty", {("t", 0): 150})]
    second, touched = monitor.compute(collection(20.0, group, {("t", 0): 200}), 0.0)
    (row,) = second.rows
    assert row.source is Source.INTERPOLATION
    assert row.lag_in_seconds == pytest.approx(20.0 - 15.1)
    assert len(reader.asked) == 1
    assert list(touched) == [("main", "t", 0)]


def test_stuck_commit_is_read_once_then_memoised() -> None:
    monitor, reader = cluster_monitor({("t", 0, 5): 1_000})
    for now in (10.0, 20.0, 30.0):
        group = [GroupOffsets("g", "Empty", {("t", 0): 5})]
        snap, _ = monitor.compute(collection(now, group, {("t", 0): 100}), 0.0)
        assert snap.rows[0].lag_in_seconds == pytest.approx(now - 1.0)
        assert snap.rows[0].source is Source.RECORD_TIMESTAMP
    assert reader.asked == [{("t", 0): 5}]


def test_record_reads_are_capped_worst_lag_first_and_the_rest_are_unknown() -> None:
    written = {("t", p, 0): 1_000 for p in range(3)}
    monitor, reader = cluster_monitor(written, max_record_reads=1)
    group = [GroupOffsets("g", "Empty", {("t", 0): 0, ("t", 1): 0, ("t", 2): 0})]
    ends = {("t", 0): 10, ("t", 1): 30, ("t", 2): 20}
    snap, _ = monitor.compute(collection(10.0, group, ends), 0.0)
    assert reader.asked == [{("t", 1): 0}]
    by_partition = {r.partition: r for r in snap.rows}
    assert by_partition[1].source is Source.RECORD_TIMESTAMP
    assert by_partition[0].lag_in_seconds is None
    assert by_partition[0].source is Source.UNKNOWN
    totals = snap.groups["g"].totals
    assert (totals.max_offsets, totals.sum_offsets) == (30, 60)
    assert totals.max_seconds == pytest.approx(9.0)


def test_vanished_partitions_and_groups_leave_no_rows_or_windows() -> None:
    monitor, _ = cluster_monitor({("t", p, 0): 0 for p in range(2)})
    groups = [
        GroupOffsets("a", "Empty", {("t", 0): 0, ("t", 1): 0}),
        GroupOffsets("b", "Empty", {("t", 0): 0}),
    ]
    snap, _ = monitor.compute(collection(1.0, groups, {("t", 0): 5, ("t", 1): 5}), 0.0)
    assert {(r.group, r.partition) for r in snap.rows} == {("a", 0), ("a", 1), ("b", 0)}
    # group b is deleted; partition 1 is gone (its end offset missing)
    snap, _ = monitor.compute(collection(2.0, groups[:1], {("t", 0): 5}), 0.0)
    assert {(r.group, r.partition) for r in snap.rows} == {("a", 0)}
    assert set(snap.groups) == {"a"}
    assert {g: set(w) for g, w in monitor._windows.items()} == {"a": {("t", 0)}}


def test_status_stall_for_a_live_group_that_never_moves_and_ok_when_caught_up() -> None:
    monitor, _ = cluster_monitor({("t", 0, 3): 0}, status={"intervals": 3})
    for now in (1.0, 2.0, 3.0, 4.0):
        groups = [
            GroupOffsets("live", "Stable", {("t", 0): 3}),
            GroupOffsets("done", "Stable", {("t", 0): 9}),
        ]
        snap, _ = monitor.compute(collection(now, groups, {("t", 0): 9}), 0.0)
    assert snap.groups["live"].status.worst is Status.STALL
    assert snap.groups["live"].status.status is Status.ERR
    assert snap.groups["done"].status.status is Status.OK
    assert {r.group: r.status for r in snap.rows} == {"live": Status.STALL, "done": Status.OK}


class FakeMembership:
    def __init__(self, owned: set[str]) -> None:
        self.owned_groups = owned

    def owns(self, group: str) -> bool:
        return group in self.owned_groups


def test_visible_drops_groups_lost_since_the_iteration() -> None:
    monitor, _ = cluster_monitor({("t", 0, 0): 0})
    membership = FakeMembership({"a", "b"})
    monitor.membership = membership  # type: ignore[assignment]
    groups = [GroupOffsets(g, "Empty", {("t", 0): 0}) for g in ("a", "b")]
    monitor.snapshot, _ = monitor.compute(collection(1.0, groups, {("t", 0): 5}), 0.0)
    assert monitor.visible() is monitor.snapshot
    membership.owned_groups = {"b"}
    visible = monitor.visible()
    assert visible is not None
    assert [r.group for r in visible.rows] == ["b"]
    assert set(visible.groups) == {"b"}
    assert set(visible.topics) == {("b", "t")}


def test_monitor_health_names_failed_clusters_and_subscribers_get_rows() -> None:
    cfg = config()
    monitor = Monitor(cfg, lambda cid: ClusterClients(cfg.cluster(cid)))
    cluster = monitor.clusters["main"]
    assert monitor.health().healthy  # nothing known yet is not a failure
    cluster._failed("listing consumer groups failed: Local: Timed out")
    health = monitor.health()
    assert not health.healthy
    assert health.unhealthy_clusters == ("main",)
    assert health.detail["clusters"]["main"]["reason"].startswith("listing consumer groups")
    assert cluster.scrape_errors == 1
    seen = []
    unsubscribe = monitor.subscribe(seen.append)
    unsubscribe()
    assert monitor._subscribers == []
