"""The fleet view: every customer's latest results, ranked, from the report folder and the
runs the instance knows; the Dagster asset and `reconcile fleet`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from reconciliation.cli import main
from reconciliation.defs.fleet import fleet_summary
from reconciliation.defs.jobs import RECONCILE_JOB
from reconciliation.defs.resources import ReconciliationResource
from reconciliation.fleet import FLEET_COLUMNS, FLEET_FOLDER, LastRun, fleet_table, write_fleet_csv
from reconciliation.reports import write_hold, write_report
from reconciliation.rules.base import FINDING_SCHEMA

#: the asset and the command read the wall clock: the reports are placed around it
NOW = datetime.now(UTC).replace(microsecond=0)
STUDENT = "Zoë Quill"  # student data: may be in the reports, never in the fleet view


def _customer(folder: Path, customer_id: str, number: int, **extra: object) -> None:
    document = {
        "customer_id": customer_id,
        "name": f"{customer_id.title()} District",
        "environment": "production",
        "bookmarked": {"customer_id": number, "database_url": "sqlite:///x.db"},
        "source": {"type": "oneroster_csv", "location": "x.zip"},
        **extra,
    }
    (folder / f"{customer_id}.json").write_text(json.dumps(document))


def _findings(*severities: str, status: str = "ISSUE_IN_BOOKMARKED") -> pl.DataFrame:
    rows = [
        {
            "rule": "missing_data",
            "entity_type": "student",
            "sis_id": f"stu-{n}",
            "status": status,
            "severity": severity,
            "detail": f"Student {STUDENT} (stu-{n}) is missing from Bookmarked.",
            "remediation": "Bookmarked support: re-sync.",
        }
        for n, severity in enumerate(severities)
    ]
    return pl.DataFrame(rows, schema=FINDING_SCHEMA)


def _rows(table: pl.DataFrame) -> dict[str, dict]:
    return {row["customer_id"]: row for row in table.iter_rows(named=True)}


def _report(reports: Path, customer: str, at: datetime, *severities: str, **kw: str) -> None:
    write_report(customer, _findings(*severities, **kw), folder=reports, at=at)


def _hold(reports: Path, customer: str, at: datetime) -> None:
    hold = {
        "customer_id": customer,
        "fingerprint": "3f9c2a71b0de",
        "reasons": [
            "users: the SIS export has no users rows (Bookmarked has 40)",
            "enrollments: the SIS export has no enrollments rows (Bookmarked has 90)",
        ],
        "counts": {},
    }
    write_hold(customer, hold, folder=reports, at=at)


@pytest.fixture
def fleet(tmp_path: Path) -> tuple[Path, Path]:
    """Seven enabled customers, one of each situation, and a disabled one; their reports
    and holds."""
    settings, reports = tmp_path / "settings", tmp_path / "reports"
    settings.mkdir()
    names = ["crashed", "held", "critical", "many-high", "few-high", "stale", "never"]
    for number, customer in enumerate(names, 1):
        _customer(settings, customer, number)
    _customer(settings, "switched-off", 99, enabled=False)
    hour = timedelta(hours=1)
    _report(reports, "crashed", NOW - 30 * hour, "low")
    _report(reports, "held", NOW - 20 * hour, "high", "low")
    _hold(reports, "held", NOW - 2 * hour)
    _report(reports, "critical", NOW - 3 * hour, "medium")  # the earlier night
    _report(reports, "critical", NOW - 2 * hour, "critical", "low", status="ISSUE_IN_SOURCE")
    _report(reports, "many-high", NOW - 2 * hour, *["high"] * 5, "medium")
    _report(reports, "few-high", NOW - 2 * hour, "high", "high")
    _report(reports, "stale", NOW - 25 * hour, "medium")
    _report(reports, "switched-off", NOW - 2 * hour, "critical")
    return settings, reports


RUNS = {
    "crashed": LastRun(
        "a1b2c3d4e5f6", "FAILURE", NOW - 1 * timedelta(hours=1), error="the run's process died"
    )
}


def test_fleet_is_ranked_failed_held_then_worst_open_finding(fleet: tuple[Path, Path]) -> None:
    table = fleet_table(*fleet, RUNS, NOW)
    assert table.columns == FLEET_COLUMNS
    assert table["customer_id"].to_list() == [
        "crashed",
        "held",
        "critical",
        "many-high",
        "few-high",
        "stale",
        "never",
    ]
    assert table["rank"].to_list() == list(range(1, 8))
    assert table["status"].to_list() == ["failed", "held", "ok", "ok", "ok", "stale", "never"]
    rows = _rows(table)
    critical = rows["critical"]
    assert (critical["findings"], critical["critical"], critical["low"]) == (2, 1, 1)
    assert (critical["ISSUE_IN_SOURCE"], critical["ISSUE_IN_BOOKMARKED"]) == (2, 0)
    # new and resolved since the previous night: the medium one went, two came
    assert (critical["new"], critical["resolved"]) == (2, 1)
    assert critical["worst_severity"] == "critical"
    assert critical["last_scan_at"] == (NOW - timedelta(hours=2)).isoformat()
    assert rows["many-high"]["findings"] == 6 and rows["many-high"]["worst_severity"] == "high"
    assert rows["never"]["last_scan_at"] is None and rows["never"]["worst_severity"] is None
    assert rows["never"]["reason"] == "no complete report"
    assert "switched-off" not in rows


def test_failed_run_after_the_newest_report_names_its_reason_and_run(
    fleet: tuple[Path, Path],
) -> None:
    row = fleet_table(*fleet, RUNS, NOW).row(0, named=True)
    assert row["status"] == "failed"
    assert row["reason"] == "the run's process died (Dagster run a1b2c3d4)"
    # the open findings of its last report still count
    assert (row["findings"], row["low"], row["worst_severity"]) == (1, 1, "low")
    # without the instance's runs, the failure cannot be seen: the old report is stale
    assert _rows(fleet_table(*fleet, None, NOW))["crashed"]["status"] == "stale"


def test_a_failed_run_older_than_the_newest_report_is_history(fleet: tuple[Path, Path]) -> None:
    earlier = {"few-high": LastRun("0ld", "CANCELED", NOW - timedelta(hours=5), error="canceled")}
    rows = _rows(fleet_table(*fleet, earlier, NOW))
    assert rows["few-high"]["status"] == "ok"
    assert rows["few-high"]["reason"] is None


def test_held_from_the_hold_file_or_the_run_tag(fleet: tuple[Path, Path]) -> None:
    settings, reports = fleet
    reasons = (
        "users: the SIS export has no users rows (Bookmarked has 40); "
        "enrollments: the SIS export has no enrollments rows (Bookmarked has 90)"
    )
    rows = _rows(fleet_table(settings, reports, {}, NOW))
    assert (rows["held"]["status"], rows["held"]["reason"]) == ("held", reasons)
    assert rows["held"]["findings"] == 2  # the last complete report's findings stay open

    # the run carries the hold tag: its hold file gives the reasons
    tagged = {"held": LastRun("feedbeef00", "FAILURE", NOW - 3 * timedelta(hours=1), held=True)}
    row = fleet_table(settings, reports, tagged, NOW).row(0, named=True)
    assert (row["customer_id"], row["status"]) == ("held", "held")
    assert row["reason"] == f"{reasons} (Dagster run feedbeef)"

    # a held run whose hold file is gone (cleaned up): the run's own reason
    _hold_free = {"few-high": LastRun("cafe0001", "FAILURE", NOW, held=True, error="HELD few-high")}
    row = _rows(fleet_table(settings, reports, _hold_free, NOW))["few-high"]
    assert (row["status"], row["reason"]) == ("held", "HELD few-high (Dagster run cafe0001)")

    # a report written after the hold (the export was accepted) ends it
    _report(reports, "held", NOW - timedelta(hours=1), "low")
    rows = _rows(fleet_table(settings, reports, {}, NOW))
    assert rows["held"]["status"] == "ok"


def test_stale_after_a_day(fleet: tuple[Path, Path]) -> None:
    rows = _rows(fleet_table(*fleet, {}, NOW))
    assert rows["stale"]["status"] == "stale"
    assert rows["stale"]["reason"] == "newest report is 1 day(s) 1 h old"
    assert rows["stale"]["last_scan_at"] == (NOW - timedelta(hours=25)).isoformat()
    # 23 hours is still last night's scan
    later = _rows(fleet_table(*fleet, {}, NOW - timedelta(hours=2)))
    assert later["stale"]["status"] == "ok"


def test_fleet_csv_is_spreadsheet_safe_and_free_of_student_data(tmp_path: Path) -> None:
    settings, reports = tmp_path / "settings", tmp_path / "reports"
    settings.mkdir()
    _customer(settings, "formula", 1, name='=HYPERLINK("http://x","click")')
    _report(reports, "formula", NOW - timedelta(hours=1), "critical", "high")
    path = write_fleet_csv(fleet_table(settings, reports, None, NOW), tmp_path / "out" / "f.csv")
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    text = data.decode("utf-8-sig")
    assert text.splitlines()[0] == ",".join(FLEET_COLUMNS)
    assert '"\'=HYPERLINK(""http://x"",""click"")"' in text
    assert STUDENT not in text and "stu-" not in text
    assert [p.name for p in path.parent.iterdir()] == ["f.csv"]  # no temporary file left


def _failed_run(instance: dg.DagsterInstance, customer: str) -> str:
    """A customer's `reconcile_customer` run marked failed from outside (its process died)."""
    run = instance.create_run_for_job(
        dg.GraphDefinition("noop").to_job(RECONCILE_JOB), tags={"dagster/partition": customer}
    )
    instance.report_run_failed(run)
    return run.run_id


