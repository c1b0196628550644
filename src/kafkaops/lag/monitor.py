"""The lag pipeline, per cluster and iteration: collect → history → estimate → status → snapshot.

Each cluster has its own `ClusterMonitor` (its own history store, record-timestamp memo, commit
windows and reader), so clusters never share mutable state and one cluster's outage cannot stall
another: they iterate concurrently, each in a worker thread for the blocking Kafka calls and the
CPU-bound arithmetic, which keeps the event loop free for /metrics and /healthz.

The result of an iteration is an immutable `Snapshot` that replaces the previous one whole.
Exports read the latest snapshot, so a group, topic or partition that is gone from the cluster
is gone from the next scrape; a cluster whose iteration failed has no snapshot (no stale values)
and is reported unhealthy until an iteration succeeds again.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import KafkaException

from kafkaops.config import Config
from kafkaops.kafka import ClusterClients
from kafkaops.lag.aggregate import Totals, aggregate
from kafkaops.lag.collector import CollectError, Collection, Collector, reason
from kafkaops.lag.config import LagConfig
from kafkaops.lag.estimator import (
    Policy,
    RecordTimestampMemo,
    RecordTimestampNeeded,
    Source,
    estimate_seconds,
    from_record,
    lag_in_offsets,
    plan_record_fetches,
)
from kafkaops.lag.history import HistoryStore, PartitionHistory
from kafkaops.lag.membership import GROUP as MEMBERSHIP_GROUP
from kafkaops.lag.membership import LagMembership
from kafkaops.lag.status import (
    CommitWindow,
    GroupStatus,
    PartitionStatus,
    Status,
    evaluate_group,
    evaluate_partition,
)
from kafkaops.lag.storage import MemoryStorage, RedisStorage, make_storage
from kafkaops.lag.timestamps import RecordTimestampReader
from kafkaops.server.runtime import Health

log = logging.getLogger("kafkaops.lag")

_EXPIRE_EVERY_S = 60.0
_NO_WINDOWS: dict = {}
_MAX_RECORD_READ_S = 10.0


@dataclass(frozen=True, slots=True)
class LagRow:
    """One group-partition in one iteration: what subscribers and exports receive."""

    clustername: str
    group: str
    topic: str
    partition: int
    committed: int
    end_offset: int
    lag_in_offsets: int
    lag_in_seconds: float | None
    """Non-negative and finite, or None when nothing could be said (not exported)."""
    source: Source
    """Which method produced `lag_in_seconds` (see estimator.Source)."""
    status: Status
    """Burrow's partition status."""


@dataclass(frozen=True, slots=True)
class GroupView:
    group: str
    state: str
    status: GroupStatus
    totals: Totals


@dataclass(frozen=True)
class Snapshot:
    """One cluster's results of one iteration; never mutated after it is published."""

    cluster: str
    taken_at: float
    rows: list[LagRow]
    groups: dict[str, GroupView]
    topics: dict[tuple[str, str], Totals]
    groups_checked: int
    duration: float
    errors: list[str] = field(default_factory=list)


Subscriber = Callable[[Sequence[LagRow]], Awaitable[None] | None]


