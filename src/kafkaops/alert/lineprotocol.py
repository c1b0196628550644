"""InfluxDB 1.x line protocol, read the way InfluxDB (and so Kapacitor's /write) reads it.

Users point Telegraf and scripts written for Kapacitor at us, so the split into lines, the escaping
rules and the error texts follow influxdb/models/points.go. Deliberate differences, all where
InfluxDB would quietly mangle or drop data: text after the closing quote of a string field value
is an error (InfluxDB keeps a corrupted string), a comment always ends at its newline (InfluxDB
lets a quote in a comment swallow the following lines), and a trailing carriage return is ignored
(CRLF bodies). Unlike Kapacitor, which rejects a whole body for one bad line, every bad line
becomes a LineError and the good lines of the same body are kept.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

FieldValue = float | int | str | bool

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1
# influxdb/models/time.go reserves the two lowest and the highest nanosecond values.
MIN_NANO_TIME = _INT64_MIN + 2
MAX_NANO_TIME = _INT64_MAX - 1
_MAX_KEY_LENGTH = 65535
_ERROR_TEXT_LIMIT = 200

# The `precision` query parameter of /write. InfluxDB 1.x knows n, u, ms, s, m, h; the longer
# spellings are what InfluxDB 2.x and most clients send, so both are accepted.
PRECISIONS: dict[str, int] = {
    "": 1,
    "n": 1,
    "ns": 1,
    "u": 1_000,
    "us": 1_000,
    "µ": 1_000,
    "µs": 1_000,
    "μ": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


@dataclass(slots=True)
class Point:
    """One measurement sample; every stage of the alert pipeline passes these around."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time: int
    """Nanoseconds since the Unix epoch."""


@dataclass(frozen=True, slots=True)
class LineError:
    """Why one line was rejected; line and column are 1-based and count characters."""

    line: int
    column: int
    message: str
    text: str

    def __str__(self) -> str:
        return (
            f"line {self.line} column {self.column}: unable to parse '{self.text}': {self.message}"
        )


@dataclass(slots=True)
class ParseResult:
    points: list[Point]
    errors: list[LineError]


class _BadLine(Exception):
    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message


# Measurement and tag tokens end at a delimiter that is not *preceded* by a backslash (points.go
# checks buf[i-1] != '\\'), so a run of backslashes escapes the character after it.
_MEASUREMENT = re.compile(r"(?:[^,\\ ]|\\+.?)+", re.S)
_TAG_KEY = re.compile(r"(?:[^ ,=\\]|\\+.?)+", re.S)
_TAG_VALUE = re.compile(r"(?:\\+.?|[^, ])(?:[^ ,=\\]|\\+.?)*", re.S)
# Field keys and string values are scanned in backslash *pairs* (points.go scanFields).
_FIELD = re.compile(
    r"""((?:[^\\=, ]|\\.)+)=(?:
        (-?[0-9]+)i
      | ([0-9]+)u
      | (-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
      | "((?:[^"\\]|\\.)*)"
      | (t|T|true|True|TRUE|f|F|false|False|FALSE)
    )(?=[ ,]|\Z)""",
    re.S | re.X,
)
_FIELD_KEY = re.compile(r"(?:[^\\=, ]|\\.)*", re.S)
_STRING_VALUE = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_TIMESTAMP = re.compile(r"-?[0-9]*")
_UNESCAPE_NAME = re.compile(r'\\([,"= ])')
_UNESCAPE_TAG = re.compile(r"\\([,= ])")
_UNESCAPE_STRING = re.compile(r'\\([\\"])')
_LINE_SPECIAL = re.compile(r'[\\ ="\n,]')
_SURROGATE = re.compile("[\udc80-\udcff]")
_WHITESPACE = " \t\x00"


def precision_multiplier(precision: str) -> int:
    """Nanoseconds per timestamp unit; ValueError names the unknown precision."""
    try:
        return PRECISIONS[precision]
    except KeyError:
        known = ", ".join(p for p in PRECISIONS if p)
        raise ValueError(f"unknown precision {precision!r} (expected one of {known})") from None


