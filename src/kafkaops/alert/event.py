"""Alert events and their encodings, byte-for-byte as Kapacitor produces them.

Kafka consumers of Kapacitor alerts parse its JSON, match on its IDs and compare its templated
messages, so the same inputs must give the same bytes here: the alert ID and message come from
the same templates over the same variables, `details` goes through html/template with `json`,
and the message body is Go's json.Encoder output of alert.Data (field order, RFC 3339 times with
trimmed nanoseconds, duration in integer nanoseconds, `<>&` escaped, trailing newline).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from math import copysign
from typing import Any

import orjson

from kafkaops.alert.gotemplate import (
    KAPACITOR_DETAILS_FUNCS,
    Duration,
    Field,
    GoMap,
    Struct,
    Template,
    Time,
    format_float_json,
    go_json_encode,
    rfc3339nano,
)
from kafkaops.alert.state import EventState, Level

DEFAULT_ID_TEMPLATE = "{{ .Name }}:{{ .Group }}"
DEFAULT_MESSAGE_TEMPLATE = "{{ .ID }} is {{ .Level }}"
DEFAULT_DETAILS_TEMPLATE = "{{ json . }}"

NIL_GROUP_LABEL = "nil"


def group_id(
    name: str,
    tags: Mapping[str, str],
    dimensions: Iterable[str],
    *,
    by_measurement: bool = False,
) -> str:
    """Kapacitor's GroupID for a point: `k1=v1,k2=v2` over the groupBy tags in sorted order
    (Kapacitor sorts groupBy dimensions, and `groupBy(*)` uses all tag keys sorted), prefixed
    with `name\\n` when grouping by measurement. No dimensions give "" (the nil group), or the
    bare measurement name when grouping by measurement. A missing tag counts as empty."""
    dims = sorted(dimensions)
    body = ",".join(f"{d}={tags.get(d, '')}" for d in dims)
    if by_measurement:
        return f"{name}\n{body}" if dims else name
    return body


def group_label(group: str) -> str:
    """How templates see the group: the literal `nil` for the nil group."""
    return group if group else NIL_GROUP_LABEL


@dataclass(frozen=True)
class ServerInfo:
    """`.ServerInfo` in id/message/details templates."""

    hostname: str = ""
    cluster_id: str = ""
    server_id: str = ""

    def go_struct(self) -> Struct:
        return Struct(
            "kapacitor.serverInfo",
            [
                Field("Hostname", self.hostname),
                Field("ClusterID", self.cluster_id),
                Field("ServerID", self.server_id),
            ],
        )


@dataclass(frozen=True)
class PointData:
    """One point of the data that triggered an alert."""

    time_ns: int
    fields: Mapping[str, Any]
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Series:
    """One row of the `data.series` result (influxql models.Row)."""

    name: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    columns: tuple[str, ...] = ()
    values: tuple[tuple[Any, ...], ...] = ()

    def go_values(self) -> list[list[Any]]:
        """Rows with the `time` column as Go times, so they print and encode like Go's."""
        if self.columns and self.columns[0] == "time":
            return [[Time(row[0]), *row[1:]] for row in self.values]
        return [list(row) for row in self.values]

    def go_struct(self) -> Struct:
        values = self.go_values()
        return Struct(
            "models.Row",
            [
                Field("Name", self.name, json_name="name", omitempty=True),
                Field("Tags", _str_map(self.tags), json_name="tags", omitempty=True),
                Field("Columns", list(self.columns), json_name="columns", omitempty=True),
                Field("Values", values, json_name="values", omitempty=True),
            ],
        )


def series_from_points(name: str, tags: Mapping[str, str], points: Sequence[PointData]) -> Series:
    """Kapacitor's BatchToRow: columns are `time` then the first point's field names and its
    tags that are not batch tags, sorted; a value a point lacks is null. Values in the time
    column are Unix nanoseconds, encoded as RFC 3339 times."""
    if not points:
        return Series(name=name, tags=dict(tags))
    first = points[0]
    extra = [t for t in first.tags if t not in tags]
    columns = sorted([*first.fields, *extra])
    rows = []
    for p in points:
        row: list[Any] = [p.time_ns]
        for c in columns:
            row.append(p.fields[c] if c in p.fields else p.tags.get(c))
        rows.append(tuple(row))
    return Series(name=name, tags=dict(tags), columns=("time", *columns), values=tuple(rows))


