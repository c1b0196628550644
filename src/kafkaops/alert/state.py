"""Kapacitor's alert state machine, step for step, so alerts fire exactly when Kapacitor's would.

One AlertStateMachine serves one alert node: it turns each point of a group into a level
(`determine_level`, with the `*Reset` expressions), keeps that group's level history (flapping,
`stateChangesOnly`, alert duration) and says whether an event is sent. Level expressions come in
as plain predicates over the point, so this module does not depend on the expression language.
TopicState keeps the last event per alert ID for a topic, which is where `previousLevel` comes
from. Everything here is plain data that round-trips through JSON for the daemon's SQLite store;
time is always passed in as integer Unix nanoseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from fractions import Fraction
from typing import Any, Final

# Go's zero time.Time (0001-01-01 UTC) in Unix nanoseconds, and time.Duration's bounds: Kapacitor
# computes alert durations from never-set trigger times, and Go saturates those subtractions.
GO_ZERO_TIME_NS: Final = -62135596800 * 1_000_000_000
MIN_DURATION_NS: Final = -(1 << 63)
MAX_DURATION_NS: Final = (1 << 63) - 1


class Level(IntEnum):
    """Alert levels, ordered; they print as Kapacitor's upper-case names."""

    OK = 0
    INFO = 1
    WARNING = 2
    CRITICAL = 3

    @property
    def go_type(self) -> str:
        """Type name in Go's fmt error markers, e.g. `%!s(alert.Level=...)`."""
        return "alert.Level"

    def __str__(self) -> str:
        return self.name

    def go_string(self) -> str:
        """fmt.Stringer: templates print the name, as Go does for alert.Level."""
        return self.name

    def go_json(self) -> str:
        """alert.Level implements MarshalText, so JSON carries the quoted name."""
        return f'"{self.name}"'

    @classmethod
    def parse(cls, text: str) -> Level:
        """Kapacitor's ParseLevel, quirks included.

        The upper-cased input is searched in "OKINFOWARNINGCRITICAL" and accepted if its first
        occurrence starts where a level name starts, so "warn" is WARNING, "crit" CRITICAL and
        "" is OK, while "K" or "NING" are errors. The HTTP API's `min-level` relies on this.
        """
        idx = _LEVEL_STRINGS.find(text.upper())
        for level, offset in zip(cls, _LEVEL_OFFSETS, strict=True):
            if idx == offset:
                return level
        raise ValueError(f"unknown alert level '{text}'")


_LEVEL_STRINGS = "OKINFOWARNINGCRITICAL"
_LEVEL_OFFSETS = (0, 2, 6, 13)

Predicate = Callable[[Any], bool]
"""A compiled level or reset expression applied to a point; raising counts as an evaluation
error (Kapacitor logs it and treats the expression as not matched)."""

ErrorHook = Callable[[Level, bool, Exception], None]
"""Called with (level, is_reset, error) when an expression fails, so the caller can log it."""


@dataclass(frozen=True)
class LevelRules:
    """The `.info/.warn/.crit` expressions and their `.infoReset/.warnReset/.critReset`."""

    info: Predicate | None = None
    warn: Predicate | None = None
    crit: Predicate | None = None
    info_reset: Predicate | None = None
    warn_reset: Predicate | None = None
    crit_reset: Predicate | None = None

    def __post_init__(self) -> None:
        # Looked up for every point, so indexed by level instead of built per call. A reset
        # only counts when its level has an expression, as in Kapacitor, which compiles
        # `infoReset` only inside `if n.Info != nil`.
        levels = (None, self.info, self.warn, self.crit)
        resets = (None, self.info_reset, self.warn_reset, self.crit_reset)
        object.__setattr__(self, "_levels", levels)
        object.__setattr__(
            self,
            "_resets",
            tuple(r if e is not None else None for e, r in zip(levels, resets, strict=True)),
        )

    def expression(self, level: Level) -> Predicate | None:
        return self._levels[level]  # type: ignore[attr-defined,no-any-return]

    def reset(self, level: Level) -> Predicate | None:
        return self._resets[level]  # type: ignore[attr-defined,no-any-return]


def _evaluate(
    predicate: Predicate, point: Any, level: Level, is_reset: bool, on_error: ErrorHook | None
) -> bool | None:
    try:
        return bool(predicate(point))
    except Exception as exc:
        if on_error is not None:
            on_error(level, is_reset, exc)
        return None


