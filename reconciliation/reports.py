"""Mismatch reports: the files a support engineer opens, and their history.

Layout under `$RECONCILIATION_REPORTS_DIR` (default `reports/`):

    <customer_id>/<run timestamp>/mismatches.csv       one row per finding (+ .parquet)
    <customer_id>/<run timestamp>/district_issues.csv  ISSUE_IN_SOURCE findings, no Bookmarked
                                                       internals, most severe first: ready to
                                                       send to the district
    <customer_id>/<run timestamp>/resolved.csv         findings of the previous run now gone
    <customer_id>/<run timestamp>/summary.json         counts, run start, roster counts, warnings
                                                       (no student data)
    <customer_id>/latest/                              a copy of the newest run
    <customer_id>/holds/<timestamp>.json               why a run was held (not a run: history
                                                       and latest/ ignore it)

History: a finding is identified by its key (rule, entity type, SIS id or Bookmarked id,
status). A finding that persists keeps the `first_seen` of the run that first found it
(never later than the run that reads it: a `first_seen` from a clock that ran ahead is
brought back to the current run's time).

A run writes its files into a hidden `.<run timestamp>.partial/` folder and renames it
when every file is written, so a run folder is always complete; history is read from the
newest complete, readable run folder, never from `latest/`, which is only a view: a run
that dies leaves the previous files in place and loses no `first_seen`, and its leftovers
(`.<stamp>.partial/`, `.latest.*.tmp/.old`) are removed by the customer's next report write
(one run per customer at a time: Dagster runs a customer's partition once). A damaged
earlier report (a truncated Parquet file, an invalid summary.json) never blocks a scan: it
is skipped with a one-line warning (`ReportSummary.warnings`, also in summary.json) and
history continues from the newest readable run. A write that fails (disk full, read-only
folder) raises `ReportWriteError`, one line naming the cause and the path, and leaves no
partial folder behind.

The folder may be an `s3://` URL (`reconciliation/storage.py`): the same steps, where a
rename is a server-side copy with `summary.json` copied last (a run folder holding it is
complete, as on disk) and every object is written with server-side encryption.

Runs are ordered by the start each summary.json records (`started_at`; the folder name
when it has none), not by folder name: a folder renamed or stamped in the future cannot
freeze `latest/`. A run recorded after the current wall clock (beyond `CLOCK_MARGIN`) came
from a clock that ran ahead: it takes its place in write order (`sequence`), right after
the run written before it.

Spreadsheet safety: the CSV files are what people open in Excel. Every text cell of the CSV
files that starts with `=`, `+`, `-`, `@`, a tab or a carriage return (also after leading
spaces) gets a single quote `'` in front (OWASP, CSV injection), so a cell never runs as a
formula. That includes ids: a sis_id `-1` reads `'-1` in the CSV. Numeric columns
(`bookmarked_id`) are numbers and stay as they are. Control characters are removed from
text cells (NUL, escape, DEL, C1); a tab becomes a space, CR LF and CR become a line break,
and line breaks stay inside their quoted cell. The Parquet file keeps the raw values, and
so does the `details_json` column there. The CSV files start with a UTF-8 byte order mark,
without which Excel misreads accented names.
"""

from __future__ import annotations

import errno
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from io import BytesIO
from typing import Any

import polars as pl

from reconciliation import storage
from reconciliation.paths import reports_dir
from reconciliation.rules.base import ISSUE_IN_SOURCE, severity_rank
from reconciliation.storage import Location
from reconciliation.vocabulary import STATUSES

LATEST = "latest"
HOLDS = "holds"
#: a run recorded later than now + this came from a clock that ran ahead
CLOCK_MARGIN = timedelta(hours=1)
#: the preview shows a detail whole up to about this many characters
PREVIEW_DETAIL_CHARS = 400

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


class ReportWriteError(OSError):
    """A report could not be written; the message is one line naming the cause and the path."""

    def __init__(self, message: str, *, code: int | None, path: Location) -> None:
        super().__init__(message)
        self.message = message
        self.errno = code
        self.filename = str(path)

    def __str__(self) -> str:
        return self.message


_WRITE_CAUSES = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the folder is read-only",
    errno.EACCES: "the folder is read-only",
    errno.EPERM: "the folder is read-only",
    errno.ENOTDIR: "not a folder",
    errno.EFBIG: "file too large for this process's file size limit",
}


