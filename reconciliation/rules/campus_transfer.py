"""campus_transfer — students whose campus changed.

ISSUE_IN_BOOKMARKED: the SIS moved the student and Bookmarked did not follow: it still
has the old campus as the student's school, keeps live enrollments at another campus
(phantom enrollments: the SIS dropped them instead of ending them), or lacks the new
campus's enrollments. What counts as a transfer is decided in `RuleContext.campus_transfers`;
one finding per student lists every enrollment difference of that student, and
missing_data / stale_record leave those enrollments out.

ISSUE_IN_SOURCE: the SIS itself keeps the student live at two campuses (a live
enrollment at a campus other than the student's school).
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
                "{}re-sync the student: set the school to {}, end the {} phantom "
                "enrollment(s), add the {} missing one(s). If the SIS dropped the old "
                "enrollments instead of ending them, the district data admin end-dates them "
                "so later syncs end them too.",
                pl.lit(SUPPORT),
                "new_school",
                pl.col("phantom_ids").list.len(),
                pl.col("missing_ids").list.len(),
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
    students = ctx.dual_campus_students
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
                "{}end-date (or mark tobedeleted) the student's enrollments at {} if the "
                "student transferred, or confirm the dual enrollment.",
                pl.lit(DISTRICT),
                pl.col("other_schools").list.join(", "),
            ),
            details_json=to_json(
                school_sis_id="school_sis_id",
                other_schools="other_schools",
                enrollments_elsewhere="enrollments",
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
    "itself keeps enrolled at two campuses.",
    statuses=(ISSUE_IN_BOOKMARKED, ISSUE_IN_SOURCE),
    evaluate=evaluate,
)
