from __future__ import annotations

import json
import tomllib
from datetime import timedelta

import pytest
from pydantic import BaseModel, Field, ValidationError

from kafkaops.config.kafka import KafkaCluster
from kafkaops.config.loader import ConfigError, validate
from kafkaops.relay.config import (
    RelayConfig,
    RelayList,
    TopicSettings,
    apply_flags,
    check_relay_clusters,
    convert_kaf_relay,
    load_kaf_relay,
    looks_like_kaf_relay,
    parse_mode_flag,
    parse_topic_flag,
)
from kafkaops.relay.topicmap import TopicRoute

MINIMAL = {"sources": "dc1", "target": "dr", "topics": ["orders:orders-copy"]}


class Root(BaseModel):
    """Stands in for the root config: `relay` is one table or an array of tables."""

    relay: RelayList = Field(default_factory=list)


def problems(data: dict) -> str:
    with pytest.raises(ConfigError) as err:
        validate(Root, data, "kafkaops.toml")
    return str(err.value)


# --- our section ---------------------------------------------------------------------------------


def test_minimal_relay_gets_safe_defaults():
    relay = RelayConfig.model_validate(MINIMAL)
    assert relay.sources == ["dc1"]
    assert relay.mode == "single"
    assert relay.delivery == "at-least-once"
    assert relay.producer.commit_ack_type == "cluster"
    assert relay.producer.enable_idempotency is True
    assert relay.producer.flush_frequency == timedelta(milliseconds=20)
    assert relay.source_pool.max_retries == -1
    assert relay.effective_transactional_id == "kafkaops-relay-relay"
    assert relay.topic_map().routes == (TopicRoute("orders", "orders-copy"),)
    assert relay.clusters() == ["dc1", "dr"]


def test_full_relay_section_from_toml():
    doc = tomllib.loads(
        """
        [[relay]]
        name = "orders-dr"
        mode = "failover"
        sources = ["dc1", "dc2"]
        target = "dr"
        delivery = "exactly-once"
        stop_at_end = true
        timestamp_skew = "2s"

        [[relay.topics]]
        source = "orders"
        target = "orders"
        partition = "key-hash"

        [[relay.topics]]
        source = "audit"
        target = "audit-all"
        partition = 0

        [relay.producer]
        compression = "zstd"
        flush_frequency = "50ms"
        buffer_size = 5000

        [relay.source_pool]
        healthcheck_interval = "1s"
        offset_lag_threshold = 0

        [relay.filters.only-prod]
        path = "header-match"
        config = { name = "env", value = "prod" }
        """
    )
    (relay,) = Root.model_validate(doc).relay
    assert relay.mode == "failover"
    assert relay.timestamp_skew == timedelta(seconds=2)
    assert [t.route() for t in relay.topics] == [
        TopicRoute("orders", "orders", "key-hash"),
        TopicRoute("audit", "audit-all", 0),
    ]
    assert relay.producer.compression == "zstd"
    assert relay.source_pool.offset_lag_threshold == 0
    assert json.loads(relay.filters["only-prod"].config) == {"name": "env", "value": "prod"}


