"""Small translations of the collector: group states and librdkafka error text."""

from __future__ import annotations

from confluent_kafka import ConsumerGroupState, KafkaError, KafkaException

from kafkaops.lag.collector import LIVE_STATES, GroupOffsets, reason, state_name


def test_states_use_kafkas_names_and_empty_is_not_live() -> None:
    assert state_name(ConsumerGroupState.STABLE) == "Stable"
    assert state_name(ConsumerGroupState.EMPTY) == "Empty"
    assert state_name(ConsumerGroupState.PREPARING_REBALANCING) == "PreparingRebalance"
    assert state_name(ConsumerGroupState.COMPLETING_REBALANCING) == "CompletingRebalance"
    assert "Empty" not in LIVE_STATES
    assert GroupOffsets("g", "Stable", {}).has_members
    assert not GroupOffsets("g", "Empty", {}).has_members


def test_reason_is_librdkafkas_own_text() -> None:
    exc = KafkaException(KafkaError(KafkaError._TIMED_OUT))
    assert reason(exc) == "Local: Timed out"
    assert reason(TimeoutError()) == "request timed out"
