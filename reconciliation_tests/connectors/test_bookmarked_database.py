"""The Bookmarked database connector on SQLite and on a real PostgreSQL server.

The same sample database (fixtures/postgres.py: SAMPLE) is built on both, and the same
assertions run against each: what support relies on (one customer only, soft deletes,
hand-made accounts, merged parent accounts, a cheap one-student read, an audit trail
without student data, no password in any message) and the proof that the connector
cannot write: through its own connections, INSERT and UPDATE are refused.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from reconciliation.audit import AuditLog
from reconciliation.bookmarked import TABLES as BOOKMARKED_TABLES
from reconciliation.connectors import ConnectorError, SourceDataError
from reconciliation.connectors.bookmarked_database import (
    BookmarkedDatabaseConnector,
    _require_read_only_session,
)
from reconciliation.credentials import CredentialResolver
from reconciliation.roster import SCHEMAS, TABLES
from reconciliation.settings import PROJECT_ROOT, CustomerSettings
from reconciliation_tests.fixtures.aws import free_port
from reconciliation_tests.fixtures.postgres import (
    CUSTOMER_ID,
    OTHER_CUSTOMER_ID,
    build_bookmarked_database,
)

ROLE_SQL = PROJECT_ROOT / "deploy" / "postgres" / "readonly_role.sql"
ROLE = "bookmarked_reconciliation"
#: student data of the sample that must never reach an audit line or a message
STUDENT_DATA = ("Ada", "Lovelace", "example.org", "Example.ORG", "Okafor")


# -- databases and connectors ------------------------------------------------------------


@pytest.fixture(scope="session")
def sample_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bookmarked") / "bookmarked.db"
    engine = create_engine(f"sqlite:///{path}")
    build_bookmarked_database(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def sample_pg_url(pg_url: str) -> str:
    engine = create_engine(pg_url)
    build_bookmarked_database(engine)
    engine.dispose()
    return pg_url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """The sample database's URL, once per dialect."""
    if request.param == "sqlite":
        return f"sqlite:///{request.getfixturevalue('sample_sqlite')}"
    return request.getfixturevalue("sample_pg_url")


@pytest.fixture
def scratch_sqlite(sample_sqlite: Path, tmp_path: Path) -> Path:
    """A private copy of the sample, for tests that try to change it."""
    return Path(shutil.copy(sample_sqlite, tmp_path / "scratch.db"))


@pytest.fixture
def audit() -> AuditLog:
    return AuditLog(None)


def make_connector(
    tmp_path: Path,
    database_url: str,
    *,
    audit: AuditLog | None = None,
    environ: dict[str, str] | None = None,
    bookmarked_customer_id: int = CUSTOMER_ID,
    settings_file: Path | None = None,
) -> BookmarkedDatabaseConnector:
    settings = CustomerSettings(
        customer_id="springfield",
        name="Springfield USD",
        environment="staging",
        bookmarked={"customer_id": bookmarked_customer_id, "database_url": database_url},
        source={"type": "oneroster_csv", "location": "unused"},
        path=settings_file or tmp_path / "springfield.json",
    )
    return BookmarkedDatabaseConnector(
        settings, CredentialResolver(environ or {}), audit or AuditLog(None)
    )


def by_id(frame: pl.DataFrame) -> dict[int, dict[str, Any]]:
    return {row["bookmarked_id"]: row for row in frame.iter_rows(named=True)}


def rows_of(sqlite: Path, sql: str) -> list[tuple[Any, ...]]:
    engine = create_engine(f"sqlite:///{sqlite}")
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql))]
    finally:
        engine.dispose()


# -- the canonical roster ----------------------------------------------------------------


