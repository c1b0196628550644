"""EventBus, EventSource and Sensor definitions: Argo's YAML shape, restricted to what runs here.

Files are Kubernetes-style documents (`apiVersion`, `kind`, `metadata`, `spec`), several per file
separated by `---`. A definition written for Argo Events loads unchanged when it only uses what
is supported; Kubernetes-only settings (pod `template`, `service`, `replicas`, `status`, ...) are
dropped with a warning, and anything else unknown is an error naming the file, the line, the
field path and, for Argo features not carried over, what to use instead.

Everything that can be checked without a broker is checked at load: condition syntax and names,
paths, jq, regexes, expressions, cron schedules, time zones, parameter sources. A definition that
loads therefore runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from kafkaops.config.durations import format_duration, parse_duration
from kafkaops.eventbus.cloudevents import CloudEvent
from kafkaops.eventbus.conditions import (
    Condition,
    Expression,
    ExpressionError,
    compile_condition,
    compile_expression,
)
from kafkaops.eventbus.paths import (
    JqError,
    JqProgram,
    ParameterError,
    PathError,
    apply_parameters,
    compile_jq,
    compile_path,
    compile_set_path,
    construct_payload,
    parse_go_bool,
    parse_go_float,
)

__all__ = [
    "ActionRequest",
    "AlertsSource",
    "Backoff",
    "CalendarSource",
    "CommandRequest",
    "CronSchedule",
    "Definition",
    "DefinitionError",
    "Dependency",
    "EventBus",
    "EventSource",
    "HttpRequest",
    "KafkaRequest",
    "KafkaSource",
    "LoadResult",
    "LogRequest",
    "Sensor",
    "Trigger",
    "WebhookSource",
    "action_topic",
    "load_definitions",
    "load_file",
    "reset_watermark",
    "sensor_group_id",
    "trigger_topic",
    "validate_references",
]
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_DEPENDENCY_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_TOPIC_MAX = 249


class DefinitionError(ValueError):
    """Definitions that do not load; each problem names the file, line and field."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return self.problems[0]
        return f"{self.source}: {len(self.problems)} problems\n" + "\n".join(
            f"  - {p}" for p in self.problems
        )


def _problem(path: str, message: str) -> PydanticCustomError:
    """An error for a field below the validated model; the loader appends `path` to the loc."""
    return PydanticCustomError("eventbus", "{path}: {message}", {"path": path, "message": message})


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, alias_generator=to_camel, frozen=True
    )


# --------------------------------------------------------------------------- value types


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name like Europe/Berlin)"
        ) from None


def _check_zone(name: str | None) -> str | None:
    if name is not None:
        _zone(name)
    return name


TimeZone = Annotated[str | None, BeforeValidator(_check_zone)]


@dataclass(frozen=True)
class CronSchedule:
    """A 5-field cron expression (or @hourly-style descriptor) evaluated in an IANA time zone."""

    expression: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        expr = self.expression.strip()
        if expr.startswith(("@every", "@reboot")):
            raise ValueError(f"cron {self.expression!r}: {expr.split()[0]} is not supported")
        if not expr.startswith("@") and len(expr.split()) != 5:
            raise ValueError(f"cron {self.expression!r} needs 5 fields: minute hour dom month dow")
        if not croniter.is_valid(expr):
            raise ValueError(f"invalid cron expression {self.expression!r}")
        _zone(self.timezone)

    def previous(self, at: datetime) -> datetime:
        """The latest fire time at or before `at`."""
        local = at.astimezone(_zone(self.timezone)) + timedelta(microseconds=1)
        return croniter(self.expression.strip(), local).get_prev(datetime).astimezone(UTC)

    def next(self, after: datetime) -> datetime:
        """The earliest fire time strictly after `after`."""
        local = after.astimezone(_zone(self.timezone))
        return croniter(self.expression.strip(), local).get_next(datetime).astimezone(UTC)


def _argo_duration(value: Any) -> timedelta:
    """Argo's Int64OrString: an integer counts nanoseconds, a string is a Go duration."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"negative duration: {value!r}")
        return timedelta(microseconds=value / 1000)
    return parse_duration(value)


ArgoDuration = Annotated[
    timedelta, BeforeValidator(_argo_duration), PlainSerializer(format_duration, return_type=str)
]
GoDuration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]


def _port(value: Any) -> int:
    try:
        port = int(str(value).strip())
    except ValueError:
        raise ValueError(f"port {value!r} is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range 1-65535")
    return port


def _text(value: Any) -> Any:
    """Argo types some numbers as strings (`partition: "0"`); YAML users write either."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


