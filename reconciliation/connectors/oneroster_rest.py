"""The HTTP side of a OneRoster REST source: authentication, retries and paging.

Shared by the OneRoster API and ClassLink connectors. What it guarantees:

- Authentication: two-legged OAuth 1.0a (HMAC-SHA256 or HMAC-SHA1) signed by authlib,
  OAuth 2 client credentials with scopes (a token shared by every thread, renewed before
  it expires and once more on a 401 mid-read), or a static bearer token (ClassLink's
  OneRoster proxy).
- Retries: 429, 502, 503, 504, timeouts and connection errors are retried with
  exponential backoff and jitter; a `Retry-After` is honoured and pauses every thread,
  because a rate limit applies to the whole client. Other 4xx and 500 fail at once.
- Paging: `limit`/`offset` pages fetched concurrently (at most `concurrency` requests at
  once) when the server sends a total (`X-Total-Count`, or ClassLink's `x-count`),
  otherwise `Link: rel="next"` is followed (absolute or relative, its query re-encoded
  for signing), otherwise offsets are asked until an empty page. A server's cap on
  `limit` is learnt from the first page. A page that holds fewer rows than it should, a
  total that changes while reading, or a record served on two pages (rows that moved
  under offset paging) raises: a silently partial roster would turn into thousands of
  false "missing" findings.
- Answers: a 2xx that is not JSON (a login page) or carries an imsx failure, or a page
  without its records key (`users`; also accepted: the path's name or the singular),
  raises naming the URL.
- Errors name the method, URL (never credentials: they travel in headers) and HTTP
  status, and the OneRoster `imsx_*` status payload or OAuth error when there is one: its
  code and the first 200 characters of its description, with anything that looks like a
  credential masked (`mask_credentials`), since some servers echo the request's
  `Authorization` header or form body back in their errors. A body that is not JSON is
  never quoted.

No authlib or requests import at module level: importing the connectors stays fast.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import logging
import queue
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from reconciliation.connectors.base import ConnectorError
from reconciliation.credentials import Secret, quoted, redact

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: a Retry-After longer than this is capped: a nightly run should not stall for hours
MAX_RETRY_AFTER = 300.0
#: response headers that carry the collection's total, in order of preference
TOTAL_HEADERS = ("X-Total-Count", "x-count")


class OneRosterApiError(ConnectorError):
    """A request the server refused or that kept failing; names URL and status, never
    secrets: the values this process resolved are redacted, and whatever of the server's
    answer the message quotes went through `quoted`."""

    def __init__(
        self, message: str, *, url: str, status: int | None = None, code_minor: str | None = None
    ) -> None:
        self.url, self.status = url, status
        self.code_minor = quoted(code_minor, 64) if code_minor else code_minor
        super().__init__(redact(message))


class IncompleteReadError(OneRosterApiError):
    """The server's pages do not add up to its own total: the read is not trustworthy."""


