"""How fast the Bookmarked database connector reads a large customer, next to the raw driver.

Reads one customer of 1,000,000 enrollments, 100,000 users and 5,000 classes (plus a
small neighbour customer in the same tables, so that every read has to filter) from a
SQLite file, built on the first run (about 15 s) and reused after, and with
`--postgres URL` also from a PostgreSQL copy in a database it creates on that server
(`bench_bookmarked`, filled by COPY) and drops at the end. On each database, alternately
`--repeat` times in the same process:

- the baseline: the raw driver reading the same customer's rows of the same tables
  (the columns the connector reads) with plain SELECTs filtered by customer, fetched into
  tuples (sqlite3 `fetchall`; psycopg2 through a named server-side cursor): the floor
  any reader pays to get the rows out;
- the connector's `fetch_roster()`: the same reads streamed in chunks, typed polars
  columns, and the mapping to the canonical roster (`bookmarked_model.build_roster`).

It prints the best, median and CPU time of each and the ratio connector / baseline
(target: at most 3x, median against median), the peak RSS of a fresh process doing one
read of each side, and the time of `fetch_student` (one student's context).

Run from the project root:  .venv/bin/python benchmarks/bookmarked_database_bench.py
"""

from __future__ import annotations

import argparse
import csv
import gc
import io
import multiprocessing
import os
import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from measure import Phase, status_bytes  # noqa: E402
from sqlalchemy import create_engine  # noqa: E402
from sqlalchemy.engine import URL, make_url  # noqa: E402

from reconciliation.audit import AuditLog  # noqa: E402
from reconciliation.bookmarked import TABLES, create_schema  # noqa: E402
from reconciliation.connectors.bookmarked_database import BookmarkedDatabaseConnector  # noqa: E402
from reconciliation.connectors.bookmarked_model import RAW_SCHEMAS  # noqa: E402
from reconciliation.settings import CustomerSettings  # noqa: E402

TARGET_RATIO = 3.0
DEFAULT_DATABASE = Path("/tmp/bookmarked-bench-1m.db")
#: the database --postgres creates on the server it names, and drops at the end
PG_DATABASE = "bench_bookmarked"
MB = 1024**2

# -- the data: one large customer and a small neighbour -------------------------------------

CUSTOMER, NEIGHBOUR = 1, 2
SCHOOLS, CLASSES, USERS, ENROLLMENTS = 50, 5_000, 100_000, 1_000_000
NEIGHBOUR_SCALE = 100  # the neighbour is 1/100 of the customer
STAMP = "2026-08-01 02:00:00"
GRADES = ("K", "KG", "01", "1", "5", "05", "First grade", "12", "P1", None)
STUDENT = "u-12"  # the sis_id `fetch_student` asks for


def _rows(customer: int, scale: int, first_id: int) -> dict[str, Iterator[tuple[Any, ...]]]:
    """schema.sql rows of one customer, per table of TABLES; ids start at `first_id`."""
    rng = random.Random(customer)
    schools, classes, users = SCHOOLS // scale or 1, CLASSES // scale, USERS // scale
    enrollments = ENROLLMENTS // scale
    school_ids = range(first_id, first_id + schools)
    class_ids = range(first_id, first_id + classes)
    user_ids = range(first_id, first_id + users)
    students = int(users * 0.6)

    def user(i: int) -> tuple[Any, ...]:
        role = "student" if i < students else ("parent" if i < users * 0.95 else "teacher")
        email = f" Person.{customer}.{i}@Example.ORG " if role != "student" or i % 3 else None
        return (
            first_id + i,
            customer,
            f"u-{i}",
            role,
            f"First{i}",
            f"Last{i}",
            email,
            f"user{i}",
            str(100000 + i) if role == "student" else None,
            rng.choice(GRADES) if role == "student" else None,
            school_ids[i % schools],
            i % 97 != 0,
            STAMP,
            STAMP if i % 211 == 0 else None,
        )

    rows = {
        "customers": iter([(customer, f"Customer {customer}", None, None, STAMP)]),
        "schools": (
            (sid, customer, f"sch-{i}", f"School {i}", f"ST{i}", True, STAMP)
            for i, sid in enumerate(school_ids)
        ),
        "users": (user(i) for i in range(users)),
        "parent_students": (
            (first_id + p, first_id + rng.randrange(students), STAMP)
            for p in range(students, int(users * 0.95))
        ),
        "classes": (
            (
                cid,
                school_ids[i % schools],
                f"cls-{i}",
                f"Class {i}",
                f"C{i % 300}",
                "term-1",
                i % 50 != 0,
                STAMP,
            )
            for i, cid in enumerate(class_ids)
        ),
        "enrollments": (
            (
                first_id + i,
                rng.choice(class_ids),
                rng.choice(user_ids),
                f"enr-{i}",
                "student" if i % 20 else "teacher",
                i % 13 != 0,
                "2025-08-20",
                "2026-06-01" if i % 7 else None,
                STAMP,
            )
            for i in range(enrollments)
        ),
        "sync_runs": iter([(customer, customer, "oneroster_csv", STAMP, STAMP, "succeeded", None)]),
    }
    assert tuple(rows) == TABLES, "the generator must fill every table of schema.sql"
    return rows


