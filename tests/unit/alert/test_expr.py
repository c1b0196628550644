"""Lambda expressions: Kapacitor's typing, operators, functions and per-expression state."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, timedelta, timezone
from typing import Any

import pytest
import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkaops.alert import expr
from kafkaops.alert.expr import (
    MISSING,
    CompileError,
    Duration,
    EvalError,
    MatchScope,
    Regex,
    Time,
    compile_expression,
    evaluate_constant,
    resolve_identifiers,
)
from kafkaops.alert.lineprotocol import Point
from kafkaops.alert.tickscript import TickError, parse_lambda

SECOND = 1_000_000_000


def compiled(text: str, variables: dict[str, object] | None = None, **kw: Any) -> expr.CompiledExpr:
    node = resolve_identifiers(parse_lambda(text), variables or {})
    return compile_expression(node, text=text, **kw)


def point(fields: dict[str, Any] | None = None, tags: dict[str, str] | None = None, t: int = 0):
    return Point("m", tags or {}, fields or {}, t)


def ev(text: str, fields: dict[str, Any] | None = None, tags: dict[str, str] | None = None,
       **kw: Any) -> Any:  # fmt: skip
    return compiled(text, **kw).evaluate(point(fields, tags))


def err(text: str, fields: dict[str, Any] | None = None, tags: dict[str, str] | None = None) -> str:
    result = ev(text, fields, tags)
    assert isinstance(result, EvalError), result
    return result.message


def compile_err(text: str) -> CompileError:
    with pytest.raises(CompileError) as info:
        compiled(text)
    return info.value


# --------------------------------------------------------------------------------------------
# references and literals


def test_fields_first_then_tags() -> None:
    assert ev('"usage_idle" < 10', {"usage_idle": 5.0}) is True
    assert ev("\"host\" == 'web1'", tags={"host": "web1"}) is True
    assert ev('"n" + 1', {"n": 41}) == 42


def test_field_and_tag_with_the_same_name_is_an_error() -> None:
    message = err("\"host\" == 'a'", {"host": "a"}, {"host": "a"})
    assert message == 'cannot have field and tags with same name "host"'


def test_missing_references_name_their_side() -> None:
    assert err('"x" > 1') == 'left reference value "x" is missing value'
    assert err('1 < "x"') == 'right reference value "x" is missing value'
    assert err('"x"') == 'referenced value "x" is missing'
    assert err('-"x"') == 'reference value "x" is missing value'
    assert err('"x" > "y"', {"y": 1.0}) == 'left reference value "x" is missing value'


def test_time_reference_is_the_point_time() -> None:
    p = point({"v": 1.0}, t=1_700_000_000 * SECOND + 5)
    assert compiled('unixNano("time")').evaluate(p) == 1_700_000_000 * SECOND + 5
    assert compiled('"time"').evaluate(p) == Time(1_700_000_000 * SECOND + 5)
    # time takes part in no operator, as in Kapacitor
    with pytest.raises(CompileError, match="invalid comparison operator > for type time"):
        compiled('"time" > 5')


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 3 - 2", 5),
        ("8 / 2 / 2", 2),
        ("2 > 1 == TRUE", True),
        ("TRUE OR FALSE AND FALSE", True),
        ("(TRUE OR FALSE) AND FALSE", False),
        ("-2 * 3", -6),
        ("!TRUE AND FALSE", False),
        ("!(TRUE AND FALSE)", True),
        ("1 < 2 AND 'a' < 'b'", True),
        ("--3", 3),
        ("7 % 4 * 2", 6),
        ("1.5 + 1.5 == 3.0", True),
        ("'ab' + 'cd'", "abcd"),
        ("'b' > 'a'", True),
        ("1 == 1.0", True),
        ("1 != 1.5", True),
        ("2 >= 1.5", True),
        ("TRUE == FALSE", False),
        ("TRUE != FALSE", True),
        ("0644 == 420", True),
        ("5m == 300s", True),
        ("1u == 1000000000u / 1000000000", True),
        ("1ms < 2ms", True),
        ("1d == 24h", True),
        ("1w == 7d", True),
        ("5m + 30s", Duration(330 * SECOND)),
        ("5m - 6m", Duration(-60 * SECOND)),
        ("5m * 2", Duration(600 * SECOND)),
        ("2 * 5m", Duration(600 * SECOND)),
        ("5m * 1.5", Duration(450 * SECOND)),
        ("0.5 * 1s", Duration(SECOND // 2)),
        ("5m / 2", Duration(150 * SECOND)),
        ("1s / 4.0", Duration(SECOND // 4)),
        ("5m / 1m", 5),
        ("-5m", Duration(-300 * SECOND)),
        ("'x' =~ /x/", True),
        ("'x' !~ /x/", False),
    ],
)
def test_operators_and_precedence(text: str, value: object) -> None:
    got = ev(text)
    assert got == value
    assert type(got) is type(value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 + 1.0", "mismatched type to binary operator. got int + float. see bool(), int(), "
                    "float(), string(), duration()"),
        ("1.0 * 2", "mismatched type to binary operator. got float * int. see bool(), int(), "
                    "float(), string(), duration()"),
        ("'a' * 'b'", "invalid math operator * for type string"),
        ("TRUE + TRUE", "invalid math operator + for type boolean"),
        ("TRUE < FALSE", "invalid comparison operator < for type boolean"),
        ("1.5 % 1.0", "invalid math operator % for type float"),
        ("5 AND TRUE", "invalid logical operator AND for type int"),
        ("TRUE OR 'x'", "mismatched type to binary operator. got boolean OR string. see bool(), "
                        "int(), float(), string(), duration()"),
        ("'a' =~ 'a'", "mismatched type to binary operator. got string =~ string. see bool(), "
                       "int(), float(), string(), duration()"),
        ("5m + 1", "mismatched type to binary operator. got duration + int. see bool(), int(), "
                   "float(), string(), duration()"),
        ("-'a'", "invalid unary operator - for type string"),
        ("!1", "invalid unary operator ! for type int"),
        ("1 / 0", "integer divide by zero"),
        ("1 % 0", "integer divide by zero"),
        ("5m / 0", "integer divide by zero"),
    ],
)  # fmt: skip
def test_type_errors_between_literals_are_found_at_compile_time(text: str, message: str) -> None:
    e = compile_err(text)
    assert e.message == message
    assert (e.line, e.column) != (0, 0)


def test_strict_typing_at_runtime_names_both_types() -> None:
    assert err('"x" + 1', {"x": 1.5}) == (
        "mismatched type to binary operator. got float + int. see bool(), int(), float(), "
        "string(), duration()"
    )
    assert err('"x" > 1', {"x": "str"}) == (
        "mismatched type to binary operator. got string > int. see bool(), int(), float(), "
        "string(), duration()"
    )
    assert err('"x" =~ /a/', {"x": 1.0}) == "invalid comparison operator =~ for type float"
    assert err('"x" > 1', {"x": True}) == "invalid comparison operator > for type boolean"
    assert err('-"x"', {"x": "s"}) == "invalid unary operator - for type string"
    assert ev('-"x"', {"x": 2}) == -2
    assert ev('!"x"', {"x": False}) is True


def test_int_arithmetic_is_go_int64() -> None:
    assert ev("9223372036854775807 + 1") == -(2**63)
    assert ev('"a" * "b"', {"a": 2**62, "b": 4}) == 0
    assert ev("-7 / 2") == -3
    assert ev("-7 % 2") == -1
    assert ev("7 % -2") == 1
    assert err('"a" / "b"', {"a": 1, "b": 0}) == "integer divide by zero"
    assert ev('"a" / "b"', {"a": -(2**63), "b": -1}) == -(2**63)


@settings(max_examples=300)
@given(st.integers(-(2**63), 2**63 - 1), st.integers(-(2**63), 2**63 - 1).filter(bool))
def test_int_division_identity(a: int, b: int) -> None:
    fields = {"a": a, "b": b}
    q, r = ev('"a" / "b"', fields), ev('"a" % "b"', fields)
    assert expr._wrap(q * b + r) == a
    assert abs(r) < abs(b)
    assert r == 0 or (r < 0) == (a < 0)


def test_float_division_by_zero_is_ieee() -> None:
    assert ev('"a" / "b"', {"a": 1.0, "b": 0.0}) == math.inf
    assert ev('"a" / "b"', {"a": -1.0, "b": 0.0}) == -math.inf
    assert ev('"a" / "b"', {"a": 1.0, "b": -0.0}) == -math.inf
    assert math.isnan(ev('"a" / "b"', {"a": 0.0, "b": 0.0}))


def test_mixed_int_float_comparison_converts_the_int_like_go() -> None:
    # float64(2**53 + 1) == 2**53, so Go calls them equal; exact Python would not.
    assert ev('"i" == "f"', {"i": 2**53 + 1, "f": float(2**53)}) is True
    assert ev('"f" == "i"', {"i": 2**53 + 1, "f": float(2**53)}) is True
    assert ev('"i" == 9007199254740992.0', {"i": 2**53 + 1}) is True


# --------------------------------------------------------------------------------------------
# AND / OR


def test_and_or_short_circuit() -> None:
    e = compiled('"a" > 0 AND count() == 1')
    assert e.evaluate(point({"a": 0.0})) is False  # count() not called
    assert e.evaluate(point({"a": 1.0})) is True  # first call of count()
    o = compiled('"a" > 0 OR count() == 1')
    assert o.evaluate(point({"a": 1.0})) is True
    assert o.evaluate(point({"a": 0.0})) is True


def test_reference_operands_are_type_checked_before_short_circuit() -> None:
    assert err('FALSE AND "flag"') == 'right reference value "flag" is missing value'
    assert err('FALSE AND "flag"', {"flag": 1.0}) == (
        "mismatched type to binary operator. got boolean AND float. see bool(), int(), float(), "
        "string(), duration()"
    )
    assert err('"flag" OR TRUE', {"flag": 1.0}) == "invalid logical operator OR for type float"
    assert err('"flag" OR TRUE') == 'left reference value "flag" is missing value'
    assert ev('"flag" AND "other"', {"flag": True, "other": False}) is False
    # A nested comparison is typed boolean without running, so isPresent guards it.
    assert ev('isPresent("x") AND "x" > 5') is False
    assert ev('isPresent("x") AND "x" > 5', {"x": 6.0}) is True


def test_logical_operands_that_are_not_references_are_checked_when_they_run() -> None:
    assert err('"x" + 1 AND TRUE', {"x": 1}) == "invalid logical operator AND for type int"
    assert err('TRUE AND "x" + 1', {"x": 1}) == (
        "mismatched type to binary operator. got boolean AND int. see bool(), int(), float(), "
        "string(), duration()"
    )


def test_deeply_chained_rules_compile() -> None:
    text = " OR ".join(f'"f{i}" == {i}' for i in range(400))
    e = compiled(text)
    assert e.evaluate(point({f"f{i}": -1 for i in range(399)} | {"f399": 399})) is True


# --------------------------------------------------------------------------------------------
# fast paths must mean the same as the generic dispatch

_VALUES = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True),
    st.sampled_from([0, 1, -1, 2**53, 2**53 + 1, 0.0, -0.0, 0.5, "", "a", "b", True, False]),
)


@settings(max_examples=500)
@given(_VALUES, _VALUES, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
def test_literal_comparisons_match_reference_comparisons(x: Any, k: Any, op: str) -> None:
    literal = {True: "TRUE", False: "FALSE"}.get(k) if isinstance(k, bool) else None
    if literal is None:
        if isinstance(k, str):
            literal = f"'{k}'"
        elif isinstance(k, float) and not math.isfinite(k):
            return
        elif isinstance(k, float) or k >= 0:
            literal = str(k)
            if isinstance(k, float):  # TICKscript floats have a point and no exponent
                literal = expr.format_go_float(k)
                literal += "" if "." in literal else ".0"
        else:
            return  # negative literals are unary minus on a positive literal
        if isinstance(k, float) and k < 0:
            return
    fast = compiled(f'"x" {op} {literal}')
    generic = compiled(f'"x" {op} "k"')
    p = point({"x": x, "k": k})
    a, b = fast.evaluate(p), generic.evaluate(p)
    if isinstance(a, EvalError) or isinstance(b, EvalError):
        assert isinstance(a, EvalError)
        assert isinstance(b, EvalError)
        assert a.message == b.message
    else:
        assert a is b


# --------------------------------------------------------------------------------------------
# regexes


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("^web", "web01", True),
        ("^server01$", "server01", True),
        ("^server01$", "server01\n", False),  # Go's $ is the end of the text
        (r"\d", "٣", False),  # Go's \d is ASCII
        (r"\w+", "é", False),
        (r"\s", "\v", False),
        (r"\bfoo\b", "a foo b", True),
        (r"\bé", "é", False),
        ("(?i)error", "ERROR", True),
        ("(?m)^b$", "a\nb\nc", True),
        ("[[:digit:]]+", "x42", True),
        (r"\pL", "é", True),
        ("a{,2}", "a{,2}", True),  # literal in RE2
        ("a.c", "a\nc", False),
        ("(?s)a.c", "a\nc", True),
        ("[]x]", "]", True),
        (r"\Qa.b\E", "a.b", True),
        (r"\Qa.b\E", "axb", False),
    ],
)
def test_regex_semantics_are_go_regexp(pattern: str, text: str, expected: bool) -> None:
    r = Regex(pattern)
    assert r.search(text) is expected
    assert ev(f'"s" =~ /{pattern}/', tags={"s": text}) is expected


def test_regex_backends() -> None:
    assert not Regex("^web[0-9]+$").uses_re2
    assert Regex(r"\pL").uses_re2
    assert Regex("(?m)^a$").uses_re2
    with pytest.raises(ValueError, match="invalid regex"):
        Regex("(?<=a)b")  # RE2 has no look-behind, so neither has Kapacitor
    with pytest.raises(TickError, match="line 1 char 8: invalid regex /\\(/: missing \\)"):
        compiled('"a" =~ /(/')


_PIECES = st.sampled_from(
    ["a", "b", "K", "\u017f", "é", ".", "^", "$", r"\d", r"\w", r"\s", r"\b", r"\B", r"\D", "[ab]",
     "[^a]", r"[\d]", r"[\w-]", "(a|b)", "(?:ab)", "(?P<n>a)", "*", "+", "?", "{2}", "*?",
     "(?i)", "(?s)", r"\.", r"\$", "x{1,3}", " ", "\n", "[]a]", r"\A", r"\z"]
)  # fmt: skip


@settings(max_examples=400)
@given(
    st.lists(_PIECES, min_size=1, max_size=6).map("".join),
    st.text("abKk\u017fSé1 _\n.-", max_size=8),
)
def test_python_translation_agrees_with_re2(pattern: str, text: str) -> None:
    try:
        reference = re2.compile(pattern)
    except re2.error:
        return
    fast = Regex(pattern)
    slow = Regex(pattern)
    slow._compiled = reference
    assert fast.search(text) is slow.search(text)
    assert fast.replace_all(text, "<$0>") == slow.replace_all(text, "<$0>")


def test_regex_replace_follows_go() -> None:
    assert ev("regexReplace(/a*/, 'baaac', 'X')") == "XbXcX"  # no empty match after a match
    assert ev("regexReplace(/(\\w+)@(?P<d>\\w+)/, 'joe@host', '${d}:$1$$')") == "host:joe$"
    assert ev("regexReplace(/(o)/, 'foo', '$1x')") == "f"  # $1x names group "1x": empty
    assert ev("regexReplace(/(o)/, 'foo', '${1}x')") == "foxox"
    assert ev("regexReplace(/(o)/, 'foo', '$9')") == "f"


# --------------------------------------------------------------------------------------------
# functions


def test_sigma_is_welford_over_one_shared_accumulator() -> None:
    e = compiled('sigma("v")')
    values = [1.0, 2.0, 4.0, 7.0, 11.0]
    got = [e.evaluate(point({"v": v})) for v in values]
    assert got[:2] == [0.0, pytest.approx(0.7071067811865476)]
    seen = values[:5]
    mean, sd = statistics.mean(seen), statistics.stdev(seen)
    assert got[4] == pytest.approx(abs(11.0 - mean) / sd)
    assert ev('sigma("v")', {"v": 3.0}) == 0.0  # a fresh expression has fresh state
    assert (
        compiled('sigma("v")')
        .evaluate(point({"v": 1}))
        .message.startswith(  # type: ignore[union-attr]
            'Cannot call function "sigma" with args (int)'
        )
    )


def test_sigma_of_constant_series_is_zero() -> None:
    e = compiled('sigma("v")')
    assert [e.evaluate(point({"v": 5.0})) for _ in range(3)] == [0.0, 0.0, 0.0]


def test_count_spread_and_state_sharing() -> None:
    c = compiled("count()")
    assert [c.evaluate(point()) for _ in range(3)] == [1, 2, 3]
    # All count() calls in one expression share one counter, as in Kapacitor.
    both = compiled("count() + count()")
    assert both.evaluate(point()) == 3
    s = compiled('spread("v")')
    assert [s.evaluate(point({"v": v})) for v in (5.0, 3.0, 9.0, math.nan, 4.0)] == [
        0.0,
        2.0,
        6.0,
        6.0,
        6.0,
    ]


def test_state_can_be_kept_per_group() -> None:
    c = compiled("count()")
    group_a, group_b = c.new_state(), c.new_state()
    assert [c.evaluate(point(), group_a) for _ in range(2)] == [1, 2]
    assert c.evaluate(point(), group_b) == 1
    assert c.evaluate(point()) == 1  # the expression's own state is separate again


def test_if_is_eager_and_needs_matching_types() -> None:
    e = compiled("if(TRUE, count(), count())")
    assert e.evaluate(point()) == 1
    assert e.evaluate(point()) == 3  # both branches ran each time
    assert ev("if(\"x\" > 1, 'big', 'small')", {"x": 2.0}) == "big"
    assert compile_err("if(TRUE, 1, 2.0)").message == (
        'Cannot call function "if" with args (boolean,int,float), available signatures are '
        "[(boolean,boolean,boolean), (boolean,duration,duration), (boolean,float,float), "
        "(boolean,int,int), (boolean,regex,regex), (boolean,string,string), "
        "(boolean,time,time)]."
    )
    assert err('if("c", 1, 2)', {"c": 1.0}).startswith('Cannot call function "if" with args')


def test_is_present() -> None:
    assert ev('isPresent("x")') is False
    assert ev('isPresent("x")', {"x": 0.0}) is True
    assert ev('isPresent("x")', tags={"x": "a"}) is True
    assert ev("isPresent(1)") is True


def test_missing_function_arguments() -> None:
    assert err('abs("x")') == 'Cannot call function "abs" argument "x" is missing'
    assert err('pow("x", "y")') == 'Cannot call function "pow" arguments "x", "y" are missing'


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("abs(-1.5)", 1.5),
        ("int(3.9)", 3),
        ("int(-3.9)", -3),
        ("int('-12')", -12),
        ("int(TRUE)", 1),
        ("float(2)", 2.0),
        ("float('1e3')", 1000.0),
        ("float(FALSE)", 0.0),
        ("string(1.5)", "1.5"),
        ("string(1000000000000000000000.0)", "1000000000000000000000"),
        ("string(0.000001)", "0.000001"),
        ("string(-0.0)", "-0"),
        ("string(42)", "42"),
        ("string(TRUE)", "true"),
        ("string(90s)", "90s"),
        ("string(1500ms)", "1500ms"),
        ("string(2h)", "2h"),
        ("string(14d)", "2w"),
        ("string(1u)", "1u"),
        ("bool('true')", True),
        ("bool('0')", False),
        ("bool(1)", True),
        ("bool(0.0)", False),
        ("duration(5m)", Duration(300 * SECOND)),
        ("duration(5, 1s)", Duration(5 * SECOND)),
        ("duration(1.5, 1s)", Duration(1500_000_000)),
        ("duration('1h30m', 1s)", Duration(5400 * SECOND)),
        ("duration('-10u', 1s)", Duration(-10_000)),
        ("strContains('hello', 'ell')", True),
        ("strContainsAny('hello', 'xyz')", False),
        ("strHasPrefix('hello', 'he')", True),
        ("strHasSuffix('hello', 'lo')", True),
        ("strCount('cheese', 'e')", 3),
        ("strCount('five', '')", 5),
        ("strIndex('héllo', 'l')", 3),
        ("strIndexAny('héllo', 'lo')", 3),
        ("strLastIndex('héllo', 'l')", 4),
        ("strLastIndexAny('héllo', 'hé')", 1),
        ("strLastIndex('hé', '')", 3),
        ("strLength('héllo')", 6),
        ("strReplace('aaa', 'a', 'b', 2)", "bba"),
        ("strReplace('aaa', 'a', 'b', -1)", "bbb"),
        ("strSubstring('hello', 1, 3)", "el"),
        ("strToLower('HeLLo')", "hello"),
        ("strToUpper('straße')", "STRAßE"),
        ("strTrim('xxhixx', 'x')", "hi"),
        ("strTrimLeft('xxhixx', 'x')", "hixx"),
        ("strTrimRight('xxhixx', 'x')", "xxhi"),
        ("strTrimPrefix('prefix-x', 'prefix-')", "x"),
        ("strTrimSuffix('x.tick', '.tick')", "x"),
        ("strTrimSpace('\u00a0 hi \t')", "hi"),
        ("strTrimSpace('\x1chi')", "\x1chi"),
        ("humanBytes(82854982)", "83 MB"),
        ("humanBytes(1000.0)", "1.0 kB"),
        ("humanBytes(9)", "9 B"),
        ("max(1.0, 2.0)", 2.0),
        ("min(1.0, 2.0)", 1.0),
        ("pow(2.0, 10.0)", 1024.0),
        ("pow(0.0, -1.0)", math.inf),
        ("pow(-0.0, -3.0)", -math.inf),
        ("pow(-10.0, 401.0)", -math.inf),
        ("sqrt(16.0)", 4.0),
        ("log(0.0)", -math.inf),
        ("log2(8.0)", 3.0),
        ("log10(1000.0)", 3.0),
        ("log1p(-1.0)", -math.inf),
        ("exp(1000.0)", math.inf),
        ("sinh(-1000.0)", -math.inf),
        ("atanh(1.0)", math.inf),
        ("gamma(0.0)", math.inf),
        ("gamma(5.0)", 24.0),
        ("logb(8.0)", 3.0),
        ("logb(0.0)", -math.inf),
        ("pow10(2)", 100.0),
        ("pow10(400)", math.inf),
        ("pow10(-400)", 0.0),
        ("floor(-0.5)", -1.0),
        ("ceil(0.5)", 1.0),
        ("trunc(-1.7)", -1.0),
        ("mod(7.0, 3.0)", 1.0),
        ("mod(-7.0, 3.0)", -1.0),
        ("atan2(1.0, 1.0)", math.pi / 4),
        ("hypot(3.0, 4.0)", 5.0),
        ("cbrt(27.0)", 3.0),
        ("cbrt(-0.125)", -0.5),
    ],
)
def test_functions(text: str, value: object) -> None:
    got = ev(text)
    assert got == value
    assert type(got) is type(value)


@pytest.mark.parametrize(
    "text",
    ["sqrt(-1.0)", "acos(2.0)", "mod(1.0, 0.0)", "max(1.0, 0.0 / 0.0 * 1.0)", "sin(1.0/0.0)"],
)
def test_functions_return_nan_where_go_does(text: str) -> None:
    assert math.isnan(ev(text))


def test_negative_zero_rounding_keeps_its_sign() -> None:
    assert math.copysign(1.0, ev("ceil(-0.5)")) == -1.0
    assert math.copysign(1.0, ev("max(-0.0, 0.0)")) == 1.0
    assert math.copysign(1.0, ev("min(0.0, -0.0)")) == -1.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("int('x')", 'error calling "int": strconv.ParseInt: parsing "x": invalid syntax'),
        ("int(' 1')", 'error calling "int": strconv.ParseInt: parsing " 1": invalid syntax'),
        ("float('1_0')", 'error calling "float": strconv.ParseFloat: parsing "1_0": invalid '
                         "syntax"),
        ("float('1e400')", 'error calling "float": strconv.ParseFloat: parsing "1e400": value out '
                           "of range"),
        ("bool('yes')", 'error calling "bool": strconv.ParseBool: parsing "yes": invalid syntax'),
        ("bool(2)", 'error calling "bool": cannot convert 2 to boolean'),
        ("bool(2.5)", 'error calling "bool": cannot convert 2.5 to boolean'),
        ("bool(1000000000000000000000.0)", 'error calling "bool": cannot convert 1e+21 to '
                                             "boolean"),
        ("bool(1234567.0)", 'error calling "bool": cannot convert 1.234567e+06 to boolean'),
        ("bool(123456.0)", 'error calling "bool": cannot convert 123456 to boolean'),
        ("duration('5x', 1s)", 'error calling "duration": invalid duration string "5x"'),
        ("strSubstring('hello', 0, 5)", 'error calling "strSubstring": stop index too large for '
                                        "string in strSubstring: 5"),
        ("strSubstring('hello', -1, 2)", 'error calling "strSubstring": found negative index for '
                                         "strSubstring: -1"),
        ("strSubstring('hello', 3, 2)", 'error calling "strSubstring": slice bounds out of range '
                                        "[3:2]"),
    ],
)  # fmt: skip
def test_function_errors(text: str, message: str) -> None:
    assert compile_err(text).message == message


def test_function_signatures() -> None:
    assert compile_err("abs(1)").message == (
        'Cannot call function "abs" with args (int), available signatures are [(float)].'
    )
    assert err('abs("x")', {"x": 1}) == (
        'Cannot call function "abs" with args (int), available signatures are [(float)].'
    )
    assert compile_err("abs(1.0, 2.0)").message.startswith('Cannot call function "abs" with args')
    assert compile_err('strLength("x", "y")').message.startswith("Cannot call function")
    assert compile_err("nope(1)").message == 'function "nope" is undefined'
    assert compile_err("j0(1.0)").message == 'function "j0" is not supported'
    assert compile_err("level()").message == 'function "level" is undefined'


def test_time_functions_use_the_given_zone() -> None:
    t = point(t=1_700_000_000 * SECOND)  # 2023-11-14 22:13:20 UTC, a Tuesday
    parts = "[hour, minute, weekday, day, month, year]"
    calls = {name: f'{name}("time")' for name in parts.strip("[]").split(", ")}
    got = {k: compiled(v, tz=UTC).evaluate(t) for k, v in calls.items()}
    assert got == {"hour": 22, "minute": 13, "weekday": 2, "day": 14, "month": 11, "year": 2023}
    plus_two = timezone(timedelta(hours=2))
    assert compiled('hour("time")', tz=plus_two).evaluate(t) == 0
    assert compiled('day("time")', tz=plus_two).evaluate(t) == 15


def test_now_uses_the_injected_clock() -> None:
    e = compiled("unixNano(now())", clock=lambda: 123)
    assert e.evaluate(point()) == 123


# --------------------------------------------------------------------------------------------
# match expressions of topic handlers


def match(text: str, **scope: Any) -> Any:
    defaults: dict[str, Any] = {
        "tags": {},
        "level": 2,
        "previous_level": 0,
        "name": "cpu",
        "task_name": "cpu_alert",
        "duration": 0,
    }
    return expr.compile_match(parse_lambda(text), text=text).evaluate(
        MatchScope(**(defaults | scope))
    )


def test_match_expressions() -> None:
    assert match("level() >= WARNING") is True
    assert match("level() == CRITICAL", level=3) is True
    assert match("changed() == TRUE") is True
    assert match("changed()", previous_level=2) is False
    assert match("name() == 'cpu' AND taskName() == 'cpu_alert'") is True
    assert match("\"host\" == 's001.example.com'", tags={"host": "s001.example.com"}) is True
    assert match("alertDuration() > 5m", duration=6 * 60 * SECOND) is True
    assert match("duration() > 5m", duration=4 * 60 * SECOND) is False  # the documented name
    assert match("duration(1, 1s) == 1s") is True
    assert isinstance(match("\"host\" == 'a'"), EvalError)  # a missing tag is an error


# --------------------------------------------------------------------------------------------
# API details


def test_evaluate_returns_errors_instead_of_raising() -> None:
    e = compiled('"x" > 1')
    result = e.evaluate(point())
    assert isinstance(result, EvalError)
    assert e.evaluate_bool(point({"x": 2})) is True
    assert e.evaluate_bool(point({"x": "a"})).message.startswith("mismatched")  # type: ignore[union-attr]
    assert compiled('"x"').evaluate_bool(point({"x": 1.0})).message == (  # type: ignore[union-attr]
        "expression returned unexpected type float"
    )


def test_as_predicate_raises_what_evaluate_bool_returns() -> None:
    check = compiled('"x" > 1').as_predicate()
    assert check(point({"x": 2})) is True
    assert check(point({"x": 0})) is False
    with pytest.raises(EvalError, match='left reference value "x" is missing value'):
        check(point())
    with pytest.raises(EvalError, match="unexpected type float"):
        compiled('"x"').as_predicate()(point({"x": 1.0}))
    e = compiled("count() == 2")
    shared, per_group = e.as_predicate(), e.as_predicate(e.new_state())
    assert shared(point()) is False
    assert e.evaluate(point()) is True  # the same counter, now at 2
    assert per_group(point()) is False  # its own counter, at 1


def test_static_types_and_text() -> None:
    assert compiled('"x" > 1').type == "boolean"
    assert compiled('"x" + 1').type is None
    assert compiled("count() + 1").type == "int"
    assert compiled('"x" > 1').text == '"x" > 1'
    assert "def _expr" in compiled('"x" > 1').source


def test_constant_evaluation() -> None:
    assert evaluate_constant(parse_lambda("5m * 2")) == Duration(600 * SECOND)
    assert evaluate_constant(parse_lambda("'a' + string(1)")) == "a1"
    with pytest.raises(CompileError, match="only allowed in a lambda"):
        evaluate_constant(parse_lambda('"x" + 1'))


def test_identifiers_resolve_from_variables() -> None:
    lam = parse_lambda('"v" > 1')
    assert compiled("limit < 3", {"limit": 2}).evaluate(point()) is True
    assert compiled("r", {"r": lam}).evaluate(point({"v": 2.0})) is True
    with pytest.raises(CompileError, match=r'name "nope" is undefined\. Names in scope: a'):
        compiled("nope", {"a": 1})
    with pytest.raises(CompileError, match="cannot be used in a lambda"):
        compiled("xs", {"xs": ["a"]})


def test_missing_sentinel_and_value_types() -> None:
    assert repr(MISSING) == "MISSING"
    assert expr.type_name(MISSING) == "missing"
    assert expr.type_name(Duration(1)) == "duration"
    assert expr.type_name(None) == "invalid type"
    assert str(Duration(90 * SECOND)) == "90s"
    assert Duration(1500).to_timedelta() == timedelta(microseconds=1.5)
    assert repr(Regex("a+")) == "/a+/"
    assert Regex("a") == Regex("a")
    assert hash(Regex("a")) == hash(Regex("a"))
    assert str(CompileError("boom", 2, 3)) == "line 2 char 3: boom"
    assert str(CompileError("boom")) == "boom"


@pytest.mark.parametrize(
    ("text", "ns"),
    [("90s", 90 * SECOND), ("1h30m", 5400 * SECOND), ("-5m", -300 * SECOND), ("10u", 10_000),
     ("10µ", 10_000), ("3ns", 3), ("1w", 7 * 86400 * SECOND)],
)  # fmt: skip
def test_influx_durations(text: str, ns: int) -> None:
    assert expr.parse_influx_duration(text) == ns
    assert expr.parse_influx_duration(expr.format_influx_duration(ns)) == ns


@pytest.mark.parametrize("text", ["", "5", "m", "5x", "--5m", "1.5h"])
def test_bad_influx_durations(text: str) -> None:
    with pytest.raises(ValueError):
        expr.parse_influx_duration(text)


@settings(max_examples=300)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_go_float_formatting_round_trips(x: float) -> None:
    text = expr.format_go_float(x)
    assert "e" not in text
    assert float(text) == x
