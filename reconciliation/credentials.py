"""Credential references, resolved only when a connection opens and never shown.

Settings hold references, not secrets:

    env:NAME                               an environment variable
    aws-secretsmanager:SECRET_ID           a whole secret string
    aws-secretsmanager:SECRET_ID#json_key  one key of a JSON secret

A resolved value is wrapped in `Secret`, whose repr and str are masked; `reveal()` is
the one way to read it, called by the connector at the moment it connects. Values are
cached for the run (one Secrets Manager call per secret, not per request). `redact()`
removes every value this process resolved from a text (error messages, log lines), and
masks every URL in it with `mask_url()`: a URL's password and the values of query keys
that carry secrets (`?password=`, `?access_token=`, ...), which no reference resolved when
the URL came whole from a variable or from a driver's own error message.

The Secrets Manager endpoint is boto3's own configuration: region and credentials from
the usual AWS variables or instance role, and `AWS_ENDPOINT_URL_SECRETS_MANAGER` (or
`AWS_ENDPOINT_URL`) for a local endpoint, which is how the tests reach moto's server.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus, urlsplit

REFERENCE_PATTERN = r"^(env:[A-Za-z_][A-Za-z0-9_]*|aws-secretsmanager:[^#\s]+(#[^\s]+)?)$"
_REFERENCE = re.compile(REFERENCE_PATTERN)
MASK = "****"

#: query (and fragment) keys whose values are secrets, compared in lower case: libpq's
#: password keys, the usual API keys and tokens, and the signature of a pre-signed S3 URL
SECRET_QUERY_KEYS = frozenset(
    {
        "password",
        "sslpassword",
        "passwd",
        "pwd",
        "token",
        "secret",
        "key",
        "api_key",
        "apikey",
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "signature",
        "x-amz-signature",
        "x-amz-security-token",
    }
)
#: a URL inside free text: a scheme, `://`, then anything up to a space (a quote may be
#: part of a password, so the URL may take in a closing quote; see _TRAILING)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S+")
#: what closes a sentence, a bracket or a quotation right after a URL
_TRAILING = ").,;:!?]}>'\"`"


class CredentialError(Exception):
    """A reference that cannot be resolved. The message names the reference, not a value."""


def is_reference(value: str) -> bool:
    """A whole reference: `env:X` followed by a newline is none (`$` would allow it)."""
    return bool(_REFERENCE.fullmatch(value))


class Secret:
    """A resolved credential. Shows as `Secret(env:NAME)`: the reference, never the value."""

    __slots__ = ("_value", "reference")

    def __init__(self, reference: str, value: str) -> None:
        self.reference = reference
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.reference}, {MASK})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("a Secret is never pickled or sent to another process")


@dataclass(frozen=True)
class _Reference:
    kind: str  # 'env' | 'aws-secretsmanager'
    name: str
    key: str | None = None


def _parse(reference: str) -> _Reference:
    if not is_reference(reference):
        raise CredentialError(
            f"{reference.split(':', 1)[0]!r}... is not a credential reference "
            "(env:NAME or aws-secretsmanager:SECRET_ID[#json_key])"
        )
    kind, rest = reference.split(":", 1)
    name, _, key = rest.partition("#")
    return _Reference(kind, name, key or None)


_resolved_values: set[str] = set()
_resolved_lock = threading.Lock()


def redact(text: str) -> str:
    """Replace every credential value this process resolved by ****, and mask every URL in
    the text (`mask_url`): its password and its secret query values."""
    with _resolved_lock:
        values = sorted(_resolved_values, key=len, reverse=True)
    for value in values:
        if len(value) >= 4:
            text = text.replace(value, MASK)
    return _URL_IN_TEXT.sub(lambda found: _mask_url_in_text(found.group()), text)


def _mask_url_in_text(url: str) -> str:
    """A URL as found in a sentence: closing punctuation stays outside the masked value."""
    kept = url.rstrip(_TRAILING)
    return mask_url(kept) + url[len(kept) :]


def mask_url(url: str) -> str:
    """The URL with its password and the values of secret query keys (`SECRET_QUERY_KEYS`,
    any case, also in the fragment) replaced by ****; the rest as written, so the URL still
    says which host, database and options were meant. A text that is no URL is returned
    unchanged. Masking is on the safe side: a password may hold `@` or `/`."""
    scheme, separator, rest = url.partition("://")
    if not separator or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*", scheme):
        return url
    userinfo, host_and_path = _split_userinfo(rest)
    if userinfo is not None and ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        rest = f"{user}:{MASK}@{host_and_path}"
    before_fragment, hash_sign, fragment = rest.partition("#")
    path, question_mark, query = before_fragment.partition("?")
    return f"{scheme}://{path}{question_mark}{_mask_query(query)}{hash_sign}{_mask_query(fragment)}"


def _split_userinfo(rest: str) -> tuple[str | None, str]:
    """`user:password@host/path` -> (`user:password`, `host/path`), or (None, rest).

    The userinfo ends at the last `@` before the query: a password written with an
    unescaped `@` or `/` (`u:p@ss/w0rd@host`) is masked whole, whichever way a driver
    would read it; an `@` in the query (`?email=a@b`) is no userinfo. A password with a
    `?` or `#` (`u:p?ss@host`) is one too, when no `/` comes before its `@`."""
    at = re.split(r"[?#]", rest, maxsplit=1)[0].rfind("@")
    if at == -1:
        at = rest.find("@")
        if at == -1 or "/" in rest[:at]:
            return None, rest
    return rest[:at], rest[at + 1 :]


def _mask_query(query: str) -> str:
    """`a=1&password=x` -> `a=1&password=****` (`;` separates pairs too)."""
    if not query:
        return query
    pairs = re.split(r"([&;])", query)
    for index in range(0, len(pairs), 2):
        key, equals, value = pairs[index].partition("=")
        if equals and value and unquote_plus(key).strip().lower() in SECRET_QUERY_KEYS:
            pairs[index] = f"{key}={MASK}"
    return "".join(pairs)


def secret_query_keys(url: str) -> list[str]:
    """The query (and fragment) keys of a URL that carry a value that would be a secret,
    as written (`?PassWord=x` -> `['PassWord']`); empty for a text that is no URL."""
    if "://" not in url:
        return []
    _, _, rest = url.partition("://")
    before_fragment, _, fragment = rest.partition("#")
    query = before_fragment.partition("?")[2]
    keys = []
    for part in (query, fragment):
        for pair in re.split(r"[&;]", part):
            key, equals, value = pair.partition("=")
            if equals and value and unquote_plus(key).strip().lower() in SECRET_QUERY_KEYS:
                keys.append(unquote_plus(key))
    return keys


def urls_in(text: str) -> list[str]:
    """Every URL in a text (the whole text when it is one), as `redact` finds them."""
    return [found.group().rstrip(_TRAILING) for found in _URL_IN_TEXT.finditer(text)]


def url_has_literal_password(url: str) -> bool:
    """True for a URL that embeds a password (`postgresql://u:pw@host/db`)."""
    if is_reference(url):
        return False
    try:
        return bool(urlsplit(url).password)
    except ValueError:
        return False


class CredentialResolver:
    """Resolves references on demand and caches them for the life of the resolver (one run)."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        import os

        self._environ = environ if environ is not None else os.environ
        self._cache: dict[str, Secret] = {}
        self._secret_strings: dict[str, str] = {}
        self._lock = threading.Lock()

    def resolve(self, reference: str) -> Secret:
        with self._lock:
            cached = self._cache.get(reference)
            if cached is not None:
                return cached
            parsed = _parse(reference)
            value = self._env(parsed) if parsed.kind == "env" else self._aws(parsed)
            secret = Secret(reference, value)
            self._cache[reference] = secret
        with _resolved_lock:
            _resolved_values.add(value)
        return secret

    def value(self, reference_or_value: str) -> Secret:
        """Resolve a reference, or wrap a plain (non-secret) value the same way."""
        if is_reference(reference_or_value):
            return self.resolve(reference_or_value)
        return Secret("value", reference_or_value)

    def _env(self, ref: _Reference) -> str:
        value = self._environ.get(ref.name)
        if value is None or value == "":
            raise CredentialError(f"env:{ref.name}: the environment variable is not set")
        return value

    def _aws(self, ref: _Reference) -> str:
        secret_string = self._secret_strings.get(ref.name)
        if secret_string is None:
            secret_string = self._fetch_aws_secret(ref.name)
            self._secret_strings[ref.name] = secret_string
        if ref.key is None:
            return secret_string
        try:
            document = json.loads(secret_string)
        except json.JSONDecodeError:
            raise CredentialError(
                f"aws-secretsmanager:{ref.name}#{ref.key}: the secret is not JSON, so it has "
                "no keys; drop '#key' to use the whole string"
            ) from None
        if not isinstance(document, dict) or ref.key not in document:
            raise CredentialError(
                f"aws-secretsmanager:{ref.name}: the secret has no key {ref.key!r}"
            )
        value = document[ref.key]
        return value if isinstance(value, str) else json.dumps(value)

    def _fetch_aws_secret(self, secret_id: str) -> str:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            client = boto3.client("secretsmanager")
            answer = client.get_secret_value(SecretId=secret_id)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise CredentialError(f"aws-secretsmanager:{secret_id}: {code}") from None
        except BotoCoreError as exc:
            raise CredentialError(
                f"aws-secretsmanager:{secret_id}: {type(exc).__name__}: {exc}"
            ) from None
        if "SecretString" in answer:
            return str(answer["SecretString"])
        return bytes(answer["SecretBinary"]).decode("utf-8")


