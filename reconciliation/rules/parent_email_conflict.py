"""parent_email_conflict — different families' parents sharing one email in the SIS.

Bookmarked keys parent accounts by email (trimmed, lowercased), so two SIS parents
with one email become ONE account, linked to both families' children: each family sees
the other's child (a FERPA exposure). The problem is in the SIS data
(ISSUE_IN_SOURCE); one finding per SIS parent involved, saying whether Bookmarked has
already merged them and which students each family can now see.

Not a conflict: one parent of several siblings (one sourcedId, or one contact record per
child under the same name), and parents of the same family sharing an email (two
guardians of the same child, or of siblings). Families are the groups of parents,
within one email, connected by shared children, by siblings (children who share a SIS
parent), or by being one person (same name).

The merged account's links to the other family's children, and the missing account of
the parent whose sis_id the sync overwrote, are this rule's (student_mismatch and
missing_data leave them out).
"""

from __future__ import annotations

import polars as pl

from reconciliation.rules.base import (
    DISTRICT,
    ISSUE_IN_SOURCE,
    SUPPORT,
    Rule,
    RuleContext,
    add_labels,
    empty_findings,
    findings,
    join_list,
    to_json,
)
from reconciliation.rules.context import ids_in, person_name

RULE_ID = "parent_email_conflict"


def _same_family_edges(
    parents: pl.DataFrame, links: pl.DataFrame, users: pl.DataFrame
) -> pl.DataFrame:
    """Pairs of parents (same email) that are one family: they share a child, their
    children are siblings (the children share some SIS parent), or they are one person
    under two sourcedIds (same name; SIS exports often hold one contact record per
    child). Columns: sis_id, other."""
    own = links.filter(ids_in("parent_sis_id", parents["sis_id"]))
    # each child of the parents involved, with its siblings (itself included): children
    # that share any parent with it in the SIS
    co_parents = links.filter(ids_in("student_sis_id", own["student_sis_id"]))
    # only guardians make siblings: a teacher wrongly listed as the agent of two families'
    # children does not make them one family
    guardians = users.filter(ids_in("sis_id", co_parents["parent_sis_id"])).filter(
        pl.col("role") == "parent"
    )["sis_id"]
    co_parents = co_parents.filter(ids_in("parent_sis_id", guardians))
    siblings = (
        co_parents.join(
            links.filter(ids_in("parent_sis_id", co_parents["parent_sis_id"])),
            on="parent_sis_id",
            suffix="_sibling",
        )
        .select("student_sis_id", "student_sis_id_sibling")
        .unique()
    )
    household = (
        own.join(siblings, on="student_sis_id")
        .join(own, left_on="student_sis_id_sibling", right_on="student_sis_id", suffix="_other")
        .select(
            pl.col("parent_sis_id").alias("sis_id"), pl.col("parent_sis_id_other").alias("other")
        )
    )
    named = parents.select("sis_id", "email_normalized", "name")
    same_person = named.join(named, on=["email_normalized", "name"], suffix="_x").select(
        "sis_id", pl.col("sis_id_x").alias("other")
    )
    email = parents.select("sis_id", "email_normalized")
    return (
        pl.concat([household, same_person], how="vertical")
        .filter(pl.col("sis_id") != pl.col("other"))
        .join(email, on="sis_id")
        .join(email.rename({"sis_id": "other", "email_normalized": "email_other"}), on="other")
        .filter(pl.col("email_normalized") == pl.col("email_other"))
        .select("sis_id", "other")
        .unique()
    )


def _families(parents: pl.DataFrame, links: pl.DataFrame, users: pl.DataFrame) -> pl.DataFrame:
    """Label each parent with its family: the smallest sis_id among the parents of the
    same email connected by `_same_family_edges` (label propagation over the few parents
    involved; each round is one vectorized join)."""
    edges = _same_family_edges(parents, links, users)
    labels = parents.select("sis_id", family=pl.col("sis_id"))
    for _ in range(parents.height):
        neighbour = (
            edges.join(labels.rename({"sis_id": "other", "family": "n_family"}), on="other")
            .group_by("sis_id")
            .agg(pl.col("n_family").min())
        )
        updated = labels.join(neighbour, on="sis_id", how="left").select(
            "sis_id", family=pl.min_horizontal("family", "n_family")
        )
        if updated.sort("sis_id").equals(labels.sort("sis_id")):
            break
        labels = updated
    return parents.join(labels, on="sis_id")