def test_reads_one_customers_rows_into_the_canonical_roster(
    database_url: str, tmp_path: Path
) -> None:
    roster = make_connector(tmp_path, database_url).fetch_roster()

    assert (roster.customer_id, roster.side) == ("springfield", "bookmarked")
    for table in TABLES:
        assert roster.table(table).schema == pl.Schema(SCHEMAS[table])
    # the neighbour shares sourcedIds (sch-1, stu-1, cls-1, enr-1) but none of its rows come
    assert roster.row_counts() == {
        "schools": 2,
        "users": 9,
        "links": 4,
        "classes": 2,
        "enrollments": 6,
    }
    assert sorted(roster.schools["bookmarked_id"]) == [1, 2]
    assert 20 not in roster.users["bookmarked_id"] and 21 not in roster.users["bookmarked_id"]
    assert 32 not in roster.classes["bookmarked_id"]
    assert 46 not in roster.enrollments["bookmarked_id"]

    assert by_id(roster.users)[10] == {
        "sis_id": "stu-1",
        "role": "student",
        "role_raw": "student",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": " Ada.Lovelace@Example.ORG ",
        "email_normalized": "ada.lovelace@example.org",
        "username": "ada",
        "student_number": "1001",
        "grade": "KG",
        "grade_raw": "K",
        "school_sis_id": "sch-1",
        "org_sis_ids": None,  # Bookmarked keeps one school per user
        "active": True,
        "deleted": False,
        "bookmarked_id": 10,
    }
    assert by_id(roster.users)[11]["grade"] == "05"
    assert by_id(roster.schools)[2] == {
        "sis_id": "sch-2",
        "name": "Roosevelt Middle",
        "state_id": "0102",
        "active": True,
        "bookmarked_id": 2,
    }
    assert by_id(roster.classes)[31] == {
        "sis_id": "cls-2",
        "school_sis_id": "sch-2",
        "name": "ELA 7",
        "course_code": "ELA-7",
        "term_sis_id": "term-1",
        "active": True,
        "bookmarked_id": 31,
    }
    enrollments = by_id(roster.enrollments)
    assert enrollments[40] == {
        "sis_id": "enr-1",
        "class_sis_id": "cls-1",
        "user_sis_id": "stu-1",
        "role": "student",
        "active": True,
        "start_date": date(2024, 8, 20),
        "end_date": date(2025, 6, 1),
        "bookmarked_id": 40,
    }
    assert enrollments[43]["active"] is False
    # Ada is still enrolled at the campus she is not assigned to: held as stored
    assert enrollments[45]["class_sis_id"] == "cls-2"


def test_meta_tells_the_last_sync_runs_and_holds_no_row_data(
    database_url: str, tmp_path: Path
) -> None:
    meta = make_connector(tmp_path, database_url).fetch_roster().meta

    assert meta["dialect"] == make_url(database_url).get_backend_name()
    assert meta["bookmarked_customer_id"] == CUSTOMER_ID
    assert meta["last_sync"] == {
        "started_at": "2025-01-05T02:00:00",
        "finished_at": "2025-01-05T02:01:00",
        "status": "failed",
    }
    assert meta["last_successful_sync"] == {
        "started_at": "2025-01-04T02:00:00",
        "finished_at": "2025-01-04T02:10:00",
        "status": "succeeded",
    }
    dumped = json.dumps(meta)
    assert not any(value in dumped for value in STUDENT_DATA)


def test_soft_deleted_and_disabled_accounts(database_url: str, tmp_path: Path) -> None:
    roster = make_connector(tmp_path, database_url).fetch_roster()
    users = by_id(roster.users)

    # soft-deleted: not a live account, whatever is_active says
    assert (users[13]["active"], users[13]["deleted"]) == (False, True)
    assert (users[18]["active"], users[18]["deleted"]) == (False, True)
    # disabled but not deleted
    assert (users[12]["active"], users[12]["deleted"]) == (False, False)
    # the link between two deleted accounts is still what the database holds
    links = roster.links.filter(pl.col("parent_bookmarked_id") == 18)
    assert links.rows() == [("par-4", "stu-4", 18, 13)]


