"""The only place a `[[kafka]]` section becomes librdkafka settings.

Producers, consumers and admin clients of every job get their security and connection settings
from here, so TLS, SASL and OAuth behave the same everywhere and secrets stay in one code path.
"""

from __future__ import annotations

import shlex
from typing import Any, Literal

from kafkaops.config.kafka import KafkaCluster
from kafkaops.kafka.oauth import token_provider

Role = Literal["producer", "consumer", "admin"]


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def security_settings(cluster: KafkaCluster) -> dict[str, Any]:
    """security.protocol, ssl.* and sasl.* for the cluster."""
    mechanism = cluster.effective_mechanism
    if mechanism:
        protocol = "SASL_SSL" if cluster.use_ssl else "SASL_PLAINTEXT"
    else:
        protocol = "SSL" if cluster.use_ssl else "PLAINTEXT"
    out: dict[str, Any] = {"security.protocol": protocol}
    if cluster.use_ssl:
        out.update(_ssl_settings(cluster))
    if mechanism:
        out["sasl.mechanism"] = mechanism
        out.update(_sasl_settings(cluster, mechanism))
    return out


def _ssl_settings(cluster: KafkaCluster) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if cluster.ssl_ca:
        out["ssl.ca.location"] = cluster.ssl_ca
    if cluster.ssl_cert:
        out["ssl.certificate.location"] = cluster.ssl_cert
        out["ssl.key.location"] = cluster.ssl_key
    if cluster.insecure_skip_verify:
        out["enable.ssl.certificate.verification"] = False
        out["ssl.endpoint.identification.algorithm"] = "none"
    return out


def _sasl_settings(cluster: KafkaCluster, mechanism: str) -> dict[str, Any]:
    if mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        return {
            "sasl.username": cluster.sasl_username,
            "sasl.password": cluster.sasl_password.get_secret_value(),
        }
    if mechanism == "OAUTHBEARER":
        return {"oauth_cb": token_provider(cluster)}
    return _gssapi_settings(cluster)


def _gssapi_settings(cluster: KafkaCluster) -> dict[str, Any]:
    """Kerberos via librdkafka's kinit: a keytab when given, else renew the user's ticket cache."""
    principal = cluster.sasl_username
    if principal and cluster.sasl_gssapi_realm and "@" not in principal:
        principal = f"{principal}@{cluster.sasl_gssapi_realm}"
    out: dict[str, Any] = {"sasl.kerberos.service.name": cluster.sasl_gssapi_service_name}
    if principal:
        out["sasl.kerberos.principal"] = principal
    env = ""
    if cluster.sasl_gssapi_kerberos_config_path not in ("", "/"):
        env = f"KRB5_CONFIG={shlex.quote(cluster.sasl_gssapi_kerberos_config_path)} "
    if cluster.sasl_gssapi_key_tab_path:
        out["sasl.kerberos.keytab"] = cluster.sasl_gssapi_key_tab_path
        out["sasl.kerberos.kinit.cmd"] = (
            f"{env}kinit -t {shlex.quote(cluster.sasl_gssapi_key_tab_path)} "
            f"-k {shlex.quote(principal)}"
        )
    else:
        out["sasl.kerberos.kinit.cmd"] = f"{env}kinit -R"
    return out


def client_settings(cluster: KafkaCluster, role: Role, **overrides: Any) -> dict[str, Any]:
    """Complete librdkafka settings for one client; `overrides` (dotted keys) win."""
    timeout_ms = _ms(cluster.timeout.total_seconds())
    out: dict[str, Any] = {
        "bootstrap.servers": ",".join(cluster.brokers),
        "client.id": f"kafkaops-{cluster.id}",
        "socket.timeout.ms": timeout_ms,
        "socket.connection.setup.timeout.ms": timeout_ms,
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 10_000,
    }
    out.update(security_settings(cluster))
    if role == "producer":
        out["batch.num.messages"] = cluster.batch_size
        out["linger.ms"] = _ms(cluster.batch_timeout.total_seconds())
        out["request.timeout.ms"] = timeout_ms
    out.update(overrides)
    return out


SECRET_SETTINGS = frozenset(
    {"sasl.password", "ssl.key.password", "oauth_cb", "sasl.oauthbearer.client.secret"}
)


def redacted(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings safe to log."""
    return {k: ("********" if k in SECRET_SETTINGS else v) for k, v in settings.items()}
