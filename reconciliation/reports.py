"""Mismatch reports: the files a support engineer opens, and their history.

Layout under `$RECONCILIATION_REPORTS_DIR` (default `reports/`):

    <customer_id>/<run timestamp>/mismatches.csv       one row per finding (+ .parquet)
    <customer_id>/<run timestamp>/district_issues.csv  ISSUE_IN_SOURCE findings, no Bookmarked
                                                       internals: ready to send to the district
    <customer_id>/<run timestamp>/resolved.csv         findings of the previous run now gone
    <customer_id>/<run timestamp>/summary.json         counts (no student data)
    <customer_id>/latest/                              a copy of the newest run

History: a finding is identified by its key (rule, entity type, SIS id or Bookmarked id,
status). A finding that persists keeps the `first_seen` of the run that first found it.

A run writes its files into a hidden `.<run timestamp>.partial/` folder and renames it
when every file is written, so a run folder is always complete; history is read from the
newest complete run folder, never from `latest/`, which is only a view: a run that dies
leaves the previous files in place and loses no `first_seen`. The CSV files start with a
UTF-8 byte order mark, without which Excel misreads accented names.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from reconciliation.paths import reports_dir
from reconciliation.rules.base import ISSUE_IN_SOURCE, severity_rank

LATEST = "latest"

#: the report contract: these columns, in this order, come first in every report
REPORT_COLUMNS = [
    "customer_id",
    "rule",
    "entity_type",
    "sis_id",
    "bookmarked_id",
    "status",
    "severity",
    "detail",
    "remediation",
    "first_seen",
    "last_seen",
    "finding_key",
    "details_json",
]
#: what the district sees: no Bookmarked row ids, no internal JSON
DISTRICT_COLUMNS = [
    "customer_id",
    "rule",
    "entity_type",
    "sis_id",
    "severity",
    "detail",
    "remediation",
    "first_seen",
]
SUPPORT_PREFIX = "Bookmarked support:"


def run_stamp(at: datetime | None = None) -> str:
    """A sortable, filesystem-safe run timestamp (UTC)."""
    return (at or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%fZ")


def finding_key() -> pl.Expr:
    """The identity of a finding across runs."""
    entity = pl.coalesce(pl.col("sis_id"), pl.lit("bm:") + pl.col("bookmarked_id").cast(pl.String))
    return pl.concat_str(
        [pl.col("rule"), pl.col("entity_type"), entity.fill_null("?"), pl.col("status")],
        separator="|",
    ).alias("finding_key")


@dataclass
class ReportSummary:
    """What one report run found; counts only, safe for logs, metadata and alerts."""

    customer_id: str
    run: str
    folder: Path
    total: int
    new: int
    persisting: int
    resolved: int
    by_rule_status: dict[str, dict[str, int]] = field(default_factory=dict)
    by_severity: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "run": self.run,
            "folder": str(self.folder),
            "total": self.total,
            "new": self.new,
            "persisting": self.persisting,
            "resolved": self.resolved,
            "by_rule_status": self.by_rule_status,
            "by_severity": self.by_severity,
        }


_RUN_FOLDER = re.compile(r"^\d{8}T\d{6}\.\d{6}Z$")


def _runs(customer_folder: Path) -> list[Path]:
    """The customer's complete run folders, oldest first (summary.json is written last)."""
    if not customer_folder.is_dir():
        return []
    return sorted(
        path
        for path in customer_folder.iterdir()
        if _RUN_FOLDER.match(path.name) and (path / "summary.json").exists()
    )


def _previous(customer_folder: Path) -> pl.DataFrame | None:
    runs = _runs(customer_folder)
    return pl.read_parquet(runs[-1] / "mismatches.parquet") if runs else None


def _write_csv(frame: pl.DataFrame, path: Path) -> None:
    """A CSV that Excel opens correctly: UTF-8 with a byte order mark, quoted as needed."""
    frame.write_csv(path, include_bom=True)


def _update_latest(customer_folder: Path, run_folder: Path) -> None:
    """Point latest/ at a copy of `run_folder`, unless a newer run already finished. The
    old copy is moved aside before the new one moves in: latest/ is never half-written."""
    if _runs(customer_folder)[-1] != run_folder:
        return
    latest = customer_folder / LATEST
    staging = customer_folder / f".{LATEST}.{run_folder.name}.tmp"
    retired = customer_folder / f".{LATEST}.{run_folder.name}.old"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(run_folder, staging)
    if latest.exists():
        latest.rename(retired)
    staging.rename(latest)
    shutil.rmtree(retired, ignore_errors=True)


