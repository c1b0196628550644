"""The lag monitor's scenario harness: traffic with known timestamps, commits at known offsets.

`Traffic` produces with explicit CreateTime timestamps and records, from the delivery reports,
which timestamp landed at which offset: that is the ground truth a lag in seconds is checked
against (now - timestamp of the record at the committed offset). Groups are made and moved by
committing offsets with the admin API, so no consumer process is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, TopicPartition

from kafkaops.config import Config
from kafkaops.config.loader import validate
from kafkaops.kafka import ClusterClients
from kafkaops.lag.monitor import LagRow, Monitor
from kafkaops.testing import LocalCluster, wait_for
from kafkaops.testing.records import create_topic

_MOVING = frozenset(
    {
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)
"""Coordinator states of a cluster that is still starting: worth another try."""


class Traffic:
    """Producers at known rates with explicit timestamps, and offset commits, on one cluster."""

    def __init__(self, clients: ClusterClients) -> None:
        self.clients = clients
        self.admin = clients.admin()
        # linger 0: a record must be visible to the monitor right after its timestamp
        self.producer = clients.producer(**{"linger.ms": 0})
        self.timestamps: dict[tuple[str, int, int], int] = {}
        self._lock = threading.Lock()
        self._streams: dict[str, float] = {}
        self._followers: dict[str, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- topics, records, commits ------------------------------------------------------------

    def topic(self, name: str, partitions: int = 1, replication: int = 1) -> str:
        create_topic(self.admin, name, partitions=partitions, replication=replication)
        return name

    def _delivered(self, err, msg) -> None:
        if err is None:
            with self._lock:
                self.timestamps[msg.topic(), msg.partition(), msg.offset()] = msg.timestamp()[1]

    def produce(self, topic: str, count: int, timestamp_ms: int | None = None, *,
                partition: int = 0, spacing_ms: int = 0) -> None:  # fmt: skip
        """`count` records, the i-th stamped timestamp_ms + i * spacing_ms (default: now)."""
        start = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        for i in range(count):
            self.producer.produce(
                topic, b"x" * 32, partition=partition, timestamp=start + i * spacing_ms,
                on_delivery=self._delivered,
            )  # fmt: skip
            if i % 1000 == 999:
                self.producer.poll(0)
        assert self.producer.flush(30) == 0, "records not delivered"

    def end_offset(self, topic: str, partition: int = 0) -> int:
        with self._lock:
            offsets = [o for (t, p, o) in self.timestamps if t == topic and p == partition]
        return max(offsets) + 1 if offsets else 0

    def commit(self, group: str, offsets: dict[tuple[str, int], int], timeout: float = 30) -> None:
        """Commit with the admin API; retried while the coordinator is still loading (a fresh
        cluster) or moving, within `timeout`."""
        request = ConsumerGroupTopicPartitions(
            group, [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        )

        def attempt() -> list[TopicPartition] | None:
            result = self.admin.alter_consumer_group_offsets([request])[group].result(timeout)
            failed = [tp for tp in result.topic_partitions if tp.error is not None]
            if any(not (tp.error.retriable() or tp.error.code() in _MOVING) for tp in failed):
                raise AssertionError(f"commit of {group} failed: {failed}")
            return None if failed else result.topic_partitions

        wait_for(attempt, timeout, what=f"commit of {group}")

    def truth(self, row: LagRow, now_ms: int) -> float:
        """Seconds since the record at the row's committed offset was written."""
        with self._lock:
            written = self.timestamps[row.topic, row.partition, row.committed]
        return (now_ms - written) / 1000

    # -- steady traffic in the background ------------------------------------------------------

    def stream(self, topic: str, rate: float) -> None:
        """Produce to partition 0 of `topic` at `rate` records/s, stamped with the wall clock."""
        with self._lock:
            self._streams[topic] = rate
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def stop_stream(self, topic: str) -> int:
        """Stop producing to `topic`; returns its end offset once every record is delivered."""
        with self._lock:
            self._streams.pop(topic, None)
            self._followers = {g: f for g, f in self._followers.items() if f[0] != topic}
        assert self.producer.flush(30) == 0
        return self.end_offset(topic)

    def follow(self, group: str, topic: str, behind_s: float) -> None:
        """Keep `group` committed at the first record written `behind_s` seconds ago."""
        with self._lock:
            self._followers[group] = (topic, behind_s)

    def _run(self) -> None:
        tick = 0.02
        credit: dict[str, float] = {}
        last_commit = 0.0
        while not self._stop.wait(tick):
            with self._lock:
                streams = dict(self._streams)
                followers = dict(self._followers)
            now_ms = int(time.time() * 1000)
            for topic, rate in streams.items():
                credit[topic] = credit.get(topic, 0.0) + rate * tick
                while credit[topic] >= 1:
                    credit[topic] -= 1
                    self.producer.produce(
                        topic, b"x" * 32, partition=0, timestamp=now_ms,
                        on_delivery=self._delivered,
                    )  # fmt: skip
            self.producer.poll(0)
            if followers and time.monotonic() - last_commit > 0.2:
                last_commit = time.monotonic()
                for group, (topic, behind_s) in followers.items():
                    offset = self.offset_written_before(topic, now_ms - behind_s * 1000)
                    if offset is not None:
                        self.commit(group, {(topic, 0): offset})

    def offset_written_before(self, topic: str, t_ms: float) -> int | None:
        """The last offset of partition 0 of `topic` stamped at or before `t_ms`."""
        with self._lock:
            older = [o for (t, p, o), ts in self.timestamps.items() if t == topic and ts <= t_ms]
        return max(older) if older else None

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.producer.flush(10)


