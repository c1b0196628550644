"""The Go text/template subset Kapacitor users write, with Go's exact output formatting.

Kapacitor renders alert `.id()`, `.message()`, `.details()` and the Kafka handler's `template`
option with Go's text/template (details with html/template). Users copy these templates between
systems, so the output must be byte-identical: Go's `%v` float formatting, sorted `map[k:v]`
printing, `<no value>` for missing keys, comparison rules that refuse int-vs-float, and so on.
No maintained Python package implements Go templates (the PyPI ones wrap a Go shared library),
so the lexer, parser and evaluator below follow Go's text/template/parse and exec packages.

Supported: text and `{{ }}` actions with `{{-`/`-}}` trim markers and `{{/* */}}` comments;
fields, chained fields, `$` variables with `:=` and `=`; `if`/`else if`/`else`, `range` (with
`$i, $v :=`, `else`, `break`, `continue`), `with`/`else with`; pipelines `|` and parentheses;
the builtins and, or, not, eq, ne, lt, le, gt, ge, index, len, print, printf, println, html,
urlquery; plus caller-supplied functions such as Kapacitor's `json`. Not supported (parse
error): define, template, block. printf covers the verbs v d s q t f F e E g G x X o b c with
Go's flags, width and precision; not covered are Go-syntax `%#v` (printed as `%v`) and the
hexadecimal/binary float forms `%x %X %b` of floats (printed as `%!x(...)` markers).

Go values are modelled by Python ones: None is a nil interface, bool/int/float/str are the basic
kinds, dict is map[string]interface{} (GoMap carries another element type's zero value), list
is a slice, Struct is a struct, and Time/Duration are time.Time/time.Duration. Any object with a
`go_string()` method is a fmt.Stringer, and one with `go_json()` is a json.Marshaler.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any, Final

# --------------------------------------------------------------------------------------------
# Value model


class _NoValue:
    """Go's invalid reflect.Value: what a missing map key evaluates to."""

    def __repr__(self) -> str:
        return "NO_VALUE"


NO_VALUE: Final = _NoValue()


class GoMap(dict[str, Any]):
    """A map whose element type is not interface{}: `index` of a missing key yields `zero`."""

    def __init__(self, items: Mapping[str, Any] | None = None, *, zero: Any, go_type: str) -> None:
        super().__init__(items or {})
        self.zero = zero
        self.go_type = go_type


@dataclass(frozen=True, slots=True)
class Field:
    """One struct field. `json_name` and `omitempty` mirror the Go `json:"..."` tag; an
    embedded field's Struct has its fields promoted for access and JSON, as in Go."""

    name: str
    value: Any
    json_name: str | None = None
    omitempty: bool = False
    embedded: bool = False


class Struct:
    """A Go struct value with exported fields in declaration order."""

    __slots__ = ("fields", "go_type")

    def __init__(self, go_type: str, fields: Sequence[Field]) -> None:
        self.go_type = go_type
        self.fields = tuple(fields)

    def lookup(self, name: str) -> Any:
        """Field by name, searching promoted fields of embedded structs; KeyError if absent."""
        for f in self.fields:
            if f.name == name:
                return f.value
        for f in self.fields:
            if f.embedded and isinstance(f.value, Struct):
                try:
                    return f.value.lookup(name)
                except KeyError:
                    continue
        raise KeyError(name)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Struct)
            and self.go_type == other.go_type
            and [f.value for f in self.fields] == [f.value for f in other.fields]
        )

    __hash__ = None  # type: ignore[assignment]  # fields may hold maps and slices, like Go

    def __repr__(self) -> str:
        inner = ", ".join(f"{f.name}={f.value!r}" for f in self.fields)
        return f"Struct({self.go_type}: {inner})"


_NS_PER_SECOND = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Duration(int):
    """time.Duration: an int64 nanosecond count that prints like Go (`1m30s`)."""

    go_type = "time.Duration"

    def go_string(self) -> str:
        return format_go_duration(int(self))

    def go_method(self, name: str) -> Callable[[], Any] | None:
        ns = int(self)
        methods: dict[str, Callable[[], Any]] = {
            "String": self.go_string,
            "Nanoseconds": lambda: ns,
            "Seconds": lambda: _split_float(ns, _NS_PER_SECOND),
            "Minutes": lambda: _split_float(ns, 60 * _NS_PER_SECOND),
            "Hours": lambda: _split_float(ns, 3600 * _NS_PER_SECOND),
        }
        return methods.get(name)


def _split_float(ns: int, unit: int) -> float:
    whole, rest = divmod(abs(ns), unit)
    value = whole + rest / unit
    return -value if ns < 0 else value


@dataclass(frozen=True, slots=True)
class Time:
    """A UTC time.Time with nanosecond precision (Python datetimes stop at microseconds)."""

    unix_nano: int

    go_type = "time.Time"

    def _parts(self) -> tuple[datetime, int]:
        seconds, nanos = divmod(self.unix_nano, _NS_PER_SECOND)
        return _utc(seconds), nanos

    def go_string(self) -> str:
        """time.Time.String: `2006-01-02 15:04:05.999999999 -0700 MST`, here always UTC."""
        moment, nanos = self._parts()
        return f"{_date_time(moment, ' ')}{_fraction(nanos)} +0000 UTC"

    def rfc3339nano(self) -> str:
        """The layout Go's time.Time MarshalJSON writes."""
        return rfc3339nano(self.unix_nano)

    def go_json(self) -> str:
        try:
            return f'"{self.rfc3339nano()}"'
        except ValueError:
            raise GoJSONError("Time.MarshalJSON: year outside of range [0,9999]") from None

    def go_method(self, name: str) -> Callable[[], Any] | None:
        methods: dict[str, Callable[[], Any]] = {
            "String": self.go_string,
            "Unix": lambda: self.unix_nano // _NS_PER_SECOND,
            "UnixMilli": lambda: self.unix_nano // 1_000_000,
            "UnixNano": lambda: self.unix_nano,
            "UTC": lambda: self,
        }
        return methods.get(name)


def _utc(seconds: int) -> datetime:
    try:
        return _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"time outside the years 1-9999: {seconds}s since 1970") from None


@functools.lru_cache(maxsize=4096)
def _rfc3339_seconds(seconds: int) -> str:
    return _date_time(_utc(seconds), "T")


def rfc3339nano(unix_nano: int) -> str:
    """Go's time.RFC3339Nano in UTC. Alerts come in bursts of the same few seconds, so the date
    and time of day are cached by second (it is on every alert's hot path, twice)."""
    seconds, nanos = divmod(unix_nano, _NS_PER_SECOND)
    if nanos:
        return f"{_rfc3339_seconds(seconds)}{f'.{nanos:09d}'.rstrip('0')}Z"
    return f"{_rfc3339_seconds(seconds)}Z"


def _date_time(moment: datetime, sep: str) -> str:
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}{sep}"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )


def _fraction(nanos: int) -> str:
    return f".{nanos:09d}".rstrip("0") if nanos else ""


def format_go_duration(ns: int) -> str:
    """time.Duration.String, ported so nanosecond durations print exactly as Go prints them."""
    if ns == 0:
        return "0s"
    neg = ns < 0
    u = -ns if neg else ns
    if u < _NS_PER_SECOND:
        if u < 1_000:
            text = f"{u}ns"
        elif u < 1_000_000:
            text = f"{_frac_units(u, 3)}µs"
        else:
            text = f"{_frac_units(u, 6)}ms"
    else:
        seconds, frac = divmod(u, _NS_PER_SECOND)
        sec_text = f"{seconds % 60}{_fraction(frac)}s"
        minutes = seconds // 60
        if minutes:
            hours = minutes // 60
            sec_text = f"{minutes % 60}m{sec_text}"
            if hours:
                sec_text = f"{hours}h{sec_text}"
        text = sec_text
    return "-" + text if neg else text


def _frac_units(u: int, prec: int) -> str:
    whole, frac = divmod(u, 10**prec)
    digits = f"{frac:0{prec}d}".rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def go_type_name(value: Any) -> str:
    """The Go type name fmt would print for a value (used in `%!d(string=x)` markers)."""
    if value is None:
        return "<nil>"
    explicit = getattr(value, "go_type", None)
    if isinstance(explicit, str):
        return explicit
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, list | tuple):
        return "[]interface {}"
    return type(value).__name__


