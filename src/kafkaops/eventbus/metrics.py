"""The event bus's Prometheus metrics, on whichever registry the daemon gives it."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["EventbusMetrics"]


class EventbusMetrics:
    """Counters a sensor or source bumps; one instance per daemon (per registry)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.records = Counter(
            "kafkaops_eventbus_records",
            "Records a sensor stage read (stage: event, trigger, action).",
            ["sensor", "stage"],
            registry=registry,
        )
        self.invalid = Counter(
            "kafkaops_eventbus_invalid_records",
            "Records a sensor stage skipped because they did not decode.",
            ["sensor", "stage"],
            registry=registry,
        )
        self.transactions = Counter(
            "kafkaops_eventbus_commits",
            "Batch commits by result (committed, aborted); transactional or offsets only.",
            ["sensor", "stage", "result"],
            registry=registry,
        )
        self.firings = Counter(
            "kafkaops_eventbus_firings",
            "Firings written to the action topic by the stage that completed them.",
            ["sensor", "trigger"],
            registry=registry,
        )
        self.actions = Counter(
            "kafkaops_eventbus_actions",
            "Trigger actions run, by result (succeeded, failed, dead_lettered).",
            ["sensor", "trigger", "result"],
            registry=registry,
        )
        self.held = Gauge(
            "kafkaops_eventbus_held_events",
            "Events held by stateful triggers of the partitions this process owns.",
            ["sensor"],
            registry=registry,
        )
        self.position = Gauge(
            "kafkaops_eventbus_position",
            "Next offset a sensor stage will handle, per partition this process owns.",
            ["sensor", "stage", "partition"],
            registry=registry,
        )
        self.published = Counter(
            "kafkaops_eventbus_published_events",
            "Events an event source published to the event topic.",
            ["eventsource", "event"],
            registry=registry,
        )
        self.publish_errors = Counter(
            "kafkaops_eventbus_publish_errors",
            "Events an event source failed to publish (retried or rejected).",
            ["eventsource", "event"],
            registry=registry,
        )
        self.stage_restarts = Counter(
            "kafkaops_eventbus_stage_restarts",
            "Sensor stages or sources rebuilt after an error (state is replayed from Kafka).",
            ["component"],
            registry=registry,
        )
