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

It prints the best, median and CPU time of `--repeat` runs of each and the ratio
rules / baseline (target: at most 2x, median against median: with a few runs on a shared
2-core machine one lucky run moves the best far more than the median); then memory: the peak RSS of
this process (the generator included) and, in a fresh process holding only the two
rosters, the peak of the rules (target: under 4 GB) and of the baseline; then each side
step by step (each cached comparison of `RuleContext`, each rule, each query) with its
time here and its memory in the fresh process, which is where to look when a target is
missed; last, the findings per rule next to the generator's planted cases.

Registering the Arrow data with DuckDB is timed on its own and counted in neither side.

Run from the project root:  .venv/bin/python benchmarks/rules_bench.py [--students N]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

import duckdb  # noqa: E402
import polars as pl  # noqa: E402
from measure import Phase, status_bytes  # noqa: E402

from reconciliation.demo import generate_world  # noqa: E402
from reconciliation.roster import SYNCED_ROLES, TABLES, Roster  # noqa: E402
from reconciliation.rules import RULES, RuleContext, run_rules  # noqa: E402

TARGET_RATIO = 2.0
#: the target "4 GB", read strictly as 4e9 bytes (3.73 GiB); figures print in GiB
TARGET_PEAK_BYTES = 4e9
GIB = 1024**3

# -- memory: the process's resident high-water mark, per phase ----------------------------


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


@contextmanager
def measured(phase: Phase) -> Iterator[None]:
    """Time one run of `phase` and keep the highest RSS any of its runs reached."""
    gc.collect()
    rss_start = status_bytes("VmRSS")
    can_reset = _reset_peak()
    started, cpu_started = time.perf_counter(), time.process_time()
    yield
    phase.seconds.append(time.perf_counter() - started)
    phase.cpu.append(time.process_time() - cpu_started)
    peak = status_bytes("VmHWM") if can_reset else None
    if peak is not None and (phase.peak is None or peak > phase.peak):
        phase.peak, phase.rss_start = peak, rss_start


def gb(value: int | None) -> str:
    return "n/a (no /proc/self/clear_refs)" if value is None else f"{value / GIB:.2f} GiB"


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
    connection = duckdb.connect()
    connection.execute("set enable_progress_bar = false")
    for prefix, roster in (("s", source), ("b", bookmarked)):
        for table in TABLES:
            arrow = roster.table(table).to_arrow(compat_level=pl.CompatLevel.newest())
            connection.register(f"{prefix}_{table}", arrow)
    return connection


def run_baseline(connection: duckdb.DuckDBPyConnection, queries: dict[str, str]) -> dict[str, int]:
    """Run every comparison and fetch its rows (as the rules produce rows); rows per query."""
    return {name: connection.sql(sql).to_arrow_table().num_rows for name, sql in queries.items()}


# -- a fresh process per side: its memory, and where the time goes --------------------------


@dataclass
class ChildRun:
    """One side (rules or baseline) run step by step in a fresh process."""

    loaded: int  # RSS with only the two rosters read
    peak: int  # the process's peak RSS
    steps: list[Phase]


def run_in_children(source: Roster, bookmarked: Roster) -> dict[str, ChildRun]:
    """The rules, then the baseline, each in a fresh process holding only the two rosters
    (read back from Arrow IPC files), run step by step: what production needs, without
    the generator's memory this process's allocator keeps after the world is freed, and
    the time and memory of every cached comparison, rule and query.
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
            # a new pool per side: a fresh process whose peak is that side's alone
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                out[what] = pool.submit(_child, folder, what).result()
    return out


def _child(folder: str, what: str) -> ChildRun:
    rosters = [
        Roster(
            "bench",
            side,
            **{t: pl.read_ipc(Path(folder) / f"{side}_{t}.arrow") for t in TABLES},
        )
        for side in ("source", "bookmarked")
    ]
    gc.collect()
    loaded = status_bytes("VmRSS") or 0
    if what == "rules":
        steps = profile_rules(*rosters)
    else:
        steps = profile_baseline(register(*rosters), baseline_queries())
    # the steps reset the high-water mark after the loading (whose own peak, reading the
    # files, says nothing about the rules); without the reset, ru_maxrss is all there is
    peaks = [step.peak for step in steps if step.peak is not None]
    return ChildRun(loaded, max(peaks) if peaks else process_peak(), steps)


def cached_comparisons() -> list[str]:
    """RuleContext's cached comparisons in definition order (dependencies come first)."""
    return [name for name, value in vars(RuleContext).items() if isinstance(value, cached_property)]


