"""The relay's Prometheus metrics: kaf-relay's names (prefix `kafka_relay_`) plus what it lacks.

The relay thread updates plain integers and dicts (`RelayStats`); a collector turns them into
metric families when /metrics is scraped. Nothing on the per-record path takes a lock or touches
prometheus_client, which would cost more than relaying the record.

Every metric carries a `relay` label (one daemon may run several relays). Source metrics use
kaf-relay's `node_id` label, whose value here is the source's `[[kafka]]` id rather than a list
index. Unlike kaf-relay, `messages_relayed_total` counts a record once the target acknowledged
it (a transaction: once committed), not when it was queued.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

PREFIX = "kafka_relay_"

# kaf-relay's canonical error labels.
ERR_CONNECTION_FAILED = "connection_failed"
ERR_CLIENT_CLOSED = "client_closed"
ERR_FETCH = "fetch_error"
ERR_CLIENT_CREATION = "client_creation_failed"
ERR_PRODUCE = "produce_failed"
ERR_PRODUCE_RETRIES = "produce_retries_exhausted"

BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 500, 1000, 2500, 5000, 10_000, 50_000, 100_000)
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Histogram:
    """A plain histogram the relay thread observes into (no lock: one writer)."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = tuple(buckets)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return out


class RelayStats:
    """Counters and gauges of one relay, written by its thread, read at scrape time."""

    def __init__(self, relay: str, sources: Sequence[str], target: str) -> None:
        self.relay = relay
        self.sources = tuple(sources)
        self.target = target
        # kaf-relay's metrics
        self.source_errors: Counter[tuple[str, str]] = Counter()
        self.source_unhealthy = 0
        self.source_kafka_errors: Counter[tuple[str, str]] = Counter()
        self.source_highwatermark: dict[str, int] = {}
        self.target_errors: Counter[str] = Counter()
        self.target_kafka_errors: Counter[str] = Counter()
        self.relayed: Counter[tuple[str, int, str, int]] = Counter()
        self.filtered: Callable[[], dict[str, int]] = dict
        self.inlet_blocks = 0
        self.flush_batch_size = Histogram(BATCH_SIZE_BUCKETS)
        self.flush_duration = Histogram(DURATION_BUCKETS)
        self.flush_retries = 0
        self.candidate_switches = 0
        self.source_connections: Counter[str] = Counter()
        self.lag_threshold_exceeded: Counter[str] = Counter()
        # what kaf-relay lacks
        self.acked = 0
        self.in_flight = 0
        self.lag: dict[tuple[str, int], int] = {}
        """Per source partition (topic, partition)."""
        self.current_source: str | None = None


