"""Alerting throughput: points through one rule, and alerts through the Kafka handler.

1. points/s through one TICKscript rule, in process (TaskManager.process) and over HTTP
   (`POST /write` bodies of line protocol to a `kafkaops run` process);
2. alerts/s through the Kafka handler (alert JSON encoded per alert, partition computed by our
   crc32, failures tracked) against a bare confluent-kafka producer sending the same keys and
   values, pre-encoded, measured in rotation in the same run; the ratio is handler / bare. The
   bare producer runs twice: checking every delivery report (the baseline, what a careful script
   does), and with reports of failures only, which is how the handler's writer runs.

Prints median and p95 over several runs. Needs Java and Maven (a real broker is started).
Usage: python bench/alert_bench.py [--runs N] [--points N] [--alerts N]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import tomli_w

from kafkaops.alert.event import AlertEvent, AlertTemplates, kafka_message_key
from kafkaops.alert.handlers import HandlerFactory, HandlerMetrics, KafkaSink
from kafkaops.alert.lineprotocol import Point
from kafkaops.alert.silences import Silences
from kafkaops.alert.state import Level
from kafkaops.alert.tasks import TaskManager
from kafkaops.alert.topics import Topics
from kafkaops.config import Config
from kafkaops.config.loader import validate
from kafkaops.kafka import ClusterClients
from kafkaops.kafka.partitioners import PartitionAlgorithm
from kafkaops.server.store import DocumentStore
from kafkaops.testing import LocalCluster, free_port, wait_for
from kafkaops.testing.records import create_topic

HOSTS = 200
RULE = """
stream
    |from()
        .measurement('cpu')
        .groupBy('host')
    |alert()
        .warn(lambda: "usage_idle" < 20)
        .crit(lambda: "usage_idle" < 10)
        .stateChangesOnly()
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(name: str, rates: list[float], unit: str) -> float:
    median = statistics.median(rates)
    # p95 of the time per run is the 5th percentile of the rate.
    print(f"{name}: median {median:,.0f} {unit}  p95 {percentile(rates, 0.05):,.0f} {unit}")
    return median


def lines(count: int, start_ns: int) -> list[str]:
    """cpu points over HOSTS hosts; a few cross the thresholds, so the state machine works."""
    out = []
    for i in range(count):
        idle = 5.0 if i % 97 == 0 else 50.0 + i % 40
        out.append(f"cpu,host=h{i % HOSTS},cpu=cpu-total usage_idle={idle} {start_ns + i}")
    return out


# 1a. in process ---------------------------------------------------------------------------------


class _NullFactory:
    def build(self, name: str, _options: Any) -> Any:
        class Sink:
            kind = "log"

            def submit(self, _event: AlertEvent) -> None:
                return None

            async def close(self, _timeout: float) -> None:
                return None

        return Sink()


def in_process_run(points: list[Point], tmp: Path) -> float:
    store = DocumentStore(tmp / f"bench-{time.monotonic_ns()}.sqlite")
    factory = _NullFactory()
    topics = Topics(store, factory, Silences(store), None)  # type: ignore[arg-type]
    tasks = TaskManager(store, topics, factory, clusters=[], registry=None)  # type: ignore[arg-type]

    async def run() -> float:
        tasks.define("cpu", RULE, status="enabled")
        t0 = time.perf_counter()
        tasks.process(points)
        return len(points) / (time.perf_counter() - t0)

    rate = asyncio.run(run())
    store.close()
    return rate


# 1b. over HTTP ----------------------------------------------------------------------------------


