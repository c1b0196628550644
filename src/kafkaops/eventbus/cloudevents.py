"""CloudEvents 1.0 in structured JSON mode, the records of the three topics, and source payloads.

The envelope is a flat JSON object (spec v1.0, "JSON Event Format"); building it by hand keeps
every attribute explicit (ids and times are passed in, never generated here) and the bytes
stable, which the idempotent producer and the reference model both rely on.

Record formats, all keyed so Kafka's key hash keeps related records in one partition:

| topic   | key                             | value                                              |
|---------|---------------------------------|----------------------------------------------------|
| event   | `{eventSourceName}.{eventName}` | one CloudEvent                                     |
| trigger | trigger name                    | `{"dependencyName": d, "event": CloudEvent}`       |
| action  | trigger name                    | `[{"dependencyName": d, "event": CloudEvent}, ..]` |

Argo carries the dependency name of trigger/action records in a header and, since v1.9.9, loses
all but one dependency of a multi-event action; putting it in the value keeps every event's
dependency with it.

Every stage but the event stage passes events on as the bytes it read: a trigger record is
`{"dependencyName":<d>,"event":` + the event's bytes + `}`, so the trigger stage holds the bytes
without building objects from them (the event stage checked the event), and a firing splices
them into its action record. JSON goes through orjson (several times faster than the stdlib
on these small documents); numbers beyond 64-bit integers, which orjson would turn into floats,
are parsed by the stdlib so that they stay exact.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

__all__ = [
    "CloudEvent",
    "CloudEventError",
    "DependencyEvent",
    "EncodedEvent",
    "calendar_event_data",
    "decode_action_record",
    "decode_trigger_record",
    "encode_action_record",
    "encode_json_event",
    "encode_trigger_record",
    "event_key",
    "format_time",
    "go_time_string",
    "kafka_event_data",
    "kafka_event_id",
    "parse_event",
    "parse_time",
    "webhook_event_data",
]

SPEC_VERSION = "1.0"
JSON_CONTENT_TYPE = "application/json"
_CORE = ("specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema")
_KNOWN = frozenset({*_CORE, "data", "data_base64"})
_OPTIONAL_STRINGS = ("subject", "datacontenttype", "dataschema", "time")
_EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$",
)


class CloudEventError(ValueError):
    """Bytes that are not a valid CloudEvents 1.0 JSON event, or a record of the wrong shape."""


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (any number of fraction digits; beyond 6 are truncated)."""
    if not _RFC3339.match(text):
        raise CloudEventError(f"time {text!r} is not RFC 3339")
    try:
        return datetime.fromisoformat(text.upper())
    except ValueError as exc:
        raise CloudEventError(f"time {text!r} is not RFC 3339: {exc}") from None


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with `Z` and trailing zeros trimmed, as Go's RFC3339Nano writes it."""
    return _clock_text(_as_utc(value), "T") + "Z"


def go_time_string(value: datetime) -> str:
    """Go's `time.Time.String()` for a UTC time, the form Argo puts in Kafka/calendar payloads."""
    return _clock_text(_as_utc(value), " ") + " +0000 UTC"


def _clock_text(u: datetime, sep: str) -> str:
    # isoformat is C and twice as fast as formatting the fields here (two times per event);
    # it writes 6 fraction digits when there is a fraction, whose trailing zeros Go drops.
    text = u.isoformat(sep)[:-6]  # without "+00:00"
    return text.rstrip("0") if u.microsecond else text


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass an aware time (UTC)")
    return value.astimezone(UTC)


def event_key(source: str, subject: str | None) -> str:
    """The event-topic key `{eventSourceName}.{eventName}`: one source's event stays ordered."""
    return f"{source}.{subject or ''}"


class EncodedEvent(NamedTuple):
    """An event as the event topic holds it: key and CloudEvents JSON."""

    key: bytes
    value: bytes