Text = Annotated[str, BeforeValidator(_text)]


class SecretKeySelector(_Model):
    """A Kubernetes secret reference (`name`, `key`); the runtime resolves it."""

    name: str
    key: str
    optional: bool | None = None


class Backoff(_Model):
    """Argo's Backoff: `steps` attempts in all, waiting `duration` x `factor`^n (+ jitter)."""

    duration: ArgoDuration = timedelta(0)
    steps: int = Field(default=1, ge=0)
    factor: float | None = Field(default=None, ge=0)
    jitter: float | None = Field(default=None, ge=0)

    @property
    def attempts(self) -> int:
        return max(self.steps, 1)

    def delays(self, random: Callable[[], float]) -> list[timedelta]:
        """Waits between attempts (attempts - 1 of them); `random` returns floats in [0, 1)."""
        out: list[timedelta] = []
        wait = self.duration
        for _ in range(self.attempts - 1):
            jitter = wait * (self.jitter or 0) * random()
            out.append(wait + jitter)
            wait *= self.factor or 1
        return out


class ObjectMeta(_Model):
    name: str
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("name", "namespace")
    @classmethod
    def _k8s_name(cls, v: str) -> str:
        if not _K8S_NAME.match(v):
            raise ValueError(
                f"{v!r} is not a valid name (lowercase letters, digits, '-' and '.', at most 253)"
            )
        return v


class _Definition(_Model):
    api_version: Literal["argoproj.io/v1alpha1"]
    metadata: ObjectMeta

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace


class _ClusterRef(_Model):
    """Where Kafka is: our `cluster` (a `[[kafka]]` id, with its TLS/SASL) or Argo's `url`."""

    url: str | None = None
    cluster: str | None = None

    @model_validator(mode="after")
    def _one_place(self) -> _ClusterRef:
        if bool(self.url) == bool(self.cluster):
            raise ValueError("set exactly one of 'cluster' (a [[kafka]] id) or 'url' (brokers)")
        return self


class ConsumerGroup(_Model):
    group_name: str | None = None
    start_oldest: bool | None = None
    oldest: bool | None = None
    rebalance_strategy: Literal["range", "roundrobin", "sticky"] | None = None

    @property
    def from_oldest(self) -> bool:
        """Argo's PR spelled it `startOldest`; later releases `oldest`: either works here."""
        return bool(self.start_oldest or self.oldest)


# --------------------------------------------------------------------------- EventBus


class EventBusKafka(_ClusterRef):
    topic: str | None = None
    consumer_group: ConsumerGroup | None = None
    partitioner: Literal["hash"] | None = Field(
        default=None,
        description="Only key hashing: a random partitioner splits one trigger's events across"
        " sensors and `a && b` may never fire.",
    )


class EventBusSpec(_Model):
    kafka: EventBusKafka


class EventBus(_Definition):
    kind: Literal["EventBus"]
    spec: EventBusSpec

    @property
    def event_topic(self) -> str:
        """`spec.kafka.topic`, else `{namespace}-{name}` as Argo's controller names it."""
        return self.spec.kafka.topic or f"{self.namespace}-{self.name}"

    @property
    def start_oldest(self) -> bool:
        group = self.spec.kafka.consumer_group
        return bool(group and group.from_oldest)


def trigger_topic(event_topic: str, sensor: str) -> str:
    """`{eventTopic}-{sensor}-trigger`: holds events of triggers with `&&` until they fire."""
    return _topic(f"{event_topic}-{sensor}-trigger")


def action_topic(event_topic: str, sensor: str) -> str:
    """`{eventTopic}-{sensor}-action`: firings waiting for their action to run."""
    return _topic(f"{event_topic}-{sensor}-action")


def _topic(name: str) -> str:
    if len(name) > _TOPIC_MAX:
        raise ValueError(f"topic name {name!r} is longer than Kafka's {_TOPIC_MAX} characters")
    return name


def sensor_group_id(bus: EventBus, sensor: str) -> str:
    """The sensor's consumer group: `{namespace}-{sensor}`, or `{groupName}-{sensor}`.

    Argo gives every sensor on a bus the same group when `groupName` is set, so the sensors
    split the event topic between them and each misses events; a per-sensor suffix avoids it.
    """
    group = bus.spec.kafka.consumer_group
    prefix = group.group_name if group and group.group_name else bus.namespace
    return f"{prefix}-{sensor}"


# --------------------------------------------------------------------------- EventSources


