"""Crash the relay anywhere, resume from the target, repeat: nothing lost, nothing twice.

A model of the I/O layer drives the real tracker, scan and planner. Source partitions have offset
gaps (compaction, transaction markers), filtered records, and logs whose start moves between runs
(retention). Each process writes positions in one of three forms, chosen at random (so a
target mixes them, as after an upgrade or a change of `exclusive_target`): a stamp on every
record; runs (a stamp where a run of consecutive offsets starts, its token on the others); or
runs of `exclusive_target` (the first record also carries the run's length, the others with no
headers of their own carry none). The target delivers each partition's
in-flight records in order, a prefix at a time, like the idempotent producer (so runs land cut
short); a crash drops whatever was still in flight. With transactions a
batch lands whole or not at all and every commit leaves a marker offset. The failover variant
also switches between two offset-identical sources mid-run (flush, then rebase), so positions and
landed records carry either cluster's id.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from kafkaops.relay.position import (
    CHECKPOINT_HEADER,
    RUN_HEADER,
    RUN_LENGTH_HEADER,
    RUN_START_HEADER,
    SOURCE_HEADER,
    Cursor,
    ResumeScan,
    Stamps,
    TailRecord,
    plan_start,
)
from kafkaops.relay.topicmap import SourceKey, TargetKey, TopicMap, TopicRoute

RELAY = "sim"


@dataclass(frozen=True)
class Rec:
    offset: int
    ts: int
    key: bytes | None
    filtered: bool


@dataclass
class Source:
    logs: dict[SourceKey, list[Rec]]
    start: dict[SourceKey, int] = field(default_factory=dict)
    end: dict[SourceKey, int] = field(default_factory=dict)

    def watermarks(self) -> dict[SourceKey, tuple[int, int]]:
        return {s: (self.start[s], self.end[s]) for s in self.logs}

    def read(self, s: SourceKey, offset: int, n: int) -> list[Rec]:
        return [r for r in self.logs[s] if r.offset >= max(offset, self.start[s])][:n]


def make_source(rng: random.Random, topics: dict[str, int]) -> Source:
    logs: dict[SourceKey, list[Rec]] = {}
    end: dict[SourceKey, int] = {}
    for topic, partitions in topics.items():
        for p in range(partitions):
            offset, ts, recs = rng.randint(0, 3), 1000, []
            for _ in range(rng.randint(0, 25)):
                ts += rng.choice((0, 1, 5))
                key = None if rng.random() < 0.15 else b"k%d" % rng.randint(0, 40)
                recs.append(Rec(offset, ts, key, filtered=rng.random() < 0.2))
                offset += 1 + (rng.random() < 0.2) * rng.randint(1, 3)
            logs[(topic, p)] = recs
            end[(topic, p)] = offset
    return Source(logs, {s: (r[0].offset if r else end[s]) for s, r in logs.items()}, end)


@dataclass
class Target:
    logs: dict[TargetKey, list[TailRecord]] = field(default_factory=dict)
    next_offset: dict[TargetKey, int] = field(default_factory=dict)

    def append(self, t: TargetKey, ts: int, headers: list) -> None:
        off = self.next_offset.get(t, 0)
        self.logs.setdefault(t, []).append(TailRecord(off, ts, headers))
        self.next_offset[t] = off + 1

    def marker(self, t: TargetKey) -> None:
        self.next_offset[t] = self.next_offset.get(t, 0) + 1


def scan_target(rng, target: Target, sbt, clusters) -> ResumeScan:
    scan = ResumeScan(RELAY, clusters, sbt, max_records=10_000)
    for t in sbt:
        log = target.logs.get(t, [])
        hi = target.next_offset.get(t, 0)
        while scan.wants_more(t):
            lo = max(0, hi - rng.randint(1, 8))
            window = [r for r in log if lo <= r.offset < hi]
            scan.feed(t, window, reached_start=lo == 0)
            hi = lo
    return scan


@dataclass
class World:
    source: Source
    target: Target
    topic_map: TopicMap
    counts: dict[str, int]
    sbt: dict
    clusters: list[str]
    current: str = "dc1"
    deleted: set = field(default_factory=set)


def deliver(rng, inflight, everything=False):
    for t, queue in inflight.items():
        for _ in range(len(queue) if everything else rng.randint(0, len(queue))):
            batch, ts, headers, target = queue.popleft()
            target.append(t, ts, headers)
            batch.acked()


def position_headers(form, tracker, run, t, rec, *, own, stamp, ck):
    """One record's headers in `form`, and the run it opens or continues (None: no runs)."""
    if run is not None and ck is None and run[1:3] == (t, rec.offset - 1):
        token, first = run[0], run[3]
        headers = [*own, (RUN_HEADER, token)] if own or form == "runs" else []
        if form == "exclusive":  # the first record's length counts this one too
            at = first.index(next(h for h in first if h[0] == RUN_LENGTH_HEADER))
            first[at] = (RUN_LENGTH_HEADER, b"%d" % (int(first[at][1]) + 1))
    else:
        first = headers = [*own, (SOURCE_HEADER, stamp)]
        token = tracker.new_run()
        if form != "stamps":
            headers.append((RUN_START_HEADER, token))
        if form == "exclusive":
            headers.append((RUN_LENGTH_HEADER, b"1"))
        if ck is not None:
            headers.append((CHECKPOINT_HEADER, ck))
    return headers, ((token, t, rec.offset, first) if form != "stamps" else None)


