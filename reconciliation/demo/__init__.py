"""Demo data with ground truth: OneRoster bulk sets, a Bookmarked database, expected findings.

Two entry points:

- `generate_demo(out_dir, seed=7)` writes the embedded demo: three customers' OneRoster
  files (a 1.1 zip, a 1.1 folder, a 1.2 folder with roles.csv), ONE SQLite Bookmarked
  database holding them plus an unrelated customer, and `ground_truth.csv` (one row per
  finding the diagnostics must make: customer_id, rule, entity_type, sis_id, status,
  note). Also `python -m reconciliation.demo OUT_DIR`.
- `generate_world(n_students, seed)` builds one customer as polars frames (OneRoster
  tables, Bookmarked tables, ground truth) column-wise, for benchmarks at a million
  students; `write.py` turns worlds into files.

How the data is made: a clean district (`base.py`), noise and known cases edited into
it (`scenarios.py`, which documents every case), Bookmarked's correct sync simulated
(`sync.py`), then the cases' Bookmarked-side damage applied.
"""

from reconciliation.demo.demo import DemoCustomer, DemoManifest, generate_demo, read_ground_truth
from reconciliation.demo.scenarios import ISSUE_IN_BOOKMARKED, ISSUE_IN_SOURCE, RULES
from reconciliation.demo.world import World, generate_world

__all__ = [
    "ISSUE_IN_BOOKMARKED",
    "ISSUE_IN_SOURCE",
    "RULES",
    "DemoCustomer",
    "DemoManifest",
    "World",
    "generate_demo",
    "generate_world",
    "read_ground_truth",
]