def test_accounts_created_by_hand_have_no_sis_id_but_keep_their_row(
    database_url: str, tmp_path: Path
) -> None:
    roster = make_connector(tmp_path, database_url).fetch_roster()

    helper = by_id(roster.users)[17]
    assert (helper["sis_id"], helper["role"], helper["school_sis_id"]) == (None, "teacher", "sch-1")
    enrollment = by_id(roster.enrollments)[44]
    assert (enrollment["sis_id"], enrollment["user_sis_id"], enrollment["class_sis_id"]) == (
        None,
        None,
        "cls-1",
    )


def test_merged_parent_account_is_linked_to_both_families(
    database_url: str, tmp_path: Path
) -> None:
    roster = make_connector(tmp_path, database_url).fetch_roster()

    merged = roster.links.filter(pl.col("parent_bookmarked_id") == 15).sort("student_sis_id")
    assert merged.select("parent_sis_id", "student_sis_id", "student_bookmarked_id").rows() == [
        ("par-2", "stu-1", 10),
        ("par-2", "stu-3", 12),
    ]
    assert roster.users.filter(pl.col("email_normalized") == "family@example.org").height == 1


def test_reading_in_small_chunks_gives_the_same_roster(database_url: str, tmp_path: Path) -> None:
    whole = make_connector(tmp_path, database_url).fetch_roster()
    chunked_connector = make_connector(tmp_path, database_url)
    chunked_connector.chunk_rows = 2
    chunked = chunked_connector.fetch_roster()

    for table in TABLES:
        assert chunked.table(table).equals(whole.table(table)), table


def test_sqlites_arrow_read_gives_the_roster_of_the_row_read(
    scratch_sqlite: Path, tmp_path: Path
) -> None:
    """The whole customer through ADBC (Arrow columns) and through the driver's rows: the
    same roster, also where a column's first values are all NULL (no type to infer)."""
    engine = create_engine(f"sqlite:///{scratch_sqlite}")
    with engine.begin() as connection:
        connection.execute(text("UPDATE users SET deleted_at = NULL, grade = NULL"))
        connection.execute(
            text("UPDATE users SET deleted_at = '2025-01-02 03:04:05', grade = '3' WHERE id = 14")
        )
    engine.dispose()
    url = f"sqlite:///{scratch_sqlite}"
    arrow = make_connector(tmp_path, url).fetch_roster()
    rows_connector = make_connector(tmp_path, url)
    rows_connector.arrow_reads = False
    rows = rows_connector.fetch_roster()
    assert arrow.meta.keys() == rows.meta.keys()
    for table in TABLES:
        assert arrow.table(table).equals(rows.table(table)), table
    assert by_id(arrow.users)[14]["deleted"] is True


# -- one student -------------------------------------------------------------------------


def test_fetch_student_reads_only_that_students_context(
    database_url: str, tmp_path: Path, audit: AuditLog
) -> None:
    connector = make_connector(tmp_path, database_url, audit=audit)
    student = connector.fetch_student("stu-1")

    assert sorted(student.users["bookmarked_id"]) == [10, 15]  # Ada and her parent account
    # the parent's other child (stu-3) is not part of Ada's diagnosis
    assert student.links.select("parent_sis_id", "student_sis_id").rows() == [("par-2", "stu-1")]
    assert sorted(student.enrollments["bookmarked_id"]) == [40, 45]
    assert sorted(student.classes["bookmarked_id"]) == [30, 31]
    assert sorted(student.schools["bookmarked_id"]) == [1, 2]
    assert student.meta["scope"] == {"students": ["stu-1"]}
    assert student.meta["last_successful_sync"]["status"] == "succeeded"

    # every query was scoped to her neighbourhood (her parent's other child, stu-3, is
    # read, then cut): the whole customer has 9 users, 6 enrollments
    assert audit.events and all(event.row_count <= 3 for event in audit.events)
    # links: 1 of hers, 2 of her parent's family, 2 of those children; 3 users (Ada, her
    # parent, stu-3); 3 enrollments, 2 classes, 2 schools
    assert sum(e.row_count for e in audit.events if "neighbourhood of 1" in e.detail) == 15

    # and it is the same slice the whole roster would give
    whole = make_connector(tmp_path, database_url).fetch_roster().for_students(["stu-1"])
    for table in TABLES:
        key = "bookmarked_id" if "bookmarked_id" in whole.table(table).columns else None
        ours = student.table(table).sort(key or "student_bookmarked_id")
        theirs = whole.table(table).sort(key or "student_bookmarked_id")
        assert ours.equals(theirs), table


