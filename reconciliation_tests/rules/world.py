"""A small hand-made district, and the Bookmarked state a correct sync makes from it.

Every rule test starts from `source()` and `sync(source)`, which agree (no finding at
all), then changes one thing. The district holds on purpose every "no finding" case:
siblings sharing parents, two parents per student, an aide (not synced), an enrollment
ended on both sides, a student inactive on both sides, a parent email written with
other case and spaces in the SIS, grades written '3'/'K', and a hand-made Bookmarked
teacher without sis_id.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import polars as pl

from reconciliation.roster import SYNCED_ROLES, Roster, normalize_email, normalize_grade, sync_role
from reconciliation.rules import RuleContext, run_rules

SCHOOLS = [
    {"sis_id": "sch-1", "name": "North Elementary", "state_id": "NE-1", "active": True},
    {"sis_id": "sch-2", "name": "South Elementary", "state_id": "SE-2", "active": True},
]
CLASSES = [
    {
        "sis_id": "cls-1",
        "school_sis_id": "sch-1",
        "name": "Reading 3A",
        "course_code": "RD3",
        "term_sis_id": "t-1",
        "active": True,
    },
    {
        "sis_id": "cls-2",
        "school_sis_id": "sch-1",
        "name": "Math 3A",
        "course_code": "MA3",
        "term_sis_id": "t-1",
        "active": True,
    },
    {
        "sis_id": "cls-5",
        "school_sis_id": "sch-1",
        "name": "Art 3A",
        "course_code": "AR3",
        "term_sis_id": "t-0",
        "active": True,
    },
    {
        "sis_id": "cls-3",
        "school_sis_id": "sch-2",
        "name": "Reading 3B",
        "course_code": "RD3",
        "term_sis_id": "t-1",
        "active": True,
    },
    {
        "sis_id": "cls-4",
        "school_sis_id": "sch-2",
        "name": "Math 3B",
        "course_code": "MA3",
        "term_sis_id": "t-1",
        "active": True,
    },
]


def _user(
    sis_id: str,
    role_raw: str,
    first: str,
    last: str,
    school: str | None,
    *,
    email: str | None = None,
    number: str | None = None,
    grade: str | None = None,
    active: bool = True,
) -> dict[str, Any]:
    return {
        "sis_id": sis_id,
        "role": sync_role(role_raw),
        "role_raw": role_raw,
        "first_name": first,
        "last_name": last,
        "email": email,
        "email_normalized": normalize_email(email),
        "username": sis_id,
        "student_number": number,
        "grade": normalize_grade(grade),
        "grade_raw": grade,
        "school_sis_id": school,
        "active": active,
        "deleted": not active,
    }


USERS = [
    _user("tch-1", "teacher", "Tess", "Reed", "sch-1", email="tess.reed@north.example"),
    _user("tch-2", "teacher", "Tom", "Stone", "sch-2", email="tom.stone@south.example"),
    _user("adm-1", "administrator", "Ada", "Park", "sch-1", email="ada.park@district.example"),
    _user("aide-1", "aide", "Al", "Help", "sch-1", email="al.help@north.example"),
    _user("stu-1", "student", "Ann", "Lee", "sch-1", number="1001", grade="3"),
    _user("stu-2", "student", "Ben", "Lee", "sch-1", number="1002", grade="K"),
    _user(
        "stu-3",
        "student",
        "Cal",
        "Ortiz",
        "sch-1",
        number="1003",
        grade="03",
        email="cal.ortiz@students.example",
    ),
    _user("stu-4", "student", "Dee", "Kim", "sch-2", number="1004", grade="3"),
    _user("stu-5", "student", "Eve", "Nash", "sch-2", number="1005", grade="Third grade"),
    _user("stu-6", "student", "Fay", "Gone", "sch-2", number="1006", grade="3", active=False),
    _user("par-1", "parent", "Lia", "Lee", None, email=" Lia.Lee@Example.org "),
    _user("par-2", "guardian", "Leo", "Lee", None, email="leo.lee@example.org"),
    _user("par-3", "parent", "Olga", "Ortiz", None, email="olga.ortiz@example.org"),
    _user("par-4", "relative", "Kai", "Kim", None, email="kai.kim@example.org"),
    _user("par-5", "parent", "Nia", "Nash", None, email="nia.nash@example.org"),
]
LINKS = [
    {"parent_sis_id": "par-1", "student_sis_id": "stu-1"},
    {"parent_sis_id": "par-1", "student_sis_id": "stu-2"},
    {"parent_sis_id": "par-2", "student_sis_id": "stu-1"},
    {"parent_sis_id": "par-2", "student_sis_id": "stu-2"},
    {"parent_sis_id": "par-3", "student_sis_id": "stu-3"},
    {"parent_sis_id": "par-4", "student_sis_id": "stu-4"},
    {"parent_sis_id": "par-5", "student_sis_id": "stu-5"},
]


def _enr(
    sis_id: str,
    class_id: str,
    user_id: str,
    role: str,
    *,
    active: bool = True,
    end: date | None = None,
) -> dict[str, Any]:
    return {
        "sis_id": sis_id,
        "class_sis_id": class_id,
        "user_sis_id": user_id,
        "role": role,
        "active": active,
        "start_date": date(2025, 8, 20),
        "end_date": end,
    }


ENROLLMENTS = [
    _enr("e-t1-1", "cls-1", "tch-1", "teacher"),
    _enr("e-t1-2", "cls-2", "tch-1", "teacher"),
    _enr("e-t1-5", "cls-5", "tch-1", "teacher"),
    _enr("e-t2-3", "cls-3", "tch-2", "teacher"),
    _enr("e-t2-4", "cls-4", "tch-2", "teacher"),
    _enr("e-aide-1", "cls-1", "aide-1", "aide"),
    _enr("e-s1-1", "cls-1", "stu-1", "student"),
    _enr("e-s1-2", "cls-2", "stu-1", "student"),
    _enr("e-s2-1", "cls-1", "stu-2", "student"),
    _enr("e-s2-2", "cls-2", "stu-2", "student"),
    _enr("e-s3-1", "cls-1", "stu-3", "student"),
    _enr("e-s3-2", "cls-2", "stu-3", "student"),
    # last term's class, ended on both sides: no finding
    _enr("e-s3-5", "cls-5", "stu-3", "student", active=False, end=date(2025, 6, 1)),
    _enr("e-s4-3", "cls-3", "stu-4", "student"),
    _enr("e-s4-4", "cls-4", "stu-4", "student"),
    _enr("e-s5-3", "cls-3", "stu-5", "student"),
    _enr("e-s5-4", "cls-4", "stu-5", "student"),
    _enr("e-s6-3", "cls-3", "stu-6", "student", active=False, end=date(2025, 6, 1)),
]


def source(**changes: list[dict[str, Any]]) -> Roster:
    """The district's SIS roster; keyword arguments replace whole tables."""
    tables = {
        "schools": SCHOOLS,
        "users": USERS,
        "links": LINKS,
        "classes": CLASSES,
        "enrollments": ENROLLMENTS,
    }
    tables.update(changes)
    return Roster("demo", "source", **{k: list(v) for k, v in tables.items()})


