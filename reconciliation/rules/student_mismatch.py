"""student_mismatch — Student Mismatch Resolver: which students a parent can see.

ISSUE_IN_BOOKMARKED, one finding per parent: the parent account's linked students
differ from the SIS links (a missing link, an extra link, or both: the wrong student).
Links are compared between Bookmarked rows (see `RuleContext.links_missing` /
`links_extra`), so a changed sourcedId or a merged parent account is no mismatch in
itself. Not reported here: links of a parent or student missing from Bookmarked
(counted by missing_data), links of stale accounts (counted by stale_record), the
second family's children on a merged account (parent_email_conflict), links to
hand-made accounts. Siblings sharing parents, two parents per student and links listed
on only one side in the SIS are no finding (the canonical roster unites both sides).

ISSUE_IN_SOURCE, one finding per parent side of bad SIS links: an agent that does not
exist in the export, a non-student linked as a child, a teacher (or any non-parent) as
an agent. This rule OWNS "agent to an unknown user"; source_integrity does not report
links, so the problem is reported once.
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
from reconciliation.rules.context import LINK_KEYS, ids_in

RULE_ID = "student_mismatch"


def _per_parent(ctx: RuleContext, links: pl.DataFrame, prefix: str) -> pl.DataFrame:
    """Per SIS parent: the account row, `{prefix}_students` (labels), `{prefix}_ids`."""
    labelled = add_labels(
        links,
        ctx.user_labels(links["student_sis_id"], "student_sis_id"),
        "student_sis_id",
        "student",
    )
    return (
        labelled.sort("student_sis_id")
        .group_by("parent_sis_id")
        .agg(
            pl.col("parent_bookmarked_id").first().alias(f"{prefix}_account"),
            pl.col("student").alias(f"{prefix}_students"),
            pl.col("student_sis_id").alias(f"{prefix}_ids"),
        )
    )


def _in_bookmarked(ctx: RuleContext) -> pl.DataFrame:
    missing, extra = ctx.links_missing, ctx.links_extra
    if missing.is_empty() and extra.is_empty():
        return empty_findings()
    empty = pl.lit([], dtype=pl.List(pl.String))
    frame = (
        _per_parent(ctx, missing, "missing")
        .join(_per_parent(ctx, extra, "extra"), on="parent_sis_id", how="full", coalesce=True)
        .with_columns(
            pl.col("missing_students", "missing_ids", "extra_students", "extra_ids").fill_null(
                empty
            )
        )
        .with_columns(
            account=pl.coalesce("extra_account", "missing_account"),
            n_missing=pl.col("missing_ids").list.len(),
            n_extra=pl.col("extra_ids").list.len(),
        )
    )
    frame = add_labels(
        frame, ctx.user_labels(frame["parent_sis_id"], "parent_sis_id"), "parent_sis_id", "who"
    )
    kind = (
        pl.when((pl.col("n_missing") > 0) & (pl.col("n_extra") > 0))
        .then(pl.lit("is linked to the wrong student(s)"))
        .when(pl.col("n_extra") > 0)
        .then(pl.lit("sees student(s) the SIS does not link"))
        .otherwise(pl.lit("lacks link(s) the SIS has"))
    )
    missing_note = (
        pl.when(pl.col("n_missing") > 0)
        .then(pl.format(" Missing in Bookmarked: {}.", join_list(pl.col("missing_students"))))
        .otherwise(pl.lit(""))
    )
    extra_note = (
        pl.when(pl.col("n_extra") > 0)
        .then(
            pl.format(
                " Linked in Bookmarked but not in the SIS: {}.", join_list(pl.col("extra_students"))
            )
        )
        .otherwise(pl.lit(""))
    )
    remediation = (
        pl.when(pl.col("n_extra") > 0)
        .then(
            pl.format(
                "{}unlink {} from parent account #{} now (the parent sees a child that is not "
                "theirs in the SIS), then re-sync the parent's links. If the SIS agents are wrong "
                "instead, the district data admin fixes agentSourcedIds.",
                pl.lit(SUPPORT),
                pl.col("extra_ids").list.join(", "),
                "account",
            )
        )
        .otherwise(
            pl.format(
                "{}re-sync the parent's links to add {} to account #{}.",
                pl.lit(SUPPORT),
                pl.col("missing_ids").list.join(", "),
                "account",
            )
        )
    )
    return findings(
        frame.select(
            entity_type=pl.lit("parent"),
            sis_id="parent_sis_id",
            bookmarked_id="account",
            severity=pl.when(pl.col("n_extra") > 0)
            .then(pl.lit("critical"))
            .otherwise(pl.lit("high")),
            detail=pl.format(
                "Parent {} {} in Bookmarked.{}{}", "who", kind, missing_note, extra_note
            ),
            remediation=remediation,
            details_json=to_json(missing_students="missing_ids", extra_students="extra_ids"),
        ),
        RULE_ID,
        ISSUE_IN_BOOKMARKED,
    )


def _bad_sis_links(ctx: RuleContext) -> pl.DataFrame:
    """SIS links a sync cannot honour, one row per link with `reason`.

    The connector puts a non-parent's agents on the parent side, so a teacher who lists a
    student comes out as the student being the teacher's guardian: such a pair is turned
    round (the student is the child, whichever record listed whom), so one bad pair is one
    finding on the same side however the SIS wrote it."""
    links = ctx.source.links.select(LINK_KEYS).drop_nulls()
    users = ctx.src_users
    parents = users.filter(pl.col("role") == "parent").select(
        pl.col("sis_id").alias("parent_sis_id")
    )
    students = users.filter(pl.col("role") == "student").select(
        pl.col("sis_id").alias("student_sis_id")
    )
    bad = pl.concat(
        [
            links.join(parents, on="parent_sis_id", how="anti"),
            links.join(students, on="student_sis_id", how="anti"),
        ]
    ).unique()
    if bad.is_empty():
        return bad.with_columns(reason=pl.lit(None, pl.String), parent_role=pl.lit(None, pl.String))
    roles = users.filter(
        ids_in("sis_id", pl.concat([bad["parent_sis_id"], bad["student_sis_id"]]))
    ).select("sis_id", "role", "role_raw")
    bad = bad.join(
        roles.rename({"sis_id": "parent_sis_id", "role": "parent_role", "role_raw": "parent_raw"}),
        on="parent_sis_id",
        how="left",
    ).join(
        roles.rename(
            {"sis_id": "student_sis_id", "role": "student_role", "role_raw": "student_raw"}
        ),
        on="student_sis_id",
        how="left",
    )
    turned = (pl.col("parent_role") == "student") & pl.col("student_role").is_in(
        ["teacher", "admin", "other"]
    )
    sides = ("sis_id", "role", "raw")
    bad = bad.with_columns(
        [
            pl.when(turned)
            .then(pl.col(f"{other}_{column}"))
            .otherwise(pl.col(f"{side}_{column}"))
            .alias(f"{side}_{column}")
            for side, other in (("parent", "student"), ("student", "parent"))
            for column in sides
        ]
    ).unique(subset=LINK_KEYS, maintain_order=True)
    parent_problem = (
        pl.when(pl.col("parent_role").is_null())
        .then(pl.format("agent {} does not exist in the SIS export", "parent_sis_id"))
        .when(pl.col("parent_role") != "parent")
        .then(
            pl.format(
                "{} {} is listed as a parent/guardian of {}",
                pl.coalesce("parent_raw", "parent_role"),
                "parent_sis_id",
                "student_sis_id",
            )
        )
    )
    student_problem = (
        pl.when(pl.col("student_role").is_null())
        .then(pl.format("agent {} does not exist in the SIS export", "student_sis_id"))
        .when(pl.col("student_role") != "student")
        .then(
            pl.format(
                "{} {} is linked as a child of {}",
                pl.coalesce("student_raw", "student_role"),
                "student_sis_id",
                "parent_sis_id",
            )
        )
    )
    return bad.with_columns(
        reason=pl.concat_list(parent_problem, student_problem).list.drop_nulls().list.join("; ")
    )


def _in_source(ctx: RuleContext) -> pl.DataFrame:
    bad = _bad_sis_links(ctx)
    if bad.is_empty():
        return empty_findings()
    frame = (
        bad.sort(LINK_KEYS)
        .group_by("parent_sis_id")
        .agg(
            pl.col("parent_role").first(),
            pl.col("reason"),
            pl.col("student_sis_id").alias("students"),
        )
    )
    frame = frame.join(
        ctx.user_rows(frame["parent_sis_id"])
        .filter(pl.col("bm_live"))
        .select(pl.col("sis_id").alias("parent_sis_id"), "bm_id"),
        on="parent_sis_id",
        how="left",
    )
    entity = (
        pl.when(pl.col("parent_role").is_in(["student", "teacher", "admin"]))
        .then(pl.col("parent_role"))
        .otherwise(pl.lit("parent"))
    )
    return findings(
        frame.select(
            entity_type=entity,
            sis_id="parent_sis_id",
            bookmarked_id="bm_id",
            severity=pl.lit("high"),
            detail=pl.format(
                "Parent-student links in the SIS that cannot be right: {}.",
                join_list(pl.col("reason"), separator="; "),
            ),
            remediation=pl.format(
                "{}correct agentSourcedIds in the SIS for {} and the linked record(s) {}: "
                "a link joins a parent/guardian to a student, and both must be in the export.",
                pl.lit(DISTRICT),
                "parent_sis_id",
                pl.col("students").list.join(", "),
            ),
            details_json=to_json(linked_ids="students", parent_role="parent_role"),
        ),
        RULE_ID,
        ISSUE_IN_SOURCE,
    )


def evaluate(ctx: RuleContext) -> pl.DataFrame:
    return concat_findings([_in_bookmarked(ctx), _in_source(ctx)])


RULE = Rule(
    id=RULE_ID,
    title="Student Mismatch Resolver",
    description="Parent accounts whose linked students differ from the SIS (missing, extra "
    "or wrong student), and SIS links that cannot be right (unknown agent, non-student "
    "child, teacher as agent).",
    statuses=(ISSUE_IN_BOOKMARKED, ISSUE_IN_SOURCE),
    evaluate=evaluate,
)