_LEVELS = tuple(Level)


def _first_match(
    rules: LevelRules,
    point: Any,
    start: Level,
    stop: int,
    on_error: ErrorHook | None,
) -> Level | None:
    """Kapacitor's findFirstMatchLevel: levels from `start` down to (not including) `stop`."""
    for value in range(start, max(stop, 0), -1):
        predicate = rules.expression(value)  # type: ignore[arg-type]
        if predicate is not None:
            level = _LEVELS[value]
            if _evaluate(predicate, point, level, False, on_error):
                return level
    return None


def determine_level(
    point: Any, current: Level, rules: LevelRules, on_error: ErrorHook | None = None
) -> Level:
    """Kapacitor's determineLevel, evaluating expressions in exactly the same order.

    1. Levels from CRITICAL down to the current one (down to INFO when OK): first true wins.
    2. If the current level has a reset expression and it is false, stay at the current level
       (a failing reset expression counts as true).
    3. Levels from the current one down to INFO: first true wins; otherwise OK.

    The order matters beyond the result: stateful expressions (sigma, count) see every call,
    and step 3 evaluates the current level's expression a second time, as Kapacitor does.
    """
    higher = _first_match(rules, point, Level.CRITICAL, current - 1, on_error)
    if higher is not None:
        return higher
    reset = rules.reset(current)
    if reset is not None and _evaluate(reset, point, current, True, on_error) is False:
        return current
    lower = _first_match(rules, point, current, Level.OK, on_error)
    return lower if lower is not None else Level.OK


# The newest state change weighs 1.5 times the oldest; 1.2 is the newest change's weight.
_MAX_WEIGHT = 1.2
# Go folds the constant maxWeight/weightDiff = 1.2/1.5 exactly, giving the float64 nearest 0.8;
# Python's float division would give 0.7999999999999999 and shift the flapping percentage.
_FIRST_WEIGHT = float(Fraction(6, 5) / Fraction(3, 2))
DEFAULT_HISTORY = 21
MIN_HISTORY = 2


@dataclass(frozen=True)
class AlertOptions:
    """Per-node options from the TICKscript `|alert()` chain.

    `flapping` is `.flapping(low, high)`; `state_changes_only_max_ns` is the optional
    interval of `.stateChangesOnly(d)` (0 means none); `history` is `.history(n)`.
    """

    history: int = DEFAULT_HISTORY
    flapping: tuple[float, float] | None = None
    state_changes_only: bool = False
    state_changes_only_max_ns: int = 0
    no_recoveries: bool = False

    def __post_init__(self) -> None:
        if self.flapping is not None:
            low, high = self.flapping
            if not (0 <= low <= 1 and 0 <= high <= 1):
                raise ValueError(
                    "alert flap thresholds are percentages and should be between 0 and 1, "
                    f"got low={low} high={high}"
                )
        interval = self.state_changes_only_max_ns
        if interval < 0:
            raise ValueError(f"stateChangesOnly interval must not be negative, got {interval}ns")
        if self.state_changes_only_max_ns and not self.state_changes_only:
            raise ValueError("stateChangesOnly interval given without stateChangesOnly")

    @property
    def history_length(self) -> int:
        """Kapacitor raises a history below 2 to 2 rather than rejecting it."""
        return max(self.history, MIN_HISTORY)

    @property
    def recoverable(self) -> bool:
        return not self.no_recoveries


def _go_sub(t: int | None, u: int | None) -> int:
    """time.Time.Sub with Go's saturation; None is the zero time.Time (year 1), so a span
    from a never-set trigger time saturates instead of being small."""
    diff = (GO_ZERO_TIME_NS if t is None else t) - (GO_ZERO_TIME_NS if u is None else u)
    return max(MIN_DURATION_NS, min(MAX_DURATION_NS, diff))


