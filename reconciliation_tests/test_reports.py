"""Report files and history: what support opens, and what the district receives."""

from __future__ import annotations

import csv
import errno
import json
import os
import resource
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from reconciliation.reports import (
    DISTRICT_COLUMNS,
    REPORT_COLUMNS,
    ReportWriteError,
    counts_table,
    markdown_preview,
    previous_summary,
    report_write_error,
    write_hold,
    write_report,
)
from reconciliation.rules.base import FINDING_SCHEMA

T0 = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
#: the issue's report contract, stated here rather than imported from the code under test
CONTRACT_COLUMNS = [
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
]


def finding(rule: str, sis_id: str, status: str = "ISSUE_IN_BOOKMARKED", **extra: object) -> dict:
    return {
        "rule": rule,
        "entity_type": "student",
        "sis_id": sis_id,
        "bookmarked_id": 7,
        "status": status,
        "severity": "high",
        "detail": f"{sis_id} detail",
        "remediation": "Bookmarked support: re-sync.",
        "details_json": "{}",
        **extra,
    }


def frame(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=FINDING_SCHEMA)


def test_report_files_and_contract_columns(tmp_path: Path) -> None:
    summary = write_report(
        "lincoln-usd", frame(finding("missing_data", "s1")), folder=tmp_path, at=T0
    )
    run = tmp_path / "lincoln-usd" / "20261101T030000.000000Z"
    assert summary.folder == run
    for name in (
        "mismatches.csv",
        "mismatches.parquet",
        "district_issues.csv",
        "resolved.csv",
        "summary.json",
    ):
        assert (run / name).exists() and (tmp_path / "lincoln-usd" / "latest" / name).exists()
    report = pl.read_csv(run / "mismatches.csv")
    assert report.columns[: len(REPORT_COLUMNS)] == REPORT_COLUMNS
    row = report.row(0, named=True)
    assert row["customer_id"] == "lincoln-usd" and row["first_seen"] == T0.isoformat()
    assert pl.read_parquet(run / "mismatches.parquet").height == 1


def test_history_keeps_first_seen_and_counts_new_persisting_resolved(tmp_path: Path) -> None:
    write_report(
        "c",
        frame(finding("missing_data", "s1"), finding("stale_record", "s2")),
        folder=tmp_path,
        at=T0,
    )
    later = T0 + timedelta(days=1)
    summary = write_report(
        "c",
        frame(finding("missing_data", "s1"), finding("field_mismatch", "s3")),
        folder=tmp_path,
        at=later,
    )
    assert (summary.total, summary.new, summary.persisting, summary.resolved) == (2, 1, 1, 1)
    latest = pl.read_csv(tmp_path / "c" / "latest" / "mismatches.csv")
    first_seen = dict(zip(latest["sis_id"], latest["first_seen"], strict=True))
    assert first_seen == {"s1": T0.isoformat(), "s3": later.isoformat()}
    resolved = pl.read_csv(tmp_path / "c" / "latest" / "resolved.csv")
    assert resolved["sis_id"].to_list() == ["s2"]
    counts = json.loads((tmp_path / "c" / "latest" / "summary.json").read_text())
    assert counts["by_rule_status"] == {
        "field_mismatch": {"ISSUE_IN_BOOKMARKED": 1},
        "missing_data": {"ISSUE_IN_BOOKMARKED": 1},
    }


def test_district_csv_has_no_bookmarked_internals(tmp_path: Path) -> None:
    findings = frame(
        finding(
            "parent_email_conflict",
            "p1",
            "ISSUE_IN_SOURCE",
            detail="Shares an email. Bookmarked merged them into account #1526.",
            district_detail="Shares an email. These families share one login.",
            remediation="District data admin: give each parent an email. "
            "Bookmarked support: unlink students from account #1526.",
        ),
        finding("missing_data", "s1"),
    )
    write_report("c", findings, folder=tmp_path, at=T0)
    district = pl.read_csv(tmp_path / "c" / "latest" / "district_issues.csv")
    assert district.height == 1
    assert "bookmarked_id" not in district.columns and "details_json" not in district.columns
    row = district.row(0, named=True)
    assert row["detail"] == "Shares an email. These families share one login."
    assert row["remediation"] == "District data admin: give each parent an email."
    assert "#1526" not in district.write_csv()