def report_write_error(exc: OSError, path: Location) -> ReportWriteError:
    """The one message every failed report write gets: cause, then the path."""
    cause = _WRITE_CAUSES.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()
    return ReportWriteError(f"cannot write the report: {cause}: {path}", code=exc.errno, path=path)


@contextmanager
def _writing(path: Location) -> Iterator[None]:
    """Turn an OSError of the writes inside into a ReportWriteError naming `path`."""
    try:
        yield
    except ReportWriteError:
        raise
    except OSError as exc:
        raise report_write_error(exc, path) from exc


def _existing_ancestor(path: Location) -> Location:
    """The folder (or file) a new folder at `path` is created in: what a failure is about."""
    for parent in path.parents:
        if parent.exists():
            return parent
    return path


def run_stamp(at: datetime | None = None) -> str:
    """A sortable, filesystem-safe run timestamp (UTC)."""
    return _utc(at or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%fZ")


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def finding_key() -> pl.Expr:
    """The identity of a finding across runs."""
    entity = pl.coalesce(pl.col("sis_id"), pl.lit("bm:") + pl.col("bookmarked_id").cast(pl.String))
    return pl.concat_str(
        [pl.col("rule"), pl.col("entity_type"), entity.fill_null("?"), pl.col("status")],
        separator="|",
    ).alias("finding_key")


@dataclass
class ReportSummary:
    """What one report run found. Everything but `report` is counts, safe for logs,
    metadata and alerts; `report` is the written rows (student data: reports and the
    preview only), in the order of mismatches.csv."""

    customer_id: str
    run: str
    folder: Location
    total: int
    new: int
    persisting: int
    resolved: int
    by_rule_status: dict[str, dict[str, int]] = field(default_factory=dict)
    by_severity: dict[str, int] = field(default_factory=dict)
    started_at: str = ""
    #: the order runs were written in (1, 2, ...): places a run from a wrong clock
    sequence: int = 0
    roster_counts: dict[str, dict[str, int]] | None = None
    #: one line each: a damaged earlier report that was skipped, its path and the cause
    warnings: list[str] = field(default_factory=list)
    report: pl.DataFrame | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "run": self.run,
            "folder": str(self.folder),
            "started_at": self.started_at,
            "sequence": self.sequence,
            "total": self.total,
            "new": self.new,
            "persisting": self.persisting,
            "resolved": self.resolved,
            "by_rule_status": self.by_rule_status,
            "by_severity": self.by_severity,
            "roster_counts": self.roster_counts,
            "warnings": self.warnings,
        }


# -- the runs of a customer, in order ----------------------------------------------------

_RUN_FOLDER = re.compile(r"^\d{8}T\d{6}\.\d{6}Z$")
_LEFTOVER = re.compile(r"^\.(\d{8}T\d{6}\.\d{6}Z\.partial|latest\..+\.(tmp|old))$")


@dataclass
class _Run:
    folder: Location
    #: None when summary.json is missing or unreadable; `problem` says why
    summary: dict[str, Any] | None
    problem: str | None
    start: datetime
    sequence: int


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _read_summary(folder: Location) -> tuple[dict[str, Any] | None, str | None]:
    path = folder / "summary.json"
    try:
        summary = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None, "summary.json is missing"
    except json.JSONDecodeError as exc:
        return None, f"summary.json is not valid JSON ({exc.msg}, line {exc.lineno})"
    except (OSError, ValueError) as exc:
        return None, f"summary.json cannot be read ({_one_line(exc)})"
    if not isinstance(summary, dict):
        return None, "summary.json is not a JSON object"
    return summary, None


def _stamp_time(name: str) -> datetime:
    return datetime.strptime(name, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)


def _run(folder: Location) -> _Run:
    summary, problem = _read_summary(folder)
    start, sequence = _stamp_time(folder.name), 0
    if summary is not None:
        # a summary written before runs recorded their start: the folder name says it
        with suppress(KeyError, TypeError, ValueError):
            start = _utc(datetime.fromisoformat(summary["started_at"]))
        if isinstance(summary.get("sequence"), int):
            sequence = summary["sequence"]
    return _Run(folder, summary, problem, start, sequence)


