"""Named local clusters that outlive the command that started them (`kafkaops dev`)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from kafkaops.testing.broker import LocalCluster, process_alive
from kafkaops.testing.jars import cache_root


@dataclass(frozen=True)
class DevCluster:
    name: str
    nodes: int
    bootstrap: str
    pids: list[int]
    workdir: str

    @property
    def running(self) -> bool:
        return any(process_alive(p) for p in self.pids)


def _root() -> Path:
    return cache_root() / "dev"


def _state_file(name: str) -> Path:
    return _root() / name / "cluster.json"


def load(name: str) -> DevCluster | None:
    try:
        return DevCluster(**json.loads(_state_file(name).read_text()))
    except FileNotFoundError:
        return None


def all_clusters() -> list[DevCluster]:
    if not _root().exists():
        return []
    return [c for p in sorted(_root().iterdir()) if (c := load(p.name)) is not None]


def up(name: str, nodes: int, port: int | None = None) -> tuple[DevCluster, bool]:
    """Start the named cluster unless it already runs; returns (cluster, started_now)."""
    existing = load(name)
    if existing is not None and existing.running:
        return existing, False
    workdir = _root() / name
    if workdir.exists():
        shutil.rmtree(workdir)
    cluster = LocalCluster(
        name=name, nodes=nodes, workdir=workdir / "kafka", keep_workdir=True, port=port or 0
    )
    cluster.start(detach=True)
    state = DevCluster(name, nodes, cluster.bootstrap, cluster.pids(), str(workdir))
    _state_file(name).write_text(json.dumps(asdict(state)))
    return state, True


def down(name: str, grace: float = 15.0) -> bool:
    """Stop the named cluster and delete its data; False when there was none."""
    state = load(name)
    if state is None:
        return False
    for pid in state.pids:
        if process_alive(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(process_alive(p) for p in state.pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in state.pids:
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(state.workdir, ignore_errors=True)
    return True
