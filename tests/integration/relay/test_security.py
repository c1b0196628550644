"""Every client the relay makes (health checks, reader, producer, read-back) goes through the
`[[kafka]]` section's security: SCRAM over SSL on the source side, PLAIN on the target side."""

from __future__ import annotations

from kafkaops.testing import USERS, LocalCluster, free_port, wait_for

from .conftest import FAST_POOL, Feed, load, running, topic, verify


def test_relay_over_sasl_ssl_and_sasl_plaintext(kafka_secure: LocalCluster, unique: str) -> None:
    name = unique
    copy = f"{unique}-copy"
    admin_side = kafka_secure  # the plain listener creates the topics and feeds the source
    topic(admin_side, name, 2)
    topic(admin_side, copy, 2)
    feed = Feed([admin_side], name, streams=2)
    feed.send(100)
    user, password = next(iter(USERS.items()))
    document = {
        "http": {"bind-address": f"127.0.0.1:{free_port()}"},
        "kafka": [
            kafka_secure.cluster_section(
                "scram-ssl", listener="SASL_SSL", timeout="5s", **{
                    "sasl-mechanism": "SCRAM-SHA-512", "sasl-username": user,
                    "sasl-password": password,
                },
            ),
            kafka_secure.cluster_section(
                "plain", listener="SASL_PLAINTEXT", timeout="5s", **{
                    "sasl-mechanism": "PLAIN", "sasl-username": user, "sasl-password": password,
                },
            ),
        ],
        "relay": {
            "sources": ["scram-ssl"],
            "target": "plain",
            "topics": [f"{name}:{copy}"],
            "stop_at_end": True,
            "source_pool": FAST_POOL,
        },
    }  # fmt: skip
    with running(load(document)) as relay:
        wait_for(lambda: relay.state == "finished", 60, what="stop-at-end over SASL")
        assert relay.stats.acked == 200
    report = verify(admin_side, copy, feed.expected)
    assert report.ok, report
