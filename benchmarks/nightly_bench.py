"""A nightly scan of N generated customers through the schedule's path, on 2 cores.

- **Data**: `--customers` (default 50) customers of 1,000 to 20,000 students, spread
  evenly, from the demo generator (`generate_world`, one seed per customer), each written
  as a user has it: a OneRoster 1.1 CSV folder and its own SQLite Bookmarked database,
  cached outside git (`--cache`, default `~/.cache/reconciliation/nightly-bench/`) and
  reused by later runs.
- **Path**: a private Dagster instance with the `dagster.yaml` that `reconcile` writes
  (QueuedRunCoordinator, per-source-host tag limits, the Bookmarked pool, run monitoring)
  and a real `dagster-daemon`. The `customer_partitions` sensor and the `nightly_scan`
  schedule are evaluated as the daemon would (their own code, on this instance), and each
  of the schedule's run requests becomes a run of the code location's `reconcile_customer`
  job submitted to the run queue; the daemon dequeues them within the limits and each runs
  in its own worker process.
- **Measured**: total wall time from the first submission to the last run's end, and per
  run, from its event log: queue wait (enqueued -> starting), launch (starting -> the worker
  started the run), the extraction steps (`source_roster` + `bookmarked_roster`), the rules
  and report (`mismatch_report`), the data-quality checks' step (`source_roster_quality`:
  waiting for the results of their process), and Dagster's overhead: launch plus what the
  run's duration holds besides its steps. The load average is printed: the figures depend on it.

Run from the project root:  .venv/bin/python benchmarks/nightly_bench.py [--customers 50]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
DEFAULT_CACHE = DEFAULT_CACHE / "reconciliation" / "nightly-bench"
SMALLEST, LARGEST = 1_000, 20_000
STEPS = ("source_roster", "bookmarked_roster", "mismatch_report", "source_roster_quality")


def sizes(customers: int) -> list[int]:
    """Students per customer, evenly from 1,000 to 20,000."""
    if customers == 1:
        return [SMALLEST]
    return [SMALLEST + (LARGEST - SMALLEST) * i // (customers - 1) for i in range(customers)]


def customer_id(index: int, students: int) -> str:
    return f"night-{index:02d}-{students}"


def prepare(index: int, students: int, cache: Path) -> Path:
    """One customer's files (OneRoster folder, its Bookmarked SQLite), generated if missing."""
    folder = cache / customer_id(index, students)
    if (folder / "manifest.json").exists():
        return folder
    from reconciliation.demo import generate_world
    from reconciliation.demo.profiles import benchmark_profile
    from reconciliation.demo.write import write_bookmarked_sqlite, write_oneroster

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    profile = dataclasses.replace(
        benchmark_profile(students),
        customer_id=customer_id(index, students),
        bookmarked_customer_id=5000 + index,
    )
    world = generate_world(students, 100 + index, profile=profile, today=date(2026, 12, 1))
    write_oneroster(world, folder / "oneroster")
    write_bookmarked_sqlite([world], folder / "bookmarked.db")
    (folder / "manifest.json").write_text(json.dumps({"students": students, "seed": 100 + index}))
    return folder


def write_settings(folder: Path, data: dict[str, Path]) -> None:
    folder.mkdir(parents=True)
    for index, (customer, path) in enumerate(data.items()):
        settings = {
            "customer_id": customer,
            "name": f"Nightly benchmark {customer}",
            "environment": "staging",
            "bookmarked": {
                "customer_id": 5000 + index,
                "database_url": f"sqlite:///{path / 'bookmarked.db'}",
            },
            "source": {"type": "oneroster_csv", "location": str(path / "oneroster")},
        }
        (folder / f"{customer}.json").write_text(json.dumps(settings, indent=2))


