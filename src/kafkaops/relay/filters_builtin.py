"""The filters kafkaops ships, for the common cases that should not need a plugin.

Each takes a JSON object as its config string (in TOML, write `config = { ... }` and it is
encoded for you). Each keeps the records that match; `"negate": true` drops them instead.

- `header-match`: `{"name": "env", "value": "prod"}`: a header `name` is present (with that
  value, if `value` is given; `values` takes a list of allowed values).
- `key-match`: exactly one of `{"equals": "..."}`, `{"prefix": "..."}`, `{"regex": "..."}`;
  a record without a key never matches.
- `value-regex`: `{"pattern": "..."}`: `re.search` over the raw value bytes (the pattern is
  UTF-8 encoded); `"ignore_case": true` for case-insensitive matching.
- `json-field`: `{"field": "a.b.0", "op": "eq", "value": 3}`: the value parsed as JSON, the
  dotted path followed through objects and lists, compared with `op`: eq, ne, gt, ge, lt, le,
  in (value is a list), exists, regex (on a string field). A value that is not JSON, a missing
  field, or a comparison between different types is "no match", never an error: one odd record
  must not stop the relay.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable
from typing import Any

from kafkaops.relay.filters import FilterFactory, RelayRecord


def _options(config: str, allowed: set[str], required: set[str]) -> dict[str, Any]:
    try:
        opts = json.loads(config) if config.strip() else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"config is not a JSON object ({exc}): {config!r}") from None
    if not isinstance(opts, dict):
        raise ValueError(f"config must be a JSON object, got {config!r}")
    unknown = sorted(set(opts) - allowed - {"negate"})
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} (allowed: {sorted(allowed | {'negate'})})")
    missing = sorted(required - set(opts))
    if missing:
        raise ValueError(f"missing option(s) {missing}")
    if not isinstance(opts.get("negate", False), bool):
        raise ValueError(f"negate must be true or false, got {opts['negate']!r}")
    return opts


def _text(opts: dict[str, Any], name: str) -> str:
    value = opts[name]
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    return value


def _compile(pattern: str, name: str, flags: int = 0) -> re.Pattern[bytes]:
    try:
        return re.compile(pattern.encode(), flags)
    except re.error as exc:
        raise ValueError(f"{name} {pattern!r} is not a valid regular expression: {exc}") from None


class HeaderMatch:
    """Keep records that carry a header (optionally with one of some values)."""

    def __init__(self, config: str) -> None:
        opts = _options(config, {"name", "value", "values"}, {"name"})
        self._name = _text(opts, "name")
        if "value" in opts and "values" in opts:
            raise ValueError("give value or values, not both")
        values: list[Any] | None = None
        if "value" in opts:
            values = [opts["value"]]
        elif "values" in opts:
            values = opts["values"]
            if not isinstance(values, list) or not values:
                raise ValueError(f"values must be a non-empty list, got {values!r}")
        if values is not None and not all(isinstance(v, str) for v in values):
            raise ValueError(f"header values must be strings, got {values!r}")
        self._values = None if values is None else frozenset(v.encode() for v in values)
        self._negate: bool = opts.get("negate", False)

    def allow(self, record: RelayRecord) -> bool:
        return self._matches(record) != self._negate

    def _matches(self, record: RelayRecord) -> bool:
        for name, value in record.headers() or ():
            if name == self._name and (self._values is None or value in self._values):
                return True
        return False


class KeyMatch:
    """Keep records whose key equals, starts with, or matches a pattern."""

    def __init__(self, config: str) -> None:
        opts = _options(config, {"equals", "prefix", "regex"}, set())
        given = [k for k in ("equals", "prefix", "regex") if k in opts]
        if len(given) != 1:
            raise ValueError(f"give exactly one of equals, prefix, regex (got {given or 'none'})")
        kind = given[0]
        text = _text(opts, kind).encode()
        self._match: Callable[[bytes], bool]
        if kind == "equals":
            self._match = text.__eq__
        elif kind == "prefix":
            self._match = lambda key: key.startswith(text)
        else:
            self._match = _compile(opts[kind], "regex").search  # type: ignore[assignment]
        self._negate: bool = opts.get("negate", False)

    def allow(self, record: RelayRecord) -> bool:
        key = record.key()
        matched = key is not None and bool(self._match(key))
        return matched != self._negate


class ValueRegex:
    """Keep records whose raw value matches a regular expression."""

    def __init__(self, config: str) -> None:
        opts = _options(config, {"pattern", "ignore_case"}, {"pattern"})
        ignore_case = opts.get("ignore_case", False)
        if not isinstance(ignore_case, bool):
            raise ValueError(f"ignore_case must be true or false, got {ignore_case!r}")
        self._search = _compile(
            _text(opts, "pattern"), "pattern", re.IGNORECASE if ignore_case else 0
        ).search
        self._negate: bool = opts.get("negate", False)

    def allow(self, record: RelayRecord) -> bool:
        value = record.value()
        matched = value is not None and self._search(value) is not None
        return matched != self._negate


_MISSING = object()
_ORDERING: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}
_OPS = ("eq", "ne", "in", "exists", "regex", *_ORDERING)


def _same_kind(a: Any, b: Any) -> bool:
    """JSON kinds, with bool kept apart from numbers (Python would say True == 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return True
    return type(a) is type(b)


def _equal(a: Any, b: Any) -> bool:
    return _same_kind(a, b) and a == b


class JsonField:
    """Keep records whose JSON value has a field meeting a condition."""

    def __init__(self, config: str) -> None:
        opts = _options(config, {"field", "op", "value"}, {"field"})
        field = _text(opts, "field")
        if not field:
            raise ValueError("field must not be empty")
        self._path = [int(p) if p.isdigit() else p for p in field.split(".")]
        op = opts.get("op", "exists")
        if op not in _OPS:
            raise ValueError(f"op {op!r} is not one of {', '.join(_OPS)}")
        if op != "exists" and "value" not in opts:
            raise ValueError(f"op {op!r} needs a value")
        value = opts.get("value")
        if op == "in" and not isinstance(value, list):
            raise ValueError(f"op 'in' needs a list value, got {value!r}")
        if op in _ORDERING and (
            isinstance(value, bool) or not isinstance(value, int | float | str)
        ):
            raise ValueError(f"op {op!r} needs a number or string value, got {value!r}")
        self._test = self._condition(op, value)
        self._negate: bool = opts.get("negate", False)

    @staticmethod
    def _condition(op: str, value: Any) -> Callable[[Any], bool]:
        if op == "exists":
            return lambda _found: True
        if op == "eq":
            return lambda found: _equal(found, value)
        if op == "ne":
            return lambda found: not _equal(found, value)
        if op == "in":
            return lambda found: any(_equal(found, v) for v in value)
        if op == "regex":
            if not isinstance(value, str):
                raise ValueError(f"op 'regex' needs a string value, got {value!r}")
            try:
                search = re.compile(value).search
            except re.error as exc:
                raise ValueError(
                    f"value {value!r} is not a valid regular expression: {exc}"
                ) from None
            return lambda found: isinstance(found, str) and search(found) is not None
        compare = _ORDERING[op]
        return lambda found: _same_kind(found, value) and compare(found, value)

    def _lookup(self, value: bytes | None) -> Any:
        if value is None:
            return _MISSING
        try:
            node = json.loads(value)
        except ValueError:
            return _MISSING
        for part in self._path:
            if isinstance(node, dict):
                node = node.get(str(part), _MISSING)
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                return _MISSING
            if node is _MISSING:
                return _MISSING
        return node

    def allow(self, record: RelayRecord) -> bool:
        found = self._lookup(record.value())
        matched = found is not _MISSING and self._test(found)
        return matched != self._negate


BUILTIN_FILTERS: dict[str, FilterFactory] = {
    "header-match": HeaderMatch,
    "key-match": KeyMatch,
    "value-regex": ValueRegex,
    "json-field": JsonField,
}
