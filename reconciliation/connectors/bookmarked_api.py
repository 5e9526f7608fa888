"""Reads one customer's Bookmarked rows through the support API (read-only), for customers
whose settings say `bookmarked.type = "api"` (spec: docs/bookmarked/api.md).

The API serves the rows of schema.sql as JSON, so the roster is built by the same
function as for any raw Bookmarked rows (`bookmarked_model.build_roster`): the API and
the database give the same roster for the same rows.

How it talks to the API:
- OAuth 2 client credentials (authlib), secret sent as form fields (`client_secret_post`).
  The token is renewed shortly before it expires and once more when a call answers 401
  `invalid_token` (revoked, or the clocks disagree).
- Pages of `page_size` rows (the API allows 5000) following `next_cursor`.
- 429 and 5xx are retried with exponential backoff, waiting as long as `Retry-After`
  says (at most `retry_after_max` seconds); other 4xx are never retried. Connect and
  read timeouts on every call.
- Errors (`{"error", "message"}`) become ConnectorErrors naming the URL and the call.
- Rows are checked against schema.sql before the mapping sees them: a missing field, a
  null in a NOT NULL column, a wrong JSON type or a page without `next_cursor` is a
  located SourceDataError, never a silent null or a silently short table (a database
  cannot hand back such rows, so the two readers would differ).
- Every call is audited (reconciliation/audit.py): table, row count, status; never rows.

The API has no `id` filter on users or classes, so one student's read lists the
customer's parent accounts and classes and keeps those the student's links and
enrollments point to (see `fetch_student`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any, ClassVar
from urllib.parse import urlencode

import polars as pl

from reconciliation.audit import AuditEvent
from reconciliation.connectors.base import BookmarkedConnector, ConnectorError, SourceDataError
from reconciliation.connectors.bookmarked_model import (
    RAW_SCHEMAS,
    build_roster,
    empty_raw,
    sync_run,
)
from reconciliation.credentials import CredentialError, quoted, redact
from reconciliation.roster import Roster

SYSTEM = "bookmarked-api"
#: the spec: "Clients retry 429 and 5xx" (every 5xx, also a proxy's 520-599)
RETRY_STATUSES = frozenset({429, *range(500, 600)})
#: table -> collection path under /customers/{customer_id}/
PATHS = {
    "schools": "schools",
    "users": "users",
    "parent_students": "parent-students",
    "classes": "classes",
    "enrollments": "enrollments",
    "sync_runs": "sync-runs",
}


class BookmarkedApiConnector(BookmarkedConnector):
    """One customer's Bookmarked rows from the support API."""

    kind = "api"
    #: the `bookmarked` block is validated by settings.BOOKMARKED_SCHEMA
    settings_schema: ClassVar[dict[str, Any]] = {}

    page_size: int = 5000
    #: (connect, read) seconds per call
    timeout: tuple[float, float] = (10.0, 120.0)
    retries: int = 5
    backoff_factor: float = 0.5
    retry_after_max: float = 120.0
    #: renew the token this many seconds before it expires
    token_leeway: int = 30

    _http: Any = None

    # -- public API ----------------------------------------------------------------------

    def fetch_roster(self) -> Roster:
        started = time.perf_counter()
        name = self._customer()
        raw = {
            "schools": self._table("schools"),
            "users": self._table("users", include_deleted="true"),
            "parent_students": self._table("parent_students"),
            "classes": self._table("classes"),
            "enrollments": self._table("enrollments"),
        }
        meta = self._meta()
        meta["read_seconds"] = round(time.perf_counter() - started, 3)
        meta["customer_name"] = name  # the district's name: the sync-hold compares it
        return build_roster(self.settings.customer_id, raw, meta)

    def fetch_student(self, student_sis_id: str) -> Roster:
        """One student's context, as the database connector reads it: the student's
        accounts, their links and parent accounts, their enrollments, those classes, and
        the schools of all of these. Other children of the parents are left out."""
        self._customer()
        students = self._table("users", sis_id=student_sis_id, include_deleted="true")
        student_ids = students["id"].to_list()
        links = _concat(
            "parent_students",
            [self._table("parent_students", student_id=sid) for sid in student_ids],
        )
        parent_ids = set(links["parent_id"].to_list())
        parents = empty_raw("users")
        if parent_ids:
            parents = self._table("users", role="parent", include_deleted="true")
            if not parent_ids <= set(parents["id"].to_list()):
                # a link to an account that is not a parent (a data defect): read them all
                parents = self._table("users", include_deleted="true")
            parents = parents.filter(pl.col("id").is_in(list(parent_ids)))
        enrollments = _concat(
            "enrollments", [self._table("enrollments", user_id=sid) for sid in student_ids]
        )
        classes = empty_raw("classes")
        if enrollments.height:
            classes = self._table("classes").filter(
                pl.col("id").is_in(enrollments["class_id"].implode())
            )
        users = pl.concat([students, parents]).unique("id", keep="first")
        schools = self._table("schools").filter(
            pl.col("id").is_in(pl.concat([users["school_id"], classes["school_id"]]).implode())
        )
        meta = {**self._meta(), "scope": {"students": [student_sis_id]}}
        raw = {
            "schools": schools,
            "users": users,
            "parent_students": links,
            "classes": classes,
            "enrollments": enrollments,
        }
        return build_roster(self.settings.customer_id, raw, meta)

    def test_connection(self) -> str:
        name = self._customer()
        return (
            f"{self.base_url}: token issued for scope {self.scope!r}, customer "
            f"{self.settings.bookmarked_customer_id} ({name}) readable"
        )

    def describe(self) -> str:
        return f"api {self.base_url}"

    @property
    def base_url(self) -> str:
        return str(self.config["base_url"]).rstrip("/")

    @property
    def scope(self) -> str:
        return str(self.config.get("scope") or "roster.read")

    # -- reading -------------------------------------------------------------------------

    def _customer(self) -> str:
        """The customer's name; a clear error if the id is unknown or out of scope."""
        customer_id = self.settings.bookmarked_customer_id
        answer = self._get(f"/customers/{customer_id}", {}, "customers")
        if not isinstance(answer, dict):
            raise SourceDataError(
                "the customer is not a JSON object", file=f"{self.base_url}/customers/{customer_id}"
            )
        return str(answer.get("name", ""))

    def _table(self, table: str, **filters: Any) -> pl.DataFrame:
        path = f"/customers/{self.settings.bookmarked_customer_id}/{PATHS[table]}"
        rows = [row for page in self._pages(path, filters, table) for row in page]
        return _frame(table, rows, f"{self.base_url}{path}")

    def _pages(
        self, path: str, filters: Mapping[str, Any], table: str, limit: int | None = None
    ) -> Iterator[list[Any]]:
        """The `data` of each page, following `next_cursor` to the end."""
        params: dict[str, Any] = {**filters, "limit": limit or self.page_size}
        seen: set[str] = set()
        while True:
            answer = self._get(path, params, table)
            data = answer.get("data") if isinstance(answer, dict) else None
            if not isinstance(data, list):
                raise SourceDataError("the answer has no `data` list", file=self.base_url + path)
            if "next_cursor" not in answer:
                # taken for the last page, a renamed key would silently cut the rows short
                raise SourceDataError("the answer has no `next_cursor`", file=self.base_url + path)
            yield data
            cursor = answer.get("next_cursor")
            if not cursor:
                return
            if cursor in seen:
                raise ConnectorError(
                    f"Bookmarked API {self.base_url}{path}: the server "
                    "returned a cursor twice; stopping instead of looping"
                )
            seen.add(cursor)
            params["cursor"] = cursor

    def _meta(self) -> dict[str, Any]:
        """Provenance without row data: the API, and Bookmarked's last sync runs."""
        path = f"/customers/{self.settings.bookmarked_customer_id}/{PATHS['sync_runs']}"
        latest = succeeded = None
        for page in self._pages(path, {}, "sync_runs", limit=50):  # newest first
            latest = latest or (page[0] if page else None)
            succeeded = next((run for run in page if run.get("status") == "succeeded"), None)
            if succeeded:
                break
        return {
            "api": self.base_url,
            "bookmarked_customer_id": self.settings.bookmarked_customer_id,
            "last_sync": sync_run(latest),
            "last_successful_sync": sync_run(succeeded),
            "read_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    # -- HTTP ----------------------------------------------------------------------------

    def _get(self, path: str, params: Mapping[str, Any], table: str) -> Any:
        """One audited GET. A 401 `invalid_token` gets a new token and one more try."""
        import requests

        session = self._session()
        shown = f"GET {path}" + (f"?{urlencode(params)}" if params else "")
        for renewed in (False, True):
            try:
                response = session.get(self.base_url + path, params=params)
            except requests.RequestException as exc:
                self._audit((table,), 0, f"{shown}: {type(exc).__name__}")
                reason = (
                    f"no answer within {self.timeout[1]:g} s"
                    if _read_timeout(exc)
                    else f"cannot reach the API ({type(exc).__name__})"
                )
                raise ConnectorError(
                    f"Bookmarked API {self.base_url}: {shown} failed: {reason}"
                ) from None
            if (
                response.status_code == 401
                and not renewed
                and _error_fields(response)[0] == "invalid_token"
            ):
                self._audit((table,), 0, f"{shown}: 401 invalid_token, renewing the token")
                self._fetch_token(session)
                continue
            break
        retries = getattr(response.raw, "retries", None)  # urllib3's record of this call
        retried = len(retries.history) if retries else 0
        outcome = f"{response.status_code}" + (f" after {retried} retries" if retried else "")
        if not response.ok:
            self._audit((table,), 0, f"{shown}: {outcome}")
            raise ConnectorError(self._failure(shown, response, retried))
        answer = _json(response)
        data = answer.get("data") if isinstance(answer, dict) else None
        self._audit((table,), len(data) if isinstance(data, list) else 1, f"{shown}: {outcome}")
        if answer is None:
            raise SourceDataError("the answer is not JSON", file=self.base_url + path)
        return answer

    def _failure(self, shown: str, response: Any, retried: int) -> str:
        code, message = _error_fields(response)
        status = response.status_code
        customer_id = self.settings.bookmarked_customer_id
        if status == 403 and code == "insufficient_scope":
            hint = f"the token's scope {self.scope!r} does not allow reading rosters"
        elif status == 403:
            hint = f"customer {customer_id} is not in this API client's scope"
        elif status == 404 and shown == f"GET /customers/{customer_id}":
            hint = (
                f"no customer with id {customer_id}; check $.bookmarked.customer_id in "
                f"{self.settings.path.name}"
            )
        elif status == 401:
            hint = "the API refused the token"
        elif status in RETRY_STATUSES:
            hint = f"still failing after {retried} retries"
        else:
            hint = "the API refused the request"
        detail = f"{code}: {message}" if message else code
        return redact(
            f"Bookmarked API {self.base_url}: {shown} answered {status} ({detail}): {hint}"
        )

    def _session(self) -> Any:
        """An authlib OAuth2 session with a token, retries and timeouts (made once)."""
        if self._http is not None:
            return self._http
        from authlib.integrations.requests_client import OAuth2Session
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        try:
            client_id = self.credentials.value(str(self.config["client_id"])).reveal()
            client_secret = self.credentials.resolve(str(self.config["client_secret"])).reveal()
        except CredentialError as exc:
            raise ConnectorError(f"Bookmarked API {self.base_url}: {exc}") from None
        session = OAuth2Session(
            client_id,
            client_secret,
            scope=self.scope,
            token_endpoint=f"{self.base_url}/oauth/token",
            grant_type="client_credentials",
            token_endpoint_auth_method="client_secret_post",
            leeway=self.token_leeway,
            default_timeout=self.timeout,
        )
        retry = Retry(
            total=self.retries,
            backoff_factor=self.backoff_factor,
            backoff_max=self.retry_after_max,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "POST"}),  # POST: the token request only
            respect_retry_after_header=True,
            retry_after_max=self.retry_after_max,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        # every token request, also authlib's own renewals, passes through this check
        session.register_compliance_hook("access_token_response", self._token_answer)
        self._fetch_token(session)
        self._http = session
        return session

    def _fetch_token(self, session: Any) -> None:
        import requests

        try:
            session.fetch_token()
        except requests.RequestException as exc:
            self._audit((), 0, f"POST /oauth/token: {type(exc).__name__}")
            raise ConnectorError(
                f"Bookmarked API {self.base_url}: cannot reach the token "
                f"endpoint ({type(exc).__name__})"
            ) from None

    def _token_answer(self, response: Any) -> Any:
        """Audit a token answer and turn a refusal, or an answer without a Bearer token,
        into a clear error (authlib's own would escape as a bare ValueError or OAuthError).
        The answer's body is never quoted: it may hold the token."""
        self._audit((), 0, f"POST /oauth/token: {response.status_code}")
        if not response.ok:
            code, message = _error_fields(response)
            detail = f"{code}: {message}" if message else code
            raise ConnectorError(
                redact(
                    f"Bookmarked API {self.base_url}: the token request was refused "
                    f"({response.status_code} {detail}); check client_id, client_secret and scope"
                )
            )
        answer = _json(response)
        if not (
            isinstance(answer, dict)
            and isinstance(answer.get("access_token"), str)
            and answer["access_token"]
            and str(answer.get("token_type", "")).lower() == "bearer"
        ):
            raise ConnectorError(
                f"Bookmarked API {self.base_url}: the token endpoint answered "
                f"{response.status_code} without a Bearer `access_token`"
            )
        return response

    def _audit(self, tables: tuple[str, ...], rows: int, detail: str) -> None:
        self.audit.record(
            AuditEvent(
                customer_id=self.settings.customer_id,
                system=SYSTEM,
                action="request" if tables else "connect",
                tables=tables,
                row_count=rows,
                detail=f"bookmarked customer {self.settings.bookmarked_customer_id}; {detail}",
            )
        )