def profile_rules(source: Roster, bookmarked: Roster) -> list[Phase]:
    """All rules taken apart: each cached comparison of one context computed in turn (its
    time is its own work, what it depends on being cached already), then each rule on the
    warm context. Same work as `run_rules`, the context's cache growing the same way."""
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
    """The baseline's queries one by one."""
    steps = []
    for name, sql in queries.items():
        steps.append(Phase(f"duckdb {name}"))
        with measured(steps[-1]):
            connection.sql(sql).to_arrow_table()
    return steps


def print_profile(title: str, steps: list[Phase], fresh: ChildRun) -> None:
    """Each step's time in this process (warm, as the timed runs), and its memory in the
    fresh process: the RSS peak while it ran and how much it grew over the step.

    The fresh process's times are not shown: a new process pays for first touching every
    page its allocator maps (a fifth of the rules' CPU time at a million students).
    """
    memory = {step.name: step for step in fresh.steps}
    total = sum(step.best for step in steps)
    print(f"\n{title}: {total:.2f} s")
    print(f"  {'':36s} {'time':>8s} {'share':>7s}  {'peak RSS':>8s}  growth (fresh process)")
    for step in sorted(steps, key=lambda step: -step.best):
        if step.best < 0.005:
            continue
        there = memory.get(step.name)
        peak = there.peak if there else None
        grown = max(0, (peak or 0) - ((there.rss_start if there else None) or 0))
        print(
            f"  {step.name:36s} {step.best:6.2f} s {100 * step.best / total:5.1f} %"
            f"  {'n/a' if peak is None else f'{peak / GIB:5.2f} GiB'}  +{grown / GIB:.2f} GiB"
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
    parser.add_argument("--repeat", type=int, default=5, help="timed runs (best and median shown)")
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
    resident = status_bytes("VmRSS")
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
    rule_steps = profile_rules(source, bookmarked)
    ratio_best = rules_phase.best / baseline_phase.best
    ratio_median = rules_phase.median / baseline_phase.median
    ratio_cpu = rules_phase.cpu_median / baseline_phase.cpu_median
    print(f"\n{args.repeat} runs each, alternating   best      median    CPU (median)")
    for label, phase in (("DuckDB baseline", baseline_phase), ("all rules", rules_phase)):
        print(f"  {label:18s}{phase.best:7.2f} s {phase.median:7.2f} s {phase.cpu_median:7.2f} s")
    verdict = "MET" if ratio_median <= TARGET_RATIO else "MISSED"
    print(
        f"  rules / baseline  {ratio_best:7.2f} x {ratio_median:7.2f} x {ratio_cpu:7.2f} x"
        f"   target <= {TARGET_RATIO:g}x (median against median): {verdict}",
        flush=True,
    )

    phases = (build_phase, load_phase, baseline_phase, rules_phase)
    peak_here = max([process_peak()] + [phase.peak or 0 for phase in phases])
    children = run_in_children(source, bookmarked)
    rules_peak = children["rules"].peak
    print("\nmemory (resident)")
    print(f"  this process, peak           {gb(peak_here)}  (world generation included)")
    print(f"  after build, world freed     {gb(resident)}  (the allocator keeps freed pages)")
    print(f"  fresh process, rosters only  {gb(children['rules'].loaded)}")
    print(f"  fresh process, peak baseline {gb(children['baseline'].peak)}")
    print(
        f"  fresh process, peak rules    {gb(rules_peak)} ({rules_peak / 1e9:.2f} GB)  "
        f"target < 4 GB: {'MET' if rules_peak < TARGET_PEAK_BYTES else 'MISSED'}"
    )

    print("\nbaseline rows (raw one-sided rows, before the rules' explanations)")
    for name, rows in diffs.items():
        print(f"  {name:20s} {rows:>9,}")
    print_profile("baseline, query by query", baseline_steps, children["baseline"])
    print_profile("rules, step by step", rule_steps, children["rules"])

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
    print(f"  in memory        {size / GIB:.2f} GiB (both rosters)", flush=True)


if __name__ == "__main__":
    main()
