"""The sensor stages' batch logic with a fake consumer and producer: what is produced, what is
committed, and how a failed transaction returns to the last commit."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from kafkaops.eventbus import failpoints
from kafkaops.eventbus.cloudevents import (
    CloudEvent,
    DependencyEvent,
    decode_action_record,
    decode_trigger_record,
    encode_trigger_record,
)
from kafkaops.eventbus.metrics import EventbusMetrics
from kafkaops.eventbus.offsets import TriggerPartition, decode_metadata
from kafkaops.eventbus.sensor import (
    EventStage,
    SensorContext,
    SensorSettings,
    StageFenced,
    TriggerStage,
)
from kafkaops.eventbus.spec import load_definitions

NOW = datetime(2024, 6, 1, tzinfo=UTC)
DEFS = """\
apiVersion: argoproj.io/v1alpha1
kind: EventBus
metadata: {name: default, namespace: ns}
spec: {kafka: {url: "k:9092", topic: ev}}
---
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: s, namespace: ns}
spec:
  dependencies:
    - {name: a, eventSourceName: src, eventName: a}
    - {name: b, eventSourceName: src, eventName: b}
    - {name: c, eventSourceName: src, eventName: c}
  triggers:
    - template: {name: both, conditions: "a && b", log: {}}
    - template: {name: b-and-c, conditions: "b && c", log: {}}
    - template: {name: any-a, conditions: "a", log: {}}
