"""campus_transfer — students whose campus changed.

ISSUE_IN_BOOKMARKED: the SIS moved the student and Bookmarked did not follow: it still
has the old campus as the student's school, keeps live enrollments at another campus
(phantom enrollments: the SIS dropped them instead of ending them), or lacks the new
campus's enrollments. What counts as a transfer is decided in `RuleContext.campus_transfers`;
one finding per student lists every enrollment difference of that student, and
missing_data / stale_record leave those enrollments out.

ISSUE_IN_SOURCE: the SIS itself keeps the student live at two campuses (a live
enrollment at a campus other than the student's school). Not a finding: a campus the SIS
lists among the student's orgs (a shared-time student, legitimately at both), and the
enrollments of a class whose school differs between the SIS and Bookmarked (one
field_mismatch on the class, not one finding per enrolled student) or that is at no
school (source_integrity's); see `RuleContext.claimed("campus_evidence")`.

The remediation lists what to do and only that: the school to set, the classes whose
enrollments to end, the classes whose enrollments to add.
"""

from __future__ import annotations

import polars as pl

from reconciliation.rules.base import (
    DISTRICT,
    ISSUE_IN_BOOKMARKED,
    ISSUE_IN_SOURCE,
    SUPPORT,
    Rule,
    RuleContext,
    add_labels,
    concat_findings,
    empty_findings,
    findings,
    join_list,
    to_json,
)
from reconciliation.rules.context import ids_in

RULE_ID = "campus_transfer"


def dual_campus_students(ctx: RuleContext) -> pl.DataFrame:
    """Live SIS students the SIS itself keeps live at two campuses: a live enrollment at a
    campus other than the student's school (or, without a school, at two campuses).

    Not a second campus: a school the SIS lists among the student's orgs (a shared-time
    student belongs to both), and the classes `RuleContext.claimed("campus_evidence")`
    names (a class whose school changed is that class's finding, not one per student; a
    class at no school is source_integrity's).
    Columns: sis_id, school_sis_id, other_schools (list), enrollments (count), classes
    (list: the classes of those enrollments)."""
    known_schools = ctx.schools.filter(pl.col("in_source"))["sis_id"]
    off_campus = ctx.src_enrollment_anomalies.filter(
        pl.col("is_student_enrollment")
        & (pl.col("user_role") == "student")
        & pl.col("user_live")
        & ids_in("class_school", known_schools)
        & pl.col("class_school").ne_missing(pl.col("user_school"))
        & ~ids_in("class_sis_id", ctx.claimed("campus_evidence"))
    )
    member_of = (
        ctx.src_users.filter(ids_in("sis_id", off_campus["user_sis_id"]))
        .select(pl.col("sis_id").alias("user_sis_id"), pl.col("org_sis_ids").alias("class_school"))
        .explode("class_school")
        .drop_nulls()
    )
    off_campus = off_campus.join(member_of, on=["user_sis_id", "class_school"], how="anti")
    out = (
        off_campus.group_by("user_sis_id")
        .agg(
            pl.col("user_school").first().alias("school_sis_id"),
            pl.col("class_school").unique().sort().alias("other_schools"),
            pl.len().cast(pl.Int64).alias("enrollments"),
            pl.col("class_sis_id").unique().sort().alias("classes"),
        )
        .rename({"user_sis_id": "sis_id"})
    )
    return (
        out.filter(
            pl.col("school_sis_id").is_not_null() | (pl.col("other_schools").list.len() >= 2)
        )
        .select("sis_id", "school_sis_id", "other_schools", "enrollments", "classes")
        .sort("sis_id")
    )


def _class_lists(ctx: RuleContext, enrollments: pl.DataFrame, prefix: str) -> pl.DataFrame:
    """Per student: `{prefix}_classes` (labels) and `{prefix}_ids` (class sis_ids)."""
    labelled = add_labels(
        enrollments, ctx.class_labels(enrollments["class_sis_id"]), "class_sis_id", "class"
    )
    return (
        labelled.sort("class_sis_id")
        .group_by("user_sis_id")
        .agg(
            pl.col("class").alias(f"{prefix}_classes"),
            pl.col("class_sis_id").alias(f"{prefix}_ids"),
        )
    )


