"""Cluster section → librdkafka settings, the only mapping in the code base."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from kafkaops.config import KafkaCluster
from kafkaops.kafka.oauth import AZURE_TOKEN_URL, ClientCredentials, StaticToken, TokenError
from kafkaops.kafka.settings import client_settings, redacted


def cluster(**keys: Any) -> KafkaCluster:
    return KafkaCluster.model_validate({"id": "c1", "brokers": ["a:1", "b:2"], **keys})


def test_plaintext_defaults() -> None:
    s = client_settings(cluster(), "producer")
    assert s["bootstrap.servers"] == "a:1,b:2"
    assert s["security.protocol"] == "PLAINTEXT"
    assert s["client.id"] == "kafkaops-c1"
    assert s["socket.timeout.ms"] == 10_000
    assert (s["batch.num.messages"], s["linger.ms"]) == (100, 1000)
    assert "batch.num.messages" not in client_settings(cluster(), "consumer")


def test_overrides_win() -> None:
    assert client_settings(cluster(), "producer", **{"linger.ms": 5})["linger.ms"] == 5


def test_ssl_with_client_certificate_and_skip_verify() -> None:
    s = client_settings(
        cluster(
            **{
                "use-ssl": True,
                "ssl-ca": "/ca",
                "ssl-cert": "/c",
                "ssl-key": "/k",
                "insecure-skip-verify": True,
            }
        ),
        "admin",
    )
    assert s["security.protocol"] == "SSL"
    assert (s["ssl.ca.location"], s["ssl.certificate.location"], s["ssl.key.location"]) == (
        "/ca",
        "/c",
        "/k",
    )
    assert s["enable.ssl.certificate.verification"] is False
    assert s["ssl.endpoint.identification.algorithm"] == "none"


def test_ssl_keys_ignored_without_use_ssl() -> None:
    s = client_settings(cluster(**{"ssl-ca": "/ca"}), "admin")
    assert s["security.protocol"] == "PLAINTEXT"
    assert "ssl.ca.location" not in s


@pytest.mark.parametrize("mech", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_username_password_mechanisms(mech: str) -> None:
    s = client_settings(
        cluster(
            **{"sasl-mechanism": mech, "sasl-username": "u", "sasl-password": "p", "use-ssl": True}
        ),
        "consumer",
    )
    assert s["security.protocol"] == "SASL_SSL"
    assert (s["sasl.mechanism"], s["sasl.username"], s["sasl.password"]) == (mech, "u", "p")
    assert redacted(s)["sasl.password"] == "********"


def test_username_alone_means_plain_over_plaintext() -> None:
    s = client_settings(cluster(**{"sasl-username": "u", "sasl-password": "p"}), "admin")
    assert (s["security.protocol"], s["sasl.mechanism"]) == ("SASL_PLAINTEXT", "PLAIN")


def test_gssapi_keytab_and_user_ticket_cache() -> None:
    base = {
        "sasl-mechanism": "GSSAPI",
        "sasl-username": "svc",
        "sasl-gssapi-realm": "EX.COM",
        "sasl-gssapi-service-name": "kafka",
    }
    s = client_settings(
        cluster(
            **base,
            **{
                "sasl-gssapi-key-tab-path": "/k.tab",
                "sasl-gssapi-kerberos-config-path": "/etc/k5.conf",
            },
        ),
        "admin",
    )
    assert s["sasl.kerberos.service.name"] == "kafka"
    assert s["sasl.kerberos.principal"] == "svc@EX.COM"
    assert s["sasl.kerberos.keytab"] == "/k.tab"
    assert s["sasl.kerberos.kinit.cmd"] == "KRB5_CONFIG=/etc/k5.conf kinit -t /k.tab -k svc@EX.COM"
    s = client_settings(cluster(**base), "admin")
    assert s["sasl.kerberos.kinit.cmd"] == "kinit -R"
    assert "sasl.kerberos.keytab" not in s


def test_oauth_static_token() -> None:
    s = client_settings(
        cluster(
            **{
                "sasl-mechanism": "OAUTHBEARER",
                "sasl-access-token": "T",
                "sasl-extensions": {"logicalCluster": "lkc-1"},
            }
        ),
        "admin",
    )
    provider = s["oauth_cb"]
    assert isinstance(provider, StaticToken)
    token, expiry, _principal, extensions = provider("")
    assert token == "T"
    assert expiry > time.time()
    assert extensions == {"logicalCluster": "lkc-1"}
    assert redacted(s)["oauth_cb"] == "********"


def test_oauth_azuread_uses_the_tenant_endpoint() -> None:
    s = client_settings(
        cluster(
            **{
                "sasl-mechanism": "OAUTHBEARER",
                "sasl-oauth-service": "AzureAD",
                "sasl-oauth-tenant-id": "t-1",
                "sasl-oauth-client-id": "i",
                "sasl-oauth-client-secret": "s",
            }
        ),
        "admin",
    )
    assert s["oauth_cb"].token_url == AZURE_TOKEN_URL.format(tenant="t-1")


class _TokenEndpoint(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.requests.append({"auth": self.headers["Authorization"], "body": body})
        if "audience=reject" in body:
            self.send_response(401)
            self.end_headers()
            return
        payload = json.dumps({"access_token": "jwt-1", "expires_in": 120}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_args: Any) -> None:
        return


@pytest.fixture
def token_url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _TokenEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _TokenEndpoint.requests.clear()
    yield f"http://127.0.0.1:{server.server_port}/oauth/token"
    server.shutdown()


def test_client_credentials_grant(token_url: str) -> None:
    provider = ClientCredentials(
        token_url,
        "cid",
        "csecret",
        scopes=["a", "b"],
        parameters={"audience": "dev"},
        expiry_margin=20,
    )
    before = time.time()
    token, expiry, principal, _ = provider("")
    assert (token, principal) == ("jwt-1", "cid")
    assert before + 99 <= expiry <= time.time() + 101  # 120 s lifetime minus the 20 s margin
    (request,) = _TokenEndpoint.requests
    assert request["auth"].startswith("Basic ")
    assert "grant_type=client_credentials" in request["body"]
    assert "audience=dev" in request["body"]
    assert "scope=a+b" in request["body"]


def test_client_credentials_refusal_is_clear_and_secret_free(token_url: str) -> None:
    provider = ClientCredentials(token_url, "cid", "csecret", parameters={"audience": "reject"})
    with pytest.raises(TokenError, match="answered HTTP 401") as info:
        provider("")
    assert "csecret" not in str(info.value)
