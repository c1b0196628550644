"""The lag monitor as a daemon job: metrics, health, the JSON API, remote write, the loop.

Other jobs in the same process (alerting) get each iteration's rows on the runtime channel
"lag" (`runtime.subscribe("lag", callback)`); nothing of this package is theirs to import.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from kafkaops.config import Config
from kafkaops.lag.export import LagCollector, RemoteWriter
from kafkaops.lag.monitor import Monitor
from kafkaops.server.daemon import BindError
from kafkaops.server.runtime import Runtime

log = logging.getLogger("kafkaops.lag")

LAG_MONITOR = web.AppKey("kafkaops.lag.monitor", Monitor)
CHANNEL = "lag"
"""Runtime channel carrying each iteration's rows (see docs/ARCHITECTURE.md)."""


def lag_monitor(runtime: Runtime) -> Monitor | None:
    """The running monitor of this daemon, if the lag job runs in it."""
    return runtime.app.get(LAG_MONITOR)


class LagJob:
    """Runs when the config has a `[lag]` section (`kafkaops lag` always adds one)."""

    name = "lag"

    def __init__(self, session_timeout: float = 10.0) -> None:
        self.session_timeout = session_timeout

    def wanted(self, config: Config) -> bool:
        return config.lag is not None

    async def start(self, runtime: Runtime) -> None:
        monitor = Monitor(runtime.config, runtime.clients, session_timeout=self.session_timeout)
        runtime.app[LAG_MONITOR] = monitor
        runtime.registry.register(LagCollector(monitor))
        runtime.add_health(self.name, monitor.health)
        runtime.add_routes(api_routes(monitor))
        monitor.subscribe(lambda _rows: runtime.publish(CHANNEL, channel_rows(monitor)))
        remote = monitor.cfg.prometheus_remote_write
        if remote.enabled:
            writer = RemoteWriter(remote)
            monitor.writer = writer
            monitor.subscribe(lambda _rows: writer.submit(monitor))
            runtime.spawn("lag-remote-write", writer.run)
        runtime.spawn("lag", monitor.run)
        runtime.on_stop(monitor.close)
        log.info(
            "lag monitor started",
            extra={
                "clusters": ",".join(monitor.clusters) or "none",
                "interval": monitor.interval,
                "storage": monitor.storage.kind,
                "sharding": monitor.cfg.sharding,
            },
        )


def channel_rows(monitor: Monitor) -> list[dict[str, Any]]:
    """This iteration's rows in the runtime channel's format: plain dicts, status by name, the
    time the cluster's end offsets were read."""
    out = []
    for snap in monitor.snapshots():
        time_ns = int(snap.taken_at * 1e9)
        out.extend(
            {
                "clustername": r.clustername,
                "group": r.group,
                "topic": r.topic,
                "partition": r.partition,
                "lag_in_offsets": r.lag_in_offsets,
                "lag_in_seconds": r.lag_in_seconds,
                "status": r.status.name,
                "time_ns": time_ns,
            }
            for r in snap.rows
        )
    return out


def api_routes(monitor: Monitor) -> list[web.RouteDef]:
    """`GET /lag/groups`: every group with its status and totals; `GET
    /lag/groups/{cluster}/{group}`: one group's partitions, with each lag-in-seconds source."""

    async def groups(_request: web.Request) -> web.Response:
        out = []
        for snap in monitor.snapshots():
            for view in snap.groups.values():
                t = view.totals
                out.append(
                    {
                        "clustername": snap.cluster,
                        "group": view.group,
                        "state": view.state,
                        "status": view.status.status.name,
                        "worst_partition_status": view.status.worst.name,
                        "max_lag_in_offsets": t.max_offsets,
                        "sum_lag_in_offsets": t.sum_offsets,
                        "max_lag_in_seconds": t.max_seconds,
                        "sum_lag_in_seconds": t.sum_seconds,
                    }
                )
        return web.json_response({"groups": out})

    async def group(request: web.Request) -> web.Response:
        cluster, name = request.match_info["cluster"], request.match_info["group"]
        for snap in monitor.snapshots():
            if snap.cluster == cluster and name in snap.groups:
                view = snap.groups[name]
                partitions = [
                    {
                        "topic": r.topic,
                        "partition": r.partition,
                        "committed": r.committed,
                        "end_offset": r.end_offset,
                        "lag_in_offsets": r.lag_in_offsets,
                        "lag_in_seconds": r.lag_in_seconds,
                        "lag_in_seconds_source": str(r.source),
                        "status": r.status.name,
                    }
                    for r in snap.rows
                    if r.group == name
                ]
                return web.json_response(
                    {
                        "clustername": cluster,
                        "group": name,
                        "state": view.state,
                        "status": view.status.status.name,
                        "partitions": partitions,
                    }
                )
        raise web.HTTPNotFound(text=f"no group {name!r} on cluster {cluster!r}")

    return [web.get("/lag/groups", groups), web.get("/lag/groups/{cluster}/{group}", group)]


class HealthListener:
    """Kafka Lag Go serves health on its own port (app.health_check_port) and path, apart from
    metrics; this job opens that second listener with the daemon's health, 200 or 503."""

    name = "health-listener"

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port, self.path = host, port, path

    def wanted(self, config: Config) -> bool:
        return True

    async def start(self, runtime: Runtime) -> None:
        async def healthz(_request: web.Request) -> web.Response:
            ok, body = runtime.health()
            return web.json_response(body, status=200 if ok else 503)

        if self.port == runtime.config.http.port:
            # one port for both: the health path joins the daemon's own listener
            if self.path != "/healthz":
                runtime.add_routes([web.get(self.path, healthz)])
            return
        app = web.Application()
        app.router.add_get(self.path, healthz)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise BindError(f"app.health_check_port {self.port}: {exc.strerror}") from None
        runtime.on_stop(runner.cleanup)
