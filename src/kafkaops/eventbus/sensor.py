"""A sensor on Kafka: the event, trigger and action stages, each a consumer and (for the first
two) a transactional producer, in threads of their own.

```
event topic --event stage--> trigger topic --trigger stage--> action topic --action stage--> action
             (route, filter)  (stateful triggers)  (hold, fire)      (every firing)  (run, retry)
             +------------------- simple triggers skip the trigger topic ------------------+
```

Each stage reads a batch (up to `batch-size` records per assigned partition; it closes when
that is reached, `batch-timeout` after its first record, or as soon as nothing more is waiting),
then produces its output and commits its input offsets in ONE transaction. The offsets go
through `send_offsets_to_transaction` with the consumer's group metadata (KIP-447): a process
that lost its partitions in a rebalance (a zombie) has an old generation, the group coordinator
refuses its offsets, and its whole transaction aborts. Consumers read `read_committed`, so
output of an aborted transaction is never seen downstream.

The event and trigger stages pipeline their batches: while one batch's transaction commits (in
a helper thread; the broker's answers take most of a batch's time), the stage reads and
prepares the next, whose transaction begins only after that commit. If the commit fails, the
prepared batch is dropped too and both are read again after the rollback below.

Failure handling is "return to the last commit": when BeginTxn, a produce, or the commit fails,
the transaction is aborted, the trigger partitions' state is rolled back to its snapshot at the
last commit (`TriggerPartition.rollback`), and the consumer seeks back to where that commit
left off. The batch is then read again and produces the same output: a firing is either in a
committed transaction together with its checkpoint, or not at all. (Argo clears the trigger's
state before it knows whether the commit worked, and loses the firing when it does not.)

Each stage has a consumer group of its own: `{group}` for the event topic (the group users
know, `{namespace}-{sensor}` or `{groupName}-{sensor}`), `{group}-trigger` and `{group}-action`.
Argo puts the three topics in one group session, which makes every rebalance stop all three and
lets an action stuck in retries hold up the event stage's rebalances too.

Consumers are static group members (`group.instance.id` = the process's instance id) and
transactional ids are `kafkaops-{group}-{stage}-{instance}`: a process restarted after a crash
takes its partitions back without a rebalance, and its `init_transactions` aborts whatever
transaction its previous incarnation left open instead of leaving read_committed consumers
stuck behind it until the transaction times out.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from kafkaops.eventbus import failpoints
from kafkaops.eventbus.actions import ActionRunner, Interrupted, Outcome
from kafkaops.eventbus.bus import (
    PRODUCER_SETTINGS,
    BusConnections,
    consumer_settings,
    ensure_topics,
    partition_count,
)
from kafkaops.eventbus.cloudevents import (
    CloudEvent,
    CloudEventError,
    decode_action_record,
    decode_trigger_record,
    encode_action_record,
    encode_trigger_record,
)
from kafkaops.eventbus.config import EventbusSection
from kafkaops.eventbus.metrics import EventbusMetrics
from kafkaops.eventbus.offsets import (
    Checkpoint,
    MetadataError,
    TriggerPartition,
    auto_offset_reset,
)
from kafkaops.eventbus.spec import (
    EventBus,
    Sensor,
    Trigger,
    action_topic,
    sensor_group_id,
    trigger_topic,
)
from kafkaops.eventbus.triggerstate import ActionRecord, SensorPlan
from kafkaops.kafka import ClusterClients

__all__ = [
    "ActionStage",
    "EventStage",
    "SensorFatal",
    "SensorRunner",
    "SensorSettings",
    "StageFenced",
    "TriggerStage",
]

log = logging.getLogger("kafkaops.eventbus.sensor")

_POLL = 0.2
_FENCED = frozenset(
    {
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.FENCED_INSTANCE_ID,
    }
)
_STRATEGIES = {"range": "range", "roundrobin": "roundrobin", "sticky": "cooperative-sticky"}


class SensorFatal(RuntimeError):
    """An error that rebuilding the stage cannot fix: the sensor stops and reports it."""


class RebalanceFailed(RuntimeError):
    """Preparing assigned partitions failed; the stage is rebuilt (and rejoins the group)."""


class StageFenced(RuntimeError):
    """The stage's producer or group membership was fenced; the stage is rebuilt."""


