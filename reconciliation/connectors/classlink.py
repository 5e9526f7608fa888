"""ClassLink as a source: OneRoster 1.1 REST, reached one of two ways.

- `roster_server`: the district's own Roster Server,
  `https://<tenant>-vn-v2.rosterserver.com/ims/oneroster/v1p1`, with requests signed by
  OAuth 1.0a (the application's consumer key and secret for that district).
- `oneroster_proxy`: ClassLink's OneRoster proxy,
  `https://oneroster-proxy.classlink.io/<APPID>/ims/oneroster/v1p1`, with a bearer token;
  it counts rows in `x-count` and serves pages of up to 10,000 rows.

Everything else (retries on ClassLink's unpublished rate limits, paging that refuses
partial reads, the JSON mapping, the one-student read) is the OneRoster API connector's.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from reconciliation.connectors.oneroster_api import TUNING_PROPERTIES, OneRosterApiConnector
from reconciliation.connectors.oneroster_rest import (
    Authenticator,
    ClientOptions,
    OAuth1Authenticator,
    StaticBearer,
)
from reconciliation.settings import CREDENTIAL_REF, REF_OR_VALUE, SECURE_URL

ROSTER_SERVER_URL = "https://{tenant}-vn-v2.rosterserver.com/ims/oneroster/v1p1"
PROXY_URL = "https://oneroster-proxy.classlink.io/{app_id}/ims/oneroster/v1p1"
PROXY_PAGE_SIZE = 10_000


class ClassLinkConnector(OneRosterApiConnector):
    """`source.type = "classlink"`; see the module docstring for the two modes."""

    kind = "classlink"
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["type", "mode"],
        "additionalProperties": False,
        "properties": {
            "type": {"const": "classlink"},
            "mode": {"enum": ["roster_server", "oneroster_proxy"]},
            "tenant": {
                "type": "string",
                "pattern": "^[A-Za-z0-9-]+$",
                "description": "roster_server: the district's Roster Server name",
            },
            "app_id": {
                "type": "string",
                "pattern": "^[A-Za-z0-9_-]+$",
                "description": "oneroster_proxy: the application id in the proxy URL",
            },
            "base_url": {
                **SECURE_URL,
                "description": "overrides the URL built from tenant or app_id",
            },
            "consumer_key": REF_OR_VALUE,
            "consumer_secret": CREDENTIAL_REF,
            "signature_method": {"enum": ["HMAC-SHA256", "HMAC-SHA1"], "default": "HMAC-SHA256"},
            "access_token": {
                **CREDENTIAL_REF,
                "description": "oneroster_proxy: the bearer token (a reference)",
            },
            **TUNING_PROPERTIES,
            "page_size": {
                **TUNING_PROPERTIES["page_size"],
                "description": "default 1000 (roster_server), 10000 (oneroster_proxy)",
            },
        },
        "allOf": [
            {
                "if": {"properties": {"mode": {"const": "roster_server"}}},
                "then": {
                    "required": ["consumer_key", "consumer_secret"],
                    "anyOf": [{"required": ["tenant"]}, {"required": ["base_url"]}],
                },
            },
            {
                "if": {"properties": {"mode": {"const": "oneroster_proxy"}}},
                "then": {
                    "required": ["access_token"],
                    "anyOf": [{"required": ["app_id"]}, {"required": ["base_url"]}],
                },
            },
        ],
    }

    @property
    def proxy(self) -> bool:
        return self.config["mode"] == "oneroster_proxy"

    @property
    def version(self) -> str:
        return "1.1"

    def base_url(self) -> str:
        if self.config.get("base_url"):
            return str(self.config["base_url"]).rstrip("/")
        if self.proxy:
            return PROXY_URL.format(app_id=self.config["app_id"])
        return ROSTER_SERVER_URL.format(tenant=self.config["tenant"])

    def client_options(self) -> ClientOptions:
        options = super().client_options()
        if not self.proxy:
            return options
        return replace(
            options,
            page_size=self.config.get("page_size", PROXY_PAGE_SIZE),
            total_headers=("x-count", "X-Total-Count"),
        )

    def auth_method(self) -> str:
        return "bearer" if self.proxy else "oauth1"

    def authenticator(self) -> Authenticator:
        if self.proxy:
            return StaticBearer(self._credential(self.config["access_token"]))
        return OAuth1Authenticator(
            self._credential(self.config["consumer_key"], secret=False),
            self._credential(self.config["consumer_secret"]),
            self.config.get("signature_method", "HMAC-SHA256"),
        )
