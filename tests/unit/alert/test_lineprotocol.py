"""Line protocol: InfluxDB 1.x parsing rules, error positions, and the encoder round trip."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kafkaops.alert import lineprotocol as lp
from kafkaops.alert.lineprotocol import LineError, Point, format_point, parse_lines

NOW = 1_600_000_000_123_456_789


def one(line: str, **kw: object) -> Point:
    result = parse_lines(line, now=NOW, **kw)  # type: ignore[arg-type]
    assert result.errors == [], result.errors
    assert len(result.points) == 1
    return result.points[0]


def error(line: str) -> LineError:
    result = parse_lines(line, now=NOW)
    assert result.points == []
    assert len(result.errors) == 1
    return result.errors[0]


def test_a_full_line() -> None:
    p = one('cpu,host=serverA,region=us-west usage_idle=12.5,count=3i,ok=true,msg="hi" 1000')
    assert p == Point(
        "cpu",
        {"host": "serverA", "region": "us-west"},
        {"usage_idle": 12.5, "count": 3, "ok": True, "msg": "hi"},
        1000,
    )
    assert type(p.fields["count"]) is int
    assert type(p.fields["usage_idle"]) is float


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1.0),
        ("1.", 1.0),
        (".5", 0.5),
        ("-0.64", -0.64),
        ("1e4", 1e4),
        ("1E4", 1e4),
        ("1.0e-4", 1e-4),
        ("-1.0e-4", -1e-4),
        ("6.632243e+06", 6632243.0),
        ("0009", 9.0),
        ("6632243i", 6632243),
        ("-1i", -1),
        ("9223372036854775807i", 9223372036854775807),
        ("-9223372036854775808i", -9223372036854775808),
        ("0009223372036854775807i", 9223372036854775807),
        ("-0009223372036854775808i", -9223372036854775808),
        ("18446744073709551615u", 18446744073709551615),
        ("0u", 0),
        ('"wè"', "wè"),
        ('"1,0"', "1,0"),
        ('"foo bar"', "foo bar"),
        ('"foo=bar"', "foo=bar"),
        ('"foo\\,bar"', "foo\\,bar"),
        ('"foo \\" bar"', 'foo " bar'),
        ('"test\\\\\\""', 'test\\"'),
        ('"test\\\\"', "test\\"),
        ('"test\\""', 'test"'),
        ('"{Hello\\"{,}\\" World}"', '{Hello"{,}" World}'),
        ('""', ""),
    ],
)
def test_field_values(text: str, value: object) -> None:
    got = one(f"cpu value={text} 1").fields["value"]
    assert got == value
    assert type(got) is type(value)


def test_every_boolean_spelling() -> None:
    line = "cpu true=true,t=t,T=T,TRUE=TRUE,True=True,false=false,f=f,F=F,FALSE=FALSE,False=False 1"
    fields = one(line).fields
    assert all(v is True for k, v in fields.items() if k.lower().startswith("t"))
    assert all(v is False for k, v in fields.items() if k.lower().startswith("f"))
    assert len(fields) == 10


@pytest.mark.parametrize(
    ("line", "measurement", "tags", "field_key"),
    [
        # InfluxDB's own TestParsePointUnescape vectors (models/points_test.go).
        ("foo\\,bar value=1i", "foo,bar", {}, "value"),
        ("cpu\\,main,regions=east\\,west value=1.0", "cpu,main", {"regions": "east,west"}, "value"),
        ("cpu\\ load,region=east value=1.0", "cpu load", {"region": "east"}, "value"),
        ("cpu=load,region=east value=1.0", "cpu=load", {"region": "east"}, "value"),
        ("cpu,region\\,zone=east value=1.0", "cpu", {"region,zone": "east"}, "value"),
        ("cpu,region\\ zone=east value=1.0", "cpu", {"region zone": "east"}, "value"),
        ("cpu,\\ =east value=1.0", "cpu", {" ": "east"}, "value"),
        ("cpu,regions=east\\ west value=1.0", "cpu", {"regions": "east west"}, "value"),
        ("cpu,regions=east value\\,ms=1.0", "cpu", {"regions": "east"}, "value,ms"),
        ("cpu,regions=east value\\ ms=1.0", "cpu", {"regions": "east"}, "value ms"),
        ("cpu,regions=eas\\t value=1.0", "cpu", {"regions": "eas\\t"}, "value"),
        ("cpu,regions=\\\\,\\,\\=east value=1.0", "cpu", {"regions": "\\,,=east"}, "value"),
        ("cpu \\a=1i", "cpu", {}, "\\a"),
        (
            "cpu=load,equals\\=foo=tag\\=value value=1i",
            "cpu=load",
            {"equals=foo": "tag=value"},
            "value",
        ),
        ('"cpu",host=serverA value=1.0', '"cpu"', {"host": "serverA"}, "value"),
        ('cpu,"host"="serverA" value=1.0', "cpu", {'"host"': '"serverA"'}, "value"),
        # Kapacitor reads the name through escape.Unescape, which also drops the `\` of `\=`.
        ("cpu\\=load,region=east value=1.0", "cpu=load", {"region": "east"}, "value"),
        ('cpu\\"x value=1', 'cpu"x', {}, "value"),
        ("cpu,a==b value=1", "cpu", {"a": "=b"}, "value"),
        ('cpu,host=a\\ b\\,c x\\=y\\"z=1', "cpu", {"host": "a b,c"}, 'x=y"z'),
    ],
)
def test_escaping(line: str, measurement: str, tags: dict[str, str], field_key: str) -> None:
    p = one(line)
    assert p.measurement == measurement
    assert p.tags == tags
    assert list(p.fields) == [field_key]


@pytest.mark.parametrize(
    ("line", "message", "column"),
    [
        (",cpu value=1", "missing measurement", 1),
        ("cpu", "missing fields", 4),
        ("cpu_load_short,host=server01,region=us-west", "missing fields", 44),
        ("cpu,host==", "missing fields", 11),
        ("=", "missing fields", 2),
        ("cpu ", "invalid field format", 5),
        ("cpu, value=1", "missing tag key", 5),
        ("cpu,", "missing tag key", 5),
        ("cpu,,,", "missing tag key", 5),
        ("cpu,host=serverA,=us-east value=1i", "missing tag key", 18),
        ("cpu,host=serverAa\\,,=us-east value=1i", "missing tag key", 21),
        ("cpu, =serverA value=1i", "missing tag key", 5),
        ("cpu,host", "missing tag value", 9),
        ("cpu,host,", "missing tag value", 9),
        ("cpu,host value=1i", "missing tag value", 9),
        ("cpu,host=serverA,region value=1i", "missing tag value", 24),
        ("cpu,host=serverA,region= value=1i", "missing tag value", 25),
        ("cpu,host=serverA,region=,zone=us-west value=1i", "missing tag value", 25),
        ("cpu,host=f=o,", "invalid tag format", 11),
        ("cpu,host=f\\==o,", "invalid tag format", 13),
        ("cpu,host=serverA,host=serverB value=1i 1000000000", "duplicate tags", 18),
        ("cpu,host=serverA,region=us-west =", "missing field key", 33),
        ("cpu,host=serverA,region=us-west =123i", "missing field key", 33),
        ("cpu,host=serverA value=123i,=456i", "missing field key", 29),
        ("cpu,host=serverA value=", "missing field value", 24),
        ("cpu,host=serverA value= 1000000000i", "missing field value", 24),
        ("cpu,host=serverA value=,value2=1i", "missing field value", 24),
        ("cpu,host=server01 1434055562000000000i", "invalid field format", 19),
        ("cpu,host=server01 value=1i,b", "invalid field format", 28),
        ("cpu a=1, b=2", "invalid field format", 9),
        ("cpu a=1,", "invalid field format", 9),
        ("cpu value=1a", "invalid number", 11),
        ("cpu value=1ii", "invalid number", 11),
        ("cpu value=1.0i", "invalid number", 11),
        ("cpu value=9ie10", "invalid number", 11),
        ("cpu value=9e10i", "invalid number", 11),
        ("cpu value=.1a", "invalid number", 11),
        ("cpu value=0.-1", "invalid number", 11),
        ("cpu value=-", "invalid number", 11),
        ("cpu value=1.1.1", "invalid number", 11),
        ("cpu value=.", "invalid number", 11),
        ("cpu value=-1u", "invalid number", 11),
        ("cpu value=NaN 1000000000", "invalid number", 11),
        ("cpu value=nAn 1000000000", "invalid number", 11),
        ("cpu value=1e", "invalid float", 11),
        ("cpu value=1e5e5", "invalid float", 11),
        ("cpu value=1" + "0" * 400, "invalid float", 11),
        ("cpu value=a", "invalid boolean", 11),
        ("cpu value=tru", "invalid boolean", 11),
        ('cpu value=true"', "invalid boolean", 11),
        ('cpu,host=serverA value="test', "unbalanced quotes", 24),
        ('cpu,host=serverA value="test""', "unbalanced quotes", 24),
        ('cpu value="test"x', "invalid field format", 17),
        ("cpu value=1 1-", "bad timestamp", 14),
        ("cpu value=1 -1?", "bad timestamp", 15),
        ("cpu value=1 -/", "bad timestamp", 14),
        ("cpu value=1 1\t", "bad timestamp", 14),
        ("cpu value=1 1 2", "point is invalid", 15),
        ("cpu value=1 -", 'strconv.ParseInt: parsing "-": invalid syntax', 13),
        (
            "cpu value=1 -92233720368547758078",
            'strconv.ParseInt: parsing "-92233720368547758078": value out of range',
            13,
        ),
        (
            "cpu value=1 9223372036854775807",
            "time 9223372036 is outside the range [-9223372036854775806, 9223372036854775806]",
            13,
        ),
    ],
)
def test_errors_name_the_reason_and_column(line: str, message: str, column: int) -> None:
    err = error(line)
    assert (err.line, err.column, err.message) == (1, column, message)


def test_integer_overflow_message_matches_influxdb() -> None:
    err = error("cpu,host=serverA,region=us-west value=9223372036854775808i")
    # The text InfluxDB's TestParsePointMaxInt64 expects, after our position prefix.
    assert str(err) == (
        "line 1 column 39: unable to parse 'cpu,host=serverA,region=us-west "
        "value=9223372036854775808i': unable to parse integer 9223372036854775808: "
        'strconv.ParseInt: parsing "9223372036854775808": value out of range'
    )
    assert error("cpu value=-9223372036854775809i").message.startswith("unable to parse integer")
    assert error("cpu value=18446744073709551616u").message.startswith("unable to parse unsigned")


def test_float_range_follows_influxdb() -> None:
    biggest = f"{1.7976931348623157e308:.1f}"
    assert one(f"cpu value={biggest}").fields["value"] == 1.7976931348623157e308
    assert one(f"cpu value=0000{biggest}").fields["value"] == 1.7976931348623157e308
    assert error(f"cpu value=1{biggest}").message == "invalid float"
    assert error(f"cpu value=-1{biggest}").message == "invalid float"


@pytest.mark.parametrize(
    ("precision", "stamp", "ns"),
    [
        ("ns", "5", 5),
        ("n", "5", 5),
        ("", "5", 5),
        ("u", "5", 5_000),
        ("us", "5", 5_000),
        ("µs", "5", 5_000),
        ("ms", "5", 5_000_000),
        ("s", "-5", -5_000_000_000),
        ("m", "5", 300_000_000_000),
        ("h", "5", 18_000_000_000_000),
    ],
)
def test_precision(precision: str, stamp: str, ns: int) -> None:
    assert one(f"cpu value=1 {stamp}", precision=precision).time == ns


def test_missing_timestamp_uses_now_truncated_to_the_precision() -> None:
    assert one("cpu value=1").time == NOW
    assert one("cpu value=1", precision="s").time == 1_600_000_000_000_000_000
    assert one("cpu value=1   ").time == NOW


def test_timestamp_range() -> None:
    assert one("cpu value=1 -1").time == -1
    assert one("cpu value=1 9223372036854775806").time == lp.MAX_NANO_TIME
    assert one("cpu value=1 -9223372036854775806").time == lp.MIN_NANO_TIME
    assert error("cpu value=1 9223372036854775807").message.startswith("time ")
    assert parse_lines("cpu value=1 9223372036855", now=0, precision="s").errors[0].message == (
        "time 9223372036855 is outside the range [-9223372036, 9223372036]"
    )


def test_unknown_precision_is_rejected_up_front() -> None:
    with pytest.raises(ValueError, match="unknown precision 'd'"):
        parse_lines("cpu value=1", now=0, precision="d")


def test_bad_lines_never_stop_good_ones_and_carry_their_line_numbers() -> None:
    body = "\n".join(
        [
            "# a comment",
            "cpu value=1 1",
            "",
            "   ",
            "cpu value= 2",
            "cpu,host=a value=3 3",
            "mem free=oops 4",
            "  cpu value=5 5",
        ]
    )
    result = parse_lines(body, now=NOW)
    assert [p.time for p in result.points] == [1, 3, 5]
    assert [(e.line, e.column, e.message) for e in result.errors] == [
        (5, 11, "missing field value"),
        (7, 10, "invalid boolean"),
    ]
    assert result.errors[1].text == "mem free=oops 4"


def test_a_quoted_newline_continues_the_line() -> None:
    body = 'cpu value=1,str="foo\nbar" 1\ncpu value=2 2\ncpu value="x\ny" oops\ncpu value=4 4'
    result = parse_lines(body, now=NOW)
    assert [p.fields for p in result.points] == [
        {"value": 1.0, "str": "foo\nbar"},
        {"value": 2.0},
        {"value": 4.0},
    ]
    assert [(e.line, e.column, e.message) for e in result.errors] == [
        (5, 4, "bad timestamp"),
    ]


def test_an_unbalanced_quote_in_a_tag_does_not_swallow_the_next_line() -> None:
    # InfluxDB's TestParsePointsUnbalancedQuotedTags.
    body = 'baz,mytag="a x=1 1441103862125\nbaz,mytag=a z=1 1441103862126'
    result = parse_lines(body, now=NOW)
    assert result.errors == []
    assert [(p.tags, p.time) for p in result.points] == [
        ({"mytag": '"a'}, 1441103862125),
        ({"mytag": "a"}, 1441103862126),
    ]


def test_a_comment_ends_at_its_newline_even_with_a_quote_in_it() -> None:
    result = parse_lines('# value="x\ncpu value=1 1\n  # "\ncpu value=2 2', now=NOW)
    assert [p.time for p in result.points] == [1, 2]
    assert result.errors == []


def test_an_escaped_newline_joins_lines_as_influxdb_does() -> None:
    result = parse_lines("cpu\\\nx value=1 1\ncpu value=2 2", now=NOW)
    assert [p.measurement for p in result.points] == ["cpu\\\nx", "cpu"]


def test_crlf_bodies_and_bytes() -> None:
    result = parse_lines(b"cpu value=1 1\r\ncpu value=2 2\r\n", now=NOW)
    assert [p.fields["value"] for p in result.points] == [1.0, 2.0]
    assert result.errors == []


def test_invalid_utf8_fails_only_its_line() -> None:
    result = parse_lines(b"cpu value=1 1\ncpu,host=\xff value=2 2\ncpu value=3 3", now=NOW)
    assert [p.time for p in result.points] == [1, 3]
    assert [(e.line, e.column, e.message) for e in result.errors] == [(2, 10, "invalid UTF-8")]


def test_many_tags_and_key_length_limit() -> None:
    tags = "".join(f",tag{i}=value{i}" for i in range(255))
    assert len(one(f"cpu{tags} value=1").tags) == 255
    long_name = "m" * 65536
    assert error(f"{long_name} value=1").message == "max key length exceeded: 65536 > 65535"
    near = "m" * 65530
    assert error(f"{near} value=1").message == "max key length exceeded: 65539 > 65535"


def test_duplicate_field_keeps_the_last_value() -> None:
    assert one("cpu a=1,a=2").fields == {"a": 2.0}


def test_long_error_text_is_shortened() -> None:
    err = error("cpu value=" + "x" * 500)
    assert err.text.endswith("...")
    assert len(err.text) == 203


# --------------------------------------------------------------------------------------------
# The cheap paths must agree with the exact scanner on everything.

_LINE_CHARS = st.sampled_from(list('ab01.-+eEiu"\\=, \ttTfF#\n'))
_TOKENS = st.sampled_from(
    ["cpu", "host", "a", "=", ",", " ", '"', "\\", "1", "-1", "1.5", "2i", "3u", "1e5",
     "true", "F", "x y", "\\ ", "\\,", "\\=", '\\"', "99999999999999999999i", "123", "\n"]
)  # fmt: skip
_FUZZ_LINES = st.one_of(
    st.text(_LINE_CHARS, max_size=40),
    st.lists(_TOKENS, max_size=14).map("".join),
)


def _outcome(fn: object, line: str) -> object:
    try:
        return fn(line, 0, 1000, 7)  # type: ignore[operator]
    except lp._BadLine as e:
        return ("error", e.offset, e.message)


@settings(max_examples=600)
@given(_FUZZ_LINES)
def test_fast_paths_agree_with_the_exact_scanner(line: str) -> None:
    assume(line and line[0] not in " \t\x00#")
    assert _outcome(lp._parse_point, line) == _outcome(lp._parse_exact_point, line)


@settings(max_examples=300)
@given(st.lists(_FUZZ_LINES, max_size=5).map("\n".join))
def test_line_splitting_agrees_with_influxdb_scan_line(body: str) -> None:
    expected_points: list[Point] = []
    expected_errors: list[LineError] = []
    pos, line_no = 0, 1
    while pos < len(body):
        newline = body.find("\n", pos)
        end = len(body) if newline < 0 else newline
        if lp._is_comment(body, pos, end):
            result = None
        else:
            end = lp._scan_line(body, pos, len(body))
            result = lp._parse_line(body[pos:end], line_no, 1, 7, False)
        if isinstance(result, Point):
            expected_points.append(result)
        elif result is not None:
            expected_errors.append(result)
        line_no += body.count("\n", pos, end) + 1
        pos = end + 1
    got = parse_lines(body, now=7)
    assert (got.points, got.errors) == (expected_points, expected_errors)


# --------------------------------------------------------------------------------------------
# Encoder

_NAME_CHARS = st.sampled_from(list('abcXYZ019_-.:,= "\\é#\t/'))
_NAMES = st.text(_NAME_CHARS, min_size=1, max_size=8)
_FIELD_VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.booleans(),
    st.text(st.sampled_from(list('ab "\\\n,=é')), max_size=8),
)


@settings(max_examples=400)
@given(
    _NAMES,
    st.dictionaries(_NAMES, _NAMES, max_size=3),
    st.dictionaries(_NAMES, _FIELD_VALUES, min_size=1, max_size=3),
    st.integers(min_value=lp.MIN_NANO_TIME, max_value=lp.MAX_NANO_TIME),
)
def test_format_then_parse_gives_the_point_back(
    measurement: str, tags: dict[str, str], fields: dict[str, object], time: int
) -> None:
    point = Point(measurement, tags, fields, time)  # type: ignore[arg-type]
    try:
        line = format_point(point)
    except ValueError:
        assume(False)
    result = parse_lines(line, now=0)
    assert result.errors == []
    assert result.points == [point]
    assert [type(v) for v in result.points[0].fields.values()] == [type(v) for v in fields.values()]


def test_format_point_escapes_like_influxdb() -> None:
    point = Point("cpu load", {"host": "a,b", "k=": "v w"}, {"f ,=": 'say "hi" \\'}, 5)
    assert (
        format_point(point) == 'cpu\\ load,host=a\\,b,k\\==v\\ w f\\ \\,\\=="say \\"hi\\" \\\\" 5'
    )
    assert format_point(Point("m", {}, {"i": 3, "u": 2**63, "b": False, "f": 1.0}, 0)) == (
        "m i=3i,u=9223372036854775808u,b=false,f=1.0 0"
    )


@pytest.mark.parametrize(
    "point",
    [
        Point("", {}, {"a": 1}, 0),
        Point("#m", {}, {"a": 1}, 0),
        Point("m\\", {}, {"a": 1}, 0),
        Point("a\\ b", {}, {"a": 1}, 0),
        Point("m", {"k\\,": "v"}, {"a": 1}, 0),
        Point("m", {"k": ""}, {"a": 1}, 0),
        Point("m", {"k": "a\nb"}, {"a": 1}, 0),
        Point("m", {}, {}, 0),
        Point("m", {}, {"a\\": 1}, 0),
        Point("m", {}, {"\ta": 1}, 0),
        Point("m", {}, {"a": float("nan")}, 0),
        Point("m", {}, {"a": 2**64}, 0),
        Point("m", {}, {"a": 1}, lp.MAX_NANO_TIME + 1),
    ],
)
def test_format_point_refuses_what_line_protocol_cannot_carry(point: Point) -> None:
    with pytest.raises(ValueError):
        format_point(point)
