"""Paths into event JSON: gjson reads, sjson writes, jq selection, and trigger parameters.

Argo sensors address event data with three path languages, and definitions written for Argo use
them unchanged:

- gjson (`dataKey`, filter `path`, expr `fields`): `body.a.b`, `list.0`, `list.#` (length),
  `list.#.name` (each element's name), `*`/`?` wildcards in keys and `\\` escapes (`fav\\.movie`);
- sjson (parameter `dest`): the same dotted form, `-1` appends, a leading `:` forces an object key;
- jq (dependency `transform.jq`): path selection `.a.b`, `.a[0]`, `.["k"]`, `?`, pipes and object
  construction `{name: .body.user}`, which covers transforms (Argo requires an object result).

Only these subsets exist; gjson queries, modifiers and multipaths, and jq beyond selection, are
rejected at compile time with the position, never silently misread. The PyPI gjson port returns
Python values, but parameters need gjson's *string* forms (`1.0` reads back as `1`, objects as
their JSON text), and parsing these small grammars here gives position-named errors.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any, Protocol

from kafkaops.eventbus.cloudevents import CloudEvent, CloudEventError

__all__ = [
    "JqError",
    "JqProgram",
    "ParameterError",
    "Path",
    "PathError",
    "PathResult",
    "ResolvedValue",
    "apply_parameters",
    "compile_jq",
    "compile_path",
    "compile_set_path",
    "construct_payload",
    "format_number",
    "get",
    "parse_go_bool",
    "parse_go_float",
    "resolve_source",
    "set_path",
]


class PathError(ValueError):
    """A path that cannot compile or be applied; `position` is 1-based."""

    def __init__(self, message: str, path: str, index: int) -> None:
        self.message = message
        self.path = path
        self.position = index + 1
        super().__init__(f"{message} at position {self.position} in path {path!r}")


# --------------------------------------------------------------------------- Go scalar rules


def format_number(x: float | int) -> str:
    """Go's `strconv.FormatFloat(x, 'f', -1, 64)`: shortest digits, never an exponent."""
    if isinstance(x, int):
        return str(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    text = repr(x)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


_GO_BOOLS = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}
_GO_FLOAT = re.compile(
    r"^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)$", re.IGNORECASE
)
_GO_HEX_FLOAT = re.compile(r"^[+-]?0[xX][0-9a-fA-F]*\.?[0-9a-fA-F]*[pP][+-]?\d+$")


def parse_go_bool(text: str) -> bool:
    """Go's `strconv.ParseBool`; raises ValueError for anything else (`yes`, `on`, ...)."""
    try:
        return _GO_BOOLS[text]
    except KeyError:
        raise ValueError(f"invalid boolean {text!r} (use true or false)") from None


def parse_go_float(text: str) -> float:
    """Go's `strconv.ParseFloat(s, 64)`: no spaces or underscores, but `inf`/`nan`/hex allowed."""
    if _GO_FLOAT.match(text):
        return float(text)
    if _GO_HEX_FLOAT.match(text):
        return float.fromhex(text)
    raise ValueError(f"invalid number {text!r}")


# --------------------------------------------------------------------------- gjson reads

_JSON_SEPARATORS = (",", ":")