@dataclass(frozen=True)
class SensorSettings:
    """How a sensor's stages batch, time out and identify themselves."""

    instance_id: str
    batch_size: int = 100
    batch_timeout: float = 1.0
    transaction_timeout: float = 60.0
    session_timeout: float = 10.0
    operation_timeout: float = 30.0
    strategy: str | None = None

    @classmethod
    def from_section(cls, section: EventbusSection) -> SensorSettings:
        return cls(
            instance_id=section.instance_id,
            batch_size=section.batch_size,
            batch_timeout=section.batch_timeout.total_seconds(),
            transaction_timeout=section.transaction_timeout.total_seconds(),
            session_timeout=section.session_timeout.total_seconds(),
            strategy=section.rebalance_strategy,
        )


@dataclass(frozen=True)
class SensorTopics:
    event: str
    trigger: str
    action: str

    @classmethod
    def of(cls, bus: EventBus, sensor: str) -> SensorTopics:
        return cls(
            bus.event_topic,
            trigger_topic(bus.event_topic, sensor),
            action_topic(bus.event_topic, sensor),
        )


class SensorContext:
    """What the stages of one sensor share."""

    def __init__(
        self,
        sensor: Sensor,
        bus: EventBus,
        *,
        clients: ClusterClients,
        connections: BusConnections,
        settings: SensorSettings,
        metrics: EventbusMetrics,
        stop: threading.Event,
    ) -> None:
        self.sensor = sensor
        self.bus = bus
        self.plan = SensorPlan(sensor)
        self.clients = clients
        self.connections = connections
        self.settings = settings
        self.metrics = metrics
        self.stop = stop
        self.topics = SensorTopics.of(bus, sensor.name)
        self.group = sensor_group_id(bus, sensor.name)
        group = bus.spec.kafka.consumer_group
        chosen = settings.strategy or _STRATEGIES[(group and group.rebalance_strategy) or "range"]
        self.strategy = chosen
        self.cooperative = chosen == "cooperative-sticky"

    @property
    def name(self) -> str:
        return self.sensor.name


def _timestamp_ms(msg: Message) -> int:
    kind, ms = msg.timestamp()
    return int(time.time() * 1000) if kind == TIMESTAMP_NOT_AVAILABLE else ms


def _as_time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _error(exc: BaseException) -> KafkaError | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def _fenced(exc: BaseException) -> bool:
    err = _error(exc)
    return err is not None and (err.code() in _FENCED)


# --------------------------------------------------------------------------- stages