@pytest.fixture
def traffic_factory() -> Iterator[Callable[[LocalCluster], Traffic]]:
    """Traffic on any cluster (closed after the test)."""
    made: list[Traffic] = []

    def make(cluster: LocalCluster) -> Traffic:
        made.append(Traffic(ClusterClients(make_config(cluster).cluster("main"))))
        return made[-1]

    yield make
    for t in made:
        t.close()


@pytest.fixture
def traffic(kafka: LocalCluster, traffic_factory: Callable[[LocalCluster], Traffic]) -> Traffic:
    return traffic_factory(kafka)


def make_config(cluster: LocalCluster, cluster_id: str = "main", **lag: Any) -> Config:
    """A Config with one `[[kafka]]` cluster and a `[lag]` section built from `lag` keys."""
    return validate(
        Config,
        {"kafka": [cluster.cluster_section(cluster_id, timeout="3s")], "lag": lag},
        "test",
    )


@dataclass
class Iteration:
    taken_at_ms: dict[str, int]
    rows: list[LagRow]


class Running:
    """A monitor iterating in the background; `next()` awaits its next iteration."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.queue: asyncio.Queue[Iteration] = asyncio.Queue()
        monitor.subscribe(self._seen)

    def _seen(self, rows) -> None:
        taken = {
            cid: int(c.snapshot.taken_at * 1000)
            for cid, c in self.monitor.clusters.items()
            if c.snapshot is not None
        }
        self.queue.put_nowait(Iteration(taken, list(rows)))

    async def next(self, timeout: float = 30.0) -> Iteration:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def until(self, probe: Callable[[Iteration], bool], timeout: float = 30.0,
                    what: str = "condition") -> Iteration:  # fmt: skip
        """The first iteration for which `probe` holds (bounded)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = await self.next(max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                break
            if probe(last):
                return last
        raise AssertionError(f"{what} not met within {timeout}s (last rows: {last and last.rows})")


@contextlib.asynccontextmanager
async def running(config: Config, **kwargs: Any) -> AsyncIterator[Running]:
    clients: dict[str, ClusterClients] = {}

    def clients_of(cid: str) -> ClusterClients:
        return clients.setdefault(cid, ClusterClients(config.cluster(cid)))

    monitor = Monitor(config, clients_of, **kwargs)
    handle = Running(monitor)
    task = asyncio.create_task(monitor.run())
    try:
        yield handle
    finally:
        await monitor.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
def lag_config() -> Callable[..., Config]:
    return make_config


@pytest.fixture
def run_monitor():
    return running