def _dump(value: Any) -> str:
    return json.dumps(value, separators=_JSON_SEPARATORS, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class PathResult:
    """What a gjson path found, with gjson's conversions (`String()`, `Bool()`, `Float()`)."""

    exists: bool
    value: Any = None

    @property
    def kind(self) -> str:
        """gjson's type name: Null, False, True, Number, String or JSON (object/array)."""
        v = self.value
        if v is None:
            return "Null"
        if isinstance(v, bool):
            return "True" if v else "False"
        if isinstance(v, int | float):
            return "Number"
        if isinstance(v, str):
            return "String"
        return "JSON"

    def string(self) -> str:
        v = self.value
        if v is None:
            return ""
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return format_number(v)
        if isinstance(v, str):
            return v
        return _dump(v)

    def raw(self) -> str:
        """The value as JSON text ("" when nothing was found)."""
        return _dump(self.value) if self.exists else ""

    def boolean(self) -> bool:
        v = self.value
        if isinstance(v, bool):
            return v
        if isinstance(v, str):
            return _GO_BOOLS.get(v.lower(), False)
        if isinstance(v, int | float):
            return v != 0
        return False

    def number(self) -> float:
        v = self.value
        if isinstance(v, bool):
            return 1.0 if v else 0.0
        if isinstance(v, int | float):
            return float(v)
        if isinstance(v, str):
            try:
                return parse_go_float(v)
            except ValueError:
                return 0.0
        return 0.0


_MISSING = PathResult(False)
_MODIFIERS = frozenset(
    {
        *("reverse", "ugly", "pretty", "this", "valid", "flatten", "join"),
        *("keys", "values", "tostr", "fromstr", "group", "dig"),
    }
)


@dataclass(frozen=True, slots=True)
class _Key:
    name: str
    pattern: re.Pattern[str] | None  # set when the key has unescaped * or ?
    index: int | None  # set when the key is all digits (an array index)


_COUNT = "#"
_Part = _Key | str


@dataclass(frozen=True)
class Path:
    """A compiled gjson path."""

    text: str
    parts: tuple[_Part, ...]

    def get(self, doc: Any) -> PathResult:
        return _walk(doc, self.parts, 0)


@lru_cache(maxsize=4096)
def compile_path(text: str) -> Path:
    """Compile a gjson path; raises PathError naming the position of anything unsupported."""
    if not text:
        raise PathError("empty path", text, 0)
    parts: list[_Part] = []
    i = 0
    while True:
        start = i
        name: list[str] = []
        regex: list[str] = []
        wild = False
        while i < len(text) and text[i] != ".":
            ch = text[i]
            if ch == "\\":
                if i + 1 >= len(text):
                    raise PathError("dangling escape", text, i)
                name.append(text[i + 1])
                regex.append(re.escape(text[i + 1]))
                i += 2
                continue
            _reject_gjson_syntax(text, i, at_start=i == start)
            if ch in "*?":
                wild = True
                regex.append(".*" if ch == "*" else ".")
            else:
                regex.append(re.escape(ch))
            name.append(ch)
            i += 1
        if i == start:
            raise PathError("empty path component", text, i)
        literal = "".join(name)
        if literal == "#" and text[start] != "\\":
            parts.append(_COUNT)
        else:
            pattern = re.compile("".join(regex), re.DOTALL) if wild else None
            index = int(literal) if literal.isdigit() and not wild else None
            parts.append(_Key(literal, pattern, index))
        if i == len(text):
            return Path(text, tuple(parts))
        i += 1
        if i == len(text):
            raise PathError("path ends with '.'", text, i - 1)


def _reject_gjson_syntax(text: str, i: int, *, at_start: bool) -> None:
    ch = text[i]
    if ch == "|":
        raise PathError("gjson pipes ('|') are not supported", text, i)
    if at_start and ch == "#" and text.startswith("#(", i):
        raise PathError("gjson queries ('#(...)') are not supported", text, i)
    if at_start and ch in "[{":
        raise PathError("gjson multipaths are not supported", text, i)
    if at_start and ch == "!":
        raise PathError("gjson literals ('!') are not supported", text, i)
    if at_start and ch == "@":
        m = re.match(r"@(\w+)", text[i:])
        if m and m.group(1) in _MODIFIERS:
            raise PathError(f"gjson modifier '@{m.group(1)}' is not supported", text, i)


def _walk(value: Any, parts: tuple[_Part, ...], i: int) -> PathResult:
    if i == len(parts):
        return PathResult(True, value)
    part = parts[i]
    if part == _COUNT:
        if not isinstance(value, list):
            return _MISSING
        if i + 1 == len(parts):
            return PathResult(True, len(value))
        found = [r.value for r in (_walk(el, parts, i + 1) for el in value) if r.exists]
        return PathResult(True, found)
    assert isinstance(part, _Key)
    if isinstance(value, dict):
        if part.pattern is None:
            return _walk(value[part.name], parts, i + 1) if part.name in value else _MISSING
        for key, child in value.items():
            if part.pattern.fullmatch(key):
                return _walk(child, parts, i + 1)
        return _MISSING
    if isinstance(value, list) and part.index is not None and part.index < len(value):
        return _walk(value[part.index], parts, i + 1)
    return _MISSING


def get(doc: Any, path: str) -> PathResult:
    """Read `path` (gjson syntax) from a parsed JSON document."""
    return compile_path(path).get(doc)


# --------------------------------------------------------------------------- sjson writes


@dataclass(frozen=True, slots=True)
class _SetKey:
    name: str
    forced: bool  # a leading ':' makes a numeric name an object key

    @property
    def index(self) -> int | None:
        if self.forced:
            return None
        if self.name == "-1":
            return -1
        return int(self.name) if self.name.isdigit() else None


@lru_cache(maxsize=1024)
def compile_set_path(text: str) -> tuple[_SetKey, ...]:
    """Compile an sjson destination path; raises PathError naming the position."""
    if not text:
        raise PathError("empty path", text, 0)
    keys: list[_SetKey] = []
    i = 0
    while True:
        start = i
        forced = False
        name: list[str] = []
        while i < len(text) and text[i] != ".":
            ch = text[i]
            if ch == "\\":
                if i + 1 >= len(text):
                    raise PathError("dangling escape", text, i)
                name.append(text[i + 1])
                i += 2
                continue
            if ch == ":" and i == start:
                forced = True
                i += 1
                continue
            if ch == "#" and text.startswith("#(", i):
                raise PathError("sjson queries ('#(...)') are not supported", text, i)
            if ch in "*?|":
                raise PathError(f"{ch!r} is not allowed in a destination path", text, i)
            name.append(ch)
            i += 1
        if i == start:
            raise PathError("empty path component", text, i)
        keys.append(_SetKey("".join(name), forced))
        if i == len(text):
            return tuple(keys)
        i += 1
        if i == len(text):
            raise PathError("path ends with '.'", text, i - 1)


def set_path(doc: Any, path: str, value: Any) -> Any:
    """Return a copy of `doc` with `value` at `path` (sjson syntax); `doc` None means empty.

    Missing parents are created: an array for a numeric key, otherwise an object; an index past
    the end pads with nulls; `-1` appends.
    """
    keys = compile_set_path(path)
    return _set(doc, keys, 0, value, path)


def _set(node: Any, keys: tuple[_SetKey, ...], i: int, value: Any, path: str) -> Any:
    key = keys[i]
    last = i + 1 == len(keys)
    if isinstance(node, dict):
        out = dict(node)
        out[key.name] = value if last else _set(out.get(key.name), keys, i + 1, value, path)
        return out
    if isinstance(node, list) or (node is None and key.index is not None):
        index = key.index
        if index is None:
            raise PathError(f"cannot set key {key.name!r} inside an array", path, 0)
        items = list(node or [])
        if index == -1:
            items.append(value if last else _set(None, keys, i + 1, value, path))
            return items
        items.extend([None] * (index + 1 - len(items)))
        items[index] = value if last else _set(items[index], keys, i + 1, value, path)
        return items
    return {key.name: value if last else _set(None, keys, i + 1, value, path)}


# --------------------------------------------------------------------------- jq selection


class JqError(ValueError):
    """A jq program outside the supported subset, or one that fails on this input."""


_JqFn = Callable[[Any], tuple[bool, Any]]  # (produced output, value)
_JQ_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_JQ_INDEX = re.compile(r"-?\d+")
_JQ_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


@dataclass(frozen=True)
class JqProgram:
    text: str
    _fn: _JqFn

    def run(self, value: Any) -> tuple[bool, Any]:
        """Apply to a JSON value: (True, result), or (False, None) when `?` swallowed an error."""
        return self._fn(value)


def compile_jq(text: str) -> JqProgram:
    """Compile the jq subset: `.`, `.a.b`, `."k"`, `.[0]`, `.["k"]`, `?`, `|`, `{k: path}`."""
    parser = _JqParser(text)
    fn = parser.pipeline()
    parser.skip_space()
    if parser.i != len(text):
        raise parser.error("unexpected text (only path selection, '|' and {...} are supported)")
    return JqProgram(text, fn)


class _JqParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def error(self, message: str) -> JqError:
        return JqError(f"{message} at position {self.i + 1} in jq {self.text!r}")

    def skip_space(self) -> None:
        while self.i < len(self.text) and self.text[self.i].isspace():
            self.i += 1

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.i] if self.i < len(self.text) else ""

    def pipeline(self) -> _JqFn:
        stages = [self.term()]
        while self.peek() == "|":
            self.i += 1
            stages.append(self.term())

        def run(value: Any) -> tuple[bool, Any]:
            for stage in stages:
                ok, value = stage(value)
                if not ok:
                    return False, None
            return True, value

        return run if len(stages) > 1 else stages[0]

    def term(self) -> _JqFn:
        ch = self.peek()
        if ch == ".":
            return self.path()
        if ch == "{":
            return self.obj()
        if ch == "(":
            self.i += 1
            inner = self.pipeline()
            if self.peek() != ")":
                raise self.error("expected ')'")
            self.i += 1
            return inner
        raise self.error("expected '.', '{' or '('")

    def path(self) -> _JqFn:
        steps: list[tuple[str | int, bool]] = []
        self.i += 1  # the leading '.'
        self._step_after_dot(steps, first=True)
        while self.i < len(self.text) and self.text[self.i] in ".[":
            if self.text[self.i] == ".":
                self.i += 1
                self._step_after_dot(steps, first=False)
            else:
                steps.append((self._bracket(), self._optional()))
        return _jq_path(tuple(steps))

    def _step_after_dot(self, steps: list[tuple[str | int, bool]], *, first: bool) -> None:
        m = _JQ_IDENT.match(self.text, self.i)
        if m:
            self.i = m.end()
            steps.append((m.group(), self._optional()))
        elif self.i < len(self.text) and self.text[self.i] == '"':
            steps.append((self._string(), self._optional()))
        elif self.i < len(self.text) and self.text[self.i] == "[":
            steps.append((self._bracket(), self._optional()))
        elif not first:
            raise self.error("expected a key after '.'")

    def _optional(self) -> bool:
        if self.i < len(self.text) and self.text[self.i] == "?":
            self.i += 1
            return True
        return False

    def _bracket(self) -> str | int:
        self.i += 1
        self.skip_space()
        if self.i < len(self.text) and self.text[self.i] == '"':
            key: str | int = self._string()
        else:
            m = _JQ_INDEX.match(self.text, self.i)
            if not m:
                raise self.error(
                    "expected a number or a string inside '[]' (no slices or iteration)"
                )
            self.i = m.end()
            key = int(m.group())
        if self.peek() != "]":
            raise self.error("expected ']'")
        self.i += 1
        return key

    def _string(self) -> str:
        start = self.i
        m = _JQ_STRING.match(self.text, self.i)
        if not m:
            raise self.error("unterminated string")
        self.i = m.end()
        try:
            return str(json.loads(m.group()))
        except ValueError:
            self.i = start
            raise self.error("bad string escape") from None

    def obj(self) -> _JqFn:
        self.i += 1
        entries: list[tuple[str, _JqFn]] = []
        while self.peek() != "}":
            if entries:
                if self.peek() != ",":
                    raise self.error("expected ',' or '}'")
                self.i += 1
                self.skip_space()
            if self.peek() == '"':
                key = self._string()
            else:
                m = _JQ_IDENT.match(self.text, self.i)
                if not m:
                    raise self.error("expected an object key")
                self.i = m.end()
                key = m.group()
            if self.peek() == ":":
                self.i += 1
                entries.append((key, self._object_value()))
            else:
                entries.append((key, _jq_path(((key, False),))))
        self.i += 1

        def run(value: Any) -> tuple[bool, Any]:
            out: dict[str, Any] = {}
            for key, fn in entries:
                ok, item = fn(value)
                if not ok:
                    return False, None
                out[key] = item
            return True, out

        return run

    def _object_value(self) -> _JqFn:
        if self.peek() in (".", "{", "("):
            return self.term()
        raise self.error("expected a path, an object or '(' as the value")


