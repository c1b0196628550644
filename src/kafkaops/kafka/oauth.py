"""OAUTHBEARER tokens for librdkafka's `oauth_cb`: a static token, or client credentials.

librdkafka calls the callback from its own poll/background threads and expects a blocking answer,
so the token request is a plain blocking HTTP POST (stdlib urllib) rather than the asyncio stack.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from kafkaops.config.kafka import KafkaCluster

OAuthCallback = Callable[[str], tuple[str, float, str, dict[str, str]]]

AZURE_TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
STATIC_TOKEN_LIFETIME = 3600.0


class TokenError(RuntimeError):
    """The token endpoint refused or answered nonsense; the text never contains the secret."""


@dataclass
class ClientCredentials:
    """An OAuth 2.0 client-credentials grant, refreshed by librdkafka before expiry - margin."""

    token_url: str
    client_id: str
    client_secret: str
    scopes: list[str] = field(default_factory=list)
    parameters: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)
    expiry_margin: float = 10.0
    timeout: float = 10.0

    def __call__(self, _oauthbearer_config: str = "") -> tuple[str, float, str, dict[str, str]]:
        form = {"grant_type": "client_credentials", **self.parameters}
        if self.scopes:
            form["scope"] = " ".join(self.scopes)
        request = urllib.request.Request(
            self.token_url,
            data=urllib.parse.urlencode(form).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        auth = f"{_quote(self.client_id)}:{_quote(self.client_secret)}"
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise TokenError(f"token endpoint {self.token_url} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise TokenError(f"token endpoint {self.token_url} unreachable: {exc}") from None
        except ValueError:
            raise TokenError(f"token endpoint {self.token_url} did not answer JSON") from None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise TokenError(f"token endpoint {self.token_url} answered without access_token")
        lifetime = float(body.get("expires_in") or STATIC_TOKEN_LIFETIME)
        expiry = time.time() + max(1.0, lifetime - self.expiry_margin)
        return token, expiry, self.client_id, dict(self.extensions)


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


@dataclass
class StaticToken:
    """A fixed `sasl-access-token`, handed out again whenever librdkafka asks for a refresh."""

    token: str
    principal: str = ""
    extensions: dict[str, str] = field(default_factory=dict)

    def __call__(self, _oauthbearer_config: str = "") -> tuple[str, float, str, dict[str, str]]:
        expiry = time.time() + STATIC_TOKEN_LIFETIME
        return self.token, expiry, self.principal or "kafkaops", dict(self.extensions)


def token_provider(cluster: KafkaCluster) -> OAuthCallback:
    """The provider the cluster section asks for (validation already ensured it is complete)."""
    static = cluster.sasl_access_token.get_secret_value()
    if static:
        return StaticToken(static, cluster.sasl_username, dict(cluster.sasl_extensions))
    url = cluster.sasl_oauth_token_url
    if cluster.sasl_oauth_service == "azuread":
        url = AZURE_TOKEN_URL.format(tenant=_quote(cluster.sasl_oauth_tenant_id))
    return ClientCredentials(
        token_url=url,
        client_id=cluster.sasl_oauth_client_id,
        client_secret=cluster.sasl_oauth_client_secret.get_secret_value(),
        scopes=list(cluster.sasl_oauth_scopes),
        parameters=dict(cluster.sasl_oauth_parameters),
        extensions=dict(cluster.sasl_extensions),
        expiry_margin=cluster.sasl_oauth_token_expiry_margin.total_seconds(),
        timeout=cluster.timeout.total_seconds(),
    )