class DaemonProcess:
    def __init__(self, cluster: LocalCluster, tmp: Path) -> None:
        self.port = free_port()
        config = tmp / "bench.toml"
        config.write_text(
            tomli_w.dumps(
                {
                    "data_dir": str(tmp / "data"),
                    "http": {"bind-address": f"127.0.0.1:{self.port}"},
                    "logging": {"level": "WARN"},
                    "kafka": [cluster.cluster_section("bench")],
                }
            )
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kafkaops", "run", "--config", str(config)],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        wait_for(self._up, 60, what="daemon up")

    def _up(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/kapacitor/v1/ping", timeout=2
            ):
                return True
        except OSError:
            return False

    def request(self, conn: http.client.HTTPConnection, method: str, path: str, body: bytes):
        conn.request(method, path, body=body)
        response = conn.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def http_run(daemon: DaemonProcess, bodies: list[bytes], points: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=60)
    t0 = time.perf_counter()
    for body in bodies:
        daemon.request(conn, "POST", "/write?db=telegraf", body)
    rate = points / (time.perf_counter() - t0)
    conn.close()
    return rate


# 2. Kafka handler against a bare producer ------------------------------------------------------


def make_events(count: int) -> list[AlertEvent]:
    templates = AlertTemplates.parse()
    events = []
    for i in range(count):
        host = f"h{i % 1000}"
        events.append(
            templates.event(
                alert_id=f"cpu:host={host}",
                name="cpu",
                task_name="cpu",
                group=f"host={host}",
                tags={"host": host, "cpu": "cpu-total"},
                fields={"usage_idle": 5.0 + i % 5},
                level=Level.CRITICAL,
                time_ns=1_700_000_000_000_000_000 + i,
                duration_ns=i,
                recoverable=True,
            )
        )
    return events


def handler_run(
    clients: ClusterClients,
    topic: str,
    events: list[AlertEvent],
    records: list[tuple[bytes, bytes]] | None = None,
) -> float:
    """Alerts through KafkaSink.submit (encoding included); with `records`, the same bytes
    straight into the handler's writer, which isolates what the handler adds to a producer."""

    async def run() -> float:
        factory = HandlerFactory(
            lambda _cid: clients,
            metrics=HandlerMetrics(None),
            buffer_length=len(events) + 1,
            delivery_timeout=60.0,
        )
        writer = factory.writer(clients.id, topic, PartitionAlgorithm.CRC32, True)
        while writer.partitions is None:  # metadata is not part of the measurement
            await asyncio.sleep(0.01)
        sink = KafkaSink("bench", writer, None, factory.metrics)
        t0 = time.perf_counter()
        if records is None:
            for i, event in enumerate(events):
                sink.submit(event)
                if i % 1000 == 999:
                    await asyncio.sleep(0)  # let the writer's backlog task run, as in the daemon
        else:
            for i, (key, value) in enumerate(records):
                writer.write(key, value)
                if i % 1000 == 999:
                    await asyncio.sleep(0)
        undelivered = await factory.close()
        elapsed = time.perf_counter() - t0
        assert undelivered == 0, undelivered
        return len(events) / elapsed

    return asyncio.run(run())


def bare_run(
    clients: ClusterClients,
    topic: str,
    records: list[tuple[bytes, bytes]],
    *,
    errors_only: bool = False,
) -> float:
    """A bare idempotent producer that checks every delivery report (what a careful script
    does), or with `errors_only` gets reports of failures only, as the handler's writer does."""
    producer = clients.producer(
        **{"enable.idempotence": True, "delivery.report.only.error": errors_only}
    )
    producer.list_topics(topic, timeout=10)
    failed = []

    def delivered(err, _msg) -> None:
        if err is not None:
            failed.append(err)

    t0 = time.perf_counter()
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    left = producer.flush(60)
    elapsed = time.perf_counter() - t0
    assert not failed and not left, (failed[:1], left)
    return len(records) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--alerts", type=int, default=50_000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="alert-bench-"))

    raw = lines(args.points, 1_700_000_000_000_000_000)
    points = [
        Point("cpu", {"host": f"h{i % HOSTS}", "cpu": "cpu-total"}, {"usage_idle": float(v)}, i)
        for i, v in enumerate(float(line.split("=")[-1].split()[0]) for line in raw)
    ]
    rates = [in_process_run(points, tmp) for _ in range(args.runs)]
    summary(f"points through one rule, in process ({args.points:,} points)", rates, "points/s")

    with LocalCluster(name="alertbench", throughput=True) as cluster:
        daemon = DaemonProcess(cluster, tmp)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=60)
            task = {"id": "cpu", "script": RULE, "status": "enabled"}
            daemon.request(conn, "POST", "/kapacitor/v1/tasks", json.dumps(task).encode())
            conn.close()
            per_body = 5000
            bodies = [
                "\n".join(raw[i : i + per_body]).encode() for i in range(0, len(raw), per_body)
            ]
            rates = [http_run(daemon, bodies, len(raw)) for _ in range(args.runs)]
            summary(
                f"points through one rule, HTTP /write ({per_body:,} lines per body)",
                rates,
                "points/s",
            )
        finally:
            daemon.stop()

        config = validate(Config, {"kafka": [cluster.cluster_section("bench")]}, "bench")
        clients = ClusterClients(config.cluster("bench"))
        topic = "alert-bench"
        create_topic(clients.admin(), topic, partitions=6)
        events = make_events(args.alerts)
        records = [(kafka_message_key(e), e.to_json()) for e in events]
        t0 = time.perf_counter()
        for event in events:
            event.to_json()
        encode_us = (time.perf_counter() - t0) / len(events) * 1e6
        full_rates, writer_rates, bare_rates, lean_rates = [], [], [], []
        for i in range(args.runs):
            # Rotate the order, so no side always runs on a warmer broker.
            runs = [
                lambda: full_rates.append(handler_run(clients, topic, events)),
                lambda: writer_rates.append(handler_run(clients, topic, events, records)),
                lambda: bare_rates.append(bare_run(clients, topic, records)),
                lambda: lean_rates.append(bare_run(clients, topic, records, errors_only=True)),
            ]
            for run in runs[i % 4 :] + runs[: i % 4]:
                run()
        print(f"alert JSON encoding (AlertEvent.to_json): {encode_us:.1f} us per alert")
        full = summary(
            f"alerts through the Kafka handler, JSON encoded per alert ({args.alerts:,})",
            full_rates,
            "alerts/s",
        )
        writer = summary(
            "the Kafka handler's writer, same records pre-encoded", writer_rates, "records/s"
        )
        bare = summary(
            "bare confluent-kafka producer, same records, every delivery checked",
            bare_rates,
            "records/s",
        )
        lean = summary(
            "bare confluent-kafka producer, same records, failed deliveries reported only",
            lean_rates,
            "records/s",
        )
        print(f"ratio handler incl. JSON encoding / bare producer: {full / bare:.2f}x")
        print(
            f"ratio handler incl. JSON encoding / bare producer, failures only: {full / lean:.2f}x"
        )
        print(f"ratio handler writer / bare producer: {writer / bare:.2f}x")
        print(f"ratio handler writer / bare producer, failures only: {writer / lean:.2f}x")


if __name__ == "__main__":
    main()
