"""Alert events: group IDs, id/message/details templates and the alert JSON, byte for byte.

Expected strings were produced by Go: the same templates executed over Kapacitor's idInfo,
messageInfo and detailsInfo structs (with its `json`/`jsonCompact` details functions), and
alert.Data encoded with json.NewEncoder.
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kafkaops.alert.event import (
    AlertEvent,
    AlertTemplates,
    PointData,
    Series,
    ServerInfo,
    group_id,
    group_label,
    kafka_message_key,
    kafka_message_value,
    parse_kafka_template,
    series_from_point,
    series_from_points,
)
from kafkaops.alert.gotemplate import (
    GoJSONError,
    TemplateExecError,
    TemplateParseError,
    go_json_encode,
)
from kafkaops.alert.state import AlertOptions, AlertStateMachine, Level, LevelRules, TopicState
from kafkaops.kafka.partitioners import PartitionAlgorithm, Partitioner

T = 1500000000123456789
SERVER = ServerInfo(hostname="kap1", cluster_id="c-1", server_id="s-1")
TAGS = {"host": "serverA", "cpu": "cpu0", "dc": "a&b"}
FIELDS = {"usage_idle": 4.5, "count": 3, "note": "x<y", "ok": True, "big": 1e6, "tiny": 1e-7}
GROUP = "cpu=cpu0,host=serverA"
ID = "cpu:cpu=cpu0,host=serverA"


# ---------------------------------------------------------------------------------------------
# Groups


def test_group_id_sorts_dimensions() -> None:
    tags = {"host": "serverA", "cpu": "cpu0", "region": "eu"}
    assert group_id("cpu", tags, ["host", "cpu"]) == "cpu=cpu0,host=serverA"
    assert group_id("cpu", tags, ["cpu", "host"]) == "cpu=cpu0,host=serverA"


def test_group_by_all_tags() -> None:
    tags = {"b": "2", "a": "1"}
    assert group_id("m", tags, tags.keys()) == "a=1,b=2"


def test_nil_group_and_its_label() -> None:
    assert group_id("cpu", {"host": "a"}, []) == ""
    assert group_label("") == "nil"
    assert group_label("host=a") == "host=a"


def test_group_by_measurement() -> None:
    assert group_id("cpu", {"host": "a"}, ["host"], by_measurement=True) == "cpu\nhost=a"
    assert group_id("cpu", {"host": "a"}, [], by_measurement=True) == "cpu"


def test_missing_group_tag_is_empty() -> None:
    assert group_id("cpu", {}, ["host"]) == "host="


# ---------------------------------------------------------------------------------------------
# id / message / details templates


def _render_id(text: str, group: str = GROUP, tags: dict[str, str] | None = None) -> str:
    templates = AlertTemplates.parse(id_text=text)
    return templates.render_id(
        name="cpu",
        task_name="cpu_alert",
        group=group,
        tags=TAGS if tags is None else tags,
        server=SERVER,
    )


def test_default_id() -> None:
    assert _render_id("{{ .Name }}:{{ .Group }}") == "cpu:cpu=cpu0,host=serverA"
    assert _render_id("{{ .Name }}:{{ .Group }}", group="", tags={}) == "cpu:nil"
    assert AlertTemplates.parse().id.source == "{{ .Name }}:{{ .Group }}"


def test_id_variables() -> None:
    text = (
        '{{ .TaskName }}/{{ index .Tags "host" }}/{{ .Tags.cpu }}/{{ .ServerInfo.Hostname }}'
        '/{{ .Tags.missing }}|{{ index .Tags "missing" }}'
    )
    assert _render_id(text) == "cpu_alert/serverA/cpu0/kap1/<no value>|"


def test_id_dot_prints_the_struct() -> None:
    assert _render_id("{{ . }}") == (
        "{cpu cpu_alert cpu=cpu0,host=serverA map[cpu:cpu0 dc:a&b host:serverA] {kap1 c-1 s-1}}"
    )


def _render(
    message: str = "{{ .ID }} is {{ .Level }}",
    details: str = "{{ json . }}",
    *,
    fields: dict[str, object] | None = None,
    group: str = GROUP,
    tags: dict[str, str] | None = None,
    time_ns: int = T,
    duration_ns: int = 90_000_000_000,
) -> tuple[str, str]:
    templates = AlertTemplates.parse(message_text=message, details_text=details)
    return templates.render_message_and_details(
        alert_id=ID,
        name="cpu",
        task_name="cpu_alert",
        group=group,
        tags=TAGS if tags is None else tags,
        fields=FIELDS if fields is None else fields,
        level=Level.CRITICAL,
        time_ns=time_ns,
        duration_ns=duration_ns,
        server=SERVER,
    )


def test_default_message() -> None:
    assert _render()[0] == "cpu:cpu=cpu0,host=serverA is CRITICAL"


def test_message_variables() -> None:
    text = (
        "{{ .ID }} {{ .Level }} {{ .Time }} {{ .Duration }} {{ .Fields.usage_idle }} "
        '{{ index .Fields "count" }} {{ .Tags }} {{ .Fields }} {{ .Group }}'
    )
    assert _render(text)[0] == (
        "cpu:cpu=cpu0,host=serverA CRITICAL 2017-07-14 02:40:00.123456789 +0000 UTC 1m30s 4.5 3 "
        "map[cpu:cpu0 dc:a&b host:serverA] "
        "map[big:1e+06 count:3 note:x<y ok:true tiny:1e-07 usage_idle:4.5] cpu=cpu0,host=serverA"
    )


def test_message_printf_and_comparisons() -> None:
    text = (
        '{{ printf "%.1f%%" .Fields.usage_idle }} '
        "{{ if lt .Fields.usage_idle 10.0 }}low{{ end }} {{ .Duration.Seconds }}"
    )
    assert _render(text)[0] == "4.5% low 90"


def test_message_dot_prints_embedded_structs() -> None:
    assert _render("{{ . }}")[0] == (
        "{{cpu cpu_alert cpu=cpu0,host=serverA map[cpu:cpu0 dc:a&b host:serverA] "
        "{kap1 c-1 s-1}} cpu:cpu=cpu0,host=serverA "
        "map[big:1e+06 count:3 note:x<y ok:true tiny:1e-07 usage_idle:4.5] CRITICAL "
        "2017-07-14 02:40:00.123456789 +0000 UTC 1m30s}"
    )


def test_message_has_no_recoverable_field() -> None:
    with pytest.raises(TemplateExecError, match="can't evaluate field Recoverable"):
        _render("{{ .Recoverable }}")


_DETAILS_JSON = (
    "{&#34;Name&#34;:&#34;cpu&#34;,&#34;TaskName&#34;:&#34;cpu_alert&#34;,"
    "&#34;Group&#34;:&#34;cpu=cpu0,host=serverA&#34;,"
    "&#34;Tags&#34;:{&#34;cpu&#34;:&#34;cpu0&#34;,&#34;dc&#34;:&#34;a\\u0026b&#34;,"
    "&#34;host&#34;:&#34;serverA&#34;},"
    "&#34;ServerInfo&#34;:{&#34;Hostname&#34;:&#34;kap1&#34;,&#34;ClusterID&#34;:&#34;c-1&#34;,"
    "&#34;ServerID&#34;:&#34;s-1&#34;},&#34;ID&#34;:&#34;cpu:cpu=cpu0,host=serverA&#34;,"
    "&#34;Fields&#34;:{&#34;big&#34;:1000000,&#34;count&#34;:3,&#34;note&#34;:&#34;x\\u003cy&#34;,"
    "&#34;ok&#34;:true,&#34;tiny&#34;:1e-7,&#34;usage_idle&#34;:4.5},"
    "&#34;Level&#34;:&#34;CRITICAL&#34;,&#34;Time&#34;:&#34;2017-07-14T02:40:00.123456789Z&#34;,"
    "&#34;Duration&#34;:90000000000,&#34;Message&#34;:&#34;cpu is CRITICAL&#34;}"
)


def test_default_details_is_html_escaped_json_with_newline() -> None:
    assert _render("{{ .Name }} is {{ .Level }}")[1] == _DETAILS_JSON + "\n"


def test_json_compact_details_drops_the_newline() -> None:
    assert _render("{{ .Name }} is {{ .Level }}", "{{ jsonCompact . }}")[1] == _DETAILS_JSON


def test_default_details_for_the_nil_group() -> None:
    details = _render(
        "{{ .Name }} is {{ .Level }}",
        group="",
        tags={},
        fields={"value": 1.0},
        time_ns=0,
        duration_ns=0,
    )[1]
    assert details == (
        "{&#34;Name&#34;:&#34;cpu&#34;,&#34;TaskName&#34;:&#34;cpu_alert&#34;,"
        "&#34;Group&#34;:&#34;nil&#34;,&#34;Tags&#34;:{},&#34;ServerInfo&#34;:{"
        "&#34;Hostname&#34;:&#34;kap1&#34;,&#34;ClusterID&#34;:&#34;c-1&#34;,"
        "&#34;ServerID&#34;:&#34;s-1&#34;},&#34;ID&#34;:&#34;cpu:cpu=cpu0,host=serverA&#34;,"
        "&#34;Fields&#34;:{&#34;value&#34;:1},&#34;Level&#34;:&#34;CRITICAL&#34;,"
        "&#34;Time&#34;:&#34;1970-01-01T00:00:00Z&#34;,&#34;Duration&#34;:0,"
        "&#34;Message&#34;:&#34;cpu is CRITICAL&#34;}\n"
    )


def test_details_escapes_plain_values() -> None:
    details = _render(details="{{ .Level }}: {{ .Fields.usage_idle }} {{ .Time }}")[1]
    assert details == "CRITICAL: 4.5 2017-07-14 02:40:00.123456789 &#43;0000 UTC"


def test_details_html_text_keeps_markup_and_escapes_values() -> None:
    details = _render(details="<h1>{{ .Message }}</h1><p>{{ .Tags.dc }} {{ .Fields.note }}</p>")[1]
    assert details == "<h1>cpu:cpu=cpu0,host=serverA is CRITICAL</h1><p>a&amp;b x&lt;y</p>"


def test_template_parse_errors_name_the_template() -> None:
    with pytest.raises(TemplateParseError, match=r"^template: message:1:"):
        AlertTemplates.parse(message_text="{{ .ID ")
    with pytest.raises(TemplateParseError, match='function "json" not defined'):
        AlertTemplates.parse(id_text="{{ json . }}")


# ---------------------------------------------------------------------------------------------
# Alert JSON


def test_kapacitor_server_test_example_is_byte_identical() -> None:
    event = AlertEvent(
        id="id",
        message="message",
        details="details",
        time_ns=0,
        duration_ns=0,
        level=Level.CRITICAL,
        series=(Series(name="alert", columns=("time", "value"), values=((0, 1.0),)),),
    )
    assert event.to_json().decode() == (
        '{"id":"id","message":"message","details":"details","time":"1970-01-01T00:00:00Z",'
        '"duration":0,"level":"CRITICAL","data":{"series":[{"name":"alert",'
        '"columns":["time","value"],"values":[["1970-01-01T00:00:00Z",1]]}]},'
        '"previousLevel":"OK","recoverable":true}\n'
    )


ALERT = AlertEvent(
    id="cpu:nil",
    message="cpu:nil is CRITICAL",
    details="{&#34;a&#34;:1}\n<x>",
    time_ns=T,
    duration_ns=61_000_000_001,
    level=Level.CRITICAL,
    previous_level=Level.INFO,
    recoverable=True,
    series=(
        Series(
            name="cpu",
            tags={"host": "a", "z": "<>"},
            columns=("time", "count", "usage", "s", "b", "n"),
            values=(
                (T, 3, 4.25, 'str\u2028"q"', False, None),
                (T + 1000, -1, 1e21, "", True, 0.000001),
            ),
        ),
    ),
)


def test_alert_json_escaping_times_and_numbers() -> None:
    assert ALERT.to_json().decode() == (
        '{"id":"cpu:nil","message":"cpu:nil is CRITICAL",'
        '"details":"{\\u0026#34;a\\u0026#34;:1}\\n\\u003cx\\u003e",'
        '"time":"2017-07-14T02:40:00.123456789Z","duration":61000000001,"level":"CRITICAL",'
        '"data":{"series":[{"name":"cpu","tags":{"host":"a","z":"\\u003c\\u003e"},'
        '"columns":["time","count","usage","s","b","n"],'
        '"values":[["2017-07-14T02:40:00.123456789Z",3,4.25,"str\\u2028\\"q\\"",false,null],'
        '["2017-07-14T02:40:00.123457789Z",-1,1e+21,"",true,0.000001]]}]},'
        '"previousLevel":"INFO","recoverable":true}\n'
    )


def test_alert_json_omits_empty_row_parts() -> None:
    event = AlertEvent(
        id="id",
        message="message",
        details="details",
        time_ns=0,
        duration_ns=0,
        level=Level.OK,
        previous_level=Level.WARNING,
        recoverable=False,
        series=(Series(columns=("time", "v"), values=((-1, 1e-7),)),),
    )
    assert event.to_json().decode() == (
        '{"id":"id","message":"message","details":"details","time":"1970-01-01T00:00:00Z",'
        '"duration":0,"level":"OK","data":{"series":[{"columns":["time","v"],'
        '"values":[["1969-12-31T23:59:59.999999999Z",1e-7]]}]},'
        '"previousLevel":"WARNING","recoverable":false}\n'
    )


def test_alert_json_round_trips_through_a_json_parser() -> None:
    parsed = json.loads(ALERT.to_json())
    assert list(parsed) == [
        "id",
        "message",
        "details",
        "time",
        "duration",
        "level",
        "data",
        "previousLevel",
        "recoverable",
    ]
    assert parsed["details"] == ALERT.details


_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["<b>", "a&b", "\u2028", '"q"', "\\", "\x00\x1f", "é"]
)
_FIELD_VALUE = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
)
_TIMES = st.integers(-(2**62), 2**62)
_SERIES = st.builds(
    lambda name, tags, fields, rows: Series(
        name=name,
        tags=tags,
        columns=("time", *fields),
        values=tuple((t, *values) for t, values in rows),
    ),
    _TEXT,
    st.dictionaries(_TEXT, _TEXT, max_size=3),
    st.lists(_TEXT, max_size=3, unique=True),
    st.lists(st.tuples(_TIMES, st.lists(_FIELD_VALUE, min_size=0, max_size=3)), max_size=3),
)


@given(
    st.builds(
        AlertEvent,
        id=_TEXT,
        message=_TEXT,
        details=_TEXT,
        time_ns=_TIMES,
        duration_ns=st.integers(-(2**63), 2**63 - 1),
        level=st.sampled_from(list(Level)),
        previous_level=st.sampled_from(list(Level)),
        recoverable=st.booleans(),
        series=st.lists(_SERIES, max_size=2).map(tuple),
    )
)
def test_fast_json_equals_the_generic_encoding_of_alert_data(event: AlertEvent) -> None:
    assert event.to_json() == go_json_encode(event.alert_data()).encode()


@pytest.mark.parametrize(
    "value",
    [
        -0.0,
        0.0,
        8.0,
        float("inf"),
        float("nan"),
        2.0**53,
        2.0**60,
        1e16,
        1e21,
        1.5e-5,
        1e-7,
        0.1,
        -123.456,
        10**20,
        2**64,
    ],
)
@pytest.mark.parametrize("text", ["plain", "lone \ud800 surrogate", "<&>\u2028\u2029", "\x7f\x01"])
def test_fast_json_edge_values_equal_the_generic_encoding(value: object, text: str) -> None:
    event = AlertEvent(
        id=text,
        message=text,
        details=text,
        time_ns=T,
        duration_ns=1,
        level=Level.WARNING,
        series=(
            Series(name=text, tags={text: text}, columns=("time", text), values=((T, value),)),
        ),
    )
    try:
        expected = go_json_encode(event.alert_data()).encode()
    except GoJSONError as exc:
        with pytest.raises(GoJSONError, match=re.escape(str(exc))):
            event.to_json()
        return
    assert event.to_json() == expected


def test_no_series_encodes_as_null_like_a_nil_slice() -> None:
    event = AlertEvent(id="", message="", details="", time_ns=0, duration_ns=0, level=Level.OK)
    assert b'"data":{"series":null}' in event.to_json()
    assert go_json_encode(event.alert_data()).encode() == event.to_json()


# ---------------------------------------------------------------------------------------------
# Kafka message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{.Message}}", "cpu:nil is CRITICAL"),
        (
            "{{ .ID }}|{{ .Level }}|{{ .PreviousLevel }}|{{ .Recoverable }}|{{ .Duration }}"
            "|{{ .Time }}|{{ .Details }}",
            "cpu:nil|CRITICAL|INFO|true|1m1.000000001s|2017-07-14 02:40:00.123456789 +0000 UTC"
            "|{&#34;a&#34;:1}\n<x>",
        ),
        (
            "{{ (index .Data.Series 0).Tags.host }} {{ (index .Data.Series 0).Tags }} "
            "{{ (index .Data.Series 0).Columns }}",
            "a map[host:a z:<>] [time count usage s b n]",
        ),
        (
            "{{ range (index .Data.Series 0).Values }}{{ index . 0 }}={{ index . 2 }};{{ end }}",
            "2017-07-14 02:40:00.123456789 +0000 UTC=4.25;"
            "2017-07-14 02:40:00.123457789 +0000 UTC=1e+21;",
        ),
        (
            '{{ if eq .Level 3 }}crit{{ end }}{{ printf "%d %v %s" .Level .Level .PreviousLevel }}',
            "crit3 CRITICAL INFO",
        ),
    ],
)
def test_kafka_template_value(text: str, expected: str) -> None:
    assert kafka_message_value(ALERT, parse_kafka_template(text)) == expected.encode()


def test_kapacitor_streamer_test_kafka_record() -> None:
    # K:integrations/streamer_test.go: ID template over the host tag, `.template('{{.Message}}')`
    # gives exactly the message; the key lands on index 1 of 3 partitions with crc32.
    templates = AlertTemplates.parse(id_text='kapacitor/{{ .Name }}/{{ index .Tags "host" }}')
    tags = {"host": "serverA"}
    alert_id = templates.render_id(name="cpu", task_name="TestStream_Alert", group="", tags=tags)
    event = templates.event(
        alert_id=alert_id,
        name="cpu",
        task_name="TestStream_Alert",
        group="",
        tags=tags,
        fields={"value": 10.0},
        level=Level.CRITICAL,
        time_ns=0,
        duration_ns=0,
        recoverable=True,
    )
    assert kafka_message_key(event) == b"kapacitor/cpu/serverA"
    value = kafka_message_value(event, parse_kafka_template("{{.Message}}"))
    assert value == b"kapacitor/cpu/serverA is CRITICAL"
    assert Partitioner(PartitionAlgorithm.CRC32).partition(kafka_message_key(event), 3) == 1


def test_kafka_value_defaults_to_alert_json() -> None:
    assert kafka_message_value(ALERT) == ALERT.to_json()
    assert kafka_message_value(ALERT).endswith(b"}\n")


def test_kafka_template_has_no_json_function() -> None:
    with pytest.raises(TemplateParseError, match='function "json" not defined'):
        parse_kafka_template("{{ json . }}")


def test_kafka_template_fields_are_alert_data_only() -> None:
    with pytest.raises(TemplateExecError, match=r"can't evaluate field Tags in type alert\.Data"):
        kafka_message_value(ALERT, parse_kafka_template("{{ .Tags }}"))


def test_kafka_key_is_the_alert_id_and_never_null() -> None:
    assert kafka_message_key(ALERT) == b"cpu:nil"
    empty = AlertEvent(id="", message="", details="", time_ns=0, duration_ns=0, level=Level.OK)
    assert kafka_message_key(empty) == b""


# ---------------------------------------------------------------------------------------------
# Series


def test_stream_series_uses_point_tags_and_sorted_fields() -> None:
    series = series_from_point("cpu", {"host": "a"}, {"z": 1, "a": 2.5}, 7)
    assert series == Series(
        name="cpu", tags={"host": "a"}, columns=("time", "a", "z"), values=((7, 2.5, 1),)
    )


def test_batch_series_adds_non_group_tags_as_columns_and_nulls_for_gaps() -> None:
    points = [
        PointData(1, {"value": 1.0}, {"host": "a", "cpu": "cpu0"}),
        PointData(2, {"other": 5}, {"host": "a"}),
    ]
    series = series_from_points("cpu", {"host": "a"}, points)
    assert series.columns == ("time", "cpu", "value")
    assert series.values == ((1, "cpu0", 1.0), (2, None, None))


def test_empty_batch_has_no_columns() -> None:
    assert series_from_points("cpu", {}, []) == Series(name="cpu")


# ---------------------------------------------------------------------------------------------
# Pieces together: the documented example, as events with previous levels


def test_documented_example_events() -> None:
    rules = LevelRules(
        info=lambda v: v > 60,
        warn=lambda v: v > 70,
        crit=lambda v: v > 80,
        info_reset=lambda v: v < 50,
        warn_reset=lambda v: v < 60,
        crit_reset=lambda v: v < 70,
    )
    machine = AlertStateMachine(rules, AlertOptions(state_changes_only=True))
    templates = AlertTemplates.parse()
    topic = TopicState("main:task:alert2")
    sent = []
    for i, value in enumerate([61, 73, 64, 85, 62, 56, 47]):
        t = i * 10_000_000_000
        alert_id = templates.render_id(name="cpu", task_name="task", group="", tags={})
        decision = machine.process("", t, value)
        if not decision.emit:
            continue
        event = templates.event(
            alert_id=alert_id,
            name="cpu",
            task_name="task",
            group="",
            tags={},
            fields={"value": float(value)},
            level=decision.level,
            time_ns=t,
            duration_ns=decision.duration_ns,
            recoverable=decision.recoverable,
        )
        event = event.with_previous_level(topic.collect(event.state()))
        sent.append(json.loads(event.to_json()))
    assert [(e["level"], e["previousLevel"], e["duration"]) for e in sent] == [
        ("INFO", "OK", 0),
        ("WARNING", "INFO", 10_000_000_000),
        ("CRITICAL", "WARNING", 30_000_000_000),
        ("INFO", "CRITICAL", 40_000_000_000),
        ("OK", "INFO", 60_000_000_000),
    ]
    assert sent[-1]["message"] == "cpu:nil is OK"
    assert sent[-1]["data"]["series"][0]["values"] == [["1970-01-01T00:01:00Z", 47]]
