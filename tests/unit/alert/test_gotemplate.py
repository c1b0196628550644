"""Go text/template subset: outputs pinned from Go 1.26's text/template and html/template.

Every expected string in TEXT_VECTORS and HTML_VECTORS was produced by running the same
template over the same data with Go's own packages, then pasted here.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kafkaops.alert.gotemplate import (
    KAPACITOR_DETAILS_FUNCS,
    NO_VALUE,
    Duration,
    Field,
    GoJSONError,
    GoMap,
    Struct,
    Template,
    TemplateExecError,
    TemplateParseError,
    Time,
    format_float_g,
    format_float_json,
    format_go_duration,
    go_json,
    go_json_encode,
    go_sprintf,
    json_string,
    truth,
)

DATA: dict[str, Any] = {
    "Name": "cpu",
    "Int": 42,
    "Neg": -7,
    "Float": 1.5,
    "Whole": 1.0,
    "Big": 1e6,
    "Small": 1e-5,
    "Huge": 1e21,
    "Str": "a<b>&\"c'",
    "Empty": "",
    "T": True,
    "F": False,
    "Nil": None,
    "Map": {"b": 2, "a": 1.5, "c": "x", "n": None},
    "Tags": GoMap({"host": "h1", "cpu": "cpu0"}, zero="", go_type="map[string]string"),
    "List": [1, "two", 3.5, None],
    "Nested": {"inner": {"deep": [1, 2]}},
    "Time": Time(1500000000123456789),
    "Zero": Time(0),
    "Dur": Duration(90_000_000_000),
    "Dur2": Duration(1500),
    "EmptyList": [],
    "EmptyMap": {},
}

FLOATS = [
    0.1,
    0.30000000000000004,
    0.3333333333333333,
    6666666666.666666,
    123456.789,
    1e-07,
    5e-324,
    1.7976931348623157e308,
    -1.5,
    100.0,
    1e20,
    1e21,
    12345678.9,
    1e-06,
    1.2345e-06,
    999999.0,
    1000000.0,
    0.0001,
    1.234e-05,
    2.5e-05,
    1.23e20,
]

TEXT_VECTORS = [
    ("field", "{{ .Name }}", DATA, "cpu"),
    ("int", "{{ .Int }} {{ .Neg }}", DATA, "42 -7"),
    (
        "floats",
        "{{ .Float }} {{ .Whole }} {{ .Big }} {{ .Small }} {{ .Huge }}",
        DATA,
        "1.5 1 1e+06 1e-05 1e+21",
    ),
    ("str", "{{ .Str }}", DATA, "a<b>&\"c'"),
    ("bools", "{{ .T }} {{ .F }}", DATA, "true false"),
    ("nil", "{{ .Nil }}", DATA, "<no value>"),
    ("missing", "{{ .Missing }}", DATA, "<no value>"),
    ("missing_chain", "{{ .Missing.Deeper }}", DATA, "<no value>"),
    ("map", "{{ .Map }}", DATA, "map[a:1.5 b:2 c:x n:<nil>]"),
    ("strmap", "{{ .Tags }}", DATA, "map[cpu:cpu0 host:h1]"),
    ("list", "{{ .List }}", DATA, "[1 two 3.5 <nil>]"),
    ("nested", "{{ .Nested.inner.deep }} {{ .Nested }}", DATA, "[1 2] map[inner:map[deep:[1 2]]]"),
    (
        "time",
        "{{ .Time }} | {{ .Zero }}",
        DATA,
        "2017-07-14 02:40:00.123456789 +0000 UTC | 1970-01-01 00:00:00 +0000 UTC",
    ),
    ("dur", "{{ .Dur }} {{ .Dur2 }}", DATA, "1m30s 1.5µs"),
    (
        "map_nil_value",
        '{{ .Map.n }}|{{ index .Map "n" }}|{{ printf "%v" .Map.n }}',
        DATA,
        "<no value>|<no value>|<nil>",
    ),
    (
        "index_missing",
        '{{ index .Map "zz" }}|{{ index .Tags "zz" }}|{{ index .Tags "host" }}',
        DATA,
        "<no value>||h1",
    ),
    ("index_list", "{{ index .List 1 }} {{ index .List 0 }}", DATA, "two 1"),
    ("index_str", "{{ index .Name 0 }}", DATA, "99"),
    (
        "if_else",
        (
            "{{ if .T }}yes{{ else }}no{{ end }}{{ if .F }}yes{{ else if "
            ".Int }}elif{{ else }}no{{ end }}"
        ),
        DATA,
        "yeselif",
    ),
    (
        "if_empty",
        (
            "{{ if .Empty }}a{{ end }}{{ if .EmptyList }}b{{ end }}{{ if "
            ".EmptyMap }}c{{ end }}{{ if .Missing }}d{{ end }}{{ if .Nil "
            "}}e{{end}}"
        ),
        DATA,
        "",
    ),
    ("range_list", "{{ range .List }}[{{ . }}]{{ end }}", DATA, "[1][two][3.5][<no value>]"),
    (
        "range_iv",
        "{{ range $i, $v := .List }}{{ $i }}={{ $v }};{{ end }}",
        DATA,
        "0=1;1=two;2=3.5;3=<no value>;",
    ),
    (
        "range_map",
        "{{ range $k, $v := .Map }}{{ $k }}:{{ $v }} {{ end }}",
        DATA,
        "a:1.5 b:2 c:x n:<no value> ",
    ),
    ("range_one_var", "{{ range $v := .Tags }}{{ $v }},{{ end }}", DATA, "cpu0,h1,"),
    ("range_else", "{{ range .EmptyList }}x{{ else }}empty{{ end }}", DATA, "empty"),
    ("range_int", "{{ range 3 }}{{ . }}{{ end }}", DATA, "012"),
    (
        "range_continue",
        "{{ range $i, $v := .List }}{{ if eq $i 1 }}{{ continue }}{{ end }}{{ $v }},{{ end }}",
        DATA,
        "1,3.5,<no value>,",
    ),
    (
        "with",
        ("{{ with .Nested.inner }}{{ .deep }}{{ end }}{{ with .Missing }}x{{ else }}none{{ end }}"),
        DATA,
        "[1 2]none",
    ),
    ("else_with", "{{ with .Missing }}a{{ else with .Name }}b={{ . }}{{ end }}", DATA, "b=cpu"),
    ("vars", "{{ $x := .Int }}{{ $x }}{{ $x = 5 }} {{ $x }} {{ $.Name }}", DATA, "42 5 cpu"),
    (
        "var_scope",
        "{{ $x := 1 }}{{ if .T }}{{ $x = 2 }}{{ $y := 3 }}{{ $y }}{{ end }}{{ $x }}",
        DATA,
        "32",
    ),
    (
        "cmp",
        (
            '{{ eq .Int 42 }} {{ ne .Name "cpu" }} {{ lt .Float 2.0 }} {{'
            ' le 1 1 }} {{ gt .Name "a" }} {{ ge .Neg 0 }}'
        ),
        DATA,
        "true false true true true false",
    ),
    ("eq_multi", '{{ eq .Name "mem" "cpu" }}', DATA, "true"),
    ("eq_missing", '{{ eq .Missing "x" }}|{{ eq .Missing .Nil }}', DATA, "false|true"),
    (
        "and_or",
        (
            "{{ and .T .Int }} {{ and .F .Int }} {{ or .F .Empty }} {{ or"
            " .Empty .Name }} {{ not .T }}"
        ),
        DATA,
        "42 false  cpu false",
    ),
    ("and_short", '{{ if and .Map (index .Map "a") }}ok{{ end }}', DATA, "ok"),
    (
        "printf",
        (
            '{{ printf "%s|%d|%v|%f|%.2f|%q|%t|%5d|%-4s|%x|%e|%g" .Name .'
            "Int .Float .Float .Float .Name .T .Int .Name .Int .Big .Big "
            "}}"
        ),
        DATA,
        'cpu|42|1.5|1.500000|1.50|"cpu"|true|   42|cpu |2a|1.000000e+06|1e+06',
    ),
    ("printf_bad", '{{ printf "%d %s" .Name .Int }}', DATA, "%!d(string=cpu) %!s(int=42)"),
    ("printf_missing", '{{ printf "%d %d" 1 }}', DATA, "1 %!d(MISSING)"),
    ("printf_extra", '{{ printf "%d" 1 "x" 2.5 }}', DATA, "1%!(EXTRA string=x, float64=2.5)"),
    ("printf_nil", '{{ printf "%v %s %d" .Nil .Nil .Nil }}', DATA, "<nil> %!s(<nil>) %!d(<nil>)"),
    (
        "printf_map",
        '{{ printf "%v" .Map }}|{{ printf "%d" .Tags }}',
        DATA,
        (
            "map[a:1.5 b:2 c:x n:<nil>]|map[%!d(string=cpu):%!d(string=cp"
            "u0) %!d(string=host):%!d(string=h1)]"
        ),
    ),
    ("printf_dur", '{{ printf "%v %d %s" .Dur .Dur .Dur }}', DATA, "1m30s 90000000000 1m30s"),
    ("printf_time", '{{ printf "%v" .Time }}', DATA, "2017-07-14 02:40:00.123456789 +0000 UTC"),
    ("printf_pct", '{{ printf "100%%" }}', DATA, "100%"),
    (
        "printf_float_prec",
        '{{ printf "%.3g|%.0f|%08.3f|%+d|%+.1e" .Float .Float .Float .Int .Big }}',
        DATA,
        "1.5|2|0001.500|+42|+1.0e+06",
    ),
    ("print", '{{ print .Int .Float "s" .T }}|{{ println .Int "x" }}', DATA, "42 1.5strue|42 x\n"),
    ("pipeline", '{{ .Int | printf "%03d" }}|{{ .Name | printf "%s-%s" "x" }}', DATA, "042|x-cpu"),
    ("paren", '{{ (index .Nested "inner").deep }}', DATA, "[1 2]"),
    ("len", '{{ len .List }} {{ len .Name }} {{ len .Map }} {{ len "héllo" }}', DATA, "4 3 4 6"),
    ("trim", "a  {{- .Name -}}  b\n{{- .Int }}\n", DATA, "acpub42\n"),
    ("comment", "x{{/* c */}}y{{- /* c2 */ -}} z", DATA, "xyz"),
    (
        "literals",
        (
            "{{ 1 }} {{ 1.0 }} {{ 1e3 }} {{ 0x10 }} {{ 'a' }} {{ \"s\\tq\" }"
            "} {{ `raw` }} {{ true }} {{ -2 }} {{ 1_000 }} {{ 017 }}"
        ),
        DATA,
        "1 1 1000 16 97 s\tq raw true -2 1000 15",
    ),
    (
        "html_fn",
        '{{ html .Str }} {{ urlquery "a b&c" }}',
        DATA,
        "a&lt;b&gt;&amp;&#34;c&#39; a+b%26c",
    ),
    ("dot_root", "{{ . }}", {"b": 1, "a": [1, 2]}, "map[a:[1 2] b:1]"),
    (
        "time_methods",
        "{{ .Time.Unix }} {{ .Time.UnixNano }} {{ .Dur.Seconds }} {{ .Dur.Minutes }}",
        DATA,
        "1500000000 1500000000123456789 90 1.5",
    ),
    (
        "neg_zero_and_small",
        "{{ .A }} {{ .B }} {{ .C }} {{ .D }}",
        {"A": 0.000123, "B": 123456.0, "C": 1234567.0, "D": 100.25},
        "0.000123 123456 1.234567e+06 100.25",
    ),
    (
        "floats_v",
        "{{ range . }}{{ . }} {{ end }}",
        FLOATS,
        (
            "0.1 0.30000000000000004 0.3333333333333333 6.666666666666666"
            "e+09 123456.789 1e-07 5e-324 1.7976931348623157e+308 -1.5 10"
            "0 1e+20 1e+21 1.23456789e+07 1e-06 1.2345e-06 999999 1e+06 0"
            ".0001 1.234e-05 2.5e-05 1.23e+20 "
        ),
    ),
    (
        "floats_printf",
        '{{ range . }}{{ printf "%g|%.3g|%e|%.2f|%G" . . . . . }} {{ end }}',
        FLOATS[:8],
        (
            "0.1|0.1|1.000000e-01|0.10|0.1 0.30000000000000004|0.3|3.0000"
            "00e-01|0.30|0.30000000000000004 0.3333333333333333|0.333|3.3"
            "33333e-01|0.33|0.3333333333333333 6.666666666666666e+09|6.67"
            "e+09|6.666667e+09|6666666666.67|6.666666666666666E+09 123456"
            ".789|1.23e+05|1.234568e+05|123456.79|123456.789 1e-07|1e-07|"
            "1.000000e-07|0.00|1E-07 5e-324|4.94e-324|4.940656e-324|0.00|"
            "5E-324 1.7976931348623157e+308|1.8e+308|1.797693e+308|179769"
            "313486231570814527423731704356798070567525844996598917476803"
            "157260780028538760589558632766878171540458953514382464234321"
            "326889464182768467546703537516986049910576551282076245490090"
            "389328944075868508455133942304583236903222948165808559332123"
            "348274797826204144723168738177180919299881250404026184124858"
            "368.00|1.7976931348623157E+308 "
        ),
    ),
    (
        "trim_variants",
        "a \t\n{{- 3 -}}\n\t b {{-3}} c{{- /* x */}} d {{ 4 -}}\n\n e",
        {},
        "a3b -3 c d 4e",
    ),
    (
        "else_if_chain",
        (
            "{{ range . }}{{ if lt . 10 }}small{{ else if lt . 100 }}medi"
            "um{{ else if lt . 1000 }}large{{ else }}huge{{ end }},{{ end"
            " }}"
        ),
        [5, 50, 500, 5000],
        "small,medium,large,huge,",
    ),
    (
        "nested_range",
        "{{ range $k, $v := . }}{{ $k }}[{{ range $v }}{{ . }}{{ end }}]{{ end }}",
        {"a": [1, 2], "b": [], "c": [3]},
        "a[12]b[]c[3]",
    ),
    (
        "range_break_nested",
        (
            "{{ range $i, $v := . }}{{ if gt $i 1 }}{{ break }}{{ end }}{"
            "{ range $v }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ . }}{{"
            " end }};{{ end }}"
        ),
        [[1, 2, 3], [2, 4], [5]],
        "13;4;",
    ),
    ("pipe_chain", '{{ .v | printf "%.1f" | printf "[%s]" }}', {"v": 3.14159}, "[3.1]"),
    (
        "paren_args",
        '{{ printf "%s=%d" (index . "k") (len (index . "l")) }}',
        {"k": "n", "l": [1, 2, 3]},
        "n=3",
    ),
    (
        "not_and_or_values",
        '{{ not 0 }} {{ not "" }} {{ or 0 "" }} {{ and 1 "x" }} {{ or 0 2 }}',
        {},
        "true true  x 2",
    ),
    (
        "le_ge_strings",
        '{{ le "a" "b" }} {{ ge "a" "b" }} {{ gt 2.5 1.5 }} {{ lt -1 1 }}',
        {},
        "true false true true",
    ),
    (
        "unicode",
        '{{ .s }} {{ printf "%q" .s }} {{ len .s }} {{ printf "%x" .s }}',
        {"s": "héllo\u2028\t\xa0x"},
        'héllo\u2028\t\xa0x "héllo\\u2028\\t\\u00a0x" 13 68c3a96c6c6fe280a809c2a078',
    ),
    (
        "quote_escapes",
        '{{ printf "%q" .s }}',
        {"s": 'a"b\\c\x01\x7f😀'},
        '"a\\"b\\\\c\\x01\\x7f😀"',
    ),
    (
        "struct_like_map_of_lists",
        "{{ . }}",
        {"z": {"y": [True, None, 1.0]}, "a": ""},
        "map[a: z:map[y:[true <nil> 1]]]",
    ),
    ("with_var", "{{ with $x := .a }}{{ $x }}-{{ . }}{{ end }}", {"a": 7}, "7-7"),
    (
        "range_map_sorted",
        "{{ range $k, $v := . }}{{ $k }}{{ end }}",
        {"b": 1, "A": 2, "a": 3, "_": 4, "Z": 5, "é": 6},
        "AZ_abé",
    ),
    ("index_nested", '{{ index . "a" 1 "b" }}', {"a": [0, {"b": "deep"}]}, "deep"),
    (
        "printf_width_str",
        '[{{ printf "%8s|%-8s|%.2s|%08d|%-6d|%x|%X" "ab" "ab" "abc" -42 7 255 "hi" }}]',
        {},
        "[      ab|ab      |ab|-0000042|7     |ff|6869]",
    ),
    (
        "printf_bool_verbs",
        '{{ printf "%t %v %d" true false true }}',
        {},
        "true false %!d(bool=true)",
    ),
]

HTML_VECTORS = [
    (
        "html_text",
        "<b>{{ .Str }}</b> {{ .Int }} {{ .Missing }} {{ .Nil }}",
        DATA,
        "<b>a&lt;b&gt;&amp;&#34;c&#39;</b> 42  ",
    ),
    ("html_comment", "a<!-- hidden -->b{{ .Name }}", DATA, "abcpu"),
    ("html_plus", '{{ .Big }} {{ printf "%+d" .Int }}', DATA, "1e&#43;06 &#43;42"),
    (
        "html_floats_json",
        "{{ jsonCompact . }}",
        FLOATS,
        (
            "[0.1,0.30000000000000004,0.3333333333333333,6666666666.66666"
            "6,123456.789,1e-7,5e-324,1.7976931348623157e&#43;308,-1.5,10"
            "0,100000000000000000000,1e&#43;21,12345678.9,0.000001,0.0000"
            "012345,999999,1000000,0.0001,0.00001234,0.000025,12300000000"
            "0000000000]"
        ),
    ),
    (
        "html_json_newline",
        "{{ json . }}|",
        {"a": "<x>", "b": [1, 2.5]},
        "{&#34;a&#34;:&#34;\\u003cx\\u003e&#34;,&#34;b&#34;:[1,2.5]}\n|",
    ),
    ("html_text_escape_all", "{{ . }}", "'\"&<>+\x00 ok", "&#39;&#34;&amp;&lt;&gt;&#43;� ok"),
    (
        "html_ok_after_tags",
        '<p class="c">{{ .u }}</p><br/>{{ .u }}',
        {"u": "a&b"},
        '<p class="c">a&amp;b</p><br/>a&amp;b',
    ),
]


@pytest.mark.parametrize(("name", "text", "data", "expected"), TEXT_VECTORS)
def test_text_template_matches_go(name: str, text: str, data: Any, expected: str) -> None:
    assert Template.parse(text, name=name).execute(data) == expected


@pytest.mark.parametrize(("name", "text", "data", "expected"), HTML_VECTORS)
def test_html_template_matches_go(name: str, text: str, data: Any, expected: str) -> None:
    template = Template.parse(text, name=name, funcs=KAPACITOR_DETAILS_FUNCS, html=True)
    assert template.execute(data) == expected


def test_parse_once_render_many() -> None:
    template = Template.parse("{{ .ID }} is {{ .Level }}")
    assert template.execute({"ID": "a", "Level": "OK"}) == "a is OK"
    assert template.execute({"ID": "b", "Level": "CRITICAL"}) == "b is CRITICAL"


def test_nil_data_prints_no_value() -> None:
    assert Template.parse("{{ . }}|{{ .X }}").execute(None) == "<no value>|<no value>"


# ---------------------------------------------------------------------------------------------
# Errors: Go reports these too (messages pinned where they match Go's wording)


@pytest.mark.parametrize(
    ("text", "message", "line", "col"),
    [
        ("{{ json . }}", 'function "json" not defined', 1, 4),
        ("{{ .Name ", "unclosed action", 1, 10),
        ("{{ if .T }}x", "unexpected EOF", 1, 13),
        ("x{{ end }}", "unexpected {{end}}", 1, 5),
        ("{{ else }}", "unexpected {{else}}", 1, 4),
        ("{{ $nope }}", 'undefined variable "$nope"', 1, 4),
        ("{{ }}", "missing value for command", 1, 4),
        ("{{ break }}", "{{break}} outside {{range}}", 1, 4),
        ("{{ .Name | 3 }}", "non executable command in pipeline stage 2", 1, 12),
        ("{{/* x", "unclosed comment", 1, 1),
        ("{{/* x */ .a }}", "comment ends before closing delimiter", 1, 1),
        ("{{ 3x }}", "bad number syntax: '3x'", 1, 4),
        ("{{ ) }}", "unexpected right paren", 1, 4),
        ('{{ define "x" }}y{{ end }}', "{{define}} is not supported", 1, 4),
        ('{{ template "x" }}', "{{template}} is not supported", 1, 4),
        ("{{ $x = 1 }}", "undefined variable '$x'", 1, 4),
        ("line one\n  {{ .A | 3 }}", "non executable command in pipeline stage 2", 2, 11),
        ("{{ 1 + 2 }}", "illegal number syntax: '+'", 1, 6),
    ],
)
def test_parse_errors_name_line_and_column(text: str, message: str, line: int, col: int) -> None:
    with pytest.raises(TemplateParseError) as info:
        Template.parse(text, name="id")
    err = info.value
    assert err.message == message
    assert (err.line, err.col) == (line, col)
    assert str(err) == f"template: id:{line}:{col}: {message}"


@pytest.mark.parametrize(
    ("text", "data", "message"),
    [
        ("{{ .Name.Foo }}", {"Name": "cpu"}, "can't evaluate field Foo in type string"),
        ("{{ index .List 9 }}", {"List": [1]}, "error calling index: index out of range: 9"),
        (
            "{{ lt .Float 2 }}",
            {"Float": 1.5},
            "error calling lt: incompatible types for comparison: float64 and int",
        ),
        (
            "{{ eq .Int 42.0 }}",
            {"Int": 42},
            "error calling eq: incompatible types for comparison: int and float64",
        ),
        ("{{ lt .Missing 1 }}", {}, "error calling lt: invalid type for comparison"),
        ("{{ nil }}", {}, "nil is not a command"),
        ("{{ range .s }}x{{ end }}", {"s": "abc"}, "range can't iterate over abc"),
        (
            '{{ index .l "x" }}',
            {"l": [1]},
            "error calling index: cannot index slice/array with type string",
        ),
        ("{{ .m 1 }}", {"m": {}}, "m is not a method but has arguments"),
        ("{{ not 1 2 }}", {}, "wrong number of args for not: want 1 got 2"),
        ("{{ len 3 }}", {}, "error calling len: len of type int"),
        ("{{ .T.Format }}", {"T": Time(0)}, "can't evaluate field Format in type time.Time"),
        ("{{ .S.Nope }}", {"S": Struct("main.S", [Field("A", 1)])}, "can't evaluate field Nope"),
    ],
)
def test_exec_errors(text: str, data: Any, message: str) -> None:
    template = Template.parse(text, name="message")
    with pytest.raises(TemplateExecError, match='executing "message"') as info:
        template.execute(data)
    assert message in info.value.message


def test_custom_function_errors_are_wrapped() -> None:
    def fail(_value: object) -> str:
        raise ValueError("boom")

    template = Template.parse("{{ fail . }}", funcs={"fail": fail})
    with pytest.raises(TemplateExecError, match="error calling fail: boom"):
        template.execute(1)


@pytest.mark.parametrize(
    "text",
    [
        '<a href="{{ .U }}">x</a>',
        "<script>var x = {{ .U }};</script>",
        "<style>p { color: {{ .U }} }</style>",
        "<!-- {{ .U }} -->",
        "<p {{ .U }}>",
    ],
)
def test_html_actions_outside_text_context_are_refused(text: str) -> None:
    with pytest.raises(TemplateParseError, match="only in HTML text context"):
        Template.parse(text, name="details", html=True)


def test_html_tags_after_the_last_action_are_fine() -> None:
    template = Template.parse("{{ .U }}<a href='x'>link</a>", html=True)
    assert template.execute({"U": "<"}) == "&lt;<a href='x'>link</a>"


# ---------------------------------------------------------------------------------------------
# Values and formatting


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (999, "999ns"),
        (1000, "1µs"),
        (1500, "1.5µs"),
        (999999, "999.999µs"),
        (1000000, "1ms"),
        (1234567, "1.234567ms"),
        (999999999, "999.999999ms"),
        (1000000000, "1s"),
        (1000000001, "1.000000001s"),
        (60000000000, "1m0s"),
        (61500000000, "1m1.5s"),
        (3600000000000, "1h0m0s"),
        (3661000000000, "1h1m1s"),
        (-1000000000, "-1s"),
        (-1, "-1ns"),
        (9223372036854775807, "2562047h47m16.854775807s"),
        (-9223372036854775808, "-2562047h47m16.854775808s"),
        (90061000000001, "25h1m1.000000001s"),
    ],
)
def test_duration_string_matches_go(ns: int, text: str) -> None:
    assert format_go_duration(ns) == text
    assert Duration(ns).go_string() == text


@pytest.mark.parametrize(
    ("ns", "text", "rfc3339"),
    [
        (0, "1970-01-01 00:00:00 +0000 UTC", "1970-01-01T00:00:00Z"),
        (1, "1970-01-01 00:00:00.000000001 +0000 UTC", "1970-01-01T00:00:00.000000001Z"),
        (-1, "1969-12-31 23:59:59.999999999 +0000 UTC", "1969-12-31T23:59:59.999999999Z"),
        (
            1500000000123456789,
            "2017-07-14 02:40:00.123456789 +0000 UTC",
            "2017-07-14T02:40:00.123456789Z",
        ),
        (1500000000120000000, "2017-07-14 02:40:00.12 +0000 UTC", "2017-07-14T02:40:00.12Z"),
        (951782400000000000, "2000-02-29 00:00:00 +0000 UTC", "2000-02-29T00:00:00Z"),
        (-1000000000000000000, "1938-04-24 22:13:20 +0000 UTC", "1938-04-24T22:13:20Z"),
        (9000000000000000000, "2255-03-14 16:00:00 +0000 UTC", "2255-03-14T16:00:00Z"),
    ],
)
def test_time_formats_match_go(ns: int, text: str, rfc3339: str) -> None:
    assert Time(ns).go_string() == text
    assert Time(ns).go_json() == f'"{rfc3339}"'


def test_time_json_rejects_years_past_9999() -> None:
    with pytest.raises(GoJSONError, match="year outside of range"):
        Time(253402300800 * 1_000_000_000).go_json()


def test_json_string_escapes_like_go() -> None:
    raw = '<&>\b\f\n\r\t\x01\x1f\u2028\u2029"\\é\ud800'
    assert json_string(raw) == (
        '"\\u003c\\u0026\\u003e\\b\\f\\n\\r\\t\\u0001\\u001f\\u2028\\u2029\\"\\\\é\\ufffd"'
    )


def test_json_of_maps_sorts_keys_and_encoder_adds_newline() -> None:
    value = {"b": [1, 2.5, None, True], "a": {"z": "x", "y": {}}}
    assert go_json(value) == '{"a":{"y":{},"z":"x"},"b":[1,2.5,null,true]}'
    assert go_json_encode(value) == go_json(value) + "\n"


def test_json_struct_tags_omitempty_and_embedding() -> None:
    inner = Struct("T", [Field("A", 1), Field("B", "")])
    outer = Struct(
        "U",
        [
            Field("T", inner, embedded=True),
            Field("C", "", json_name="c", omitempty=True),
            Field("D", [], json_name="d", omitempty=True),
            Field("E", 0, json_name="e"),
        ],
    )
    assert go_json(outer) == '{"A":1,"B":"","e":0}'
    assert outer.lookup("A") == 1
    with pytest.raises(KeyError):
        outer.lookup("Z")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_json_refuses_non_finite_floats(bad: float) -> None:
    with pytest.raises(GoJSONError, match="unsupported value"):
        go_json([bad])


def test_json_refuses_unknown_types() -> None:
    with pytest.raises(GoJSONError, match="unsupported type: object"):
        go_json(object())


# fmt flag handling, pinned from Go (flags apply inside `%!verb(...)` markers and to each
# element of a map or slice, precision truncates strings and zero-pads integers, and so on).
PRINTF_VECTORS = [
    ("%+0d", 1.5, "%!d(float64=+1.5)"),
    ("%05f", 1, "%!f(int=00001)"),
    ("%#12.2d", 1.5, "%!d(float64=         1.5)"),
    ("% 12.0c", False, "%!c(bool=       false)"),
    ("%-05.b", 0, "     "),
    ("%+05.2g", [1, "a"], "[%!g(int=  +01) %!g(string=0000a)]"),
    ("%0.f", {"k": 1.5, "b": "z"}, "map[%!f(string=):%!f(string=) %!f(string=):2]"),
    (
        "%+12.5e",
        {"k": 1.5, "b": "z"},
        "map[%!e(string=           b):%!e(string=           z) %!e(string=           k)"
        ":+1.50000e+00]",
    ),
    ("%#1.5g", 1.5, "1.5000"),
    ("%#.f", 1000000.0, "1000000."),
    ("%+05.2X", "héllo", "068C3"),
    ("%#1x", "héllo", "0x68c3a96c6c6f"),
    ("%#1.2q", "", "``"),
    ("%+q", "é", '"\\u00e9"'),
    ("%#o", 8, "010"),
    ("%012.x", 65, "          41"),
    ("%5v", {"a": 1}, "map[    a:    1]"),
    ("%-4d", [1, 22], "[1    22  ]"),
    ("%q", -1, "'\ufffd'"),
    ("%.3s", "abcdef", "abc"),
    ("%x", -255, "-ff"),
    ("%8.3f", -3.14159, "  -3.142"),
    ("%e", 0.0, "0.000000e+00"),
    ("%g", 1e100, "1e+100"),
    ("%.1g", 0.05, "0.05"),
    ("% d", 7, " 7"),
    ("%+v", {"a": -1.5}, "map[a:-1.5]"),
    ("%t", "x", "%!t(string=x)"),
]


@pytest.mark.parametrize(("fmt", "value", "expected"), PRINTF_VECTORS)
def test_printf_flags_match_go(fmt: str, value: Any, expected: str) -> None:
    assert Template.parse(f'{{{{ printf "{fmt}" .v }}}}').execute({"v": value}) == expected


def test_printf_non_finite_floats() -> None:
    text = go_sprintf(
        "%v|%v|%v|%+v|%05.1f|% v", math.nan, math.inf, -math.inf, math.nan, math.inf, math.nan
    )
    assert text == "NaN|+Inf|-Inf|NaN| +Inf| NaN"


def test_printf_verbs_on_stringers_and_ints() -> None:
    assert go_sprintf(
        "%s|%d|%v|%q|%c|%08.3f|%x", Duration(1500), Duration(1500), 1, "a", 65, -1.5, -255
    ) == ('1.5µs|1500|1|"a"|A|-001.500|-ff')
    assert go_sprintf("%", 1) == "%!(NOVERB)%!(EXTRA int=1)"
    assert go_sprintf("%z", 1) == "%!z(int=1)"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        (NO_VALUE, False),
        (0, False),
        (0.0, False),
        ("", False),
        ([], False),
        ({}, False),
        (1, True),
        ("x", True),
        ([0], True),
        (Time(0), True),
        (Struct("S", []), True),
    ],
)
def test_truth(value: Any, expected: bool) -> None:
    assert truth(value) is expected


_FINITE = st.floats(allow_nan=False, allow_infinity=False)


@given(_FINITE)
def test_float_formats_round_trip(x: float) -> None:
    assert float(format_float_g(x)) == x
    assert float(format_float_json(x)) == x
    assert float(json.loads(format_float_json(x))) == x


@given(_FINITE)
def test_float_v_uses_exponent_exactly_outside_go_range(x: float) -> None:
    text = format_float_g(abs(x))
    exponent = math.floor(math.log10(abs(x))) if x else 0
    uses_exponent = "e" in text
    assert uses_exponent == (x != 0 and (exponent < -4 or exponent >= 6)) or (
        # log10 can be off by one right at powers of ten; the digits decide there
        x != 0 and abs(abs(x) - 10.0**exponent) / abs(x) < 1e-12
    )


_JSONABLE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _FINITE | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@given(_JSONABLE)
def test_go_json_is_valid_json_with_the_same_content(value: Any) -> None:
    text = go_json(value)
    # Go writes integral floats without a point, so compare numbers as floats.
    assert json.loads(text, parse_int=float) == json.loads(json.dumps(value), parse_int=float)
    assert "<" not in text and ">" not in text and "&" not in text