def run(rng, w: World, *, transactional: bool, steps: int, crash: bool = True) -> bool:
    """One relay process from a fresh resume; True when it finished, False when it 'crashed'."""
    scan = scan_target(rng, w.target, w.sbt, w.clusters)
    plan = plan_start(
        RELAY, scan.result(), w.current, w.source.watermarks(), position_mapping="offset"
    )
    tracker = plan.tracker(w.sbt, checkpoint_every=rng.randint(1, 6))
    landed = plan.landed_filter()
    pos = {s: p.offset for s, p in plan.partitions.items()}
    parts = {r.source: r.partitioner(w.counts[r.target]) for r in w.topic_map.routes}
    inflight: dict[TargetKey, deque] = {}
    form = rng.choice(("stamps", "runs", "exclusive"))
    for _ in range(steps):
        batch = tracker.open_batch()
        staged = []
        for s in rng.sample(sorted(pos), k=rng.randint(1, len(pos))):
            run = None  # (token, target, last offset, first record's headers) of the open run
            for rec in w.source.read(s, pos[s], rng.randint(1, 6)):
                pos[s] = rec.offset + 1
                t = (w.topic_map.route(s[0]).target, parts[s[0]](s[1], rec.key))
                if rec.filtered or landed.already_landed(s, rec.offset, t):
                    batch.skipped(s[0], s[1], rec.offset, rec.ts)
                    run = None
                    continue
                stamp = batch.relayed(s[0], s[1], rec.offset, rec.ts)
                ck = tracker.checkpoint_for(t)
                own = [("app", b"x")] if form != "exclusive" or rng.random() < 0.5 else []
                headers, run = position_headers(
                    form, tracker, run, t, rec, own=own, stamp=stamp, ck=ck
                )
                staged.append((t, rec.ts, headers))
        batch.close()
        if transactional:
            if crash and rng.random() < 0.15:
                return False
            for t, ts, headers in staged:
                w.target.append(t, ts, headers)
            for t in {t for t, *_ in staged}:
                w.target.marker(t)
            batch.acked(batch.pending)
        else:
            for t, ts, headers in staged:
                inflight.setdefault(t, deque()).append((batch, ts, headers, w.target))
            deliver(rng, inflight)
            if crash and rng.random() < 0.1:
                return False
        if len(w.clusters) > 1 and rng.random() < 0.2:
            deliver(rng, inflight, everything=True)
            w.current = rng.choice([c for c in w.clusters if c != w.current])
            tracker.rebase(
                w.current,
                {
                    s: Cursor(w.current, c.offset, c.timestamp_ms)
                    for s, c in tracker.cursors().items()
                },
                same_offsets=True,
            )
            assert {s: c.offset for s, c in tracker.cursors().items()} == pos
        if all(not w.source.read(s, pos[s], 1) for s in pos):
            deliver(rng, inflight, everything=True)
            return True
    return False


