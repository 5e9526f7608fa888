"""A whole `reconcile scan --customer` next to a hand-written DuckDB load-and-diff.

For each size (`--students`, default 3,000 and 200,000; 1,000,000 on request) one
customer is generated with the demo generator (`generate_world`) and written as a user
would have it: a OneRoster 1.1 CSV folder, a SQLite Bookmarked database and a settings
file. The files are cached outside git (`--cache`, default
`~/.cache/reconciliation/scan-bench/<students>/`) and reused by later runs, since a
million students take minutes to write.

Then, alternately `--repeat` times in the same run:

- the scan: `reconcile scan --customer bench-<N> --dir <settings>` in a new process, as a
  user runs it (one Dagster run in its own worker process, a fork of the command; reports
  written),
  on a private Dagster instance, reports and storage folder made for this benchmark;
- the baseline: a new Python process running what a person would write by hand: DuckDB
  reads the CSV files, the raw sqlite3 driver reads the customer's Bookmarked rows (the
  sqlite extension needs a download), and DuckDB computes the core anti-joins both ways
  (live schools, users, classes by sourcedId; live student/teacher enrollments by class
  and user; parent-student links), fetching every differing row.

Each side's wall time, CPU time (the process and every child it waited for, from
`wait4`) and peak RSS (the largest single process of the tree, `ru_maxrss`) are printed,
with the ratio scan / baseline (medians) against the targets: at most 1.5x at 200k and
1M students, a 3k-student scan under 5 s wall, under 3 GB at 1M. The scan's time is then
split: from its output lines (definitions loaded, run done, exit) and from the run's
event log (worker start, each step; inside `source_roster` the SIS read and the Parquet
write; the data-quality checks from the frames' hand-over to their results).

Run from the project root:  .venv/bin/python benchmarks/scan_bench.py [--students 3000,200000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

TARGET_RATIO = 1.5
TARGET_SMALL_WALL = 5.0  # seconds, a 3k-student customer's whole scan
TARGET_PEAK_BYTES = 3e9  # at 1M students
SEED = 11
GIB = 1024**3
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
DEFAULT_CACHE = DEFAULT_CACHE / "reconciliation" / "scan-bench"


# -- the data: one generated customer per size, cached --------------------------------------


@dataclass(frozen=True)
class Customer:
    students: int
    folder: Path

    @property
    def customer_id(self) -> str:
        return f"bench-{self.students}"

    @property
    def settings_dir(self) -> Path:
        return self.folder / "settings"

    @property
    def oneroster(self) -> Path:
        return self.folder / "oneroster"

    @property
    def database(self) -> Path:
        return self.folder / "bookmarked.db"

    @property
    def bookmarked_customer_id(self) -> int:
        return json.loads((self.folder / "manifest.json").read_text())["bookmarked_customer_id"]


def prepare(students: int, cache: Path, regenerate: bool) -> Customer:
    """The customer's files, generated when missing (or `regenerate`)."""
    customer = Customer(students, cache / str(students))
    manifest = customer.folder / "manifest.json"
    if manifest.exists() and not regenerate:
        return customer
    from reconciliation.demo import generate_world
    from reconciliation.demo.write import write_bookmarked_sqlite, write_oneroster

    print(f"generating {students:,} students into {customer.folder} (cached for later runs)")
    started = time.perf_counter()
    if customer.folder.exists():
        shutil.rmtree(customer.folder)
    customer.settings_dir.mkdir(parents=True)
    world = generate_world(students, SEED, today=date.today())
    write_oneroster(world, customer.oneroster)
    counts = write_bookmarked_sqlite([world], customer.database)
    settings = {
        "customer_id": customer.customer_id,
        "name": f"Scan benchmark, {students:,} students",
        "environment": "staging",
        "bookmarked": {
            "customer_id": world.profile.bookmarked_customer_id,
            "database_url": "sqlite:///../bookmarked.db",
        },
        "source": {"type": "oneroster_csv", "location": "../oneroster"},
    }
    path = customer.settings_dir / f"{customer.customer_id}.json"
    path.write_text(json.dumps(settings, indent=2))
    manifest.write_text(
        json.dumps(
            {
                "students": students,
                "seed": SEED,
                "generated_on": date.today().isoformat(),
                "bookmarked_customer_id": world.profile.bookmarked_customer_id,
                "source_counts": world.source_counts(),
                "bookmarked_counts": counts,
                "planted_findings": world.ground_truth.height,
            },
            indent=2,
        )
    )
    print(f"  written in {time.perf_counter() - started:.0f} s")
    return customer


