"""`kafkaops lag` config handling (Kafka Lag Go's config.yaml as it is) and `lag show` rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from kafkaops.cli.lag import config_from_kafka_lag_go, table_rows
from kafkaops.config import ConfigError
from kafkaops.lag.aggregate import Totals
from kafkaops.lag.estimator import Source
from kafkaops.lag.monitor import GroupView, LagRow, Snapshot
from kafkaops.lag.status import GroupStatus, Status

SEED = Path(__file__).parent / "data" / "kafka_lag_go_seed_config.yaml"


def test_the_seed_config_yaml_becomes_a_daemon_config() -> None:
    config, conversion = config_from_kafka_lag_go(SEED)
    assert config.http.bind_address == "0.0.0.0:9090"
    assert config.logging.level == "INFO"
    assert (conversion.health_check_port, conversion.health_check_path) == (8080, "/healthz")
    assert sorted(config.clusters) == ["kafka-cluster-1", "kafka-cluster-2"]
    one = config.cluster("kafka-cluster-1")
    assert one.brokers == ["broker1:9092", "broker2:9092"]
    assert one.sasl_mechanism == "SCRAM-SHA-512"
    assert one.use_ssl is True
    lag = config.lag
    assert lag is not None
    assert lag.storage.type == "redis"
    assert lag.storage.redis.auth.username == "redisUser"
    assert lag.sharding is True
    assert lag.labels == {"env": "production", "service": "kafka-lag-go"}
    assert lag.group_filter("kafka-cluster-2").admits("important-orders")
    assert not lag.group_filter("kafka-cluster-2").admits("test2-x")


def test_kafka_lag_go_errors_name_the_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text(
        "kafka_clusters:\n  - name: a\n    brokers: [h:1]\n    consumer_groups:\n"
        "      whitelist: '(['\n"
    )
    with pytest.raises(ConfigError, match=r"config.yaml: .*whitelist.*invalid regex"):
        config_from_kafka_lag_go(bad)
    bad.write_text("kafka_clusters: [")
    with pytest.raises(ConfigError, match="invalid YAML"):
        config_from_kafka_lag_go(bad)
    with pytest.raises(ConfigError, match="file not found"):
        config_from_kafka_lag_go(tmp_path / "none.yaml")


def _row(group: str, partition: int, lag: int, seconds: float | None) -> LagRow:
    source = Source.UNKNOWN if seconds is None else Source.RECORD_TIMESTAMP
    return LagRow("c", group, "t", partition, 0, lag, lag, seconds, source, Status.OK)


def _view(group: str, state: str) -> GroupView:
    return GroupView(
        group, state, GroupStatus(Status.OK, Status.OK, 1.0, 0, None), Totals(0, 0, None, None)
    )


def test_show_rows_are_worst_first_with_one_look_status() -> None:
    snap = Snapshot(
        cluster="c",
        taken_at=0.0,
        rows=[
            _row("small", 0, 2, 1.0),
            _row("big", 0, 50, 9.0),
            _row("big", 1, 10, None),
            _row("idle", 0, 0, 0.0),
        ],
        groups={
            "small": _view("small", "Stable"),
            "big": _view("big", "Empty"),
            "idle": _view("idle", "Empty"),
        },
        topics={
            ("small", "t"): Totals(2, 2, 1.0, 1.0),
            ("big", "t"): Totals(50, 60, 9.0, 9.0),
            ("idle", "t"): Totals(0, 0, 0.0, 0.0),
        },
        groups_checked=3,
        duration=0.0,
    )
    rows = table_rows([snap], allowed_lag=0)
    assert [(r["group"], r["lag_in_offsets"], r["status"]) for r in rows] == [
        ("big", 60, "STOP"),  # lagging, nobody consuming
        ("small", 2, "-"),  # lagging with members: needs a window to judge
        ("idle", 0, "OK"),
    ]
    assert rows[0]["partitions"] == 2
    assert rows[0]["lag_in_seconds"] == 9.0
    assert rows[0]["source"] == "record-timestamp"