def test_one_relay_table_or_several():
    assert len(Root.model_validate({"relay": MINIMAL}).relay) == 1
    two = [dict(MINIMAL, name="a"), dict(MINIMAL, name="b")]
    assert [r.name for r in Root.model_validate({"relay": two}).relay] == ["a", "b"]
    assert "two relays are named 'relay'" in problems({"relay": [MINIMAL, MINIMAL]})


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"mode": "both"}, "relay[0].mode: Input should be 'single' or 'failover' (got 'both')"),
        (
            {"sources": ["dc1", "dc2"]},
            "mode = 'single' reads one source, but sources = ['dc1', 'dc2']",
        ),
        ({"mode": "failover", "sources": ["a", "a"]}, "sources lists a cluster twice"),
        ({"topics": ["orders"]}, "topic 'orders': expected source:target"),
        ({"topics": ["a:b", "a:c"]}, "source topic 'a' is mapped twice"),
        ({"topics": []}, "relay[0].topics: List should have at least 1 item"),
        (
            {"topics": [{"source": "a", "target": "b", "partition": -1}]},
            "relay[0].topics[0].partition",
        ),
        ({"topics": [{"source": "a b", "target": "b"}]}, "'a b' is not a valid Kafka topic name"),
        ({"target": "dc1", "topics": ["t:t"]}, "would copy its own output forever"),
        ({"delivery": "once"}, "relay[0].delivery"),
        ({"name": "my relay"}, "name 'my relay': use letters"),
        (
            {"producer": {"commit_ack_type": "leader"}},
            "needs producer.commit_ack_type = 'cluster' (got 'leader')",
        ),
        ({"producer": {"compression": "brotli"}}, "relay[0].producer.compression"),
        ({"producer": {"flush_frequency": "0s"}}, "flush_frequency: must be positive (got '0s')"),
        ({"producer": {"max_retries": -2}}, "relay[0].producer.max_retries"),
        (
            {"producer": {"backoff_min": "20s"}},
            "producer.backoff_min (20s) is larger than producer.backoff_max (10s)",
        ),
        ({"source_pool": {"request_timeout": "soon"}}, "not a duration: 'soon'"),
        (
            {"source_pool": {"offset_lag_threshold": -5}},
            "relay[0].source_pool.offset_lag_threshold",
        ),
        (
            {
                "delivery": "exactly-once",
                "producer": {"enable_idempotency": False, "commit_ack_type": "tcp"},
            },
            "exactly-once' needs producer.enable_idempotency",
        ),
        ({"filters": {"f": {"config": "x"}}}, "relay[0].filters.f.path: required key is missing"),
        ({"filters": {"f g": {"path": "x"}}}, "filter id 'f g'"),
        ({"typo_key": 1}, "relay[0].typo_key: unknown key"),
    ],
)
def test_errors_name_the_key_and_the_value(change, expected):
    assert expected in problems({"relay": [{**MINIMAL, **change}]})


def test_cluster_ids_must_be_defined_kafka_sections():
    relays = Root.model_validate(
        {"relay": [dict(MINIMAL, mode="failover", sources=["dc1", "dc9"])]}
    ).relay
    with pytest.raises(
        ValueError,
        match=r"relay\[0\].sources\[1\]: unknown cluster 'dc9'; \[\[kafka\]\] ids are 'dc1', 'dr'",
    ):
        check_relay_clusters(relays, {"dc1", "dr"})
    with pytest.raises(ValueError, match=r"relay\[0\].target: unknown cluster 'dr'"):
        check_relay_clusters(relays, {"dc1", "dc9"})
    check_relay_clusters(relays, {"dc1", "dc9", "dr"})


# --- kaf-relay flags ---------------------------------------------------------------------------


def test_mode_flag():
    assert parse_mode_flag("failover") == "failover"
    with pytest.raises(ValueError, match="--mode 'active': expected single or failover"):
        parse_mode_flag("active")


def test_topic_flag():
    assert parse_topic_flag("a:b:2") == TopicSettings(source="a", target="b", partition=2)
    with pytest.raises(ValueError, match="--topic topic 'a:b:c:d'"):
        parse_topic_flag("a:b:c:d")


def test_flags_override_the_config():
    relay = RelayConfig.model_validate(
        {**MINIMAL, "mode": "failover", "sources": ["dc1", "dc2"], "topics": ["a:A", "b:B"]}
    )
    out = apply_flags(relay, mode="single", stop_at_end=True, topics=["b:B2:1", "c:C"])
    assert (out.mode, out.sources, out.stop_at_end) == ("single", ["dc1"], True)
    assert [t.route().spec() for t in out.topics] == ["a:A", "b:B2:1", "c:C"]
    assert apply_flags(relay) == relay


# --- kaf-relay's config.toml ---------------------------------------------------------------------

