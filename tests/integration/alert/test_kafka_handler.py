"""The Kafka handler against a real broker: partitions, bytes, templates, failures, service test."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from confluent_kafka import Message

from kafkaops.config import Config
from kafkaops.config.loader import validate
from kafkaops.kafka import ClusterClients
from kafkaops.kafka.partitioners import PartitionAlgorithm, Partitioner
from kafkaops.testing import USERS, LocalCluster, wait_for
from kafkaops.testing.records import consume, create_topic

pytestmark = pytest.mark.kafka

LIBRDKAFKA_NAME = {
    PartitionAlgorithm.CRC32: "consistent",
    PartitionAlgorithm.MURMUR2: "murmur2",
    PartitionAlgorithm.FNV1A: "fnv1a",
}
KEYS = [
    "kapacitor/cpu/serverA",
    "cpu:host=serverA",
    "kafka_consumer_group_lag:clustername=main,group=etl,partition=3,topic=orders",
    "23456",
    "hejsan",
    "a",
    "1468509572224",
    "this is another string with more length to it perhaps",
    "ünïcødé-ключ-鍵",
    *(f"host-{i}" for i in range(30)),
]


def test_our_partitions_equal_librdkafkas_on_a_real_broker(
    clients: ClusterClients, topic_factory: Callable[..., str], reader
) -> None:
    """librdkafka chooses the partition itself (partitioner=consistent|murmur2|fnv1a); the
    delivery reports must show the partition our code computes, for several counts."""
    for count in (3, 7, 16):
        topic = topic_factory(count)
        expected: dict[tuple[str, str], int] = {}
        seen: dict[tuple[str, str], int] = {}
        for algorithm, name in LIBRDKAFKA_NAME.items():
            producer = clients.producer(partitioner=name)
            # Kapacitor sends an empty key to a random partition under crc32; the others hash it.
            keys = KEYS if algorithm is PartitionAlgorithm.CRC32 else [*KEYS, ""]

            def delivered(err, msg: Message, name: str = name, seen: dict = seen) -> None:
                assert err is None, err
                seen[name, msg.key().decode()] = msg.partition()

            for key in keys:
                expected[name, key] = Partitioner(algorithm).partition(key.encode(), count)
                producer.produce(topic, b"v", key.encode(), on_delivery=delivered)
            assert producer.flush(30) == 0
        assert seen == expected, f"{count} partitions"


def _task(topic: str, handler: str = "") -> str:
    return f"""
stream
    |from()
        .measurement('cpu')
        .groupBy('host')
    |alert()
        .crit(lambda: "usage_idle" < 10)
        .kafka()
            .cluster('main')
            .kafkaTopic('{topic}')
            {handler}
