"""The event stage's per-dependency work: match an event to dependencies, transform, filter.

Filter semantics follow Argo's `filterEvent` (pkg/sensors/dependencies/filter.go):

- `exprs`, `data`, `context` and `time` filters each pass or fail; `filtersLogicalOperator`
  (`and`, the default, or `or`) combines those that are set;
- `dataLogicalOperator` / `exprLogicalOperator` combine the entries of one list the same way;
- a path that does not exist, or an expression that fails on the values, is an error; any error
  makes the dependency reject the event (with `or`, errors are collected first, then reject);
- an event without data passes `data` and `exprs`; data that is not JSON is an error;
- the time window is on the event's own `time` attribute, `[start, stop)`, wrapping midnight.

Differences, all deliberate: with no filter set at all an `or` dependency passes (Argo rejects
everything), and values Argo would reject at every event (bad numbers, regexes) fail at load.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from kafkaops.eventbus.cloudevents import CloudEvent, CloudEventError
from kafkaops.eventbus.conditions import EvaluationError
from kafkaops.eventbus.paths import JqError, compile_path, parse_go_bool, parse_go_float
from kafkaops.eventbus.spec import (
    DataFilter,
    Dependency,
    DependencyFilter,
    ExprFilter,
    TimeFilter,
    Transform,
)

__all__ = ["DependencyMatcher", "FilterProgram", "FilterResult", "Match", "apply_transform"]


@dataclass(frozen=True)
class FilterResult:
    passed: bool
    errors: tuple[str, ...] = ()


_PASS = FilterResult(True)


class _Errors(Exception):
    """One filter's errors; in `and` mode the first one ends evaluation."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors


def _compare(comparator: str, event_value: float, filter_value: float) -> bool:
    if comparator == ">=":
        return event_value >= filter_value
    if comparator == ">":
        return event_value > filter_value
    if comparator == "<":
        return event_value < filter_value
    if comparator == "<=":
        return event_value <= filter_value
    if comparator == "!=":
        return event_value != filter_value
    return event_value == filter_value


@dataclass(frozen=True)
class _DataCheck:
    """One compiled data filter entry."""

    spec: DataFilter
    values: tuple[Any, ...]  # bools, floats or compiled regexes, by type

    @classmethod
    def build(cls, spec: DataFilter) -> _DataCheck:
        if spec.type == "bool":
            return cls(spec, tuple(parse_go_bool(v) for v in spec.value))
        if spec.type == "number":
            return cls(spec, tuple(parse_go_float(v) for v in spec.value))
        return cls(spec, tuple(re.compile(v) for v in spec.value))

    def passes(self, payload: Any) -> bool:
        found = compile_path(self.spec.path).get(payload)
        if not found.exists:
            raise _Errors([f"path '{self.spec.path}' does not exist"])
        if self.spec.type == "bool":
            return any(v == found.boolean() for v in self.values)
        if self.spec.type == "number":
            number = found.number()
            return any(_compare(self.spec.comparator, number, v) for v in self.values)
        text = found.string()
        want_match = self.spec.comparator != "!="
        return any((v.search(text) is not None) == want_match for v in self.values)


def _combine(checks: Sequence[Any], run: Any, *, use_or: bool, label: str) -> tuple[bool, str]:
    """Argo's list loop: `and` stops at the first failure or error, `or` at the first pass."""
    errors: list[str] = []
    for check in checks:
        try:
            ok = run(check)
        except _Errors as exc:
            if not use_or:
                return False, f"{label} filter error ({exc.errors[0]})"
            errors.extend(exc.errors)
            continue
        if ok and use_or:
            return True, ""
        if not ok and not use_or:
            return False, ""
    if use_or:
        return False, (f"{label} filter errors [{' / '.join(errors)}]" if errors else "")
    return True, ""


def _event_payload(event: CloudEvent, label: str) -> tuple[bool, Any]:
    """(has data, parsed data); raises _Errors when data is not JSON."""
    if event.data is None:
        return False, None
    try:
        return True, event.json_data()
    except CloudEventError:
        raise _Errors([f"{label} filter error (event data not valid JSON)"]) from None