def evaluate(ctx: RuleContext) -> pl.DataFrame:
    parents = ctx.shared_email_parents
    if parents.is_empty():
        return empty_findings()
    names = ctx.src_users.filter(ids_in("sis_id", parents["sis_id"])).select(
        "sis_id", name=person_name("first_name", "last_name")
    )
    all_links = ctx.source.links.select("parent_sis_id", "student_sis_id").drop_nulls()
    parents = _families(
        parents.join(names, on="sis_id", how="left"), all_links, ctx.src_users
    ).drop("name")
    links = all_links.filter(ids_in("parent_sis_id", parents["sis_id"])).unique()
    parents = parents.filter(pl.col("family").n_unique().over("email_normalized") >= 2)
    if parents.is_empty():
        return empty_findings()

    # each family's children in the SIS
    family_children = (
        links.join(
            parents.select(pl.col("sis_id").alias("parent_sis_id"), "family"), on="parent_sis_id"
        )
        .group_by("family")
        .agg(pl.col("student_sis_id").unique().sort().alias("own_children"))
    )
    # the live Bookmarked parent account holding the email, and the students it sees
    accounts = (
        ctx.bm_users.filter(
            pl.col("live")
            & (pl.col("role") == "parent")
            & ids_in("email_normalized", parents["email_normalized"])
        )
        .group_by("email_normalized")
        .agg(
            pl.col("bookmarked_id").min().alias("account"),
            pl.col("sis_id").sort_by("bookmarked_id").first().alias("account_sis_id"),
        )
    )
    seen = ctx.bm_links.filter(ids_in("parent_bookmarked_id", accounts["account"]))
    # lazily, so only the two columns are filtered: an eager filter copied every column
    # of the (millions of) live accounts first
    live_ids = (
        ctx.bm_users.lazy()
        .filter(pl.col("live"))
        .select(
            pl.col("bookmarked_id").alias("student_bookmarked_id"),
            pl.col("sis_id").alias("seen_sis_id"),
        )
        .collect()
    )
    seen = seen.join(live_ids, on="student_bookmarked_id").with_columns(
        pl.coalesce("seen_sis_id", pl.col("student_bookmarked_id").cast(pl.String))
    )
    seen = add_labels(
        seen, ctx.user_labels(seen["seen_sis_id"], "seen_sis_id"), "seen_sis_id", "seen_label"
    )
    seen = (
        seen.sort("seen_sis_id")
        .group_by("parent_bookmarked_id")
        .agg(pl.col("seen_sis_id").alias("visible"), pl.col("seen_label").alias("visible_labels"))
    )
    group = (
        parents.sort("sis_id")
        .group_by("email_normalized")
        .agg(
            pl.col("sis_id").alias("group_ids"),
            pl.col("family").n_unique().alias("families"),
        )
    )
    empty = pl.lit([], dtype=pl.List(pl.String))
    frame = (
        parents.join(group, on="email_normalized")
        .join(family_children, on="family", how="left")
        .join(accounts, on="email_normalized", how="left")
        .join(seen, left_on="account", right_on="parent_bookmarked_id", how="left")
        .with_columns(pl.col("own_children", "visible", "visible_labels").fill_null(empty))
    )
    frame = frame.with_columns(
        exposed=pl.col("visible").list.set_difference("own_children").list.sort(),
        merged=pl.col("account").is_not_null(),
    )
    frame = add_labels(frame, ctx.user_labels(frame["sis_id"]), "sis_id", "who")
    merged_note = (
        pl.when(pl.col("merged"))
        .then(
            pl.format(
                " Bookmarked has merged them into one parent account #{} (sis_id {}), which"
                " sees: {}. Of those, {} belong to another family: this family can see them.",
                "account",
                pl.col("account_sis_id").fill_null("none"),
                join_list(pl.col("visible_labels")),
                pl.when(pl.col("exposed").list.len() > 0)
                .then(join_list(pl.col("exposed")))
                .otherwise(pl.lit("none yet")),
            )
        )
        .otherwise(
            pl.lit(
                " Bookmarked has no live parent account with this email yet; the next sync will "
                "merge them into one."
            )
        )
    )
    summary = pl.format(
        "Parent {} shares the email {} with {} other SIS parent(s) of {} different "
        "families ({}). This family's children: {}.",
        "who",
        "email_normalized",
        pl.col("group_ids").list.len() - 1,
        "families",
        pl.col("group_ids").list.join(", "),
        pl.when(pl.col("own_children").list.len() > 0)
        .then(pl.col("own_children").list.join(", "))
        .otherwise(pl.lit("none")),
    )
    # the district's version says what the families can see, without Bookmarked's ids
    district_note = (
        pl.when(pl.col("merged") & (pl.col("exposed").list.len() > 0))
        .then(
            pl.lit(
                " Because Bookmarked keys parent logins by email, these families now share one "
                "login and can see each other's children."
            )
        )
        .otherwise(
            pl.lit(" Bookmarked keys parent logins by email, so these families would share one.")
        )
    )
    severity = (
        pl.when(pl.col("merged") & (pl.col("exposed").list.len() > 0))
        .then(pl.lit("critical"))
        .otherwise(pl.lit("high"))
    )
    remediation = pl.format(
        "{}give each guardian their own email address in the SIS (parents {} share one).{}",
        pl.lit(DISTRICT),
        pl.col("group_ids").list.join(", "),
        pl.when(pl.col("merged"))
        .then(
            pl.format(
                " {}meanwhile unlink the other families' students ({}) from account #{}, and "
                "split the account once the SIS is fixed.",
                pl.lit(SUPPORT),
                pl.when(pl.col("exposed").list.len() > 0)
                .then(pl.col("exposed").list.join(", "))
                .otherwise(pl.lit("none yet")),
                "account",
            )
        )
        .otherwise(pl.lit("")),
    )
    return findings(
        frame.select(
            entity_type=pl.lit("parent"),
            sis_id="sis_id",
            bookmarked_id="account",
            severity=severity,
            detail=pl.concat_str(summary, merged_note),
            district_detail=pl.concat_str(summary, district_note),
            remediation=remediation,
            details_json=to_json(
                parents_sharing="group_ids",
                families="families",
                own_children="own_children",
                merged_account="account",
                visible_students="visible",
                exposed_students="exposed",
            ),
        ),
        RULE_ID,
        ISSUE_IN_SOURCE,
    )


RULE = Rule(
    id=RULE_ID,
    title="Parent email conflicts",
    description="SIS parents of different families sharing one email, which Bookmarked "
    "merges into one account that sees both families' children.",
    statuses=(ISSUE_IN_SOURCE,),
    owner="District data admin (ISSUE_IN_SOURCE): gives each parent their own "
    "email in the SIS; Bookmarked support meanwhile unlinks the other families' children "
    "from a merged account",
    evaluate=evaluate,
)
