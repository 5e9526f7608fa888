"""The Bookmarked support API connector against a local server that implements the spec
(fixtures/bookmarked_api_server.py): the same canonical roster as the database connector
on the same rows, OAuth 2 renewals, paging, retries, clear errors, and an audit event per
request."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from reconciliation.audit import AuditLog
from reconciliation.connectors import BOOKMARKED_CONNECTORS, bookmarked_connector
from reconciliation.connectors.base import ConnectorError, SourceDataError
from reconciliation.connectors.bookmarked_api import BookmarkedApiConnector
from reconciliation.connectors.bookmarked_database import BookmarkedDatabaseConnector
from reconciliation.credentials import CredentialResolver
from reconciliation.roster import TABLES, Roster
from reconciliation.settings import CustomerSettings, parse_file
from reconciliation_tests.fixtures.bookmarked_api_server import (
    CLIENT_ID,
    CLIENT_SECRET,
    ApiClient,
    BookmarkedApiServer,
    Reply,
)
from reconciliation_tests.fixtures.postgres import (
    CUSTOMER_ID,
    OTHER_CUSTOMER_ID,
    build_bookmarked_database,
)


def api_settings(
    folder: Path, base_url: str, *, customer_id: int = CUSTOMER_ID, **extra: object
) -> CustomerSettings:
    path = folder / "api-customer.json"
    path.write_text(
        json.dumps(
            {
                "customer_id": "springfield",
                "name": "Springfield USD",
                "environment": "staging",
                "bookmarked": {
                    "customer_id": customer_id,
                    "type": "api",
                    "base_url": base_url,
                    "client_id": CLIENT_ID,
                    "client_secret": "env:BOOKMARKED_API_SECRET",
                    **extra,
                },
                "source": {"type": "oneroster_csv", "location": "unused"},
            }
        )
    )
    return parse_file(path)


def api_connector(
    server: BookmarkedApiServer, folder: Path, *, secret: str = CLIENT_SECRET, **extra: object
) -> BookmarkedApiConnector:
    connector = bookmarked_connector(
        api_settings(folder, server.base_url, **extra),  # type: ignore[arg-type]
        CredentialResolver({"BOOKMARKED_API_SECRET": secret}),
        AuditLog(None),
    )
    assert isinstance(connector, BookmarkedApiConnector)
    connector.backoff_factor = 0.01  # keep retry tests fast
    return connector


@pytest.fixture
def database_connector(tmp_path: Path) -> BookmarkedDatabaseConnector:
    """The same SAMPLE rows in a SQLite file, read by the database connector."""
    database = tmp_path / "bookmarked.db"
    engine = create_engine(f"sqlite:///{database}")
    build_bookmarked_database(engine)
    engine.dispose()
    path = tmp_path / "db-customer.json"
    path.write_text(
        json.dumps(
            {
                "customer_id": "springfield",
                "name": "Springfield USD",
                "environment": "staging",
                "bookmarked": {"customer_id": CUSTOMER_ID, "database_url": f"sqlite:///{database}"},
                "source": {"type": "oneroster_csv", "location": "unused"},
            }
        )
    )
    return BookmarkedDatabaseConnector(parse_file(path), audit=AuditLog(None))


def assert_same_tables(api: Roster, database: Roster) -> None:
    for table in TABLES:
        assert api.table(table).equals(database.table(table)), (
            f"{table}\napi:\n{api.table(table)}\ndatabase:\n{database.table(table)}"
        )


def add_rows(
    server: BookmarkedApiServer, folder: Path, table: str, rows: list[dict[str, Any]]
) -> None:
    """The same new rows served by the API and written to the `database_connector` file."""
    from sqlalchemy import text

    server.rows[table].extend(dict(row) for row in rows)
    writable = create_engine(f"sqlite:///{folder / 'bookmarked.db'}")  # as the fixture built
    with writable.begin() as connection:
        for row in rows:
            connection.execute(
                text(
                    f"INSERT INTO {table} ({', '.join(row)}) "
                    f"VALUES ({', '.join(':' + c for c in row)})"
                ),
                row,
            )
    writable.dispose()


# -- same roster as the database ---------------------------------------------------------


def test_whole_roster_is_identical_to_the_database_connector(
    bookmarked_api_server: BookmarkedApiServer,
    tmp_path: Path,
    database_connector: BookmarkedDatabaseConnector,
) -> None:
    api = api_connector(bookmarked_api_server, tmp_path).fetch_roster()

    assert_same_tables(api, database_connector.fetch_roster())
    assert api.side == "bookmarked"
    assert api.row_counts() == {
        "schools": 2,
        "users": 9,
        "links": 4,
        "classes": 2,
        "enrollments": 6,
    }
    assert api.meta["last_sync"]["status"] == "failed"
    assert api.meta["last_successful_sync"]["started_at"] == "2025-01-04T02:00:00+00:00"


@pytest.mark.parametrize("student", ["stu-1", "stu-2", "stu-3", "stu-4", "nobody"])
def test_one_student_is_identical_to_the_database_connector(
    bookmarked_api_server: BookmarkedApiServer,
    tmp_path: Path,
    database_connector: BookmarkedDatabaseConnector,
    student: str,
) -> None:
    connector = api_connector(bookmarked_api_server, tmp_path)

    api = connector.fetch_student(student)

    assert_same_tables(api, database_connector.fetch_student(student))
    assert api.meta["scope"] == {"students": [student]}


def test_one_student_uses_the_filters(
    bookmarked_api_server: BookmarkedApiServer, tmp_path: Path
) -> None:
    api_connector(bookmarked_api_server, tmp_path).fetch_student("stu-1")

    queries = [
        (r.path.rsplit("/", 1)[-1], {k: v[-1] for k, v in r.query.items() if k != "limit"})
        for r in bookmarked_api_server.data_requests()
    ]
    assert ("users", {"sis_id": "stu-1", "include_deleted": "true"}) in queries
    assert ("parent-students", {"student_id": "10"}) in queries
    assert ("enrollments", {"user_id": "10"}) in queries
    assert ("users", {"role": "parent", "include_deleted": "true"}) in queries
    # never the whole customer's users or enrollments
    assert ("users", {"include_deleted": "true"}) not in queries
    assert ("enrollments", {}) not in queries


def test_one_student_linked_to_a_non_parent_account(
    bookmarked_api_server: BookmarkedApiServer,
    tmp_path: Path,
    database_connector: BookmarkedDatabaseConnector,
) -> None:
    """A teacher's account listed as a parent (a data defect) is still found: the API has
    no id filter, so the connector falls back to listing every account."""
    from sqlalchemy import text

    link = {"parent_id": 14, "student_id": 11, "created_at": "2025-01-05 08:00:00"}
    bookmarked_api_server.rows["parent_students"].append(link)
    writable = create_engine(f"sqlite:///{tmp_path / 'bookmarked.db'}")  # as the fixture built
    with writable.begin() as connection:
        connection.execute(
            text("INSERT INTO parent_students VALUES (:parent_id, :student_id, :created_at)"), link
        )
    writable.dispose()

    api = api_connector(bookmarked_api_server, tmp_path).fetch_student("stu-2")

    assert_same_tables(api, database_connector.fetch_student("stu-2"))
    assert sorted(api.users["sis_id"].to_list()) == ["par-3", "stu-2", "tch-1"]


def test_references_to_another_customers_rows_stay_unnamed_by_both(
    bookmarked_api_server: BookmarkedApiServer,
    tmp_path: Path,
    database_connector: BookmarkedDatabaseConnector,
) -> None:
    """Ben placed at the neighbour's school, and the neighbour's `stu-1` enrolled in our
    class (data defects): neither reader borrows the neighbour's sourcedIds, which are
    also ours (its school is `sch-1`, its student `stu-1`)."""
    from sqlalchemy import text

    enrollment = {
        "id": 47,
        "class_id": 30,
        "user_id": 20,
        "sis_id": "enr-9",
        "role": "student",
        "is_active": True,
        "start_date": None,
        "end_date": None,
        "updated_at": "2025-01-05 08:00:00",
    }
    bookmarked_api_server.rows["enrollments"].append(enrollment)
    next(u for u in bookmarked_api_server.rows["users"] if u["id"] == 11)["school_id"] = 3
    writable = create_engine(f"sqlite:///{tmp_path / 'bookmarked.db'}")  # as the fixture built
    with writable.begin() as connection:
        connection.execute(
            text(
                f"INSERT INTO enrollments ({', '.join(enrollment)}) "
                f"VALUES ({', '.join(':' + c for c in enrollment)})"
            ),
            enrollment,
        )
        connection.execute(text("UPDATE users SET school_id = 3 WHERE id = 11"))
    writable.dispose()
    connector = api_connector(bookmarked_api_server, tmp_path)

    api = connector.fetch_roster()

    assert_same_tables(api, database_connector.fetch_roster())
    assert api.enrollments.filter(bookmarked_id=47).select(
        "class_sis_id", "user_sis_id"
    ).rows() == [("cls-1", None)]
    assert api.users.filter(bookmarked_id=11)["school_sis_id"].to_list() == [None]
    student = connector.fetch_student("stu-2")
    assert_same_tables(student, database_connector.fetch_student("stu-2"))
    assert student.users.filter(bookmarked_id=11)["school_sis_id"].to_list() == [None]


def test_inactive_deleted_and_time_zoned_rows_are_identical_to_the_database_connector(
    bookmarked_api_server: BookmarkedApiServer,
    tmp_path: Path,
    database_connector: BookmarkedDatabaseConnector,
) -> None:
    """The cases the sample lacks: a closed campus and its inactive class, a student
    soft-deleted at a time written with a UTC offset (the API sends it in UTC), enrolled
    until an end date and linked to a parent, and a student placed at the neighbour's
    school, with no email."""
    updated = "2025-01-05 08:00:00"
    add_rows(
        bookmarked_api_server,
        tmp_path,
        "schools",
        [
            {
                "id": 4,
                "customer_id": CUSTOMER_ID,
                "sis_id": "sch-3",
                "name": "Closed Annex",
                "state_id": None,
                "is_active": False,
                "updated_at": updated,
            }
        ],
    )
    user = {
        "customer_id": CUSTOMER_ID,
        "role": "student",
        "first_name": "Eve",
        "last_name": "Stone",
        "username": None,
        "grade": "KG",
        "is_active": False,
        "updated_at": updated,
    }
    add_rows(
        bookmarked_api_server,
        tmp_path,
        "users",
        [
            {
                **user,
                "id": 19,
                "sis_id": "stu-5",
                "email": "  Eve.Stone@Example.ORG",
                "student_number": "1005",
                "school_id": 4,
                "deleted_at": "2024-12-01 12:00:00+02:00",
            },
            {
                **user,
                "id": 22,
                "sis_id": "stu-6",
                "email": None,
                "student_number": None,
                "school_id": 3,  # the neighbour's
                "is_active": True,
                "deleted_at": None,
            },
        ],
    )
    add_rows(
        bookmarked_api_server,
        tmp_path,
        "parent_students",
        [{"parent_id": 16, "student_id": 19, "created_at": updated}],
    )
    add_rows(
        bookmarked_api_server,
        tmp_path,
        "classes",
        [
            {
                "id": 33,
                "school_id": 4,
                "sis_id": "cls-3",
                "name": "Annex art",
                "course_code": None,
                "term_sis_id": None,
                "is_active": False,
                "updated_at": updated,
            }
        ],
    )
    enrollment = {"role": "student", "is_active": True, "updated_at": updated}
    add_rows(
        bookmarked_api_server,
        tmp_path,
        "enrollments",
        [
            {
                **enrollment,
                "id": 48,
                "class_id": 33,
                "user_id": 19,
                "sis_id": "enr-8",
                "is_active": False,
                "start_date": "2024-08-20",
                "end_date": "2024-12-01",
            },
            {
                **enrollment,
                "id": 49,
                "class_id": 30,
                "user_id": 22,
                "sis_id": None,
                "start_date": None,
                "end_date": "2025-06-30",
            },
        ],
    )
    connector = api_connector(bookmarked_api_server, tmp_path)
    connector.page_size = 3

    api = connector.fetch_roster()

    assert_same_tables(api, database_connector.fetch_roster())
    assert api.schools.filter(sis_id="sch-3")["active"].to_list() == [False]
    assert api.classes.filter(sis_id="cls-3").select("school_sis_id", "active").rows() == [
        ("sch-3", False)
    ]
    eve = api.users.filter(bookmarked_id=19)
    assert eve.select("deleted", "active", "school_sis_id").rows() == [(True, False, "sch-3")]
    assert api.users.filter(bookmarked_id=22)["school_sis_id"].to_list() == [None]
    for student in ("stu-5", "stu-6"):
        assert_same_tables(
            connector.fetch_student(student), database_connector.fetch_student(student)
        )


# -- paging, tokens, retries -------------------------------------------------------------


def test_paging_follows_next_cursor(
    bookmarked_api_server: BookmarkedApiServer,
    tmp_path: Path,
    database_connector: BookmarkedDatabaseConnector,
) -> None:
    connector = api_connector(bookmarked_api_server, tmp_path)
    connector.page_size = 2

    roster = connector.fetch_roster()

    assert_same_tables(roster, database_connector.fetch_roster())
    user_pages = [r for r in bookmarked_api_server.data_requests("/users")]
    assert len(user_pages) == 5  # 9 users, 2 a page
    assert [r.arg("limit") for r in user_pages] == ["2"] * 5
    assert user_pages[0].arg("cursor") is None and user_pages[1].arg("cursor")


def test_token_is_requested_with_form_fields_and_reused(
    bookmarked_api_server: BookmarkedApiServer, tmp_path: Path
) -> None:
    connector = api_connector(bookmarked_api_server, tmp_path)
    connector.fetch_roster()
    connector.fetch_student("stu-1")

    (token_request,) = bookmarked_api_server.token_requests()
    assert token_request.form() == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "roster.read",
    }
    assert all(
        r.headers["authorization"].startswith("Bearer ")
        for r in bookmarked_api_server.data_requests()
    )


def test_token_is_renewed_before_it_expires(
    bookmarked_api_server: BookmarkedApiServer, tmp_path: Path
) -> None:
    bookmarked_api_server.token_ttl = 20  # shorter than the connector's 30 s leeway
    connector = api_connector(bookmarked_api_server, tmp_path)

    connector.fetch_roster()

    data = bookmarked_api_server.data_requests()
    assert len(bookmarked_api_server.token_requests()) == len(data) + 1
    assert not [
        r
        for r in bookmarked_api_server.requests
        if r.path.endswith("/oauth/token") and r.method != "POST"
    ]


def test_token_is_renewed_on_invalid_token(
    bookmarked_api_server: BookmarkedApiServer, tmp_path: Path
) -> None:
    connector = api_connector(bookmarked_api_server, tmp_path)
    connector.fetch_roster()
    bookmarked_api_server.expire_tokens()  # revoked between two runs

    connector.fetch_roster()

    assert len(bookmarked_api_server.token_requests()) == 2
    renewals = [e for e in connector.audit.events if "renewing the token" in e.detail]
    assert len(renewals) == 1


def test_429_waits_as_long_as_retry_after_says(
    bookmarked_api_server: BookmarkedApiServer, tmp_path: Path
) -> None:
    connector = api_connector(bookmarked_api_server, tmp_path)
    connector.fetch_roster()  # token and connection ready
    bookmarked_api_server.inject(429, path="/users", retry_after="1")
    users_before = len(bookmarked_api_server.data_requests("/users"))

    started = time.monotonic()
    roster = connector.fetch_roster()

    assert time.monotonic() - started >= 1.0
    assert roster.row_counts()["users"] == 9
    assert len(bookmarked_api_server.data_requests("/users")) - users_before == 2
    assert any(
        "GET /customers/101/users" in e.detail and "200 after 1 retries" in e.detail
        for e in connector.audit.events
    )


def test_5xx_is_retried_with_backoff(
    bookmarked_api_server: BookmarkedApiServer, tmp_path: Path
) -> None:
    bookmarked_api_server.inject(503, path="/enrollments", times=2)
    bookmarked_api_server.inject(500, path="/oauth/token")

    roster = api_connector(bookmarked_api_server, tmp_path).fetch_roster()

    assert roster.row_counts()["enrollments"] == 6
    assert len(bookmarked_api_server.data_requests("/enrollments")) == 3
    assert len(bookmarked_api_server.token_requests()) == 2


@pytest.mark.parametrize("status", [501, 507, 520])
def test_every_5xx_is_retried(
    bookmarked_api_server: BookmarkedApiServer, tmp_path: Path, status: int
) -> None:
    """The spec retries "429 and 5xx", not only the usual 500/502/503/504."""
    bookmarked_api_server.inject(status, path="/classes")

    roster = api_connector(bookmarked_api_server, tmp_path).fetch_roster()

    assert roster.row_counts()["classes"] == 2
    assert len(bookmarked_api_server.data_requests("/classes")) == 2


def test_5xx_that_persists_is_a_clear_error(
    bookmarked_api_server: BookmarkedApiServer, tmp_path: Path
) -> None:
    bookmarked_api_server.inject(502, path="/classes", times=10)
    connector = api_connector(bookmarked_api_server, tmp_path)
    connector.retries = 2

    with pytest.raises(
        ConnectorError,
        match=r"GET /customers/101/classes\?limit=5000 answered "
        r"502 \(server_error: injected fault\): still failing after 2 retries",
    ):
        connector.fetch_roster()
    assert len(bookmarked_api_server.data_requests("/classes")) == 3


def test_other_4xx_is_never_retried(
    bookmarked_api_server: BookmarkedApiServer, tmp_path: Path
) -> None:
    bookmarked_api_server.inject(400, path="/schools")

    with pytest.raises(ConnectorError, match=r"answered 400 \(bad_filter: injected fault\)"):
        api_connector(bookmarked_api_server, tmp_path).fetch_roster()
    assert len(bookmarked_api_server.data_requests("/schools")) == 1


def test_slow_answer_times_out(bookmarked_api_server: BookmarkedApiServer, tmp_path: Path) -> None:
    connector = api_connector(bookmarked_api_server, tmp_path)
    connector.timeout = (2.0, 0.2)
    connector.retries = 0
    bookmarked_api_server.inject(200, path="/customers/101", delay=1.0)

    with pytest.raises(ConnectorError, match=r"GET /customers/101 failed: no answer within 0.2 s"):
        connector.fetch_roster()


# -- refusals ----------------------------------------------------------------------------


def test_wrong_secret_is_a_clear_error_without_the_secret(
    bookmarked_api_server: BookmarkedApiServer, tmp_path: Path
) -> None:
    wrong = "not-the-secret-at-all"
    with pytest.raises(ConnectorError) as caught:
        api_connector(bookmarked_api_server, tmp_path, secret=wrong).fetch_roster()

    message = str(caught.value)
    assert bookmarked_api_server.base_url in message
    assert "token request was refused (401 invalid_client" in message
    assert wrong not in message
    assert len(bookmarked_api_server.token_requests()) == 1  # a 401 is never retried


def test_credentials_and_tokens_never_reach_errors_logs_or_the_audit(
    bookmarked_api_server: BookmarkedApiServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-client-secret-77"
    refused = api_connector(bookmarked_api_server, tmp_path, secret=wrong)
    with pytest.raises(ConnectorError) as caught:
        refused.fetch_roster()
    connector = api_connector(bookmarked_api_server, tmp_path)
    connector.fetch_roster()
    bookmarked_api_server.expire_tokens()
    connector.fetch_student("stu-1")  # a renewal after 401 invalid_token

    assert len(bookmarked_api_server.token_requests()) == 3
    issued = [r.headers["authorization"].split()[1] for r in bookmarked_api_server.data_requests()]
    said = "\n".join(
        [str(caught.value), caplog.text]
        + [e.detail for e in refused.audit.events + connector.audit.events]
    )
    for secret in {wrong, CLIENT_SECRET, *issued}:
        assert secret not in said


def test_an_error_body_that_echoes_the_request_is_quoted_masked(
    bookmarked_api_server: BookmarkedApiServer, tmp_path: Path
) -> None:
    """A gateway in debug mode repeats the request, Authorization header included: the
    error keeps the status and code, never the Basic credential or a bearer token."""
    echoed = "Basic Y2xpZW50LTE6c2VjcmV0LXZhbHVlLWZyb20tdGhlLWdhdGV3YXk="
    bookmarked_api_server._token = lambda request: Reply(  # type: ignore[method-assign]
        401,
        {
            "error": "invalid_client",
            "message": f"request was: POST /oauth/token Authorization: {echoed}",
        },
    )
    with pytest.raises(ConnectorError) as caught:
        api_connector(bookmarked_api_server, tmp_path).fetch_roster()
    message = str(caught.value)
    assert "token request was refused (401 invalid_client: request was: POST" in message
    assert "Y2xpZW50LTE6c2VjcmV0" not in message and "Authorization: ****" in message


def test_token_answer_without_an_access_token_is_a_clear_error(
    bookmarked_api_server: BookmarkedApiServer, tmp_path: Path
) -> None:
    bookmarked_api_server._token = lambda request: Reply(  # type: ignore[method-assign]
        200, {"token_type": "Bearer", "expires_in": 3600}
    )

    with pytest.raises(
        ConnectorError, match=r"the token endpoint answered 200 without a Bearer `access_token`"
    ):
        api_connector(bookmarked_api_server, tmp_path).fetch_roster()


def test_scope_not_granted_is_a_clear_error(
    bookmarked_api_server: BookmarkedApiServer, tmp_path: Path
) -> None:
    with pytest.raises(ConnectorError, match=r"token request was refused \(400 invalid_scope"):
        api_connector(bookmarked_api_server, tmp_path, scope="roster.write").fetch_roster()


def test_token_without_roster_read_gets_403(
    bookmarked_api_server: BookmarkedApiServer, tmp_path: Path
) -> None:
    bookmarked_api_server.clients[CLIENT_ID] = ApiClient(
        CLIENT_SECRET, {"audit.read"}, {CUSTOMER_ID}
    )
    with pytest.raises(
        ConnectorError,
        match=r"403 \(insufficient_scope: roster.read required\): "
        r"the token's scope 'audit.read' does not allow reading rosters",
    ):
        api_connector(bookmarked_api_server, tmp_path, scope="audit.read").fetch_roster()


def test_customer_outside_the_clients_scope(
    bookmarked_api_server: BookmarkedApiServer, tmp_path: Path
) -> None:
    connector = api_connector(bookmarked_api_server, tmp_path, customer_id=OTHER_CUSTOMER_ID)
    with pytest.raises(ConnectorError, match=r"customer 202 is not in this API client's scope"):
        connector.fetch_roster()


def test_unknown_customer(bookmarked_api_server: BookmarkedApiServer, tmp_path: Path) -> None:
    with pytest.raises(
        ConnectorError,
        match=r"404 \(not_found: no customer 999\): no customer "
        r"with id 999; check \$\.bookmarked\.customer_id in api-customer\.json",
    ):
        api_connector(bookmarked_api_server, tmp_path, customer_id=999).test_connection()


def test_unreachable_api(tmp_path: Path) -> None:
    from reconciliation_tests.fixtures.aws import free_port

    url = f"http://127.0.0.1:{free_port()}/support/v1"
    connector = bookmarked_connector(
        api_settings(tmp_path, url),
        CredentialResolver({"BOOKMARKED_API_SECRET": "x" * 8}),
        AuditLog(None),
    )
    assert isinstance(connector, BookmarkedApiConnector)
    connector.retries = 0
    with pytest.raises(ConnectorError, match=rf"{url}: cannot reach the token endpoint"):
        connector.fetch_roster()


@pytest.mark.parametrize(
    ("table", "row_id", "field", "value", "found"),
    [
        ("users", 11, "grade", 5, "a JSON int"),  # a number where schema.sql has TEXT
        ("users", 11, "is_active", None, "null"),  # NOT NULL in schema.sql
        ("users", 11, "id", "11", "a JSON str"),
        ("classes", 31, "name", None, "null"),
        ("enrollments", 43, "end_date", "2024-W51-5", "a JSON str"),  # an ISO week date
        ("enrollments", 43, "start_date", "2024-08-20T00:00:00Z", "a JSON str"),
    ],
)
def test_a_wrongly_typed_value_is_located(
    bookmarked_api_server: BookmarkedApiServer,
    tmp_path: Path,
    table: str,
    row_id: int,
    field: str,
    value: object,
    found: str,
) -> None:
    row = next(r for r in bookmarked_api_server.rows[table] if r["id"] == row_id)
    row[field] = value

    with pytest.raises(SourceDataError, match=f"{found} where") as caught:
        api_connector(bookmarked_api_server, tmp_path).fetch_roster()

    error = caught.value
    assert error.file == f"{bookmarked_api_server.base_url}/customers/101/{table}"
    assert (error.field, error.record) == (f"{table}.{field}", f"{table}.id {row_id}")


def test_a_missing_field_is_located_not_read_as_null(
    bookmarked_api_server: BookmarkedApiServer, tmp_path: Path
) -> None:
    """A renamed field (`active` for `is_active`) must not turn every account inactive."""
    for user in bookmarked_api_server.rows["users"]:
        user["active"] = user.pop("is_active")

    with pytest.raises(SourceDataError, match="the field is missing") as caught:
        api_connector(bookmarked_api_server, tmp_path).fetch_roster()

    assert (caught.value.field, caught.value.record) == ("users.is_active", "users.id 10")


def test_a_page_without_next_cursor_is_an_error_not_the_last_page(
    bookmarked_api_server: BookmarkedApiServer, tmp_path: Path
) -> None:
    serve = bookmarked_api_server._collection

    def without_next_cursor(request: Any, name: str, customer_id: int) -> Reply:
        reply = serve(request, name, customer_id)
        reply.body.pop("next_cursor")
        return reply

    bookmarked_api_server._collection = without_next_cursor  # type: ignore[method-assign]
    connector = api_connector(bookmarked_api_server, tmp_path)

    with pytest.raises(SourceDataError, match="the answer has no `next_cursor`"):
        connector.fetch_roster()


# -- audit and registry ------------------------------------------------------------------


def test_every_request_is_audited_without_row_data(
    bookmarked_api_server: BookmarkedApiServer, tmp_path: Path
) -> None:
    connector = api_connector(bookmarked_api_server, tmp_path)
    connector.fetch_roster()

    events = connector.audit.events
    assert len(events) == len(bookmarked_api_server.requests)
    assert {e.system for e in events} == {"bookmarked-api"}
    users = next(e for e in events if e.tables == ("users",))
    assert users.row_count == 9 and users.action == "request"
    assert users.detail == (
        "bookmarked customer 101; GET /customers/101/users?include_deleted=true&limit=5000: 200"
    )
    text = json.dumps([e.detail for e in events])
    assert "Lovelace" not in text and "example.org" not in text and CLIENT_SECRET not in text


def test_selected_by_bookmarked_type_api(
    bookmarked_api_server: BookmarkedApiServer, tmp_path: Path
) -> None:
    assert BOOKMARKED_CONNECTORS["api"] is BookmarkedApiConnector
    connector = api_connector(bookmarked_api_server, tmp_path)
    assert connector.describe() == f"api {bookmarked_api_server.base_url}"
    assert connector.test_connection() == (
        f"{bookmarked_api_server.base_url}: token issued for scope 'roster.read', "
        "customer 101 (Springfield USD) readable"
    )
