"""field_mismatch — a record live on both sides (same sis_id) whose fields differ.

Users: role, first and last name, email (normalized: case and surrounding whitespace are
no difference), student number, grade (students only; normalized to CEDS, so 'K' and
'KG' are equal), school. Schools: name, state id. Classes: name, school, course code, term.

Names are compared as people read them: Unicode NFC and surrounding whitespace are no
difference (`same_text`).

Not compared here, because another rule owns the difference (`RuleContext.claimed`):
- a student's school when the student is a campus transfer (campus_transfer);
- a user's or class's school when that school is missing from Bookmarked (missing_data);
- a class's school when it is not in the export or not a school (source_integrity);
- a user whose sourcedId the SIS lists twice with different names (source_integrity);
- the merged account of parents sharing an email, and the email of any parent whose SIS
  email another parent shares (parent_email_conflict);
- changed sourcedIds: they never match on sis_id (duplicate_identity).

Settings: `field_mismatch_fields` (a list of field names) limits what is compared.
"""

from __future__ import annotations

import polars as pl

from reconciliation.roster import SYNCED_ROLES
from reconciliation.rules.base import (
    ISSUE_IN_BOOKMARKED,
    SUPPORT,
    Rule,
    RuleContext,
    add_labels,
    concat_findings,
    empty_findings,
    findings,
    severity_name,
    severity_rank,
)
from reconciliation.rules.context import ids_in, same_text

RULE_ID = "field_mismatch"

#: field -> (source column, Bookmarked column, severity)
USER_FIELDS = {
    "role": ("role", "bm_role", "medium"),
    "first_name": ("first_name", "bm_first_name", "low"),
    "last_name": ("last_name", "bm_last_name", "low"),
    "email": ("email_normalized", "bm_email_normalized", "medium"),
    "student_number": ("student_number", "bm_student_number", "medium"),
    "grade": ("grade", "bm_grade", "low"),
    "school": ("school_sis_id", "bm_school_sis_id", "medium"),
}
SCHOOL_FIELDS = {
    "name": ("name", "bm_name", "low"),
    "state_id": ("state_id", "bm_state_id", "low"),
}
CLASS_FIELDS = {
    "name": ("name", "bm_name", "low"),
    "school": ("school_sis_id", "bm_school_sis_id", "medium"),
    "course_code": ("course_code", "bm_course_code", "low"),
    "term": ("term_sis_id", "bm_term_sis_id", "low"),
}
#: fields whose values are identifiers, safe for details_json (names and emails are not)
ID_FIELDS = {"role", "grade", "school", "state_id", "course_code", "term"}


def _compare(
    frame: pl.DataFrame,
    fields: dict[str, tuple[str, str, str]],
    skip: dict[str, pl.Expr],
    exclude: pl.Expr | None = None,
) -> pl.DataFrame:
    """The rows with a difference, with `fields_differing`, `differences` (detail text),
    `rank` (worst severity) and `facts` (identifier values only). `skip` masks one field
    on some rows, `exclude` drops rows.

    Exact comparison runs on every row (with `live`, in one pass, materializing only the
    rows that differ); trimming, the skips and the text run on those few rows."""
    frame = (
        frame.lazy()
        .filter(
            pl.col("live")
            & pl.col("bm_live")
            & pl.any_horizontal(
                [pl.col(src).ne_missing(pl.col(bm)) for src, bm, _severity in fields.values()]
            )
        )
        .collect()
    )
    if exclude is not None:
        frame = frame.filter(~exclude)
    flags = {}
    for name, (src, bm, _severity) in fields.items():
        differs = same_text(src).ne_missing(same_text(bm))
        if name in skip:
            differs = differs & ~skip[name]
        flags[f"_differs_{name}"] = differs
    frame = frame.with_columns(**flags).filter(pl.any_horizontal(list(flags)))
    names, texts, ranks, facts = [], [], [], []
    for name, (src, bm, severity) in fields.items():
        differs = pl.col(f"_differs_{name}")
        names.append(pl.when(differs).then(pl.lit(name)))
        texts.append(
            pl.when(differs).then(
                pl.format(
                    "{}: SIS '{}' vs Bookmarked '{}'",
                    pl.lit(name),
                    pl.col(src).fill_null("(empty)"),
                    pl.col(bm).fill_null("(empty)"),
                )
            )
        )
        ranks.append(pl.when(differs).then(severity_rank(pl.lit(severity))))
        safe = name in ID_FIELDS
        facts.append(
            pl.when(differs).then(
                pl.struct(
                    field=pl.lit(name),
                    source=pl.col(src) if safe else pl.lit(None, pl.String),
                    bookmarked=pl.col(bm) if safe else pl.lit(None, pl.String),
                )
            )
        )
    return frame.with_columns(
        fields_differing=pl.concat_list(names).list.drop_nulls(),
        differences=pl.concat_list(texts).list.drop_nulls().list.join("; "),
        rank=pl.min_horizontal(ranks),
        facts=pl.concat_list(facts).list.drop_nulls(),
    )


