"""The clean starting point of a demo world: a district's SIS as it should be.

Everything is built column-wise (numpy arrays and polars frames, never one Python object
per enrollment) so that a million students take seconds. The SIS is held in an internal
shape (`SisModel`) that is easier to edit than the CSV columns: agent links are an edge
table, enrollments point at their class and user by row position as well as by
sourcedId, and every row carries `exported` so that a record the SIS has dropped is
still known (Bookmarked may still hold it). `render.py` turns the model into OneRoster
files; `sync.py` turns it into Bookmarked rows.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl

from reconciliation.demo.names import ADULT_FIRST_NAMES, FIRST_NAMES, LAST_NAMES, slug
from reconciliation.demo.profiles import LEVEL_GRADES, DistrictProfile


@dataclass(frozen=True)
class Subject:
    name: str
    code: str
    term: str  # "year" | "fall" | "spring"
    required: bool = False
    #: elementary core subjects are taught by the section's homeroom teacher
    homeroom: bool = False


#: 3 required subjects per level, the rest optional: a student takes the required ones and
#: enough optional ones for the profile's `enrollments_per_student`
SUBJECTS: dict[str, tuple[Subject, ...]] = {
    "elementary": (
        Subject("Homeroom", "HR", "year", True, True),
        Subject("Reading", "ELA", "year", True, True),
        Subject("Mathematics", "MATH", "year", True, True),
        Subject("Science", "SCI", "year", False, True),
        Subject("Social Studies", "SS", "year", False, True),
        Subject("Art", "ART", "fall"),
        Subject("Music", "MUS", "spring"),
        Subject("Physical Education", "PE", "year"),
    ),
    "middle": (
        Subject("Advisory", "ADV", "year", True),
        Subject("English", "ENG", "year", True),
        Subject("Mathematics", "MATH", "year", True),
        Subject("Science", "SCI", "year"),
        Subject("Social Studies", "SS", "year"),
        Subject("Physical Education", "PE", "year"),
        Subject("Art", "ART", "fall"),
        Subject("Music", "MUS", "spring"),
        Subject("Spanish", "SPAN", "year"),
    ),
    "high": (
        Subject("Advisory", "ADV", "year", True),
        Subject("English", "ENG", "year", True),
        Subject("Mathematics", "MATH", "year", True),
        Subject("Biology", "BIO", "year"),
        Subject("U.S. History", "HIST", "year"),
        Subject("Physical Education", "PE", "year"),
        Subject("Art", "ART", "fall"),
        Subject("Spanish", "SPAN", "year"),
        Subject("Computer Science", "CS", "year"),
    ),
}
MAX_SUBJECTS = 16
CLASS_SIZE = 24


def grade_codes(grades: pl.Expr) -> pl.Expr:
    """CEDS grade codes for grade indexes (0 = KG, 1..12 = 01..12)."""
    return pl.when(grades == 0).then(pl.lit("KG")).otherwise(grades.cast(pl.String).str.zfill(2))


# -- dates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Calendar:
    """The school year around `today`: the fall semester has ended, spring is running.

    Ended enrollments end well before `today` and active ones well after it, so the
    demo stays consistent for months after it was generated.
    """

    today: date

    @property
    def year_start(self) -> date:
        return self.today - timedelta(days=120)

    @property
    def year_end(self) -> date:
        return self.today + timedelta(days=160)

    @property
    def fall_end(self) -> date:
        return self.today - timedelta(days=40)

    @property
    def spring_start(self) -> date:
        return self.today - timedelta(days=36)

    @property
    def transfer_date(self) -> date:
        return self.today - timedelta(days=20)

    @property
    def last_change(self) -> date:
        """Every SIS change is older than this, itself older than the last good sync."""
        return self.today - timedelta(days=4)

    @property
    def school_year(self) -> int:
        return self.year_end.year

    def term_dates(self, term: str) -> tuple[date, date]:
        return {
            "year": (self.year_start, self.year_end),
            "fall": (self.year_start, self.fall_end),
            "spring": (self.spring_start, self.year_end),
        }[term]


# -- ids -------------------------------------------------------------------------------

_NUMERIC_START = {
    "org": 100,
    "session": 2000,
    "course": 5000,
    "class": 30000,
    "user": 100000,
    "enrollment": 1000000,
}


class IdFactory:
    """Deterministic sourcedIds, unique per table, in the customer's style.

    `numeric` ids look like PowerSchool's DCIDs, `guid` like most hosted SISs, `prefixed`
    like hand-made exports. Ids handed out but never given to a row are guaranteed
    unknown, which is how dangling references are made.
    """

    def __init__(self, style: str, prefix: str, rng: np.random.Generator) -> None:
        self.style, self.prefix, self.rng = style, prefix, rng
        self.next = dict(_NUMERIC_START)

    def take(self, table: str, n: int, label: str) -> pl.Series:
        start = self.next[table]
        self.next[table] = start + n
        numbers = pl.Series("n", np.arange(start, start + n, dtype=np.int64))
        if self.style == "numeric":
            return numbers.cast(pl.String)
        if self.style == "prefixed":
            return pl.select(
                pl.format(f"{self.prefix}-{label}-{{}}", numbers.cast(pl.String).str.zfill(6))
            ).to_series()
        # random version-4 UUIDs, formatted column-wise
        hexed = np.frombuffer(binascii.hexlify(self.rng.bytes(16 * n)), dtype="S32")
        raw = pl.Series("h", hexed.astype("U32"), dtype=pl.String)
        part = raw.str.slice
        return pl.select(
            pl.concat_str(
                [
                    part(0, 8),
                    part(8, 4),
                    pl.lit("4") + part(13, 3),
                    pl.lit("8") + part(17, 3),
                    part(20, 12),
                ],
                separator="-",
            )
        ).to_series()

    def one(self, table: str, label: str) -> str:
        return self.take(table, 1, label)[0]


# -- the internal SIS model --------------------------------------------------------------

#: small vocabularies as enums (a few bytes a row instead of a string), for millions of rows
ENROLLMENT_ROLE = pl.Enum(["student", "teacher", "administrator", "proctor", "aide"])
STATUS = pl.Enum(["active", "tobedeleted"])
USER_ROLE = pl.Enum(
    ["student", "teacher", "parent", "guardian", "relative", "administrator", "aide", "proctor"]
)
#: `inactive`: deleted, written the 1.0 way (1.1 readers must take it as tobedeleted)
USER_STATUS = pl.Enum(["active", "tobedeleted", "inactive"])

USER_SCHEMA: dict[str, pl.DataType] = {
    "sis_id": pl.String(),
    "role_raw": USER_ROLE,
    "status": USER_STATUS,
    "exported": pl.Boolean(),  # False: dropped from the export (Bookmarked may hold it)
    "enabled": pl.Boolean(),
    "org_ids": pl.String(),  # comma-separated as in the file; the first is the primary org
    "given": pl.String(),
    "family_name": pl.String(),
    "middle": pl.String(),
    "username": pl.String(),
    "identifier": pl.String(),
    "email": pl.String(),
    "phone": pl.String(),
    "grade_raw": pl.String(),
    "birth_date": pl.Date(),
    "sex": pl.Enum(["female", "male"]),
    "family": pl.Int64(),  # demo family (-1: none)
    "modified": pl.Datetime("us"),
}

ENROLLMENT_SCHEMA: dict[str, pl.DataType] = {
    "sis_id": pl.String(),
    "class_sis_id": pl.String(),
    "school_sis_id": pl.String(),
    "user_sis_id": pl.String(),
    # row positions of the class and the user in the model's frames (null: not there).
    # Rows are only ever appended (until `set_aside_dropped` renumbers them), so positions
    # are stable keys, and following them is much cheaper than joining on sourcedId
    # strings for millions of enrollments.
    "class_row": pl.Int32(),
    "user_row": pl.Int32(),
    "role": ENROLLMENT_ROLE,
    "primary": pl.Boolean(),
    "begin": pl.Date(),
    "end": pl.Date(),
    "status": STATUS,
    "exported": pl.Boolean(),
    "modified": pl.Datetime("us"),
}


@dataclass
class SisModel:
    """A customer's SIS data, one frame per OneRoster entity (plus the agent edges)."""

    orgs: pl.DataFrame
    sessions: pl.DataFrame
    courses: pl.DataFrame
    classes: pl.DataFrame
    users: pl.DataFrame
    #: one row per id listed in a user's `agentSourcedIds`, in listing order:
    #: user_sis_id, agent_sis_id, user_row, agent_row (rows as in enrollments)
    agents: pl.DataFrame
    enrollments: pl.DataFrame
    #: users and enrollments the export no longer has (Bookmarked may still hold them),
    #: set apart by `set_aside_dropped` once the scenarios are done, so that rendering the
    #: export needs no filtered copy of millions of rows
    dropped_users: pl.DataFrame | None = None
    dropped_enrollments: pl.DataFrame | None = None

    def set_aside_dropped(self) -> None:
        """Move rows with `exported = False` out of `users` and `enrollments`.

        Dropped users go after the exported ones in `all_users()`; row references in
        enrollments and agents are renumbered to match.
        """
        exported = self.users.get_column("exported")
        keep = exported.arg_true().to_numpy()
        gone = (~exported).arg_true().to_numpy()
        position = np.empty(self.users.height, dtype=np.int32)
        position[keep] = np.arange(len(keep), dtype=np.int32)
        position[gone] = len(keep) + np.arange(len(gone), dtype=np.int32)
        self.dropped_users = self.users.filter(~exported)
        # one chunk per column: later selects are then free (misaligned chunks, as edits
        # leave them, make polars copy whole frames to align them)
        self.users = self.users.filter(exported).rechunk()
        remap = pl.lit(pl.Series(position))
        self.agents = self.agents.with_columns(
            user_row=remap.gather(pl.col("user_row")),
            agent_row=remap.gather(pl.col("agent_row")),
        )
        self.enrollments = self.enrollments.with_columns(user_row=remap.gather(pl.col("user_row")))
        exported = self.enrollments.get_column("exported")
        self.dropped_enrollments = self.enrollments.filter(~exported)
        self.enrollments = self.enrollments.filter(exported).rechunk()

    def all_users(self) -> pl.DataFrame:
        """Exported, then dropped users (row positions as in enrollments and agents)."""
        if self.dropped_users is None:
            return self.users
        return pl.concat([self.users, self.dropped_users], rechunk=False)

    def all_enrollments(self) -> pl.DataFrame:
        """Exported and dropped enrollments (what Bookmarked's sync has seen)."""
        if self.dropped_enrollments is None:
            return self.enrollments
        return pl.concat([self.enrollments, self.dropped_enrollments], rechunk=False)