class KafkaSource(_ClusterRef):
    topic: str
    partition: Text | None = None
    json_body: bool = False
    metadata: dict[str, str] = Field(default_factory=dict)
    consumer_group: ConsumerGroup | None = None
    limit_events_per_second: int | None = Field(default=None, ge=0)
    connection_backoff: Backoff | None = None

    @field_validator("partition")
    @classmethod
    def _partition(cls, v: str | None) -> str | None:
        if v is not None and not v.strip().isdigit():
            raise ValueError(f"partition {v!r} is not a partition number")
        return v


class WebhookSource(_Model):
    endpoint: str
    method: str = "POST"
    port: Annotated[int, BeforeValidator(_port)]
    url: str | None = None
    auth_secret: SecretKeySelector | None = None
    token: str | None = Field(
        default=None, description="A bearer token, as an alternative to authSecret."
    )
    max_payload_size: int | None = Field(default=None, gt=0)
    metadata: dict[str, str] = Field(default_factory=dict)

    @field_validator("endpoint")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"endpoint {v!r} must start with '/'")
        return v

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z]+", v):
            raise ValueError(f"{v!r} is not an HTTP method")
        return v.upper()


_EXDATE = re.compile(r"^(?:EXDATE:)?(\d{4})(\d{2})(\d{2})(?:T\d{6}Z?)?$")


class CalendarSource(_Model):
    schedule: str | None = None
    interval: GoDuration | None = None
    timezone: TimeZone = None
    exclusion_dates: list[str] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _when(self) -> CalendarSource:
        if not self.schedule and not self.interval:
            raise ValueError("set 'schedule' (cron) or 'interval'")
        if self.interval is not None and self.interval <= timedelta(0):
            raise ValueError("interval must be positive")
        if self.schedule:
            CronSchedule(self.schedule, self.timezone or "UTC")
        for text in self.exclusion_dates:
            if not _EXDATE.match(text):
                raise _problem("exclusionDates", f"{text!r} is not like EXDATE:20190102T150405Z")
        return self

    def _excluded(self, at: datetime) -> bool:
        """Argo matches exclusion dates on year, month and day only."""
        day = at.astimezone(_zone(self.timezone or "UTC")).strftime("%Y%m%d")
        return any(re.sub(r"\D", "", t)[:8] == day for t in self.exclusion_dates)

    def next_fire(self, after: datetime, anchor: datetime) -> datetime:
        """The next event time after `after`; `interval` counts from `anchor` (the start).

        `schedule` wins over `interval`, as in Argo; excluded dates are skipped.
        """
        at = after
        for _ in range(10_000):
            if self.schedule:
                at = CronSchedule(self.schedule, self.timezone or "UTC").next(at)
            else:
                assert self.interval is not None
                periods = (at - anchor) // self.interval + 1 if at >= anchor else 0
                at = anchor + self.interval * periods
            if not self._excluded(at):
                return at
        raise ValueError("every fire time in the search window is excluded")


class AlertsSource(_ClusterRef):
    """Alerts that our alerting job wrote (Kapacitor's JSON) as events."""

    topic: str | None = None
    topics: list[str] = Field(default_factory=list)
    levels: list[Literal["OK", "INFO", "WARNING", "CRITICAL"]] = Field(default_factory=list)
    consumer_group: ConsumerGroup | None = None

    @model_validator(mode="after")
    def _some_topic(self) -> AlertsSource:
        if not self.topic and not self.topics:
            raise ValueError("set 'topic' or 'topics'")
        return self

    @property
    def all_topics(self) -> list[str]:
        return list(dict.fromkeys([*([self.topic] if self.topic else []), *self.topics]))

    def accepts(self, alert: Any) -> bool:
        """Whether an alert message (decoded JSON) passes the `levels` filter."""
        if not self.levels:
            return True
        return isinstance(alert, dict) and alert.get("level") in self.levels


class EventSourceSpec(_Model):
    event_bus_name: str = "default"
    kafka: dict[str, KafkaSource] = Field(default_factory=dict)
    webhook: dict[str, WebhookSource] = Field(default_factory=dict)
    calendar: dict[str, CalendarSource] = Field(default_factory=dict)
    alerts: dict[str, AlertsSource] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_events(self) -> EventSourceSpec:
        seen: dict[str, str] = {}
        for kind in ("kafka", "webhook", "calendar", "alerts"):
            for event in getattr(self, kind):
                if event in seen:
                    raise _problem(f"{kind}.{event}", f"event name also used under {seen[event]}")
                seen[event] = kind
        if not seen:
            raise ValueError("define at least one event under kafka, webhook, calendar or alerts")
        return self


