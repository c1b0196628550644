"""Stage 2 of the lag pipeline, persistence: where partition histories live between iterations.

Memory (the default) is the `HistoryStore` itself and needs nothing here. With Redis, every
history observed in an iteration is written back in one pipeline (`SET key bytes EX ttl`, TTL =
`retention_ttl_seconds`), and a history this process does not hold yet (after a restart, or
when a group moves here from another instance) is read with MGET before the iteration uses it.
So any instance can time a group's lag right after taking it over, which is what makes the
store worth sharing.

Keys are `kafkaops:lag:<cluster>:<topic>:<partition>`: the prefix keeps them apart from Kafka
Lag Go's own sorted sets (`<cluster>:<topic>:<partition>`) if both share one Redis, since the
value formats differ. When Redis fails the monitor goes on from memory and reports degraded
health; the client reconnects on the next call, so it recovers without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from kafkaops.lag.config import RedisSettings, Storage
from kafkaops.lag.history import PartitionHistory

log = logging.getLogger("kafkaops.lag.storage")

HistoryKey = tuple[str, str, int]
"""(cluster, topic, partition)"""

KEY_PREFIX = "kafkaops:lag:"
_MGET_CHUNK = 1000
_MAX_BACKOFF_S = 30.0


def redis_key(key: HistoryKey) -> str:
    cluster, topic, partition = key
    return f"{KEY_PREFIX}{cluster}:{topic}:{partition}"


@dataclass(frozen=True)
class StorageHealth:
    healthy: bool
    kind: str
    reason: str = ""


class MemoryStorage:
    """Histories live only in the process (bounded by the store's max_points and retention)."""

    kind = "memory"

    async def load(self, keys: Iterable[HistoryKey], max_points: int) -> dict:
        return {}

    async def save(self, histories: Mapping[HistoryKey, PartitionHistory]) -> None:
        return None

    def health(self) -> StorageHealth:
        return StorageHealth(True, self.kind)

    async def close(self) -> None:
        return None


class RedisStorage:
    """Histories shared through Redis; failures degrade to memory instead of stopping."""

    kind = "redis"

    def __init__(self, settings: Storage, timeout: float | None = None) -> None:
        self.ttl = settings.retention_ttl_seconds
        redis = settings.redis
        request_timeout = redis.client_request_timeout.total_seconds()
        self.timeout = min(request_timeout, timeout) if timeout else request_timeout
        self.client = aioredis.Redis(**connection_kwargs(redis, self.timeout))
        self.errors = 0
        self._failure: str = ""
        self._backoff = 0.0
        self._retry_at = 0.0

    async def load(
        self, keys: Iterable[HistoryKey], max_points: int
    ) -> dict[HistoryKey, PartitionHistory]:
        """Histories stored for `keys` (absent ones skipped; corrupt ones skipped and logged)."""
        keys = list(keys)
        out: dict[HistoryKey, PartitionHistory] = {}
        for start in range(0, len(keys), _MGET_CHUNK):
            chunk = keys[start : start + _MGET_CHUNK]
            values = await self._call(self.client.mget([redis_key(k) for k in chunk]))
            if values is None:
                return out
            for key, value in zip(chunk, values, strict=True):
                if not value:
                    continue
                try:
                    out[key] = PartitionHistory.decode(value, max_points)
                except ValueError as exc:
                    log.warning(
                        "ignoring a stored history",
                        extra={"key": redis_key(key), "error": str(exc)},
                    )
        return out

    async def save(self, histories: Mapping[HistoryKey, PartitionHistory]) -> None:
        """Write the histories in one pipeline (no MULTI: each key stands alone)."""
        if not histories:
            return
        pipe = self.client.pipeline(transaction=False)
        for key, history in histories.items():
            pipe.set(redis_key(key), history.encode(), ex=self.ttl)
        await self._call(pipe.execute())

    async def _call(self, awaitable):
        """Run one Redis call within the timeout; None when Redis failed.

        After a failure, calls are skipped for a backoff (1 s doubling to 30 s), so a Redis
        that black-holes packets costs one timeout now and then, not two per iteration.
        """
        if self._failure and time.monotonic() < self._retry_at:
            awaitable.close()
            return None
        try:
            result = await asyncio.wait_for(awaitable, self.timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            self.errors += 1
            reason = str(exc) or type(exc).__name__
            if not self._failure:
                log.warning(
                    "redis unavailable; keeping histories in memory", extra={"reason": reason}
                )
            self._failure = reason
            self._backoff = min(_MAX_BACKOFF_S, self._backoff * 2) if self._backoff else 1.0
            self._retry_at = time.monotonic() + self._backoff
            return None
        if self._failure:
            log.info("redis is back")
            self._failure = ""
        self._backoff = 0.0
        return result

    def health(self) -> StorageHealth:
        if self._failure:
            return StorageHealth(False, self.kind, f"degraded, memory only: {self._failure}")
        return StorageHealth(True, self.kind)

    async def close(self) -> None:
        await self.client.aclose()


def connection_kwargs(redis: RedisSettings, timeout: float) -> dict:
    """redis-py settings for Kafka Lag Go's `storage.redis` keys.

    `client_idle_timeout` has no exact counterpart in redis-py (go-redis closes idle connections
    after it); the nearest is `health_check_interval`: a connection idle longer than that is
    PINGed before use, so a connection the server or a proxy dropped is replaced, not failed.
    """
    kwargs: dict = {
        "host": redis.address,
        "port": redis.port,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": max(1, int(redis.client_idle_timeout.total_seconds())),
    }
    if redis.auth.enabled:
        kwargs["username"] = redis.auth.username or None
        kwargs["password"] = redis.auth.password.get_secret_value()
    if redis.ssl.enabled:
        kwargs["ssl"] = True
        if redis.ssl.insecure_skip_verify:
            kwargs["ssl_cert_reqs"] = ssl.CERT_NONE
            kwargs["ssl_check_hostname"] = False
        if redis.ssl.ca_cert_file:
            kwargs["ssl_ca_certs"] = redis.ssl.ca_cert_file
        if redis.ssl.client_certificate_file:
            kwargs["ssl_certfile"] = redis.ssl.client_certificate_file
            kwargs["ssl_keyfile"] = redis.ssl.client_key_file
    return kwargs


def make_storage(settings: Storage, timeout: float | None = None) -> MemoryStorage | RedisStorage:
    """The configured storage; `timeout` caps each Redis call (the iteration must go on)."""
    if settings.type == "redis":
        return RedisStorage(settings, timeout)
    return MemoryStorage()