class RelayCollector(Collector):
    """Exposes the stats of every relay of the process (register once on `runtime.registry`)."""

    def __init__(self, relays: Iterable[RelayStats]) -> None:
        self._relays = list(relays)

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield from self._kaf_relay_metrics()
        yield from self._extra_metrics()

    def _kaf_relay_metrics(self) -> Iterator[Metric]:
        relays = self._relays
        c, g = _counter, _gauge
        yield _filled(
            c("source_errors_total", "Source connection failures.", "node_id", "error"),
            relays,
            lambda s: s.source_errors,
        )
        yield _filled(
            c("source_unhealthy_total", "Times no healthy source could be used."),
            relays,
            lambda s: s.source_unhealthy,
        )
        yield _filled(
            c("source_kafka_errors_total", "Source client errors.", "node_id", "error"),
            relays,
            lambda s: s.source_kafka_errors,
        )
        yield _filled(
            g(
                "source_highwatermark",
                "Sum of the source's end offsets at the last health check (-1: unreachable).",
                "node_id",
            ),
            relays,
            lambda s: s.source_highwatermark,
        )
        yield _filled(
            c("target_errors_total", "Target client failures.", "error"),
            relays,
            lambda s: s.target_errors,
        )
        yield _filled(
            c("target_kafka_errors_total", "Target produce errors.", "error"),
            relays,
            lambda s: s.target_kafka_errors,
        )
        yield _filled(
            c(
                "messages_relayed_total",
                "Records the target acknowledged (exactly-once: committed).",
                "source_topic",
                "source_partition",
                "target_topic",
                "target_partition",
            ),
            relays,
            lambda s: s.relayed,
        )
        yield _filled(
            c("messages_filtered_total", "Records dropped by a filter.", "filter"),
            relays,
            lambda s: s.filtered(),
        )
        yield _filled(
            c(
                "target_inlet_blocks_total",
                "Times reading the source paused because buffer_size records were unacknowledged.",
            ),
            relays,
            lambda s: s.inlet_blocks,
        )
        yield _histogram(
            "target_flush_batch_size",
            "Records per flush (a consume batch; exactly-once: a transaction).",
            relays,
            lambda s: s.flush_batch_size,
        )
        yield _histogram(
            "target_flush_duration_seconds",
            "From handing a flush to the producer until the target acknowledged all of it.",
            relays,
            lambda s: s.flush_duration,
        )
        yield _filled(
            c(
                "target_flush_retries_total",
                "Flush retries: stalled acknowledgements, aborted transactions, restarts.",
            ),
            relays,
            lambda s: s.flush_retries,
        )
        yield _filled(
            c(
                "source_candidate_switches_total",
                "Source switches, the initial connection included.",
            ),
            relays,
            lambda s: s.candidate_switches,
        )
        yield _filled(
            c("source_connections_total", "Consumers created per source.", "node_id"),
            relays,
            lambda s: s.source_connections,
        )
        yield _filled(
            c(
                "source_lag_threshold_exceeded_total",
                "Switches because a source was ahead by more than offset_lag_threshold"
                " (label: it).",
                "node_id",
            ),
            relays,
            lambda s: s.lag_threshold_exceeded,
        )

    def _extra_metrics(self) -> Iterator[Metric]:
        relays = self._relays
        yield _filled(
            _counter("records_acked_total", "Records the target acknowledged, all partitions."),
            relays,
            lambda s: s.acked,
        )
        yield _filled(
            _gauge(
                "records_in_flight",
                "Records handed to the producer and not yet acknowledged (at most buffer_size).",
            ),
            relays,
            lambda s: s.in_flight,
        )
        yield _filled(
            _gauge(
                "lag",
                "Source end offset minus the acknowledged position, per source partition.",
                "topic",
                "partition",
            ),
            relays,
            lambda s: s.lag,
        )
        yield _filled(
            _gauge("current_source", "1 for the source being read, 0 for the others.", "node_id"),
            relays,
            lambda s: {node: int(node == s.current_source) for node in s.sources},
        )


def _filled(
    metric: CounterMetricFamily | GaugeMetricFamily,
    relays: Sequence[RelayStats],
    values: Callable[[RelayStats], Any],
) -> CounterMetricFamily | GaugeMetricFamily:
    """Add each relay's sample(s): a number, or a mapping from label value(s) to a number."""
    for s in relays:
        value = values(s)
        if not isinstance(value, dict):
            metric.add_metric([s.relay], value)
            continue
        for key, n in list(value.items()):
            labels = key if isinstance(key, tuple) else (key,)
            metric.add_metric([s.relay, *map(str, labels)], n)
    return metric


def _counter(name: str, doc: str, *labels: str) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, doc, labels=["relay", *labels])


def _gauge(name: str, doc: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, labels=["relay", *labels])


def _histogram(
    name: str,
    doc: str,
    relays: Sequence[RelayStats],
    pick: Callable[[RelayStats], Histogram],
) -> HistogramMetricFamily:
    m = HistogramMetricFamily(PREFIX + name, doc, labels=["relay"])
    for s in relays:
        h = pick(s)
        m.add_metric([s.relay], h.cumulative(), h.total)
    return m