def test_markdown_preview_is_most_severe_first() -> None:
    findings = frame(
        finding("field_mismatch", "s9", severity="low"),
        finding("parent_email_conflict", "p1", severity="critical"),
    )
    lines = markdown_preview(findings).splitlines()
    assert lines[2].startswith("| parent\\_email\\_conflict") and lines[3].startswith(
        "| field\\_mismatch"
    )
    assert markdown_preview(frame()) == "No findings."


def test_contract_columns_are_named_exactly(tmp_path: Path) -> None:
    write_report("c", frame(finding("missing_data", "s1")), folder=tmp_path, at=T0)
    header = (tmp_path / "c" / "latest" / "mismatches.csv").read_text("utf-8-sig").splitlines()[0]
    assert header.split(",")[:10] == CONTRACT_COLUMNS
    district = (tmp_path / "c" / "latest" / "district_issues.csv").read_text("utf-8-sig")
    assert district.splitlines()[0].split(",") == DISTRICT_COLUMNS


def test_csv_files_open_in_excel(tmp_path: Path) -> None:
    """Excel reads a CSV as UTF-8 only with a byte order mark; a detail with a newline,
    a quote or a comma stays one cell."""
    detail = 'José "Pepe" Núñez, grade 3\nsecond line'
    write_report(
        "c",
        frame(finding("source_integrity", "s1", "ISSUE_IN_SOURCE", detail=detail)),
        folder=tmp_path,
        at=T0,
    )
    for name in ("mismatches.csv", "district_issues.csv", "resolved.csv"):
        raw = (tmp_path / "c" / "latest" / name).read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf"), name
    with (tmp_path / "c" / "latest" / "district_issues.csv").open(encoding="utf-8-sig") as f:
        (row,) = list(csv.DictReader(f))
    assert row["detail"] == detail and row["sis_id"] == "s1"


def test_a_run_without_findings_writes_headers_and_resolves_everything(tmp_path: Path) -> None:
    write_report("c", frame(finding("missing_data", "s1")), folder=tmp_path, at=T0)
    summary = write_report("c", frame(), folder=tmp_path, at=T0 + timedelta(days=1))
    assert (summary.total, summary.new, summary.persisting, summary.resolved) == (0, 0, 0, 1)
    latest = tmp_path / "c" / "latest"
    report = (latest / "mismatches.csv").read_text("utf-8-sig").splitlines()
    assert len(report) == 1 and report[0].startswith(",".join(REPORT_COLUMNS))
    assert (latest / "district_issues.csv").read_text("utf-8-sig").splitlines() == [
        ",".join(DISTRICT_COLUMNS)
    ]
    assert pl.read_parquet(latest / "mismatches.parquet").columns[: len(REPORT_COLUMNS)] == (
        REPORT_COLUMNS
    )
    assert pl.read_csv(latest / "resolved.csv")["sis_id"].to_list() == ["s1"]
    assert json.loads((latest / "summary.json").read_text())["run"] == summary.run


def test_latest_is_the_newest_run_and_history_survives_a_dead_run(tmp_path: Path) -> None:
    write_report("c", frame(finding("missing_data", "s1")), folder=tmp_path, at=T0)
    # a run that died while replacing latest/, and one that died while writing its files
    shutil.rmtree(tmp_path / "c" / "latest")
    dead = tmp_path / "c" / ".20261101T050000.000000Z.partial"
    dead.mkdir()
    (dead / "mismatches.parquet").write_bytes(b"half a file")
    later = T0 + timedelta(days=1)
    summary = write_report(
        "c",
        frame(finding("missing_data", "s1"), finding("stale_record", "s2")),
        folder=tmp_path,
        at=later,
    )
    assert (summary.new, summary.persisting, summary.resolved) == (1, 1, 0)
    latest = pl.read_csv(tmp_path / "c" / "latest" / "mismatches.csv")
    assert dict(zip(latest["sis_id"], latest["first_seen"], strict=True)) == {
        "s1": T0.isoformat(),
        "s2": later.isoformat(),
    }
    assert json.loads((tmp_path / "c" / "latest" / "summary.json").read_text())["run"] == (
        summary.run
    )
    visible = sorted(p.name for p in (tmp_path / "c").iterdir() if not p.name.startswith("."))
    assert visible == ["20261101T030000.000000Z", "20261102T030000.000000Z", "latest"]


