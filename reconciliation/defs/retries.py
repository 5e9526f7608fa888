"""Which extraction failures are worth another try, and how long to wait.

Dagster retries every exception of a step that has a `RetryPolicy`, except a
`dg.Failure(allow_retries=False)`. The extraction steps turn a connector error into a
`Failure` whose `allow_retries` says whether it is transient (`transient`): a server
that is down, busy or slow, a dropped connection, a throttled or timed-out request. Bad
input (a broken file, a refused record), a wrong credential or setting, and a held run
are not retried: the same input fails the same way, and a retry only delays the
customer's failure (and holds a Bookmarked pool slot) by minutes.

The connectors raise their errors `from None`, which hides the cause from the traceback
but keeps it as `__context__`: that is where the network or database error is read.
"""

from __future__ import annotations

import re

import dagster as dg

#: four tries in all, about 30 s, 1 min and 2 min apart (with jitter): enough for a
#: restarting server or a rolling deploy, short of a night's budget
EXTRACT_RETRY = dg.RetryPolicy(
    max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
#: the pool of the steps that read Bookmarked's database: its limit (`concurrency.pools`
#: in dagster.yaml) bounds the concurrent readers of the read replica
BOOKMARKED_POOL = "bookmarked_database"

#: HTTP answers that say "later": timeout, throttled, server errors
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: exception classes (by name, anywhere in the cause chain) of a network that failed
_NETWORK_ERRORS = frozenset(
    {
        "ConnectionError",  # builtin and requests'
        "ConnectionResetError",
        "ConnectionRefusedError",
        "ConnectionAbortedError",
        "BrokenPipeError",
        "TimeoutError",
        "Timeout",
        "ConnectTimeout",
        "ReadTimeout",
        "ChunkedEncodingError",
        "RemoteDisconnected",
        "IncompleteRead",
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "error_temp",  # ftplib: a 4xx reply
        "socket.timeout",
    }
)
#: what a database driver says when the server, not the query, is the problem
_DATABASE_TRANSIENT = re.compile(
    r"could not connect|connection refused|connection reset|server closed the connection|"
    r"terminating connection|timeout expired|timed out|too many connections|"
    r"the database system is (starting up|shutting down|in recovery mode)|"
    r"database is locked|could not receive data|SSL SYSCALL error",
    re.IGNORECASE,
)
_STATUS_IN_MESSAGE = re.compile(r"\b(?:answered|returned|status|HTTP)\s+(\d{3})\b")
#: bad input and bad settings: the same input fails the same way
_PERMANENT = frozenset({"SourceDataError", "CredentialError", "SettingsError", "RecordError"})


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def transient(exc: BaseException) -> bool:
    """True when the failure is worth retrying later: network, throttling, a server error,
    a database that is restarting. False for bad input, settings and credentials."""
    chain = _chain(exc)
    if _PERMANENT & _names(exc):  # the connector's own verdict comes first
        return False
    for link in chain:
        names = _names(link)
        status = getattr(link, "status", None)
        if isinstance(status, int) and "OneRosterApiError" in names:
            return status in TRANSIENT_STATUSES
        if "IncompleteReadError" in names:  # pages that moved under the read
            return True
        if names & _NETWORK_ERRORS:
            return True
        if "OperationalError" in names or "InterfaceError" in names:
            return bool(_DATABASE_TRANSIENT.search(str(link)))
    # a connector that raised without a cause: an HTTP status or a driver's words in it
    message = str(exc)
    found = _STATUS_IN_MESSAGE.search(message)
    if found and int(found.group(1)) in TRANSIENT_STATUSES:
        return True
    return bool(_DATABASE_TRANSIENT.search(message)) or bool(
        re.search(r"cannot reach|no answer within|timed out", message, re.IGNORECASE)
    )
