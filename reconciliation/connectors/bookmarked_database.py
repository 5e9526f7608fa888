"""Reads one customer's rows from Bookmarked's own database into the canonical roster.

The database belongs to Bookmarked (its roster sync writes it); we only READ it, and that
is enforced at every level we control, not assumed:

- PostgreSQL: every session starts with `default_transaction_read_only=on` (a startup
  option), and each new connection is checked for it, so a pooler that drops startup
  options is refused instead of trusted. Production connects as the SELECT-only role of
  `deploy/postgres/readonly_role.sql`, which cannot write even if a session turns
  read-only off.
- SQLite (demo, tests): the file is opened as the URI `file:...?mode=ro` with
  `PRAGMA query_only=ON`, so any write raises.
- The connector itself only runs SELECTs, each recorded in the audit log (when, customer,
  tables, row count; never row data).

What the rows mean is not decided here: the SELECTs return plain schema.sql rows of one
customer (or one student's context) and `bookmarked_model.build_roster`, shared with the
support API connector, maps them. So a user's school or an enrollment's user that lies
outside the customer stays unnamed (null), exactly as through the API.

Large customers stream: PostgreSQL reads through a server-side cursor, `chunk_rows` rows
at a time, each chunk turned into polars columns at once (no list of dicts for millions
of enrollments). SQLite's whole-customer reads go through ADBC (`adbc-driver-sqlite`),
which hands back Arrow columns from C with no Python object per value, on a second
read-only connection to the same file (`_arrow_cursor`); a column whose values are not
all of its type (SQLite stores anything anywhere) falls back to the driver's rows, which
name the bad value. Enrollments are read with row ids only, and named by the mapping
from the classes and users already read, not joined row by row in SQL. Measured on a
shared 2-core container: the scan benchmark's 200k-student customer (393k users, 1.07M
enrollments) reads from SQLite in 2.6 s against 5.1 s through the driver's rows, its
1M-student one in 13.6 s against 25 s (8.8 s of it SQLite executing the queries).
PostgreSQL (benchmarks/bookmarked_database_bench.py, 1,000,000 enrollments) reads in
5.0 s, 1.66x a raw psycopg2 server-side-cursor fetch. `fetch_student` on either takes
11-25 ms.

For a diagnosis (`find_people`, `fetch_people`, `fetch_records`) every read is a bound,
customer-scoped WHERE: a person by sis_id, student number, email (trimmed, lower-case) or
parent email; a name through a loose SQL prefilter (its words in order, case-insensitive;
plus any name with a non-ASCII character, whose accents SQL cannot fold like Python) and
then the shared `name_matches`; a neighbourhood in 7 queries (links touching the people,
their families' links, every link of those children, the accounts on them and any
account sharing their sis_id, enrollments, classes, schools): the rows of
`Roster.for_people` of the whole customer, without reading it.

`database_url` in the settings is a credential reference (`env:X`,
`aws-secretsmanager:...`) or a plain URL without password; it is resolved only when a
connection opens. `sqlite:///relative/path.db` is relative to the settings file's folder.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import polars as pl

from reconciliation.audit import AuditEvent
from reconciliation.connectors.base import BookmarkedConnector, ConnectorError, SourceDataError
from reconciliation.connectors.bookmarked_model import (
    FEEDS,
    RAW_SCHEMAS,
    build_roster,
    empty_raw,
    sync_run,
)
from reconciliation.connectors.people import (
    PersonMatch,
    PersonQuery,
    find_people_in,
    name_key,
    name_matches,
    records_of,
    with_scope,
)
from reconciliation.credentials import CredentialError, is_reference, mask_url, redact
from reconciliation.roster import Roster

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection, Engine, Row
    from sqlalchemy.sql.elements import TextClause

SYSTEM = "bookmarked-database"
#: startup option of every PostgreSQL session we open
PG_READ_ONLY_OPTIONS = "-c default_transaction_read_only=on"
APPLICATION_NAME = "bookmarked-reconciliation"
CONNECT_TIMEOUT_SECONDS = 10

# -- the queries -------------------------------------------------------------------------
#
# Plain SQL valid on PostgreSQL and SQLite. Each SELECT returns the rows of ONE schema.sql
# table, with the columns the shared mapping reads (bookmarked_model.RAW_SCHEMAS); joins
# appear only to keep a read inside the customer. Naming references by sourcedId (a
# user's school, an enrollment's class and user) is the mapping's job, done in polars on
# the frames read: a join per enrollment row is what makes SQLite slow, as its BIGINT keys
# are not rowids. Values are always bound, never formatted in.


#: timestamp columns the mapping reads: PostgreSQL hands back datetimes, SQLite its text;
#: both are read as text
_TIMESTAMPS = frozenset({"deleted_at"})


@dataclass(frozen=True)
class _Select:
    table: str  # the schema.sql table whose rows it returns
    alias: str
    source: str  # FROM ... (JOINs only to filter by customer)
    order_by: str
    reads: tuple[str, ...]  # the Bookmarked tables it reads (for the audit log)

    @property
    def columns(self) -> Mapping[str, pl.DataType]:
        return RAW_SCHEMAS[self.table]

    @property
    def sort_keys(self) -> list[str]:
        """`order_by` as the frame's column names (a unique key: ids, or a link's pair)."""
        return [part.strip().split(".")[-1] for part in self.order_by.split(",")]

    def where(self, condition: str, *, ordered: bool = True) -> str:
        selected = ", ".join(
            f"CAST({self.alias}.{name} AS TEXT) AS {name}"
            if name in _TIMESTAMPS
            else f"{self.alias}.{name}"
            for name in self.columns
        )
        order = f" ORDER BY {self.order_by}" if ordered else ""
        return f"SELECT {selected} FROM {self.source} WHERE {condition}{order}"


SCHOOLS = _Select("schools", "s", "schools s", "s.id", ("schools",))
USERS = _Select("users", "u", "users u", "u.id", ("users",))
LINKS = _Select(
    "parent_students",
    "ps",
    "parent_students ps JOIN users p ON p.id = ps.parent_id JOIN users s ON s.id = ps.student_id",
    "ps.parent_id, ps.student_id",
    ("parent_students", "users"),
)
CLASSES = _Select(
    "classes",
    "c",
    "classes c JOIN schools sc ON sc.id = c.school_id",
    "c.id",
    ("classes", "schools"),
)
ENROLLMENTS = _Select(
    "enrollments", "e", "enrollments e", "e.id", ("enrollments", "classes", "schools")
)


def _in_customer_classes(dialect: str) -> str:
    """The enrollment's class belongs to the customer. On SQLite the unary `+` keeps the
    planner from probing enrollments_class once per class (random reads: 6 s per million
    enrollments) and scans enrollments in order instead (under 3 s); PostgreSQL plans
    the semi-join itself and may use the index."""
    column = "+e.class_id" if dialect == "sqlite" else "e.class_id"
    return (
        f"{column} IN (SELECT c.id FROM classes c JOIN schools sc ON sc.id = c.school_id "
        "WHERE sc.customer_id = :customer_id)"
    )


def customer_scope(dialect: str) -> tuple[tuple[_Select, str], ...]:
    """The whole customer: its schools and users, the links between two of its users, the
    classes of its schools (enrollments: `_in_customer_classes`).

    On SQLite the unary `+` on users' customer_id keeps the planner off the customer
    index, whose every row is a random read of the table: it scans users in id order
    instead, and probes users by id for each link (measured at 390k users and 270k links:
    users 1.8 -> 0.75 s of CPU, links 2.6 -> 0.9 s, more in wall time on a busy disk).
    PostgreSQL plans these itself."""
    plus = "+" if dialect == "sqlite" else ""
    return (
        (SCHOOLS, "s.customer_id = :customer_id"),
        (USERS, f"{plus}u.customer_id = :customer_id"),
        (LINKS, f"{plus}p.customer_id = :customer_id AND {plus}s.customer_id = :customer_id"),
        (CLASSES, "sc.customer_id = :customer_id"),
    )


@dataclass(frozen=True)
class _Neighbourhood:
    """The SQL pieces of `fetch_people`: a row is reached through user ids (the people's
    accounts looked up by sis_id first, in subqueries), never through a filter on a joined
    user's sis_id: `s.sis_id IN (...) OR p.sis_id IN (...)` made SQLite walk every user of
    the customer (2-3.7 s per neighbourhood at 100k students, 0.01 s by ids). On SQLite
    the unary `+` keeps the customer_id tests off the customer indexes (a probe by id per
    row instead); PostgreSQL plans these itself."""

    dialect: str

    @property
    def plus(self) -> str:
        return "+" if self.dialect == "sqlite" else ""

    @property
    def in_customer(self) -> str:
        """Both users of a link belong to the customer."""
        return (
            f"{self.plus}p.customer_id = :customer_id AND {self.plus}s.customer_id = :customer_id"
        )

    @property
    def people(self) -> str:
        """The customer's accounts holding the asked sis_ids (`:ids`)."""
        return "SELECT x.id FROM users x WHERE x.customer_id = :customer_id AND x.sis_id IN :ids"

    def sharing(self, accounts: str) -> str:
        """The customer's accounts sharing the sis_id of some of its accounts (`:accounts`)."""
        return (
            "SELECT x.id FROM users x WHERE x.customer_id = :customer_id AND x.sis_id IN "
            f"(SELECT y.sis_id FROM users y WHERE y.id IN :{accounts} "
            f"AND {self.plus}y.customer_id = :customer_id)"
        )