@dataclass
class Base:
    """The clean SIS plus the indexes scenarios use to pick their cases."""

    profile: DistrictProfile
    calendar: Calendar
    ids: IdFactory
    rng: np.random.Generator
    sis: SisModel
    #: org sis_ids of the real schools (index = school number) and their levels
    school_ids: list[str]
    school_levels: list[str]
    district_id: str
    term_ids: dict[str, str]
    #: base students: student (index), sis_id, school, grade, family, row (in users)
    students: pl.DataFrame
    #: base parents: parent (index), sis_id, family, slot (0 or 1), row (in users)
    parents: pl.DataFrame
    #: per family: number of students and parents, first student, parents (-1: none)
    fam_n_students: np.ndarray
    fam_n_parents: np.ndarray
    fam_first_student: np.ndarray
    fam_parents: np.ndarray  # shape (n_families, 2)
    #: base teachers: teacher (index), sis_id, school, row (in users)
    teachers: pl.DataFrame
    #: base classes: class (index = row in classes), sis_id, school, grade, subject,
    #: section, term, homeroom
    classes: pl.DataFrame


_EPOCH = date(1970, 1, 1)
_TERMS = {"year": 0, "fall": 1, "spring": 2}


def _random_times(rng: np.random.Generator, n: int, start: date, end: date) -> pl.Series:
    """Timestamps uniformly between two dates (SIS edit times)."""
    t0 = (start - _EPOCH).days * 86400
    t1 = (end - _EPOCH).days * 86400 + 86399
    seconds = rng.integers(t0, t1, size=n, dtype=np.int64)
    return pl.Series("modified", seconds * 1_000_000).cast(pl.Datetime("us"))


