"""Three brokers, groups reading several topics whose partition leaders differ per topic, Empty
groups, and series that vanish with their group or topic, read from the daemon's registry."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import NewTopic
from prometheus_client import generate_latest

from kafkaops.lag.job import LagJob, lag_monitor
from kafkaops.server.runtime import Runtime
from kafkaops.testing import await_for, wait_for

pytestmark = pytest.mark.kafka

ROTATIONS = ([[1, 2, 3], [2, 3, 1], [3, 1, 2]], [[2, 3, 1], [3, 1, 2], [1, 2, 3]])
"""Replica lists per partition: partition p of the two topics has different preferred leaders,
which is what a leader map keyed by partition number alone gets wrong."""


async def test_three_brokers_exact_offset_lag_empty_groups_and_vanishing_series(
    kafka3, traffic_factory, lag_config, unique
) -> None:
    traffic = traffic_factory(kafka3)
    admin = traffic.admin
    topics = [f"{unique}-t{i}" for i in range(3)]
    futures = admin.create_topics(
        [
            NewTopic(topics[0], num_partitions=3, replica_assignment=ROTATIONS[0]),
            NewTopic(topics[1], num_partitions=3, replica_assignment=ROTATIONS[1]),
            NewTopic(topics[2], num_partitions=3, replica_assignment=ROTATIONS[0]),
        ]
    )
    for f in futures.values():
        f.result(30)
    metadata = wait_for(
        lambda: (md := admin.list_topics(timeout=10).topics) and set(topics) <= set(md) and md,
        30,
        what="topic metadata",
    )
    leaders = {(t, p): metadata[t].partitions[p].leader for t in topics[:2] for p in range(3)}
    assert all(leaders[topics[0], p] != leaders[topics[1], p] for p in range(3)), leaders

    counts = {(t, p): 10 * (i + 1) + p for i, t in enumerate(topics) for p in range(3)}
    for (t, p), n in counts.items():
        traffic.produce(t, n, partition=p)
    everything, second = f"{unique}-all", f"{unique}-second"
    traffic.commit(everything, dict.fromkeys(counts, 3))
    traffic.commit(second, {(topics[1], p): 1 for p in range(3)})

    config = lag_config(
        kafka3,
        iteration_interval="0.5s",
        labels={"env": "test"},
        clusters=[{"name": "main", "consumer_groups": {"whitelist": f"^{unique}-"}}],
    )
    runtime = Runtime(config)
    published: list[list[dict]] = []
    runtime.subscribe("lag", published.append)
    await LagJob().start(runtime)
    monitor = lag_monitor(runtime)
    assert monitor is not None
    try:
        metrics = await await_for(
            _metrics_with(runtime, f'group="{second}"', f'group="{everything}"'),
            30,
            what="both groups exported",
        )
        for (t, p), n in counts.items():
            line = (
                f'kafka_consumer_group_lag_in_offsets{{clustername="main",env="test",'
                f'group="{everything}",partition="{p}",topic="{t}"}} {float(n - 3)}'
            )
            assert line in metrics, line
        assert (
            f'kafka_consumer_group_sum_lag_in_offsets{{clustername="main",env="test",'
            f'group="{second}"}} {float(sum(counts[topics[1], p] - 1 for p in range(3)))}'
        ) in metrics
        states = {v.state for s in monitor.snapshots() for v in s.groups.values()}
        assert states == {"Empty"}
        # the runtime channel the alerting job reads carries the same rows as plain dicts
        row = next(r for r in published[-1] if r["group"] == everything and r["partition"] == 0)
        assert row["lag_in_offsets"] == counts[row["topic"], 0] - 3
        assert row["status"] in ("OK", "STALL", "STOP")
        assert isinstance(row["time_ns"], int)
        assert set(row) == {
            "clustername", "group", "topic", "partition", "lag_in_offsets", "lag_in_seconds",
            "status", "time_ns",
        }  # fmt: skip

        admin.delete_consumer_groups([second])[second].result(30)
        admin.delete_topics([topics[2]])[topics[2]].result(30)

        async def both_gone() -> str | None:
            text = generate_latest(runtime.registry).decode()
            gone = f'group="{second}"' not in text and f'topic="{topics[2]}"' not in text
            return text if gone else None

        metrics = await await_for(both_gone, 30, what="deleted group and topic unexported")
        assert f'group="{everything}",partition="0",topic="{topics[0]}"' in metrics
        assert 'kafka_total_groups_checked{clustername="main",env="test"} 1.0' in metrics
    finally:
        await runtime.shutdown()


def _metrics_with(runtime: Runtime, *needles: str):
    async def probe() -> str | None:
        text = generate_latest(runtime.registry).decode()
        return text if all(n in text for n in needles) else None

    return probe
