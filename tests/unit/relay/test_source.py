from __future__ import annotations

import threading
from types import SimpleNamespace

from kafkaops.config import Config
from kafkaops.config.loader import validate
from kafkaops.relay.failover import SourceHealth
from kafkaops.relay.source import HealthMonitor, all_partitions, consumer_overrides


class FakePool:
    """Answers health checks from a script; counts how often each source was asked."""

    def __init__(self, sources: list[str]) -> None:
        self.relay = SimpleNamespace(sources=sources)
        self.timeout = 0.1
        self.asked: dict[str, int] = dict.fromkeys(sources, 0)
        self.down: set[str] = set()
        self._lock = threading.Lock()

    def check(self, name: str) -> SourceHealth:
        with self._lock:
            self.asked[name] += 1
        if name in self.down:
            return SourceHealth(name, error="connection refused")
        return SourceHealth(name, {("t", 0): 10})


def test_source_reads_are_committed_only_and_never_jump_silently() -> None:
    config = validate(
        Config,
        {
            "kafka": [{"id": "a", "brokers": ["h:1"]}, {"id": "b", "brokers": ["h:2"]}],
            "relay": {"sources": ["a"], "target": "b", "topics": ["t:t"]},
        },
        "test",
    )
    out = consumer_overrides(config.relay[0])
    assert out["isolation.level"] == "read_committed"
    assert out["auto.offset.reset"] == "error"
    assert out["enable.partition.eof"] is True
    assert out["enable.auto.commit"] is False


def test_all_partitions() -> None:
    assert all_partitions({"a": 2, "b": 1}) == [("a", 0), ("a", 1), ("b", 0)]


def test_health_rounds_check_every_source_and_publish_a_generation() -> None:
    pool = FakePool(["a", "b"])
    pool.down.add("b")
    monitor = HealthMonitor(pool, interval=0.01)  # type: ignore[arg-type]
    monitor.start()
    try:
        first = monitor.wait(0, timeout=10)
        assert first >= 1
        assert {h.name: h.healthy for h in monitor.latest} == {"a": True, "b": False}
        pool.down.clear()
        later = monitor.wait(first, timeout=10)
        later = monitor.wait(later, timeout=10)
        assert later > first
        assert all(h.healthy for h in monitor.latest)
        assert pool.asked["a"] >= 2 and pool.asked["b"] >= 2
    finally:
        monitor.close()
    assert monitor.wait(10**9, timeout=0.01) == monitor.generation  # closed: no blocking
