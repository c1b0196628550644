"""Trigger conditions and filter expressions in the govaluate dialect Argo's sensors are written in.

Two languages share one tokenizer:

- a trigger *condition* (`a && (b || c)`) names dependencies, joined by `&&`, `||` and
  parentheses; names may contain `-` and `_`, and `dep-a` matches a dependency spelled `dep_a`
  (Argo rewrites `-` to `_` before compiling, so both spellings work there);
- a filter *expression* (`count > 3 && kind =~ "^b"`) is the govaluate subset `exprs` filters use.

Both compile once into closures; every syntax or name error names its 1-based position.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Condition",
    "EvaluationError",
    "Expression",
    "ExpressionError",
    "compile_condition",
    "compile_expression",
    "go_string",
]


class ExpressionError(ValueError):
    """A condition or expression that cannot compile; `position` is 1-based."""

    def __init__(self, message: str, text: str, index: int) -> None:
        self.message = message
        self.text = text
        self.position = index + 1
        super().__init__(f"{message} at position {self.position} in {text!r}")


class EvaluationError(ValueError):
    """An expression that compiled but cannot be evaluated on these values (a type mismatch)."""


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # name | number | string | op | end
    value: Any
    index: int


_OPERATORS = (
    "**", "&&", "||", "==", "!=", ">=", "<=", "=~", "!~", "??",
    ">", "<", "!", "+", "-", "*", "/", "%", "(", ")", ",", "?", ":",
)  # fmt: skip
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NAME_START = re.compile(r"[A-Za-z_]")


def _tokenize(text: str, *, condition: bool) -> list[_Token]:
    """Split `text`; in conditions a name is any run of letters, digits, `_` and `-`."""
    name_chars = re.compile(r"[A-Za-z0-9_-]+" if condition else r"[A-Za-z_][A-Za-z0-9_]*")
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if condition:
            m = name_chars.match(text, i)
            if m:
                tokens.append(_Token("name", m.group(), i))
                i = m.end()
                continue
        else:
            m = _NUMBER.match(text, i)
            if m and (ch.isdigit() or ch == "."):
                tokens.append(_Token("number", float(m.group()), i))
                i = m.end()
                continue
            if _NAME_START.match(ch):
                m = name_chars.match(text, i)
                assert m is not None
                tokens.append(_Token("name", m.group(), i))
                i = m.end()
                continue
            if ch == "[":
                end = text.find("]", i + 1)
                if end < 0:
                    raise ExpressionError("unclosed '[' in a parameter name", text, i)
                tokens.append(_Token("name", text[i + 1 : end], i))
                i = end + 1
                continue
            if ch in "'\"":
                value, i = _read_string(text, i)
                tokens.append(_Token("string", value, i))
                continue
        op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
        if op is None:
            raise ExpressionError(f"unexpected character {ch!r}", text, i)
        tokens.append(_Token("op", op, i))
        i += len(op)
    tokens.append(_Token("end", None, len(text)))
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if ch == quote:
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise ExpressionError("unterminated string", text, start)


# --------------------------------------------------------------------------- trigger conditions


@dataclass(frozen=True)
class Condition:
    """A compiled trigger condition over dependency names.

    `simple` is true when any single event of any named dependency satisfies the condition on
    its own (`a || b`). Such a trigger can never hold an event, so it may skip the trigger topic.
    Argo tests for an `&&` token instead; the two agree unless a condition repeats a name in a
    way that makes its `&&` redundant (`(a || b) && (b || a)`), where this test is the exact one.
    """

    text: str
    dependencies: tuple[str, ...]
    _fn: Callable[[Collection[str]], bool] = field(repr=False, compare=False)
    simple: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "simple", all(self._fn({d}) for d in self.dependencies))

    def evaluate(self, present: Collection[str]) -> bool:
        """Whether the condition holds when exactly the dependencies in `present` have an event."""
        return self._fn(present)


def compile_condition(text: str | None, dependencies: Sequence[str]) -> Condition:
    """Compile `text` against the sensor's dependency names; empty means all of them ANDed."""
    if not dependencies:
        raise ExpressionError("a sensor needs at least one dependency", text or "", 0)
    if text is None or not text.strip():
        names = tuple(dict.fromkeys(dependencies))
        return Condition(" && ".join(names), names, lambda seen: all(n in seen for n in names))
    parser = _ConditionParser(text, dependencies)
    fn = parser.parse()
    return Condition(text, tuple(parser.used), fn)


