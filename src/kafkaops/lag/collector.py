"""Stage 1 of the lag pipeline: what the cluster says right now.

Per iteration and cluster: list the consumer groups, keep those the filters admit (and this
instance owns), fetch each group's committed offsets with bounded concurrency, then fetch the end
offset of every partition those groups read in ONE ListOffsets call over de-duplicated
partitions: librdkafka looks up the leader of each (topic, partition) and sends one request per
leader broker, so the cost grows with brokers, not with groups.

`collect` blocks; the monitor runs it in a worker thread. The admin futures complete in
librdkafka's background thread, and waiting on them from one thread (instead of hopping each of
tens of thousands of futures onto the event loop) keeps the loop free to serve /metrics.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from kafkaops.kafka import ClusterClients

TopicPartitionKey = tuple[str, int]

LIVE_STATES = frozenset({"Stable", "PreparingRebalance", "CompletingRebalance", "Assigning"})
"""Group states in which the group has members (anything else is Empty, Dead or Unknown)."""

_STATE_NAMES = {
    "STABLE": "Stable",
    "EMPTY": "Empty",
    "DEAD": "Dead",
    "PREPARING_REBALANCING": "PreparingRebalance",
    "COMPLETING_REBALANCING": "CompletingRebalance",
    "ASSIGNING": "Assigning",
    "RECONCILING": "Reconciling",
    "UNKNOWN": "Unknown",
}


@dataclass(slots=True)
class GroupOffsets:
    """One group's committed offsets (partitions without a commit are left out)."""

    group: str
    state: str
    """Kafka's name for the group state: Stable, Empty, PreparingRebalance, ..."""
    committed: dict[TopicPartitionKey, int]

    @property
    def has_members(self) -> bool:
        return self.state in LIVE_STATES


@dataclass
class Collection:
    """One iteration's raw facts about one cluster."""

    cluster: str
    taken_at: float
    """Wall-clock seconds when the end offsets were asked for: the history's time axis."""
    groups: list[GroupOffsets]
    end_offsets: dict[TopicPartitionKey, int]
    errors: list[str] = field(default_factory=list)
    groups_listed: int = 0
    """Groups the filters admitted, before this instance's share was taken."""


class CollectError(RuntimeError):
    """The cluster could not be asked at all (unreachable, not authorised)."""


def state_name(state: object) -> str:
    """Kafka's spelling of a confluent-kafka ConsumerGroupState."""
    name = getattr(state, "name", str(state))
    return _STATE_NAMES.get(name, name.title())


