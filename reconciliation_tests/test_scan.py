"""`reconcile scan` launches its runs through the code location (as the launchpad and the
schedule do), so the UI lists them under the job and can re-execute them; each run is its
own process, and a killed one fails its customer only. Each run costs a process start:
these tests keep to four runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.tags import REPOSITORY_LABEL_TAG

from reconciliation.cli import ensure_dagster_home
from reconciliation.defs.jobs import RECONCILE_JOB
from reconciliation.demo import generate_demo
from reconciliation.launch import RECONCILE_JOB as LAUNCHED_JOB
from reconciliation.launch import WORKER_DIED, LaunchError, log_path, open_location
from reconciliation.scan import scan_customers
from reconciliation.settings import DEFAULT_SETTINGS_DIR

ROOT = Path(__file__).resolve().parents[1]
RECONCILE = str(Path(sys.executable).with_name("reconcile"))


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "data"
    generate_demo(out)
    return out


def write_settings(folder: Path, demo_data: Path, customer: str, location: Path) -> None:
    """The shipped demo settings of `customer`, with absolute paths into `demo_data`."""
    doc = json.loads((DEFAULT_SETTINGS_DIR / f"{customer}.json").read_text())
    doc["source"]["location"] = str(location)
    doc["bookmarked"]["database_url"] = f"sqlite:///{demo_data / 'bookmarked.db'}"
    folder.mkdir(exist_ok=True)
    (folder / f"{customer}.json").write_text(json.dumps(doc))


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dg.DagsterInstance:
    """A Dagster instance as `reconcile scan` makes it (DefaultRunLauncher, queued
    coordinator), with the project's folders in tmp_path; the code server inherits them."""
    for variable, folder in (
        ("RECONCILIATION_SETTINGS_DIR", "settings"),
        ("RECONCILIATION_REPORTS_DIR", "reports"),
        ("RECONCILIATION_STORAGE_DIR", "storage"),
    ):
        monkeypatch.setenv(variable, str(tmp_path / folder))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    home = ensure_dagster_home()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def test_launched_job_is_the_definitions_job() -> None:
    assert LAUNCHED_JOB == RECONCILE_JOB


