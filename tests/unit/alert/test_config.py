"""The optional [alert] section."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kafkaops.config import Config, ConfigError
from kafkaops.config.loader import validate

CLUSTER = {"id": "main", "brokers": ["h:9092"]}


def test_defaults_when_the_section_is_absent() -> None:
    alert = validate(Config, {}, "t").alert
    assert alert.topic_buffer_length == 5000
    assert alert.lag_input is True
    assert alert.kafka_input == []
    assert alert.delivery_timeout == timedelta(seconds=30)


def test_kafka_input_keys() -> None:
    data = {
        "kafka": [CLUSTER],
        "alert": {
            "topic-buffer-length": 100,
            "lag-input": False,
            "kafka-input": [
                {"cluster": "main", "topics": ["metrics"], "precision": "s", "db": "t"}
            ],
        },
    }
    alert = validate(Config, data, "t").alert
    (source,) = alert.kafka_input
    assert (source.group, source.auto_offset_reset, source.database) == (
        "kafkaops-alert",
        "latest",
        "t",
    )


@pytest.mark.parametrize(
    ("alert", "message"),
    [
        ({"kafka-input": [{"cluster": "other", "topics": ["m"]}]}, "unknown cluster 'other'"),
        ({"kafka-input": [{"cluster": "main", "topics": []}]}, "alert.kafka-input[0].topics"),
        ({"kafka-input": [{"cluster": "main", "topics": ["m"], "precision": "d"}]}, "precision"),
        ({"delivery-timeout": "0s"}, "alert.delivery-timeout: must be positive"),
        ({"topic-buffer-length": 0}, "alert.topic-buffer-length"),
        ({"persist-topics": True}, "alert.persist-topics: unknown key"),
    ],
)
def test_mistakes_name_the_key(alert: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(Config, {"kafka": [CLUSTER], "alert": alert}, "t")
    assert message in str(err.value)
