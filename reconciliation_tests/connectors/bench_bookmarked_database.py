"""Timing of the Bookmarked database connector on a large SQLite customer (not a test).

    .venv/bin/python -m reconciliation_tests.connectors.bench_bookmarked_database \\
        [--database /tmp/bookmarked-1m.db] [--runs 3]
    ... --copy-to postgresql://user@host/empty_db    (once)
    ... --postgres postgresql://user@host/empty_db   (read from there)

The first run builds the SQLite file (a customer of 1,000,000 enrollments, 100,000 users
and 5,000 classes, plus a small neighbour customer so that every read has to filter) and
stops; later runs time `fetch_roster` (wall and CPU seconds, peak RSS of the process) and
`fetch_student`, each in a fresh process. The numbers quoted in bookmarked_database.py
come from here.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import sqlite3
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from reconciliation.audit import AuditLog
from reconciliation.bookmarked import create_schema
from reconciliation.connectors.bookmarked_database import BookmarkedDatabaseConnector
from reconciliation.settings import parse_file

CUSTOMER, NEIGHBOUR = 1, 2
SCHOOLS, CLASSES, USERS, ENROLLMENTS = 50, 5_000, 100_000, 1_000_000
NEIGHBOUR_SCALE = 100  # the neighbour is 1/100 of the customer
STAMP = "2026-08-01 02:00:00"
GRADES = ("K", "KG", "01", "1", "5", "05", "First grade", "12", "P1", None)


def _rows(customer: int, scale: int, first_id: int) -> dict[str, Iterator[tuple[Any, ...]]]:
    """schema.sql rows of one customer; ids start at `first_id` per table."""
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

    return {
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


def build(path: Path) -> None:
    engine = create_engine(f"sqlite:///{path}")
    create_schema(engine)
    engine.dispose()
    connection = sqlite3.connect(path)
    for customer, scale, first_id in ((CUSTOMER, 1, 1), (NEIGHBOUR, NEIGHBOUR_SCALE, 10**7)):
        for table, rows in _rows(customer, scale, first_id).items():
            first = next(rows)
            marks = ", ".join("?" * len(first))
            connection.execute(f"INSERT INTO {table} VALUES ({marks})", first)
            connection.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    connection.commit()
    connection.execute("ANALYZE")
    connection.close()


def copy_to_postgres(sqlite_path: Path, url: str) -> None:
    """The same rows into an empty PostgreSQL database (COPY through psycopg2)."""
    import csv
    import io

    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg2"))
    create_schema(engine)
    source = sqlite3.connect(sqlite_path)
    raw = engine.raw_connection()
    cursor = raw.cursor()
    for table in (
        "customers",
        "schools",
        "users",
        "parent_students",
        "classes",
        "enrollments",
        "sync_runs",
    ):
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for row in source.execute(f"SELECT * FROM {table}"):
            writer.writerow(["\\N" if v is None else v for v in row])
        buffer.seek(0)
        cursor.copy_expert(f"COPY {table} FROM STDIN WITH (FORMAT csv, NULL '\\N')", buffer)
    raw.commit()
    cursor.execute("ANALYZE")
    raw.commit()
    raw.close()
    engine.dispose()


def connector(folder: Path, url: str) -> BookmarkedDatabaseConnector:
    settings = folder / "bench-customer.json"
    settings.write_text(
        json.dumps(
            {
                "customer_id": "bench",
                "name": "Bench",
                "environment": "staging",
                "bookmarked": {"customer_id": CUSTOMER, "database_url": url},
                "source": {"type": "oneroster_csv", "location": "unused"},
            }
        )
    )
    return BookmarkedDatabaseConnector(parse_file(settings), audit=AuditLog(None))


def time_reads(name: str, reader: BookmarkedDatabaseConnector, runs: int) -> None:
    walls, cpus = [], []
    counts: dict[str, int] = {}
    for _ in range(runs):
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        roster = reader.fetch_roster()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        counts = roster.row_counts()
        del roster
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{name} fetch_roster: wall {statistics.median(walls):.2f} s median "
        f"{[round(w, 2) for w in walls]}, cpu {statistics.median(cpus):.2f} s median "
        f"{[round(c, 2) for c in cpus]}, peak RSS {peak:.0f} MB, {counts}"
    )
    wall = time.perf_counter()
    student = reader.fetch_student("u-12")
    print(f"{name} fetch_student: {time.perf_counter() - wall:.3f} s, {student.row_counts()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", type=Path, default=Path("/tmp/bookmarked-1m.db"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--copy-to",
        metavar="URL",
        help="copy the SQLite rows into this EMPTY PostgreSQL database and stop",
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="read from this PostgreSQL database (filled by --copy-to) instead of the SQLite file",
    )
    args = parser.parse_args()
    if not args.database.exists():
        started = time.perf_counter()
        build(args.database)
        print(
            f"built {args.database} in {time.perf_counter() - started:.0f} s; run again to "
            "time the reads in a fresh process"
        )
        return
    if args.copy_to:
        copy_to_postgres(args.database, args.copy_to)
        return
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"RSS before reading: {before:.0f} MB")
    url = args.postgres or f"sqlite:///{args.database}"
    name = "postgresql" if args.postgres else "sqlite"
    time_reads(name, connector(args.database.parent, url), args.runs)


if __name__ == "__main__":
    main()
