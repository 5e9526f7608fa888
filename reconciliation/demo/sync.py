"""Bookmarked's own roster sync, simulated: what a CORRECT sync writes from the SIS.

This follows `docs/bookmarked/sync-contract.md` rule by rule, so the demo's Bookmarked
side differs from the SIS only where a scenario deliberately breaks it:

- roles mapped (`guardian`/`relative` -> parent, `administrator` -> admin; aides and
  proctors are not synced), `identifier` -> `student_number`, first school of the
  user's orgs -> `school_id`;
- `tobedeleted` or `enabledUser=false` -> `is_active = false`; a record the SIS no longer
  exports -> soft-deleted (`deleted_at`), as Bookmarked does when a bulk file drops it;
- parents are keyed by email (trimmed, lower-case): SIS parents sharing one email become
  ONE account that the later one in the file overwrites, linked to every family's
  children;
- links come from `agentSourcedIds` on either side, only between a parent and a student
  that both exist; classes need a known school, enrollments a known class and user;
- an enrollment whose end date has passed is inactive.

Row ids are local to the world (1, 2, ...); the SQLite writer shifts them per customer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime, time, timedelta

import numpy as np
import polars as pl

from reconciliation.demo.base import ENROLLMENT_ROLE, Calendar, SisModel
from reconciliation.demo.profiles import DistrictProfile
from reconciliation.roster import SYNCED_ROLES, normalized_email, sync_role

#: users.role in Bookmarked (an enum in memory, TEXT in the database)
BM_USER_ROLE = pl.Enum(SYNCED_ROLES)

#: column order and types of the Bookmarked tables (reconciliation/bookmarked/schema.sql);
#: roles are enums in memory (text in the database)
BOOKMARKED_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "customers": {
        "id": pl.Int64(),
        "name": pl.String(),
        "sis_id": pl.String(),
        "hubspot_company_id": pl.String(),
        "created_at": pl.Datetime("us"),
    },
    "schools": {
        "id": pl.Int64(),
        "customer_id": pl.Int64(),
        "sis_id": pl.String(),
        "name": pl.String(),
        "state_id": pl.String(),
        "is_active": pl.Boolean(),
        "updated_at": pl.Datetime("us"),
    },
    "users": {
        "id": pl.Int64(),
        "customer_id": pl.Int64(),
        "sis_id": pl.String(),
        "role": BM_USER_ROLE,
        "first_name": pl.String(),
        "last_name": pl.String(),
        "email": pl.String(),
        "username": pl.String(),
        "student_number": pl.String(),
        "grade": pl.String(),
        "school_id": pl.Int64(),
        "is_active": pl.Boolean(),
        "updated_at": pl.Datetime("us"),
        "deleted_at": pl.Datetime("us"),
    },
    "parent_students": {
        "parent_id": pl.Int64(),
        "student_id": pl.Int64(),
        "created_at": pl.Datetime("us"),
    },
    "classes": {
        "id": pl.Int64(),
        "school_id": pl.Int64(),
        "sis_id": pl.String(),
        "name": pl.String(),
        "course_code": pl.String(),
        "term_sis_id": pl.String(),
        "is_active": pl.Boolean(),
        "updated_at": pl.Datetime("us"),
    },
    "enrollments": {
        "id": pl.Int64(),
        "class_id": pl.Int64(),
        "user_id": pl.Int64(),
        "sis_id": pl.String(),
        "role": ENROLLMENT_ROLE,
        "is_active": pl.Boolean(),
        "start_date": pl.Date(),
        "end_date": pl.Date(),
        "updated_at": pl.Datetime("us"),
    },
    "sync_runs": {
        "id": pl.Int64(),
        "customer_id": pl.Int64(),
        "source_type": pl.String(),
        "started_at": pl.Datetime("us"),
        "finished_at": pl.Datetime("us"),
        "status": pl.String(),
        "error": pl.String(),
    },
}


@dataclass
class BookmarkedTables:
    """One customer's rows in the Bookmarked database, one frame per table."""

    customers: pl.DataFrame
    schools: pl.DataFrame
    users: pl.DataFrame
    parent_students: pl.DataFrame
    classes: pl.DataFrame
    enrollments: pl.DataFrame
    sync_runs: pl.DataFrame

    def as_dict(self) -> dict[str, pl.DataFrame]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def conform(self) -> BookmarkedTables:
        """Exactly the schema's columns, in order (scenarios may add helper columns)."""
        for name, schema in BOOKMARKED_SCHEMAS.items():
            setattr(self, name, getattr(self, name).select(list(schema)).cast(schema))
        return self


