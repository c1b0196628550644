"""Where each relayed record goes: source topic → target topic, and which target partition.

Three partition rules:

- `same` (default): the source partition number. Refused when the target topic has fewer
  partitions than the source, because the records would have nowhere right to go.
- a fixed partition number: every record of the topic goes there.
- `key-hash`: the partition Java's default partitioner picks for the key,
  `(murmur2(key) & 0x7fffffff) % partitions`, so consumers that rely on key→partition on the
  target see the same placement a Java producer would give. A record without a key stays with its
  source partition (modulo the target count): deterministic, and it keeps a keyless stream in
  order, where Java's sticky choice would scatter it.

`sources_by_target` tells the resume logic which source partitions can land in each target
partition; `fans_out` tells it which source partitions spread over several.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from kafkaops.kafka.partitioners import murmur2_hash

SourceKey = tuple[str, int]
"""A source partition: (topic, partition)."""
TargetKey = tuple[str, int]
"""A target partition: (topic, partition)."""

PartitionRule = Literal["same", "key-hash"] | int
Partitioner = Callable[[int, bytes | None], int]
"""(source partition, key) → target partition, for one route and one target partition count."""

_LEGAL_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")


class PartitionMappingError(ValueError):
    """The topic map does not fit the partition counts the clusters report."""


def murmur2_partition(key: bytes, num_partitions: int) -> int:
    """The partition Java's default partitioner gives a non-null key."""
    if num_partitions <= 0:
        raise ValueError(f"partition count must be positive, got {num_partitions}")
    return (murmur2_hash(key) & 0x7FFFFFFF) % num_partitions


def check_topic_name(name: str) -> str:
    """Kafka's own rule (legal characters, ≤ 249, not '.' or '..'), so typos fail at load time."""
    if not _LEGAL_TOPIC.fullmatch(name) or name in (".", ".."):
        raise ValueError(
            f"{name!r} is not a valid Kafka topic name (letters, digits, '.', '_', '-'; "
            "at most 249 characters)"
        )
    return name


@dataclass(frozen=True, slots=True)
class TopicRoute:
    """One source topic copied to one target topic."""

    source: str
    target: str
    partition: PartitionRule = "same"

    def __post_init__(self) -> None:
        check_topic_name(self.source)
        check_topic_name(self.target)
        rule = self.partition
        if isinstance(rule, bool) or not (
            rule in ("same", "key-hash") or (isinstance(rule, int) and rule >= 0)
        ):
            raise ValueError(
                f"partition {rule!r} for topic {self.source!r}: expected 'same', 'key-hash' "
                "or a partition number ≥ 0"
            )

    @classmethod
    def parse(cls, spec: str) -> TopicRoute:
        """Read kaf-relay's `--topic source:target[:partition]`; `key-hash` may stand for the
        partition number."""
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"topic {spec!r}: expected source:target or source:target:partition")
        if len(parts) == 2:
            return cls(parts[0], parts[1])
        rule = parts[2]
        if rule in ("same", "key-hash"):
            return cls(parts[0], parts[1], rule)
        if not rule.isdigit():
            raise ValueError(f"topic {spec!r}: partition {rule!r} is not a number (or 'key-hash')")
        return cls(parts[0], parts[1], int(rule))

    def spec(self) -> str:
        """The `source:target[:partition]` spelling `parse` reads back."""
        if self.partition == "same":
            return f"{self.source}:{self.target}"
        return f"{self.source}:{self.target}:{self.partition}"

    def partitioner(self, target_partitions: int) -> Partitioner:
        """A function for the hot path: no rule dispatch per record."""
        if target_partitions <= 0:
            raise ValueError(f"target topic {self.target!r} has no partitions")
        rule = self.partition
        if rule == "same":
            return _same
        if rule == "key-hash":
            n = target_partitions

            def by_key(source_partition: int, key: bytes | None) -> int:
                if key is None:
                    return source_partition % n
                return (murmur2_hash(key) & 0x7FFFFFFF) % n

            return by_key
        fixed = int(rule)
        return lambda _source_partition, _key: fixed

    def targets_of(self, source_partition: int, target_partitions: int) -> range | tuple[int, ...]:
        """Every target partition a record of `source_partition` may land in."""
        if self.partition == "same":
            return (source_partition,)
        if self.partition == "key-hash":
            return range(target_partitions)
        return (int(self.partition),)


def _same(source_partition: int, _key: bytes | None) -> int:
    return source_partition


class TopicMap:
    """The routes of one relay, checked against each other."""

    def __init__(self, routes: Iterable[TopicRoute]) -> None:
        self.routes: tuple[TopicRoute, ...] = tuple(routes)
        if not self.routes:
            raise ValueError("a relay needs at least one topic")
        self._by_source: dict[str, TopicRoute] = {}
        for route in self.routes:
            if route.source in self._by_source:
                raise ValueError(
                    f"source topic {route.source!r} is mapped twice "
                    f"(to {self._by_source[route.source].target!r} and {route.target!r})"
                )
            self._by_source[route.source] = route

    def route(self, source_topic: str) -> TopicRoute:
        return self._by_source[source_topic]

    @property
    def source_topics(self) -> tuple[str, ...]:
        return tuple(r.source for r in self.routes)

    @property
    def target_topics(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.target for r in self.routes))

    def validate(self, source_counts: Mapping[str, int], target_counts: Mapping[str, int]) -> None:
        """Refuse a map that would write to a missing or wrong partition; lists every problem."""
        problems: list[str] = []
        for route in self.routes:
            src = source_counts.get(route.source)
            dst = target_counts.get(route.target)
            if src is None:
                problems.append(f"source topic {route.source!r} does not exist")
            if dst is None:
                problems.append(f"target topic {route.target!r} does not exist")
            if src is None or dst is None:
                continue
            if route.partition == "same" and dst < src:
                problems.append(
                    f"topic {route.source!r} has {src} partitions but target topic "
                    f"{route.target!r} has only {dst}: partition-preserving copy needs at least "
                    f"{src} (add partitions to the target, or map with a fixed partition or "
                    "key-hash)"
                )
            elif isinstance(route.partition, int) and route.partition >= dst:
                problems.append(
                    f"topic {route.source!r} is mapped to partition {route.partition} of "
                    f"{route.target!r}, which has only {dst} partitions (0..{dst - 1})"
                )
        if problems:
            raise PartitionMappingError("; ".join(problems))

    def sources_by_target(
        self, source_counts: Mapping[str, int], target_counts: Mapping[str, int]
    ) -> dict[TargetKey, frozenset[SourceKey]]:
        """For each target partition, the source partitions whose records may land there."""
        self.validate(source_counts, target_counts)
        out: dict[TargetKey, set[SourceKey]] = {}
        for route in self.routes:
            n = target_counts[route.target]
            for p in range(source_counts[route.source]):
                for t in route.targets_of(p, n):
                    out.setdefault((route.target, t), set()).add((route.source, p))
        return {k: frozenset(v) for k, v in out.items()}

    def fans_out(self, target_counts: Mapping[str, int]) -> frozenset[str]:
        """Source topics whose partitions spread over several target partitions."""
        return frozenset(
            r.source
            for r in self.routes
            if r.partition == "key-hash" and target_counts.get(r.target, 0) > 1
        )
