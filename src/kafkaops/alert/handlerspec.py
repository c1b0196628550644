"""Topic-handler specs: the YAML/JSON files of `define-topic-handler` and the handler API body.

A spec is `id`, `topic`, `kind`, optional `match` and `options`, exactly as Kapacitor reads
them, so existing handler files load unchanged. Options are checked per kind when the handler
is defined (unknown keys, wrong types, an unknown Kafka cluster, a bad template), not when the
first alert fires. Option keys match case-insensitively, as Kapacitor's mapstructure decoding
does, and the documented `partitionAlgorithm` and the TICKscript `partitionHashAlgorithm` are
both accepted.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from kafkaops.alert.gotemplate import Template, TemplateError
from kafkaops.config.durations import parse_duration
from kafkaops.kafka.partitioners import PartitionAlgorithm


class HandlerSpecError(ValueError):
    """A handler spec that cannot be defined; the message names the source, field and value."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems


def _valid_name(text: str, extra: str) -> bool:
    """Kapacitor's `^[-\\._\\p{L}0-9]+$` (plus ':' for topics): letters in any script, ASCII
    digits and a few punctuation marks."""
    return bool(text) and all(ch.isalpha() or ch in "0123456789-._" + extra for ch in text)


class _Options(BaseModel):
    """Handler options: strict types, unknown keys rejected, keys matched ignoring case."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _fold_key_case(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        field_of: dict[str, str] = {}
        spellings: set[str] = set()
        for name, info in cls.model_fields.items():
            names = [info.alias or name, name]
            if isinstance(info.validation_alias, AliasChoices):
                names.extend(str(choice) for choice in info.validation_alias.choices)
            spellings.update(names)
            for spelling in names:
                field_of.setdefault(spelling.lower(), name)
        preferred = {name: info.alias or name for name, info in cls.model_fields.items()}
        out: dict[str, Any] = {}
        seen: dict[str, str] = {}
        for key, value in data.items():
            text = str(key)
            name = field_of.get(text.lower())
            if name is None:
                out[text] = value
                continue
            if name in seen:
                raise ValueError(f"option {text!r} given twice (also as {seen[name]!r})")
            seen[name] = text
            out[text if text in spellings else preferred[name]] = value
        return out


def _template(value: str, info: ValidationInfo) -> str:
    """Parse Go-template options now, so a broken template fails the definition."""
    if value:
        try:
            Template.parse(value, name=info.field_name or "template")
        except TemplateError as exc:
            raise ValueError(str(exc)) from exc
    return value


class KafkaHandlerOptions(_Options):
    """`kind: kafka`: write alerts to a topic of one of the configured `[[kafka]]` clusters."""

    cluster: str
    topic: str
    template: str = ""
    disable_partition_by_id: bool = Field(default=False, alias="disablePartitionById")
    partition_algorithm: PartitionAlgorithm = Field(
        default=PartitionAlgorithm.CRC32,
        alias="partitionAlgorithm",
        validation_alias=AliasChoices("partitionAlgorithm", "partitionHashAlgorithm"),
    )

    @field_validator("cluster")
    @classmethod
    def _known_cluster(cls, value: str, info: ValidationInfo) -> str:
        known = (info.context or {}).get("clusters")
        if known is not None and value not in known:
            listed = ", ".join(sorted(known)) or "none configured"
            raise ValueError(f"unknown cluster {value!r} (known: {listed})")
        return value

    @field_validator("topic")
    @classmethod
    def _topic_not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("topic must not be empty")
        return value

    _check_template = field_validator("template")(_template)

    @field_validator("partition_algorithm", mode="before")
    @classmethod
    def _algorithm(cls, value: Any) -> Any:
        if isinstance(value, str) and not isinstance(value, PartitionAlgorithm):
            return PartitionAlgorithm.parse(value)
        return value

    @property
    def partition_by_id(self) -> bool:
        return not self.disable_partition_by_id


class LogHandlerOptions(_Options):
    """`kind: log`: append alert JSON lines to a file."""

    DEFAULT_MODE: ClassVar[int] = 0o600

    path: str
    mode: int = DEFAULT_MODE

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not posixpath.isabs(value):
            raise ValueError(f"log path must be absolute: {value} is not absolute")
        return value

    @field_validator("mode")
    @classmethod
    def _writable(cls, value: int) -> int:
        if not 0 <= value <= 0o7777 or not value & 0o200:
            raise ValueError(f"invalid file mode {value:#o}, must be user writable")
        return value


class PostHandlerOptions(_Options):
    """`kind: post`: POST alert JSON to a URL (itself a Go template, as in Kapacitor)."""

    url: str = ""
    endpoint: str = ""
    headers: dict[str, str] = Field(default_factory=dict)
    capture_response: bool = Field(default=False, alias="capture-response")
    timeout: timedelta = timedelta(0)
    skip_ssl_verification: bool = Field(default=False, alias="skip-ssl-verification")

    _check_url = field_validator("url")(_template)

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_duration(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise ValueError(f"timeout must not be negative: {value}")
            return timedelta(microseconds=value / 1000)
        return value

    @model_validator(mode="after")
    def _target(self, info: ValidationInfo) -> PostHandlerOptions:
        endpoints = (info.context or {}).get("post_endpoints", ())
        if self.endpoint and self.endpoint not in endpoints:
            raise ValueError(f"unknown post endpoint {self.endpoint!r}")
        if not self.endpoint and not self.url:
            raise ValueError(
                "An appropriately formatted url must be specified if an endpoint is not specified"
            )
        return self


class ExecHandlerOptions(_Options):
    """`kind: exec`: run a program with the alert JSON on its standard input."""

    prog: str
    args: list[str] = Field(default_factory=list)

    @field_validator("prog")
    @classmethod
    def _prog(cls, value: str) -> str:
        if not value:
            raise ValueError("prog must not be empty")
        return value


class TcpHandlerOptions(_Options):
    """`kind: tcp`: send the alert JSON to a TCP address."""

    address: str

    @field_validator("address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"address must be host:port, got {value!r}")
        return value


HandlerOptions = (
    KafkaHandlerOptions
    | LogHandlerOptions
    | PostHandlerOptions
    | ExecHandlerOptions
    | TcpHandlerOptions
)

OPTION_MODELS: dict[str, type[_Options]] = {
    "kafka": KafkaHandlerOptions,
    "log": LogHandlerOptions,
    "post": PostHandlerOptions,
    "exec": ExecHandlerOptions,
    "tcp": TcpHandlerOptions,
}


class HandlerSpec(BaseModel):
    """The spec as written; `options` stays the raw mapping, which the API echoes back."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    id: str
    topic: str
    kind: str
    match: str = ""
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _valid_name(value, ""):
            raise ValueError(
                f"handler ID must contain only letters, numbers, '-', '.' and '_'. {value!r}"
            )
        return value

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        if not _valid_name(value, ":"):
            raise ValueError(
                f"topic must contain only letters, numbers, '-', '.', ':' and '_'. {value!r}"
            )
        return value

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if not value:
            raise ValueError("handler Kind must not be empty")
        if value not in OPTION_MODELS:
            supported = ", ".join(sorted(OPTION_MODELS))
            raise ValueError(f"unsupported handler kind {value!r} (supported: {supported})")
        return value

    @field_validator("options", mode="before")
    @classmethod
    def _null_options(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("match", mode="before")
    @classmethod
    def _null_match(cls, value: Any) -> Any:
        return "" if value is None else value

    def to_dict(self) -> dict[str, Any]:
        """The spec in Kapacitor's API field order (id, topic, kind, options, match)."""
        return {
            "id": self.id,
            "topic": self.topic,
            "kind": self.kind,
            "options": self.options,
            "match": self.match,
        }


@dataclass(frozen=True)
class TopicHandler:
    """A validated handler: the spec plus its options decoded for its kind. `match` is kept as
    text; compiling it is the expression module's job."""

    spec: HandlerSpec
    options: HandlerOptions

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def topic(self) -> str:
        return self.spec.topic

    @property
    def kind(self) -> str:
        return self.spec.kind


def _problems(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[str]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in (*prefix, *err["loc"]))
        message = err["msg"].removeprefix("Value error, ")
        where = f"{loc}: " if loc else ""
        if err["type"] == "missing":
            out.append(f"{where}required option is missing")
        elif err["type"] == "extra_forbidden":
            out.append(f"{where}unknown option (value {err['input']!r})")
        elif repr(err["input"]) in message:
            out.append(f"{where}{message}")
        else:
            out.append(f"{where}{message} (got {err['input']!r})")
    return out


def validate_options(
    kind: str,
    options: Mapping[str, Any],
    *,
    source: str = "handler",
    known_clusters: Collection[str] | None = None,
    post_endpoints: Collection[str] = (),
) -> HandlerOptions:
    """Decode the options of one handler kind, as a spec file or a TICKscript handler gives
    them. `known_clusters` are the configured `[[kafka]]` ids; None skips that check."""
    model = OPTION_MODELS.get(kind)
    if model is None:
        supported = ", ".join(sorted(OPTION_MODELS))
        raise HandlerSpecError(source, [f"kind: unsupported handler kind {kind!r} ({supported})"])
    context = {"clusters": known_clusters, "post_endpoints": post_endpoints}
    try:
        return model.model_validate(options, context=context)  # type: ignore[return-value]
    except ValidationError as exc:
        raise HandlerSpecError(source, _problems(exc, ("options",))) from None


def validate_handler(
    data: Any,
    *,
    source: str = "handler",
    topic: str | None = None,
    known_clusters: Collection[str] | None = None,
    post_endpoints: Collection[str] = (),
) -> TopicHandler:
    """Validate a decoded spec (a mapping). `topic`, when given, overrides the spec's, as the
    `/alerts/topics/{topic}/handlers` API takes the topic from the path."""
    if not isinstance(data, Mapping):
        raise HandlerSpecError(source, [f"expected a mapping with id, topic, kind, got {data!r}"])
    body = dict(data)
    if topic is not None:
        body["topic"] = topic
    try:
        spec = HandlerSpec.model_validate(body)
    except ValidationError as exc:
        raise HandlerSpecError(source, _problems(exc)) from None
    options = validate_options(
        spec.kind,
        spec.options,
        source=source,
        known_clusters=known_clusters,
        post_endpoints=post_endpoints,
    )
    return TopicHandler(spec=spec, options=options)


def parse_handler_file(
    text: str,
    filename: str,
    *,
    known_clusters: Collection[str] | None = None,
    post_endpoints: Collection[str] = (),
) -> TopicHandler:
    """Parse a handler file's text, YAML or JSON by extension as `kapacitor
    define-topic-handler` does (.yaml, .yml, .json)."""
    ext = posixpath.splitext(filename)[1].lower()
    try:
        if ext in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif ext == ".json":
            data = json.loads(text)
        else:
            raise HandlerSpecError(
                filename, [f"bad file extension {ext!r}: must be .yaml, .yml or .json"]
            )
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise HandlerSpecError(filename, [f"cannot parse {ext[1:].upper()}: {exc}"]) from None
    return validate_handler(
        data, source=filename, known_clusters=known_clusters, post_endpoints=post_endpoints
    )
