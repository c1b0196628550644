"""Redis settings in redis-py terms, key names, and degrading instead of failing."""

from __future__ import annotations

import ssl

from kafkaops.lag.config import Storage
from kafkaops.lag.history import PartitionHistory
from kafkaops.lag.storage import (
    MemoryStorage,
    RedisStorage,
    connection_kwargs,
    make_storage,
    redis_key,
)
from kafkaops.testing import free_port


def test_kafka_lag_go_redis_keys_map_to_redis_py() -> None:
    storage = Storage.model_validate(
        {
            "type": "redis",
            "redis": {
                "address": "redis-server",
                "port": 6380,
                "client_idle_timeout": "5m",
                "auth": {"enabled": True, "username": "u", "password": "p"},
                "ssl": {"enabled": True, "insecure_skip_verify": True},
            },
        }
    )
    kwargs = connection_kwargs(storage.redis, 2.5)
    assert (kwargs["host"], kwargs["port"]) == ("redis-server", 6380)
    assert (kwargs["username"], kwargs["password"]) == ("u", "p")
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 2.5
    assert kwargs["health_check_interval"] == 300
    assert kwargs["ssl"] is True
    assert kwargs["ssl_cert_reqs"] == ssl.CERT_NONE
    plain = connection_kwargs(Storage().redis, 1.0)
    assert "password" not in plain and "ssl" not in plain


def test_keys_are_prefixed_per_cluster_topic_partition() -> None:
    assert redis_key(("main", "orders", 3)) == "kafkaops:lag:main:orders:3"
    assert isinstance(make_storage(Storage()), MemoryStorage)


async def test_unreachable_redis_degrades_health_and_loads_nothing() -> None:
    settings = Storage.model_validate(
        {"type": "redis", "redis": {"address": "127.0.0.1", "port": free_port()}}
    )
    storage = make_storage(settings, timeout=1.0)
    assert isinstance(storage, RedisStorage)
    history = PartitionHistory()
    history.add(10, 1_000)
    await storage.save({("c", "t", 0): history})
    health = storage.health()
    assert not health.healthy
    assert health.reason.startswith("degraded, memory only:")
    # within the backoff the next call does not even try
    assert await storage.load([("c", "t", 0)], 240) == {}
    assert storage.errors == 1
    await storage.close()
