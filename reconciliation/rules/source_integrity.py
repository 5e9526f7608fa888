"""source_integrity — references inside the SIS export that do not resolve.

- a live enrollment whose class or user is not in the export (one finding per
  enrollment, naming every unresolved reference);
- a live class whose school is blank or not in the export (`RuleContext.unplaced_classes`).

A sync cannot create these records, so they are the district's to fix. Agents
(`agentSourcedIds`) pointing at unknown users are NOT reported here: student_mismatch
owns them (ISSUE_IN_SOURCE), so the problem is reported once. Records marked
tobedeleted are not checked: their references no longer matter. Users whose org is not
a school are not checked either (district-level staff are legitimately attached to the
district org).
"""

from __future__ import annotations

import polars as pl

from reconciliation.rules.base import (
    DISTRICT,
    ISSUE_IN_SOURCE,
    Rule,
    RuleContext,
    concat_findings,
    empty_findings,
    findings,
    to_json,
)

RULE_ID = "source_integrity"


def _enrollments(ctx: RuleContext) -> pl.DataFrame:
    bad = ctx.src_enrollment_anomalies.filter(~pl.col("user_known") | ~pl.col("class_known"))
    if bad.is_empty():
        return empty_findings()
    bad = bad.with_columns(user_unknown=~pl.col("user_known"), class_unknown=~pl.col("class_known"))
    problems = (
        pl.concat_list(
            pl.when(pl.col("user_unknown")).then(
                pl.format(
                    "user {} is not in the export", pl.col("user_sis_id").fill_null("(blank)")
                )
            ),
            pl.when(pl.col("class_unknown")).then(
                pl.format(
                    "class {} is not in the export", pl.col("class_sis_id").fill_null("(blank)")
                )
            ),
        )
        .list.drop_nulls()
        .list.join(" and ")
    )
    return findings(
        bad.select(
            entity_type=pl.lit("enrollment"),
            sis_id="sis_id",
            severity=pl.lit("high"),
            detail=pl.format(
                "Enrollment {} (role {}) cannot be synced: {}.",
                pl.col("sis_id").fill_null("(no sourcedId)"),
                pl.col("role").fill_null("none"),
                problems,
            ),
            remediation=pl.format(
                "{}add the missing record(s) to the export, or end/remove enrollment {}.",
                pl.lit(DISTRICT),
                pl.col("sis_id").fill_null("(no sourcedId)"),
            ),
            details_json=to_json(
                user_sis_id="user_sis_id",
                class_sis_id="class_sis_id",
                user_unknown="user_unknown",
                class_unknown="class_unknown",
            ),
        ),
        RULE_ID,
        ISSUE_IN_SOURCE,
    )


def _classes(ctx: RuleContext) -> pl.DataFrame:
    bad = ctx.unplaced_classes
    if bad.is_empty():
        return empty_findings()
    return findings(
        bad.select(
            entity_type=pl.lit("class"),
            sis_id="sis_id",
            severity=pl.lit("high"),
            detail=pl.format(
                "Class {} ({}) belongs to school {}, which is not in the export.",
                pl.col("name").fill_null("unnamed"),
                "sis_id",
                pl.col("school_sis_id").fill_null("(blank)"),
            ),
            remediation=pl.format(
                "{}add school {} to the export (orgs of type school), or move the class to "
                "an exported school.",
                pl.lit(DISTRICT),
                pl.col("school_sis_id").fill_null("(blank)"),
            ),
            details_json=to_json(school_sis_id="school_sis_id"),
        ),
        RULE_ID,
        ISSUE_IN_SOURCE,
    )


def evaluate(ctx: RuleContext) -> pl.DataFrame:
    return concat_findings([_enrollments(ctx), _classes(ctx)])


RULE = Rule(
    id=RULE_ID,
    title="SIS reference integrity",
    description="References inside the SIS export that do not resolve: an enrollment to an "
    "unknown class or user, a class to an unknown school. (Agents to unknown users are "
    "student_mismatch's.)",
    statuses=(ISSUE_IN_SOURCE,),
    evaluate=evaluate,
)
