"""Timing of all rules against a hand-written DuckDB baseline (not a test).

    .venv/bin/python -m reconciliation_tests.rules.bench_rules --students 1000000

Builds a synthetic district (vectorized, no Python loops over rows): ~5 student
enrollments per student, 1.5 parents per student, 25 students per class, a correct
Bookmarked copy, then a small share of every kind of fault. The baseline is what a
person would write by hand in DuckDB for the core comparisons: the live-record
anti-joins of schools, users, classes and enrollments in both directions, and the link
diff in both directions. Target: all rules within 2x of it.
"""

from __future__ import annotations

import argparse
import gc
import time

import duckdb
import numpy as np
import polars as pl

from reconciliation.roster import Roster
from reconciliation.rules import RULES, RuleContext


def _ids(prefix: str, n: int, start: int = 0) -> pl.Expr:
    return pl.format(prefix + "{}", pl.int_range(start, start + n, dtype=pl.Int64))


def make_district(students: int, seed: int = 7) -> tuple[Roster, Roster]:
    rng = np.random.default_rng(seed)
    n_schools = max(2, students // 2000)
    per_class = 25
    n_classes = max(n_schools * 5, students * 5 // per_class)
    n_teachers = max(n_schools, n_classes // 4)
    n_parents = students * 3 // 2

    schools = pl.select(
        sis_id=_ids("sch-", n_schools),
        name=_ids("School ", n_schools),
        state_id=_ids("ST", n_schools),
        active=pl.lit(True),
    )
    class_school = rng.integers(0, n_schools, n_classes)
    classes = pl.select(
        sis_id=_ids("cls-", n_classes),
        name=_ids("Class ", n_classes),
        course_code=pl.lit("C1"),
        term_sis_id=pl.lit("t-1"),
        active=pl.lit(True),
    ).with_columns(school_sis_id=pl.format("sch-{}", pl.Series(class_school)))

    student_school = rng.integers(0, n_schools, students)
    grades = np.array(["KG", "01", "02", "03", "04", "05", "06", "07", "08"])
    users_students = pl.select(
        sis_id=_ids("stu-", students),
        role=pl.lit("student"),
        role_raw=pl.lit("student"),
        first_name=_ids("First", students),
        last_name=_ids("Last", students),
        student_number=_ids("", students, 100000),
        active=pl.lit(True),
        deleted=pl.lit(False),
    ).with_columns(
        school_sis_id=pl.format("sch-{}", pl.Series(student_school)),
        grade=pl.Series(grades[rng.integers(0, len(grades), students)]),
        email=pl.format("s{}@students.example", pl.int_range(0, students)),
    )
    users_teachers = pl.select(
        sis_id=_ids("tch-", n_teachers),
        role=pl.lit("teacher"),
        role_raw=pl.lit("teacher"),
        first_name=_ids("T", n_teachers),
        last_name=_ids("Teach", n_teachers),
        email=pl.format("t{}@district.example", pl.int_range(0, n_teachers)),
        active=pl.lit(True),
        deleted=pl.lit(False),
    ).with_columns(
        school_sis_id=pl.format("sch-{}", pl.Series(rng.integers(0, n_schools, n_teachers)))
    )
    users_parents = pl.select(
        sis_id=_ids("par-", n_parents),
        role=pl.lit("parent"),
        role_raw=pl.lit("parent"),
        first_name=_ids("P", n_parents),
        last_name=_ids("Parent", n_parents),
        email=pl.format("p{}@home.example", pl.int_range(0, n_parents)),
        active=pl.lit(True),
        deleted=pl.lit(False),
    )
    users = pl.concat([users_students, users_teachers, users_parents], how="diagonal_relaxed")
    users = users.with_columns(email_normalized=pl.col("email"), grade_raw=pl.col("grade"))

    # each student: 5 classes of the student's school (classes grouped by school)
    order = np.argsort(class_school, kind="stable")
    sorted_school = class_school[order]
    first = np.searchsorted(sorted_school, np.arange(n_schools))
    count = np.bincount(class_school, minlength=n_schools)
    stu_rep = np.repeat(np.arange(students), 5)
    sch = student_school[stu_rep]
    pick = first[sch] + (rng.integers(0, 1 << 30, len(stu_rep)) % np.maximum(count[sch], 1))
    cls = order[np.minimum(pick, n_classes - 1)]
    student_enr = (
        pl.DataFrame({"u": stu_rep, "c": cls})
        .unique(maintain_order=True)
        .select(
            class_sis_id=pl.format("cls-{}", "c"),
            user_sis_id=pl.format("stu-{}", "u"),
            role=pl.lit("student"),
        )
    )
    teacher_enr = pl.select(
        class_sis_id=_ids("cls-", n_classes),
        user_sis_id=pl.format("tch-{}", pl.int_range(0, n_classes) % n_teachers),
        role=pl.lit("teacher"),
    )
    enrollments = pl.concat([student_enr, teacher_enr]).with_columns(
        sis_id=_ids("enr-", student_enr.height + teacher_enr.height),
        active=pl.lit(True),
    )
    # parents: 1.5 per student on average, siblings sharing some parents
    parent_of = rng.integers(0, n_parents, students)
    second = rng.random(students) < 0.5
    links = (
        pl.concat(
            [
                pl.DataFrame({"p": parent_of, "s": np.arange(students)}),
                pl.DataFrame(
                    {
                        "p": rng.integers(0, n_parents, students)[second],
                        "s": np.arange(students)[second],
                    }
                ),
            ]
        )
        .unique()
        .select(parent_sis_id=pl.format("par-{}", "p"), student_sis_id=pl.format("stu-{}", "s"))
    )

    source = Roster(
        "bench",
        "source",
        schools=schools,
        users=users,
        links=links,
        classes=classes,
        enrollments=enrollments,
    )

    # the correct Bookmarked copy
    def numbered(frame: pl.DataFrame, start: int) -> pl.DataFrame:
        return (
            frame.drop("bookmarked_id")
            .with_row_index("bookmarked_id", offset=start)
            .with_columns(pl.col("bookmarked_id").cast(pl.Int64))
        )

    bm_users = numbered(source.users, 1)
    ids = bm_users.select("sis_id", "bookmarked_id")
    bm_links = links.join(
        ids.rename({"sis_id": "parent_sis_id", "bookmarked_id": "parent_bookmarked_id"}),
        on="parent_sis_id",
    ).join(
        ids.rename({"sis_id": "student_sis_id", "bookmarked_id": "student_bookmarked_id"}),
        on="student_sis_id",
    )
    bm = dict(
        schools=numbered(source.schools, 1),
        users=bm_users,
        links=bm_links,
        classes=numbered(source.classes, 1),
        enrollments=numbered(source.enrollments, 1),
    )

    # faults: about 0.05% of each kind
    def sample(frame: pl.DataFrame, share: float = 0.0005) -> pl.Series:
        n = max(1, int(frame.height * share))
        return pl.Series(rng.choice(frame.height, n, replace=False))

    u = bm["users"]
    drop_users = u[sample(u)]["sis_id"]
    u = u.filter(~pl.col("sis_id").is_in(drop_users.implode()))
    rename = sample(u)
    u = (
        u.with_row_index("_i")
        .with_columns(
            last_name=pl.when(pl.col("_i").is_in(rename.implode()))
            .then(pl.lit("Changed"))
            .otherwise("last_name")
        )
        .drop("_i")
    )
    bm["users"] = u
    e = bm["enrollments"]
    bm["enrollments"] = e.filter(~pl.int_range(0, e.height).is_in(sample(e).implode()))
    lk = bm["links"]
    picked = sample(lk)
    extra = lk[picked].with_columns(
        student_sis_id=pl.format("stu-{}", pl.Series(rng.integers(0, students, len(picked))))
    )
    extra = extra.drop("student_bookmarked_id").join(
        ids.rename({"sis_id": "student_sis_id", "bookmarked_id": "student_bookmarked_id"}),
        on="student_sis_id",
    )
    bm["links"] = pl.concat(
        [
            lk.filter(~pl.int_range(0, lk.height).is_in(sample(lk).implode())),
            extra.select(lk.columns),
        ]
    )
    # stale: source drops some enrollments that Bookmarked keeps
    src_e = source.enrollments
    source = source.with_tables(
        enrollments=src_e.filter(~pl.int_range(0, src_e.height).is_in(sample(src_e).implode()))
    )
    return source, Roster("bench", "bookmarked", **bm)


def duckdb_baseline(source: Roster, bm: Roster) -> dict[str, int]:
    """The hand-written core comparisons: live-record anti-joins both ways, link diff."""
    con = duckdb.connect()
    for side, roster in (("s", source), ("b", bm)):
        for table in ("schools", "users", "classes", "enrollments", "links"):
            con.register(f"{side}_{table}", roster.table(table).to_arrow())
    live = {
        "s_schools": "active",
        "b_schools": "active",
        "s_users": "active and role <> 'other'",
        "b_users": "active and not deleted and sis_id is not null",
        "s_classes": "active",
        "b_classes": "active",
        "s_enrollments": "active and role in ('student', 'teacher')",
        "b_enrollments": "active",
        "s_links": "true",
        "b_links": "true",
    }

    def anti(left: str, right: str, keys: str) -> str:
        return (
            f"select count(*) from (select * from {left} where {live[left]}) l "
            f"anti join (select * from {right} where {live[right]}) r using ({keys})"
        )

    queries = {}
    for table, keys in (
        ("schools", "sis_id"),
        ("users", "sis_id"),
        ("classes", "sis_id"),
        ("enrollments", "class_sis_id, user_sis_id"),
        ("links", "parent_sis_id, student_sis_id"),
    ):
        queries[f"missing_{table}"] = anti(f"s_{table}", f"b_{table}", keys)
        queries[f"stale_{table}"] = anti(f"b_{table}", f"s_{table}", keys)
    return {name: con.execute(sql).fetchone()[0] for name, sql in queries.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    t = time.perf_counter()
    source, bm = make_district(args.students)
    print(f"built in {time.perf_counter() - t:.1f}s:", source.row_counts(), bm.row_counts())

    best_base = best_rules = float("inf")
    for _ in range(args.repeat):
        gc.collect()
        t = time.perf_counter()
        counts = duckdb_baseline(source, bm)
        best_base = min(best_base, time.perf_counter() - t)
        gc.collect()
        t = time.perf_counter()
        ctx = RuleContext(source, bm)
        per_rule = {}
        for rule_id, rule in RULES.items():
            r0 = time.perf_counter()
            found = rule.evaluate(ctx)
            per_rule[rule_id] = (time.perf_counter() - r0, found.height)
        best_rules = min(best_rules, time.perf_counter() - t)
    print("baseline rows:", counts)
    print(f"duckdb baseline: {best_base:.2f}s")
    for rule_id, (seconds, n) in per_rule.items():
        print(f"  {rule_id:24s} {seconds:6.2f}s {n:8d} findings")
    print(f"all rules: {best_rules:.2f}s  = {best_rules / best_base:.2f}x the baseline")


if __name__ == "__main__":
    main()