def build(path: Path) -> None:
    """The SQLite customer, written next to `path` and renamed into place when complete
    (an interrupted build leaves no half-filled file to be measured next time)."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    engine = create_engine(f"sqlite:///{partial}")
    create_schema(engine)
    engine.dispose()
    connection = sqlite3.connect(partial)
    for customer, scale, first_id in ((CUSTOMER, 1, 1), (NEIGHBOUR, NEIGHBOUR_SCALE, 10**7)):
        for table, rows in _rows(customer, scale, first_id).items():
            first = next(rows)
            marks = ", ".join("?" * len(first))
            connection.execute(f"INSERT INTO {table} VALUES ({marks})", first)
            connection.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    connection.commit()
    connection.execute("ANALYZE")
    connection.close()
    partial.rename(path)


def copy_to_postgres(sqlite_path: Path, url: URL) -> None:
    """The SQLite rows into the empty PostgreSQL database `url` (COPY through psycopg2)."""
    engine = create_engine(url.set(drivername="postgresql+psycopg2"))
    create_schema(engine)
    source = sqlite3.connect(sqlite_path)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for table in TABLES:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            for row in source.execute(f"SELECT * FROM {table}"):
                writer.writerow(["\\N" if v is None else v for v in row])
            buffer.seek(0)
            cursor.copy_expert(f"COPY {table} FROM STDIN WITH (FORMAT csv, NULL '\\N')", buffer)
        raw.commit()
        cursor.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
        source.close()
        engine.dispose()


def _libpq(url: URL) -> str:
    """`url` as a libpq connection URI (psycopg2.connect takes it as is)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _admin(url: URL, statement: str) -> None:
    """One statement outside a transaction (CREATE/DROP DATABASE need it)."""
    import psycopg2

    connection = psycopg2.connect(_libpq(url))
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


# -- the baseline: the raw driver, plain SELECTs by customer --------------------------------

#: which rows of each table belong to the customer, as plain SQL (`:customer_id` bound)
CUSTOMER_FILTERS = {
    "customers": "id = :customer_id",
    "schools": "customer_id = :customer_id",
    "users": "customer_id = :customer_id",
    "parent_students": (
        "parent_id IN (SELECT id FROM users WHERE customer_id = :customer_id) "
        "AND student_id IN (SELECT id FROM users WHERE customer_id = :customer_id)"
    ),
    "classes": "school_id IN (SELECT id FROM schools WHERE customer_id = :customer_id)",
    "enrollments": (
        "class_id IN (SELECT c.id FROM classes c JOIN schools s ON s.id = c.school_id "
        "WHERE s.customer_id = :customer_id)"
    ),
    "sync_runs": "customer_id = :customer_id",
}
assert tuple(CUSTOMER_FILTERS) == TABLES, "a filter for every table of schema.sql"


def baseline_queries(dialect: str) -> dict[str, str]:
    """One SELECT per table of the columns the connector reads (all of them for the two
    one-row tables); no ORDER BY: the floor, not the connector's contract."""
    queries = {}
    for table, condition in CUSTOMER_FILTERS.items():
        columns = ", ".join(RAW_SCHEMAS[table]) if table in RAW_SCHEMAS else "*"
        if dialect == "postgresql":
            condition = condition.replace(":customer_id", "%(customer_id)s")
        elif table == "enrollments":
            # as in the connector: the unary `+` makes SQLite scan enrollments once instead
            # of probing enrollments_class per class (random reads, about twice as slow)
            condition = "+" + condition
        queries[table] = f"SELECT {columns} FROM {table} WHERE {condition}"
    return queries


@dataclass(frozen=True)
class Target:
    """One database to measure: its connector URL, and how the raw driver opens it."""

    name: str  # "sqlite" or "postgresql"
    url: str

    def raw_read(self) -> dict[str, int]:
        """The baseline: every table's customer rows into tuples; rows per table."""
        params = {"customer_id": CUSTOMER}
        counts = {}
        if self.name == "sqlite":
            path = make_url(self.url).database
            connection = sqlite3.connect(f"{Path(str(path)).as_uri()}?mode=ro", uri=True)
            try:
                for table, sql in baseline_queries("sqlite").items():
                    counts[table] = len(connection.execute(sql, params).fetchall())
            finally:
                connection.close()
            return counts
        import psycopg2

        connection = psycopg2.connect(_libpq(make_url(self.url)))
        try:
            connection.set_session(readonly=True)
            for table, sql in baseline_queries("postgresql").items():
                with connection.cursor(name=f"bench_{table}") as cursor:
                    cursor.execute(sql, params)
                    counts[table] = len(cursor.fetchall())
            connection.rollback()
        finally:
            connection.close()
        return counts

    def connector(self) -> BookmarkedDatabaseConnector:
        settings = CustomerSettings(
            "bench",
            "Bench",
            "staging",
            {"customer_id": CUSTOMER, "database_url": self.url},
            {"type": "oneroster_csv", "location": "unused"},
            PROJECT_ROOT / "benchmarks" / "bench.json",
        )
        return BookmarkedDatabaseConnector(settings, audit=AuditLog(None))