class EventSource(_Definition):
    kind: Literal["EventSource"]
    spec: EventSourceSpec

    def events(self) -> Iterator[tuple[str, str, Any]]:
        """(type, event name, settings) for every event this source emits."""
        for kind in ("kafka", "webhook", "calendar", "alerts"):
            for event, settings in getattr(self.spec, kind).items():
                yield kind, event, settings


# --------------------------------------------------------------------------- Sensor: dependencies


def _compile_path(v: str) -> str:
    try:
        compile_path(v)
    except PathError as exc:
        raise ValueError(str(exc)) from None
    return v


def _compile_dest(v: str) -> str:
    try:
        if v:
            compile_set_path(v)
    except PathError as exc:
        raise ValueError(str(exc)) from None
    return v


GjsonPath = Annotated[str, AfterValidator(_compile_path)]
SjsonPath = Annotated[str, AfterValidator(_compile_dest)]


class DataFilter(_Model):
    path: GjsonPath
    type: Literal["bool", "number", "string"]
    value: list[Text] = Field(min_length=1)
    comparator: Literal[">=", ">", "=", "!=", "<", "<=", ""] = ""

    @model_validator(mode="after")
    def _values(self) -> DataFilter:
        for i, text in enumerate(self.value):
            try:
                if self.type == "bool":
                    parse_go_bool(text)
                elif self.type == "number":
                    parse_go_float(text)
                else:
                    re.compile(text)
            except (ValueError, re.error) as exc:
                raise _problem(f"value[{i}]", str(exc)) from None
        allowed = {"number": None, "string": ("", "=", "!="), "bool": ("", "=")}[self.type]
        if allowed is not None and self.comparator not in allowed:
            raise _problem("comparator", f"{self.comparator!r} does not apply to {self.type}s")
        return self


class PayloadField(_Model):
    path: GjsonPath
    name: str


class ExprFilter(_Model):
    expr: str
    fields: list[PayloadField] = Field(min_length=1)
    _compiled: Expression = PrivateAttr()

    @model_validator(mode="after")
    def _compile(self) -> ExprFilter:
        try:
            self._compiled = compile_expression(self.expr)
        except ExpressionError as exc:
            raise _problem("expr", str(exc)) from None
        names = {f.name for f in self.fields}
        missing = sorted(self._compiled.variables - names)
        if missing:
            raise _problem("expr", f"uses {', '.join(missing)}, which no entry in 'fields' names")
        return self

    @property
    def expression(self) -> Expression:
        return self._compiled


class ContextFilter(_Model):
    type: str | None = None
    subject: str | None = None
    source: str | None = None
    datacontenttype: str | None = Field(default=None, alias="datacontenttype")


def _clock(v: str) -> str:
    try:
        time.fromisoformat(v)
    except (TypeError, ValueError):
        raise ValueError(f"{v!r} is not a time of day like 09:30:00") from None
    if not re.fullmatch(r"\d{2}:\d{2}:\d{2}", v):
        raise ValueError(f"{v!r} is not HH:MM:SS")
    return v


class TimeFilter(_Model):
    """Argo's window (`[start, stop)`, wrapping midnight when stop < start), in UTC unless
    `timezone` (ours) names another zone."""

    start: Annotated[str, BeforeValidator(_clock)]
    stop: Annotated[str, BeforeValidator(_clock)]
    timezone: TimeZone = None


LogicalOperator = Literal["and", "or", ""]


class DependencyFilter(_Model):
    data: list[DataFilter] | None = None
    exprs: list[ExprFilter] | None = None
    context: ContextFilter | None = None
    time: TimeFilter | None = None
    data_logical_operator: LogicalOperator = ""
    expr_logical_operator: LogicalOperator = ""


class Transform(_Model):
    jq: str
    _program: JqProgram = PrivateAttr()

    @model_validator(mode="after")
    def _compile(self) -> Transform:
        try:
            self._program = compile_jq(self.jq)
        except JqError as exc:
            raise _problem("jq", str(exc)) from None
        return self

    @property
    def program(self) -> JqProgram:
        return self._program


class Dependency(_Model):
    name: str
    event_source_name: str
    event_name: str
    filters: DependencyFilter | None = None
    filters_logical_operator: LogicalOperator = ""
    transform: Transform | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _DEPENDENCY_NAME.match(v):
            raise ValueError(f"{v!r}: dependency names use letters, digits, '-' and '_'")
        return v

    @property
    def key(self) -> str:
        """The event-topic key of the events this dependency waits for."""
        return f"{self.event_source_name}.{self.event_name}"


