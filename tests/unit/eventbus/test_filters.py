from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kafkaops.eventbus.cloudevents import CloudEvent
from kafkaops.eventbus.filters import DependencyMatcher, FilterProgram, apply_transform
from kafkaops.eventbus.paths import JqError
from kafkaops.eventbus.spec import Dependency, DependencyFilter, Transform

NOON = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


def event(data=None, *, time=NOON, **attrs):
    base = {"id": "1", "source": "src", "type": "webhook", "subject": "ev"}
    return CloudEvent(**{**base, **attrs}, time=time, data=data)


def program(filters, operator=""):
    return FilterProgram(DependencyFilter.model_validate(filters), operator)


def data_filter(path, type_, values, comparator=""):
    return {"path": path, "type": type_, "value": values, "comparator": comparator}


# --------------------------------------------------------------------------- data


@pytest.mark.parametrize(
    ("comparator", "value", "actual", "passed"),
    [
        ("", "50", 50, True),
        ("=", "50", 50.0, True),
        ("=", "50", 51, False),
        ("!=", "50", 51, True),
        (">", "50", 51, True),
        (">", "50", 50, False),
        (">=", "50.0", 50, True),
        ("<", "50", 49.5, True),
        ("<=", "50", 50, True),
        ("<=", "50", 50.01, False),
        (">", "1e2", "101", True),  # a numeric string reads as its number (gjson Float)
        (">", "-1", "abc", True),  # a non-numeric string reads as 0
    ],
)
def test_number_comparators(comparator, value, actual, passed):
    flt = program({"data": [data_filter("body.v", "number", [value], comparator)]})
    assert flt.evaluate(event({"body": {"v": actual}})).passed is passed


@pytest.mark.parametrize(
    ("values", "comparator", "actual", "passed"),
    [
        (["^ab"], "", "abc", True),
        (["b"], "=", "abc", True),  # unanchored, as Go's regexp.Match
        (["^b"], "", "abc", False),
        (["x", "^a"], "", "abc", True),  # any value may match
        (["^a"], "!=", "abc", False),
        (["^z"], "!=", "abc", True),
        (["^1$"], "", 1.0, True),  # matched against gjson's String(): 1.0 reads "1"
        (["true"], "", True, True),
    ],
)
def test_string_filters_are_regexes(values, comparator, actual, passed):
    flt = program({"data": [data_filter("body.v", "string", values, comparator)]})
    assert flt.evaluate(event({"body": {"v": actual}})).passed is passed


@pytest.mark.parametrize(
    ("values", "actual", "passed"),
    [(["true"], True, True), (["true"], False, False), (["false", "1"], True, True),
     (["t"], "true", True), (["true"], 1, True), (["true"], 0, False)],
)  # fmt: skip
def test_bool_filters(values, actual, passed):
    flt = program({"data": [data_filter("v", "bool", values)]})
    assert flt.evaluate(event({"v": actual})).passed is passed


def test_data_filters_and_by_default_or_on_request():
    both = [data_filter("a", "number", ["1"]), data_filter("b", "number", ["2"])]
    half = event({"a": 1, "b": 3})
    assert not program({"data": both}).evaluate(half).passed
    assert program({"data": both, "dataLogicalOperator": "or"}).evaluate(half).passed
    assert (
        not program({"data": both, "dataLogicalOperator": "or"})
        .evaluate(event({"a": 0, "b": 0}))
        .passed
    )


def test_missing_path_rejects_with_the_reason():
    result = program({"data": [data_filter("body.nope", "string", ["x"])]}).evaluate(event({}))
    assert not result.passed
    assert result.errors == ("data filter error (path 'body.nope' does not exist)",)


