"""Offset lookups the relay starts with, against a real cluster."""

from __future__ import annotations

from confluent_kafka.admin import NewTopic, OffsetSpec

from kafkaops.relay.source import list_offsets
from kafkaops.testing import LocalCluster

from .conftest import clients


def test_end_offsets_of_a_topic_created_a_moment_ago_are_answered_not_failed(
    dst: LocalCluster, unique: str
) -> None:
    """Right after CreateTopics the new partitions' leader is often not known yet and ListOffsets
    answers NOT_LEADER_FOR_PARTITION (about every other time here), which librdkafka does not
    mark retriable: a relay started on a fresh target topic lost a failed attempt and its backoff
    to it. Eight fresh topics, each asked at once by a fresh client, as a starting relay does."""
    c = clients(dst)
    creator = c.admin()
    for i in range(8):
        name = f"{unique}-{i}"
        creator.create_topics([NewTopic(name, 4, 1)])[name].result(30)
        ends = list_offsets(c, c.admin(), [(name, p) for p in range(4)], OffsetSpec.latest, 10)
        assert ends == {(name, p): 0 for p in range(4)}