# --------------------------------------------------------------------------------------------
# fmt: %v and Printf


def _shortest_digits(x: float) -> tuple[str, int]:
    """Shortest round-trip digits and decimal-point position of |x| (Go and Python agree)."""
    _, digits, exponent = Decimal(repr(abs(x))).normalize().as_tuple()
    text = "".join(map(str, digits))
    if text == "0":
        return "0", 1
    return text, len(text) + int(exponent)


def _fmt_e(neg: bool, digits: str, dp: int, prec: int, upper: bool = False) -> str:
    """Go's fmtE over already-rounded digits: d.ddde±XX with at least two exponent digits."""
    mantissa = digits[0]
    if prec > 0:
        mantissa += "." + digits[1 : prec + 1].ljust(prec, "0")
    exp = dp - 1
    sign = "-" if exp < 0 else "+"
    e = "E" if upper else "e"
    return f"{'-' if neg else ''}{mantissa}{e}{sign}{abs(exp):02d}"


def _fmt_f(neg: bool, digits: str, dp: int, prec: int) -> str:
    out = digits[:dp].ljust(dp, "0") if dp > 0 else "0"
    if prec > 0:
        frac = "".join(digits[i] if 0 <= i < len(digits) else "0" for i in range(dp, dp + prec))
        out += "." + frac
    return ("-" if neg else "") + out


def _special_float(x: float) -> str | None:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return None


def _neg(x: float) -> bool:
    return math.copysign(1.0, x) < 0


def _fixed_repr(x: float) -> str:
    """Fast path: in [1e-4, 1e16) Python's repr is already the shortest fixed-point form, which
    is what Go prints there too, except that Go drops a trailing `.0`."""
    text = repr(x)
    return text[:-2] if text.endswith(".0") else text


def format_float_g(x: float, upper: bool = False) -> str:
    """fmt's %v / %g for float64: the shortest round-trip digits, in exponent form when the
    decimal exponent is below -4 or at least 6 (so 1e6 prints as `1e+06`, 123456 as is)."""
    if 1e-4 <= abs(x) < 1e6 or x == 0:
        return _fixed_repr(x)
    special = _special_float(x)
    if special is not None:
        return special
    digits, dp = _shortest_digits(x)
    exp = dp - 1
    if exp < -4 or exp >= 6:
        return _fmt_e(_neg(x), digits, dp, len(digits) - 1, upper)
    return _fmt_f(_neg(x), digits, dp, max(len(digits) - dp, 0))


def format_float_json(x: float) -> str:
    """encoding/json's float64 form: %f-like unless |x| < 1e-6 or >= 1e21, then trimmed %e."""
    if 1e-4 <= abs(x) < 1e16 or x == 0:
        return _fixed_repr(x)
    if math.isnan(x) or math.isinf(x):
        raise GoJSONError(f"json: unsupported value: {_special_float(x)}")
    digits, dp = _shortest_digits(x)
    ax = abs(x)
    if ax != 0 and (ax < 1e-6 or ax >= 1e21):
        text = _fmt_e(_neg(x), digits, dp, len(digits) - 1)
        if text[-4] == "e" and text[-3] == "-" and text[-2] == "0":
            text = text[:-2] + text[-1]
        return text
    return _fmt_f(_neg(x), digits, dp, max(len(digits) - dp, 0))


def _go_quote(s: str, quote: str = '"', ascii_only: bool = False) -> str:
    """strconv.Quote (or QuoteToASCII): Go escapes, printable Unicode kept unless ASCII-only."""
    out = [quote]
    for ch in s:
        code = ord(ch)
        if ch in (quote, "\\"):
            out.append("\\" + ch)
        elif ch.isprintable() and (code < 0x80 or not ascii_only):
            out.append(ch)
        elif ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append(quote)
    return "".join(out)


_SHORT_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


@dataclass(slots=True)
class _Spec:
    verb: str
    minus: bool = False
    plus: bool = False
    sharp: bool = False
    space: bool = False
    zero: bool = False
    width: int | None = None
    prec: int | None = None
    plus_v: bool = False  # %+v: struct field names, and no '+' sign on numbers
    erroring: bool = False  # inside a `%!verb(...)` marker, where Go ignores String methods


def _is_stringer(value: Any) -> bool:
    return callable(getattr(value, "go_string", None))


def _bad_verb(spec: _Spec, value: Any) -> str:
    """Go's `%!verb(type=value)`; the value is printed with %v under the same flags."""
    if value is None or value is NO_VALUE:
        return f"%!{spec.verb}(<nil>)"
    shown = _format_value(value, dataclasses.replace(spec, verb="v", erroring=True))
    return f"%!{spec.verb}({go_type_name(value)}={shown})"


def _pad(text: str, spec: _Spec, numeric: bool = False) -> str:
    """Width padding: zeros after the sign for numbers with '0', spaces otherwise ('-' pads
    on the right and wins over '0', as in Go)."""
    if spec.width is None or len(text) >= spec.width:
        return text
    fill = spec.width - len(text)
    if spec.minus:
        return text + " " * fill
    if spec.zero and numeric:
        sign = text[0] if text[:1] in ("-", "+", " ") else ""
        return sign + "0" * fill + text[len(sign) :]
    if spec.zero:
        return "0" * fill + text
    return " " * fill + text


def _sign(text: str, spec: _Spec) -> str:
    if text.startswith("-"):
        return text
    if spec.plus:
        return "+" + text
    if spec.space:
        return " " + text
    return text


def _rune(value: int) -> str:
    valid = 0 <= value <= 0x10FFFF and not 0xD800 <= value <= 0xDFFF
    return chr(value) if valid else "\ufffd"


_INT_BASES = {"v": "d", "d": "d", "x": "x", "X": "X", "o": "o", "b": "b"}


def _format_int(value: int, spec: _Spec) -> str:
    verb = spec.verb
    if verb == "c":
        return _pad(_rune(value), spec)
    if verb == "q":
        return _pad(_go_quote(_rune(value), "'", ascii_only=spec.plus), spec)
    if verb not in _INT_BASES:
        return _bad_verb(spec, value)
    if spec.prec == 0 and value == 0:
        return _pad("", dataclasses.replace(spec, zero=False))
    text = format(abs(value), _INT_BASES[verb])
    if spec.prec is not None:
        # An explicit precision pads with zeros itself; Go then ignores the '0' flag.
        text = text.rjust(spec.prec, "0")
        spec = dataclasses.replace(spec, zero=False)
    if spec.sharp and verb in "xX":
        text = "0" + verb + text
    elif spec.sharp and verb == "o" and not text.startswith("0"):
        text = "0" + text
    text = ("-" + text) if value < 0 else text
    return _pad(_sign(text, spec), spec, numeric=True)


def _sharp_g(text: str, prec: int | None) -> str:
    """Go's '#' flag for %g/%v: keep a decimal point and pad to the significant digits."""
    cut = next((i for i, ch in enumerate(text) if ch in "eE"), len(text))
    num, tail = text[:cut], text[cut:]
    digits = 6 if prec is None else prec
    seen_nonzero = False
    for ch in num.lstrip("-"):
        if ch == ".":
            continue
        seen_nonzero = seen_nonzero or ch != "0"
        if seen_nonzero:
            digits -= 1
    if "." not in num:
        if num.lstrip("-") == "0":
            digits -= 1
        num += "."
    return num + "0" * max(digits, 0) + tail


def _format_float(value: float, spec: _Spec) -> str:
    verb = spec.verb
    special = _special_float(value)
    if special is not None:
        # Go keeps the sign of an infinity, adds one to NaN only for '+' or ' ', and never
        # zero-pads these.
        if special == "NaN" and (spec.plus or spec.space):
            special = ("+" if spec.plus else " ") + special
        return _pad(special, dataclasses.replace(spec, zero=False))
    alt = "#" if spec.sharp else ""
    if verb in "vgG":
        upper = verb == "G"
        if spec.prec is None:
            text = format_float_g(value, upper=upper)
        else:
            text = f"{value:.{spec.prec}{'G' if upper else 'g'}}"
        if spec.sharp:
            text = _sharp_g(text, spec.prec)
    elif verb in "fFeE":
        text = f"{value:{alt}.{6 if spec.prec is None else spec.prec}{verb}}"
    else:
        return _bad_verb(spec, value)
    return _pad(_sign(text, spec), spec, numeric=True)