def _in_bookmarked(ctx: RuleContext) -> pl.DataFrame:
    transfers = ctx.campus_transfers
    if transfers.is_empty():
        return empty_findings()
    ids = transfers["sis_id"]
    # the enrollments RuleContext.campus_transfers took as evidence, listed per student
    phantom = ctx.student_enrollments_extra.filter(ids_in("user_sis_id", ids))
    missing = ctx.student_enrollments_missing.filter(ids_in("user_sis_id", ids))
    empty = pl.lit([], dtype=pl.List(pl.String))
    frame = (
        transfers.join(
            _class_lists(ctx, phantom, "phantom"),
            left_on="sis_id",
            right_on="user_sis_id",
            how="left",
        )
        .join(
            _class_lists(ctx, missing, "missing"),
            left_on="sis_id",
            right_on="user_sis_id",
            how="left",
        )
        .with_columns(
            pl.col("phantom_classes", "phantom_ids", "missing_classes", "missing_ids").fill_null(
                empty
            )
        )
    )
    frame = add_labels(frame, ctx.user_labels(ids), "sis_id", "who")
    frame = add_labels(
        frame, ctx.school_labels(frame["new_school"], "new_school"), "new_school", "new_label"
    )
    frame = add_labels(
        frame, ctx.school_labels(frame["bm_school"], "bm_school"), "bm_school", "bm_label"
    )
    school_note = (
        pl.when(pl.col("bm_school").ne_missing(pl.col("new_school")))
        .then(
            pl.format(
                " Bookmarked still has {} as the student's school.",
                pl.col("bm_label").fill_null("no school"),
            )
        )
        .otherwise(pl.lit(""))
    )
    phantom_note = (
        pl.when(pl.col("phantom_ids").list.len() > 0)
        .then(
            pl.format(
                " {} enrollment(s) are still active elsewhere (phantom): {}.",
                pl.col("phantom_ids").list.len(),
                join_list(pl.col("phantom_classes")),
            )
        )
        .otherwise(pl.lit(""))
    )
    missing_note = (
        pl.when(pl.col("missing_ids").list.len() > 0)
        .then(
            pl.format(
                " {} enrollment(s) at the new campus are missing: {}.",
                pl.col("missing_ids").list.len(),
                join_list(pl.col("missing_classes")),
            )
        )
        .otherwise(pl.lit(""))
    )
    # only the steps there are: never "end 0 enrollments"
    steps = pl.concat_list(
        pl.when(pl.col("bm_school").ne_missing(pl.col("new_school"))).then(
            pl.format("set the school to {}", "new_school")
        ),
        pl.when(pl.col("phantom_ids").list.len() > 0).then(
            pl.format("end the enrollments in {}", join_list(pl.col("phantom_ids")))
        ),
        pl.when(pl.col("missing_ids").list.len() > 0).then(
            pl.format("add the enrollments in {}", join_list(pl.col("missing_ids")))
        ),
    ).list.drop_nulls()
    steps = (
        pl.when(steps.list.len() > 0)
        .then(steps.list.join("; "))
        .otherwise(pl.lit("set the school and enrollments from the SIS"))
    )
    dropped_note = (
        pl.when(pl.col("phantom_ids").list.len() > 0)
        .then(
            pl.lit(
                " If the SIS dropped the old enrollments instead of ending them, the district "
                "data admin end-dates them so later syncs end them too."
            )
        )
        .otherwise(pl.lit(""))
    )
    return findings(
        frame.select(
            entity_type=pl.lit("student"),
            sis_id="sis_id",
            bookmarked_id="bookmarked_id",
            severity=pl.lit("high"),
            detail=pl.format(
                "Student {} moved to {} in the SIS (from {}).{}{}{}",
                "who",
                "new_label",
                pl.col("old_schools").list.join(", "),
                school_note,
                phantom_note,
                missing_note,
            ),
            remediation=pl.format(
                "{}re-sync the student: {}.{}", pl.lit(SUPPORT), steps, dropped_note
            ),
            details_json=to_json(
                new_school="new_school",
                bookmarked_school="bm_school",
                old_schools="old_schools",
                phantom_classes="phantom_ids",
                missing_classes="missing_ids",
            ),
        ),
        RULE_ID,
        ISSUE_IN_BOOKMARKED,
    )


def _in_source(ctx: RuleContext) -> pl.DataFrame:
    students = dual_campus_students(ctx)
    if students.is_empty():
        return empty_findings()
    ids = students["sis_id"]
    frame = students.join(
        ctx.user_rows(ids).select("sis_id", pl.col("bm_id"), pl.col("bm_live")),
        on="sis_id",
        how="left",
    )
    frame = add_labels(frame, ctx.user_labels(ids), "sis_id", "who")
    frame = add_labels(frame, ctx.school_labels(frame["school_sis_id"]), "school_sis_id", "school")
    return findings(
        frame.select(
            entity_type=pl.lit("student"),
            sis_id="sis_id",
            bookmarked_id=pl.when(pl.col("bm_live")).then(pl.col("bm_id")),
            severity=pl.lit("medium"),
            detail=pl.format(
                "Student {} belongs to {} in the SIS but the SIS keeps {} active "
                "enrollment(s) at other campuses ({}).",
                "who",
                pl.col("school").fill_null("no school"),
                "enrollments",
                pl.col("other_schools").list.join(", "),
            ),
            remediation=pl.format(
                "{}if the student transferred, end-date (or mark tobedeleted) the student's "
                "enrollments in {} (at {}); if the student attends both campuses, list {} "
                "among the student's orgs (orgSourcedIds).",
                pl.lit(DISTRICT),
                join_list(pl.col("classes")),
                pl.col("other_schools").list.join(", "),
                pl.col("other_schools").list.join(", "),
            ),
            details_json=to_json(
                school_sis_id="school_sis_id",
                other_schools="other_schools",
                enrollments_elsewhere="enrollments",
                classes_elsewhere="classes",
            ),
        ),
        RULE_ID,
        ISSUE_IN_SOURCE,
    )


def evaluate(ctx: RuleContext) -> pl.DataFrame:
    return concat_findings([_in_bookmarked(ctx), _in_source(ctx)])


RULE = Rule(
    id=RULE_ID,
    title="Campus transfers",
    description="Students who changed campus in the SIS while Bookmarked keeps the old "
    "campus, phantom enrollments there, or lacks the new enrollments; and students the SIS "
    "itself keeps enrolled at two campuses without listing both schools among their orgs.",
    statuses=(ISSUE_IN_BOOKMARKED, ISSUE_IN_SOURCE),
    owner="Bookmarked support (ISSUE_IN_BOOKMARKED): re-syncs the student's school "
    "and enrollments; District data admin (ISSUE_IN_SOURCE): ends the enrollments at the "
    "old campus, or lists both schools for a shared-time student",
    evaluate=evaluate,
)
