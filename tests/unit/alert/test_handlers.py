"""log, exec, tcp and post handlers against local targets; buffering; Kafka failure paths."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from kafkaops.alert.event import AlertEvent
from kafkaops.alert.gotemplate import Template
from kafkaops.alert.handlers import HandlerFactory, HandlerMetrics, KafkaSink
from kafkaops.alert.handlerspec import validate_options
from kafkaops.alert.state import Level
from kafkaops.config import Config
from kafkaops.config.loader import validate
from kafkaops.kafka import ClusterClients
from kafkaops.kafka.partitioners import PartitionAlgorithm
from kafkaops.testing import await_for


def event(alert_id: str = "cpu:host=a", level: Level = Level.CRITICAL) -> AlertEvent:
    return AlertEvent(id=alert_id, message="m", details="d", time_ns=0, duration_ns=0, level=level)


def unreachable() -> ClusterClients:
    section = {"id": "down", "brokers": ["127.0.0.1:1"], "timeout": "1s", "batch-timeout": "1ms"}
    return ClusterClients(validate(Config, {"kafka": [section]}, "t").cluster("down"))


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def factory(registry: CollectorRegistry) -> HandlerFactory:
    return HandlerFactory(
        lambda _cid: unreachable(),
        metrics=HandlerMetrics(registry),
        buffer_length=2,
        delivery_timeout=5.0,
    )


def count(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_log_appends_alert_json_lines_with_the_mode(factory, tmp_path: Path) -> None:
    path = tmp_path / "alerts.log"
    sink = factory.build("t:log0", validate_options("log", {"path": str(path), "mode": 0o640}))
    sink.submit(event("one"))
    sink.submit(event("two"))
    await sink.close(5)
    lines = path.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["one", "two"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


async def test_exec_gets_the_alert_on_stdin_and_failures_count(
    factory, registry, tmp_path: Path
) -> None:
    out = tmp_path / "got.json"
    script = f"import sys; open({str(out)!r}, 'w').write(sys.stdin.read())"
    ok = factory.build(
        "t:exec0", validate_options("exec", {"prog": sys.executable, "args": ["-c", script]})
    )
    ok.submit(event())
    await ok.close(10)
    assert json.loads(out.read_text())["level"] == "CRITICAL"
    bad = factory.build(
        "t:exec1", validate_options("exec", {"prog": sys.executable, "args": ["-c", "exit(3)"]})
    )
    bad.submit(event())
    await bad.close(10)
    assert (
        count(registry, "kafkaops_alert_handler_errors_total", kind="exec", handler="t:exec1") == 1
    )


async def test_tcp_sends_the_alert_json(factory) -> None:
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await received.put(await reader.read())
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sink = factory.build("t:tcp0", validate_options("tcp", {"address": f"127.0.0.1:{port}"}))
    sink.submit(event())
    data = await asyncio.wait_for(received.get(), 10)
    await sink.close(5)
    server.close()
    assert data == event().to_json()


async def test_post_sends_json_with_headers_and_reports_bad_answers(factory, registry) -> None:
    seen: list[tuple[str, str, dict]] = []

    async def hook(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers["X-Team"], await request.json()))
        return web.Response(status=200 if request.path == "/ok/CRITICAL" else 500)

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    async with TestServer(app) as server:
        url = f"http://{server.host}:{server.port}/ok/{{{{ .Level }}}}"  # a template
        good = factory.build(
            "t:post0", validate_options("post", {"url": url, "headers": {"X-Team": "ops"}})
        )
        bad = factory.build(
            "t:post1",
            validate_options(
                "post", {"url": str(server.make_url("/fail")), "headers": {"X-Team": "x"}}
            ),
        )
        good.submit(event())
        bad.submit(event())
        await good.close(10)
        await bad.close(10)
    assert [(p, team, body["id"]) for p, team, body in seen] == [
        ("/ok/CRITICAL", "ops", "cpu:host=a"),
        ("/fail", "x", "cpu:host=a"),
    ]
    assert (
        count(registry, "kafkaops_alert_handler_events_total", kind="post", handler="t:post0") == 1
    )
    assert (
        count(registry, "kafkaops_alert_handler_errors_total", kind="post", handler="t:post1") == 1
    )


async def test_a_full_buffer_drops_and_counts(factory, registry, tmp_path: Path) -> None:
    # Submitting never yields to the loop, so the worker takes nothing meanwhile: the buffer
    # (topic-buffer-length 2) holds two events and the other four are dropped.
    path = tmp_path / "a.log"
    sink = factory.build("t:log0", validate_options("log", {"path": str(path)}))
    for i in range(6):
        sink.submit(event(str(i)))
    await sink.close(5)
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["0", "1"]
    assert count(registry, "kafkaops_alert_events_dropped_total", kind="log", handler="t:log0") == 4


class RecordingWriter:
    cluster, topic = "c", "t"

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes | None]] = []

    def write(self, key: bytes, value: bytes | None) -> None:
        self.records.append((key, value))


def test_kafka_sink_sends_null_when_the_template_fails(registry) -> None:
    writer = RecordingWriter()
    metrics = HandlerMetrics(registry)
    sink = KafkaSink("k", writer, Template.parse("{{ .Nope }}"), metrics)  # type: ignore[arg-type]
    sink.submit(event())
    plain = KafkaSink("k2", writer, None, metrics)  # type: ignore[arg-type]
    plain.submit(event())
    assert writer.records == [(b"cpu:host=a", None), (b"cpu:host=a", event().to_json())]
    assert (
        count(registry, "kafkaops_alert_kafka_template_errors_total", cluster="c", topic="t") == 1
    )


async def test_kafka_records_that_cannot_be_sent_are_reported(registry, caplog) -> None:
    factory = HandlerFactory(
        lambda _cid: unreachable(),
        metrics=HandlerMetrics(registry),
        buffer_length=1,
        delivery_timeout=0.5,
    )

    def reported() -> list[tuple[str, str]]:
        return [
            (r.alert_id, r.error)  # type: ignore[attr-defined]
            for r in caplog.records
            if r.getMessage() == "alert not delivered to Kafka"
        ]

    writer = factory.writer("down", "alerts", PartitionAlgorithm.CRC32, True)
    writer.write(b"a", b"1")
    writer.write(b"b", b"2")  # the backlog holds one
    assert reported() == [("b", "buffer of 1 records is full (topic-buffer-length)")]

    async def expired() -> bool:
        return len(reported()) == 2

    await await_for(expired, 15, what="expiry reported")
    assert reported()[1] == ("a", "delivery-timeout passed before the record was sent")
    assert await factory.close() == 0
    writer.write(b"c", b"3")
    assert reported()[-1] == ("c", "the daemon is shutting down")
    errors = count(
        registry, "kafkaops_alert_kafka_write_errors_total", cluster="down", topic="alerts"
    )
    assert errors == 3
