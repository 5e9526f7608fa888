"""How fast the diagnostic rules are next to a hand-written DuckDB baseline, at a million students.

Builds one customer with the demo generator (`generate_world`, default 1,000,000
students: about 2M users, 5.4M enrollments, 1.4M parent-student links, with the
generator's planted discrepancies and noise), turns both sides into the canonical
rosters with the connectors' own mapping code (`World.rosters()`, which calls
`oneroster_model.build_source_roster` and `bookmarked_model.build_roster`), then, in
the same process, on the same in-memory data, alternately:

- the baseline: what a person would write by hand in DuckDB for the core comparisons,
  over the rosters' Arrow buffers registered zero-copy: anti-joins both ways of the
  live schools, users and classes (by sis_id), of the live student/teacher enrollments
  (by class and user, as the rules match them), and the parent-student link diff;
- every rule with `run_rules` (a fresh `RuleContext` each time, so nothing is cached
  between runs).

It prints the best and median of `--repeat` runs of each, the ratio rules / baseline
(target: at most 2x), the peak resident memory of the process and of each phase
(target: under 4 GB while the rules run), then a profile of one more rules run (each
cached comparison of `RuleContext` in turn, then each rule on the warm context) and the
findings per rule next to the planted cases.

Registering the Arrow data with DuckDB is timed on its own and counted in neither side.

Run from the project root:  .venv/bin/python benchmarks/rules_bench.py [--students N]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

import duckdb  # noqa: E402
import polars as pl  # noqa: E402

from reconciliation.demo import generate_world  # noqa: E402
from reconciliation.roster import SYNCED_ROLES, TABLES, Roster  # noqa: E402
from reconciliation.rules import RULES, RuleContext, run_rules  # noqa: E402

TARGET_RATIO = 2.0
TARGET_PEAK_GB = 4.0
GB = 1024**3

# -- memory: the process's resident high-water mark, per phase ----------------------------


def _status_bytes(key: str) -> int | None:
    """A `kB` line of /proc/self/status (VmRSS, VmHWM) in bytes; None off Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the next reading is one phase's peak.

    tracemalloc cannot see polars' and DuckDB's native allocations; the kernel's
    high-water mark sees everything the process touches.
    """
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def process_peak() -> int:
    """Peak RSS of the process so far, in bytes (ru_maxrss is in kB on Linux).

    The kernel computes ru_maxrss from the same high-water mark `_reset_peak` clears, so
    after a reset it covers only the time since; `main` takes the max over its phases.
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Phase:
    """Wall times of the runs of one phase, and its resident memory at start and at peak."""

    name: str
    seconds: list[float] = field(default_factory=list)
    rss_start: int | None = None
    peak: int | None = None

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


@contextmanager
def measured(phase: Phase) -> Iterator[None]:
    """Time one run of `phase` and keep the highest RSS any of its runs reached."""
    gc.collect()
    rss_start = _status_bytes("VmRSS")
    can_reset = _reset_peak()
    started = time.perf_counter()
    yield
    phase.seconds.append(time.perf_counter() - started)
    peak = _status_bytes("VmHWM") if can_reset else None
    if peak is not None and (phase.peak is None or peak > phase.peak):
        phase.peak, phase.rss_start = peak, rss_start


def gb(value: int | None) -> str:
    return "n/a (no /proc/self/clear_refs)" if value is None else f"{value / GB:.2f} GB"


# -- the baseline: hand-written DuckDB over the rosters' Arrow buffers -----------------------

#: which rows of each registered table are live, as the rules define it (RuleContext)
_LIVE = {
    "s_schools": "active is not false",
    "b_schools": "active is not false",
    "s_users": "active is not false and deleted is not true",
    "b_users": "active is not false and deleted is not true",
    "s_classes": "active is not false",
    "b_classes": "active is not false",
    "s_enrollments": "active is not false and lower(trim(role)) in ('student', 'teacher')",
    "b_enrollments": "active is not false",
    "s_links": "true",
    "b_links": "true",
}
_SYNCED = ", ".join(f"'{role}'" for role in SYNCED_ROLES)