_CUSTOMER = "SELECT id, name FROM customers WHERE id = :customer_id"
_LAST_SYNC = (
    "SELECT started_at, finished_at, status FROM sync_runs WHERE customer_id = :customer_id "
    "{condition} ORDER BY started_at DESC, id DESC LIMIT 1"
)

#: how a column type is named in messages
_KIND: dict[pl.DataType, str] = {
    pl.Int64(): "int",
    pl.String(): "str",
    pl.Boolean(): "bool",
    pl.Date(): "date",
}
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
#: what a driver may hand back for each column type (SQLite: 0/1 and ISO text)
_VALID: dict[pl.DataType, Callable[[Any], bool]] = {
    pl.Int64(): lambda v: isinstance(v, int) and not isinstance(v, bool),
    pl.String(): lambda v: isinstance(v, str),
    pl.Boolean(): lambda v: isinstance(v, bool | int) and v in (0, 1),
    pl.Date(): lambda v: (
        isinstance(v, date) or (isinstance(v, str) and bool(_ISO_DATE.fullmatch(v)))
    ),
}
#: a bound parameter in our SQL (`:customer_id`)
_PARAMETER = re.compile(r":(\w+)")
#: adbc_driver_sqlite's StatementOptions.BATCH_ROWS (not imported: read only on SQLite),
#: and the rows of the one batch a table comes in
_BATCH_ROWS_OPTION = "adbc.sqlite.query.batch_rows"
_ARROW_BATCH_ROWS = 100_000_000
_MISSING_TABLE = re.compile(r'no such table: (\w+)|relation "(\w+)" does not exist')


