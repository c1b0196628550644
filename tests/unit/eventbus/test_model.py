from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from kafkaops.eventbus.cloudevents import CloudEvent, DependencyEvent
from kafkaops.eventbus.model import (
    FiringKey,
    ObservedRecord,
    compare,
    expected_firings,
    expected_trigger_records,
    order_violations,
)
from kafkaops.eventbus.offsets import TriggerPartition
from kafkaops.eventbus.spec import load_definitions
from kafkaops.eventbus.triggerstate import SensorPlan

T0 = datetime(2024, 1, 1, 10, 0, tzinfo=UTC)

SENSOR = """\
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: s}
spec:
  dependencies:
    - {name: a, eventSourceName: src, eventName: a}
    - name: b
      eventSourceName: src
      eventName: b
      filters: {data: [{path: ok, type: bool, value: ["true"]}]}
    - {name: c, eventSourceName: src, eventName: c}
  triggers:
    - template:
        name: ab
        conditions: "a && b"
        log: {}
        conditionsReset: [{byTime: {cron: "0 * * * *"}}]
    - template: {name: c-only, conditions: "c", log: {}}
    - template: {name: any, conditions: "a || c", log: {}}
"""
PLAN = SensorPlan(load_definitions(SENSOR, "s.yaml").definitions[0])


def ev(event_id, subject, data=None):
    return CloudEvent(event_id, "src", "t", subject=subject, time=T0, data=data or {"ok": True})


def rec(offset, dep, event_id, minutes=5, *, trigger="ab", partition=0):
    """A trigger-topic record; by default a little after T0, away from the hourly reset."""
    return ObservedRecord(
        partition, offset, trigger, dep, event_id, T0 + timedelta(minutes=minutes)
    )


EVENTS = {
    0: [ev("a1", "a"), ev("b1", "b"), ev("c1", "c")],
    1: [ev("b2", "b", {"ok": False}), ev("a2", "a")],
}


def test_expected_trigger_records_follow_routing():
    assert expected_trigger_records(PLAN, EVENTS) == Counter(
        {("ab", "a", "a1"): 1, ("ab", "b", "b1"): 1, ("ab", "a", "a2"): 1}
    )  # b2 fails b's filter; c-only and any are simple and skip the trigger topic


def test_expected_firings_simple_from_events_stateful_from_the_trigger_log():
    trigger_log = {0: [rec(0, "a", "a1"), rec(1, "a", "a2"), rec(2, "b", "b1")]}
    assert expected_firings(PLAN, EVENTS, trigger_log) == Counter(
        {
            FiringKey("c-only", (("c", "c1"),)): 1,
            FiringKey("any", (("a", "a1"),)): 1,
            FiringKey("any", (("c", "c1"),)): 1,
            FiringKey("any", (("a", "a2"),)): 1,
            FiringKey("ab", (("a", "a2"), ("b", "b1"))): 1,  # latest a wins
        }
    )


def test_the_trigger_log_order_decides_stateful_firings():
    one = {0: [rec(0, "a", "a1"), rec(1, "b", "b1"), rec(2, "a", "a2")]}
    other = {0: [rec(0, "a", "a1"), rec(1, "a", "a2"), rec(2, "b", "b1")]}
    assert expected_firings(PLAN, {}, one) == Counter(
        {FiringKey("ab", (("a", "a1"), ("b", "b1"))): 1}
    )
    assert expected_firings(PLAN, {}, other) == Counter(
        {FiringKey("ab", (("a", "a2"), ("b", "b1"))): 1}
    )


def test_model_applies_resets_on_record_time_and_from_the_start():
    log = {0: [rec(0, "a", "a1", minutes=10), rec(1, "b", "b1", minutes=65)]}
    assert expected_firings(PLAN, {}, log) == Counter()  # the 11:00 reset dropped a1
    stale = {
        0: [rec(0, "a", "a1", minutes=65), rec(1, "b", "b1", minutes=50), rec(2, "b", "b2", 70)]
    }
    assert expected_firings(PLAN, {}, stale) == Counter(
        {FiringKey("ab", (("a", "a1"), ("b", "b2"))): 1}
    )
    late_start = {0: [rec(0, "a", "a1", minutes=10), rec(1, "b", "b1", minutes=20)]}
    assert expected_firings(PLAN, {}, late_start, start=T0 + timedelta(minutes=90)) == Counter()


def test_model_ignores_records_of_dependencies_the_trigger_does_not_name():
    log = {0: [rec(0, "c", "c1"), rec(1, "a", "a1"), rec(2, "b", "b1")]}
    assert sum(expected_firings(PLAN, {}, log).values()) == 1


def key(trigger, *pairs):
    return FiringKey(trigger, tuple(sorted(pairs)))


EXPECTED = Counter({key("t", ("a", "1")): 1, key("t", ("a", "2")): 1})


