"""Metric families from snapshots: Kafka Lag Go's names and labels, no unknown, negative or
non-finite values, and series that disappear with the snapshot."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, generate_latest

from kafkaops.config import Config
from kafkaops.config.loader import validate
from kafkaops.kafka import ClusterClients
from kafkaops.lag.collector import Collection, GroupOffsets
from kafkaops.lag.export import LagCollector, families, series
from kafkaops.lag.monitor import Monitor

KLG_NAMES = {
    "kafka_consumer_group_lag_in_offsets",
    "kafka_consumer_group_lag_in_seconds",
    "kafka_consumer_group_max_lag_in_offsets",
    "kafka_consumer_group_max_lag_in_seconds",
    "kafka_consumer_group_sum_lag_in_offsets",
    "kafka_consumer_group_sum_lag_in_seconds",
    "kafka_consumer_group_topic_max_lag_in_offsets",
    "kafka_consumer_group_topic_max_lag_in_seconds",
    "kafka_consumer_group_topic_sum_lag_in_offsets",
    "kafka_consumer_group_topic_sum_lag_in_seconds",
    "kafka_total_groups_checked",
    "kafka_iteration_time_seconds",
}


class NoReads:
    reads = 0

    def read(self, rounds, timeout):
        return {}

    def close(self) -> None:
        return None


def monitor_with(groups: list[GroupOffsets], ends: dict[tuple[str, int], int]) -> Monitor:
    cfg = validate(
        Config,
        {
            "kafka": [{"id": "main", "brokers": ["127.0.0.1:1"]}],
            "lag": {"labels": {"env": "prod"}},
        },
        "test",
    )
    monitor = Monitor(cfg, lambda cid: ClusterClients(cfg.cluster(cid)))
    cluster = monitor.clusters["main"]
    cluster.reader = NoReads()  # type: ignore[assignment]
    cluster.snapshot, _ = cluster.compute(Collection("main", 100.0, groups, ends), 99.5)
    cluster.up = True
    monitor.iteration_seconds = 0.25
    return monitor


def by_name(monitor: Monitor) -> dict[str, dict[tuple[str, ...], float]]:
    return {f.name: dict(f.samples) for f in families(monitor)}


def test_names_labels_and_values_follow_kafka_lag_go() -> None:
    monitor = monitor_with(
        [GroupOffsets("g", "Empty", {("t", 0): 7, ("t", 1): 20})], {("t", 0): 10, ("t", 1): 12}
    )
    fams = {f.name: f for f in families(monitor)}
    assert set(fams) >= KLG_NAMES
    assert fams["kafka_consumer_group_lag_in_offsets"].labels == (
        "clustername", "group", "topic", "partition", "env",
    )  # fmt: skip
    assert fams["kafka_consumer_group_topic_sum_lag_in_offsets"].labels == (
        "clustername", "group", "topic", "env",
    )  # fmt: skip
    assert fams["kafka_consumer_group_max_lag_in_offsets"].labels == ("clustername", "group", "env")
    assert fams["kafka_total_groups_checked"].labels == ("clustername", "env")
    assert fams["kafka_iteration_time_seconds"].labels == ()
    values = by_name(monitor)
    assert values["kafka_consumer_group_lag_in_offsets"] == {
        ("main", "g", "t", "0", "prod"): 3.0,
        ("main", "g", "t", "1", "prod"): 0.0,  # committed past our end-offset sample: clamped
    }
    assert values["kafka_consumer_group_sum_lag_in_offsets"] == {("main", "g", "prod"): 3.0}
    assert values["kafka_total_groups_checked"] == {("main", "prod"): 1.0}
    assert values["kafka_iteration_time_seconds"] == {(): 0.25}
    # one look at a lagging group whose commit never moved: Burrow's STALL, reported as ERR (3)
    assert values["kafkaops_lag_group_status"] == {("main", "g", "prod"): 3.0}


def test_unknown_seconds_are_left_out_never_nan_or_negative() -> None:
    # first iteration, no record could be read: partition 0's lag in seconds is unknown
    monitor = monitor_with(
        [GroupOffsets("g", "Empty", {("t", 0): 1, ("t", 1): 5})], {("t", 0): 5, ("t", 1): 5}
    )
    values = by_name(monitor)
    assert values["kafka_consumer_group_lag_in_seconds"] == {("main", "g", "t", "1", "prod"): 0.0}
    assert values["kafka_consumer_group_max_lag_in_seconds"] == {("main", "g", "prod"): 0.0}
    sources = values["kafkaops_lag_seconds_source_partitions"]
    assert sources[("main", "unknown", "prod")] == 1.0
    assert sources[("main", "caught-up", "prod")] == 1.0
    for fam in families(monitor):
        for _, value in fam.samples:
            assert math.isfinite(value) and value >= 0, (fam.name, value)


def test_a_failed_cluster_exports_no_lag_series_and_the_collector_renders() -> None:
    monitor = monitor_with([GroupOffsets("g", "Empty", {("t", 0): 1})], {("t", 0): 5})
    registry = CollectorRegistry()
    registry.register(LagCollector(monitor))
    text = generate_latest(registry).decode()
    assert 'kafka_consumer_group_lag_in_offsets{clustername="main",env="prod",group="g"' in text
    assert 'kafkaops_lag_scrape_errors_total{clustername="main",env="prod"} 0.0' in text

    monitor.clusters["main"]._failed("unreachable")
    text = generate_latest(registry).decode()
    assert 'group="g"' not in text
    assert 'kafkaops_lag_cluster_up{clustername="main",env="prod"} 0.0' in text
    assert 'kafkaops_lag_scrape_errors_total{clustername="main",env="prod"} 1.0' in text


def test_remote_write_series_carry_counter_suffix_and_one_timestamp() -> None:
    monitor = monitor_with([GroupOffsets("g", "Empty", {("t", 0): 1})], {("t", 0): 5})
    out = list(series(families(monitor), 1234))
    names = {name for name, _, _, _ in out}
    assert "kafkaops_lag_scrape_errors_total" in names
    assert "kafka_consumer_group_lag_in_offsets" in names
    assert {ts for _, _, _, ts in out} == {1234}
    lag = [v for n, labels, v, _ in out if n == "kafka_consumer_group_lag_in_offsets"]
    assert lag == [4.0]