"""


@pytest.mark.parametrize(
    ("handler", "algorithm"),
    [
        ("", PartitionAlgorithm.CRC32),
        (".partitionHashAlgorithm('murmur2')", PartitionAlgorithm.MURMUR2),
        (".partitionAlgorithm('fnv-1a')", PartitionAlgorithm.FNV1A),  # the documented spelling
    ],
)
def test_line_protocol_in_alert_json_out_on_the_predicted_partition(
    daemon, topic_factory, reader, handler: str, algorithm: PartitionAlgorithm
) -> None:
    topic = topic_factory(6)
    daemon.define("cpu", _task(topic, handler))
    hosts = [f"server{i:02d}" for i in range(12)]
    body = "\n".join(
        f"cpu,host={h},cpu=cpu-total usage_idle=4.5 {1_700_000_000_000_000_000 + i}"
        for i, h in enumerate(hosts)
    )
    status, answer = daemon.write(body, "?db=telegraf&rp=autogen")
    assert status == 204, answer
    messages = reader(topic, len(hosts))
    partitioner = Partitioner(algorithm)
    by_key = {m.key().decode(): m for m in messages}
    assert sorted(by_key) == sorted(f"cpu:host={h}" for h in hosts)
    for key, msg in by_key.items():
        assert msg.partition() == partitioner.partition(key.encode(), 6), key
        value = msg.value()
        assert value.endswith(b"}\n")
        alert = json.loads(value)
        assert list(alert) == [
            "id", "message", "details", "time", "duration", "level", "data",
            "previousLevel", "recoverable",
        ]  # fmt: skip
        assert alert["id"] == key
        assert alert["message"] == f"{key} is CRITICAL"
        assert (alert["level"], alert["previousLevel"], alert["duration"]) == ("CRITICAL", "OK", 0)
        series = alert["data"]["series"][0]
        assert series["name"] == "cpu"
        assert series["columns"] == ["time", "usage_idle"]
        assert series["values"][0][1] == 4.5
        assert series["tags"]["host"] == key.removeprefix("cpu:host=")
    first = by_key["cpu:host=server00"]
    assert b'"time":"2023-11-14T22:13:20Z"' in first.value()
    # Successes are not reported one by one; the delivered counter still gets every record.
    delivered = f'kafkaops_alert_kafka_messages_total{{cluster="main",topic="{topic}"}} 12.0'
    wait_for(lambda: delivered in daemon.text("/metrics"), 10, what="deliveries counted")


def test_template_value_is_verbatim_and_a_failing_template_sends_null(
    daemon, topic_factory, reader
) -> None:
    good, bad = topic_factory(), topic_factory()
    daemon.define("good", _task(good, ".template('{{.ID}} {{.Level}} was {{.PreviousLevel}}')"))
    daemon.define("bad", _task(bad, ".template('{{.Nope}}')"))
    assert daemon.write("cpu,host=a usage_idle=1")[0] == 204
    (msg,) = reader(good, 1)
    assert msg.value() == b"cpu:host=a CRITICAL was OK"
    (null,) = reader(bad, 1)
    assert null.key() == b"cpu:host=a"
    assert null.value() is None
    metrics = daemon.text("/metrics")
    assert (
        f'kafkaops_alert_kafka_template_errors_total{{cluster="main",topic="{bad}"}} 1.0' in metrics
    )


def test_delivery_failures_are_counted_and_logged(
    daemon, topic_factory, reader, caplog: pytest.LogCaptureFixture
) -> None:
    topic = topic_factory()
    # A value above the broker's max message size: the broker refuses every retry.
    daemon.define("huge", _task(topic, ".template('{{ printf \"%2000000s\" .ID }}')"))
    daemon.define("fine", _task(topic))
    assert daemon.write("cpu,host=a usage_idle=1")[0] == 204
    (ok,) = reader(topic, 1)
    assert json.loads(ok.value())["id"] == "cpu:host=a"

    def failures() -> float:
        writer = next(
            w
            for w in daemon.service.factory.writers.values()
            if w.topic == topic and w.last_failure > float("-inf")
        )
        return writer._errors._value.get()

    assert wait_for(failures, 30, what="write error counted") == 1
    delivered = f'kafkaops_alert_kafka_messages_total{{cluster="main",topic="{topic}"}} 1.0'
    wait_for(lambda: delivered in daemon.text("/metrics"), 10, what="one delivery counted")
    assert any(r.getMessage() == "alert not delivered to Kafka" for r in caplog.records)
    status, health = daemon.request("GET", "/healthz")
    assert (status, health["unhealthy_clusters"]) == (503, ["main"])


def test_service_test_reports_success_and_broker_errors(daemon, topic_factory, reader) -> None:
    topic = topic_factory(5)
    status, body = daemon.request(
        "POST", "/kapacitor/v1/service-tests/kafka", {"cluster": "main", "topic": topic}
    )
    assert (status, body) == (200, {"success": True, "message": ""})
    (msg,) = reader(topic, 1)
    assert (msg.key(), msg.value()) == (b"key", b"test kafka message")
    assert msg.partition() == Partitioner(PartitionAlgorithm.FNV1A).partition(b"key", 5)
    status, body = daemon.request(
        "POST",
        "/kapacitor/v1/service-tests/kafka",
        {"cluster": "main", "topic": topic, "message": "x" * 1_000_100},
    )
    assert status == 200
    assert body["success"] is False
    assert "too large" in body["message"].lower()
    status, body = daemon.request(
        "POST", "/kapacitor/v1/service-tests/kafka", {"cluster": "nope", "topic": topic}
    )
    assert status == 400
    assert "unknown cluster 'nope'" in body["error"]


def test_alerts_reach_a_cluster_over_sasl_ssl(
    daemon_factory, kafka_secure: LocalCluster, unique: str
) -> None:
    """The handler's producer comes from the client layer, so SCRAM over TLS just works."""
    section = kafka_secure.cluster_section(
        "main",
        listener="SASL_SSL",
        **{
            "sasl-mechanism": "SCRAM-SHA-512",
            "sasl-username": "bob",
            "sasl-password": USERS["bob"],
            "batch-timeout": "5ms",
        },
    )
    clients = ClusterClients(validate(Config, {"kafka": [section]}, "t").cluster("main"))
    create_topic(clients.admin(), unique, partitions=2)
    daemon = daemon_factory(section=section)
    daemon.define("cpu", _task(unique))
    assert daemon.write("cpu,host=secure usage_idle=1")[0] == 204
    consumer = clients.consumer(f"reader-{unique}")
    try:
        (msg,) = consume(consumer, unique, 1)
    finally:
        consumer.close()
    assert msg.key() == b"cpu:host=secure"
    assert msg.partition() == Partitioner().partition(b"cpu:host=secure", 2)
