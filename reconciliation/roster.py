"""The canonical roster: one shape for both sides, so every rule compares like with like.

The source side is what Bookmarked's sync SHOULD produce from the SIS (roles mapped,
`tobedeleted` and ended enrollments inactive, links taken from either side of an agent
reference). The Bookmarked side is what the database DOES hold. Keys are SIS sourcedIds;
the Bookmarked side also carries its own row ids in `bookmarked_id`.

Connectors keep dangling references (an enrollment whose user is not in the export, an
agent that does not exist): judging them is the rules' job, not the reader's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import polars as pl

# the shared vocabulary, re-exported: connectors and rules import it from here
from reconciliation.vocabulary import CEDS_GRADES as CEDS_GRADES
from reconciliation.vocabulary import SYNCED_ROLES as SYNCED_ROLES
from reconciliation.vocabulary import normalize_email as normalize_email
from reconciliation.vocabulary import normalize_grade as normalize_grade
from reconciliation.vocabulary import sync_role as sync_role

Side = Literal["source", "bookmarked"]


def normalized_email(column: str | pl.Expr = "email") -> pl.Expr:
    """`normalize_email` as a polars expression (trimmed, lower-case, blank -> null), for
    whole columns: every reader and rule compares emails by this one definition."""
    expr = pl.col(column) if isinstance(column, str) else column
    cleaned = expr.str.strip_chars().str.to_lowercase()
    return pl.when(cleaned != "").then(cleaned)


SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "schools": {
        "sis_id": pl.String(),
        "name": pl.String(),
        "state_id": pl.String(),
        "active": pl.Boolean(),
        "bookmarked_id": pl.Int64(),
    },
    "users": {
        "sis_id": pl.String(),
        # student | teacher | parent | admin | other (not synced by Bookmarked)
        "role": pl.String(),
        # the role exactly as the SIS (or Bookmarked) wrote it, for reports
        "role_raw": pl.String(),
        "first_name": pl.String(),
        "last_name": pl.String(),
        "email": pl.String(),
        "email_normalized": pl.String(),
        "username": pl.String(),
        "student_number": pl.String(),
        # normalized grade code (CEDS: KG, 01..13, PK, ...) and the raw value
        "grade": pl.String(),
        "grade_raw": pl.String(),
        "school_sis_id": pl.String(),
        # every org the SIS lists for the user (orgSourcedIds, the 1.2 roles' orgs and the
        # primary org), in order: the schools of a shared-time student, the district of
        # district staff; null on the Bookmarked side (it keeps one school per user)
        "org_sis_ids": pl.List(pl.String()),
        "active": pl.Boolean(),
        # Bookmarked soft delete (`deleted_at` set); on the source side: status tobedeleted
        "deleted": pl.Boolean(),
        "bookmarked_id": pl.Int64(),
    },
    "links": {
        "parent_sis_id": pl.String(),
        "student_sis_id": pl.String(),
        # Bookmarked side: the account rows behind the link (a merged parent account
        # carries only one sis_id but is linked to every family's children)
        "parent_bookmarked_id": pl.Int64(),
        "student_bookmarked_id": pl.Int64(),
    },
    "classes": {
        "sis_id": pl.String(),
        "school_sis_id": pl.String(),
        "name": pl.String(),
        "course_code": pl.String(),
        "term_sis_id": pl.String(),
        "active": pl.Boolean(),
        "bookmarked_id": pl.Int64(),
    },
    "enrollments": {
        "sis_id": pl.String(),
        "class_sis_id": pl.String(),
        "user_sis_id": pl.String(),
        "role": pl.String(),
        "active": pl.Boolean(),
        "start_date": pl.Date(),
        "end_date": pl.Date(),
        "bookmarked_id": pl.Int64(),
    },
    # every org of the SIS export, schools included (`type` lower-cased: school, district,
    # department, ...): what a reference to a non-school org means. Bookmarked keeps only
    # schools, so its roster has none; `schools` stays the schools alone.
    "orgs": {
        "sis_id": pl.String(),
        "type": pl.String(),
        "name": pl.String(),
        "active": pl.Boolean(),
    },
}
#: the tables both sides have and the rules compare (row counts, audit, the stored roster)
TABLES: tuple[str, ...] = ("schools", "users", "links", "classes", "enrollments")
#: what the source side carries besides, for explaining references (never compared):
#: stored with the roster like TABLES (`ALL_TABLES`), not counted as rows of the roster
REFERENCE_TABLES: tuple[str, ...] = ("orgs",)
ALL_TABLES: tuple[str, ...] = TABLES + REFERENCE_TABLES


# -- the container ---------------------------------------------------------------------


def empty_table(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMAS[table])


def conform(table: str, frame: pl.DataFrame | Iterable[Mapping[str, Any]] | None) -> pl.DataFrame:
    """Give a frame exactly the canonical columns, types and order (missing columns -> null)."""
    schema = SCHEMAS[table]
    if frame is None:
        return empty_table(table)
    if not isinstance(frame, pl.DataFrame):
        rows = list(frame)
        if not rows:
            return empty_table(table)
        frame = pl.DataFrame(
            rows,
            schema_overrides={k: v for k, v in schema.items()},
            infer_schema_length=None,
            strict=False,
        )
    unknown = set(frame.columns) - set(schema)
    if unknown:
        raise ValueError(f"{table}: columns not in the canonical roster: {sorted(unknown)}")
    return frame.select(
        [
            pl.col(name).cast(dtype, strict=True)
            if name in frame.columns
            else pl.lit(None, dtype=dtype).alias(name)
            for name, dtype in schema.items()
        ]
    )


@dataclass(frozen=True)
class Roster:
    """One customer's roster on one side, as the canonical tables (`TABLES`)."""

    customer_id: str
    side: Side
    schools: pl.DataFrame = field(default_factory=lambda: empty_table("schools"))
    users: pl.DataFrame = field(default_factory=lambda: empty_table("users"))
    links: pl.DataFrame = field(default_factory=lambda: empty_table("links"))
    classes: pl.DataFrame = field(default_factory=lambda: empty_table("classes"))
    enrollments: pl.DataFrame = field(default_factory=lambda: empty_table("enrollments"))
    orgs: pl.DataFrame = field(default_factory=lambda: empty_table("orgs"))
    #: provenance without row data: source files and checksums, oneroster version,
    #: last Bookmarked sync, ... (shown as asset metadata)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for table in ALL_TABLES:
            object.__setattr__(self, table, conform(table, getattr(self, table)))

    def table(self, name: str) -> pl.DataFrame:
        return getattr(self, name)

    def row_counts(self) -> dict[str, int]:
        return {table: self.table(table).height for table in TABLES}

    def with_tables(self, **tables: pl.DataFrame) -> Roster:
        return replace(self, **tables)

    def for_students(self, student_sis_ids: Iterable[str]) -> Roster:
        """The slice of this roster about some students: the students, their parents and
        links, their own enrollments (not their classmates' or teachers'), those classes,
        and the schools involved. Connectors that cannot filter at the source use it for
        `fetch_student`.
        """
        ids = list(student_sis_ids)
        student_rows = self.users.filter(pl.col("sis_id").is_in(ids))["bookmarked_id"]
        # on the Bookmarked side a link may carry only the account ids (a merged parent)
        links = self.links.filter(
            pl.col("student_sis_id").is_in(ids)
            | pl.col("student_bookmarked_id").is_in(student_rows.drop_nulls().implode())
        )
        users = self.users.filter(
            pl.col("sis_id").is_in(ids + links["parent_sis_id"].drop_nulls().to_list())
            | pl.col("bookmarked_id").is_in(links["parent_bookmarked_id"].drop_nulls().implode())
        )
        enrollments = self.enrollments.filter(pl.col("user_sis_id").is_in(ids))
        return self._slice(users, links, enrollments, {"students": ids})

    def for_people(self, sis_ids: Iterable[str]) -> Roster:
        """The neighbourhood of some people, for a diagnosis: the people; their links; for a
        student their parents, and those parents' other children (siblings) with all THEIR
        links; for a parent their children and those children's other parents. Then every
        enrollment of everyone in the slice, those classes, and the schools and orgs of all.
        Links are followed by sis_id and, on the Bookmarked side, by account id too: a
        merged parent account carries one sis_id but is linked to every family's children.
        `meta["scope"]["people"]` names whom it was cut for.
        """
        ids = list(dict.fromkeys(sis_ids))
        core = self.users.filter(pl.col("sis_id").is_in(ids))
        links = self.links

        def touching(side: str, sis: pl.Series, accounts: pl.Series) -> pl.Expr:
            return pl.col(f"{side}_sis_id").is_in(sis.drop_nulls().implode()) | pl.col(
                f"{side}_bookmarked_id"
            ).is_in(accounts.drop_nulls().implode())

        own = links.filter(
            touching("student", core["sis_id"], core["bookmarked_id"])
            | touching("parent", core["sis_id"], core["bookmarked_id"])
        )
        # the parents involved: the people asked for who are parents, and the students' parents
        parents_sis = pl.concat([core["sis_id"], own["parent_sis_id"]])
        parents_accounts = pl.concat([core["bookmarked_id"], own["parent_bookmarked_id"]])
        families = links.filter(touching("parent", parents_sis, parents_accounts))
        # every child of those families (siblings, a parent's children), with all their links
        children_sis = pl.concat(
            [core["sis_id"], own["student_sis_id"], families["student_sis_id"]]
        )
        children_accounts = pl.concat(
            [core["bookmarked_id"], own["student_bookmarked_id"], families["student_bookmarked_id"]]
        )
        links = links.filter(touching("student", children_sis, children_accounts))
        users = self.users.filter(
            pl.col("sis_id").is_in(
                pl.concat([core["sis_id"], links["parent_sis_id"], links["student_sis_id"]])
                .drop_nulls()
                .implode()
            )
            | pl.col("bookmarked_id").is_in(
                pl.concat([links["parent_bookmarked_id"], links["student_bookmarked_id"]])
                .drop_nulls()
                .implode()
            )
        )
        enrollments = self.enrollments.filter(
            pl.col("user_sis_id").is_in(users["sis_id"].drop_nulls().implode())
        )
        return self._slice(users, links, enrollments, {"people": ids})

    def _slice(
        self,
        users: pl.DataFrame,
        links: pl.DataFrame,
        enrollments: pl.DataFrame,
        scope: dict[str, list[str]],
    ) -> Roster:
        """A slice from its users, links and enrollments: those enrollments' classes, and
        the schools and orgs that the users and classes point at."""
        classes = self.classes.filter(pl.col("sis_id").is_in(enrollments["class_sis_id"].implode()))
        school_ids = pl.concat([users["school_sis_id"], classes["school_sis_id"]]).drop_nulls()
        schools = self.schools.filter(pl.col("sis_id").is_in(school_ids.implode()))
        org_ids = pl.concat([school_ids, users["org_sis_ids"].explode().drop_nulls()])
        orgs = self.orgs.filter(pl.col("sis_id").is_in(org_ids.implode()))
        return replace(
            self,
            schools=schools,
            users=users,
            links=links,
            classes=classes,
            enrollments=enrollments,
            orgs=orgs,
            meta={**self.meta, "scope": scope},
        )