def _format_str(value: str, spec: _Spec) -> str:
    verb = spec.verb
    if spec.prec is not None and verb in "vsq":
        value = value[: spec.prec]
    if verb in "vs":
        text = value
    elif verb == "q":
        raw = spec.sharp and "`" not in value and all(c == "\t" or c.isprintable() for c in value)
        text = f"`{value}`" if raw else _go_quote(value, ascii_only=spec.plus)
    elif verb in "xX":
        data = value.encode()[: spec.prec]
        text = ("0" + verb if spec.sharp and data else "") + data.hex()
        text = text.upper() if verb == "X" else text
    else:
        return _bad_verb(spec, value)
    return _pad(text, spec)


def _format_value(value: Any, spec: _Spec, depth: int = 0) -> str:
    """fmt's printArg/printValue for one operand under one verb. Containers are not padded
    as a whole: Go applies width and precision to each element."""
    verb = spec.verb
    if value is None or value is NO_VALUE:
        if verb == "v" or depth > 0:
            return _pad("<nil>", spec)
        return _bad_verb(spec, None)
    if isinstance(value, bool):
        if verb in "vt":
            return _pad("true" if value else "false", spec)
        return _bad_verb(spec, value)
    if not spec.erroring and _is_stringer(value) and verb in "vsxXq":
        return _format_str(value.go_string(), spec)
    if isinstance(value, int):
        return _format_int(int(value), spec)
    if isinstance(value, float):
        return _format_float(value, spec)
    if isinstance(value, str):
        return _format_str(value, spec)
    if isinstance(value, dict):
        items = " ".join(
            f"{_format_value(k, spec, depth + 1)}:{_format_value(value[k], spec, depth + 1)}"
            for k in sorted(value)
        )
        return f"map[{items}]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(_format_value(v, spec, depth + 1) for v in value) + "]"
    if isinstance(value, Struct):
        parts = []
        for f in value.fields:
            rendered = _format_value(f.value, spec, depth + 1)
            parts.append(f"{f.name}:{rendered}" if spec.plus_v else rendered)
        return "{" + " ".join(parts) + "}"
    return _pad(str(value), spec)


def sprint_value(value: Any) -> str:
    """fmt.Sprint of a single operand (`%v`)."""
    return _format_value(value, _Spec("v"))


def go_sprint(*args: Any) -> str:
    """fmt.Sprint: a space between operands when neither side is a string."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if i > 0 and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(sprint_value(arg))
    return "".join(out)


def go_sprintln(*args: Any) -> str:
    """fmt.Sprintln: always a space between operands, and a trailing newline."""
    return " ".join(sprint_value(a) for a in args) + "\n"


_DIRECTIVE = re.compile(r"%([-+# 0]*)(\d*)(?:\.(\d*))?(.?)", re.DOTALL)
_PRINTF_VERBS = frozenset("vdsfFeEgGqtxXobc")


def go_sprintf(fmt: str, *args: Any) -> str:
    """fmt.Sprintf for the verbs templates use, with Go's `%!` error markers."""
    out: list[str] = []
    argi = 0
    pos = 0
    for m in _DIRECTIVE.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width, prec, verb = m.groups()
        if not verb:
            out.append("%!(NOVERB)")
            continue
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        spec = _Spec(
            verb,
            minus="-" in flags,
            plus="+" in flags and verb != "v",
            plus_v="+" in flags and verb == "v",
            sharp="#" in flags and verb != "v",
            space=" " in flags,
            zero="0" in flags,
            width=int(width) if width else None,
            prec=None if prec is None else int(prec or 0),
        )
        arg = args[argi]
        argi += 1
        out.append(_format_value(arg, spec) if verb in _PRINTF_VERBS else _bad_verb(spec, arg))
    out.append(fmt[pos:])
    if argi < len(args):
        extra = ", ".join(
            "<nil>" if a is None else f"{go_type_name(a)}={sprint_value(a)}" for a in args[argi:]
        )
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


# --------------------------------------------------------------------------------------------
# encoding/json


class GoJSONError(ValueError):
    """A value Go's encoding/json refuses (NaN, infinities, years past 9999)."""


# Python's C-accelerated string encoder escapes exactly what Go escapes by default for `"`,
# `\\` and control characters (short forms for \b \f \n \r \t); Go's HTML-safe extras and
# its replacement of invalid UTF-16 surrogates are applied afterwards, only when present.
# Python's C string encoder escapes what Go escapes for `"`, `\\` and control characters (with
# the same short forms); Go's HTML-safe escapes and its replacement of invalid UTF-16 surrogates
# are added afterwards, only for strings that need them.
_GO_ONLY_ESCAPES = re.compile("[<>&\u2028\u2029\ud800-\udfff]")
_SURROGATES = re.compile("[\ud800-\udfff]")


def json_string(s: str) -> str:
    """A JSON string as Go's encoder writes it with HTML escaping on (the default)."""
    out: str = encode_basestring(s)
    if _GO_ONLY_ESCAPES.search(out) is None:
        return out
    out = out.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    out = out.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return _SURROGATES.sub("\\\\ufffd", out)


def go_json(value: Any) -> str:
    """json.Marshal of a value from the Go value model (no trailing newline)."""
    parts: list[str] = []
    _json_into(value, parts)
    return "".join(parts)


def go_json_encode(value: Any) -> str:
    """json.NewEncoder(w).Encode: Marshal plus the trailing newline Kapacitor's bodies carry."""
    return go_json(value) + "\n"


def _json_empty(value: Any) -> bool:
    if value is None or value is False:
        return True
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value == 0
    if isinstance(value, str | dict | list | tuple):
        return len(value) == 0
    return False


def _json_fields(struct: Struct) -> Iterator[tuple[str, Any]]:
    for f in struct.fields:
        if f.embedded and f.json_name is None and isinstance(f.value, Struct):
            yield from _json_fields(f.value)
        elif not (f.omitempty and _json_empty(f.value)):
            yield (f.json_name or f.name), f.value


def _json_into(value: Any, out: list[str]) -> None:
    kind = type(value)
    # Exact-type fast paths first: alert bodies are mostly plain strings and numbers.
    if kind is str:
        out.append(json_string(value))
    elif kind is float:
        out.append(format_float_json(value))
    elif kind is int:
        out.append(str(value))
    elif kind is bool:
        out.append("true" if value else "false")
    elif value is None or value is NO_VALUE:
        out.append("null")
    elif callable(marshal := getattr(value, "go_json", None)):
        out.append(marshal())
    elif isinstance(value, Struct):
        _json_object(_json_fields(value), out)
    elif isinstance(value, dict):
        _json_object(((str(k), value[k]) for k in sorted(value)), out)
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _json_into(item, out)
        out.append("]")
    elif isinstance(value, int):  # subclasses such as Duration
        out.append(str(int(value)))
    elif isinstance(value, float):
        out.append(format_float_json(float(value)))
    elif isinstance(value, str):
        out.append(json_string(str(value)))
    else:
        raise GoJSONError(f"json: unsupported type: {kind.__name__}")


def _json_object(items: Iterable[tuple[str, Any]], out: list[str]) -> None:
    out.append("{")
    for i, (name, item) in enumerate(items):
        if i:
            out.append(",")
        out.append(json_string(name))
        out.append(":")
        _json_into(item, out)
    out.append("}")


def _json_func(value: Any) -> str:
    return go_json_encode(value)


def _json_compact_func(value: Any) -> str:
    return go_json(value)


KAPACITOR_DETAILS_FUNCS: Final[Mapping[str, Callable[..., Any]]] = {
    "json": _json_func,
    "jsonCompact": _json_compact_func,
}
"""The extra functions Kapacitor gives `.details()` templates (`json` keeps the newline)."""


# --------------------------------------------------------------------------------------------
# Errors


