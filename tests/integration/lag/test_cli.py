"""`kafkaops lag`, `kafkaops lag --config-file` (Kafka Lag Go's yaml), `kafkaops run` with a
[lag] section and `kafkaops lag show`, as processes against a real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from kafkaops.testing import LocalCluster, free_port, wait_for

pytestmark = pytest.mark.kafka

KAFKAOPS = [sys.executable, "-m", "kafkaops"]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return 0, ""


@contextmanager
def daemon(*args: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [*KAFKAOPS, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
        proc.output = output  # type: ignore[attr-defined]


@pytest.fixture
def lagging_group(traffic, unique: str) -> tuple[str, str]:
    """A topic with 30 records and an Empty group 10 records behind on it."""
    topic = traffic.topic(f"{unique}-t")
    traffic.produce(topic, 30)
    group = f"{unique}-g"
    traffic.commit(group, {(topic, 0): 20})
    return group, topic


def toml_config(tmp_path: Path, cluster: LocalCluster, port: int, unique: str, *,
                lag: bool = True) -> Path:  # fmt: skip
    path = tmp_path / "kafkaops.toml"
    text = (
        f'data_dir = "{tmp_path / "data"}"\n[http]\nbind-address = "127.0.0.1:{port}"\n'
        f'[[kafka]]\nid = "main"\nbrokers = ["{cluster.bootstrap}"]\ntimeout = "3s"\n'
    )
    if lag:
        text += (
            '[lag]\niteration_interval = "0.5s"\n[lag.labels]\nenv = "it"\n'
            f'[[lag.clusters]]\nname = "main"\nconsumer_groups.whitelist = "^{unique}"\n'
        )
    path.write_text(text)
    return path


def test_lag_command_serves_metrics_health_and_api(
    kafka: LocalCluster, lagging_group: tuple[str, str], tmp_path: Path, unique: str
) -> None:
    group, topic = lagging_group
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = toml_config(tmp_path, kafka, port, unique)
    with daemon("lag", "--config", str(config)) as proc:
        series = (
            f'kafka_consumer_group_lag_in_offsets{{clustername="main",env="it",group="{group}",'
            f'partition="0",topic="{topic}"}} 10.0'
        )
        metrics = wait_for(lambda: (m := get(f"{base}/metrics")[1]) and series in m and m, 30)
        seconds = f'_lag_in_seconds{{clustername="main",env="it",group="{group}",partition="0"'
        assert seconds in metrics
        assert "kafka_iteration_time_seconds " in metrics
        assert 'kafkaops_lag_cluster_up{clustername="main",env="it"} 1.0' in metrics
        status, body = get(f"{base}/healthz")
        assert status == 200
        health = json.loads(body)
        assert health["status"] == "OK"
        assert health["unhealthy_clusters"] == []
        assert health["components"]["lag"]["storage"] == {"type": "memory", "healthy": True}
        groups = json.loads(get(f"{base}/lag/groups")[1])["groups"]
        assert [g["group"] for g in groups] == [group]
        assert groups[0]["state"] == "Empty"
        assert groups[0]["sum_lag_in_offsets"] == 10
        detail = json.loads(get(f"{base}/lag/groups/main/{group}")[1])
        source = detail["partitions"][0]["lag_in_seconds_source"]
        assert source in ("record-timestamp", "interpolation")
    assert proc.returncode == 0, proc.output  # type: ignore[attr-defined]
    assert "Traceback" not in proc.output  # type: ignore[attr-defined]


def test_kafka_lag_go_config_yaml_serves_metrics_and_health_on_its_ports(
    kafka: LocalCluster, lagging_group: tuple[str, str], tmp_path: Path, unique: str
) -> None:
    group, _ = lagging_group
    metrics_port, health_port = free_port(), free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
prometheus_local:
  metrics_port: {metrics_port}
  labels:
    env: production
kafka_clusters:
  - name: "kafka-cluster-1"
    brokers:
      - "{kafka.bootstrap}"
    client_request_timeout: "3s"
    metadata_fetch_timeout: "5s"
    consumer_groups:
      whitelist: "^{unique}"
      blacklist: "test2.*"
    ssl:
      enabled: false
    sasl:
      enabled: false
app:
  iteration_interval: "1s"
  num_workers: 2
  log_level: "info"
  health_check_port: {health_port}
  health_check_path: "/health"
"""
    )
    with daemon("lag", "--config-file", str(config)) as proc:
        needle = f'clustername="kafka-cluster-1",env="production",group="{group}"'
        wait_for(
            lambda: needle in get(f"http://127.0.0.1:{metrics_port}/metrics")[1], 30, what=needle
        )
        status, body = get(f"http://127.0.0.1:{health_port}/health")
        assert status == 200
        assert json.loads(body)["status"] == "OK"
        assert json.loads(body)["unhealthy_clusters"] == []
    assert proc.returncode == 0, proc.output  # type: ignore[attr-defined]


def test_run_starts_the_monitor_when_the_config_has_a_lag_section(
    kafka: LocalCluster, lagging_group: tuple[str, str], tmp_path: Path, unique: str
) -> None:
    group, _ = lagging_group
    port = free_port()
    with daemon("run", "--config", str(toml_config(tmp_path, kafka, port, unique))) as proc:
        wait_for(
            lambda: f'group="{group}"' in get(f"http://127.0.0.1:{port}/metrics")[1],
            30,
            what="lag series from kafkaops run",
        )
    assert proc.returncode == 0, proc.output  # type: ignore[attr-defined]


def test_lag_show_prints_the_worst_lag_first(
    kafka: LocalCluster, traffic, tmp_path: Path, unique: str
) -> None:
    topic = traffic.topic(f"{unique}-t", partitions=2)
    traffic.produce(topic, 40, partition=0)
    traffic.produce(topic, 40, partition=1)
    traffic.commit(f"{unique}-far", {(topic, 0): 0, (topic, 1): 10})
    traffic.commit(f"{unique}-near", {(topic, 0): 35, (topic, 1): 40})
    config = toml_config(tmp_path, kafka, free_port(), unique)
    result = subprocess.run(
        [*KAFKAOPS, "lag", "show", "--config", str(config), "--format", "json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert [(r["group"], r["lag_in_offsets"]) for r in rows] == [
        (f"{unique}-far", 70),
        (f"{unique}-near", 5),
    ]
    assert rows[0]["source"] == "record-timestamp"
    assert rows[0]["status"] == "STOP"
    assert rows[0]["lag_in_seconds"] > 0
    table = subprocess.run(
        [*KAFKAOPS, "lag", "show", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "COLUMNS": "250"},
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    far = next(i for i, line in enumerate(lines) if f"{unique}-far" in line)
    near = next(i for i, line in enumerate(lines) if f"{unique}-near" in line)
    assert far < near
    assert " 70 " in lines[far]
    assert "STOP" in lines[far]


def test_bad_lag_config_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[[kafka]]\nid = "main"\nbrokers = ["127.0.0.1:1"]\n'
        '[[lag.clusters]]\nname = "main"\nconsumer_groups.whitelist = "(unclosed"\n'
    )
    result = subprocess.run(
        [*KAFKAOPS, "lag", "--config", str(path)], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "invalid regex '(unclosed'" in result.stderr
    assert "Traceback" not in result.stderr
    path.write_text(
        '[[kafka]]\nid = "main"\nbrokers = ["127.0.0.1:1"]\n[[lag.clusters]]\nname = "nope"\n'
    )
    result = subprocess.run(
        [*KAFKAOPS, "lag", "--config", str(path)], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "unknown cluster id(s) 'nope'" in result.stderr