# --------------------------------------------------------------------------- Sensor: triggers


class ParameterSource(_Model):
    dependency_name: str
    data_key: GjsonPath | None = None
    context_key: GjsonPath | None = None
    value: Text | None = None
    use_raw_data: bool = False


class Parameter(_Model):
    src: ParameterSource
    dest: SjsonPath = ""
    operation: Literal["", "append", "prepend", "overwrite"] = ""


class KafkaTrigger(_ClusterRef):
    topic: str
    partitioning_key: str | None = None
    payload: list[Parameter]
    parameters: list[Parameter] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    required_acks: int | None = None
    compress: bool = False
    flush_frequency: int | None = None


class HttpTrigger(_Model):
    url: str
    method: str = "POST"
    payload: list[Parameter] = Field(default_factory=list)
    parameters: list[Parameter] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: int = Field(default=60, gt=0, description="Seconds, as in Argo.")

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z]+", v):
            raise ValueError(f"{v!r} is not an HTTP method")
        return v.upper()


class LogTrigger(_Model):
    interval_seconds: int = Field(default=0, ge=0)


class CommandTrigger(_Model):
    """Run a program (ours); exit status 0 is success. `payload` becomes its stdin."""

    path: str
    args: list[str] = Field(default_factory=list)
    parameters: list[Parameter] = Field(default_factory=list)
    payload: list[Parameter] = Field(default_factory=list)
    timeout: GoDuration | None = None


class ResetByTime(_Model):
    cron: str
    timezone: TimeZone = None

    @model_validator(mode="after")
    def _valid(self) -> ResetByTime:
        try:
            CronSchedule(self.cron, self.timezone or "UTC")
        except ValueError as exc:
            raise _problem("cron", str(exc)) from None
        return self

    @property
    def schedule(self) -> CronSchedule:
        return CronSchedule(self.cron, self.timezone or "UTC")


class ConditionsReset(_Model):
    by_time: ResetByTime


class TriggerTemplate(_Model):
    name: str = Field(min_length=1)
    conditions: str | None = None
    conditions_reset: list[ConditionsReset] = Field(default_factory=list)
    kafka: KafkaTrigger | None = None
    http: HttpTrigger | None = None
    log: LogTrigger | None = None
    command: CommandTrigger | None = None

    @model_validator(mode="after")
    def _one_action(self) -> TriggerTemplate:
        kinds = [k for k in ("kafka", "http", "log", "command") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "a trigger template needs exactly one of kafka, http, log or command"
                + (f" (got {', '.join(kinds)})" if kinds else "")
            )
        return self

    @property
    def reset_schedules(self) -> tuple[CronSchedule, ...]:
        return tuple(r.by_time.schedule for r in self.conditions_reset)


class StatusPolicy(_Model):
    allow: list[int] = Field(min_length=1)


class TriggerPolicy(_Model):
    status: StatusPolicy | None = None


class RateLimit(_Model):
    unit: Literal["Second", "Minute", "Hour"] = "Second"
    requests_per_unit: int = Field(gt=0)


