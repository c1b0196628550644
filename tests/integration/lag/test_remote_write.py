"""Remote write against a real local aiohttp receiver that decodes every body with Google's
protobuf runtime: the monitor's own series each iteration, the protocol headers, the user's
headers, basic auth, bearer token, mutual TLS, and retries with backoff."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import cramjam
import pytest
from aiohttp import web
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from kafkaops.lag.config import RemoteWrite
from kafkaops.lag.export import Family, RemoteWriter
from kafkaops.lag.job import LagJob
from kafkaops.server.runtime import Runtime
from kafkaops.testing import await_for, free_port
from kafkaops.testing.tls import make_tls_files


def _write_request_class() -> type:
    """prometheus/prompb's WriteRequest, built at run time (no generated code)."""
    f = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="rw_it.proto", package="prometheus_it")
    fdp.syntax = "proto3"
    optional, repeated = f.LABEL_OPTIONAL, f.LABEL_REPEATED
    for name, fields in (
        ("Sample", [("value", 1, f.TYPE_DOUBLE, optional, ""),
                    ("timestamp", 2, f.TYPE_INT64, optional, "")]),
        ("Label", [("name", 1, f.TYPE_STRING, optional, ""),
                   ("value", 2, f.TYPE_STRING, optional, "")]),
        ("TimeSeries", [("labels", 1, f.TYPE_MESSAGE, repeated, ".prometheus_it.Label"),
                        ("samples", 2, f.TYPE_MESSAGE, repeated, ".prometheus_it.Sample")]),
        ("WriteRequest", [("timeseries", 1, f.TYPE_MESSAGE, repeated,
                           ".prometheus_it.TimeSeries")]),
    ):  # fmt: skip
        msg = fdp.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            fld = msg.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                fld.type_name = type_name
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("prometheus_it.WriteRequest"))


WriteRequest = _write_request_class()


@dataclass
class Received:
    headers: dict[str, str]
    series: list[tuple[dict[str, str], float, int]]


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)
    """Statuses to answer before accepting (a 503 then a 200 tests the retry)."""


async def _serve(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Receiver]:
    port = free_port()
    scheme = "https" if ssl_context else "http"
    receiver = Receiver(f"{scheme}://127.0.0.1:{port}/api/v1/write")

    async def write(request: web.Request) -> web.Response:
        body = await request.read()
        if receiver.fail_next:
            return web.Response(status=receiver.fail_next.pop(0), text="try again")
        decoded = WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
        series = [
            ({lb.name: lb.value for lb in ts.labels}, ts.samples[0].value,
             ts.samples[0].timestamp)
            for ts in decoded.timeseries
        ]  # fmt: skip
        receiver.requests.append(Received(dict(request.headers), series))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/api/v1/write", write)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()
    try:
        yield receiver
    finally:
        await runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async for r in _serve():
        yield r


def _family(value: float = 3.0) -> list[Family]:
    return [
        Family("kafka_consumer_group_lag_in_offsets", "h", "gauge",
               ("clustername", "group", "topic", "partition"),
               [(("c", "g", "t", "0"), value)]),
        Family("kafkaops_lag_scrape_errors", "h", "counter", ("clustername",), [(("c",), 2.0)]),
    ]  # fmt: skip


async def _send_once(writer: RemoteWriter, fams: list[Family]) -> None:
    task = asyncio.create_task(writer.run())
    try:
        writer._pending = writer.body(fams, 1_700_000_000_000)
        writer._wake.set()
        await await_for(lambda: _done(writer), 20, what="remote write attempt finished")
    finally:
        task.cancel()


async def _done(writer: RemoteWriter) -> bool:
    return writer.sent + writer.failed > 0