def start_daemon(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    daemon = Path(sys.executable).with_name("dagster-daemon")
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(daemon), "run", "-w", str(PROJECT_ROOT / "workspace.yaml")],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _timestamps(instance: object, run_id: str) -> dict[str, object]:
    """Each run-level event's time and each step's start and end, from the event log."""
    import dagster as dg

    kinds = {
        dg.DagsterEventType.RUN_ENQUEUED,
        dg.DagsterEventType.RUN_STARTING,
        dg.DagsterEventType.RUN_START,
        dg.DagsterEventType.RUN_SUCCESS,
        dg.DagsterEventType.RUN_FAILURE,
        dg.DagsterEventType.STEP_START,
        dg.DagsterEventType.STEP_SUCCESS,
        dg.DagsterEventType.STEP_FAILURE,
    }
    times: dict[str, object] = {"steps": {}}
    for record in instance.get_records_for_run(run_id, of_type=kinds).records:  # type: ignore[attr-defined]
        entry = record.event_log_entry
        kind = entry.dagster_event.event_type
        if kind.name.startswith("STEP_"):
            step = times["steps"].setdefault(entry.step_key, {})  # type: ignore[union-attr]
            step["start" if kind.name == "STEP_START" else "end"] = entry.timestamp
        else:
            times[kind.name] = entry.timestamp
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--keep", action="store_true", help="keep the instance and reports")
    args = parser.parse_args()

    started = time.perf_counter()
    data = {}
    for index, students in enumerate(sizes(args.customers)):
        data[customer_id(index, students)] = prepare(index, students, args.cache)
    print(
        f"{args.customers} customers, {sum(sizes(args.customers)):,} students "
        f"({SMALLEST:,}-{LARGEST:,}), data ready in {time.perf_counter() - started:.0f} s "
        f"(cached in {args.cache})"
    )

    root = Path(tempfile.mkdtemp(prefix="nightly-bench-"))
    home = root / "dagster_home"
    home.mkdir()
    from reconciliation.cli import DAGSTER_YAML

    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    write_settings(root / "settings", data)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RECONCILIATION_ALERT")},
        "DAGSTER_HOME": str(home),
        "RECONCILIATION_SETTINGS_DIR": str(root / "settings"),
        "RECONCILIATION_REPORTS_DIR": str(root / "reports"),
        "RECONCILIATION_STORAGE_DIR": str(root / "storage"),
    }
    os.environ.update(env)

    import dagster as dg

    from reconciliation.defs.schedules import nightly_scan
    from reconciliation.defs.sensors import customer_partitions_sensor
    from reconciliation.launch import open_location

    daemon = None
    try:
        with dg.DagsterInstance.get() as instance:
            # what the sensor daemon and the scheduler do, with their own code
            sensor = customer_partitions_sensor(dg.build_sensor_context(instance=instance))
            for request in sensor.dynamic_partitions_requests:
                instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
            now = datetime.now(UTC)
            requests = nightly_scan(
                dg.build_schedule_context(instance=instance, scheduled_execution_time=now)
            )
            daemon = start_daemon(env, root / "daemon.log")
            with open_location(instance) as location:
                submitted = time.perf_counter()
                run_ids = []
                for request in requests:
                    run = location.create_run(
                        request.partition_key,
                        tags={**request.tags, "dagster/schedule_name": "nightly_scan"},
                    )
                    instance.submit_run(run.run_id, location.workspace)
                    run_ids.append(run.run_id)
                print(
                    f"{len(run_ids)} runs queued in {time.perf_counter() - submitted:.1f} s; "
                    "the daemon runs them (max_concurrent_runs 4, 2 per source host)"
                )
                wait_for(instance, run_ids, daemon, root / "daemon.log")
                total = time.perf_counter() - submitted
            report(instance, run_ids, data, total)
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.terminate()
            daemon.wait(timeout=60)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
            time.sleep(3)  # the daemon's code server may write its last lines after it stops
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept in {root}")
    return 0


def wait_for(
    instance: object, run_ids: list[str], daemon: subprocess.Popen[bytes], log: Path
) -> None:
    """Poll until every run has ended, printing each as it does."""
    finished: set[str] = set()
    while len(finished) < len(run_ids):
        time.sleep(2)
        for run_id in run_ids:
            run = instance.get_run_by_id(run_id)  # type: ignore[attr-defined]
            if run and run.is_finished and run_id not in finished:
                finished.add(run_id)
                customer = run.tags["dagster/partition"]
                print(f"  [{len(finished)}/{len(run_ids)}] {customer}: {run.status.value}")
        if daemon.poll() is not None:
            raise SystemExit(f"the daemon stopped: see {log}")


def report(instance: object, run_ids: list[str], data: dict[str, Path], total: float) -> None:
    rows = []
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)  # type: ignore[attr-defined]
        times = _timestamps(instance, run_id)
        steps = times["steps"]
        step_time = {k: v["end"] - v["start"] for k, v in steps.items() if "end" in v}  # type: ignore[union-attr]
        end = times.get("RUN_SUCCESS") or times.get("RUN_FAILURE")
        launch = times["RUN_START"] - times["RUN_STARTING"]
        in_run = end - times["RUN_START"]
        rows.append(
            {
                "customer": run.tags["dagster/partition"],
                "status": run.status.value,
                "queued": times["RUN_STARTING"] - times["RUN_ENQUEUED"],
                "launch": launch,
                "extraction": step_time.get("source_roster", 0)
                + step_time.get("bookmarked_roster", 0),
                "rules_report": step_time.get("mismatch_report", 0),
                "checks": step_time.get("source_roster_quality", 0),
                "overhead": launch + in_run - sum(step_time.values()),
                "run": end - times["RUN_STARTING"],
            }
        )
    print(f"\nload average {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f}")
    columns = ("queued", "launch", "extraction", "rules_report", "checks", "overhead", "run")
    print(f"{'customer':<18} {'status':<8} " + " ".join(f"{c[:7]:>7}" for c in columns))
    for row in rows:
        values = " ".join(f"{row[c]:7.1f}" for c in columns)
        print(f"{row['customer']:<18} {row['status']:<8} {values}")

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    def mean(key: str) -> float:
        return statistics.fmean(r[key] for r in rows)

    succeeded = sum(r["status"] == "SUCCESS" for r in rows)
    print(
        f"\n{len(rows)} customer runs ({succeeded} succeeded) in {total:.0f} s wall "
        f"({total / len(rows):.1f} s per customer on the machine)"
    )
    for key, label in (
        ("run", "run (starting -> end)"),
        ("launch", "launch (worker start)"),
        ("extraction", "extraction steps"),
        ("rules_report", "rules + report step"),
        ("checks", "data-quality checks step"),
        ("overhead", "Dagster overhead"),
    ):
        print(f"  {label:<24} median {median(key):6.1f} s, mean {mean(key):6.1f} s")
    share = mean("overhead") / mean("run") if mean("run") else 0.0
    print(f"  Dagster overhead is {share:.0%} of a run's time (mean over runs)")


if __name__ == "__main__":
    sys.exit(main())
