"""Single mode against real clusters: bulk copy, metrics, stop-at-end, refusals, filters."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

from kafkaops.testing import LocalCluster, free_port, wait_for

from .conftest import (
    KAFKAOPS,
    Feed,
    clients,
    finish,
    load,
    read_all,
    relay_config,
    relay_process,
    running,
    topic,
    verify,
    write_config,
)


def test_100k_records_over_several_partitions_none_lost_none_twice_in_order(
    src: LocalCluster, dst: LocalCluster, unique: str
) -> None:
    name = topic(src, unique, 6)
    topic(dst, name, 6)
    feed = Feed([src], name, streams=6, size=120)
    feed.send(100_000 // 6 + 1)
    expected = sum(feed.expected.values())
    config = load(relay_config({"a": src, "b": dst}, {"sources": ["a"], "target": "b",
                                                      "topics": [f"{name}:{name}"]}))  # fmt: skip
    with running(config) as relay:
        wait_for(lambda: relay.stats.acked >= expected, 120, what="every record acknowledged")
        wait_for(lambda: relay.stats.lag and not any(relay.stats.lag.values()), 30, what="lag 0")
        relayed = sum(relay.stats.relayed.values())
        partitions = {k[1] for k in relay.stats.relayed}
    report = verify(dst, name, feed.expected)
    assert report.ok, report
    assert report.received == expected
    assert relayed == expected
    assert partitions == set(range(6))


def test_stop_at_end_relays_what_was_there_at_start_and_exits_0(
    src: LocalCluster, dst: LocalCluster, unique: str, tmp_path: Path
) -> None:
    """The source holds transaction markers: kaf-relay's record counting would wait forever."""
    name = topic(src, unique, 2)
    topic(dst, name, 2)
    feed = Feed([src], name, streams=2)
    producer = clients(src).producer(**{"transactional.id": unique})
    producer.init_transactions(30)
    for _ in range(3):
        producer.begin_transaction()
        for stream, key, value in feed.gen.round_robin(2, 50):
            producer.produce(name, value, key, partition=stream)
        producer.commit_transaction(30)
    path = write_config(tmp_path / "relay.toml", relay_config(
        {"a": src, "b": dst}, {"sources": ["a"], "target": "b", "topics": [f"{name}:{name}"]}
    ))  # fmt: skip
    code, err = finish(relay_process(path, "--stop-at-end"))
    assert code == 0, err
    assert "stop-at-end" in err
    report = verify(dst, name, feed.expected)
    assert report.ok, report
    assert report.received == 300


def test_same_partition_onto_a_smaller_target_is_refused(
    src: LocalCluster, dst: LocalCluster, unique: str, tmp_path: Path
) -> None:
    name = topic(src, unique, 4)
    topic(dst, name, 2)
    Feed([src], name, streams=4).send(5)
    path = write_config(tmp_path / "relay.toml", relay_config(
        {"a": src, "b": dst}, {"sources": ["a"], "target": "b", "topics": [f"{name}:{name}"]}
    ))  # fmt: skip
    code, err = finish(relay_process(path), timeout=60)
    assert code == 2, err
    assert f"topic {name!r} has 4 partitions but target topic {name!r} has only 2" in err
    assert "Traceback" not in err
    assert sum(1 for _ in read_all(dst, name)) == 0


def test_topic_flag_maps_onto_a_fixed_partition_of_a_smaller_target(
    src: LocalCluster, dst: LocalCluster, unique: str, tmp_path: Path
) -> None:
    """The way out the refusal names: `--topic src:dst:0` copies every partition into one."""
    name = topic(src, unique, 4)
    copy = topic(dst, f"{unique}-one", 2)
    feed = Feed([src], name, streams=4)
    feed.send(25)
    path = write_config(tmp_path / "relay.toml", relay_config(
        {"a": src, "b": dst}, {"sources": ["a"], "target": "b", "topics": [f"{name}:{name}"]}
    ))  # fmt: skip
    code, err = finish(relay_process(path, "--stop-at-end", "--topic", f"{name}:{copy}:1"))
    assert code == 0, err
    records = read_all(dst, copy)
    assert {m.partition() for m in records} == {1}
    report = verify(dst, copy, feed.expected, same_partition=False)
    assert report.ok, report


