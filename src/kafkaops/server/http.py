"""The daemon's own routes: Prometheus exposition and health."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kafkaops.server.runtime import Runtime


def core_routes(runtime: Runtime) -> list[web.RouteDef]:
    async def metrics(_request: web.Request) -> web.Response:
        body = generate_latest(runtime.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        ok, body = runtime.health()
        return web.json_response(body, status=200 if ok else 503)

    return [web.get("/metrics", metrics), web.get("/healthz", healthz)]
