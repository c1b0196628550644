"""Kafka Lag Go's health endpoint: its own port and path, or a path on the metrics port."""

from __future__ import annotations

import aiohttp

from kafkaops.config import Config
from kafkaops.config.loader import validate
from kafkaops.lag.job import HealthListener
from kafkaops.server.runtime import Health, Runtime
from kafkaops.testing import free_port


def runtime_on(port: int) -> Runtime:
    config = validate(Config, {"http": {"bind-address": f"127.0.0.1:{port}"}}, "test")
    return Runtime(config)


async def test_health_on_its_own_port_answers_200_then_503() -> None:
    runtime = runtime_on(free_port())
    state = {"healthy": True}
    runtime.add_health("lag", lambda: Health(state["healthy"], () if state["healthy"] else ("a",)))
    port = free_port()
    await HealthListener("127.0.0.1", port, "/health").start(runtime)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/health") as response:
                assert response.status == 200
                assert (await response.json())["status"] == "OK"
            state["healthy"] = False
            async with session.get(f"http://127.0.0.1:{port}/health") as response:
                assert response.status == 503
                body = await response.json()
                assert body["status"] == "Unhealthy"
                assert body["unhealthy_clusters"] == ["a"]
    finally:
        await runtime.shutdown()


async def test_same_port_as_metrics_adds_the_path_to_the_daemon() -> None:
    port = free_port()
    runtime = runtime_on(port)
    await HealthListener("0.0.0.0", port, "/health").start(runtime)
    paths = {r.canonical for r in runtime.app.router.resources()}
    assert "/health" in paths
