"""Two monitor instances split the groups through Kafka's group protocol: each group is exported
by exactly one of them, each fetches only its own groups' offsets, and when one is killed
(SIGKILL, no goodbye) the other takes its groups once the coordinator notices."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from kafkaops.lag.membership import GROUP, bucket_of
from kafkaops.testing import LocalCluster, free_port

pytestmark = pytest.mark.kafka

GROUPS = 24


def exported_groups(url: str) -> set[str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return set()
    return set(re.findall(r'kafka_consumer_group_max_lag_in_offsets\{[^}]*group="([^"]+)"', text))


async def test_two_instances_split_groups_and_survivor_takes_over(
    kafka: LocalCluster, traffic, lag_config, *, run_monitor, tmp_path: Path, unique: str
) -> None:
    topic = traffic.topic(f"{unique}-t")
    traffic.produce(topic, 10)
    groups = {f"{unique}-g{i}" for i in range(GROUPS)}
    for g in groups:
        traffic.commit(g, {(topic, 0): 5})
    lag = {
        "iteration_interval": "0.5s",
        "sharding": True,
        "clusters": [{"name": "main", "consumer_groups": {"whitelist": f"^{unique}-g"}}],
    }
    config = lag_config(kafka, **lag)
    port = free_port()
    other_config = tmp_path / "other.toml"
    other_config.write_text(
        f'[http]\nbind-address = "127.0.0.1:{port}"\n'
        f'[[kafka]]\nid = "main"\nbrokers = ["{kafka.bootstrap}"]\ntimeout = "3s"\n'
        f'[lag]\niteration_interval = "0.5s"\nsharding = true\n'
        f'[[lag.clusters]]\nname = "main"\nconsumer_groups.whitelist = "^{unique}-g"\n'
    )
    other = subprocess.Popen(
        [sys.executable, "-m", "kafkaops", "lag", "--config", str(other_config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with run_monitor(config, session_timeout=6.0) as mine:
            cluster = mine.monitor.clusters["main"]

            def split(it) -> bool:
                ours = {r.group for r in it.rows}
                theirs = exported_groups(f"http://127.0.0.1:{port}/metrics")
                return bool(ours) and bool(theirs) and ours | theirs == groups

            it = await mine.until(split, 60, "groups split between two instances")
            ours = {r.group for r in it.rows}
            theirs = exported_groups(f"http://127.0.0.1:{port}/metrics")
            assert ours.isdisjoint(theirs), ours & theirs
            membership = cluster.membership
            assert membership is not None
            assert 0 < len(membership.owned) < membership.buckets
            assert all(bucket_of(g, membership.buckets) in membership.owned for g in ours)
            # this instance asked Kafka only for the offsets of its own groups
            assert cluster.snapshot is not None
            assert cluster.snapshot.groups_checked == len(ours)
            assert GROUP not in ours | theirs

            other.send_signal(signal.SIGKILL)
            other.wait(10)
            await mine.until(
                lambda it: {r.group for r in it.rows} == groups, 60, "survivor owns every group"
            )
            assert len(membership.owned) == membership.buckets
    finally:
        if other.poll() is None:
            other.kill()
        other.wait(10)