def test_fetch_student_unknown_to_bookmarked_is_an_empty_roster(
    database_url: str, tmp_path: Path
) -> None:
    student = make_connector(tmp_path, database_url).fetch_student("nobody-42")
    assert student.row_counts() == dict.fromkeys(TABLES, 0)


# -- audit -------------------------------------------------------------------------------


def test_every_query_is_audited_without_row_data(database_url: str, tmp_path: Path) -> None:
    log_file = tmp_path / "audit.jsonl"
    connector = make_connector(tmp_path, database_url, audit=AuditLog(log_file))
    roster = connector.fetch_roster()

    events = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert events
    for event in events:
        assert event["customer_id"] == "springfield"
        assert event["system"] == "bookmarked-database"
        assert event["action"] == "query"
        assert set(event["tables"]) <= set(BOOKMARKED_TABLES)
        assert event["at"] and event["actor"]
        assert f"bookmarked customer {CUSTOMER_ID}" in event["detail"]
    counted = {
        e["detail"].split("; ")[1].split(",")[0]: e["row_count"]
        for e in events
        if "whole customer" in e["detail"]
    }
    assert counted == roster.row_counts()
    text_of_log = log_file.read_text()
    assert not any(value in text_of_log for value in STUDENT_DATA)


# -- test_connection and errors ----------------------------------------------------------


def test_test_connection_reports_dialect_customer_and_read_only(
    database_url: str, tmp_path: Path
) -> None:
    message = make_connector(tmp_path, database_url).test_connection()

    assert make_url(database_url).get_backend_name() in message
    assert f"customer {CUSTOMER_ID} (Springfield USD) found" in message
    assert message.endswith("session read-only")


def test_unknown_customer_is_a_clear_error(database_url: str, tmp_path: Path) -> None:
    connector = make_connector(tmp_path, database_url, bookmarked_customer_id=999)
    with pytest.raises(ConnectorError, match=r"no customer with id 999 \(customers.id\)"):
        connector.fetch_roster()
    with pytest.raises(ConnectorError, match=r"springfield\.json"):
        connector.test_connection()


def test_relative_sqlite_path_is_relative_to_the_settings_file(
    sample_sqlite: Path, tmp_path: Path
) -> None:
    (tmp_path / "settings").mkdir()
    (tmp_path / "data").mkdir()
    shutil.copy(sample_sqlite, tmp_path / "data" / "bookmarked.db")
    connector = make_connector(
        tmp_path,
        "sqlite:///../data/bookmarked.db",
        settings_file=tmp_path / "settings" / "springfield.json",
    )

    assert connector.fetch_roster().row_counts()["users"] == 9
    assert connector.fetch_roster().meta["database"] == (
        f"sqlite:///{(tmp_path / 'data' / 'bookmarked.db').resolve()}"
    )


def test_postgresql_urls_use_psycopg2(tmp_path: Path) -> None:
    for url in (
        "postgresql://reader@db.internal:5432/bookmarked",
        "postgres://reader@db.internal/bookmarked",
    ):
        engine = make_connector(tmp_path, url).engine()  # builds, does not connect
        try:
            assert engine.url.drivername == "postgresql+psycopg2"
        finally:
            engine.dispose()