@dataclass(frozen=True)
class ClientOptions:
    base_url: str
    page_size: int = 1000
    concurrency: int = 4
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_retries: int = 5
    retry_base_delay: float = 0.5
    retry_max_delay: float = 30.0
    total_headers: tuple[str, ...] = TOTAL_HEADERS

    def backoff(self, attempt: int) -> float:
        """Seconds before retry `attempt` (0-based): doubling, capped, half of it jitter."""
        ceiling = min(self.retry_max_delay, self.retry_base_delay * 2**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


# -- authentication ----------------------------------------------------------------------

_sha256_registered = False


def _register_hmac_sha256() -> None:
    """authlib's OAuth 1 client signs HMAC-SHA1 only; OneRoster 1.1 asks for HMAC-SHA256.

    The registered function signs authlib's own signature base string, so the parameter
    normalization stays authlib's (RFC 5849 section 3.4.1) and only the digest differs.
    """
    global _sha256_registered
    if _sha256_registered:
        return
    from authlib.oauth1 import ClientAuth
    from authlib.oauth1.rfc5849.signature import generate_signature_base_string
    from authlib.oauth1.rfc5849.util import escape

    def sign_hmac_sha256(client: Any, request: Any) -> str:
        base_string = generate_signature_base_string(request)
        key = f"{escape(client.client_secret or '')}&{escape(client.token_secret or '')}"
        digest = hmac.new(key.encode(), base_string.encode(), hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    ClientAuth.register_signature_method("HMAC-SHA256", sign_hmac_sha256)
    _sha256_registered = True


class _BearerAuth:
    """A requests auth callable (requests accepts any callable taking the request)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(****)"


class Authenticator:
    """Gives each request its credentials; `renew` is asked after a 401."""

    method = "none"

    def auth_for_request(self) -> Callable[[Any], Any] | None:
        return None

    def renew(self, used: Callable[[Any], Any] | None) -> bool:
        """Whether a fresh credential might succeed where `used` got a 401."""
        return False

    def hint(self) -> str:
        return "check the credentials in the settings"


class OAuth1Authenticator(Authenticator):
    """Two-legged OAuth 1.0a: each request signed with the consumer key and secret."""

    method = "oauth1"

    def __init__(
        self, consumer_key: Secret, consumer_secret: Secret, signature_method: str = "HMAC-SHA256"
    ) -> None:
        from authlib.integrations.requests_client import OAuth1Auth

        _register_hmac_sha256()
        self.signature_method = signature_method
        # OAuth1Auth holds no per-request state (nonce and timestamp are made per call),
        # so one instance signs for every thread.
        self._auth = OAuth1Auth(
            consumer_key.reveal(), consumer_secret.reveal(), signature_method=signature_method
        )

    def auth_for_request(self) -> Callable[[Any], Any]:
        return self._auth

    def hint(self) -> str:
        return (
            f"check auth.consumer_key and auth.consumer_secret, and that the server "
            f"accepts {self.signature_method} (auth.signature_method)"
        )


class _TransientError(Exception):
    """A token request worth retrying (its message is shown if retries run out)."""


class OAuth2ClientCredentials(Authenticator):
    """OAuth 2 client credentials: one token for all threads, fetched with authlib.

    Renewed shortly before `expires_in` runs out, and when the server answers 401 to a
    token we still believed valid (revoked, or the server's clock disagrees).
    """

    method = "oauth2"

    def __init__(
        self,
        token_url: str,
        client_id: Secret,
        client_secret: Secret,
        scopes: Sequence[str],
        options: ClientOptions,
        client_authentication: str = "basic",
    ) -> None:
        self.token_url, self.scopes, self.options = token_url, list(scopes), options
        #: RFC 6749 2.3.1: HTTP Basic (the spec's) or the form body (some servers' only way)
        self.client_authentication = client_authentication
        self._client_id, self._client_secret = client_id, client_secret
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        self.fetches = 0

    def _fetch(self) -> None:
        """Fetch a token, retrying what the resource requests retry (429/5xx, network)."""
        where = f"POST {self.token_url}"
        attempt = 0
        while True:
            try:
                token = self._fetch_once(where)
                break
            except _TransientError as exc:
                if attempt >= self.options.max_retries:
                    raise OneRosterApiError(
                        f"{where}: {exc} after {attempt + 1} attempts", url=self.token_url
                    ) from None
                time.sleep(self.options.backoff(attempt))
                attempt += 1
        if not token.get("access_token"):
            raise OneRosterApiError(
                f"{where}: the answer holds no access_token", url=self.token_url
            )
        lifetime = float(token.get("expires_in") or 3600)
        self._token = str(token["access_token"])
        # renew a little early: by 10% of the lifetime, at most 30 s
        self._renew_at = time.monotonic() + lifetime - min(30.0, lifetime * 0.1)
        self.fetches += 1

    def _fetch_once(self, where: str) -> Mapping[str, Any]:
        import requests
        from authlib.integrations.base_client import OAuthError
        from authlib.integrations.requests_client import OAuth2Session

        def refuse_transient(response: requests.Response) -> requests.Response:
            if response.status_code in RETRY_STATUSES:
                raise _TransientError(f"HTTP {response.status_code}")
            return response

        try:
            with OAuth2Session(
                self._client_id.reveal(),
                self._client_secret.reveal(),
                scope=" ".join(self.scopes),
                token_endpoint_auth_method=f"client_secret_{self.client_authentication}",
            ) as session:
                session.register_compliance_hook("access_token_response", refuse_transient)
                return session.fetch_token(
                    self.token_url,
                    grant_type="client_credentials",
                    timeout=(self.options.connect_timeout, self.options.read_timeout),
                )
        except OAuthError as exc:
            hint = {
                "invalid_client": "check auth.client_id and auth.client_secret (and "
                "auth.client_authentication: basic or post)",
                "invalid_scope": f"the server refused the scopes {self.scopes} (auth.scopes)",
            }.get(exc.error or "", "check the auth settings")
            said = f" ({quoted(str(exc.description))})" if exc.description else ""
            raise OneRosterApiError(
                f"{where}: token request refused: {quoted(str(exc.error), 64)}{said}; {hint}",
                url=self.token_url,
            ) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _TransientError(f"token request failed ({type(exc).__name__})") from None
        except requests.HTTPError as exc:
            # an error status without an OAuth error object (an HTML page, a gateway)
            status = exc.response.status_code if exc.response is not None else None
            raise OneRosterApiError(
                f"{where}: HTTP {status} without a token; check auth.token_url, "
                f"auth.client_id and auth.client_secret",
                url=self.token_url,
                status=status,
            ) from None
        except (requests.RequestException, ValueError):
            raise OneRosterApiError(
                f"{where}: the answer is not a token (not a JSON object); check auth.token_url",
                url=self.token_url,
            ) from None

    def auth_for_request(self) -> Callable[[Any], Any]:
        with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                self._fetch()
            assert self._token is not None
            return _BearerAuth(self._token)

    def renew(self, used: Callable[[Any], Any] | None) -> bool:
        with self._lock:
            if isinstance(used, _BearerAuth) and used.token == self._token:
                self._token = None  # another thread may already have replaced it
        return True

    def hint(self) -> str:
        return f"check auth.client_id, auth.client_secret and the scopes {self.scopes}"


class StaticBearer(Authenticator):
    """A bearer token given in the settings (ClassLink's OneRoster proxy)."""

    method = "bearer"

    def __init__(self, token: Secret) -> None:
        self._auth = _BearerAuth(token.reveal())

    def auth_for_request(self) -> Callable[[Any], Any]:
        return self._auth

    def hint(self) -> str:
        return "check the access token (a token is issued per application)"


# -- the client ----------------------------------------------------------------------------


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    token_renewals: int = 0
    pages: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "token_renewals": self.token_renewals,
            "pages": self.pages,
        }


@dataclass(frozen=True)
class Reply:
    """A response read in full: the URL we asked for (as errors show it), status, headers,
    body and the absolute `Link: rel="next"` target, if any."""

    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    next_url: str | None = None

    def document(self) -> dict[str, Any]:
        """The body as a JSON object, or an error naming the URL."""
        try:
            document = json.loads(self.body)
        except ValueError:
            kind = quoted(self.headers.get("Content-Type") or "no Content-Type", 60)
            raise OneRosterApiError(
                f"GET {self.url}: HTTP {self.status} but the answer is not JSON ({kind}); "
                "a login page or a proxy in the way? check base_url",
                url=self.url,
                status=self.status,
            ) from None
        if not isinstance(document, dict):
            raise OneRosterApiError(
                f"GET {self.url}: the answer is not a JSON object", url=self.url, status=self.status
            )
        status_info = _status_info(document)
        if status_info.get("code_major", "").lower() in ("failure", "unsupported"):
            # some servers answer 200 with an imsx failure instead of the records
            raise OneRosterApiError(
                f"GET {self.url} answered HTTP {self.status} with imsx_codeMajor "
                f"{status_info['code_major']}{_status_details(status_info)}",
                url=self.url,
                status=self.status,
                code_minor=status_info.get("code_minor") or None,
            )
        return document

    def total(self, headers: Sequence[str]) -> int | None:
        """The collection's total from the first of `headers` present (None: not sent)."""
        for header in headers:
            value = self.headers.get(header)
            if value is not None:
                try:
                    return int(value)
                except ValueError:
                    raise OneRosterApiError(
                        f"GET {self.url}: {header} is not a number: {quoted(value, 20)!r}",
                        url=self.url,
                    ) from None
        return None


@dataclass(frozen=True)
class Page:
    url: str
    rows: list[dict[str, Any]]
    total: int | None
    next_url: str | None


class OneRosterClient:
    """Reads OneRoster REST collections and records from one base URL."""

    def __init__(self, options: ClientOptions, authenticator: Authenticator) -> None:
        self.options = options
        self.auth = authenticator
        self.base_url = options.base_url.rstrip("/")
        self.stats = ClientStats()
        self._sessions: queue.SimpleQueue[requests.Session] = queue.SimpleQueue()
        self._pause_lock = threading.Lock()
        self._pause_until = 0.0
        # the one limit on requests in flight, however reads nest their thread pools
        self._slots = threading.BoundedSemaphore(options.concurrency)

    # -- one request, with retries ---------------------------------------------------------

    @contextmanager
    def _session(self) -> Iterator[requests.Session]:
        """A requests Session is not thread-safe: each request borrows one from a pool."""
        try:
            session = self._sessions.get_nowait()
        except queue.Empty:
            session = self._new_session()
        try:
            yield session
        finally:
            self._sessions.put(session)

    def _new_session(self) -> requests.Session:
        """A session that reads the proxy and CA settings of the environment once, not on
        every request (requests' per-request lookup costs more than signing it)."""
        import os

        import requests

        session = requests.Session()
        session.headers["Accept"] = "application/json"
        session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
        session.verify = (
            os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        )
        session.trust_env = False
        return session

    def close(self) -> None:
        while True:
            try:
                self._sessions.get_nowait().close()
            except queue.Empty:
                return

    def url(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        """The full URL of `path` below the base URL (as shown in errors)."""
        url = path
        if not path.startswith(("http://", "https://")):
            url = f"{self.base_url}/{path.lstrip('/')}"
        return f"{url}?{urlencode(params)}" if params else url

    def _pause(self, seconds: float) -> None:
        """A Retry-After holds back every thread, not only the one that was told."""
        with self._pause_lock:
            self._pause_until = max(self._pause_until, time.monotonic() + seconds)

    def _wait_for_pause(self) -> None:
        while True:
            with self._pause_lock:
                remaining = self._pause_until - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(remaining)

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Reply:
        """GET with retries; returns a 2xx reply or raises OneRosterApiError."""
        import requests

        url = self.url(path, params)
        attempt, renewed = 0, False
        while True:
            self._wait_for_pause()
            auth = self.auth.auth_for_request()
            self.stats.add(requests=1)
            try:
                with self._slots, self._session() as session:
                    reply = self._send(session, url, auth)
            except requests.RequestException as exc:
                timed_out = isinstance(exc, requests.Timeout) or "timed out" in str(exc)
                problem = "timed out" if timed_out else "connection failed"
                if attempt >= self.options.max_retries:
                    raise OneRosterApiError(
                        f"GET {url}: {problem} ({type(exc).__name__}) after {attempt + 1} attempts",
                        url=url,
                    ) from None
                time.sleep(self.options.backoff(attempt))
                attempt += 1
                self.stats.add(retries=1)
                continue
            if reply.status in RETRY_STATUSES and attempt < self.options.max_retries:
                retry_after = _retry_after(reply.headers.get("Retry-After"))
                if retry_after is not None:
                    self._pause(retry_after)
                time.sleep(0.0 if retry_after is not None else self.options.backoff(attempt))
                attempt += 1
                self.stats.add(retries=1)
                continue
            if reply.status == 401 and not renewed and self.auth.renew(auth):
                renewed = True
                self.stats.add(token_renewals=1)
                continue
            if reply.status >= 400:
                raise self._error(reply, attempt, renewed)
            return reply

    def _send(self, session: requests.Session, url: str, auth: Any) -> Reply:
        """One GET, its body read in large chunks: requests' default 10 KB chunks cost a
        GIL hand-over each, which starves concurrent pages of a big collection."""
        response = session.get(
            url,
            auth=auth,
            stream=True,
            timeout=(self.options.connect_timeout, self.options.read_timeout),
        )
        try:
            body = b"".join(response.iter_content(chunk_size=1 << 20))
        finally:
            response.close()
        next_url = _next_link(response.headers.get("Link"))
        return Reply(
            url,
            response.status_code,
            response.headers,
            body,
            _canonical_url(urljoin(response.url, next_url)) if next_url else None,
        )

    def _error(self, reply: Reply, retries: int, renewed: bool = False) -> OneRosterApiError:
        try:
            status_info = _status_info(json.loads(reply.body))
        except ValueError:
            status_info = {}
        message = f"GET {reply.url} answered HTTP {reply.status}{_status_details(status_info)}"
        hints = {
            401: ("a renewed token was refused too; " if renewed else "") + self.auth.hint(),
            403: "the credentials are valid but lack access to this resource (scopes, district "
            "permissions)",
            404: "check base_url and the OneRoster version",
        }
        if reply.status in RETRY_STATUSES:
            message += f"; gave up after {retries} retries"
        elif reply.status in hints:
            message += f"; {hints[reply.status]}"
        return OneRosterApiError(
            message, url=reply.url, status=reply.status, code_minor=status_info.get("code_minor")
        )

    def get_record(self, path: str, key: str) -> dict[str, Any] | None:
        """One record (`users/{id}` -> `{"user": {...}}`); None when the server says 404."""
        try:
            reply = self.get(path)
        except OneRosterApiError as exc:
            if exc.status == 404:
                return None
            raise
        record = reply.document().get(key)
        if not isinstance(record, dict):
            raise OneRosterApiError(
                f"GET {reply.url}: the answer has no {key!r} object",
                url=reply.url,
                status=reply.status,
            )
        return record

    # -- paging ------------------------------------------------------------------------------

    def _page(self, path: str, key: str, params: Mapping[str, Any]) -> Page:
        reply = self.get(path, params)
        document = reply.document()
        rows = document.get(key)
        if rows is None:
            # servers differ on the envelope: `/schools` as "schools" (not "orgs"), or
            # a collection under its singular name ("user")
            collection = urlsplit(reply.url).path.rstrip("/").rsplit("/", 1)[-1]
            singular = key[:-2] if key.endswith("sses") else key[:-1]
            rows = next(
                (document[k] for k in (collection, singular) if isinstance(document.get(k), list)),
                None,
            )
        if not isinstance(rows, list):
            found = ", ".join(repr(k[:40]) for k in list(document)[:10]) or "nothing"
            raise OneRosterApiError(
                f"GET {reply.url}: the answer has no {key!r} list (it holds {found})",
                url=reply.url,
                status=reply.status,
            )
        self.stats.add(pages=1)
        return Page(reply.url, rows, reply.total(self.options.total_headers), reply.next_url)

    def read_collections(
        self,
        collections: Mapping[str, tuple[str, str, Mapping[str, Any]]],
    ) -> dict[str, list[dict[str, Any]]]:
        """Read whole collections: name -> (path, JSON key, extra query params).

        The first pages of every collection go out together; each tells its total, and
        the remaining pages of all collections then share one pool of `concurrency`
        threads, so a small collection never leaves threads idle behind a big one.
        """
        limit = self.options.page_size
        with ThreadPoolExecutor(
            max_workers=self.options.concurrency, thread_name_prefix="oneroster"
        ) as pool:
            try:
                return self._read_all(pool, collections, limit)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    def _read_all(
        self,
        pool: ThreadPoolExecutor,
        collections: Mapping[str, tuple[str, str, Mapping[str, Any]]],
        limit: int,
    ) -> dict[str, list[dict[str, Any]]]:
        def fetch(
            path: str, key: str, extra: Mapping[str, Any], size: int, offset: int
        ) -> Future[Page]:
            return pool.submit(self._page, path, key, {**extra, "limit": size, "offset": offset})

        firsts = {
            name: fetch(path, key, extra, limit, 0)
            for name, (path, key, extra) in collections.items()
        }
        results: dict[str, list[dict[str, Any]]] = {}
        pending: dict[str, tuple[int, _SeenIds, list[tuple[int, int, Future[Page]]]]] = {}
        for name, (path, key, extra) in collections.items():
            first = firsts[name].result()
            seen = _SeenIds(name)
            seen.add(first)
            results[name] = list(first.rows)
            if first.total is None:
                results[name] = self._follow_links(pool, first, seen, path, key, extra, limit)
                continue
            size = self._page_size(first, limit)
            pending[name] = (
                first.total,
                seen,
                [
                    (offset, min(size, first.total - offset), fetch(path, key, extra, size, offset))
                    for offset in range(size, first.total, size)
                ],
            )
        for name, (total, seen, pages) in pending.items():
            for offset, expected, future in pages:
                page = future.result()
                _check_page(name, page, offset, expected, total)
                seen.add(page)
                results[name].extend(page.rows)
        return results

    def read_collection(
        self, path: str, key: str, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        return self.read_collections({key: (path, key, params or {})})[key]

    @staticmethod
    def _page_size(first: Page, limit: int) -> int:
        """The server's page size: ours, or a smaller cap the server applied to the first page.

        A cap is safe to adopt: later offsets follow the rows actually received, so a first
        page that was merely cut short loses nothing either. A server that ignores `limit`
        and sends the whole collection at once leaves nothing to page.
        """
        assert first.total is not None
        got = len(first.rows)
        if got > limit and got == first.total:
            return got
        if got > min(limit, first.total):
            raise IncompleteReadError(
                f"GET {first.url}: {got} rows on a page of limit {limit} "
                f"with a total of {first.total}",
                url=first.url,
            )
        if not first.rows and first.total:
            raise IncompleteReadError(
                f"GET {first.url}: no rows although the total is {first.total}", url=first.url
            )
        if 0 < got < min(limit, first.total):
            log.info("%s: the server pages by %d rows, not %d", first.url, got, limit)
            return got
        return limit

    def _follow_links(
        self,
        pool: ThreadPoolExecutor,
        first: Page,
        seen: _SeenIds,
        path: str,
        key: str,
        extra: Mapping[str, Any],
        limit: int,
    ) -> list[dict[str, Any]]:
        """No total: follow `Link: rel="next"`, else ask for the next offset until a page
        comes back empty. Sequential by nature.

        Every page that more rows follow must be full: as full as the `limit` its URL asked
        for, or the server's cap, learnt from a short first page that more rows follow.
        Without links, a short page is confirmed as the last by asking once more (one
        request per collection): without a total nothing else tells it from a cut-short page.
        """
        rows, page, cap, offset = list(first.rows), first, limit, 0
        while page.rows:
            offset += len(page.rows)
            if page.next_url is not None:
                asked = min(_asked_limit(page.url) or limit, cap)
                url = self._same_server(page.url, page.next_url)
                following = pool.submit(self._page, url, key, {}).result()
            elif first.next_url is None:
                asked = cap
                params = {**extra, "limit": cap, "offset": offset}
                following = pool.submit(self._page, path, key, params).result()
            else:
                return rows  # the server's links end here
            if following.rows and len(page.rows) < asked:
                if page is not first:
                    raise IncompleteReadError(
                        f"GET {page.url}: page cut short ({len(page.rows)} rows of {asked}) "
                        "before the last page; not reading a partial roster",
                        url=page.url,
                    )
                cap = len(first.rows)
                log.info("%s: the server pages by %d rows, not %d", first.url, cap, limit)
            seen.add(following)
            rows.extend(following.rows)
            page = following
        return rows

    def _same_server(self, url: str, next_url: str) -> str:
        """A next-page link, only to our own server (it gets our credentials). A link to
        plain http on our https host (a TLS-terminating proxy wrote it) is read over https."""
        base, target = urlsplit(self.base_url), urlsplit(next_url)
        if target.netloc.lower() != base.netloc.lower() or target.scheme not in ("http", "https"):
            raise OneRosterApiError(
                f"GET {url}: the next-page link leaves {base.netloc}; not followed", url=url
            )
        if target.scheme != base.scheme:
            if base.scheme == "http":
                raise OneRosterApiError(
                    f"GET {url}: the next-page link switches to https; set base_url to https",
                    url=url,
                )
            return urlunsplit(target._replace(scheme="https"))
        return next_url


class _SeenIds:
    """The sourcedIds read so far from one collection. A sourcedId on two pages means the
    rows moved under offset paging (records added or deleted while reading, or no stable
    order on the server): other rows were skipped then, so the read cannot be trusted."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ids: set[str] = set()

    def add(self, page: Page) -> None:
        ids = {
            sid
            for row in page.rows
            if isinstance(row, dict) and isinstance(sid := row.get("sourcedId"), str)
        }
        if not self.ids.isdisjoint(ids):
            repeated = min(self.ids & ids)
            raise IncompleteReadError(
                f"GET {page.url}: {self.name} record {repeated!r} came on an earlier page "
                "too: the records moved while they were paged (changed during the read, or "
                "served in no stable order), so others were skipped; run it again. If it "
                "recurs, the server lists this record twice: ask the SIS vendor to fix it",
                url=page.url,
            )
        self.ids |= ids


def _check_page(name: str, page: Page, offset: int, expected: int, total: int | None) -> None:
    if page.total is not None and page.total != total:
        raise IncompleteReadError(
            f"GET {page.url}: the {name} total changed during the read ({total} at the first "
            f"page, {page.total} now); the data changed under the read, run it again",
            url=page.url,
        )
    if len(page.rows) != expected:
        raise IncompleteReadError(
            f"GET {page.url}: page cut short: {len(page.rows)} rows where {expected} were "
            f"due (offset {offset} of {total}); not reading a partial {name} roster",
            url=page.url,
        )


_LINK = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]*)*)")
_REL = re.compile(r"""\brel\s*=\s*(?:"([^"]*)"|([^\s;,]+))""", re.IGNORECASE)


def _next_link(header: str | None) -> str | None:
    """The `rel="next"` target of a Link header. Not requests' `response.links`: that
    strips quotes off the URL's ends, and `...filter=status='active'` ends in one."""
    for url, params in _LINK.findall(header or ""):
        rel = _REL.search(params)
        if rel and "next" in (rel.group(1) or rel.group(2) or "").lower().split():
            return url.strip()
    return None


def _canonical_url(url: str) -> str:
    """`url` with its query re-encoded: a server's Link may carry raw quotes or spaces
    (`filter=status='active'`), which an OAuth 1.0a signature cannot be computed over."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    return urlunsplit(parts._replace(query=urlencode(parse_qsl(parts.query, True))))


def _asked_limit(url: str) -> int | None:
    """The `limit` a page URL asks for (None: it names none)."""
    value = dict(parse_qsl(urlsplit(url).query)).get("limit")
    return int(value) if value is not None and value.isdigit() else None


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = moment.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _status_info(document: Any) -> dict[str, str]:
    """code_major/minor and description from an imsx payload (1.1 or 1.2, whatever the
    key case: servers write imsx_codeMinor and imsx_CodeMinor) or an OAuth error."""
    candidates: list[Any] = [document]
    if isinstance(document, dict):
        for name, inner in document.items():
            if name.lower() in ("imsx_statusinfo", "statusinfoset", "imsx_statusinfoset"):
                candidates += inner if isinstance(inner, list) else [inner]
    for item in candidates:
        if not isinstance(item, dict):
            continue
        fields = {name.lower(): value for name, value in item.items()}
        if "imsx_codemajor" in fields:
            return {
                "code_major": str(fields["imsx_codemajor"]),
                "code_minor": _code_minor(fields.get("imsx_codeminor")),
                "description": str(fields.get("imsx_description") or ""),
            }
        if "error" in item and isinstance(item["error"], str):
            return {
                "code_minor": item["error"],
                "description": str(item.get("error_description") or ""),
            }
    return {}


def _status_details(status_info: Mapping[str, str]) -> str:
    """` (code_minor): description` for a message, from `_status_info`: the server's
    words, so `quoted` (credentials masked, cut short)."""
    details = f" ({quoted(status_info['code_minor'], 64)})" if status_info.get("code_minor") else ""
    if status_info.get("description"):
        details += f": {quoted(status_info['description'])}"
    return details


def _code_minor(value: Any) -> str:
    if isinstance(value, str):
        return value
    fields = None
    if isinstance(value, dict):
        fields = next((v for k, v in value.items() if k.lower() == "imsx_codeminorfield"), None)
    if isinstance(fields, dict):
        fields = [fields]
    if isinstance(fields, list):
        return ", ".join(
            str(v)
            for f in fields
            if isinstance(f, dict)
            for k, v in f.items()
            if k.lower() == "imsx_codeminorfieldvalue" and v
        )
    return ""


def parallel_map(
    client: OneRosterClient, function: Callable[[Any], Any], items: Sequence[Any]
) -> list[Any]:
    """Run `function` over `items` on up to `concurrency` threads, keeping the order."""
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=client.options.concurrency) as pool:
        return list(pool.map(function, items))
