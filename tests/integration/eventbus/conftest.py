"""Harness for the event bus against a real broker: definitions, events, sensor processes, and
waits that end when the sensor has provably handled everything (never after a fixed time).

"Handled everything" is read from the `kafkaops_eventbus_position` gauges: a stage publishes the
next offset it will handle per partition after each committed batch. The event topic is written
by the test, so its end is known; once the event stage has reached it, the trigger topic is
final, and so on down the pipeline (`Bus.settle`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message, TopicPartition

from kafkaops.config import Config
from kafkaops.config.kafka import KafkaCluster
from kafkaops.eventbus.bus import BusConnections
from kafkaops.eventbus.cloudevents import CloudEvent, decode_action_record
from kafkaops.eventbus.metrics import EventbusMetrics
from kafkaops.eventbus.sensor import SensorRunner, SensorSettings
from kafkaops.eventbus.spec import EventBus, Sensor, load_definitions
from kafkaops.eventbus.store import DefinitionStore
from kafkaops.kafka import ClusterClients
from kafkaops.testing import LocalCluster, free_port, wait_for
from kafkaops.testing.records import create_topic
from kafkaops.testing.wait import WaitTimeout

KAFKAOPS = [sys.executable, "-m", "kafkaops"]
Pairs = tuple[tuple[str, str], ...]
_POSITION = re.compile(
    r'^kafkaops_eventbus_position\{partition="(\d+)",sensor="([^"]+)",stage="(\w+)"\} ([\d.e+]+)$',
    re.M,
)


def read_all(clients: ClusterClients, topic: str, timeout: float = 30.0) -> list[Message]:
    """Every committed record of `topic`, read to its end (read_committed)."""
    consumer = clients.consumer(None, **{"isolation.level": "read_committed"})
    try:
        md = consumer.list_topics(topic, timeout=10)
        parts = sorted(md.topics[topic].partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1] for p in parts}
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        out: list[Message] = []
        deadline = time.monotonic() + timeout
        while True:
            positions = consumer.position([TopicPartition(topic, p) for p in parts])
            if all(tp.offset >= ends[tp.partition] for tp in positions if ends[tp.partition] > 0):
                return out
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: stuck at {positions} of {ends}")
            for msg in consumer.consume(1000, 0.2):
                if msg.error() is None:
                    out.append(msg)
    finally:
        consumer.close()


def data_ends(messages: Sequence[Message]) -> dict[int, int]:
    """Per partition, the offset after the last data record."""
    out: dict[int, int] = {}
    for msg in messages:
        out[msg.partition()] = max(out.get(msg.partition(), 0), msg.offset() + 1)
    return out


@dataclass
class SensorProcess:
    """`kafkaops events run` as a child process, with its own instance id and HTTP port."""

    bus: Bus
    instance: str
    env: dict[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = ("events", "run")
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    runs: int = 0

    def start(self, env: dict[str, str] | None = None) -> SensorProcess:
        self.port = free_port()
        config = self.bus.write_config(self.instance, self.port)
        self.runs += 1
        self.log = self.bus.tmp / f"{self.instance}-{self.runs}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*KAFKAOPS, *self.command, "--config", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env, **(env or {})},
            )
        self.bus.processes.append(self)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up, no offsets committed, transactions left open."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def metrics(self) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                return r.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return ""

    def positions(self) -> dict[tuple[str, str, int], int]:
        """(sensor, stage, partition) -> next offset handled, for partitions it owns."""
        return {
            (m[2], m[3], int(m[1])): int(float(m[4])) for m in _POSITION.finditer(self.metrics())
        }

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log else ""


class Bus:
    """One test's event bus: unique topics and groups, a data dir, helpers."""

    def __init__(self, cluster: LocalCluster, unique: str, tmp: Path) -> None:
        self.cluster = cluster
        self.name = unique.lower()
        self.tmp = tmp
        self.clients = ClusterClients(KafkaCluster(id="main", brokers=[cluster.bootstrap]))
        self.event_topic = f"{self.name}-events"
        self.store = DefinitionStore.in_data_dir(tmp / "data")
        self.processes: list[SensorProcess] = []
        self.runners: list[SensorRunner] = []
        self.producer = self.clients.producer(**{"enable.idempotence": True, "linger.ms": 1})
        self.eventbus_settings: dict[str, Any] = {
            "batch-timeout": "200ms",
            "transaction-timeout": "10s",
            "session-timeout": "6s",
        }

    # -- definitions

    def bus_yaml(self, *, start_oldest: bool = True) -> str:
        return textwrap.dedent(
            f"""\
            apiVersion: argoproj.io/v1alpha1
            kind: EventBus
            metadata: {{name: default}}
            spec:
              kafka:
                cluster: main
                topic: {self.event_topic}
                consumerGroup: {{groupName: {self.name}, startOldest: {str(start_oldest).lower()}}}
            """
        )

    def apply(self, text: str) -> list[Any]:
        definitions = list(load_definitions(text, "test.yaml").definitions)
        self.store.apply(definitions)
        return definitions

    def topics(self, partitions: int = 1, output: Sequence[str] = ()) -> None:
        admin = self.clients.admin()
        create_topic(admin, self.event_topic, partitions=partitions)
        for name in output:
            create_topic(admin, name, partitions=1)

    def write_config(self, instance: str, port: int) -> Path:
        path = self.tmp / f"{instance}.toml"
        eventbus = "".join(f'{k} = "{v}"\n' for k, v in self.eventbus_settings.items())
        path.write_text(
            f'data_dir = "{self.tmp / "data"}"\n'
            f'[http]\nbind-address = "127.0.0.1:{port}"\n'
            f'[[kafka]]\nid = "main"\nbrokers = ["{self.cluster.bootstrap}"]\n'
            f'[eventbus]\ninstance-id = "{instance}"\n{eventbus}'
        )
        return path

    # -- events

    def event(self, dep: str, event_id: str, data: Any = None, source: str = "src") -> CloudEvent:
        return CloudEvent(
            id=event_id,
            source=source,
            type="test",
            subject=dep,
            time=datetime.now(UTC),
            data={"n": event_id} if data is None else data,
        )

    def send(self, *events: CloudEvent, timestamp_ms: int | None = None) -> None:
        for event in events:
            kwargs = {} if timestamp_ms is None else {"timestamp": timestamp_ms}
            self.producer.produce(self.event_topic, event.to_json(), event.key.encode(), **kwargs)
        assert self.producer.flush(30) == 0

    # -- running sensors

    def process(self, instance: str, *, daemon: bool = False, **env: str) -> SensorProcess:
        """`kafkaops events run`, or with `daemon` the general `kafkaops run` (which runs the
        event bus because the config has an [eventbus] section)."""
        command = ("run",) if daemon else ("events", "run")
        return SensorProcess(self, instance, env=env, command=command)

    def run_inline(self, sensor: Sensor, bus: EventBus, instance: str = "inline") -> SensorRunner:
        """A sensor in this process (threads), for tests that do not kill processes."""
        config = Config.model_validate(
            {
                "data_dir": str(self.tmp / "data"),
                "kafka": [{"id": "main", "brokers": [self.cluster.bootstrap]}],
            }
        )
        connections = BusConnections(config, lambda cid: self.clients)
        settings = SensorSettings(instance_id=instance, batch_timeout=0.2, transaction_timeout=10)
        runner = SensorRunner(sensor, bus, connections, settings, self.metrics)
        runner.start()
        self.runners.append(runner)
        return runner

    @property
    def metrics(self) -> EventbusMetrics:
        if not hasattr(self, "_metrics"):
            self._metrics = EventbusMetrics()
        return self._metrics

    def positions(self) -> dict[tuple[str, str, int], int]:
        out: dict[tuple[str, str, int], int] = {}
        for proc in self.processes:
            if proc.alive:
                out.update(proc.positions())
        for metric in self.metrics.position.collect():
            for sample in metric.samples:
                labels = sample.labels
                key = (labels["sensor"], labels["stage"], int(labels["partition"]))
                out[key] = int(sample.value)
        return out

    def settle(self, sensor: str, timeout: float = 60.0) -> dict[str, list[Message]]:
        """Wait until every stage of `sensor` handled everything upstream produced; returns
        the committed contents of its trigger and action topics."""
        event_ends = {
            p: self.clients.consumer(None).get_watermark_offsets(
                TopicPartition(self.event_topic, p), 10
            )[1]
            for p in self._partitions(self.event_topic)
        }
        self._wait_stage(sensor, "event", event_ends, timeout)
        out: dict[str, list[Message]] = {}
        for stage in ("trigger", "action"):
            topic = f"{self.event_topic}-{sensor}-{stage}"
            if not self._exists(topic):
                out[stage] = []
                continue
            records = read_all(self.clients, topic)
            out[stage] = records
            self._wait_stage(sensor, stage, data_ends(records), timeout)
        return out

    def _wait_stage(self, sensor: str, stage: str, ends: dict[int, int], timeout: float) -> None:
        def done() -> bool:
            positions = self.positions()
            return all(
                positions.get((sensor, stage, p), -1) >= end for p, end in ends.items() if end
            )

        try:
            wait_for(done, timeout, 0.1, what=f"{sensor} {stage} stage to reach {ends}")
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}\n{self._reports(sensor, stage)}") from None

    def _reports(self, sensor: str, stage: str) -> str:
        """What each live process reports for `stage`, with the errors in its log."""
        lines = []
        for proc in {id(p): p for p in self.processes}.values():
            if not proc.alive:
                continue
            mine = {p: o for (s, r, p), o in proc.positions().items() if (s, r) == (sensor, stage)}
            errors = [line for line in proc.output().splitlines() if "ERROR" in line.upper()]
            lines.append(f"{proc.instance} (run {proc.runs}): {mine}; errors: {errors[-5:]}")
        return "\n".join(lines)

    def _partitions(self, topic: str) -> list[int]:
        md = self.clients.admin().list_topics(topic, timeout=10)
        return sorted(md.topics[topic].partitions)

    def _exists(self, topic: str) -> bool:
        md = self.clients.admin().list_topics(timeout=10)
        return topic in md.topics

    def firings(
        self, action_records: Sequence[Message]
    ) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
        """Action-topic records as (trigger, sorted (dependency, event id))."""
        out = []
        for msg in action_records:
            trigger, items = decode_action_record(msg.key(), msg.value())
            out.append((trigger, tuple(sorted((i.dependency, i.event.id) for i in items))))
        return out

    def read(self, topic: str) -> list[Message]:
        return read_all(self.clients, topic)

    def output(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(m.value()) for m in read_all(self.clients, topic)]

    def close(self) -> None:
        for runner in self.runners:
            runner.stop()
        for proc in self.processes:
            if proc.alive:
                proc.kill()
        self.store.close()


@pytest.fixture
def bus(kafka: LocalCluster, unique: str, tmp_path: Path) -> Iterator[Bus]:
    b = Bus(kafka, unique, tmp_path)
    try:
        yield b
    finally:
        b.close()


class RecordingServer:
    """An HTTP server (in a thread) that records requests; `/hang` blocks until released."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[tuple[str, str, bytes]] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                owner.requests.append((self.command, self.path, body))
                if self.path.startswith("/hang"):
                    owner.entered.set()
                    owner.release.wait(60)
                status = 500 if self.path.startswith("/fail") else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_POST = do_PUT = do_GET = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http_server() -> Iterator[RecordingServer]:
    server = RecordingServer()
    try:
        yield server
    finally:
        server.close()


def wait_until(probe: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    return wait_for(probe, timeout, 0.1, what=what)