def parse_lines(data: str | bytes, *, now: int, precision: str = "ns") -> ParseResult:
    """Parse a /write body. `now` (ns) stamps points without a timestamp, truncated to precision."""
    mult = precision_multiplier(precision)
    default_time = now - now % mult
    text, bad_utf8 = _decode(data)
    points: list[Point] = []
    errors: list[LineError] = []
    pos = 0
    line_no = 1
    size = len(text)
    while pos < size:
        end = text.find("\n", pos)
        if end < 0:
            end = size
        if _is_comment(text, pos, end):
            line_no += 1
            pos = end + 1
            continue
        if text.find("\\", pos, end) >= 0:
            end = _scan_line(text, pos, size)
        result = _parse_line(text[pos:end], line_no, mult, default_time, bad_utf8)
        if isinstance(result, LineError) and text.find('"', pos, end) >= 0:
            # Without backslashes, a line that parses cannot continue past the newline; one
            # that fails may have a quoted value running on, so find its real end and retry.
            real_end = _scan_line(text, pos, size)
            if real_end != end:
                end = real_end
                result = _parse_line(text[pos:end], line_no, mult, default_time, bad_utf8)
        if isinstance(result, Point):
            points.append(result)
        elif result is not None:
            errors.append(result)
        line_no += text.count("\n", pos, end) + 1
        pos = end + 1
    return ParseResult(points, errors)


def _is_comment(text: str, pos: int, end: int) -> bool:
    # A comment ends at its newline. (InfluxDB scans it like data, so `# a="` there swallows the
    # lines after it without a word; we would rather not drop lines silently.)
    start = _skip_whitespace(text, pos)
    return start < end and text[start] == "#"


def _decode(data: str | bytes) -> tuple[str, bool]:
    if isinstance(data, str):
        return data, False
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        # Keep going so the lines that are valid UTF-8 still count; _parse_line rejects the rest.
        return data.decode("utf-8", "surrogateescape"), True


def _scan_line(text: str, pos: int, size: int) -> int:
    """End of the line starting at pos: a newline inside a quoted field value does not end it."""
    quoted = False
    in_fields = False
    equals = commas = 0
    i = pos
    while i < size:
        m = _LINE_SPECIAL.search(text, i)
        if m is None:
            return size
        i = m.start()
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == " ":
            in_fields = True
        if in_fields:
            if not quoted and c == "=":
                equals += 1
                i += 1
                continue
            if not quoted and c == ",":
                commas += 1
                i += 1
                continue
            if c == '"' and equals > commas:
                quoted = not quoted
                i += 1
                continue
        if c == "\n" and not quoted:
            return i
        i += 1
    return size


def _parse_line(
    line: str, line_no: int, mult: int, default_time: int, bad_utf8: bool
) -> Point | LineError | None:
    """A point, the reason it is not one, or None for a blank line."""
    if line.endswith("\r"):
        line = line[:-1]
    start = _skip_whitespace(line, 0)
    if start >= len(line):
        return None
    try:
        if bad_utf8 and (m := _SURROGATE.search(line)):
            raise _BadLine(m.start(), "invalid UTF-8")
        return _parse_point(line, start, mult, default_time)
    except _BadLine as e:
        before = line[: e.offset]
        shown = line[start:]
        if len(shown) > _ERROR_TEXT_LIMIT:
            shown = shown[:_ERROR_TEXT_LIMIT] + "..."
        column = e.offset - before.rfind("\n")
        return LineError(line_no + before.count("\n"), column, e.message, shown)


def _skip_whitespace(s: str, i: int) -> int:
    n = len(s)
    while i < n and s[i] in _WHITESPACE:
        i += 1
    return i


def _unescape(rx: re.Pattern[str], s: str) -> str:
    return rx.sub(r"\1", s) if "\\" in s else s


def _parse_point(s: str, i: int, mult: int, default_time: int) -> Point:
    """Split the common line (no escapes, no quoted strings) cheaply; scan the rest exactly.

    The cheap paths return None for anything they are not sure of, valid or not, and the exact
    scanner then decides and explains; the tests check the two against each other.
    """
    head = _simple_head(s, i)
    if head is None:
        return _parse_exact_point(s, i, mult, default_time)
    measurement, tags, key_end = head
    key_length = key_end - i
    j = _skip_whitespace(s, key_end)
    simple = _simple_fields(s, j, key_length)
    fields, j = simple if simple is not None else _parse_fields(s, j, key_length)
    return Point(measurement, tags, fields, _parse_timestamp(s, j, mult, default_time))


_SIMPLE_FLOAT = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_BOOLEANS = {
    "t": True,
    "T": True,
    "true": True,
    "True": True,
    "TRUE": True,
    "f": False,
    "F": False,
    "false": False,
    "False": False,
    "FALSE": False,
}


