"""The runtime seam: channels between jobs and the aggregated health."""

from __future__ import annotations

from kafkaops.config import Config
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
