"""The seam every job plugs into: routes, metrics, health and background tasks on one daemon."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry

from kafkaops.config import Config
from kafkaops.kafka import ClusterClients

log = logging.getLogger("kafkaops.server")


@dataclass(frozen=True)
class Health:
    """One component's view: healthy or not, which clusters it cannot reach, and detail."""

    healthy: bool
    unhealthy_clusters: tuple[str, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)


HealthCheck = Callable[[], Health]
Fallback = Callable[[web.Request], Awaitable[web.StreamResponse | None]]
"""Answers a request no route matched, or None to pass it on."""


class Runtime:
    """What a job receives when the daemon starts it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.registry = CollectorRegistry()
        self.app = web.Application()
        self.health_checks: dict[str, HealthCheck] = {}
        self.stopping = asyncio.Event()
        self._clients: dict[str, ClusterClients] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._on_stop: list[Callable[[], Awaitable[None]]] = []
        self._subscribers: dict[str, list[Callable[[Any], None]]] = {}
        self._fallbacks: list[Fallback] = []
        self._catch_all: web.AbstractResource | None = None
        self.failure: BaseException | None = None

    def clients(self, cluster_id: str) -> ClusterClients:
        """The shared client factory for a configured cluster (KeyError names the unknown id)."""
        if cluster_id not in self._clients:
            self._clients[cluster_id] = ClusterClients(self.config.cluster(cluster_id))
        return self._clients[cluster_id]

    def add_routes(self, routes: list[web.RouteDef]) -> None:
        self.app.router.add_routes(routes)

    def add_fallback(self, handler: Fallback) -> None:
        """Serve paths that no route matches, decided per request: for paths defined while
        the daemon runs (aiohttp's routes are fixed once it serves), such as webhooks."""
        self._fallbacks.append(handler)

    def route_fallbacks(self) -> None:
        """After every job added its routes: one catch-all after them asks the fallbacks."""
        if self._fallbacks:
            route = self.app.router.add_route("*", "/{path:.*}", self._fall_back)
            self._catch_all = route.resource

    async def _fall_back(self, request: web.Request) -> web.StreamResponse:
        for handler in self._fallbacks:
            response = await handler(request)
            if response is not None:
                return response
        # What aiohttp answers without the catch-all: 405 where a route has the path.
        allowed: set[str] = set()
        for resource in self.app.router.resources():
            if resource is not self._catch_all:
                allowed |= (await resource.resolve(request))[1]
        if allowed:
            raise web.HTTPMethodNotAllowed(request.method, sorted(allowed))
        raise web.HTTPNotFound()

    def add_health(self, name: str, check: HealthCheck) -> None:
        self.health_checks[name] = check

    def spawn(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        """Run a background task for the daemon's lifetime; if it dies, the daemon stops."""

        async def guarded() -> None:
            try:
                await factory()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("background task failed", extra={"task": name})
                self.failure = exc
                self.stopping.set()

        self._tasks.append(asyncio.create_task(guarded(), name=name))

    def subscribe(self, channel: str, callback: Callable[[Any], None]) -> None:
        """Receive what another job publishes on `channel`, without importing that job."""
        self._subscribers.setdefault(channel, []).append(callback)

    def publish(self, channel: str, item: Any) -> None:
        """Hand `item` to every subscriber in turn (in the event loop; keep callbacks quick)."""
        for callback in self._subscribers.get(channel, ()):
            try:
                callback(item)
            except Exception:
                log.exception("subscriber failed", extra={"channel": channel})

    def on_stop(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Cleanup run at shutdown, last registered first (drain producers here)."""
        self._on_stop.append(callback)

    def health(self) -> tuple[bool, dict[str, Any]]:
        reports = {name: check() for name, check in self.health_checks.items()}
        unhealthy = sorted({c for r in reports.values() for c in r.unhealthy_clusters})
        ok = all(r.healthy for r in reports.values())
        body = {
            "status": "OK" if ok else "Unhealthy",
            "unhealthy_clusters": unhealthy,
            "components": {name: {"healthy": r.healthy, **r.detail} for name, r in reports.items()},
        }
        return ok, body

    async def shutdown(self) -> None:
        for callback in reversed(self._on_stop):
            try:
                await callback()
            except Exception:
                log.exception("error while stopping")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Job(Protocol):
    """A job (lag, alert, relay, eventbus) as the daemon sees it."""

    name: str

    def wanted(self, config: Config) -> bool:
        """Whether the config asks for this job."""

    async def start(self, runtime: Runtime) -> None:
        """Register routes, metrics and health, and spawn background tasks; return promptly."""
