"""The runtime seam: channels between jobs, the aggregated health and fallback routes."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from kafkaops.config import Config
from kafkaops.server.http import core_routes
from kafkaops.server.runtime import Health, Runtime


async def test_channels_deliver_to_every_subscriber_and_survive_a_failing_one() -> None:
    runtime = Runtime(Config())
    got: list[object] = []

    def broken(_item: object) -> None:
        raise RuntimeError("subscriber bug")

    runtime.subscribe("lag", broken)
    runtime.subscribe("lag", got.append)
    runtime.publish("lag", [1, 2])
    runtime.publish("other", "ignored")
    assert got == [[1, 2]]


async def test_health_is_the_conjunction_of_components() -> None:
    runtime = Runtime(Config())
    runtime.add_health("a", lambda: Health(True))
    ok, body = runtime.health()
    assert ok
    assert body == {
        "status": "OK",
        "unhealthy_clusters": [],
        "components": {"a": {"healthy": True}},
    }
    runtime.add_health("b", lambda: Health(False, ("c2", "c1"), {"reason": "down"}))
    ok, body = runtime.health()
    assert not ok
    assert body["status"] == "Unhealthy"
    assert body["unhealthy_clusters"] == ["c1", "c2"]
    assert body["components"]["b"] == {"healthy": False, "reason": "down"}


async def test_fallbacks_serve_paths_that_appear_after_the_server_started() -> None:
    """The catch-all goes after every route: routes win, then each fallback in turn, then
    what aiohttp would answer (405 for a route's path with another method, else 404)."""
    runtime = Runtime(Config())
    runtime.add_routes(core_routes(runtime))
    paths: dict[str, str] = {}

    async def served(request: web.Request) -> web.StreamResponse | None:
        text = paths.get(request.path)
        return None if text is None else web.Response(text=text)

    async def never(_request: web.Request) -> web.StreamResponse | None:
        return None

    runtime.add_fallback(never)
    runtime.add_fallback(served)
    runtime.route_fallbacks()
    client = TestClient(TestServer(runtime.app))
    await client.start_server()
    try:
        assert (await client.get("/late")).status == 404
        paths["/late"] = "here"
        late = await client.post("/late")
        assert (late.status, await late.text()) == (200, "here")
        assert (await client.get("/metrics")).status == 200
        wrong = await client.post("/metrics")
        assert wrong.status == 405
        assert "GET" in wrong.headers["Allow"]
    finally:
        await client.close()
