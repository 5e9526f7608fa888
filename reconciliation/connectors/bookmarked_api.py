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

The API has no `id` filter on users or classes and no name filter, so a person's
neighbourhood (`fetch_people`) lists the customer's parent (and, for siblings, student)
accounts and its classes and keeps those the links and enrollments point to; the
connector says so (`narrow_lookup` False, `meta["scope"]["reads"]`). Filter values that
are student data (an email) never reach the audit log.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
from reconciliation.connectors.people import (
    PersonMatch,
    PersonQuery,
    find_people_in,
    records_of,
    with_scope,
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
    #: the API filters users by sis_id, email and student number, links by account and
    #: enrollments by user, but has no name filter and no account-id or class-id filter:
    #: a name, a linked account, a class is found in the customer's whole list
    narrow_lookup: ClassVar[bool] = False
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

    def find_people(self, query: PersonQuery) -> list[PersonMatch]:
        """An id, number or email through the users filters (`sis_id`, `student_number`,
        `email` with `role=parent` for a parent); the API has no name filter, so a name
        lists the customer's users and keeps those `name_matches` finds."""
        self._customer()
        filters = {
            "sourced_id": {"sis_id": query.value.strip()},
            "student_number": {"student_number": query.value.strip()},
            "email": {"email": query.value.strip()},
            "parent_email": {"email": query.value.strip(), "role": "parent"},
            "name": {},
        }[query.kind]
        users = self._table("users", include_deleted="true", **filters)
        schools = empty_raw("schools")
        if users["school_id"].drop_nulls().len():
            schools = self._table("schools")
        raw = {"schools": schools, "users": users}
        return find_people_in(build_roster(self.settings.customer_id, raw), query)

    def fetch_people(self, sis_ids: Sequence[str]) -> Roster:
        """The people's neighbourhood (`Roster.for_people`, the same rows as the database
        connector reads) through the narrowest calls the API has: users by `sis_id`,
        parent-students by `parent_id` / `student_id`, enrollments by `user_id`. It has no
        filter by account id or class id, so the accounts a link points to come from the
        customer's parent (or student) list, and the classes and schools from their lists:
        `meta["scope"]["reads"]` says which lists were read."""
        ids = list(dict.fromkeys(sis_ids))
        self._customer()
        people = _PeopleReader(self)
        core = people.by_sis(ids)
        own = people.links("student_id", core) + people.links("parent_id", core)
        parents = {link["parent_id"] for link in own}
        family_parents = core | parents | people.same_sis(parents, "parent")
        families = people.links("parent_id", family_parents)
        children = {link["student_id"] for link in own + families}
        links = people.links("student_id", core | children | people.same_sis(children, "student"))
        accounts = {link[end] for link in links for end in ("parent_id", "student_id")}
        users = core | accounts | people.same_sis(accounts, "parent")
        user_rows = people.rows(users)
        enrollments = _concat(
            "enrollments",
            [
                self._table("enrollments", user_id=account)
                for account in sorted(user_rows.filter(pl.col("sis_id").is_not_null())["id"])
            ],
        )
        classes = empty_raw("classes")
        if enrollments.height:
            people.lists.append("classes")
            listed = self._table("classes")
            mine = listed.filter(pl.col("id").is_in(enrollments["class_id"].implode()))
            classes = listed.filter(
                pl.col("id").is_in(mine["id"].implode())
                | pl.col("sis_id").is_in(mine["sis_id"].implode())
            )
        schools = empty_raw("schools")
        school_ids = pl.concat([user_rows["school_id"], classes["school_id"]]).drop_nulls()
        if school_ids.len():
            people.lists.append("schools")
            schools = self._table("schools").filter(pl.col("id").is_in(school_ids.implode()))
        raw = {
            "schools": schools,
            "users": user_rows,
            "parent_students": _links_frame(links),
            "classes": classes,
            "enrollments": enrollments,
        }
        listed = ", ".join(dict.fromkeys(people.lists)) or "none"
        reads = (
            "support API filters by sis_id, account and user for the people, links and "
            f"enrollments; whole lists read (the API has no id filter): {listed}"
        )
        return with_scope(
            build_roster(self.settings.customer_id, raw, self._meta()),
            ids,
            narrow=not people.lists,
            reads=reads,
        )

    def fetch_records(self, *, classes: Sequence[str] = (), schools: Sequence[str] = ()) -> Roster:
        """Classes by the `sis_id` filter; schools from the customer's school list (the API
        has no school filter; a customer has few schools)."""
        self._customer()
        class_rows = _concat(
            "classes",
            [self._table("classes", sis_id=sis_id) for sis_id in dict.fromkeys(classes)],
        )
        school_rows = empty_raw("schools")
        if schools or class_rows.height:
            school_rows = self._table("schools")
        raw = {"schools": school_rows, "classes": class_rows}
        return records_of(
            build_roster(self.settings.customer_id, raw, self._meta()), classes, schools
        )

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
        # an email filter is student data: never in the audit log or an error message
        masked = {k: ("****" if k == "email" else v) for k, v in params.items()}
        shown = f"GET {path}" + (f"?{urlencode(masked)}" if masked else "")
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


class _PeopleReader:
    """Users and links of a neighbourhood through the API's filters, each call made once;
    accounts known only by id come from the customer's role lists (`lists` names them)."""

    def __init__(self, connector: BookmarkedApiConnector) -> None:
        self.connector = connector
        self.users: dict[int, dict[str, Any]] = {}
        self.sis_read: set[str] = set()
        self.link_calls: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.lists: list[str] = []

    def _keep(self, frame: pl.DataFrame) -> set[int]:
        for row in frame.iter_rows(named=True):
            self.users[row["id"]] = row
        return set(frame["id"].to_list())

    def by_sis(self, sis_ids: Iterable[str]) -> set[int]:
        """Every account with one of these sis_ids (`users?sis_id=`, once each)."""
        found: set[int] = set()
        for sis_id in sis_ids:
            if sis_id in self.sis_read:
                found |= {i for i, row in self.users.items() if row["sis_id"] == sis_id}
                continue
            self.sis_read.add(sis_id)
            found |= self._keep(
                self.connector._table("users", sis_id=sis_id, include_deleted="true")
            )
        return found

    def links(self, column: str, accounts: Iterable[int]) -> list[dict[str, Any]]:
        out: dict[tuple[int, int], dict[str, Any]] = {}
        for account in sorted(accounts):
            if (column, account) not in self.link_calls:
                frame = self.connector._table("parent_students", **{column: account})
                self.link_calls[(column, account)] = frame.to_dicts()
            for link in self.link_calls[(column, account)]:
                out[(link["parent_id"], link["student_id"])] = link
        return list(out.values())

    def _resolve(self, accounts: set[int], role: str) -> None:
        """Read the role's list, then every account, until these accounts are known."""
        for filters in ({"role": role}, {}):
            listed = f"{role} users" if filters else "all users"
            if not accounts - set(self.users):
                return
            if listed not in self.lists and "all users" not in self.lists:
                self.lists.append(listed)
                self._keep(self.connector._table("users", include_deleted="true", **filters))

    def same_sis(self, accounts: set[int], role: str) -> set[int]:
        """Every account sharing a sis_id with these (their duplicates), these included."""
        self._resolve(accounts, role)
        known = accounts & set(self.users)
        return known | self.by_sis(
            sorted({self.users[a]["sis_id"] for a in known if self.users[a]["sis_id"]})
        )

    def rows(self, accounts: set[int]) -> pl.DataFrame:
        self._resolve(accounts, "parent")
        rows = [self.users[a] for a in sorted(accounts) if a in self.users]
        return pl.DataFrame(rows, schema=RAW_SCHEMAS["users"]) if rows else empty_raw("users")


def _links_frame(links: list[dict[str, Any]]) -> pl.DataFrame:
    if not links:
        return empty_raw("parent_students")
    return pl.DataFrame(links, schema=RAW_SCHEMAS["parent_students"])


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
