"""`python -m reconciliation.demo OUT_DIR [--seed N] [--today YYYY-MM-DD]`: write the demo.

`--benchmark N` instead builds an N-student world in memory and prints how long it took
and the peak memory, without writing anything.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from datetime import date
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reconciliation.demo", description=__doc__)
    parser.add_argument("out_dir", type=Path, nargs="?", help="where to write the demo")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--today",
        type=date.fromisoformat,
        default=None,
        help="the date the data is relative to (default: today)",
    )
    parser.add_argument(
        "--benchmark",
        type=int,
        metavar="N_STUDENTS",
        help="time generate_world(N) instead of writing the demo",
    )
    args = parser.parse_args(argv)

    if args.benchmark:
        from reconciliation.demo import generate_world

        start = time.perf_counter()
        world = generate_world(args.benchmark, args.seed, today=args.today)
        seconds = time.perf_counter() - start
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        print(f"{args.benchmark} students: {seconds:.1f} s, peak RSS {peak_gb:.2f} GB")
        print("source:", world.source_counts())
        print("bookmarked:", world.bookmarked_counts())
        print("expected findings:", world.ground_truth.height)
        return 0
    if args.out_dir is None:
        parser.error("OUT_DIR is required (or --benchmark N)")

    from reconciliation.demo import generate_demo

    manifest = generate_demo(args.out_dir, seed=args.seed, today=args.today)
    for customer in manifest.customers.values():
        print(
            f"{customer.customer_id}: {customer.source_path} "
            f"(OneRoster {customer.oneroster_version}, "
            f"{customer.source_counts.get('users', 0)} users, "
            f"{customer.source_counts.get('enrollments', 0)} enrollments, "
            f"{sum(customer.findings.values())} expected findings)"
        )
    print(f"Bookmarked database: {manifest.database}")
    print(f"ground truth: {manifest.ground_truth} ({manifest.findings} findings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