def _pick(values: tuple[str, ...], index: np.ndarray) -> pl.Series:
    return pl.Series(values, dtype=pl.String).gather(index)


def _slugs(values: tuple[str, ...], index: np.ndarray) -> pl.Series:
    return pl.Series([slug(v) for v in values], dtype=pl.String).gather(index)


def _unique_handles(first: pl.Series, last: pl.Series) -> pl.Series:
    """`first.last`, `first.last2`, ... : unique handles for usernames and emails."""
    frame = pl.DataFrame({"f": first, "l": last})
    return frame.select(
        pl.concat_str(
            [
                pl.col("f"),
                pl.lit("."),
                pl.col("l"),
                pl.when(pl.int_range(pl.len()).over("f", "l") == 0)
                .then(pl.lit(""))
                .otherwise((pl.int_range(pl.len()).over("f", "l") + 1).cast(pl.String)),
            ]
        )
    ).to_series()


def user_frame(n: int, **columns: object) -> pl.DataFrame:
    """A users frame with every internal column, defaults filled in."""
    defaults: dict[str, object] = {
        "status": "active",
        "exported": True,
        "enabled": True,
        "middle": None,
        "identifier": None,
        "email": None,
        "phone": None,
        "grade_raw": None,
        "birth_date": None,
        "sex": None,
        "family": -1,
    }
    data = {**defaults, **columns}
    series = []
    for name, dtype in USER_SCHEMA.items():
        value = data[name]
        if isinstance(value, pl.Series):
            series.append(value.alias(name).cast(dtype))
        elif isinstance(value, np.ndarray):
            series.append(pl.Series(name, value).cast(dtype))
        else:
            series.append(pl.repeat(value, n, dtype=dtype, eager=True).alias(name))
    return pl.DataFrame(series)


