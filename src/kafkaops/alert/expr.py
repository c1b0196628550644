"""Kapacitor lambda expressions (TICKscript `lambda:` bodies, topic-handler `match`).

The semantics are those of Kapacitor's tick/stateful package, because users bring rules that
already run there:

* strict typing: int and float may be compared but never mixed in arithmetic, so `"x" + 1` on a
  float field is an EvalError ("mismatched type to binary operator. got float + int ...");
* references ("name") are looked up in the fields, then the tags; a name present in both is an
  error; a missing name is an error wherever it is used except in isPresent();
* AND/OR short-circuit, but the type of a reference operand is checked before either side runs;
* int arithmetic wraps at 64 bits and `/` `%` truncate toward zero, as in Go;
* sigma(), count() and spread() keep state per compiled expression, and all calls of one of
  them inside the same expression share a single accumulator (Kapacitor keeps one Funcs map per
  expression). Kapacitor's alert node compiles each level expression once per node, so that state
  is shared by every group; callers wanting it per group pass their own FunctionState.

A rule runs on every point, so an expression is compiled once into a single generated Python
function: no tree is walked per point, literal-only subtrees are folded, and comparing a
reference with a literal runs inline. Evaluation errors are returned, never raised.
"""

from __future__ import annotations

import math
import operator
import re
import struct
import time as _time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any, Protocol

import re2

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MASK = (1 << 64) - 1
_EXACT_FLOAT_INT = 1 << 53


class EvalError(Exception):
    """An expression failed on one point; evaluate() returns it so the caller can count/log it."""

    @property
    def message(self) -> str:
        return str(self.args[0])


class CompileError(ValueError):
    """A lambda that can never run; line and column point into the TICKscript or match text."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column

    def __str__(self) -> str:
        if self.line:
            return f"line {self.line} char {self.column}: {self.message}"
        return self.message


# --------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True, slots=True)
class Duration:
    """A Go time.Duration in nanoseconds; its own type so that the typing rules see it."""

    ns: int

    def __str__(self) -> str:
        return format_influx_duration(self.ns)

    def to_timedelta(self) -> timedelta:
        return timedelta(microseconds=self.ns / 1000)


@dataclass(frozen=True, slots=True)
class Time:
    """The point time as the `"time"` reference and now() see it: nanoseconds since the epoch."""

    ns: int


class Regex:
    """A regex literal with Go's (RE2) syntax and semantics.

    RE2 validates every pattern, as Go would. Matching then uses Python's re when the pattern
    translates to one that means the same (ASCII \\d \\w \\s \\b, `$` only at the very end),
    because google-re2's binding costs ~20x more per call; anything unusual stays on RE2.
    """

    __slots__ = ("_compiled", "pattern")

    _OPTIONS = re2.Options()
    _OPTIONS.log_errors = False

    def __init__(self, pattern: str) -> None:
        try:
            checked = re2.compile(pattern, self._OPTIONS)
        except re2.error as e:
            reason = e.args[0].decode() if isinstance(e.args[0], bytes) else str(e)
            raise ValueError(f"invalid regex /{pattern}/: {reason}") from None
        self.pattern = pattern
        self._compiled: Any = _python_regex(pattern) or checked

    @property
    def uses_re2(self) -> bool:
        """Whether matching runs on RE2 (the pattern had no faithful Python translation)."""
        return not isinstance(self._compiled, re.Pattern)

    def search(self, s: str) -> bool:
        return self._compiled.search(s) is not None

    def replace_all(self, src: str, template: str) -> str:
        """Go's Regexp.ReplaceAllString: `$1`, `${name}` and `$$` in the template.

        Python's sub also replaces an empty match right after a non-empty one; Go does not, so
        this is Go's loop.
        """
        out: list[str] = []
        pos = last_end = 0
        while pos <= len(src):
            m = self._compiled.search(src, pos)
            if m is None:
                break
            start, end = m.span()
            out.append(src[last_end:start])
            if end > last_end or start == 0:
                out.append(_expand_go_template(self._compiled, m, template))
            last_end = end
            pos = pos + 1 if end <= pos else end
        out.append(src[last_end:])
        return "".join(out)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Regex) and other.pattern == self.pattern

    def __hash__(self) -> int:
        return hash(self.pattern)

    def __repr__(self) -> str:
        return f"/{self.pattern}/"


# Go's Perl classes are ASCII-only; Python's follow Unicode unless told otherwise. \B is left to
# RE2: Python's never matches an empty string.
_GO_CLASS_ESCAPES = {"d": "0-9", "w": "0-9A-Za-z_", "s": "\\t\\n\\f\\r "}
_GO_ESCAPES = {
    "d": "[0-9]",
    "D": "[^0-9]",
    "w": "[0-9A-Za-z_]",
    "W": "[^0-9A-Za-z_]",
    "s": "[\\t\\n\\f\\r ]",
    "S": "[^\\t\\n\\f\\r ]",
    "b": "(?a:\\b)",
    "A": "\\A",
    "z": "\\Z",
}
_PLAIN_ESCAPES = frozenset("tnrfv")
_GO_FLAG_GROUP = re.compile(r"\(\?[a-zA-Z-]*[:)]")


def _python_regex(pattern: str) -> re.Pattern[str] | None:
    """Python re equivalent of an RE2-valid pattern, or None when not provably the same."""
    for flags in _GO_FLAG_GROUP.findall(pattern):
        if "m" in flags or "U" in flags:
            return None
    out: list[str] = []
    i = 0
    n = len(pattern)
    class_start = -1
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                return None
            e = pattern[i + 1]
            if class_start >= 0 and e in _GO_CLASS_ESCAPES:
                out.append(_GO_CLASS_ESCAPES[e])
            elif class_start < 0 and e in _GO_ESCAPES:
                out.append(_GO_ESCAPES[e])
            elif e in _PLAIN_ESCAPES or (e.isascii() and not e.isalnum()):
                out.append(c + e)
            else:
                return None
            i += 2
            continue
        if class_start >= 0:
            if c == "[":
                return None
            if c == "]" and i > class_start:
                class_start = -1
        elif c == "[":
            out.append(c)
            i += 1
            if pattern.startswith("^", i):
                out.append("^")
                i += 1
            class_start = i  # a "]" right here is a literal, not the end of the class
            continue
        elif c == "$":
            c = "\\Z"
        elif c == "{" and pattern.startswith(",", i + 1):
            return None
        out.append(c)
        i += 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return re.compile("".join(out))
    except (re.error, Warning):
        return None


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()
"""What a reference to an absent field or tag evaluates to."""

Value = int | float | str | bool | Duration | Time | Regex

_TYPE_NAMES: dict[type, str] = {
    float: "float",
    int: "int",
    str: "string",
    bool: "boolean",
    Regex: "regex",
    Time: "time",
    Duration: "duration",
    _Missing: "missing",
}
_NAME_TYPES = {name: t for t, name in _TYPE_NAMES.items()}


def type_name(value: object) -> str:
    """Kapacitor's name for the type of a value (ast.ValueType.String)."""
    return _TYPE_NAMES.get(type(value), "invalid type")


