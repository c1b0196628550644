from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kafkaops.eventbus.cloudevents import (
    CloudEvent,
    CloudEventError,
    DependencyEvent,
    encode_action_record,
    encode_trigger_record,
)
from kafkaops.eventbus.conditions import compile_condition
from kafkaops.eventbus.spec import CronSchedule, load_definitions
from kafkaops.eventbus.triggerstate import (
    ActionRecord,
    HeldEvent,
    SensorPlan,
    TriggerRecord,
    TriggerState,
)

T0 = datetime(2024, 1, 1, 10, 0, tzinfo=UTC)


def held(dep, n, offset=None, at=None):
    ev = CloudEvent(f"{dep}{n}", "src", "t", subject=dep, time=T0)
    return HeldEvent(DependencyEvent(dep, ev), n if offset is None else offset, at or T0)


def state(text="a && b", deps=("a", "b", "c", "d"), resets=(), now=None):
    return TriggerState("t", compile_condition(text, list(deps)), resets, now=now)


def ids(firing):
    return [h.event.id for h in firing.events]


def test_latest_event_per_dependency_wins():
    # Argo's documented example: a1..a10 then b1 fires with a10 and b1.
    s = state()
    for n in range(1, 11):
        assert s.update(held("a", n)) is None
    firing = s.update(held("b", 1, offset=11))
    assert ids(firing) == ["a10", "b1"]
    assert firing.offset == 11
    assert s.held == ()


def test_and_fires_once_per_pair_then_clears():
    s = state()
    assert s.update(held("a", 1)) is None
    assert ids(s.update(held("b", 2))) == ["a1", "b2"]
    assert s.update(held("b", 3)) is None
    assert ids(s.update(held("a", 4))) == ["b3", "a4"]


def test_a_firing_takes_every_held_event_even_unneeded_ones():
    s = state("(a && b) || c")
    assert s.update(held("a", 1)) is None
    assert ids(s.update(held("c", 2))) == ["a1", "c2"]
    assert ids(s.update(held("c", 3))) == ["c3"]


def test_records_of_dependencies_outside_the_condition_change_nothing():
    s = state("a && b")
    assert s.update(held("c", 1)) is None
    assert s.held == ()


def test_oldest_offset_tracks_what_pins_the_commit():
    s = state("a && b && c")
    assert s.oldest_offset is None
    s.update(held("a", 5))
    s.update(held("b", 7))
    assert s.oldest_offset == 5
    s.update(held("a", 9))  # replaces a5
    assert s.oldest_offset == 7


HOURLY = (CronSchedule("0 * * * *"),)


def test_reset_drops_events_from_before_it():
    s = state(resets=HOURLY)
    s.update(held("a", 1, at=T0 + timedelta(minutes=10)))
    assert s.update(held("b", 2, at=T0 + timedelta(minutes=65))) is None  # 11:00 reset passed
    assert [h.event.id for h in s.held] == ["b2"]
    assert s.watermark == T0 + timedelta(hours=1)


def test_records_from_before_the_newest_reset_are_stale():
    s = state(resets=HOURLY)
    s.update(held("a", 1, at=T0 + timedelta(minutes=65)))
    assert s.update(held("b", 2, at=T0 + timedelta(minutes=50))) is None
    assert s.update(held("b", 3, at=T0 + timedelta(hours=1))) is None  # "not after" the reset
    assert s.stale == 2
    assert ids(s.update(held("b", 4, at=T0 + timedelta(minutes=70)))) == ["a1", "b4"]


def test_start_time_sets_the_watermark_so_a_restart_does_not_revive_old_events():
    s = state(resets=HOURLY, now=T0 + timedelta(minutes=90))
    assert s.watermark == T0 + timedelta(hours=1)
    assert s.update(held("a", 1, at=T0 + timedelta(minutes=30))) is None
    assert s.held == ()


def test_advance_applies_due_resets_and_reports_what_it_dropped():
    s = state(resets=HOURLY)
    s.update(held("a", 1, at=T0 + timedelta(minutes=10)))
    assert s.advance(T0 + timedelta(minutes=30)) == ()
    dropped = s.advance(T0 + timedelta(minutes=61))
    assert [h.event.id for h in dropped] == ["a1"]
    assert s.advance(T0 + timedelta(minutes=62)) == ()
    assert s.oldest_offset is None


def test_without_resets_advance_changes_nothing():
    s = state()
    s.update(held("a", 1))
    assert s.advance(T0 + timedelta(days=365)) == ()
    assert len(s.held) == 1