def build_base(profile: DistrictProfile, n_students: int, seed: int, today: date) -> Base:
    """The district's SIS before anything goes wrong. The harmless variety of real data is
    already in it: siblings, one or two parents (some guardians or relatives), links
    listed on one side only, ended fall-semester enrollments, aides and proctors."""
    rng = np.random.default_rng(seed)
    cal = Calendar(today)
    ids = IdFactory(profile.id_style, profile.id_prefix, rng)
    n_schools = len(profile.schools)

    # orgs: the district and its schools
    district_id = ids.one("org", "dist")
    school_ids = ids.take("org", n_schools, "sch").to_list()
    levels = [s.level for s in profile.schools]
    orgs = pl.DataFrame(
        {
            "sis_id": [district_id, *school_ids],
            "name": [profile.name, *[s.name for s in profile.schools]],
            "type": ["district"] + ["school"] * n_schools,
            "identifier": [None]
            + [f"{rng.integers(10, 99)}-{rng.integers(1000000, 9999999)}" for _ in school_ids],
            "parent_sis_id": [None] + [district_id] * n_schools,
            "status": "active",
            "exported": True,
        },
        schema_overrides={"identifier": pl.String, "parent_sis_id": pl.String},
    ).with_columns(
        _random_times(rng, n_schools + 1, cal.year_start - timedelta(days=200), cal.year_start)
    )

    # academic sessions: the school year and its two semesters
    session_ids = ids.take("session", 3, "term").to_list()
    term_ids = {"year": session_ids[0], "fall": session_ids[1], "spring": session_ids[2]}
    sy = cal.school_year
    sessions = pl.DataFrame(
        {
            "sis_id": session_ids,
            "title": [f"{sy - 1}-{sy} School Year", f"Fall {sy - 1}", f"Spring {sy}"],
            "type": ["schoolYear", "semester", "semester"],
            "start": [cal.year_start, cal.year_start, cal.spring_start],
            "end": [cal.year_end, cal.fall_end, cal.year_end],
            "parent_sis_id": [None, session_ids[0], session_ids[0]],
            "school_year": [str(sy)] * 3,
        }
    )

    # students: school, grade, first name (last name comes with the family)
    shares = np.array([s.share for s in profile.schools], dtype=float)
    school = rng.choice(n_schools, size=n_students, p=shares / shares.sum())
    lo = np.array([LEVEL_GRADES[lv][0] for lv in levels])
    hi = np.array([LEVEL_GRADES[lv][1] for lv in levels])
    grade = lo[school] + (rng.random(n_students) * (hi - lo + 1)[school]).astype(np.int64)
    first_idx = rng.integers(0, len(FIRST_NAMES), n_students)

    # families: 1-4 siblings, 0-2 parents (or guardians, relatives)
    order = rng.permutation(n_students)
    sizes = rng.choice([1, 2, 3, 4], size=n_students, p=[0.6, 0.28, 0.09, 0.03])
    ends = np.cumsum(sizes)
    n_fam = int(np.searchsorted(ends, n_students) + 1)
    sizes = sizes[:n_fam].copy()
    sizes[-1] -= ends[n_fam - 1] - n_students
    family_of_pos = np.repeat(np.arange(n_fam), sizes)
    family = np.empty(n_students, dtype=np.int64)
    family[order] = family_of_pos
    fam_first = order[np.cumsum(sizes) - sizes]  # the first listed member of each family
    fam_n_par = rng.choice([0, 1, 2], size=n_fam, p=[0.1, 0.42, 0.48])
    fam_last = rng.integers(0, len(LAST_NAMES), n_fam)
    last_idx = fam_last[family]

    student_ids = ids.take("user", n_students, "stu")
    numbers = 10 ** max(5, len(str(n_students))) + rng.permutation(n_students)
    identifier = pl.Series(numbers).cast(pl.String)
    handles = _unique_handles(_slugs(FIRST_NAMES, first_idx), _slugs(LAST_NAMES, last_idx))
    email = handles + f"@students.{profile.domain}"
    birth_year = cal.school_year - 6 - grade
    birth = (
        pl.Series("b", (birth_year - 1970) * 365.25 + rng.integers(0, 365, n_students))
        .cast(pl.Int32)
        .cast(pl.Date)
    )
    school_sis = pl.Series(school_ids, dtype=pl.String).gather(school)
    students_users = user_frame(
        n_students,
        sis_id=student_ids,
        role_raw="student",
        org_ids=school_sis,
        given=_pick(FIRST_NAMES, first_idx),
        family_name=_pick(LAST_NAMES, last_idx),
        username=handles,
        identifier=identifier,
        email=email,
        grade_raw=pl.select(grade_codes(pl.lit(pl.Series(grade)))).to_series(),
        birth_date=birth,
        sex=pl.Series(np.where(rng.random(n_students) < 0.5, "female", "male")),
        family=family,
        modified=_random_times(
            rng, n_students, cal.year_start - timedelta(days=90), cal.last_change
        ),
    )
    students = pl.DataFrame(
        {
            "student": np.arange(n_students),
            "sis_id": student_ids,
            "school": school,
            "grade": grade,
            "family": family,
        }
    )

    # parents
    fam_parents = np.full((n_fam, 2), -1, dtype=np.int64)
    par_family = np.concatenate([np.flatnonzero(fam_n_par >= 1), np.flatnonzero(fam_n_par == 2)])
    par_slot = np.concatenate(
        [np.zeros((fam_n_par >= 1).sum(), np.int64), np.ones((fam_n_par == 2).sum(), np.int64)]
    )
    sort = np.lexsort((par_slot, par_family))
    par_family, par_slot = par_family[sort], par_slot[sort]
    n_par = len(par_family)
    fam_parents[par_family, par_slot] = np.arange(n_par)
    par_role = rng.choice(["parent", "guardian", "relative"], size=n_par, p=[0.86, 0.1, 0.04])
    par_last = np.where(
        (par_role != "parent") & (rng.random(n_par) < 0.5),
        rng.integers(0, len(LAST_NAMES), n_par),
        fam_last[par_family],
    )
    par_first = rng.integers(0, len(ADULT_FIRST_NAMES), n_par)
    par_handles = _unique_handles(
        _slugs(ADULT_FIRST_NAMES, par_first), _slugs(LAST_NAMES, par_last)
    )
    domains = pl.Series(["example.com", "example.net", "example.org"]).gather(
        rng.integers(0, 3, n_par)
    )
    par_email = pl.select(
        pl.when(pl.lit(pl.Series(rng.random(n_par) < 0.015)))
        .then(None)
        .otherwise(pl.concat_str([pl.lit(par_handles), pl.lit("@"), pl.lit(domains)]))
    ).to_series()
    phone = pl.select(
        pl.format(
            "(555) {}-{}",
            pl.lit(pl.Series(rng.integers(200, 999, n_par))),
            pl.lit(pl.Series(rng.integers(1000, 9999, n_par))),
        )
    ).to_series()
    # a parent's orgs: the schools of the family's children, the first child's first
    child_schools = (
        pl.DataFrame({"family": family[order], "school": school_sis.gather(order)})
        .group_by("family", maintain_order=True)
        .agg(pl.col("school").unique(maintain_order=True).str.join(",").alias("org_ids"))
    )
    parent_ids = ids.take("user", n_par, "par")
    par_orgs = (
        pl.DataFrame({"family": par_family})
        .join(child_schools, on="family", how="left", maintain_order="left")
        .get_column("org_ids")
    )
    parents_users = user_frame(
        n_par,
        sis_id=parent_ids,
        role_raw=pl.Series(par_role),
        org_ids=par_orgs,
        given=_pick(ADULT_FIRST_NAMES, par_first),
        family_name=_pick(LAST_NAMES, par_last),
        username=par_handles,
        email=par_email,
        phone=phone,
        family=par_family,
        modified=_random_times(rng, n_par, cal.year_start - timedelta(days=90), cal.last_change),
    )
    parents = pl.DataFrame(
        {"parent": np.arange(n_par), "sis_id": parent_ids, "family": par_family, "slot": par_slot}
    )

    # agent edges: each parent-child pair listed on both sides, or only one
    pairs = pl.DataFrame({"family": par_family, "parent": np.arange(n_par)}).join(
        pl.DataFrame({"family": family[order], "child": order}),
        on="family",
        how="inner",
        maintain_order="left",
    )
    pair_mode = rng.choice([0, 1, 2], size=pairs.height, p=[0.6, 0.25, 0.15])  # both|child|parent

    # courses (one per level, grade and subject) and classes (per school and grade, every
    # subject of the level in sections of ~24)
    counts = np.zeros((n_schools, 13), dtype=np.int64)
    np.add.at(counts, (school, grade), 1)
    subjects = pl.DataFrame(
        [
            {
                "level": lv,
                "subject": j,
                "name": sub.name,
                "code": sub.code,
                "term": sub.term,
                "homeroom": sub.homeroom,
            }
            for lv, subs in SUBJECTS.items()
            for j, sub in enumerate(subs)
        ]
    )
    course_keys = pl.DataFrame(
        [
            {"level": lv, "grade": g, "subject": j}
            for lv in dict.fromkeys(levels)
            for g in range(LEVEL_GRADES[lv][0], LEVEL_GRADES[lv][1] + 1)
            for j in range(len(SUBJECTS[lv]))
        ]
    ).join(subjects, on=["level", "subject"], how="left", maintain_order="left")
    course_ids = ids.take("course", course_keys.height, "crs")
    course_keys = course_keys.with_columns(course_sis_id=course_ids)
    courses = course_keys.select(
        sis_id="course_sis_id",
        title=pl.format("{} {}", "name", _grade_title(pl.col("grade"))),
        course_code=pl.concat_str("code", grade_codes(pl.col("grade"))),
        grades=grade_codes(pl.col("grade")),
        org_sis_id=pl.lit(district_id),
        school_year_sis_id=pl.lit(term_ids["year"]),
        subject="name",
    )

    group_school, group_grade = np.nonzero(counts)
    group_sections = np.ceil(counts[group_school, group_grade] / CLASS_SIZE).astype(np.int64)
    n_subj = np.array([len(SUBJECTS[levels[s]]) for s in range(n_schools)], dtype=np.int64)
    per_group = group_sections * n_subj[group_school]
    n_cls = int(per_group.sum())
    rep = np.repeat(np.arange(len(group_school)), per_group)
    offset = np.arange(n_cls) - np.repeat(np.cumsum(per_group) - per_group, per_group)
    c_school = group_school[rep]
    c_grade = group_grade[rep]
    c_subject = offset // group_sections[rep]
    c_section = offset % group_sections[rep]
    class_ids = ids.take("class", n_cls, "cls")
    school_series = pl.Series(school_ids, dtype=pl.String)
    class_frame = pl.DataFrame(
        {
            "class": np.arange(n_cls),
            "sis_id": class_ids,
            "school": c_school,
            "grade": c_grade,
            "subject": c_subject,
            "section": c_section,
            "level": pl.Series(levels, dtype=pl.String).gather(c_school),
        }
    ).join(course_keys, on=["level", "grade", "subject"], how="left", maintain_order="left")
    classes = class_frame.select(
        sis_id="sis_id",
        title=pl.format("{} {} - {}", "name", _grade_title(pl.col("grade")), pl.col("section") + 1),
        grades=grade_codes(pl.col("grade")),
        course_sis_id="course_sis_id",
        class_code=pl.format(
            "{}-{}-{}",
            "code",
            grade_codes(pl.col("grade")),
            (pl.col("section") + 1).cast(pl.String).str.zfill(2),
        ),
        class_type=pl.when(pl.col("code").is_in(["HR", "ADV"]))
        .then(pl.lit("homeroom"))
        .otherwise(pl.lit("scheduled")),
        location=pl.format("Room {}", 100 + pl.col("grade") * 10 + pl.col("section")),
        school_sis_id=school_series.gather(c_school),
        term_sis_ids=pl.when(pl.col("term") == "year")
        .then(pl.concat_list(pl.lit(term_ids["fall"]), pl.lit(term_ids["spring"])))
        .otherwise(pl.concat_list(pl.col("term").replace_strict(term_ids))),
        subject="name",
        period=(pl.col("subject") + 1).cast(pl.String),
        status=pl.lit("active"),
        exported=pl.lit(True),
        modified=_random_times(rng, n_cls, cal.year_start - timedelta(days=30), cal.year_start),
    )
    class_frame = class_frame.select(
        "class", "sis_id", "school", "grade", "subject", "section", "term", "homeroom"
    )
    c_term = class_frame.get_column("term")

    # student enrollments: the required subjects of the level and a random choice of the
    # optional ones (as many as the profile's enrollments_per_student), all in the
    # student's section
    class_key = ((c_school * 13 + c_grade) * MAX_SUBJECTS + c_subject) * 10000 + c_section
    key_order = np.argsort(class_key)
    pos_in_group = (
        pl.DataFrame({"s": school, "g": grade})
        .select(pl.int_range(pl.len()).over("s", "g"))
        .to_series()
        .to_numpy()
    )
    n_sec = np.maximum(1, np.ceil(counts / CLASS_SIZE).astype(np.int64))
    section = pos_in_group % n_sec[school, grade]
    student_level = np.array(levels, dtype=object)[school] if n_students else np.array([])
    takes = np.zeros((n_students, MAX_SUBJECTS), dtype=bool)
    for lv, subs in SUBJECTS.items():
        members = np.flatnonzero(student_level == lv)
        req = [j for j, sub in enumerate(subs) if sub.required]
        opt = np.array([j for j, sub in enumerate(subs) if not sub.required])
        low, high = profile.enrollments_per_student
        k_opt = np.clip(rng.integers(low, high + 1, len(members)) - len(req), 0, len(opt))
        ranks = np.argsort(np.argsort(rng.random((len(members), len(opt))), axis=1), axis=1)
        takes[np.ix_(members, req)] = True
        takes[members[:, None], opt[None, :]] = ranks < k_opt[:, None]
    e_student, e_subject = np.nonzero(takes)  # ordered by student, then subject
    key = (school[e_student] * 13 + grade[e_student]) * MAX_SUBJECTS + e_subject
    key = key * 10000 + section[e_student]
    e_class = key_order[np.searchsorted(class_key[key_order], key)]

    term_index = c_term.replace_strict(_TERMS, return_dtype=pl.Int8).to_numpy()
    begin_days = np.array([(cal.term_dates(t)[0] - _EPOCH).days for t in _TERMS], np.int32)
    end_days = np.array([(cal.term_dates(t)[1] - _EPOCH).days for t in _TERMS], np.int32)
    n_enr = len(e_student)
    student_enr = pl.DataFrame(
        {
            "sis_id": ids.take("enrollment", n_enr, "enr"),
            "class_sis_id": class_ids.gather(e_class),
            "school_sis_id": school_sis.gather(e_student),
            "user_sis_id": student_ids.gather(e_student),
            "class_row": e_class,
            "user_row": e_student,  # shifted below, once the row of the first student is known
            "role": pl.repeat("student", n_enr, dtype=ENROLLMENT_ROLE, eager=True),
            "primary": pl.repeat(None, n_enr, dtype=pl.Boolean, eager=True),
            "begin": pl.Series(begin_days[term_index[e_class]]).cast(pl.Date),
            "end": pl.Series(end_days[term_index[e_class]]).cast(pl.Date),
            "status": pl.repeat("active", n_enr, dtype=STATUS, eager=True),
            "exported": pl.repeat(True, n_enr, eager=True),
        }
    ).with_columns(_random_times(rng, n_enr, cal.year_start - timedelta(days=14), cal.year_start))

    # teachers: a homeroom teacher per elementary section (core subjects), otherwise one
    # teacher per subject for up to 6 sections
    homeroom = class_frame.get_column("homeroom").to_numpy()
    chunk = (
        class_frame.select(pl.int_range(pl.len()).over("school", "subject") // 6)
        .to_series()
        .to_numpy()
    )
    t_key = np.where(
        homeroom,
        (c_school * 13 + c_grade) * 1000 + c_section,
        10**9 + (c_school * MAX_SUBJECTS + c_subject) * 1000 + chunk,
    )
    t_unique, t_of_class = np.unique(t_key, return_inverse=True)
    n_tch = len(t_unique)
    t_school = np.zeros(n_tch, dtype=np.int64)
    t_school[t_of_class] = c_school
    teacher_ids = ids.take("user", n_tch, "tch")
    t_first = rng.integers(0, len(ADULT_FIRST_NAMES), n_tch)
    t_last = rng.integers(0, len(LAST_NAMES), n_tch)
    t_handles = _unique_handles(_slugs(ADULT_FIRST_NAMES, t_first), _slugs(LAST_NAMES, t_last))
    teachers_users = user_frame(
        n_tch,
        sis_id=teacher_ids,
        role_raw="teacher",
        org_ids=pl.Series(school_ids, dtype=pl.String).gather(t_school),
        given=_pick(ADULT_FIRST_NAMES, t_first),
        family_name=_pick(LAST_NAMES, t_last),
        username=t_handles,
        identifier=pl.select(
            pl.format("T{}", pl.lit(pl.Series(np.arange(n_tch) + 10001)))
        ).to_series(),
        email=t_handles + f"@{profile.domain}",
        modified=_random_times(rng, n_tch, cal.year_start - timedelta(days=300), cal.last_change),
    )
    teacher_enr = pl.DataFrame(
        {
            "sis_id": ids.take("enrollment", n_cls, "enr"),
            "class_sis_id": class_ids,
            "school_sis_id": school_series.gather(c_school),
            "user_sis_id": teacher_ids.gather(t_of_class),
            "class_row": np.arange(n_cls),
            "user_row": t_of_class,  # shifted below
            "role": pl.repeat("teacher", n_cls, dtype=ENROLLMENT_ROLE, eager=True),
            "primary": pl.repeat(True, n_cls, eager=True),
            "begin": pl.Series(begin_days[term_index]).cast(pl.Date),
            "end": pl.Series(end_days[term_index]).cast(pl.Date),
            "status": pl.repeat("active", n_cls, dtype=STATUS, eager=True),
            "exported": pl.repeat(True, n_cls, eager=True),
        }
    ).with_columns(_random_times(rng, n_cls, cal.year_start - timedelta(days=14), cal.year_start))
    teachers = pl.DataFrame(
        {"teacher": np.arange(n_tch), "sis_id": teacher_ids, "school": t_school}
    )

    # staff who are not teachers: district and school administrators (synced as admins),
    # aides and proctors (not synced by Bookmarked)
    staff_role, staff_org, staff_title = [], [], []
    for k in range(2):
        staff_role.append("administrator")
        staff_org.append([district_id])
        staff_title.append("district" if k == 0 else "district2")
    for s in range(n_schools):
        staff_role.append("administrator")
        staff_org.append([school_ids[s]])
        staff_title.append("principal")
        staff_role.append("aide" if levels[s] == "elementary" else "proctor")
        staff_org.append([school_ids[s]])
        staff_title.append("support")
    n_staff = len(staff_role)
    s_first = rng.integers(0, len(ADULT_FIRST_NAMES), n_staff)
    s_last = rng.integers(0, len(LAST_NAMES), n_staff)
    s_handles = _unique_handles(
        _slugs(ADULT_FIRST_NAMES, s_first), _slugs(LAST_NAMES, s_last)
    ).alias("h") + pl.Series(["-staff"] * n_staff)
    staff_ids = ids.take("user", n_staff, "stf")
    staff_users = user_frame(
        n_staff,
        sis_id=staff_ids,
        role_raw=pl.Series(staff_role),
        org_ids=pl.Series([",".join(orgs) for orgs in staff_org], dtype=pl.String),
        given=_pick(ADULT_FIRST_NAMES, s_first),
        family_name=_pick(LAST_NAMES, s_last),
        username=s_handles,
        identifier=pl.select(
            pl.format("A{}", pl.lit(pl.Series(np.arange(n_staff) + 501)))
        ).to_series(),
        email=s_handles + f"@{profile.domain}",
        modified=_random_times(rng, n_staff, cal.year_start - timedelta(days=300), cal.last_change),
    )
    # proctors are enrolled in one class at their school (not synced either)
    first_class = np.searchsorted(c_school, np.arange(n_schools))
    classes_at = np.bincount(c_school, minlength=n_schools)
    proctor_enr = []
    for i in range(n_staff):
        s_idx = school_ids.index(staff_org[i][0]) if staff_org[i][0] in school_ids else -1
        if staff_role[i] != "proctor" or classes_at[s_idx] == 0:
            continue
        c = int(first_class[s_idx] + rng.integers(0, classes_at[s_idx]))
        b, e = cal.term_dates(c_term[c])
        proctor_enr.append(
            {
                "sis_id": ids.one("enrollment", "enr"),
                "class_sis_id": class_ids[c],
                "school_sis_id": school_ids[s_idx],
                "user_sis_id": staff_ids[i],
                "class_row": c,
                "user_row": i,
                "role": "proctor",
                "primary": False,
                "begin": b,
                "end": e,
                "status": "active",
                "exported": True,
                "modified": datetime(b.year, b.month, b.day, 7, 30),
            }
        )

    # users.csv order: staff, teachers, students, parents; row positions follow
    users = pl.concat([staff_users, teachers_users, students_users, parents_users])
    teacher_row0 = n_staff
    student_row0 = n_staff + n_tch
    parent_row0 = student_row0 + n_students
    enrollments = (
        pl.concat(
            [
                student_enr.with_columns(pl.col("user_row") + student_row0),
                teacher_enr.with_columns(pl.col("user_row") + teacher_row0),
                pl.DataFrame(proctor_enr, schema=ENROLLMENT_SCHEMA),
            ],
            how="diagonal_relaxed",
        )
        .select(list(ENROLLMENT_SCHEMA))
        .cast(ENROLLMENT_SCHEMA)
    )
    child = pairs.get_column("child").to_numpy()
    parent = pairs.get_column("parent").to_numpy()
    listed_by_child = pair_mode != 2
    listed_by_parent = pair_mode != 1
    agents = pl.DataFrame(
        {
            "user_sis_id": pl.concat(
                [
                    student_ids.gather(child[listed_by_child]),
                    parent_ids.gather(parent[listed_by_parent]),
                ]
            ),
            "agent_sis_id": pl.concat(
                [
                    parent_ids.gather(parent[listed_by_child]),
                    student_ids.gather(child[listed_by_parent]),
                ]
            ),
            "user_row": np.concatenate(
                [child[listed_by_child] + student_row0, parent[listed_by_parent] + parent_row0]
            ),
            "agent_row": np.concatenate(
                [parent[listed_by_child] + parent_row0, child[listed_by_parent] + student_row0]
            ),
        }
    ).cast({"user_row": pl.Int32, "agent_row": pl.Int32})
    students = students.with_columns(row=pl.col("student") + student_row0)
    parents = parents.with_columns(row=pl.col("parent") + parent_row0)
    teachers = teachers.with_columns(row=pl.col("teacher") + teacher_row0)
    sis = SisModel(
        orgs=orgs,
        sessions=sessions,
        courses=courses,
        classes=classes,
        users=users,
        agents=agents,
        enrollments=enrollments,
    )
    return Base(
        profile=profile,
        calendar=cal,
        ids=ids,
        rng=rng,
        sis=sis,
        school_ids=school_ids,
        school_levels=levels,
        district_id=district_id,
        term_ids=term_ids,
        students=students,
        parents=parents,
        fam_n_students=np.bincount(family, minlength=n_fam),
        fam_n_parents=fam_n_par,
        fam_first_student=fam_first,
        fam_parents=fam_parents,
        teachers=teachers,
        classes=class_frame,
    )


def _grade_title(grade: pl.Expr) -> pl.Expr:
    return pl.when(grade == 0).then(pl.lit("Kindergarten")).otherwise(pl.format("Grade {}", grade))
