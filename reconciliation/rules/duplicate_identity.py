"""duplicate_identity — a sourcedId that changed in the SIS (year rollover, SIS migration).

Matching on sis_id alone, the person shows up twice: the new id missing from
Bookmarked, the old account stale. The context pairs them (same role, same student
number first, else the same normalized email, the old id gone or tobedeleted in the SIS,
the old account live) and this rule reports ONE finding on the new id. The old
account's enrollments and links are compared under the new id (so only real
differences remain), and neither missing_data, stale_record nor field_mismatch reports
the pair.
"""

from __future__ import annotations

import polars as pl

from reconciliation.rules.base import (
    DISTRICT,
    ISSUE_IN_BOOKMARKED,
    SUPPORT,
    Rule,
    RuleContext,
    add_counts,
    add_labels,
    count_links,
    count_per,
    empty_findings,
    findings,
    to_json,
)
from reconciliation.rules.context import ids_in

RULE_ID = "duplicate_identity"


def evaluate(ctx: RuleContext) -> pl.DataFrame:
    changes = ctx.identity_changes
    if changes.is_empty():
        return empty_findings()
    old_ids = changes["old_sis_id"]
    enrollments = ctx.bm_enrollments.filter(ids_in("user_sis_id", old_ids)).collect()
    frame = add_counts(
        changes,
        "old_sis_id",
        {"enrollments": count_per(enrollments, "user_sis_id", "enrollments")},
    )
    frame = add_counts(
        frame,
        "bookmarked_id",
        {"links": count_links(ctx.bm_links, changes["bookmarked_id"], "links")},
    )
    old_in_sis = ctx.user_rows(old_ids).select(
        pl.col("sis_id").alias("old_sis_id"), pl.col("in_source").alias("old_in_source")
    )
    frame = frame.join(old_in_sis, on="old_sis_id", how="left")
    frame = add_labels(frame, ctx.user_labels(frame["sis_id"]), "sis_id", "who")
    old_state = (
        pl.when(pl.col("old_in_source"))
        .then(pl.lit("marked tobedeleted in the SIS"))
        .otherwise(pl.lit("gone from the SIS"))
    )
    return findings(
        frame.select(
            entity_type="role",
            sis_id="sis_id",
            bookmarked_id="bookmarked_id",
            severity=pl.lit("high"),
            detail=pl.format(
                "{} {} has a new SIS sourcedId; Bookmarked still holds this person as account "
                "#{} under the old sourcedId {} ({}), matched on {}. The account holds {} "
                "active enrollment(s) and {} parent-student link(s). Left alone, the next "
                "sync shows one missing and one stale account.",
                pl.col("role").str.to_titlecase(),
                "who",
                pl.col("bookmarked_id"),
                "old_sis_id",
                old_state,
                pl.col("matched_on").str.replace("_", " "),
                "enrollments",
                "links",
            ),
            remediation=pl.format(
                "{}change the sis_id of account #{} from {} to {} so the account keeps its "
                "history, instead of creating a second account. {}confirm that the sourcedId "
                "change was intended.",
                pl.lit(SUPPORT),
                "bookmarked_id",
                "old_sis_id",
                "sis_id",
                pl.lit(DISTRICT),
            ),
            details_json=to_json(
                old_sis_id="old_sis_id",
                matched_on="matched_on",
                old_account_enrollments="enrollments",
                old_account_links="links",
                old_in_source="old_in_source",
            ),
        ),
        RULE_ID,
        ISSUE_IN_BOOKMARKED,
    )


RULE = Rule(
    id=RULE_ID,
    title="Changed sourcedIds",
    description="A person whose SIS sourcedId changed (same student number or email under a "
    "new id) while Bookmarked holds the old one: one finding on the new id instead of a "
    "missing and a stale record.",
    statuses=(ISSUE_IN_BOOKMARKED,),
    owner="Bookmarked support (ISSUE_IN_BOOKMARKED): moves the old account to "
    "the new sourcedId; the district data admin confirms the change was intended",
    evaluate=evaluate,
)
