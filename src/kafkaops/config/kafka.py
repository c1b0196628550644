"""The `[[kafka]]` cluster section, spelled exactly as kapacitor.conf spells it.

A kapacitor.conf's `[[kafka]]` sections load unchanged. Defaults follow the documented behaviour
("if set to 0, a default is used"), which is what users read, rather than Kapacitor's code, which
never applies them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    field_validator,
    model_validator,
)

from kafkaops.config.durations import format_duration, parse_duration

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]
"""A Go-style duration ("10s"); a bare number is seconds."""

SaslMechanism = Literal["", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"]
OAuthService = Literal["", "custom", "auth0", "azuread"]
GssapiAuthType = Literal["", "KRB5_USER_AUTH", "KRB5_KEYTAB_AUTH"]


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def require_unique(names: Iterable[str], message: str) -> None:
    """Raise `message.format(name)` for the first repeated name: ids and names identify things."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(message.format(repr(name)))
        seen.add(name)


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class KafkaCluster(Section):
    """One Kafka cluster that jobs connect to by `id`."""

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, frozen=True, alias_generator=_kebab
    )

    id: str = "default"
    enabled: bool = True
    brokers: list[str] = Field(default_factory=list)
    timeout: Duration = timedelta(seconds=10)
    batch_size: int = Field(default=100, ge=0)
    batch_timeout: Duration = timedelta(seconds=1)

    use_ssl: bool = False
    ssl_ca: str = ""
    ssl_cert: str = ""
    ssl_key: str = ""
    insecure_skip_verify: bool = False

    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    sasl_extensions: dict[str, str] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("sasl-extensions", "sasl_extensions"),
    )
    sasl_mechanism: SaslMechanism = ""
    sasl_version: Literal["", "0", "1"] = ""

    sasl_gssapi_service_name: str = ""
    sasl_gssapi_auth_type: GssapiAuthType = ""
    sasl_gssapi_disable_pafxfast: bool = False
    sasl_gssapi_kerberos_config_path: str = ""
    sasl_gssapi_key_tab_path: str = ""
    sasl_gssapi_realm: str = ""

    sasl_oauth_service: OAuthService = ""
    sasl_oauth_client_id: str = ""
    sasl_oauth_client_secret: SecretStr = SecretStr("")
    sasl_oauth_token_url: str = ""
    sasl_oauth_token_expiry_margin: Duration = timedelta(seconds=10)
    sasl_oauth_scopes: list[str] = Field(default_factory=list)
    sasl_oauth_tenant_id: str = ""
    sasl_oauth_parameters: dict[str, str] = Field(default_factory=dict)
    sasl_access_token: SecretStr = SecretStr("")

    @field_validator("sasl_version", mode="before")
    @classmethod
    def _version_as_text(cls, v: object) -> object:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("sasl_mechanism", "sasl_oauth_service", "sasl_gssapi_auth_type", mode="before")
    @classmethod
    def _normalise_case(cls, v: object, info) -> object:
        if not isinstance(v, str):
            return v
        return v.lower() if info.field_name == "sasl_oauth_service" else v.upper()

    @field_validator("sasl_oauth_scopes", mode="before")
    @classmethod
    def _scopes_from_text(cls, v: object) -> object:
        if isinstance(v, str):
            return [s for s in v.replace(",", " ").split() if s]
        return v

    @field_validator("brokers")
    @classmethod
    def _brokers_are_host_port(cls, v: list[str]) -> list[str]:
        for broker in v:
            host, sep, port = broker.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"broker {broker!r} is not host:port")
        return v

    @field_validator("timeout", "batch_timeout")
    @classmethod
    def _zero_means_default(cls, v: timedelta, info) -> timedelta:
        if v:
            return v
        return timedelta(seconds=10) if info.field_name == "timeout" else timedelta(seconds=1)

    @field_validator("batch_size")
    @classmethod
    def _zero_batch_means_default(cls, v: int) -> int:
        return v or 100

    @model_validator(mode="after")
    def _consistent(self) -> KafkaCluster:
        if not self.enabled:
            return self
        if not self.brokers:
            raise ValueError(f"cluster {self.id!r} is enabled but lists no brokers")
        if bool(self.ssl_cert) != bool(self.ssl_key):
            raise ValueError("ssl-cert and ssl-key must be given together")
        if self.effective_mechanism == "OAUTHBEARER":
            self._check_oauth()
        if self.effective_mechanism == "GSSAPI" and not self.sasl_gssapi_service_name:
            raise ValueError("sasl-mechanism GSSAPI needs sasl-gssapi-service-name")
        return self

    def _check_oauth(self) -> None:
        if self.sasl_access_token.get_secret_value():
            if self.sasl_oauth_service or self.sasl_oauth_token_url:
                raise ValueError(
                    "sasl-access-token is a static token: leave sasl-oauth-service "
                    "and sasl-oauth-token-url empty"
                )
            return
        if not self.sasl_oauth_client_id or not self.sasl_oauth_client_secret.get_secret_value():
            raise ValueError(
                "sasl-mechanism OAUTHBEARER needs sasl-oauth-client-id and "
                "sasl-oauth-client-secret (or a static sasl-access-token)"
            )
        service = self.sasl_oauth_service or "custom"
        if service in ("custom", "auth0") and not self.sasl_oauth_token_url:
            raise ValueError(f"sasl-oauth-service {service!r} needs sasl-oauth-token-url")
        if service == "auth0" and "audience" not in self.sasl_oauth_parameters:
            raise ValueError("sasl-oauth-service 'auth0' needs sasl-oauth-parameters.audience")
        if service == "azuread":
            if not self.sasl_oauth_tenant_id:
                raise ValueError("sasl-oauth-service 'azuread' needs sasl-oauth-tenant-id")
            if self.sasl_oauth_token_url:
                raise ValueError("sasl-oauth-service 'azuread' takes no sasl-oauth-token-url")

    @property
    def effective_mechanism(self) -> str:
        """SASL is on when a username or a mechanism is set; a bare username means PLAIN."""
        if self.sasl_mechanism:
            return self.sasl_mechanism
        return "PLAIN" if self.sasl_username else ""