class TemplateError(Exception):
    """Base for template failures; the message reads like Go's (`template: name:line:col: ...`)."""


class TemplateParseError(TemplateError):
    def __init__(self, name: str, line: int, col: int, message: str) -> None:
        super().__init__(f"template: {name}:{line}:{col}: {message}")
        self.name = name
        self.line = line
        self.col = col
        self.message = message


class TemplateExecError(TemplateError):
    def __init__(self, name: str, line: int, col: int, context: str, message: str) -> None:
        super().__init__(
            f'template: {name}:{line}:{col}: executing "{name}" at <{context}>: {message}'
        )
        self.name = name
        self.line = line
        self.col = col
        self.message = message


# --------------------------------------------------------------------------------------------
# Lexer

_SPACE = " \t\r\n"
_KEYWORDS = {
    "block",
    "break",
    "continue",
    "define",
    "else",
    "end",
    "if",
    "range",
    "nil",
    "template",
    "with",
}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    value: str
    pos: int


def _is_alnum(ch: str) -> bool:
    return ch == "_" or ch.isalnum()


class _Lexer:
    """Go's text/template/parse lexer, producing the same token stream."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self.pos = 0
        self.tokens: list[_Token] = []
        self.paren_depth = 0

    def error(self, pos: int, message: str) -> TemplateParseError:
        line, col = _line_col(self.text, pos)
        return TemplateParseError(self.name, line, col, message)

    def run(self) -> list[_Token]:
        text = self.text
        while True:
            start = self.pos
            j = text.find("{{", start)
            if j < 0:
                if start < len(text):
                    self.tokens.append(_Token("text", text[start:], start))
                self.tokens.append(_Token("eof", "", len(text)))
                return self.tokens
            trim_left = text.startswith("-", j + 2) and text[j + 3 : j + 4] in tuple(_SPACE)
            chunk = text[start:j]
            if trim_left:
                chunk = chunk.rstrip(_SPACE)
            if chunk:
                self.tokens.append(_Token("text", chunk, start))
            self.pos = j + 2 + (2 if trim_left else 0)
            if text.startswith("/*", self.pos):
                self._comment(j)
            else:
                self.tokens.append(_Token("left", "{{", j))
                self._inside_action()

    def _at_right_delim(self) -> tuple[bool, bool]:
        rest = self.text[self.pos : self.pos + 4]
        if len(rest) >= 4 and rest[0] in _SPACE and rest[1] == "-" and rest[2:4] == "}}":
            return True, True
        return rest.startswith("}}"), False

    def _after_right_delim(self, trim: bool) -> None:
        self.pos += 4 if trim else 2
        if trim:
            while self.pos < len(self.text) and self.text[self.pos] in _SPACE:
                self.pos += 1

    def _comment(self, left_pos: int) -> None:
        end = self.text.find("*/", self.pos + 2)
        if end < 0:
            raise self.error(left_pos, "unclosed comment")
        self.pos = end + 2
        delim, trim = self._at_right_delim()
        if not delim:
            raise self.error(left_pos, "comment ends before closing delimiter")
        self._after_right_delim(trim)

    def _emit(self, kind: str, start: int) -> None:
        self.tokens.append(_Token(kind, self.text[start : self.pos], start))

    def _inside_action(self) -> None:
        while True:
            delim, trim = self._at_right_delim()
            if delim:
                if self.paren_depth:
                    raise self.error(self.pos, "unclosed left paren")
                self.tokens.append(_Token("right", "}}", self.pos))
                self._after_right_delim(trim)
                return
            if self.pos >= len(self.text):
                raise self.error(self.pos, "unclosed action")
            self._action_token()

    def _action_token(self) -> None:
        text = self.text
        start = self.pos
        ch = text[self.pos]
        self.pos += 1
        simple = {"=": "assign", "|": "pipe"}
        if ch in _SPACE:
            self._space(start)
        elif ch in simple:
            self._emit(simple[ch], start)
        elif ch == ":":
            if text[self.pos : self.pos + 1] != "=":
                raise self.error(start, "expected :=")
            self.pos += 1
            self._emit("declare", start)
        elif ch == '"':
            self._quoted(start, '"', "string", "unterminated quoted string")
        elif ch == "'":
            self._quoted(start, "'", "charconst", "unterminated character constant")
        elif ch == "`":
            end = text.find("`", self.pos)
            if end < 0:
                raise self.error(start, "unterminated raw quoted string")
            self.pos = end + 1
            self._emit("rawstring", start)
        elif ch == "$":
            self._field_or_variable(start, "variable")
        elif ch == "." and not text[self.pos : self.pos + 1].isdigit():
            self._field_or_variable(start, "field")
        elif ch in "+-." or ch.isdigit():
            self.pos = start
            self._number(start)
        elif _is_alnum(ch):
            self._identifier(start)
        elif ch in "()":
            self.paren_depth += 1 if ch == "(" else -1
            if self.paren_depth < 0:
                raise self.error(start, "unexpected right paren")
            self._emit("lparen" if ch == "(" else "rparen", start)
        elif ch.isascii() and ch.isprintable():
            self._emit("char", start)
        else:
            raise self.error(start, f"unrecognized character in action: U+{ord(ch):04X}")

    def _space(self, start: int) -> None:
        text = self.text
        while self.pos < len(text) and text[self.pos] in _SPACE:
            self.pos += 1
        # A space directly before "-}}" belongs to the trim marker, not to the token stream.
        if text.startswith("-}}", self.pos):
            self.pos -= 1
            if self.pos == start:
                return
        self._emit("space", start)

    def _at_terminator(self) -> bool:
        if self.pos >= len(self.text):
            return True
        ch = self.text[self.pos]
        if ch in _SPACE or ch in ".,|:()":
            return True
        return self.text.startswith("}}", self.pos)

    def _field_or_variable(self, start: int, kind: str) -> None:
        if self._at_terminator():
            self._emit("variable" if kind == "variable" else "dot", start)
            return
        while self.pos < len(self.text) and _is_alnum(self.text[self.pos]):
            self.pos += 1
        if not self._at_terminator():
            raise self.error(self.pos, f"bad character U+{ord(self.text[self.pos]):04X}")
        self._emit(kind, start)

    def _identifier(self, start: int) -> None:
        while self.pos < len(self.text) and _is_alnum(self.text[self.pos]):
            self.pos += 1
        if not self._at_terminator():
            raise self.error(self.pos, f"bad character U+{ord(self.text[self.pos]):04X}")
        word = self.text[start : self.pos]
        if word in _KEYWORDS:
            self._emit(word, start)
        elif word in ("true", "false"):
            self._emit("bool", start)
        else:
            self._emit("identifier", start)

    def _quoted(self, start: int, quote: str, kind: str, unterminated: str) -> None:
        text = self.text
        while True:
            if self.pos >= len(text) or text[self.pos] == "\n":
                raise self.error(start, unterminated)
            ch = text[self.pos]
            self.pos += 1
            if ch == "\\":
                if self.pos >= len(text) or text[self.pos] == "\n":
                    raise self.error(start, unterminated)
                self.pos += 1
            elif ch == quote:
                break
        self._emit(kind, start)

    def _number(self, start: int) -> None:
        text = self.text
        if text[self.pos] in "+-":
            self.pos += 1
        digits = "0123456789_"
        if text.startswith(("0x", "0X"), self.pos):
            self.pos += 2
            digits = "0123456789abcdefABCDEF_"
        elif text.startswith(("0o", "0O"), self.pos):
            self.pos += 2
            digits = "01234567_"
        elif text.startswith(("0b", "0B"), self.pos):
            self.pos += 2
            digits = "01_"
        self._accept_run(digits)
        if text[self.pos : self.pos + 1] == ".":
            self.pos += 1
            self._accept_run(digits)
        exponents = "pP" if digits.startswith("0123456789a") else "eEpP"
        if len(digits) <= 3 and digits != "01_":
            exponents = ""
        if text[self.pos : self.pos + 1] and text[self.pos] in exponents:
            self.pos += 1
            if text[self.pos : self.pos + 1] in ("+", "-"):
                self.pos += 1
            self._accept_run("0123456789_")
        if text[self.pos : self.pos + 1] == "i":
            self.pos += 1
        if self.pos < len(text) and _is_alnum(text[self.pos]):
            self.pos += 1
            raise self.error(start, f"bad number syntax: {text[start : self.pos]!r}")
        self._emit("number", start)

    def _accept_run(self, valid: str) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in valid:
            self.pos += 1


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, col


# --------------------------------------------------------------------------------------------
# AST


@dataclass(slots=True)
class _Node:
    pos: int


@dataclass(slots=True)
class _Text(_Node):
    text: str


@dataclass(slots=True)
class _FieldRef(_Node):
    """`.A.B` (idents = ["A", "B"])."""

    idents: list[str]


@dataclass(slots=True)
class _VarRef(_Node):
    """`$x.A` (idents = ["$x", "A"])."""

    idents: list[str]


@dataclass(slots=True)
class _Chain(_Node):
    """`(pipeline).A.B`, or a function's result with fields."""

    node: _Pipe | _Ident
    fields: list[str]