def sync(src: Roster) -> Roster:
    """What a correct Bookmarked sync holds for `src`: synced roles only, row ids given,
    emails stored trimmed and lowercased, grades as CEDS codes, plus one hand-made
    teacher (no sis_id). Parents are keyed by email as the real sync does."""

    def numbered(frame: pl.DataFrame, first: int) -> pl.DataFrame:
        return frame.drop("bookmarked_id").with_row_index("bookmarked_id", offset=first)

    schools = numbered(src.schools, 1)
    classes = numbered(src.classes, 100)
    users = numbered(
        src.users.filter(pl.col("role").is_in(SYNCED_ROLES)).with_columns(
            email=pl.col("email_normalized"),
            role_raw=pl.col("role"),
            grade_raw=pl.col("grade"),
        ),
        1000,
    )
    hand_made = pl.DataFrame(
        [
            {
                "bookmarked_id": 9999,
                "sis_id": None,
                "role": "teacher",
                "role_raw": "teacher",
                "first_name": "Sub",
                "last_name": "Teacher",
                "email": "sub@north.example",
                "email_normalized": "sub@north.example",
                "active": True,
                "deleted": False,
            }
        ]
    )
    ids = users.select("sis_id", "bookmarked_id")
    links = (
        src.links.select("parent_sis_id", "student_sis_id")
        .join(
            ids.rename({"sis_id": "parent_sis_id", "bookmarked_id": "parent_bookmarked_id"}),
            on="parent_sis_id",
        )
        .join(
            ids.rename({"sis_id": "student_sis_id", "bookmarked_id": "student_bookmarked_id"}),
            on="student_sis_id",
        )
        .unique()
    )
    enrollments = numbered(
        src.enrollments.filter(
            pl.col("role").is_in(["student", "teacher"])
            & pl.col("user_sis_id").is_in(users["sis_id"].implode())
        ),
        5000,
    )
    return Roster(
        "demo",
        "bookmarked",
        schools=schools,
        classes=classes,
        links=links,
        enrollments=enrollments,
        users=pl.concat(
            [users.with_columns(pl.col("bookmarked_id").cast(pl.Int64)), hand_made],
            how="diagonal_relaxed",
        ),
    )


# -- editing a roster in a test ---------------------------------------------------------


def _match(where: dict[str, Any]) -> pl.Expr:
    expr = pl.lit(True)
    for column, value in where.items():
        expr = expr & (pl.col(column).is_null() if value is None else pl.col(column) == value)
    return expr