def test_an_older_run_finishing_last_leaves_latest_alone(tmp_path: Path) -> None:
    newer = write_report("c", frame(finding("missing_data", "s1")), folder=tmp_path, at=T0)
    write_report("c", frame(), folder=tmp_path, at=T0 - timedelta(hours=1))
    summary = json.loads((tmp_path / "c" / "latest" / "summary.json").read_text())
    assert summary["run"] == newer.run


def test_runs_within_one_second_count_persisting_findings(tmp_path: Path) -> None:
    write_report("c", frame(finding("missing_data", "s1")), folder=tmp_path, at=T0)
    summary = write_report(
        "c",
        frame(finding("missing_data", "s1")),
        folder=tmp_path,
        at=T0 + timedelta(milliseconds=5),
    )
    assert (summary.new, summary.persisting) == (0, 1)


# -- spreadsheet safety (CSV injection) ---------------------------------------------------

FORMULAS = ['=HYPERLINK("http://x")', "+1+2", "-1", "@SUM(A1)", "\tTab", "\rCR", " =padded"]


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def test_csv_cells_that_would_run_as_formulas_get_a_quote(tmp_path: Path) -> None:
    """OWASP CSV injection: a cell starting with = + - @ tab or CR is prefixed with a quote
    in every CSV (an id like `-1` too); the Parquet keeps the raw values."""
    rows = [
        finding("source_integrity", value, "ISSUE_IN_SOURCE", detail=value, severity="low")
        for value in FORMULAS
    ]
    write_report("c", frame(*rows), folder=tmp_path, at=T0)
    # a second run without them: resolved.csv lists them all
    write_report("c", frame(), folder=tmp_path, at=T0 + timedelta(days=1))
    runs = sorted(p for p in (tmp_path / "c").iterdir() if p.name[0].isdigit())
    expected = {"'" + value.replace("\t", " ").replace("\r", "\n") for value in FORMULAS}
    for path in (
        runs[0] / "mismatches.csv",
        runs[0] / "district_issues.csv",
        runs[1] / "resolved.csv",
    ):
        found = read_rows(path)
        assert {r["sis_id"] for r in found} == expected, path.name
        assert {r["detail"] for r in found} == expected, path.name
    raw = pl.read_parquet(runs[0] / "mismatches.parquet")
    assert set(raw["sis_id"]) == set(FORMULAS) and set(raw["detail"]) == set(FORMULAS)


def test_csv_cells_lose_control_characters_and_keep_line_breaks(tmp_path: Path) -> None:
    detail = "Ana\x00 Ruiz\x1b[31m\x7f\x85, grade 3\r\nsecond\tline"
    write_report(
        "c",
        frame(finding("source_integrity", "s\x001", "ISSUE_IN_SOURCE", detail=detail)),
        folder=tmp_path,
        at=T0,
    )
    latest = tmp_path / "c" / "latest"
    for name in ("mismatches.csv", "district_issues.csv"):
        (row,) = read_rows(latest / name)
        assert row["detail"] == "Ana Ruiz[31m, grade 3\nsecond line", name
        assert row["sis_id"] == "s1"
    assert pl.read_parquet(latest / "mismatches.parquet")["detail"].to_list() == [detail]


# -- the preview in the Dagster UI ---------------------------------------------------------