def _finding_columns(entity_type: pl.Expr, label: str) -> dict[str, pl.Expr]:
    return {
        "entity_type": entity_type,
        "sis_id": pl.col("sis_id"),
        "bookmarked_id": pl.col("bm_id"),
        "severity": severity_name(pl.col("rank")),
        "detail": pl.format(
            "{} {} differs between the SIS and Bookmarked: {}.",
            entity_type.str.to_titlecase(),
            pl.col(label),
            pl.col("differences"),
        ),
        "remediation": pl.format(
            "{}re-sync the record so Bookmarked takes the SIS values ({}). If the Bookmarked "
            "value is the right one, the {}corrects the SIS instead.",
            pl.lit(SUPPORT),
            pl.col("fields_differing").list.join(", "),
            pl.lit("district data admin "),
        ),
        "details_json": pl.struct(
            fields=pl.col("fields_differing"),
            values=pl.col("facts"),
        ).struct.json_encode(),
    }


def _selected(ctx: RuleContext, fields: dict[str, tuple[str, str, str]]) -> dict:
    wanted = ctx.setting("field_mismatch_fields")
    return fields if wanted is None else {k: v for k, v in fields.items() if k in set(wanted)}


def _users(ctx: RuleContext) -> pl.DataFrame:
    fields = _selected(ctx, USER_FIELDS)
    if not fields:
        return empty_findings()
    # roles Bookmarked does not sync, and merged parent accounts, are compared by no one;
    # a sourcedId the SIS lists for two people is source_integrity's
    exclude = (
        ~pl.col("role").is_in(SYNCED_ROLES)
        | ids_in("bm_id", ctx.merged_parents["bookmarked_id"])
        | ids_in("sis_id", ctx.claimed("user"))
    )
    skip = {
        "grade": pl.col("role") != "student",
        # a parent whose SIS email is shared with another family is parent_email_conflict's
        "email": ids_in("sis_id", ctx.shared_email_parents["sis_id"]),
        "school": ids_in("sis_id", ctx.claimed("user_school")),
    }
    differing = _compare(ctx.users, fields, skip, exclude)
    if differing.is_empty():
        return empty_findings()
    differing = add_labels(differing, ctx.user_labels(differing["sis_id"]), "sis_id", "who")
    return findings(
        differing.select(**_finding_columns(pl.col("role"), "who")),
        RULE_ID,
        ISSUE_IN_BOOKMARKED,
    )


def _table(
    ctx: RuleContext,
    table: pl.DataFrame,
    entity: str,
    fields: dict[str, tuple[str, str, str]],
    skip: dict[str, pl.Expr],
) -> pl.DataFrame:
    fields = _selected(ctx, fields)
    if not fields:
        return empty_findings()
    differing = _compare(table, fields, skip)
    if differing.is_empty():
        return empty_findings()
    labels = ctx.school_labels if entity == "school" else ctx.class_labels
    differing = add_labels(differing, labels(differing["sis_id"], "sis_id"), "sis_id", "label")
    return findings(
        differing.select(**_finding_columns(pl.lit(entity), "label")),
        RULE_ID,
        ISSUE_IN_BOOKMARKED,
    )


def evaluate(ctx: RuleContext) -> pl.DataFrame:
    class_skip = {"school": ids_in("sis_id", ctx.claimed("class_school"))}
    return concat_findings(
        [
            _users(ctx),
            _table(ctx, ctx.schools, "school", SCHOOL_FIELDS, {}),
            _table(ctx, ctx.classes, "class", CLASS_FIELDS, class_skip),
        ]
    )


RULE = Rule(
    id=RULE_ID,
    title="Field mismatches",
    description="Records live on both sides whose name, email (normalized), grade "
    "(normalized), student number, role or school differ.",
    statuses=(ISSUE_IN_BOOKMARKED,),
    owner="Bookmarked support (ISSUE_IN_BOOKMARKED): re-syncs the record so it "
    "takes the SIS values",
    evaluate=evaluate,
)