def test_filters_drop_and_count_in_failover_mode_too(
    src: LocalCluster, dst: LocalCluster, unique: str, tmp_path: Path
) -> None:
    """Two bundled filters in a chain, with failover mode on (the first source stays)."""
    name = topic(src, unique, 2)
    topic(dst, name, 2)
    producer = clients(src).producer()
    for i in range(200):
        env = b"prod" if i % 2 else b"dev"
        value = json.dumps({"n": i, "kind": "order" if i % 4 == 1 else "refund"}).encode()
        producer.produce(name, value, b"k%d" % i, partition=i % 2, headers=[("env", env)])
    assert producer.flush(30) == 0
    port = free_port()
    document = relay_config({"a": src, "b": dst, "spare": dst}, {
        "mode": "failover",
        "sources": ["a", "spare"],
        "target": "b",
        "topics": [f"{name}:{name}"],
        "filters": {
            "prod-only": {"path": "header-match", "config": {"name": "env", "value": "prod"}},
            "orders": {"path": "json-field",
                       "config": {"field": "kind", "op": "eq", "value": "order"}},
        },
    }, http_port=port)  # fmt: skip
    with running(load(document)) as relay:
        wait_for(lambda: sum(relay.stats.filtered().values()) == 150, 60, what="all filtered")
        wait_for(lambda: relay.stats.acked == 50, 30, what="the rest relayed")
        filtered = relay.stats.filtered()
        assert relay.selector.current == "a"
    assert filtered == {"prod-only": 100, "orders": 50}
    kept = [json.loads(m.value()) for m in read_all(dst, name)]
    assert sorted(r["n"] for r in kept) == [i for i in range(200) if i % 4 == 1]

    # A restart re-reads only the filtered tail: nothing is relayed twice.
    with running(load(document)) as relay:
        wait_for(lambda: relay.stats.lag and not any(relay.stats.lag.values()), 30, what="lag 0")
        assert relay.stats.acked == 0
    assert len(read_all(dst, name)) == 50


def test_kaf_relay_config_toml_runs_unchanged(
    src: LocalCluster, dst: LocalCluster, unique: str, tmp_path: Path
) -> None:
    name = topic(src, unique, 2)
    topic(dst, f"{name}-copy", 2)
    feed = Feed([src], name, streams=2)
    feed.send(40)
    port = free_port()
    path = tmp_path / "config.toml"
    path.write_text(f"""
[app]
log_level = "info"
metrics_server_addr = "127.0.0.1:{port}"

[[topics]]
{name} = "{name}-copy"

[source_pool]
healthcheck_interval = "300ms"
request_timeout = "1s"

[[sources]]
name = "node1"
servers = ["{src.bootstrap}"]

[target]
servers = ["{dst.bootstrap}"]
enable_idempotency = true
commit_ack_type = "cluster"
""")
    code, err = finish(relay_process(path, "--stop-at-end"))
    assert code == 0, err
    report = verify(dst, f"{name}-copy", feed.expected)
    assert report.ok, report
    assert report.received == 80


def test_kafkaops_run_relays_with_metrics_and_healthz(
    src: LocalCluster, dst: LocalCluster, unique: str, tmp_path: Path
) -> None:
    """The daemon runs `[relay]` sections; /healthz names the current source and the target."""
    name = topic(src, unique, 1)
    topic(dst, name, 1)
    Feed([src], name, streams=1).send(10)
    port = free_port()
    path = write_config(tmp_path / "relay.toml", relay_config(
        {"a": src, "b": dst}, {"sources": ["a"], "target": "b", "topics": [f"{name}:{name}"]},
        http_port=port,
    ))  # fmt: skip
    proc = subprocess.Popen(
        [*KAFKAOPS, "run", "--config", str(path)], stderr=subprocess.PIPE, text=True
    )
    try:

        def get(path: str) -> tuple[int, bytes]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    return r.status, r.read()
            except OSError:
                return 0, b""

        def healthy() -> dict | None:
            status, body = get("/healthz")
            return json.loads(body) if status == 200 else None

        health = wait_for(healthy, 60, what="/healthz 200")
        detail = health["components"]["relay:relay"]["relay"]
        assert detail["source"] == "a"
        assert detail["target"] == "b"
        assert detail["state"] == "running"
        text = wait_for(
            lambda: (
                (b := get("/metrics")[1].decode())
                and "kafka_relay_messages_relayed_total{" in b
                and "kafka_relay_lag{" in b
                and b
            ),
            30,
            what="relayed metric",
        )
        assert (  # prometheus_client sorts the labels
            f'kafka_relay_messages_relayed_total{{relay="relay",source_partition="0",'
            f'source_topic="{name}",target_partition="0",target_topic="{name}"}} 10.0'
        ) in text
        assert 'kafka_relay_current_source{node_id="a",relay="relay"} 1.0' in text
        assert 'kafka_relay_lag{partition="0",relay="relay",topic="' in text
        assert "kafka_relay_source_highwatermark" in text
        assert "kafka_relay_target_flush_duration_seconds_bucket" in text
    finally:
        proc.terminate()
        code, err = finish(proc, 60)
    assert code == 0, err