def _jq_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _jq_path(steps: tuple[tuple[str | int, bool], ...]) -> _JqFn:
    def run(value: Any) -> tuple[bool, Any]:
        for key, optional in steps:
            if value is None:
                continue
            if isinstance(key, str) and isinstance(value, dict):
                value = value.get(key)
            elif isinstance(key, int) and isinstance(value, list):
                value = value[key] if -len(value) <= key < len(value) else None
            elif optional:
                return False, None
            else:
                shown = f'"{key}"' if isinstance(key, str) else "number"
                raise JqError(f"Cannot index {_jq_type(value)} with {shown}")
        return True, value

    return run


# --------------------------------------------------------------------------- trigger parameters


class ParameterError(ValueError):
    """A parameter whose value cannot be resolved from the events and has no default."""


class SourceLike(Protocol):
    """A parameter source as definitions spell it (`spec.TriggerParameterSource`)."""

    @property
    def dependency_name(self) -> str: ...
    @property
    def data_key(self) -> str | None: ...
    @property
    def context_key(self) -> str | None: ...
    @property
    def value(self) -> str | None: ...
    @property
    def use_raw_data(self) -> bool: ...


class ParameterLike(Protocol):
    @property
    def src(self) -> SourceLike: ...
    @property
    def dest(self) -> str: ...
    @property
    def operation(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ResolvedValue:
    """A parameter value as text, with the gjson type it had (String when it came as text)."""

    text: str
    kind: str = "String"

    def json_value(self, *, raw: bool) -> Any:
        """What to write at `dest`: the parsed value with `useRawData`, else the text itself."""
        if raw and self.kind != "String":
            return json.loads(self.text)
        return self.text


def resolve_source(src: SourceLike, events: Mapping[str, CloudEvent]) -> ResolvedValue | None:
    """Argo's ResolveParamValue: key lookup with `value` as the fallback.

    None means the dependency has no event and no default (normal under `||`): skip the parameter.
    With neither key, the whole event `{"context": .., "data": ..}` is the value (Argo base64s the
    data there; JSON is kept as JSON here because that is what a reader wants).
    """
    event = events.get(src.dependency_name)
    default = None if src.value is None else ResolvedValue(src.value)
    if event is None:
        return default
    if not src.data_key and not src.context_key:
        if default is not None:
            return default
        data = event.data
        if isinstance(data, bytes | bytearray):
            data = base64.b64encode(data).decode("ascii")
        return ResolvedValue(_dump({"context": event.context(), "data": data}))
    key: str
    try:
        if src.data_key:
            key, payload = src.data_key, _event_data(event)
        else:
            key, payload = str(src.context_key), event.context()
        found = compile_path(key).get(payload)
    except (CloudEventError, PathError) as exc:
        if default is not None:
            return default
        raise ParameterError(f"parameter from {src.dependency_name!r}: {exc}") from None
    if found.exists:
        if found.kind in ("JSON", "Null"):
            return ResolvedValue(found.raw(), found.kind)
        return ResolvedValue(found.string(), found.kind)
    if default is not None:
        return default
    raise ParameterError(
        f"parameter from {src.dependency_name!r}: key {key!r} does not exist in the event"
    )


def _event_data(event: CloudEvent) -> Any:
    if not event.is_json:
        raise CloudEventError(f"unsupported event content type {event.datacontenttype!r}")
    return event.json_data()


def construct_payload(
    parameters: Sequence[ParameterLike], events: Mapping[str, CloudEvent]
) -> bytes:
    """Argo's ConstructPayload: a JSON body built from `payload` parameters.

    A parameter with an empty `dest` is the whole body, as text. Argo dereferences a missing
    value there and panics; an unresolvable optional parameter is skipped here instead.
    """
    doc: Any = None
    for param in parameters:
        resolved = resolve_source(param.src, events)
        if resolved is None:
            continue
        if not param.dest:
            return resolved.text.encode()
        doc = set_path(doc, param.dest, resolved.json_value(raw=param.src.use_raw_data))
    return b"" if doc is None else _dump(doc).encode()


def apply_parameters(
    doc: Any, parameters: Sequence[ParameterLike], events: Mapping[str, CloudEvent]
) -> Any:
    """Argo's ApplyParams: write parameter values into a resource (a trigger template) by `dest`.

    `append`/`prepend` join the new text to the current value at `dest` (as a string).
    """
    for param in parameters:
        resolved = resolve_source(param.src, events)
        if resolved is None:
            continue
        if param.operation in ("append", "prepend"):
            try:
                current = get(doc, param.dest)
            except PathError:
                current = _MISSING
            if current.exists:
                text = current.string()
                joined = (
                    text + resolved.text if param.operation == "append" else resolved.text + text
                )
                resolved = ResolvedValue(joined)
        doc = set_path(doc, param.dest, resolved.json_value(raw=param.src.use_raw_data))
    return doc