# --------------------------------------------------------------------------------------------
# Syntax tree (built by tickscript.py's parser; positions are 1-based line and column)


@dataclass(frozen=True, slots=True)
class Literal:
    value: Value
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True)
class Reference:
    name: str
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True)
class Identifier:
    name: str
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True)
class Unary:
    op: str
    operand: Node
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True)
class Binary:
    op: str
    left: Node
    right: Node
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Node, ...]
    line: int = 0
    column: int = 0


Node = Literal | Reference | Identifier | Unary | Binary | Call

_SCALAR_TYPES = (bool, int, float, str, Duration, Regex)


def resolve_identifiers(node: Node, variables: Mapping[str, object]) -> Node:
    """Replace bare identifiers by the values of TICKscript vars, as Kapacitor does when a lambda
    is evaluated; a var holding another lambda's expression is inlined."""
    match node:
        case Identifier(name=name):
            if name not in variables:
                names = ", ".join(sorted(variables))
                raise CompileError(
                    f'name "{name}" is undefined. Names in scope: {names}', node.line, node.column
                )
            value = variables[name]
            if isinstance(value, Literal | Reference | Unary | Binary | Call):
                return value
            if isinstance(value, _SCALAR_TYPES):
                return Literal(value, node.line, node.column)
            raise CompileError(
                f"var {name} cannot be used in a lambda expression", node.line, node.column
            )
        case Unary():
            return Unary(
                node.op, resolve_identifiers(node.operand, variables), node.line, node.column
            )
        case Binary():
            left = resolve_identifiers(node.left, variables)
            right = resolve_identifiers(node.right, variables)
            return Binary(node.op, left, right, node.line, node.column)
        case Call():
            args = tuple(resolve_identifiers(a, variables) for a in node.args)
            return Call(node.name, args, node.line, node.column)
    return node


# --------------------------------------------------------------------------------------------
# Go arithmetic


def _wrap(x: int) -> int:
    """int64 two's-complement overflow, as Go does silently."""
    if _INT64_MIN <= x <= _INT64_MAX:
        return x
    return ((x - _INT64_MIN) & _UINT64_MASK) + _INT64_MIN


def _f2i(x: float) -> int:
    """Go's float64 -> int64 conversion on amd64: NaN and out-of-range give MinInt64."""
    if math.isnan(x) or not -9.223372036854775808e18 <= x < 9.223372036854775808e18:
        return _INT64_MIN
    return int(x)


def _idiv(a: int, b: int) -> int:
    if b == 0:
        raise EvalError("integer divide by zero")
    q = abs(a) // abs(b)
    return _wrap(-q if (a < 0) != (b < 0) else q)


def _imod(a: int, b: int) -> int:
    if b == 0:
        raise EvalError("integer divide by zero")
    r = abs(a) % abs(b)
    return -r if a < 0 else r


def _fdiv(a: float, b: float) -> float:
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


# --------------------------------------------------------------------------------------------
# Binary and unary operations: (op, left type, right type) -> implementation


_OPS: dict[tuple[str, type, type], Callable[[Any, Any], Any]] = {}
_RESULT: dict[tuple[str, type, type], str] = {}
_INLINE: dict[tuple[str, type, type], str] = {}
_COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
_PY_COMPARE = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _op(
    op: str, types: tuple[type, type], result: str, impl: Callable[[Any, Any], Any], inline: str
) -> None:
    key = (op, types[0], types[1])
    _OPS[key] = impl
    _RESULT[key] = result
    _INLINE[key] = inline


def _build_operations() -> None:
    for op, cmp in _PY_COMPARE.items():
        _op(op, (int, int), "boolean", cmp, f"({{a}} {op} {{b}})")
        _op(op, (float, float), "boolean", cmp, f"({{a}} {op} {{b}})")
        _op(op, (str, str), "boolean", cmp, f"({{a}} {op} {{b}})")
        # Go converts the int side to float64 before comparing.
        _op(
            op,
            (int, float),
            "boolean",
            lambda a, b, c=cmp: c(float(a), b),
            f"(float({{a}}) {op} {{b}})",
        )
        _op(
            op,
            (float, int),
            "boolean",
            lambda a, b, c=cmp: c(a, float(b)),
            f"({{a}} {op} float({{b}}))",
        )
        _op(
            op,
            (Duration, Duration),
            "boolean",
            lambda a, b, c=cmp: c(a.ns, b.ns),
            f"({{a}}.ns {op} {{b}}.ns)",
        )
    for op in ("==", "!="):
        _op(op, (bool, bool), "boolean", _PY_COMPARE[op], f"({{a}} {op} {{b}})")
    _op("=~", (str, Regex), "boolean", lambda s, r: r.search(s), "{b}.search({a})")
    _op("!~", (str, Regex), "boolean", lambda s, r: not r.search(s), "(not {b}.search({a}))")

    _op("+", (int, int), "int", lambda a, b: _wrap(a + b), "_wrap({a} + {b})")
    _op("-", (int, int), "int", lambda a, b: _wrap(a - b), "_wrap({a} - {b})")
    _op("*", (int, int), "int", lambda a, b: _wrap(a * b), "_wrap({a} * {b})")
    _op("/", (int, int), "int", _idiv, "_idiv({a}, {b})")
    _op("%", (int, int), "int", _imod, "_imod({a}, {b})")
    _op("+", (float, float), "float", operator.add, "({a} + {b})")
    _op("-", (float, float), "float", operator.sub, "({a} - {b})")
    _op("*", (float, float), "float", operator.mul, "({a} * {b})")
    _op("/", (float, float), "float", _fdiv, "_fdiv({a}, {b})")
    _op("+", (str, str), "string", operator.add, "({a} + {b})")

    d = Duration
    _op("+", (d, d), "duration", lambda a, b: d(_wrap(a.ns + b.ns)), "_D(_wrap({a}.ns + {b}.ns))")
    _op("-", (d, d), "duration", lambda a, b: d(_wrap(a.ns - b.ns)), "_D(_wrap({a}.ns - {b}.ns))")
    _op("*", (d, int), "duration", lambda a, b: d(_wrap(a.ns * b)), "_D(_wrap({a}.ns * {b}))")
    _op("*", (int, d), "duration", lambda a, b: d(_wrap(a * b.ns)), "_D(_wrap({a} * {b}.ns))")
    _op("*", (d, float), "duration", lambda a, b: d(_f2i(a.ns * b)), "_D(_f2i({a}.ns * {b}))")
    _op("*", (float, d), "duration", lambda a, b: d(_f2i(a * b.ns)), "_D(_f2i({a} * {b}.ns))")
    _op("/", (d, int), "duration", lambda a, b: d(_idiv(a.ns, b)), "_D(_idiv({a}.ns, {b}))")
    _op(
        "/",
        (d, float),
        "duration",
        lambda a, b: d(_f2i(_fdiv(float(a.ns), b))),
        "_D(_f2i(_fdiv(float({a}.ns), {b})))",
    )
    _op("/", (d, d), "int", lambda a, b: _idiv(a.ns, b.ns), "_idiv({a}.ns, {b}.ns)")


