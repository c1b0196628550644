"""Several clusters in one monitor: one going down makes only that cluster unhealthy (and drops
its series rather than freezing them) while the others go on; it recovers without a restart."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kafkaops.config import Config
from kafkaops.config.loader import validate
from kafkaops.lag.export import families
from kafkaops.testing import LocalCluster

pytestmark = pytest.mark.kafka


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    """A cluster of this test's own, because the test stops and restarts it."""
    with LocalCluster(name="lagdown") as cluster:
        yield cluster


async def test_one_cluster_down_leaves_the_others_running_and_recovers(
    kafka, own_cluster, traffic_factory, run_monitor, unique: str
) -> None:
    for cluster in (kafka, own_cluster):
        traffic = traffic_factory(cluster)
        topic = traffic.topic(f"{unique}-t")
        traffic.produce(topic, 10)
        traffic.commit(f"{unique}-g", {(topic, 0): 4})
    config = validate(
        Config,
        {
            "kafka": [
                kafka.cluster_section("main", timeout="2s"),
                own_cluster.cluster_section("down", timeout="2s"),
            ],
            "lag": {
                "iteration_interval": "0.5s",
                "clusters": [
                    {"name": n, "consumer_groups": {"whitelist": f"^{unique}"}}
                    for n in ("main", "down")
                ],
            },
        },
        "test",
    )

    def clusters_in(it) -> set[str]:
        return {r.clustername for r in it.rows}

    async with run_monitor(config) as mon:
        await mon.until(lambda it: clusters_in(it) == {"main", "down"}, 30, "both clusters")
        own_cluster.stop_node(0)
        it = await mon.until(lambda it: clusters_in(it) == {"main"}, 30, "down cluster dropped")
        assert [r.lag_in_offsets for r in it.rows] == [6]
        health = mon.monitor.health()
        assert not health.healthy
        assert health.unhealthy_clusters == ("down",)
        assert "reason" in health.detail["clusters"]["down"]
        up = {f.name: f.samples for f in families(mon.monitor)}["kafkaops_lag_cluster_up"]
        assert sorted(up) == [(("down",), 0.0), (("main",), 1.0)]
        it = await mon.next()
        assert clusters_in(it) == {"main"}

        own_cluster.start_node(0)
        await mon.until(lambda it: clusters_in(it) == {"main", "down"}, 60, "down cluster back")
        assert mon.monitor.health().healthy