@dataclass
class SyncSkips:
    """Rows Bookmarked's sync never wrote: sis_ids per table, and parent-student links
    (`parent`, `student` sis_ids). A skipped user or class takes its enrollments and
    links along, as it would in the real sync."""

    schools: list[pl.Series] = field(default_factory=list)
    users: list[pl.Series] = field(default_factory=list)
    classes: list[pl.Series] = field(default_factory=list)
    enrollments: list[pl.Series] = field(default_factory=list)
    links: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema={"parent": pl.String, "student": pl.String})
    )

    def add(self, table: str, sis_ids: pl.Series | list[str]) -> None:
        getattr(self, table).append(pl.Series(sis_ids, dtype=pl.String))

    def of(self, table: str) -> pl.Series:
        parts = getattr(self, table)
        return pl.concat(parts) if parts else pl.Series([], dtype=pl.String)


def sync_time(calendar: Calendar) -> datetime:
    """The nightly run after the last SIS change: when Bookmarked soft-deleted what the
    export dropped, and the time stamp of the damage the scenarios do. It is before the
    last successful run of every profile (see `_sync_runs`)."""
    return datetime.combine(calendar.last_change + timedelta(days=1), time(2, 9))


def _updated_at() -> pl.Expr:
    """The nightly sync after the SIS change wrote the row."""
    return (pl.col("modified").dt.truncate("1d") + pl.duration(days=1, hours=2, minutes=7)).alias(
        "updated_at"
    )