def series_from_point(
    name: str, tags: Mapping[str, str], fields: Mapping[str, Any], time_ns: int
) -> Series:
    """The one-row result of a stream alert: the point's own tags are the row tags."""
    return series_from_points(name, tags, [PointData(time_ns, fields, tags)])


def _str_map(tags: Mapping[str, str]) -> GoMap:
    return GoMap(tags, zero="", go_type="map[string]string")


@dataclass(frozen=True)
class AlertTemplates:
    """The `.id()`, `.message()` and `.details()` templates of one alert node, parsed once."""

    id: Template
    message: Template
    details: Template

    @classmethod
    def parse(
        cls,
        id_text: str = DEFAULT_ID_TEMPLATE,
        message_text: str = DEFAULT_MESSAGE_TEMPLATE,
        details_text: str = DEFAULT_DETAILS_TEMPLATE,
    ) -> AlertTemplates:
        """Parse as Kapacitor does: id and message with text/template and no extra functions,
        details with html/template plus `json` and `jsonCompact`. Raises TemplateParseError."""
        return cls(
            id=Template.parse(id_text, name="id"),
            message=Template.parse(message_text, name="message"),
            details=Template.parse(
                details_text, name="details", funcs=KAPACITOR_DETAILS_FUNCS, html=True
            ),
        )

    def render_id(
        self,
        *,
        name: str,
        task_name: str,
        group: str,
        tags: Mapping[str, str],
        server: ServerInfo = ServerInfo(),
    ) -> str:
        """The alert ID; rendered before the level is known, since restoring a group's state
        from the topic store needs it."""
        return self.id.execute(_id_info(name, task_name, group, tags, server))

    def render_message_and_details(
        self,
        *,
        alert_id: str,
        name: str,
        task_name: str,
        group: str,
        tags: Mapping[str, str],
        fields: Mapping[str, Any],
        level: Level,
        time_ns: int,
        duration_ns: int,
        server: ServerInfo = ServerInfo(),
    ) -> tuple[str, str]:
        """Message, then details (whose data adds `.Message`). Raises TemplateExecError."""
        message_info = Struct(
            "kapacitor.messageInfo",
            [
                Field("idInfo", _id_info(name, task_name, group, tags, server), embedded=True),
                Field("ID", alert_id),
                Field("Fields", dict(fields)),
                Field("Level", level.name),
                Field("Time", Time(time_ns)),
                Field("Duration", Duration(duration_ns)),
            ],
        )
        message = self.message.execute(message_info)
        details_info = Struct(
            "kapacitor.detailsInfo",
            [Field("messageInfo", message_info, embedded=True), Field("Message", message)],
        )
        return message, self.details.execute(details_info)

    def event(
        self,
        *,
        alert_id: str,
        name: str,
        task_name: str,
        group: str,
        tags: Mapping[str, str],
        fields: Mapping[str, Any],
        level: Level,
        time_ns: int,
        duration_ns: int,
        recoverable: bool,
        series: Sequence[Series] | None = None,
        server: ServerInfo = ServerInfo(),
    ) -> AlertEvent:
        """Build the event for an emitted decision. `series` defaults to the one-point result
        of a stream alert. `previous_level` is set later, when a topic collects the event."""
        message, details = self.render_message_and_details(
            alert_id=alert_id,
            name=name,
            task_name=task_name,
            group=group,
            tags=tags,
            fields=fields,
            level=level,
            time_ns=time_ns,
            duration_ns=duration_ns,
            server=server,
        )
        rows = series if series is not None else [series_from_point(name, tags, fields, time_ns)]
        return AlertEvent(
            id=alert_id,
            message=message,
            details=details,
            time_ns=time_ns,
            duration_ns=duration_ns,
            level=level,
            recoverable=recoverable,
            name=name,
            task_name=task_name,
            group=group,
            tags=dict(tags),
            fields=dict(fields),
            series=tuple(rows),
        )


