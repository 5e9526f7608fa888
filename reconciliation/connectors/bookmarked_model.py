"""Bookmarked's own rows (the columns of schema.sql) -> the canonical Bookmarked roster.

The one mapping for every way of reading Bookmarked: the database connector and the
support API both fetch plain table rows (`RAW_SCHEMAS`) and hand them to `build_roster`,
so they give the same roster for the same rows. The readers only choose WHICH rows (one
customer, or one student's context); every join and every derived column is done here,
in polars, on frames already read (one hash join per table, so a million enrollments are
named in a fraction of a second).

Semantics, as Bookmarked's data means them:
- `users.role` is kept as Bookmarked wrote it (it is already a synced role);
- Bookmarked keeps one school per user and only orgs that are schools: `org_sis_ids` is
  null and the roster's `orgs` table empty (they explain the SIS side's references);
- a soft-deleted account (`deleted_at` set) is `deleted` and never `active`;
- references are named only from the rows handed over, never from elsewhere: a user's
  school outside them has a null `school_sis_id`, an enrollment's user outside them a
  null `user_sis_id` (the rules report both). Naming them from another customer's rows
  would be wrong: customers share sourcedIds, so another customer's `stu-1` would pass
  for ours;
- a link or class whose account or school is not among the rows is dropped, an
  enrollment outside the classes too (a reader hands over one customer's rows, so these
  are another customer's);
- rows come out in Bookmarked id order (links: parent, then student).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import polars as pl

from reconciliation.roster import Roster, conform, normalize_email, normalize_grade

#: the schema.sql columns the roster is built from (what a reader fetches), per table;
#: `deleted_at` is only tested for null, so it travels as text whatever the source
RAW_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "schools": {
        "id": pl.Int64(),
        "sis_id": pl.String(),
        "name": pl.String(),
        "state_id": pl.String(),
        "is_active": pl.Boolean(),
    },
    "users": {
        "id": pl.Int64(),
        "sis_id": pl.String(),
        "role": pl.String(),
        "first_name": pl.String(),
        "last_name": pl.String(),
        "email": pl.String(),
        "username": pl.String(),
        "student_number": pl.String(),
        "grade": pl.String(),
        "school_id": pl.Int64(),
        "is_active": pl.Boolean(),
        "deleted_at": pl.String(),
    },
    "parent_students": {"parent_id": pl.Int64(), "student_id": pl.Int64()},
    "classes": {
        "id": pl.Int64(),
        "school_id": pl.Int64(),
        "sis_id": pl.String(),
        "name": pl.String(),
        "course_code": pl.String(),
        "term_sis_id": pl.String(),
        "is_active": pl.Boolean(),
    },
    "enrollments": {
        "id": pl.Int64(),
        "class_id": pl.Int64(),
        "user_id": pl.Int64(),
        "sis_id": pl.String(),
        "role": pl.String(),
        "is_active": pl.Boolean(),
        "start_date": pl.Date(),
        "end_date": pl.Date(),
    },
}

#: the canonical table each schema.sql table feeds (for audit lines and messages)
FEEDS: dict[str, str] = {
    "schools": "schools",
    "users": "users",
    "parent_students": "links",
    "classes": "classes",
    "enrollments": "enrollments",
}


def empty_raw(table: str) -> pl.DataFrame:
    """No rows of a schema.sql table."""
    return pl.DataFrame(schema=RAW_SCHEMAS[table])


def build_roster(
    customer_id: str, raw: Mapping[str, pl.DataFrame], meta: dict[str, Any] | None = None
) -> Roster:
    """One customer's rows (a frame per table of RAW_SCHEMAS, any order, extra columns
    ignored) -> the canonical roster. A table left out has no rows: the partial reads
    (people found by a query, some classes and schools) pass only what they read."""
    raw = {table: raw[table] if table in raw else empty_raw(table) for table in RAW_SCHEMAS}
    schools = _in_id_order(raw["schools"])
    users = _in_id_order(raw["users"])
    school_sis = schools.select(
        pl.col("id").alias("school_id"), pl.col("sis_id").alias("school_sis_id")
    )
    user_sis = users.select("id", "sis_id")
    classes = _in_id_order(raw["classes"]).join(school_sis, on="school_id", maintain_order="left")
    # the million-row table before the users' Python normalizers: in this order the
    # process peaks 25 MB lower on a million enrollments (measured)
    enrollments = _enrollments(raw["enrollments"], classes, user_sis)
    return Roster(
        customer_id=customer_id,
        side="bookmarked",
        meta=dict(meta or {}),
        schools=schools.select(
            pl.col("id").alias("bookmarked_id"),
            "sis_id",
            "name",
            "state_id",
            pl.col("is_active").alias("active"),
        ),
        users=_users(users.join(school_sis, on="school_id", how="left", maintain_order="left")),
        links=(
            raw["parent_students"]
            .join(user_sis.rename({"id": "parent_id", "sis_id": "parent_sis_id"}), on="parent_id")
            .join(
                user_sis.rename({"id": "student_id", "sis_id": "student_sis_id"}), on="student_id"
            )
            .sort("parent_id", "student_id")
            .select(
                "parent_sis_id",
                "student_sis_id",
                pl.col("parent_id").alias("parent_bookmarked_id"),
                pl.col("student_id").alias("student_bookmarked_id"),
            )
        ),
        classes=classes.select(
            pl.col("id").alias("bookmarked_id"),
            "sis_id",
            "school_sis_id",
            "name",
            "course_code",
            "term_sis_id",
            pl.col("is_active").alias("active"),
        ),
        enrollments=enrollments,
    )


def _enrollments(
    enrollments: pl.DataFrame, classes: pl.DataFrame, user_sis: pl.DataFrame
) -> pl.DataFrame:
    """Enrollments in the given classes, their class and user named by sourcedId."""
    return (
        _only_known(_in_id_order(enrollments), "class_id", classes["id"])
        .join(
            classes.select(pl.col("id").alias("class_id"), pl.col("sis_id").alias("class_sis_id")),
            on="class_id",
            how="left",
            maintain_order="left",
        )
        .join(
            user_sis.rename({"id": "user_id", "sis_id": "user_sis_id"}),
            on="user_id",
            how="left",
            maintain_order="left",
        )
        .select(
            pl.col("id").alias("bookmarked_id"),
            "sis_id",
            "class_sis_id",
            "user_sis_id",
            "role",
            pl.col("is_active").alias("active"),
            "start_date",
            "end_date",
        )
    )


def _users(users: pl.DataFrame) -> pl.DataFrame:
    """Users rows with their `school_sis_id` -> the canonical user columns."""
    deleted = pl.col("deleted_at").is_not_null()
    return conform(
        "users",
        users.select(
            pl.col("id").alias("bookmarked_id"),
            "sis_id",
            "role",
            pl.col("role").alias("role_raw"),
            "first_name",
            "last_name",
            "email",
            _map_unique(users["email"], normalize_email).alias("email_normalized"),
            "username",
            "student_number",
            _map_unique(users["grade"], normalize_grade).alias("grade"),
            pl.col("grade").alias("grade_raw"),
            "school_sis_id",
            (pl.col("is_active") & ~deleted).alias("active"),
            deleted.alias("deleted"),
        ),
    )


def _in_id_order(frame: pl.DataFrame) -> pl.DataFrame:
    """The rows by `id`; a database already sends them so, and checking is cheaper than
    sorting a million rows again."""
    return frame if frame["id"].is_sorted() else frame.sort("id")


def _only_known(frame: pl.DataFrame, column: str, known: pl.Series) -> pl.DataFrame:
    """The rows whose `column` is among `known`. Checked first, because a reader usually
    hands over no other rows, and then a left join (named, in order) costs a third of an
    order-keeping inner join on a million enrollments."""
    keep = frame[column].is_in(known.implode())
    return frame if keep.all() else frame.filter(keep)


def _map_unique(column: pl.Series, function: Callable[[str], str | None]) -> pl.Series:
    """Apply the roster's own Python normalizer once per distinct value, so both sides
    normalize identically."""
    mapping = {value: function(value) for value in column.drop_nulls().unique().to_list()}
    return column.replace_strict(mapping, default=None, return_dtype=pl.String)


def sync_run(run: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A `sync_runs` row as roster provenance: when it started and finished, and how."""
    if not run:
        return None
    return {
        "started_at": _timestamp(run.get("started_at")),
        "finished_at": _timestamp(run.get("finished_at")),
        "status": run.get("status"),
    }


def _timestamp(value: Any) -> str | None:
    """PostgreSQL hands back datetimes, SQLite and the API text: all -> ISO 8601 (text
    that is no timestamp is kept as it is)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    try:
        return datetime.fromisoformat(str(value)).isoformat()
    except ValueError:
        return str(value)
