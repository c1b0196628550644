"""TICKscript alert tasks: the grammar, the evaluation of scripts, and clear errors."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest

from kafkaops.alert.expr import EvalError, MatchScope
from kafkaops.alert.lineprotocol import Point
from kafkaops.alert.tickscript import (
    DEFAULT_DETAILS_TEMPLATE,
    DEFAULT_ID_TEMPLATE,
    DEFAULT_MESSAGE_TEMPLATE,
    HandlerSpec,
    TaskSpec,
    TickError,
    compile_match,
    parse_lambda,
    parse_task,
)


def task(body: str, head: str = "stream|from().measurement('cpu')") -> TaskSpec:
    return parse_task(f"{head}\n|alert()\n{body}")


def tick_error(script: str) -> TickError:
    with pytest.raises(TickError) as info:
        parse_task(script)
    return info.value


def cpu(**fields: object) -> Point:
    return Point("cpu", {"host": "a"}, dict(fields), 0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# The seed document's examples


def test_seed_kafka_cpu_alert_tick() -> None:
    spec = parse_task(
        """stream
  |from()
    .measurement('cpu')
  |alert()
    .crit(lambda: "usage_idle" < 10)
    .message('Hey, check your CPU')
    .kafka()
      .kafkaTopic('cpu-alerts')
"""
    )
    assert spec.measurement == "cpu"
    assert spec.database is None and spec.rp is None and spec.where is None
    assert spec.group_by == []
    assert spec.alert.message == "Hey, check your CPU"
    assert spec.alert.crit is not None
    assert spec.alert.crit.evaluate_bool(cpu(usage_idle=5.0)) is True
    assert spec.alert.crit.evaluate_bool(cpu(usage_idle=50.0)) is False
    assert spec.alert.handlers == [
        HandlerSpec(
            "kafka",
            {
                "cluster": "",
                "topic": "cpu-alerts",
                "template": "",
                "disablePartitionById": False,
                "partitionAlgorithm": "crc32",
            },
            7,
            6,
        )
    ]


def test_seed_topic_tick_has_no_handlers() -> None:
    spec = parse_task(
        """stream
  |from()
    .measurement('cpu')
  |alert()
    .crit(lambda: "usage_idle" < 10)
    .message('Hey, check your CPU')
    .topic('cpu')
"""
    )
    assert spec.alert.topic == "cpu"
    assert spec.alert.handlers == []


def test_seed_documented_kafka_spelling_is_accepted() -> None:
    spec = task(
        """  // ...
  .kafka()
    .cluster('kafka-cluster')
    .kafkaTopic('kafka-topic-name')
    .template('kafka-template-name')
    .disablePartitionById(FALSE)
    .partitionAlgorithm('crc32')"""
    )
    assert spec.alert.handlers[0].options == {
        "cluster": "kafka-cluster",
        "topic": "kafka-topic-name",
        "template": "kafka-template-name",
        "disablePartitionById": False,
        "partitionAlgorithm": "crc32",
    }


def test_kapacitor_code_spelling_of_the_kafka_properties() -> None:
    spec = task(
        ".kafka().cluster('c').kafkaTopic('t').template('{{.Message}}')"
        ".partitionHashAlgorithm('murmur2').disablePartitionById()"
    )
    options = spec.alert.handlers[0].options
    assert options["disablePartitionById"] is True
    assert options["partitionAlgorithm"] == "murmur2"
    assert options["template"] == "{{.Message}}"
    assert (
        task(".kafka().kafkaTopic('t').partitionAlgorithm('fnv-1a')")
        .alert.handlers[0]
        .options["partitionAlgorithm"]
        == "fnv-1a"
    )


def test_unknown_partition_algorithm_fails_where_it_is_written() -> None:
    e = tick_error(
        "stream|from()|alert()\n  .kafka().kafkaTopic('t')\n  .partitionAlgorithm('md5')"
    )
    assert (e.line, e.column) == (3, 4)
    assert "invalid partition algorithm: 'md5'" in e.message


def test_kafka_needs_a_topic() -> None:
    e = tick_error("stream|from()|alert()\n  .kafka().cluster('c')")
    assert (e.line, e.column, e.message) == (2, 4, ".kafka() needs .kafkaTopic('name')")


def test_the_lag_rule_of_the_readme() -> None:
    spec = parse_task(
        """stream
    |from()
        .measurement('kafka_consumer_group_lag')
        .groupBy('clustername', 'group', 'topic', 'partition')
    |alert()
        .crit(lambda: "lag_in_seconds" > 60)
        .kafka()
            .cluster('local')
            .kafkaTopic('alerts')