def _id_info(
    name: str, task_name: str, group: str, tags: Mapping[str, str], server: ServerInfo
) -> Struct:
    return Struct(
        "kapacitor.idInfo",
        [
            Field("Name", name),
            Field("TaskName", task_name),
            Field("Group", group_label(group)),
            Field("Tags", _str_map(tags)),
            Field("ServerInfo", server.go_struct()),
        ],
    )


@dataclass(frozen=True)
class AlertEvent:
    """One alert event as handlers receive it (Kapacitor's alert.Event).

    `name`, `task_name`, `group`, `tags` and `fields` are what topic-handler `match`
    expressions see; `previous_level` is filled in when the event is collected into a topic.
    """

    id: str
    message: str
    details: str
    time_ns: int
    duration_ns: int
    level: Level
    previous_level: Level = Level.OK
    recoverable: bool = True
    name: str = ""
    task_name: str = ""
    group: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[str, Any] = field(default_factory=dict)
    series: tuple[Series, ...] = ()

    def state(self) -> EventState:
        """What the topic store keeps for this event's ID."""
        return EventState(
            id=self.id,
            message=self.message,
            details=self.details,
            time_ns=self.time_ns,
            duration_ns=self.duration_ns,
            level=self.level,
        )

    def with_previous_level(self, level: Level) -> AlertEvent:
        return dataclasses.replace(self, previous_level=level)

    def alert_data(self) -> Struct:
        """alert.Data: the value behind the JSON body and the Kafka `template` option, whose
        fields are .ID .Message .Details .Time .Duration .Level .Data .PreviousLevel
        .Recoverable (and `(index .Data.Series 0).Tags` for tags)."""
        result = Struct(
            "models.Result",
            [
                # No rows is Go's nil slice, which encodes as null.
                Field("Series", [s.go_struct() for s in self.series] or None, json_name="series"),
                Field("Err", None, json_name="error", omitempty=True),
            ],
        )
        return Struct(
            "alert.Data",
            [
                Field("ID", self.id, json_name="id"),
                Field("Message", self.message, json_name="message"),
                Field("Details", self.details, json_name="details"),
                Field("Time", Time(self.time_ns), json_name="time"),
                Field("Duration", Duration(self.duration_ns), json_name="duration"),
                Field("Level", self.level, json_name="level"),
                Field("Data", result, json_name="data"),
                Field("PreviousLevel", self.previous_level, json_name="previousLevel"),
                Field("Recoverable", self.recoverable, json_name="recoverable"),
            ],
        )

    def to_json(self) -> bytes:
        """The message body Kapacitor's kafka, log, post, tcp and exec handlers send.

        It runs once per alert on the Kafka handler's hot path, so it is orjson over the same
        fields instead of the generic encoder over `alert_data()`, with Go's differences made
        good around it (floats, HTML escapes). The tests hold both to the same bytes; anything
        the fast path cannot vouch for (an unusual value type, a lone surrogate, a year past
        9999) takes the generic encoder, which also raises what Go would refuse.
        """
        try:
            time = rfc3339nano(self.time_ns)
            doc = {
                "id": self.id,
                "message": self.message,
                "details": self.details,
                "time": time,
                "duration": self.duration_ns,
                "level": _LEVEL_NAMES[self.level],
                # No rows is Go's nil slice, which encodes as null.
                "data": {
                    "series": [_series_doc(s, self.time_ns, time) for s in self.series] or None
                },
                "previousLevel": _LEVEL_NAMES[self.previous_level],
                "recoverable": self.recoverable,
            }
            out = orjson.dumps(doc, option=_ORJSON_OPTIONS)
        except (TypeError, ValueError):  # orjson.JSONEncodeError is a TypeError
            return go_json_encode(self.alert_data()).encode()
        return _go_html_escapes(out)