class ClusterMonitor:
    """The pipeline for one cluster; `iterate` runs one iteration and publishes a snapshot."""

    def __init__(
        self,
        clients: ClusterClients,
        cfg: LagConfig,
        storage: MemoryStorage | RedisStorage,
        membership: LagMembership | None = None,
        record_read_limit: int | None = None,
    ) -> None:
        self.id = clients.id
        self.cfg = cfg
        self.storage = storage
        self.membership = membership
        self.record_read_limit = record_read_limit
        group_filter = cfg.group_filter(clients.id)
        if group_filter is None:
            raise ValueError(f"cluster {clients.id!r} is not monitored by [lag]")
        self.collector = Collector(
            clients,
            admits=lambda g: g != MEMBERSHIP_GROUP and group_filter.admits(g),
            concurrency=cfg.num_workers,
            request_timeout=clients.cluster.timeout.total_seconds(),
        )
        self.reader = RecordTimestampReader(clients)
        self.store = HistoryStore(cfg.storage.max_points, cfg.storage.retention_ttl_seconds * 1000)
        self.memo = RecordTimestampMemo()
        self.rules = cfg.status.rules()
        self.interval_ms = int(cfg.iteration_interval.total_seconds() * 1000)
        self._windows: dict[str, dict[tuple[str, int], CommitWindow]] = {}
        """Burrow commit windows by group, then (topic, partition)."""
        self._expired_at = 0.0
        self.snapshot: Snapshot | None = None
        self.up: bool | None = None
        """None until the first iteration ends; then whether the last one reached the cluster."""
        self.reason = ""
        self.scrape_errors = 0
        """Failed requests (whole iterations and single groups/partitions), since start."""

    # -- one iteration ---------------------------------------------------------------------

    async def iterate(self) -> Snapshot | None:
        started = time.monotonic()
        owns = self.membership.owns if self.membership is not None else None
        try:
            collection = await asyncio.to_thread(self.collector.collect, owns)
        except CollectError as exc:
            self.collector.reset()
            self._failed(str(exc))
            return None
        missing = [
            (self.id, t, p) for t, p in collection.end_offsets if (self.id, t, p) not in self.store
        ]
        if missing:
            for key, history in (await self.storage.load(missing, self.store.max_points)).items():
                self.store.put(key, history)
        try:
            snapshot, touched = await asyncio.to_thread(self.compute, collection, started)
        except KafkaException as exc:
            self._failed(f"reading record timestamps failed: {reason(exc)}")
            return None
        await self.storage.save(touched)
        self.scrape_errors += len(collection.errors)
        if collection.errors:
            log.warning(
                "lag iteration had errors",
                extra={
                    "cluster": self.id,
                    "errors": len(collection.errors),
                    "first": collection.errors[0],
                },
            )
        if self.up is False:
            log.info("lag collection recovered", extra={"cluster": self.id})
        self.up, self.reason = True, ""
        self.snapshot = snapshot
        return snapshot

    def _failed(self, why: str) -> None:
        self.scrape_errors += 1
        if self.up is not False or why != self.reason:
            log.warning("lag collection failed", extra={"cluster": self.id, "reason": why})
        self.up, self.reason = False, why
        self.snapshot = None

    def compute(
        self, collection: Collection, started: float
    ) -> tuple[Snapshot, dict[tuple[str, str, int], PartitionHistory]]:
        """Everything after the Kafka reads (blocking only for record-timestamp reads)."""
        cluster = self.id
        now_ms = int(collection.taken_at * 1000)
        histories: dict[tuple[str, int], PartitionHistory] = {}
        touched: dict[tuple[str, str, int], PartitionHistory] = {}
        for tp, leo in collection.end_offsets.items():
            key = (cluster, *tp)
            history = self.store.observe(key, leo, now_ms)
            histories[tp] = history
            touched[key] = history
        estimates = self._estimate(collection, histories, now_ms)
        rows, partition_statuses = self._status(collection, estimates, histories, now_ms)
        per_group, per_topic = aggregate(
            (r.group, r.topic, r.lag_in_offsets, r.lag_in_seconds) for r in rows
        )
        states = {g.group: g.state for g in collection.groups}
        groups = {
            group: GroupView(group, states[group], evaluate_group(parts), per_group[group])
            for group, parts in partition_statuses.items()
        }
        if time.monotonic() - self._expired_at > _EXPIRE_EVERY_S:
            self._expired_at = time.monotonic()
            self.store.expire(now_ms)
        snapshot = Snapshot(
            cluster=cluster,
            taken_at=collection.taken_at,
            rows=rows,
            groups=groups,
            topics=per_topic,
            groups_checked=len(collection.groups),
            duration=time.monotonic() - started,
            errors=list(collection.errors),
        )
        return snapshot, touched

    def _estimate(
        self,
        collection: Collection,
        histories: dict[tuple[str, int], PartitionHistory],
        now_ms: int,
    ) -> list[list]:
        """[group, (topic, partition), committed, end offset, lag, estimate] per group-partition.

        Requests for record timestamps are answered from the memo first; the rest are read
        from Kafka, worst lag first, up to the configured number of reads.
        """
        policy: Policy = self.cfg.lag_in_seconds_source
        memo = self.memo
        end_offsets = collection.end_offsets
        out: list = []
        pending: list[tuple[int, tuple[str, int], RecordTimestampNeeded, int]] = []
        for g in collection.groups:
            for tp, committed in g.committed.items():
                leo = end_offsets.get(tp)
                if leo is None:
                    continue
                lag = lag_in_offsets(leo, committed)
                est = estimate_seconds(histories[tp], committed, leo, now_ms, policy)
                if isinstance(est, RecordTimestampNeeded):
                    ts = memo.get(tp, est.offset)
                    if ts is None:
                        pending.append((len(out), tp, est, lag))
                    else:
                        est = from_record(est, ts, now_ms)
                out.append([g.group, tp, committed, leo, lag, est])
        if pending:
            pending.sort(key=lambda item: -item[3])
            limit = self.record_read_limit
            if limit is None:
                limit = self.cfg.max_record_reads
            rounds = plan_record_fetches(((tp, need.offset) for _, tp, need, _ in pending), limit)
            found = {}
            if rounds:
                budget = min(_MAX_RECORD_READ_S, max(2.0, self.interval_ms / 1000))
                found = self.reader.read(rounds, budget)
                for (tp, offset), ts in found.items():
                    memo.put(tp, offset, ts)
            for index, tp, need, _ in pending:
                out[index][5] = from_record(need, found.get((tp, need.offset)), now_ms)
        return out

    def _status(
        self,
        collection: Collection,
        estimates: list,
        histories: dict[tuple[str, int], PartitionHistory],
        now_ms: int,
    ) -> tuple[list[LagRow], dict[str, list[tuple[str, int, PartitionStatus]]]]:
        """Burrow's partition status per row, from a window of the commits we observed; also
        the statuses by group, for the group verdict."""
        rules = self.rules
        lookback = now_ms - rules.intervals * self.interval_ms
        live = {g.group for g in collection.groups if g.has_members}
        previous = self._windows
        windows: dict[str, dict[tuple[str, int], CommitWindow]] = {}
        rows: list[LagRow] = []
        by_group: dict[str, list[tuple[str, int, PartitionStatus]]] = {}
        cluster = self.id
        for group, tp, committed, leo, lag, est in estimates:
            window = previous.get(group, _NO_WINDOWS).get(tp)
            if window is None:
                window = CommitWindow(rules.intervals)
            group_windows = windows.get(group)
            if group_windows is None:
                group_windows = windows[group] = {}
            group_windows[tp] = window
            # the window's newest commit sits at the end of its flat (offset, lag, time) array
            if not window._flat or committed != window._flat[-3] or group in live:
                window.record(committed, lag, now_ms, rules.min_distance_ms)
            recent = histories[tp].first_offset_since(lookback)
            verdict = evaluate_partition(window, lag, now_ms, recent, rules)
            topic, partition = tp
            by_group.setdefault(group, []).append((topic, partition, verdict))
            rows.append(
                LagRow(
                    cluster,
                    group,
                    topic,
                    partition,
                    committed,
                    leo,
                    lag,
                    est.seconds,
                    est.source,
                    verdict.status,
                )
            )
        self._windows = windows  # group-partitions not seen this time are dropped
        return rows, by_group

    # -- views -------------------------------------------------------------------------------

    def visible(self) -> Snapshot | None:
        """The latest snapshot, less the groups this instance no longer owns.

        Ownership can move between iterations; filtering at read time means an instance stops
        exporting a group the moment it loses it, not one iteration later.
        """
        snapshot = self.snapshot
        membership = self.membership
        if snapshot is None or membership is None:
            return snapshot
        owns = membership.owns
        if all(owns(g) for g in snapshot.groups):
            return snapshot
        groups = {g: v for g, v in snapshot.groups.items() if owns(g)}
        return Snapshot(
            cluster=snapshot.cluster,
            taken_at=snapshot.taken_at,
            rows=[r for r in snapshot.rows if r.group in groups],
            groups=groups,
            topics={k: v for k, v in snapshot.topics.items() if k[0] in groups},
            groups_checked=snapshot.groups_checked,
            duration=snapshot.duration,
            errors=snapshot.errors,
        )

    def close(self) -> None:
        """Blocking: leave the instance group first, so others take our groups at once."""
        if self.membership is not None:
            self.membership.stop()
        self.reader.close()


