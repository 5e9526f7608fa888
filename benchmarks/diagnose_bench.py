"""One person's diagnosis next to a full scan of the same customer.

The customer is `scan_bench.py`'s generated one (default 100,000 students: a OneRoster 1.1
CSV folder and a SQLite Bookmarked database, cached outside git and shared with that
benchmark). A few people are diagnosed: a student with parents, a parent, and a student
number (found by the second kind of lookup).

Measured, each `--repeat` times:

- the diagnosis step in this process, as the op runs it: the connectors built from the
  settings, the narrow lookups on both sides (CSV filtered scans and parameterized SQLite
  queries, the two sides at once), the slice, every rule, the verdicts; with the time
  spent in each side's lookups; target under 1 s;
- the whole run: `reconcile diagnose` in a new process (one Dagster run in its worker
  process, a fork of the command), with the run's own time from its event log (launch to
  success); target under 3 s for the run;
- the baseline: `reconcile scan` of the same customer in a new process, the run's time
  from its event log likewise.

Ratios are printed against the scan (how much of a scan's time one diagnosis costs).
Run from the project root:  .venv/bin/python benchmarks/diagnose_bench.py [--students 100000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import Phase  # noqa: E402
from scan_bench import (  # noqa: E402
    DEFAULT_CACHE,
    PROJECT_ROOT,
    Customer,
    measure,
    prepare,
    scan_command,
    scan_env,
)

TARGET_STEP = 1.0  # seconds, the diagnosis step
TARGET_RUN = 3.0  # seconds, the Dagster run (launch to success)


def subjects(customer: Customer) -> list[tuple[str, dict[str, str]]]:
    """A student with parents, a parent, and a student by number, from the SIS files."""
    import polars as pl

    users = pl.read_csv(customer.oneroster / "users.csv", infer_schema=False)
    students = users.filter(
        (pl.col("role") == "student") & pl.col("agentSourcedIds").fill_null("").ne("")
    )
    student = students.row(len(students) // 2, named=True)
    parent = student["agentSourcedIds"].split(",")[0].strip()
    other = students.row(len(students) // 3, named=True)
    return [
        ("a student with parents (sourcedId)", {"student": student["sourcedId"]}),
        ("a parent (sourcedId)", {"student": parent}),
        ("a student by student number", {"student": other["identifier"]}),
    ]


def diagnose_in_process(customer: Customer, query: dict[str, str]) -> dict[str, float]:
    """The op's work, timed: connectors, lookups, slice, rules, verdicts."""
    from reconciliation.connectors import bookmarked_connector, source_connector
    from reconciliation.diagnosis.run import diagnose
    from reconciliation.diagnosis.scope import SideReader
    from reconciliation.settings import load_settings

    started = time.perf_counter()
    settings = load_settings(customer.settings_dir).get(customer.customer_id)
    source = SideReader("source", source_connector(settings))
    bookmarked = SideReader("bookmarked", bookmarked_connector(settings))
    diagnosis, _ = diagnose(source, bookmarked, settings.customer_id, settings=settings, **query)
    total = time.perf_counter() - started
    if not diagnosis.people:
        raise SystemExit(f"the diagnosis found nobody for {query}: {diagnosis.notes}")
    return {
        "step": total,
        "SIS lookups": source.seconds,
        "Bookmarked lookups": bookmarked.seconds,
        "people": len(diagnosis.people),
        "narrow": float(source.narrow and bookmarked.narrow),
    }


def run_seconds(home: Path, job: str) -> float:
    """The newest run of `job`: seconds from its launch to its success (event log)."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        [run] = instance.get_runs(filters=dg.RunsFilter(job_name=job), limit=1)
        stamps = [entry.timestamp for entry in instance.all_logs(run.run_id)]
    return max(stamps) - min(stamps)


def diagnose_command(customer: Customer, query: dict[str, str]) -> list[str]:
    [(kind, value)] = query.items()
    flag = "--student" if kind == "student" else "--parent-email"
    return [
        sys.executable,
        "-m",
        "reconciliation.cli",
        "diagnose",
        "--customer",
        customer.customer_id,
        flag,
        value,
        "--dir",
        str(customer.settings_dir),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--regenerate", action="store_true", help="rebuild the cached files")
    args = parser.parse_args(argv)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"load average {load} on {os.cpu_count()} CPUs")
    customer = prepare(args.students, args.cache, args.regenerate)
    people = subjects(customer)
    print(f"\n## {args.students:,} students ({customer.folder}); SIS: CSV, Bookmarked: SQLite")

    # the step, in process (one untimed diagnosis first: imports and the OS file cache)
    diagnose_in_process(customer, people[0][1])
    step = Phase("diagnosis step")
    for what, query in people:
        parts = [
            step.run(lambda q=query: diagnose_in_process(customer, q)) for _ in range(args.repeat)
        ]
        median = {k: statistics.median(p[k] for p in parts) for k in parts[0]}
        print(
            f"  step, {what}: {median['step']:.3f} s (the two sides read at once: SIS "
            f"lookups {median['SIS lookups']:.3f} s, Bookmarked lookups "
            f"{median['Bookmarked lookups']:.3f} s; {median['people']:.0f} people, "
            f"narrow on both sides: {bool(median['narrow'])})"
        )
    verdict = "met" if step.median < TARGET_STEP else "MISSED"
    print(
        f"  diagnosis step, median of all: {step.median:.3f} s; target < {TARGET_STEP} s: {verdict}"
    )

    with tempfile.TemporaryDirectory(prefix="diagnose-bench-") as work:
        env = scan_env(Path(work))
        home = Path(work) / "dagster_home"

        def timed(label: str, command: list[str], job: str) -> tuple[float, float]:
            """One command in a new process: its wall time and its Dagster run's."""
            done = measure(command, env)
            if done.code:
                tail = "\n".join(line for _, line in done.lines[-15:])
                raise SystemExit(f"reconcile {command[3]} failed ({done.code}):\n{tail}")
            run = run_seconds(home, job)
            print(f"  {label} {done.wall:.2f} s wall, the Dagster run {run:.2f} s", flush=True)
            return done.wall, run

        diagnoses = [
            timed(
                f"run {attempt}: reconcile diagnose",
                diagnose_command(customer, people[(attempt - 1) % len(people)][1]),
                "diagnose_student",
            )
            for attempt in range(1, args.repeat + 1)
        ]
        baselines = [
            timed(
                f"baseline {attempt}: reconcile scan", scan_command(customer), "reconcile_customer"
            )
            for attempt in range(1, args.repeat + 1)
        ]
    wall, run = (statistics.median(times) for times in zip(*diagnoses, strict=True))
    scan_wall, scan_run = (statistics.median(times) for times in zip(*baselines, strict=True))
    print(f"\n  medians of {args.repeat}:")
    print(
        f"  diagnosis step {step.median:.3f} s vs the scan's run {scan_run:.2f} s: "
        f"{step.median / scan_run:.3f}x"
    )
    verdict = "met" if run < TARGET_RUN else "MISSED"
    print(
        f"  diagnose_student run {run:.2f} s vs reconcile_customer run {scan_run:.2f} s: "
        f"{run / scan_run:.3f}x; target run < {TARGET_RUN} s: {verdict}"
    )
    print(
        f"  reconcile diagnose {wall:.2f} s vs reconcile scan {scan_wall:.2f} s (new "
        f"processes, the whole commands): {wall / scan_wall:.3f}x"
    )
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"\nload average {load} at the end; project {PROJECT_ROOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