def test_fleet_asset_reads_the_instance_and_writes_the_csv(fleet: tuple[Path, Path]) -> None:
    settings, reports = fleet
    resources = {
        "reconciliation": ReconciliationResource(
            settings_dir=str(settings), reports_dir=str(reports)
        )
    }
    with dg.instance_for_test() as instance:
        _failed_run(instance, "crashed")
        result = dg.materialize([fleet_summary], instance=instance, resources=resources)
    assert result.success
    metadata = result.asset_materializations_for_node("fleet_summary")[0].metadata
    assert {
        "fleet",
        "counts_by_rule",
        "dagster/row_count",
        "customers",
        "failed",
        "held",
        "stale",
        "findings",
        "critical",
        "csv",
    } <= set(metadata)
    assert metadata["dagster/row_count"].value == 7
    assert (metadata["failed"].value, metadata["held"].value, metadata["stale"].value) == (1, 1, 1)
    assert metadata["findings.many-high"] == dg.MetadataValue.int(6)
    assert metadata["findings.never"] == dg.MetadataValue.int(0)
    assert "findings.switched-off" not in metadata
    table = metadata["fleet"].value
    assert table.splitlines()[2].startswith("| 1 | crashed | production | failed |")
    assert "missing\\_data" in metadata["counts_by_rule"].value
    latest = reports / FLEET_FOLDER / "latest.csv"
    assert latest.read_bytes() == Path(metadata["csv"].value).read_bytes()
    assert "crashed,Crashed District,production,failed" in latest.read_text("utf-8-sig")
    assert STUDENT not in latest.read_text("utf-8-sig") + table