class Monitor:
    """Every monitored cluster, the iteration loop, subscribers and health."""

    def __init__(
        self,
        config: Config,
        clients_of: Callable[[str], ClusterClients],
        *,
        record_read_limit: int | None = None,
        session_timeout: float = 10.0,
    ) -> None:
        self.cfg = config.lag or LagConfig()
        self.interval = self.cfg.iteration_interval.total_seconds()
        self.storage = make_storage(self.cfg.storage, timeout=max(1.0, self.interval))
        self.clusters: dict[str, ClusterMonitor] = {}
        for cluster_id in config.clusters:
            if self.cfg.group_filter(cluster_id) is None:
                continue
            clients = clients_of(cluster_id)
            membership = (
                LagMembership(clients, session_timeout=session_timeout)
                if self.cfg.sharding
                else None
            )
            self.clusters[cluster_id] = ClusterMonitor(
                clients, self.cfg, self.storage, membership, record_read_limit
            )
        self.iteration_seconds: float | None = None
        self.iterations = 0
        self.writer = None
        """The remote-write sender when one is configured (export.RemoteWriter)."""
        self._subscribers: list[Subscriber] = []
        self._started = False
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        """Join the instance groups (sharding); iterations may run before shares arrive."""
        if self._started:
            return
        self._started = True
        for cluster in self.clusters.values():
            if cluster.membership is not None:
                cluster.membership.start()

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(rows)` after every iteration with every cluster's rows (this
        instance's groups only); it may be a coroutine function. Returns an unsubscribe
        function. A failing subscriber is logged and does not stop the monitor."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    async def iterate(self) -> list[Snapshot]:
        started = time.monotonic()
        results = await asyncio.gather(*(c.iterate() for c in self.clusters.values()))
        self.iteration_seconds = time.monotonic() - started
        self.iterations += 1
        snapshots = [s for s in results if s is not None]
        if self._subscribers:
            rows = [r for c in self.clusters.values() if (s := c.visible()) for r in s.rows]
            for callback in list(self._subscribers):
                try:
                    result = callback(rows)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("lag subscriber failed")
        return snapshots

    async def run(self) -> None:
        """Iterate every `iteration_interval` (measured start to start) until cancelled."""
        self.start()
        while not self._closing:
            started = time.monotonic()
            self._idle.clear()
            try:
                await self.iterate()
            finally:
                self._idle.set()
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    def snapshots(self) -> list[Snapshot]:
        return [s for c in self.clusters.values() if (s := c.visible()) is not None]

    def health(self) -> Health:
        """Unhealthy when a cluster's last iteration failed or Redis is unavailable."""
        bad = sorted(cid for cid, c in self.clusters.items() if c.up is False)
        storage = self.storage.health()
        clusters = {
            cid: {
                "healthy": c.up is not False,
                **({"reason": c.reason} if c.reason else {}),
                **(
                    {"groups": c.snapshot.groups_checked, "last_iteration": c.snapshot.taken_at}
                    if c.snapshot
                    else {}
                ),
                **(
                    {"buckets": len(c.membership.owned), "of": c.membership.buckets}
                    if c.membership is not None
                    else {}
                ),
            }
            for cid, c in self.clusters.items()
        }
        detail = {
            "clusters": clusters,
            "storage": {
                "type": storage.kind,
                "healthy": storage.healthy,
                **({"reason": storage.reason} if storage.reason else {}),
            },
        }
        return Health(not bad and storage.healthy, tuple(bad), detail)

    async def close(self, timeout: float = 30.0) -> None:
        """Let a running iteration finish (its threads cannot be interrupted), then leave the
        instance groups and close clients and storage."""
        self._closing = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning("a lag iteration was still running at shutdown")
        await asyncio.gather(*(asyncio.to_thread(c.close) for c in self.clusters.values()))
        await self.storage.close()