"""


class FakeMessage:
    def __init__(self, partition, offset, key, value, ts_ms=1_717_200_000_000):
        self._p, self._o, self._k, self._v, self._ts = partition, offset, key, value, ts_ms

    def partition(self):
        return self._p

    def offset(self):
        return self._o

    def key(self):
        return self._k

    def value(self):
        return self._v

    def timestamp(self):
        return (1, self._ts)

    def error(self):
        return None


class FakeConsumer:
    def __init__(self):
        self.commits: list[list[TopicPartition]] = []
        self.seeks: list[tuple[int, int]] = []

    def commit(self, offsets, asynchronous):
        assert asynchronous is False
        self.commits.append(offsets)

    def consumer_group_metadata(self):
        return "group-metadata"

    def seek(self, tp):
        self.seeks.append((tp.partition, tp.offset))


class FakeProducer:
    """A transactional producer whose calls can be made to fail once."""

    def __init__(self, fail: dict[str, KafkaException] | None = None):
        self.fail = dict(fail or {})
        self.open: list[tuple[str, bytes, bytes, int | None]] = []
        self.committed: list[tuple[str, bytes, bytes, int | None]] = []
        self.offsets: list[list[TopicPartition]] = []
        self.aborts = 0

    def _maybe_fail(self, call):
        if call in self.fail:
            raise self.fail.pop(call)

    def begin_transaction(self):
        self._maybe_fail("begin")
        assert not self.open

    def produce(self, topic, value, key, timestamp=None):
        self.open.append((topic, key, value, timestamp))

    def send_offsets_to_transaction(self, offsets, metadata, timeout):
        assert metadata == "group-metadata"
        self._maybe_fail("send_offsets")
        self.pending_offsets = offsets

    def commit_transaction(self, timeout):
        self._maybe_fail("commit")
        self.committed.extend(self.open)
        self.offsets.append(self.pending_offsets)
        self.open = []

    def abort_transaction(self, timeout):
        self.aborts += 1
        self.open = []


def context():
    bus, sensor = load_definitions(DEFS, "t.yaml").definitions
    return SensorContext(
        sensor,
        bus,
        clients=None,  # type: ignore[arg-type]
        connections=None,  # type: ignore[arg-type]
        settings=SensorSettings(instance_id="i1"),
        metrics=EventbusMetrics(),
        stop=threading.Event(),
    )


def trigger_stage(producer):
    stage = TriggerStage(context(), clock=lambda: NOW)
    stage.consumer = FakeConsumer()
    stage.producer = producer
    stage.partitions = {0: TriggerPartition(stage.ctx.plan, committed=10, now=NOW)}
    return stage


def record(offset, dep, n, trigger="both"):
    item = DependencyEvent(dep, CloudEvent(f"{dep}{n}", "src", "t", subject=dep))
    key, value = encode_trigger_record(trigger, item)
    return FakeMessage(0, offset, key, value)


def retriable(code=KafkaError._TIMED_OUT):
    return KafkaException(KafkaError(code, "injected", retriable=True))


def abortable():
    return KafkaException(KafkaError(KafkaError._STATE, "injected", txn_requires_abort=True))


def test_a_firing_commits_with_its_checkpoint_in_one_transaction():
    producer = FakeProducer()
    stage = trigger_stage(producer)
    stage.handle([record(10, "a", 1), record(11, "b", 1, "b-and-c"), record(12, "b", 1)])
    [(topic, key, value, _ts)] = producer.committed
    assert topic == "ev-s-action"
    trigger, items = decode_action_record(key, value)
    assert (trigger, [i.event.id for i in items]) == ("both", ["a1", "b1"])
    # b-and-c still holds b1 at 11: the commit is held back there, and the metadata stops
    # `both` from firing again when 10..12 are replayed.
    [[tp]] = producer.offsets
    assert (tp.topic, tp.partition, tp.offset) == ("ev-s-trigger", 0, 11)
    assert decode_metadata(tp.metadata) == {"both": 13}
    assert stage.consumer.commits == []


def test_a_batch_without_firings_commits_offsets_only():
    producer = FakeProducer()
    stage = trigger_stage(producer)
    stage.handle([record(10, "a", 1)])
    assert producer.committed == []
    [[tp]] = stage.consumer.commits
    assert (tp.offset, tp.metadata) == (10, "")  # held back to a1, nothing fired


@pytest.mark.parametrize("call", ["begin", "send_offsets", "commit"])
def test_a_failed_transaction_returns_to_the_last_commit_and_fires_once(call):
    producer = FakeProducer({call: abortable()})
    stage = trigger_stage(producer)
    batch = [record(10, "a", 1), record(11, "b", 1)]
    stage.handle(batch)
    assert producer.committed == []
    assert producer.aborts == (0 if call == "begin" else 1)
    # Back to the snapshot of the last commit: reading resumes at 10 with nothing held.
    assert stage.consumer.seeks == [(0, 10)]
    assert stage.partitions[0].held == {}
    assert stage.partitions[0].fired == {}
    stage.handle(batch)  # the consumer re-delivers the batch after the seek
    assert len(producer.committed) == 1
    assert [i.event.id for i in decode_action_record(*producer.committed[0][1:3])[1]] == [
        "a1",
        "b1",
    ]


def test_retriable_commit_errors_are_retried_within_the_batch():
    producer = FakeProducer({"commit": retriable()})
    stage = trigger_stage(producer)
    stage.handle([record(10, "a", 1), record(11, "b", 1)])
    assert len(producer.committed) == 1
    assert producer.aborts == 0
    assert stage.consumer.seeks == []


def test_a_fenced_producer_ends_the_stage_for_its_supervisor_to_rebuild():
    fenced = KafkaException(KafkaError(KafkaError._FENCED, "fenced", fatal=True))
    stage = trigger_stage(FakeProducer({"commit": fenced}))
    with pytest.raises(StageFenced, match="fenced"):
        stage.handle([record(10, "a", 1), record(11, "b", 1)])


def test_injected_failures_are_handled_like_broker_failures(monkeypatch):
    monkeypatch.setattr(failpoints, "_ACTIVE", failpoints.Failpoints("trigger-produced:1:error"))
    producer = FakeProducer()
    stage = trigger_stage(producer)
    batch = [record(10, "a", 1), record(11, "b", 1)]
    stage.handle(batch)
    assert (producer.committed, producer.aborts, stage.consumer.seeks) == ([], 1, [(0, 10)])
    stage.handle(batch)
    assert len(producer.committed) == 1


def test_event_stage_routes_and_keeps_the_record_timestamp():
    ctx = context()
    stage = EventStage(ctx)
    stage.consumer = FakeConsumer()
    producer = FakeProducer()
    stage.producer = producer
    event = CloudEvent("a1", "src", "t", subject="a", data={"x": 1})
    other = CloudEvent("z1", "elsewhere", "t", subject="z")
    stage.handle(
        [
            FakeMessage(2, 40, b"src.a", event.to_json(), ts_ms=1234),
            FakeMessage(2, 41, b"elsewhere.z", other.to_json()),
            FakeMessage(2, 42, b"junk", b"not json"),
        ]
    )
    topics = sorted((t, k, ts) for t, k, _v, ts in producer.committed)
    assert topics == [("ev-s-action", b"any-a", 1234), ("ev-s-trigger", b"both", 1234)]
    trigger_value = next(v for t, _k, v, _ts in producer.committed if t == "ev-s-trigger")
    assert decode_trigger_record(b"both", trigger_value)[1].event.id == "a1"
    [[tp]] = producer.offsets
    assert (tp.topic, tp.partition, tp.offset) == ("ev", 2, 43)
    assert stage.ctx.metrics.invalid.labels("s", "event")._value.get() == 1


def test_revoked_partitions_leave_the_pending_batch_and_the_state():
    stage = trigger_stage(FakeProducer())
    stage.partitions[1] = TriggerPartition(stage.ctx.plan, committed=0, now=NOW)
    stage.assigned = {0, 1}
    stage.pending = [record(10, "a", 1), FakeMessage(1, 5, b"both", b"{}")]
    stage._drop([1], "revoked")
    assert [m.partition() for m in stage.pending] == [0]
    assert set(stage.partitions) == {0}
    assert stage.assigned == {0}


def test_group_names_per_stage_and_transactional_ids():
    ctx = context()
    assert ctx.group == "ns-s"
    assert EventStage(ctx).group == "ns-s"
    assert TriggerStage(ctx).group == "ns-s-trigger"
    assert ctx.strategy == "range"