KAF_RELAY = """
[app]
log_level = "debug"
metrics_server_addr = ":7081"

[[topics]]
events = "events-dr:1"
orders = "orders-dr"

[source_pool]
initial_offset = "start"
healthcheck_interval = "3s"
offset_lag_threshold = 1000
max_retries = -1
backoff_enable = true
backoff_min = "2s"
backoff_max = "10s"
request_timeout = "100ms"
randomize_initial = false

[[sources]]
name = "node1"
servers = ["10.0.0.1:9092", "10.0.0.2:9092"]
session_timeout = "6s"
enable_auth = true
sasl_mechanism = "SCRAM-SHA-512"
username = "relay"
password = "secret-1"
max_wait_time = "10ms"
max_failovers = -1
enable_tls = true
client_key_path = ""
client_cert_path = ""
ca_cert_path = "/etc/kafka/ca.pem"
enable_log = false

[[sources]]
name = "node2"
servers = ["10.1.0.1:9092"]
session_timeout = "6s"
enable_auth = false
sasl_mechanism = "PLAIN"
username = ""
password = ""
max_wait_time = "10ms"
max_failovers = -1
enable_tls = false
client_key_path = ""
client_cert_path = ""
ca_cert_path = ""
enable_log = false

[target]
name = "node3"
servers = ["10.2.0.1:9095"]
enable_log = false
enable_auth = true
sasl_mechanism = "PLAIN"
username = "writer"
password = "secret-2"
enable_idempotency = true
commit_ack_type = "cluster"
flush_frequency = "20ms"
session_timeout = "6s"
enable_tls = false
client_key_path = ""
client_cert_path = ""
ca_cert_path = ""
max_retries = -1
flush_batch_size = 1000
batch_size = 1000
buffer_size = 100000
max_message_bytes = 10000000
backoff_enable = true
backoff_min = "2s"
backoff_max = "10s"
request_timeout = "100ms"

[filters.test]
enabled = false
path = "test.bin"
config = '''
{"address": ["127.0.0.1:6379"]}
'''
"""


def test_kaf_relay_config_loads_unchanged_and_converts():
    assert looks_like_kaf_relay(tomllib.loads(KAF_RELAY))
    conv = convert_kaf_relay(load_kaf_relay(KAF_RELAY))
    assert conv.log_level == "debug"
    assert conv.metrics_server_addr == ":7081"
    assert conv.kafka == [
        {
            "id": "node1",
            "brokers": ["10.0.0.1:9092", "10.0.0.2:9092"],
            "timeout": "6s",
            "use-ssl": True,
            "insecure-skip-verify": False,
            "ssl-ca": "/etc/kafka/ca.pem",
            "sasl-username": "relay",
            "sasl-password": "secret-1",
            "sasl-mechanism": "SCRAM-SHA-512",
        },
        {
            "id": "node2",
            "brokers": ["10.1.0.1:9092"],
            "timeout": "6s",
            "use-ssl": False,
            "insecure-skip-verify": False,
        },
        {
            "id": "node3",
            "brokers": ["10.2.0.1:9095"],
            "timeout": "6s",
            "use-ssl": False,
            "insecure-skip-verify": False,
            "sasl-username": "writer",
            "sasl-password": "secret-2",
            "sasl-mechanism": "PLAIN",
        },
    ]
    for cluster in conv.kafka:
        KafkaCluster.model_validate(cluster)
    relay = conv.relay
    assert (relay.mode, relay.sources, relay.target) == ("single", ["node1"], "node3")
    assert relay.position_mapping == "offset", "kaf-relay assumes offset-identical sources"
    assert [t.route().spec() for t in relay.topics] == ["events:events-dr:1", "orders:orders-dr"]
    assert relay.producer.max_message_bytes == 10_000_000
    assert relay.producer.request_timeout == timedelta(milliseconds=100)
    assert relay.source_pool.backoff_enable is True
    assert relay.filters == {}, "a disabled filter is dropped"


