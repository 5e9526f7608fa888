"""source_integrity — records inside the SIS export that contradict or miss each other.

- a live enrollment whose class or user is not in the export, or whose role contradicts
  the user's (a `teacher` enrollment of a student, a `student` enrollment of a teacher):
  one finding per enrollment, naming the student (or teacher) and every problem;
- a live class whose school is blank, not in the export, or an org of another type (a
  district, a department: said so, with its name);
- a live user whose orgs (`orgSourcedIds`, 1.2 roles, primary org) name an org that is
  not in the export;
- a sourcedId the export lists for two users with different names (both named).

A sync cannot create these records as the SIS means them, so they are the district's to
fix. They are this rule's alone (`RuleContext.claimed`): missing_data, stale_record and
field_mismatch leave the enrollments, the class's school and the twice-listed user out.
Agents (`agentSourcedIds`) pointing at unknown users are NOT reported here:
student_mismatch owns them. Records marked tobedeleted are not checked: their references
no longer matter. A user at a district or department org is no finding (district staff
legitimately belong to the district).
"""

from __future__ import annotations

import polars as pl

from reconciliation.roster import SYNCED_ROLES
from reconciliation.rules.base import (
    DISTRICT,
    ISSUE_IN_SOURCE,
    Rule,
    RuleContext,
    add_labels,
    concat_findings,
    empty_findings,
    findings,
    join_list,
    to_json,
)

RULE_ID = "source_integrity"


def _enrollments(ctx: RuleContext) -> pl.DataFrame:
    bad = ctx.unresolvable_enrollments
    if bad.is_empty():
        return empty_findings()
    bad = bad.with_columns(user_unknown=~pl.col("user_known"), class_unknown=~pl.col("class_known"))
    bad = add_labels(bad, ctx.user_labels(bad["user_sis_id"], "user_sis_id"), "user_sis_id", "who")
    bad = add_labels(bad, ctx.class_labels(bad["class_sis_id"]), "class_sis_id", "class")
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
            pl.when(pl.col("role_conflict")).then(
                pl.format("the user's role is {}", pl.col("user_role"))
            ),
        )
        .list.drop_nulls()
        .list.join(" and ")
    )
    enrollment = pl.col("sis_id").fill_null("(no sourcedId)")
    remediation = (
        pl.when(pl.col("user_unknown") | pl.col("class_unknown"))
        .then(
            pl.format(
                "{}add the missing record(s) to the export, or end/remove enrollment {}.",
                pl.lit(DISTRICT),
                enrollment,
            )
        )
        .otherwise(
            pl.format(
                "{}correct the role of enrollment {} ({}) or of user {} ({}) in the SIS so "
                "they agree.",
                pl.lit(DISTRICT),
                enrollment,
                pl.col("role").fill_null("none"),
                "user_sis_id",
                pl.col("user_role"),
            )
        )
    )
    return findings(
        bad.select(
            entity_type=pl.lit("enrollment"),
            sis_id="sis_id",
            severity=pl.lit("high"),
            detail=pl.format(
                "Enrollment {} (role {}) of {} in class {} cannot be synced: {}.",
                enrollment,
                pl.col("role").fill_null("none"),
                pl.col("who").fill_null("(no user)"),
                pl.col("class").fill_null("(no class)"),
                problems,
            ),
            remediation=remediation,
            details_json=to_json(
                user_sis_id="user_sis_id",
                class_sis_id="class_sis_id",
                user_unknown="user_unknown",
                class_unknown="class_unknown",
                role_conflict="role_conflict",
                user_role="user_role",
            ),
        ),
        RULE_ID,
        ISSUE_IN_SOURCE,
    )


def _classes(ctx: RuleContext) -> pl.DataFrame:
    bad = ctx.unplaced_classes
    if bad.is_empty():
        return empty_findings()
    orgs = ctx.src_orgs.select(
        pl.col("sis_id").alias("school_sis_id"),
        pl.col("type").alias("org_type"),
        pl.col("name").alias("org_name"),
    )
    bad = bad.join(orgs, on="school_sis_id", how="left")
    school = pl.col("school_sis_id").fill_null("(blank)")
    org = pl.format(
        "{} {} ({})", pl.col("org_type").fill_null("org"), pl.col("org_name").fill_null(""), school
    )
    known = pl.col("org_type").is_not_null()
    return findings(
        bad.select(
            entity_type=pl.lit("class"),
            sis_id="sis_id",
            severity=pl.lit("high"),
            detail=pl.when(known)
            .then(
                pl.format(
                    "Class {} ({}) belongs to {}, which is not a school: Bookmarked places "
                    "classes only at schools, so the class cannot be synced.",
                    pl.col("name").fill_null("unnamed"),
                    "sis_id",
                    org,
                )
            )
            .otherwise(
                pl.format(
                    "Class {} ({}) belongs to school {}, which is not in the export.",
                    pl.col("name").fill_null("unnamed"),
                    "sis_id",
                    school,
                )
            ),
            remediation=pl.when(known)
            .then(
                pl.format(
                    "{}set the class's schoolSourcedId to the school where it is taught ({} "
                    "is a {}, not a school).",
                    pl.lit(DISTRICT),
                    school,
                    pl.col("org_type"),
                )
            )
            .otherwise(
                pl.format(
                    "{}add school {} to the export (orgs of type school), or move the class "
                    "to an exported school.",
                    pl.lit(DISTRICT),
                    school,
                )
            ),
            details_json=to_json(school_sis_id="school_sis_id", org_type="org_type"),
        ),
        RULE_ID,
        ISSUE_IN_SOURCE,
    )


