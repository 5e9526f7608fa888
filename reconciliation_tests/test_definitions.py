"""The whole definition graph loads, fast, without Great Expectations, and validates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_load_fast_and_without_great_expectations() -> None:
    # CPU time, not wall time: the suite runs on two busy cores, and what we promise is
    # the work of loading (dagster itself included), not the machine's contention
    code = (
        "import sys, time\n"
        "t = time.process_time()\n"
        "from reconciliation.definitions import defs\n"
        "defs.resolve_all_job_defs()\n"
        "print(time.process_time() - t)\n"
        "print('great_expectations' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    seconds, imported_gx = float(out[0]), out[1]
    assert imported_gx == "False"
    assert seconds < 2.0, f"definitions took {seconds:.2f} s to load"


def test_definition_graph() -> None:
    from reconciliation.definitions import defs
    from reconciliation.rules import RULES
    from reconciliation.rules.data_quality import CHECKS

    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("reconcile_customer")
    assert job.partitions_def is not None
    assert {"riverside-usd", "maple-charter"} <= set(job.partitions_def.get_partition_keys())
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        "source_roster",
        "bookmarked_roster",
        "mismatch_report",
    }
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert {("mismatch_report", rule) for rule in RULES} <= checks
    assert {("source_roster", check.name) for check in CHECKS} <= checks
    assert defs.resolve_schedule_def("nightly_scan").job_name == "reconcile_customer"


def test_dagster_cli_validates_the_workspace() -> None:
    dagster = Path(sys.executable).with_name("dagster")
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