"""
    )
    crit = spec.alert.crit
    assert crit is not None
    tags = {"clustername": "local", "group": "g", "topic": "t", "partition": "0"}

    def lag(seconds: float | int) -> Point:
        fields = {"lag_in_offsets": 10, "lag_in_seconds": seconds, "status": "ok"}
        return Point("kafka_consumer_group_lag", tags, fields, 0)  # type: ignore[arg-type]

    assert [crit.evaluate_bool(lag(s)) for s in (61.5, 60.0, 61, 60)] == [True, False, True, False]
    assert spec.group_by == ["clustername", "group", "topic", "partition"]


# --------------------------------------------------------------------------------------------
# The documented level example (alerting.md §d): resets and levels


def determine_level(spec: TaskSpec, p: Point, current: int) -> int:
    """Kapacitor's determineLevel, as the note describes it, over the parsed expressions."""
    levels, resets = spec.alert.levels, spec.alert.resets

    def first_match(start: int, stop: int) -> int | None:
        for level in range(start, stop, -1):
            e = levels[level]
            if e is not None and e.evaluate_bool(p) is True:
                return level
        return None

    higher = first_match(3, max(current - 1, 0))
    if higher is not None:
        return higher
    reset = resets[current]
    if reset is not None and reset.evaluate_bool(p) is False:
        return current
    return first_match(current, 0) or 0


def test_documented_reset_example_gives_the_documented_levels() -> None:
    spec = parse_task(
        """
var info = 60
var warn = 70
var crit = 80
var infoReset = 50
var warnReset = 60
var critReset = 70

stream
    |from()
        .measurement('cpu')
    |alert()
        .info(lambda: "value" > info)
        .infoReset(lambda: "value" < infoReset)
        .warn(lambda: "value" > warn)
        .warnReset(lambda: "value" < warnReset)
        .crit(lambda: "value" > crit)
        .critReset(lambda: "value" < critReset)
"""
    )
    names = ["OK", "INFO", "WARNING", "CRITICAL"]
    level, seen = 0, []
    for value in [61, 73, 64, 85, 62, 56, 47]:
        level = determine_level(spec, cpu(value=float(value)), level)
        seen.append(names[level])
    assert seen == ["INFO", "WARNING", "WARNING", "CRITICAL", "INFO", "INFO", "OK"]


# --------------------------------------------------------------------------------------------
# Alert properties


def test_every_alert_property() -> None:
    spec = task(
        """
    .id('{{ .Name }}/{{ index .Tags "host" }}')
    .message('{{ .ID }} is ' + '{{ .Level }}')
    .details('''<b>{{ .Message }}</b>''')
    .info(lambda: "v" > 1)
    .warn(lambda: "v" > 2)
    .crit(lambda: "v" > 3)
    .infoReset(lambda: "v" < 1)
    .warnReset(lambda: "v" < 2)
    .critReset(lambda: "v" < 3)
    .stateChangesOnly(5m)
    .flapping(0.25, 0.5)
    .history(10)
    .noRecoveries()
    .topic('cpu')
    .levelTag('level')
    .idTag('alertID')
    .levelField('lvl')
    .idField('aid')
    .messageField('msg')
    .durationField('dur')
"""
    )
    a = spec.alert
    assert a.id == '{{ .Name }}/{{ index .Tags "host" }}'
    assert a.message == "{{ .ID }} is {{ .Level }}"
    assert a.details == "<b>{{ .Message }}</b>"
    assert [e.text for e in a.levels[1:]] == ['"v" > 1', '"v" > 2', '"v" > 3']  # type: ignore[union-attr]
    assert [e.text for e in a.resets[1:]] == ['"v" < 1', '"v" < 2', '"v" < 3']  # type: ignore[union-attr]
    assert a.levels[0] is None and a.resets[0] is None
    assert a.state_changes_only is True
    assert a.state_changes_only_max == timedelta(minutes=5)
    assert a.flapping == (0.25, 0.5)
    assert a.history == 10
    assert a.no_recoveries is True
    assert a.topic == "cpu"
    assert (a.level_tag, a.id_tag) == ("level", "alertID")
    assert (a.level_field, a.id_field, a.message_field, a.duration_field) == (
        "lvl",
        "aid",
        "msg",
        "dur",
    )


