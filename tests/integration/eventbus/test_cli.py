"""`kafkaops events apply/list/delete`: user errors exit 2 naming the file and field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

KAFKAOPS = [sys.executable, "-m", "kafkaops"]
GOOD = """\
apiVersion: argoproj.io/v1alpha1
kind: EventBus
metadata: {name: default}
spec: {kafka: {url: "127.0.0.1:9092"}}
---
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: watcher}
spec:
  template: {serviceAccountName: argo-events-sa}
  dependencies: [{name: p, eventSourceName: hooks, eventName: push}]
  triggers: [{template: {name: say, log: {}}}]
"""


def kafkaops(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*KAFKAOPS, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ},
        check=False,
    )


def test_apply_list_delete(tmp_path: Path) -> None:
    config = tmp_path / "k.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    defs = tmp_path / "defs.yaml"
    defs.write_text(GOOD)
    applied = kafkaops("events", "apply", "-f", str(defs), "--config", str(config), cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines() == ["eventbus/default created", "sensor/watcher created"]
    # Kubernetes-only fields are dropped with a warning; a dangling dependency is reported.
    assert f"{defs}:10: spec.template: ignored" in applied.stderr
    assert "dependency 'p' waits for 'hooks.push', which no EventSource emits" in applied.stderr
    again = kafkaops("events", "apply", "-f", str(defs), "--config", str(config), cwd=tmp_path)
    assert "sensor/watcher unchanged" in again.stdout

    listed = kafkaops("events", "list", "--config", str(config), cwd=tmp_path).stdout
    assert "Sensor    default    watcher  triggers=say(p)" in listed
    assert "topic=default-default kafka=127.0.0.1:9092" in listed

    gone = kafkaops("events", "delete", "sensor", "watcher", "--config", str(config), cwd=tmp_path)
    assert (gone.returncode, gone.stdout.strip()) == (0, "sensor/watcher deleted")
    missing = kafkaops(
        "events", "delete", "Sensor", "watcher", "--config", str(config), cwd=tmp_path
    )
    assert missing.returncode == 2
    assert "Sensor default/watcher is not stored" in missing.stderr


def test_bad_definitions_exit_2_naming_file_line_and_field(tmp_path: Path) -> None:
    defs = tmp_path / "bad.yaml"
    defs.write_text(
        GOOD.replace("{name: say, log: {}}", "{name: say, log: {}, conditions: 'p && q'}")
    )
    config = tmp_path / "k.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    result = kafkaops("events", "apply", "-f", str(defs), "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert f"{defs}:12: Sensor 'watcher': spec.triggers[0].template.conditions" in result.stderr
    assert "Traceback" not in result.stderr
    typo = tmp_path / "typo.yaml"
    typo.write_text(GOOD.replace("eventName: push", "eventNmae: push"))
    result = kafkaops("events", "apply", "-f", str(typo), "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "spec.dependencies[0].eventNmae: unknown field" in result.stderr
    listed = kafkaops("events", "list", "--config", str(config), cwd=tmp_path)
    assert "watcher" not in listed.stdout  # nothing from a failed apply is stored
