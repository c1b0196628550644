"""Where points come from: InfluxDB line protocol over HTTP and from Kafka, and the lag monitor.

Telegraf and scripts written for Kapacitor post to `/write` or `/kapacitor/v1/write` with
`db`, `rp` and `precision`; those keep working. Unlike Kapacitor, which refuses a whole body for
one bad line, the good lines of a body are processed and the answer (400) names every bad line
with its column and says how many points were accepted, so nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry, Counter

from kafkaops.alert.config import DEFAULT_RP, LAG_DATABASE, KafkaInput
from kafkaops.alert.lineprotocol import ParseResult, Point, parse_lines
from kafkaops.alert.tasks import TaskManager
from kafkaops.kafka import ClusterClients

log = logging.getLogger("kafkaops.alert.ingest")

LAG_MEASUREMENT = "kafka_consumer_group_lag"
LAG_TAGS = ("clustername", "group", "topic", "partition")
_SHOWN_ERRORS = 20
_BATCH = 500
MAX_BODY_BYTES = 25 * 1024 * 1024
"""InfluxDB's default max-body-size: Telegraf batches can exceed aiohttp's 1 MiB default."""


class Ingest:
    """Turns incoming data into points and hands them to the enabled tasks."""

    def __init__(self, tasks: TaskManager, registry: CollectorRegistry | None) -> None:
        self.tasks = tasks
        self._points = Counter(
            "kafkaops_alert_points",
            "Points received for alerting, by source (http, kafka, lag).",
            ["source"],
            registry=registry,
        )
        self._rejected = Counter(
            "kafkaops_alert_points_rejected",
            "Lines of line protocol that could not be parsed, by source (each one is reported).",
            ["source"],
            registry=registry,
        )

    def write(
        self,
        body: bytes | str,
        *,
        db: str = "",
        rp: str = "",
        precision: str = "ns",
        now: int | None = None,
        source: str = "http",
    ) -> ParseResult:
        """Parse and process a line-protocol body; bad lines come back in `errors`, the good
        ones have been processed. ValueError for an unknown precision."""
        result = parse_lines(body, now=time.time_ns() if now is None else now, precision=precision)
        if result.points:
            self._points.labels(source).inc(len(result.points))
            self.tasks.process(result.points, db, rp or (DEFAULT_RP if db else ""))
        if result.errors:
            self._rejected.labels(source).inc(len(result.errors))
        return result

    def lag(self, rows: Iterable[Any]) -> None:
        """The lag monitor's rows of one iteration, as `kafka_consumer_group_lag` points."""
        points = lag_points(rows)
        if points:
            self._points.labels("lag").inc(len(points))
            self.tasks.process(points, LAG_DATABASE, DEFAULT_RP)


def lag_points(rows: Iterable[Any], now: int | None = None) -> list[Point]:
    """One point per group-partition row. Rows are the dicts of the runtime's "lag" channel
    (objects with the same attribute names work too). `lag_in_seconds` is left out when the
    monitor could not tell, so `isPresent("lag_in_seconds")` says whether it is known."""
    points = []
    stamp = time.time_ns() if now is None else now
    for row in rows:
        get = row.get if isinstance(row, Mapping) else lambda k, d=None, r=row: getattr(r, k, d)
        tags = {name: str(get(name, "")) for name in LAG_TAGS}
        status = get("status", "")
        fields: dict[str, Any] = {
            "lag_in_offsets": int(get("lag_in_offsets", 0)),
            "status": str(getattr(status, "name", status)),
        }
        seconds = get("lag_in_seconds")
        if seconds is not None:
            fields["lag_in_seconds"] = float(seconds)
        time_ns = get("time_ns")
        points.append(
            Point(LAG_MEASUREMENT, tags, fields, stamp if time_ns is None else int(time_ns))
        )
    return points