def drop(roster: Roster, table: str, **where: Any) -> Roster:
    """Remove the rows of `table` matching every `column=value`."""
    frame = roster.table(table)
    kept = frame.filter(~_match(where).fill_null(False))
    assert kept.height < frame.height, f"nothing to drop in {table} for {where}"
    return roster.with_tables(**{table: kept})


def update(roster: Roster, table: str, where: dict[str, Any], **values: Any) -> Roster:
    """Set `values` on the rows of `table` matching `where`."""
    frame = roster.table(table)
    hit = _match(where).fill_null(False)
    assert frame.filter(hit).height, f"no row in {table} for {where}"
    frame = frame.with_columns(
        [
            pl.when(hit).then(pl.lit(v, dtype=frame.schema[k])).otherwise(pl.col(k)).alias(k)
            for k, v in values.items()
        ]
    )
    return roster.with_tables(**{table: frame})


def add(roster: Roster, table: str, *rows: dict[str, Any]) -> Roster:
    frame = pl.concat([roster.table(table), pl.DataFrame(list(rows))], how="diagonal_relaxed")
    return roster.with_tables(**{table: frame})


def bm_id(roster: Roster, sis_id: str) -> int:
    """The Bookmarked row id of a user."""
    return roster.users.filter(pl.col("sis_id") == sis_id)["bookmarked_id"].item()


# -- every problem at once ---


def kitchen_sink() -> tuple[Roster, Roster]:
    """One district with a problem for every rule and status at once (the expected
    findings are in test_deduplication.py)."""
    src = source()
    src = add(src, "links", {"parent_sis_id": "tch-1", "student_sis_id": "stu-5"})
    src = update(
        src,
        "users",
        {"sis_id": "par-4"},
        email="olga.ortiz@example.org",
        email_normalized="olga.ortiz@example.org",
    )
    src = update(src, "users", {"sis_id": "stu-3"}, school_sis_id="sch-2")
    src = update(
        src,
        "enrollments",
        {"user_sis_id": "stu-3", "active": True},
        active=False,
        end_date=date(2026, 1, 15),
    )
    src = add(
        src,
        "enrollments",
        {
            "sis_id": "e-s3-3",
            "class_sis_id": "cls-3",
            "user_sis_id": "stu-3",
            "role": "student",
            "active": True,
        },
        {
            "sis_id": "e-s4-1",
            "class_sis_id": "cls-1",
            "user_sis_id": "stu-4",
            "role": "student",
            "active": True,
        },
        {
            "sis_id": "e-bad",
            "class_sis_id": "cls-404",
            "user_sis_id": "stu-1",
            "role": "student",
            "active": True,
        },
    )
    src = update(src, "users", {"sis_id": "stu-5"}, sis_id="stu-5b")
    src = update(src, "enrollments", {"user_sis_id": "stu-5"}, user_sis_id="stu-5b")
    src = update(src, "links", {"student_sis_id": "stu-5"}, student_sis_id="stu-5b")
    src = update(src, "users", {"sis_id": "tch-2"}, active=False, deleted=True)
    bm = sync(source())
    bm = add(
        bm,
        "enrollments",
        {
            "bookmarked_id": 7001,
            "sis_id": "e-s4-1",
            "class_sis_id": "cls-1",
            "user_sis_id": "stu-4",
            "role": "student",
            "active": True,
        },
    )
    bm = drop(bm, "links", parent_sis_id="par-1", student_sis_id="stu-2")
    bm = drop(bm, "users", sis_id="adm-1")
    bm = update(bm, "users", {"sis_id": "stu-1"}, last_name="Li")
    bm = add(
        bm,
        "links",
        {
            "parent_sis_id": "par-2",
            "student_sis_id": "stu-3",
            "parent_bookmarked_id": bm_id(bm, "par-2"),
            "student_bookmarked_id": bm_id(bm, "stu-3"),
        },
    )
    return src, bm


# -- running rules ----------------------------------------------------------------------


def run(src: Roster, bm: Roster, rule: str | None = None, settings: Any = None):
    """Findings of one rule (a DataFrame), or of every rule (a dict) when rule is None."""
    results = run_rules(src, bm, settings, only=None if rule is None else [rule])
    return results if rule is None else results[rule]


def keys(findings: pl.DataFrame) -> set[tuple[str, str | None, str]]:
    """(entity_type, sis_id, status) of each finding: what a test asserts on."""
    return set(findings.select("entity_type", "sis_id", "status").iter_rows())


def everything(src: Roster, bm: Roster) -> dict[str, set[tuple[str, str | None, str]]]:
    """Rule id -> finding keys, leaving out rules with none (for de-duplication tests)."""
    return {rule: keys(f) for rule, f in run(src, bm).items() if f.height}


def context(src: Roster, bm: Roster) -> RuleContext:
    return RuleContext(src, bm)
