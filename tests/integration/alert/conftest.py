"""An alerting daemon in a background thread, over the session's real broker.

The daemon is the real one (Runtime, the core routes, AlertJob, one aiohttp server); it runs in
its own thread and event loop so tests stay synchronous, talk to it over HTTP like users do, and
can publish on its in-process channels (the lag feed) through `Daemon.publish`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from confluent_kafka import Consumer, Message

from kafkaops.alert.job import AlertJob, AlertService
from kafkaops.config import Config
from kafkaops.config.loader import validate
from kafkaops.kafka import ClusterClients
from kafkaops.server.http import core_routes
from kafkaops.server.runtime import Runtime
from kafkaops.testing import LocalCluster, free_port
from kafkaops.testing.records import consume, create_topic

CLUSTER = "main"


def make_config(data_dir: Path, section: dict[str, Any], alert: dict[str, Any] | None) -> Config:
    return validate(
        Config,
        {
            "data_dir": str(data_dir),
            "http": {"bind-address": f"127.0.0.1:{free_port()}"},
            "kafka": [section],
            "alert": {"state-flush-interval": "100ms", **(alert or {})},
        },
        "test",
    )


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.url = f"http://127.0.0.1:{config.http.port}"
        self.job = AlertJob()
        self.runtime: Runtime | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._thread_main, daemon=True)

    @property
    def service(self) -> AlertService:
        assert self.job.service is not None
        return self.job.service

    def start(self) -> Daemon:
        self._thread.start()
        assert self._ready.wait(60), "daemon did not start within 60s"
        if self._error is not None:
            raise self._error
        return self

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        runtime = self.runtime = Runtime(self.config)
        self.loop = asyncio.get_running_loop()
        runtime.add_routes(core_routes(runtime))
        await self.job.start(runtime)
        runner = web.AppRunner(runtime.app, handle_signals=False, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.config.http.host, self.config.http.port).start()
        self._ready.set()
        try:
            await runtime.stopping.wait()
        finally:
            await runtime.shutdown()
            await runner.cleanup()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(*args)` in the daemon's loop and return its result."""

        async def run() -> Any:
            return fn(*args)

        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def publish(self, channel: str, item: Any) -> None:
        assert self.runtime is not None
        self.call(self.runtime.publish, channel, item)

    def stop(self) -> None:
        if self.loop is not None and self._thread.is_alive():
            assert self.runtime is not None
            self.loop.call_soon_threadsafe(self.runtime.stopping.set)
            self._thread.join(60)
            assert not self._thread.is_alive(), "daemon did not stop within 60s"

    # HTTP ---------------------------------------------------------------------------------

    def request(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                status, text = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read()
        return status, (json.loads(text) if text.strip() else None)

    def text(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return response.read().decode()

    def write(self, lines: str, query: str = "") -> tuple[int, Any]:
        return self.request("POST", f"/write{query}", raw=lines.encode())

    def define(self, task_id: str, script: str, enable: bool = True) -> dict[str, Any]:
        status, body = self.request(
            "POST",
            "/kapacitor/v1/tasks",
            {"id": task_id, "script": script, "status": "enabled" if enable else "disabled"},
        )
        assert status == 200, body
        return body


@pytest.fixture
def daemon_factory(kafka: LocalCluster, tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(
        alert: dict[str, Any] | None = None,
        data_dir: Path | None = None,
        section: dict[str, Any] | None = None,
    ) -> Daemon:
        """A daemon on the session broker (or on the cluster `section` describes)."""
        section = section or kafka.cluster_section(CLUSTER, **{"batch-timeout": "5ms"})
        config = make_config(data_dir or tmp_path / "data", section, alert)
        daemon = Daemon(config).start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture
def daemon(daemon_factory: Callable[..., Daemon]) -> Daemon:
    return daemon_factory()


@pytest.fixture
def clients(kafka: LocalCluster) -> ClusterClients:
    return ClusterClients(
        validate(Config, {"kafka": [kafka.cluster_section(CLUSTER)]}, "t").cluster(CLUSTER)
    )


@pytest.fixture
def topic_factory(clients: ClusterClients, unique: str) -> Callable[..., str]:
    admin = clients.admin()
    count = iter(range(1000))

    def make(partitions: int = 1) -> str:
        name = f"{unique}-{next(count)}"
        create_topic(admin, name, partitions=partitions)
        return name

    return make


@pytest.fixture
def reader(clients: ClusterClients) -> Iterator[Callable[..., list[Message]]]:
    consumers: list[Consumer] = []

    def read(topic: str, count: int, timeout: float = 30.0) -> list[Message]:
        consumer = clients.consumer(None, **{"group.id": f"reader-{topic}"})
        consumers.append(consumer)
        return consume(consumer, topic, count, timeout)

    yield read
    for c in consumers:
        c.close()