class _ConditionParser:
    def __init__(self, text: str, dependencies: Sequence[str]) -> None:
        self.text = text
        self.tokens = _tokenize(text, condition=True)
        self.i = 0
        self.exact = set(dependencies)
        self.normalized: dict[str, list[str]] = {}
        for dep in dict.fromkeys(dependencies):
            self.normalized.setdefault(dep.replace("-", "_"), []).append(dep)
        self.used: dict[str, None] = {}

    def parse(self) -> Callable[[Collection[str]], bool]:
        fn = self._or()
        tok = self.tokens[self.i]
        if tok.kind != "end":
            what = f"expected '&&' or '||', got {_show(tok)}"
            if tok.value == ")":
                what = "unbalanced ')'"
            raise ExpressionError(what, self.text, tok.index)
        return fn

    def _or(self) -> Callable[[Collection[str]], bool]:
        parts = [self._and()]
        while self._accept("||"):
            parts.append(self._and())
        if len(parts) == 1:
            return parts[0]
        return lambda present: any(p(present) for p in parts)

    def _and(self) -> Callable[[Collection[str]], bool]:
        parts = [self._primary()]
        while self._accept("&&"):
            parts.append(self._primary())
        if len(parts) == 1:
            return parts[0]
        return lambda present: all(p(present) for p in parts)

    def _primary(self) -> Callable[[Collection[str]], bool]:
        tok = self.tokens[self.i]
        if tok.kind == "name":
            self.i += 1
            dep = self._resolve(tok)
            self.used[dep] = None
            return lambda present: dep in present
        if tok.value == "(":
            self.i += 1
            inner = self._or()
            close = self.tokens[self.i]
            if close.value != ")":
                raise ExpressionError(f"expected ')', got {_show(close)}", self.text, close.index)
            self.i += 1
            return inner
        raise ExpressionError(f"expected a dependency name, got {_show(tok)}", self.text, tok.index)

    def _resolve(self, tok: _Token) -> str:
        name = str(tok.value)
        if name in self.exact:
            return name
        candidates = self.normalized.get(name.replace("-", "_"), [])
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            both = " and ".join(repr(c) for c in candidates)
            raise ExpressionError(f"{name!r} is ambiguous between {both}", self.text, tok.index)
        known = ", ".join(sorted(self.exact))
        msg = f"unknown dependency {name!r} (dependencies: {known})"
        raise ExpressionError(msg, self.text, tok.index)

    def _accept(self, op: str) -> bool:
        if self.tokens[self.i].value == op and self.tokens[self.i].kind == "op":
            self.i += 1
            return True
        return False


def _show(tok: _Token) -> str:
    return "end of text" if tok.kind == "end" else repr(tok.value)


# --------------------------------------------------------------------------- filter expressions

_Fn = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Expression:
    """A compiled govaluate-style expression; `variables` are the parameter names it reads."""

    text: str
    variables: frozenset[str]
    _fn: _Fn = field(repr=False, compare=False)

    def evaluate(self, values: Mapping[str, Any]) -> Any:
        """Evaluate with JSON-typed `values`; raises EvaluationError on a type mismatch."""
        return self._fn(values)


def compile_expression(text: str) -> Expression:
    """Compile a govaluate expression: literals, parameters, `! -`, `** * / % + -`,
    comparisons (`== != < <= > >=`), regex (`=~ !~`), `in (..)`, `&&` and `||`."""
    if not text.strip():
        raise ExpressionError("empty expression", text, 0)
    parser = _ExprParser(text)
    fn = parser.parse()
    return Expression(text, frozenset(parser.variables), fn)


