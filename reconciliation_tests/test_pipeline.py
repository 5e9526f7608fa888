"""End to end through Dagster on the demo data: assets, checks, reports, the `reconcile scan`
command on local storage and on dagster-postgres."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from reconciliation.defs.assets import (
    bookmarked_roster,
    mismatch_report,
    source_roster,
    source_roster_quality,
)
from reconciliation.defs.io_managers import RosterIOManager
from reconciliation.defs.resources import ReconciliationResource
from reconciliation.demo import generate_demo
from reconciliation.rules import RULES
from reconciliation.rules.data_quality import check_source_quality
from reconciliation.settings import DEFAULT_SETTINGS_DIR
from reconciliation.vocabulary import STATUSES
from reconciliation_tests.test_reports import CONTRACT_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
DEMO_CUSTOMERS = ("maple-charter", "riverside-usd")
RECONCILE = str(Path(sys.executable).with_name("reconcile"))


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shipped demo settings next to freshly generated demo data, laid out as
    in the project (settings/ and demo/data/ side by side), so the relative paths hold."""
    root = tmp_path_factory.mktemp("project")
    generate_demo(root / "demo" / "data")
    (root / "settings").mkdir()
    for customer in DEMO_CUSTOMERS:
        shutil.copy(DEFAULT_SETTINGS_DIR / f"{customer}.json", root / "settings")
    return root


def env_for(root: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "RECONCILIATION_SETTINGS_DIR": str(root / "settings"),
        "RECONCILIATION_REPORTS_DIR": str(root / "reports"),
        "RECONCILIATION_STORAGE_DIR": str(root / "storage"),
        "DAGSTER_HOME": str(root / "dagster_home"),
    }
    env.update(extra)
    return env


def test_materialize_a_demo_partition(demo_root: Path, tmp_path: Path) -> None:
    resources = {
        "reconciliation": ReconciliationResource(
            settings_dir=str(demo_root / "settings"), reports_dir=str(tmp_path / "reports")
        ),
        "roster_io_manager": RosterIOManager(base_dir=str(tmp_path / "rosters")),
    }
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("customers", ["riverside-usd"])  # as the sensor does
        assets = [source_roster, bookmarked_roster, mismatch_report, source_roster_quality]
        result = dg.materialize(
            assets, partition_key="riverside-usd", resources=resources, instance=instance
        )
        # the data-quality checks in a run without source_roster (execute_in_process wants a
        # partitioned asset beside them): they validate the stored roster
        alone = dg.materialize(
            assets,
            partition_key="riverside-usd",
            resources=resources,
            instance=instance,
            selection=dg.AssetSelection.checks_for_assets(source_roster)
            | dg.AssetSelection.assets(bookmarked_roster),
        )
    assert result.success and alone.success
    # the SIS first and its checks last: their process validates while the run reads
    # Bookmarked and runs the rules
    assert [e.step_key for e in result.all_events if e.is_step_start] == [
        "source_roster",
        "bookmarked_roster",
        "mismatch_report",
        "source_roster_quality",
    ]
    stored = RosterIOManager(base_dir=str(tmp_path / "rosters")).load_roster(
        dg.AssetKey("source_roster"), "riverside-usd"
    )
    expected = {r.name: (r.passed, r.unexpected_count) for r in check_source_quality(stored)}
    for run in (result, alone):
        quality = {
            e.check_name: (e.passed, e.metadata["unexpected_count"].value)
            for e in run.get_asset_check_evaluations()
            if e.asset_key == dg.AssetKey("source_roster")
        }
        assert quality == expected
    assert [e.step_key for e in alone.all_events if e.is_step_start] == [
        "bookmarked_roster",
        "source_roster_quality",
    ]
    materializations = [
        e.step_materialization_data.materialization
        for e in result.get_asset_materialization_events()
    ]
    meta = {m.asset_key.to_user_string(): m.metadata for m in materializations}
    for side in ("source_roster", "bookmarked_roster"):
        assert meta[side]["rows_users"].value > 100
        assert meta[side]["rows_enrollments"].value > 100
        columns = {c.name for c in meta[side]["dagster/column_schema"].schema.columns}
        assert {"sis_id", "role", "email_normalized", "bookmarked_id"} <= columns
    # the stored rosters are Parquet, one file per canonical table
    assert (tmp_path / "rosters" / "source_roster" / "riverside-usd" / "users.parquet").exists()
    evaluations = result.get_asset_check_evaluations()
    by_rule = {
        e.check_name: e for e in evaluations if e.asset_key == dg.AssetKey("mismatch_report")
    }
    assert set(by_rule) == set(RULES)
    assert any(not e.passed for e in by_rule.values()), "the demo has discrepancies of every kind"
    report = pl.read_csv(tmp_path / "reports" / "riverside-usd" / "latest" / "mismatches.csv")
    assert report.height == meta["mismatch_report"]["findings"].value
    assert set(CONTRACT_COLUMNS) <= set(report.columns)
    # the series worth plotting are numeric metadata under stable keys; the counts by rule
    # and status are one compact table
    report_meta = meta["mismatch_report"]
    for key in ("findings", "new", "persisting", "resolved", *STATUSES):
        assert isinstance(report_meta[key], dg.IntMetadataValue)
    for status in STATUSES:
        assert report_meta[status].value == report.filter(pl.col("status") == status).height
    assert not [k for k in report_meta if "." in k]  # no rule x status series
    counts = report_meta["counts"].value
    assert counts.startswith(r"| rule | ISSUE\_IN\_SOURCE | ISSUE\_IN\_BOOKMARKED | total |")
    assert isinstance(report_meta["preview"], dg.MarkdownMetadataValue)
    assert report_meta["preview"].value.startswith("| rule | status | severity |")
    # when Bookmarked last synced the customer, and how that sync ended
    last_sync = report_meta["bookmarked_last_sync"].value
    assert ": succeeded" in last_sync or ": failed" in last_sync
    # every check result belongs to the customer's partition
    assert {e.partition for e in evaluations} == {"riverside-usd"}


