from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkaops.eventbus.cloudevents import CloudEvent, DependencyEvent
from kafkaops.eventbus.model import FiringKey, ObservedRecord, compare, expected_firings
from kafkaops.eventbus.offsets import (
    OFFSET_METADATA_MAX_BYTES,
    Batcher,
    CommitPosition,
    MetadataError,
    TriggerPartition,
    auto_offset_reset,
    commit_offset,
    decode_metadata,
    encode_metadata,
    must_skip,
    prune,
)
from kafkaops.eventbus.spec import load_definitions
from kafkaops.eventbus.triggerstate import SensorPlan

NOW = datetime(2024, 1, 1, tzinfo=UTC)

SENSOR = """\
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: s}
spec:
  dependencies:
    - {name: a, eventSourceName: src, eventName: a}
    - {name: b, eventSourceName: src, eventName: b}
    - {name: c, eventSourceName: src, eventName: c}
    - {name: d, eventSourceName: src, eventName: d}
  triggers:
    - template: {name: T1, conditions: "a && b", log: {}}
    - template: {name: T2, conditions: "c && d", log: {}}
    - template: {name: T3, conditions: "(a && c) || d", log: {}}
    - template: {name: simple, conditions: "a || b", log: {}}
"""
PLAN = SensorPlan(load_definitions(SENSOR, "s.yaml").definitions[0])


def item(dep, n):
    return DependencyEvent(dep, CloudEvent(f"{dep}{n}", "src", "t", subject=dep))


def fired_ids(firing):
    return None if firing is None else [h.event.id for h in firing.events]


# --------------------------------------------------------------------------- the worked example

# eventbus.md (d): T1 = a && b and T2 = c && d share trigger-topic partition 0; one message per
# batch; the group is new. (offset, trigger, event, firing, committed offset, metadata)
WORKED_EXAMPLE = [
    (10, "T2", ("c", 1), None, 10, ""),
    (11, "T1", ("a", 1), None, 10, ""),
    (12, "T1", ("b", 1), ["a1", "b1"], 10, '{"T1":13}'),
    (13, "T1", ("a", 2), None, 10, '{"T1":13}'),
]


def run_worked_example():
    partition = TriggerPartition(PLAN, committed=10, now=NOW)
    for offset, trigger, (dep, n), firing, committed, metadata in WORKED_EXAMPLE:
        assert fired_ids(partition.process(offset, trigger, item(dep, n), NOW)) == firing
        assert partition.position() == CommitPosition(committed, metadata)
        partition.committed()
    return partition


def test_worked_example_commits():
    run_worked_example()


def test_worked_example_replay_after_a_kill_rebuilds_state_without_refiring():
    before = run_worked_example()
    position = before.position()
    after = TriggerPartition(PLAN, committed=position.offset, metadata=position.metadata, now=NOW)
    for offset, trigger, (dep, n), *_ in WORKED_EXAMPLE:
        assert after.process(offset, trigger, item(dep, n), NOW) is None  # 12 must not re-fire
    assert after.replayed_skips == 2  # offsets 11 and 12, below T1's 13
    assert {t: fired_ids_of(h) for t, h in after.held.items()} == {
        t: fired_ids_of(h) for t, h in before.held.items()
    }
    assert {t: fired_ids_of(h) for t, h in after.held.items()} == {"T1": ["a2"], "T2": ["c1"]}


def fired_ids_of(held):
    return [h.event.id for h in held]


def test_worked_example_crash_inside_the_firing_transaction_fires_once_on_replay():
    partition = TriggerPartition(PLAN, committed=10, now=NOW)
    for offset, trigger, (dep, n), *_ in WORKED_EXAMPLE[:2]:
        partition.process(offset, trigger, item(dep, n), NOW)
        partition.committed()
    assert partition.position() == CommitPosition(10, "")
    # offset 12 fires, but the process dies before CommitTxn: nothing of it is visible.
    assert partition.process(12, "T1", item("b", 1), NOW) is not None
    restarted = TriggerPartition(PLAN, committed=10, metadata="", now=NOW)
    firings = [
        restarted.process(offset, trigger, item(dep, n), NOW)
        for offset, trigger, (dep, n), *_ in WORKED_EXAMPLE
    ]
    assert [fired_ids(f) for f in firings] == [None, None, ["a1", "b1"], None]