@dataclass(slots=True)
class _Ident(_Node):
    name: str


@dataclass(slots=True)
class _Dot(_Node):
    pass


@dataclass(slots=True)
class _Nil(_Node):
    pass


@dataclass(slots=True)
class _Literal(_Node):
    value: Any
    text: str


@dataclass(slots=True)
class _Command(_Node):
    args: list[_Node]


@dataclass(slots=True)
class _Pipe(_Node):
    decl: list[str]
    is_assign: bool
    cmds: list[_Command]
    text: str = ""


@dataclass(slots=True)
class _Action(_Node):
    pipe: _Pipe


@dataclass(slots=True)
class _Control(_Node):
    kind: str  # "if", "range" or "with"
    pipe: _Pipe
    body: list[_Node]
    else_body: list[_Node] | None


@dataclass(slots=True)
class _Break(_Node):
    pass


@dataclass(slots=True)
class _Continue(_Node):
    pass


@dataclass(slots=True)
class _End(_Node):
    pass


@dataclass(slots=True)
class _Else(_Node):
    chained: str | None  # "if"/"with" for `else if` / `else with`


# --------------------------------------------------------------------------------------------
# Parser

_BUILTINS: Final = frozenset(
    {"and", "or", "not", "eq", "ne", "lt", "le", "gt", "ge", "index", "len"}
    | {"print", "printf", "println", "html", "urlquery"}
)
_UNSUPPORTED_GO: Final = frozenset({"call", "js", "slice"})


