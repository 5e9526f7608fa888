"""Report files and history: what support opens, and what the district receives."""

from __future__ import annotations

import csv
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from reconciliation.reports import (
    DISTRICT_COLUMNS,
    REPORT_COLUMNS,
    markdown_preview,
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
    assert lines[2].startswith("| parent_email_conflict") and lines[3].startswith(
        "| field_mismatch"
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