def test_with_or_a_missing_path_is_tolerated_if_another_entry_passes():
    filters = [data_filter("nope", "string", ["x"]), data_filter("a", "number", ["1"])]
    flt = program({"data": filters, "dataLogicalOperator": "or"})
    assert flt.evaluate(event({"a": 1})).passed
    failed = flt.evaluate(event({"a": 2}))
    assert not failed.passed
    assert failed.errors == ("data filter errors [path 'nope' does not exist]",)


def test_events_without_data_pass_data_and_expr_filters():
    flt = program(
        {
            "data": [data_filter("a", "number", ["1"])],
            "exprs": [{"expr": "a > 1", "fields": [{"name": "a", "path": "a"}]}],
        }
    )
    assert flt.evaluate(event(None)).passed


def test_non_json_data_is_an_error():
    result = program({"data": [data_filter("a", "number", ["1"])]}).evaluate(
        event(b"\xff", datacontenttype="application/octet-stream")
    )
    assert result == result.__class__(False, ("data filter error (event data not valid JSON)",))


# --------------------------------------------------------------------------- exprs


def expr(text, **fields):
    return {"expr": text, "fields": [{"name": n, "path": p} for n, p in fields.items()]}


def test_exprs_evaluate_against_named_fields():
    flt = program({"exprs": [expr("a + b > 10 && kind =~ '^re'", a="x.a", b="x.b", kind="k")]})
    assert flt.evaluate(event({"x": {"a": 4, "b": 7}, "k": "refund"})).passed
    assert not flt.evaluate(event({"x": {"a": 4, "b": 5}, "k": "refund"})).passed


def test_exprs_and_or():
    exprs = [expr("a == 1", a="a"), expr("b == 1", b="b")]
    half = event({"a": 1, "b": 0})
    assert not program({"exprs": exprs}).evaluate(half).passed
    assert program({"exprs": exprs, "exprLogicalOperator": "or"}).evaluate(half).passed


def test_expr_errors_reject():
    missing = program({"exprs": [expr("a == 1", a="nope")]}).evaluate(event({"a": 1}))
    assert missing.errors == ("expr filter error (path 'nope' does not exist)",)
    typed = program({"exprs": [expr("a > 1", a="a")]}).evaluate(event({"a": "text"}))
    assert not typed.passed
    assert "compares two numbers or two strings" in typed.errors[0]


# --------------------------------------------------------------------------- context and time


@pytest.mark.parametrize(
    ("expected", "passed"),
    [
        ({"source": "src"}, True),
        ({"source": "src", "subject": "ev", "type": "webhook"}, True),
        ({"datacontenttype": "application/json"}, True),
        ({"source": "other"}, False),
        ({"subject": "ev", "type": "calendar"}, False),
        ({}, True),
    ],
)
def test_context_filter_compares_the_fields_it_sets(expected, passed):
    assert program({"context": expected}).evaluate(event({})).passed is passed


@pytest.mark.parametrize(
    ("start", "stop", "zone", "at", "passed"),
    [
        ("11:00:00", "13:00:00", None, NOON, True),
        ("12:00:00", "13:00:00", None, NOON, True),  # start is inclusive
        ("11:00:00", "12:00:00", None, NOON, False),  # stop is exclusive
        ("13:00:00", "14:00:00", None, NOON, False),
        ("22:00:00", "13:00:00", None, NOON, True),  # wraps midnight: [22:00, 13:00 next day)
        ("22:00:00", "02:00:00", None, NOON, False),
        ("22:00:00", "02:00:00", None, NOON.replace(hour=1), True),
        ("12:00:00", "12:00:00", None, NOON.replace(hour=3), True),  # empty window: Argo passes
        ("13:00:00", "14:00:00", "Europe/Berlin", NOON, True),  # noon UTC is 13:00 in Berlin
        ("11:00:00", "13:00:00", "Europe/Berlin", NOON, False),
    ],
)
def test_time_window(start, stop, zone, at, passed):
    window = {"start": start, "stop": stop, "timezone": zone}
    assert program({"time": window}).evaluate(event({}, time=at)).passed is passed


