"""`kafkaops relay --config FILE`: our config with kaf-relay's flags, or kaf-relay's own file."""

from __future__ import annotations

from pathlib import Path

import pytest

from kafkaops.cli.errors import UserError
from kafkaops.cli.relay import load_relay_config
from kafkaops.config import ConfigError

OURS = """
[[kafka]]
id = "dc1"
brokers = ["dc1:9092"]
[[kafka]]
id = "dc2"
brokers = ["dc2:9092"]
[[kafka]]
id = "dr"
brokers = ["dr:9092"]

[[relay]]
name = "orders"
mode = "failover"
sources = ["dc1", "dc2"]
target = "dr"
topics = ["orders:orders"]
"""

KAF_RELAY = """
[app]
log_level = "debug"
metrics_server_addr = ":7081"

[[topics]]
orders = "orders-copy"
payments = "payments:2"

[source_pool]
healthcheck_interval = "3s"
offset_lag_threshold = 500

[[sources]]
name = "node1"
servers = ["n1:9092"]

[[sources]]
name = "node2"
servers = ["n2:9092"]
enable_auth = true
sasl_mechanism = "SCRAM-SHA-512"
username = "u"
password = "p"

[target]
servers = ["t:9092"]
enable_idempotency = true
commit_ack_type = "cluster"
flush_batch_size = 5000
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_our_config_with_kaf_relay_flags(tmp_path: Path) -> None:
    path = write(tmp_path, OURS)
    config = load_relay_config(path, mode="single", stop_at_end=True, topics=("orders:orders-2:1",))
    (relay,) = config.relay
    assert relay.mode == "single"
    assert relay.sources == ["dc1"]  # single keeps the first source, as kaf-relay does
    assert relay.stop_at_end
    assert [t.route().spec() for t in relay.topics] == ["orders:orders-2:1"]
    unchanged = load_relay_config(path).relay[0]
    assert unchanged.mode == "failover" and not unchanged.stop_at_end


def test_a_kaf_relay_config_toml_is_taken_unchanged(tmp_path: Path) -> None:
    config = load_relay_config(write(tmp_path, KAF_RELAY), mode="failover")
    (relay,) = config.relay
    assert relay.mode == "failover"
    assert relay.sources == ["node1", "node2"]
    assert relay.position_mapping == "offset"  # kaf-relay's sources are offset-identical
    assert relay.source_pool.offset_lag_threshold == 500
    assert relay.producer.flush_batch_size == 5000
    assert {t.source: (t.target, t.partition) for t in relay.topics} == {
        "orders": ("orders-copy", "same"),
        "payments": ("payments", 2),
    }
    secured = config.cluster("node2")
    assert secured.sasl_mechanism == "SCRAM-SHA-512"
    assert secured.sasl_password.get_secret_value() == "p"
    assert config.http.port == 7081
    assert config.logging.level == "DEBUG"
    assert load_relay_config(write(tmp_path, KAF_RELAY)).relay[0].sources == ["node1"]


def test_kaf_relay_go_plugin_filters_are_refused_by_name(tmp_path: Path) -> None:
    text = KAF_RELAY + '\n[filters.test]\nenabled = true\npath = "test.bin"\nconfig = "x"\n'
    with pytest.raises(ConfigError, match=r"filters.test.path = 'test.bin'.*Go plugins"):
        load_relay_config(write(tmp_path, text))


def test_flags_need_a_name_when_the_file_has_several_relays(tmp_path: Path) -> None:
    text = OURS + '\n[[relay]]\nname = "other"\nsources = ["dc2"]\ntarget = "dr"\n'
    text += 'topics = ["a:a"]\n'
    path = write(tmp_path, text)
    with pytest.raises(UserError, match="has 2 relays: choose one with --name"):
        load_relay_config(path, topics=("a:b",))
    (other,) = load_relay_config(path, topics=("a:b",), name="other").relay
    assert other.topics[0].target == "b"
    assert len(load_relay_config(path).relay) == 2
    with pytest.raises(UserError, match="no enabled relay named 'nope'"):
        load_relay_config(path, name="nope")


def test_a_file_without_relays_or_a_bad_flag_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no enabled \\[relay\\] section"):
        load_relay_config(write(tmp_path, '[[kafka]]\nid = "a"\nbrokers = ["a:1"]\n'))
    with pytest.raises(UserError, match="--topic topic 'bad': expected source:target"):
        load_relay_config(write(tmp_path, OURS), topics=("bad",))
