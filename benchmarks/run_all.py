"""Run every benchmark in this folder in turn, each with its defaults (`make bench`).

A benchmark is a `*_bench.py` file here; each runs in its own process (they measure
their process's memory and start servers), and its output goes straight to the
terminal. Exits non-zero if any benchmark failed to run (a missed target is printed
by the benchmark itself, not an error: timings depend on the machine's load).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failed = []
    for script in sorted(HERE.glob("*_bench.py")):
        print(f"\n=== {script.name} ===", flush=True)
        started = time.perf_counter()
        code = subprocess.run([sys.executable, str(script)], cwd=HERE.parent).returncode
        print(f"=== {script.name}: {time.perf_counter() - started:.0f} s, exit code {code}")
        if code:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