# -- pure helpers ------------------------------------------------------------------------


def _read_timeout(exc: Exception) -> bool:
    """requests reports a read timeout as ReadTimeout, or, once urllib3's retries are
    spent, as a ConnectionError whose reason is urllib3's ReadTimeoutError."""
    import requests
    from urllib3.exceptions import ReadTimeoutError

    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.ReadTimeout) or isinstance(reason, ReadTimeoutError)


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error_fields(response: Any) -> tuple[str, str]:
    """The spec's `{"error", "message"}`, or the HTTP reason when the body is not that."""
    answer = _json(response)
    if isinstance(answer, dict) and answer.get("error"):
        # quoted: a gateway may echo the request, Authorization header included
        return quoted(str(answer["error"]), 64), quoted(str(answer.get("message") or ""))
    return quoted(str(response.reason or "error"), 64), ""


_VALID = {
    pl.Int64(): lambda v: isinstance(v, int) and not isinstance(v, bool),
    pl.String(): lambda v: isinstance(v, str),
    pl.Boolean(): lambda v: isinstance(v, bool),
    pl.Date(): lambda v: isinstance(v, str) and _is_date(v),
}

#: schema.sql's NOT NULL columns among RAW_SCHEMAS: a database never hands back null
#: there, so neither may the API (a null `is_active` would make an account's state unknown)
NOT_NULL: dict[str, frozenset[str]] = {
    "schools": frozenset({"id", "sis_id", "name", "is_active"}),
    "users": frozenset({"id", "role", "is_active"}),
    "parent_students": frozenset({"parent_id", "student_id"}),
    "classes": frozenset({"id", "school_id", "sis_id", "name", "is_active"}),
    "enrollments": frozenset({"id", "class_id", "user_id", "role", "is_active"}),
}