class _Parser:
    """Go's text/template/parse recursive-descent parser over the token list."""

    def __init__(self, name: str, text: str, funcs: Mapping[str, Callable[..., Any]]) -> None:
        self.name = name
        self.text = text
        self.funcs = funcs
        self.tokens = _Lexer(name, text).run()
        self.i = 0
        self.vars: list[str] = ["$"]
        self.range_depth = 0

    def error(self, pos: int, message: str) -> TemplateParseError:
        line, col = _line_col(self.text, pos)
        return TemplateParseError(self.name, line, col, message)

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def next(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def peek_non_space(self) -> _Token:
        while self.tokens[self.i].kind == "space":
            self.i += 1
        return self.tokens[self.i]

    def next_non_space(self) -> _Token:
        tok = self.peek_non_space()
        self.i += 1
        return tok

    def expect(self, kind: str, context: str) -> _Token:
        tok = self.next_non_space()
        if tok.kind != kind:
            raise self.unexpected(tok, context)
        return tok

    def unexpected(self, tok: _Token, context: str) -> TemplateParseError:
        if tok.kind == "eof":
            return self.error(tok.pos, f"unexpected EOF in {context}")
        return self.error(tok.pos, f"unexpected {_describe(tok)} in {context}")

    def parse(self) -> list[_Node]:
        nodes: list[_Node] = []
        while self.peek().kind != "eof":
            node = self.text_or_action()
            if isinstance(node, _End | _Else):
                raise self.error(
                    node.pos, f"unexpected {{{{{'end' if isinstance(node, _End) else 'else'}}}}}"
                )
            if node is not None:
                nodes.append(node)
        return nodes

    def item_list(self) -> tuple[list[_Node], _Node]:
        nodes: list[_Node] = []
        while True:
            tok = self.peek_non_space() if self.peek().kind == "space" else self.peek()
            if tok.kind == "eof":
                raise self.error(tok.pos, "unexpected EOF")
            node = self.text_or_action()
            if isinstance(node, _End | _Else):
                return nodes, node
            if node is not None:
                nodes.append(node)

    def text_or_action(self) -> _Node | None:
        tok = self.next_non_space()
        if tok.kind == "text":
            return _Text(tok.pos, tok.value)
        if tok.kind == "left":
            return self.action()
        raise self.unexpected(tok, "input")

    def action(self) -> _Node:
        tok = self.next_non_space()
        kind = tok.kind
        if kind in ("if", "range", "with"):
            return self.control(kind, tok.pos)
        if kind == "else":
            return self.else_control(tok.pos)
        if kind == "end":
            self.expect("right", "end")
            return _End(tok.pos)
        if kind in ("break", "continue"):
            if self.range_depth == 0:
                raise self.error(tok.pos, f"{{{{{kind}}}}} outside {{{{range}}}}")
            self.expect("right", kind)
            return _Break(tok.pos) if kind == "break" else _Continue(tok.pos)
        if kind in ("define", "template", "block"):
            raise self.error(tok.pos, f"{{{{{kind}}}}} is not supported")
        self.i -= 1
        pos = self.peek_non_space().pos
        return _Action(pos, self.pipeline("command", "right"))

    def else_control(self, pos: int) -> _Node:
        tok = self.peek_non_space()
        if tok.kind in ("if", "with"):
            return _Else(pos, tok.kind)
        self.expect("right", "else")
        return _Else(pos, None)

    def control(self, kind: str, pos: int) -> _Control:
        mark = len(self.vars)
        pipe = self.pipeline(kind, "right")
        if kind == "range":
            self.range_depth += 1
        body, end = self.item_list()
        if kind == "range":
            self.range_depth -= 1
        else_body: list[_Node] | None = None
        if isinstance(end, _Else):
            if end.chained == kind:
                # `{{else if}}` / `{{else with}}`: parse as a nested control that shares our end.
                tok = self.next_non_space()
                else_body = [self.control(kind, tok.pos)]
            elif end.chained is not None:
                tok = self.peek_non_space()
                raise self.error(tok.pos, f"unexpected {_describe(tok)} in else")
            else:
                else_body, end2 = self.item_list()
                if not isinstance(end2, _End):
                    raise self.error(end2.pos, "expected end; found {{else}}")
        del self.vars[mark:]
        return _Control(pos, kind, pipe, body, else_body)

    def pipeline(self, context: str, end: str) -> _Pipe:
        start_tok = self.peek_non_space()
        pipe = _Pipe(start_tok.pos, [], False, [])
        self._declarations(pipe, context)
        while True:
            tok = self.next_non_space()
            if tok.kind == end:
                self._check_pipeline(pipe, context, tok.pos)
                pipe.text = self.text[start_tok.pos : tok.pos].strip()
                return pipe
            if tok.kind in (
                "bool",
                "charconst",
                "dot",
                "field",
                "identifier",
                "number",
                "nil",
                "rawstring",
                "string",
                "variable",
                "lparen",
            ):
                self.i -= 1
                pipe.cmds.append(self.command())
            else:
                raise self.unexpected(tok, context)

    def _declarations(self, pipe: _Pipe, context: str) -> None:
        while True:
            save = self.i
            tok = self.peek_non_space()
            if tok.kind != "variable":
                self.i = save
                return
            self.next()
            nxt = self.peek_non_space()
            if nxt.kind in ("assign", "declare"):
                self.next_non_space()
                pipe.is_assign = nxt.kind == "assign"
                if pipe.is_assign and tok.value not in self.vars:
                    raise self.error(tok.pos, f"undefined variable {tok.value!r}")
                pipe.decl.append(tok.value)
                self.vars.append(tok.value)
                return
            if nxt.kind == "char" and nxt.value == ",":
                self.next_non_space()
                pipe.decl.append(tok.value)
                self.vars.append(tok.value)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().kind in ("variable", "right", "rparen"):
                        continue
                    raise self.error(
                        self.peek_non_space().pos, "range can only initialize variables"
                    )
                raise self.error(nxt.pos, f"too many declarations in {context}")
            self.i = save
            return

    def _check_pipeline(self, pipe: _Pipe, context: str, pos: int) -> None:
        if not pipe.cmds:
            raise self.error(pos, f"missing value for {context}")
        for stage, cmd in enumerate(pipe.cmds[1:], start=2):
            if isinstance(cmd.args[0], _Literal | _Dot | _Nil):
                raise self.error(cmd.pos, f"non executable command in pipeline stage {stage}")

    def command(self) -> _Command:
        cmd = _Command(self.peek_non_space().pos, [])
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            tok = self.next()
            if tok.kind == "space":
                continue
            if tok.kind in ("right", "rparen"):
                self.i -= 1
            elif tok.kind != "pipe":
                raise self.unexpected(tok, "operand")
            break
        if not cmd.args:
            raise self.error(cmd.pos, "empty command")
        return cmd

    def operand(self) -> _Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().kind == "field":
            fields: list[str] = []
            while self.peek().kind == "field":
                fields.append(self.next().value[1:])
            if isinstance(node, _FieldRef | _VarRef):
                node.idents.extend(fields)
            elif isinstance(node, _Literal | _Nil | _Dot):
                raise self.error(node.pos, "unexpected . after term")
            else:
                node = _Chain(node.pos, node, fields)
        return node

    def term(self) -> _Node | None:
        tok = self.next_non_space()
        kind = tok.kind
        if kind == "identifier":
            if tok.value not in _BUILTINS and tok.value not in self.funcs:
                if tok.value in _UNSUPPORTED_GO:
                    raise self.error(tok.pos, f"function {tok.value!r} is not supported")
                raise self.error(tok.pos, f'function "{tok.value}" not defined')
            return _Ident(tok.pos, tok.value)
        if kind == "dot":
            return _Dot(tok.pos)
        if kind == "nil":
            return _Nil(tok.pos)
        if kind == "variable":
            if tok.value not in self.vars:
                raise self.error(tok.pos, f'undefined variable "{tok.value}"')
            return _VarRef(tok.pos, [tok.value])
        if kind == "field":
            return _FieldRef(tok.pos, [tok.value[1:]])
        if kind == "bool":
            return _Literal(tok.pos, tok.value == "true", tok.value)
        if kind == "number":
            return _Literal(tok.pos, self._number(tok), tok.value)
        if kind == "charconst":
            return _Literal(tok.pos, ord(_unquote(self, tok, tok.value[1:-1], "'")), tok.value)
        if kind == "lparen":
            return self.pipeline("parenthesized pipeline", "rparen")
        if kind == "string":
            return _Literal(tok.pos, _unquote(self, tok, tok.value[1:-1], '"'), tok.value)
        if kind == "rawstring":
            return _Literal(tok.pos, tok.value[1:-1].replace("\r", ""), tok.value)
        self.i -= 1
        return None

    def _number(self, tok: _Token) -> int | float:
        text = tok.value
        if text.endswith("i"):
            raise self.error(tok.pos, "complex numbers are not supported")
        body = text.lstrip("+-")
        neg = text.startswith("-")
        lowered = body.lower()
        try:
            if lowered.startswith("0x"):
                if "p" in lowered or "." in lowered:
                    value: int | float = float.fromhex(body.replace("_", ""))
                else:
                    value = int(body, 16)
            elif lowered.startswith(("0o", "0b")):
                value = int(body, 0)
            elif any(c in body for c in ".eE"):
                value = float(body.replace("_", ""))
            elif len(body) > 1 and body.startswith("0"):
                value = int(body.replace("_", ""), 8)
            else:
                value = int(body.replace("_", ""))
        except ValueError:
            raise self.error(tok.pos, f"illegal number syntax: {text!r}") from None
        if isinstance(value, int) and not -(1 << 63) <= (-value if neg else value) < 1 << 63:
            raise self.error(tok.pos, f"{text} overflows int")
        return -value if neg else value


def _describe(tok: _Token) -> str:
    if tok.kind == "right":
        return '"}}"'
    if tok.kind == "rparen":
        return '")"'
    return f"<{tok.value}>"


def _unquote(parser: _Parser, tok: _Token, body: str, quote: str) -> str:
    """strconv.Unquote for the escapes Go accepts in interpreted strings and runes."""
    out: list[str] = []
    i = 0
    simple = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        esc = body[i + 1 : i + 2]
        i += 2
        if esc in simple:
            out.append(simple[esc])
        elif esc in ("\\", quote):
            out.append(esc)
        elif esc in ("x", "u", "U") or esc.isdigit():
            size = {"x": 2, "u": 4, "U": 8}.get(esc, 3)
            digits = body[i : i + size] if not esc.isdigit() else body[i - 1 : i + 2]
            base = 8 if esc.isdigit() else 16
            try:
                code = int(digits, base)
            except ValueError:
                raise parser.error(tok.pos, "invalid syntax in quoted string") from None
            if (esc == "x" or esc.isdigit()) and code >= 0x80:
                raise parser.error(tok.pos, "byte escapes above \\x7f are not supported")
            out.append(chr(code))
            i += size if not esc.isdigit() else 2
        else:
            raise parser.error(tok.pos, "invalid syntax in quoted string")
    if quote == "'" and len(out) != 1:
        raise parser.error(tok.pos, "malformed character constant")
    return "".join(out)


# --------------------------------------------------------------------------------------------
# HTML text-context escaping (html/template for Kapacitor's `.details()`)

# (character, replacement) in an order where no replacement is re-escaped: '&' goes first.
_HTML_ESCAPES = (
    ("&", "&amp;"),
    ("\0", "\ufffd"),
    ('"', "&#34;"),
    ("'", "&#39;"),
    ("<", "&lt;"),
    (">", "&gt;"),
)
_HTML_SPECIAL = re.compile("[&\0\"'<>+]")


def _html_replace(s: str, plus: bool) -> str:
    if _HTML_SPECIAL.search(s) is None:
        return s
    for char, replacement in _HTML_ESCAPES:
        s = s.replace(char, replacement)
    return s.replace("+", "&#43;") if plus else s


def html_escape(s: str) -> str:
    """html/template's escaper for plain (non-HTML-typed) values in text context."""
    return _html_replace(s, plus=True)


def _html_escape_string(s: str) -> str:
    """text/template's `html` builtin (template.HTMLEscapeString), which leaves '+' alone."""
    return _html_replace(s, plus=False)


_RAW_TEXT_ELEMENTS = ("script", "style", "textarea", "title")


def _html_check(parser: _Parser, nodes: list[_Node]) -> None:
    """Reject templates whose actions are not in HTML text context, and drop HTML comments.

    html/template escapes by context (attribute, URL, script, CSS...). Only plain text context
    is implemented, so an action anywhere else is refused at parse time instead of being escaped
    differently from Go.
    """
    flat: list[_Node] = []

    def walk(items: list[_Node]) -> None:
        for n in items:
            flat.append(n)
            if isinstance(n, _Control):
                walk(n.body)
                if n.else_body is not None:
                    walk(n.else_body)

    walk(nodes)
    flat.sort(key=lambda n: n.pos)
    for idx, node in enumerate(flat):
        if not isinstance(node, _Text):
            continue
        node.text, state_ok, bad_pos = _strip_html_comments_and_check(node.text)
        later_actions = any(not isinstance(n, _Text) for n in flat[idx + 1 :])
        if not state_ok and later_actions:
            raise parser.error(
                node.pos + bad_pos,
                "html/template: actions are supported only in HTML text context "
                "(not inside a tag, attribute, comment, script or style element)",
            )


def _strip_html_comments_and_check(text: str) -> tuple[str, bool, int]:
    """Return the text without `<!-- -->` comments, whether it ends in text context, and the
    offset where a non-text context begins."""
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        j = text.find("<", i)
        if j < 0:
            out.append(text[i:])
            return "".join(out), True, 0
        out.append(text[i:j])
        if text.startswith("<!--", j):
            end = text.find("-->", j + 4)
            if end < 0:
                return "".join(out), False, j
            i = end + 3
            continue
        k = j + 1 + (1 if text[j + 1 : j + 2] == "/" else 0)
        if not text[k : k + 1].isalpha():
            out.append("<")
            i = j + 1
            continue
        close = _tag_end(text, j)
        if close < 0:
            out.append(text[j:])
            return "".join(out), False, j
        tag = text[j:close]
        out.append(tag)
        i = close
        name = tag[1:].split(None, 1)[0].rstrip(">/").lower() if tag[1:2] != "/" else ""
        if name in _RAW_TEXT_ELEMENTS:
            end = text.lower().find(f"</{name}", i)
            if end < 0:
                out.append(text[i:])
                return "".join(out), False, j
            out.append(text[i:end])
            i = end
    return "".join(out), True, 0


def _tag_end(text: str, start: int) -> int:
    quote = ""
    for i in range(start + 1, len(text)):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == ">":
            return i + 1
    return -1


# --------------------------------------------------------------------------------------------
# Execution


class _BreakSignal(Exception):
    pass


class _ContinueSignal(Exception):
    pass


_INVALID_KIND = "invalid"


def _basic_kind(value: Any) -> str:
    if value is None or value is NO_VALUE:
        return _INVALID_KIND
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "other"


def truth(value: Any) -> bool:
    """Go template truthiness: zero values, empty collections and missing values are false."""
    if value is None or value is NO_VALUE:
        return False
    if isinstance(value, bool | int | float):
        return value != 0
    if isinstance(value, str | dict | list | tuple):
        return len(value) > 0
    return True


class _Exec:
    def __init__(self, template: Template, data: Any) -> None:
        self.t = template
        self.vars: list[tuple[str, Any]] = [("$", _normalise(data))]
        self.out: list[str] = []
        self.node: _Node | None = None
        self.context = ""

    def error(self, message: str) -> TemplateExecError:
        pos = self.node.pos if self.node is not None else 0
        line, col = _line_col(self.t.source, pos)
        return TemplateExecError(self.t.name, line, col, self.context, message)

    def walk(self, dot: Any, nodes: list[_Node]) -> None:
        for node in nodes:
            self.node = node
            if isinstance(node, _Text):
                self.out.append(node.text)
            elif isinstance(node, _Action):
                self.context = node.pipe.text
                value = self.pipeline(dot, node.pipe)
                if not node.pipe.decl:
                    self.print_value(value)
            elif isinstance(node, _Control):
                self.context = node.pipe.text
                if node.kind == "range":
                    self.walk_range(dot, node)
                else:
                    self.walk_if_or_with(dot, node)
            elif isinstance(node, _Break):
                raise _BreakSignal
            elif isinstance(node, _Continue):
                raise _ContinueSignal

    def print_value(self, value: Any) -> None:
        if self.t.html:
            if value is NO_VALUE or value is None:
                return
            self.out.append(html_escape(sprint_value(value)))
        elif value is NO_VALUE:
            self.out.append("<no value>")
        else:
            self.out.append(sprint_value(value))

    def walk_if_or_with(self, dot: Any, node: _Control) -> None:
        mark = len(self.vars)
        value = self.pipeline(dot, node.pipe)
        if truth(value):
            self.walk(value if node.kind == "with" else dot, node.body)
        elif node.else_body is not None:
            self.walk(dot, node.else_body)
        del self.vars[mark:]

    def walk_range(self, dot: Any, node: _Control) -> None:
        outer = len(self.vars)
        value = self.pipeline(dot, node.pipe)
        mark = len(self.vars)
        items: list[tuple[Any, Any]]
        if value is NO_VALUE or value is None:
            items = []
        elif isinstance(value, list | tuple):
            items = list(enumerate(value))
        elif isinstance(value, dict):
            items = [(k, value[k]) for k in sorted(value)]
        elif isinstance(value, int) and not isinstance(value, bool):
            if len(node.pipe.decl) > 1:
                raise self.error(f"can't use {value} to iterate over more than one variable")
            items = [(i, i) for i in range(value)]
        else:
            raise self.error(f"range can't iterate over {sprint_value(value)}")
        decl = node.pipe.decl
        try:
            for index, elem in items:
                if decl:
                    if node.pipe.is_assign:
                        self.set_var(decl[0], index if len(decl) > 1 else elem)
                        if len(decl) > 1:
                            self.set_var(decl[1], elem)
                    else:
                        self.vars[-1] = (self.vars[-1][0], elem)
                        if len(decl) > 1:
                            self.vars[-2] = (self.vars[-2][0], index)
                try:
                    self.walk(elem, node.body)
                except _ContinueSignal:
                    pass
                finally:
                    del self.vars[mark:]
        except _BreakSignal:
            pass
        if not items and node.else_body is not None:
            self.walk(dot, node.else_body)
        del self.vars[outer:]

    def set_var(self, name: str, value: Any) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return
        raise self.error(f"undefined variable: {name}")

    def var_value(self, name: str) -> Any:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                return self.vars[i][1]
        raise self.error(f"undefined variable: {name}")

    def pipeline(self, dot: Any, pipe: _Pipe) -> Any:
        value: Any = _MISSING_FINAL
        for cmd in pipe.cmds:
            value = self.command(dot, cmd, value)
            if value is None:
                value = NO_VALUE
        for name in pipe.decl:
            if pipe.is_assign:
                self.set_var(name, value)
            else:
                self.vars.append((name, value))
        return value

    def command(self, dot: Any, cmd: _Command, final: Any) -> Any:
        first = cmd.args[0]
        self.node = first
        if isinstance(first, _FieldRef):
            return self.field_chain(dot, dot, first.idents, cmd.args, final)
        if isinstance(first, _Chain):
            return self.chain(dot, first, cmd.args, final)
        if isinstance(first, _Ident):
            return self.call(dot, first.name, cmd.args, final)
        if isinstance(first, _VarRef):
            value = self.var_value(first.idents[0])
            if len(first.idents) == 1:
                self.not_a_function(cmd.args, final)
                return value
            return self.field_chain(dot, value, first.idents[1:], cmd.args, final)
        self.not_a_function(cmd.args, final)
        if isinstance(first, _Pipe):
            return self.pipeline(dot, first)
        if isinstance(first, _Literal):
            return first.value
        if isinstance(first, _Dot):
            return dot
        raise self.error("nil is not a command")

    def not_a_function(self, args: list[_Node], final: Any) -> None:
        if len(args) > 1 or final is not _MISSING_FINAL:
            raise self.error("can't give argument to non-function")

    def chain(self, dot: Any, chain: _Chain, args: list[_Node], final: Any) -> Any:
        node = chain.node
        if isinstance(node, _Pipe):
            receiver = self.pipeline(dot, node)
        else:
            receiver = self.call(dot, node.name, [node], _MISSING_FINAL)
        if receiver is None:
            receiver = NO_VALUE
        return self.field_chain(dot, receiver, chain.fields, args, final)

    def field_chain(
        self, dot: Any, receiver: Any, idents: list[str], args: list[_Node], final: Any
    ) -> Any:
        for ident in idents[:-1]:
            receiver = self.field(dot, ident, receiver, [], _MISSING_FINAL)
        return self.field(dot, idents[-1], receiver, args, final)

    def field(self, dot: Any, name: str, receiver: Any, args: list[_Node], final: Any) -> Any:
        has_args = len(args) > 1 or final is not _MISSING_FINAL
        if receiver is NO_VALUE:
            return NO_VALUE
        if receiver is None:
            raise self.error(f"nil pointer evaluating interface {{}}.{name}")
        method = getattr(receiver, "go_method", None)
        if callable(method):
            bound = method(name)
            if bound is not None:
                if has_args:
                    raise self.error(f"wrong number of args for {name}: want 0 got {len(args) - 1}")
                return bound()
        if isinstance(receiver, Struct):
            try:
                value = receiver.lookup(name)
            except KeyError:
                raise self.error(
                    f"can't evaluate field {name} in type {receiver.go_type}"
                ) from None
            if has_args:
                raise self.error(f"{name} has arguments but cannot be invoked as function")
            return value
        if isinstance(receiver, dict):
            if has_args:
                raise self.error(f"{name} is not a method but has arguments")
            return receiver.get(name, NO_VALUE)
        raise self.error(f"can't evaluate field {name} in type {go_type_name(receiver)}")

    def arg(self, dot: Any, node: _Node) -> Any:
        """evalArg for an interface{} / reflect.Value parameter."""
        self.node = node
        if isinstance(node, _Dot):
            return dot
        if isinstance(node, _Nil):
            return None
        if isinstance(node, _FieldRef):
            return self.field_chain(dot, dot, node.idents, [node], _MISSING_FINAL)
        if isinstance(node, _VarRef):
            value = self.var_value(node.idents[0])
            if len(node.idents) == 1:
                return value
            return self.field_chain(dot, value, node.idents[1:], [node], _MISSING_FINAL)
        if isinstance(node, _Pipe):
            return self.pipeline(dot, node)
        if isinstance(node, _Ident):
            return self.call(dot, node.name, [node], _MISSING_FINAL)
        if isinstance(node, _Chain):
            return self.chain(dot, node, [node], _MISSING_FINAL)
        assert isinstance(node, _Literal)
        return node.value

    def call(self, dot: Any, name: str, args: list[_Node], final: Any) -> Any:
        arg_nodes = args[1:]
        if name in ("and", "or"):
            if not arg_nodes and final is _MISSING_FINAL:
                raise self.error(f"wrong number of args for {name}: want at least 1 got 0")
            value: Any = NO_VALUE
            for node in arg_nodes:
                value = self.arg(dot, node)
                if truth(value) == (name == "or"):
                    return value
            return final if final is not _MISSING_FINAL else value
        values = [self.arg(dot, n) for n in arg_nodes]
        if final is not _MISSING_FINAL:
            values.append(final)
        if name in _BUILTINS:
            return self.builtin(name, values)
        plain = [None if v is NO_VALUE else v for v in values]
        try:
            return self.t.funcs[name](*plain)
        except TemplateError:
            raise
        except Exception as exc:
            raise self.error(f"error calling {name}: {exc}") from exc

    def builtin(self, name: str, values: list[Any]) -> Any:
        least, most = _ARITY[name]
        if len(values) < least or (most is not None and len(values) > most):
            want = f"{least}" if most == least else f"at least {least}"
            raise self.error(f"wrong number of args for {name}: want {want} got {len(values)}")
        try:
            return _BUILTIN_IMPL[name](values, [None if v is NO_VALUE else v for v in values])
        except _CallError as exc:
            raise self.error(f"error calling {name}: {exc}") from None


_MISSING_FINAL: Final = object()


class _CallError(Exception):
    pass


def _normalise(data: Any) -> Any:
    return NO_VALUE if data is None else data


def _eval_args(args: list[Any]) -> str:
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return go_sprint(*args)


def _eq(first: Any, others: list[Any]) -> bool:
    if not others:
        raise _CallError("missing argument for comparison")
    k1 = _basic_kind(first)
    for other in others:
        k2 = _basic_kind(other)
        if k1 != k2:
            if _INVALID_KIND not in (k1, k2):
                raise _CallError(_incompatible(first, other))
            continue
        if k1 == _INVALID_KIND:
            return True
        if k1 == "other":
            if isinstance(first, dict | list | tuple) or isinstance(other, dict | list | tuple):
                raise _CallError(f"non-comparable type {go_type_name(first)}")
            if first == other:
                return True
        elif first == other:
            return True
    return False


def _incompatible(a: Any, b: Any) -> str:
    return f"incompatible types for comparison: {go_type_name(a)} and {go_type_name(b)}"


def _lt(a: Any, b: Any) -> bool:
    k1, k2 = _basic_kind(a), _basic_kind(b)
    if k1 in (_INVALID_KIND, "other") or k2 in (_INVALID_KIND, "other"):
        raise _CallError("invalid type for comparison")
    if k1 != k2:
        raise _CallError(_incompatible(a, b))
    if k1 == "bool":
        raise _CallError("invalid type for comparison")
    return bool(a < b)


def _le(a: Any, b: Any) -> bool:
    return _lt(a, b) or _eq(a, [b])


_COMPARATORS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "ne": lambda a, b: not _eq(a, [b]),
    "lt": _lt,
    "le": _le,
    "gt": lambda a, b: not _le(a, b),
    "ge": lambda a, b: not _lt(a, b),
}


