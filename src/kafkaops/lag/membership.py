"""Several monitor instances split the consumer groups (`kafkaops.kafka.membership`): a consumer
group belongs to bucket crc32(group id) mod buckets. Kafka Lag Go's Redis list with modulo hashing
moves most groups on any change; the cooperative-sticky assignor moves about 1/N.
"""

from __future__ import annotations

import zlib

from kafkaops.kafka import ClusterClients
from kafkaops.kafka.membership import Membership

TOPIC = "_kafkaops_lag_instances"
"""Coordination topic (never written to)."""
GROUP = "_kafkaops_lag_instances"
"""Coordination group; the collector leaves it out of the monitored groups."""
BUCKETS = 64


def bucket_of(group: str, buckets: int) -> int:
    """Stable across processes and restarts (unlike Python's salted hash)."""
    return zlib.crc32(group.encode()) % buckets


class LagMembership(Membership):
    """This instance's share of the consumer groups of one cluster."""

    def __init__(self, clients: ClusterClients, session_timeout: float = 10.0) -> None:
        super().__init__(clients, TOPIC, GROUP, BUCKETS, session_timeout)

    def owns(self, group: str) -> bool:
        return bucket_of(group, self.buckets) in self.owned