def _one_way(left: str, right: str, keys: list[str], extra: str = "") -> str:
    """The live rows of `left` (all columns) whose keys no live row of `right` has."""
    not_null = " and ".join(f"{key} is not null" for key in keys)
    return (
        f"select l.* from (select * from {left} where {_LIVE[left]} and {not_null}{extra}) l "
        f"anti join (select {', '.join(keys)} from {right} where {_LIVE[right]}) r "
        f"using ({', '.join(keys)})"
    )


def baseline_queries() -> dict[str, str]:
    """Both directions of every core comparison, as SQL a person would write."""
    queries = {}
    for table, keys in (
        ("schools", ["sis_id"]),
        ("users", ["sis_id"]),
        ("classes", ["sis_id"]),
        ("enrollments", ["class_sis_id", "user_sis_id"]),
        ("links", ["parent_sis_id", "student_sis_id"]),
    ):
        # a missing user is one of a role Bookmarked syncs; a stale one is any live row
        synced = f" and role in ({_SYNCED})" if table == "users" else ""
        queries[f"missing_{table}"] = _one_way(f"s_{table}", f"b_{table}", keys, synced)
        queries[f"stale_{table}"] = _one_way(f"b_{table}", f"s_{table}", keys)
    # a link listed twice is one difference
    for name in ("missing_links", "stale_links"):
        queries[name] = f"select distinct * from ({queries[name]})"
    return queries


def register(source: Roster, bookmarked: Roster) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with both rosters' tables as views of their Arrow buffers.

    `CompatLevel.newest()` exports polars' string views as Arrow string_view, which
    DuckDB reads in place: no copy, so registering costs milliseconds.
    """
    connection = duckdb.connect(config={"enable_progress_bar": False})
    for prefix, roster in (("s", source), ("b", bookmarked)):
        for table in TABLES:
            arrow = roster.table(table).to_arrow(compat_level=pl.CompatLevel.newest())
            connection.register(f"{prefix}_{table}", arrow)
    return connection


def run_baseline(connection: duckdb.DuckDBPyConnection, queries: dict[str, str]) -> dict[str, int]:
    """Run every comparison and fetch its rows (as the rules produce rows); rows per query."""
    return {name: connection.sql(sql).to_arrow_table().num_rows for name, sql in queries.items()}


# -- memory in a clean process: the rosters and one phase, nothing else ----------------------


def peaks_in_child(source: Roster, bookmarked: Roster) -> dict[str, dict[str, int]]:
    """Peak RSS of the rules, and of the baseline, each in a fresh process holding only the
    two rosters (read back from Arrow IPC files): what production needs, without the
    generator's memory that this process's allocator keeps after the world is freed.

    Returns {"rules" | "baseline": {"loaded": RSS with the rosters read, "peak": ...}}.
    """
    import multiprocessing
    import tempfile
    from concurrent.futures import ProcessPoolExecutor

    out = {}
    with tempfile.TemporaryDirectory(prefix="rules_bench_") as folder:
        for side, roster in (("source", source), ("bookmarked", bookmarked)):
            for table in TABLES:
                roster.table(table).write_ipc(Path(folder) / f"{side}_{table}.arrow")
        for what in ("rules", "baseline"):
            # a new pool per phase: a fresh process whose ru_maxrss is this phase's alone
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                out[what] = pool.submit(_child_phase, folder, what).result()
    return out


def _child_phase(folder: str, what: str) -> dict[str, int]:
    """In the child: read the rosters, note the RSS, run one phase, report the peak."""
    rosters = [
        Roster(
            "bench",
            side,
            **{t: pl.read_ipc(Path(folder) / f"{side}_{t}.arrow") for t in TABLES},
        )
        for side in ("source", "bookmarked")
    ]
    gc.collect()
    loaded = _status_bytes("VmRSS") or 0
    if what == "rules":
        run_rules(*rosters)
    else:
        run_baseline(register(*rosters), baseline_queries())
    return {"loaded": loaded, "peak": process_peak()}


# -- the profile: where a rules run spends its time -------------------------------------------


def cached_comparisons() -> list[str]:
    """RuleContext's cached comparisons in definition order (dependencies come first)."""
    return [name for name, value in vars(RuleContext).items() if isinstance(value, cached_property)]