class Collector:
    """Reads groups, committed offsets and end offsets from one cluster (blocking calls)."""

    def __init__(
        self,
        clients: ClusterClients,
        admits: Callable[[str], bool],
        concurrency: int = 10,
        request_timeout: float = 10.0,
    ) -> None:
        self.clients = clients
        self.admits = admits
        self.concurrency = max(1, concurrency)
        self.request_timeout = request_timeout
        self._admin: AdminClient | None = None

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = self.clients.admin()
        return self._admin

    def reset(self) -> None:
        """Forget the admin client; the next call builds a new one.

        After a broker outage librdkafka's admin client can keep failing coordinator requests
        (OffsetFetch timing out) although the broker is back; a fresh client recovers at once.
        """
        self._admin = None

    def list_groups(self, errors: list[str] | None = None) -> list[tuple[str, str]]:
        """(group id, state) for every group the filters admit; Empty groups included.

        ListGroups goes to every broker; brokers that fail are reported in `errors` (their
        groups are missing from this iteration). When no broker answered, the cluster is
        unreachable: CollectError, never an empty list that would read as "no groups".
        """
        try:
            listing = self.admin.list_consumer_groups(request_timeout=self.request_timeout).result(
                self.request_timeout + 1
            )
        except (KafkaException, concurrent.futures.TimeoutError) as exc:
            raise CollectError(f"listing consumer groups failed: {reason(exc)}") from None
        if listing.errors:
            first = reason(KafkaException(listing.errors[0]))
            if not listing.valid:
                raise CollectError(f"listing consumer groups failed: {first}")
            if errors is not None:
                errors.extend(
                    f"listing groups: {reason(KafkaException(e))}" for e in listing.errors
                )
        return [(g.group_id, state_name(g.state)) for g in listing.valid if self.admits(g.group_id)]

    def collect(self, owns: Callable[[str], bool] | None = None) -> Collection:
        """One iteration: groups, their committed offsets, then the end offsets they need.

        `owns` narrows the groups to this instance's share before any offset is fetched, so N
        instances split the OffsetFetch load instead of each doing all of it.
        """
        errors: list[str] = []
        groups = self.list_groups(errors)
        listed = len(groups)
        if owns is not None:
            groups = [(g, s) for g, s in groups if owns(g)]
        group_offsets = self.committed_offsets(groups, errors)
        partitions = {tp for g in group_offsets for tp in g.committed}
        taken_at = time.time()
        end_offsets = self.end_offsets(partitions, errors)
        return Collection(
            cluster=self.clients.id,
            taken_at=taken_at,
            groups=group_offsets,
            end_offsets=end_offsets,
            errors=errors,
            groups_listed=listed,
        )

    def committed_offsets(
        self, groups: list[tuple[str, str]], errors: list[str]
    ) -> list[GroupOffsets]:
        """One OffsetFetch per group (the client takes one group per call), at most
        `concurrency` in flight. Groups that fail are reported in `errors` and left out."""
        if not groups:
            return []
        slots = threading.BoundedSemaphore(self.concurrency)
        deadline = time.monotonic() + 3 * self.request_timeout
        pending: list[tuple[str, str, concurrent.futures.Future]] = []
        for group, state in groups:
            if not slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
                errors.append(f"{len(groups) - len(pending)} groups not fetched in time")
                break
            try:
                future = self.admin.list_consumer_group_offsets(
                    [ConsumerGroupTopicPartitions(group)], request_timeout=self.request_timeout
                )[group]
            except KafkaException as exc:
                slots.release()
                errors.append(f"group {group}: {reason(exc)}")
                continue
            future.add_done_callback(lambda _f: slots.release())
            pending.append((group, state, future))
        concurrent.futures.wait(
            [f for _, _, f in pending], timeout=max(0.0, deadline - time.monotonic()) + 1
        )
        out: list[GroupOffsets] = []
        # one (topic, partition) tuple per partition, shared by every group reading it: at
        # 50,000 group-partitions the duplicates would cost megabytes in every later stage
        canonical: dict[TopicPartitionKey, TopicPartitionKey] = {}
        for group, state, future in pending:
            if not future.done():
                future.cancel()
                errors.append(f"group {group}: offsets not fetched in time")
                continue
            try:
                result = future.result()
            except KafkaException as exc:
                errors.append(f"group {group}: {reason(exc)}")
                continue
            committed: dict[TopicPartitionKey, int] = {}
            for tp in result.topic_partitions:
                if tp.error is None and tp.offset >= 0:
                    key = (tp.topic, tp.partition)
                    committed[canonical.setdefault(key, key)] = tp.offset
            out.append(GroupOffsets(group, state, committed))
        if pending and not out and len(errors) >= len(pending):
            raise CollectError(f"no committed offsets could be fetched: {errors[0]}")
        return out

    def end_offsets(
        self, partitions: set[TopicPartitionKey], errors: list[str]
    ) -> dict[TopicPartitionKey, int]:
        """High watermarks of `partitions` in one call; deleted partitions are simply absent."""
        if not partitions:
            return {}
        request = {TopicPartition(t, p): OffsetSpec.latest() for t, p in partitions}
        try:
            futures = self.admin.list_offsets(request, request_timeout=self.request_timeout)
        except KafkaException as exc:
            raise CollectError(f"listing end offsets failed: {reason(exc)}") from None
        concurrent.futures.wait(list(futures.values()), timeout=self.request_timeout + 1)
        out: dict[TopicPartitionKey, int] = {}
        failed: list[str] = []
        for tp, future in futures.items():
            if not future.done():
                future.cancel()
                failed.append(f"{tp.topic}[{tp.partition}] end offset: request timed out")
                continue
            try:
                result = future.result()
            except KafkaException as exc:
                if not _is_unknown_partition(exc):
                    failed.append(f"{tp.topic}[{tp.partition}] end offset: {reason(exc)}")
                continue
            out[(tp.topic, tp.partition)] = result.offset
        if failed and not out:
            raise CollectError(f"listing end offsets failed: {failed[0]}")
        errors.extend(failed)
        return out


def reason(exc: BaseException) -> str:
    """A librdkafka error's own text (KafkaException wraps a KafkaError)."""
    if isinstance(exc, KafkaException) and exc.args:
        err = exc.args[0]
        return err.str() if hasattr(err, "str") else str(err)
    if isinstance(exc, TimeoutError | concurrent.futures.TimeoutError):
        return "request timed out"
    return str(exc) or type(exc).__name__


def _is_unknown_partition(exc: BaseException) -> bool:
    err = exc.args[0] if exc.args else None
    code = err.code() if hasattr(err, "code") else None
    return code in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION)
