"""One relay, end to end: resume from the target, then consume → filter → produce, with
back-pressure, acknowledgements, failover between sources and retries.

The loop runs on a thread of its own (`Relay.run` blocks) because every step is a librdkafka call
that releases the GIL; the daemon's event loop only starts and stops it.

A *session* is one producer's lifetime. It starts by reading the target back (`resume.py`) and
ends when the relay stops, or when something happened after which carrying on could lose or
duplicate records: a failed delivery, a fatal producer error, a source position that fell out of
the log. Then the relay starts a new session, which resumes from the target again, instead of
trusting what it had in memory. Switching sources does not end a session: the producer is
drained (every record acknowledged) and the position tracker rebased onto the new source.

Delivery:
- at-least-once: the idempotent producer, order kept per partition on retries; a record counts
  as relayed when its delivery report arrives; `buffer_size` unacknowledged records at most
  (then the loop stops reading the source and counts a `target_inlet_blocks_total`).
- exactly-once: every `flush_batch_size` records or `flush_frequency` the open transaction is
  committed; its records (position headers included) count as relayed then. An abortable error
  aborts it and re-reads from the settled positions; a fatal one ends the session.

Retries: a target that acknowledges nothing for `request_timeout` while records wait, a failed
commit, or a session that fails to start, is one failed attempt; attempts back off between
`backoff_min` and `backoff_max` and past `producer.max_retries` (-1: never) the relay gives up.
Source failures are counted by the failover policy against `source_pool.max_retries`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from kafkaops.kafka import ClusterClients
from kafkaops.relay.config import RelayConfig
from kafkaops.relay.failover import Action, Decision, SourceSelector, backoff_delay
from kafkaops.relay.filters import FilterChain, FilterError, build_chain
from kafkaops.relay.metrics import (
    ERR_CLIENT_CLOSED,
    ERR_CONNECTION_FAILED,
    ERR_FETCH,
    ERR_PRODUCE,
    ERR_PRODUCE_RETRIES,
    RelayStats,
)
from kafkaops.relay.position import (
    CHECKPOINT_HEADER,
    RUN_HEADER,
    RUN_LENGTH_HEADER,
    RUN_START_HEADER,
    SOURCE_HEADER,
    Batch,
    BoundaryDedupe,
    Cursor,
    LandedFilter,
    PositionTracker,
    RecentRecords,
    ResumeError,
    ResumePlan,
    ResumeScan,
    Stamp,
    StopAtEnd,
    encode_stamp,
    plan_start,
    relay_lag,
)
from kafkaops.relay.resume import TailRead, read_tails
from kafkaops.relay.source import (
    HealthMonitor,
    OffsetsUnavailable,
    SourcePool,
    Watermarks,
    all_partitions,
)
from kafkaops.relay.target import CONSUME_BATCH, Target, TargetUnavailable
from kafkaops.relay.topicmap import PartitionMappingError, SourceKey

log = logging.getLogger("kafkaops.relay")

RECENT_RECORDS = 20_000
"""Relayed records remembered for dropping re-read copies after a timestamp-mapped switch."""
RESUME_KEEP = 10_000
"""Per target partition, newest relayed records kept from the read-back for the same purpose."""
STOP_DRAIN_SECONDS = 30.0
"""How long a stopping relay waits for unacknowledged records (the next start re-reads them)."""

_SOURCE_DOWN = frozenset(
    {
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
    }
)


class RelayError(RuntimeError):
    """The relay stopped for good; the message is meant for the user."""

    exit_code = 1


class RelayRefused(RelayError):
    """The relay cannot run safely as configured (topic map, unsafe resume, missing topics)."""

    exit_code = 2


class RelayGaveUp(RelayError):
    """Retries are exhausted (`max_retries`)."""


class _Restart(Exception):
    """End this session and resume from the target again."""

    def __init__(self, reason: str, *, target: bool) -> None:
        super().__init__(reason)
        self.target = target


class _SourceFailed(Exception):
    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


@dataclass
class _Pending:
    """A closed consume batch waiting for its acknowledgements."""

    batch: Batch
    counts: dict[tuple[str, int, str, int], int]
    records: int
    closed_at: float
    relayed: list[tuple[SourceKey, int, bytes | None, bytes | None]] | None
    """Failover by timestamp: its records, remembered once acknowledged (never before: a
    record of an aborted transaction must not cancel a re-read copy after a switch)."""


@dataclass
class _Route:
    target: str
    partitioner: Callable[[int, bytes | None], int] | None
    """None: the source partition (the common case, kept off the call path)."""


class Relay:
    """One `[relay]` section at work. `run()` blocks until stopped, done or failed."""

    def __init__(
        self,
        cfg: RelayConfig,
        clients_of: Callable[[str], ClusterClients],
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg
        self.stats = RelayStats(cfg.name, cfg.sources, cfg.target)
        self.chain: FilterChain = build_chain(cfg.filters)
        self.stats.filtered = lambda: dict(self.chain.filtered)
        self._rng = rng or random.Random()
        pool = cfg.source_pool
        self.selector = SourceSelector(
            cfg.sources,
            offset_lag_threshold=pool.offset_lag_threshold,
            backoff_min=pool.backoff_min,
            backoff_max=pool.backoff_max,
            backoff_enable=pool.backoff_enable,
            max_retries=pool.max_retries,
            rng=self._rng,
            randomize_initial=pool.randomize_initial,
        )
        self.pool = SourcePool(cfg, clients_of, self.stats)
        self.target = Target(cfg, clients_of(cfg.target), self.stats)
        self.topic_map = cfg.topic_map()
        self.eos = cfg.delivery == "exactly-once"
        self._coalesce_acks = not self.eos and cfg.producer.enable_idempotency
        self._exclusive = cfg.exclusive_target
        self._timestamp_switch = cfg.position_mapping == "timestamp" and len(cfg.sources) > 1
        self._stop = threading.Event()
        self.state = "starting"
        self.error: str | None = None
        self.monitor = HealthMonitor(self.pool, pool.healthcheck_interval.total_seconds())
        self._ends: dict[SourceKey, int] | None = None
        self._ends_cluster: str | None = None
        self._target_attempt = 0
        self._target_reason = ""
        self._recent = RecentRecords(RECENT_RECORDS) if self._timestamp_switch else None
        self._reset_session()

    # -- control -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to stop; it drains (bounded) and `run` returns."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def health(self) -> dict[str, Any]:
        """A snapshot for /healthz (read from another thread: plain values only)."""
        checks = {h.name: h for h in self.monitor.latest}
        sources = {
            name: ("ok" if h.healthy else h.error or "failed")
            if (h := checks.get(name))
            else "not checked yet"
            for name in self.cfg.sources
        }
        target_ok = self._target_attempt == 0
        return {
            "state": self.state,
            "source": self.selector.current,
            "target": self.cfg.target,
            "target_ok": target_ok,
            **({} if target_ok else {"target_error": self._target_reason}),
            "sources": sources,
            "in_flight": self.stats.in_flight,
            "lag": sum(self.stats.lag.values()),
            **({"error": self.error} if self.error else {}),
        }

    # -- the outer loop: sessions, source choice, retries ----------------------------------------

    def run(self) -> None:
        """Relay until stopped or (stop_at_end) done. Raises RelayError when it cannot go on."""
        self.monitor.start()
        self.target.admin()  # connects while the first health check runs
        try:
            source = self._next_source(self._evaluate(first=True))
            while source is not None and not self.stopping:
                try:
                    self._session(source)
                    break
                except _SourceFailed as exc:
                    log.warning(
                        "source failed",
                        extra={"relay": self.cfg.name, "source": exc.source, "reason": exc.reason},
                    )
                    source = self._next_source(self.selector.failed(exc.source, exc.reason))
                except _Restart as exc:
                    if exc.target:
                        self._target_failed(str(exc))
                    else:
                        log.warning(
                            "resuming from the target", extra={"relay": self.cfg.name, "why": exc}
                        )
                    source = self.selector.current or self._next_source(self._evaluate())
            self.state = "finished" if self._done else "stopped"
        except RelayError as exc:
            self.state = "failed"
            self.error = str(exc)
            raise
        except FilterError as exc:
            self.state = "failed"
            self.error = f"relay {self.cfg.name!r}: {exc}"
            raise RelayError(self.error) from exc
        except BaseException:
            self.state = "failed"
            raise
        finally:
            self.monitor.close()
            self.pool.close()
            self.target.close()
            self.stats.current_source = None

    def _evaluate(self, *, first: bool = False) -> Decision:
        """The policy's decision on the next finished health round."""
        seen = 0 if first else self.monitor.generation
        while not self.stopping:
            gen = self.monitor.wait(seen, 0.5)
            if gen > seen:
                self._seen_gen = gen
                return self.selector.evaluate(self.monitor.latest)
        return Decision(Action.WAIT, None, None, "stopping")

    def _next_source(self, decision: Decision) -> str | None:
        """Act on decisions made outside a session until one names a source (None: stopping)."""
        while not self.stopping:
            self._count(decision)
            if decision.action is Action.GIVE_UP:
                raise RelayGaveUp(f"relay {self.cfg.name!r}: {decision.reason}")
            if decision.action in (Action.SWITCH, Action.KEEP) and decision.source:
                self._sleep(decision.delay.total_seconds())
                return decision.source
            self.state = "waiting"
            self._sleep(decision.delay.total_seconds())
            decision = self._evaluate()
        return None

    def _count(self, decision: Decision) -> None:
        level = logging.INFO
        if decision.action is Action.SWITCH:
            self.stats.candidate_switches += 1
            for node in decision.ahead:
                self.stats.lag_threshold_exceeded[node] += 1
        elif decision.action is Action.WAIT:
            self.stats.source_unhealthy += 1
            level = logging.WARNING
        elif decision.action is Action.GIVE_UP:
            level = logging.ERROR
        if decision.action is not Action.KEEP:
            log.log(level, "source decision: %s", decision, extra={"relay": self.cfg.name})

    def _target_failed(self, reason: str) -> None:
        """One failed attempt on the target: back off, or give up past max_retries."""
        producer = self.cfg.producer
        self._target_attempt += 1
        self._target_reason = reason
        self.stats.flush_retries += 1
        if 0 <= producer.max_retries < self._target_attempt:
            self.stats.target_kafka_errors[ERR_PRODUCE_RETRIES] += 1
            raise RelayGaveUp(
                f"relay {self.cfg.name!r}: target {self.cfg.target!r} failed "
                f"{self._target_attempt} times (producer.max_retries = {producer.max_retries}); "
                f"last: {reason}"
            )
        delay = backoff_delay(
            self._target_attempt,
            producer.backoff_min,
            producer.backoff_max,
            self._rng,
            enabled=producer.backoff_enable,
        )
        log.warning(
            "target attempt failed",
            extra={
                "relay": self.cfg.name,
                "target": self.cfg.target,
                "attempt": self._target_attempt,
                "retry_in": round(delay.total_seconds(), 3),
                "reason": reason,
            },
        )
        self._sleep(delay.total_seconds())

    def _sleep(self, seconds: float) -> None:
        """Wait, interruptibly, still serving the producer's delivery reports."""
        deadline = time.monotonic() + seconds
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            if self.producer is not None:
                self.producer.poll(min(left, 0.1))
                self._settle()
            else:
                self._stop.wait(min(left, 0.1))

    # -- one session -----------------------------------------------------------------------------

    def _reset_session(self) -> None:
        self.producer: Producer | None = None
        self.consumer: Consumer | None = None
        self.tracker: PositionTracker | None = None
        self._plan: ResumePlan | None = None
        self._routes: dict[str, _Route] = {}
        self._only_topic: str | None = None
        self._by_runs = False
        self._skip: LandedFilter | None = None
        self._dedupe: BoundaryDedupe | None = None
        self._dedupe_source: TailRead | None = None
        self._lookups: dict[SourceKey, int] = {}
        self._stopper: StopAtEnd | None = None
        self._held: dict[SourceKey, int] = {}
        self._assigned: dict[SourceKey, int] = {}
        self._unsettled: deque[_Pending] = deque()
        self._errors: list[KafkaError] = []
        self._sent = 0
        self._acked_seen = 0
        self._progress_at = time.monotonic()
        self._txn_open = False
        self._txn_started = 0.0
        self._txn_records = 0
        self._fresh_source = False
        self._done = False
        self._seen_gen = getattr(self, "_seen_gen", 0)
        self._next_eval = 0.0

    def _session(self, source: str) -> None:
        self._reset_session()
        self.state = "starting"
        try:
            self.producer = self.target.producer(on_error=self._producer_error)
            self._resume(source)
            self.state = "running"
            self._pump()
            self._finish()
        except TargetUnavailable as exc:
            raise _Restart(str(exc), target=True) from None
        except KafkaException as exc:
            # Not one of the failures handled where they happen: start over from the target,
            # counted and backed off like a target failure so it cannot spin.
            raise _Restart(f"client error: {_why(exc)}", target=True) from None
        finally:
            self._close_consumer()
            self._discard_producer()

    def _resume(self, source: str) -> None:
        """Read the target back and position the consumer on `source` (see position.py)."""
        cfg = self.cfg
        consumer = self._open_consumer(source)  # connects while the target is read back
        try:
            src_counts = self.pool.partition_counts(source)
        except OffsetsUnavailable as exc:
            raise _SourceFailed(source, str(exc)) from None
        tgt_counts = self.target.partition_counts(self.topic_map.target_topics)
        try:
            sbt = self.topic_map.sources_by_target(src_counts, tgt_counts)
        except PartitionMappingError as exc:
            raise RelayRefused(f"relay {cfg.name!r} (source {source!r}): {exc}") from None
        self._routes = {
            r.source: _Route(
                r.target, None if r.partition == "same" else r.partitioner(tgt_counts[r.target])
            )
            for r in self.topic_map.routes
        }
        sources = self.topic_map.source_topics
        self._only_topic = sources[0] if len(sources) == 1 else None
        self._by_runs = (self.eos or self._coalesce_acks) and all(
            r.partition != "key-hash" for r in self.topic_map.routes
        )
        scan = ResumeScan(cfg.name, cfg.sources, sbt, max_records=cfg.resume_scan_limit)
        tail = read_tails(
            self.target,
            scan,
            cfg.sources,
            timeout=max(30.0, self.target.timeout * 3),
            keep=RESUME_KEEP if self._timestamp_switch else 0,
        )
        result = scan.result()
        partitions = all_partitions(src_counts)
        try:
            marks = self.pool.watermarks(source, partitions)
        except OffsetsUnavailable as exc:
            raise _SourceFailed(source, str(exc)) from None
        try:
            plan = plan_start(
                cfg.name,
                result,
                source,
                marks,
                position_mapping=cfg.position_mapping,
                timestamp_skew_ms=int(cfg.timestamp_skew.total_seconds() * 1000),
                start_at=cfg.start_at,
            )
        except ResumeError as exc:
            raise RelayRefused(f"relay {cfg.name!r}: {exc}") from None
        lookups = plan.lookups()
        if lookups:
            found = self._offsets_for_times(consumer, source, lookups)
            plan = plan.with_lookups(found, marks)
            self._dedupe_source = tail
            self._lookups = lookups
            self._dedupe = tail.dedupe_from(lookups)
        self._plan = plan
        self.tracker = plan.tracker(sbt, checkpoint_every=cfg.checkpoint_interval)
        self._skip = plan.landed_filter() or None
        starts = {s: p.offset for s, p in plan.partitions.items()}
        if cfg.stop_at_end:
            self._stopper = self._stop_at_end(source, marks, starts)  # type: ignore[arg-type]
        self._assign(
            {s: o for s, o in starts.items() if o is not None},
            [s for s, p in plan.partitions.items() if p.wait_for_source],
        )
        for (topic, part), why in result.foreign.items():
            log.warning(
                "something else writes to a target partition of an exclusive_target relay: "
                "its run was read back without the records that carry no header (they may be "
                "relayed again); set exclusive_target = false",
                extra={"relay": cfg.name, "partition": f"{topic}[{part}]", "why": why},
            )
        skipped = {s: p.skipped for s, p in plan.partitions.items() if p.skipped}
        if skipped:
            log.warning(
                "records were deleted on the source before they were relayed",
                extra={"relay": cfg.name, "source": source, "lost": _partitions(skipped)},
            )
        log.info(
            "relay resumed",
            extra={
                "relay": cfg.name,
                "source": source,
                "target": cfg.target,
                "epoch": plan.epoch,
                "read_back": sum(result.scanned.values()),
                "windows": tail.windows,
                "start": _partitions(starts),
            },
        )

    def _stop_at_end(
        self, source: str, marks: Watermarks, starts: Mapping[SourceKey, int]
    ) -> StopAtEnd:
        """The ends seen when the relay started; a later session on another source whose
        offsets differ stops at that source's end when it starts."""
        if self._ends is None or (
            self._ends_cluster != source and self.cfg.position_mapping == "timestamp"
        ):
            self._ends = {s: high for s, (_low, high) in marks.items()}
            self._ends_cluster = source
        return StopAtEnd(self._ends, starts)

    def _offsets_for_times(
        self, consumer: Consumer, source: str, lookups: Mapping[SourceKey, int]
    ) -> dict[SourceKey, int | None]:
        request = [TopicPartition(t, p, ts) for (t, p), ts in lookups.items()]
        try:
            answer = consumer.offsets_for_times(request, self.pool.metadata_timeout(source))
        except KafkaException as exc:
            raise _SourceFailed(source, f"offsets_for_times: {_why(exc)}") from None
        return {(tp.topic, tp.partition): tp.offset for tp in answer}

    def _open_consumer(self, source: str) -> Consumer:
        try:
            self.consumer = self.pool.consumer(source)
        except KafkaException as exc:
            raise _SourceFailed(source, str(exc)) from None
        self.stats.current_source = source
        self._fresh_source = True
        return self.consumer

    def _assign(
        self, offsets: Mapping[SourceKey, int], waiting: Collection[SourceKey] = ()
    ) -> None:
        """Read from `offsets`; `waiting` partitions, whose position lies beyond this source's
        end, start once a health check shows the source has caught up."""
        assert self.consumer is not None
        self._held = {s: o for s, o in offsets.items() if s in waiting}
        self._assigned = dict(offsets)
        self.consumer.assign(
            [TopicPartition(t, p, o) for (t, p), o in offsets.items() if (t, p) not in waiting]
        )

    def _release_held(self, ends: Mapping[SourceKey, int]) -> None:
        ready = {s: o for s, o in self._held.items() if ends.get(s, -1) >= o}
        if not ready or self.consumer is None:
            return
        current = self.consumer.assignment()
        positions = []  # where each assigned partition stands; not read yet: where it started
        for tp in self.consumer.position(current) if current else []:
            offset = tp.offset if tp.offset >= 0 else self._assigned[tp.topic, tp.partition]
            positions.append(TopicPartition(tp.topic, tp.partition, offset))
        for s in ready:
            del self._held[s]
        self.consumer.assign(
            [*positions, *(TopicPartition(t, p, o) for (t, p), o in ready.items())]
        )

    def _close_consumer(self) -> None:
        consumer, self.consumer = self.consumer, None
        self.stats.current_source = None
        if consumer is not None:
            try:
                consumer.close()
            except (KafkaException, RuntimeError):
                self.stats.source_kafka_errors[self.selector.current or "?", ERR_CLIENT_CLOSED] += 1

    def _discard_producer(self) -> None:
        """Nothing may be left to land after this producer is gone: the next session's read-back
        must see the final state of the target."""
        producer, self.producer = self.producer, None
        if producer is None:
            return
        try:
            # Requests already sent finish first (the target is up: milliseconds), so none can
            # land after the read-back; what never left the process is dropped.
            producer.purge(in_queue=True, in_flight=False)
            producer.flush(self.target.timeout)
            producer.purge(in_queue=True, in_flight=True)
            producer.poll(0)
        except (KafkaException, RuntimeError) as exc:
            log.debug("discarding the producer", extra={"error": str(exc)})

    def _producer_error(self, err: KafkaError) -> None:
        self.target.clients.errors(err)
        if err.fatal():
            self._errors.append(err)

    # -- the pump --------------------------------------------------------------------------------

    def _pump(self) -> None:
        buffer = self.cfg.producer.buffer_size
        txn_limit = min(self.cfg.producer.flush_batch_size, buffer)
        flush_every = self.cfg.producer.flush_frequency.total_seconds()
        blocked = False
        while not self.stopping:
            now = time.monotonic()
            if self.monitor.generation != self._seen_gen and now >= self._next_eval:
                self._on_health()
            if self.eos:
                if self._txn_open and (
                    self._txn_records >= txn_limit or now - self._txn_started >= flush_every
                ):
                    self._commit()
            else:
                self._settle()
                self._watch_target(now)
            assert self.producer is not None and self.tracker is not None
            in_flight = self.tracker.in_flight
            self.stats.in_flight = in_flight
            if in_flight >= buffer:
                if not blocked:
                    blocked = True
                    self.stats.inlet_blocks += 1
                self.producer.poll(0.05)
                continue
            blocked = False
            if self.consumer is None:
                self.producer.poll(0.05)
                self._settle()
                continue
            msgs = self.consumer.consume(min(buffer - in_flight, CONSUME_BATCH), 0.05)
            if msgs:
                self._relay(msgs)
            self.producer.poll(0)
            if self._errors:
                self._produce_failed()
            if self._stopper is not None and self._stopper.done:
                self._done = True
                return

    def _relay(self, msgs: list[Message]) -> None:
        """One consume batch: a fast path by partition runs when no per-record feature is on."""
        tracker = self.tracker
        assert tracker is not None and self.producer is not None
        batch = tracker.open_batch()
        counts: dict[tuple[str, int, str, int], int] = {}
        recent: list[tuple[SourceKey, int, bytes | None, bytes | None]] | None = (
            [] if self._recent is not None else None
        )
        problems: list[Message] = []
        if self.eos and not self._txn_open:
            self._begin()
        if self._by_runs and not self.chain and self._skip is None and self._dedupe is None:
            failed = self._relay_runs(batch, msgs, counts, recent, problems)
        else:
            failed = self._relay_each(batch, msgs, counts, recent, problems)
        batch.close()
        self._closed(_Pending(batch, counts, sum(counts.values()), time.monotonic(), recent))
        self._errors_after(failed, problems)

    def _relay_runs(
        self,
        batch: Batch,
        msgs: list[Message],
        counts: dict[tuple[str, int, str, int], int],
        recent: list[tuple[SourceKey, int, bytes | None, bytes | None]] | None,
        problems: list[Message],
    ) -> KafkaException | None:
        """The common case, by runs of one source partition (a consume batch is a few of them).

        Each run is cut where a checkpoint falls due (`PositionTracker.take`) and at offset
        gaps into the runs position.py describes: the first record gets the stamp, run token and
        checkpoint, the others only the token, one list shared by all records without headers
        of their own. The batch's book-keeping (`Batch.relayed` per record) is done once per
        partition run with the same effect: the run's count added to `pending`, its last record
        as the partition's `last` (tests/unit/relay/test_pipeline.py holds both paths to the
        same positions). A partition run's last record carries its delivery report (see
        `_relay_each` for why one suffices). Stop-at-end cuts a partition run at the end seen at
        start, checked per run (offsets grow along it), not per record.
        """
        tracker = self.tracker
        assert tracker is not None and self.producer is not None
        take = tracker.take
        cluster, mark = tracker.cluster, batch.mark
        stopper = self._stopper
        for i, run_end, topic, part in self._runs(msgs, problems):
            j = run_end if stopper is None else _before_end(stopper, msgs, i, run_end)
            if j == i:
                continue
            route = self._routes[topic]
            tp = part if route.partitioner is None else route.partitioner(part, None)
            target = (route.target, tp)
            prefix = encode_stamp(Stamp(cluster, topic, part, mark, 0))[:-1]
            delivered = None if self.eos else self._ack_callback(batch, j - i)
            k = i
            while k < j:
                n, ckpt = take(target, j - k)
                for a, b in _consecutive(msgs, k, k + n):
                    failed = self._send_run(
                        msgs[a:b], target, prefix, ckpt, delivered if b == j else None
                    )
                    if failed is not None:
                        return failed
                    ckpt = None
                k += n
            if recent is not None:
                recent.extend(
                    ((topic, part), m.timestamp()[1], m.key(), m.value()) for m in msgs[i:j]
                )
            last = msgs[j - 1]
            batch.pending += j - i
            batch.last[topic, part] = (last.offset(), last.timestamp()[1])  # type: ignore[index]
            c = (topic, part, route.target, tp)
            counts[c] = counts.get(c, 0) + j - i
        return None

    def _send_run(
        self,
        run: list[Message],
        target: tuple[str, int],
        prefix: bytes,
        ckpt: bytes | None,
        delivered: Callable[[KafkaError | None, Message], None] | None,
    ) -> KafkaException | None:
        """One run (position.py): stamp, token and the due checkpoint on the first record, the
        token alone on the others (with `exclusive_target`, the run's length on the first and
        nothing on the others that have no headers of their own); `delivered` goes on the last
        record."""
        assert self.producer is not None and self.tracker is not None
        produce = self.producer.produce
        topic, tp = target
        token = self.tracker.new_run()
        first = run[0]
        n = len(run)
        headers = first.headers() or []
        stamp = prefix + b"%d" % first.offset()  # type: ignore[str-bytes-safe]
        headers += ((SOURCE_HEADER, stamp), (RUN_START_HEADER, token))
        if self._exclusive:
            headers.append((RUN_LENGTH_HEADER, b"%d" % n))
        if ckpt is not None:
            headers.append((CHECKPOINT_HEADER, ckpt))
        failed = self._send(first, target, headers, delivered if n == 1 else None)
        if failed is not None:
            return failed
        tagged = (RUN_HEADER, token)
        # records without headers of their own: one list for all (the token), or none at all
        shared = None if self._exclusive else [tagged]
        end = n - 1 if delivered is not None else n
        for m in run[1:end]:
            headers = m.headers()
            if headers:
                headers.append(tagged)
            else:
                headers = shared
            ts = m.timestamp()[1]
            args = (topic, m.value(), m.key(), tp, None, None, ts if ts > 0 else 0, headers)
            try:
                produce(*args)
            except BufferError:
                self._produce_when_room(args)
            except KafkaException as exc:
                return exc
        if 0 < end < n:
            headers = run[end].headers()
            headers = [*headers, tagged] if headers else shared
            return self._send(run[end], target, headers, delivered)
        return None

    def _send(
        self,
        m: Message,
        target: tuple[str, int],
        headers: list[tuple[str, bytes]],
        delivered: Callable[[KafkaError | None, Message], None] | None,
    ) -> KafkaException | None:
        assert self.producer is not None
        topic, tp = target
        ts = m.timestamp()[1]
        return self._produce(
            (topic, m.value(), m.key(), tp, delivered, None, ts if ts > 0 else 0, headers)
        )

    def _produce(self, args: tuple[Any, ...]) -> KafkaException | None:
        """Produce, waiting for room when the queue is full; the error that ends the batch."""
        assert self.producer is not None
        try:
            self.producer.produce(*args)
        except BufferError:
            self._produce_when_room(args)
        except KafkaException as exc:
            return exc
        return None

    def _runs(
        self, msgs: list[Message], problems: list[Message]
    ) -> list[tuple[int, int, str, int]]:
        """(start, end, topic, partition) of each run of one partition's records; errors (end of
        partition and the like) go to `problems` and end a run."""
        only_topic = self._only_topic
        out = []
        n = len(msgs)
        i = 0
        while i < n:
            first = msgs[i]
            if first.error() is not None:
                problems.append(first)
                i += 1
                continue
            part = first.partition()
            topic = only_topic or first.topic()
            j = i + 1
            while j < n:
                m = msgs[j]
                if (
                    m.partition() != part
                    or m.error() is not None
                    or (only_topic is None and m.topic() != topic)
                ):
                    break
                j += 1
            out.append((i, j, topic, part))
            i = j
        return out

    def _relay_each(  # noqa: PLR0915 - one loop, no calls per record
        self,
        batch: Batch,
        msgs: list[Message],
        counts: dict[tuple[str, int, str, int], int],
        recent: list[tuple[SourceKey, int, bytes | None, bytes | None]] | None,
        problems: list[Message],
    ) -> KafkaException | None:
        """Record by record, with filters, skips, dedupe and key-hash routing.

        At-least-once with the idempotent producer, each target partition's records of a batch
        are acknowledged by one delivery report, on the last of them: the partition's records
        land in order, so its last one landing means all did, and a failure of any of them
        fails that last one too (gapless guarantee). A Python callback per record would cost
        more than the rest of the path together.
        """
        tracker = self.tracker
        assert tracker is not None and self.producer is not None
        relayed, skipped = batch.relayed, batch.skipped
        checkpoint_for = tracker.checkpoint_for
        produce = self.producer.produce
        routes = self._routes
        stopper = self._stopper
        dropping = bool(self.chain) or self._skip is not None or self._dedupe is not None
        held: dict[tuple[str, int], tuple[Any, ...]] | None = None
        delivered = None
        if not self.eos:
            if self._coalesce_acks:
                held = {}
            else:
                delivered = self._ack_callback(batch, 1)
        failed: KafkaException | None = None
        for msg in msgs:
            if msg.error() is not None:
                problems.append(msg)
                continue
            topic = msg.topic()
            part = msg.partition()
            offset = msg.offset()
            ts = msg.timestamp()[1]
            if stopper is not None:
                done_at = stopper.past_end((topic, part), offset)
                stopper.consumed((topic, part), offset)
                if done_at:
                    continue
            route = routes[topic]
            key = msg.key()
            tp = part if route.partitioner is None else route.partitioner(part, key)
            if dropping and self._dropped(msg, route.target, tp):
                skipped(topic, part, offset, ts)
                continue
            stamp = relayed(topic, part, offset, ts)
            headers = msg.headers()
            if headers:
                headers.append((SOURCE_HEADER, stamp))
            else:
                headers = [(SOURCE_HEADER, stamp)]
            target = (route.target, tp)
            ckpt = checkpoint_for(target)
            if ckpt is not None:
                headers.append((CHECKPOINT_HEADER, ckpt))
            value = msg.value()
            c = (topic, part, route.target, tp)
            counts[c] = counts.get(c, 0) + 1
            if recent is not None:
                recent.append(((topic, part), ts, key, value))
            args = (route.target, value, key, tp, delivered, None, ts if ts > 0 else 0, headers)
            if held is not None:
                args, held[target] = held.get(target), args  # type: ignore[assignment]
                if args is None:
                    continue
            try:
                produce(*args)
            except BufferError:
                self._produce_when_room(args)
            except KafkaException as exc:
                failed = exc
                break
        if held and failed is None:
            failed = self._produce_last(batch, held, counts)
        return failed

    def _produce_last(
        self,
        batch: Batch,
        held: dict[tuple[str, int], tuple[Any, ...]],
        counts: dict[tuple[str, int, str, int], int],
    ) -> KafkaException | None:
        """Each target partition's last record of the batch, carrying the batch's report."""
        assert self.producer is not None
        per_target: dict[tuple[str, int], int] = {}
        for (_t, _p, target, tp), n in counts.items():
            per_target[target, tp] = per_target.get((target, tp), 0) + n
        for target, last in held.items():
            failed = self._produce(
                (*last[:4], self._ack_callback(batch, per_target[target]), *last[5:])
            )
            if failed is not None:
                return failed
        return None

    def _closed(self, pending: _Pending) -> None:
        n = pending.records
        self._sent += n
        self._txn_records += n
        self._unsettled.append(pending)
        if n and self._fresh_source:
            self._fresh_source = False
            self.selector.working()

    def _errors_after(self, failed: KafkaException | None, problems: list[Message]) -> None:
        """A produce that raised, then the consume errors of the batch."""
        if failed is not None:
            self._produce_raised(failed)
        consumer = self.consumer
        for msg in problems:
            if self.consumer is not consumer:
                break  # a failover happened: the rest are the old source's errors
            self._consume_error(msg)

    def _dropped(self, msg: Message, target: str, partition: int) -> bool:
        """Filtered, already on the target (spread-out resume), or a re-read copy (switch)."""
        source = (msg.topic(), msg.partition())
        if self.chain and self.chain.rejected_by(msg) is not None:
            return True
        if self._skip is not None and self._skip.already_landed(
            source,  # type: ignore[arg-type]
            msg.offset(),  # type: ignore[arg-type]
            (target, partition),
        ):
            return True
        return self._dedupe is not None and self._dedupe.seen(
            source,  # type: ignore[arg-type]
            msg.timestamp()[1],
            msg.key(),
            msg.value(),
        )

    def _produce_when_room(self, args: tuple[Any, ...]) -> None:
        """The producer's own queue is full (bytes, not records): wait for deliveries."""
        assert self.producer is not None
        while True:
            self.producer.poll(0.05)
            try:
                self.producer.produce(*args)
                return
            except BufferError:
                if self.stopping:
                    raise _Restart("stopping with a full producer queue", target=False) from None

    def _ack_callback(
        self, batch: Batch, records: int
    ) -> Callable[[KafkaError | None, Message], None]:
        ack = batch.acked
        errors = self._errors

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                ack(records)
            else:
                errors.append(err)

        return delivered

    def _settle(self) -> None:
        """Count batches whose records are all acknowledged (kept in order, like the tracker)."""
        pending = self._unsettled
        if not pending:
            return
        now = time.monotonic()
        stats = self.stats
        while pending:
            head = pending[0]
            if not head.batch.closed or head.batch.pending:
                break
            pending.popleft()
            if head.relayed and self._recent is not None:
                for record in head.relayed:
                    self._recent.add(*record)
            if head.records:
                stats.relayed.update(head.counts)
                stats.acked += head.records
                stats.flush_batch_size.observe(head.records)
                stats.flush_duration.observe(now - head.closed_at)

    def _watch_target(self, now: float) -> None:
        """At-least-once: records wait and none was acknowledged for request_timeout → one
        failed attempt (records stay queued: the producer never drops them on a timeout)."""
        assert self.tracker is not None
        in_flight = self.tracker.in_flight
        acked = self._sent - in_flight
        if acked != self._acked_seen or not in_flight:
            if acked != self._acked_seen:
                self._target_attempt = 0
            self._acked_seen = acked
            self._progress_at = now
            return
        stall = self.cfg.producer.request_timeout.total_seconds()
        if now - self._progress_at < stall:
            return
        err = self.target.clients.errors.since(time.time() - (now - self._progress_at))
        reason = f"{in_flight} records unacknowledged for {now - self._progress_at:.1f}s" + (
            f" ({err.reason})" if err else ""
        )
        self.stats.target_errors[ERR_CONNECTION_FAILED] += 1
        self._progress_at = now
        self._target_failed(reason)
        self._progress_at = time.monotonic()

    def _produce_failed(self) -> None:
        errors = list(self._errors)
        self._errors.clear()
        self.stats.target_kafka_errors[ERR_PRODUCE] += len(errors)
        first = errors[0]
        raise _Restart(
            f"delivery to {self.cfg.target!r} failed: {first.str()} ({first.name()})"
            + (f" and {len(errors) - 1} more" if len(errors) > 1 else ""),
            target=True,
        )

    def _produce_raised(self, exc: KafkaException) -> None:
        err = exc.args[0]
        self.stats.target_kafka_errors[ERR_PRODUCE] += 1
        if self.eos and not err.fatal():
            self._abort(err)
            return
        raise _Restart(f"produce to {self.cfg.target!r} failed: {err.str()}", target=True)

    def _consume_error(self, msg: Message) -> None:
        err = msg.error()
        source = self.selector.current or "?"
        key = (msg.topic(), msg.partition())
        code = err.code()
        if code == KafkaError._PARTITION_EOF:
            if self._stopper is not None and self.consumer is not None:
                self._stopper.reached_end(key)  # type: ignore[arg-type]
            return
        self.stats.source_kafka_errors[source, ERR_FETCH] += 1
        if code == KafkaError._AUTO_OFFSET_RESET:
            raise _Restart(f"{source}: {key[0]}[{key[1]}]: {err.str()}", target=False)
        if err.fatal() or code in _SOURCE_DOWN:
            self._act(self.selector.failed(source, err.str()))
        else:
            log.debug("source client error", extra={"source": source, "error": err.str()})

    # -- exactly-once ----------------------------------------------------------------------------

    def _begin(self) -> None:
        assert self.producer is not None
        try:
            self.producer.begin_transaction()
        except KafkaException as exc:
            raise _Restart(f"begin_transaction: {_why(exc)}", target=True) from None
        self._txn_open = True
        self._txn_started = time.monotonic()
        self._txn_records = 0

    def _commit(self) -> None:
        assert self.producer is not None and self.tracker is not None
        while True:
            try:
                self.producer.commit_transaction(self.target.timeout)
                break
            except KafkaException as exc:
                err = exc.args[0]
                if err.txn_requires_abort():
                    self._abort(err)
                    return
                if err.retriable() and not err.fatal():
                    self._target_failed(f"commit_transaction: {err.str()}")
                    if self.stopping:
                        raise _Restart("stopping during a retried commit", target=False) from None
                    continue
                raise _Restart(f"commit_transaction: {err.str()}", target=True) from None
        self._txn_open = False
        self._target_attempt = 0
        for pending in self._unsettled:
            if pending.batch.pending:
                pending.batch.acked(pending.batch.pending)
        self._settle()

    def _abort(self, err: KafkaError) -> None:
        """Abort the open transaction and read its records again from the settled positions."""
        assert self.producer is not None and self.tracker is not None
        self.stats.target_kafka_errors[ERR_PRODUCE] += 1
        try:
            self.producer.abort_transaction(self.target.timeout)
        except KafkaException as exc:
            raise _Restart(f"abort_transaction: {_why(exc)}", target=True) from None
        self._txn_open = False
        cursors = self.tracker.abandon()
        self._unsettled.clear()
        plan = self._plan
        if plan is not None:
            self._skip = plan.landed_filter() or None
        if self._dedupe_source is not None:
            self._dedupe = self._dedupe_source.dedupe_from(self._lookups)
        if self._stopper is not None and self._ends is not None:
            self._stopper = StopAtEnd(self._ends, {s: c.offset for s, c in cursors.items()})
        if self.consumer is not None:
            self._assign({s: c.offset for s, c in cursors.items()})
        self._target_failed(f"transaction aborted: {err.str()}")

    # -- failover ---------------------------------------------------------------------------------

    def _on_health(self) -> None:
        self._seen_gen = self.monitor.generation
        results = self.monitor.latest
        current = self.selector.current
        tracker = self.tracker
        for h in results:
            if h.name == current and h.end_offsets is not None and tracker is not None:
                self.stats.lag = relay_lag(h.end_offsets, tracker.cursors(), current)
                if self._held:
                    self._release_held(h.end_offsets)
        floor = None
        if self.cfg.position_mapping == "offset" and tracker is not None:
            floor = {s: c.offset for s, c in tracker.cursors().items()}
        self._act(self.selector.evaluate(results, floor))

    def _act(self, decision: Decision) -> None:
        """Carry out a decision taken during a session."""
        while True:
            self._count(decision)
            if decision.action is Action.KEEP:
                return
            if decision.action is Action.GIVE_UP:
                raise RelayGaveUp(f"relay {self.cfg.name!r}: {decision.reason}")
            if decision.action is Action.WAIT:
                self._close_consumer()
                self.state = "waiting"
                self._next_eval = time.monotonic() + decision.delay.total_seconds()
                return
            try:
                self._switch(decision)
                self.state = "running"
                return
            except _SourceFailed as exc:
                decision = self.selector.failed(exc.source, exc.reason)

    def _switch(self, decision: Decision) -> None:
        """Drain, close the old consumer, move the positions to the new source, read on."""
        new = decision.source
        assert new is not None and self.tracker is not None
        self._sleep(decision.delay.total_seconds())
        self._drain()
        self._close_consumer()
        cursors = self.tracker.cursors()
        old = self.tracker.cluster
        waiting: list[SourceKey] = []
        if new == old or self.cfg.position_mapping == "offset":
            moved = {s: Cursor(new, c.offset, c.timestamp_ms) for s, c in cursors.items()}
            self.tracker.rebase(new, moved, same_offsets=True)
            ends = self._ends
            known = self._end_offsets(new)
            waiting = [s for s, c in moved.items() if c.offset > known.get(s, c.offset)]
        else:
            moved, lookups, marks = self._map_by_timestamp(new, cursors)
            self.tracker.rebase(new, moved, same_offsets=False)
            self._skip = None
            assert self._recent is not None
            self._dedupe = self._recent.dedupe_from(lookups)
            self._dedupe_source = None
            ends = {s: high for s, (_low, high) in marks.items()}
        if self._stopper is not None and ends is not None:
            self._stopper.rebase(ends)
        if self.consumer is None:
            self._open_consumer(new)
        self._assign({s: c.offset for s, c in moved.items()}, waiting)
        log.info(
            "reading from a new source",
            extra={
                "relay": self.cfg.name,
                "source": new,
                "previous": decision.previous,
                "waiting_for": _partitions(self._held),
            },
        )

    def _end_offsets(self, source: str) -> Mapping[SourceKey, int]:
        """The source's end offsets from the latest health check (empty when unknown)."""
        for h in self.monitor.latest:
            if h.name == source and h.end_offsets is not None:
                return h.end_offsets
        return {}

    def _map_by_timestamp(
        self, new: str, cursors: Mapping[SourceKey, Cursor]
    ) -> tuple[dict[SourceKey, Cursor], dict[SourceKey, int], Watermarks]:
        """Positions on `new` by record timestamp (see position.py for the guarantee)."""
        try:
            marks = self.pool.watermarks(new, list(cursors))
        except OffsetsUnavailable as exc:
            raise _SourceFailed(new, str(exc)) from None
        skew = int(self.cfg.timestamp_skew.total_seconds() * 1000)
        lookups = {
            s: max(0, c.timestamp_ms - skew) for s, c in cursors.items() if c.timestamp_ms >= 0
        }
        consumer = self._open_consumer(new)
        found = self._offsets_for_times(consumer, new, lookups) if lookups else {}
        moved = {}
        for s, c in cursors.items():
            low, high = marks[s]
            if s in lookups:
                offset = found.get(s)
                start = high if offset is None or offset < 0 else min(max(offset, low), high)
            else:
                start = low if self.cfg.start_at == "earliest" else high
            moved[s] = Cursor(new, start, c.timestamp_ms)
        return moved, lookups, marks

    # -- draining and finishing --------------------------------------------------------------------

    def _drain(self, deadline: float | None = None) -> bool:
        """Every record handed to the producer acknowledged (exactly-once: committed)."""
        assert self.producer is not None and self.tracker is not None
        if self.eos:
            if self._txn_open:
                self._commit()
            return not self.tracker.in_flight
        while self.tracker.in_flight:
            now = time.monotonic()
            if deadline is not None and now > deadline:
                return False
            self.producer.poll(0.05)
            if self._errors:
                self._produce_failed()
            self._settle()
            if deadline is None:
                self._watch_target(now)
        self._settle()
        return True

    def _finish(self) -> None:
        """Stopped or done: leave as little as possible for the next start to redo."""
        deadline = None if self._done else time.monotonic() + STOP_DRAIN_SECONDS
        if self.eos or self._done:
            self._drain()
        elif not self._drain(deadline):
            log.warning(
                "stopping with unacknowledged records; the next start re-reads them",
                extra={"relay": self.cfg.name, "in_flight": self.stats.in_flight},
            )
        self.stats.in_flight = self.tracker.in_flight if self.tracker else 0
        if self._done:
            log.info("stop-at-end: every source partition relayed", extra={"relay": self.cfg.name})