class Trigger(_Model):
    template: TriggerTemplate
    parameters: list[Parameter] = Field(default_factory=list)
    policy: TriggerPolicy | None = None
    retry_strategy: Backoff | None = None
    rate_limit: RateLimit | None = None
    at_least_once: bool = False
    dlq_trigger: Trigger | None = None
    _condition: Condition | None = PrivateAttr(default=None)

    @property
    def name(self) -> str:
        return self.template.name

    @property
    def condition(self) -> Condition:
        """The compiled condition; set when the Sensor holding this trigger validated."""
        if self._condition is None:
            raise RuntimeError(f"trigger {self.name!r} was not validated as part of a Sensor")
        return self._condition

    @property
    def retry(self) -> Backoff:
        """Argo's default is one attempt, no retry."""
        return self.retry_strategy or Backoff(steps=1)

    def parameter_lists(self) -> Iterator[tuple[str, list[Parameter]]]:
        """(field path, parameters) for every parameter list, for reference checks."""
        yield "parameters", self.parameters
        for kind in ("kafka", "http", "command"):
            action = getattr(self.template, kind)
            if action is not None:
                yield f"template.{kind}.parameters", action.parameters
                yield f"template.{kind}.payload", action.payload
        if self.dlq_trigger is not None:
            for path, params in self.dlq_trigger.parameter_lists():
                yield f"dlqTrigger.{path}", params

    def render(self, events: Mapping[str, CloudEvent]) -> ActionRequest:
        """The concrete action for one firing; `events` maps dependency name to its event.

        Trigger-level `parameters` rewrite the template first (e.g. `dest: kafka.topic`), then
        the action's own `parameters` rewrite it, then `payload` builds the body, as in Argo.
        """
        template = self.template
        if self.parameters:
            template = _reapply(TriggerTemplate, template, self.parameters, events)
        if template.kafka is not None:
            kafka = _reapply(KafkaTrigger, template.kafka, template.kafka.parameters, events)
            key = kafka.partitioning_key
            return KafkaRequest(
                trigger=self.name,
                cluster=kafka.cluster,
                url=kafka.url,
                topic=kafka.topic,
                key=None if key is None else key.encode(),
                value=construct_payload(kafka.payload, events),
                headers=tuple((k, v.encode()) for k, v in kafka.headers.items()),
                required_acks=kafka.required_acks,
                compress=kafka.compress,
            )
        if template.http is not None:
            http = _reapply(HttpTrigger, template.http, template.http.parameters, events)
            allowed = self.policy.status.allow if self.policy and self.policy.status else None
            return HttpRequest(
                trigger=self.name,
                url=http.url,
                method=http.method,
                headers=tuple(http.headers.items()),
                body=construct_payload(http.payload, events),
                timeout=timedelta(seconds=http.timeout),
                allowed_statuses=None if allowed is None else tuple(allowed),
            )
        if template.command is not None:
            cmd = _reapply(CommandTrigger, template.command, template.command.parameters, events)
            return CommandRequest(
                trigger=self.name,
                argv=(cmd.path, *cmd.args),
                stdin=construct_payload(cmd.payload, events),
                timeout=cmd.timeout,
            )
        assert template.log is not None
        return LogRequest(
            trigger=self.name,
            events=tuple(sorted(events.items())),
            interval=timedelta(seconds=template.log.interval_seconds),
        )


_M = TypeVar("_M", bound=BaseModel)


def _reapply(
    model: type[_M], current: _M, params: Sequence[Parameter], events: Mapping[str, CloudEvent]
) -> _M:
    """Write parameters into a model through its JSON form, as Argo does, and re-validate."""
    if not params:
        return current
    doc = current.model_dump(mode="json", by_alias=True, exclude_none=True)
    doc = apply_parameters(doc, params, events)
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ParameterError(f"parameters made an invalid {where}: {first['msg']}") from None


@dataclass(frozen=True)
class KafkaRequest:
    trigger: str
    cluster: str | None
    url: str | None
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    required_acks: int | None
    compress: bool


@dataclass(frozen=True)
class HttpRequest:
    trigger: str
    url: str
    method: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    timeout: timedelta
    allowed_statuses: tuple[int, ...] | None  # None: any 2xx is success

    def succeeded(self, status: int) -> bool:
        if self.allowed_statuses is None:
            return 200 <= status < 300
        return status in self.allowed_statuses


@dataclass(frozen=True)
class CommandRequest:
    trigger: str
    argv: tuple[str, ...]
    stdin: bytes
    timeout: timedelta | None


@dataclass(frozen=True)
class LogRequest:
    trigger: str
    events: tuple[tuple[str, CloudEvent], ...]
    interval: timedelta


ActionRequest = KafkaRequest | HttpRequest | CommandRequest | LogRequest


class SensorSpec(_Model):
    event_bus_name: str = "default"
    dependencies: list[Dependency] = Field(min_length=1)
    triggers: list[Trigger] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> SensorSpec:
        names: set[str] = set()
        for i, dep in enumerate(self.dependencies):
            if dep.name in names:
                raise _problem(f"dependencies[{i}].name", f"duplicate dependency {dep.name!r}")
            names.add(dep.name)
        dep_names = [d.name for d in self.dependencies]
        seen: set[str] = set()
        for i, trigger in enumerate(self.triggers):
            where = f"triggers[{i}]"
            if trigger.name in seen:
                raise _problem(f"{where}.template.name", f"duplicate trigger {trigger.name!r}")
            seen.add(trigger.name)
            try:
                trigger._condition = compile_condition(trigger.template.conditions, dep_names)
            except ExpressionError as exc:
                raise _problem(f"{where}.template.conditions", str(exc)) from None
            for path, params in trigger.parameter_lists():
                for j, param in enumerate(params):
                    if param.src.dependency_name not in names:
                        raise _problem(
                            f"{where}.{path}[{j}].src.dependencyName",
                            f"unknown dependency {param.src.dependency_name!r}",
                        )
        return self


