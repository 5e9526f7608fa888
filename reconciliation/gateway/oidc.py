"""OpenID Connect sign-in with authlib: the provider by its discovery URL, our client id,
and the client secret as a credential reference (`env:NAME`, `aws-secretsmanager:ID#key`),
resolved when the gateway starts and never shown. The provider says who the user is (the
`email` claim by default); the accounts table says what they may do, so a user unknown
there is refused even with a valid ID token. The production step-up asks the provider to
sign the user in again (`prompt=login`, `max_age`) and checks the token's `auth_time`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from reconciliation.credentials import CredentialResolver, Secret

DISCOVERY_ENV = "RECONCILIATION_OIDC_DISCOVERY_URL"
CLIENT_ID_ENV = "RECONCILIATION_OIDC_CLIENT_ID"
CLIENT_SECRET_ENV = "RECONCILIATION_OIDC_CLIENT_SECRET"
USER_CLAIM_ENV = "RECONCILIATION_OIDC_USER_CLAIM"


class OIDCConfigError(ValueError):
    pass


@dataclass(frozen=True)
class OIDCConfig:
    discovery_url: str
    client_id: str
    client_secret: Secret
    user_claim: str = "email"

    @classmethod
    def from_environment(
        cls, environ: dict[str, str] | None = None, resolver: CredentialResolver | None = None
    ) -> OIDCConfig | None:
        """None when OIDC is not configured (local accounts only)."""
        env = os.environ if environ is None else environ
        url = env.get(DISCOVERY_ENV)
        if not url:
            return None
        client_id = env.get(CLIENT_ID_ENV)
        reference = env.get(CLIENT_SECRET_ENV)
        if not client_id or not reference:
            raise OIDCConfigError(
                f"{DISCOVERY_ENV} is set: set {CLIENT_ID_ENV} and {CLIENT_SECRET_ENV} "
                "(a credential reference such as env:NAME) too"
            )
        resolver = resolver or CredentialResolver(dict(env))
        try:
            secret = resolver.resolve(reference)
        except Exception as exc:  # CredentialError, or a literal value
            raise OIDCConfigError(f"{CLIENT_SECRET_ENV}: {exc}") from None
        return cls(url, client_id, secret, env.get(USER_CLAIM_ENV) or "email")


def register(config: OIDCConfig) -> Any:
    """authlib's Starlette client for the provider (discovery read on first use)."""
    from authlib.integrations.starlette_client import OAuth

    oauth = OAuth()
    return oauth.register(
        name="oidc",
        server_metadata_url=config.discovery_url,
        client_id=config.client_id,
        client_secret=config.client_secret.reveal(),
        client_kwargs={"scope": "openid email profile"},
    )


def user_of(claims: dict[str, Any], config: OIDCConfig) -> str | None:
    value = claims.get(config.user_claim)
    return str(value) if value else None