def _user_orgs(ctx: RuleContext) -> pl.DataFrame:
    """Live users of synced roles whose org list names an org not in the export. One
    pass over the flat org ids; the per-user work only when there is an unknown one."""
    if ctx.source.orgs.is_empty():
        # a roster that does not carry the export's orgs (built by hand, or stored by an
        # older version) cannot tell a district org from a missing one: no judgement
        return empty_findings()
    users = ctx.src_users
    known = ctx.src_orgs["sis_id"]
    flat = users["org_sis_ids"].explode().drop_nulls()
    unknown = flat.filter(~flat.is_in(known.implode())).unique()
    if unknown.is_empty():
        return empty_findings()
    bad = (
        users.filter(
            ~pl.col("deleted").fill_null(False)
            & pl.col("role").is_in(SYNCED_ROLES)
            & pl.col("org_sis_ids").list.eval(pl.element().is_in(unknown.implode())).list.any()
        )
        .select("sis_id", "role", "school_sis_id", "org_sis_ids")
        .with_columns(
            unknown_orgs=pl.col("org_sis_ids").list.set_intersection(unknown.implode()).list.sort()
        )
    )
    if bad.is_empty():
        return empty_findings()
    bad = add_labels(bad, ctx.user_labels(bad["sis_id"]), "sis_id", "who")
    bm = ctx.user_rows(bad["sis_id"]).filter(pl.col("bm_live")).select("sis_id", "bm_id")
    bad = bad.join(bm, on="sis_id", how="left")
    listed = join_list(pl.col("unknown_orgs"))
    return findings(
        bad.select(
            entity_type="role",
            sis_id="sis_id",
            bookmarked_id="bm_id",
            # no school left to place the user at is worse than one bad reference more
            severity=pl.when(pl.col("school_sis_id").is_null())
            .then(pl.lit("high"))
            .otherwise(pl.lit("medium")),
            detail=pl.format(
                "{} {} lists org(s) {} (orgSourcedIds), which are not in the export.",
                pl.col("role").str.to_titlecase(),
                "who",
                listed,
            ),
            remediation=pl.format(
                "{}add org(s) {} to the export (orgs), or remove them from the orgs of {}.",
                pl.lit(DISTRICT),
                listed,
                "who",
            ),
            details_json=to_json(unknown_orgs="unknown_orgs", school_sis_id="school_sis_id"),
        ),
        RULE_ID,
        ISSUE_IN_SOURCE,
    )


def _twins(ctx: RuleContext) -> pl.DataFrame:
    """A sourcedId listed for users with different names: one finding naming every record
    (the comparison with Bookmarked can only take one of them)."""
    twins = ctx.src_user_twins
    if twins.is_empty():
        return empty_findings()
    record = pl.format(
        "{} {} ({}, school {})",
        pl.col("first_name").fill_null(""),
        pl.col("last_name").fill_null(""),
        pl.col("role_raw").fill_null(pl.col("role")),
        pl.col("school_sis_id").fill_null("none"),
    )
    frame = (
        twins.with_columns(record=record)
        .group_by("sis_id", maintain_order=True)
        .agg(
            pl.col("role").filter(pl.col("role").is_in(SYNCED_ROLES)).first().alias("role"),
            pl.col("record"),
            pl.len().alias("records"),
        )
        .filter(pl.col("role").is_not_null())
    )
    if frame.is_empty():
        return empty_findings()
    bm = ctx.user_rows(frame["sis_id"]).filter(pl.col("bm_live")).select("sis_id", "bm_id")
    frame = frame.join(bm, on="sis_id", how="left")
    return findings(
        frame.select(
            entity_type="role",
            sis_id="sis_id",
            bookmarked_id="bm_id",
            severity=pl.lit("high"),
            detail=pl.format(
                "The SIS export lists sourcedId {} for {} users with different names: {}. "
                "Bookmarked can hold only one of them under this id.",
                "sis_id",
                "records",
                join_list(pl.col("record"), separator="; "),
            ),
            remediation=pl.format(
                "{}give each person their own sourcedId in the SIS (or remove the wrong "
                "record), so sourcedId {} names one person.",
                pl.lit(DISTRICT),
                "sis_id",
            ),
            details_json=to_json(records="records"),
        ),
        RULE_ID,
        ISSUE_IN_SOURCE,
    )


def evaluate(ctx: RuleContext) -> pl.DataFrame:
    return concat_findings([_enrollments(ctx), _classes(ctx), _user_orgs(ctx), _twins(ctx)])


RULE = Rule(
    id=RULE_ID,
    title="SIS reference integrity",
    description="Records inside the SIS export that contradict or miss each other: an "
    "enrollment to an unknown class or user, or whose role contradicts the user's; a class "
    "at an unknown org or at an org that is not a school (a district, a department); a user "
    "listing an org that is not in the export; one sourcedId for users with different "
    "names. Bookmarked cannot sync these as the SIS means them, so the district fixes the "
    "export. (Agents to unknown users are student_mismatch's.)",
    statuses=(ISSUE_IN_SOURCE,),
    owner="District data admin (ISSUE_IN_SOURCE): corrects the SIS export",
    evaluate=evaluate,
)