def test_reconcile_fleet_prints_the_ranked_table(
    fleet: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    settings, reports = fleet
    monkeypatch.setenv("RECONCILIATION_REPORTS_DIR", str(reports))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "no-instance"))
    before = sorted(p for p in tmp_path.rglob("*"))
    assert main(["fleet", "--dir", str(settings)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == [
        "#", "customer", "environment", "status", "worst", "findings", "critical", "high",
        "medium", "low", "in", "SIS", "in", "Bookmarked", "new", "resolved", "last", "scan",
        "reason",
    ]  # fmt: skip
    assert [line.split()[1] for line in lines[1:8]] == [
        "held", "critical", "many-high", "few-high", "stale", "crashed", "never",
    ]  # fmt: skip
    assert lines[1].split()[3] == "held"
    assert lines[1].index("held") == lines[0].index("customer")
    assert lines[3].index("6") == lines[0].index("findings")  # aligned under its header
    assert (
        "7 customer(s): 0 failed, 1 held, 2 stale, 1 never scanned; 14 findings (1 critical)"
    ) in out
    assert f"no Dagster instance at {tmp_path / 'no-instance'}: failed runs are not shown" in out
    assert STUDENT not in out
    assert sorted(p for p in tmp_path.rglob("*")) == before  # writes nothing

    csv = tmp_path / "fleet.csv"
    assert main(["fleet", "--dir", str(settings), "--csv", str(csv)]) == 0
    assert csv.read_text("utf-8-sig").splitlines()[1].startswith("1,held,")


def test_reconcile_fleet_on_an_unreadable_settings_folder(tmp_path: Path, capsys) -> None:
    assert main(["fleet", "--dir", str(tmp_path / "missing")]) == 1
    missing = tmp_path / "missing"
    assert capsys.readouterr().out == f"ERROR {missing}: $: settings folder not found\n"


def test_reconcile_fleet_reads_the_runs_of_the_dagster_instance(
    fleet: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    settings, reports = fleet
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run_id = _failed_run(instance, "crashed")
    monkeypatch.setenv("RECONCILIATION_REPORTS_DIR", str(reports))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert main(["fleet", "--dir", str(settings)]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[1]
    assert first.split()[:4] == ["1", "crashed", "production", "failed"]
    assert first.endswith(f"(Dagster run {run_id[:8]})")
    assert "1 failed, 1 held, 1 stale, 1 never scanned" in out
    assert f"runs from the Dagster instance at {home}" in out


def test_reconcile_fleet_csv_that_cannot_be_written(
    fleet: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("RECONCILIATION_REPORTS_DIR", str(fleet[1]))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "no-instance"))
    (tmp_path / "a-file").write_text("")
    target = tmp_path / "a-file" / "fleet.csv"
    assert main(["fleet", "--dir", str(fleet[0]), "--csv", str(target)]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"ERROR cannot write the report: not a folder: {target}"
    )
