"""Stage 5 of the lag pipeline: the latest snapshots as metrics, scraped and pushed.

One function, `families`, turns the monitor's current state into metric families; the Prometheus
collector renders them on every scrape and the remote-write sender encodes them once per
iteration, so both outputs always carry the same series. Because families are built from the
latest snapshot instead of long-lived gauges, a vanished group, topic or partition has no series
on the next scrape (Kafka Lag Go's gauges are never deleted and go on reporting frozen values).

Names and labels of Kafka Lag Go's metrics are kept exactly; ours are prefixed `kafkaops_lag_`.
A lag in seconds that is unknown is not exported at all (never NaN, -1 or infinity).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from kafkaops.lag.aggregate import Totals
from kafkaops.lag.config import PARTITION_LABELS, RemoteWrite, TlsConfig
from kafkaops.lag.estimator import Source
from kafkaops.lag.monitor import Monitor
from kafkaops.lag.remote_write import HEADERS, RemoteWriteEncoder, Series

log = logging.getLogger("kafkaops.lag.export")


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    help: str
    kind: str
    """'gauge' or 'counter' (a counter's name has no _total; exposition adds it)."""
    labels: tuple[str, ...]
    samples: list[tuple[tuple[str, ...], float]]


_KLG_HELP = {
    "kafka_consumer_group_lag_in_offsets": "Lag in offsets of a group on a partition.",
    "kafka_consumer_group_lag_in_seconds": (
        "Lag in seconds of a group on a partition: age of the record at its committed offset."
    ),
    "kafka_consumer_group_max_lag_in_offsets": "Maximum lag in offsets over a group's partitions.",
    "kafka_consumer_group_max_lag_in_seconds": "Maximum lag in seconds over a group's partitions.",
    "kafka_consumer_group_sum_lag_in_offsets": "Sum of lag in offsets over a group's partitions.",
    "kafka_consumer_group_sum_lag_in_seconds": "Sum of lag in seconds over a group's partitions.",
    "kafka_consumer_group_topic_max_lag_in_offsets": "Max lag in offsets of a group on a topic.",
    "kafka_consumer_group_topic_max_lag_in_seconds": "Max lag in seconds of a group on a topic.",
    "kafka_consumer_group_topic_sum_lag_in_offsets": "Sum of lag in offsets of a group on a topic.",
    "kafka_consumer_group_topic_sum_lag_in_seconds": "Sum of lag in seconds of a group on a topic.",
}
_OURS = {
    "kafkaops_lag_cluster_up": ("1 when the last iteration reached the cluster, else 0.", "gauge"),
    "kafkaops_lag_scrape_errors": (
        "Failed Kafka requests of the lag monitor (iterations, groups, partitions).",
        "counter",
    ),
    "kafkaops_lag_history_partitions": ("Partitions with an end-offset history.", "gauge"),
    "kafkaops_lag_history_points": ("End-offset points held over all partitions.", "gauge"),
    "kafkaops_lag_record_reads": ("Records read to time a committed offset.", "counter"),
}


def _totals(prefix: str, out: dict[str, list], values: tuple, totals: Totals) -> None:
    out[f"{prefix}max_lag_in_offsets"].append((values, float(totals.max_offsets)))
    out[f"{prefix}sum_lag_in_offsets"].append((values, float(totals.sum_offsets)))
    if totals.max_seconds is not None and totals.sum_seconds is not None:
        out[f"{prefix}max_lag_in_seconds"].append((values, totals.max_seconds))
        out[f"{prefix}sum_lag_in_seconds"].append((values, totals.sum_seconds))


def families(monitor: Monitor) -> list[Family]:
    """Every lag series of this instance right now (the monitor's visible snapshots)."""
    extra_names = tuple(sorted(monitor.cfg.labels))
    extra = tuple(monitor.cfg.labels[n] for n in extra_names)
    samples: dict[str, list] = {name: [] for name in _KLG_HELP}
    checked, status, sources = [], [], []
    for snap in monitor.snapshots():
        c = snap.cluster
        counts = dict.fromkeys(Source, 0)
        lag_o = samples["kafka_consumer_group_lag_in_offsets"]
        lag_s = samples["kafka_consumer_group_lag_in_seconds"]
        for r in snap.rows:
            values = (c, r.group, r.topic, str(r.partition), *extra)
            lag_o.append((values, float(r.lag_in_offsets)))
            if r.lag_in_seconds is not None:
                lag_s.append((values, r.lag_in_seconds))
            counts[r.source] += 1
        for (group, topic), totals in snap.topics.items():
            _totals("kafka_consumer_group_topic_", samples, (c, group, topic, *extra), totals)
        for group, view in snap.groups.items():
            _totals("kafka_consumer_group_", samples, (c, group, *extra), view.totals)
            status.append(((c, group, *extra), float(view.status.status)))
        checked.append(((c, *extra), float(snap.groups_checked)))
        sources.extend(((c, str(s), *extra), float(n)) for s, n in counts.items())

    by_level = {
        "partition": (*PARTITION_LABELS, *extra_names),
        "topic": ("clustername", "group", "topic", *extra_names),
        "group": ("clustername", "group", *extra_names),
    }
    cluster_labels = ("clustername", *extra_names)
    out = []
    for name, text in _KLG_HELP.items():
        if "_topic_" in name:
            level = "topic"
        elif name.startswith("kafka_consumer_group_lag_"):
            level = "partition"
        else:
            level = "group"
        out.append(Family(name, text, "gauge", by_level[level], samples[name]))
    out.append(
        Family(
            "kafka_total_groups_checked",
            "Consumer groups checked in the last iteration.",
            "gauge",
            cluster_labels,
            checked,
        )
    )
    if monitor.iteration_seconds is not None:
        out.append(
            Family(
                "kafka_iteration_time_seconds",
                "Time the last iteration over every cluster took.",
                "gauge",
                (),
                [((), monitor.iteration_seconds)],
            )
        )
    out.append(
        Family(
            "kafkaops_lag_group_status",
            "Burrow status of a consumer group: 1 OK, 2 WARN, 3 ERR.",
            "gauge",
            by_level["group"],
            status,
        )
    )
    out.append(
        Family(
            "kafkaops_lag_seconds_source_partitions",
            "Partitions whose lag in seconds came from each source (see the README).",
            "gauge",
            ("clustername", "source", *extra_names),
            sources,
        )
    )
    per_cluster = {
        "kafkaops_lag_cluster_up": lambda c: 0.0 if c.up is False else 1.0,
        "kafkaops_lag_scrape_errors": lambda c: float(c.scrape_errors),
        "kafkaops_lag_history_partitions": lambda c: float(len(c.store)),
        "kafkaops_lag_history_points": lambda c: float(c.store.total_points()),
        "kafkaops_lag_record_reads": lambda c: float(c.reader.reads),
    }
    for name, value_of in per_cluster.items():
        text, kind = _OURS[name]
        values = [((cid, *extra), value_of(c)) for cid, c in monitor.clusters.items()]
        out.append(Family(name, text, kind, cluster_labels, values))
    writer = monitor.writer
    if writer is not None:
        out.append(
            Family(
                "kafkaops_lag_remote_write_requests",
                "Remote-write requests by result (sent, failed after retries).",
                "counter",
                ("result", *extra_names),
                [
                    (("sent", *extra), float(writer.sent)),
                    (("failed", *extra), float(writer.failed)),
                ],
            )
        )
    return out


class LagCollector(Collector):
    """A custom collector over the monitor's latest snapshots (register on runtime.registry)."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        for fam in families(self.monitor):
            cls = GaugeMetricFamily if fam.kind == "gauge" else CounterMetricFamily
            metric = cls(fam.name, fam.help, labels=fam.labels)
            for values, value in fam.samples:
                metric.add_metric(values, value)
            yield metric


def series(fams: list[Family], timestamp_ms: int) -> Iterator[Series]:
    """The families as remote-write series, every one stamped with the iteration's time."""
    for fam in fams:
        name = fam.name + "_total" if fam.kind == "counter" else fam.name
        for values, value in fam.samples:
            yield name, dict(zip(fam.labels, values, strict=True)), value, timestamp_ms


def ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    """Client TLS for remote write from Kafka Lag Go's tls_config keys."""
    context = ssl.create_default_context(cafile=tls.ca_cert_file or None)
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class RemoteWriter:
    """Sends each iteration's series to a Prometheus remote-write endpoint.

    Sending runs in its own task, so a slow endpoint never delays an iteration; if an iteration
    ends while the previous body is still being sent, the newer body replaces the waiting one
    (a gauge's latest value is what matters). Connection errors, timeouts, 429 and 5xx are
    retried with exponential backoff; other 4xx are not (the spec says the request is bad).
    """

    def __init__(self, cfg: RemoteWrite, attempts: int = 4, backoff: float = 0.5) -> None:
        self.cfg = cfg
        self.attempts = attempts
        self.backoff = backoff
        self.encoder = RemoteWriteEncoder()
        self.sent = 0
        self.failed = 0
        self.last_error = ""
        self._pending: bytes | None = None
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        headers = {**cfg.headers, **HEADERS}
        token = cfg.bearer_token.get_secret_value()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif cfg.basic_auth.username:
            pair = f"{cfg.basic_auth.username}:{cfg.basic_auth.password.get_secret_value()}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        self._headers = headers
        self._ssl: ssl.SSLContext | bool = (
            ssl_context(cfg.tls_config) if cfg.tls_config.enabled else True
        )

    async def submit(self, monitor: Monitor, timestamp_ms: int | None = None) -> None:
        """Queue the monitor's current series. Building and encoding 100,000 series takes a
        good fraction of a second, so it runs in a worker thread, not on the event loop (the
        snapshots it reads are immutable)."""
        stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        self._pending = await asyncio.to_thread(self.body, families(monitor), stamp)
        self._wake.set()

    def body(self, fams: list[Family], timestamp_ms: int) -> bytes:
        return self.encoder.body(series(fams, timestamp_ms))

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.cfg.timeout.total_seconds())
        async with aiohttp.ClientSession(timeout=timeout) as session:
            self._session = session
            while True:
                await self._wake.wait()
                self._wake.clear()
                body, self._pending = self._pending, None
                if body is not None:
                    await self.send(body)

    async def send(self, body: bytes) -> bool:
        """POST one body with retries; True when the endpoint accepted it."""
        assert self._session is not None, "run() owns the session"
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            retry = True
            try:
                async with self._session.post(
                    self.cfg.url, data=body, headers=self._headers, ssl=self._ssl
                ) as response:
                    if response.status < 300:
                        self.sent += 1
                        self.last_error = ""
                        return True
                    text = (await response.text())[:200]
                    self.last_error = f"HTTP {response.status}: {text}"
                    retry = response.status == 429 or response.status >= 500
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                self.last_error = str(exc) or type(exc).__name__
            if not retry or attempt == self.attempts:
                break
            await asyncio.sleep(delay)
            delay *= 2
        self.failed += 1
        log.warning("remote write failed", extra={"url": self.cfg.url, "error": self.last_error})
        return False
