"""The whole definition graph loads, fast, without Great Expectations, and validates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_definitions_in_a_fresh_process() -> tuple[float, float, set[str]]:
    """CPU seconds to load the code location (dagster's own import included), the part of
    it that is ours, and which heavy libraries the load imported."""
    code = (
        "import sys, time\n"
        "t = time.process_time()\n"
        "import dagster\n"
        "d = time.process_time()\n"
        "from reconciliation.definitions import defs\n"
        "defs.resolve_all_job_defs()\n"
        "e = time.process_time()\n"
        "heavy = {'great_expectations', 'polars', 'pandas', 'boto3', 'paramiko', 'authlib'}\n"
        "print(e - t, e - d, ','.join(sorted(heavy & set(sys.modules))) or '-')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), float(out[1]), set(out[2].split(",")) - {"-"}


@pytest.mark.timing
def test_definitions_load_fast_and_without_heavy_libraries() -> None:
    # CPU time, best of three fresh processes; `make test` runs the timing tests alone,
    # before the parallel suite, so the figure is the work of loading, not contention
    runs = [_load_definitions_in_a_fresh_process() for _ in range(3)]
    total, ours = min(r[0] for r in runs), min(r[1] for r in runs)
    assert runs[0][2] == set(), f"loading the definitions imported {runs[0][2]}"
    assert total < 2.0, f"the definitions took {total:.2f} s of CPU to load"
    assert ours < 0.5, f"our part of loading took {ours:.2f} s of CPU"


def test_definition_graph() -> None:
    from reconciliation.definitions import defs
    from reconciliation.rules import RULES
    from reconciliation.rules.data_quality import CHECKS

    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("reconcile_customer")
    # customers are dynamic partitions the customer_partitions sensor keeps in step
    assert isinstance(job.partitions_def, dg.DynamicPartitionsDefinition)
    assert job.partitions_def.name == "customers"
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        "source_roster",
        "bookmarked_roster",
        "mismatch_report",
        "fleet_summary",
    }
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert {("mismatch_report", rule) for rule in RULES} <= checks
    assert {("source_roster", check.name) for check in CHECKS} <= checks
    assert defs.resolve_schedule_def("nightly_scan").job_name == "reconcile_customer"
    assert {s.name for s in defs.sensors or []} == {"customer_partitions", "nightly_alerts"}


def test_dagster_cli_validates_the_workspace(tmp_path: Path) -> None:
    """The README's `dagster definitions validate` passes on a fresh checkout, where no
    Dagster instance folder exists yet (make exports DAGSTER_HOME=.dagster_home)."""
    dagster = Path(sys.executable).with_name("dagster")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_bad_settings_file_never_stops_the_other_customers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The customer_partitions sensor adds every valid customer as a partition, whatever
    sits beside them: a customer_id with a trailing newline (which `$` in a pattern lets
    through), JSON that is a list, a folder named like a settings file, bytes that are not
    UTF-8, NaN."""
    from reconciliation.defs.sensors import customer_partitions_sensor

    good = {
        "name": "Good district",
        "environment": "staging",
        "source": {"type": "oneroster_csv", "location": "x.zip"},
    }
    for number, customer in enumerate(("good-one", "good-two", "upper-case"), start=1):
        document = {**good, "customer_id": customer, "bookmarked": {"customer_id": number}}
        document["bookmarked"]["database_url"] = "sqlite:///x.db"
        name = "upper-case.JSON" if customer == "upper-case" else f"{customer}.json"
        (tmp_path / name).write_text(json.dumps(document))
    newline_id = {**good, "customer_id": "abc\n", "bookmarked": {"customer_id": 9}}
    newline_id["bookmarked"]["database_url"] = "sqlite:///x.db"
    (tmp_path / "abc.json").write_text(json.dumps(newline_id))
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "latin1.json").write_bytes(b'{"customer_id": "caf\xe9"}')
    (tmp_path / "nan.json").write_text('{"customer_id": NaN}')
    monkeypatch.setenv("RECONCILIATION_SETTINGS_DIR", str(tmp_path))
    with dg.instance_for_test() as instance:
        result = customer_partitions_sensor(dg.build_sensor_context(instance=instance))
    assert isinstance(result, dg.SensorResult)
    [request] = result.dynamic_partitions_requests
    assert list(request.partition_keys) == ["good-one", "good-two", "upper-case"]
    assert (
        "settings left out of the customer partitions (run `reconcile settings validate`): "
        "abc.json, folder.json, latin1.json, list.json, nan.json"
    ) in capfd.readouterr().err