_BINARY_LEVELS: tuple[tuple[str, ...], ...] = (
    ("||",),
    ("&&",),
    ("==", "!=", "<", "<=", ">", ">=", "=~", "!~", "in"),
    ("+", "-"),
    ("*", "/", "%"),
)
_UNSUPPORTED = {"?": "the ternary operator", ":": "the ternary operator", "??": "'??'"}


class _ExprParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text, condition=False)
        self.i = 0
        self.variables: set[str] = set()

    def parse(self) -> _Fn:
        fn, _ = self._level(0)
        tok = self.tokens[self.i]
        if tok.kind != "end":
            if tok.kind == "op" and tok.value in _UNSUPPORTED:
                what = f"{_UNSUPPORTED[tok.value]} is not supported"
            elif tok.value == ")":
                what = "unbalanced ')'"
            else:
                what = f"expected an operator, got {_show(tok)}"
            raise ExpressionError(what, self.text, tok.index)
        return fn

    def _peek_op(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.kind == "name" and tok.value == "in":
            return _Token("op", "in", tok.index)
        return tok

    def _level(self, level: int) -> tuple[_Fn, tuple[bool, Any]]:
        """Parse one precedence level; also returns (is_constant, value) for regex precompiling."""
        if level == len(_BINARY_LEVELS):
            return self._power()
        left, left_const = self._level(level + 1)
        while True:
            tok = self._peek_op()
            if tok.kind != "op" or tok.value not in _BINARY_LEVELS[level]:
                return left, left_const
            self.i += 1
            if tok.value == "in":
                left = _in(left, self._list(tok))
            else:
                right, right_const = self._level(level + 1)
                left = _binary(
                    tok.value, left, right, right_const=right_const, text=self.text, at=tok.index
                )
            left_const = (False, None)

    def _power(self) -> tuple[_Fn, tuple[bool, Any]]:
        base, const = self._unary()
        tok = self.tokens[self.i]
        if tok.kind == "op" and tok.value == "**":
            self.i += 1
            exponent, _ = self._power()
            power = _binary(
                "**", base, exponent, right_const=(False, None), text=self.text, at=tok.index
            )
            return power, (False, None)
        return base, const

    def _unary(self) -> tuple[_Fn, tuple[bool, Any]]:
        tok = self.tokens[self.i]
        if tok.kind == "op" and tok.value in ("!", "-"):
            self.i += 1
            operand, _ = self._unary()
            if tok.value == "!":
                return _not(operand), (False, None)
            return _negate(operand), (False, None)
        return self._primary()

    def _primary(self) -> tuple[_Fn, tuple[bool, Any]]:
        tok = self.tokens[self.i]
        self.i += 1
        if tok.kind in ("number", "string"):
            value = tok.value
            return (lambda _v: value), (True, value)
        if tok.kind == "name":
            if tok.value in ("true", "false"):
                flag = tok.value == "true"
                return (lambda _v: flag), (True, flag)
            name = str(tok.value)
            self.variables.add(name)
            return _variable(name), (False, None)
        if tok.value == "(":
            inner, const = self._level(0)
            self._expect(")")
            return inner, const
        self.i -= 1
        raise ExpressionError(f"expected a value, got {_show(tok)}", self.text, tok.index)

    def _list(self, op: _Token) -> list[_Fn]:
        if self.tokens[self.i].value != "(":
            raise ExpressionError("'in' needs a list like (1, 2)", self.text, op.index)
        self.i += 1
        items = [self._level(0)[0]]
        while self.tokens[self.i].value == ",":
            self.i += 1
            items.append(self._level(0)[0])
        self._expect(")")
        return items

    def _expect(self, op: str) -> None:
        tok = self.tokens[self.i]
        if tok.value != op or tok.kind != "op":
            raise ExpressionError(f"expected {op!r}, got {_show(tok)}", self.text, tok.index)
        self.i += 1


def _variable(name: str) -> _Fn:
    def get(values: Mapping[str, Any]) -> Any:
        try:
            value = values[name]
        except KeyError:
            raise EvaluationError(f"no parameter {name!r}") from None
        return float(value) if _is_number(value) else value

    return get


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _not(operand: _Fn) -> _Fn:
    def run(values: Mapping[str, Any]) -> Any:
        v = operand(values)
        if not isinstance(v, bool):
            raise EvaluationError(f"'!' needs a boolean, got {go_string(v)!r}")
        return not v

    return run


def _negate(operand: _Fn) -> _Fn:
    def run(values: Mapping[str, Any]) -> Any:
        v = operand(values)
        if not _is_number(v):
            raise EvaluationError(f"'-' needs a number, got {go_string(v)!r}")
        return -float(v)

    return run


def _in(left: _Fn, items: list[_Fn]) -> _Fn:
    return lambda values: any(_equal(left(values), item(values)) for item in items)


def _equal(a: Any, b: Any) -> bool:
    """Go's reflect.DeepEqual on JSON values: no coercion, and `true` is not `1`."""
    if _is_number(a) and _is_number(b):
        return float(a) == float(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def _binary(
    op: str, left: _Fn, right: _Fn, *, right_const: tuple[bool, Any], text: str, at: int
) -> _Fn:
    if op == "&&":
        return lambda v: _truth(left(v), op) and _truth(right(v), op)
    if op == "||":
        return lambda v: _truth(left(v), op) or _truth(right(v), op)
    if op == "==":
        return lambda v: _equal(left(v), right(v))
    if op == "!=":
        return lambda v: not _equal(left(v), right(v))
    if op in ("=~", "!~"):
        return _regex_op(op, left, right, right_const=right_const, text=text, at=at)
    if op in ("<", "<=", ">", ">="):
        return lambda v: _compare(op, left(v), right(v))
    return lambda v: _arithmetic(op, left(v), right(v))


def _truth(value: Any, op: str) -> bool:
    if not isinstance(value, bool):
        raise EvaluationError(f"{op!r} needs booleans, got {go_string(value)!r}")
    return value


def _regex_op(
    op: str, left: _Fn, right: _Fn, *, right_const: tuple[bool, Any], text: str, at: int
) -> _Fn:
    fixed: re.Pattern[str] | None = None
    if right_const[0]:
        if not isinstance(right_const[1], str):
            raise ExpressionError(f"{op!r} needs a string pattern", text, at)
        try:
            fixed = re.compile(right_const[1])
        except re.error as exc:
            raise ExpressionError(f"bad regular expression: {exc.msg}", text, at) from None

    def run(values: Mapping[str, Any]) -> bool:
        subject, pattern = left(values), right(values)
        if not isinstance(subject, str) or not isinstance(pattern, str):
            raise EvaluationError(f"{op!r} needs strings on both sides")
        try:
            compiled = fixed or re.compile(pattern)
        except re.error as exc:
            raise EvaluationError(f"bad regular expression {pattern!r}: {exc.msg}") from None
        found = compiled.search(subject) is not None
        return found if op == "=~" else not found

    return run


def _compare(op: str, a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        x, y = float(a), float(b)
    elif isinstance(a, str) and isinstance(b, str):
        x, y = a, b  # type: ignore[assignment]
    else:
        raise EvaluationError(f"{op!r} compares two numbers or two strings, got {a!r} and {b!r}")
    if op == "<":
        return x < y
    if op == "<=":
        return x <= y
    if op == ">":
        return x > y
    return x >= y


def _arithmetic(op: str, a: Any, b: Any) -> Any:
    if op == "+" and (isinstance(a, str) or isinstance(b, str)):
        return go_string(a) + go_string(b)
    if not (_is_number(a) and _is_number(b)):
        raise EvaluationError(f"{op!r} needs numbers, got {go_string(a)!r} and {go_string(b)!r}")
    x, y = float(a), float(b)
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    if op == "/":
        if y == 0:
            return math.copysign(math.inf, x) if x else math.nan
        return x / y
    if op == "%":
        return math.fmod(x, y) if y else math.nan
    if x < 0 and not y.is_integer():
        return math.nan
    try:
        return x**y
    except OverflowError:
        return math.inf


def go_string(value: Any) -> str:
    """Render a JSON value the way Go's `%v` prints it, for string concatenation and messages."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    return str(value)
