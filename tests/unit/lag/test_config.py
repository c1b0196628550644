from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from kafkaops.config.kafka import KafkaCluster
from kafkaops.lag.config import (
    KlgConfig,
    LagConfig,
    convert_kafka_lag_go,
    load_kafka_lag_go,
)
from kafkaops.lag.estimator import Policy
from kafkaops.lag.status import Rules

SEED_YAML = (Path(__file__).parent / "data" / "kafka_lag_go_seed_config.yaml").read_text()
"""The example config.yaml of Kafka Lag Go's README (seed 002), byte for byte."""

MINIMAL_KLG = """
kafka_clusters:
  - name: local
    brokers: ["127.0.0.1:9092"]
"""


def _error_text(exc_info: pytest.ExceptionInfo[ValidationError]) -> str:
    return str(exc_info.value)


# --- Kafka Lag Go's config.yaml -------------------------------------------------------------


def test_seed_example_loads_prometheus_keys() -> None:
    cfg = load_kafka_lag_go(SEED_YAML)
    assert cfg.prometheus_local.metrics_port == 9090
    assert cfg.prometheus_local.labels == {"env": "production", "service": "kafka-lag-go"}

    rw = cfg.prometheus_remote_write
    assert rw.enabled is True
    assert rw.url == "https://remote-prometheus-server.com/"
    assert rw.headers == {"X-Custom-Header": "myCustomHeaderValue"}
    assert rw.timeout == timedelta(seconds=30)
    assert rw.basic_auth.username == "myUsername"
    assert rw.basic_auth.password.get_secret_value() == "myPassword"
    assert rw.bearer_token.get_secret_value() == "myBearerToken"
    assert rw.tls_config.enabled is True
    assert rw.tls_config.cert_file == "/path/to/cert.pem"
    assert rw.tls_config.key_file == "/path/to/key.pem"
    assert rw.tls_config.ca_cert_file == "/path/to/ca_cert.pem"
    assert rw.tls_config.insecure_skip_verify is True


def test_seed_example_loads_kafka_cluster_keys() -> None:
    one, two = load_kafka_lag_go(SEED_YAML).kafka_clusters
    assert one.name == "kafka-cluster-1"
    assert one.brokers == ["broker1:9092", "broker2:9092"]
    assert one.client_request_timeout == timedelta(seconds=30)
    assert one.metadata_fetch_timeout == timedelta(seconds=5)
    assert (one.consumer_groups.whitelist, one.consumer_groups.blacklist) == (".*", "test.*")
    assert one.ssl.enabled is True
    assert one.ssl.client_certificate_file == "/path/to/cert.pem"
    assert one.ssl.client_key_file == "/path/to/key.pem"
    assert one.ssl.insecure_skip_verify is True
    assert one.sasl.enabled is True
    assert one.sasl.mechanism == "SCRAM-SHA-512"
    assert one.sasl.user == "kafkaUser1"
    assert one.sasl.password.get_secret_value() == "kafkaPassword1"
    assert two.client_request_timeout == timedelta(seconds=40)
    assert two.metadata_fetch_timeout == timedelta(seconds=6)
    assert (two.consumer_groups.whitelist, two.consumer_groups.blacklist) == (
        "important.*",
        "test2.*",
    )
    assert two.ssl.enabled is False
    assert two.sasl.enabled is False


def test_seed_example_loads_storage_and_app_keys() -> None:
    cfg = load_kafka_lag_go(SEED_YAML)
    assert cfg.storage is not None
    assert cfg.storage.type == "redis"
    redis = cfg.storage.redis
    assert (redis.address, redis.port) == ("redis-server", 6379)
    assert redis.client_request_timeout == timedelta(seconds=60)
    assert redis.client_idle_timeout == timedelta(minutes=5)
    assert redis.retention_ttl_seconds == 7200
    assert redis.auth.enabled is True
    assert redis.auth.username == "redisUser"
    assert redis.auth.password.get_secret_value() == "redisPassword"
    assert redis.ssl.enabled is True
    assert redis.ssl.insecure_skip_verify is True

    assert cfg.app.iteration_interval == timedelta(seconds=30)
    assert cfg.app.num_workers == 10
    assert cfg.app.log_level == "info"
    assert cfg.app.health_check_port == 8080
    assert cfg.app.health_check_path == "/healthz"


