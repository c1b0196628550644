"""The CLI end to end: config check, dev clusters, and the daemon's /metrics and /healthz."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kafkaops import __version__
from kafkaops.testing import LocalCluster, free_port, wait_for

KAFKAOPS = [sys.executable, "-m", "kafkaops"]


def kafkaops(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*KAFKAOPS, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_version_and_help() -> None:
    assert kafkaops("--version").stdout.strip() == f"kafkaops, version {__version__}"
    out = kafkaops("--help").stdout
    for command in ("config", "dev", "run"):
        assert command in out


def test_config_check_prints_effective_config_with_secrets_masked(tmp_path: Path) -> None:
    path = tmp_path / "k.toml"
    path.write_text(
        '[[kafka]]\nid = "a"\nbrokers = ["h:1"]\nsasl-username = "u"\nsasl-password = "${PW}"\n'
    )
    result = kafkaops("config", "check", str(path), env={"PW": "s3cr3t-value"})
    assert result.returncode == 0, result.stderr
    assert "s3cr3t-value" not in result.stdout + result.stderr
    assert 'sasl-password = "********"' in result.stdout
    assert 'batch-timeout = "1s"' in result.stdout  # defaults are filled in
    as_json = json.loads(
        kafkaops("config", "check", str(path), "--format", "json", env={"PW": "x"}).stdout
    )
    assert as_json["http"]["bind-address"] == "127.0.0.1:9470"


def test_config_check_user_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[kafka]]\nid = "a"\nbrokers = ["h:1"]\nbatch-size = "many"\n')
    result = kafkaops("config", "check", str(path))
    assert result.returncode == 2
    assert f"{path}: kafka[0].batch-size" in result.stderr
    assert "'many'" in result.stderr
    assert "Traceback" not in result.stderr
    missing = kafkaops("run", "--config", str(tmp_path / "none.toml"))
    assert missing.returncode == 2
    assert "none.toml: file not found" in missing.stderr


def test_dev_up_status_down(unique: str) -> None:
    name = f"t-{unique[-8:]}"
    up = kafkaops("dev", "up", "--name", name)
    try:
        assert up.returncode == 0, up.stderr
        bootstrap = up.stdout.strip().removeprefix("bootstrap=")
        assert bootstrap.startswith("127.0.0.1:")
        again = kafkaops("dev", "up", "--name", name)
        assert again.stdout == up.stdout
        assert "already running" in again.stderr
        status = kafkaops("dev", "status").stdout
        assert f"{name}\trunning\tnodes=1\tbootstrap={bootstrap}" in status
    finally:
        down = kafkaops("dev", "down", "--name", name)
    assert down.returncode == 0
    assert f"stopped: {name}" in down.stdout
    assert name not in kafkaops("dev", "status").stdout
    refused = kafkaops("dev", "down", "--name", name)
    assert refused.returncode == 2
    assert f"no local cluster named '{name}'" in refused.stderr


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    """A cluster of this test's own, because the test stops and restarts it."""
    with LocalCluster(name="health") as cluster:
        yield cluster


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return 0, ""


def test_run_serves_metrics_and_health_that_follow_the_cluster(
    own_cluster: LocalCluster, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "kafkaops.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[http]\nbind-address = "127.0.0.1:{port}"\n'
        f'[[kafka]]\nid = "main"\nbrokers = ["{own_cluster.bootstrap}"]\ntimeout = "2s"\n'
    )
    daemon = subprocess.Popen(
        [*KAFKAOPS, "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: get(f"{base}/healthz")[0] == 200, 30, what="healthy daemon")
        status, body = get(f"{base}/healthz")
        assert json.loads(body)["status"] == "OK"
        status, metrics = get(f"{base}/metrics")
        assert status == 200
        assert 'kafkaops_cluster_up{cluster="main"} 1.0' in metrics

        own_cluster.stop_node(0)
        wait_for(lambda: get(f"{base}/healthz")[0] == 503, 30, what="unhealthy after stop")
        body = json.loads(get(f"{base}/healthz")[1])
        assert body["status"] == "Unhealthy"
        assert body["unhealthy_clusters"] == ["main"]
        assert 'kafkaops_cluster_up{cluster="main"} 0.0' in get(f"{base}/metrics")[1]

        own_cluster.start_node(0)
        wait_for(lambda: get(f"{base}/healthz")[0] == 200, 30, what="healthy after restart")
    finally:
        daemon.send_signal(signal.SIGTERM)
        output, _ = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, output
    assert "Traceback" not in output
    assert 'msg="cluster health changed" cluster=main healthy=False' in output


def test_run_reports_a_taken_port_as_a_user_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "k.toml"
        config.write_text(f'[http]\nbind-address = "127.0.0.1:{port}"\n')
        result = kafkaops("run", "--config", str(config), timeout=30)
    assert result.returncode == 2
    assert f"http.bind-address 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
