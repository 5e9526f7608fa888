"""Sessions: a random token in a signed cookie, its state in the application database.

The cookie holds only the token, signed (itsdangerous) so a forged or altered cookie is
refused before any lookup; the database keeps the token's SHA-256, never the token. A
session ends after `IDLE_SECONDS` without activity, after `ABSOLUTE_SECONDS` in all, at
sign-out, or when its account is disabled. Activity is what a person does (a page load, a
mutation, the page's input ping: `touch=True`), not the UI's background polling and
subscriptions, which go on in any open tab. `auth_time` is the last sign-in (the production
step-up renews it). The clock is injected (`now`), so tests move time instead of sleeping.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeSerializer

from reconciliation.gateway import accounts, store

COOKIE_NAME = "reconciliation_session"
IDLE_SECONDS = 60 * 60
ABSOLUTE_SECONDS = 12 * 60 * 60
#: last_seen is written at most this often (the UI polls several times a second)
TOUCH_SECONDS = 30
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}

Clock = Callable[[], float]


@dataclass(frozen=True)
class Session:
    user: str
    role: str
    method: str
    created_at: float
    auth_time: float
    last_seen: float
    token_hash: str


@dataclass(frozen=True)
class Refusal:
    """Why a cookie does not sign anyone in (said to the user, never logged with the token)."""

    reason: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    def __init__(self, engine: sa.Engine, secret_key: str, now: Clock) -> None:
        self.engine = engine
        self.now = now
        self._signer = URLSafeSerializer(secret_key, salt="reconciliation-session")

    def start(self, user: str, method: str, auth_time: float | None = None) -> str:
        """A new session; returns the cookie value."""
        token = secrets.token_urlsafe(32)
        moment = self.now()
        with self.engine.begin() as connection:
            connection.execute(
                store.sessions.insert().values(
                    token_hash=_digest(token),
                    user_name=user,
                    method=method,
                    created_at=moment,
                    auth_time=auth_time if auth_time is not None else moment,
                    last_seen=moment,
                    ended=False,
                )
            )
        return self._signer.dumps(token)

    def token_of(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        try:
            token = self._signer.loads(cookie)
        except BadSignature:
            return None
        return token if isinstance(token, str) else None

    def resolve(self, cookie: str | None, *, touch: bool = False) -> Session | Refusal:
        """The session of a cookie, or why there is none; `touch` (activity) renews its idle
        time."""
        if not cookie:
            return Refusal("not signed in")
        token = self.token_of(cookie)
        if token is None:
            return Refusal("the session cookie is not valid")
        table = store.sessions
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(table).where(table.c.token_hash == _digest(token))
            ).first()
        if row is None or row.ended:
            return Refusal("the session has ended")
        moment = self.now()
        if moment - row.created_at > ABSOLUTE_SECONDS:
            self.end(cookie)
            return Refusal(f"the session is over {ABSOLUTE_SECONDS // 3600} hours old")
        if moment - row.last_seen > IDLE_SECONDS:
            self.end(cookie)
            return Refusal(f"the session was idle for over {IDLE_SECONDS // 60} minutes")
        account = accounts.get(self.engine, row.user_name)
        if account is None or account.disabled:
            self.end(cookie)
            return Refusal("the account is disabled")
        if touch and moment - row.last_seen >= TOUCH_SECONDS:
            with self.engine.begin() as connection:
                connection.execute(
                    table.update()
                    .where(table.c.token_hash == row.token_hash)
                    .values(last_seen=moment)
                )
        return Session(
            row.user_name,
            account.role,
            row.method,
            row.created_at,
            row.auth_time,
            moment if touch else row.last_seen,
            row.token_hash,
        )

    def renew_sign_in(self, session: Session, auth_time: float | None = None) -> None:
        """The step-up: the user proved again who they are."""
        table = store.sessions
        with self.engine.begin() as connection:
            connection.execute(
                table.update()
                .where(table.c.token_hash == session.token_hash)
                .values(auth_time=auth_time if auth_time is not None else self.now())
            )

    def end(self, cookie: str | None) -> None:
        token = self.token_of(cookie)
        if token is None:
            return
        table = store.sessions
        with self.engine.begin() as connection:
            connection.execute(
                table.update().where(table.c.token_hash == _digest(token)).values(ended=True)
            )


def cookie_is_secure(host: str | None) -> bool:
    """Secure everywhere but loopback (where the UI is served over plain HTTP)."""
    return (host or "").lower() not in LOOPBACK_HOSTS


class LoginLimiter:
    """At most `attempts` failed sign-ins per user name and per client address within
    `window` seconds; a success does not reset the address's count."""

    def __init__(self, now: Clock, attempts: int = 5, window: float = 15 * 60) -> None:
        self.now = now
        self.attempts = attempts
        self.window = window
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str) -> deque[float]:
        failures = self._failures[key]
        while failures and self.now() - failures[0] > self.window:
            failures.popleft()
        return failures

    def retry_after(self, user: str, address: str) -> float:
        """Seconds until a sign-in may be tried again; 0 when it may now."""
        with self._lock:
            waits = []
            for key in (f"user:{user.lower()}", f"address:{address}"):
                failures = self._recent(key)
                if len(failures) >= self.attempts:
                    waits.append(failures[0] + self.window - self.now())
            return max(waits, default=0.0)

    def failed(self, user: str, address: str) -> None:
        with self._lock:
            for key in (f"user:{user.lower()}", f"address:{address}"):
                self._recent(key).append(self.now())