def simulate_sync(
    sis: SisModel, profile: DistrictProfile, calendar: Calendar, skip: SyncSkips | None = None
) -> BookmarkedTables:
    """The rows a correct sync writes, less what `skip` says it never wrote.

    References are followed by row position (see `ENROLLMENT_SCHEMA`), so a Bookmarked
    id is the referenced row's position + 1.
    """
    skip = skip or SyncSkips()
    customer = profile.bookmarked_customer_id
    today = calendar.today
    deleted_at = sync_time(calendar)

    schools = (
        sis.orgs.with_row_index("row")
        .filter(
            (pl.col("type") == "school") & ~pl.col("sis_id").is_in(skip.of("schools").implode())
        )
        .select(
            id=pl.col("row").cast(pl.Int64) + 1,
            customer_id=pl.lit(customer, pl.Int64),
            sis_id="sis_id",
            name="name",
            state_id="identifier",
            is_active=pl.col("exported") & (pl.col("status") == "active"),
            updated_at=_updated_at(),
        )
    )
    school_id = dict(schools.select("sis_id", "id").iter_rows())

    all_users = sis.all_users()
    users, user_role, account = _sync_users(
        all_users, school_id, customer, deleted_at, skip.of("users")
    )

    # links: agent edges between a parent and a student, listed on either side, both
    # still in the export
    roles = pl.lit(user_role)
    exported = pl.lit(all_users.get_column("exported"))
    edges = sis.agents.select(
        user_role=roles.gather(pl.col("user_row")),
        agent_role=roles.gather(pl.col("agent_row")),
        user_row="user_row",
        agent_row="agent_row",
        both=exported.gather(pl.col("user_row")) & exported.gather(pl.col("agent_row")),
    ).filter(pl.col("both"))
    child_lists = (pl.col("user_role") == "student") & (pl.col("agent_role") == "parent")
    parent_lists = (pl.col("user_role") == "parent") & (pl.col("agent_role") == "student")
    pairs = edges.filter(child_lists | parent_lists).select(
        parent_row=pl.when(child_lists).then("agent_row").otherwise("user_row"),
        student_row=pl.when(child_lists).then("user_row").otherwise("agent_row"),
    )
    if skip.links.height:
        rows = (
            all_users.select("sis_id")
            .with_row_index("row")
            .filter(
                pl.col("sis_id").is_in(
                    pl.concat([skip.links["parent"], skip.links["student"]]).implode()
                )
            )
        )
        row_of = dict(rows.select("sis_id", pl.col("row").cast(pl.Int64)).iter_rows())
        skipped = [row_of[p] * 2**32 + row_of[s] for p, s in skip.links.iter_rows()]
        pairs = pairs.filter(
            ~(pl.col("parent_row").cast(pl.Int64) * 2**32 + pl.col("student_row")).is_in(
                pl.Series(skipped, dtype=pl.Int64).implode()
            )
        )
    linked_at = all_users.select(_updated_at()).to_series()
    parent_students = pairs.select(
        parent_id=pl.lit(account).gather(pl.col("parent_row")),
        student_id=pl.col("student_row").cast(pl.Int64) + 1,
        created_at=pl.lit(linked_at).gather(pl.col("student_row")),
    ).filter((pl.col("parent_id") * 2**32 + pl.col("student_id")).is_first_distinct())

    courses = dict(sis.courses.select("sis_id", "course_code").iter_rows())
    classes = (
        sis.classes.with_row_index("row")
        .with_columns(
            school_id=pl.col("school_sis_id").replace_strict(
                school_id, default=None, return_dtype=pl.Int64
            )
        )
        .filter(
            pl.col("school_id").is_not_null()
            & ~pl.col("sis_id").is_in(skip.of("classes").implode())
        )
        .select(
            id=pl.col("row").cast(pl.Int64) + 1,
            school_id="school_id",
            sis_id="sis_id",
            name="title",
            course_code=pl.col("course_sis_id").replace_strict(
                courses, default=None, return_dtype=pl.String
            ),
            term_sis_id=pl.col("term_sis_ids").list.first(),
            is_active=pl.col("exported") & (pl.col("status") == "active"),
            updated_at=_updated_at(),
        )
    )
    class_ok = pl.Series(np.zeros(sis.classes.height, dtype=bool))
    class_ok = class_ok.scatter(classes.get_column("id") - 1, True)
    enrollable = user_role.is_in(["student", "teacher", "admin"])

    enrollments = (
        sis.all_enrollments()
        .lazy()
        .with_row_index("row")
        .filter(
            ~pl.col("sis_id").is_in(skip.of("enrollments").implode())
            & pl.col("role").is_in(["student", "teacher"])
            & pl.lit(class_ok).gather(pl.col("class_row")).fill_null(False)
            & pl.lit(enrollable).gather(pl.col("user_row")).fill_null(False)
        )
        .select(
            id=pl.col("row").cast(pl.Int64) + 1,
            class_id=pl.col("class_row").cast(pl.Int64) + 1,
            user_id=pl.col("user_row").cast(pl.Int64) + 1,
            sis_id="sis_id",
            role="role",
            is_active=pl.col("exported")
            & (pl.col("status") == "active")
            & (pl.col("begin").is_null() | (pl.col("begin") <= today))
            & (pl.col("end").is_null() | (pl.col("end") > today)),
            start_date="begin",
            end_date="end",
            updated_at=_updated_at(),
        )
        .collect()
    )

    return BookmarkedTables(
        customers=pl.DataFrame(
            {
                "id": [customer],
                "name": [profile.name],
                "sis_id": [sis.orgs["sis_id"][0]],
                "hubspot_company_id": [profile.hubspot_company_id],
                "created_at": [datetime.combine(today - timedelta(days=400), time(17, 42))],
            },
            schema=BOOKMARKED_SCHEMAS["customers"],
        ),
        schools=schools,
        users=users,
        parent_students=parent_students,
        classes=classes,
        enrollments=enrollments,
        sync_runs=_sync_runs(profile, calendar),
    )