def profile_rules(source: Roster, bookmarked: Roster) -> list[Phase]:
    """One rules run taken apart: each cached comparison computed in turn (its time is its
    own work, what it depends on being cached already), then each rule on the warm context.
    Each step's peak is the RSS high-water mark while it ran (the context's cache grows)."""
    steps = []
    ctx = RuleContext(source, bookmarked)
    for name in cached_comparisons():
        steps.append(Phase(f"context.{name}"))
        with measured(steps[-1]):
            getattr(ctx, name)
    for rule_id, rule in RULES.items():
        steps.append(Phase(f"rule {rule_id}"))
        with measured(steps[-1]):
            rule.evaluate(ctx)
    return steps


def profile_baseline(connection: duckdb.DuckDBPyConnection, queries: dict[str, str]) -> list[Phase]:
    """The baseline's queries one by one, for a side-by-side with the rules' steps."""
    steps = []
    for name, sql in queries.items():
        steps.append(Phase(f"duckdb {name}"))
        with measured(steps[-1]):
            connection.sql(sql).to_arrow_table()
    return steps


def print_profile(title: str, steps: list[Phase]) -> None:
    total = sum(step.best for step in steps)
    print(f"\n{title}: {total:.2f} s in all (seconds, share, RSS peak above the step's start)")
    for step in sorted(steps, key=lambda step: -step.best):
        if step.best >= 0.005:
            above = (step.peak or 0) - (step.rss_start or 0)
            print(
                f"  {step.name:40s} {step.best:6.2f} s {100 * step.best / total:5.1f} %"
                f"  +{above / GB:.2f} GB"
            )


# -- sanity: the planted cases among the findings -----------------------------------------

_KEY = ["rule", "entity_type", "sis_id", "status"]


def planted_found(results: dict[str, pl.DataFrame], truth: pl.DataFrame) -> pl.DataFrame:
    """Per rule: findings, planted cases, planted cases found."""
    found = pl.concat([frame.select(_KEY) for frame in results.values()], how="vertical")
    truth = truth.select(_KEY).unique()
    hits = truth.join(found, on=_KEY, how="semi").group_by("rule").agg(found_planted=pl.len())
    return (
        pl.DataFrame({"rule": list(results), "findings": [f.height for f in results.values()]})
        .join(truth.group_by("rule").agg(planted=pl.len()), on="rule", how="left")
        .join(hits, on="rule", how="left")
        .with_columns(pl.col("planted", "found_planted").fill_null(0))
    )


# -- the run --------------------------------------------------------------------------------