def _operators_by_type() -> dict[str, set[str]]:
    """The operators each type takes part in at all (Kapacitor's typeToBinaryOperators)."""
    table: dict[str, set[str]] = {"boolean": {"AND", "OR"}}
    for op, left, right in _OPS:
        table.setdefault(_TYPE_NAMES[left], set()).add(op)
        table.setdefault(_TYPE_NAMES[right], set()).add(op)
    return table


_build_operations()
_OPS_FOR_TYPE = _operators_by_type()

_UNARY: dict[tuple[str, type], Callable[[Any], Any]] = {
    ("-", int): lambda v: _wrap(-v),
    ("-", float): operator.neg,
    ("-", Duration): lambda v: Duration(_wrap(-v.ns)),
    ("!", bool): operator.not_,
}
_UNARY_INLINE = {
    ("-", int): "_wrap(-{x})",
    ("-", float): "(-{x})",
    ("-", Duration): "_D(_wrap(-{x}.ns))",
    ("!", bool): "(not {x})",
}
_SEE_CONVERSIONS = "see bool(), int(), float(), string(), duration()"


def _boolean_operator(op: str) -> bool:
    """Whether the operator yields a boolean (comparisons and regex matches)."""
    return op in _COMPARISONS or op in ("=~", "!~")


def _operator_kind(op: str) -> str:
    if op in ("AND", "OR"):
        return "logical"
    return "math" if op in ("+", "-", "*", "/", "%") else "comparison"


def _type_error(op: str, lt: str, rt: str) -> str:
    # Kapacitor's determineError checks the operator against the left type only (its check of
    # the right side repeats the left lookup), so the right type only shows in "mismatched".
    if op not in _OPS_FOR_TYPE.get(lt, ()):
        return f"invalid {_operator_kind(op)} operator {op} for type {lt}"
    return f"mismatched type to binary operator. got {lt} {op} {rt}. {_SEE_CONVERSIONS}"


@dataclass(frozen=True, slots=True)
class _Site:
    """Operator and reference names of one operation, for runtime error messages."""

    op: str
    left_ref: str | None = None
    right_ref: str | None = None


def _binary_error(site: _Site, a: object, b: object) -> str:
    if a is MISSING:
        return f'left reference value "{site.left_ref}" is missing value'
    if b is MISSING:
        return f'right reference value "{site.right_ref}" is missing value'
    return _type_error(site.op, type_name(a), type_name(b))


def _dyn(site: _Site, a: object, b: object) -> Any:
    impl = _OPS.get((site.op, type(a), type(b)))
    if impl is None:
        raise EvalError(_binary_error(site, a, b))
    return impl(a, b)


def _need_bool(site: _Site, v: object, side: str) -> bool:
    if v is True or v is False:
        return v
    if v is MISSING:
        ref = site.left_ref if side == "left" else site.right_ref
        raise EvalError(f'{side} reference value "{ref}" is missing value')
    if side == "left":
        raise EvalError(f"invalid logical operator {site.op} for type {type_name(v)}")
    raise EvalError(
        f"mismatched type to binary operator. got boolean {site.op} {type_name(v)}. "
        + _SEE_CONVERSIONS
    )


def _unary(site: _Site, v: object) -> Any:
    impl = _UNARY.get((site.op, type(v)))
    if impl is None:
        if v is MISSING:
            raise EvalError(f'reference value "{site.left_ref}" is missing value')
        raise EvalError(f"invalid unary operator {site.op} for type {type_name(v)}")
    return impl(v)


# --------------------------------------------------------------------------------------------
# Go formatting and parsing used by the conversion functions

_DURATION_UNITS = (
    (604_800_000_000_000, "w"),
    (86_400_000_000_000, "d"),
    (3_600_000_000_000, "h"),
    (60_000_000_000, "m"),
    (1_000_000_000, "s"),
    (1_000_000, "ms"),
    (1_000, "u"),
)


def format_influx_duration(ns: int) -> str:
    """influxql.FormatDuration: the largest unit that divides the value exactly."""
    if ns == 0:
        return "0s"
    for size, unit in _DURATION_UNITS:
        if ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"


_INFLUX_DURATION_PART = re.compile(r"([0-9]+)(ns|ms|u|µ|s|m|h|d|w)")
_UNIT_NS = {
    "ns": 1,
    "u": 1_000,
    "µ": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
    "w": 604_800_000_000_000,
}


def parse_influx_duration(s: str) -> int:
    """influxql.ParseDuration ("90s", "1h30m", "-5m", "10u"); ValueError if malformed."""
    body = s[1:] if s.startswith("-") else s
    if len(s) < 2 or not body:
        raise ValueError(f"invalid duration {s!r}")
    total = 0
    pos = 0
    while pos < len(body):
        m = _INFLUX_DURATION_PART.match(body, pos)
        if m is None:
            raise ValueError(f"invalid duration {s!r}")
        total += int(m.group(1)) * _UNIT_NS[m.group(2)]
        pos = m.end()
    if total > _INT64_MAX:
        raise ValueError(f"overflowed duration {s}: choose a smaller duration or INF")
    return -total if s.startswith("-") else total


def _go_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_go_float(x: float) -> str:
    """strconv.FormatFloat(x, 'f', -1, 64): shortest digits, never an exponent."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    digits, exponent = _shortest_digits(x)
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    point = len(digits) + exponent
    if point <= 0:
        text = "0." + "0" * -point + digits
    elif point >= len(digits):
        text = digits + "0" * (point - len(digits))
    else:
        text = digits[:point] + "." + digits[point:]
    return sign + text


def _shortest_digits(x: float) -> tuple[str, int]:
    """Shortest round-trip digit string of |x| and the power of ten of its last digit."""
    mantissa, _, exp = repr(abs(x)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0") or "0"
    exponent = (int(exp) if exp else 0) - len(frac)
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    return (stripped or "0"), exponent if stripped else 0


def _go_float_v(x: float) -> str:
    """fmt's %v for a float64: shortest digits, %e form when the exponent is < -4 or >= 6."""
    if math.isnan(x) or math.isinf(x):
        return format_go_float(x)
    digits, exponent = _shortest_digits(x)
    e = len(digits) + exponent - 1
    if -4 <= e < 6:
        return format_go_float(x)
    sign = "-" if x < 0 else ""
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mant}e{'+' if e >= 0 else '-'}{abs(e):02d}"