def _runs(customer_folder: Location, now: datetime | None = None) -> list[_Run]:
    """The customer's run folders (readable or not), oldest first: by recorded start, a
    run recorded in the future right after the run written before it."""
    if not customer_folder.is_dir():
        return []
    runs = [_run(p) for p in customer_folder.iterdir() if _RUN_FOLDER.match(p.name)]
    latest_sane = (now or datetime.now(UTC)) + CLOCK_MARGIN
    sane = [r for r in runs if r.start <= latest_sane]
    oldest = datetime.min.replace(tzinfo=UTC)
    for run in runs:
        if run.start > latest_sane:
            before = [r.start for r in sane if r.sequence < run.sequence] if run.sequence else []
            run.start = max(before, default=oldest)
    return sorted(runs, key=lambda r: (r.start, r.sequence, r.folder.name))


def _previous(runs: list[_Run]) -> tuple[pl.DataFrame | None, list[str]]:
    """The newest readable run's findings, and a warning per damaged run skipped on the way."""
    warnings = []
    for run in reversed(runs):
        problem = run.problem
        if problem is None:
            try:
                previous = storage.read_parquet(run.folder / "mismatches.parquet")
                missing = {"finding_key", "first_seen"} - set(previous.columns)
                if not missing:
                    return previous, warnings
                problem = f"mismatches.parquet lacks the columns {', '.join(sorted(missing))}"
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # a damaged file may even make the reader panic
                problem = f"mismatches.parquet cannot be read ({_one_line(exc)})"
        warnings.append(
            f"skipped the damaged earlier report {run.folder}: {problem}; "
            "history continues from the newest readable run"
        )
    return None, warnings


def previous_summary(customer_id: str, folder: Location | None = None) -> dict[str, Any] | None:
    """The summary.json of the customer's newest complete run whose summary is readable."""
    readable = [r for r in _runs((folder or reports_dir()) / customer_id) if r.summary]
    return readable[-1].summary if readable else None


def _remove_leftovers(customer_folder: Location) -> None:
    """Remove what dead runs left: `.<stamp>.partial/`, `.latest.<stamp>.tmp/` and `.old/`."""
    if customer_folder.is_dir():
        for path in customer_folder.iterdir():
            if _LEFTOVER.match(path.name):
                storage.remove_tree(path)


# -- writing -------------------------------------------------------------------------------

_FORMULA_START = r"^\s*[=+\-@]"


