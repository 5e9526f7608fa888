"""A local OpenID Connect provider for the gateway's tests, speaking the real protocol:
discovery document, authorization-code flow with a sign-in form, `client_secret_basic`
or `client_secret_post` at the token endpoint, RS256 ID tokens signed with joserfc
(authlib's JOSE library: `iss`, `aud`, `exp`, `nonce`, `auth_time`, `email`) and their
JWKS.

It honours `prompt=login` (the user signs in again: a new `auth_time`) and records each
authorization request's parameters (`requests`), so a test can see the step-up ask for
it. Without `prompt=login` a user already signed in here (the provider's own cookie) is
sent back at once with the earlier `auth_time`, as real providers do.
"""

from __future__ import annotations

import base64
import html
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey

FORM = """<!doctype html><html><body><h1>Local identity provider</h1>
<form method="post" action="/authorize">{hidden}
<label>Email <input name="email" id="email"></label>
<button type="submit" id="sign-in">Sign in</button></form></body></html>"""


@dataclass
class Provider:
    client_id: str
    client_secret: str
    users: set[str]
    url: str = ""
    key: Any = None
    requests: list[dict[str, str]] = field(default_factory=list)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    signed_in: dict[str, tuple[str, float]] = field(default_factory=dict)  # cookie -> user

    @property
    def discovery_url(self) -> str:
        return f"{self.url}/.well-known/openid-configuration"

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["openid", "email", "profile"],
            "claims_supported": ["sub", "email", "auth_time", "nonce"],
        }

    def id_token(self, grant: dict[str, Any]) -> str:
        now = int(time.time())
        claims = {
            "iss": self.url,
            "sub": f"sub-{grant['email']}",
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "auth_time": int(grant["auth_time"]),
            "nonce": grant["nonce"],
            "email": grant["email"],
        }
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.key)


def _handler(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: str, kind: str, headers: dict | None = None) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _json(self, status: int, payload: Any) -> None:
            self._send(status, json.dumps(payload), "application/json")

        def _cookie_user(self) -> tuple[str, float] | None:
            for part in (self.headers.get("Cookie") or "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == "idp" and value in provider.signed_in:
                    return provider.signed_in[value]
            return None

        def _redirect_with_code(
            self, params: dict[str, str], email: str, at: float, session: str | None = None
        ) -> None:
            """Back to the client with a new code; `session`: also sign the browser in."""
            code = secrets.token_urlsafe(16)
            provider.codes[code] = {
                "email": email,
                "auth_time": at,
                "nonce": params.get("nonce", ""),
                "redirect_uri": params["redirect_uri"],
            }
            query = urlencode({"code": code, "state": params.get("state", "")})
            self.send_response(302)
            self.send_header("Location", f"{params['redirect_uri']}?{query}")
            if session is not None:
                self.send_header("Set-Cookie", f"idp={session}; HttpOnly; Path=/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            path = urlsplit(self.path)
            if path.path == "/.well-known/openid-configuration":
                return self._json(200, provider.metadata())
            if path.path == "/jwks":
                return self._json(200, {"keys": [provider.key.as_dict(private=False)]})
            if path.path == "/authorize":
                params = {k: v[0] for k, v in parse_qs(path.query).items()}
                provider.requests.append(params)
                if params.get("client_id") != provider.client_id:
                    return self._send(400, "unknown client", "text/plain")
                if params.get("response_type") != "code" or "openid" not in params.get("scope", ""):
                    return self._send(400, "unsupported request", "text/plain")
                known = self._cookie_user()
                if known and params.get("prompt") != "login":
                    return self._redirect_with_code(params, known[0], known[1])
                hidden = "".join(
                    f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                    for k, v in params.items()
                )
                return self._send(200, FORM.format(hidden=hidden), "text/html")
            return self._send(404, "not found", "text/plain")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if self.path == "/authorize":
                email = form.get("email", "")
                if email not in provider.users:
                    return self._send(401, "unknown user", "text/plain")
                at = time.time()
                session = secrets.token_urlsafe(16)
                provider.signed_in[session] = (email, at)
                return self._redirect_with_code(form, email, at, session)
            if self.path == "/token":
                client_id, secret = form.get("client_id"), form.get("client_secret")
                basic = self.headers.get("Authorization", "")
                if basic.startswith("Basic "):
                    decoded = base64.b64decode(basic[6:]).decode()
                    client_id, _, secret = decoded.partition(":")
                if client_id != provider.client_id or secret != provider.client_secret:
                    return self._json(401, {"error": "invalid_client"})
                grant = provider.codes.pop(form.get("code", ""), None)
                if (
                    form.get("grant_type") != "authorization_code"
                    or grant is None
                    or grant["redirect_uri"] != form.get("redirect_uri")
                ):
                    return self._json(400, {"error": "invalid_grant"})
                return self._json(
                    200,
                    {
                        "access_token": secrets.token_urlsafe(24),
                        "token_type": "Bearer",
                        "expires_in": 300,
                        "id_token": provider.id_token(grant),
                    },
                )
            return self._send(404, "not found", "text/plain")

    return Handler


@contextmanager
def serve_provider(client_id: str, client_secret: str, users: set[str]) -> Iterator[Provider]:
    provider = Provider(client_id, client_secret, users)
    provider.key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(provider))
    provider.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