def _is_date(text: str) -> bool:
    """`YYYY-MM-DD` only (Python also reads `2024-W01-1` and `20240820` as dates)."""
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10 and text[4] == text[7] == "-"


def _frame(table: str, rows: list[Any], where: str) -> pl.DataFrame:
    """JSON rows -> a frame of the schema.sql columns the roster is built from (others are
    ignored); a missing field, a null where schema.sql says NOT NULL and a wrong value
    are located, never read as null (a renamed field would otherwise blank a column)."""
    for position, row in enumerate(rows):
        if not isinstance(row, dict):
            raise SourceDataError(
                "a row is not a JSON object",
                file=where,
                line=None,
                record=f"{table} row {position + 1}",
            )
    columns = []
    for name, dtype in RAW_SCHEMAS[table].items():
        try:
            values = [row[name] for row in rows]
        except KeyError:
            missing = next(row for row in rows if name not in row)
            raise SourceDataError(
                "the field is missing",
                file=where,
                field=f"{table}.{name}",
                record=_record(table, missing),
            ) from None
        nullable = name not in NOT_NULL[table]
        bad = next(
            (
                i
                for i, v in enumerate(values)
                if (v is None and not nullable) or (v is not None and not _VALID[dtype](v))
            ),
            None,
        )
        if bad is not None:
            found = "null" if values[bad] is None else f"a JSON {type(values[bad]).__name__}"
            raise SourceDataError(
                f"{found} where {dtype} was expected",
                file=where,
                field=f"{table}.{name}",
                record=_record(table, rows[bad]),
            )
        if dtype == pl.Date():
            columns.append(pl.Series(name, values, dtype=pl.String()).str.to_date("%Y-%m-%d"))
        else:
            columns.append(pl.Series(name, values, dtype=dtype))
    return pl.DataFrame(columns)


def _record(table: str, row: Mapping[str, Any]) -> str:
    """A row located by its key (parent_students has no `id`)."""
    if table == "parent_students":
        return f"parent_students {row.get('parent_id', '?')}-{row.get('student_id', '?')}"
    return f"{table}.id {row.get('id', '?')}"


def _concat(table: str, frames: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(frames) if frames else empty_raw(table)
