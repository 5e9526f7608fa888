"""stale_record — records still live in Bookmarked that the SIS marks `tobedeleted`
(or disabled, or ended) or no longer exports at all.

One real problem, one finding:
- a stale school carries its stale classes (and their enrollments) as counts;
- a stale class carries its live enrollments as counts;
- a stale user carries its live enrollments and parent-student links as counts;
- the old account of a changed sourcedId is duplicate_identity's, the phantom
  enrollments of a campus-transfer student are campus_transfer's, an enrollment the SIS
  still has but cannot resolve (its class or user not in the export) is
  source_integrity's (`RuleContext.claimed`);
- hand-made Bookmarked users (no sis_id) are never stale; neither is an account whose
  SIS user has a role Bookmarked does not sync; records inactive on both sides and
  enrollments ended on both sides are no finding.
"""

from __future__ import annotations

import polars as pl

from reconciliation.rules.base import (
    ISSUE_IN_BOOKMARKED,
    SUPPORT,
    Rule,
    RuleContext,
    add_counts,
    add_labels,
    add_school_contents,
    concat_findings,
    count_links,
    count_per,
    empty_findings,
    findings,
    to_json,
)
from reconciliation.rules.context import KEYS, ids_in, live_synced_user

RULE_ID = "stale_record"


def _why() -> pl.Expr:
    """What the SIS says about the record, for the detail line."""
    return (
        pl.when(pl.col("in_source"))
        .then(pl.lit("marked tobedeleted (or disabled) in the SIS"))
        .otherwise(pl.lit("gone from the SIS export"))
    )


def _schools(ctx: RuleContext) -> pl.DataFrame:
    schools = ctx.stale_schools
    if schools.is_empty():
        return empty_findings()
    classes = ctx.stale_classes.filter(ids_in("bm_school_sis_id", schools["sis_id"]))
    frame = add_school_contents(schools, classes, ctx.bm_enrollments, "bm_school_sis_id")
    frame = add_labels(frame, ctx.school_labels(frame["sis_id"], "sis_id"), "sis_id", "school")
    return findings(
        frame.select(
            entity_type=pl.lit("school"),
            sis_id="sis_id",
            bookmarked_id="bm_id",
            severity=pl.lit("medium"),
            detail=pl.format(
                "School {} is active in Bookmarked but {}. Stale with it (counted here, not "
                "listed): {} class(es) with {} active enrollment(s).",
                "school",
                _why(),
                "classes",
                "enrollments",
            ),
            remediation=pl.lit(
                SUPPORT + "confirm with the district data admin that the school closed or left "
                "the roster, then deactivate it with its classes and enrollments (re-sync)."
            ),
            details_json=to_json(
                in_source="in_source", stale_classes="classes", stale_enrollments="enrollments"
            ),
        ),
        RULE_ID,
        ISSUE_IN_BOOKMARKED,
    )


def _classes(ctx: RuleContext) -> pl.DataFrame:
    classes = ctx.stale_classes.filter(~ids_in("bm_school_sis_id", ctx.stale_schools["sis_id"]))
    if classes.is_empty():
        return empty_findings()
    enrollments = ctx.bm_enrollments.filter(ids_in("class_sis_id", classes["sis_id"])).collect()
    frame = add_counts(
        classes,
        "sis_id",
        {
            "enrollments": count_per(enrollments, "class_sis_id", "enrollments"),
        },
    )
    frame = add_labels(frame, ctx.class_labels(frame["sis_id"], "sis_id"), "sis_id", "class")
    return findings(
        frame.select(
            entity_type=pl.lit("class"),
            sis_id="sis_id",
            bookmarked_id="bm_id",
            severity=pl.lit("medium"),
            detail=pl.format(
                "Class {} is active in Bookmarked but {}; {} active enrollment(s) go with it "
                "(counted here, not listed).",
                "class",
                _why(),
                "enrollments",
            ),
            remediation=pl.lit(
                SUPPORT + "deactivate the class and end its enrollments (re-sync); if the class "
                "should still exist, the district data admin restores it in the SIS."
            ),
            details_json=to_json(
                school_sis_id="bm_school_sis_id",
                in_source="in_source",
                stale_enrollments="enrollments",
            ),
        ),
        RULE_ID,
        ISSUE_IN_BOOKMARKED,
    )