@dataclass(frozen=True)
class _Target:
    """The resolved database: a URL ready to connect and how to name it in messages."""

    url: URL
    where: str  # never holds the password
    sqlite_path: Path | None = None


class BookmarkedDatabaseConnector(BookmarkedConnector):
    """One customer's Bookmarked rows, read-only, from PostgreSQL (or SQLite for the demo)."""

    kind = "database"
    narrow_lookup: ClassVar[bool] = True
    #: the `bookmarked` block is validated by settings.BOOKMARKED_SCHEMA
    settings_schema: ClassVar[dict[str, Any]] = {}
    #: rows per fetch (and per polars chunk) on large reads
    chunk_rows: int = 50_000
    #: SQLite: the whole customer's reads as Arrow columns (`_arrow_cursor`); False reads
    #: the driver's rows, as on PostgreSQL (the tests compare the two)
    arrow_reads: bool = True

    _target_cache: _Target | None = None

    # -- public API ----------------------------------------------------------------------

    def fetch_roster(self) -> Roster:
        """The whole customer, read in one transaction (one snapshot on PostgreSQL)."""
        started = time.perf_counter()
        params = {"customer_id": self.settings.bookmarked_customer_id}
        with self.connect(snapshot=True) as connection, self._arrow_cursor(connection) as arrow:
            name = self._require_customer(connection)
            scope = (
                *customer_scope(connection.dialect.name),
                (ENROLLMENTS, _in_customer_classes(connection.dialect.name)),
            )
            raw = {
                select.table: self._read(
                    connection,
                    select,
                    condition,
                    params,
                    "whole customer",
                    driver_cursor=True,
                    arrow=arrow,
                )
                for select, condition in scope
            }
            meta = self._meta(connection)
        meta["read_seconds"] = round(time.perf_counter() - started, 3)
        meta["customer_name"] = name  # the district's name: the sync-hold compares it
        return build_roster(self.settings.customer_id, raw, meta)

    def fetch_student(self, student_sis_id: str) -> Roster:
        """One student's context (`Roster.for_students`), cut from their narrow
        neighbourhood (`fetch_people`): never the whole customer."""
        return self.fetch_people([student_sis_id]).for_students([student_sis_id])

    def find_people(self, query: PersonQuery) -> list[PersonMatch]:
        """The query as one customer-scoped WHERE clause on users (a name: a loose SQL
        prefilter on the customer's users, then the shared `name_matches` on the few rows
        it returns), and the schools of the people found."""
        customer = {"customer_id": self.settings.bookmarked_customer_id}
        purpose = f"person lookup by {query.kind}"
        with self.connect(snapshot=True) as connection:
            self._require_customer(connection)
            if query.kind == "name":
                condition, params = _name_prefilter(query.value, connection.dialect.name)
                candidates = self._small(
                    connection,
                    "SELECT u.id, u.first_name, u.last_name FROM users u WHERE "
                    f"{_Neighbourhood(connection.dialect.name).plus}u.customer_id = :customer_id "
                    f"AND ({condition})",
                    {**customer, **params},
                    ("users",),
                    f"{purpose} (prefilter)",
                )
                ids = [row.id for row in candidates if name_matches(query.value, *row[1:])]
                condition, params = "u.customer_id = :customer_id AND u.id IN :ids", {"ids": ids}
            else:
                condition, params = _person_condition(query, connection.dialect.name)
            users = self._read(connection, USERS, condition, {**customer, **params}, purpose)
            schools = self._read(
                connection,
                SCHOOLS,
                "s.customer_id = :customer_id AND s.id IN :school_ids",
                {**customer, "school_ids": _ids(users["school_id"])},
                purpose,
            )
        raw = {"schools": schools, "users": users}
        return find_people_in(build_roster(self.settings.customer_id, raw), query)

    def fetch_people(self, sis_ids: Sequence[str]) -> Roster:
        """The people's neighbourhood (`Roster.for_people`, same rows) through
        customer-scoped WHERE clauses, never the whole customer: links touching the
        people, then their families' links, then every link of those children; the
        accounts on them (and any account sharing their sis_id), those accounts'
        enrollments, the classes (and classes sharing their sis_id), and the schools."""
        ids = list(dict.fromkeys(sis_ids))
        customer = {"customer_id": self.settings.bookmarked_customer_id}
        purpose = f"neighbourhood of {len(ids)} person(s)"
        queries = 0

        def read(select: _Select, condition: str, **params: Any) -> pl.DataFrame:
            nonlocal queries
            queries += 1
            return self._read(connection, select, condition, {**customer, **params}, purpose)

        with self.connect(snapshot=True) as connection:
            self._require_customer(connection)
            sql = _Neighbourhood(connection.dialect.name)
            own = read(
                LINKS,
                f"{sql.in_customer} AND (ps.parent_id IN ({sql.people}) "
                f"OR ps.student_id IN ({sql.people}))",
                ids=ids,
            )
            families = read(
                LINKS,
                f"{sql.in_customer} AND (ps.parent_id IN ({sql.people}) "
                f"OR ps.parent_id IN :parents OR ps.parent_id IN ({sql.sharing('parents')}))",
                ids=ids,
                parents=_ids(own["parent_id"]),
            )
            links = read(
                LINKS,
                f"{sql.in_customer} AND (ps.student_id IN ({sql.people}) "
                f"OR ps.student_id IN :children OR ps.student_id IN ({sql.sharing('children')}))",
                ids=ids,
                children=_ids(pl.concat([own["student_id"], families["student_id"]])),
            )
            users = read(
                USERS,
                f"{sql.plus}u.customer_id = :customer_id AND (u.id IN ({sql.people}) "
                f"OR u.id IN :accounts OR u.id IN ({sql.sharing('accounts')}))",
                ids=ids,
                accounts=_ids(pl.concat([links["parent_id"], links["student_id"]])),
            )
            enrollments = read(
                ENROLLMENTS,
                f"e.user_id IN :users AND {_in_customer_classes(connection.dialect.name)}",
                users=_ids(users.filter(pl.col("sis_id").is_not_null())["id"]),
            )
            classes = read(
                CLASSES,
                f"{sql.plus}sc.customer_id = :customer_id AND (c.id IN :classes OR c.sis_id IN "
                "(SELECT y.sis_id FROM classes y WHERE y.id IN :classes))",
                classes=_ids(enrollments["class_id"]),
            )
            schools = read(
                SCHOOLS,
                "s.customer_id = :customer_id AND s.id IN :schools",
                schools=_ids(pl.concat([users["school_id"], classes["school_id"]])),
            )
            meta = self._meta(connection)
        raw = {
            "schools": schools,
            "users": users,
            "parent_students": links,
            "classes": classes,
            "enrollments": enrollments,
        }
        reads = (
            f"{queries} parameterized queries scoped to the people, plus the customer row "
            "and its last syncs"
        )
        return with_scope(
            build_roster(self.settings.customer_id, raw, meta), ids, narrow=True, reads=reads
        )

    def fetch_records(self, *, classes: Sequence[str] = (), schools: Sequence[str] = ()) -> Roster:
        """Classes and schools by sis_id, customer-scoped (the classes' schools are read
        to name them, then only the schools asked for are kept)."""
        customer = {"customer_id": self.settings.bookmarked_customer_id}
        purpose = f"records: {len(classes)} class(es), {len(schools)} school(s)"
        with self.connect(snapshot=True) as connection:
            self._require_customer(connection)
            class_rows = self._read(
                connection,
                CLASSES,
                "sc.customer_id = :customer_id AND c.sis_id IN :classes",
                {**customer, "classes": list(dict.fromkeys(classes))},
                purpose,
            )
            school_rows = self._read(
                connection,
                SCHOOLS,
                "s.customer_id = :customer_id AND (s.sis_id IN :schools OR s.id IN :ids)",
                {
                    **customer,
                    "schools": list(dict.fromkeys(schools)),
                    "ids": _ids(class_rows["school_id"]),
                },
                purpose,
            )
            meta = self._meta(connection)
        raw = {"schools": school_rows, "classes": class_rows}
        return records_of(build_roster(self.settings.customer_id, raw, meta), classes, schools)

    def test_connection(self) -> str:
        """Connect, find the customer, and say whether the session is read-only."""
        with self.connect() as connection:
            name = self._require_customer(connection)
            dialect = connection.dialect
            if dialect.name == "postgresql":
                setting = connection.exec_driver_sql("SHOW transaction_read_only").scalar()
                read_only = setting == "on"
            else:  # opened with mode=ro; query_only is the per-connection switch we also set
                read_only = connection.exec_driver_sql("PRAGMA query_only").scalar() == 1
            version = ".".join(str(part) for part in dialect.server_version_info or ())
            target = self._target()
        state = "read-only" if read_only else "NOT READ-ONLY"
        return (
            f"{target.where}: {dialect.name} {version}, customer "
            f"{self.settings.bookmarked_customer_id} ({name}) found, session {state}"
        )

    def describe(self) -> str:
        """The database without resolving credentials (a reference stays a reference)."""
        raw = str(self.config.get("database_url", ""))
        if is_reference(raw):
            return f"database {raw}"
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            return f"database {mask_url(make_url(raw).render_as_string(hide_password=True))}"
        except ArgumentError:
            return "database (invalid URL)"

    # -- connections ---------------------------------------------------------------------

    def engine(self) -> Engine:
        """A new read-only engine (the caller disposes it). Resolves credentials now."""
        from sqlalchemy import create_engine, event

        target = self._target()
        if target.sqlite_path is not None:
            uri = f"{target.sqlite_path.as_uri()}?mode=ro"

            def connect_read_only() -> sqlite3.Connection:
                connection = sqlite3.connect(uri, uri=True)
                connection.execute("PRAGMA query_only = ON")
                return connection

            return create_engine(target.url, creator=connect_read_only, hide_parameters=True)
        engine = create_engine(
            target.url,
            connect_args={
                "options": PG_READ_ONLY_OPTIONS,
                "connect_timeout": CONNECT_TIMEOUT_SECONDS,
                "application_name": APPLICATION_NAME,
            },
            hide_parameters=True,
        )
        event.listen(engine, "connect", _require_read_only_session(target.where))
        return engine

    @contextmanager
    def _arrow_cursor(self, connection: Connection) -> Iterator[Any | None]:
        """On SQLite, an ADBC cursor on the same file, opened read-only as `engine` opens
        it (`mode=ro`, `PRAGMA query_only`), in one transaction: the whole customer's
        reads come back as Arrow columns from the driver's C code, with no Python object
        per value (the scan benchmark's million students: 25 -> 13.6 s; the peak is a
        little higher, 2.77 against 2.50 GB, as each table arrives whole). None elsewhere:
        PostgreSQL reads through psycopg2's server-side cursor."""
        target = self._target()
        if not self.arrow_reads or target.sqlite_path is None:
            yield None
            return
        import adbc_driver_manager
        import adbc_driver_sqlite.dbapi

        try:
            arrow = adbc_driver_sqlite.dbapi.connect(f"{target.sqlite_path.as_uri()}?mode=ro")
        except adbc_driver_manager.Error:  # the row path opens it again and says why not
            yield None
            return
        with arrow, arrow.cursor() as cursor:
            cursor.execute("PRAGMA query_only = ON")
            # the column types are inferred from the first batch: all rows in one (the
            # driver refuses 2**31 - 1; a later batch of another type falls back anyway)
            cursor.adbc_statement.set_options(**{_BATCH_ROWS_OPTION: str(_ARROW_BATCH_ROWS)})
            yield cursor

    @contextmanager
    def connect(self, *, snapshot: bool = False) -> Iterator[Connection]:
        """A read-only connection; every database error inside becomes a ConnectorError
        without the password. `snapshot` reads in one REPEATABLE READ transaction on
        PostgreSQL, so tables read one after the other agree while the sync writes."""
        with self._errors():
            engine = self.engine()
            try:
                with engine.connect() as connection:
                    if snapshot and connection.dialect.name == "postgresql":
                        connection = connection.execution_options(isolation_level="REPEATABLE READ")
                    yield connection
            finally:
                engine.dispose()

    def _target(self) -> _Target:
        if self._target_cache is None:
            self._target_cache = self._resolve_target()
        return self._target_cache

    def _resolve_target(self) -> _Target:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        raw = self.config.get("database_url")
        if not raw:
            raise ConnectorError(f"{self.settings.path.name}: $.bookmarked.database_url is not set")
        label = raw if is_reference(raw) else "database_url"
        try:
            value = self.credentials.value(raw).reveal()
        except CredentialError as exc:
            raise ConnectorError(f"Bookmarked database: {exc}") from None
        try:
            url = make_url(value)
        except ArgumentError:
            raise ConnectorError(
                f"Bookmarked database {label}: not a SQLAlchemy URL (expected "
                "postgresql://user@host:5432/db or sqlite:///path/to/file.db)"
            ) from None
        shown = mask_url(url.render_as_string(hide_password=True))
        where = f"{raw} ({shown})" if is_reference(raw) else shown
        if url.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
            # SQLAlchemy 2.1 defaults to psycopg 3; the project ships psycopg2
            return _Target(url.set(drivername="postgresql+psycopg2"), where)
        if url.drivername in ("sqlite", "sqlite+pysqlite"):
            if not url.database or url.database == ":memory:":
                raise ConnectorError(f"Bookmarked database {where}: names no database file")
            path = self.settings.resolve_path(url.database)
            if not path.is_file():
                raise ConnectorError(f"Bookmarked database {where}: no database file at {path}")
            url = url.set(drivername="sqlite", database=str(path), query={})
            shown = url.render_as_string(hide_password=True)  # the file actually read
            where = f"{raw} ({shown})" if is_reference(raw) else shown
            return _Target(url, where, path)
        raise ConnectorError(
            f"Bookmarked database {where}: unsupported driver {url.drivername!r}; Bookmarked "
            "runs on PostgreSQL (postgresql://, read through psycopg2) or, for the demo, "
            "SQLite (sqlite:///path)"
        )

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Database errors -> ConnectorError naming the database, never its password."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            yield
        except SQLAlchemyError as exc:
            raise ConnectorError(self._message(exc)) from None

    def _message(self, exc: Exception) -> str:
        target = self._target_cache
        reason = str(getattr(exc, "orig", None) or exc)
        reason = re.sub(r"\(Background on this error at: [^)]*\)", "", reason)
        reason = " ".join(reason.split())
        if target is not None and target.url.password:
            reason = reason.replace(str(target.url.password), "****")
        reason = redact(reason)
        missing = _MISSING_TABLE.search(reason)
        if missing:
            table = missing.group(1) or missing.group(2)
            reason = (
                f"table {table} is missing ({reason}); is this a Bookmarked database "
                "built from reconciliation/bookmarked/schema.sql?"
            )
        where = target.where if target is not None else self.describe()
        return f"Bookmarked database {where}: {reason}"

    # -- reading -------------------------------------------------------------------------

    def _read(
        self,
        connection: Connection,
        select: _Select,
        condition: str,
        params: Mapping[str, Any],
        purpose: str,
        *,
        driver_cursor: bool = False,
        arrow: Any | None = None,
    ) -> pl.DataFrame:
        """Run one SELECT, chunk by chunk, into a frame of the SELECT's columns
        (`driver_cursor`: see `_chunks`; `arrow`: `_arrow_cursor`, tried first)."""
        frames: list[pl.DataFrame] = []
        rows_read = 0
        outcome = "failed"
        try:
            # the whole customer is sorted here, not by the database: by a unique key, so
            # the order is the same, and a sort of a million ids in polars takes 50 ms
            # where PostgreSQL's took a second and SQLite walked the primary key index
            sql = select.where(condition, ordered=not driver_cursor)
            whole = _arrow_frame(arrow, select, sql, params) if arrow is not None else None
            if whole is not None:
                rows_read, outcome = whole.height, "ok"
                return whole.sort(select.sort_keys)
            chunks = self._chunks(connection, sql, params, driver_cursor)
            with closing(chunks):  # a bad value stops the read: its cursor closes now
                for chunk in chunks:
                    frames.append(self._frame(select, chunk))
                    rows_read += len(chunk)
            outcome = "ok"
        finally:
            self._audit(select.reads, rows_read, f"{FEEDS[select.table]}, {purpose}: {outcome}")
        if not frames:
            return empty_raw(select.table)
        frame = pl.concat(frames)
        return frame.sort(select.sort_keys) if driver_cursor else frame

    def _chunks(
        self, connection: Connection, sql: str, params: Mapping[str, Any], driver_cursor: bool
    ) -> Iterator[Sequence[Any]]:
        """The rows of one SELECT, `chunk_rows` at a time, streamed (PostgreSQL: a
        server-side cursor). With `driver_cursor` (the whole customer's reads: plain
        `:name` parameters, no `%` in the SQL), through the driver's own cursor in the
        connection's transaction: SQLAlchemy's row objects cost 1.4 s of a 10 s read at
        200k students."""
        if not driver_cursor or any(isinstance(value, list) for value in params.values()):
            result = connection.execute(
                _statement(sql, params),
                dict(params),
                execution_options={"stream_results": True, "max_row_buffer": self.chunk_rows},
            )
            yield from result.partitions(self.chunk_rows)
            return
        driver = connection.connection.driver_connection
        error = connection.dialect.loaded_dbapi.Error
        try:
            if connection.dialect.name == "postgresql":
                cursor = driver.cursor(name="bookmarked_read")  # server-side: streams
                cursor.itersize = self.chunk_rows
                sql = _PARAMETER.sub(r"%(\1)s", sql)  # psycopg2's pyformat
            else:
                cursor = driver.cursor()  # sqlite3 binds :name itself
            try:
                cursor.execute(sql, dict(params))
                while rows := cursor.fetchmany(self.chunk_rows):
                    yield rows
            finally:
                cursor.close()
        except error as exc:
            raise ConnectorError(self._message(exc)) from None

    def _frame(self, select: _Select, rows: Sequence[Any]) -> pl.DataFrame:
        """One chunk of rows -> typed polars columns (SQLite hands back 0/1 and ISO text
        where PostgreSQL hands back booleans and dates). Built by polars from the rows at
        once (twice as fast as a list per column); a value of the wrong type is found and
        named column by column."""
        try:
            return _typed(select.columns, rows)
        except (TypeError, ValueError, pl.exceptions.PolarsError):
            pass
        columns = list(zip(*rows, strict=True))
        key = next(iter(select.columns))  # `id`, or parent_students' `parent_id`
        series = []
        for position, (name, dtype) in enumerate(select.columns.items()):
            values = columns[position]
            try:
                series.append(_series(name, dtype, values))
            except (TypeError, ValueError, pl.exceptions.PolarsError):
                bad = next(
                    (i for i, v in enumerate(values) if v is not None and not _VALID[dtype](v)),
                    None,
                )
                found = (
                    "an unreadable value"
                    if bad is None
                    else f"a {type(values[bad]).__name__} value"
                )
                raise SourceDataError(
                    f"{found} where {_KIND[dtype]} was expected",
                    file=self._target().where,
                    field=f"{select.table}.{name}",
                    record=None if bad is None else f"{select.table}.{key} {rows[bad][0]}",
                ) from None
        return pl.DataFrame(series)

    def _small(
        self,
        connection: Connection,
        sql: str,
        params: Mapping[str, Any],
        reads: tuple[str, ...],
        purpose: str,
    ) -> list[Row[Any]]:
        """A query of a row or two (customer, sync runs), audited like the large ones."""
        rows: list[Row[Any]] = []
        outcome = "failed"
        try:
            rows = list(connection.execute(_statement(sql, params), dict(params)))
            outcome = "ok"
        finally:
            self._audit(reads, len(rows), f"{purpose}: {outcome}")
        return rows

    def _require_customer(self, connection: Connection) -> str:
        customer_id = self.settings.bookmarked_customer_id
        rows = self._small(
            connection, _CUSTOMER, {"customer_id": customer_id}, ("customers",), "customer row"
        )
        if not rows:
            raise ConnectorError(
                f"Bookmarked database {self._target().where}: no customer with id {customer_id} "
                f"(customers.id); check $.bookmarked.customer_id in {self.settings.path.name}"
            )
        return str(rows[0].name)

    def _meta(self, connection: Connection) -> dict[str, Any]:
        """Provenance without row data: the database, and Bookmarked's last sync runs."""
        params = {"customer_id": self.settings.bookmarked_customer_id}
        latest = self._small(
            connection, _LAST_SYNC.format(condition=""), params, ("sync_runs",), "last sync run"
        )
        succeeded = self._small(
            connection,
            _LAST_SYNC.format(condition="AND status = 'succeeded'"),
            params,
            ("sync_runs",),
            "last successful sync run",
        )
        dialect = connection.dialect
        return {
            "database": self._target().where,
            "dialect": dialect.name,
            "server_version": ".".join(str(p) for p in dialect.server_version_info or ()),
            "bookmarked_customer_id": self.settings.bookmarked_customer_id,
            "last_sync": sync_run(latest[0]._mapping if latest else None),
            "last_successful_sync": sync_run(succeeded[0]._mapping if succeeded else None),
            "read_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def _audit(self, tables: tuple[str, ...], rows: int, detail: str) -> None:
        self.audit.record(
            AuditEvent(
                customer_id=self.settings.customer_id,
                system=SYSTEM,
                action="query",
                tables=tables,
                row_count=rows,
                detail=f"bookmarked customer {self.settings.bookmarked_customer_id}; {detail}",
            )
        )


# -- pure helpers ------------------------------------------------------------------------


def _statement(sql: str, params: Mapping[str, Any]) -> TextClause:
    """A text() statement whose list-valued parameters expand into IN (...)."""
    from sqlalchemy import bindparam, text

    expanding = [bindparam(k, expanding=True) for k, v in params.items() if isinstance(v, list)]
    return text(sql).bindparams(*expanding)


def _typed(columns: Mapping[str, pl.DataType], rows: Sequence[Any]) -> pl.DataFrame:
    """`rows` as a frame of `columns`, each column converted as `_series` converts it."""
    direct = (pl.Int64(), pl.String())
    frame = pl.DataFrame(
        rows,
        schema=[(name, dtype if dtype in direct else None) for name, dtype in columns.items()],
        orient="row",
        infer_schema_length=None,
    )
    converted = []
    for name, dtype in columns.items():
        column = frame.get_column(name)
        if dtype in direct:
            converted.append(column)
        elif dtype == pl.Date() and column.dtype == pl.String:
            converted.append(column.str.to_date("%Y-%m-%d"))
        else:
            converted.append(column.cast(dtype))
    return pl.DataFrame(converted)


def _arrow_frame(
    cursor: Any, select: _Select, sql: str, params: Mapping[str, Any]
) -> pl.DataFrame | None:
    """The SELECT's rows through an ADBC cursor, typed as `_typed` types rows. None when a
    column's values are not all of its type (SQLite stores any value in any column): the
    row path then reads them and names the first bad one."""
    import adbc_driver_manager

    names = _PARAMETER.findall(sql)

    def fetch() -> Any:
        cursor.execute(_PARAMETER.sub("?", sql), [params[name] for name in names])
        return cursor.fetch_arrow_table()

    try:
        # not on the main thread: there ADBC swaps in its own SIGINT handler, which turns
        # Ctrl-C or Dagster's interrupt of the run into SQLite's "cancel not implemented"
        with ThreadPoolExecutor(1, thread_name_prefix="bookmarked-read") as pool:
            frame = pl.from_arrow(pool.submit(fetch).result())
    except adbc_driver_manager.Error:  # "Type mismatch in column N", or a read the row path
        return None  # retries and, if it fails too, explains
    assert isinstance(frame, pl.DataFrame)
    converted = []
    for name, dtype in select.columns.items():
        column = frame.get_column(name)
        if column.dtype == dtype:
            converted.append(column)
        elif column.null_count() == column.len():  # no value to infer a type from
            converted.append(column.cast(dtype))
        elif dtype == pl.Boolean() and column.dtype == pl.Int64:
            converted.append(column.cast(dtype))  # SQLite's 0/1, as `_typed` reads it
        elif dtype == pl.Date() and column.dtype == pl.String:
            dates = column.str.to_date("%Y-%m-%d", strict=False)
            if dates.null_count() != column.null_count():
                return None  # a text that is no date: the row path names it
            converted.append(dates)
        else:
            return None
    return pl.DataFrame(converted)


def _series(name: str, dtype: pl.DataType, values: Sequence[Any]) -> pl.Series:
    if dtype in (pl.Int64(), pl.String()):
        return pl.Series(name, values, dtype=dtype)
    series = pl.Series(name, values)
    if dtype == pl.Date() and series.dtype == pl.String:
        return series.str.to_date("%Y-%m-%d")
    return series.cast(dtype)


def _ids(column: pl.Series) -> list[int]:
    return sorted(column.drop_nulls().unique().to_list())


def _person_condition(query: PersonQuery, dialect: str) -> tuple[str, dict[str, Any]]:
    """The WHERE clause (on `users u`, customer-scoped) of a query by id, number or email;
    emails compared trimmed and lower-case, as `normalize_email` does. A number or an
    email (trimmed: no index serves it) is a scan of the customer's users: on SQLite the
    unary `+` makes it one pass over the table instead of a random read per row through
    the customer index (0.3 -> 0.03 s at 100k students)."""
    value = query.value.strip()
    if query.kind == "sourced_id":
        return "u.customer_id = :customer_id AND u.sis_id = :value", {"value": value}
    customer = f"{'+' if dialect == 'sqlite' else ''}u.customer_id = :customer_id"
    if query.kind == "student_number":
        return f"{customer} AND TRIM(u.student_number) = :value", {"value": value}
    condition = f"{customer} AND lower(trim(u.email)) = :value"
    if query.kind == "parent_email":
        condition += " AND u.role = 'parent'"
    return condition, {"value": value.lower()}


def _name_prefilter(name: str, dialect: str) -> tuple[str, dict[str, Any]]:
    """A SQL condition that keeps at least every user `name_matches` would (then checked
    in Python): an ASCII name's words in order, in either name order, case-insensitive;
    and any name with a non-ASCII character, whose accents SQL cannot fold the same way."""
    non_ascii = "(COALESCE(u.first_name, '') || COALESCE(u.last_name, '')) " + (
        "GLOB '*[^ -~]*'" if dialect == "sqlite" else "~ '[^ -~]'"
    )
    key = name_key(name)
    if not key.isascii():
        return non_ascii, {}
    escaped = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = "%" + "%".join(escaped.split(" ")) + "%"
    given_family = "lower(COALESCE(u.first_name, '') || ' ' || COALESCE(u.last_name, ''))"
    family_given = "lower(COALESCE(u.last_name, '') || ' ' || COALESCE(u.first_name, ''))"
    return (
        f"{given_family} LIKE :pattern ESCAPE '\\' OR {family_given} LIKE :pattern "
        f"ESCAPE '\\' OR {non_ascii}",
        {"pattern": pattern},
    )


def _require_read_only_session(where: str) -> Callable[[Any, Any], None]:
    """A pool `connect` hook: refuse a PostgreSQL session that is not read-only (a pooler
    such as PgBouncer may silently drop the startup option)."""

    def check(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SHOW default_transaction_read_only")
            (value,) = cursor.fetchone()
        finally:
            cursor.close()
            dbapi_connection.rollback()
        if value != "on":
            dbapi_connection.close()
            raise ConnectorError(
                f"Bookmarked database {where}: the session is not read-only "
                "(default_transaction_read_only is off; a connection pooler may drop the "
                "startup option). Refusing to read; connect directly or as the read-only role."
            )

    return check