_GO_INT = re.compile(r"[+-]?[0-9]+")
_GO_FLOAT = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)", re.I
)
_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _parse_bool(s: str) -> bool:
    if s in _GO_TRUE:
        return True
    if s in _GO_FALSE:
        return False
    raise EvalError(f"strconv.ParseBool: parsing {_go_quote(s)}: invalid syntax")


def _parse_int(s: str) -> int:
    if not _GO_INT.fullmatch(s):
        raise EvalError(f"strconv.ParseInt: parsing {_go_quote(s)}: invalid syntax")
    value = int(s)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise EvalError(f"strconv.ParseInt: parsing {_go_quote(s)}: value out of range")
    return value


def _parse_float(s: str) -> float:
    if not _GO_FLOAT.fullmatch(s):
        raise EvalError(f"strconv.ParseFloat: parsing {_go_quote(s)}: invalid syntax")
    value = float(s)
    if math.isinf(value) and "n" not in s.lower():
        raise EvalError(f"strconv.ParseFloat: parsing {_go_quote(s)}: value out of range")
    return value


def _num_to_bool(v: float) -> bool:
    if v == 0:
        return False
    if v == 1:
        return True
    shown = _go_float_v(v) if isinstance(v, float) else str(v)
    raise EvalError(f"cannot convert {shown} to boolean")


def _duration_of(s: str) -> Duration:
    try:
        return Duration(parse_influx_duration(s))
    except ValueError:
        raise EvalError(f"invalid duration string {_go_quote(s)}") from None


# --------------------------------------------------------------------------------------------
# Go math: NaN and infinities where Python's math raises


def _go_math1(
    fn: Callable[[float], float],
    pole: Callable[[float], float | None] | None = None,
    *,
    odd: bool = False,
) -> Callable[[float], float]:
    """Wrap a math function: a domain error gives NaN (or the pole's infinity), an overflow
    gives +Inf, or an infinity with x's sign for an odd function."""

    def call(x: float) -> float:
        try:
            return fn(x)
        except ValueError:
            if pole is not None and (r := pole(x)) is not None:
                return r
            return math.nan
        except OverflowError:
            return math.copysign(math.inf, x) if odd else math.inf

    return call


def _log_pole(x: float) -> float | None:
    return -math.inf if x == 0 else None


def _round_keeping_sign(fn: Callable[[float], int]) -> Callable[[float], float]:
    def call(x: float) -> float:
        if not math.isfinite(x):
            return x
        r = float(fn(x))
        return math.copysign(r, x) if r == 0 else r

    return call


def _odd_integer(y: float) -> bool:
    return math.isfinite(y) and y.is_integer() and abs(y) < _EXACT_FLOAT_INT and int(y) % 2 == 1


_CBRT_C = 5.42857142857142815906e-01  # 19/35
_CBRT_D = -7.05306122448979611050e-01  # -864/1225
_CBRT_E = 1.41428571428571436819e00  # 99/70
_CBRT_F = 1.60714285714285720630e00  # 45/28
_CBRT_G = 3.57142857142857150787e-01  # 5/14