def test_metadata_is_pruned_once_the_commit_passes_it():
    partition = run_worked_example()
    assert fired_ids(partition.process(14, "T2", item("d", 1), NOW)) == ["c1", "d1"]
    # c1 no longer pins the commit; the oldest held event is a2 at 13, so T1's entry (13) can
    # never apply again and goes, while T2's (15) must stay: replay from 13 re-reads offset 14.
    assert partition.position() == CommitPosition(13, '{"T2":15}')
    assert partition.fired == {"T2": 15}


# --------------------------------------------------------------------------- codec and helpers


def test_metadata_codec():
    assert encode_metadata({}) == ""
    assert encode_metadata({"t2": 5, "t1": 13}) == '{"t1":13,"t2":5}'
    assert decode_metadata("") == {}
    assert decode_metadata(None) == {}
    assert decode_metadata('{"t1":13,"t2":5}') == {"t1": 13, "t2": 5}


@pytest.mark.parametrize("text", ["{", "[1]", '{"t": -1}', '{"t": "1"}', '{"t": true}', "3"])
def test_garbage_metadata_is_an_error_not_an_empty_map(text):
    with pytest.raises(MetadataError):
        decode_metadata(text)


def test_metadata_must_fit_the_broker_limit():
    assert OFFSET_METADATA_MAX_BYTES == 4096
    fired = {f"trigger-{i:03d}": 10_000_000 + i for i in range(200)}
    with pytest.raises(MetadataError, match=r"over the broker's offset\.metadata\.max\.bytes"):
        encode_metadata(fired)
    text = encode_metadata({"t": 1}, max_bytes=7)
    assert len(text) == 7
    with pytest.raises(MetadataError):
        encode_metadata({"é": 1}, max_bytes=7)  # 7 characters, 8 UTF-8 bytes


def test_must_skip_only_a_fired_triggers_earlier_records():
    fired = {"T1": 13}
    assert must_skip(fired, "T1", 12)
    assert not must_skip(fired, "T1", 13)
    assert not must_skip(fired, "T2", 0)


def test_prune_and_commit_offset():
    assert prune({"a": 5, "b": 6, "c": 7}, 6) == {"c": 7}
    assert commit_offset(10, []) == 10
    assert commit_offset(10, [12, 4, 9]) == 4


def test_auto_offset_reset():
    assert auto_offset_reset("event", start_oldest=False) == "latest"
    assert auto_offset_reset("event", start_oldest=True) == "earliest"
    assert auto_offset_reset("trigger", start_oldest=False) == "earliest"
    assert auto_offset_reset("action", start_oldest=False) == "earliest"


# --------------------------------------------------------------------------- TriggerPartition


def test_rollback_returns_to_the_last_commit():
    partition = TriggerPartition(PLAN, committed=0, now=NOW)
    partition.process(0, "T1", item("a", 1), NOW)
    partition.committed()
    assert partition.process(1, "T1", item("b", 1), NOW) is not None
    assert partition.fired == {"T1": 2}
    assert partition.rollback() == 1
    assert partition.fired == {}
    assert fired_ids_of(partition.held["T1"]) == ["a1"]
    # re-reading offset 1 fires again, the only time it reaches a committed transaction
    assert fired_ids(partition.process(1, "T1", item("b", 1), NOW)) == ["a1", "b1"]


def test_redelivered_unknown_and_undecodable_records():
    partition = TriggerPartition(PLAN, committed=5, now=NOW)
    assert partition.process(3, "T1", item("a", 1), NOW) is None  # below the position
    assert partition.held == {}
    partition.process(5, "gone", item("a", 1), NOW)  # a trigger no longer defined
    partition.process(6, "simple", item("a", 1), NOW)  # simple triggers never use this topic
    assert partition.unknown_triggers == 2
    partition.skip(7)
    assert partition.position() == CommitPosition(8, "")


