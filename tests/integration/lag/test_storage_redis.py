"""History storage in a real redis-server: it survives a monitor restart (the new process
interpolates at once instead of reading records), memory storage writes nothing, and a Redis
outage degrades health while the monitor goes on from memory, recovering by itself."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from kafkaops.lag.estimator import Source
from kafkaops.lag.storage import KEY_PREFIX
from kafkaops.testing import RedisServer

pytestmark = pytest.mark.kafka

TOLERANCE_S = 0.6


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, because the test stops and restarts it."""
    with RedisServer(password="s3cret") as server:
        yield server


async def test_history_survives_restart_through_redis_and_memory_writes_nothing(
    kafka, traffic, lag_config, *, run_monitor, redis_server: RedisServer, unique: str
) -> None:
    topic = traffic.topic(f"{unique}-t")
    group = f"{unique}-g"
    traffic.commit(group, {(topic, 0): 0})
    traffic.stream(topic, 20)
    lag = {
        "iteration_interval": "0.5s",
        "clusters": [{"name": "main", "consumer_groups": {"whitelist": f"^{unique}"}}],
    }
    storage = redis_server.storage_section(retention_ttl_seconds=120)
    config = lag_config(kafka, **lag, storage=storage)
    store = redis.Redis(host="127.0.0.1", port=redis_server.port)
    key = f"{KEY_PREFIX}main:{topic}:0"

    async with run_monitor(config) as first:
        for _ in range(4):
            await first.next()
        committed = traffic.offset_written_before(topic, time.time() * 1000 - 1000)
        assert committed is not None
        traffic.commit(group, {(topic, 0): committed})

        def interpolated(it) -> bool:
            return any(
                r.committed == committed and r.source is Source.INTERPOLATION for r in it.rows
            )

        await first.until(interpolated, 10, "the first monitor interpolates the new commit")
    assert 0 < store.ttl(key) <= 120
    traffic.stop_stream(topic)

    async with run_monitor(config) as second:
        it = await second.next()
        (row,) = [r for r in it.rows if r.group == group]
        assert row.committed == committed
        assert row.source is Source.INTERPOLATION
        assert abs(row.lag_in_seconds - traffic.truth(row, it.taken_at_ms["main"])) <= TOLERANCE_S
        assert second.monitor.clusters["main"].reader.reads == 0

    memory_config = lag_config(
        kafka,
        cluster_id="mem",
        iteration_interval="0.5s",
        clusters=[{"name": "mem", "consumer_groups": {"whitelist": f"^{unique}"}}],
    )
    async with run_monitor(memory_config) as fresh:
        it = await fresh.next()
        (row,) = [r for r in it.rows if r.group == group]
        assert row.source is Source.RECORD_TIMESTAMP
    assert store.keys(f"{KEY_PREFIX}mem:*") == []


async def test_redis_outage_degrades_health_and_recovers(
    kafka, traffic, lag_config, *, run_monitor, own_redis: RedisServer, unique: str
) -> None:
    topic = traffic.topic(f"{unique}-t")
    traffic.produce(topic, 10)
    traffic.commit(f"{unique}-g", {(topic, 0): 5})
    config = lag_config(
        kafka,
        iteration_interval="0.5s",
        clusters=[{"name": "main", "consumer_groups": {"whitelist": f"^{unique}"}}],
        storage=own_redis.storage_section(),
    )
    async with run_monitor(config) as mon:
        await mon.next()
        assert mon.monitor.health().healthy

        own_redis.stop()
        it = await mon.until(lambda it: not mon.monitor.health().healthy, 20, "degraded health")
        assert [r.lag_in_offsets for r in it.rows] == [5]
        health = mon.monitor.health()
        assert health.unhealthy_clusters == ()
        assert health.detail["storage"]["healthy"] is False
        assert "degraded, memory only" in health.detail["storage"]["reason"]
        it = await mon.next()
        assert [r.lag_in_offsets for r in it.rows] == [5]

        own_redis.start()
        await mon.until(lambda it: mon.monitor.health().healthy, 20, "healthy after Redis is back")
        store = redis.Redis(host="127.0.0.1", port=own_redis.port, password=own_redis.password)
        assert store.exists(f"{KEY_PREFIX}main:{topic}:0")
