"""Kafka partitioners, computed in our code exactly as the client libraries compute them.

Alerting (partition by alert ID) and the relay (key-hash target partitions) need a chosen hash so
that records land where other clients with the same key put theirs: crc32 (librdkafka's and
confluent-kafka-go's `consistent_random`), murmur2 (the Java client's default partitioner) or
fnv-1a (sarama's default hash partitioner).
Callers pass the computed partition explicitly to the producer, so the choice does not depend on
which partitioner the underlying client library happens to have.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from enum import StrEnum

_MASK32 = 0xFFFFFFFF
_MURMUR2_SEED = 0x9747B28C
_MURMUR2_M = 0x5BD1E995
_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 16777619


class PartitionAlgorithm(StrEnum):
    """The values Kapacitor accepts for `partitionAlgorithm` / `.partitionHashAlgorithm()`."""

    CRC32 = "crc32"
    MURMUR2 = "murmur2"
    FNV1A = "fnv-1a"

    @classmethod
    def parse(cls, text: str) -> PartitionAlgorithm:
        """Map an option value to an algorithm; an empty value means the crc32 default."""
        if text == "":
            return cls.CRC32
        try:
            return cls(text)
        except ValueError:
            allowed = ", ".join(a.value for a in cls)
            raise ValueError(
                f"invalid partition algorithm: {text!r} (expected one of {allowed})"
            ) from None


def crc32_hash(key: bytes) -> int:
    """CRC-32/IEEE as librdkafka's consistent partitioner computes it (unsigned)."""
    return zlib.crc32(key)


def murmur2_hash(key: bytes) -> int:
    """Kafka's Java `Utils.murmur2` as an unsigned 32-bit value.

    Written here rather than imported: the hash libraries on PyPI (mmh3 and friends) implement
    murmur3, and the packages that carry Kafka's exact murmur2 are whole Kafka clients.
    """
    length = len(key)
    h = (_MURMUR2_SEED ^ length) & _MASK32
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(key[i : i + 4], "little")
        k = (k * _MURMUR2_M) & _MASK32
        k ^= k >> 24
        k = (k * _MURMUR2_M) & _MASK32
        h = (h * _MURMUR2_M) & _MASK32
        h ^= k
    tail = length % 4
    if tail >= 3:
        h ^= key[whole + 2] << 16
    if tail >= 2:
        h ^= key[whole + 1] << 8
    if tail >= 1:
        h ^= key[whole]
        h = (h * _MURMUR2_M) & _MASK32
    h ^= h >> 13
    h = (h * _MURMUR2_M) & _MASK32
    h ^= h >> 15
    return h


def fnv1a_32(key: bytes) -> int:
    """32-bit FNV-1a, the hash behind sarama's `NewHashPartitioner` (unsigned)."""
    h = _FNV32_OFFSET
    for byte in key:
        h ^= byte
        h = (h * _FNV32_PRIME) & _MASK32
    return h


def _to_int32(h: int) -> int:
    return h - (1 << 32) if h >= 1 << 31 else h


def crc32_partition(key: bytes, num_partitions: int) -> int:
    """Partition for a non-empty key under crc32: unsigned hash modulo the count."""
    return crc32_hash(key) % num_partitions


def murmur2_partition(key: bytes, num_partitions: int) -> int:
    """Partition under murmur2: Java's `toPositive` (mask the sign bit) then modulo."""
    return (murmur2_hash(key) & 0x7FFFFFFF) % num_partitions


def fnv1a_partition(key: bytes, num_partitions: int) -> int:
    """Partition under fnv-1a as sarama computes it.

    Sarama takes the hash as a signed int32, applies Go's truncated `%`, then negates a
    negative result; that equals |int32(h)| mod n, including h = 0x80000000 (|h| = 2**31).
    """
    return abs(_to_int32(fnv1a_32(key))) % num_partitions


_HASHED: dict[PartitionAlgorithm, Callable[[bytes, int], int]] = {
    PartitionAlgorithm.CRC32: crc32_partition,
    PartitionAlgorithm.MURMUR2: murmur2_partition,
    PartitionAlgorithm.FNV1A: fnv1a_partition,
}


class Partitioner:
    """Chooses the partition for one alert message, as Kapacitor's Kafka handler does.

    Keys that the algorithm does not hash go to a uniformly random partition: a missing key
    for every algorithm, and also an empty key for crc32 (Kapacitor's crc32 partitioner and
    librdkafka's `consistent_random` treat an empty key like a missing one, while murmur2 and
    fnv-1a hash the empty string). With `partition_by_id` off every message goes to a random
    partition, so an alert ID has no partition affinity.

    `rng` is injectable so tests and replays are deterministic.
    """

    def __init__(
        self,
        algorithm: PartitionAlgorithm = PartitionAlgorithm.CRC32,
        *,
        partition_by_id: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        self.algorithm = algorithm
        self.partition_by_id = partition_by_id
        self._rng = rng if rng is not None else random.Random()
        self._hashed = _HASHED[algorithm]

    def partition(self, key: bytes | None, num_partitions: int) -> int:
        """Partition index in [0, num_partitions) for `key`; the index is the partition ID
        for ordinary topics, whose partition IDs are 0..n-1."""
        if num_partitions <= 0:
            raise ValueError(f"number of partitions must be positive, got {num_partitions}")
        if not self.partition_by_id or key is None:
            return self._rng.randrange(num_partitions)
        if not key and self.algorithm is PartitionAlgorithm.CRC32:
            return self._rng.randrange(num_partitions)
        return self._hashed(key, num_partitions)
