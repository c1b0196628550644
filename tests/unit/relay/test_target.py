from __future__ import annotations

import pytest

from kafkaops.config import Config
from kafkaops.config.loader import validate
from kafkaops.relay.config import RelayConfig
from kafkaops.relay.target import CONSUME_BATCH, producer_overrides


def relay(**keys) -> RelayConfig:
    config = validate(
        Config,
        {
            "kafka": [{"id": "a", "brokers": ["h:1"]}, {"id": "b", "brokers": ["h:2"]}],
            "relay": {"sources": ["a"], "target": "b", "topics": ["t:t"], **keys},
        },
        "test",
    )
    return config.relay[0]


@pytest.mark.parametrize(("ack", "acks"), [("tcp", 0), ("leader", 1), ("cluster", "all")])
def test_commit_ack_type_maps_to_acks(ack: str, acks: object) -> None:
    out = producer_overrides(relay(producer={"commit_ack_type": ack, "enable_idempotency": False}))
    assert out["acks"] == acks
    assert out["enable.idempotence"] is False
    assert "enable.gapless.guarantee" not in out


def test_at_least_once_never_drops_a_record_on_a_timeout_and_never_leaves_a_gap() -> None:
    """The resume trusts "newest relayed record" as proof of everything before it."""
    out = producer_overrides(relay())
    assert out["enable.idempotence"] is True
    assert out["acks"] == "all"
    assert out["enable.gapless.guarantee"] is True
    assert out["message.timeout.ms"] == 0
    assert "transactional.id" not in out


def test_exactly_once_is_transactional_and_leaves_the_message_timeout_to_librdkafka() -> None:
    out = producer_overrides(relay(name="orders", delivery="exactly-once"))
    assert out["transactional.id"] == "kafkaops-relay-orders"
    assert "message.timeout.ms" not in out
    named = producer_overrides(relay(delivery="exactly-once", transactional_id="mine"))
    assert named["transactional.id"] == "mine"


def test_kaf_relay_producer_keys_map_onto_librdkafka() -> None:
    out = producer_overrides(
        relay(
            producer={
                "compression": "zstd",
                "max_message_bytes": 200_000,
                "flush_frequency": "250ms",
                "flush_batch_size": 777,
                "buffer_size": 5000,
                "request_timeout": "3s",
            }
        )
    )
    assert out["compression.type"] == "zstd"
    assert out["message.max.bytes"] == 200_000
    assert out["batch.size"] == 200_000  # may not exceed message.max.bytes
    assert out["linger.ms"] == 250
    assert out["batch.num.messages"] == 777
    assert out["queue.buffering.max.messages"] == 5000 + CONSUME_BATCH
    assert out["request.timeout.ms"] == 3000
