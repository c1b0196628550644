"""Failover mode between real clusters holding the same data.

Sources are identical copies (same records, keys and timestamps, in the same order per
partition), the setup kaf-relay documents. Positions move between them by timestamp, the
default, so these tests also cover the re-read window and its dedupe.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kafkaops.relay.position import Stamps
from kafkaops.testing import LocalCluster, free_port, wait_for

from .conftest import (
    Feed,
    finish,
    load,
    read_all,
    relay_config,
    relay_process,
    running,
    topic,
    verify,
    write_config,
)


@pytest.fixture(scope="module")
def stoppable() -> Iterator[LocalCluster]:
    with LocalCluster(name="relay-a") as cluster:
        yield cluster


@pytest.fixture
def source_a(stoppable: LocalCluster) -> LocalCluster:
    """A source tests stop: started again (only) when the previous test left it down."""
    if not stoppable.members[0].running:
        stoppable.start_node(0)
    return stoppable


@pytest.fixture(scope="session")
def source_b(kafka_clusters: Callable[[str], LocalCluster]) -> LocalCluster:
    return kafka_clusters("relay-b")


def origins(cluster: LocalCluster, name: str) -> Counter[str]:
    """How many target records came from each source cluster (by their position headers)."""
    counts: Counter[str] = Counter()
    stamps: dict[int, Stamps] = {}
    for m in read_all(cluster, name):
        stamp = stamps.setdefault(m.partition(), Stamps()).of(m.headers())
        assert stamp is not None
        counts[stamp.cluster] += 1
    return counts


def test_source_stopped_mid_stream_b_takes_over_and_a_returns_only_by_the_rules(
    source_a: LocalCluster, source_b: LocalCluster, dst: LocalCluster, unique: str
) -> None:
    name = topic(source_a, unique, 3)
    topic(source_b, name, 3)
    topic(dst, name, 3)
    feed = Feed([source_a, source_b], name, streams=3)
    feed.send(8_000)
    document = relay_config({"a": source_a, "b": source_b, "t": dst}, {
        "mode": "failover",
        "sources": ["a", "b"],
        "target": "t",
        "topics": [f"{name}:{name}"],
        "source_pool": {"healthcheck_interval": "300ms", "request_timeout": "1s",
                        "offset_lag_threshold": 100, "backoff_min": "100ms",
                        "backoff_max": "500ms"},
        # A small window keeps most of the backlog on the source when a dies (records the
        # consumer fetched ahead are dropped at a switch: the position is the acknowledged one).
        "producer": {"buffer_size": 50, "flush_frequency": "5ms"},
    })  # fmt: skip
    with running(load(document)) as relay:
        wait_for(lambda: relay.stats.acked >= 2_000, 60, interval=0.005, what="relaying a")
        source_a.stop_node(0, kill=True)  # mid-stream: most of the backlog is still to copy
        assert relay.selector.current == "a"
        wait_for(lambda: relay.selector.current == "b", 30, what="switch to b")
        feed.send(1_000, only=[1])  # a is down: only b has these
        expected = sum(feed.expected.values())
        wait_for(lambda: relay.stats.acked >= expected, 60, what="b's records relayed")

        # a comes back behind b (it lacks the last records): the relay stays on b.
        source_a.start_node(0)
        wait_for(lambda: relay.health()["sources"]["a"] == "ok", 60, what="a healthy again")
        checks = relay.monitor.generation
        wait_for(lambda: relay.monitor.generation >= checks + 3, 30, what="three more checks")
        assert relay.selector.current == "b"

        # a catches up, then gets ahead of b by more than the threshold: now the rules pick a.
        feed.resend(0, {s: n - 1_000 for s, n in feed.expected.items()})
        feed.send(300, only=[0])
        wait_for(lambda: relay.selector.current == "a", 30, what="switch back to a")
        expected = sum(feed.expected.values())
        wait_for(lambda: relay.stats.acked >= expected, 60, what="a's new records relayed")
        assert relay.stats.lag_threshold_exceeded["a"] >= 1
        assert relay.stats.candidate_switches >= 3
    report = verify(dst, name, feed.expected)
    assert report.ok, report
    came_from = origins(dst, name)
    assert came_from["b"] >= 3_000 + 1_000  # b copied part of the backlog, not just its own
    assert came_from["a"] >= 2_000 + 900


def test_a_lagging_source_is_never_chosen(
    src: LocalCluster, source_b: LocalCluster, dst: LocalCluster, unique: str
) -> None:
    """b comes first in preference order but is 200 records behind a (threshold 100): the
    relay reads a from the start, and keeps reading it."""
    name = topic(src, unique, 2)
    topic(source_b, name, 2)
    topic(dst, name, 2)
    feed = Feed([src, source_b], name, streams=2)
    feed.send(500)
    feed.send(200, only=[0])
    document = relay_config({"a": src, "b": source_b, "t": dst}, {
        "mode": "failover",
        "sources": ["b", "a"],
        "target": "t",
        "topics": [f"{name}:{name}"],
        "source_pool": {"healthcheck_interval": "300ms", "request_timeout": "1s",
                        "offset_lag_threshold": 100},
    })  # fmt: skip
    with running(load(document)) as relay:
        wait_for(lambda: relay.stats.acked >= 1_400, 60, what="a's records relayed")
        checks = relay.monitor.generation
        wait_for(lambda: relay.monitor.generation >= checks + 3, 30, what="three more checks")
        assert relay.selector.current == "a"
        assert relay.stats.source_connections == {"a": 1}
    assert origins(dst, name) == {"a": 1_400}


def test_max_retries_exhausted_ends_the_relay_with_a_clear_message(
    dst: LocalCluster, unique: str, tmp_path: Path
) -> None:
    name = topic(dst, unique, 1)
    dead = {"id": "gone", "brokers": [f"127.0.0.1:{free_port()}"], "timeout": "1s"}
    document = relay_config({"t": dst}, {
        "sources": ["gone"],
        "target": "t",
        "topics": [f"{name}:{name}-copy"],
        "source_pool": {"healthcheck_interval": "200ms", "request_timeout": "300ms",
                        "max_retries": 2, "backoff_min": "50ms", "backoff_max": "100ms"},
    })  # fmt: skip
    document["kafka"].append(dead)
    code, err = finish(relay_process(write_config(tmp_path / "r.toml", document)), timeout=60)
    assert code == 1, err
    assert "kafkaops relay: relay 'relay': gave up after 3 failed attempts (max_retries = 2)" in err
    assert "gone:" in err
    assert "Traceback" not in err


def test_offset_mapped_switch_to_a_source_slightly_behind_waits_for_it(
    source_a: LocalCluster, source_b: LocalCluster, dst: LocalCluster, unique: str
) -> None:
    """b is 50 behind (within the threshold) when a dies: the relay must neither jump to b's
    end (loss) nor fall back to its start (duplicates); it waits until b has caught up."""
    name = topic(source_a, unique, 1)
    topic(source_b, name, 1)
    topic(dst, name, 1)
    feed = Feed([source_a, source_b], name, streams=1)
    feed.send(400)
    feed.send(50, only=[0])
    document = relay_config({"a": source_a, "b": source_b, "t": dst}, {
        "mode": "failover",
        "sources": ["a", "b"],
        "target": "t",
        "topics": [f"{name}:{name}"],
        "position_mapping": "offset",
        "source_pool": {"healthcheck_interval": "300ms", "request_timeout": "1s",
                        "offset_lag_threshold": 100, "backoff_min": "100ms",
                        "backoff_max": "500ms"},
    })  # fmt: skip
    with running(load(document)) as relay:
        wait_for(lambda: relay.stats.acked == 450, 60, what="a's records relayed")
        source_a.stop_node(0, kill=True)
        wait_for(lambda: relay.selector.current == "b", 30, what="switch to b")
        checks = relay.monitor.generation
        wait_for(lambda: relay.monitor.generation >= checks + 2, 30, what="two checks")
        assert relay.stats.acked == 450
        feed.resend(1, {0: 400})
        feed.send(20, only=[1])
        wait_for(lambda: relay.stats.acked == 470, 60, what="b's new records relayed")
        assert relay.stats.source_kafka_errors["b", "fetch_error"] == 0
    report = verify(dst, name, feed.expected)
    assert report.ok, report
    assert origins(dst, name) == {"a": 450, "b": 20}