# -- running a process and measuring it -------------------------------------------------------


@dataclass
class Measured:
    wall: float
    cpu: float  # user + system of the process and every descendant it reaped
    peak: int  # ru_maxrss of the largest single process in the tree, bytes
    code: int
    lines: list[tuple[float, str]]  # (seconds since start, line) of its output


def measure(command: list[str], env: dict[str, str]) -> Measured:
    """Run `command` to its end; times from `wait4`, output lines with their arrival time."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append((time.perf_counter() - started, line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    return Measured(
        wall,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss * 1024,
        process.returncode,
        lines,
    )


@dataclass
class Side:
    name: str
    runs: list[Measured] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return statistics.median(run.wall for run in self.runs)

    @property
    def cpu(self) -> float:
        return statistics.median(run.cpu for run in self.runs)

    @property
    def peak(self) -> int:
        return max(run.peak for run in self.runs)


# -- the scan ---------------------------------------------------------------------------------


def scan_command(customer: Customer) -> list[str]:
    return [
        sys.executable,
        "-m",
        "reconciliation.cli",
        "scan",
        "--customer",
        customer.customer_id,
        "--dir",
        str(customer.settings_dir),
    ]


def scan_env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DAGSTER_HOME=str(work / "dagster_home"),
        RECONCILIATION_REPORTS_DIR=str(work / "reports"),
        RECONCILIATION_STORAGE_DIR=str(work / "storage"),
    )
    return env


def output_phases(run: Measured) -> dict[str, float]:
    """Seconds of the scan's phases from when its output lines arrived."""
    when = {}
    for seconds, line in run.lines:
        if line.endswith(": running") and "start" not in when:
            when["start"] = seconds
        elif line.startswith("[") and ("start" in when and "run" not in when):
            when["run"] = seconds
        elif " customer(s) in " in line:
            when["summary"] = seconds
    if len(when) < 3:
        return {}
    return {
        "process start, imports, settings, definitions loaded": when["start"],
        "the run (create, launch, watch)": when["run"] - when["start"],
        "after the run (a code server's stop, if any)": when["summary"] - when["run"],
        "exit": run.wall - when["summary"],
    }