def _index(item: Any, keys: list[Any]) -> Any:
    if item is None or item is NO_VALUE:
        raise _CallError("index of untyped nil")
    for key in keys:
        if isinstance(item, list | tuple | str):
            if not isinstance(key, int) or isinstance(key, bool):
                raise _CallError(f"cannot index slice/array with type {go_type_name(key)}")
            size = len(item.encode()) if isinstance(item, str) else len(item)
            if not 0 <= key < size:
                raise _CallError(f"index out of range: {key}")
            item = item.encode()[key] if isinstance(item, str) else item[key]
        elif isinstance(item, dict):
            if not isinstance(key, str):
                raise _CallError(f"value has type {go_type_name(key)}; should be string")
            missing = item.zero if isinstance(item, GoMap) else None
            item = item.get(key, missing)
        else:
            raise _CallError(f"can't index item of type {go_type_name(item)}")
    return item


def _len(item: Any) -> int:
    if isinstance(item, str):
        return len(item.encode())
    if isinstance(item, dict | list | tuple):
        return len(item)
    if item is None or item is NO_VALUE:
        raise _CallError("len of nil pointer")
    raise _CallError(f"len of type {go_type_name(item)}")


def _printf(args: list[Any]) -> str:
    if not isinstance(args[0], str):
        raise _CallError(f"wrong type for value; expected string; got {go_type_name(args[0])}")
    return go_sprintf(args[0], *args[1:])


