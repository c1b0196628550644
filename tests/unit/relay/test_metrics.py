from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from kafkaops.relay.metrics import Histogram, RelayCollector, RelayStats

KAF_RELAY_NAMES = (
    "source_errors_total",
    "source_unhealthy_total",
    "source_kafka_errors_total",
    "source_highwatermark",
    "target_errors_total",
    "target_kafka_errors_total",
    "messages_relayed_total",
    "messages_filtered_total",
    "target_inlet_blocks_total",
    "target_flush_batch_size",
    "target_flush_duration_seconds",
    "target_flush_retries_total",
    "source_candidate_switches_total",
    "source_connections_total",
    "source_lag_threshold_exceeded_total",
)


def exposition(*stats: RelayStats) -> str:
    registry = CollectorRegistry()
    registry.register(RelayCollector(stats))
    return generate_latest(registry).decode()


def test_every_kaf_relay_metric_name_is_exposed_with_the_prefix() -> None:
    text = exposition(RelayStats("r", ["a", "b"], "t"))
    for name in KAF_RELAY_NAMES:
        assert f"# HELP kafka_relay_{name} " in text, name
    for extra in ("records_acked_total", "records_in_flight", "lag", "current_source"):
        assert f"# HELP kafka_relay_{extra} " in text, extra


def test_values_and_labels() -> None:
    s = RelayStats("orders", ["dc1", "dc2"], "dr")
    s.relayed["orders", 3, "orders-copy", 3] += 42
    s.source_errors["dc2", "connection_failed"] += 2
    s.lag_threshold_exceeded["dc1"] += 1
    s.filtered = lambda: {"prod-only": 5}
    s.current_source = "dc1"
    s.lag = {("orders", 3): 17}
    s.acked = 42
    s.in_flight = 9
    s.source_highwatermark["dc2"] = -1
    text = exposition(s, RelayStats("other", ["x"], "y"))
    assert (
        'kafka_relay_messages_relayed_total{relay="orders",source_partition="3",'
        'source_topic="orders",target_partition="3",target_topic="orders-copy"} 42.0'
    ) in text
    errors = 'error="connection_failed",node_id="dc2",relay="orders"'
    assert f"kafka_relay_source_errors_total{{{errors}}} 2.0" in text
    assert (
        'kafka_relay_source_lag_threshold_exceeded_total{node_id="dc1",relay="orders"} 1.0' in text
    )
    assert 'kafka_relay_messages_filtered_total{filter="prod-only",relay="orders"} 5.0' in text
    assert 'kafka_relay_current_source{node_id="dc1",relay="orders"} 1.0' in text
    assert 'kafka_relay_current_source{node_id="dc2",relay="orders"} 0.0' in text
    assert 'kafka_relay_current_source{node_id="x",relay="other"} 0.0' in text
    assert 'kafka_relay_lag{partition="3",relay="orders",topic="orders"} 17.0' in text
    assert 'kafka_relay_records_acked_total{relay="orders"} 42.0' in text
    assert 'kafka_relay_records_in_flight{relay="orders"} 9.0' in text
    assert 'kafka_relay_source_highwatermark{node_id="dc2",relay="orders"} -1.0' in text


def test_histogram_buckets_are_cumulative() -> None:
    h = Histogram((1, 10, 100))
    for value in (0.5, 1, 5, 50, 500):
        h.observe(value)
    assert h.cumulative() == [("1.0", 2), ("10.0", 3), ("100.0", 4), ("+Inf", 5)]
    assert h.total == 556.5
    s = RelayStats("r", ["a"], "t")
    s.flush_batch_size.observe(700)
    text = exposition(s)
    assert 'kafka_relay_target_flush_batch_size_bucket{le="500.0",relay="r"} 0.0' in text
    assert 'kafka_relay_target_flush_batch_size_bucket{le="1000.0",relay="r"} 1.0' in text
    assert 'kafka_relay_target_flush_batch_size_sum{relay="r"} 700.0' in text