def build(students: int, seed: int, today: date) -> tuple[Roster, Roster, pl.DataFrame]:
    """The world, then both canonical rosters; the world itself is let go (only the rosters
    and the ground truth stay, as in production only the rosters would be in memory)."""
    world = generate_world(students, seed, today=today)
    source, bookmarked = world.rosters()
    return source, bookmarked, world.ground_truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (best and median shown)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--today",
        type=date.fromisoformat,
        default=date(2025, 10, 15),
        help="the world's today (fixed, so runs on different days build the same data)",
    )
    args = parser.parse_args()
    load_at_start = os.getloadavg()

    build_phase = Phase("build")
    with measured(build_phase):
        source, bookmarked, truth = build(args.students, args.seed, args.today)
    gc.collect()
    resident = _status_bytes("VmRSS")
    print_sizes(args, source, bookmarked)
    print(f"build              {build_phase.best:.1f} s (world and rosters; timed in neither side)")

    load_phase, baseline_phase, rules_phase = Phase("load"), Phase("baseline"), Phase("rules")
    with measured(load_phase):
        connection = register(source, bookmarked)
    print(
        f"load into DuckDB   {load_phase.best * 1000:.0f} ms (Arrow views registered zero-copy;"
        " timed in neither side)",
        flush=True,
    )
    queries = baseline_queries()
    for _ in range(args.repeat):
        with measured(baseline_phase):
            diffs = run_baseline(connection, queries)
        with measured(rules_phase):
            results = run_rules(source, bookmarked)
    baseline_steps = profile_baseline(connection, queries)
    connection.close()
    ratio_best = rules_phase.best / baseline_phase.best
    ratio_median = rules_phase.median / baseline_phase.median
    print(f"\n{args.repeat} runs each, alternating   best      median")
    print(f"  DuckDB baseline     {baseline_phase.best:7.2f} s {baseline_phase.median:7.2f} s")
    print(f"  all rules           {rules_phase.best:7.2f} s {rules_phase.median:7.2f} s")
    print(
        f"  rules / baseline    {ratio_best:7.2f} x {ratio_median:7.2f} x   "
        f"target <= {TARGET_RATIO:g}x: {'MET' if ratio_best <= TARGET_RATIO else 'MISSED'}",
        flush=True,
    )

    phases = (build_phase, load_phase, baseline_phase, rules_phase)
    peak_here = max([process_peak()] + [phase.peak or 0 for phase in phases])
    print("\nmemory (resident)")
    print(f"  this process, peak           {gb(peak_here)}  (world generation included)")
    print(f"  after build, world freed     {gb(resident)}  (the allocator keeps freed pages)")
    for phase in (baseline_phase, rules_phase):
        print(
            f"  peak during {phase.name:17s}{gb(phase.peak)}"
            f"  (from {gb(phase.rss_start)} at its start)"
        )
    clean = peaks_in_child(source, bookmarked)
    print(f"  fresh process, rosters only  {gb(clean['rules']['loaded'])}")
    print(f"  fresh process, peak baseline {gb(clean['baseline']['peak'])}")
    met = "MET" if clean["rules"]["peak"] < TARGET_PEAK_GB * GB else "MISSED"
    print(
        f"  fresh process, peak rules    {gb(clean['rules']['peak'])}  "
        f"target < {TARGET_PEAK_GB:g} GB: {met}",
        flush=True,
    )

    print("\nbaseline rows (raw one-sided rows, before the rules' explanations)")
    for name, rows in diffs.items():
        print(f"  {name:20s} {rows:>9,}")
    print_profile("profile of one more baseline run", baseline_steps)

    print_profile("profile of one more rules run", profile_rules(source, bookmarked))

    print("\nfindings per rule (planted: the generator's ground truth)")
    print(f"  {'rule':24s}{'findings':>10s}{'planted':>10s}{'found':>10s}")
    for row in planted_found(results, truth).iter_rows(named=True):
        flag = "" if row["found_planted"] == row["planted"] else "  <- planted cases missed"
        print(
            f"  {row['rule']:24s}{row['findings']:>10,}{row['planted']:>10,}"
            f"{row['found_planted']:>10,}{flag}"
        )

    print(
        f"\nload average (1 min) {load_at_start[0]:.2f} at start, {os.getloadavg()[0]:.2f} "
        f"at end, on {os.cpu_count()} CPUs"
    )


def print_sizes(args: argparse.Namespace, source: Roster, bookmarked: Roster) -> None:
    """Rows per table on each side, and the rosters' size in memory."""
    print(f"customer           {args.students:,} students (seed {args.seed}, today {args.today})")
    print(f"rows               {'':14s}{'source':>12s}{'bookmarked':>12s}")
    students = [r.users.filter(pl.col("role") == "student").height for r in (source, bookmarked)]
    print(f"  students         {'':14s}{students[0]:>12,}{students[1]:>12,}")
    for table in ("users", "enrollments", "links", "classes", "schools"):
        print(
            f"  {table:16s} {'':14s}{source.table(table).height:>12,}"
            f"{bookmarked.table(table).height:>12,}"
        )
    # Arrow's count (views included): polars' estimated_size leaves out the 16-byte view
    # of every string value, half of these tables' memory
    size = sum(
        r.table(t).to_arrow(compat_level=pl.CompatLevel.newest()).nbytes
        for r in (source, bookmarked)
        for t in TABLES
    )
    print(f"  in memory        {size / GB:.2f} GB (both rosters)", flush=True)


if __name__ == "__main__":
    main()