def _sync_users(
    all_users: pl.DataFrame,
    school_id: dict[str, int],
    customer: int,
    deleted_at: datetime,
    skipped: pl.Series,
) -> tuple[pl.DataFrame, pl.Series, pl.Series]:
    """Users rows; each SIS user's synced role (`other` when not synced, or skipped);
    each row's account id (several SIS parents may share one account)."""
    raw_roles = all_users.get_column("role_raw").cast(pl.String)
    role = raw_roles.replace_strict(
        {raw: sync_role(raw) for raw in raw_roles.unique()}, return_dtype=pl.String
    )
    never = all_users.get_column("sis_id").is_in(skipped.implode()).arg_true()
    role = role.scatter(never, "other")
    # the first of each user's orgs that is a school
    first_school = (
        all_users.select(pl.col("org_ids").str.split(","))
        .with_row_index("row")
        .explode("org_ids")
        .filter(pl.col("org_ids").is_in(pl.Series(list(school_id), dtype=pl.String).implode()))
        .unique(subset="row", keep="first", maintain_order=True)
    )
    user_school = pl.Series("school_id", [None] * all_users.height, dtype=pl.Int64).scatter(
        first_school.get_column("row"),
        first_school.get_column("org_ids").replace_strict(school_id, return_dtype=pl.Int64),
    )
    # lazy, so that filters copy only the columns the rows need
    users = (
        all_users.lazy()
        .with_row_index("row")
        .with_columns(role=role, school_id=user_school)
        .filter(pl.col("role") != "other")
    )

    # parent accounts are keyed by email (a parent without one, or dropped from the
    # export, keeps its own row): the first row's id, the last row's fields
    account = pl.Series(np.arange(1, all_users.height + 1, dtype=np.int64))
    keyed = (
        users.filter((pl.col("role") == "parent") & pl.col("exported"))
        .select("row", key=normalized_email())
        .filter(pl.col("key").is_not_null())
        .collect()
    )
    groups = keyed.group_by("key").agg(first=pl.col("row").min(), last=pl.col("row").max())
    merged = keyed.join(groups, on="key", how="inner").filter(pl.col("first") != pl.col("last"))
    account = account.scatter(merged.get_column("row"), merged.get_column("first") + 1)
    overwritten = merged.filter(pl.col("row") != pl.col("last")).get_column("row")

    rows = (
        users.filter(~pl.col("row").is_in(overwritten.implode()))
        .select(
            id=pl.lit(account).gather(pl.col("row")),
            customer_id=pl.lit(customer, pl.Int64),
            sis_id="sis_id",
            role="role",
            first_name="given",
            last_name="family_name",
            email=pl.col("email").str.strip_chars(),
            username="username",
            student_number="identifier",
            grade="grade_raw",
            school_id="school_id",
            is_active=pl.col("exported") & (pl.col("status") == "active") & pl.col("enabled"),
            updated_at=_updated_at(),
            deleted_at=pl.when(pl.col("exported")).then(None).otherwise(pl.lit(deleted_at)),
        )
        .collect()
    )
    return rows, role, account


def _sync_runs(profile: DistrictProfile, calendar: Calendar) -> pl.DataFrame:
    """Nightly runs over the last two weeks; the newest as the profile says."""
    source = "oneroster_csv"
    runs = []
    for days_ago in range(14, 0, -1):
        start = datetime.combine(calendar.today - timedelta(days=days_ago), time(2, 0))
        status, error = "succeeded", None
        if days_ago == 6:
            status, error = "failed", "OneRoster CSV bulk file incomplete: enrollments.csv missing"
        if days_ago == 1 and profile.sync_history == "last_failed":
            status, error = "failed", "SFTP connection timed out after 300 s"
        runs.append((start, start + timedelta(minutes=9 + days_ago % 4), status, error))
    if profile.sync_history == "running":
        start = datetime.combine(calendar.today, time(2, 0))
        runs.append((start, None, "running", None))
    return pl.DataFrame(
        {
            "id": list(range(1, len(runs) + 1)),
            "customer_id": profile.bookmarked_customer_id,
            "source_type": source,
            "started_at": [r[0] for r in runs],
            "finished_at": [r[1] for r in runs],
            "status": [r[2] for r in runs],
            "error": [r[3] for r in runs],
        },
        schema=BOOKMARKED_SCHEMAS["sync_runs"],
    )