def test_seed_example_converts_to_our_sections() -> None:
    conv = convert_kafka_lag_go(load_kafka_lag_go(SEED_YAML))
    lag = conv.lag

    assert lag.iteration_interval == timedelta(seconds=30)
    assert lag.num_workers == 10
    assert lag.labels == {"env": "production", "service": "kafka-lag-go"}
    assert lag.sharding is True
    assert [c.name for c in lag.clusters] == ["kafka-cluster-1", "kafka-cluster-2"]
    assert lag.storage.type == "redis"
    assert lag.storage.retention_ttl_seconds == 7200
    assert lag.storage.redis.address == "redis-server"
    assert lag.storage.redis.auth.password.get_secret_value() == "redisPassword"
    assert lag.storage.redis.ssl.insecure_skip_verify is True
    rw = lag.prometheus_remote_write
    assert rw.enabled is True
    assert rw.bearer_token.get_secret_value() == "myBearerToken"
    assert rw.basic_auth.username == "", "the bearer token wins, as in Kafka Lag Go's sender"
    assert rw.headers == {"X-Custom-Header": "myCustomHeaderValue"}
    assert rw.tls_config.ca_cert_file == "/path/to/ca_cert.pem"

    assert conv.kafka == [
        {
            "id": "kafka-cluster-1",
            "brokers": ["broker1:9092", "broker2:9092"],
            "timeout": "30s",
            "use-ssl": True,
            "insecure-skip-verify": True,
            "ssl-cert": "/path/to/cert.pem",
            "ssl-key": "/path/to/key.pem",
            "sasl-username": "kafkaUser1",
            "sasl-password": "kafkaPassword1",
            "sasl-mechanism": "SCRAM-SHA-512",
        },
        {
            "id": "kafka-cluster-2",
            "brokers": ["broker3:9092", "broker4:9092"],
            "timeout": "40s",
            "use-ssl": False,
            "insecure-skip-verify": False,
        },
    ]
    assert (conv.log_level, conv.metrics_port) == ("info", 9090)
    assert (conv.health_check_port, conv.health_check_path) == (8080, "/healthz")


def test_converted_clusters_load_as_kafka_sections() -> None:
    conv = convert_kafka_lag_go(load_kafka_lag_go(SEED_YAML))
    clusters = [KafkaCluster.model_validate(section) for section in conv.kafka]
    assert clusters[0].use_ssl is True
    assert clusters[0].sasl_mechanism == "SCRAM-SHA-512"
    assert clusters[0].sasl_password.get_secret_value() == "kafkaPassword1"
    assert clusters[1].timeout == timedelta(seconds=40)


def test_converted_section_round_trips_through_its_own_dump() -> None:
    lag = convert_kafka_lag_go(load_kafka_lag_go(SEED_YAML)).lag
    again = LagConfig.model_validate(lag.model_dump())
    assert again.storage.redis.client_idle_timeout == timedelta(minutes=5)
    assert again.clusters == lag.clusters


def test_seed_filters_apply_whitelist_and_blacklist() -> None:
    lag = convert_kafka_lag_go(load_kafka_lag_go(SEED_YAML)).lag
    one = lag.group_filter("kafka-cluster-1")
    two = lag.group_filter("kafka-cluster-2")
    assert one is not None and two is not None
    assert one.admits("orders")
    assert not one.admits("test-orders"), "blacklist applies even with a whitelist"
    assert two.admits("important-billing")
    assert not two.admits("billing"), "whitelist must match"
    assert two.admits("x-important"), "patterns match anywhere, as Go's MatchString"
    assert not two.admits("important-test2"), "blacklist beats whitelist"