class Sensor(_Definition):
    kind: Literal["Sensor"]
    spec: SensorSpec

    def dependency(self, name: str) -> Dependency:
        return next(d for d in self.spec.dependencies if d.name == name)


Definition = EventBus | EventSource | Sensor
_KINDS: dict[str, type[EventBus] | type[EventSource] | type[Sensor]] = {
    "EventBus": EventBus,
    "EventSource": EventSource,
    "Sensor": Sensor,
}

# --------------------------------------------------------------------------- loading files

# Kubernetes-only settings with no meaning here: dropped with a warning so Argo files still load.
_IGNORED: dict[str, tuple[tuple[str, ...], ...]] = {
    "*": (("status",), *(("metadata", f) for f in (
        "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
        "finalizers", "ownerReferences", "selfLink", "deletionTimestamp",
    ))),
    "EventBus": (("spec", "kafka", "version"),),
    "EventSource": (
        ("spec", "template"), ("spec", "service"), ("spec", "replicas"),
        ("spec", "kafka", "*", "version"),
    ),
    "Sensor": (
        ("spec", "template"), ("spec", "replicas"), ("spec", "revisionHistoryLimit"),
        ("spec", "loggingFields"), ("spec", "errorOnFailedRound"),
        ("spec", "triggers", "*", "template", "kafka", "version"),
        ("spec", "triggers", "*", "template", "kafka", "partition"),
    ),
}  # fmt: skip

# Argo features not carried over: the unknown-field error says what to do instead.
_HINTS = {
    "tls": "put TLS on the [[kafka]] cluster and reference it with 'cluster'",
    "sasl": "put SASL on the [[kafka]] cluster and reference it with 'cluster'",
    "config": "client settings belong on the [[kafka]] cluster",
    "script": "Lua scripts are not supported; use 'jq' transforms and 'exprs' filters",
    "template": "Go templates are not supported; use dataKey/contextKey paths",
    "dataTemplate": "Go templates are not supported; use dataKey",
    "contextTemplate": "Go templates are not supported; use contextKey",
    "filter": "event-source filters are not supported; filter on the sensor dependency",
    "persistence": "calendar catch-up is not supported",
    "serverCertSecret": "terminate TLS in front of kafkaops' HTTP server",
    "serverKeySecret": "terminate TLS in front of kafkaops' HTTP server",
    "basicAuth": "set an Authorization header in 'headers'",
    "secureHeaders": "set the header in 'headers'",
    "dynamicHeaders": "set headers with trigger 'parameters' (dest: http.headers.NAME)",
    "schemaRegistry": "Avro is not supported",
    "awsMskIamAuth": "configure authentication on the [[kafka]] cluster",
}
_SOURCE_TYPES = "kafka, webhook, calendar, alerts"
_TRIGGER_TYPES = "kafka, http, log, command"


@dataclass(frozen=True)
class LoadResult:
    definitions: tuple[Definition, ...]
    warnings: tuple[str, ...]