def test_compare_exactly_once():
    assert compare([key("t", ("a", "2")), key("t", ("a", "1"))], EXPECTED, "exactly-once").ok
    assert not compare([key("t", ("a", "1"))], EXPECTED, "exactly-once").ok
    twice = compare([key("t", ("a", "1"))] * 2 + [key("t", ("a", "2"))], EXPECTED, "exactly-once")
    assert not twice.ok
    assert twice.extra == Counter({key("t", ("a", "1")): 1})


def test_compare_at_least_once_allows_repeats_only():
    repeats = [key("t", ("a", "1"))] * 3 + [key("t", ("a", "2"))]
    assert compare(repeats, EXPECTED, "at-least-once").ok
    lost = compare([key("t", ("a", "1"))], EXPECTED, "at-least-once")
    assert not lost.ok
    assert lost.missing == Counter({key("t", ("a", "2")): 1})


def test_compare_at_most_once_allows_losses_only():
    assert compare([key("t", ("a", "1"))], EXPECTED, "at-most-once").ok
    assert compare([], EXPECTED, "at-most-once").ok
    assert not compare([key("t", ("a", "1"))] * 2, EXPECTED, "at-most-once").ok


def test_a_firing_the_model_does_not_know_fails_every_guarantee():
    mixed = [key("t", ("a", "1"), ("b", "9"))]
    for guarantee in ("exactly-once", "at-least-once", "at-most-once"):
        verdict = compare([*EXPECTED.elements(), *mixed], EXPECTED, guarantee)
        assert not verdict.ok
        assert "unknown 1" in verdict.describe()


def test_firing_key_from_items_is_order_independent():
    items = [DependencyEvent("b", ev("2", "b")), DependencyEvent("a", ev("1", "a"))]
    assert (
        FiringKey.of("t", items)
        == FiringKey.of("t", reversed(items))
        == key("t", ("a", "1"), ("b", "2"))
    )


def test_order_violations_catch_reordered_partitions_and_strangers():
    events = {0: [ev("a1", "a"), ev("a2", "a")], 1: [ev("b1", "b")]}
    good = {0: [rec(0, "a", "a1"), rec(1, "b", "b1"), rec(2, "a", "a2")]}
    assert order_violations(events, good) == []
    swapped = {0: [rec(0, "a", "a2"), rec(1, "a", "a1")]}
    assert order_violations(events, swapped) == [
        "trigger 'ab' saw 'a1' after 'a2', against event partition 0's order"
    ]
    across_dependencies = {0: [rec(0, "b", "b1"), rec(1, "a", "b0")]}
    events_one_partition = {0: [ev("b0", "a"), ev("b1", "b")]}
    assert order_violations(events_one_partition, across_dependencies) == [
        "trigger 'ab' saw 'b0' after 'b1', against event partition 0's order"
    ]
    stranger = {0: [rec(0, "a", "zz")]}
    assert order_violations(events, stranger) == [
        "trigger partition 0 offset 0: event 'zz' is not in the event log"
    ]


# --------------------------------------------------------------------------- model vs runtime


def run(log, *, argo_begin_txn_bug=False, fail_at=()):
    """Drive TriggerPartition one record per batch; `fail_at` offsets fail their transaction.

    With `argo_begin_txn_bug` the failure is handled as Argo does: the error is logged, the
    action is not produced, and processing continues with the state already cleared.
    """
    partition = TriggerPartition(PLAN, committed=0, now=T0)
    actions: list[FiringKey] = []
    position = 0
    failed: set[int] = set()
    while position < len(log):
        record = log[position]
        item = DependencyEvent(record.dependency, ev(record.event_id, record.dependency))
        firing = partition.process(record.offset, record.trigger, item, record.timestamp)
        if record.offset in fail_at and record.offset not in failed:
            failed.add(record.offset)
            if argo_begin_txn_bug:
                position += 1
            else:
                position = partition.rollback()
            continue
        partition.position()
        partition.committed()
        if firing is not None:
            actions.append(FiringKey.of(firing.trigger, firing.items))
        position += 1
    return actions


LOG = [rec(0, "a", "a1"), rec(1, "b", "b1"), rec(2, "a", "a2"), rec(3, "b", "b2")]


def test_the_model_catches_argos_lost_firing_on_a_failed_begin_txn():
    expected = expected_firings(PLAN, {}, {0: LOG})
    assert compare(run(LOG, fail_at={1}), expected, "exactly-once").ok
    lost = compare(run(LOG, fail_at={1}, argo_begin_txn_bug=True), expected, "at-least-once")
    assert not lost.ok
    assert lost.missing == Counter({key("ab", ("a", "a1"), ("b", "b1")): 1})


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("ab"), st.integers(0, 240)),  # dependency, minutes after T0
        max_size=30,
    )
)
def test_model_and_runtime_agree_on_any_trigger_log(entries):
    log = [
        rec(offset, dep, f"{dep}{offset}", minutes=minutes)
        for offset, (dep, minutes) in enumerate(entries)
    ]
    verdict = compare(run(log), expected_firings(PLAN, {}, {0: log}, start=T0), "exactly-once")
    assert verdict.ok, verdict.describe()