def rendered(markdown: str) -> str:
    """The HTML a CommonMark + tables renderer makes of the preview."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table").render(markdown)


def test_preview_shows_names_literally(tmp_path: Path) -> None:
    name = "<script>alert(1)</script> **Bold** _it_ `code` [link](http://x) a|b &amp; ~~s~~"
    summary = write_report(
        "c",
        frame(finding("field_mismatch", "<b>s1</b>", detail=f"Name {name} differs")),
        folder=tmp_path,
        at=T0,
    )
    preview = markdown_preview(summary.report, summary.folder)
    html = rendered(preview)
    for tag in ("<script", "<strong", "<em", "<code>", "<a ", "<b>", "<del", "<s>"):
        assert tag not in html.split("</table>")[0], tag
    assert "&lt;script&gt;alert(1)&lt;/script&gt; **Bold** _it_ `code` [link](http://x)" in html
    assert "a|b &amp;amp; ~~s~~" in html and "&lt;b&gt;s1&lt;/b&gt;" in html
    assert html.count("<tr>") == 2  # the header and one finding: the | did not split the row
    assert str(summary.folder) in preview


def test_preview_most_severe_first_with_long_details_cut_at_a_word(tmp_path: Path) -> None:
    long_detail = "Lincoln " + " ".join(f"word{i}" for i in range(200))
    summary = write_report(
        "c",
        frame(
            finding("stale_record", "s1", severity="low", detail="short"),
            finding("missing_data", "s2", severity="critical", detail=long_detail),
            finding("campus_transfer", "s3", severity="critical", detail="x " * 150),
        ),
        folder=tmp_path,
        at=T0,
    )
    lines = markdown_preview(summary).splitlines()
    assert markdown_preview(summary.report, summary.folder).splitlines() == lines
    assert [line.split("|")[1].strip() for line in lines[2:5]] == [
        "campus\\_transfer",
        "missing\\_data",
        "stale\\_record",
    ]
    shown = lines[3].split("|")[-2].strip()
    # the row the finding has in the CSV a spreadsheet shows (row 1 is the header)
    csv_row = 1 + next(
        i
        for i, r in enumerate(read_rows(summary.folder / "mismatches.csv"), 1)
        if r["sis_id"] == "s2"
    )
    text, _, where = shown.partition("… ")
    assert where == f"(row {csv_row} in mismatches.csv)"
    assert long_detail.startswith(text) and long_detail[len(text)] == " "
    assert 300 < len(text) <= 400
    # a detail under the cut is whole
    assert lines[2].split("|")[-2].strip() == "x " * 149 + "x"
    assert lines[4].split("|")[-2].strip() == "short"


def test_counts_table_by_rule_and_status(tmp_path: Path) -> None:
    summary = write_report(
        "c",
        frame(
            finding("missing_data", "s1"),
            finding("missing_data", "s2"),
            finding("source_integrity", "s3", "ISSUE_IN_SOURCE"),
            finding("student_mismatch", "p1", "ISSUE_IN_SOURCE"),
            finding("student_mismatch", "p2"),
        ),
        folder=tmp_path,
        at=T0,
    )
    table = counts_table(summary).splitlines()
    assert table[0] == "| rule | ISSUE\\_IN\\_SOURCE | ISSUE\\_IN\\_BOOKMARKED | total |"
    assert table[2:] == [
        "| missing\\_data | 0 | 2 | 2 |",
        "| source\\_integrity | 1 | 0 | 1 |",
        "| student\\_mismatch | 1 | 1 | 2 |",
        "| total | 2 | 3 | 5 |",
    ]
    assert counts_table(write_report("d", frame(), folder=tmp_path, at=T0)) == "No findings."


def test_district_file_is_most_severe_first(tmp_path: Path) -> None:
    findings = frame(
        finding("source_integrity", "a", "ISSUE_IN_SOURCE", severity="low"),
        finding("parent_email_conflict", "b", "ISSUE_IN_SOURCE", severity="medium"),
        finding("source_integrity", "c", "ISSUE_IN_SOURCE", severity="critical"),
        finding("campus_transfer", "d", "ISSUE_IN_SOURCE", severity="medium"),
    )
    write_report("c", findings, folder=tmp_path, at=T0)
    rows = read_rows(tmp_path / "c" / "latest" / "district_issues.csv")
    assert [(r["severity"], r["rule"]) for r in rows] == [
        ("critical", "source_integrity"),
        ("medium", "campus_transfer"),
        ("medium", "parent_email_conflict"),
        ("low", "source_integrity"),
    ]


# -- damaged history, failed writes, dead runs, clocks --------------------------------------


def damage_parquet(run: Path) -> None:
    data = (run / "mismatches.parquet").read_bytes()
    (run / "mismatches.parquet").write_bytes(data[: len(data) // 2])


def damage_summary(run: Path) -> None:
    (run / "summary.json").write_text('{"run": "2026')


@pytest.mark.parametrize(
    ("damage", "cause"),
    [
        (damage_parquet, "mismatches.parquet cannot be read"),
        (damage_summary, "summary.json is not valid JSON"),
    ],
)
def test_a_damaged_previous_report_is_skipped_with_a_warning(
    tmp_path: Path, damage: Any, cause: str
) -> None:
    write_report("c", frame(finding("missing_data", "s1")), folder=tmp_path, at=T0)
    second = write_report(
        "c",
        frame(finding("missing_data", "s1"), finding("stale_record", "s2")),
        folder=tmp_path,
        at=T0 + timedelta(days=1),
    )
    damage(second.folder)
    third = write_report(
        "c",
        frame(finding("missing_data", "s1"), finding("stale_record", "s2")),
        folder=tmp_path,
        at=T0 + timedelta(days=2),
    )
    (warning,) = third.warnings
    assert "\n" not in warning and str(second.folder) in warning and cause in warning
    assert warning.startswith("skipped the damaged earlier report ")
    # history continues from the first run
    assert (third.new, third.persisting, third.resolved) == (1, 1, 0)
    first_seen = dict(zip(third.report["sis_id"], third.report["first_seen"], strict=True))
    assert first_seen["s1"] == T0.isoformat()
    assert json.loads((third.folder / "summary.json").read_text())["warnings"] == [warning]
    assert json.loads((tmp_path / "c" / "latest" / "summary.json").read_text())["run"] == (
        third.run
    )
    # the damaged run is behind the newest readable one now: no more warnings
    assert write_report("c", frame(), folder=tmp_path, at=T0 + timedelta(days=3)).warnings == []


def test_disk_full_names_the_cause_and_the_path(tmp_path: Path) -> None:
    with pytest.raises(OSError) as raised:
        Path("/dev/full").write_bytes(b"finding")
    error = report_write_error(raised.value, tmp_path / "c")
    assert isinstance(error, ReportWriteError) and isinstance(error, OSError)
    assert str(error) == f"cannot write the report: no space left on device: {tmp_path / 'c'}"
    assert error.errno == errno.ENOSPC
    read_only = report_write_error(OSError(errno.EROFS, "Read-only file system"), tmp_path)
    assert str(read_only) == f"cannot write the report: the folder is read-only: {tmp_path}"


@contextmanager
def unprivileged() -> Iterator[None]:
    """Root ignores file permissions: act as nobody while inside (nothing to do otherwise)."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_a_read_only_reports_folder_is_one_clear_error() -> None:
    base = Path(tempfile.mkdtemp(prefix="reports-ro-"))
    try:
        base.chmod(0o755)
        reports = base / "reports"
        reports.mkdir(mode=0o555)
        reports.chmod(0o555)
        findings = frame(finding("missing_data", "s1"))
        with unprivileged(), pytest.raises(ReportWriteError) as raised:
            write_report("c", findings, folder=reports, at=T0)
        assert str(raised.value) == f"cannot write the report: the folder is read-only: {reports}"
        assert list(reports.iterdir()) == []
    finally:
        base.chmod(0o700)
        (base / "reports").chmod(0o700)
        shutil.rmtree(base)