def _simple_head(s: str, i: int) -> tuple[str, dict[str, str], int] | None:
    key_end = s.find(" ", i)
    if key_end <= i or key_end - i > _MAX_KEY_LENGTH or s.find("\\", i, key_end) >= 0:
        return None
    measurement, comma, tag_text = s[i:key_end].partition(",")
    if not measurement:
        return None
    tags: dict[str, str] = {}
    if comma:
        for part in tag_text.split(","):
            k, _, v = part.partition("=")
            if not k or not v or "=" in v[1:] or k in tags:
                return None
            tags[k] = v
    return measurement, tags, key_end


def _simple_fields(s: str, j: int, key_length: int) -> tuple[dict[str, FieldValue], int] | None:
    end = s.find(" ", j)
    if end < 0:
        end = len(s)
    section = s[j:end]
    if not section or '"' in section or "\\" in section:
        return None
    fields: dict[str, FieldValue] = {}
    for part in section.split(","):
        k, _, v = part.partition("=")
        if not k or not v or key_length + 4 + len(k) > _MAX_KEY_LENGTH:
            return None
        value = _simple_value(v)
        if value is None:
            return None
        fields[k] = value
    return fields, end


def _parse_timestamp(s: str, j: int, mult: int, default_time: int) -> int:
    """The optional timestamp after the field set ending at j."""
    j = _skip_whitespace(s, j)
    if j >= len(s):
        return default_time
    token = s[j:].rstrip(" ")
    digits = token[1:] if token[0] == "-" else token
    if digits.isdigit() and digits.isascii():
        ns = int(token) * mult
        if MIN_NANO_TIME <= ns <= MAX_NANO_TIME:
            return ns
    return _parse_time(s, j, mult)


def _simple_value(v: str) -> FieldValue | None:
    last = v[-1]
    if last in {"i", "u"}:
        token = v[:-1]
        digits = token[1:] if last == "i" and token[:1] == "-" else token
        if not (digits.isdigit() and digits.isascii()):
            return None
        value = int(token)
        if last == "i":
            return value if _INT64_MIN <= value <= _INT64_MAX else None
        return value if value <= _UINT64_MAX else None
    boolean = _BOOLEANS.get(v)
    if boolean is not None:
        return boolean
    if _SIMPLE_FLOAT.fullmatch(v):
        f = float(v)
        return None if math.isinf(f) else f
    return None


def _parse_exact_point(s: str, i: int, mult: int, default_time: int) -> Point:
    """points.go's scanner, token by token, with its error messages."""
    n = len(s)
    key_start = i
    if s[i] == ",":
        raise _BadLine(i, "missing measurement")
    m = _MEASUREMENT.match(s, i)
    assert m is not None  # the first character is neither a comma nor whitespace
    j = m.end()
    if j >= n:
        raise _BadLine(j, "missing fields")
    measurement = _unescape(_UNESCAPE_NAME, m.group())
    tags: dict[str, str] = {}
    if s[j] == ",":
        j = _parse_tags(s, j + 1, tags)
    key_length = j - key_start
    if key_length > _MAX_KEY_LENGTH:
        raise _BadLine(key_start, f"max key length exceeded: {key_length} > {_MAX_KEY_LENGTH}")
    fields, j = _parse_fields(s, _skip_whitespace(s, j), key_length)
    return Point(measurement, tags, fields, _parse_timestamp(s, j, mult, default_time))


def _parse_tags(s: str, j: int, tags: dict[str, str]) -> int:
    """Parse `k=v[,k=v...]` from j; return the index of the space that ends the tag set."""
    n = len(s)
    while True:
        if j >= n or s[j] in " ,=":
            raise _BadLine(j, "missing tag key")
        key_match = _TAG_KEY.match(s, j)
        assert key_match is not None
        k_end = key_match.end()
        if k_end >= n or s[k_end] != "=":
            raise _BadLine(k_end, "missing tag value")
        v_start = k_end + 1
        if v_start >= n or s[v_start] in ", ":
            raise _BadLine(v_start, "missing tag value")
        value_match = _TAG_VALUE.match(s, v_start)
        assert value_match is not None
        v_end = value_match.end()
        if v_end >= n:
            raise _BadLine(v_end, "missing fields")
        if s[v_end] == "=":
            raise _BadLine(v_end, "invalid tag format")
        key = _unescape(_UNESCAPE_TAG, key_match.group())
        if key in tags:
            raise _BadLine(j, "duplicate tags")
        tags[key] = _unescape(_UNESCAPE_TAG, value_match.group())
        if s[v_end] == " ":
            return v_end
        j = v_end + 1


