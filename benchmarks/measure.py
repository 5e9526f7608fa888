"""What the benchmarks share: the times of one phase, and the process's memory from
/proc/self/status (not ru_maxrss: Linux carries that across fork and exec, so a spawned
child would report its parent's)."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


def status_bytes(key: str) -> int | None:
    """A `kB` line of /proc/self/status (VmRSS, VmHWM) in bytes; None off Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass
class Phase:
    """Wall and CPU times of the runs of one phase, its resident memory at start and at peak.

    CPU time (all threads of the process) is the work done; it moves less than wall time
    when other processes compete for the cores.
    """

    name: str = ""
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss_start: int | None = None
    peak: int | None = None

    def run(self, work: Callable[[], T]) -> T:
        """Time one run of `work`; its result is returned."""
        gc.collect()
        started, cpu_started = time.perf_counter(), time.process_time()
        out = work()
        self.seconds.append(time.perf_counter() - started)
        self.cpu.append(time.process_time() - cpu_started)
        return out

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)