def load_file(path: str | Path) -> LoadResult:
    """Load every definition in a YAML file (documents separated by `---`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(str(path), [f"{path}: cannot read: {exc}"]) from None
    return load_definitions(text, str(path))


def load_definitions(text: str, source: str) -> LoadResult:
    """Parse and validate YAML text; `source` (usually the file name) prefixes every message."""
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise DefinitionError(source, [f"{source}: invalid YAML: {exc}"]) from None
    definitions: list[Definition] = []
    warnings: list[str] = []
    problems: list[str] = []
    for node, doc in zip(nodes, docs, strict=True):
        if doc is None:
            continue
        where = f"{source}:{node.start_mark.line + 1}"
        if not isinstance(doc, dict):
            problems.append(f"{where}: a definition is a mapping, got {type(doc).__name__}")
            continue
        kind = doc.get("kind")
        model = _KINDS.get(kind) if isinstance(kind, str) else None
        if model is None:
            problems.append(f"{where}: kind: {kind!r} is not one of {', '.join(_KINDS)}")
            continue
        for path in _strip_ignored(doc, kind):
            line = _line_of(node, path)
            warnings.append(f"{source}:{line}: {_render_path(path)}: ignored (Kubernetes-only)")
        meta = doc.get("metadata")
        label = f"{kind} {meta.get('name')!r}" if isinstance(meta, dict) else kind
        try:
            definitions.append(model.model_validate(doc))
        except ValidationError as exc:
            for err in exc.errors():
                loc, message = _describe(err, kind)
                problems.append(f"{source}:{_line_of(node, loc)}: {label}: {message}")
    if problems:
        raise DefinitionError(source, problems)
    _check_unique(definitions, source)
    return LoadResult(tuple(definitions), tuple(warnings))


def _check_unique(definitions: Sequence[Definition], source: str) -> None:
    seen: set[tuple[str, str, str]] = set()
    for d in definitions:
        key = (d.kind, d.namespace, d.name)
        if key in seen:
            raise DefinitionError(source, [f"{source}: {d.kind} {d.name!r} is defined twice"])
        seen.add(key)


def _strip_ignored(doc: dict[str, Any], kind: str) -> list[tuple[Any, ...]]:
    removed: list[tuple[Any, ...]] = []
    for pattern in (*_IGNORED["*"], *_IGNORED[kind]):
        removed.extend(_remove(doc, pattern, ()))
    return removed


def _remove(node: Any, pattern: tuple[str, ...], at: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    head, rest = pattern[0], pattern[1:]
    if head == "*":
        if isinstance(node, dict):
            children = list(node.items())
        elif isinstance(node, list):
            children = list(enumerate(node))
        else:
            return []
        return [p for key, child in children for p in _remove(child, rest, (*at, key))]
    if not isinstance(node, dict) or head not in node:
        return []
    if not rest:
        del node[head]
        return [(*at, head)]
    return _remove(node[head], rest, (*at, head))


def _describe(err: Any, kind: str) -> tuple[tuple[Any, ...], str]:
    loc = tuple(err["loc"])
    if err["type"] == "eventbus":
        sub = tuple(_split_path(err["ctx"]["path"]))
        return (*loc, *sub), f"{_render_path((*loc, *sub))}: {err['ctx']['message']}"
    path = _render_path(loc)
    if err["type"] == "extra_forbidden":
        name = str(loc[-1]) if loc else ""
        hint = _HINTS.get(name)
        if loc[-2:-1] == ("spec",) and kind == "EventSource":
            hint = f"event source type {name!r} is not supported (supported: {_SOURCE_TYPES})"
        elif loc[-2:-1] == ("template",) and kind == "Sensor" and name not in _HINTS:
            hint = f"trigger type {name!r} is not supported (supported: {_TRIGGER_TYPES})"
        return loc, f"{path}: unknown field" + (f": {hint}" if hint else "")
    if err["type"] == "missing":
        return loc, f"{path}: required field is missing"
    message = str(err["msg"]).removeprefix("Value error, ")
    shown = err.get("input")
    if isinstance(shown, dict | list) or shown is None:
        return loc, f"{path or '(document)'}: {message}"
    return loc, f"{path}: {message} (got {shown!r})"


def _split_path(path: str) -> Iterator[Any]:
    for part in path.split("."):
        m = re.fullmatch(r"([^\[]*)((?:\[\d+\])*)", part)
        assert m is not None
        if m.group(1):
            yield m.group(1)
        for index in re.findall(r"\[(\d+)\]", m.group(2)):
            yield int(index)


def _render_path(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _line_of(node: yaml.Node, loc: Sequence[Any]) -> int:
    """The line of the deepest YAML node `loc` reaches (the key's line for mapping entries)."""
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def validate_references(definitions: Sequence[Definition]) -> list[str]:
    """Cross-definition problems a store should report: sensors waiting for events that no
    EventSource emits, and sources or sensors naming an EventBus that does not exist."""
    buses = {(d.namespace, d.name) for d in definitions if isinstance(d, EventBus)}
    emitted = {
        (d.namespace, d.name, event)
        for d in definitions
        if isinstance(d, EventSource)
        for _, event, _ in d.events()
    }
    out: list[str] = []
    for d in definitions:
        if (
            isinstance(d, EventSource | Sensor)
            and (d.namespace, d.spec.event_bus_name) not in buses
        ):
            out.append(f"{d.kind} {d.name!r}: EventBus {d.spec.event_bus_name!r} is not defined")
        if isinstance(d, Sensor):
            for dep in d.spec.dependencies:
                if (d.namespace, dep.event_source_name, dep.event_name) not in emitted:
                    out.append(
                        f"Sensor {d.name!r}: dependency {dep.name!r} waits for"
                        f" {dep.key!r}, which no EventSource emits"
                    )
    return out


def reset_watermark(schedules: Sequence[CronSchedule], at: datetime) -> datetime | None:
    """The most recent reset at or before `at` across a trigger's schedules (None: no resets)."""
    if not schedules:
        return None
    return max(s.previous(at) for s in schedules)