def _parse_fields(s: str, j: int, key_length: int) -> tuple[dict[str, FieldValue], int]:
    n = len(s)
    fields: dict[str, FieldValue] = {}
    while True:
        m = _FIELD.match(s, j)
        if m is None:
            raise _diagnose_field(s, j)
        raw_key = m.group(1)
        series_key = key_length + 4 + len(raw_key)
        if series_key > _MAX_KEY_LENGTH:
            raise _BadLine(j, f"max key length exceeded: {series_key} > {_MAX_KEY_LENGTH}")
        fields[_unescape(_UNESCAPE_NAME, raw_key)] = _field_value(m)
        j = m.end()
        if j >= n or s[j] == " ":
            return fields, j
        j += 1


def _field_value(m: re.Match[str]) -> FieldValue:
    integer, unsigned, number, string, boolean = m.group(2, 3, 4, 5, 6)
    if string is not None:
        return _unescape(_UNESCAPE_STRING, string)
    if integer is not None:
        value = int(integer)
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise _BadLine(
                m.start(2),
                f'unable to parse integer {integer}: strconv.ParseInt: parsing "{integer}": '
                "value out of range",
            )
        return value
    if unsigned is not None:
        value = int(unsigned)
        if value > _UINT64_MAX:
            raise _BadLine(
                m.start(3),
                f'unable to parse unsigned {unsigned}: strconv.ParseUint: parsing "{unsigned}": '
                "value out of range",
            )
        return value
    if number is not None:
        f = float(number)
        if math.isinf(f):
            raise _BadLine(m.start(4), "invalid float")
        return f
    return boolean[0] in "tT"


def _diagnose_field(s: str, j: int) -> _BadLine:
    """Explain why the field at j did not match, with the message InfluxDB gives for it."""
    n = len(s)
    key = _FIELD_KEY.match(s, j)
    assert key is not None  # the pattern also matches the empty string
    key_end = key.end()
    if key_end >= n or s[key_end] != "=":
        return _BadLine(j, "invalid field format")
    if key_end == j:
        return _BadLine(j, "missing field key")
    v = key_end + 1
    if v >= n or s[v] in ", ":
        return _BadLine(v, "missing field value")
    c = s[v]
    if c in "0123456789.-Nn":
        return _BadLine(v, _number_error(s, v))
    if c == '"':
        m = _STRING_VALUE.match(s, v)
        if m is None or _ends_quoted(s, m.end()):
            return _BadLine(v, "unbalanced quotes")
        return _BadLine(m.end(), "invalid field format")
    return _BadLine(v, "invalid boolean")


def _ends_quoted(s: str, i: int) -> bool:
    """Whether points.go's field scan, resumed after a closed string value, ends inside quotes."""
    quoted = False
    equals, commas = 1, 0
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == '"' and equals > commas:
            quoted = not quoted
        elif not quoted:
            if c == "=":
                equals += 1
            elif c == ",":
                commas += 1
            elif c == " ":
                break
        i += 1
    return quoted


def _number_error(s: str, i: int) -> str:
    """points.go scanNumber for a token the fast pattern rejected: always some error."""
    n = len(s)
    start = i
    if s[i] == "-":
        i += 1
        if i == n:
            return "invalid number"
    is_int = is_uint = decimal = scientific = False
    while i < n:
        c = s[i]
        if c in ", ":
            break
        if c in "iu" and i > start and not (is_int or is_uint):
            is_int, is_uint = c == "i", c == "u"
            i += 1
            continue
        if c == ".":
            if decimal:
                return "invalid number"
            decimal = True
        if i > start and c in "eE":
            scientific = True
            i += 1
            continue
        if c in "+-" and s[i - 1] in "eE":
            i += 1
            continue
        if not ("0" <= c <= "9" or c == "."):
            return "invalid number"
        i += 1
    if (is_int or is_uint) and (decimal or scientific):
        return "invalid number"
    digits = i - start - is_int - decimal - (s[start] == "-")
    if digits == 0 or ((is_int or is_uint) and s[i - 1] not in "iu"):
        return "invalid number"
    if is_uint and s[start] == "-":
        return "invalid number"
    # Only a float with a malformed exponent gets here (e.g. "1e", "1e5e5").
    return "invalid float"


