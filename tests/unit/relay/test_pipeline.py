"""The relay loop's two paths (by partition runs, record by record) must be indistinguishable:
same records produced, the same position read back from every record (one stamps each record,
the other each run), same checkpoints, same delivery accounting, same positions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from kafkaops.config import Config
from kafkaops.config.loader import validate
from kafkaops.kafka import ClusterClients
from kafkaops.relay.pipeline import Relay, _Route
from kafkaops.relay.position import (
    CHECKPOINT_HEADER,
    RUN_HEADER,
    RUN_START_HEADER,
    SOURCE_HEADER,
    ResumeScan,
    Stamps,
    StopAtEnd,
    plan_start,
    read_block,
)

OURS = {SOURCE_HEADER, CHECKPOINT_HEADER, RUN_HEADER, RUN_START_HEADER}


@dataclass
class Msg:
    """The part of confluent_kafka.Message the loop reads."""

    _topic: str
    _partition: int
    _offset: int
    _ts: int
    _key: bytes | None = None
    _value: bytes | None = b"v"
    _headers: list[tuple[str, bytes]] | None = None
    _error: Any = None

    def error(self) -> Any:
        return self._error

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return None if self._headers is None else list(self._headers)


class Producer:
    def __init__(self) -> None:
        self.records: list[tuple[Any, ...]] = []
        self.reports: list[Any] = []

    def produce(self, *args: Any) -> None:
        """confluent_kafka's positional order: topic, value, key, partition, on_delivery,
        callback, timestamp, headers."""
        topic, value, key, partition, on_delivery, _callback, ts, headers = args
        self.records.append((topic, value, key, partition, ts, headers))
        if on_delivery is not None:
            self.reports.append(on_delivery)

    def headers(self) -> list[list[tuple[str, bytes]]]:
        return [record[5] for record in self.records]

    def by_partition(self) -> dict[int, list[tuple[Any, ...]]]:
        """Records per target partition, in produce order (the order that matters)."""
        out: dict[int, list[tuple[Any, ...]]] = {}
        for record in self.records:
            out.setdefault(record[3], []).append(record)
        return out

    def deliver_all(self) -> None:
        for report in self.reports:
            report(None, None)
        self.reports.clear()


def relay(delivery: str, checkpoint_every: int) -> tuple[Relay, Producer]:
    config = validate(
        Config,
        {
            "kafka": [{"id": "src", "brokers": ["h:1"]}, {"id": "dst", "brokers": ["h:2"]}],
            "relay": {"sources": ["src"], "target": "dst", "topics": ["s:t"],
                      "delivery": delivery, "checkpoint_interval": checkpoint_every},
        },
        "test",
    )  # fmt: skip
    r = Relay(config.relay[0], lambda cid: ClusterClients(config.cluster(cid)))
    sbt = r.topic_map.sources_by_target({"s": 2}, {"t": 2})
    scan = ResumeScan(r.cfg.name, ["src"], sbt)
    for target in scan.targets:
        scan.feed(target, [], reached_start=True)
    plan = plan_start(r.cfg.name, scan.result(), "src", {("s", 0): (0, 100), ("s", 1): (0, 100)})
    r.tracker = plan.tracker(sbt, checkpoint_every=checkpoint_every)
    r._routes = {"s": _Route("t", None)}
    r._only_topic = "s"
    r._by_runs = True
    r._txn_open = True  # exactly-once: as if begun
    producer = Producer()
    r.producer = producer  # type: ignore[assignment]
    return r, producer


def batches() -> list[list[Msg]]:
    """Runs of partitions 0 and 1, interleaved, with gaps, existing headers and an EOF event."""
    eof = Msg("s", 1, 9, 0, _error=object())
    return [
        [Msg("s", 0, o, 100 + o, b"k%d" % o) for o in range(4)]
        + [Msg("s", 1, o, 200 + o, _headers=[("app", b"x")]) for o in (3, 5, 6)]
        + [Msg("s", 0, o, 100 + o) for o in (7, 8)]
        + [eof],
        [Msg("s", 1, o, 200 + o) for o in (10, 11)] + [Msg("s", 0, 20, 120)],
    ]


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
@pytest.mark.parametrize("checkpoint_every", [1, 3, 1000])
def test_runs_and_record_by_record_give_the_same_result(delivery, checkpoint_every):
    outcomes = []
    written = []
    for by_runs in (True, False):
        r, producer = relay(delivery, checkpoint_every)
        r._by_runs = by_runs
        problems_seen = []
        r._consume_error = problems_seen.append  # type: ignore[method-assign]
        for msgs in batches():
            r._relay(msgs)  # type: ignore[arg-type]
            if delivery == "exactly-once":
                for pending in r._unsettled:
                    pending.batch.acked(pending.batch.pending)
            else:
                producer.deliver_all()
            r._settle()
        assert r.tracker.in_flight == 0
        per_partition = producer.by_partition()
        outcomes.append(
            (
                {tp: [rec[:5] for rec in recs] for tp, recs in per_partition.items()},
                {tp: read_back([rec[5] for rec in recs]) for tp, recs in per_partition.items()},
                r.tracker.cursors(),
                dict(r.stats.relayed),
                r.stats.acked,
                len(problems_seen),
            )
        )
        written.append(sum(1 for h in producer.headers() if any(n == SOURCE_HEADER for n, _ in h)))
    assert outcomes[0] == outcomes[1]
    records, positions, cursors, relayed, acked, problems = outcomes[0]
    assert acked == sum(map(len, records.values())) == 12
    assert [s.offset for s, _, _ in positions[0]] == [0, 1, 2, 3, 7, 8, 20]
    assert [s.offset for s, _, _ in positions[1]] == [3, 5, 6, 10, 11]
    assert sum(1 for p in positions.values() for _, _, own in p if own == [("app", b"x")]) == 3
    checkpoints = sum(1 for p in positions.values() for _, c, _ in p if c is not None)
    assert checkpoints == {1: 12, 3: 5, 1000: 2}[checkpoint_every]
    assert cursors[("s", 0)].offset == 21 and cursors[("s", 1)].offset == 12
    assert relayed == {("s", 0, "t", 0): 7, ("s", 1, "t", 1): 5}
    assert problems == 1
    # By runs: one stamp per run of consecutive offsets (0-3, 7-8, 20; 3, 5-6, 10-11) or where
    # a checkpoint is due; record by record: every record.
    assert written == [{1: 12, 3: 7, 1000: 6}[checkpoint_every], 12]


def read_back(headers: list[list[tuple[str, bytes]]]) -> list[tuple[Any, Any, Any]]:
    """Per record, as the resume sees it: its stamp, its checkpoint, and the source's headers."""
    stamps = Stamps()
    return [(stamps.of(h), read_block(h)[1], [x for x in h if x[0] not in OURS]) for h in headers]


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_stop_at_end_cuts_runs_where_record_by_record_stops(delivery):
    ends = {("s", 0): 8, ("s", 1): 11}
    outcomes = []
    for by_runs in (True, False):
        r, producer = relay(delivery, 3)
        r._by_runs = by_runs
        r._consume_error = lambda _msg: None  # type: ignore[method-assign]
        r._stopper = StopAtEnd(ends, dict.fromkeys(ends, 0))
        done = []
        for msgs in batches():
            r._relay(msgs)  # type: ignore[arg-type]
            done.append(r._stopper.done)
            for pending in r._unsettled:
                pending.batch.acked(pending.batch.pending)
            r._settle()
        per_partition = producer.by_partition()
        outcomes.append(
            (
                {tp: read_back([rec[5] for rec in recs]) for tp, recs in per_partition.items()},
                r.tracker.cursors(),
                done,
            )
        )
    assert outcomes[0] == outcomes[1]
    positions, cursors, done = outcomes[0]
    assert [s.offset for s, _, _ in positions[0]] == [0, 1, 2, 3, 7]
    assert [s.offset for s, _, _ in positions[1]] == [3, 5, 6, 10]
    assert cursors[("s", 0)].offset == 8 and cursors[("s", 1)].offset == 11
    assert done == [False, True]


def test_at_least_once_reports_once_per_run_and_settles_only_when_all_landed() -> None:
    r, producer = relay("at-least-once", 1000)
    r._consume_error = lambda _msg: None  # type: ignore[method-assign]
    r._relay(batches()[0])  # type: ignore[arg-type]
    assert len(producer.reports) == 3  # three runs (the EOF event ends the third)
    assert r.tracker.in_flight == 9
    producer.reports.pop(0)(None, None)  # the first run (4 records of partition 0) landed
    assert r.tracker.in_flight == 5
    assert r.tracker.cursors()[("s", 0)].offset == 0  # the batch is not settled yet
    producer.deliver_all()
    assert r.tracker.in_flight == 0
    assert r.tracker.cursors()[("s", 0)].offset == 9