def test_minimal_config_takes_kafka_lag_go_defaults() -> None:
    cfg = load_kafka_lag_go(MINIMAL_KLG)
    conv = convert_kafka_lag_go(cfg)
    assert cfg.prometheus_local.metrics_port == 9090
    assert cfg.prometheus_remote_write.enabled is False
    assert cfg.app.iteration_interval == timedelta(seconds=30)
    assert cfg.app.health_check_path == "/healthz"
    assert cfg.kafka_clusters[0].client_request_timeout == timedelta(seconds=30)
    assert conv.lag.storage.type == "memory", "no storage section: in-memory history"
    assert conv.lag.sharding is False
    assert conv.kafka == [
        {
            "id": "local",
            "brokers": ["127.0.0.1:9092"],
            "timeout": "30s",
            "use-ssl": False,
            "insecure-skip-verify": False,
        }
    ]


def test_storage_section_without_type_means_redis() -> None:
    cfg = load_kafka_lag_go(MINIMAL_KLG + "storage:\n  redis:\n    address: r1\n")
    lag = convert_kafka_lag_go(cfg).lag
    assert lag.storage.type == "redis"
    assert lag.storage.redis.address == "r1"
    assert lag.storage.retention_ttl_seconds == 7200


def test_ca_cert_file_of_kafka_ssl_becomes_ssl_ca() -> None:
    text = MINIMAL_KLG + (
        "    ssl:\n      enabled: true\n      ca_cert_file: /ca.pem\n"
        "    sasl:\n      enabled: true\n      mechanism: scram-sha-256\n"
        "      user: u\n      password: p\n"
    )
    section = convert_kafka_lag_go(load_kafka_lag_go(text)).kafka[0]
    assert section["ssl-ca"] == "/ca.pem"
    assert "ssl-cert" not in section
    assert section["sasl-mechanism"] == "SCRAM-SHA-256"


def test_invalid_regex_names_key_and_regex() -> None:
    text = SEED_YAML.replace('whitelist: "important.*"', 'whitelist: "important(["')
    with pytest.raises(ValidationError) as exc_info:
        load_kafka_lag_go(text)
    message = _error_text(exc_info)
    assert "kafka_clusters.1.consumer_groups.whitelist" in message
    assert "important([" in message


def test_unknown_key_is_an_error_naming_it() -> None:
    with pytest.raises(ValidationError) as exc_info:
        load_kafka_lag_go(MINIMAL_KLG + "app:\n  iteration_intervall: 10s\n")
    assert "app.iteration_intervall" in _error_text(exc_info)


def test_bad_duration_names_field_and_value() -> None:
    with pytest.raises(ValidationError) as exc_info:
        load_kafka_lag_go(MINIMAL_KLG + "app:\n  iteration_interval: soon\n")
    message = _error_text(exc_info)
    assert "app.iteration_interval" in message
    assert "soon" in message


@pytest.mark.parametrize(
    ("extra", "where", "what"),
    [
        ("app:\n  log_level: chatty\n", "app.log_level", "chatty"),
        ("app:\n  health_check_path: healthz\n", "app.health_check_path", "healthz"),
        ("app:\n  num_workers: 0\n", "app.num_workers", "0"),
        ("prometheus_local:\n  metrics_port: 70000\n", "metrics_port", "70000"),
        ("prometheus_remote_write:\n  enabled: true\n", "prometheus_remote_write", "url"),
        (
            "prometheus_remote_write:\n  url: ftp://x\n",
            "prometheus_remote_write.url",
            "ftp://x",
        ),
        ("storage:\n  type: mysql\n", "storage.type", "mysql"),
        (
            "storage:\n  redis:\n    auth:\n      enabled: true\n",
            "storage.redis.auth",
            "password",
        ),
    ],
)
def test_invalid_values_are_reported_with_their_place(extra: str, where: str, what: str) -> None:
    with pytest.raises(ValidationError) as exc_info:
        load_kafka_lag_go(MINIMAL_KLG + extra)
    message = _error_text(exc_info)
    assert where in message
    assert what in message


