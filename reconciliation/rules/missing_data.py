"""missing_data — Missing Data Finder.

A school, class, user (student, teacher, parent, admin) or enrollment that is live in
the SIS but absent, inactive or deleted in Bookmarked.

One real problem, one finding:
- a missing school carries its missing classes (and their enrollments) as counts;
- a missing class carries its enrollments as counts;
- a missing user carries its enrollments and parent-student links as counts;
- a user whose sourcedId changed is duplicate_identity's; a parent whose sis_id the
  sync overwrote when it merged two parents sharing an email is parent_email_conflict's;
  the enrollments of a campus-transfer student are campus_transfer's;
- enrollments pointing at users or classes unknown to the SIS, or whose role contradicts
  the user's, and those of a class whose school is not in the export, are
  source_integrity's (`RuleContext.claimed`);
  users of roles Bookmarked does not sync (aides, proctors) are never missing.
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
    count_per,
    empty_findings,
    findings,
    to_json,
)
from reconciliation.rules.context import KEYS, ids_in, live_synced_user

RULE_ID = "missing_data"


def _state() -> pl.Expr:
    """How the record stands in Bookmarked, for the detail line."""
    return (
        pl.when(pl.col("in_bookmarked"))
        .then(pl.lit("inactive or deleted in"))
        .otherwise(pl.lit("absent from"))
    )


def _schools(ctx: RuleContext) -> pl.DataFrame:
    schools = ctx.missing_schools
    if schools.is_empty():
        return empty_findings()
    classes = ctx.missing_classes.filter(ids_in("school_sis_id", schools["sis_id"]))
    frame = add_school_contents(schools, classes, ctx.src_enrollments, "school_sis_id")
    frame = add_labels(frame, ctx.school_labels(frame["sis_id"], "sis_id"), "sis_id", "school")
    return findings(
        frame.select(
            entity_type=pl.lit("school"),
            sis_id="sis_id",
            bookmarked_id="bm_id",
            severity=pl.lit("high"),
            detail=pl.format(
                "School {} is active in the SIS but {} Bookmarked. Missing with it (counted "
                "here, not listed): {} class(es) with {} enrollment(s).",
                "school",
                _state(),
                "classes",
                "enrollments",
            ),
            remediation=pl.lit(
                SUPPORT + "create or reactivate the school by re-syncing the customer; its "
                "classes and enrollments follow. If the district left the school out of its "
                "export on purpose, the district data admin confirms and nothing is needed."
            ),
            details_json=to_json(
                in_bookmarked="in_bookmarked",
                missing_classes="classes",
                missing_enrollments="enrollments",
            ),
        ),
        RULE_ID,
        ISSUE_IN_BOOKMARKED,
    )


def _classes(ctx: RuleContext) -> pl.DataFrame:
    classes = ctx.missing_classes.filter(~ids_in("school_sis_id", ctx.missing_schools["sis_id"]))
    if classes.is_empty():
        return empty_findings()
    enrollments = ctx.src_enrollments.filter(ids_in("class_sis_id", classes["sis_id"])).collect()
    frame = add_counts(
        classes,
        "sis_id",
        {
            "students": count_per(
                enrollments.filter(pl.col("role") == "student"), "class_sis_id", "students"
            ),
            "teachers": count_per(
                enrollments.filter(pl.col("role") == "teacher"), "class_sis_id", "teachers"
            ),
        },
    )
    frame = add_labels(frame, ctx.class_labels(frame["sis_id"], "sis_id"), "sis_id", "class")
    frame = add_labels(frame, ctx.school_labels(frame["school_sis_id"]), "school_sis_id", "school")
    return findings(
        frame.select(
            entity_type=pl.lit("class"),
            sis_id="sis_id",
            bookmarked_id="bm_id",
            severity=pl.lit("high"),
            detail=pl.format(
                "Class {} at {} is active in the SIS but {} Bookmarked. Missing with it "
                "(counted here, not listed): {} student and {} teacher enrollment(s).",
                "class",
                pl.col("school").fill_null("no school"),
                _state(),
                "students",
                "teachers",
            ),
            remediation=pl.lit(
                SUPPORT + "re-sync the class (create or reactivate it); its enrollments follow."
            ),
            details_json=to_json(
                school_sis_id="school_sis_id",
                in_bookmarked="in_bookmarked",
                missing_student_enrollments="students",
                missing_teacher_enrollments="teachers",
            ),
        ),
        RULE_ID,
        ISSUE_IN_BOOKMARKED,
    )


def _users(ctx: RuleContext) -> pl.DataFrame:
    users = ctx.missing_users
    if users.is_empty():
        return empty_findings()
    ids = users["sis_id"]
    links = ctx.source.links
    frame = add_counts(
        users,
        "sis_id",
        {
            "enrollments": count_per(
                ctx.src_enrollments.filter(ids_in("user_sis_id", ids)).collect(),
                "user_sis_id",
                "enrollments",
            ),
            "as_student": count_per(
                links.filter(ids_in("student_sis_id", ids)), "student_sis_id", "as_student"
            ),
            "as_parent": count_per(
                links.filter(ids_in("parent_sis_id", ids)), "parent_sis_id", "as_parent"
            ),
        },
    ).with_columns(links=pl.col("as_student") + pl.col("as_parent"))
    frame = add_labels(frame, ctx.user_labels(ids), "sis_id", "who")
    frame = add_labels(frame, ctx.school_labels(frame["school_sis_id"]), "school_sis_id", "school")
    severity = (
        pl.when(pl.col("role").is_in(["student", "teacher"]))
        .then(pl.lit("high"))
        .otherwise(pl.lit("medium"))
    )
    return findings(
        frame.select(
            entity_type="role",
            sis_id="sis_id",
            bookmarked_id="bm_id",
            severity=severity,
            detail=pl.format(
                "{} {}{} is active in the SIS but {} Bookmarked. Missing with it (counted "
                "here, not listed): {} enrollment(s) and {} parent-student link(s).",
                pl.col("role").str.to_titlecase(),
                "who",
                pl.when(pl.col("school").is_not_null())
                .then(pl.format(" at {}", "school"))
                .otherwise(pl.lit("")),
                _state(),
                "enrollments",
                "links",
            ),
            remediation=pl.when(pl.col("in_bookmarked"))
            .then(
                pl.lit(
                    SUPPORT + "reactivate the account (it is inactive or deleted although the SIS "
                    "has it active), then re-sync its enrollments and links."
                )
            )
            .otherwise(
                pl.lit(
                    SUPPORT + "re-sync the customer so the account is created; if it is still "
                    "missing, check the sync log for an error on this sourcedId."
                )
            ),
            details_json=to_json(
                role="role",
                school_sis_id="school_sis_id",
                in_bookmarked="in_bookmarked",
                missing_enrollments="enrollments",
                missing_links="links",
            ),
        ),
        RULE_ID,
        ISSUE_IN_BOOKMARKED,
    )


def _enrollments(ctx: RuleContext) -> pl.DataFrame:
    missing = ctx.enrollments_missing
    if missing.is_empty():
        return empty_findings()
    live_classes = ctx.classes.filter(pl.col("in_source") & pl.col("live"))
    users = ctx.user_rows(missing["user_sis_id"]).filter(live_synced_user())
    missing = (
        missing.join(
            live_classes.select(pl.col("sis_id").alias("class_sis_id")),
            on="class_sis_id",
            how="semi",
        )
        .join(users.select(pl.col("sis_id").alias("user_sis_id")), on="user_sis_id", how="semi")
        .filter(
            ~ids_in("class_sis_id", ctx.missing_classes["sis_id"])
            & ~ids_in("class_sis_id", ctx.unplaced_classes["sis_id"])
            & ~ids_in("user_sis_id", ctx.missing_users["sis_id"])
            & ~ids_in("user_sis_id", ctx.claimed("enrollments_of"))
            & ~ids_in("sis_id", ctx.claimed("enrollment")).fill_null(False)
        )
    )
    if missing.is_empty():
        return empty_findings()
    # an inactive Bookmarked row for the same (class, user), if any
    inactive = (
        ctx.bookmarked.enrollments.filter(ids_in("user_sis_id", missing["user_sis_id"]))
        .group_by(KEYS)
        .agg(pl.col("bookmarked_id").max())
    )
    frame = missing.join(inactive, on=KEYS, how="left")
    frame = add_labels(
        frame, ctx.user_labels(frame["user_sis_id"], "user_sis_id"), "user_sis_id", "who"
    )
    frame = add_labels(frame, ctx.class_labels(frame["class_sis_id"]), "class_sis_id", "class")
    return findings(
        frame.select(
            entity_type=pl.lit("enrollment"),
            sis_id="sis_id",
            bookmarked_id="bookmarked_id",
            severity=pl.lit("high"),
            detail=pl.format(
                "{} {} is enrolled in class {} in the SIS, but Bookmarked {}.",
                pl.col("role").str.to_titlecase(),
                "who",
                "class",
                pl.when(pl.col("bookmarked_id").is_null())
                .then(pl.lit("has no such enrollment"))
                .otherwise(pl.lit("has it inactive")),
            ),
            remediation=pl.lit(SUPPORT + "re-sync the enrollment (create or reactivate it)."),
            details_json=to_json(
                class_sis_id="class_sis_id",
                user_sis_id="user_sis_id",
                role="role",
            ),
        ),
        RULE_ID,
        ISSUE_IN_BOOKMARKED,
    )


def evaluate(ctx: RuleContext) -> pl.DataFrame:
    return concat_findings([_schools(ctx), _classes(ctx), _users(ctx), _enrollments(ctx)])


RULE = Rule(
    id=RULE_ID,
    title="Missing Data Finder",
    description="Schools, classes, users and enrollments active in the SIS but absent, "
    "inactive or deleted in Bookmarked; a missing record's enrollments and links are counted "
    "in its finding.",
    statuses=(ISSUE_IN_BOOKMARKED,),
    owner="Bookmarked support (ISSUE_IN_BOOKMARKED): re-syncs or reactivates the record",
    evaluate=evaluate,
)