def _expr_values(expr: ExprFilter, payload: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in expr.fields:
        found = compile_path(item.path).get(payload)
        if not found.exists:
            raise _Errors([f"path '{item.path}' does not exist"])
        values[item.name] = found.value
    return values


def _expr_passes(expr: ExprFilter, payload: Any) -> bool:
    values = _expr_values(expr, payload)
    try:
        return expr.expression.evaluate(values) is True
    except EvaluationError as exc:
        raise _Errors([str(exc)]) from None


def _time_passes(window: TimeFilter, at: datetime | None) -> bool:
    if at is None:
        raise _Errors(["time filter error (the event has no time)"])
    local = at.astimezone(ZoneInfo(window.timezone or "UTC"))
    start = datetime.combine(local.date(), time.fromisoformat(window.start), local.tzinfo)
    stop = datetime.combine(local.date(), time.fromisoformat(window.stop), local.tzinfo)
    if start < stop:
        return start <= local < stop
    return local >= start or local < stop


def _context_passes(expected: Any, event: CloudEvent) -> bool:
    actual = {
        "type": event.type,
        "subject": event.subject or "",
        "source": event.source,
        "datacontenttype": event.datacontenttype or "",
    }
    return all(not getattr(expected, k) or getattr(expected, k) == v for k, v in actual.items())


class FilterProgram:
    """A dependency's filters compiled once; `evaluate` is pure."""

    def __init__(self, spec: DependencyFilter | None, operator: str = "") -> None:
        self.spec = spec
        self.use_or = operator == "or"
        self.data = tuple(_DataCheck.build(d) for d in (spec.data or ())) if spec else ()
        self.passes_all = spec is None or (
            spec.exprs is None and spec.data is None and spec.context is None and spec.time is None
        )

    def evaluate(self, event: CloudEvent) -> FilterResult:
        spec = self.spec
        if spec is None or self.passes_all:
            return _PASS
        results: list[bool] = []
        errors: list[str] = []
        for present, run in (
            (spec.exprs is not None, self._exprs),
            (spec.data is not None, self._data),
            (spec.context is not None, lambda e: (_context_passes(spec.context, e), "")),
            (spec.time is not None, self._time),
        ):
            if not present:
                continue
            ok, error = run(event)
            if error:
                if not self.use_or:
                    return FilterResult(False, (error,))
                errors.append(error)
            results.append(ok)
        if errors:
            return FilterResult(False, tuple(errors))
        return FilterResult(any(results) if self.use_or else all(results))

    def _exprs(self, event: CloudEvent) -> tuple[bool, str]:
        assert self.spec is not None and self.spec.exprs is not None
        try:
            has_data, payload = _event_payload(event, "expr")
        except _Errors as exc:
            return False, exc.errors[0]
        if not has_data:
            return True, ""
        use_or = self.spec.expr_logical_operator == "or"
        return _combine(
            self.spec.exprs, lambda e: _expr_passes(e, payload), use_or=use_or, label="expr"
        )

    def _data(self, event: CloudEvent) -> tuple[bool, str]:
        assert self.spec is not None
        try:
            has_data, payload = _event_payload(event, "data")
        except _Errors as exc:
            return False, exc.errors[0]
        if not has_data:
            return True, ""
        use_or = self.spec.data_logical_operator == "or"
        return _combine(self.data, lambda c: c.passes(payload), use_or=use_or, label="data")

    def _time(self, event: CloudEvent) -> tuple[bool, str]:
        assert self.spec is not None and self.spec.time is not None
        try:
            return _time_passes(self.spec.time, event.time), ""
        except _Errors as exc:
            return False, exc.errors[0]


def apply_transform(transform: Transform | None, event: CloudEvent) -> CloudEvent:
    """Argo's jq transform: the data must be a JSON object and so must the result."""
    if transform is None or event.data is None:
        return event
    try:
        data = event.json_data()
    except CloudEventError:
        raise JqError("event data is not valid JSON") from None
    if not isinstance(data, dict):
        raise JqError("jq transforms need the event data to be a JSON object")
    produced, result = transform.program.run(data)
    if not produced:
        raise JqError("no output available from the jq command execution")
    if not isinstance(result, dict):
        raise JqError("jq transformation output must be a JSON object")
    return event.with_data(result)


@dataclass(frozen=True)
class Match:
    """An event as one dependency sees it: transformed, and whether its filters passed."""

    dependency: str
    event: CloudEvent
    passed: bool
    errors: tuple[str, ...] = ()


class DependencyMatcher:
    """Finds the dependencies an event is for (by source and subject, as Argo matches them)."""

    def __init__(self, dependencies: Sequence[Dependency]) -> None:
        self._by_key: dict[tuple[str, str], list[tuple[Dependency, FilterProgram]]] = {}
        for dep in dependencies:
            program = FilterProgram(dep.filters, dep.filters_logical_operator)
            key = (dep.event_source_name, dep.event_name)
            self._by_key.setdefault(key, []).append((dep, program))

    def keys(self) -> frozenset[tuple[str, str]]:
        """The (source, subject) pairs some dependency listens to."""
        return frozenset(self._by_key)

    def unconditional(self) -> dict[tuple[str, str], tuple[str, ...]]:
        """(source, subject) -> the dependencies matching it, for the pairs whose dependencies
        all take every event unchanged (no transform, no filter): there, which dependencies an
        event satisfies follows from its source and subject alone."""
        return {
            key: tuple(dep.name for dep, _ in deps)
            for key, deps in self._by_key.items()
            if all(dep.transform is None and program.passes_all for dep, program in deps)
        }

    def match(self, event: CloudEvent) -> list[Match]:
        out: list[Match] = []
        for dep, program in self._by_key.get((event.source, event.subject or ""), ()):
            try:
                seen = apply_transform(dep.transform, event)
            except JqError as exc:
                out.append(Match(dep.name, event, False, (f"transform: {exc}",)))
                continue
            result = program.evaluate(seen)
            out.append(Match(dep.name, seen, result.passed, result.errors))
        return out