@dataclass
class AlertState:
    """One group's state: a ring buffer of recent levels plus trigger times (Kapacitor's
    alertState). `first_triggered`/`last_triggered` of None stand for Go's zero time."""

    history: list[Level]
    idx: int = 0
    flapping: bool = False
    changed: bool = False
    expired: bool = False
    first_triggered: int | None = None
    last_triggered: int | None = None

    @classmethod
    def new(cls, history_length: int) -> AlertState:
        return cls(history=[Level.OK] * max(history_length, MIN_HISTORY))

    @property
    def current_level(self) -> Level:
        return self.history[self.idx]

    @property
    def previous_level(self) -> Level:
        """The level before the current one in this group's history."""
        return self.history[self.idx - 1]

    def percent_change(self) -> float:
        """Weighted share of level changes in the history, Nagios-style, exactly as Kapacitor
        computes it (same float operations in the same order, so thresholds compare alike).

        The loop starts at the newest entry, so the first pair is (newest, previous) and the
        second is (oldest, newest) across the ring seam; the pair before the newest is never
        compared. That is Kapacitor's behaviour and is kept.
        """
        length = len(self.history)
        changes = 0.0
        weight = _FIRST_WEIGHT
        step = (_MAX_WEIGHT - weight) / (length - 1)
        for i in range(length - 1):
            current = (i + self.idx) % length
            previous = current - 1 if current > 0 else length - 1
            if self.history[current] != self.history[previous]:
                changes += weight
            weight += step
        return changes / (length - 1)

    def add_event(self, t: int, level: Level, options: AlertOptions) -> None:
        """Record a level: update `changed`, the ring, flapping and `expired` (addEvent)."""
        self.changed = self.history[self.idx] != level
        self.idx = (self.idx + 1) % len(self.history)
        self.history[self.idx] = level
        if options.flapping is not None:
            low, high = options.flapping
            pct = self.percent_change()
            if self.flapping and pct < low:
                self.flapping = False
            elif not self.flapping and pct > high:
                self.flapping = True
        interval = options.state_changes_only_max_ns
        self.expired = (
            not self.changed and interval != 0 and _go_sub(t, self.last_triggered) >= interval
        )

    def triggered(self, t: int) -> None:
        """An event was produced at `t`; a first trigger after OK starts the alert duration."""
        self.last_triggered = t
        if self.previous_level is Level.OK:
            self.first_triggered = t

    def duration(self) -> int:
        """Nanoseconds from the first trigger after OK to the latest trigger, so a recovery
        event carries the whole outage length."""
        return _go_sub(self.last_triggered, self.first_triggered)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the daemon's store."""
        return {
            "history": [level.name for level in self.history],
            "idx": self.idx,
            "flapping": self.flapping,
            "changed": self.changed,
            "expired": self.expired,
            "first_triggered": self.first_triggered,
            "last_triggered": self.last_triggered,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], history_length: int | None = None) -> AlertState:
        """Restore a saved state. If the task's `.history(n)` changed since it was saved, the
        most recent levels are kept in order so flapping continues from real data."""
        try:
            history = [Level[name] for name in data["history"]]
            idx = int(data["idx"])
            if not 0 <= idx < len(history) or len(history) < MIN_HISTORY:
                raise ValueError(f"history index {idx} out of range for {len(history)} entries")
            state = cls(
                history=history,
                idx=idx,
                flapping=bool(data["flapping"]),
                changed=bool(data["changed"]),
                expired=bool(data["expired"]),
                first_triggered=_optional_int(data["first_triggered"]),
                last_triggered=_optional_int(data["last_triggered"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid saved alert state: {exc}") from exc
        if history_length is not None and max(history_length, MIN_HISTORY) != len(history):
            state._resize(max(history_length, MIN_HISTORY))
        return state

    def _resize(self, length: int) -> None:
        size = len(self.history)
        chronological = [self.history[(self.idx + 1 + i) % size] for i in range(size)]
        kept = chronological[-length:]
        self.history = [Level.OK] * (length - len(kept)) + kept
        self.idx = length - 1


def _optional_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected integer nanoseconds or null, got {value!r}")
    return value


@dataclass(frozen=True)
class Decision:
    """What the node does with one point.

    `emit` means: build an event, hand it to the handlers and pass the point downstream.
    `suppressed_by` names the rule that stopped it ("flapping", "state-changes-only",
    "no-recoveries", or "ok" for an unchanged OK), for logs and metrics.
    """

    level: Level
    emit: bool
    changed: bool
    duration_ns: int
    recoverable: bool
    suppressed_by: str | None = None


class AlertStateMachine:
    """The alert node's per-group states, fed one point at a time (stream mode)."""

    def __init__(
        self,
        rules: LevelRules,
        options: AlertOptions | None = None,
        states: Mapping[str, AlertState] | None = None,
    ) -> None:
        self.rules = rules
        self.options = options or AlertOptions()
        self.states: dict[str, AlertState] = dict(states or {})

    def has_group(self, group: str) -> bool:
        return group in self.states

    def restore_group(self, group: str, level: Level, t: int) -> None:
        """Seed a group seen for the first time from the level and time of the last event with
        its alert ID in the topic store (Kapacitor's restoreEventState). Does nothing for OK."""
        if level is Level.OK:
            return
        state = AlertState.new(self.options.history_length)
        state.add_event(t, level, self.options)
        state.triggered(t)
        self.states[group] = state

    def process(
        self, group: str, t: int, point: Any, on_error: ErrorHook | None = None
    ) -> Decision:
        """Evaluate one point of `group` at time `t` (Unix ns) and advance that group's state."""
        state = self.states.get(group)
        if state is None:
            state = AlertState.new(self.options.history_length)
            self.states[group] = state
        level = determine_level(point, state.current_level, self.rules, on_error)
        state.add_event(t, level, self.options)
        opts = self.options

        def decision(emit: bool, suppressed_by: str | None = None) -> Decision:
            return Decision(
                level=level,
                emit=emit,
                changed=state.changed,
                duration_ns=state.duration(),
                recoverable=opts.recoverable,
                suppressed_by=suppressed_by,
            )

        if opts.flapping is not None and state.flapping:
            return decision(False, "flapping")
        if opts.state_changes_only and not state.changed and not state.expired:
            return decision(False, "state-changes-only")
        if level is Level.OK and not state.changed:
            return decision(False, "ok")
        state.triggered(t)
        if opts.no_recoveries and level is Level.OK:
            return decision(False, "no-recoveries")
        return decision(True)

    def to_dict(self) -> dict[str, Any]:
        return {"groups": {group: s.to_dict() for group, s in self.states.items()}}

    @classmethod
    def from_dict(
        cls, rules: LevelRules, options: AlertOptions, data: Mapping[str, Any]
    ) -> AlertStateMachine:
        groups = data.get("groups", {})
        states = {
            group: AlertState.from_dict(saved, options.history_length)
            for group, saved in groups.items()
        }
        return cls(rules, options, states)


@dataclass(frozen=True)
class EventState:
    """The last event stored for one alert ID in a topic (Kapacitor's alert.EventState)."""

    id: str
    message: str
    details: str
    time_ns: int
    duration_ns: int
    level: Level

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "message": self.message,
            "details": self.details,
            "time": self.time_ns,
            "duration": self.duration_ns,
            "level": self.level.name,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EventState:
        try:
            return cls(
                id=str(data["id"]),
                message=str(data["message"]),
                details=str(data["details"]),
                time_ns=int(data["time"]),
                duration_ns=int(data["duration"]),
                level=Level[data["level"]],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid saved event state: {exc}") from exc


@dataclass
class TopicState:
    """Events collected into one topic, by alert ID; the topic's level is the highest."""

    topic: str
    collected: int = 0
    _events: dict[str, EventState] = field(default_factory=dict)

    def collect(self, event: EventState) -> Level:
        """Store `event` as the latest for its ID and return the ID's previous level (OK when
        the topic has none), which handlers receive as `previousLevel`."""
        previous = self._events.get(event.id)
        self._events[event.id] = event
        self.collected += 1
        return previous.level if previous is not None else Level.OK

    def get(self, event_id: str) -> EventState | None:
        return self._events.get(event_id)

    def delete(self, event_id: str) -> None:
        self._events.pop(event_id, None)

    @property
    def level(self) -> Level:
        return max((e.level for e in self._events.values()), default=Level.OK)

    def events(self, min_level: Level = Level.OK) -> list[EventState]:
        """Events at or above `min_level`, highest level first, then by ID."""
        chosen = (e for e in self._events.values() if e.level >= min_level)
        return sorted(chosen, key=lambda e: (-e.level, e.id))

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "collected": self.collected,
            "events": [e.to_dict() for e in self.events()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TopicState:
        try:
            events: Iterable[Mapping[str, Any]] = data["events"]
            state = cls(topic=str(data["topic"]), collected=int(data["collected"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid saved topic state: {exc}") from exc
        for saved in events:
            event = EventState.from_dict(saved)
            state._events[event.id] = event
        return state
