"""What every rule shares: the findings table, the `Rule` description, the `RuleContext`.

A rule is a pure function `evaluate(ctx) -> findings`. Findings are a polars DataFrame
with the fixed columns of `FINDING_SCHEMA`, one row per real problem, so the lead can
turn each rule into an asset check and concatenate every rule's rows into one report.

`detail` is for people and may name students (it goes only into reports, never into
logs); `details_json` carries the structured facts (ids, counts) for machines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import polars as pl

from reconciliation.rules.context import LINK_IDS, RuleContext, ids_in
from reconciliation.vocabulary import ISSUE_IN_BOOKMARKED, ISSUE_IN_SOURCE, STATUSES

Status = Literal["ISSUE_IN_SOURCE", "ISSUE_IN_BOOKMARKED"]

#: most severe first; `severity_rank` orders by it
SEVERITIES = ("critical", "high", "medium", "low")
ENTITY_TYPES = ("school", "student", "teacher", "parent", "admin", "class", "enrollment")

FINDING_SCHEMA: dict[str, pl.DataType] = {
    "rule": pl.String(),
    "entity_type": pl.String(),
    "sis_id": pl.String(),
    "bookmarked_id": pl.Int64(),
    "status": pl.String(),
    "severity": pl.String(),
    "detail": pl.String(),
    "remediation": pl.String(),
    "details_json": pl.String(),
    # what the district may read, where `detail` holds Bookmarked internals (account ids);
    # null means `detail` is fit to send as it is
    "district_detail": pl.String(),
}

#: who acts, as the first words of every remediation
DISTRICT = "District data admin: "
SUPPORT = "Bookmarked support: "


def empty_findings() -> pl.DataFrame:
    return pl.DataFrame(schema=FINDING_SCHEMA)


def findings(
    frame: pl.DataFrame | pl.LazyFrame, rule: str, status: Status | None = None
) -> pl.DataFrame:
    """Conform a frame of finding rows to `FINDING_SCHEMA`.

    The frame carries the finding columns (any order, extra columns dropped); `rule`
    and, when the whole frame has one status, `status` are filled here. Rows are sorted
    by severity then sis_id so a report reads the same on every run.
    """
    lazy = frame.lazy()
    names = lazy.collect_schema().names()
    fill = {"rule": pl.lit(rule)}
    if status is not None:
        fill["status"] = pl.lit(status)
    columns = []
    for name, dtype in FINDING_SCHEMA.items():
        if name in fill:
            columns.append(fill[name].cast(dtype).alias(name))
        elif name in names:
            columns.append(pl.col(name).cast(dtype))
        else:
            columns.append(pl.lit(None, dtype=dtype).alias(name))
    return lazy.select(columns).sort(_report_order(), nulls_last=True).collect()


def concat_findings(frames: Iterable[pl.DataFrame]) -> pl.DataFrame:
    """Stack conformed finding frames (a rule that looks at several tables)."""
    frames = [f for f in frames if f.height]
    if not frames:
        return empty_findings()
    return pl.concat(frames, how="vertical").sort(_report_order(), nulls_last=True)


def _report_order() -> list[pl.Expr | str]:
    """How finding rows are sorted (nulls last), so a report reads the same on every run."""
    return [severity_rank("severity"), "status", "entity_type", "sis_id", "detail"]


def severity_rank(column: str | pl.Expr) -> pl.Expr:
    """0 for critical ... 3 for low, for sorting and for taking the worst of several."""
    expr = pl.col(column) if isinstance(column, str) else column
    return expr.replace_strict(
        {name: rank for rank, name in enumerate(SEVERITIES)},
        default=len(SEVERITIES),
        return_dtype=pl.Int8,
    )


def severity_name(rank: pl.Expr) -> pl.Expr:
    """Inverse of `severity_rank`."""
    return rank.replace_strict(dict(enumerate(SEVERITIES)), default="low", return_dtype=pl.String)


def to_json(**fields: pl.Expr | str) -> pl.Expr:
    """A `details_json` expression: a JSON object of the given columns/expressions."""
    exprs = [(pl.col(v) if isinstance(v, str) else v).alias(k) for k, v in fields.items()]
    return pl.struct(exprs).struct.json_encode()


def add_labels(frame: pl.DataFrame, labels: pl.DataFrame, key: str, name: str) -> pl.DataFrame:
    """Add column `name` = the label of `key` (from a `RuleContext.*_labels` frame keyed by
    `key`), or the bare id when there is no label."""
    return frame.join(labels.rename({"label": name}), on=key, how="left").with_columns(
        pl.coalesce(name, key).alias(name)
    )


def count_per(frame: pl.DataFrame, key: str, name: str) -> pl.DataFrame:
    """Rows per `key` as column `name` (a join target; absent keys mean 0)."""
    return frame.group_by(key).agg(pl.len().cast(pl.Int64).alias(name))


def add_counts(frame: pl.DataFrame, key: str, parts: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Join `count_per` frames (name -> counts keyed by their first column) onto `frame`
    by `key`; a key without rows counts 0."""
    for name, counts in parts.items():
        frame = frame.join(counts, left_on=key, right_on=counts.columns[0], how="left")
        frame = frame.with_columns(pl.col(name).fill_null(0))
    return frame