def test_scan_reports_every_customer_keeps_history_and_goes_on_past_a_failure(
    demo_root: Path, tmp_path: Path
) -> None:
    env = env_for(demo_root)
    first = subprocess.run([RECONCILE, "scan"], env=env, capture_output=True, text=True, cwd=ROOT)
    assert first.returncode == 0, first.stdout + first.stderr
    for customer in DEMO_CUSTOMERS:
        assert f"{customer}: ok" in first.stdout
    assert "findings" in first.stdout and "report" in first.stdout

    # The next night: riverside's export is gone and a new settings file is invalid. The
    # failure is riverside's alone, the invalid file is skipped with its error, and
    # maple-charter reports again, its findings all persisting from the first night.
    settings = tmp_path / "settings"
    settings.mkdir()
    for customer, source in (
        ("maple-charter", demo_root / "demo" / "data" / "maple-charter" / "oneroster"),
        ("riverside-usd", tmp_path / "nowhere"),
    ):
        # the files move folders: point them at the demo data absolutely
        doc = json.loads((demo_root / "settings" / f"{customer}.json").read_text())
        doc["source"]["location"] = str(source)
        doc["bookmarked"]["database_url"] = (
            f"sqlite:///{demo_root / 'demo' / 'data' / 'bookmarked.db'}"
        )
        (settings / f"{customer}.json").write_text(json.dumps(doc))
    (settings / "lincoln-usd.json").write_text('{"customer_id": "lincoln-usd",}')
    second = subprocess.run(
        [RECONCILE, "scan"],
        env=env_for(demo_root, RECONCILIATION_SETTINGS_DIR=str(settings)),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert second.returncode == 1
    assert f"WARNING skipped: {settings / 'lincoln-usd.json'}: line 1, column 31" in second.stdout
    assert "lincoln-usd: running" not in second.stdout
    assert "riverside-usd: FAILED (Dagster run " in second.stdout
    assert str(tmp_path / "nowhere") in second.stdout  # the failure's own message
    assert "maple-charter: ok" in second.stdout
    # the stack trace stays in the Dagster run; the terminal gets the message
    output = second.stdout + second.stderr
    assert "Traceback" not in output and "Stack Trace" not in output
    summary = json.loads(
        (demo_root / "reports" / "maple-charter" / "latest" / "summary.json").read_text()
    )
    assert summary["total"] > 0
    assert summary["new"] == 0 and summary["persisting"] == summary["total"]
