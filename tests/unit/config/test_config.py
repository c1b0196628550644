"""Loading the one config file: every Kapacitor [[kafka]] key, defaults, errors, secrets."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from kafkaops.config import ConfigError, load_config, masked

KAPACITOR_SECTION = """
[[kafka]]
  enabled = true
  id = "localhost"
  brokers = ["127.0.0.1:9092"]
  timeout = "10s"
  batch-size = 100
  batch-timeout = "1s"
  use-ssl = false
  ssl-ca = ""
  ssl-cert = ""
  ssl-key = ""
  insecure-skip-verify = false
  # Optional SASL configuration
  sasl-username = "xxxxx"
  sasl-password = "xxxxxxxx"
  sasl-extensions = {}
  sasl-mechanism = ""
  sasl-version = ""
  # Use if sasl-mechanism is GSSAPI. GSSAPI is for organizations using Kerberos.
  sasl-gssapi-service-name = ""
  sasl-gssapi-auth-type = "KRB5_USER_AUTH"
  sasl-gssapi-disable-pafxfast = false
  sasl-gssapi-kerberos-config-path = "/"
  sasl-gssapi-key-tab-path = ""
  sasl-gssapi-realm = "realm"
  # Options if sasl-mechanism is OAUTHBEARER
  sasl-oauth-service = "auth0"
  sasl-oauth-client-id = "xxxxxxx"
  sasl-oauth-client-secret = "xxxxxxxx"
  sasl-oauth-token-url = "dedicated-auth0-token-url"
  sasl-oauth-token-expiry-margin = "10s"
  sasl-oauth-scopes = ""
  sasl-oauth-tenant-id = ""
  [kafka.sasl-oauth-parameters]
     audience = "development"
  sasl-access-token = ""