def test_time_window_needs_an_event_time():
    result = program({"time": {"start": "00:00:00", "stop": "23:00:00"}}).evaluate(
        event({}, time=None)
    )
    assert not result.passed
    assert result.errors == ("time filter error (the event has no time)",)


# --------------------------------------------------------------------------- combining filters


def test_filters_logical_operator_and_needs_every_filter():
    filters = {"context": {"source": "src"}, "data": [data_filter("a", "number", ["1"])]}
    assert program(filters).evaluate(event({"a": 1})).passed
    assert not program(filters).evaluate(event({"a": 2})).passed


def test_filters_logical_operator_or_needs_one():
    filters = {"context": {"source": "src"}, "data": [data_filter("a", "number", ["1"])]}
    assert program(filters, "or").evaluate(event({"a": 2})).passed
    assert (
        not program({**filters, "context": {"source": "x"}}, "or").evaluate(event({"a": 2})).passed
    )


def test_with_or_any_filter_error_still_rejects_like_argo():
    filters = {"context": {"source": "src"}, "data": [data_filter("nope", "number", ["1"])]}
    result = program(filters, "or").evaluate(event({"a": 2}))
    assert not result.passed  # the context filter passed, but the data filter errored
    assert result.errors == ("data filter error (path 'nope' does not exist)",)


def test_no_filters_pass():
    assert FilterProgram(None).evaluate(event({})).passed
    assert program({}, "or").evaluate(event({})).passed


# --------------------------------------------------------------------------- transforms, matching


def test_transform_replaces_the_data_with_the_jq_object():
    transform = Transform(jq="{amount: .body.total, who: .body.user.name}")
    out = apply_transform(transform, event({"body": {"total": 5, "user": {"name": "ann"}}}))
    assert out.data == {"amount": 5, "who": "ann"}
    assert out.id == "1"


@pytest.mark.parametrize(
    ("jq", "data", "message"),
    [
        (".body", {"body": 5}, "must be a JSON object"),
        (".", [1], "need the event data to be a JSON object"),
        (".a.b?", {"a": 1}, "no output"),
        (".a.b", {"a": 1}, "Cannot index number"),
    ],
)
def test_transform_errors(jq, data, message):
    with pytest.raises(JqError, match=message):
        apply_transform(Transform(jq=jq), event(data))


def test_transform_leaves_events_without_data_alone():
    ev = event(None)
    assert apply_transform(Transform(jq=".a"), ev) is ev


def dependency(name, *, subject="ev", **extra):
    return Dependency.model_validate(
        {"name": name, "eventSourceName": "src", "eventName": subject, **extra}
    )


def test_matcher_matches_on_source_and_subject_and_filters_each_dependency():
    matcher = DependencyMatcher(
        [
            dependency("big", filters={"data": [data_filter("n", "number", ["10"], ">")]}),
            dependency("small", filters={"data": [data_filter("n", "number", ["10"], "<=")]}),
            dependency("other", subject="else"),
        ]
    )
    matches = matcher.match(event({"n": 20}))
    assert [(m.dependency, m.passed) for m in matches] == [("big", True), ("small", False)]
    assert matcher.match(event({"n": 1}, source="elsewhere")) == []


def test_matcher_filters_after_the_transform():
    matcher = DependencyMatcher(
        [
            dependency(
                "d",
                transform={"jq": "{n: .payload.count}"},
                filters={"data": [data_filter("n", "number", ["3"])]},
            )
        ]
    )
    (match,) = matcher.match(event({"payload": {"count": 3}}))
    assert match.passed
    assert match.event.data == {"n": 3}


def test_matcher_reports_a_failed_transform_as_a_rejection():
    matcher = DependencyMatcher([dependency("d", transform={"jq": ".x"})])
    (match,) = matcher.match(event({"x": 1}))
    assert not match.passed
    assert match.errors == ("transform: jq transformation output must be a JSON object",)