# Each builtin gets the argument values as reflect.Value-style (missing stays NO_VALUE) and as
# interface{} arguments (missing becomes nil), matching which one Go's function signature takes.
_BUILTIN_IMPL: Final[dict[str, Callable[[list[Any], list[Any]], Any]]] = {
    "not": lambda v, _: not truth(v[0]),
    "eq": lambda v, _: _eq(v[0], v[1:]),
    "index": lambda v, _: _index(v[0], v[1:]),
    "len": lambda v, _: _len(v[0]),
    "print": lambda _, p: go_sprint(*p),
    "println": lambda _, p: go_sprintln(*p),
    "printf": lambda _, p: _printf(p),
    "html": lambda _, p: _html_escape_string(_eval_args(p)),
    "urlquery": lambda _, p: urllib.parse.quote_plus(_eval_args(p), safe=""),
    **{op: (lambda v, _, f=f: f(v[0], v[1])) for op, f in _COMPARATORS.items()},
}
_ARITY: Final[dict[str, tuple[int, int | None]]] = {
    "not": (1, 1),
    "eq": (1, None),
    "ne": (2, 2),
    "lt": (2, 2),
    "le": (2, 2),
    "gt": (2, 2),
    "ge": (2, 2),
    "index": (1, None),
    "len": (1, 1),
    "print": (0, None),
    "println": (0, None),
    "printf": (1, None),
    "html": (0, None),
    "urlquery": (0, None),
}


@dataclass(frozen=True)
class Template:
    """A parsed template: parse once with `Template.parse`, then `execute` many times."""

    name: str
    source: str
    html: bool
    funcs: Mapping[str, Callable[..., Any]] = field(repr=False)
    _nodes: list[_Node] = field(repr=False)

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        name: str = "template",
        funcs: Mapping[str, Callable[..., Any]] | None = None,
        html: bool = False,
    ) -> Template:
        """Parse `text`; `html=True` escapes action output as html/template does in HTML text.

        Raises TemplateParseError naming the line and column, like Go's parse errors.
        """
        functions = dict(funcs or {})
        parser = _Parser(name, text, functions)
        nodes = parser.parse()
        if html:
            _html_check(parser, nodes)
        return cls(name, text, html, functions, nodes)

    def execute(self, data: Any) -> str:
        """Render with `data` as dot; raises TemplateExecError as Go's Execute would."""
        state = _Exec(self, data)
        state.walk(state.vars[0][1], self._nodes)
        return "".join(state.out)
