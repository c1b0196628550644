"""Topic-handler specs: the seed's handler files, per-kind options and the errors users see."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from kafkaops.alert.handlerspec import (
    ExecHandlerOptions,
    HandlerSpecError,
    KafkaHandlerOptions,
    LogHandlerOptions,
    PostHandlerOptions,
    TcpHandlerOptions,
    parse_handler_file,
    validate_handler,
    validate_options,
)
from kafkaops.kafka.partitioners import PartitionAlgorithm

CLUSTERS = {"kafka-cluster", "infra-monitoring"}

SEED_HANDLER = """\
id: kafka-event-handler
topic: kapacitor-topic-name
kind: kafka
options:
  cluster: kafka-cluster
  topic: kafka-topic-name
  template: kafka-template-name
  disablePartitionById: false
  partitionAlgorithm: crc32
"""


def _errors(exc: pytest.ExceptionInfo[HandlerSpecError]) -> str:
    return str(exc.value)


def test_seed_handler_file_loads() -> None:
    handler = parse_handler_file(SEED_HANDLER, "kafka_handler.yaml", known_clusters=CLUSTERS)
    assert (handler.id, handler.topic, handler.kind) == (
        "kafka-event-handler",
        "kapacitor-topic-name",
        "kafka",
    )
    options = handler.options
    assert isinstance(options, KafkaHandlerOptions)
    assert options.cluster == "kafka-cluster"
    assert options.topic == "kafka-topic-name"
    assert options.template == "kafka-template-name"  # the template text itself
    assert options.partition_algorithm is PartitionAlgorithm.CRC32
    assert options.partition_by_id is True
    assert handler.spec.match == ""


def test_seed_handler_without_cluster_is_rejected_at_definition() -> None:
    # The seed's kafka_cpu_handler.yaml omits `cluster`; Kapacitor has no default cluster.
    text = "id: kafka-cpu-alert\ntopic: cpu\nkind: kafka\noptions:\n  topic: 'cpu-alerts'\n"
    with pytest.raises(HandlerSpecError) as exc:
        parse_handler_file(text, "kafka_cpu_handler.yaml", known_clusters=CLUSTERS)
    assert _errors(exc) == "kafka_cpu_handler.yaml: options.cluster: required option is missing"


def test_flow_style_options_with_murmur2() -> None:
    text = (
        "id: kafka-cpu-alert\ntopic: cpu\nkind: kafka\n"
        "options: {cluster: infra-monitoring, topic: cpu-alerts, partitionAlgorithm: murmur2}\n"
    )
    options = parse_handler_file(text, "h.yml", known_clusters=CLUSTERS).options
    assert isinstance(options, KafkaHandlerOptions)
    assert options.partition_algorithm is PartitionAlgorithm.MURMUR2


def _kafka(**options: Any) -> KafkaHandlerOptions:
    base: dict[str, Any] = {"cluster": "kafka-cluster", "topic": "alerts"}
    result = validate_options("kafka", base | options, known_clusters=CLUSTERS)
    assert isinstance(result, KafkaHandlerOptions)
    return result


@pytest.mark.parametrize(
    ("options", "algorithm"),
    [
        ({}, PartitionAlgorithm.CRC32),
        ({"partitionAlgorithm": ""}, PartitionAlgorithm.CRC32),
        ({"partitionAlgorithm": "fnv-1a"}, PartitionAlgorithm.FNV1A),
        ({"partitionHashAlgorithm": "murmur2"}, PartitionAlgorithm.MURMUR2),
        ({"PartitionAlgorithm": "murmur2"}, PartitionAlgorithm.MURMUR2),
        ({"partitionhashalgorithm": "fnv-1a"}, PartitionAlgorithm.FNV1A),
    ],
)
def test_partition_algorithm_spellings(
    options: dict[str, Any], algorithm: PartitionAlgorithm
) -> None:
    assert _kafka(**options).partition_algorithm is algorithm


def test_option_keys_match_case_insensitively() -> None:
    options = validate_options(
        "kafka",
        {"Cluster": "kafka-cluster", "TOPIC": "t", "disablepartitionbyid": True},
        known_clusters=CLUSTERS,
    )
    assert isinstance(options, KafkaHandlerOptions)
    assert options.partition_by_id is False


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"partitionAlgorithm": "murmur3"},
            "h.yaml: options.partitionAlgorithm: invalid partition algorithm: 'murmur3' "
            "(expected one of crc32, murmur2, fnv-1a)",
        ),
        (
            {"cluster": "nope"},
            "h.yaml: options.cluster: unknown cluster 'nope' "
            "(known: infra-monitoring, kafka-cluster)",
        ),
        ({"topic": ""}, "h.yaml: options.topic: topic must not be empty (got '')"),
        (
            {"disablePartitionById": "yes"},
            "h.yaml: options.disablePartitionById: Input should be a valid boolean (got 'yes')",
        ),
        ({"partition": 3}, "h.yaml: options.partition: unknown option (value 3)"),
        (
            {"template": "{{ .Message "},
            "h.yaml: options.template: template: template:1:13: unclosed action "
            "(got '{{ .Message ')",
        ),
        (
            {"Topic": "again"},
            "h.yaml: options: option 'Topic' given twice (also as 'topic')",
        ),
        (
            {"partitionAlgorithm": "crc32", "partitionHashAlgorithm": "fnv-1a"},
            "h.yaml: options: option 'partitionHashAlgorithm' given twice "
            "(also as 'partitionAlgorithm')",
        ),
    ],
)
def test_kafka_option_errors_name_field_and_value(options: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"cluster": "kafka-cluster", "topic": "alerts"}
    with pytest.raises(HandlerSpecError) as exc:
        validate_options("kafka", base | options, source="h.yaml", known_clusters=CLUSTERS)
    assert _errors(exc).startswith(message)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(HandlerSpecError) as exc:
        validate_options(
            "kafka",
            {"cluster": "x", "topic": "", "partitionAlgorithm": "md5"},
            known_clusters=CLUSTERS,
        )
    assert len(exc.value.problems) == 3


def test_cluster_check_needs_the_known_set() -> None:
    options = validate_options("kafka", {"cluster": "anything", "topic": "t"})
    assert isinstance(options, KafkaHandlerOptions)
    with pytest.raises(HandlerSpecError, match="none configured"):
        validate_options("kafka", {"cluster": "anything", "topic": "t"}, known_clusters=set())


# ---------------------------------------------------------------------------------------------
# Other kinds


def test_log_options() -> None:
    text = "id: l\ntopic: cpu\nkind: log\noptions:\n  path: /var/log/alerts.log\n  mode: 0644\n"
    options = parse_handler_file(text, "log.yaml").options
    assert options == LogHandlerOptions(path="/var/log/alerts.log", mode=0o644)
    default = validate_options("log", {"path": "/tmp/a.log"})
    assert isinstance(default, LogHandlerOptions)
    assert default.mode == 0o600


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"path": "alerts.log"}, "log path must be absolute: alerts.log is not absolute"),
        ({"path": "/a.log", "mode": 0o444}, "invalid file mode 0o444, must be user writable"),
        ({"path": "/a.log", "mode": "0644"}, "Input should be a valid integer"),
    ],
)
def test_log_option_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(HandlerSpecError, match=message):
        validate_options("log", options)


def test_post_options() -> None:
    options = validate_options(
        "post",
        {
            "url": "http://alerts.example/{{ .ID }}",
            "headers": {"Authorization": "Bearer x"},
            "capture-response": True,
            "timeout": "10s",
            "skip-ssl-verification": True,
        },
    )
    assert options == PostHandlerOptions(
        url="http://alerts.example/{{ .ID }}",
        headers={"Authorization": "Bearer x"},
        capture_response=True,
        timeout=timedelta(seconds=10),
        skip_ssl_verification=True,
    )


def test_post_timeout_as_integer_nanoseconds() -> None:
    options = validate_options("post", {"url": "http://x", "timeout": 1_500_000_000})
    assert isinstance(options, PostHandlerOptions)
    assert options.timeout == timedelta(seconds=1.5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "An appropriately formatted url must be specified"),
        ({"endpoint": "example"}, "unknown post endpoint 'example'"),
        ({"url": "http://x/{{ .ID"}, "unclosed action"),
        ({"url": "http://x", "timeout": "soon"}, "not a duration"),
        ({"url": "http://x", "timeout": -1}, "timeout must not be negative"),
    ],
)
def test_post_option_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(HandlerSpecError, match=message):
        validate_options("post", options)


def test_post_endpoint_from_configuration() -> None:
    options = validate_options("post", {"endpoint": "example"}, post_endpoints={"example"})
    assert isinstance(options, PostHandlerOptions)
    assert options.endpoint == "example"


def test_exec_options() -> None:
    options = validate_options("exec", {"prog": "/usr/bin/notify", "args": ["-c", "ops"]})
    assert options == ExecHandlerOptions(prog="/usr/bin/notify", args=["-c", "ops"])
    with pytest.raises(HandlerSpecError, match="prog must not be empty"):
        validate_options("exec", {"prog": ""})
    with pytest.raises(HandlerSpecError, match=r"options\.args\.0: Input should be a valid string"):
        validate_options("exec", {"prog": "/bin/x", "args": [1]})


@pytest.mark.parametrize("address", ["localhost:9000", "10.0.0.1:1", "[::1]:514"])
def test_tcp_options(address: str) -> None:
    assert validate_options("tcp", {"address": address}) == TcpHandlerOptions(address=address)


@pytest.mark.parametrize("address", ["localhost", ":9000", "host:port", "host:70000"])
def test_tcp_option_errors(address: str) -> None:
    with pytest.raises(HandlerSpecError, match="address must be host:port"):
        validate_options("tcp", {"address": address})


# ---------------------------------------------------------------------------------------------
# The spec itself


def _spec(**fields: Any) -> dict[str, Any]:
    return {"id": "h", "topic": "cpu", "kind": "log", "options": {"path": "/a.log"}} | fields


@pytest.mark.parametrize("handler_id", ["kafka-cpu-alert", "a.b_c-1", "alerte-été", "ハンドラ"])
def test_valid_ids(handler_id: str) -> None:
    assert validate_handler(_spec(id=handler_id)).id == handler_id


@pytest.mark.parametrize("handler_id", ["", "a b", "a:b", "a/b", "٣"])
def test_invalid_ids(handler_id: str) -> None:
    with pytest.raises(HandlerSpecError, match="handler ID must contain only letters"):
        validate_handler(_spec(id=handler_id))


def test_topic_may_contain_colons() -> None:
    assert validate_handler(_spec(topic="main:cpu_alert:alert2")).topic == "main:cpu_alert:alert2"
    with pytest.raises(HandlerSpecError, match="topic must contain only letters"):
        validate_handler(_spec(topic="cpu alerts"))


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("", "handler Kind must not be empty"),
        ("slack", "unsupported handler kind 'slack' (supported: exec, kafka, log, post, tcp)"),
    ],
)
def test_kind_errors(kind: str, message: str) -> None:
    with pytest.raises(HandlerSpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_handler(_spec(kind=kind))


def test_missing_fields_and_unknown_keys() -> None:
    with pytest.raises(HandlerSpecError) as exc:
        validate_handler({"topic": "cpu", "kind": "log", "extra": 1}, source="x.json")
    assert exc.value.problems == [
        "id: required option is missing",
        "extra: unknown option (value 1)",
    ]


def test_null_match_and_options_mean_empty() -> None:
    with pytest.raises(HandlerSpecError, match=r"options\.path: required option is missing"):
        validate_handler(_spec(options=None, match=None))
    handler = validate_handler(_spec(match=None))
    assert handler.spec.match == ""


def test_topic_from_the_api_path_overrides_the_body() -> None:
    handler = validate_handler(_spec(topic="ignored"), topic="cpu")
    assert handler.topic == "cpu"


def test_to_dict_uses_kapacitors_field_order() -> None:
    spec = validate_handler(_spec(match="\"host\" == 'a'")).spec
    assert list(spec.to_dict()) == ["id", "topic", "kind", "options", "match"]
    assert spec.to_dict()["options"] == {"path": "/a.log"}


def test_json_handler_file() -> None:
    text = (
        '{"id": "k", "topic": "cpu", "kind": "kafka", "match": "level() >= WARNING",'
        ' "options": {"cluster": "kafka-cluster", "topic": "t", "disablePartitionById": true}}'
    )
    handler = parse_handler_file(text, "handler.json", known_clusters=CLUSTERS)
    assert handler.spec.match == "level() >= WARNING"
    assert isinstance(handler.options, KafkaHandlerOptions)
    assert handler.options.partition_by_id is False


@pytest.mark.parametrize(
    ("text", "filename", "message"),
    [
        ("id: x", "handler.txt", "handler.txt: bad file extension '.txt'"),
        ("id: [", "handler.yaml", "handler.yaml: cannot parse YAML"),
        ("{", "handler.json", "handler.json: cannot parse JSON"),
        ("- a\n- b\n", "handler.yaml", "handler.yaml: expected a mapping with id, topic, kind"),
    ],
)
def test_file_level_errors(text: str, filename: str, message: str) -> None:
    with pytest.raises(HandlerSpecError) as exc:
        parse_handler_file(text, filename)
    assert _errors(exc).startswith(message)