def test_defaults() -> None:
    a = task("").alert
    assert (a.id, a.message, a.details) == (
        DEFAULT_ID_TEMPLATE,
        DEFAULT_MESSAGE_TEMPLATE,
        DEFAULT_DETAILS_TEMPLATE,
    )
    assert a.id == "{{ .Name }}:{{ .Group }}"
    assert a.message == "{{ .ID }} is {{ .Level }}"
    assert a.details == "{{ json . }}"
    assert (a.history, a.state_changes_only, a.flapping, a.no_recoveries) == (
        21,
        False,
        None,
        False,
    )
    assert a.state_changes_only_max is None


def test_state_changes_only_without_interval_and_history_minimum() -> None:
    a = task(".stateChangesOnly().history(1)").alert
    assert a.state_changes_only is True
    assert a.state_changes_only_max is None
    assert a.history == 2  # Kapacitor raises anything below 2 to 2


def test_flapping_thresholds_are_fractions() -> None:
    e = tick_error("stream|from()|alert().flapping(25, 50)")
    assert e.message == "alert flap thresholds are percentages and should be between 0 and 1"
    assert task(".flapping(0, 1)").alert.flapping == (0.0, 1.0)


def test_other_handlers() -> None:
    handlers = task(
        """
    .log('/tmp/alerts.log').mode(0644)
    .post('http://example.com/hook').header('X-Token', 'abc').header('X-B', 'b')
    .exec('/usr/bin/notify', '--level', 'crit')
    .tcp('localhost:9000')
    .log('/tmp/other.log')
"""
    ).alert.handlers
    assert [(h.kind, h.options) for h in handlers] == [
        ("log", {"path": "/tmp/alerts.log", "mode": 0o644}),
        ("post", {"url": "http://example.com/hook", "headers": {"X-Token": "abc", "X-B": "b"}}),
        ("exec", {"prog": "/usr/bin/notify", "args": ["--level", "crit"]}),
        ("tcp", {"address": "localhost:9000"}),
        ("log", {"path": "/tmp/other.log", "mode": 0o600}),
    ]


def test_alert_properties_still_apply_after_a_handler() -> None:
    spec = task(".kafka().kafkaTopic('t').crit(lambda: TRUE).message('m')")
    assert spec.alert.message == "m"
    assert spec.alert.crit is not None
    e = tick_error("stream|from()|alert().kafka().kafkaTopic('t').crit(lambda: TRUE).cluster('c')")
    assert e.message.startswith("unsupported property .cluster() on |alert()")


def test_a_var_holding_the_alert_can_be_extended() -> None:
    spec = parse_task(
        """
var a = stream|from().measurement('cpu')|alert()
a.crit(lambda: "v" > 1)
var k = a.kafka()
k.kafkaTopic('t')
"""
    )
    assert spec.alert.crit is not None
    assert spec.alert.handlers[0].options["topic"] == "t"


# --------------------------------------------------------------------------------------------
# from()