def test_advance_applies_resets_and_releases_the_commit():
    reset = 'conditionsReset: [{byTime: {cron: "0 * * * *"}}]'
    sensor = SENSOR.replace(
        '{name: T1, conditions: "a && b", log: {}}',
        f'{{name: T1, conditions: "a && b", log: {{}}, {reset}}}',
    )
    plan = SensorPlan(load_definitions(sensor, "s.yaml").definitions[0])
    partition = TriggerPartition(plan, committed=0, now=NOW)
    partition.process(0, "T1", item("a", 1), NOW + timedelta(minutes=5))
    assert partition.position().offset == 0
    dropped = partition.advance(NOW + timedelta(minutes=61))
    assert [h.event.id for h in dropped] == ["a1"]
    assert partition.position().offset == 1


def test_metadata_over_the_limit_fails_the_commit_loudly():
    partition = TriggerPartition(PLAN, committed=0, now=NOW, max_metadata_bytes=12)
    partition.process(0, "T2", item("c", 1), NOW)  # held: pins the commit at 0
    partition.process(1, "T1", item("a", 1), NOW)
    partition.process(2, "T1", item("b", 1), NOW)
    assert partition.position() == CommitPosition(0, '{"T1":3}')
    partition.process(3, "T3", item("d", 1), NOW)
    with pytest.raises(MetadataError):
        partition.position()


# --------------------------------------------------------------------------- crash property

STATEFUL = {"T1": "ab", "T2": "cd", "T3": "acd"}
RECORDS = st.lists(
    st.sampled_from([(t, d) for t, deps in STATEFUL.items() for d in deps]), max_size=40
)
# What happens to each batch: commit, the transaction fails (abort + rollback), or the process
# is killed before the commit (a new one starts from the committed offset and metadata).
OUTCOMES = st.lists(
    st.tuples(st.integers(1, 5), st.sampled_from(["commit", "abort", "kill"])), max_size=60
)


@settings(max_examples=300, deadline=None)
@given(RECORDS, OUTCOMES)
def test_kills_and_failed_transactions_never_lose_or_repeat_a_firing(records, outcomes):
    log = [
        ObservedRecord(0, offset, trigger, dep, f"{dep}{offset}", NOW)
        for offset, (trigger, dep) in enumerate(records)
    ]
    committed = CommitPosition(0, "")
    actions: list[FiringKey] = []  # the action topic as read_committed consumers see it
    partition = TriggerPartition(PLAN, committed=0, now=NOW)
    position = 0
    plan = iter(outcomes)
    while position < len(log):
        size, outcome = next(plan, (5, "commit"))
        batch = log[position : position + size]
        firings = [
            f
            for r in batch
            if (f := partition.process(r.offset, r.trigger, item_of(r), NOW)) is not None
        ]
        if outcome == "commit":
            committed = partition.position()
            actions.extend(FiringKey.of(f.trigger, f.items) for f in firings)
            partition.committed()
            position = batch[-1].offset + 1
        elif outcome == "abort":
            position = partition.rollback()
        else:
            partition = TriggerPartition(
                PLAN, committed=committed.offset, metadata=committed.metadata, now=NOW
            )
            position = committed.offset
    expected = expected_firings(PLAN, {}, {0: log})
    verdict = compare(actions, expected, "exactly-once")
    assert verdict.ok, verdict.describe()


def item_of(record):
    return DependencyEvent(
        record.dependency, CloudEvent(record.event_id, "src", "t", subject=record.dependency)
    )


# --------------------------------------------------------------------------- batching


def test_batch_closes_at_its_size():
    batcher: Batcher[int] = Batcher(max_records=3)
    assert batcher.add(1, NOW) is None
    assert batcher.add(2, NOW) is None
    assert batcher.add(3, NOW) == [1, 2, 3]
    assert batcher.deadline is None


def test_batch_closes_a_while_after_its_first_record():
    batcher: Batcher[str] = Batcher(max_records=100, max_wait=timedelta(seconds=1))
    batcher.add("a", NOW)
    batcher.add("b", NOW + timedelta(milliseconds=900))
    assert batcher.deadline == NOW + timedelta(seconds=1)
    assert batcher.due(NOW + timedelta(milliseconds=999)) is None
    assert batcher.due(NOW + timedelta(seconds=1)) == ["a", "b"]
    assert batcher.due(NOW + timedelta(seconds=5)) is None


def test_flush_takes_everything_pending():
    batcher: Batcher[int] = Batcher()
    assert batcher.flush() == []
    batcher.add(1, NOW)
    assert batcher.flush() == [1]
    assert batcher.deadline is None