def describe_errors(result: ParseResult) -> dict[str, Any]:
    """The 400 body: Kapacitor's `error` text, plus every bad line and the accepted count."""
    bad = len(result.errors)
    accepted = len(result.points)
    shown = "; ".join(str(e) for e in result.errors[:_SHOWN_ERRORS])
    more = f"; and {bad - _SHOWN_ERRORS} more" if bad > _SHOWN_ERRORS else ""
    return {
        "error": f"{bad} line(s) rejected, {accepted} point(s) accepted: {shown}{more}",
        "errors": [{"line": e.line, "column": e.column, "message": str(e)} for e in result.errors],
        "accepted": accepted,
    }


async def _read_body(request: web.Request) -> bytes | None:
    """The (decompressed) body, or None beyond MAX_BODY_BYTES."""
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def write_routes(ingest: Ingest, accepting: Any) -> list[web.RouteDef]:
    """`POST /write` and `POST /kapacitor/v1/write`; `accepting()` is False once the daemon
    is stopping, so no alert is accepted after the final flush has begun."""

    async def write(request: web.Request) -> web.Response:
        if not accepting():
            return web.json_response({"error": "shutting down"}, status=503)
        query = request.query
        body = await _read_body(request)
        if body is None:
            return web.json_response(
                {"error": f"body larger than {MAX_BODY_BYTES} bytes"}, status=413
            )
        try:
            result = ingest.write(
                body,
                db=query.get("db", ""),
                rp=query.get("rp", ""),
                precision=query.get("precision", "ns"),
            )
        except ValueError as exc:
            return web.json_response({"error": f"precision: {exc}"}, status=400)
        if result.errors:
            return web.json_response(describe_errors(result), status=400)
        return web.Response(status=204)

    return [web.post("/write", write), web.post("/kapacitor/v1/write", write)]


class KafkaInputRunner:
    """Line-protocol records from Kafka topics, at least once: the offsets of a batch are
    committed only after its points went through the tasks. A point without a timestamp takes
    the record's timestamp, so a replay after a crash gives the same times."""

    def __init__(self, source: KafkaInput, clients: ClusterClients, ingest: Ingest) -> None:
        self.source = source
        self.clients = clients
        self.ingest = ingest
        self.stopping = False
        self.finished = asyncio.Event()

    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        log.info(
            "alert kafka input assigned",
            extra={"group": self.source.group, "partitions": len(partitions)},
        )

    async def run(self) -> None:
        src = self.source
        consumer = self.clients.consumer(src.group, **{"auto.offset.reset": src.auto_offset_reset})
        try:
            consumer.subscribe(list(src.topics), on_assign=self._on_assign)
            while not self.stopping:
                messages = await asyncio.to_thread(consumer.consume, _BATCH, 0.5)
                if not messages:
                    continue
                offsets = self._process(messages)
                if offsets:
                    await asyncio.to_thread(self._commit, consumer, offsets)
        finally:
            await asyncio.to_thread(consumer.close)
            self.finished.set()

    def _process(self, messages: list[Any]) -> list[TopicPartition]:
        src = self.source
        last: dict[tuple[str, int], int] = {}
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("alert kafka input error", extra={"error": err.str()})
                continue
            kind, stamp = msg.timestamp()
            now = stamp * 1_000_000 if kind and stamp > 0 else None
            result = self.ingest.write(
                msg.value() or b"",
                db=src.database,
                rp=src.retention_policy,
                precision=src.precision,
                now=now,
                source="kafka",
            )
            for e in result.errors:
                log.error(
                    "line protocol rejected",
                    extra={
                        "topic": msg.topic(),
                        "partition": msg.partition(),
                        "offset": msg.offset(),
                        "error": str(e),
                    },
                )
            last[msg.topic(), msg.partition()] = msg.offset()
        return [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]

    def _commit(self, consumer: Any, offsets: list[TopicPartition]) -> None:
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # A rebalance took the partitions: the next owner re-reads them (at least once).
            log.warning("alert kafka input commit failed", extra={"error": str(exc)})

    async def stop(self, timeout: float = 10.0) -> None:
        self.stopping = True
        try:
            await asyncio.wait_for(self.finished.wait(), timeout)
        except TimeoutError:
            log.warning(
                "alert kafka input did not stop in time", extra={"group": self.source.group}
            )