def test_from_properties() -> None:
    spec = parse_task(
        """
dbrp "telegraf"."autogen"
dbrp "telegraf"."other"
stream
    |from()
        .database('telegraf')
        .retentionPolicy('autogen')
        .measurement('cpu')
        .where(lambda: "host" =~ /^web/)
        .where(lambda: "cpu" == 'cpu-total')
        .groupBy('host', 'cpu')
        .groupByMeasurement()
    |alert()
"""
    )
    assert (spec.database, spec.rp, spec.measurement) == ("telegraf", "autogen", "cpu")
    assert spec.dbrps == [("telegraf", "autogen"), ("telegraf", "other")]
    assert spec.group_by == ["host", "cpu"]
    assert spec.group_by_measurement is True
    assert spec.where is not None
    assert spec.where.text == '("host" =~ /^web/) AND ("cpu" == \'cpu-total\')'
    ok = Point("cpu", {"host": "web1", "cpu": "cpu-total"}, {"v": 1.0}, 0)
    assert spec.where.evaluate_bool(ok) is True
    assert spec.where.evaluate_bool(Point("cpu", {"host": "web1", "cpu": "cpu0"}, {}, 0)) is False
    assert (
        spec.where.evaluate_bool(Point("cpu", {"host": "db1", "cpu": "cpu-total"}, {}, 0)) is False
    )


def test_group_by_forms() -> None:
    assert task("", "stream|from().groupBy(*)").group_by == "*"
    assert task("", "var tags = ['host', 'region',]\nstream|from().groupBy(tags)").group_by == [
        "host",
        "region",
    ]
    assert task("", "var t = 'dc'\nstream|from().groupBy(t, 'host')").group_by == ["dc", "host"]
    assert task("", "stream|from().groupBy('a').groupBy('b')").group_by == ["b"]
    assert task("", "stream|from().groupBy()").group_by == []
    e = tick_error("stream|from().groupBy(*, 'host')|alert()")
    assert e.message == "cannot group by both '*' and named dimensions"
    e = tick_error("stream|from().groupBy(5)|alert()")
    assert e.message == ".groupBy() expects tag names or *, got int"


def test_a_from_without_measurement_reads_everything() -> None:
    assert task("", "stream|from()").measurement is None


# --------------------------------------------------------------------------------------------
# vars, literals, comments


def test_vars_of_every_kind() -> None:
    spec = parse_task(
        """
// thresholds
var warn = 70.5
var limit = 3
var period = 10m
var on = TRUE
var hosts = /^(web|db)[0-9]+$/
var who = 'ops'
var cond = lambda: "host" =~ hosts AND on
var topic = 'alerts-' + who
var later = period * 2

stream
    |from()
        .measurement('cpu')
        .where(cond)
    |alert()
        .warn(lambda: "usage" > warn AND count() > limit)
        .stateChangesOnly(later)
        .topic(topic)
"""
    )
    assert spec.alert.topic == "alerts-ops"
    assert spec.alert.state_changes_only_max == timedelta(minutes=20)
    assert spec.where is not None
    assert spec.where.evaluate_bool(Point("cpu", {"host": "web12"}, {}, 0)) is True
    assert spec.where.evaluate_bool(Point("cpu", {"host": "mail1"}, {}, 0)) is False
    warn = spec.alert.warn
    assert warn is not None
    assert [warn.evaluate_bool(cpu(usage=80.0)) for _ in range(4)] == [False, False, False, True]


def test_a_lambda_var_used_twice_gets_separate_state() -> None:
    spec = task(".warn(c).crit(c)", "var c = lambda: count() == 2\nstream|from()")
    warn, crit = spec.alert.warn, spec.alert.crit
    assert warn is not None and crit is not None
    assert warn.evaluate(cpu()) is False
    assert crit.evaluate(cpu()) is False
    assert warn.evaluate(cpu()) is True


def test_strings_quotes_and_comments() -> None:
    spec = task(
        r"""
    // a comment
    .id('it\'s')   // trailing comment
    .message('''multi
line 'quoted' message''')
    .details('')
    .topic('''''')
"""
    )
    assert spec.alert.id == "it's"
    assert spec.alert.message == "multi\nline 'quoted' message"
    assert spec.alert.details == ""
    assert spec.alert.topic == ""