@dataclass(frozen=True, eq=True)
class CloudEvent:
    """One event. `data` is a JSON value when the content type is JSON, else bytes.

    A parsed event remembers the object (and bytes) it came from and writes them back as they
    were, which keeps the producer's attributes intact and spares re-encoding on the hot path.
    """

    id: str
    source: str
    type: str
    subject: str | None = None
    time: datetime | None = None
    datacontenttype: str | None = JSON_CONTENT_TYPE
    data: Any = None
    dataschema: str | None = None
    extensions: Mapping[str, Any] = field(default_factory=dict)
    _source: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    _raw: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("id", "source", "type"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise CloudEventError(f"attribute {name!r} must be a non-empty string")
        if self.time is not None and self.time.tzinfo is None:
            raise CloudEventError("attribute 'time' must be timezone-aware")
        for name in self.extensions:
            if name in _CORE or name in ("data", "data_base64") or not _EXTENSION_NAME.match(name):
                raise CloudEventError(f"invalid extension attribute name {name!r}")

    @property
    def key(self) -> str:
        return event_key(self.source, self.subject)

    @property
    def is_json(self) -> bool:
        ct = (self.datacontenttype or JSON_CONTENT_TYPE).split(";")[0].strip().lower()
        return ct == JSON_CONTENT_TYPE or ct.endswith("+json") or ct == "text/json"

    def to_dict(self) -> dict[str, Any]:
        if self._source is not None:
            return dict(self._source)
        out: dict[str, Any] = {"specversion": SPEC_VERSION, "id": self.id, "source": self.source}
        out["type"] = self.type
        for name in ("subject", "datacontenttype", "dataschema"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.time is not None:
            out["time"] = format_time(self.time)
        out.update(self.extensions)
        if isinstance(self.data, bytes | bytearray):
            out["data_base64"] = base64.b64encode(self.data).decode("ascii")
        elif self.data is not None:
            out["data"] = self.data
        return out

    def to_json(self) -> bytes:
        if self._raw is not None:
            return self._raw
        return _dumps(self._source if self._source is not None else self.to_dict())

    def encoded(self) -> EncodedEvent:
        return EncodedEvent(self.key.encode(), self.to_json())

    @classmethod
    def from_dict(cls, obj: Any, *, raw: bytes | None = None) -> CloudEvent:
        time, data = _checked(obj)
        return cls(
            id=obj["id"],
            source=obj["source"],
            type=obj["type"],
            subject=obj.get("subject"),
            time=time,
            datacontenttype=obj.get("datacontenttype"),
            data=data,
            dataschema=obj.get("dataschema"),
            extensions={k: v for k, v in obj.items() if k not in _KNOWN},
            _source=obj,
            _raw=raw,
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> CloudEvent:
        data = raw.encode() if isinstance(raw, str) else bytes(raw)
        return cls.from_dict(_loads(data), raw=data)

    def context(self) -> dict[str, Any]:
        """The attributes Argo exposes as the event "context" (for contextKey and ctx filters)."""
        return {
            "datacontenttype": self.datacontenttype or "",
            "id": self.id,
            "source": self.source,
            "specversion": SPEC_VERSION,
            "subject": self.subject or "",
            "time": format_time(self.time.replace(microsecond=0)) if self.time else "",
            "type": self.type,
        }

    def json_data(self) -> Any:
        """The data as a JSON value, which paths and filters read; raises if it is not JSON."""
        if isinstance(self.data, bytes | bytearray):
            try:
                return _loads(bytes(self.data))
            except CloudEventError:
                raise CloudEventError("event data is not valid JSON") from None
        return self.data

    def with_data(self, data: Any) -> CloudEvent:
        return replace(self, data=data, datacontenttype=JSON_CONTENT_TYPE, _source=None, _raw=None)


def encode_json_event(
    *, id: str, source: str, type: str, subject: str, time: datetime, data: Any
) -> EncodedEvent:
    """`CloudEvent(id, source, type, subject, time, data=data).encoded()` without building the
    event: a Kafka source's hot path, where the object cost as much as the rest together.
    The names come from checked definitions; `id`, `source` and `type` must not be empty."""
    envelope = {
        "specversion": SPEC_VERSION,
        "id": id,
        "source": source,
        "type": type,
        "subject": subject,
        "datacontenttype": JSON_CONTENT_TYPE,
        "time": format_time(time),
        "data": data,
    }
    return EncodedEvent(event_key(source, subject).encode(), _dumps(envelope))


def _checked(obj: Any) -> tuple[datetime | None, Any]:
    """Validate a CloudEvent JSON object; returns its parsed time and data."""
    if not isinstance(obj, dict):
        raise CloudEventError(f"a CloudEvent is a JSON object, got {type(obj).__name__}")
    if obj.get("specversion") != SPEC_VERSION:
        raise CloudEventError(f"unsupported specversion {obj.get('specversion')!r}")
    for name in ("id", "source", "type"):
        value = obj.get(name)
        if not isinstance(value, str) or not value:
            raise CloudEventError(f"attribute {name!r} must be a non-empty string")
    for name in _OPTIONAL_STRINGS:
        if name in obj and not isinstance(obj[name], str):
            raise CloudEventError(f"attribute {name!r} must be a string")
    data: Any = obj.get("data")
    if "data_base64" in obj:
        if "data" in obj:
            raise CloudEventError("both 'data' and 'data_base64' are set")
        try:
            data = base64.b64decode(obj["data_base64"], validate=True)
        except (binascii.Error, TypeError) as exc:
            raise CloudEventError(f"data_base64 is not base64: {exc}") from None
    if not _KNOWN.issuperset(obj):
        for name in obj:
            if name not in _KNOWN and not _EXTENSION_NAME.match(name):
                raise CloudEventError(f"invalid extension attribute name {name!r}")
    return (parse_time(obj["time"]) if "time" in obj else None), data


def parse_event(raw: bytes) -> dict[str, Any]:
    """Check that `raw` is a valid CloudEvent and return its JSON object, without building a
    `CloudEvent`: what the event stage needs for routing on source and subject alone."""
    obj = _loads(raw)
    _checked(obj)
    return obj  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- topic records


class DependencyEvent:
    """An event as one dependency of one trigger saw it (after that dependency's transform).

    Built from the bytes of a checked event (`from_raw`), it keeps them and decodes the event
    only if something asks for it: the trigger stage holds and forwards events unread.
    """

    __slots__ = ("_event", "_raw", "dependency")

    def __init__(self, dependency: str, event: CloudEvent) -> None:
        self.dependency = dependency
        self._event: CloudEvent | None = event
        self._raw: bytes | None = None

    @classmethod
    def from_raw(cls, dependency: str, raw: bytes) -> DependencyEvent:
        """An item from the JSON of an event the event stage checked (`parse_event`)."""
        item = cls.__new__(cls)
        item.dependency = dependency
        item._event = None
        item._raw = raw
        return item

    @property
    def event(self) -> CloudEvent:
        if self._event is None:
            assert self._raw is not None
            self._event = CloudEvent.from_json(self._raw)
        return self._event

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DependencyEvent):
            return NotImplemented
        return self.dependency == other.dependency and self.event == other.event

    def __hash__(self) -> int:
        return hash((self.dependency, self.event))

    def __repr__(self) -> str:
        return f"DependencyEvent({self.dependency!r}, {self.event!r})"

    def to_dict(self) -> dict[str, Any]:
        return {"dependencyName": self.dependency, "event": self.event.to_dict()}

    def to_json(self) -> bytes:
        raw = self._raw if self._raw is not None else self.event.to_json()
        return b'{"dependencyName":' + _quoted(self.dependency) + b',"event":' + raw + b"}"

    @classmethod
    def from_dict(cls, obj: Any) -> DependencyEvent:
        if not isinstance(obj, dict) or not isinstance(obj.get("dependencyName"), str):
            raise CloudEventError("expected {'dependencyName': str, 'event': {...}}")
        return cls(obj["dependencyName"], CloudEvent.from_dict(obj.get("event")))


@lru_cache(maxsize=1024)
def _quoted(name: str) -> bytes:
    """A dependency name as a JSON string; the few names of a sensor repeat on every record."""
    return _dumps(name)


def _dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON; what orjson refuses (integers beyond 64 bits, non-string keys) goes
    through the stdlib encoder."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


# Every digit to "0", everything else to a space: a run of 20 zeros marks 20 digits in a row.
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_TWENTY_DIGITS = b"0" * 20


def _loads(raw: bytes) -> Any:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CloudEventError(f"not JSON: {exc}") from None
    if _TWENTY_DIGITS in raw.translate(_DIGITS_AS_ZEROS):
        # Maybe an integer beyond 64 bits, which orjson makes a float; the stdlib keeps it exact.
        value = json.loads(raw)
    return value


_TRIGGER_HEAD = b'{"dependencyName":'
_TRIGGER_EVENT = b',"event":'


def encode_trigger_record(trigger: str, item: DependencyEvent) -> tuple[bytes, bytes]:
    """(key, value) of a trigger-topic record."""
    return trigger.encode(), item.to_json()


def decode_trigger_record(key: bytes | None, value: bytes | None) -> tuple[str, DependencyEvent]:
    """The trigger and item of a trigger-topic record; the event stays bytes.

    The event stage checked the event before writing the record (the trigger topic is the
    sensor's own); here it is only checked to be a JSON object, which keeps every action record
    decodable, and the action stage checks it in full (a second full check here was most of
    the trigger stage's decoding time)."""
    if not key or value is None:
        raise CloudEventError("trigger record without key or value")
    item = _sliced_trigger_value(value)
    if item is None:
        item = DependencyEvent.from_dict(_loads(value))
    return key.decode(), item


def _sliced_trigger_value(value: bytes) -> DependencyEvent | None:
    """A value laid out as `encode_trigger_record` writes it, cut into its two parts; None for
    any other layout (which the caller parses whole).

    A JSON string holds no unescaped quote, so the first `,"event":` ends the name; when the
    name and the rest each parse, the value is exactly `{"dependencyName": str, "event": obj}`.
    The event must be a JSON object; whether it is a valid CloudEvent the action stage checks.
    """
    if not (value.startswith(_TRIGGER_HEAD) and value.endswith(b"}")):
        return None
    split = value.find(_TRIGGER_EVENT, len(_TRIGGER_HEAD))
    if split < 0:
        return None
    raw = value[split + len(_TRIGGER_EVENT) : -1]
    try:
        dependency = orjson.loads(value[len(_TRIGGER_HEAD) : split])
        if not isinstance(dependency, str) or not isinstance(orjson.loads(raw), dict):
            return None
    except orjson.JSONDecodeError:
        return None
    return DependencyEvent.from_raw(dependency, raw)


def encode_action_record(trigger: str, items: Sequence[DependencyEvent]) -> tuple[bytes, bytes]:
    """(key, value) of an action-topic record: every held event of one firing."""
    return trigger.encode(), b"[" + b",".join(item.to_json() for item in items) + b"]"


def decode_action_record(
    key: bytes | None, value: bytes | None
) -> tuple[str, tuple[DependencyEvent, ...]]:
    if not key or value is None:
        raise CloudEventError("action record without key or value")
    items = _loads(value)
    if not isinstance(items, list) or not items:
        raise CloudEventError("action record value must be a non-empty JSON array")
    return key.decode(), tuple(DependencyEvent.from_dict(item) for item in items)


# --------------------------------------------------------------------------- source payloads


def kafka_event_id(
    source: str, event: str, *, broker: str, topic: str, partition: int, offset: int
) -> str:
    """Argo's id for a Kafka-sourced event; deterministic, so a re-read record keeps its id."""
    first = broker.partition(",")[0]
    return f"{source}:{event}:{first}:{topic}:{partition}:{offset}"


def kafka_event_data(
    *,
    topic: str,
    partition: int,
    key: bytes | None,
    value: bytes | None,
    timestamp: datetime,
    headers: Sequence[tuple[str, bytes | None]] | None = None,
    json_body: bool = False,
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Argo's Kafka event data: body is parsed JSON with `jsonBody`, else base64 (Go []byte)."""
    body: Any
    if json_body:
        try:
            body = _loads(value) if value else None
        except CloudEventError:
            msg = f"jsonBody is set but the record value is not JSON: {value!r:.80}"
            raise ValueError(msg) from None
    else:
        body = base64.b64encode(value).decode("ascii") if value is not None else None
    out: dict[str, Any] = {
        "topic": topic,
        "key": (key or b"").decode("utf-8", errors="replace"),
        "partition": partition,
        "body": body,
        "timestamp": go_time_string(timestamp),
        "headers": {k: (v or b"").decode("utf-8", errors="replace") for k, v in headers or ()},
    }
    if metadata:
        out["metadata"] = dict(metadata)
    return out


def webhook_event_data(
    headers: Mapping[str, Sequence[str]], body: bytes, metadata: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Argo's webhook event data; the body must be JSON (or empty), as Argo requires."""
    try:
        parsed = _loads(body) if body.strip() else None
    except CloudEventError:
        raise ValueError("the request body is not JSON") from None
    out: dict[str, Any] = {"header": {k: list(v) for k, v in headers.items()}, "body": parsed}
    if metadata:
        out["metadata"] = dict(metadata)
    return out


def calendar_event_data(
    fire_time: datetime, metadata: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Argo's calendar event data: the scheduled time in Go's String() form."""
    out: dict[str, Any] = {"eventTime": go_time_string(fire_time)}
    if metadata:
        out["metadata"] = dict(metadata)
    return out