def test_sasl_needs_a_known_mechanism_and_credentials() -> None:
    base = MINIMAL_KLG + "    sasl:\n      enabled: true\n"
    with pytest.raises(ValidationError, match="GSSAPI"):
        load_kafka_lag_go(base + "      mechanism: GSSAPI\n      user: u\n      password: p\n")
    with pytest.raises(ValidationError, match="user and password"):
        load_kafka_lag_go(base + "      mechanism: PLAIN\n      user: u\n")


def test_cluster_names_must_be_unique() -> None:
    text = MINIMAL_KLG + '  - name: local\n    brokers: ["h:1"]\n'
    with pytest.raises(ValidationError, match="'local' is used twice"):
        load_kafka_lag_go(text)


def test_yaml_that_is_not_a_mapping_is_rejected() -> None:
    with pytest.raises(ValueError, match="YAML mapping"):
        load_kafka_lag_go("- just\n- a list\n")
    with pytest.raises(yaml.YAMLError):
        load_kafka_lag_go("kafka_clusters: [\n")


def test_secrets_stay_out_of_repr() -> None:
    cfg = load_kafka_lag_go(SEED_YAML)
    text = repr(cfg)
    for secret in ("kafkaPassword1", "redisPassword", "myPassword", "myBearerToken"):
        assert secret not in text


def test_klg_model_accepts_both_auth_methods() -> None:
    cfg = KlgConfig.model_validate(yaml.safe_load(SEED_YAML))
    assert cfg.prometheus_remote_write.basic_auth.username == "myUsername"


# --- our [lag] section ----------------------------------------------------------------------

OUR_TOML = """
[lag]
iteration_interval = "10s"
num_workers = 4
lag_in_seconds_source = "record-timestamp"
max_record_reads = 500
labels = { env = "staging" }
sharding = true

[[lag.clusters]]
name = "main"
consumer_groups = { whitelist = "^orders", blacklist = "-test$" }

[[lag.clusters]]
name = "audit"

[lag.storage]
type = "redis"
max_points = 60
retention_ttl_seconds = 3600

[lag.storage.redis]
address = "redis.local"
port = 6380
client_request_timeout = "2s"
auth = { enabled = true, username = "lag", password = "pw" }
ssl = { enabled = true, ca_cert_file = "/ca.pem" }

[lag.status]
intervals = 5
min_distance = "1s"
allowed_lag = 1
minimum_complete = 0.5

[lag.prometheus_remote_write]
enabled = true
url = "http://prom:9090/api/v1/write"
headers = { X-Scope-OrgID = "team-a" }
timeout = "5s"
basic_auth = { username = "u", password = "p" }
tls_config = { enabled = true, cert_file = "/c.pem", key_file = "/k.pem" }
"""


def test_our_section_from_toml() -> None:
    lag = LagConfig.model_validate(tomllib.loads(OUR_TOML)["lag"])
    assert lag.iteration_interval == timedelta(seconds=10)
    assert lag.num_workers == 4
    assert lag.lag_in_seconds_source is Policy.RECORD_TIMESTAMP
    assert lag.max_record_reads == 500
    assert lag.labels == {"env": "staging"}
    assert lag.sharding is True
    assert lag.storage.type == "redis"
    assert lag.storage.max_points == 60
    assert lag.storage.retention_ttl_seconds == 3600
    assert lag.storage.redis.port == 6380
    assert lag.storage.redis.client_request_timeout == timedelta(seconds=2)
    assert lag.storage.redis.auth.username == "lag"
    assert lag.storage.redis.ssl.ca_cert_file == "/ca.pem"
    assert lag.status.rules() == Rules(
        intervals=5, min_distance_ms=1000, allowed_lag=1, minimum_complete=0.5
    )
    rw = lag.prometheus_remote_write
    assert rw.url == "http://prom:9090/api/v1/write"
    assert rw.headers == {"X-Scope-OrgID": "team-a"}
    assert rw.timeout == timedelta(seconds=5)
    assert rw.basic_auth.password.get_secret_value() == "p"
    assert rw.tls_config.cert_file == "/c.pem"

    main = lag.group_filter("main")
    assert main is not None
    assert main.admits("orders-eu")
    assert not main.admits("orders-eu-test")
    assert not main.admits("eu-orders")
    audit = lag.group_filter("audit")
    assert audit is not None and audit.admits("anything")
    assert lag.group_filter("other") is None