def test_lambda_is_an_identifier_without_its_colon() -> None:
    assert task("", "var lambda = 'cpu'\nstream|from().measurement(lambda)").measurement == "cpu"


def test_lambdas_see_the_time_zone() -> None:
    spec = parse_task('stream|from()|alert().crit(lambda: hour("time") == 22)', tz=UTC)
    assert spec.alert.crit is not None
    assert spec.alert.crit.evaluate(Point("m", {}, {}, 1_700_000_000 * 10**9)) is True


# --------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    ("script", "line", "column", "message"),
    [
        ("stream|from()|window()|alert()", 1, 15,
         "unsupported node |window() after |from(): alert tasks support stream|from()|alert()"),
        ("stream|from()|alert()|log()", 1, 23,
         "unsupported node |log() after |alert(): alert tasks support stream|from()|alert()"),
        ("stream|alert()", 1, 8,
         "unsupported node |alert() after stream: alert tasks support stream|from()|alert()"),
        ("batch|query('SELECT 1')|alert()", 1, 7,
         "batch tasks are not supported: alert tasks read stream|from()"),
        ("stream|from()|alert().all()", 1, 23,
         ".all() applies to batch tasks only, and alert tasks here are stream tasks"),
        ("stream|from()|alert()@udf()", 1, 23, "user-defined function @udf() is not supported"),
        ("stream|from().measurement", 1, 15,
         "reading a property (.measurement without parentheses) is not supported"),
        ("stream|from().truncate(1s)|alert()", 1, 15,
         "unsupported property .truncate() on |from(); supported: .measurement(), .database(), "
         ".retentionPolicy(), .where(), .groupBy(), .groupByMeasurement()"),
        ("stream|from()|alert().message(5)", 1, 23, ".message() expects string, got int"),
        ("stream|from()|alert().message('a', 'b')", 1, 23, ".message() takes 1 argument(s), got 2"),
        ("stream|from()|alert().crit('x')", 1, 23, ".crit() expects lambda, got string"),
        ("stream|from()|alert().stateChangesOnly(5)", 1, 23,
         ".stateChangesOnly() expects duration, got int"),
        ("stream|from()|alert().stateChangesOnly(1m, 2m)", 1, 23,
         ".stateChangesOnly() takes 0 to 1 argument(s), got 2"),
        ("stream|from().measurement(\"cpu\")|alert()", 1, 27,
         "\"cpu\" is a field reference, allowed only inside a lambda; did you mean the string "
         "'cpu' (single quotes)?"),
        ("stream|from()|alert().crit(lambda: \"x\" > nope)", 1, 42,
         'name "nope" is undefined. Names in scope: batch, stream'),
        ("stream|from()|alert().crit(lambda: 1 + 1.0 > 0)", 1, 38,
         "mismatched type to binary operator. got int + float. see bool(), int(), float(), "
         "string(), duration()"),
        ("var x = 70.0 * 2", 1, 14,
         "mismatched type to binary operator. got float * int. see bool(), int(), float(), "
         "string(), duration()"),
        ("var x = 1\nvar x = 2", 2, 1, "attempted to redefine x, vars are immutable"),
        ("var stream = 1", 1, 1, "attempted to redefine stream, vars are immutable"),
        ("var x string", 1, 1,
         "template var declarations (var x string) are not supported; give the var a value"),
        ("var x = 5", 1, 1, "the script has no stream|from() pipeline"),
        ("stream|from()", 1, 8, "|from() is not followed by |alert()"),
        ("stream|from()|alert()\nstream|from()|alert()", 2, 8,
         "only one stream|from() pipeline per task is supported"),
        ("var f = stream|from()\nf|alert()\nf|alert()", 3, 3,
         "only one |alert() per task is supported"),
        ("stream|from()|alert().post()", 1, 23,
         ".post() needs a URL (.endpoint() is not supported)"),
        ("stream|from()|alert().exec()", 1, 23, ".exec() needs the program to run"),
        ("stream|from(5)|alert()", 1, 8, ".from() takes 0 argument(s), got 1"),
        ("stream|from()|alert().crit(lambda: *)", 1, 36, "unexpected * in an expression"),
        ("stream|from()|alert().crit(lambda: \"a\" > 09)", 1, 42, 'illegal number syntax: "09"'),
        ("stream|from()|alert().crit(lambda: \"a\" > 99999999999999999999)", 1, 42,
         'illegal number syntax: "99999999999999999999"'),
        ("stream|from()|alert().crit(lambda: nope(1))", 1, 36, 'function "nope" is undefined'),
    ],
)  # fmt: skip
def test_errors_name_what_and_where(script: str, line: int, column: int, message: str) -> None:
    e = tick_error(script)
    assert (e.line, e.column, e.message) == (line, column, message)
    assert str(e) == f"line {line} char {column}: {message}"