def spreadsheet_safe(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame as it goes into a CSV: control characters out, formulas neutralised (see
    the module docstring); non-text columns unchanged."""
    columns = []
    for name, dtype in frame.schema.items():
        if dtype != pl.String:
            continue
        raw = pl.col(name)
        clean = (
            raw.str.replace_all(r"\r\n?", "\n")
            .str.replace_all("\t", " ", literal=True)
            .str.replace_all(r"[\x00-\x08\x0B-\x1F\x7F-\x9F]", "")
        )
        formula = raw.str.contains(r"^[\t\r]") | clean.str.contains(_FORMULA_START)
        columns.append(pl.when(formula).then(pl.lit("'") + clean).otherwise(clean).alias(name))
    return frame.with_columns(columns) if columns else frame


def _csv_bytes(frame: pl.DataFrame) -> bytes:
    """A CSV that Excel opens correctly: UTF-8 with a byte order mark, quoted as needed."""
    buffer = BytesIO()
    spreadsheet_safe(frame).write_csv(buffer, include_bom=True)
    return buffer.getvalue()


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def _write_file(path: Location, data: bytes) -> None:
    """Serialised in memory first, so a failure is an OSError with its errno."""
    with _writing(path):
        path.write_bytes(data)


def _update_latest(customer_folder: Location, run_folder: Location) -> None:
    """Point latest/ at a copy of `run_folder`, unless a newer run already finished. The
    old copy is moved aside before the new one moves in: latest/ is never half-written."""
    readable = [r for r in _runs(customer_folder) if r.summary is not None]
    if not readable or readable[-1].folder != run_folder:
        return
    latest = customer_folder / LATEST
    staging = customer_folder / f".{LATEST}.{run_folder.name}.tmp"
    retired = customer_folder / f".{LATEST}.{run_folder.name}.old"
    storage.remove_tree(staging)
    try:
        with _writing(latest):
            staging.mkdir()
            for file in run_folder.iterdir():
                storage.copy_file(file, staging / file.name)
            if latest.exists():
                storage.move(latest, retired, last="summary.json")
            try:
                storage.move(staging, latest, last="summary.json")
            except OSError:
                if retired.exists() and not latest.exists():
                    storage.move(retired, latest, last="summary.json")
                raise
    finally:
        storage.remove_tree(staging)
        if latest.exists():
            storage.remove_tree(retired)


def write_report(
    customer_id: str,
    findings: pl.DataFrame,
    *,
    folder: Location | None = None,
    at: datetime | None = None,
    roster_counts: Mapping[str, Mapping[str, int]] | None = None,
) -> ReportSummary:
    """Write one run's report, carry `first_seen` over from the previous run, update latest/.

    `roster_counts` (rows per table of each side, e.g. {"source": {"users": n}}) is kept
    in summary.json for the next run to compare with (`previous_summary`).
    Raises ReportWriteError when the folder cannot be written (nothing partial is left).
    """
    at = _utc(at or datetime.now(UTC))
    stamp = run_stamp(at)
    customer_folder = (folder or reports_dir()) / customer_id
    run_folder = customer_folder / stamp
    if run_folder.exists():
        raise FileExistsError(f"report folder {run_folder} already exists")
    partial = customer_folder / f".{stamp}.partial"
    _remove_leftovers(customer_folder)
    runs = _runs(customer_folder)
    previous, warnings = _previous(runs)
    seen_at = at.isoformat(timespec="seconds")

    current = findings.with_columns(pl.lit(customer_id).alias("customer_id"), finding_key()).unique(
        "finding_key", keep="first", maintain_order=True
    )
    if previous is not None and previous.height:
        first_seen = previous.select("finding_key", pl.col("first_seen").alias("_prev_first_seen"))
        current = current.join(first_seen, on="finding_key", how="left")
    else:
        current = current.with_columns(pl.lit(None, dtype=pl.String).alias("_prev_first_seen"))
    new = current.filter(pl.col("_prev_first_seen").is_null()).height
    # a first_seen later than this run came from a clock that ran ahead
    carried = pl.min_horizontal(pl.col("_prev_first_seen"), pl.lit(seen_at))
    current = current.with_columns(
        pl.coalesce(carried, pl.lit(seen_at)).alias("first_seen"),
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
        started_at=at.isoformat(),
        sequence=1 + max((r.sequence for r in runs), default=0),
        roster_counts=(
            {side: dict(counts) for side, counts in roster_counts.items()}
            if roster_counts is not None
            else None
        ),
        warnings=warnings,
        report=current,
    )
    files = {
        "mismatches.parquet": _parquet_bytes(current),
        "mismatches.csv": _csv_bytes(current),
        "district_issues.csv": _csv_bytes(district_view(current)),
        "resolved.csv": _csv_bytes(
            resolved.select([c for c in REPORT_COLUMNS if c in resolved.columns])
        ),
        # last: a run folder with a summary.json is complete
        "summary.json": json.dumps(summary.as_dict(), indent=2).encode(),
    }
    try:
        with _writing(_existing_ancestor(partial)):
            partial.mkdir(parents=True)
        for name, data in files.items():
            _write_file(partial / name, data)
        with _writing(run_folder):
            storage.move(partial, run_folder, last="summary.json")
    except BaseException:
        storage.remove_tree(partial)
        raise
    _update_latest(customer_folder, run_folder)
    return summary


def write_hold(
    customer_id: str,
    hold: Mapping[str, Any],
    *,
    folder: Location | None = None,
    at: datetime | None = None,
) -> Location:
    """Write why a run was held as `<customer>/holds/<stamp>.json` (complete or absent);
    history and latest/ never read it."""
    at = _utc(at or datetime.now(UTC))
    holds = (folder or reports_dir()) / customer_id / HOLDS
    path = holds / f"{run_stamp(at)}.json"
    staging = holds / f".{path.name}.tmp"
    data = json.dumps(dict(hold), indent=2, default=str).encode()
    try:
        with _writing(_existing_ancestor(staging)):
            holds.mkdir(parents=True, exist_ok=True)
        _write_file(staging, data)
        with _writing(path):
            storage.move(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    return path


def district_view(findings: pl.DataFrame) -> pl.DataFrame:
    """The ISSUE_IN_SOURCE findings as the district's data admin reads them, most severe
    first: the district-facing detail where a rule wrote one, and only the district's
    part of the remediation (Bookmarked support's steps name internal accounts)."""
    detail = (
        pl.coalesce("district_detail", "detail")
        if "district_detail" in findings.columns
        else pl.col("detail")
    )
    remediation = pl.col("remediation").str.split(SUPPORT_PREFIX).list.first().str.strip_chars()
    return (
        findings.filter(pl.col("status") == ISSUE_IN_SOURCE)
        .sort([severity_rank("severity"), "rule"], maintain_order=True)
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


# -- the preview in the Dagster UI -----------------------------------------------------------

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~])")
_CONTROL = re.compile(r"[\x00-\x1F\x7F-\x9F]+")


def _md_text(value: object) -> str:
    """A value shown literally in a Markdown table cell: one line, and no HTML, emphasis,
    code, link or cell break can come out of it."""
    text = _CONTROL.sub(" ", "" if value is None else str(value))
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _md_code(text: str) -> str:
    """`text` as an inline code span, whatever backticks it holds."""
    fence = "`" * (1 + max((len(run) for run in re.findall("`+", text)), default=0))
    return f"{fence} {text} {fence}"


def _cut(text: str, limit: int) -> tuple[str, bool]:
    """`text` whole, or cut at the last word boundary before `limit` characters."""
    if len(text) <= limit:
        return text, False
    head = text[:limit]
    space = head.rstrip().rfind(" ")
    return (head[:space] if space > limit // 2 else head).rstrip(), True


def markdown_preview(
    report: ReportSummary | pl.DataFrame,
    folder: Location | None = None,
    *,
    limit: int = 25,
    detail_chars: int = PREVIEW_DETAIL_CHARS,
) -> str:
    """The most severe findings as a Markdown table for the Dagster UI, then the folder.

    `report` is what `write_report` returned (its rows and folder), or the rows in the
    order of mismatches.csv: a detail longer than `detail_chars` is cut at a word and
    points to its row there, the row number a spreadsheet shows (the header is row 1).
    Every value is escaped, so a name holding HTML or Markdown shows literally.
    """
    if isinstance(report, ReportSummary):
        folder = folder or report.folder
        report = report.report if report.report is not None else pl.DataFrame()
    where = f"\n\nReport folder: {_md_code(str(folder))}" if folder is not None else ""
    if report.is_empty():
        return "No findings." + where
    top = (
        report.with_row_index("_row", offset=2)
        .sort([severity_rank("severity"), "rule"], maintain_order=True)
        .head(limit)
    )
    lines = ["| rule | status | severity | entity | sis_id | detail |", "|---|---|---|---|---|---|"]
    for row in top.iter_rows(named=True):
        detail, was_cut = _cut(_CONTROL.sub(" ", str(row["detail"] or "")), detail_chars)
        shown = _md_text(detail) + (f"… (row {row['_row']} in mismatches.csv)" if was_cut else "")
        cells = [row[c] for c in ("rule", "status", "severity", "entity_type", "sis_id")]
        lines.append("| " + " | ".join(_md_text(c) for c in cells) + f" | {shown} |")
    more = report.height - top.height
    if more:
        lines.append(f"\n… and {more} more in mismatches.csv.")
    return "\n".join(lines) + where


def counts_table(summary: ReportSummary | Mapping[str, Any]) -> str:
    """Counts by rule (rules with findings) and status, with totals, as a Markdown table.
    Takes a ReportSummary or a summary.json as read."""
    by_rule_status = (
        summary.by_rule_status
        if isinstance(summary, ReportSummary)
        else summary.get("by_rule_status", {})
    )
    rows = {rule: counts for rule, counts in sorted(by_rule_status.items()) if any(counts.values())}
    if not rows:
        return "No findings."
    header = ["rule", *STATUSES, "total"]
    lines = [
        "| " + " | ".join(_md_text(h) for h in header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
    ]
    totals = [0] * (len(STATUSES) + 1)
    for rule, counts in rows.items():
        values = [counts.get(status, 0) for status in STATUSES]
        values.append(sum(values))
        totals = [t + v for t, v in zip(totals, values, strict=True)]
        lines.append(f"| {_md_text(rule)} | " + " | ".join(map(str, values)) + " |")
    lines.append("| total | " + " | ".join(map(str, totals)) + " |")
    return "\n".join(lines)
