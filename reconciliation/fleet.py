"""The fleet view: every enabled customer's latest results on one page, worst first.

Pure (no Dagster): it reads the settings, each customer's newest complete report
(`summary.json`, counts only) and its hold files, plus what the caller knows of each
customer's last finished run (`LastRun`: the Dagster asset and `reconcile fleet` read it
from the instance). Without run information a customer's status comes from its reports and
holds alone: a hold newer than the newest report means held; a failed run cannot be seen.

Status, one per customer:

| status | when |
|---|---|
| `failed` | its last finished run failed or was canceled, after its newest report |
| `held` | its last run was held (run tag), or a hold file is newer than its newest report |
| `stale` | its newest report started more than `STALE_AFTER` (24 h) ago |
| `never` | no complete report and no hold (and no failed run) |
| `ok` | otherwise |

The counts are those of the newest complete report, also for a held or failed customer:
its findings are still open. Rows carry ids, the district's name and counts only, never
student data, so the CSV is safe to share and the table safe for the UI.
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from reconciliation.paths import reports_dir
from reconciliation.reports import HOLDS, _csv_bytes, _md_text, _runs, spreadsheet_safe
from reconciliation.rules.base import SEVERITIES
from reconciliation.settings import SettingsFolder, load_settings
from reconciliation.storage import Location, is_s3
from reconciliation.vocabulary import STATUSES

#: a customer whose newest report started longer ago than this is stale
STALE_AFTER = timedelta(hours=24)
#: the folder under the reports folder that holds the fleet CSVs; a customer id cannot
#: start with "_", so no customer's report folder can be this one
FLEET_FOLDER = "_fleet"
#: ranked first: the customers someone must look at before reading findings
FAILED, HELD, STALE, NEVER, OK = "failed", "held", "stale", "never", "ok"
_STATUS_RANK = {FAILED: 0, HELD: 1}
#: Dagster run statuses (their `.value`) that mean the run did not finish its work
FAILED_RUN_STATUSES = frozenset({"FAILURE", "CANCELED"})

FLEET_SCHEMA: dict[str, pl.DataType] = {
    "rank": pl.Int64(),
    "customer_id": pl.String(),
    "name": pl.String(),
    "environment": pl.String(),
    "status": pl.String(),
    "worst_severity": pl.String(),
    "findings": pl.Int64(),
    **{severity: pl.Int64() for severity in SEVERITIES},
    **{status: pl.Int64() for status in STATUSES},
    "new": pl.Int64(),
    "resolved": pl.Int64(),
    "last_scan_at": pl.String(),
    "reason": pl.String(),
}
FLEET_COLUMNS = list(FLEET_SCHEMA)

_HOLD_FILE = re.compile(r"^(\d{8}T\d{6}\.\d{6}Z)\.json$")


@dataclass(frozen=True)
class LastRun:
    """A customer's last finished `reconcile_customer` run, as the Dagster instance has it.

    `status` is the Dagster run status's value (`SUCCESS`, `FAILURE`, `CANCELED`); `held`
    is the run's `reconciliation/outcome=held` tag; `error` the one-line reason a failed
    run gives (already redacted: counts and ids only)."""

    run_id: str
    status: str
    started_at: datetime | None = None
    held: bool = False
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.status in FAILED_RUN_STATUSES and not self.held


@dataclass(frozen=True)
class _Latest:
    """What the report folder says of one customer."""

    summary: dict[str, Any] | None
    started_at: datetime | None
    hold_at: datetime | None
    hold_reasons: str


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _newest_hold(customer_folder: Location) -> tuple[datetime | None, str]:
    """The newest hold file's time (its name) and its reasons joined; unreadable: said so."""
    holds = customer_folder / HOLDS
    try:
        names = sorted(p.name for p in holds.iterdir() if _HOLD_FILE.match(p.name))
    except OSError:
        return None, ""
    if not names:
        return None, ""
    name = names[-1]
    at = datetime.strptime(name[: -len(".json")], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    try:
        document = json.loads((holds / name).read_text("utf-8"))
        reasons = document.get("reasons") if isinstance(document, dict) else None
        text = "; ".join(str(r) for r in reasons) if isinstance(reasons, list) else ""
    except (OSError, ValueError):
        text = ""
    return at, text or f"held (the hold file {holds / name} cannot be read)"


def _latest(customer_folder: Location, now: datetime) -> _Latest:
    readable = [r for r in _runs(customer_folder, now) if r.summary is not None]
    hold_at, hold_reasons = _newest_hold(customer_folder)
    if not readable:
        return _Latest(None, None, hold_at, hold_reasons)
    return _Latest(readable[-1].summary, readable[-1].start, hold_at, hold_reasons)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _status(latest: _Latest, run: LastRun | None, now: datetime) -> tuple[str, str]:
    """The customer's status and the reason shown beside it."""
    report_at = latest.started_at
    run_at = _utc(run.started_at) if run is not None and run.started_at else None
    run_is_newer = run is not None and (report_at is None or run_at is None or run_at >= report_at)
    where = f" (Dagster run {run.run_id[:8]})" if run is not None and run.run_id else ""
    if run is not None and run_is_newer and run.held:
        hold_at = latest.hold_at
        hold_is_this_run = hold_at is not None and (run_at is None or hold_at >= run_at)
        return HELD, (latest.hold_reasons if hold_is_this_run else run.error or "held") + where
    if run is not None and run_is_newer and run.failed:
        return FAILED, (run.error or "the run failed") + where
    if latest.hold_at is not None and (report_at is None or latest.hold_at > report_at):
        return HELD, latest.hold_reasons
    if report_at is None:
        return NEVER, "no complete report"
    age = now - report_at
    if age > STALE_AFTER:
        return STALE, f"newest report is {age.days} day(s) {age.seconds // 3600} h old"
    return OK, ""


def _row(settings: Any, latest: _Latest, run: LastRun | None, now: datetime) -> dict[str, Any]:
    status, reason = _status(latest, run, now)
    summary = latest.summary or {}
    by_severity = summary.get("by_severity") if isinstance(summary.get("by_severity"), dict) else {}
    by_rule_status = summary.get("by_rule_status")
    by_rule_status = by_rule_status if isinstance(by_rule_status, dict) else {}
    by_status = {
        status_name: sum(
            _int(counts.get(status_name))
            for counts in by_rule_status.values()
            if isinstance(counts, dict)
        )
        for status_name in STATUSES
    }
    severities = {severity: _int(by_severity.get(severity)) for severity in SEVERITIES}
    worst = next((s for s in SEVERITIES if severities[s]), None)
    return {
        "rank": 0,
        "customer_id": settings.customer_id,
        "name": settings.name,
        "environment": settings.environment,
        "status": status,
        "worst_severity": worst,
        "findings": _int(summary.get("total")),
        **severities,
        **by_status,
        "new": _int(summary.get("new")),
        "resolved": _int(summary.get("resolved")),
        "last_scan_at": (
            latest.started_at.isoformat(timespec="seconds") if latest.started_at else None
        ),
        "reason": reason or None,
    }


def _rank_key(row: Mapping[str, Any]) -> tuple[int, int, int, str]:
    """Failed, then held, then the worst open finding (critical first), then most findings."""
    severity = SEVERITIES.index(row["worst_severity"]) if row["worst_severity"] else len(SEVERITIES)
    return (_STATUS_RANK.get(row["status"], 2), severity, -row["findings"], row["customer_id"])


def _settings(settings_folder: SettingsFolder | Path | None) -> SettingsFolder:
    if isinstance(settings_folder, SettingsFolder):
        return settings_folder
    return load_settings(settings_folder, sources=False)


def fleet_table(
    settings_folder: SettingsFolder | Path | None = None,
    reports_folder: Location | None = None,
    runs: Mapping[str, LastRun] | None = None,
    now: datetime | None = None,
) -> pl.DataFrame:
    """One row per enabled customer (`FLEET_COLUMNS`), ranked: `rank` 1 is the customer to
    look at first. `runs` maps customer ids to their last finished run; None (or a missing
    customer) means the status comes from the report folder alone."""
    now = _utc(now or datetime.now(UTC))
    folder = reports_folder or reports_dir()
    customers = sorted(
        (s for s in _settings(settings_folder).customers.values() if s.enabled),
        key=lambda s: s.customer_id,
    )
    rows = [
        _row(s, _latest(folder / s.customer_id, now), (runs or {}).get(s.customer_id), now)
        for s in customers
    ]
    rows.sort(key=_rank_key)
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return pl.DataFrame(rows, schema=FLEET_SCHEMA)


def fleet_rule_counts(
    settings_folder: SettingsFolder | Path | None = None,
    reports_folder: Location | None = None,
    now: datetime | None = None,
) -> dict[str, dict[str, int]]:
    """Findings by rule and status over every enabled customer's newest report, shaped as
    summary.json's `by_rule_status` (so `reports.counts_table` draws it)."""
    now = _utc(now or datetime.now(UTC))
    folder = reports_folder or reports_dir()
    totals: dict[str, dict[str, int]] = {}
    for settings in _settings(settings_folder).customers.values():
        if not settings.enabled:
            continue
        summary = _latest(folder / settings.customer_id, now).summary or {}
        by_rule_status = summary.get("by_rule_status")
        if not isinstance(by_rule_status, dict):
            continue
        for rule, counts in by_rule_status.items():
            if not isinstance(counts, dict):
                continue
            for status, n in counts.items():
                rule_totals = totals.setdefault(str(rule), {})
                rule_totals[str(status)] = rule_totals.get(str(status), 0) + _int(n)
    return totals


def fleet_totals(table: pl.DataFrame) -> dict[str, int]:
    """The fleet's headline counts: customers, each problem status, findings, critical."""
    statuses = table["status"].to_list()
    return {
        "customers": table.height,
        FAILED: statuses.count(FAILED),
        HELD: statuses.count(HELD),
        STALE: statuses.count(STALE),
        NEVER: statuses.count(NEVER),
        "findings": int(table["findings"].sum()),
        "critical": int(table["critical"].sum()),
    }


# -- output ---------------------------------------------------------------------------------

#: the columns `reconcile fleet` prints (the CSV has them all); the reason comes last, unpadded
_PRINTED = {
    "rank": "#",
    "customer_id": "customer",
    "environment": "environment",
    "status": "status",
    "worst_severity": "worst",
    "findings": "findings",
    "critical": "critical",
    "high": "high",
    "medium": "medium",
    "low": "low",
    "ISSUE_IN_SOURCE": "in SIS",
    "ISSUE_IN_BOOKMARKED": "in Bookmarked",
    "new": "new",
    "resolved": "resolved",
    "last_scan_at": "last scan",
}


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def format_fleet(table: pl.DataFrame) -> str:
    """Aligned columns, one row per customer in rank order, the reason last."""
    header = [*_PRINTED.values(), "reason"]
    rows = [header]
    for row in table.iter_rows(named=True):
        rows.append([_cell(row[c]) for c in _PRINTED] + [row["reason"] or ""])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def fleet_markdown(table: pl.DataFrame, *, limit: int = 100) -> str:
    """The ranked customers as a Markdown table for the Dagster UI (every value escaped)."""
    if table.is_empty():
        return "No enabled customers."
    columns = [c for c in _PRINTED if c != "rank"]
    header = ["#", *(_PRINTED[c] for c in columns), "reason"]
    numeric = {c for c in columns if FLEET_SCHEMA[c] == pl.Int64()}
    lines = [
        "| " + " | ".join(_md_text(h) for h in header) + " |",
        "|---:|" + "".join("---:|" if c in numeric else "---|" for c in columns) + "---|",
    ]
    for row in table.head(limit).iter_rows(named=True):
        cells = [row["rank"], *(_cell(row[c]) for c in columns), row["reason"] or ""]
        lines.append("| " + " | ".join(_md_text(c) for c in cells) + " |")
    if table.height > limit:
        lines.append(f"\n… and {table.height - limit} more in the fleet CSV.")
    return "\n".join(lines)


def write_fleet_csv(table: pl.DataFrame, path: Location) -> Location:
    """The table as a spreadsheet-safe CSV (UTF-8 with a byte order mark), written whole
    or not at all (a temporary file renamed into place; on S3 one object written whole)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file where the folder should be
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(path.parent)) from None
    if is_s3(path):
        path.write_bytes(_csv_bytes(table.select(FLEET_COLUMNS)))
        return path
    staging = path.with_name(f".{path.name}.tmp")
    try:
        spreadsheet_safe(table.select(FLEET_COLUMNS)).write_csv(staging, include_bom=True)
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    return path