def test_kaf_relay_failover_mode_flags():
    conv = convert_kaf_relay(
        load_kaf_relay(KAF_RELAY), mode="failover", stop_at_end=True, topics=["orders:o2:0"]
    )
    assert conv.relay.sources == ["node1", "node2"]
    assert conv.relay.stop_at_end is True
    assert conv.relay.topics[1].route() == TopicRoute("orders", "o2", 0)


def test_kaf_relay_gaps_are_filled_with_its_sample_values():
    cfg = load_kaf_relay(
        """
        [topics]
        a = "b"
        [[sources]]
        servers = ["s:9092"]
        [[sources]]
        servers = ["s2:9092"]
        [target]
        name = "node"
        servers = ["t:9092"]
        enable_backoff = true
        commit_ack_type = "default"
        compression = "lz4"
        """
    )
    conv = convert_kaf_relay(cfg, mode="failover")
    assert [c["id"] for c in conv.kafka] == ["source-1", "source-2", "node"]
    p = conv.relay.producer
    assert (p.enable_idempotency, p.commit_ack_type, p.compression, p.backoff_enable) == (
        False,
        "cluster",
        "lz4",
        True,
    )
    assert conv.relay.source_pool.healthcheck_interval == timedelta(seconds=3)
    assert conv.relay.source_pool.backoff_enable is False


def test_kaf_relay_duplicate_names_become_unique_ids():
    cfg = load_kaf_relay(
        """
        [[topics]]
        a = "b"
        [[sources]]
        name = "n"
        servers = ["s:9092"]
        [target]
        name = "n"
        servers = ["t:9092"]
        """
    )
    assert [c["id"] for c in convert_kaf_relay(cfg).kafka] == ["n", "n-2"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            '[target]\nservers = ["t:1"]\nenable_auth = true\nsasl_mechanism = "GSSAPI"',
            "sasl_mechanism must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512",
        ),
        ('[target]\nservers = ["t:1"]\ncompression = "brotli"', "compression"),
        ('[target]\nservers = ["t:1"]\ncommit_ack_type = "all"', "commit_ack_type"),
        ('[target]\nservers = ["t:1"]\nflush_frequency = "0s"', "must be positive"),
        ('[target]\nservers = ["t:1"]\nunknown = 1', "unknown"),
    ],
)
def test_kaf_relay_errors_name_key_and_value(change, expected):
    text = '[[topics]]\na = "b"\n[[sources]]\nservers = ["s:1"]\n' + change
    with pytest.raises(ValidationError, match=expected):
        load_kaf_relay(text)


def test_kaf_relay_bad_topic_partition_fails_at_load():
    with pytest.raises(ValidationError, match=r"topics.a = 'b:x': expected target_topic"):
        load_kaf_relay(
            '[[topics]]\na = "b:x"\n[[sources]]\nservers = ["s:1"]\n[target]\nservers = ["t:1"]'
        )


def test_kaf_relay_enabled_go_plugin_is_refused_with_the_fix():
    cfg = load_kaf_relay(KAF_RELAY.replace("enabled = false", "enabled = true"))
    with pytest.raises(ValueError, match=r"filters.test.path = 'test.bin': kaf-relay's Go plugins"):
        convert_kaf_relay(cfg)
    python = load_kaf_relay(
        KAF_RELAY.replace("enabled = false", "enabled = true").replace("test.bin", "value-regex")
    )
    assert convert_kaf_relay(python).relay.filters["test"].path == "value-regex"


def test_kaf_relay_without_topics_needs_a_topic_flag():
    cfg = load_kaf_relay('[[sources]]\nservers = ["s:1"]\n[target]\nservers = ["t:1"]')
    with pytest.raises(ValueError, match="no topics"):
        convert_kaf_relay(cfg)
    assert convert_kaf_relay(cfg, topics=["a:b"]).relay.topics[0].route() == TopicRoute("a", "b")


def test_our_config_is_not_mistaken_for_kaf_relay():
    assert not looks_like_kaf_relay({"kafka": [], "relay": MINIMAL})
