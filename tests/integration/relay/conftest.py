"""Real clusters for the relay: shared source and target, sequence-numbered data, a verifier.

Every record is a `kafkaops.testing.sequence` record: stream = the source partition it was
produced to, seq = its number in that stream, so reading the target back tells per partition
what is missing, duplicated or out of order. Clusters a test stops are its own (`LocalCluster`
in a module fixture); the rest are shared and tests keep apart by unique topic names.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from confluent_kafka import KafkaError, Producer, TopicPartition

from kafkaops.config import Config
from kafkaops.config.loader import validate
from kafkaops.kafka import ClusterClients
from kafkaops.relay.pipeline import Relay
from kafkaops.testing import LocalCluster, free_port, wait_for
from kafkaops.testing.records import create_topic
from kafkaops.testing.sequence import SequenceGenerator, SequenceReport, SequenceVerifier

KAFKAOPS = [sys.executable, "-m", "kafkaops"]

FAST_POOL = {
    "healthcheck_interval": "300ms",
    "request_timeout": "1s",
    "backoff_min": "100ms",
    "backoff_max": "500ms",
}
FAST_PRODUCER = {"backoff_min": "100ms", "backoff_max": "500ms", "flush_frequency": "5ms"}


@pytest.fixture(scope="session")
def src(kafka_clusters: Callable[[str], LocalCluster]) -> LocalCluster:
    return kafka_clusters("relay-src")


@pytest.fixture(scope="session")
def dst(kafka_clusters: Callable[[str], LocalCluster]) -> LocalCluster:
    return kafka_clusters("relay-dst")


def clients(cluster: LocalCluster, cid: str | None = None) -> ClusterClients:
    config = validate(Config, {"kafka": [cluster.cluster_section(cid or cluster.name)]}, "test")
    return ClusterClients(config.cluster(cid or cluster.name))


def topic(cluster: LocalCluster, name: str, partitions: int, **config: str) -> str:
    create_topic(clients(cluster).admin(), name, partitions=partitions, config=config or None)
    return name


@dataclass
class Feed:
    """Writes sequence records to one topic of one or more clusters (identical copies)."""

    clusters: list[LocalCluster]
    topic: str
    streams: int
    size: int = 100
    run_id: int = 7
    timestamp_ms: int = field(default_factory=lambda: int(time.time() * 1000) - 3_600_000)
    """An hour back: recent enough for retention, and timestamps grow with the sequence."""
    gen: SequenceGenerator = field(init=False)
    producers: list[Producer] = field(init=False)

    def __post_init__(self) -> None:
        self.gen = SequenceGenerator(self.run_id, self.size)
        self.producers = [
            clients(c).producer(**{"linger.ms": 5, "enable.idempotence": True})
            for c in self.clusters
        ]

    def send(self, per_stream: int, *, only: list[int] | None = None) -> None:
        """`per_stream` more records on every stream, to every cluster (or those in `only`).

        Timestamps grow by 1 ms every 4 records of a stream, so timestamp lookups land inside
        runs of equal timestamps: the case the relay's boundary dedupe exists for.
        """
        targets = [self.producers[i] for i in (only or range(len(self.producers)))]
        for stream, key, value in self.gen.round_robin(self.streams, per_stream):
            seq = self.gen.sent[stream] - 1
            for p in targets:
                _produce(p, self.topic, value, key, partition=stream,
                         ts=self.timestamp_ms + seq // 4)  # fmt: skip
        for p in targets:
            assert p.flush(60) == 0, "feed not delivered"

    def resend(self, cluster_index: int, start: dict[int, int]) -> None:
        """Copy records from `start[stream]` up to what was sent, to one cluster only."""
        p = self.producers[cluster_index]
        for stream, first in start.items():
            for seq in range(first, self.gen.sent[stream]):
                value = self.gen.value(stream, seq)
                _produce(p, self.topic, value, self.gen.key(stream, seq), partition=stream,
                         ts=self.timestamp_ms + seq // 4)  # fmt: skip
        assert p.flush(60) == 0

    @property
    def expected(self) -> dict[int, int]:
        return dict(self.gen.sent)


def _produce(p: Producer, topic: str, value: bytes, key: bytes, *, partition: int, ts: int) -> None:
    while True:
        try:
            p.produce(topic, value, key, partition=partition, timestamp=ts)
            return
        except BufferError:
            p.poll(0.1)


class Streamer:
    """A background feed at a steady pace, for relays that must be stopped mid-stream."""

    def __init__(self, feed: Feed, per_tick: int, tick: float = 0.02) -> None:
        self.feed = feed
        self.per_tick = per_tick
        self.tick = tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Streamer:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            self.feed.send(self.per_tick)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def end_offsets(cluster: LocalCluster, name: str) -> dict[int, int]:
    c = clients(cluster).consumer("offsets")
    try:
        md = c.list_topics(name, timeout=10)
        return {
            p: c.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1]
            for p in md.topics[name].partitions
        }
    finally:
        c.close()


def read_all(cluster: LocalCluster, name: str, timeout: float = 60.0) -> list[Any]:
    """Every committed record of the topic, partition by partition in offset order."""
    c = clients(cluster).consumer(
        "verify", **{"isolation.level": "read_committed", "enable.partition.eof": True}
    )
    try:
        md = c.list_topics(name, timeout=10)
        parts = sorted(md.topics[name].partitions)
        c.assign([TopicPartition(name, p, 0) for p in parts])
        pending, out = set(parts), []
        deadline = time.monotonic() + timeout
        while pending:
            assert time.monotonic() < deadline, f"reading {name}: partitions {pending} unfinished"
            for m in c.consume(1000, 0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        pending.discard(m.partition())
                        continue
                    raise AssertionError(m.error().str())
                out.append(m)
        return out
    finally:
        c.close()


def verify(
    cluster: LocalCluster, name: str, expected: dict[int, int], *, same_partition: bool = True
) -> SequenceReport:
    v = SequenceVerifier(run_id=7)
    for m in read_all(cluster, name):
        v.observe_value(m.value(), m.partition() if same_partition else None)
    return v.report(expected)


def relay_config(
    kafka: dict[str, LocalCluster], relay: dict[str, Any], *, http_port: int | None = None
) -> dict[str, Any]:
    """A whole config document: `[[kafka]]` per cluster id, one `[relay]`."""
    relay = {"source_pool": dict(FAST_POOL), "producer": dict(FAST_PRODUCER)} | relay
    return {
        "http": {"bind-address": f"127.0.0.1:{http_port or free_port()}"},
        "kafka": [c.cluster_section(cid, timeout="3s") for cid, c in kafka.items()],
        "relay": relay,
    }


def load(document: dict[str, Any]) -> Config:
    return validate(Config, document, "test")


def write_config(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(tomli_w.dumps(document))
    return path


@contextlib.contextmanager
def running(config: Config, **kwargs: Any) -> Iterator[Relay]:
    """The config's relay on a thread; stopped (and its error re-raised) on exit."""
    cache: dict[str, ClusterClients] = {}
    relay = Relay(
        config.relay[0], lambda cid: cache.setdefault(cid, ClusterClients(config.cluster(cid))),
        **kwargs,
    )  # fmt: skip
    failure: list[BaseException] = []

    def work() -> None:
        try:
            relay.run()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        relay.stop()
        thread.join(60)
        assert not thread.is_alive(), "relay did not stop"
    if failure:
        raise failure[0]


def relay_process(config_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*KAFKAOPS, "relay", "--config", str(config_path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def kill9(proc: subprocess.Popen[str]) -> str:
    """SIGKILL (no cleanup of any kind); returns what the process logged."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    return proc.communicate(timeout=30)[1]


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill9(proc)
        raise
    return proc.returncode, err


def total(offsets: dict[int, int]) -> int:
    return sum(offsets.values())


def wait_total(cluster: LocalCluster, name: str, at_least: int, timeout: float = 60) -> int:
    return wait_for(
        lambda: (t := total(end_offsets(cluster, name))) >= at_least and t,
        timeout,
        what=f"{at_least} records in {name}",
    )