def _before_end(stopper: StopAtEnd, msgs: list[Message], i: int, j: int) -> int:
    """Stop-at-end for msgs[i:j], one partition's records: all consumed, those before the end
    seen at start relayed (the end of them is returned)."""
    source = (msgs[i].topic(), msgs[i].partition())
    last = msgs[j - 1].offset()
    stopper.consumed(source, last)  # type: ignore[arg-type]
    if not stopper.past_end(source, last):  # type: ignore[arg-type]
        return j
    while i < j and not stopper.past_end(source, msgs[i].offset()):  # type: ignore[arg-type]
        i += 1
    return i


def _consecutive(msgs: list[Message], i: int, j: int) -> list[tuple[int, int]]:
    """msgs[i:j], records of one partition, cut where offsets are not consecutive (compacted
    records, transaction markers): a run token stands for consecutive offsets only."""
    if msgs[j - 1].offset() - msgs[i].offset() == j - 1 - i:  # type: ignore[operator]
        return [(i, j)]
    out = []
    start, expect = i, msgs[i].offset()
    for k in range(i, j):
        offset = msgs[k].offset()
        if offset != expect:
            out.append((start, k))
            start = k
        expect = offset + 1  # type: ignore[operator]
    out.append((start, j))
    return out


def _why(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else exc
    return err.str() if isinstance(err, KafkaError) else str(err)


def _partitions(values: Mapping[SourceKey, Any]) -> str:
    return ",".join(f"{t}[{p}]={v}" for (t, p), v in sorted(values.items()))
