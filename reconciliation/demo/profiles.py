"""Who the demo customers are: districts, their schools, and how their SIS writes files.

A profile fixes everything about a customer that is not random: names, schools, the
OneRoster version and the exporter's quirks. The seed decides the people.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["elementary", "middle", "high"]
IdStyle = Literal["numeric", "guid", "prefixed"]

#: grade range per school level, as indexes (0 = KG, 1..12)
LEVEL_GRADES: dict[str, tuple[int, int]] = {"elementary": (0, 5), "middle": (6, 8), "high": (9, 12)}


@dataclass(frozen=True)
class SchoolSpec:
    name: str
    level: Level
    #: relative share of the district's students
    share: float = 1.0


@dataclass(frozen=True)
class DistrictProfile:
    """One customer: its identity on both sides and its exporter's habits."""

    customer_id: str
    bookmarked_customer_id: int
    name: str
    #: staff emails are `@domain`, student emails `@students.domain`
    domain: str
    schools: tuple[SchoolSpec, ...]
    oneroster_version: Literal["1.1", "1.2"] = "1.1"
    id_style: IdStyle = "numeric"
    #: label for `prefixed` ids ("hc" -> "hc-stu-000123")
    id_prefix: str = "sis"
    #: True: `status`/`dateLastModified` on every row (many exporters do); False: blank
    #: except on `tobedeleted` rows, as the bulk spec prefers
    fill_status: bool = True
    #: how booleans are written: "true"/"false" or the "TRUE"/"FALSE" some exporters write
    upper_booleans: bool = False
    #: a UTF-8 byte-order mark at the start of every file (Excel-made exports)
    bom: bool = False
    demographics: bool = True
    #: `ok`: the last sync succeeded; `last_failed`: the newest run failed (the one before
    #: succeeded); `running`: a run is in progress after a successful one
    sync_history: Literal["ok", "last_failed", "running"] = "ok"
    #: HubSpot company id recorded in Bookmarked's customers table
    hubspot_company_id: str | None = None
    #: class enrollments per student, inclusive (3 subjects are required at every level)
    enrollments_per_student: tuple[int, int] = (5, 8)


RIVERSIDE = DistrictProfile(
    customer_id="riverside-usd",
    bookmarked_customer_id=1001,
    name="Riverside Unified School District",
    domain="riversideusd.example.org",
    schools=(
        SchoolSpec("Lincoln Elementary School", "elementary", 1.0),
        SchoolSpec("Washington Elementary School", "elementary", 1.0),
        SchoolSpec("Oak Grove Elementary School", "elementary", 0.8),
        SchoolSpec("Riverside Middle School", "middle", 1.0),
        SchoolSpec("Riverside High School", "high", 1.1),
    ),
    oneroster_version="1.1",
    id_style="numeric",
    fill_status=True,
    bom=True,
    demographics=True,
    sync_history="ok",
    hubspot_company_id="9061150001",
)

MAPLE = DistrictProfile(
    customer_id="maple-charter",
    bookmarked_customer_id=1002,
    name="Maple Charter Network",
    domain="maplecharter.example.org",
    schools=(
        SchoolSpec("Maple Elementary Academy", "elementary", 1.0),
        SchoolSpec("Maple Leaf Elementary", "elementary", 0.9),
        SchoolSpec("Maple Middle Academy", "middle", 0.9),
    ),
    oneroster_version="1.1",
    id_style="guid",
    fill_status=False,
    upper_booleans=True,
    demographics=False,
    sync_history="last_failed",
    hubspot_company_id="9061150002",
)

HILLCREST = DistrictProfile(
    customer_id="hillcrest-academy",
    bookmarked_customer_id=1003,
    name="Hillcrest Academy",
    domain="hillcrest.example.org",
    schools=(
        SchoolSpec("Hillcrest Lower School", "elementary", 1.2),
        SchoolSpec("Hillcrest Upper School", "middle", 1.0),
    ),
    oneroster_version="1.2",
    id_style="prefixed",
    id_prefix="hc",
    fill_status=True,
    demographics=False,
    sync_history="running",
)

#: a customer that lives in the same Bookmarked database and whose rows must never
#: appear in a demo customer's roster; same id style as Riverside, so sis_ids collide
LAKESIDE = DistrictProfile(
    customer_id="lakeside-unified",
    bookmarked_customer_id=1999,
    name="Lakeside Unified School District (not a demo customer)",
    domain="lakesideusd.example.org",
    schools=(
        SchoolSpec("Lakeside Elementary School", "elementary", 1.0),
        SchoolSpec("Lakeside Middle School", "middle", 1.0),
    ),
    id_style="numeric",
)


def benchmark_profile(n_students: int) -> DistrictProfile:
    """A large synthetic district: about 600 students per school, 60% elementary, and
    4-6 enrollments per student (a million students make about 5.3 million enrollments,
    teachers' included)."""
    n_schools = max(3, n_students // 600)
    schools = []
    for i in range(n_schools):
        level: Level = "elementary" if i % 5 < 3 else ("middle" if i % 5 == 3 else "high")
        schools.append(SchoolSpec(f"{level.title()} School {i + 1}", level, 1.0))
    return DistrictProfile(
        customer_id="benchmark",
        bookmarked_customer_id=1,
        name="Benchmark County Schools",
        domain="benchmark.example.org",
        schools=tuple(schools),
        demographics=False,
        enrollments_per_student=(4, 6),
    )
