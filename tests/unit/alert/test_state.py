"""Alert state machine: levels, determineLevel, flapping, stateChangesOnly, persistence.

Expected sequences in SCENARIOS were produced by a line-for-line Go port of Kapacitor's alert
node state code (alert.go: addEvent, percentChange, updateState, triggered, determineLevel) run
on the same inputs; they are pinned here as literals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kafkaops.alert.state import (
    MAX_DURATION_NS,
    AlertOptions,
    AlertState,
    AlertStateMachine,
    EventState,
    Level,
    LevelRules,
    TopicState,
    determine_level,
)

S = 1_000_000_000


def _gt(x: float) -> Any:
    return lambda v: v > x


def _lt(x: float) -> Any:
    return lambda v: v < x


DOCS_RULES = LevelRules(
    info=_gt(60),
    warn=_gt(70),
    crit=_gt(80),
    info_reset=_lt(50),
    warn_reset=_lt(60),
    crit_reset=_lt(70),
)


# ---------------------------------------------------------------------------------------------
# Levels


def test_level_order_and_names() -> None:
    assert [int(level) for level in Level] == [0, 1, 2, 3]
    assert [str(level) for level in Level] == ["OK", "INFO", "WARNING", "CRITICAL"]
    assert Level.CRITICAL.go_string() == "CRITICAL"
    assert Level.WARNING.go_json() == '"WARNING"'
    assert Level.INFO.go_type == "alert.Level"


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("OK", Level.OK),
        ("ok", Level.OK),
        ("", Level.OK),
        ("O", Level.OK),
        ("Info", Level.INFO),
        ("I", Level.INFO),
        ("INFOWARNING", Level.INFO),
        ("warn", Level.WARNING),
        ("W", Level.WARNING),
        ("warning", Level.WARNING),
        ("crit", Level.CRITICAL),
        ("C", Level.CRITICAL),
        ("CRITICAL", Level.CRITICAL),
    ],
)
def test_parse_level_follows_kapacitor_quirk(text: str, level: Level) -> None:
    assert Level.parse(text) is level


@pytest.mark.parametrize("text", ["K", "NING", "N", "critical!", "debug", "OKX"])
def test_parse_level_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=f"unknown alert level '{text}'"):
        Level.parse(text)


# ---------------------------------------------------------------------------------------------
# determineLevel


def test_documented_example_sequence() -> None:
    values = [61, 73, 64, 85, 62, 56, 47]
    current = Level.OK
    seen = []
    for v in values:
        current = determine_level(v, current, DOCS_RULES)
        seen.append(current)
    assert [str(level) for level in seen] == [
        "INFO",
        "WARNING",
        "WARNING",
        "CRITICAL",
        "INFO",
        "INFO",
        "OK",
    ]


def test_documented_example_through_the_state_machine() -> None:
    machine = AlertStateMachine(DOCS_RULES)
    decisions = [
        machine.process("nil", i * S, v) for i, v in enumerate([61, 73, 64, 85, 62, 56, 47])
    ]
    assert [d.level.name for d in decisions] == [
        "INFO",
        "WARNING",
        "WARNING",
        "CRITICAL",
        "INFO",
        "INFO",
        "OK",
    ]
    assert all(d.emit for d in decisions)
    assert decisions[-1].duration_ns == 6 * S  # the recovery carries the whole outage


@dataclass
class _Recorder:
    calls: list[str]

    def predicate(self, name: str, result: bool) -> Any:
        def call(_point: object) -> bool:
            self.calls.append(name)
            return result

        return call


def test_evaluation_order_from_ok() -> None:
    rec = _Recorder([])
    rules = LevelRules(
        info=rec.predicate("info", False),
        warn=rec.predicate("warn", False),
        crit=rec.predicate("crit", False),
    )
    assert determine_level(None, Level.OK, rules) is Level.OK
    assert rec.calls == ["crit", "warn", "info"]


def test_evaluation_order_with_passing_reset_re_evaluates_current_level() -> None:
    rec = _Recorder([])
    rules = LevelRules(
        info=rec.predicate("info", True),
        warn=rec.predicate("warn", False),
        crit=rec.predicate("crit", False),
        warn_reset=rec.predicate("warnReset", True),
    )
    assert determine_level(None, Level.WARNING, rules) is Level.INFO
    assert rec.calls == ["crit", "warn", "warnReset", "warn", "info"]


def test_failing_reset_keeps_current_level_without_evaluating_lower_levels() -> None:
    rec = _Recorder([])
    rules = LevelRules(
        info=rec.predicate("info", True),
        warn=rec.predicate("warn", False),
        crit=rec.predicate("crit", False),
        warn_reset=rec.predicate("warnReset", False),
    )
    assert determine_level(None, Level.WARNING, rules) is Level.WARNING
    assert rec.calls == ["crit", "warn", "warnReset"]


def test_higher_level_wins_even_when_reset_is_false() -> None:
    rules = LevelRules(warn=_gt(70), crit=_gt(80), warn_reset=_lt(0))
    assert determine_level(95, Level.WARNING, rules) is Level.CRITICAL


def test_reset_without_its_level_expression_is_ignored() -> None:
    rules = LevelRules(crit=_gt(80), warn_reset=_lt(0))
    assert rules.reset(Level.WARNING) is None
    assert determine_level(10, Level.WARNING, rules) is Level.OK


def _boom(_point: object) -> bool:
    raise KeyError("usage_idle")


def test_expression_errors_count_as_not_matched_and_are_reported() -> None:
    errors: list[tuple[Level, bool, str]] = []
    rules = LevelRules(info=_gt(0), crit=_boom)
    level = determine_level(5, Level.OK, rules, lambda lvl, r, e: errors.append((lvl, r, repr(e))))
    assert level is Level.INFO
    assert errors == [(Level.CRITICAL, False, "KeyError('usage_idle')")]


def test_reset_errors_fall_through_like_a_passing_reset() -> None:
    errors: list[tuple[Level, bool]] = []
    rules = LevelRules(info=_gt(60), crit=_gt(80), crit_reset=_boom)
    level = determine_level(65, Level.CRITICAL, rules, lambda lvl, r, _e: errors.append((lvl, r)))
    assert level is Level.INFO
    assert errors == [(Level.CRITICAL, True)]


_BOOLS = st.lists(st.booleans(), min_size=3, max_size=3)


@given(_BOOLS, st.sampled_from(list(Level)))
def test_without_resets_the_highest_true_level_wins(truths: list[bool], current: Level) -> None:
    rules = LevelRules(
        info=lambda _p: truths[0], warn=lambda _p: truths[1], crit=lambda _p: truths[2]
    )
    expected = max((Level(i + 1) for i, t in enumerate(truths) if t), default=Level.OK)
    assert determine_level(None, current, rules) is expected


@given(_BOOLS, st.sampled_from([Level.INFO, Level.WARNING, Level.CRITICAL]))
def test_unmet_reset_holds_the_level_unless_a_higher_one_fires(
    truths: list[bool], current: Level
) -> None:
    never = lambda _p: False  # noqa: E731
    rules = LevelRules(
        info=lambda _p: truths[0],
        warn=lambda _p: truths[1],
        crit=lambda _p: truths[2],
        info_reset=never,
        warn_reset=never,
        crit_reset=never,
    )
    higher = [Level(i + 1) for i, t in enumerate(truths) if t and i + 1 > current]
    expected = max(higher) if higher else current
    assert determine_level(None, current, rules) is expected


# ---------------------------------------------------------------------------------------------
# Stream scenarios against the Go reference


def _alternate(n: int, hi: float, lo: float, t0: int = 0) -> list[tuple[float, float]]:
    return [(t0 + i, hi if i % 2 == 0 else lo) for i in range(n)]


@dataclass(frozen=True)
class Scenario:
    rules: LevelRules
    options: AlertOptions
    points: list[tuple[float, float]]
    levels: str
    emits: str
    flapping: str
    durations_s: list[float]


CRIT80 = LevelRules(crit=_gt(80))
WARN50_CRIT80 = LevelRules(warn=_gt(50), crit=_gt(80))

SCENARIOS = {
    "flapping-history-5": Scenario(
        CRIT80,
        AlertOptions(history=5, flapping=(0.25, 0.5)),
        _alternate(12, 90, 10)
        + [(12 + i, 90) for i in range(8)]
        + [(20 + i, 10) for i in range(6)],
        "30303030303033333333000000",
        "EE..............EEEEE.....",
        "..FFFFFFFFFFFFFF..........",
        [0, 1, 16, 17, 18, 19, 20],
    ),
    # The recovery is lost: the group is still flapping when it turns OK, and once flapping
    # ends the level is an unchanged OK. That is Kapacitor's stream behaviour.
    "flapping-history-21": Scenario(
        WARN50_CRIT80,
        AlertOptions(flapping=(0.25, 0.5)),
        [(i, [90, 60, 10, 90, 10, 60][i % 6]) for i in range(40)]
        + [(40 + i, 10) for i in range(30)],
        "3203023203023203023203023203023203023203000000000000000000000000000000",
        "EEEEEEEEE.............................................................",
        ".........FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF..............",
        [0, 1, 2, 0, 1, 0, 1, 2, 3],
    ),
    "state-changes-only": Scenario(
        CRIT80,
        AlertOptions(state_changes_only=True),
        [(0, 90), (1, 91), (2, 92), (3, 10), (4, 11), (5, 95), (6, 96)],
        "3330033",
        "E..E.E.",
        ".......",
        [0, 3, 0],
    ),
    "state-changes-only-5s": Scenario(
        CRIT80,
        AlertOptions(state_changes_only=True, state_changes_only_max_ns=5 * S),
        [(i, 90) for i in range(13)] + [(13, 10), (14, 10), (25, 10)],
        "3333333333333000",
        "E....E....E..E..",
        "................",
        [0, 5, 10, 13],
    ),
    "no-recoveries": Scenario(
        WARN50_CRIT80,
        AlertOptions(no_recoveries=True),
        [(0, 90), (1, 90), (2, 10), (3, 10), (4, 60), (5, 10)],
        "330020",
        "EE..E.",
        "......",
        [0, 1, 0],
    ),
    "duration": Scenario(
        WARN50_CRIT80,
        AlertOptions(history=2),
        [(10, 60), (20, 90), (30.5, 90), (40, 10), (50, 10), (60, 90)],
        "233003",
        "EEEE.E",
        "......",
        [0, 10, 20.5, 30, 0],
    ),
    "history-below-minimum": Scenario(
        CRIT80,
        AlertOptions(history=0, flapping=(0.1, 0.2)),
        _alternate(8, 90, 10),
        "30303030",
        "........",
        "FFFFFFFF",
        [],
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenarios_match_kapacitor(name: str) -> None:
    sc = SCENARIOS[name]
    machine = AlertStateMachine(sc.rules, sc.options)
    levels, emits, flapping, durations = "", "", "", []
    for t, value in sc.points:
        decision = machine.process("g", round(t * S), value)
        levels += str(int(decision.level))
        emits += "E" if decision.emit else "."
        flapping += "F" if machine.states["g"].flapping else "."
        if decision.emit:
            durations.append(decision.duration_ns / S)
    assert (levels, emits, flapping) == (sc.levels, sc.emits, sc.flapping)
    assert durations == sc.durations_s


def test_percent_change_is_bit_identical_to_go() -> None:
    machine = AlertStateMachine(CRIT80, AlertOptions(history=5, flapping=(0.25, 0.5)))
    got = []
    for t, value in _alternate(4, 90, 10):
        machine.process("g", t * S, value)
        got.append(machine.states["g"].percent_change())
    assert got == [0.42500000000000004, 0.2, 0.7000000000000001, 0.7250000000000001]


def test_percent_change_default_history_first_change() -> None:
    machine = AlertStateMachine(CRIT80)
    machine.process("g", 0, 90)
    assert machine.states["g"].percent_change() == 0.081


def test_suppression_reasons() -> None:
    machine = AlertStateMachine(CRIT80, AlertOptions(state_changes_only=True, no_recoveries=True))
    reasons = [machine.process("g", i * S, v).suppressed_by for i, v in enumerate([90, 90, 10, 5])]
    assert reasons == [None, "state-changes-only", "no-recoveries", "state-changes-only"]
    flappy = AlertStateMachine(CRIT80, AlertOptions(history=2, flapping=(0.1, 0.2)))
    assert flappy.process("g", 0, 90).suppressed_by == "flapping"
    plain = AlertStateMachine(CRIT80)
    assert plain.process("g", 0, 10).suppressed_by == "ok"


def test_recoverable_follows_no_recoveries() -> None:
    assert AlertStateMachine(CRIT80).process("g", 0, 90).recoverable is True
    machine = AlertStateMachine(CRIT80, AlertOptions(no_recoveries=True))
    assert machine.process("g", 0, 90).recoverable is False


def test_groups_are_independent() -> None:
    machine = AlertStateMachine(CRIT80, AlertOptions(state_changes_only=True))
    assert machine.process("host=a", 0, 90).emit
    assert machine.process("host=b", 0, 90).emit
    assert not machine.process("host=a", S, 95).emit
    assert machine.process("host=b", S, 10).emit


# ---------------------------------------------------------------------------------------------
# Restore and persistence


def test_restore_group_from_topic_state_continues_the_alert() -> None:
    machine = AlertStateMachine(CRIT80, AlertOptions(state_changes_only=True))
    assert not machine.has_group("g")
    machine.restore_group("g", Level.CRITICAL, 100 * S)
    assert machine.has_group("g")
    still_critical = machine.process("g", 130 * S, 90)
    assert not still_critical.emit  # no duplicate alert after a restart
    recovery = machine.process("g", 160 * S, 10)
    assert recovery.emit and recovery.level is Level.OK
    assert recovery.duration_ns == 60 * S


def test_restore_group_ignores_ok() -> None:
    machine = AlertStateMachine(CRIT80)
    machine.restore_group("g", Level.OK, 0)
    assert not machine.has_group("g")


def test_state_round_trips_through_json_and_resumes_identically() -> None:
    options = AlertOptions(history=5, flapping=(0.25, 0.5), state_changes_only=True)
    values = [90, 10, 90, 10, 90, 90, 90, 90, 90, 10, 10, 10]
    reference = AlertStateMachine(CRIT80, options)
    expected = [reference.process("g", i * S, v) for i, v in enumerate(values)]

    first = AlertStateMachine(CRIT80, options)
    got = [first.process("g", i * S, v) for i, v in enumerate(values[:6])]
    saved = json.loads(json.dumps(first.to_dict()))
    second = AlertStateMachine.from_dict(CRIT80, options, saved)
    got += [second.process("g", i * S, v) for i, v in enumerate(values[6:], start=6)]
    assert got == expected


@given(
    st.lists(st.sampled_from([10, 60, 90]), min_size=1, max_size=40),
    st.integers(min_value=0, max_value=40),
    st.integers(min_value=2, max_value=8),
    st.booleans(),
)
def test_saving_at_any_point_changes_nothing(
    values: list[int], cut: int, history: int, sco: bool
) -> None:
    options = AlertOptions(
        history=history,
        flapping=(0.3, 0.6),
        state_changes_only=sco,
        state_changes_only_max_ns=3 * S if sco else 0,
    )
    reference = AlertStateMachine(WARN50_CRIT80, options)
    expected = [reference.process("g", i * S, v) for i, v in enumerate(values)]
    machine = AlertStateMachine(WARN50_CRIT80, options)
    got = []
    for i, v in enumerate(values):
        if i == cut:
            saved = json.loads(json.dumps(machine.to_dict()))
            machine = AlertStateMachine.from_dict(WARN50_CRIT80, options, saved)
        got.append(machine.process("g", i * S, v))
    assert got == expected


def test_alert_state_dict_shape() -> None:
    state = AlertState.new(3)
    state.add_event(5 * S, Level.WARNING, AlertOptions(history=3))
    state.triggered(5 * S)
    assert state.to_dict() == {
        "history": ["OK", "WARNING", "OK"],
        "idx": 1,
        "flapping": False,
        "changed": True,
        "expired": False,
        "first_triggered": 5 * S,
        "last_triggered": 5 * S,
    }


def test_restoring_with_a_shorter_history_keeps_the_newest_levels() -> None:
    state = AlertState.new(4)
    opts = AlertOptions(history=4)
    for i, level in enumerate([Level.INFO, Level.WARNING, Level.CRITICAL, Level.OK, Level.INFO]):
        state.add_event(i, level, opts)
    restored = AlertState.from_dict(state.to_dict(), history_length=3)
    assert restored.history[restored.idx] is Level.INFO
    ordered = [restored.history[(restored.idx + 1 + i) % 3] for i in range(3)]
    assert ordered == [Level.CRITICAL, Level.OK, Level.INFO]


def test_restoring_with_a_longer_history_pads_with_ok() -> None:
    state = AlertState.new(2)
    state.add_event(0, Level.CRITICAL, AlertOptions(history=2))
    restored = AlertState.from_dict(state.to_dict(), history_length=4)
    assert len(restored.history) == 4
    assert restored.current_level is Level.CRITICAL
    assert restored.history.count(Level.OK) == 3


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {
            "history": ["OK", "LOUD"],
            "idx": 0,
            "flapping": False,
            "changed": False,
            "expired": False,
            "first_triggered": None,
            "last_triggered": None,
        },
        {
            "history": ["OK", "OK"],
            "idx": 2,
            "flapping": False,
            "changed": False,
            "expired": False,
            "first_triggered": None,
            "last_triggered": None,
        },
        {
            "history": ["OK", "OK"],
            "idx": 0,
            "flapping": False,
            "changed": False,
            "expired": False,
            "first_triggered": "yesterday",
            "last_triggered": None,
        },
    ],
)
def test_invalid_saved_state_is_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="invalid saved alert state"):
        AlertState.from_dict(bad)


def test_never_triggered_state_counts_as_expired_like_gos_zero_time() -> None:
    state = AlertState.new(2)
    opts = AlertOptions(state_changes_only=True, state_changes_only_max_ns=S)
    state.add_event(0, Level.OK, opts)
    assert state.expired is True
    assert state.duration() == 0


def test_duration_saturates_when_first_trigger_is_unset() -> None:
    state = AlertState(history=[Level.CRITICAL, Level.CRITICAL], idx=1)
    state.triggered(1_700_000_000 * S)
    assert state.first_triggered is None
    assert state.duration() == MAX_DURATION_NS


# ---------------------------------------------------------------------------------------------
# Options


@pytest.mark.parametrize("flap", [(0.2, 1.5), (1.1, 0.5), (-0.1, 0.5)])
def test_flap_thresholds_must_be_fractions(flap: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        AlertOptions(flapping=flap)


def test_negative_interval_is_rejected() -> None:
    with pytest.raises(ValueError, match="must not be negative, got -1ns"):
        AlertOptions(state_changes_only=True, state_changes_only_max_ns=-1)


def test_interval_requires_state_changes_only() -> None:
    with pytest.raises(ValueError, match="without stateChangesOnly"):
        AlertOptions(state_changes_only_max_ns=S)


@pytest.mark.parametrize(("given_history", "effective"), [(0, 2), (1, 2), (2, 2), (21, 21)])
def test_history_minimum(given_history: int, effective: int) -> None:
    assert AlertOptions(history=given_history).history_length == effective


# ---------------------------------------------------------------------------------------------
# Topics


def _event(event_id: str, level: Level, t: int = 0) -> EventState:
    return EventState(event_id, f"{event_id} is {level}", "", t, 0, level)


def test_topic_collect_returns_previous_level() -> None:
    topic = TopicState("cpu")
    assert topic.collect(_event("a", Level.WARNING)) is Level.OK
    assert topic.collect(_event("a", Level.CRITICAL)) is Level.WARNING
    assert topic.collect(_event("b", Level.INFO)) is Level.OK
    assert topic.collected == 3
    assert topic.level is Level.CRITICAL


def test_topic_events_are_sorted_by_level_then_id() -> None:
    topic = TopicState("cpu")
    for event_id, level in [("c", Level.INFO), ("b", Level.CRITICAL), ("a", Level.INFO)]:
        topic.collect(_event(event_id, level))
    assert [e.id for e in topic.events()] == ["b", "a", "c"]
    assert [e.id for e in topic.events(Level.WARNING)] == ["b"]


def test_topic_delete_and_empty_level() -> None:
    topic = TopicState("cpu")
    topic.collect(_event("a", Level.CRITICAL))
    topic.delete("a")
    topic.delete("missing")
    assert topic.get("a") is None
    assert topic.level is Level.OK


def test_topic_state_round_trips() -> None:
    topic = TopicState("main:cpu_alert:alert2")
    topic.collect(_event("a", Level.CRITICAL, 5))
    topic.collect(_event("b", Level.OK, 6))
    restored = TopicState.from_dict(json.loads(json.dumps(topic.to_dict())))
    assert restored == topic
    assert restored.collect(_event("a", Level.OK)) is Level.CRITICAL


@pytest.mark.parametrize(
    "bad",
    [
        {"topic": "t", "collected": 0},
        {"topic": "t", "collected": 1, "events": [{"id": "a", "level": "LOUD"}]},
    ],
)
def test_invalid_topic_state_is_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="invalid saved"):
        TopicState.from_dict(bad)
