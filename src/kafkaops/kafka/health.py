"""Cluster reachability: one metadata round trip per check, with the reason when it fails."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from kafkaops.kafka.clients import ClusterClients

log = logging.getLogger("kafkaops.kafka.health")


@dataclass(frozen=True)
class ClusterStatus:
    cluster: str
    healthy: bool
    reason: str = ""
    brokers: int = 0
    checked_at: float = 0.0


def check_cluster(clients: ClusterClients, admin: AdminClient, timeout: float) -> ClusterStatus:
    """Blocking: ask for metadata; an answer with at least one broker means reachable."""
    started = time.time()
    try:
        md = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        admin.poll(0)  # error callbacks are delivered only from poll
        # The client's own error (SSL handshake, SASL refusal) says more than "transport failure".
        err = clients.errors.since(started)
        reason = err.reason if err else str(exc.args[0].str())
        return ClusterStatus(clients.id, False, reason, 0, time.time())
    if not md.brokers:
        return ClusterStatus(clients.id, False, "metadata lists no brokers", 0, time.time())
    return ClusterStatus(clients.id, True, "", len(md.brokers), time.time())


class ClusterHealth:
    """Checks every cluster at an interval and keeps the latest status of each.

    Failing clusters are re-checked with exponential backoff (capped at the interval), so a
    returning broker is noticed quickly without hammering a dead one.
    """

    def __init__(self, clients: list[ClusterClients], interval: float = 5.0) -> None:
        self.interval = interval
        self._clients = clients
        self._admins = {c.id: c.admin() for c in clients}
        self.status: dict[str, ClusterStatus] = {
            c.id: ClusterStatus(c.id, False, "not checked yet") for c in clients
        }

    async def check_all(self) -> None:
        await asyncio.gather(*(self._check(c) for c in self._clients))

    async def _check(self, clients: ClusterClients) -> ClusterStatus:
        timeout = min(clients.cluster.timeout.total_seconds(), self.interval)
        admin = self._admins[clients.id]
        status = await asyncio.to_thread(check_cluster, clients, admin, timeout)
        previous = self.status.get(clients.id)
        self.status[clients.id] = status
        if previous and previous.healthy != status.healthy:
            level = logging.INFO if status.healthy else logging.WARNING
            log.log(
                level,
                "cluster health changed",
                extra={"cluster": clients.id, "healthy": status.healthy, "reason": status.reason},
            )
        return status

    async def run(self) -> None:
        async def loop(clients: ClusterClients) -> None:
            backoff = 0.5
            while True:
                status = await self._check(clients)
                if status.healthy:
                    backoff = 0.5
                    await asyncio.sleep(self.interval)
                else:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.interval)

        await asyncio.gather(*(loop(c) for c in self._clients))

    def unhealthy(self) -> list[str]:
        return sorted(cid for cid, s in self.status.items() if not s.healthy)
