"""student_mismatch — Student Mismatch Resolver: which students a parent can see.

ISSUE_IN_BOOKMARKED, one finding per parent: the parent account's linked students
differ from the SIS links (a missing link, an extra link, or both: the wrong student).
Links are compared between Bookmarked rows (see `links_missing` / `links_extra`
below), so a changed sourcedId or a merged parent account is no mismatch in
itself. Not reported here: links of a parent or student missing from Bookmarked
(counted by missing_data), links of stale accounts (counted by stale_record), the
second family's children on a merged account (parent_email_conflict), links to
hand-made accounts. Siblings sharing parents, two parents per student and links listed
on only one side in the SIS are no finding (the canonical roster unites both sides).

ISSUE_IN_SOURCE, one finding per record whose agentSourcedIds the district must fix: the
student listing an agent that does not exist in the export (named with the bad id, never
the nonexistent id itself), a parent listing an unknown child, a non-student linked as a
child, a teacher (or any non-parent) as an agent. This rule OWNS "agent to an unknown
user"; source_integrity does not report links, so the problem is reported once.
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
from reconciliation.rules.context import LINK_IDS, LINK_KEYS, ids_in

RULE_ID = "student_mismatch"


def _explain_missing_links(ctx: RuleContext, missing: pl.DataFrame) -> pl.DataFrame:
    """Keep the SIS links a correct sync creates (live parent -> live student) whose
    parent and student both have a live account, that no Bookmarked link covers."""
    users = ctx.user_rows(pl.concat([missing["parent_sis_id"], missing["student_sis_id"]]))
    live = pl.col("in_source") & pl.col("live")
    parents = users.filter(live & (pl.col("role") == "parent")).select(
        pl.col("sis_id").alias("parent_sis_id")
    )
    students = users.filter(live & (pl.col("role") == "student")).select(
        pl.col("sis_id").alias("student_sis_id")
    )
    missing = missing.join(parents, on="parent_sis_id", how="semi").join(
        students, on="student_sis_id", how="semi"
    )
    accounts = ctx.resolve(pl.concat([missing["parent_sis_id"], missing["student_sis_id"]]))
    for side in ("parent", "student"):
        missing = missing.join(
            accounts.select(
                pl.col("sis_id").alias(f"{side}_sis_id"),
                pl.col("bookmarked_id").alias(f"{side}_bookmarked_id"),
            ),
            on=f"{side}_sis_id",
            how="inner",
        )
    held = ctx.bm_links.filter(ids_in("parent_bookmarked_id", missing["parent_bookmarked_id"]))
    return missing.join(held.select(LINK_IDS), on=LINK_IDS, how="anti")


def _explain_extra_links(ctx: RuleContext, extra: pl.DataFrame) -> pl.DataFrame:
    """Keep Bookmarked links between a live parent account and a live student that
    stand for live SIS users, that no SIS link (under any alias) explains.

    Links of hand-made accounts, of stale parents and of stale students are left to
    stale_record (counted there) or are no finding.
    """
    rows = ctx.bm_users.filter(
        ids_in(
            "bookmarked_id",
            pl.concat([extra["parent_bookmarked_id"], extra["student_bookmarked_id"]]),
        )
    ).select("bookmarked_id", "sis_id", "role", "live")
    for side in ("parent", "student"):
        live_rows = rows.filter(
            pl.col("live") & (pl.col("role") == side) & pl.col("sis_id").is_not_null()
        )
        extra = extra.join(
            live_rows.select(
                pl.col("bookmarked_id").alias(f"{side}_bookmarked_id"),
                pl.col("sis_id").alias(f"bm_{side}_sis_id"),
            ),
            on=f"{side}_bookmarked_id",
            how="inner",
        )
    # who the rows stand for in the SIS: their own live sis_id, or a changed id's new one
    changes = ctx.identity_changes
    for side in ("parent", "student"):
        bm_col = f"bm_{side}_sis_id"
        translated = (
            extra.join(
                changes.select(pl.col("old_sis_id").alias(bm_col), pl.col("sis_id").alias("_new")),
                on=bm_col,
                how="left",
            )
            .with_columns(pl.coalesce("_new", bm_col).alias(f"{side}_sis_id"))
            .drop("_new")
        )
        live_sis = ctx.user_rows(translated[f"{side}_sis_id"]).filter(
            pl.col("in_source") & pl.col("live") & (pl.col("role") == side)
        )
        extra = translated.join(
            live_sis.select(pl.col("sis_id").alias(f"{side}_sis_id")),
            on=f"{side}_sis_id",
            how="semi",
        )
    if extra.is_empty():
        return extra
    aliases = ctx.aliases(
        pl.concat([extra["parent_bookmarked_id"], extra["student_bookmarked_id"]])
    )
    candidates = (
        extra.select(LINK_IDS)
        .join(
            aliases.rename({"bookmarked_id": "parent_bookmarked_id", "alias": "parent_sis_id"}),
            on="parent_bookmarked_id",
        )
        .join(
            aliases.rename({"bookmarked_id": "student_bookmarked_id", "alias": "student_sis_id"}),
            on="student_bookmarked_id",
        )
    )
    in_sis = ctx.source.links.filter(ids_in("parent_sis_id", candidates["parent_sis_id"]))
    explained = candidates.join(in_sis.select(LINK_KEYS), on=LINK_KEYS, how="semi")
    return extra.join(explained.select(LINK_IDS), on=LINK_IDS, how="anti")


def links_missing(ctx: RuleContext) -> pl.DataFrame:
    """SIS links (live parent -> live student, both with live accounts) that Bookmarked
    lacks. Columns: parent_sis_id, student_sis_id, parent_bookmarked_id,
    student_bookmarked_id (the resolved accounts)."""
    return _explain_missing_links(ctx, ctx.link_pairs_missing)


def links_extra(ctx: RuleContext) -> pl.DataFrame:
    """Bookmarked links the SIS does not have, between accounts that stand for live SIS
    users. Columns: parent_sis_id, student_sis_id (SIS ids, new ids for changed
    sourcedIds), parent_bookmarked_id, student_bookmarked_id, bm_parent_sis_id,
    bm_student_sis_id."""
    return _explain_extra_links(ctx, ctx.link_pairs_extra)


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
    missing, extra = links_missing(ctx), links_extra(ctx)
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
    # the login support looks the account up by (Bookmarked's email, else the SIS's)
    logins = ctx.bm_users.filter(ids_in("bookmarked_id", frame["account"])).select(
        pl.col("bookmarked_id").alias("account"), pl.col("email_normalized").alias("login")
    )
    sis_emails = ctx.user_rows(frame["parent_sis_id"]).select(
        pl.col("sis_id").alias("parent_sis_id"), pl.col("email_normalized").alias("sis_email")
    )
    frame = (
        frame.join(logins.unique(subset="account"), on="account", how="left")
        .join(sis_emails, on="parent_sis_id", how="left")
        .with_columns(login=pl.coalesce("login", "sis_email"))
    )
    login_note = (
        pl.when(pl.col("login").is_not_null())
        .then(pl.format(", login {},", "login"))
        .otherwise(pl.lit(""))
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
                "Parent {}{} {} in Bookmarked.{}{}",
                "who",
                login_note,
                kind,
                missing_note,
                extra_note,
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
        .then(
            pl.format(
                "agentSourcedIds lists {}, which does not exist in the SIS export", "parent_sis_id"
            )
        )
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
        .then(
            pl.format(
                "agentSourcedIds lists {}, which does not exist in the SIS export", "student_sis_id"
            )
        )
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
    # the record to fix is the one whose agentSourcedIds names the bad id: an id that is not
    # in the export cannot list anyone, so an unknown parent side was named by the student
    unknown_parent = pl.col("parent_role").is_null()
    return bad.with_columns(
        reason=pl.concat_list(parent_problem, student_problem).list.drop_nulls().list.join("; "),
        record_id=pl.when(unknown_parent).then("student_sis_id").otherwise("parent_sis_id"),
        record_role=pl.when(unknown_parent).then("student_role").otherwise("parent_role"),
        linked_id=pl.when(unknown_parent).then("parent_sis_id").otherwise("student_sis_id"),
    )


def _in_source(ctx: RuleContext) -> pl.DataFrame:
    bad = _bad_sis_links(ctx)
    if bad.is_empty():
        return empty_findings()
    frame = (
        bad.sort(LINK_KEYS)
        .group_by("record_id")
        .agg(
            pl.col("record_role").first(),
            pl.col("reason"),
            pl.col("linked_id").alias("linked"),
        )
    )
    frame = frame.join(
        ctx.user_rows(frame["record_id"])
        .filter(pl.col("bm_live"))
        .select(pl.col("sis_id").alias("record_id"), "bm_id"),
        on="record_id",
        how="left",
    )
    frame = add_labels(frame, ctx.user_labels(frame["record_id"], "record_id"), "record_id", "who")
    entity = (
        pl.when(pl.col("record_role").is_in(["student", "teacher", "admin"]))
        .then(pl.col("record_role"))
        .otherwise(pl.lit("parent"))
    )
    return findings(
        frame.select(
            entity_type=entity,
            sis_id="record_id",
            bookmarked_id="bm_id",
            severity=pl.lit("high"),
            detail=pl.format(
                "Parent-student links of {} in the SIS that cannot be right: {}.",
                "who",
                join_list(pl.col("reason"), separator="; "),
            ),
            remediation=pl.format(
                "{}correct agentSourcedIds of {} in the SIS (linked: {}): a link joins a "
                "parent/guardian to a student, and both must be in the export.",
                pl.lit(DISTRICT),
                "who",
                pl.col("linked").list.join(", "),
            ),
            details_json=to_json(linked_ids="linked", record_role="record_role"),
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
    owner="Bookmarked support (ISSUE_IN_BOOKMARKED): unlinks or links the parent account's "
    "students; District data admin (ISSUE_IN_SOURCE): corrects agentSourcedIds in the SIS",
    evaluate=evaluate,
)