async def test_headers_basic_auth_and_retry_after_503(receiver: Receiver) -> None:
    receiver.fail_next = [503]
    writer = RemoteWriter(
        RemoteWrite(
            enabled=True,
            url=receiver.url,
            headers={"X-Custom-Header": "myCustomHeaderValue"},
            basic_auth={"username": "me", "password": "pw"},
        ),
        backoff=0.05,
    )
    await _send_once(writer, _family())
    assert (writer.sent, writer.failed) == (1, 0)
    (req,) = receiver.requests
    assert req.headers["Content-Encoding"] == "snappy"
    assert req.headers["Content-Type"] == "application/x-protobuf"
    assert req.headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    assert req.headers["X-Custom-Header"] == "myCustomHeaderValue"
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(b"me:pw").decode()
    assert req.series == [
        ({"__name__": "kafka_consumer_group_lag_in_offsets", "clustername": "c", "group": "g",
          "topic": "t", "partition": "0"}, 3.0, 1_700_000_000_000),
        ({"__name__": "kafkaops_lag_scrape_errors_total", "clustername": "c"}, 2.0,
         1_700_000_000_000),
    ]  # fmt: skip


async def test_client_errors_are_not_retried(receiver: Receiver) -> None:
    receiver.fail_next = [400, 400]
    writer = RemoteWriter(RemoteWrite(enabled=True, url=receiver.url), backoff=0.05)
    await _send_once(writer, _family())
    assert (writer.sent, writer.failed) == (0, 1)
    assert receiver.fail_next == [400]
    assert writer.last_error.startswith("HTTP 400")


async def test_bearer_token_over_mutual_tls(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "tls")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tls.broker_keystore)
    server.load_verify_locations(tls.ca)
    server.verify_mode = ssl.CERT_REQUIRED
    async for receiver in _serve(server):
        writer = RemoteWriter(
            RemoteWrite(
                enabled=True,
                url=receiver.url,
                bearer_token="t0ken",
                tls_config={
                    "enabled": True,
                    "ca_cert_file": str(tls.ca),
                    "cert_file": str(tls.client_cert),
                    "key_file": str(tls.client_key),
                },
            )
        )
        await _send_once(writer, _family())
        assert (writer.sent, writer.failed) == (1, 0), writer.last_error
        assert receiver.requests[0].headers["Authorization"] == "Bearer t0ken"

        untrusted = RemoteWriter(
            RemoteWrite(enabled=True, url=receiver.url, tls_config={"enabled": True}),
            attempts=1,
        )
        await _send_once(untrusted, _family())
        assert untrusted.failed == 1
        assert "certificate" in untrusted.last_error.lower()


@pytest.mark.kafka
async def test_the_job_pushes_the_monitors_series_every_iteration(
    kafka, traffic, lag_config, receiver: Receiver, unique: str
) -> None:
    topic = traffic.topic(f"{unique}-t")
    traffic.produce(topic, 12)
    group = f"{unique}-g"
    traffic.commit(group, {(topic, 0): 2})
    config = lag_config(
        kafka,
        iteration_interval="0.5s",
        labels={"env": "rw"},
        clusters=[{"name": "main", "consumer_groups": {"whitelist": f"^{unique}"}}],
        prometheus_remote_write={"enabled": True, "url": receiver.url},
    )
    runtime = Runtime(config)
    await LagJob().start(runtime)

    async def two_with_group() -> bool:
        hits = [r for r in receiver.requests if any(s[0].get("group") == group for s in r.series)]
        return len(hits) >= 2

    try:
        await await_for(two_with_group, 30, what="two pushes carrying the group")
    finally:
        await runtime.shutdown()
    last = receiver.requests[-1].series
    lag = [
        value for labels, value, _ in last
        if labels["__name__"] == "kafka_consumer_group_lag_in_offsets" and labels["group"] == group
    ]  # fmt: skip
    assert lag == [10.0]
    names = {labels["__name__"] for labels, _, _ in last}
    assert "kafka_iteration_time_seconds" in names
    assert all(n.startswith(("kafka_", "kafkaops_lag_")) for n in names), names
    assert all(labels.get("env") == "rw" for labels, _, _ in last if "group" in labels)
    timestamps = {ts for _, _, ts in last}
    assert len(timestamps) == 1
