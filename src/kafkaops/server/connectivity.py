"""Connectivity to every configured cluster: the health every job's health builds on."""

from __future__ import annotations

from prometheus_client import Gauge

from kafkaops.config import Config
from kafkaops.kafka.health import ClusterHealth
from kafkaops.server.runtime import Health, Runtime


class ConnectivityJob:
    name = "clusters"

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval

    def wanted(self, config: Config) -> bool:
        return bool(config.clusters)

    async def start(self, runtime: Runtime) -> None:
        clients = [runtime.clients(cid) for cid in runtime.config.clusters]
        monitor = ClusterHealth(clients, self.interval)
        up = Gauge(
            "kafkaops_cluster_up",
            "1 when the cluster answered its last metadata request, else 0.",
            ["cluster"],
            registry=runtime.registry,
        )
        for cid in runtime.config.clusters:
            up.labels(cid).set_function(lambda cid=cid: 1.0 if monitor.status[cid].healthy else 0.0)

        def health() -> Health:
            bad = monitor.unhealthy()
            detail = {
                cid: {"healthy": s.healthy, **({"reason": s.reason} if s.reason else {})}
                for cid, s in monitor.status.items()
            }
            return Health(not bad, tuple(bad), {"clusters": detail})

        await monitor.check_all()
        runtime.add_health(self.name, health)
        runtime.spawn("cluster-health", monitor.run)
