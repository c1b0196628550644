"""Partition-by-ID: every public vector from the alerting research note §b, plus librdkafka."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kafkaops.kafka.partitioners import (
    PartitionAlgorithm,
    Partitioner,
    crc32_hash,
    crc32_partition,
    fnv1a_32,
    fnv1a_partition,
    murmur2_hash,
    murmur2_partition,
)

CRC = PartitionAlgorithm.CRC32
MURMUR2 = PartitionAlgorithm.MURMUR2
FNV1A = PartitionAlgorithm.FNV1A


def _int32(h: int) -> int:
    return h - (1 << 32) if h >= 1 << 31 else h


def _partition(algorithm: PartitionAlgorithm, key: str, n: int) -> int:
    return Partitioner(algorithm).partition(key.encode(), n)


# Kapacitor services/kafka/hash_test.go Test_HashPartitioners
@pytest.mark.parametrize(
    ("algorithm", "key", "n", "want"),
    [
        (CRC, "hello", 1000, 870),
        (CRC, "hello2", 1000, 502),
        (CRC, "hello3", 1000, 592),
        (CRC, "hello4", 1000, 787),
        (CRC, "hello5", 1000, 413),
        (CRC, "hello5", 1, 0),
        (MURMUR2, "hello", 1000, 229),
        (MURMUR2, "hello2", 1000, 907),
        (MURMUR2, "hello3", 1000, 759),
        (MURMUR2, "hello4", 1000, 299),
        (MURMUR2, "hello5", 1000, 841),
        (MURMUR2, "", 1000, 681),
        (MURMUR2, "hello5", 1, 0),
    ],
)
def test_kapacitor_hash_partitioners(
    algorithm: PartitionAlgorithm, key: str, n: int, want: int
) -> None:
    assert _partition(algorithm, key, n) == want


@pytest.mark.parametrize("algorithm", list(PartitionAlgorithm))
@pytest.mark.parametrize("n", [0, -1])
def test_non_positive_partition_count_is_an_error(algorithm: PartitionAlgorithm, n: int) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        Partitioner(algorithm).partition(b"hello", n)


def test_crc32_of_hello() -> None:
    assert crc32_hash(b"hello") == 0x3610A686  # 907060870


# Kafka's UtilsTest murmur2 vectors (signed int32), as carried in Kapacitor's hash_test.go
@pytest.mark.parametrize(
    ("key", "signed"),
    [
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        ("abc", 479470107),
    ],
)
def test_java_murmur2_vectors(key: str, signed: int) -> None:
    assert _int32(murmur2_hash(key.encode())) == signed


# sarama partitioner_test.go: unsigned murmur2 and the Java-compatible partition for N=100
@pytest.mark.parametrize(
    ("key", "hash_value", "want"),
    [
        ("foo", 597841616, 16),
        ("bar", 988958145, 45),
        ("baz", 1973573280, 80),
        ("kafka", 3496464228, 80),
        ("sarama", 770765511, 11),
    ],
)
def test_sarama_murmur2_vectors(key: str, hash_value: int, want: int) -> None:
    assert murmur2_hash(key.encode()) == hash_value
    assert murmur2_partition(key.encode(), 100) == want


# sarama TestConsistentCRCHashPartitioner, N=100 (unsigned arithmetic)
@pytest.mark.parametrize(
    ("key", "want"),
    [
        ("abc123def456", 57),
        ("SheetJS", 26),
        ("9e8c7f4cf45857cfff7645d6", 24),
        ("3900446192ff85a5f67da10c", 75),
        ("0f4407b7a67d6d27de372198", 50),
    ],
)
def test_sarama_crc_vectors(key: str, want: int) -> None:
    assert crc32_partition(key.encode(), 100) == want


def test_crc_is_unsigned_where_signed_would_differ() -> None:
    crc = crc32_hash(b"SheetJS")
    assert crc == 2647669026
    assert crc32_partition(b"SheetJS", 100) == 26
    assert abs(_int32(crc)) % 100 == 70


# librdkafka tests/0048-partitioner.c cross-client hashes; partition = value mod 17
@pytest.mark.parametrize(
    ("key", "crc", "murmur", "fnv"),
    [
        ("23456", 0xB1B451D7, 0x058D780F, 0x27E6F469),
        (
            "this is another string with more length to it perhaps",
            0xB0150DF7,
            0x4F7703DA,
            0x155E3E5F,
        ),
        ("hejsan", 0xD077037E, 0x5EC19395, 0x17B1E27A),
    ],
)
def test_librdkafka_cross_client_vectors(key: str, crc: int, murmur: int, fnv: int) -> None:
    raw = key.encode()
    assert crc32_hash(raw) == crc
    assert murmur2_hash(raw) & 0x7FFFFFFF == murmur
    assert abs(_int32(fnv1a_32(raw))) == fnv
    assert _partition(CRC, key, 17) == crc % 17
    assert _partition(MURMUR2, key, 17) == murmur % 17
    assert _partition(FNV1A, key, 17) == fnv % 17


def test_empty_key_is_hashed_by_murmur2_and_fnv1a() -> None:
    assert murmur2_hash(b"") & 0x7FFFFFFF == 0x106E08D9  # 275646681
    assert abs(_int32(fnv1a_32(b""))) == 0x7EE3623B
    assert fnv1a_32(b"") == 0x811C9DC5
    assert _partition(MURMUR2, "", 17) == 0x106E08D9 % 17
    assert _partition(FNV1A, "", 17) == 0x7EE3623B % 17
    assert _partition(FNV1A, "", 1000) == 35


# librdkafka src/rdfnv1a.c absolute FNV-1a values
@pytest.mark.parametrize(
    ("key", "absolute"),
    [
        ("kafka", 0x0D33C4E1),
        ("giberish123456789", 0x77A58295),
        ("1234", 0x023BDD03),
        ("234", 0x2DEA3CD2),
        ("34", 0x740FA83E),
        ("4", 0x310CA263),
        ("PreAmbleWillBeRemoved,ThePrePartThatIs", 0x65CBD69C),
    ],
)
def test_librdkafka_fnv1a_vectors(key: str, absolute: int) -> None:
    assert abs(_int32(fnv1a_32(key.encode()))) == absolute


def test_fnv1a_signed_mapping() -> None:
    assert fnv1a_32(b"a") == 0xE40C292C
    assert _int32(fnv1a_32(b"a")) == -468965076
    assert fnv1a_partition(b"a", 10) == 6
    assert fnv1a_32(b"a") % 10 == 0  # an unsigned mapping would disagree


def test_fnv1a_int32_min_edge() -> None:
    assert fnv1a_32(b"1468509572224") == 0x80000000
    assert fnv1a_partition(b"1468509572224", 50) == 48


# Kapacitor end-to-end tests against a mock broker (partition IDs there are index + 1)
@pytest.mark.parametrize(("key", "index"), [("kapacitor/cpu/serverA", 1), ("id", 2)])
def test_kapacitor_end_to_end_indices(key: str, index: int) -> None:
    assert _partition(CRC, key, 3) == index


@given(st.binary(), st.integers(min_value=1, max_value=100_000))
def test_fnv1a_equals_go_truncated_modulo_then_negation(key: bytes, n: int) -> None:
    go_mod = int(math.fmod(_int32(fnv1a_32(key)), n))  # Go's % truncates toward zero
    expected = -go_mod if go_mod < 0 else go_mod
    assert fnv1a_partition(key, n) == expected


@given(
    st.sampled_from(list(PartitionAlgorithm)),
    st.booleans(),
    st.one_of(st.none(), st.binary(max_size=64)),
    st.integers(min_value=1, max_value=10_000),
)
def test_partition_always_in_range(
    algorithm: PartitionAlgorithm, by_id: bool, key: bytes | None, n: int
) -> None:
    chosen = Partitioner(algorithm, partition_by_id=by_id, rng=random.Random(7)).partition(key, n)
    assert 0 <= chosen < n


@given(st.sampled_from(list(PartitionAlgorithm)), st.binary(min_size=1, max_size=64))
def test_same_key_same_partition(algorithm: PartitionAlgorithm, key: bytes) -> None:
    first = Partitioner(algorithm, rng=random.Random(1))
    second = Partitioner(algorithm, rng=random.Random(2))
    assert first.partition(key, 12) == second.partition(key, 12)


def _spread(partitioner: Partitioner, key: bytes | None) -> set[int]:
    return {partitioner.partition(key, 10) for _ in range(200)}


@pytest.mark.parametrize("algorithm", list(PartitionAlgorithm))
def test_missing_key_is_random_for_every_algorithm(algorithm: PartitionAlgorithm) -> None:
    assert len(_spread(Partitioner(algorithm, rng=random.Random(3)), None)) == 10


def test_empty_key_is_random_only_for_crc32() -> None:
    assert len(_spread(Partitioner(CRC, rng=random.Random(4)), b"")) == 10
    assert _spread(Partitioner(MURMUR2, rng=random.Random(4)), b"") == {681 % 10}
    assert _spread(Partitioner(FNV1A, rng=random.Random(4)), b"") == {2128831035 % 10}


def test_random_choice_is_uniform_enough() -> None:
    # Same bound as Kapacitor's TestPartitionRandomness: mean of 1000 draws from 0..9 in (4, 5).
    partitioner = Partitioner(CRC, rng=random.Random(5))
    mean = sum(partitioner.partition(b"", 10) for _ in range(1000)) / 1000
    assert 4 < mean < 5


def test_disabled_partition_by_id_has_no_key_affinity() -> None:
    partitioner = Partitioner(CRC, partition_by_id=False, rng=random.Random(6))
    assert len(_spread(partitioner, b"hello")) == 10


def test_injected_rng_makes_random_choices_reproducible() -> None:
    draws = [Partitioner(CRC, rng=random.Random(9)).partition(b"", 1000) for _ in range(2)]
    assert draws[0] == draws[1]


@pytest.mark.parametrize(
    ("text", "algorithm"),
    [("", CRC), ("crc32", CRC), ("murmur2", MURMUR2), ("fnv-1a", FNV1A)],
)
def test_parse_algorithm(text: str, algorithm: PartitionAlgorithm) -> None:
    assert PartitionAlgorithm.parse(text) is algorithm


@pytest.mark.parametrize("text", ["crc32c", "CRC32", "fnv1a", "murmur3", "random"])
def test_parse_algorithm_rejects_unknown_names(text: str) -> None:
    with pytest.raises(ValueError, match=f"invalid partition algorithm: '{text}'"):
        PartitionAlgorithm.parse(text)


_LIBRDKAFKA_PARTITIONER = {
    CRC: "consistent_random",
    MURMUR2: "murmur2_random",
    FNV1A: "fnv1a_random",
}


@pytest.mark.parametrize("algorithm", list(PartitionAlgorithm))
def test_matches_librdkafka_partitioners_on_its_mock_cluster(
    algorithm: PartitionAlgorithm,
) -> None:
    """Cross-check against librdkafka itself, with no broker: `test.mock.num.brokers` starts
    librdkafka's in-process mock cluster, whose auto-created topics have a fixed partition count
    (4). The same check on a real broker with other partition counts is the lead's kafka test."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    producer = confluent_kafka.Producer(
        {
            "test.mock.num.brokers": 1,
            "partitioner": _LIBRDKAFKA_PARTITIONER[algorithm],
            "log_level": 0,
        }
    )
    keys = [f"alert-{i}:host=h{i % 7}".encode() for i in range(200)]
    keys += [b"hello", b"23456", b"hejsan", b"kapacitor/cpu/serverA", b"a"]
    if algorithm is not CRC:
        keys.append(b"")
    delivered: dict[bytes, int] = {}

    def on_delivery(err: Any, msg: Any) -> None:
        assert err is None
        delivered[msg.key()] = msg.partition()

    for key in keys:
        producer.produce("partition-check", key=key, value=b"x", on_delivery=on_delivery)
    assert producer.flush(10) == 0
    num_partitions = len(
        producer.list_topics("partition-check").topics["partition-check"].partitions
    )
    assert num_partitions > 1
    ours = Partitioner(algorithm)
    assert delivered == {key: ours.partition(key, num_partitions) for key in keys}