def test_our_section_defaults() -> None:
    lag = LagConfig()
    assert lag.iteration_interval == timedelta(seconds=30)
    assert lag.num_workers == 10
    assert lag.lag_in_seconds_source is Policy.AUTO
    assert lag.max_record_reads == 2000
    assert lag.sharding is False
    assert lag.storage.type == "memory"
    assert lag.storage.max_points == 240
    assert lag.storage.retention_ttl_seconds == 7200
    assert lag.status.rules() == Rules()
    assert lag.prometheus_remote_write.enabled is False
    every = lag.group_filter("any-cluster")
    assert every is not None and every.admits("any-group")


def test_unknown_cluster_reference_is_named() -> None:
    lag = LagConfig.model_validate(tomllib.loads(OUR_TOML)["lag"])
    lag.check_clusters({"main", "audit", "spare"})
    with pytest.raises(ValueError, match="unknown cluster id\\(s\\) 'audit'") as exc_info:
        lag.check_clusters({"main"})
    assert "'main'" in str(exc_info.value)


def test_empty_cluster_list_needs_no_reference_check() -> None:
    LagConfig().check_clusters(set())


@pytest.mark.parametrize(
    ("patch", "where", "what"),
    [
        ({"iteration_interval": "0s"}, "iteration_interval", "0s"),
        ({"iteration_interval": "later"}, "iteration_interval", "later"),
        ({"lag_in_seconds_source": "guess"}, "lag_in_seconds_source", "guess"),
        ({"max_record_reads": -1}, "max_record_reads", "-1"),
        ({"labels": {"bad-name": "x"}}, "labels", "bad-name"),
        ({"labels": {"__meta": "x"}}, "labels", "__meta"),
        ({"labels": {"topic": "x"}}, "labels", "topic"),
        ({"labels": {"env": ""}}, "labels", "env"),
        (
            {"clusters": [{"name": "a"}, {"name": "a"}]},
            "clusters",
            "'a' is listed twice",
        ),
        (
            {"clusters": [{"name": "a", "consumer_groups": {"blacklist": "*x"}}]},
            "clusters.0.consumer_groups.blacklist",
            "*x",
        ),
        ({"storage": {"max_points": 1}}, "storage.max_points", "1"),
        ({"status": {"minimum_complete": 2}}, "status.minimum_complete", "2"),
        ({"status": {"min_distance": "-1s"}}, "status.min_distance", "-1s"),
        (
            {"prometheus_remote_write": {"url": "http://x", "timeout": "0s"}},
            "prometheus_remote_write.timeout",
            "0s",
        ),
        (
            {
                "prometheus_remote_write": {
                    "url": "http://x",
                    "basic_auth": {"username": "u"},
                    "bearer_token": "t",
                }
            },
            "prometheus_remote_write",
            "not both",
        ),
        (
            {"prometheus_remote_write": {"url": "http://x", "headers": {"Content-Type": "x"}}},
            "prometheus_remote_write.headers",
            "Content-Type",
        ),
        (
            {
                "prometheus_remote_write": {
                    "url": "http://x",
                    "bearer_token": "t",
                    "headers": {"authorization": "Bearer y"},
                }
            },
            "prometheus_remote_write",
            "Authorization",
        ),
        (
            {"prometheus_remote_write": {"tls_config": {"cert_file": "/c.pem"}}},
            "prometheus_remote_write.tls_config",
            "/c.pem",
        ),
        (
            {"storage": {"redis": {"ssl": {"client_key_file": "/k.pem"}}}},
            "storage.redis.ssl",
            "/k.pem",
        ),
        ({"shards": 2}, "shards", "2"),
    ],
)
def test_our_section_reports_bad_values_with_their_place(
    patch: dict, where: str, what: str
) -> None:
    with pytest.raises(ValidationError) as exc_info:
        LagConfig.model_validate(patch)
    message = _error_text(exc_info)
    assert where in message
    assert what in message