# -- what of a server's answer an error may quote -------------------------------------------

#: a header that carries credentials, with its value: `Authorization: Basic ...` up to the
#: end of the line, or a quoted value (`"Authorization": "Bearer ..."`, `'Cookie': '...'`)
_CREDENTIAL_HEADER = re.compile(
    r"""(?ix)\b((?:proxy-)?authorization|(?:set-)?cookie|x-api-key|api-key)
    (["']?\s*[:=]\s*)
    ("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\r\n]*)"""
)
#: a parameter that carries a credential, and its value: `client_secret=...`,
#: `oauth_signature="..."`, `"access_token": "..."` (not `oauth_problem`, which says why)
_CREDENTIAL_PARAM = re.compile(
    r"""(?ix)\b(oauth_(?!problem)\w+|client_(?:id|secret|assertion)|(?:access|refresh|id)_token|token
    |password|passwd|secret|api_?key|apikey|assertion|code_verifier)
    (["']?\s*[:=]\s*)
    ("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s&,;"'}\]]+)"""
)
#: an authorization scheme and its credential (`Basic dGVzd...`, `Bearer eyJ...`)
_CREDENTIAL_SCHEME = re.compile(r"(?i)\b(Basic|Bearer|Digest|Negotiate)\s+[A-Za-z0-9._~+/=-]{8,}")
#: a JSON Web Token wherever it stands
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def mask_credentials(text: str) -> str:
    """`text` with whatever looks like a credential replaced by ****: credential headers,
    parameters (`client_secret=`, `oauth_signature=`), `Basic`/`Bearer` values and JWTs.

    A server's error body may echo the request (some gateways and debug modes do), and
    `credentials.redact` only knows the values this process resolved: not a Basic
    header's base64, a fetched bearer token or an OAuth 1.0a signature."""
    text = _CREDENTIAL_HEADER.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)
    text = _CREDENTIAL_PARAM.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)
    text = _CREDENTIAL_SCHEME.sub(lambda m: f"{m[1]} {MASK}", text)
    return _JWT.sub(MASK, text)


def quoted(text: str, limit: int = 200) -> str:
    """A server's text as an error may quote it: credentials masked, on one line, at most
    `limit` characters (masked before cutting, so a cut never exposes half a secret)."""
    text = " ".join(mask_credentials(text).split())
    if len(text) <= limit:
        return text
    end = limit - 3
    while 0 < end < len(text) and text[end - 1 : end + 1] == "**":
        end += 1  # a whole mask, not a cut one
    return text[:end] + "..."