def test_copy_is_independent():
    s = state()
    s.update(held("a", 1))
    clone = s.copy()
    assert ids(s.update(held("b", 2))) == ["a1", "b2"]
    assert [h.event.id for h in clone.held] == ["a1"]


@given(st.lists(st.sampled_from("abc"), max_size=30))
def test_every_firing_satisfies_the_condition_with_the_latest_events(deps):
    cond = compile_condition("(a && b) || (b && c)", ["a", "b", "c"])
    s = TriggerState("t", cond)
    latest: dict[str, int] = {}
    for offset, dep in enumerate(deps):
        latest[dep] = offset
        firing = s.update(
            HeldEvent(DependencyEvent(dep, CloudEvent(str(offset), "s", "t")), offset, T0)
        )
        if firing is None:
            assert not cond.evaluate({h.dependency for h in s.held})
            continue
        got = {h.dependency: h.offset for h in firing.events}
        assert cond.evaluate(got.keys())
        assert got == latest  # exactly the latest event of each dependency since the last firing
        latest = {}


# --------------------------------------------------------------------------- routing

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
      transform: {jq: "{v: .value}"}
      filters: {data: [{path: v, type: number, value: ["1"]}]}
    - {name: unused, eventSourceName: src, eventName: u}
  triggers:
    - template: {name: both, conditions: "a && b", log: {}}
    - template: {name: either, conditions: "a || b", log: {}}
"""


def plan():
    return SensorPlan(load_definitions(SENSOR, "s.yaml").definitions[0])


def ev(subject, data=None):
    return CloudEvent(f"{subject}-id", "src", "t", subject=subject, data=data)


def test_plan_marks_triggers_stateful_or_simple():
    p = plan()
    assert [(t.name, t.stateful) for t in p.triggers.values()] == [
        ("both", True),
        ("either", False),
    ]
    assert [t.name for t in p.stateful_triggers] == ["both"]


def test_route_sends_stateful_triggers_to_the_trigger_topic_and_simple_ones_to_actions():
    routing = plan().route(ev("a", {"x": 1}))
    assert [type(r).__name__ for r in routing.records] == ["TriggerRecord", "ActionRecord"]
    trigger_record, action_record = routing.records
    assert isinstance(trigger_record, TriggerRecord) and trigger_record.trigger == "both"
    assert isinstance(action_record, ActionRecord) and action_record.trigger == "either"
    assert [i.dependency for i in action_record.items] == ["a"]
    assert routing.rejected == ()


def test_route_carries_the_transformed_event_and_reports_rejections():
    p = plan()
    passed = p.route(ev("b", {"value": 1}))
    assert [r.item.event.data for r in passed.records if isinstance(r, TriggerRecord)] == [{"v": 1}]
    rejected = p.route(ev("b", {"value": 2}))
    assert rejected.records == ()
    assert [m.dependency for m in rejected.rejected] == ["b"]


def test_route_ignores_dependencies_no_condition_names_and_unknown_events():
    p = plan()
    assert p.route(ev("u")).records == ()
    assert p.route(CloudEvent("x", "elsewhere", "t", subject="a")).records == ()


def _written(records):
    return [
        (type(r).__name__, r.trigger, encode_trigger_record(r.trigger, r.item)[1])
        if isinstance(r, TriggerRecord)
        else (type(r).__name__, r.trigger, encode_action_record(r.trigger, r.items)[1])
        for r in records
    ]


@pytest.mark.parametrize(
    "event",
    [
        ev("a", {"x": 1}),  # no transform, no filter: forwarded as its bytes
        ev("b", {"value": 1}),  # transformed and filtered
        ev("b", {"value": 2}),  # filtered out
        ev("u"),  # no trigger names the dependency
        CloudEvent("x", "elsewhere", "t", subject="a"),  # no dependency at all
    ],
)
def test_route_json_writes_what_route_writes(event):
    p = plan()
    assert _written(p.route_json(event.to_json())) == _written(p.route(event).records)


def test_route_json_refuses_what_is_not_an_event():
    with pytest.raises(CloudEventError, match="specversion"):
        plan().route_json(b'{"source": "src", "subject": "a"}')


def test_plan_state_uses_the_trigger_resets():
    reset = 'conditionsReset: [{byTime: {cron: "0 * * * *"}}]'
    sensor = SENSOR.replace(
        '{name: both, conditions: "a && b", log: {}}',
        f'{{name: both, conditions: "a && b", log: {{}}, {reset}}}',
    )
    p = SensorPlan(load_definitions(sensor, "s.yaml").definitions[0])
    s = p.triggers["both"].new_state(T0 + timedelta(minutes=5))
    assert s.watermark == T0
