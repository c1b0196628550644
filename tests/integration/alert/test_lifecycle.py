"""Definitions and state across restarts, SIGTERM delivery, the CLI, and definition errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import tomli_w
from click.testing import CliRunner

from kafkaops.cli.main import cli
from kafkaops.testing import LocalCluster, free_port, wait_for

pytestmark = pytest.mark.kafka

T0 = 1_700_000_000_000_000_000
MINUTE = 60_000_000_000


def _task(topic: str, extra: str = "") -> str:
    return f"""
stream
    |from()
        .measurement('svc')
        .groupBy('host')
    |alert()
        .crit(lambda: "value" > 80)
        .stateChangesOnly()
        {extra}
        .kafka()
            .cluster('main')
            .kafkaTopic('{topic}')
"""


def test_restart_restores_state_and_definitions(
    daemon_factory, topic_factory, reader, tmp_path: Path
) -> None:
    topic, handled = topic_factory(), topic_factory()
    data = tmp_path / "state"
    first = daemon_factory(data_dir=data)
    first.define("svc", _task(topic, ".topic('svc')"))
    status, _ = first.request(
        "POST",
        "/kapacitor/v1/alerts/topics/svc/handlers",
        {"id": "copy", "kind": "kafka", "options": {"cluster": "main", "topic": handled}},
    )
    assert status == 200
    assert first.write(f"svc,host=a value=90 {T0}")[0] == 204
    (critical,) = reader(topic, 1)
    assert json.loads(critical.value())["level"] == "CRITICAL"
    first.stop()

    second = daemon_factory(data_dir=data)
    status, task = second.request("GET", "/kapacitor/v1/tasks/svc")
    assert (task["status"], task["executing"]) == ("enabled", True)
    # Still CRITICAL: with stateChangesOnly nothing is sent; then the recovery is.
    body = f"svc,host=a value=95 {T0 + MINUTE}\nsvc,host=a value=10 {T0 + 2 * MINUTE}"
    assert second.write(body)[0] == 204
    alerts = [json.loads(m.value()) for m in reader(topic, 2)]
    assert [(a["level"], a["previousLevel"]) for a in alerts] == [
        ("CRITICAL", "OK"),
        ("OK", "CRITICAL"),
    ]
    assert alerts[1]["duration"] == 2 * MINUTE  # the outage spans the restart
    assert [json.loads(m.value())["level"] for m in reader(handled, 2)] == ["CRITICAL", "OK"]


def test_redefined_task_restores_from_the_topic_store(daemon, topic_factory, reader) -> None:
    topic = topic_factory()
    daemon.define("svc", _task(topic))
    assert daemon.write(f"svc,host=a value=90 {T0}")[0] == 204
    status, _ = daemon.request(
        "PATCH", "/kapacitor/v1/tasks/svc", {"script": _task(topic, ".message('now {{.Level}}')")}
    )
    assert status == 200
    body = f"svc,host=a value=91 {T0 + MINUTE}\nsvc,host=a value=1 {T0 + 2 * MINUTE}"
    assert daemon.write(body)[0] == 204
    alerts = [json.loads(m.value()) for m in reader(topic, 2)]
    assert [a["message"] for a in alerts] == ["svc:host=a is CRITICAL", "now OK"]


def test_definition_errors_are_4xx_naming_the_problem(daemon) -> None:
    cases = [
        ("stream\n    |from()\n    |alert()\n        .crit(lambda: \"v\" >)\n", "line 4 char"),
        (_task("t").replace(".cluster('main')", ".cluster('far')"), "unknown cluster 'far'"),
        (_task("t").replace(".kafkaTopic('t')", ".kafkaTopic('t').partitionHashAlgorithm('md5')"),
         "invalid partition algorithm: 'md5'"),
        ("stream|from()|window()", "unsupported node |window()"),
        (_task("t").replace(".stateChangesOnly()", ".message('{{ .ID ')"), "message"),
    ]  # fmt: skip
    for i, (script, expected) in enumerate(cases):
        status, body = daemon.request(
            "POST", "/kapacitor/v1/tasks", {"id": f"t{i}", "script": script}
        )
        assert status == 400, (script, body)
        assert expected in body["error"], body
    status, body = daemon.request("GET", "/kapacitor/v1/tasks")
    assert body["tasks"] == []  # nothing half-defined
    status, body = daemon.request(
        "POST",
        "/kapacitor/v1/alerts/topics/x/handlers",
        {"id": "h", "kind": "kafka", "options": {"cluster": "nope", "topic": "t"}},
    )
    assert status == 400
    assert "unknown cluster 'nope'" in body["error"]
    status, body = daemon.request(
        "POST",
        "/kapacitor/v1/alerts/topics/x/handlers",
        {"id": "h", "kind": "log", "match": "level() >=", "options": {"path": "/tmp/x"}},
    )
    assert status == 400
    assert body["error"].startswith("match: line 1 char")


def test_cli_against_the_daemon(daemon, topic_factory, reader, tmp_path: Path) -> None:
    topic, out = topic_factory(), topic_factory()
    tick = tmp_path / "svc.tick"
    tick.write_text(_task(topic, ".topic('svc-topic')"))
    handler = tmp_path / "handler.yaml"
    handler.write_text(
        f"id: to-kafka\ntopic: svc-topic\nkind: kafka\nmatch: changed()\n"
        f"options:\n  topic: '{out}'\n  partitionAlgorithm: murmur2\n"
    )
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli, ["alert", "--url", daemon.url, *args])
        assert result.exit_code == code, result.output
        return result.output

    run("define", "svc", "-tick", str(tick))
    assert "svc  stream  disabled  false      (all)" in run("list")
    run("enable", "svc")
    run("define-topic-handler", str(handler))
    run("define-topic-handler", str(handler))  # an upsert
    assert "svc-topic  to-kafka  kafka  changed()" in run("list-topic-handlers")
    assert daemon.write(f"svc,host=a value=99 {T0}")[0] == 204
    assert json.loads(reader(out, 1)[0].value())["level"] == "CRITICAL"
    shown = run("show", "svc")
    assert "Status: enabled" in shown
    assert "alerts: OK=0 INFO=0 WARNING=0 CRITICAL=1" in shown
    assert "CRITICAL" in run("show-topic", "svc-topic")
    assert "kafka test succeeded" in run("test", "kafka", "--cluster", "main", "--topic", topic)
    made = run("silence", "--match", "level() == CRITICAL", "--for", "2h")
    silence_id = made.split()[1]
    assert silence_id in run("silence", "list")
    run("silence", "expire", silence_id)
    assert "expired" in run("silence", "list")
    run("delete-topic-handler", "svc-topic", "to-kafka")
    run("disable", "svc")
    run("delete", "svc")
    assert "svc" not in run("list")

    bad = tmp_path / "bad.tick"
    bad.write_text('stream\n  |from()\n  |alert()\n    .crit(lambda: "v" > )\n')
    output = run("define", "bad", "-tick", str(bad), code=2)
    assert output.startswith(f"Error: {bad}: script: line 4 char")
    assert "no task 'ghost'" in run("enable", "ghost", code=2)
    assert "silence needs --match" in run("silence", code=2)
    unreachable = runner.invoke(cli, ["alert", "--url", f"127.0.0.1:{free_port()}", "list"])
    assert unreachable.exit_code == 1
    assert "cannot reach kafkaops" in unreachable.output


def test_sigterm_delivers_every_accepted_alert(
    kafka: LocalCluster, topic_factory, reader, tmp_path: Path
) -> None:
    """The daemon is a real `kafkaops run` process; alerts sit in the producer's batch (a long
    batch-timeout) when SIGTERM arrives, and every one of them must still reach Kafka."""
    topic = topic_factory(3)
    port = free_port()
    config = tmp_path / "kafkaops.toml"
    cluster = kafka.cluster_section("main", **{"batch-timeout": "20s", "batch-size": 10000})
    config.write_text(
        tomli_w.dumps(
            {
                "data_dir": str(tmp_path / "data"),
                "http": {"bind-address": f"127.0.0.1:{port}"},
                "kafka": [cluster],
            }
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "kafkaops", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                with urllib.request.urlopen(f"{url}/kapacitor/v1/ping", timeout=2):
                    return True
            except OSError:
                return False

        wait_for(up, 60, what="daemon answering")
        define = urllib.request.Request(
            f"{url}/kapacitor/v1/tasks",
            data=json.dumps({"id": "svc", "script": _task(topic), "status": "enabled"}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(define, timeout=30) as response:
            assert response.status == 200
        hosts = 200
        body = "\n".join(f"svc,host=h{i} value=99 {T0}" for i in range(hosts)).encode()
        write = urllib.request.Request(f"{url}/write", data=body, method="POST")
        with urllib.request.urlopen(write, timeout=30) as response:
            assert response.status == 204
        # batch-timeout 20s from the [[kafka]] section: every alert is still in the batch.
        with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
            metrics = response.read().decode()
        assert (
            f'kafkaops_alert_kafka_pending{{cluster="main",topic="{topic}"}} {hosts}.0' in metrics
        )
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output.decode()
    ids = {json.loads(m.value())["id"] for m in reader(topic, hosts)}
    assert ids == {f"svc:host=h{i}" for i in range(hosts)}
    assert b"undelivered=0" in output