def test_scan_runs_come_from_the_code_location_and_re_execute(
    instance: dg.DagsterInstance, demo_data: Path, tmp_path: Path
) -> None:
    write_settings(
        tmp_path / "settings",
        demo_data,
        "riverside-usd",
        demo_data / "riverside-usd" / "oneroster.zip",
    )
    lines: list[str] = []
    [outcome] = scan_customers(
        ["riverside-usd"], instance=instance, progress=lines.append, tags={"team": "support"}
    )
    assert outcome.succeeded, outcome.error
    assert outcome.findings > 0 and outcome.report_folder
    assert lines[-1].startswith("[1/1] riverside-usd: ok, ")

    run = instance.get_run_by_id(outcome.run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    origin = run.remote_job_origin
    assert origin is not None, "a run without a remote origin cannot be re-executed in the UI"
    assert origin.repository_origin.code_location_origin.location_name == "reconciliation"
    assert origin.job_name == RECONCILE_JOB
    assert run.tags["dagster/code_location"] == "reconciliation"
    assert run.tags["dagster/partition"] == "riverside-usd"
    assert run.tags["dagster/partition_set"] == "reconcile_customer_partition_set"
    assert run.tags["reconciliation/trigger"] == "cli"
    assert run.tags["team"] == "support"
    assert run.tags["dagster/max_runtime"] == "3600"  # the job's own tags come along
    # the job's Runs tab in the UI filters on the job and its repository label
    listed = instance.get_runs(
        dg.RunsFilter(
            job_name=RECONCILE_JOB, tags={REPOSITORY_LABEL_TAG: "__repository__@reconciliation"}
        )
    )
    assert [r.run_id for r in listed] == [run.run_id]

    # Re-execute, as the UI's button does (GraphQL launchRunReexecution)
    with open_location(instance) as location:
        again = location.reexecute(run.run_id)
        finished, died = location.watch(again.run_id)
    assert died is None
    assert finished.status == dg.DagsterRunStatus.SUCCESS
    assert finished.parent_run_id == run.run_id and finished.root_run_id == run.run_id
    assert finished.tags["dagster/partition"] == "riverside-usd"
    assert finished.remote_job_origin is not None


def _kill_worker_of(instance: dg.DagsterInstance, partition: str, killed: list[int]) -> None:
    """SIGKILL the run worker of `partition`'s run once it has started, as the OOM killer
    would: the pid comes from the run's own "Started process for run" event."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for run in instance.get_runs(dg.RunsFilter(tags={"dagster/partition": partition})):
            for record in instance.get_records_for_run(
                run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT
            ).records:
                event = record.event_log_entry.dagster_event
                if event and "pid" in event.engine_event_data.metadata:
                    pid = int(event.engine_event_data.metadata["pid"].value)
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
        time.sleep(0.1)


def test_a_killed_run_worker_fails_its_customer_only(
    instance: dg.DagsterInstance, demo_data: Path, tmp_path: Path
) -> None:
    """Through `reconcile scan`, whose runs are forks of the command (`launch.forks_runs`):
    the command survives its worker, records the death on the run and scans on."""
    # maple-charter's export is a named pipe nobody writes to: its run blocks reading it,
    # so the worker is surely alive when it is killed
    stalled = tmp_path / "stalled.zip"
    os.mkfifo(stalled)
    write_settings(tmp_path / "settings", demo_data, "maple-charter", stalled)
    write_settings(
        tmp_path / "settings",
        demo_data,
        "riverside-usd",
        demo_data / "riverside-usd" / "oneroster.zip",
    )
    killed: list[int] = []
    killer = threading.Thread(
        target=_kill_worker_of, args=(instance, "maple-charter", killed), daemon=True
    )
    killer.start()
    scan = subprocess.run(
        [RECONCILE, "scan", "--dir", str(tmp_path / "settings")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    killer.join(timeout=5)
    assert killed, f"the maple-charter run never reported its worker's pid: {scan.stdout}"
    assert scan.returncode == 1, scan.stdout + scan.stderr
    [maple] = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": "maple-charter"}))
    [riverside] = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": "riverside-usd"}))
    assert maple.status == dg.DagsterRunStatus.FAILURE
    assert riverside.status == dg.DagsterRunStatus.SUCCESS
    lines = scan.stdout.splitlines()
    assert lines[1] == (
        f"[1/2] maple-charter: FAILED (Dagster run {maple.run_id[:8]}): {WORKER_DIED}: "
        "it was terminated by signal 9 (SIGKILL)"
    )
    assert lines[3].startswith("[2/2] riverside-usd: ok, ")


def _scan_a_stalled_customer(demo_data: Path, tmp_path: Path) -> subprocess.Popen[str]:
    """`reconcile scan` of maple-charter, whose export is a named pipe nobody writes to: its
    SIS read blocks until the run is stopped. Ctrl-C reaches the command as in a terminal."""
    stalled = tmp_path / "stalled.zip"
    os.mkfifo(stalled)
    write_settings(tmp_path / "settings", demo_data, "maple-charter", stalled)
    return subprocess.Popen(
        [RECONCILE, "scan", "--dir", str(tmp_path / "settings")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for_the_sis_read(instance: dg.DagsterInstance, partition: str) -> dg.DagsterRun:
    """`partition`'s run once its first step (the SIS read) has started: a run under way,
    as a user stops it (a CANCELING set before the run's own start event is overwritten
    by that event, in Dagster as here)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for run in instance.get_runs(dg.RunsFilter(tags={"dagster/partition": partition})):
            steps = instance.get_records_for_run(
                run.run_id, of_type=dg.DagsterEventType.STEP_START
            ).records
            if steps:
                time.sleep(0.5)  # into the read
                return run
        time.sleep(0.1)
    raise AssertionError(f"{partition}'s run never started its first step")


def test_ctrl_c_cancels_the_run_under_way(
    instance: dg.DagsterInstance, demo_data: Path, tmp_path: Path
) -> None:
    """Ctrl-C on `reconcile scan`: one line, exit 130, and the run under way ends CANCELED
    (its extraction step has a retry policy, which Dagster would apply to the interrupt)."""
    scan = _scan_a_stalled_customer(demo_data, tmp_path)
    run = _wait_for_the_sis_read(instance, "maple-charter")
    scan.send_signal(signal.SIGINT)
    out, err = scan.communicate(timeout=60)
    assert scan.returncode == 130, out + err
    assert err.strip() == "interrupted: the run under way was asked to stop"
    deadline = time.monotonic() + 60  # the worker ends the run after the command
    while not instance.get_run_by_id(run.run_id).is_finished and time.monotonic() < deadline:
        time.sleep(0.2)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.CANCELED


def test_the_uis_terminate_cancels_a_forked_run(
    instance: dg.DagsterInstance, demo_data: Path, tmp_path: Path
) -> None:
    """The UI's Terminate marks the run CANCELING (its launcher's code server does not know
    the command's fork): the worker sees it and stops; the scan reports the customer."""
    scan = _scan_a_stalled_customer(demo_data, tmp_path)
    run = _wait_for_the_sis_read(instance, "maple-charter")
    instance.report_run_canceling(run)  # what DefaultRunLauncher.terminate does first
    out, err = scan.communicate(timeout=60)  # the worker polls every 10 s
    assert scan.returncode == 1, out + err
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.CANCELED
    assert "maple-charter: FAILED" in out and "the run was asked to stop" in out


def test_runs_fork_only_where_the_command_allows_it_and_no_pool_runs() -> None:
    # what `reconcile scan` does before its first fork: settings validation imports the
    # connectors (polars, pyarrow), which must not start polars' pool
    probe = (
        "import reconciliation.cli, reconciliation.definitions, reconciliation.scan\n"
        "from reconciliation.launch import allow_forked_runs, fork_is_safe\n"
        "from reconciliation.settings import DEFAULT_SETTINGS_DIR, load_settings\n"
        "assert load_settings(DEFAULT_SETTINGS_DIR).customers\n"
        "print(fork_is_safe())\n"
        "allow_forked_runs()\n"
        "print(fork_is_safe())\n"
        "import polars as pl\n"
        "pl.DataFrame({'a': [2, 1]}).sort('a')\n"
        "print(fork_is_safe())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.split() == ["False", "True", "False"]


@pytest.mark.parametrize("fork_runs", [True, False], ids=["in-process", "code-server"])
def test_a_code_location_that_does_not_load_is_one_line_and_a_logged_traceback(
    instance: dg.DagsterInstance, tmp_path: Path, fork_runs: bool
) -> None:
    (tmp_path / "broken_definitions.py").write_text(
        "raise RuntimeError('the definitions cannot be built')\n"
    )
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_file:\n      relative_path: broken_definitions.py\n"
        "      location_name: reconciliation\n"
    )
    with (
        pytest.raises(LaunchError) as raised,
        open_location(instance, workspace, fork_runs=fork_runs),
    ):
        pass
    assert str(raised.value) == (
        "the code location 'reconciliation' did not load: RuntimeError: the definitions "
        f"cannot be built (details in {log_path(instance)})"
    )
    # the log has where it failed: the definitions' file and line
    assert 'broken_definitions.py", line 1, in <module>' in log_path(instance).read_text()


def test_dagster_home_that_is_a_file_is_one_line_naming_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a folder")
    below = home / "dagster"
    for value, message in (
        (home, f"ERROR DAGSTER_HOME={home} is a file, not a folder"),
        (below, f"ERROR DAGSTER_HOME={below}: {home} is a file, not a folder"),
    ):
        result = subprocess.run(
            [RECONCILE, "scan", "--dir", str(DEFAULT_SETTINGS_DIR)],
            env={**os.environ, "DAGSTER_HOME": str(value)},
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert result.returncode == 1
        assert result.stderr == message + "\n"
        assert "Traceback" not in result.stdout
    assert home.read_text() == "not a folder"