def _bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def _from_bits(b: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", b & _UINT64_MASK))[0]


def _go_cbrt(x: float) -> float:
    """Go's math.Cbrt (FreeBSD's algorithm): exact on perfect cubes, where libm can be 1 ulp off."""
    if x == 0 or not math.isfinite(x):
        return x
    sign = x < 0
    x = abs(x)
    t = _from_bits(_bits(x) // 3 + (715094163 << 32))
    if x < 2.2250738585072014e-308:  # subnormal
        t = _from_bits(_bits(float(1 << 54) * x) // 3 + (696219795 << 32))
    r = t * t / x
    s = _CBRT_C + r * t
    t *= _CBRT_G + _CBRT_F / (s + _CBRT_E + _CBRT_D / s)
    t = _from_bits((_bits(t) & (0xFFFFFFFFC << 28)) + (1 << 30))
    s = t * t
    r = x / s
    w = t + t
    r = (r - t) / (w + r)
    t = t + t * r
    return -t if sign else t


def _go_pow(x: float, y: float) -> float:
    try:
        return math.pow(x, y)
    except ValueError:
        if x == 0 and y < 0:
            return math.copysign(math.inf, x) if _odd_integer(y) else math.inf
        return math.nan
    except OverflowError:
        return -math.inf if x < 0 and _odd_integer(y) else math.inf


def _go_max(x: float, y: float) -> float:
    if math.inf in (x, y):
        return math.inf
    if math.isnan(x) or math.isnan(y):
        return math.nan
    if x == 0 and y == 0:
        return y if math.copysign(1.0, x) < 0 else x
    return x if x > y else y


def _go_min(x: float, y: float) -> float:
    if -math.inf in (x, y):
        return -math.inf
    if math.isnan(x) or math.isnan(y):
        return math.nan
    if x == 0 and y == 0:
        return x if math.copysign(1.0, x) < 0 else y
    return x if x < y else y


def _go_logb(x: float) -> float:
    if x == 0:
        return -math.inf
    if math.isinf(x):
        return math.inf
    if math.isnan(x):
        return x
    return float(math.frexp(x)[1] - 1)


def _go_pow10(n: int) -> float:
    if n < -323:
        return 0.0
    if n > 308:
        return math.inf
    return float(f"1e{n}")


_MATH1: dict[str, Callable[[float], float]] = {
    "abs": math.fabs,
    "acos": _go_math1(math.acos),
    "acosh": _go_math1(math.acosh),
    "asin": _go_math1(math.asin),
    "asinh": math.asinh,
    "atan": math.atan,
    "atanh": _go_math1(math.atanh, lambda x: math.copysign(math.inf, x) if abs(x) == 1 else None),
    "cbrt": _go_cbrt,
    "ceil": _round_keeping_sign(math.ceil),
    "cos": _go_math1(math.cos),
    "cosh": _go_math1(math.cosh),
    "erf": math.erf,
    "erfc": math.erfc,
    "exp": _go_math1(math.exp),
    "exp2": _go_math1(math.exp2),
    "expm1": _go_math1(math.expm1),
    "floor": _round_keeping_sign(math.floor),
    "gamma": _go_math1(math.gamma, lambda x: math.copysign(math.inf, x) if x == 0 else None),
    "log": _go_math1(math.log, _log_pole),
    "log10": _go_math1(math.log10, _log_pole),
    "log1p": _go_math1(math.log1p, lambda x: -math.inf if x == -1 else None),
    "log2": _go_math1(math.log2, _log_pole),
    "logb": _go_logb,
    "sin": _go_math1(math.sin),
    "sinh": _go_math1(math.sinh, odd=True),
    "sqrt": _go_math1(math.sqrt),
    "tan": _go_math1(math.tan),
    "tanh": math.tanh,
    "trunc": _round_keeping_sign(math.trunc),
}


def _go_fmod(x: float, y: float) -> float:
    try:
        return math.fmod(x, y)
    except ValueError:
        return math.nan


_MATH2: dict[str, Callable[[float, float], float]] = {
    "atan2": math.atan2,
    "hypot": math.hypot,
    "max": _go_max,
    "min": _go_min,
    "mod": _go_fmod,
    "pow": _go_pow,
}
# Go's Bessel functions have no counterpart in Python's standard library.
_UNSUPPORTED_FUNCTIONS = frozenset({"j0", "j1", "jn", "y0", "y1", "yn"})


# --------------------------------------------------------------------------------------------
# Strings: Kapacitor hands Go's strings package UTF-8 bytes, so indexes and lengths count bytes


def _byte_offset(s: str, i: int) -> int:
    return i if i < 0 or s.isascii() else len(s[:i].encode())


def _index_any(s: str, chars: str, last: bool) -> int:
    positions = range(len(s) - 1, -1, -1) if last else range(len(s))
    for i in positions:
        if s[i] in chars:
            return _byte_offset(s, i)
    return -1


def _substring(s: str, start: int, stop: int) -> str:
    data = s.encode()
    if start < 0:
        raise EvalError(f"found negative index for strSubstring: {start}")
    if stop < 0:
        raise EvalError(f"found negative index for strSubstring: {stop}")
    if stop >= len(data):
        raise EvalError(f"stop index too large for string in strSubstring: {stop}")
    if start > stop:
        raise EvalError(f"slice bounds out of range [{start}:{stop}]")
    return data[start:stop].decode("utf-8", "replace")


def _simple_case(s: str, convert: Callable[[str], str]) -> str:
    # Go maps rune by rune (simple case mapping); Python's full mapping may grow a character.
    if s.isascii():
        return convert(s)
    return "".join(c2 if len(c2 := convert(c)) == 1 else c for c in s)


# unicode.IsSpace: ASCII spaces, NEL, NBSP and the White_Space property.
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

_STRING2: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "strContains": ("boolean", lambda s, sub: sub in s),
    "strContainsAny": ("boolean", lambda s, chars: any(c in s for c in chars)),
    "strCount": ("int", lambda s, sub: s.count(sub)),
    "strHasPrefix": ("boolean", str.startswith),
    "strHasSuffix": ("boolean", str.endswith),
    "strIndex": ("int", lambda s, sub: _byte_offset(s, s.find(sub))),
    "strIndexAny": ("int", lambda s, chars: _index_any(s, chars, last=False)),
    "strLastIndex": ("int", lambda s, sub: _byte_offset(s, s.rfind(sub))),
    "strLastIndexAny": ("int", lambda s, chars: _index_any(s, chars, last=True)),
    "strTrim": ("string", str.strip),
    "strTrimLeft": ("string", str.lstrip),
    "strTrimPrefix": ("string", str.removeprefix),
    "strTrimRight": ("string", str.rstrip),
    "strTrimSuffix": ("string", str.removesuffix),
}
_STRING1: dict[str, tuple[str, Callable[[str], Any]]] = {
    "strLength": ("int", lambda s: len(s.encode())),
    "strToLower": ("string", lambda s: _simple_case(s, str.lower)),
    "strToUpper": ("string", lambda s: _simple_case(s, str.upper)),
    "strTrimSpace": ("string", lambda s: s.strip(_GO_SPACE)),
}

_GO_TEMPLATE = re.compile(r"\$(?:(\$)|\{(\w+)\}|(\w+))")


def _expand_go_template(compiled: Any, m: Any, template: str) -> str:
    def group(name: str) -> str:
        if name.isascii() and name.isdigit() and not (name[0] == "0" and len(name) > 1):
            index = int(name)
        else:
            index = compiled.groupindex.get(name, -1)
        if 0 <= index <= compiled.groups:
            return m.group(index) or ""
        return ""

    def one(t: re.Match[str]) -> str:
        if t.group(1):
            return "$"
        return group(t.group(2) or t.group(3))

    return _GO_TEMPLATE.sub(one, template)


def _human_bytes(v: float) -> str:
    """go-humanize Bytes: SI units, one decimal below 10."""
    if isinstance(v, float):
        n = int(v) & _UINT64_MASK if math.isfinite(v) else 1 << 63
    else:
        n = v & _UINT64_MASK
    if n < 10:
        return f"{n} B"
    e = math.floor(math.log(n) / math.log(1000))
    suffix = ("B", "kB", "MB", "GB", "TB", "PB", "EB")[e]
    val = math.floor(n / 1000.0**e * 10 + 0.5) / 10
    return f"{val:.0f} {suffix}" if val >= 10 else f"{val:.1f} {suffix}"


# --------------------------------------------------------------------------------------------
# Function state and scopes


class FunctionState:
    """The accumulators of sigma(), count() and spread() for one expression instance."""

    __slots__ = ("count", "sigma_m2", "sigma_mean", "sigma_n", "spread_max", "spread_min")

    def __init__(self) -> None:
        self.count = 0
        self.sigma_n = 0.0
        self.sigma_mean = 0.0
        self.sigma_m2 = 0.0
        self.spread_min = math.inf
        self.spread_max = -math.inf


def _sigma(st: FunctionState, _scope: object, x: float) -> float:
    st.sigma_n += 1.0
    delta = x - st.sigma_mean
    st.sigma_mean += delta / st.sigma_n
    st.sigma_m2 += delta * (x - st.sigma_mean)
    if st.sigma_n < 2:
        return 0.0
    variance = st.sigma_m2 / (st.sigma_n - 1)
    if variance == 0:
        return 0.0
    return abs(x - st.sigma_mean) / (math.sqrt(variance) if variance > 0 else math.nan)


def _count(st: FunctionState, _scope: object) -> int:
    st.count += 1
    return st.count


def _spread(st: FunctionState, _scope: object, x: float) -> float:
    # min/max keep their first argument unless the second compares smaller/larger, which is
    # Go's `if x < min` (a NaN never replaces anything).
    st.spread_min = min(st.spread_min, x)
    st.spread_max = max(st.spread_max, x)
    return st.spread_max - st.spread_min


class Scope(Protocol):
    """What a point-mode expression reads: Point satisfies it."""

    @property
    def fields(self) -> Mapping[str, Any]: ...
    @property
    def tags(self) -> Mapping[str, str]: ...
    @property
    def time(self) -> int: ...


@dataclass(frozen=True, slots=True)
class MatchScope:
    """An alert event as a topic handler's `match` expression sees it.

    References resolve against the tags only (Kapacitor's matchHandler); level(), changed(),
    name(), taskName() and alertDuration() (or the documented duration()) read the rest.
    """

    tags: Mapping[str, str]
    level: int
    previous_level: int
    name: str
    task_name: str
    duration: int
    """Alert duration in nanoseconds."""


MATCH_IDENTIFIERS: dict[str, object] = {"OK": 0, "INFO": 1, "WARNING": 2, "CRITICAL": 3}


# --------------------------------------------------------------------------------------------
# The function table: name -> {argument types: (result type, implementation, wants context)}

_Signatures = dict[tuple[type, ...], tuple[str, Callable[..., Any], bool]]


def _functions(mode: str, tz: tzinfo | None, clock: Callable[[], int]) -> dict[str, _Signatures]:
    funcs: dict[str, _Signatures] = {
        "bool": {
            (bool,): ("boolean", lambda v: v, False),
            (str,): ("boolean", _parse_bool, False),
            (int,): ("boolean", _num_to_bool, False),
            (float,): ("boolean", _num_to_bool, False),
        },
        "int": {
            (bool,): ("int", int, False),
            (str,): ("int", _parse_int, False),
            (int,): ("int", lambda v: v, False),
            (float,): ("int", _f2i, False),
        },
        "float": {
            (bool,): ("float", float, False),
            (str,): ("float", _parse_float, False),
            (int,): ("float", float, False),
            (float,): ("float", lambda v: v, False),
        },
        "string": {
            (bool,): ("string", lambda v: "true" if v else "false", False),
            (str,): ("string", lambda v: v, False),
            (int,): ("string", str, False),
            (float,): ("string", format_go_float, False),
            (Duration,): ("string", lambda v: format_influx_duration(v.ns), False),
        },
        "duration": {
            (Duration,): ("duration", lambda v: v, False),
            (int, Duration): ("duration", lambda v, u: Duration(_wrap(v * u.ns)), False),
            (float, Duration): ("duration", lambda v, u: Duration(_f2i(v * u.ns)), False),
            (str, Duration): ("duration", lambda v, _u: _duration_of(v), False),
        },
        "isPresent": {
            (t,): ("boolean", lambda v: v is not MISSING, False)
            for t in (_Missing, bool, str, int, float)
        },
        "if": {
            (bool, t, t): (_TYPE_NAMES[t], lambda c, a, b: a if c else b, False)
            for t in (float, int, str, bool, Regex, Time, Duration)
        },
        "strReplace": {
            (str, str, str, int): ("string", lambda s, old, new, n: s.replace(old, new, n), False)
        },
        "strSubstring": {(str, int, int): ("string", _substring, False)},
        "regexReplace": {(Regex, str, str): ("string", lambda r, s, t: r.replace_all(s, t), False)},
        "humanBytes": {
            (float,): ("string", _human_bytes, False),
            (int,): ("string", _human_bytes, False),
        },
        "pow10": {(int,): ("float", _go_pow10, False)},
        "sigma": {(float,): ("float", _sigma, True)},
        "count": {(): ("int", _count, True)},
        "spread": {(float,): ("float", _spread, True)},
        "now": {(): ("time", lambda _st, _sc: Time(clock()), True)},
        "unixNano": {(Time,): ("int", lambda t: t.ns, False)},
    }
    for name, fn in _MATH1.items():
        funcs[name] = {(float,): ("float", fn, False)}
    for name, fn2 in _MATH2.items():
        funcs[name] = {(float, float): ("float", fn2, False)}
    for name, (result, fn) in _STRING1.items():
        funcs[name] = {(str,): (result, fn, False)}
    for name, (result, fn2) in _STRING2.items():
        funcs[name] = {(str, str): (result, fn2, False)}

    def local(t: Time) -> datetime:
        return datetime.fromtimestamp(t.ns // 1_000_000_000, tz)

    for name, part in (
        ("minute", lambda d: d.minute),
        ("hour", lambda d: d.hour),
        ("weekday", lambda d: (d.weekday() + 1) % 7),
        ("day", lambda d: d.day),
        ("month", lambda d: d.month),
        ("year", lambda d: d.year),
    ):
        funcs[name] = {(Time,): ("int", lambda t, p=part: p(local(t)), False)}

    if mode == "match":

        def alert_duration(_st: object, sc: MatchScope) -> Duration:
            return Duration(sc.duration)

        funcs["level"] = {(): ("int", lambda _st, sc: sc.level, True)}
        funcs["changed"] = {(): ("boolean", lambda _st, sc: sc.level != sc.previous_level, True)}
        funcs["name"] = {(): ("string", lambda _st, sc: sc.name, True)}
        funcs["taskName"] = {(): ("string", lambda _st, sc: sc.task_name, True)}
        funcs["alertDuration"] = {(): ("duration", alert_duration, True)}
        # The docs call it duration(); the zero-argument form cannot clash with the conversion.
        funcs["duration"][()] = ("duration", alert_duration, True)
    return funcs


def _signatures_text(sigs: _Signatures) -> str:
    domains = sorted("(" + ",".join(_TYPE_NAMES[t] for t in key) + ")" for key in sigs)
    return "[" + ", ".join(domains) + "]"


def _signature_error(name: str, types: list[str], sigs: _Signatures) -> str:
    return (
        f'Cannot call function "{name}" with args ({",".join(types)}), '
        f"available signatures are {_signatures_text(sigs)}."
    )


def _make_caller(name: str, sigs: _Signatures, refs: tuple[str | None, ...]) -> Callable[..., Any]:
    def call(st: FunctionState, scope: object, *args: Any) -> Any:
        entry = sigs.get(tuple(map(type, args)))
        if entry is None:
            missing = [f'"{r}"' for r, a in zip(refs, args, strict=True) if a is MISSING]
            if missing:
                noun = "arguments" if len(missing) > 1 else "argument"
                verb = "are" if len(missing) > 1 else "is"
                raise EvalError(
                    f'Cannot call function "{name}" {noun} {", ".join(missing)} {verb} missing'
                )
            raise EvalError(_signature_error(name, [type_name(a) for a in args], sigs))
        _, impl, wants_context = entry
        try:
            return impl(st, scope, *args) if wants_context else impl(*args)
        except EvalError as e:
            raise EvalError(f'error calling "{name}": {e}') from None

    return call


# --------------------------------------------------------------------------------------------
# Code generation


@dataclass(frozen=True, slots=True)
class _Operand:
    code: str
    type: str | None
    ref: str | None = None
    const: bool = False
    value: Any = None


_RUNTIME: dict[str, Any] = {
    "_MISSING": MISSING,
    "_EvalError": EvalError,
    "_Time": Time,
    "_D": Duration,
    "_wrap": _wrap,
    "_f2i": _f2i,
    "_idiv": _idiv,
    "_imod": _imod,
    "_fdiv": _fdiv,
    "_dyn": _dyn,
    "_need_bool": _need_bool,
    "_unary": _unary,
}


class _Codegen:
    def __init__(self, mode: str, funcs: dict[str, _Signatures], allow_refs: bool) -> None:
        self.mode = mode
        self.funcs = funcs
        self.allow_refs = allow_refs
        self.ns: dict[str, Any] = dict(_RUNTIME)
        self.body: list[str] = []
        self.depth = 1
        self.refs: dict[str, str] = {}
        self.counter = 0

    def emit(self, line: str) -> None:
        self.body.append("    " * self.depth + line)

    def temp(self, code: str, typ: str | None) -> _Operand:
        self.counter += 1
        name = f"t{self.counter}"
        self.emit(f"{name} = {code}")
        return _Operand(name, typ)

    def bind(self, obj: object, prefix: str) -> str:
        self.counter += 1
        name = f"_{prefix}{self.counter}"
        self.ns[name] = obj
        return name

    def constant(self, value: object, node: Node) -> _Operand:
        if type(value) in (int, str, bool) or (type(value) is float and math.isfinite(value)):
            code = repr(value)
        else:
            code = self.bind(value, "k")
        return _Operand(code, _TYPE_NAMES[type(value)], const=True, value=value)

    def gen(self, node: Node) -> _Operand:
        match node:
            case Literal(value=value):
                return self.constant(value, node)
            case Reference():
                return self.reference(node)
            case Identifier(name=name):
                raise CompileError(f'name "{name}" is undefined', node.line, node.column)
            case Unary():
                return self.unary(node)
            case Binary(op=op) if op in ("AND", "OR"):
                return self.logical(node)
            case Binary():
                return self.binary(node)
            case Call():
                return self.call(node)
        raise CompileError(f"unexpected expression {node!r}")

    def reference(self, node: Reference) -> _Operand:
        if not self.allow_refs:
            raise CompileError(
                f'field reference "{node.name}" is only allowed in a lambda expression',
                node.line,
                node.column,
            )
        var = self.refs.setdefault(node.name, f"r{len(self.refs)}")
        typ = "time" if self.mode == "point" and node.name == "time" else None
        return _Operand(var, typ, ref=node.name)

    def fold(self, fn: Callable[[], Any], node: Node) -> _Operand:
        try:
            return self.constant(fn(), node)
        except EvalError as e:
            raise CompileError(e.message, node.line, node.column) from None

    def unary(self, node: Unary) -> _Operand:
        x = self.gen(node.operand)
        site = _Site(node.op, x.ref)
        if x.const:
            return self.fold(lambda: _unary(site, x.value), node)
        if x.type is not None:
            key = (node.op, _NAME_TYPES[x.type])
            if key not in _UNARY_INLINE:
                raise CompileError(
                    f"invalid unary operator {node.op} for type {x.type}", node.line, node.column
                )
            return self.temp(_UNARY_INLINE[key].format(x=x.code), x.type)
        typ = "boolean" if node.op == "!" else None
        return self.temp(f"_unary({self.bind(site, 's')}, {x.code})", typ)

    def binary(self, node: Binary) -> _Operand:
        a = self.gen(node.left)
        b = self.gen(node.right)
        op = node.op
        site = _Site(op, a.ref, b.ref)
        if a.const and b.const:
            return self.fold(lambda: _dyn(site, a.value, b.value), node)
        if a.type is not None and b.type is not None:
            key = (op, _NAME_TYPES[a.type], _NAME_TYPES[b.type])
            if key not in _OPS:
                raise CompileError(_type_error(op, a.type, b.type), node.line, node.column)
            return self.temp(_INLINE[key].format(a=a.code, b=b.code), _RESULT[key])
        s = self.bind(site, "s")
        generic = f"_dyn({s}, {a.code}, {b.code})"
        fast = self.fast_path(op, a, b)
        if fast is not None:
            guard, inline = fast
            return self.temp(f"{inline} if {guard} else {generic}", "boolean")
        return self.temp(generic, "boolean" if _boolean_operator(op) else None)

    @staticmethod
    def fast_path(op: str, a: _Operand, b: _Operand) -> tuple[str, str] | None:
        """(guard, code) computing `a op b` inline when one side is a literal and the other's
        runtime type passes the guard; everything else goes through _dyn."""
        if not _boolean_operator(op):
            return None
        dynamic, literal = (a, b) if b.const else (b, a)
        if not literal.const or dynamic.type is not None:
            return None
        d = dynamic.code
        if op in ("=~", "!~"):
            if literal is not b or literal.type != "regex":
                return None
            return f"type({d}) is str", _INLINE[(op, str, Regex)].format(a=a.code, b=b.code)
        inline = f"({a.code} {op} {b.code})"
        if literal.type == "float":
            return f"type({d}) is float", inline
        if literal.type == "int" and abs(literal.value) <= _EXACT_FLOAT_INT:
            # Small ints convert to float exactly, so Python's mixed comparison equals Go's.
            return f"(type({d}) is float or type({d}) is int)", inline
        if literal.type == "string":
            return f"type({d}) is str", inline
        if literal.type == "boolean" and op in ("==", "!="):
            return f"type({d}) is bool", inline
        return None

    def logical(self, node: Binary) -> _Operand:
        op = node.op
        left_ref = node.left.name if isinstance(node.left, Reference) else None
        right_ref = node.right.name if isinstance(node.right, Reference) else None
        site = _Site(op, left_ref, right_ref)
        s = self.bind(site, "s")
        # Kapacitor types both operands before evaluating either, so a reference operand of the
        # wrong type (or missing) is an error even when the other side would short-circuit.
        checked = set()
        for side, child in (("left", node.left), ("right", node.right)):
            if isinstance(child, Reference):
                ref = self.reference(child)
                if ref.type not in (None, "boolean"):
                    raise CompileError(
                        _type_error(op, ref.type if side == "left" else "boolean", ref.type),
                        node.line,
                        node.column,
                    )
                self.emit(f"_need_bool({s}, {ref.code}, {side!r})")
                checked.add(side)
        a = self.gen(node.left)
        b_node = node.right
        if a.const and isinstance(b_node, Literal):
            b_value = b_node.value
            return self.fold(lambda: _fold_logical(site, a.value, b_value), node)
        self.check_static_bool(a, op, "left", node)
        result = self.temp(self.as_bool(a, s, "left", checked), "boolean")
        self.emit(f"if {'' if op == 'AND' else 'not '}{result.code}:")
        self.depth += 1
        b = self.gen(b_node)
        self.check_static_bool(b, op, "right", node)
        self.emit(f"{result.code} = {self.as_bool(b, s, 'right', checked)}")
        self.depth -= 1
        return result

    @staticmethod
    def check_static_bool(x: _Operand, op: str, side: str, node: Binary) -> None:
        if x.type is not None and x.type != "boolean":
            lt = x.type if side == "left" else "boolean"
            raise CompileError(_type_error(op, lt, x.type), node.line, node.column)

    @staticmethod
    def as_bool(x: _Operand, site: str, side: str, checked: set[str]) -> str:
        if x.type == "boolean" or side in checked:
            return x.code
        return f"_need_bool({site}, {x.code}, {side!r})"

    def call(self, node: Call) -> _Operand:
        name = node.name
        if name == "isPresent" and len(node.args) == 1 and isinstance(node.args[0], Reference):
            ref = self.reference(node.args[0])
            return self.temp(f"{ref.code} is not _MISSING", "boolean")
        sigs = self.funcs.get(name)
        if sigs is None:
            why = "is not supported" if name in _UNSUPPORTED_FUNCTIONS else "is undefined"
            raise CompileError(f'function "{name}" {why}', node.line, node.column)
        args = [self.gen(a) for a in node.args]
        types = [a.type for a in args]
        known = [t for t in types if t is not None]
        if len(known) == len(args):
            entry = sigs.get(tuple(_NAME_TYPES[t] for t in known))
            if entry is None:
                raise CompileError(_signature_error(name, known, sigs), node.line, node.column)
            result: str | None = entry[0]
            if all(a.const for a in args) and not entry[2]:
                caller = _make_caller(name, sigs, (None,) * len(args))
                values = [a.value for a in args]
                return self.fold(lambda: caller(FunctionState(), None, *values), node)
        else:
            if not any(len(key) == len(args) for key in sigs):
                unknown = [t or "?" for t in types]
                raise CompileError(_signature_error(name, unknown, sigs), node.line, node.column)
            results = {r for key, (r, _, _) in sigs.items() if len(key) == len(args)}
            result = results.pop() if len(results) == 1 else None
        caller = _make_caller(name, sigs, tuple(a.ref for a in args))
        fn = self.bind(caller, "f")
        arg_code = "".join(", " + a.code for a in args)
        return self.temp(f"{fn}(st, scope{arg_code})", result)

    def source(self, result: _Operand) -> str:
        lines = ["def _expr(scope, st):"]
        refs = self.refs
        if self.mode == "point" and any(name != "time" for name in refs):
            lines += ["    fields = scope.fields", "    tags = scope.tags"]
        elif self.mode == "match" and refs:
            lines.append("    tags = scope.tags")
        for name, var in refs.items():
            key = repr(name)
            if self.mode == "match":
                lines.append(f"    {var} = tags.get({key}, _MISSING)")
            elif name == "time":
                lines.append(f"    {var} = _Time(scope.time)")
            else:
                conflict = repr(f'cannot have field and tags with same name "{name}"')
                lines += [
                    f"    {var} = fields.get({key}, _MISSING)",
                    f"    if {var} is _MISSING:",
                    f"        {var} = tags.get({key}, _MISSING)",
                    f"    elif {key} in tags:",
                    f"        raise _EvalError({conflict})",
                ]
        lines += self.body
        if result.ref is not None:
            missing = repr(f'referenced value "{result.ref}" is missing')
            lines.append(f"    if {result.code} is _MISSING:")
            lines.append(f"        raise _EvalError({missing})")
        lines.append(f"    return {result.code}")
        return "\n".join(lines) + "\n"


def _fold_logical(site: _Site, a: object, b: object) -> bool:
    left = _need_bool(site, a, "left")
    right = _need_bool(site, b, "right")
    return (left and right) if site.op == "AND" else (left or right)


# --------------------------------------------------------------------------------------------
# Public API


class CompiledExpr:
    """A lambda compiled once; call evaluate()/evaluate_bool() per point."""

    __slots__ = ("_fn", "_state", "source", "text", "type")

    def __init__(
        self, fn: Callable[[Any, FunctionState], Any], text: str, typ: str | None, source: str
    ) -> None:
        self._fn = fn
        self._state = FunctionState()
        self.text = text
        """The expression as written, for messages and `show`."""
        self.type = typ
        """The result type when it is known before running, e.g. "boolean"."""
        self.source = source
        """The generated Python, for debugging."""

    def new_state(self) -> FunctionState:
        """Fresh sigma/count/spread accumulators, for callers that keep state per group."""
        return FunctionState()

    def evaluate(
        self, scope: Scope | MatchScope | None, state: FunctionState | None = None
    ) -> Value | EvalError:
        try:
            return self._fn(scope, self._state if state is None else state)
        except EvalError as e:
            return e

    def evaluate_bool(
        self, scope: Scope | MatchScope, state: FunctionState | None = None
    ) -> bool | EvalError:
        """The point passes (True), fails (False) or could not be judged (EvalError)."""
        try:
            result = self._fn(scope, self._state if state is None else state)
        except EvalError as e:
            return e
        if result is True or result is False:
            return result
        return EvalError(f"expression returned unexpected type {type_name(result)}")

    def as_predicate(self, state: FunctionState | None = None) -> Callable[[Any], bool]:
        """evaluate_bool for callers that want a failure raised (as the EvalError) rather than
        returned, such as state.LevelRules; state=None shares the expression's own state."""
        fn = self._fn
        st = self._state if state is None else state

        def predicate(scope: Any) -> bool:
            result = fn(scope, st)
            if result is True or result is False:
                return result
            raise EvalError(f"expression returned unexpected type {type_name(result)}")

        return predicate

    def __repr__(self) -> str:
        return f"CompiledExpr({self.text!r})"


def compile_expression(
    node: Node,
    *,
    text: str = "",
    tz: tzinfo | None = None,
    clock: Callable[[], int] = _time.time_ns,
) -> CompiledExpr:
    """Compile a lambda body whose identifiers were already resolved (resolve_identifiers).

    `tz` is the zone for hour(), day() and friends (None: the machine's, as Kapacitor uses
    time.Local); `clock` returns nanoseconds for now().
    """
    return _compile(node, "point", text, tz, clock, allow_refs=True)


def compile_match(
    node: Node,
    *,
    text: str = "",
    tz: tzinfo | None = None,
    clock: Callable[[], int] = _time.time_ns,
) -> CompiledExpr:
    """Compile a topic-handler `match` expression; evaluate it with a MatchScope."""
    resolved = resolve_identifiers(node, MATCH_IDENTIFIERS)
    return _compile(resolved, "match", text, tz, clock, allow_refs=True)


def evaluate_constant(node: Node) -> Value:
    """Value of a TICKscript expression outside any lambda (e.g. `var x = 5m * 2`)."""
    compiled = _compile(node, "point", "", None, _time.time_ns, allow_refs=False)
    result = compiled.evaluate(None)
    if isinstance(result, EvalError):
        raise CompileError(result.message, getattr(node, "line", 0), getattr(node, "column", 0))
    return result


def _compile(
    node: Node,
    mode: str,
    text: str,
    tz: tzinfo | None,
    clock: Callable[[], int],
    *,
    allow_refs: bool,
) -> CompiledExpr:
    gen = _Codegen(mode, _functions(mode, tz, clock), allow_refs)
    try:
        result = gen.gen(node)
        source = gen.source(result)
        exec(compile(source, f"<lambda: {text[:60]}>", "exec"), gen.ns)
    except (RecursionError, SyntaxError, MemoryError):
        raise CompileError("expression is nested too deeply", node.line, node.column) from None
    return CompiledExpr(gen.ns["_expr"], text, result.type, source)