def write_report(
    customer_id: str,
    findings: pl.DataFrame,
    *,
    folder: Path | None = None,
    at: datetime | None = None,
) -> ReportSummary:
    """Write one run's report, carry `first_seen` over from the previous run, update latest/."""
    at = at or datetime.now(UTC)
    stamp = run_stamp(at)
    customer_folder = (folder or reports_dir()) / customer_id
    run_folder = customer_folder / stamp
    if run_folder.exists():
        raise FileExistsError(f"report folder {run_folder} already exists")
    partial = customer_folder / f".{stamp}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    seen_at = at.isoformat(timespec="seconds")

    current = findings.with_columns(pl.lit(customer_id).alias("customer_id"), finding_key()).unique(
        "finding_key", keep="first", maintain_order=True
    )
    previous = _previous(customer_folder)
    if previous is not None and previous.height:
        first_seen = previous.select("finding_key", pl.col("first_seen").alias("_prev_first_seen"))
        current = current.join(first_seen, on="finding_key", how="left")
    else:
        current = current.with_columns(pl.lit(None, dtype=pl.String).alias("_prev_first_seen"))
    new = current.filter(pl.col("_prev_first_seen").is_null()).height
    current = current.with_columns(
        pl.coalesce("_prev_first_seen", pl.lit(seen_at)).alias("first_seen"),
        pl.lit(seen_at).alias("last_seen"),
    ).drop("_prev_first_seen")
    extra = [c for c in current.columns if c not in REPORT_COLUMNS]
    current = current.select(REPORT_COLUMNS + extra).sort(
        ["status", "rule", "entity_type", "sis_id"]
    )

    resolved = (
        previous.join(current.select("finding_key"), on="finding_key", how="anti")
        if previous is not None
        else current.clear()
    )

    current.write_parquet(partial / "mismatches.parquet")
    _write_csv(current, partial / "mismatches.csv")
    _write_csv(district_view(current), partial / "district_issues.csv")
    _write_csv(
        resolved.select([c for c in REPORT_COLUMNS if c in resolved.columns]),
        partial / "resolved.csv",
    )
    summary = ReportSummary(
        customer_id=customer_id,
        run=stamp,
        folder=run_folder,
        total=current.height,
        new=new,
        persisting=current.height - new,
        resolved=resolved.height,
        by_rule_status=_counts(current),
        by_severity=dict(current.group_by("severity").len().sort("severity").iter_rows()),
    )
    (partial / "summary.json").write_text(json.dumps(summary.as_dict(), indent=2))
    os.replace(partial, run_folder)
    _update_latest(customer_folder, run_folder)
    return summary


def district_view(findings: pl.DataFrame) -> pl.DataFrame:
    """The ISSUE_IN_SOURCE findings as the district's data admin reads them: the
    district-facing detail where a rule wrote one, and only the district's part of the
    remediation (Bookmarked support's steps name internal accounts)."""
    detail = (
        pl.coalesce("district_detail", "detail")
        if "district_detail" in findings.columns
        else pl.col("detail")
    )
    remediation = pl.col("remediation").str.split(SUPPORT_PREFIX).list.first().str.strip_chars()
    return (
        findings.filter(pl.col("status") == ISSUE_IN_SOURCE)
        .with_columns(detail.alias("detail"), remediation.alias("remediation"))
        .select(DISTRICT_COLUMNS)
    )


def _counts(findings: pl.DataFrame) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for rule, status, n in (
        findings.group_by(["rule", "status"]).len().sort(["rule", "status"]).iter_rows()
    ):
        counts.setdefault(rule, {})[status] = n
    return counts


def markdown_preview(findings: pl.DataFrame, limit: int = 25) -> str:
    """The first findings as a Markdown table, most severe first, for the Dagster UI."""
    if findings.is_empty():
        return "No findings."
    top = findings.sort([severity_rank("severity"), "rule"]).head(limit)
    lines = ["| rule | status | severity | entity | sis_id | detail |", "|---|---|---|---|---|---|"]
    for row in top.iter_rows(named=True):
        detail = str(row["detail"]).replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {row['rule']} | {row['status']} | {row['severity']} | {row['entity_type']} "
            f"| {row['sis_id'] or ''} | {detail[:160]} |"
        )
    more = findings.height - top.height
    if more:
        lines.append(f"\n… and {more} more in the report files.")
    return "\n".join(lines)
