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
from typing import Any

__all__ = [
    "CloudEvent",
    "CloudEventError",
    "DependencyEvent",
    "calendar_event_data",
    "decode_action_record",
    "decode_trigger_record",
    "encode_action_record",
    "encode_trigger_record",
    "format_time",
    "go_time_string",
    "kafka_event_data",
    "kafka_event_id",
    "parse_time",
    "webhook_event_data",
]

SPEC_VERSION = "1.0"
JSON_CONTENT_TYPE = "application/json"
_CORE = ("specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema")
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
    out = f"{u.year:04d}-{u.month:02d}-{u.day:02d}{sep}{u.hour:02d}:{u.minute:02d}:{u.second:02d}"
    if u.microsecond:
        out += "." + f"{u.microsecond:06d}".rstrip("0")
    return out


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass an aware time (UTC)")
    return value.astimezone(UTC)


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
        """The event-topic key `{eventSourceName}.{eventName}`: one source's event stays ordered."""
        return f"{self.source}.{self.subject or ''}"

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

    @classmethod
    def from_dict(cls, obj: Any, *, raw: bytes | None = None) -> CloudEvent:
        if not isinstance(obj, dict):
            raise CloudEventError(f"a CloudEvent is a JSON object, got {type(obj).__name__}")
        if obj.get("specversion") != SPEC_VERSION:
            raise CloudEventError(f"unsupported specversion {obj.get('specversion')!r}")
        if "data" in obj and "data_base64" in obj:
            raise CloudEventError("both 'data' and 'data_base64' are set")
        for name in ("subject", "datacontenttype", "dataschema", "time"):
            if name in obj and not isinstance(obj[name], str):
                raise CloudEventError(f"attribute {name!r} must be a string")
        data: Any = obj.get("data")
        if "data_base64" in obj:
            try:
                data = base64.b64decode(obj["data_base64"], validate=True)
            except (binascii.Error, TypeError) as exc:
                raise CloudEventError(f"data_base64 is not base64: {exc}") from None
        known = {*_CORE, "data", "data_base64"}
        return cls(
            id=obj.get("id"),  # type: ignore[arg-type]
            source=obj.get("source"),  # type: ignore[arg-type]
            type=obj.get("type"),  # type: ignore[arg-type]
            subject=obj.get("subject"),
            time=parse_time(obj["time"]) if "time" in obj else None,
            datacontenttype=obj.get("datacontenttype"),
            data=data,
            dataschema=obj.get("dataschema"),
            extensions={k: v for k, v in obj.items() if k not in known},
            _source=obj,
            _raw=raw,
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> CloudEvent:
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CloudEventError(f"not JSON: {exc}") from None
        return cls.from_dict(obj, raw=raw.encode() if isinstance(raw, str) else bytes(raw))

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
                return json.loads(self.data)
            except (ValueError, UnicodeDecodeError):
                raise CloudEventError("event data is not valid JSON") from None
        return self.data

    def with_data(self, data: Any) -> CloudEvent:
        return replace(self, data=data, datacontenttype=JSON_CONTENT_TYPE, _source=None, _raw=None)


# --------------------------------------------------------------------------- topic records


@dataclass(frozen=True)
class DependencyEvent:
    """An event as one dependency of one trigger saw it (after that dependency's transform)."""

    dependency: str
    event: CloudEvent

    def to_dict(self) -> dict[str, Any]:
        return {"dependencyName": self.dependency, "event": self.event.to_dict()}

    def to_json(self) -> bytes:
        return (
            b'{"dependencyName":'
            + _dumps(self.dependency)
            + b',"event":'
            + (self.event.to_json() + b"}")
        )

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
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CloudEventError(f"not JSON: {exc}") from None


def encode_trigger_record(trigger: str, item: DependencyEvent) -> tuple[bytes, bytes]:
    """(key, value) of a trigger-topic record."""
    return trigger.encode(), item.to_json()


def decode_trigger_record(key: bytes | None, value: bytes | None) -> tuple[str, DependencyEvent]:
    if not key or value is None:
        raise CloudEventError("trigger record without key or value")
    return key.decode(), DependencyEvent.from_dict(_loads(value))


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
            body = json.loads(value) if value else None
        except (ValueError, UnicodeDecodeError):
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
        parsed = json.loads(body) if body.strip() else None
    except (ValueError, UnicodeDecodeError):
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
