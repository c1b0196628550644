"""The real-Kafka harness: brokers assembled from Maven Central and run as local processes."""

from kafkaops.testing.broker import USERS, KafkaNode, LocalCluster, free_port
from kafkaops.testing.jars import KAFKA_VERSION, HarnessError, kafka_libs
from kafkaops.testing.redis import RedisServer
from kafkaops.testing.wait import WaitTimeout, await_for, wait_for

__all__ = [
    "KAFKA_VERSION",
    "USERS",
    "HarnessError",
    "KafkaNode",
    "LocalCluster",
    "RedisServer",
    "WaitTimeout",
    "await_for",
    "free_port",
    "kafka_libs",
    "wait_for",
]