def count_links(links: pl.DataFrame, rows: pl.Series, name: str) -> pl.DataFrame:
    """Links per Bookmarked row, as parent or as student, for a few rows (`bookmarked_id`
    values), as column `name` keyed by `bookmarked_id` (an `add_counts` part)."""
    ends = pl.concat(
        [
            links.filter(ids_in(side, rows)).select(pl.col(side).alias("bookmarked_id"))
            for side in LINK_IDS
        ]
    )
    return count_per(ends, "bookmarked_id", name)


def add_school_contents(
    schools: pl.DataFrame, classes: pl.DataFrame, enrollments: pl.LazyFrame, school: str
) -> pl.DataFrame:
    """Count onto each school (`sis_id`) its `classes` and their `enrollments`, as columns
    `classes` and `enrollments`: a school finding carries what goes with the school.
    `school` names the classes' school column (the SIS's or Bookmarked's)."""
    per_school = (
        enrollments.filter(ids_in("class_sis_id", classes["sis_id"]))
        .collect()
        .join(classes.select(pl.col("sis_id").alias("class_sis_id"), school), on="class_sis_id")
    )
    return add_counts(
        schools,
        "sis_id",
        {
            "classes": count_per(classes, school, "classes"),
            "enrollments": count_per(per_school, school, "enrollments"),
        },
    )


def join_list(expr: pl.Expr, limit: int = 20, separator: str = ", ") -> pl.Expr:
    """Join a list column for a detail line, at most `limit` items then '... (N more)'."""
    shown = expr.list.head(limit).list.join(separator)
    more = expr.list.len().cast(pl.Int64) - limit
    return pl.when(more > 0).then(pl.format("{} ... ({} more)", shown, more)).otherwise(shown)


@dataclass(frozen=True)
class Rule:
    """One diagnostic rule: what it finds, which statuses it emits, who acts, and how.

    `description` is one paragraph for people (the asset check's description); `owner`
    says who acts on a finding and with which status, e.g. "District data admin
    (ISSUE_IN_SOURCE): ...; Bookmarked support (ISSUE_IN_BOOKMARKED): ..."."""

    id: str
    title: str
    description: str
    statuses: tuple[Status, ...]
    owner: str
    evaluate: Callable[[RuleContext], pl.DataFrame]

    def __call__(self, ctx: RuleContext) -> pl.DataFrame:
        return self.evaluate(ctx)


__all__ = [
    "DISTRICT",
    "ENTITY_TYPES",
    "FINDING_SCHEMA",
    "ISSUE_IN_BOOKMARKED",
    "ISSUE_IN_SOURCE",
    "SEVERITIES",
    "STATUSES",
    "SUPPORT",
    "Rule",
    "RuleContext",
    "Status",
    "add_counts",
    "add_labels",
    "add_school_contents",
    "concat_findings",
    "count_links",
    "count_per",
    "empty_findings",
    "findings",
    "join_list",
    "severity_name",
    "severity_rank",
    "to_json",
]
