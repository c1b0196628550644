"""The target goes away while records flow: back-pressure, then recovery with nothing lost."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kafkaops.relay.pipeline import RelayGaveUp
from kafkaops.testing import LocalCluster, wait_for

from .conftest import Feed, Streamer, load, relay_config, running, topic, verify

BUFFER = 2_000


@pytest.fixture(scope="module")
def target() -> Iterator[LocalCluster]:
    """A target this module stops and starts again."""
    with LocalCluster(name="relay-target") as cluster:
        yield cluster


def test_target_down_back_pressure_then_recovery_nothing_lost(
    src: LocalCluster, target: LocalCluster, unique: str
) -> None:
    name = topic(src, unique, 2)
    topic(target, name, 2)
    feed = Feed([src], name, streams=2)
    document = relay_config({"s": src, "t": target}, {
        "sources": ["s"],
        "target": "t",
        "topics": [f"{name}:{name}"],
        "producer": {"buffer_size": BUFFER, "request_timeout": "1s", "backoff_min": "100ms",
                     "backoff_max": "300ms", "flush_frequency": "5ms"},
    })  # fmt: skip
    with running(load(document)) as relay, Streamer(feed, per_tick=20):
        wait_for(lambda: relay.stats.acked >= 1_000, 60, what="relaying")
        target.stop_node(0)
        wait_for(lambda: relay.stats.inlet_blocks >= 1, 60, what="back-pressure")
        wait_for(lambda: relay.stats.flush_retries >= 2, 30, what="stalls counted")
        assert relay.stats.in_flight <= BUFFER
        health = relay.health()
        assert not health["target_ok"]
        assert "unacknowledged" in health["target_error"]
        target.start_node(0)
        wait_for(lambda: relay.health()["target_ok"], 60, what="target acknowledging again")
    # The streamer stopped first (exits before the relay): let a fresh relay finish the copy.
    expected = sum(feed.expected.values())
    document["relay"]["stop_at_end"] = True
    with running(load(document)) as relay:
        wait_for(lambda: relay.state == "finished", 60, what="stop-at-end")
    report = verify(target, name, feed.expected)
    assert report.ok, report
    assert report.received == expected


def test_target_retries_exhausted_gives_up(
    src: LocalCluster, target: LocalCluster, unique: str
) -> None:
    name = topic(src, unique, 1)
    topic(target, name, 1)
    feed = Feed([src], name, streams=1)
    document = relay_config({"s": src, "t": target}, {
        "sources": ["s"],
        "target": "t",
        "topics": [f"{name}:{name}"],
        "producer": {"max_retries": 1, "request_timeout": "500ms", "backoff_min": "100ms",
                     "backoff_max": "200ms"},
    })  # fmt: skip
    gave_up = pytest.raises(RelayGaveUp, match=r"target 't' failed 2 times .*max_retries = 1")
    try:
        with gave_up, running(load(document)) as relay:
            feed.send(10)
            wait_for(lambda: relay.stats.acked == 10, 60, what="relaying")
            target.stop_node(0)
            feed.send(10)
            wait_for(lambda: relay.state == "failed", 60, what="gave up")
    finally:
        target.start_node(0)