def test_a_reports_folder_that_is_a_file_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "reports").write_text("not a folder")
    with pytest.raises(ReportWriteError) as raised:
        write_report("c", frame(), folder=tmp_path / "reports", at=T0)
    assert str(raised.value) == (f"cannot write the report: not a folder: {tmp_path / 'reports'}")


def test_a_write_that_fails_midway_leaves_no_partial_folder(tmp_path: Path) -> None:
    """A real write failure half-way through (the file size limit, EFBIG): one clear error,
    nothing left behind, the previous report untouched."""
    write_report("c", frame(finding("missing_data", "s1")), folder=tmp_path, at=T0)
    before = sorted(p.name for p in (tmp_path / "c").iterdir())
    big = frame(*(finding("missing_data", f"s{i}", detail="x" * 500) for i in range(50)))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(ReportWriteError) as raised:
            write_report("c", big, folder=tmp_path, at=T0 + timedelta(days=1))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    message = str(raised.value)
    assert message.startswith("cannot write the report: file too large") and "\n" not in message
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == before


def test_dead_runs_leftovers_are_removed_at_the_next_write(tmp_path: Path) -> None:
    write_report("c", frame(finding("missing_data", "s1")), folder=tmp_path, at=T0)
    customer = tmp_path / "c"
    for name in (
        ".20261101T050000.000000Z.partial",
        ".latest.20261101T050000.000000Z.tmp",
        ".latest.20261101T050000.000000Z.old",
    ):
        (customer / name).mkdir()
        (customer / name / "mismatches.csv").write_text("half")
    (customer / ".keep-me").write_text("not ours")
    write_report("c", frame(), folder=tmp_path, at=T0 + timedelta(days=1))
    hidden = sorted(p.name for p in customer.iterdir() if p.name.startswith("."))
    assert hidden == [".keep-me"]


