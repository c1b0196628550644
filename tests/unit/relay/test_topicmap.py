from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kafkaops.kafka.partitioners import murmur2_hash
from kafkaops.relay.topicmap import (
    PartitionMappingError,
    TopicMap,
    TopicRoute,
    murmur2_partition,
)


def _signed(h: int) -> int:
    return h - 2**32 if h >= 2**31 else h


# Kafka's own UtilsTest: Utils.murmur2 as a signed Java int.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "expected"), JAVA_MURMUR2.items())
def test_murmur2_matches_kafka_java(key, expected):
    assert _signed(murmur2_hash(key)) == expected


# librdkafka tests/0048-partitioner.c: murmur2(key) & 0x7fffffff, the value Java's toPositive gives.
@pytest.mark.parametrize(
    ("key", "positive"),
    [
        (b"23456", 0x058D780F),
        (b"this is another string with more length to it perhaps", 0x4F7703DA),
        (b"hejsan", 0x5EC19395),
        (b"", 0x106E08D9),
    ],
)
def test_murmur2_positive_matches_librdkafka(key, positive):
    assert murmur2_hash(key) & 0x7FFFFFFF == positive
    assert murmur2_partition(key, 17) == positive % 17


# sarama partitioner_test.go: the Java-compatible partition for 100 partitions.
@pytest.mark.parametrize(
    ("key", "partition"),
    [(b"foo", 16), (b"bar", 45), (b"baz", 80), (b"kafka", 80), (b"sarama", 11)],
)
def test_java_partition_for_100_partitions(key, partition):
    assert murmur2_partition(key, 100) == partition


def test_partition_count_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        murmur2_partition(b"k", 0)


@given(key=st.binary(max_size=64), n=st.integers(1, 500))
def test_key_hash_partitioner_is_java_partition(key, n):
    part = TopicRoute("a", "b", "key-hash").partitioner(n)
    assert part(7, key) == murmur2_partition(key, n)
    assert 0 <= part(7, key) < n


def test_keyless_records_stay_with_their_source_partition():
    part = TopicRoute("a", "b", "key-hash").partitioner(4)
    assert [part(p, None) for p in range(6)] == [0, 1, 2, 3, 0, 1]


def test_same_and_fixed_partitioners():
    assert TopicRoute("a", "b").partitioner(3)(2, b"k") == 2
    assert TopicRoute("a", "b", 1).partitioner(3)(2, b"k") == 1


@pytest.mark.parametrize(
    ("spec", "route"),
    [
        ("orders:orders-copy", TopicRoute("orders", "orders-copy")),
        ("orders:copy:3", TopicRoute("orders", "copy", 3)),
        ("orders:copy:key-hash", TopicRoute("orders", "copy", "key-hash")),
    ],
)
def test_parse_kaf_relay_topic_flag(spec, route):
    assert TopicRoute.parse(spec) == route
    assert TopicRoute.parse(route.spec()) == route


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("orders", "expected source:target"),
        ("a:b:c:d", "expected source:target"),
        ("a::1", "expected source:target"),
        ("a:b:x", "partition 'x' is not a number"),
        ("a:b:-1", "partition '-1' is not a number"),
        ("a b:c", "not a valid Kafka topic name"),
    ],
)
def test_bad_topic_specs_name_the_value(spec, message):
    with pytest.raises(ValueError, match=message):
        TopicRoute.parse(spec)


def test_bad_partition_rule_is_refused():
    with pytest.raises(ValueError, match="expected 'same', 'key-hash'"):
        TopicRoute("a", "b", "hash")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected 'same', 'key-hash'"):
        TopicRoute("a", "b", True)  # type: ignore[arg-type]


def test_a_source_topic_maps_once():
    with pytest.raises(ValueError, match="'a' is mapped twice"):
        TopicMap([TopicRoute("a", "x"), TopicRoute("a", "y")])
    with pytest.raises(ValueError, match="at least one topic"):
        TopicMap([])


def test_same_partition_onto_a_smaller_target_is_refused_with_topics_and_counts():
    tm = TopicMap([TopicRoute("orders", "orders-dr")])
    with pytest.raises(PartitionMappingError) as err:
        tm.validate({"orders": 6}, {"orders-dr": 4})
    assert "topic 'orders' has 6 partitions but target topic 'orders-dr' has only 4" in str(
        err.value
    )
    tm.validate({"orders": 6}, {"orders-dr": 8})


def test_validate_lists_every_problem():
    tm = TopicMap([TopicRoute("a", "A", 5), TopicRoute("b", "B"), TopicRoute("c", "C", "key-hash")])
    with pytest.raises(PartitionMappingError) as err:
        tm.validate({"a": 1, "c": 9}, {"A": 2, "B": 1, "C": 1})
    text = str(err.value)
    assert "mapped to partition 5 of 'A', which has only 2 partitions (0..1)" in text
    assert "source topic 'b' does not exist" in text
    assert "'C'" not in text, "key-hash fits any partition count"


def test_sources_by_target_and_fan_out():
    tm = TopicMap([TopicRoute("a", "A"), TopicRoute("b", "A", 0), TopicRoute("c", "C", "key-hash")])
    sbt = tm.sources_by_target({"a": 2, "b": 2, "c": 2}, {"A": 3, "C": 2})
    assert sbt[("A", 0)] == {("a", 0), ("b", 0), ("b", 1)}
    assert sbt[("A", 1)] == {("a", 1)}
    assert ("A", 2) not in sbt
    assert sbt[("C", 0)] == sbt[("C", 1)] == {("c", 0), ("c", 1)}
    assert tm.fans_out({"A": 3, "C": 2}) == {"c"}
    assert tm.fans_out({"A": 3, "C": 1}) == frozenset()
    assert tm.source_topics == ("a", "b", "c")
    assert tm.target_topics == ("A", "C")