_LEVEL_NAMES = tuple(level.name for level in Level)  # Enum.name is a slow descriptor
_ORJSON_OPTIONS = (
    orjson.OPT_APPEND_NEWLINE | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_PLAIN_JSON_TYPES = frozenset({str, int, bool, type(None)})
_EXACT_INTEGERS = 2.0**53
# Characters Go escapes and orjson does not. None of them is JSON syntax, so they only ever
# occur inside strings and can be replaced throughout the document.
_GO_ONLY_ASCII = (
    (ord("&"), b"&", b"\\u0026"),
    (ord("<"), b"<", b"\\u003c"),
    (ord(">"), b">", b"\\u003e"),
)
_GO_ONLY_UNICODE = (("\u2028".encode(), b"\\u2028"), ("\u2029".encode(), b"\\u2029"))


def _go_html_escapes(out: bytes) -> bytes:
    for code, raw, escaped in _GO_ONLY_ASCII:
        if code in out:  # a byte value: memchr, several times faster than a bytes needle
            out = out.replace(raw, escaped)
    if not out.isascii():
        for raw, escaped in _GO_ONLY_UNICODE:
            out = out.replace(raw, escaped)
    return out


def _go_float(x: float) -> Any:
    """A float as orjson must see it to write what Go writes. Go prints integral floats
    without `.0` (exactly the integer below 2**53), and its exponent form starts below 1e-6
    where orjson's starts below 1e-4; there, and for the rest, Go's formatting is ours."""
    if x.is_integer():
        if -_EXACT_INTEGERS < x < _EXACT_INTEGERS and (x or copysign(1, x) > 0):
            return int(x)
    elif 1e-4 <= abs(x) < 1e16:  # the finite non-integral floats are all below 2**52
        return x
    return orjson.Fragment(format_float_json(x))


def _json_value(value: Any) -> Any:
    kind = type(value)
    if kind is float:
        return _go_float(value)
    if kind in _PLAIN_JSON_TYPES:
        return value
    raise TypeError(kind.__name__)  # the generic encoder knows the Go model's types


def _series_doc(series: Series, time_ns: int, time: str) -> dict[str, Any]:
    """A row as Go encodes models.Row; `time` is `time_ns` formatted, which a stream alert's
    one row repeats."""
    doc: dict[str, Any] = {}
    if series.name:
        doc["name"] = series.name
    tags = series.tags
    if tags:
        doc["tags"] = tags if len(tags) == 1 else {k: tags[k] for k in sorted(tags)}
    columns = series.columns
    if columns:
        doc["columns"] = columns
    if series.values:
        if columns and columns[0] == "time":
            doc["values"] = [
                [
                    time if row[0] == time_ns else rfc3339nano(row[0]),
                    *[_go_float(v) if type(v) is float else _json_value(v) for v in row[1:]],
                ]
                for row in series.values
            ]
        else:
            doc["values"] = [list(map(_json_value, row)) for row in series.values]
    return doc


def parse_kafka_template(text: str) -> Template:
    """The Kafka handler's `template` option: the template text itself, text/template with
    no extra functions (so `json` is not available there, as in Kapacitor)."""
    return Template.parse(text, name="kafka")


def kafka_message_value(event: AlertEvent, template: Template | None = None) -> bytes:
    """The Kafka record value: the rendered template verbatim (no newline added), else the
    alert JSON with its trailing newline. The record key is the alert ID (`kafka_message_key`).

    Raises TemplateExecError when the template fails (e.g. an unknown field). Kapacitor then
    still writes the record, with a null value; the caller decides whether to do the same.
    """
    if template is None:
        return event.to_json()
    return template.execute(event.alert_data()).encode()


def kafka_message_key(event: AlertEvent) -> bytes:
    """The record key: the alert ID's UTF-8 bytes, never null (an empty ID is an empty key)."""
    return event.id.encode()