def test_a_folder_stamped_in_the_future_does_not_freeze_latest(tmp_path: Path) -> None:
    """A run folder named 2099 (its summary records a real start) is ordered by that start."""
    write_report("c", frame(finding("missing_data", "s1")), folder=tmp_path, at=T0)
    second = write_report(
        "c", frame(finding("missing_data", "s1")), folder=tmp_path, at=T0 + timedelta(days=1)
    )
    second.folder.rename(tmp_path / "c" / "20991231T000000.000000Z")
    third = write_report(
        "c",
        frame(finding("missing_data", "s1"), finding("stale_record", "s2")),
        folder=tmp_path,
        at=T0 + timedelta(days=2),
    )
    latest = json.loads((tmp_path / "c" / "latest" / "summary.json").read_text())
    assert latest["run"] == third.run
    assert (third.new, third.persisting) == (1, 1)
    assert third.report.filter(pl.col("sis_id") == "s1")["first_seen"].item() == T0.isoformat()


def test_a_run_from_a_wrong_clock_does_not_freeze_latest(tmp_path: Path) -> None:
    """A run whose clock said 2099 (name and recorded start): the next runs still move
    latest/, and its findings keep the first_seen they had."""
    write_report("c", frame(finding("missing_data", "s1")), folder=tmp_path, at=T0)
    wrong = datetime(2099, 1, 1, tzinfo=UTC)
    write_report(
        "c",
        frame(finding("missing_data", "s1"), finding("stale_record", "s2")),
        folder=tmp_path,
        at=wrong,
    )
    third_at = T0 + timedelta(days=2)
    third = write_report(
        "c",
        frame(finding("missing_data", "s1"), finding("stale_record", "s2")),
        folder=tmp_path,
        at=third_at,
    )
    latest = json.loads((tmp_path / "c" / "latest" / "summary.json").read_text())
    assert latest["run"] == third.run
    assert (third.new, third.persisting, third.resolved) == (0, 2, 0)
    first_seen = dict(zip(third.report["sis_id"], third.report["first_seen"], strict=True))
    # s2 was first seen by the wrong clock: never later than the run that reads it
    assert first_seen == {"s1": T0.isoformat(), "s2": third_at.isoformat()}
    fourth = write_report("c", frame(), folder=tmp_path, at=T0 + timedelta(days=3))
    assert fourth.resolved == 2
    assert json.loads((tmp_path / "c" / "latest" / "summary.json").read_text())["run"] == (
        fourth.run
    )


# -- what the sync hold needs ----------------------------------------------------------------


def test_roster_counts_previous_summary_and_holds(tmp_path: Path) -> None:
    assert previous_summary("c", tmp_path) is None
    counts = {"source": {"users": 120, "enrollments": 900}, "bookmarked": {"users": 118}}
    first = write_report("c", frame(), folder=tmp_path, at=T0, roster_counts=counts)
    assert json.loads((first.folder / "summary.json").read_text())["roster_counts"] == counts
    assert previous_summary("c", tmp_path)["roster_counts"] == counts
    hold = {"reason": "the SIS sent 3 users instead of 120", "source": {"users": 3}}
    path = write_hold("c", hold, folder=tmp_path, at=T0 + timedelta(days=1))
    assert path == tmp_path / "c" / "holds" / "20261102T030000.000000Z.json"
    assert json.loads(path.read_text()) == hold
    # the hold is no run: history and latest/ ignore it
    assert previous_summary("c", tmp_path)["run"] == first.run
    damage_summary(write_report("c", frame(), folder=tmp_path, at=T0 + timedelta(days=2)).folder)
    assert previous_summary("c", tmp_path)["run"] == first.run
    third = write_report("c", frame(), folder=tmp_path, at=T0 + timedelta(days=3))
    assert previous_summary("c", tmp_path)["run"] == third.run
    assert previous_summary("c", tmp_path)["roster_counts"] is None