def test_unsupported_alert_property_lists_what_is_supported() -> None:
    e = tick_error("stream|from()|alert()\n  .inhibit('cpu', 'host')")
    assert (e.line, e.column) == (2, 4)
    assert e.message.startswith("unsupported property .inhibit() on |alert(); supported: .id(), ")
    assert ".kafka()" in e.message and ".crit()" in e.message
    e = tick_error("batch.period(1m)")
    assert e.message == "unsupported property .period() on batch"
    e = tick_error("stream|from()|alert().kafka().kafkaTopic('t').email('x')")
    assert e.message.startswith("unsupported property .email() on |kafka(); supported: .cluster()")


@pytest.mark.parametrize(
    ("script", "line", "column", "message"),
    [
        ("stream|from().measurement('cpu)", 1, 27, "unterminated string"),
        ("stream|from().measurement('''cpu)", 1, 27, "unterminated string"),
        ("stream|from()|alert().crit(lambda: \"x > 1)", 1, 36, "unterminated field reference"),
        ("stream|from()|alert().crit(lambda: \"x\" =~ /abc)", 1, 43, "unterminated regex"),
        ("stream|from()|alert().crit(lambda: \"x\" > )", 1, 42,
         "unexpected ')'; expected one of: '!', '(', '*', '-', FALSE, TRUE, duration, "
         "field reference, identifier, number, regex, string"),
        ("stream|from()\n  |alert(\n", 3, 1, "unexpected end of script"),
        ("stream|from() $", 1, 15, "unexpected character '$'"),
        ("stream|from()|alert().crit(lambda: 5.5m)", 1, 39,
         "unexpected 'm'; expected one of: ')', ','"),
    ],
)  # fmt: skip
def test_syntax_errors(script: str, line: int, column: int, message: str) -> None:
    e = tick_error(script)
    assert (e.line, e.column, e.message) == (line, column, message)


# --------------------------------------------------------------------------------------------
# lambdas and match expressions on their own


def test_parse_lambda_positions_point_at_operators() -> None:
    node = parse_lambda('"a" > 1\n  AND "b" < 2')
    assert (node.line, node.column) == (2, 3)  # type: ignore[union-attr]


def test_absurd_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(TickError, match="nested too deeply"):
        parse_lambda("-" * 5000 + "1")


def test_parse_lambda_rejects_trailing_input() -> None:
    with pytest.raises(TickError, match="line 1 char 9"):
        parse_lambda('"a" > 1 2')


def test_compile_match() -> None:
    scope = MatchScope({"host": "s001"}, 3, 1, "cpu", "cpu_alert", 0)
    assert compile_match("changed() == TRUE").evaluate(scope) is True
    assert compile_match("level() >= WARNING AND \"host\" == 's001'").evaluate(scope) is True
    assert isinstance(compile_match("\"missing\" == 'x'").evaluate(scope), EvalError)
    with pytest.raises(TickError, match='line 1 char 1: function "level2" is undefined'):
        compile_match("level2()")
    with pytest.raises(TickError, match='name "BAD" is undefined'):
        compile_match("level() == BAD")
