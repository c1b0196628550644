"""The harness gives real brokers, and the client layer reaches them over every listener."""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from confluent_kafka import KafkaException

from kafkaops.config import KafkaCluster
from kafkaops.kafka import ClusterClients
from kafkaops.kafka.health import check_cluster
from kafkaops.testing import USERS, LocalCluster
from kafkaops.testing.records import consume, create_topic, produce

pytestmark = pytest.mark.kafka


def clients_for(section: dict) -> ClusterClients:
    return ClusterClients(KafkaCluster.model_validate(section))


def roundtrip(clients: ClusterClients, topic: str, n: int = 20) -> list[bytes]:
    values = [f"v{i}".encode() for i in range(n)]
    produce(clients.producer(), topic, values)
    consumer = clients.consumer()
    try:
        return [m.value() for m in consume(consumer, topic, n)]
    finally:
        consumer.close()


def test_produce_consume_on_one_node(kafka: LocalCluster, unique: str) -> None:
    clients = clients_for(kafka.cluster_section())
    create_topic(clients.admin(), unique, partitions=3)
    got = roundtrip(clients, unique, 30)
    assert sorted(got) == sorted(f"v{i}".encode() for i in range(30))


def test_a_throughput_broker_runs_with_the_shipped_jvm_settings(unique: str) -> None:
    """Benchmarks start brokers with full JIT and G1 instead of the tests' fast-start JVM."""
    with LocalCluster(name="throughput", throughput=True) as cluster:
        (node,) = cluster.members
        assert node.process is not None
        cmdline = Path(f"/proc/{node.process.pid}/cmdline").read_bytes().split(b"\0")
        assert b"-XX:+UseG1GC" in cmdline
        assert b"-XX:TieredStopAtLevel=1" not in cmdline
        clients = clients_for(cluster.cluster_section())
        create_topic(clients.admin(), unique, partitions=1)
        assert roundtrip(clients, unique, 5) == [f"v{i}".encode() for i in range(5)]


def test_three_nodes_survive_one_node_down(kafka3: LocalCluster, unique: str) -> None:
    clients = clients_for(kafka3.cluster_section())
    create_topic(clients.admin(), unique, partitions=3, replication=3)
    kafka3.stop_node(2)
    try:
        assert not kafka3.members[2].running
        values = [f"w{i}".encode() for i in range(30)]
        produce(clients.producer(acks="all"), unique, values)
        consumer = clients.consumer()
        try:
            read = [m.value() for m in consume(consumer, unique, 30)]
        finally:
            consumer.close()
        assert sorted(read) == sorted(values)
    finally:
        kafka3.start_node(2)
    assert len(clients.admin().list_topics(timeout=10).brokers) == 3


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_mechanisms(kafka_secure: LocalCluster, unique: str, mechanism: str) -> None:
    section = kafka_secure.cluster_section(
        listener="SASL_PLAINTEXT",
        **{"sasl-mechanism": mechanism, "sasl-username": "alice", "sasl-password": USERS["alice"]},
    )
    assert roundtrip(clients_for(section), unique, 5) == [f"v{i}".encode() for i in range(5)]


def test_ssl_with_and_without_client_certificate(kafka_secure: LocalCluster, unique: str) -> None:
    section = kafka_secure.cluster_section(listener="SSL")
    assert roundtrip(clients_for(section), unique, 5)[-1] == b"v4"
    tls = kafka_secure.tls
    mtls = kafka_secure.cluster_section(
        listener="SSL", **{"ssl-cert": str(tls.client_cert), "ssl-key": str(tls.client_key)}
    )
    assert roundtrip(clients_for(mtls), unique + "-m", 3) == [b"v0", b"v1", b"v2"]


def test_scram_over_ssl(kafka_secure: LocalCluster, unique: str) -> None:
    section = kafka_secure.cluster_section(
        listener="SASL_SSL",
        **{
            "sasl-mechanism": "SCRAM-SHA-512",
            "sasl-username": "bob",
            "sasl-password": USERS["bob"],
        },
    )
    assert roundtrip(clients_for(section), unique, 3) == [b"v0", b"v1", b"v2"]


def _unsecured_jwt(sub: str) -> str:
    def b64(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    now = int(time.time())
    return f"{b64({'alg': 'none'})}.{b64({'sub': sub, 'iat': now, 'exp': now + 3600})}."


def test_oauthbearer_static_token(kafka_secure: LocalCluster, unique: str) -> None:
    section = kafka_secure.cluster_section(
        listener="SASL_PLAINTEXT",
        **{"sasl-mechanism": "OAUTHBEARER", "sasl-access-token": _unsecured_jwt("alice")},
    )
    assert roundtrip(clients_for(section), unique, 2) == [b"v0", b"v1"]


def test_oauthbearer_client_credentials_against_a_token_endpoint(
    kafka_secure: LocalCluster, unique: str
) -> None:
    """The full custom-service flow: our token endpoint issues a JWT, the broker accepts it."""
    issued: list[str] = []

    class TokenEndpoint(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            token = _unsecured_jwt("alice")
            issued.append(token)
            body = json.dumps({"access_token": token, "expires_in": 3600}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), TokenEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        section = kafka_secure.cluster_section(
            listener="SASL_PLAINTEXT",
            **{
                "sasl-mechanism": "OAUTHBEARER",
                "sasl-oauth-service": "custom",
                "sasl-oauth-client-id": "kafkaops",
                "sasl-oauth-client-secret": "client-secret",
                "sasl-oauth-token-url": f"http://127.0.0.1:{server.server_port}/token",
            },
        )
        assert roundtrip(clients_for(section), unique, 2) == [b"v0", b"v1"]
    finally:
        server.shutdown()
    assert issued, "the client never asked the token endpoint"


def test_ssl_refuses_an_unknown_ca(kafka_secure: LocalCluster, tmp_path) -> None:
    other = tmp_path / "other-ca.pem"
    from kafkaops.testing.tls import make_tls_files

    other.write_bytes(make_tls_files(tmp_path / "other").ca.read_bytes())
    clients = clients_for(kafka_secure.cluster_section(listener="SSL", **{"ssl-ca": str(other)}))
    status = check_cluster(clients, clients.admin(), timeout=3)
    assert not status.healthy
    assert "SSL" in status.reason or "certificate" in status.reason


def test_wrong_password_is_refused_clearly(kafka_secure: LocalCluster) -> None:
    section = kafka_secure.cluster_section(
        listener="SASL_PLAINTEXT",
        **{
            "sasl-mechanism": "SCRAM-SHA-512",
            "sasl-username": "alice",
            "sasl-password": "not-the-password",
        },
    )
    clients = clients_for(section)
    status = check_cluster(clients, clients.admin(), timeout=3)
    assert not status.healthy
    assert "Authentication failed" in status.reason or "AUTHENTICATION" in status.reason
    assert "not-the-password" not in status.reason
    with pytest.raises(KafkaException):
        clients.admin().list_topics(timeout=3)
