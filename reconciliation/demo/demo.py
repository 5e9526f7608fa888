"""`generate_demo`: the embedded demo's files, for the demo customers' settings to point at.

out_dir/riverside-usd/oneroster.zip      OneRoster 1.1 bulk set (zip)
out_dir/maple-charter/oneroster/         OneRoster 1.1 bulk set (folder)
out_dir/hillcrest-academy/oneroster/     OneRoster 1.2 bulk set (folder, roles.csv)
out_dir/bookmarked.db                    SQLite Bookmarked database: the three demo
                                         customers and one unrelated customer
out_dir/ground_truth.csv                 one row per finding the diagnostics must make
out_dir/.reconciliation-demo             marks a folder the generator made (may be rebuilt)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from reconciliation.demo.profiles import HILLCREST, LAKESIDE, MAPLE, RIVERSIDE, DistrictProfile
from reconciliation.demo.world import World, generate_world
from reconciliation.demo.write import (
    write_bookmarked_sqlite,
    write_ground_truth,
    write_oneroster,
)

#: the demo customers: profile, number of students, and where their bulk set goes
DEMO_CUSTOMERS: tuple[tuple[DistrictProfile, int, str], ...] = (
    (RIVERSIDE, 1300, "oneroster.zip"),
    (MAPLE, 520, "oneroster"),
    (HILLCREST, 180, "oneroster"),
)
#: lives in the same database; none of its rows may show up in a demo customer's roster
UNRELATED: tuple[DistrictProfile, int] = (LAKESIDE, 240)


@dataclass(frozen=True)
class DemoCustomer:
    customer_id: str
    bookmarked_customer_id: int
    oneroster_version: str
    #: the bulk set: a .zip file or a folder
    source_path: Path
    #: rows per OneRoster file
    source_counts: dict[str, int]
    #: rows per Bookmarked table for this customer
    bookmarked_counts: dict[str, int]
    #: expected findings per rule
    findings: dict[str, int]
    #: planted differences that are NOT findings, per kind
    noise: dict[str, int]


@dataclass(frozen=True)
class DemoManifest:
    out_dir: Path
    database: Path
    ground_truth: Path
    seed: int
    today: date
    customers: dict[str, DemoCustomer]
    #: customers.id of the customer that is not part of the demo
    unrelated_bookmarked_customer_id: int
    #: rows per table in the whole database
    database_counts: dict[str, int] = field(default_factory=dict)

    @property
    def findings(self) -> int:
        return sum(sum(c.findings.values()) for c in self.customers.values())


def demo_worlds(seed: int = 7, today: date | None = None) -> tuple[list[World], World]:
    """The demo customers' worlds and the unrelated customer's, without writing files."""
    today = today or date.today()
    worlds = [
        generate_world(n, seed * 1000 + i, profile=profile, today=today)
        for i, (profile, n, _) in enumerate(DEMO_CUSTOMERS)
    ]
    profile, n = UNRELATED
    # a seed of its own, but Riverside's id style and counters: many sis_ids collide with
    # Riverside's while the people behind them differ
    unrelated = generate_world(n, seed * 1000 + 99, profile=profile, today=today)
    return worlds, unrelated


#: the file that marks a folder the demo generator made, so it may write there again
DEMO_MARKER = ".reconciliation-demo"


class DemoFolderError(FileExistsError):
    """The demo's output folder holds files the demo did not make."""


def claim_demo_folder(out_dir: Path, *, force: bool = False) -> None:
    """Make `out_dir` the demo's folder: create it (with the marker), or accept it when
    it is empty or marked; refuse anything else unless `force`, because the demo
    overwrites files by name and someone's folder must never be written into by mistake."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DemoFolderError(f"{out_dir} is a file, not a folder: choose a folder for the demo")
    marked = (out_dir / DEMO_MARKER).exists()
    if out_dir.is_dir() and not force and not marked and any(out_dir.iterdir()):
        raise DemoFolderError(
            f"{out_dir} is not empty and was not made by the demo generator "
            f"(no {DEMO_MARKER} file in it): choose an empty folder, or force "
            "(reconcile demo --force) to write the demo into it"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / DEMO_MARKER).write_text(
        "Made by the reconciliation demo generator: `reconcile demo` may rebuild this folder.\n"
    )


def generate_demo(
    out_dir: Path, *, seed: int = 7, today: date | None = None, force: bool = False
) -> DemoManifest:
    """Write the demo (see the module docstring) and return what was written.

    Deterministic for (seed, today); `today` defaults to the real date, and all dates
    in the data are relative to it (ended enrollments in the past, active ones ahead).
    Writes only into a new or empty folder, or one it made before (its marker file);
    `force` writes into any folder (DemoFolderError otherwise).
    """
    out_dir = Path(out_dir)
    claim_demo_folder(out_dir, force=force)
    today = today or date.today()
    worlds, unrelated = demo_worlds(seed, today)
    customers = {}
    for world, (_, _, location) in zip(worlds, DEMO_CUSTOMERS, strict=True):
        target = write_oneroster(world, out_dir / world.customer_id / location)
        findings = world.ground_truth.group_by("rule").len().sort("rule")
        customers[world.customer_id] = DemoCustomer(
            customer_id=world.customer_id,
            bookmarked_customer_id=world.profile.bookmarked_customer_id,
            oneroster_version=world.profile.oneroster_version,
            source_path=target,
            source_counts=world.source_counts(),
            bookmarked_counts=world.bookmarked_counts(),
            findings=dict(findings.iter_rows()),
            noise=world.noise,
        )
    database = out_dir / "bookmarked.db"
    counts = write_bookmarked_sqlite([*worlds, unrelated], database)
    truth_path = out_dir / "ground_truth.csv"
    write_ground_truth(worlds, truth_path)
    return DemoManifest(
        out_dir=out_dir,
        database=database,
        ground_truth=truth_path,
        seed=seed,
        today=today,
        customers=customers,
        unrelated_bookmarked_customer_id=unrelated.profile.bookmarked_customer_id,
        database_counts=counts,
    )


def read_ground_truth(path: Path) -> pl.DataFrame:
    """The ground truth file as a frame (all columns strings)."""
    return pl.read_csv(path, infer_schema=False)