def test_bad_urls_and_missing_files_are_clear_errors(tmp_path: Path, sample_sqlite: Path) -> None:
    cases = {
        "not a url at all": "not a SQLAlchemy URL",
        "mysql://reader@db/bookmarked": "unsupported driver 'mysql'",
        "postgresql+psycopg://reader@db/bookmarked": "unsupported driver",
        "sqlite://": "names no database file",
        f"sqlite:///{tmp_path}/absent.db": "no database file at",
    }
    for url, expected in cases.items():
        with pytest.raises(ConnectorError, match=expected):
            make_connector(tmp_path, url).test_connection()

    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()  # a valid SQLite file without Bookmarked's tables
    with pytest.raises(ConnectorError, match="table customers is missing"):
        make_connector(tmp_path, f"sqlite:///{empty}").fetch_roster()


def test_unreachable_server_names_the_host_never_the_password(tmp_path: Path) -> None:
    password = "Pw-that-must-not-leak-7731"
    url = f"postgresql://reader:{password}@127.0.0.1:{free_port()}/bookmarked"
    connector = make_connector(
        tmp_path, "env:BOOKMARKED_DB_URL", environ={"BOOKMARKED_DB_URL": url}
    )

    with pytest.raises(ConnectorError) as caught:
        connector.test_connection()
    message = str(caught.value)
    assert "env:BOOKMARKED_DB_URL" in message and "127.0.0.1" in message
    assert "refused" in message.lower()
    assert password not in message and password not in repr(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert password not in connector.describe()


def test_credential_reference_that_does_not_resolve(tmp_path: Path) -> None:
    connector = make_connector(tmp_path, "env:BOOKMARKED_DB_URL", environ={})
    with pytest.raises(ConnectorError, match="env:BOOKMARKED_DB_URL: the environment variable"):
        connector.fetch_roster()


def test_url_from_aws_secrets_manager(aws_env: str, sample_sqlite: Path, tmp_path: Path) -> None:
    import boto3

    boto3.client("secretsmanager").create_secret(
        Name="bookmarked/reconciliation-test",
        SecretString=json.dumps({"url": f"sqlite:///{sample_sqlite}"}),
    )
    connector = make_connector(tmp_path, "aws-secretsmanager:bookmarked/reconciliation-test#url")

    assert connector.describe() == "database aws-secretsmanager:bookmarked/reconciliation-test#url"
    assert connector.fetch_roster().row_counts()["users"] == 9


@pytest.mark.postgres
def test_password_from_the_environment_reaches_the_server_and_no_message(
    sample_pg_url: str, tmp_path: Path
) -> None:
    password = "S3cret-in-env-only-5521"  # trust auth accepts it; it must still never show
    url = make_url(sample_pg_url).set(password=password).render_as_string(hide_password=False)
    environ = {"BOOKMARKED_DB_URL": url}

    connector = make_connector(tmp_path, "env:BOOKMARKED_DB_URL", environ=environ)
    roster = connector.fetch_roster()
    assert roster.row_counts()["users"] == 9
    assert password not in json.dumps(roster.meta) and password not in connector.test_connection()

    unknown = make_connector(
        tmp_path,
        "env:BOOKMARKED_DB_URL",
        environ=environ,
        bookmarked_customer_id=OTHER_CUSTOMER_ID + 1,
    )
    with pytest.raises(ConnectorError) as caught:
        unknown.fetch_roster()
    assert password not in str(caught.value)

    missing_db = make_url(url).set(database="no_such_database_here")
    environ["BOOKMARKED_DB_URL"] = missing_db.render_as_string(hide_password=False)
    with pytest.raises(ConnectorError, match="no_such_database_here") as caught:
        make_connector(tmp_path, "env:BOOKMARKED_DB_URL", environ=environ).test_connection()
    assert password not in str(caught.value)


def test_a_value_of_the_wrong_type_names_table_field_and_row(
    scratch_sqlite: Path, tmp_path: Path
) -> None:
    engine = create_engine(f"sqlite:///{scratch_sqlite}")
    with engine.begin() as connection:  # SQLite lets a sync write text into a BOOLEAN
        connection.execute(text("UPDATE users SET is_active = 'yes' WHERE id = 14"))
    engine.dispose()

    with pytest.raises(SourceDataError) as caught:
        make_connector(tmp_path, f"sqlite:///{scratch_sqlite}").fetch_roster()
    assert caught.value.field == "users.is_active"
    assert caught.value.record == "users.id 14"
    assert "str value where bool was expected" in str(caught.value)


# -- read-only, proven -------------------------------------------------------------------


def test_sqlite_connection_refuses_insert_and_update(scratch_sqlite: Path, tmp_path: Path) -> None:
    connector = make_connector(tmp_path, f"sqlite:///{scratch_sqlite}")
    before = rows_of(scratch_sqlite, "SELECT id, first_name, is_active FROM users ORDER BY id")

    writes = [
        "INSERT INTO customers (id, name, created_at) VALUES (999, 'x', '2025-01-01')",
        "UPDATE users SET is_active = 0 WHERE id = 10",
        "DELETE FROM parent_students",
    ]
    for statement in writes:
        with pytest.raises(ConnectorError, match="readonly database"), connector.connect() as c:
            c.execute(text(statement))
            c.commit()
    # switching the per-connection guard off does not help: the file is open read-only
    with pytest.raises(ConnectorError, match="readonly database"), connector.connect() as c:
        c.exec_driver_sql("PRAGMA query_only = OFF")
        c.execute(text(writes[1]))
        c.commit()

    assert (
        rows_of(scratch_sqlite, "SELECT id, first_name, is_active FROM users ORDER BY id") == before
    )


def test_sqlites_arrow_reader_refuses_writes(scratch_sqlite: Path, tmp_path: Path) -> None:
    """The ADBC connection of the whole-customer reads is opened read-only too."""
    import adbc_driver_manager

    connector = make_connector(tmp_path, f"sqlite:///{scratch_sqlite}")
    before = rows_of(scratch_sqlite, "SELECT id, first_name, is_active FROM users ORDER BY id")
    with connector.connect() as connection, connector._arrow_cursor(connection) as cursor:
        assert cursor is not None
        with pytest.raises(adbc_driver_manager.Error, match="readonly database"):
            cursor.execute("UPDATE users SET is_active = 0 WHERE id = 10")
        # with the per-connection guard off, the file is still open read-only
        cursor.execute("PRAGMA query_only = OFF")
        with pytest.raises(adbc_driver_manager.Error, match="readonly database"):
            cursor.execute("DELETE FROM parent_students")
    assert (
        rows_of(scratch_sqlite, "SELECT id, first_name, is_active FROM users ORDER BY id") == before
    )
    assert rows_of(scratch_sqlite, "SELECT count(*) FROM customers WHERE id = 999") == [(0,)]


@pytest.mark.postgres
def test_postgresql_connection_refuses_insert_and_update(
    sample_pg_url: str, tmp_path: Path
) -> None:
    connector = make_connector(tmp_path, sample_pg_url)

    with connector.connect() as connection:
        assert connection.exec_driver_sql("SHOW transaction_read_only").scalar() == "on"
    for statement in (
        "INSERT INTO customers (id, name, created_at) VALUES (999, 'x', '2025-01-01')",
        "UPDATE users SET is_active = false WHERE id = 10",
    ):
        with (
            pytest.raises(ConnectorError, match="read-only transaction"),
            connector.connect() as connection,
        ):
            connection.execute(text(statement))
            connection.commit()

    check = create_engine(sample_pg_url)
    with check.connect() as connection:
        assert connection.execute(text("SELECT is_active FROM users WHERE id = 10")).scalar()
        assert connection.execute(text("SELECT count(*) FROM customers")).scalar() == 2
    check.dispose()


@pytest.mark.postgres
def test_a_postgresql_session_that_is_not_read_only_is_refused(sample_pg_url: str) -> None:
    """What a pooler that drops our startup option would hand us: the connect hook of the
    connector's engine refuses it rather than read through it."""
    plain = create_engine(sample_pg_url)  # no read-only option
    raw = plain.raw_connection()
    try:
        with pytest.raises(ConnectorError, match="the session is not read-only"):
            _require_read_only_session("test server")(raw.dbapi_connection, None)
    finally:
        raw.close()
        plain.dispose()


@pytest.mark.postgres
def test_readonly_role_cannot_write_even_with_read_only_switched_off(
    sample_pg_url: str, tmp_path: Path
) -> None:
    admin = create_engine(sample_pg_url)
    raw = admin.raw_connection()  # the file as a DBA runs it: one script, DO blocks and all
    try:
        with raw.cursor() as cursor:
            cursor.execute(ROLE_SQL.read_text())
            cursor.execute(ROLE_SQL.read_text())  # idempotent: a second run changes nothing
            cursor.execute(f"ALTER ROLE {ROLE} PASSWORD 'role-pw-for-tests'")
        raw.commit()
    finally:
        raw.close()

    role_url = make_url(sample_pg_url).set(username=ROLE, password="role-pw-for-tests")
    environ = {"BOOKMARKED_DB_URL": role_url.render_as_string(hide_password=False)}
    try:
        # the connector works as this role: SELECT on the contract's tables is enough
        connector = make_connector(tmp_path, "env:BOOKMARKED_DB_URL", environ=environ)
        assert connector.fetch_roster().row_counts()["enrollments"] == 6
        assert connector.test_connection().endswith("session read-only")

        # through the connector's own connection, turning read-only off is not enough
        with (
            pytest.raises(ConnectorError, match="permission denied for table users"),
            connector.connect() as connection,
        ):
            connection.exec_driver_sql("SET TRANSACTION READ WRITE")
            assert connection.exec_driver_sql("SHOW transaction_read_only").scalar() == "off"
            connection.execute(text("UPDATE users SET is_active = false WHERE id = 10"))

        # a plain client without our startup option starts read-only (ALTER ROLE ... SET)
        # and, once it switches that off, still may not write anything
        plain = create_engine(role_url)
        try:
            with plain.connect() as connection:
                assert (
                    connection.exec_driver_sql("SHOW default_transaction_read_only").scalar()
                    == "on"
                )
            denied = "permission denied for"
            attempts = {
                "INSERT INTO customers (id, name, created_at) VALUES (999, 'x', now())": (
                    f"{denied} table customers"
                ),
                "UPDATE users SET is_active = false WHERE id = 10": f"{denied} table users",
                "DELETE FROM parent_students": f"{denied} table parent_students",
                "CREATE TABLE public.scratch (id int)": f"{denied} schema public",
            }
            for statement, refusal in attempts.items():
                with plain.connect() as connection:
                    connection.exec_driver_sql(
                        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"
                    )
                    connection.commit()
                    assert (
                        connection.exec_driver_sql("SHOW transaction_read_only").scalar() == "off"
                    )
                    with pytest.raises(ProgrammingError, match=refusal):
                        connection.exec_driver_sql(statement)
        finally:
            plain.dispose()
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP OWNED BY {ROLE}")
        with admin.connect() as connection:
            # the role is cluster-wide; another session's database may still grant to it
            connection.exec_driver_sql(
                f"DO $$ BEGIN DROP ROLE {ROLE}; "
                "EXCEPTION WHEN dependent_objects_still_exist THEN NULL; END $$"
            )
            connection.commit()
        admin.dispose()

    with create_engine(sample_pg_url).connect() as connection:
        assert connection.execute(text("SELECT is_active FROM users WHERE id = 10")).scalar()