def _users(ctx: RuleContext) -> pl.DataFrame:
    users = ctx.stale_users
    if users.is_empty():
        return empty_findings()
    ids = users["sis_id"]
    frame = add_counts(
        users,
        "sis_id",
        {
            "enrollments": count_per(
                ctx.bm_enrollments.filter(ids_in("user_sis_id", ids)).collect(),
                "user_sis_id",
                "enrollments",
            ),
        },
    )
    frame = add_counts(
        frame, "bm_id", {"links": count_links(ctx.bm_links, users["bm_id"], "links")}
    )
    frame = add_labels(frame, ctx.user_labels(ids), "sis_id", "who")
    severity = (
        pl.when(pl.col("bm_role") == "student").then(pl.lit("medium")).otherwise(pl.lit("high"))
    )
    return findings(
        frame.select(
            entity_type="bm_role",
            sis_id="sis_id",
            bookmarked_id="bm_id",
            severity=severity,
            detail=pl.format(
                "{} {} is active in Bookmarked but {}. Stale with it (counted here, not "
                "listed): {} active enrollment(s) and {} parent-student link(s).",
                pl.col("bm_role").str.to_titlecase(),
                "who",
                _why(),
                "enrollments",
                "links",
            ),
            remediation=pl.lit(
                SUPPORT + "deactivate the account, end its enrollments and remove its links "
                "(re-sync); if the person should still have access, the district data admin "
                "restores the record in the SIS."
            ),
            details_json=to_json(
                role="bm_role",
                in_source="in_source",
                stale_enrollments="enrollments",
                stale_links="links",
            ),
        ),
        RULE_ID,
        ISSUE_IN_BOOKMARKED,
    )


def _enrollments(ctx: RuleContext) -> pl.DataFrame:
    extra = ctx.enrollments_extra
    if extra.is_empty():
        return empty_findings()
    users = ctx.user_rows(extra["user_sis_id"]).filter(live_synced_user())
    extra = extra.join(
        users.select(pl.col("sis_id").alias("user_sis_id")), on="user_sis_id", how="semi"
    ).filter(
        ~ids_in("class_sis_id", ctx.stale_classes["sis_id"])
        & ~ids_in("user_sis_id", ctx.missing_users["sis_id"])
        & ~ids_in("user_sis_id", ctx.claimed("enrollments_of"))
        # the SIS still has it, unresolvable (an unknown class or user, a contradicting role)
        & ~ids_in("sis_id", ctx.claimed("enrollment")).fill_null(False)
    )
    if extra.is_empty():
        return empty_findings()
    # what the SIS holds for the same (class, user): an ended or tobedeleted enrollment?
    in_sis = (
        ctx.source.enrollments.filter(ids_in("user_sis_id", extra["user_sis_id"]))
        .sort("end_date", nulls_last=True)
        .group_by(KEYS)
        .agg(pl.col("sis_id").last().alias("src_sis_id"), pl.col("end_date").last())
    )
    frame = extra.join(in_sis, on=KEYS, how="left")
    frame = add_labels(
        frame, ctx.user_labels(frame["user_sis_id"], "user_sis_id"), "user_sis_id", "who"
    )
    frame = add_labels(frame, ctx.class_labels(frame["class_sis_id"]), "class_sis_id", "class")
    why = (
        pl.when(pl.col("end_date").is_not_null())
        .then(pl.format("the SIS ended it on {}", pl.col("end_date").cast(pl.String)))
        .when(pl.col("src_sis_id").is_not_null())
        .then(pl.lit("the SIS marks it inactive (tobedeleted)"))
        .otherwise(pl.lit("the SIS no longer has it"))
    )
    return findings(
        frame.select(
            entity_type=pl.lit("enrollment"),
            sis_id=pl.coalesce("sis_id", "src_sis_id"),
            bookmarked_id="bookmarked_id",
            severity=pl.when(pl.col("role") == "teacher")
            .then(pl.lit("high"))
            .otherwise(pl.lit("medium")),
            detail=pl.format(
                "{} {} is still enrolled in class {} in Bookmarked, but {}.",
                pl.col("role").str.to_titlecase(),
                "who",
                "class",
                why,
            ),
            remediation=pl.lit(SUPPORT + "end the enrollment in Bookmarked (re-sync)."),
            details_json=to_json(
                class_sis_id="class_sis_id",
                user_sis_id="user_sis_id",
                role="role",
                end_date=pl.col("end_date").cast(pl.String),
            ),
        ),
        RULE_ID,
        ISSUE_IN_BOOKMARKED,
    )


def evaluate(ctx: RuleContext) -> pl.DataFrame:
    return concat_findings([_schools(ctx), _classes(ctx), _users(ctx), _enrollments(ctx)])


RULE = Rule(
    id=RULE_ID,
    title="Stale records",
    description="Schools, classes, users and enrollments active in Bookmarked but "
    "tobedeleted, disabled, ended or gone in the SIS; a stale record's enrollments and links "
    "are counted in its finding.",
    statuses=(ISSUE_IN_BOOKMARKED,),
    owner="Bookmarked support (ISSUE_IN_BOOKMARKED): deactivates the record, after "
    "confirming with the district data admin",
    evaluate=evaluate,
)