# -- timing ---------------------------------------------------------------------------------


def _peak_in_child(target: Target, side: str) -> tuple[int, int]:
    """In a fresh process: RSS with everything imported, and the peak after one read."""
    gc.collect()
    resident = status_bytes("VmRSS")
    if side == "connector":
        target.connector().fetch_roster()
    else:
        target.raw_read()
    return resident, status_bytes("VmHWM")


def peak_in_fresh_process(target: Target, side: str) -> tuple[int, int]:
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        return pool.submit(_peak_in_child, target, side).result()


def measure(target: Target, repeat: int) -> None:
    """Both sides on one database, alternating, then fresh-process memory and fetch_student."""
    reader = target.connector()
    print(f"\n{target.name}: {reader.test_connection()}", flush=True)
    rows = target.raw_read()  # warm-up (file and buffer caches), timed in neither side
    baseline, connector = Phase(), Phase()
    for _ in range(repeat):
        baseline.run(target.raw_read)
        roster = connector.run(reader.fetch_roster)
    print(
        "  rows read        "
        + ", ".join(f"{table} {count:,}" for table, count in rows.items() if count > 1)
    )
    print(
        "  roster           "
        + ", ".join(f"{table} {count:,}" for table, count in roster.row_counts().items())
    )
    del roster
    ratio = connector.median / baseline.median
    print(f"  {repeat} runs each, alternating          best      median    CPU (median)")
    for label, phase in (
        (f"raw {'sqlite3' if target.name == 'sqlite' else 'psycopg2'} fetch", baseline),
        ("connector fetch_roster", connector),
    ):
        print(f"  {label:32s}{phase.best:7.2f} s {phase.median:7.2f} s {phase.cpu_median:7.2f} s")
    verdict = "MET" if ratio <= TARGET_RATIO else "MISSED"
    print(
        f"  connector / raw fetch           {connector.best / baseline.best:7.2f} x "
        f"{ratio:7.2f} x {connector.cpu_median / baseline.cpu_median:7.2f} x"
        f"   target <= {TARGET_RATIO:g}x (median against median): {verdict}",
        flush=True,
    )

    student = Phase()
    for _ in range(repeat):
        context = student.run(lambda: reader.fetch_student(STUDENT))
    print(
        f"  fetch_student    best {student.best * 1000:.0f} ms, median "
        f"{student.median * 1000:.0f} ms ({context.row_counts()['enrollments']} enrollments)"
    )

    for side in ("raw fetch", "connector"):
        resident, peak = peak_in_fresh_process(target, side.split()[0])
        print(
            f"  peak RSS, {side:10s} {peak / MB:5.0f} MB in a fresh process "
            f"({resident / MB:.0f} MB of it imports), one read",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--database",
        type=Path,
        default=DEFAULT_DATABASE,
        help=f"the SQLite customer, built when missing (default {DEFAULT_DATABASE})",
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed runs (best and median shown)")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help=(
            "also measure on PostgreSQL: a server (e.g. postgresql://postgres@127.0.0.1:5432/"
            f"test) where it may create and drop the database {PG_DATABASE}"
        ),
    )
    args = parser.parse_args()
    load_at_start = os.getloadavg()

    if args.database.exists():
        print(f"customer           {args.database} (reused; delete it to rebuild)")
    else:
        started = time.perf_counter()
        build(args.database)
        print(f"customer           {args.database} built in {time.perf_counter() - started:.0f} s")
    print(
        f"                   {ENROLLMENTS:,} enrollments, {USERS:,} users, {CLASSES:,} classes, "
        f"{SCHOOLS} schools; a neighbour customer of 1/{NEIGHBOUR_SCALE} of that"
    )
    measure(Target("sqlite", f"sqlite:///{args.database.resolve()}"), args.repeat)

    if args.postgres:
        server = make_url(args.postgres)
        database = server.set(database=PG_DATABASE)
        _admin(server, f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
        _admin(server, f"CREATE DATABASE {PG_DATABASE}")
        try:
            started = time.perf_counter()
            copy_to_postgres(args.database, database)
            print(
                f"\ncopied into {database.render_as_string(hide_password=True)} "
                f"in {time.perf_counter() - started:.0f} s (COPY; dropped at the end)"
            )
            measure(
                Target("postgresql", database.render_as_string(hide_password=False)), args.repeat
            )
        finally:
            _admin(server, f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")

    print(
        f"\nload average (1 min) {load_at_start[0]:.2f} at start, {os.getloadavg()[0]:.2f} "
        f"at end, on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
