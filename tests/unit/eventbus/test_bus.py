"""Where a definition's Kafka clients come from, and the settings every bus client gets."""

from __future__ import annotations

from kafkaops.config import Config
from kafkaops.eventbus.bus import PRODUCER_SETTINGS, BusConnections, consumer_settings
from kafkaops.kafka import ClusterClients


class Ref:
    def __init__(self, cluster: str | None = None, url: str | None = None) -> None:
        self.cluster, self.url = cluster, url


def connections() -> BusConnections:
    config = Config.model_validate(
        {
            "kafka": [
                {
                    "id": "secure",
                    "brokers": ["k1:9093", "k2:9093"],
                    "sasl-username": "u",
                    "sasl-password": "p",
                }
            ]
        }
    )
    made: dict[str, ClusterClients] = {}

    def clients(cid: str) -> ClusterClients:
        return made.setdefault(cid, ClusterClients(config.cluster(cid)))

    return BusConnections(config, clients)


def test_a_url_listing_a_configured_clusters_brokers_uses_that_cluster() -> None:
    bus = connections()
    same = bus.for_ref(Ref(url="k2:9093, k1:9093"))
    assert same.id == "secure"
    assert same.settings("producer")["sasl.username"] == "u"
    assert bus.for_ref(Ref(cluster="secure")) is same


def test_any_other_url_gets_a_plain_cluster_of_its_own() -> None:
    bus = connections()
    other = bus.for_ref(Ref(url="elsewhere:9092"))
    assert other.id == "url:elsewhere:9092"
    assert other.settings("consumer")["security.protocol"] == "PLAINTEXT"
    assert bus.for_ref(Ref(url="elsewhere:9092")) is other


def test_keyed_records_are_hash_partitioned_and_consumers_read_committed() -> None:
    assert PRODUCER_SETTINGS["partitioner"] == "murmur2_random"
    assert PRODUCER_SETTINGS["enable.idempotence"] is True
    assert PRODUCER_SETTINGS["acks"] == "all"
    settings = consumer_settings(offset_reset="earliest", instance_id="n1")
    assert settings["isolation.level"] == "read_committed"
    assert settings["enable.auto.commit"] is False
    assert settings["group.instance.id"] == "n1"