def relay_with_crashes(rng, w: World, *, transactional: bool) -> None:
    for _ in range(40):
        if run(rng, w, transactional=transactional, steps=rng.randint(1, 12)):
            return
        if rng.random() < 0.3:
            s = rng.choice(sorted(w.source.logs))
            recs = w.source.logs[s]
            if recs:
                new_start = rng.choice(recs).offset
                w.deleted |= {
                    (s, r.offset) for r in recs if r.offset < new_start and not r.filtered
                }
                w.source.start[s] = max(w.source.start[s], new_start)
    assert run(rng, w, transactional=transactional, steps=10_000, crash=False)


def check_target(w: World) -> None:
    copies: dict[tuple[SourceKey, int], int] = {}
    for t, log in w.target.logs.items():
        last: dict[SourceKey, int] = {}
        stamps = Stamps()
        for rec in log:
            stamp = stamps.of(rec.headers)
            assert stamp is not None
            key = (stamp.source, stamp.offset)
            copies[key] = copies.get(key, 0) + 1
            assert stamp.offset > last.get(stamp.source, -1), f"order broken in {t}"
            last[stamp.source] = stamp.offset
    dupes = {k: n for k, n in copies.items() if n > 1}
    assert not dupes, f"duplicated: {dupes}"
    wanted = {(s, r.offset) for s, recs in w.source.logs.items() for r in recs if not r.filtered}
    extra = set(copies) - wanted
    assert not extra, f"relayed filtered or unknown records: {extra}"
    missing = wanted - set(copies)
    assert missing <= w.deleted, f"lost: {missing - w.deleted}"


ROUTE_SETS = [
    [TopicRoute("a", "A")],
    [TopicRoute("a", "A", 0)],
    [TopicRoute("a", "A", "key-hash")],
    [TopicRoute("a", "A", "key-hash"), TopicRoute("b", "A")],
    [TopicRoute("a", "A"), TopicRoute("b", "B", 1)],
]


def make_world(rng, routes, clusters) -> World:
    topic_map = TopicMap(routes)
    src_counts = {r.source: rng.randint(1, 3) for r in routes}
    counts = {r.target: 3 for r in routes}
    return World(
        source=make_source(rng, src_counts),
        target=Target(),
        topic_map=topic_map,
        counts=counts,
        sbt=topic_map.sources_by_target(src_counts, counts),
        clusters=clusters,
    )


SEEDS = st.integers(min_value=0, max_value=2**32 - 1)


@settings(max_examples=400, deadline=None)
@given(seed=SEEDS, routes=st.sampled_from(ROUTE_SETS), transactional=st.booleans())
def test_crashes_neither_lose_nor_duplicate(seed, routes, transactional):
    rng = random.Random(seed)
    w = make_world(rng, routes, ["dc1"])
    relay_with_crashes(rng, w, transactional=transactional)
    check_target(w)


@settings(max_examples=200, deadline=None)
@given(seed=SEEDS, routes=st.sampled_from(ROUTE_SETS))
def test_failover_between_offset_identical_sources(seed, routes):
    """Switch sources mid-run (flush, rebase), crash, resume on whichever source is current."""
    rng = random.Random(seed)
    w = make_world(rng, routes, ["dc1", "dc2"])
    relay_with_crashes(rng, w, transactional=False)
    check_target(w)