class _Stage:
    """One consumer (and maybe a transactional producer) over one topic of a sensor."""

    role = "stage"
    transactional = True
    pipelined = False
    begin_window = ""
    produced_window = ""

    def __init__(self, ctx: SensorContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.timeout = ctx.settings.operation_timeout
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self.assigned: set[int] = set()
        self.pending: list[Message] = []
        self._in_flight: tuple[_Work, Future[None]] | None = None
        self._failed: tuple[_Work, BaseException] | None = None
        self.callback_error: Exception | None = None
        self.records = ctx.metrics.records.labels(ctx.name, self.role)
        self.invalid = ctx.metrics.invalid.labels(ctx.name, self.role)
        self.committed_txns = ctx.metrics.transactions.labels(ctx.name, self.role, "committed")
        self.aborted_txns = ctx.metrics.transactions.labels(ctx.name, self.role, "aborted")
        self.positions = ctx.metrics.position

    # -- what subclasses define

    @property
    def topic(self) -> str:
        raise NotImplementedError

    @property
    def group(self) -> str:
        raise NotImplementedError

    def handle(self, batch: list[Message]) -> None:
        """Process one batch and commit it (pipelined stages: without overlapping anything)."""
        work = self.prepare(batch)
        if work is None:
            return
        assert self.consumer is not None
        try:
            self.write(work, self.consumer.consumer_group_metadata())
        except (KafkaException, failpoints.InjectedFailure) as exc:
            self.rewind(work, exc, None)
            return
        self.written(work)

    # -- what pipelined stages (a transaction per batch) define

    def prepare(self, batch: list[Message]) -> _Work | None:
        """A batch's output and the offsets to commit, without any Kafka call, so it can run
        while the previous batch's transaction commits; None when there is nothing to commit."""
        raise NotImplementedError

    def written(self, work: _Work) -> None:
        """`work` committed."""
        raise NotImplementedError

    def rewind(self, work: _Work, exc: BaseException, later: _Work | None) -> None:
        """`work` failed: abort, and return to the last commit, dropping `later` (prepared
        after `work`) too."""
        raise NotImplementedError

    def assigned_partitions(self, committed: list[TopicPartition]) -> list[TopicPartition]:
        """Prepare newly assigned partitions (given with their committed offsets and metadata);
        return them with the offsets to start reading at: the committed offset, else the
        oldest record (the trigger and action topics hold nothing but this sensor's work)."""
        return [TopicPartition(self.topic, tp.partition, self.start_of(tp)) for tp in committed]

    def start_of(self, committed: TopicPartition) -> int:
        if committed.offset >= 0:
            return committed.offset
        assert self.consumer is not None
        low, _high = self.consumer.get_watermark_offsets(
            TopicPartition(self.topic, committed.partition), self.timeout
        )
        return low

    def revoked_partitions(self, partitions: Iterable[int]) -> None:
        """Forget state of partitions this process no longer owns."""

    def max_poll_interval_ms(self) -> int:
        return 300_000

    # -- lifecycle

    def open(self) -> None:
        ctx = self.ctx
        if self.transactional:
            txn_id = f"kafkaops-{ctx.group}-{self.role}-{self.settings.instance_id}"
            self.producer = ctx.clients.producer(
                **PRODUCER_SETTINGS,
                **{
                    "transactional.id": txn_id,
                    "transaction.timeout.ms": int(self.settings.transaction_timeout * 1000),
                },
            )
            # Before joining the group: aborts what a previous incarnation left open.
            self.producer.init_transactions(self.timeout)
        self.consumer = ctx.clients.consumer(
            self.group,
            **consumer_settings(
                offset_reset=auto_offset_reset(self.role, ctx.bus.start_oldest),  # type: ignore[arg-type]
                strategy=ctx.strategy,
                session_timeout_ms=int(self.settings.session_timeout * 1000),
                max_poll_interval_ms=self.max_poll_interval_ms(),
                instance_id=self.settings.instance_id,
            ),
        )
        self.consumer.subscribe(
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def close(self) -> None:
        if self.consumer is not None:
            try:
                self.consumer.close()
            except (KafkaException, RuntimeError):
                log.debug("closing consumer failed", exc_info=True)
            self.consumer = None
        if self.producer is not None:
            self.producer.flush(1)
            self.producer = None

    def run(self) -> None:
        """Process batches until the sensor stops."""
        self.open()
        try:
            if self.pipelined:
                self._run_pipelined()
                return
            while not self.ctx.stop.is_set():
                batch = self.collect()
                if batch:
                    self.records.inc(len(batch))
                    self.handle(batch)
        finally:
            self.close()

    def _run_pipelined(self) -> None:
        """A batch's transaction commits in a helper thread while this one reads and prepares
        the next batch: committing waits on the broker (tens of ms per transaction under load)
        without the GIL, and preparing takes about as long again. At most one transaction is
        in flight: the next begins after it committed; if it failed, the batch prepared
        meanwhile is dropped with it and the stage returns to the last commit."""
        committer = ThreadPoolExecutor(1, f"{self.ctx.name}-{self.role}-commit")
        try:
            while not self.ctx.stop.is_set():
                batch = self.collect()
                if batch:
                    self.records.inc(len(batch))
                work = self.prepare(batch)
                if not self._settle(work) or work is None:
                    continue
                assert self.consumer is not None
                metadata = self.consumer.consumer_group_metadata()
                self._in_flight = (work, committer.submit(self.write, work, metadata))
        finally:
            try:
                self._settle(None)
            finally:
                committer.shutdown()

    def _settle(self, later: _Work | None) -> bool:
        """Wait for the transaction in flight; False when it failed (see `rewind`)."""
        if self._in_flight is None:
            return True
        work, future = self._in_flight
        self._in_flight = None
        try:
            future.result()
        except (KafkaException, failpoints.InjectedFailure) as exc:
            self.rewind(work, exc, later)
            return False
        self.written(work)
        return True

    # -- batching

    def collect(self) -> list[Message]:
        """One batch: what is waiting, up to the size limit, open at most batch-timeout.

        Rebalance callbacks run inside poll/consume and drop the records of revoked partitions
        from `self.pending`, so a batch never mixes owners.
        """
        assert self.consumer is not None
        self.pending = []
        first = self.consumer.poll(_POLL)
        if self._check_callbacks() or first is None:
            return []
        self._accept([first])
        deadline = time.monotonic() + self.settings.batch_timeout
        while time.monotonic() < deadline:
            room = self.settings.batch_size * max(1, len(self.assigned)) - len(self.pending)
            if room <= 0:
                break
            more = self.consumer.consume(room, 0)
            if self._check_callbacks():
                return []
            if not more:
                break
            self._accept(more)
        batch, self.pending = self.pending, []
        return batch

    def _accept(self, messages: list[Message]) -> None:
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal():
                    raise KafkaException(err)
                log.warning(
                    "consumer error",
                    extra={"sensor": self.ctx.name, "stage": self.role, "error": err.str()},
                )
                continue
            if msg.partition() in self.assigned:
                self.pending.append(msg)

    # -- rebalance callbacks (run inside poll/consume, in this thread)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._guarded(self._assign, consumer, partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._guarded(self._drop, [tp.partition for tp in partitions], "revoked")

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._guarded(self._drop, [tp.partition for tp in partitions], "lost")

    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        """Run a rebalance callback; its error is raised from poll by `_check_callbacks`, never
        into librdkafka (which re-raises it as a KafkaError that is not an Exception)."""
        try:
            fn(*args)
        except Exception as exc:
            if self.callback_error is None:
                self.callback_error = exc

    def _check_callbacks(self) -> bool:
        """Raise a rebalance callback's error; True when a transaction that failed while it
        ran was rewound: the records read so far (by this poll too) are dropped."""
        error, self.callback_error = self.callback_error, None
        if error is not None:
            raise RebalanceFailed(
                f"{self.role} stage: rebalance callback failed: {error}"
            ) from error
        if self._failed is None:
            return False
        work, exc = self._failed
        self._failed = None
        self.pending = []
        self.rewind(work, exc, None)
        return True

    def _assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        failpoints.hit("rebalance")
        committed = consumer.committed(partitions, self.timeout)
        for tp in committed:
            if tp.error is not None:
                raise KafkaException(tp.error)
        start = self.assigned_partitions(committed)
        self.assigned.update(tp.partition for tp in partitions)
        for tp in start:
            self._position(tp.partition, tp.offset)
        log.info(
            "partitions assigned",
            extra={
                "sensor": self.ctx.name,
                "stage": self.role,
                "partitions": ",".join(str(tp.partition) for tp in partitions),
            },
        )
        if self.ctx.cooperative:
            consumer.incremental_assign(start)
        else:
            consumer.assign(start)

    def _position(self, partition: int, offset: int) -> None:
        """Publish how far this stage has handled a partition (tests and operators wait on it)."""
        if offset >= 0:
            self.positions.labels(self.ctx.name, self.role, str(partition)).set(offset)

    def _drop(self, partitions: list[int], why: str) -> None:
        if self._in_flight is not None:
            # The next owner starts from the outcome. A failure is rewound once poll returns:
            # records it returns along with this callback may predate a seek made here.
            work, future = self._in_flight
            self._in_flight = None
            try:
                future.result()
            except (KafkaException, failpoints.InjectedFailure) as exc:
                self._failed = (work, exc)
            else:
                self.written(work)
        gone = set(partitions)
        self.assigned -= gone
        for partition in gone:
            with contextlib.suppress(KeyError):
                self.positions.remove(self.ctx.name, self.role, str(partition))
        self.pending = [m for m in self.pending if m.partition() not in gone]
        self.revoked_partitions(gone)
        if gone:
            log.info(
                f"partitions {why}",
                extra={
                    "sensor": self.ctx.name,
                    "stage": self.role,
                    "partitions": ",".join(map(str, sorted(gone))),
                },
            )

    # -- producing and committing

    def produce(self, topic: str, key: bytes, value: bytes, timestamp: int | None = None) -> None:
        assert self.producer is not None
        kwargs: dict[str, Any] = {} if timestamp is None else {"timestamp": timestamp}
        while True:
            try:
                self.producer.produce(topic, value, key, **kwargs)
                return
            except BufferError:
                self.producer.poll(0.05)

    def begin(self) -> None:
        assert self.producer is not None
        self.producer.begin_transaction()

    def commit(
        self,
        offsets: list[TopicPartition],
        in_txn: bool,
        window: str,
        metadata: object | None = None,
    ) -> None:
        """Commit `offsets`: inside the open transaction (fenced by group metadata, KIP-447:
        `metadata`, else the consumer's now), or as a plain offset commit (fenced by the group
        generation) when nothing was produced. Raises on failure; `recover` then cleans up."""
        assert self.consumer is not None
        if not in_txn:
            self.consumer.commit(offsets=offsets, asynchronous=False)
            self.committed_txns.inc()
            return
        assert self.producer is not None
        failpoints.hit(window)
        if metadata is None:
            metadata = self.consumer.consumer_group_metadata()
        self._retrying(
            lambda: self.producer.send_offsets_to_transaction(offsets, metadata, self.timeout)  # type: ignore[union-attr]
        )
        self._retrying(lambda: self.producer.commit_transaction(self.timeout))  # type: ignore[union-attr]
        self.committed_txns.inc()

    def write(self, work: _Work, metadata: object) -> None:
        """Produce a prepared batch's output and commit its input offsets in one transaction
        (offsets alone when it has no output). Raises on failure; `rewind` then cleans up."""
        if work.records:
            failpoints.hit(self.begin_window)
            self.begin()
            work.in_txn = True
            for topic, key, value, stamp in work.records:
                self.produce(topic, key, value, stamp)
            for trigger in work.firings:
                self.ctx.metrics.firings.labels(self.ctx.name, trigger).inc()
        self.commit(work.offsets, bool(work.records), self.produced_window, metadata)

    def _retrying(self, call: Callable[[], None], attempts: int = 3) -> None:
        for attempt in range(attempts):
            try:
                call()
                return
            except KafkaException as exc:
                err = _error(exc)
                if err is None or not err.retriable() or attempt == attempts - 1:
                    raise

    def recover(self, exc: BaseException, in_txn: bool) -> None:
        """After a failed batch: abort the transaction so the caller can return to the last
        commit. A fatal producer error ends the stage instead; its supervisor rebuilds it
        from the committed offsets."""
        self.aborted_txns.inc()
        err = _error(exc)
        if err is not None and err.fatal():
            if _fenced(exc):
                raise StageFenced(
                    f"sensor {self.ctx.name!r} {self.role} stage was fenced ({err.str()}): its"
                    " transaction was aborted by the broker, or another process runs with"
                    f" instance-id {self.settings.instance_id!r}"
                ) from exc
            raise exc
        log.warning(
            "batch not committed; returning to the last commit",
            extra={"sensor": self.ctx.name, "stage": self.role, "error": str(exc)},
        )
        if in_txn:
            assert self.producer is not None
            try:
                self._retrying(lambda: self.producer.abort_transaction(self.timeout))  # type: ignore[union-attr]
            except KafkaException as abort_exc:
                if _fenced(abort_exc):
                    raise StageFenced(f"aborting failed: {abort_exc}") from abort_exc
                raise

    def seek(self, partition: int, offset: int) -> None:
        assert self.consumer is not None
        self.consumer.seek(TopicPartition(self.topic, partition, offset))


class EventStage(_Stage):
    """Event topic -> trigger topic (stateful triggers) / action topic (simple triggers)."""

    role = "event"
    pipelined = True
    produced_window = "event-produced"

    @property
    def topic(self) -> str:
        return self.ctx.topics.event

    @property
    def group(self) -> str:
        return self.ctx.group

    def assigned_partitions(self, committed: list[TopicPartition]) -> list[TopicPartition]:
        """A partition without a committed offset starts at the oldest record (`startOldest`)
        or the newest; the newest is committed at once, so a crash before the first batch
        resumes there instead of jumping past what arrived meanwhile."""
        assert self.consumer is not None
        out: list[TopicPartition] = []
        fresh: list[TopicPartition] = []
        for tp in committed:
            if tp.offset >= 0:
                out.append(TopicPartition(self.topic, tp.partition, tp.offset))
                continue
            low, high = self.consumer.get_watermark_offsets(
                TopicPartition(self.topic, tp.partition), self.timeout
            )
            start = TopicPartition(
                self.topic, tp.partition, low if self.ctx.bus.start_oldest else high
            )
            out.append(start)
            if not self.ctx.bus.start_oldest:
                fresh.append(start)
        if fresh:
            self.consumer.commit(offsets=fresh, asynchronous=False)
        return out

    def prepare(self, batch: list[Message]) -> _Work | None:
        if not batch:
            return None
        ctx = self.ctx
        work = _Work()
        nexts: dict[int, int] = {}
        for msg in batch:
            partition = msg.partition()
            work.first.setdefault(partition, msg.offset())
            nexts[partition] = msg.offset() + 1
            try:
                records = ctx.plan.route_json(msg.value() or b"")
            except CloudEventError as exc:
                self.invalid.inc()
                log.debug("skipping an invalid event", extra={"error": str(exc)})
                continue
            if not records:
                continue
            stamp = _timestamp_ms(msg)
            for record in records:
                if isinstance(record, ActionRecord):
                    key, value = encode_action_record(record.trigger, record.items)
                    work.records.append((ctx.topics.action, key, value, stamp))
                    work.firings.append(record.trigger)
                else:
                    key, value = encode_trigger_record(record.trigger, record.item)
                    # The trigger stage judges resets on record timestamps: keep the event's.
                    work.records.append((ctx.topics.trigger, key, value, stamp))
        work.offsets = [TopicPartition(self.topic, p, o) for p, o in nexts.items()]
        return work

    def written(self, work: _Work) -> None:
        for tp in work.offsets:
            self._position(tp.partition, tp.offset)

    def rewind(self, work: _Work, exc: BaseException, later: _Work | None) -> None:
        self.recover(exc, work.in_txn)
        starts = {**(later.first if later is not None else {}), **work.first}
        for partition, offset in starts.items():
            if partition in self.assigned:  # not revoked meanwhile
                self.seek(partition, offset)


@dataclass
class _Work:
    """A prepared batch: output records (topic, key, value, timestamp) with the triggers
    fired among them, the input offsets to commit, and where to return if that fails: the
    batch's first offsets (event stage) or the partitions' states after it (trigger stage)."""

    records: list[tuple[str, bytes, bytes, int | None]] = field(default_factory=list)
    firings: list[str] = field(default_factory=list)
    offsets: list[TopicPartition] = field(default_factory=list)
    first: dict[int, int] = field(default_factory=dict)
    checkpoints: dict[int, Checkpoint] = field(default_factory=dict)
    in_txn: bool = False  # its transaction began


class TriggerStage(_Stage):
    """Trigger topic -> action topic: holds events, fires, checkpoints `{trigger: offset}`."""

    role = "trigger"
    pipelined = True
    begin_window = "trigger-begin"
    produced_window = "trigger-produced"

    def __init__(self, ctx: SensorContext, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(ctx)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.partitions: dict[int, TriggerPartition] = {}
        self._next_tick = 0.0
        self.held = ctx.metrics.held.labels(ctx.name)

    @property
    def topic(self) -> str:
        return self.ctx.topics.trigger

    @property
    def group(self) -> str:
        return f"{self.ctx.group}-trigger"

    def assigned_partitions(self, committed: list[TopicPartition]) -> list[TopicPartition]:
        """Rebuild each partition's state from its committed offset and metadata; reading
        starts there, so the held events are replayed."""
        assert self.consumer is not None
        now = self.clock()
        out = []
        for tp in committed:
            start = self.start_of(tp)
            self.partitions[tp.partition] = TriggerPartition(
                self.ctx.plan, committed=start, metadata=tp.metadata or "", now=now
            )
            out.append(TopicPartition(self.topic, tp.partition, start))
        return out

    def revoked_partitions(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.partitions.pop(partition, None)
        self._gauge()

    def prepare(self, batch: list[Message]) -> _Work | None:
        """Apply the batch to the partitions' states; once a second, also the
        `conditionsReset` schedules (partitions that dropped events commit the offsets those
        events no longer pin)."""
        ctx = self.ctx
        work = _Work()
        touched: dict[int, TriggerPartition] = {}
        for msg in batch:
            part = self.partitions[msg.partition()]
            touched[msg.partition()] = part
            try:
                trigger, item = decode_trigger_record(msg.key(), msg.value())
            except CloudEventError as exc:
                self.invalid.inc()
                log.debug("skipping an invalid trigger record", extra={"error": str(exc)})
                part.skip(msg.offset())
                continue
            firing = part.process(msg.offset(), trigger, item, _as_time(_timestamp_ms(msg)))
            if firing is None:
                continue
            key, value = encode_action_record(trigger, firing.items)
            work.records.append((ctx.topics.action, key, value, None))
            work.firings.append(trigger)
        now = time.monotonic()
        if now >= self._next_tick:
            self._next_tick = now + 1.0
            at = self.clock()
            touched.update((p, part) for p, part in self.partitions.items() if part.advance(at))
        if not touched:
            return None
        try:
            positions = {p: part.position() for p, part in touched.items()}
        except MetadataError as exc:
            raise SensorFatal(f"sensor {ctx.name!r}: {exc}") from exc
        work.offsets = [
            TopicPartition(self.topic, p, pos.offset, metadata=pos.metadata)
            for p, pos in positions.items()
        ]
        work.checkpoints = {p: part.checkpoint() for p, part in touched.items()}
        self._gauge()
        return work

    def written(self, work: _Work) -> None:
        for partition, checkpoint in work.checkpoints.items():
            part = self.partitions.get(partition)
            if part is not None:
                part.committed(checkpoint)
            self._position(partition, checkpoint.next_offset)

    def rewind(self, work: _Work, exc: BaseException, later: _Work | None) -> None:
        self.recover(exc, work.in_txn)
        partitions = {*work.checkpoints, *(later.checkpoints if later is not None else ())}
        for partition in partitions:
            part = self.partitions.get(partition)
            if part is not None:
                self.seek(partition, part.rollback())
        self._gauge()

    def _gauge(self) -> None:
        self.held.set(sum(len(h) for part in self.partitions.values() for h in part.held.values()))


class ActionStage(_Stage):
    """Action topic -> side effects: at-least-once before the commit, at-most-once after."""

    role = "action"
    transactional = False

    def __init__(self, ctx: SensorContext) -> None:
        super().__init__(ctx)
        self.runner = ActionRunner(
            ctx.connections,
            stop=ctx.stop,
            timeout=ctx.settings.operation_timeout,
            on_outcome=self._count,
        )

    @property
    def topic(self) -> str:
        return self.ctx.topics.action

    @property
    def group(self) -> str:
        return f"{self.ctx.group}-action"

    def max_poll_interval_ms(self) -> int:
        """Long enough for a batch whose every action exhausts its retries; an action stage
        that overruns this leaves the group and its uncommitted batch is run again elsewhere."""
        budget = max(_worst_case(t) for t in self.ctx.sensor.spec.triggers)
        total = budget * self.settings.batch_size
        return int(min(max(total, 300.0), 86_400.0) * 1000)

    def close(self) -> None:
        super().close()
        self.runner.close()

    def _count(self, outcome: Outcome) -> None:
        if outcome.ok:
            result = "succeeded"
        elif outcome.dead_lettered:
            result = "dead_lettered"
        else:
            result = "failed"
        self.ctx.metrics.actions.labels(self.ctx.name, outcome.trigger, result).inc()

    def handle(self, batch: list[Message]) -> None:
        ctx = self.ctx
        first: dict[int, int] = {}
        nexts: dict[int, int] = {}
        before: list[tuple[Trigger, dict[str, CloudEvent]]] = []
        after: list[tuple[Trigger, dict[str, CloudEvent]]] = []
        for msg in batch:
            first.setdefault(msg.partition(), msg.offset())
            nexts[msg.partition()] = msg.offset() + 1
            try:
                trigger, items = decode_action_record(msg.key(), msg.value())
            except CloudEventError as exc:
                self.invalid.inc()
                log.debug("skipping an invalid action record", extra={"error": str(exc)})
                continue
            plan = ctx.plan.triggers.get(trigger)
            if plan is None:
                self.invalid.inc()
                log.warning(
                    "action for a trigger the sensor no longer has",
                    extra={"sensor": ctx.name, "trigger": trigger},
                )
                continue
            events = {item.dependency: item.event for item in items}
            (before if plan.at_least_once else after).append((plan.spec, events))
        offsets = [TopicPartition(self.topic, p, o) for p, o in nexts.items()]
        try:
            if before:
                self.runner.run_many(before)
                failpoints.hit("action-ran")
            self.commit(offsets, in_txn=False, window="")
        except Interrupted:
            return  # stopping: the batch is not committed and runs again after restart
        except (KafkaException, failpoints.InjectedFailure) as exc:
            self.recover(exc, in_txn=False)
            for partition, offset in first.items():
                self.seek(partition, offset)
            return
        if after:
            failpoints.hit("action-committed")
            try:
                self.runner.run_many(after)
            except Interrupted:
                return  # at-most-once: committed, so never again
        for partition, offset in nexts.items():
            self._position(partition, offset)


def _worst_case(trigger: Trigger) -> float:
    """Seconds one firing of `trigger` can take, retries and dead letter included."""
    template = trigger.template
    if template.http is not None:
        attempt = float(template.http.timeout)
    elif template.command is not None and template.command.timeout is not None:
        attempt = template.command.timeout.total_seconds()
    else:
        attempt = 30.0
    retry = trigger.retry
    waits = sum(d.total_seconds() for d in retry.delays(lambda: 1.0))
    total = attempt * retry.attempts + waits
    if trigger.dlq_trigger is not None:
        total += _worst_case(trigger.dlq_trigger)
    return total


# --------------------------------------------------------------------------- the sensor


class SensorRunner:
    """Runs one sensor's stages in threads; each stage is rebuilt after an error (its state
    comes back from Kafka), except when fenced, which ends the sensor with the error."""

    def __init__(
        self,
        sensor: Sensor,
        bus: EventBus,
        connections: BusConnections,
        settings: SensorSettings,
        metrics: EventbusMetrics,
    ) -> None:
        self.stop_event = threading.Event()
        self.ctx = SensorContext(
            sensor,
            bus,
            clients=connections.for_ref(bus.spec.kafka),
            connections=connections,
            settings=settings,
            metrics=metrics,
            stop=self.stop_event,
        )
        self.failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._restarts = metrics.stage_restarts

    @property
    def name(self) -> str:
        return self.ctx.name

    def stage_factories(self) -> list[Callable[[], _Stage]]:
        ctx = self.ctx
        out: list[Callable[[], _Stage]] = [lambda: EventStage(ctx)]
        if any(True for _ in ctx.plan.stateful_triggers):
            out.append(lambda: TriggerStage(ctx))
        out.append(lambda: ActionStage(ctx))
        return out

    def prepare_topics(self) -> None:
        """The trigger and action topics get the event topic's partition count; the event
        topic, if missing, the broker's default."""
        clients, topics = self.ctx.clients, self.ctx.topics
        partitions = partition_count(clients, topics.event, self.ctx.settings.operation_timeout)
        if partitions is None:
            ensure_topics(clients, {topics.event: -1})
            partitions = partition_count(clients, topics.event) or 1
        wanted = {topics.action: partitions}
        if any(True for _ in self.ctx.plan.stateful_triggers):
            wanted[topics.trigger] = partitions
        ensure_topics(clients, wanted)

    def start(self) -> None:
        """Create missing topics, then run every stage in a thread of its own."""
        self._thread = threading.Thread(target=self._main, name=f"sensor-{self.name}", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        if not self._retry(self.prepare_topics, "topics"):
            return
        stages = [
            threading.Thread(
                target=self._supervise, args=(factory,), name=f"sensor-{self.name}-{i}", daemon=True
            )
            for i, factory in enumerate(self.stage_factories())
        ]
        for thread in stages:
            thread.start()
        for thread in stages:
            thread.join()

    def _retry(self, step: Callable[[], None], what: str) -> bool:
        delay = 1.0
        while not self.stop_event.is_set():
            try:
                step()
                return True
            except Exception as exc:
                self._restarts.labels(f"sensor/{self.name}/{what}").inc()
                log.error(
                    "sensor setup failed; retrying",
                    extra={"sensor": self.name, "step": what, "error": str(exc)},
                )
                self.stop_event.wait(delay)
                delay = min(delay * 2, 30.0)
        return False

    def _supervise(self, factory: Callable[[], _Stage]) -> None:
        delay = 1.0
        while not self.stop_event.is_set():
            stage = factory()
            started = time.monotonic()
            try:
                stage.run()
                return
            except SensorFatal as exc:
                log.error("sensor stopped", extra={"sensor": self.name, "error": str(exc)})
                self.failure = exc
                self.stop_event.set()
                return
            except Exception as exc:
                self._restarts.labels(f"sensor/{self.name}/{stage.role}").inc()
                log.exception(
                    "sensor stage failed; rebuilding it from Kafka",
                    extra={"sensor": self.name, "stage": stage.role, "error": str(exc)},
                )
                try:
                    stage.close()
                except Exception:
                    log.debug("closing a failed stage", exc_info=True)
                if time.monotonic() - started > 60:
                    delay = 1.0  # it ran a while: a new problem, not the same one again
                if self.stop_event.wait(delay):
                    return
                delay = min(delay * 2, 30.0)

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        self.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for every stage to end; True when they did within `timeout`."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self.failure is None and not self.stop_event.is_set()