"""


def write(tmp_path: Path, text: str, name: str = "kafkaops.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    return str(info.value)


def test_every_kapacitor_kafka_key_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, KAPACITOR_SECTION), env={})
    (cluster,) = config.kafka
    assert cluster.id == "localhost"
    assert cluster.brokers == ["127.0.0.1:9092"]
    assert cluster.timeout == timedelta(seconds=10)
    assert cluster.batch_size == 100
    assert cluster.batch_timeout == timedelta(seconds=1)
    assert cluster.sasl_password.get_secret_value() == "xxxxxxxx"
    assert cluster.sasl_gssapi_auth_type == "KRB5_USER_AUTH"
    assert cluster.sasl_gssapi_realm == "realm"
    assert cluster.sasl_oauth_service == "auth0"
    # By TOML's rules the seed's trailing `sasl-access-token` belongs to the parameters table.
    assert cluster.sasl_oauth_parameters == {"audience": "development", "sasl-access-token": ""}
    assert cluster.sasl_oauth_scopes == []
    assert cluster.effective_mechanism == "PLAIN"  # a username without a mechanism means PLAIN


def test_kapacitor_code_spelling_of_extensions_is_accepted(tmp_path: Path) -> None:
    text = '[[kafka]]\nid = "a"\nbrokers = ["h:1"]\nsasl_extensions = { k = "v" }\n'
    assert load_config(write(tmp_path, text), env={}).kafka[0].sasl_extensions == {"k": "v"}


def test_defaults_and_zero_values_follow_the_documentation(tmp_path: Path) -> None:
    text = (
        '[[kafka]]\nid = "a"\nbrokers = ["h:1"]\n'
        'timeout = "0s"\nbatch-size = 0\nbatch-timeout = 0\n'
    )
    cluster = load_config(write(tmp_path, text), env={}).kafka[0]
    assert (cluster.timeout, cluster.batch_size, cluster.batch_timeout) == (
        timedelta(seconds=10),
        100,
        timedelta(seconds=1),
    )
    config = load_config(write(tmp_path, ""), env={})
    assert config.http.bind_address == "127.0.0.1:9470"
    assert config.kafka == []


def test_yaml_is_accepted(tmp_path: Path) -> None:
    text = (
        "kafka:\n  - id: a\n    brokers: ['h:1']\n    batch-size: 7\n"
        "http:\n  bind-address: ':9999'\n"
    )
    config = load_config(write(tmp_path, text, "c.yaml"), env={})
    assert config.kafka[0].batch_size == 7
    assert (config.http.host, config.http.port) == ("0.0.0.0", 9999)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('brokers = ["h:1"]\nbatch-size = -3', "kafka[0].batch-size: Input should be greater than"),
        ('brokers = ["h:1"]\nbatch-size = -3', "(got -3)"),
        ('brokers = ["nohost"]', "broker 'nohost' is not host:port"),
        ('brokers = ["h:1"]\ntimeout = "ten"', "kafka[0].timeout: not a duration: 'ten'"),
        ('brokers = ["h:1"]\nsasl-mechanism = "KERBEROS"', "kafka[0].sasl-mechanism"),
        ('brokers = ["h:1"]\nsasl-mechanism = "KERBEROS"', "'KERBEROS'"),
        ('brokers = ["h:1"]\nbatch-sise = 1', "kafka[0].batch-sise: unknown key"),
        ("brokers = []", "enabled but lists no brokers"),
        ('brokers = ["h:1"]\nssl-cert = "c.pem"', "ssl-cert and ssl-key must be given together"),
        (
            'brokers = ["h:1"]\nsasl-mechanism = "OAUTHBEARER"\nsasl-oauth-service = "azuread"\n'
            'sasl-oauth-client-id = "i"\nsasl-oauth-client-secret = "s"',
            "'azuread' needs sasl-oauth-tenant-id",
        ),
        (
            'brokers = ["h:1"]\nsasl-mechanism = "OAUTHBEARER"\nsasl-oauth-service = "auth0"\n'
            'sasl-oauth-client-id = "i"\nsasl-oauth-client-secret = "s"\n'
            'sasl-oauth-token-url = "http://t"',
            "needs sasl-oauth-parameters.audience",
        ),
    ],
)
def test_bad_values_name_file_key_and_value(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path, f'[[kafka]]\nid = "a"\n{body}\n')
    message = problems(path)
    assert str(path) in message
    assert expected in message


def test_duplicate_cluster_id_is_an_error(tmp_path: Path) -> None:
    text = '[[kafka]]\nid = "a"\nbrokers = ["h:1"]\n[[kafka]]\nid = "a"\nbrokers = ["h:2"]\n'
    assert "duplicate [[kafka]] id 'a'" in problems(write(tmp_path, text))


def test_disabled_cluster_is_not_offered_to_jobs(tmp_path: Path) -> None:
    text = '[[kafka]]\nid = "off"\nenabled = false\n[[kafka]]\nid = "on"\nbrokers = ["h:2"]\n'
    config = load_config(write(tmp_path, text), env={})
    assert list(config.clusters) == ["on"]
    with pytest.raises(KeyError, match="unknown cluster 'off' \\(configured: on\\)"):
        config.cluster("off")


def test_environment_interpolation(tmp_path: Path) -> None:
    text = (
        '[[kafka]]\nid = "a"\nbrokers = ["${B}"]\n'
        'sasl-password = "${PW}"\nssl-ca = "${CA:-/ca.pem}"\n'
    )
    cluster = load_config(write(tmp_path, text), env={"B": "k:9092", "PW": "hunter2"}).kafka[0]
    assert cluster.brokers == ["k:9092"]
    assert cluster.sasl_password.get_secret_value() == "hunter2"
    assert cluster.ssl_ca == "/ca.pem"
    message = problems(write(tmp_path, text), env={"B": "k:9092"})
    assert "kafka[0].sasl-password: environment variable PW is not set" in message


def test_unparseable_files_are_named(tmp_path: Path) -> None:
    assert "invalid TOML" in problems(write(tmp_path, "[[kafka]\n"))
    assert "invalid YAML" in problems(write(tmp_path, "a: [\n", "c.yml"))
    assert "file not found" in problems(tmp_path / "absent.toml")
    assert "top level must be a table" in problems(write(tmp_path, "- 1\n", "c.yaml"))


def test_secrets_never_appear_in_errors_or_effective_config(tmp_path: Path) -> None:
    text = (
        '[[kafka]]\nid = "a"\nbrokers = ["h:1"]\nsasl-password = "p4ss-secret"\n'
        'sasl-mechanism = "OAUTHBEARER"\nsasl-access-token = "tok-secret"\n'
        'sasl-oauth-client-secret = "cs-secret"\n'
    )
    effective = json.dumps(masked(load_config(write(tmp_path, text), env={})))
    assert "secret" not in effective.replace("client-secret", "")
    assert '"sasl-password": "********"' in effective
    bad = '[[kafka]]\nid = "a"\nbrokers = ["h:1"]\nsasl-password = ["p4ss-secret"]\n'
    assert "p4ss-secret" not in problems(write(tmp_path, bad))
