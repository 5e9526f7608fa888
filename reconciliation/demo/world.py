"""`generate_world`: one customer's SIS and Bookmarked data as polars frames, plus the truth.

The steps, each in its own module:

1. `base.build_base`: a clean district (schools, classes, students, families, teachers,
   enrollments), column-wise so a million students take seconds;
2. `scenarios.inject`: noise, then known discrepancies edited into the SIS;
3. `sync.simulate_sync`: what Bookmarked's correct sync writes from that SIS, less the
   rows a scenario says it never wrote;
4. the scenarios' other Bookmarked edits (what the real sync got wrong);
5. `render.render`: the SIS as OneRoster CSV tables.

Writing files (CSV, zip, SQLite) is `write.py`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import polars as pl

from reconciliation.demo.base import Base, build_base
from reconciliation.demo.profiles import DistrictProfile, benchmark_profile
from reconciliation.demo.render import render
from reconciliation.demo.scenarios import inject
from reconciliation.demo.sync import BookmarkedTables, simulate_sync
from reconciliation.roster import Roster


@dataclass
class World:
    """One customer on both sides, and what a correct reconciliation must find."""

    profile: DistrictProfile
    today: date
    #: OneRoster tables by file name without `.csv` (`manifest`, `orgs`, `users`, ...)
    source: dict[str, pl.DataFrame]
    #: Bookmarked tables for this customer (ids local to the world)
    bookmarked: BookmarkedTables
    #: one row per expected finding: customer_id, rule, entity_type, sis_id, status, note
    ground_truth: pl.DataFrame
    #: how many harmless differences of each kind were planted (none is a finding)
    noise: dict[str, int] = field(default_factory=dict)

    @property
    def customer_id(self) -> str:
        return self.profile.customer_id

    def source_counts(self) -> dict[str, int]:
        return {name: frame.height for name, frame in self.source.items() if name != "manifest"}

    def bookmarked_counts(self) -> dict[str, int]:
        return {name: frame.height for name, frame in self.bookmarked.as_dict().items()}

    def rosters(self) -> tuple[Roster, Roster]:
        """Both sides as canonical rosters (source, bookmarked), straight from the frames.

        Uses the mapping functions the OneRoster and Bookmarked connectors share, so the
        rosters are what the connectors would read from the written files, without the
        files: for rule benchmarks at a million students (about 15 s; the world and the
        rosters together peak near 4.6 GB there, so drop the world once converted).
        """
        from reconciliation.connectors.bookmarked_model import RAW_SCHEMAS, build_roster
        from reconciliation.connectors.oneroster_model import build_source_roster

        tables = ("orgs", "users", "classes", "courses", "enrollments", "roles")
        source = build_source_roster(
            self.customer_id,
            **{name: self.source.get(name, ()) for name in tables},
            as_of=self.today,
            meta={"oneroster_version": self.profile.oneroster_version, "demo": True},
        )
        raw = {
            name: getattr(self.bookmarked, name).select(
                pl.col(column).cast(dtype) for column, dtype in schema.items()
            )
            for name, schema in RAW_SCHEMAS.items()
        }
        return source, build_roster(self.customer_id, raw, meta={"demo": True})


def generate_world(
    n_students: int,
    seed: int,
    *,
    profile: DistrictProfile | None = None,
    today: date | None = None,
    case_rate: float = 0.001,
    discrepancies: bool = True,
) -> World:
    """Build one customer's world.

    `profile` defaults to a large synthetic district sized for `n_students` (the
    benchmark). Injected cases per kind grow with the district: at least the minimum,
    about `case_rate * n_students` times it. `discrepancies=False` plants only the noise,
    for a world in which a correct reconciliation finds nothing. Dates are relative to
    `today` (default: the real today), so a world is deterministic for (seed, today).
    """
    if n_students < 1:
        raise ValueError("n_students must be at least 1")
    profile = profile or benchmark_profile(n_students)
    today = today or date.today()
    base = build_base(profile, n_students, seed, today)
    injector = inject(base, case_rate, cases=discrepancies)
    noise = {**injector.noise, **_base_noise(base)}
    base.sis.set_aside_dropped()
    bookmarked = simulate_sync(base.sis, profile, base.calendar, injector.skip)
    injector.apply(bookmarked)
    bookmarked.conform()
    return World(
        profile=profile,
        today=today,
        source=render(base.sis, profile),
        bookmarked=bookmarked,
        ground_truth=injector.ground_truth(),
        noise=noise,
    )


def _base_noise(base: Base) -> dict[str, int]:
    """Harmless patterns the clean world has by construction, counted for the manifest."""
    sis = base.sis
    listed = sis.agents
    users = sis.users.select("sis_id", "role_raw")
    sides = listed.join(users, left_on="user_sis_id", right_on="sis_id", how="left")
    by_student = sides.filter(pl.col("role_raw") == "student").select(
        parent="agent_sis_id", student="user_sis_id"
    )
    by_parent = sides.filter(pl.col("role_raw").is_in(["parent", "guardian", "relative"])).select(
        parent="user_sis_id", student="agent_sis_id"
    )
    both = by_student.join(by_parent, on=["parent", "student"], how="inner").height
    parents_per_family = base.fam_n_parents
    students_per_family = base.fam_n_students
    today = base.calendar.today
    return {
        "links_listed_on_one_side": by_student.height + by_parent.height - 2 * both,
        "students_with_two_parents": int(students_per_family[parents_per_family == 2].sum()),
        "sibling_families": int((students_per_family >= 2).sum()),
        "parents_of_three_or_more": int(
            ((students_per_family >= 3) & (parents_per_family >= 1)).sum()
        ),
        "ended_enrollments": sis.enrollments.filter(
            pl.col("exported") & (pl.col("end") <= today)
        ).height,
        "aides_and_proctors": sis.users.filter(
            pl.col("role_raw").is_in(["aide", "proctor"])
        ).height,
        "guardians_and_relatives": sis.users.filter(
            pl.col("role_raw").is_in(["guardian", "relative"])
        ).height,
        "parents_without_email": sis.users.filter(
            pl.col("role_raw").is_in(["parent", "guardian", "relative"]) & pl.col("email").is_null()
        ).height,
    }