def run_phases(home: Path) -> dict[str, float]:
    """Seconds of the newest run's phases from its event log."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        [run] = instance.get_runs(limit=1)
        events = [
            (entry.timestamp, entry.dagster_event, entry)
            for entry in instance.all_logs(run.run_id)
            if entry.dagster_event is not None or entry.user_message
        ]
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for stamp, event, entry in events:
        step = entry.step_key or ""
        kind = event.event_type.name if event is not None else "LOG"
        if kind == "ENGINE_EVENT" and "Started process" in (event.message or ""):
            kind = "WORKER_STARTED"
        key = f"{step}:{kind}"
        first.setdefault(key, stamp)
        last[key] = stamp
    phases: dict[str, float] = {}

    def between(name: str, start: str, end: str, *, end_last: bool = False) -> None:
        stop = (last if end_last else first).get(end)
        if start in first and stop is not None:
            phases[name] = stop - first[start]

    between("launch -> worker process started", ":RUN_STARTING", ":WORKER_STARTED")
    between("worker started -> run start", ":WORKER_STARTED", ":RUN_START")
    for step in ("source_roster", "bookmarked_roster", "mismatch_report", "source_roster_quality"):
        between(f"step {step}", f"{step}:STEP_START", f"{step}:STEP_SUCCESS")
    between(
        "  source_roster: read, frames to the checks' process",
        "source_roster:STEP_START",
        "source_roster:STEP_OUTPUT",
    )
    between(
        "  source_roster: Parquet write",
        "source_roster:STEP_OUTPUT",
        "source_roster:HANDLED_OUTPUT",
    )
    between(
        "  data-quality checks (GX): frames sent -> results in",
        "source_roster:STEP_OUTPUT",
        "source_roster_quality:ASSET_CHECK_EVALUATION",
    )
    between(
        "  bookmarked_roster: read",
        "bookmarked_roster:STEP_START",
        "bookmarked_roster:STEP_OUTPUT",
    )
    between(
        "  bookmarked_roster: Parquet write",
        "bookmarked_roster:STEP_OUTPUT",
        "bookmarked_roster:HANDLED_OUTPUT",
    )
    between(
        "  mismatch_report: load inputs",
        "mismatch_report:STEP_START",
        "mismatch_report:LOADED_INPUT",
        end_last=True,
    )
    between("run start -> run end", ":RUN_START", ":RUN_SUCCESS")
    return phases


# -- the baseline: a hand-written DuckDB program ----------------------------------------------

BASELINE = r'''
import json, sqlite3, sys, time
import duckdb, pyarrow as pa

oneroster, database, customer = sys.argv[1], sys.argv[2], int(sys.argv[3])
con = duckdb.connect()
con.execute("SET threads TO 2")

def csv(name):
    # RFC 4180 quoting said, not sniffed (the first rows may have no quotes)
    return (f"read_csv('{oneroster}/{name}.csv', header=true, all_varchar=true, "
            "quote='\"', escape='\"')")

def sqlite_table(name, sql):
    """The raw driver into Arrow columns (DuckDB's sqlite extension is a download)."""
    cursor = db.execute(sql, (customer,))
    names = [d[0] for d in cursor.description]
    chunks = []
    while rows := cursor.fetchmany(100_000):
        chunks.append(pa.table(dict(zip(names, map(list, zip(*rows))))))
    table = pa.concat_tables(chunks) if chunks else pa.table({n: [] for n in names})
    con.register(name, table)

db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
sqlite_table("b_schools", "SELECT id, sis_id, is_active FROM schools WHERE customer_id = ?")
sqlite_table("b_users", "SELECT id, sis_id, role, is_active, deleted_at FROM users "
             "WHERE customer_id = ?")
sqlite_table("b_classes", "SELECT c.id, c.sis_id, c.is_active FROM classes c "
             "JOIN schools s ON s.id = c.school_id WHERE s.customer_id = ?")
sqlite_table("b_enrollments", "SELECT class_id, user_id, is_active FROM enrollments "
             "WHERE +class_id IN (SELECT c.id FROM classes c JOIN schools s "
             "ON s.id = c.school_id WHERE s.customer_id = ?)")
sqlite_table("b_links", "SELECT ps.parent_id, ps.student_id FROM parent_students ps "
             "JOIN users u ON u.id = ps.student_id WHERE u.customer_id = ?")

con.execute(f"CREATE TABLE s_orgs AS SELECT sourcedId, status, type FROM {csv('orgs')}")
con.execute(f"CREATE TABLE s_users AS SELECT sourcedId, status, enabledUser, role, "
            f"agentSourcedIds FROM {csv('users')}")
con.execute(f"CREATE TABLE s_classes AS SELECT sourcedId, status FROM {csv('classes')}")
con.execute(f"CREATE TABLE s_enrollments AS SELECT classSourcedId, userSourcedId, role, "
            f"status, endDate FROM {csv('enrollments')}")

live = {
    "s_schools": "SELECT sourcedId AS sis_id FROM s_orgs WHERE type = 'school' "
                 "AND status = 'active'",
    "b_schools": "SELECT sis_id FROM b_schools WHERE is_active = 1",
    "s_users": "SELECT sourcedId AS sis_id FROM s_users WHERE status = 'active' "
               "AND lower(role) IN ('student', 'teacher', 'parent', 'guardian', "
               "'administrator')",
    "b_users": "SELECT sis_id FROM b_users WHERE is_active = 1 AND deleted_at IS NULL",
    "s_classes": "SELECT sourcedId AS sis_id FROM s_classes WHERE status = 'active'",
    "b_classes": "SELECT sis_id FROM b_classes WHERE is_active = 1",
    "s_enrollments": "SELECT classSourcedId AS class_sis_id, userSourcedId AS user_sis_id "
                     "FROM s_enrollments WHERE status = 'active' AND lower(role) IN "
                     "('student', 'teacher') AND (endDate IS NULL OR endDate = '' "
                     "OR CAST(endDate AS DATE) > current_date)",
    "b_enrollments": "SELECT c.sis_id AS class_sis_id, u.sis_id AS user_sis_id "
                     "FROM b_enrollments e JOIN b_classes c ON c.id = e.class_id "
                     "JOIN b_users u ON u.id = e.user_id WHERE e.is_active = 1",
    "s_links": "SELECT DISTINCT trim(a.agent) AS parent_sis_id, sourcedId AS student_sis_id "
               "FROM (SELECT sourcedId, unnest(string_split(agentSourcedIds, ',')) AS agent "
               "FROM s_users WHERE lower(role) = 'student' AND agentSourcedIds <> '') a",
    "b_links": "SELECT DISTINCT p.sis_id AS parent_sis_id, s.sis_id AS student_sis_id "
               "FROM b_links l JOIN b_users p ON p.id = l.parent_id "
               "JOIN b_users s ON s.id = l.student_id",
}
keys = {"schools": "sis_id", "users": "sis_id", "classes": "sis_id",
        "enrollments": "class_sis_id, user_sis_id", "links": "parent_sis_id, student_sis_id"}
found = {}
for table, key in keys.items():
    for name, left, right in (("missing", "s", "b"), ("stale", "b", "s")):
        sql = (f"SELECT * FROM ({live[f'{left}_{table}']}) l ANTI JOIN "
               f"({live[f'{right}_{table}']}) r USING ({key})")
        found[f"{name}_{table}"] = con.sql(sql).fetch_arrow_table().num_rows
print(json.dumps(found))
'''


def baseline_command(customer: Customer) -> list[str]:
    return [
        sys.executable,
        "-c",
        BASELINE,
        str(customer.oneroster),
        str(customer.database),
        str(customer.bookmarked_customer_id),
    ]


# -- the report -------------------------------------------------------------------------------


def gib(value: float) -> str:
    return f"{value / GIB:.2f} GiB"


def bench(customer: Customer, repeat: int, work: Path) -> None:
    counts = json.loads((customer.folder / "manifest.json").read_text())
    print(
        f"\n## {customer.students:,} students: "
        f"{counts['source_counts'].get('users', 0):,} users, "
        f"{counts['source_counts'].get('enrollments', 0):,} enrollments in the SIS; "
        f"{counts['bookmarked_counts'].get('enrollments', 0):,} Bookmarked enrollments"
    )
    scan, baseline = Side("scan"), Side("baseline")
    phases: list[dict[str, float]] = []
    steps: list[dict[str, float]] = []
    env = scan_env(work)
    for attempt in range(1, repeat + 1):
        for side, command in ((baseline, baseline_command), (scan, scan_command)):
            run = measure(command(customer), env)
            if run.code:
                tail = "\n".join(line for _, line in run.lines[-15:])
                raise SystemExit(f"{side.name} failed (exit code {run.code}):\n{tail}")
            side.runs.append(run)
            print(
                f"  run {attempt} {side.name:9} {run.wall:6.2f} s wall, {run.cpu:6.2f} s CPU, "
                f"peak {gib(run.peak)}",
                flush=True,
            )
        phases.append(output_phases(scan.runs[-1]))
        steps.append(run_phases(work / "dagster_home"))
    findings = next((line for _, line in scan.runs[-1].lines if ": ok, " in line), "")
    print(f"  scan: {findings.strip()}")
    print(f"  baseline's differences: {baseline.runs[-1].lines[-1][1]}")
    ratio = scan.wall / baseline.wall
    print(
        f"  median of {repeat}: scan {scan.wall:.2f} s ({scan.cpu:.2f} s CPU), baseline "
        f"{baseline.wall:.2f} s ({baseline.cpu:.2f} s CPU): scan / baseline {ratio:.2f}x "
        f"(CPU {scan.cpu / baseline.cpu:.2f}x)"
    )
    if customer.students >= 100_000:
        verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
        print(f"  target scan / baseline <= {TARGET_RATIO}x: {verdict}")
    if customer.students <= 10_000:
        verdict = "met" if scan.wall < TARGET_SMALL_WALL else "MISSED"
        print(f"  target: a small customer's scan under {TARGET_SMALL_WALL:.0f} s wall: {verdict}")
    verdict = "met" if scan.peak < TARGET_PEAK_BYTES else "MISSED"
    print(
        f"  peak RSS: scan {gib(scan.peak)} (largest process), baseline {gib(baseline.peak)}"
        + (f"; target under 3 GB: {verdict}" if customer.students >= 1_000_000 else "")
    )
    print("  where the scan's time goes (median of the runs):")
    for source in (phases, steps):
        names = dict.fromkeys(name for run in source for name in run)
        for name in names:
            values = [run[name] for run in source if name in run]
            print(f"    {name:48} {statistics.median(values):6.2f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--students",
        default="3000,200000",
        help="comma-separated sizes (default 3000,200000; add 1000000 when time allows)",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--regenerate", action="store_true", help="rebuild the cached files")
    args = parser.parse_args(argv)
    sizes = [int(value.replace("_", "")) for value in args.students.split(",")]
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"load average {load} on {os.cpu_count()} CPUs")
    customers = [prepare(n, args.cache, args.regenerate) for n in sizes]
    for customer in customers:
        with tempfile.TemporaryDirectory(prefix="scan-bench-") as work:
            bench(customer, args.repeat, Path(work))
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"\nload average {load} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