def _parse_time(s: str, j: int, mult: int) -> int:
    n = len(s)
    m = _TIMESTAMP.match(s, j)
    assert m is not None
    end = m.end()
    if end < n and s[end] != " ":
        raise _BadLine(end, "bad timestamp")
    for k in range(end, n):
        if s[k] != " ":
            raise _BadLine(k, "point is invalid")
    token = m.group()
    if token in ("", "-"):
        raise _BadLine(j, f'strconv.ParseInt: parsing "{token}": invalid syntax')
    stamp = int(token)
    if not _INT64_MIN <= stamp <= _INT64_MAX:
        raise _BadLine(j, f'strconv.ParseInt: parsing "{token}": value out of range')
    ns = stamp * mult
    if mult != 1 and not _INT64_MIN <= ns <= _INT64_MAX:
        low, high = int(MIN_NANO_TIME / mult), int(MAX_NANO_TIME / mult)
        raise _BadLine(j, f"time {stamp} is outside the range [{low}, {high}]")
    if not MIN_NANO_TIME <= ns <= MAX_NANO_TIME:
        raise _BadLine(
            j, f"time {ns // 1_000_000_000} is outside the range [{MIN_NANO_TIME}, {MAX_NANO_TIME}]"
        )
    return ns


_ESCAPE_NAME = re.compile(r'([,"= ])')
_ESCAPE_TAG = re.compile(r"([,= ])")
_ESCAPE_STRING = re.compile(r'([\\"])')
# An odd run of backslashes before an escaped character makes InfluxDB's line splitter (which
# reads backslashes in pairs) and its key scanner (which looks one character back) disagree, and
# a trailing backslash would swallow the delimiter after it.
_UNSAFE_NAME = re.compile(r'(?<!\\)(?:\\\\)*\\(?=[,= "])|\\\Z')
_UNSAFE_TAG = re.compile(r"(?<!\\)(?:\\\\)*\\(?=[,= ])|\\\Z")
_UNSAFE_FIELD_KEY = re.compile(r'(?<!\\)(?:\\\\)*\\(?=[,= "]|\Z)')


def format_point(point: Point) -> str:
    """Encode a point (ns timestamp) so that parse_lines gives the same point back.

    ValueError names what line protocol cannot carry: empty names or tag values, newlines,
    a name ending in a backslash or with a lone backslash before a character that needs
    escaping, a leading '#', tab or NUL, NaN or infinite floats, integers beyond uint64 or below
    int64, and times outside InfluxDB's range.
    """
    m = point.measurement
    if not m or m[0] in "#\t\x00":
        raise ValueError(f"measurement {m!r} cannot be written as line protocol")
    out = [_escape_name(m, "measurement", _ESCAPE_NAME, _UNSAFE_NAME)]
    for key, value in sorted(point.tags.items()):
        out.append(",")
        out.append(_escape_name(key, "tag key", _ESCAPE_TAG, _UNSAFE_TAG))
        out.append("=")
        out.append(_escape_name(value, f"value of tag {key!r}", _ESCAPE_TAG, _UNSAFE_TAG))
    if not point.fields:
        raise ValueError("a point needs at least one field")
    sep = " "
    for key, value in point.fields.items():
        # The reader skips tabs and NULs before the field set, so the first key cannot start so.
        leading_blank = sep == " " and key[:1] in ("\t", "\x00")
        if not key or "\n" in key or leading_blank or _UNSAFE_FIELD_KEY.search(key):
            raise ValueError(f"field key {key!r} cannot be written as line protocol")
        out.append(sep)
        out.append(_ESCAPE_NAME.sub(r"\\\1", key))
        out.append("=")
        out.append(_format_value(key, value))
        sep = ","
    if not MIN_NANO_TIME <= point.time <= MAX_NANO_TIME:
        raise ValueError(f"time {point.time} is outside InfluxDB's range")
    out.append(" ")
    out.append(str(point.time))
    return "".join(out)


def _escape_name(s: str, what: str, rx: re.Pattern[str], unsafe: re.Pattern[str]) -> str:
    if not s or "\n" in s or unsafe.search(s):
        raise ValueError(f"{what} {s!r} cannot be written as line protocol")
    return rx.sub(r"\\\1", s)


def _format_value(key: str, value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return f"{value}i"
        if 0 <= value <= _UINT64_MAX:
            return f"{value}u"
        raise ValueError(f"field {key!r}: integer {value} is out of range")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"field {key!r}: {value} cannot be written as line protocol")
        return repr(value)
    return '"' + _ESCAPE_STRING.sub(r"\\\1", value) + '"'
