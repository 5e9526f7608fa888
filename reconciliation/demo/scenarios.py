"""Known discrepancies and harmless noise, injected into a clean world, with ground truth.

Every case is made the way it happens in real life: the SIS is edited BEFORE the
simulated sync (a transfer, a changed sourcedId, a shared parent email, a bad agent
reference) and Bookmarked is edited AFTER it where its own sync went wrong (a row never
written, a change never applied, a link on the wrong student). Each case writes the
findings the diagnostics must produce into the ground truth, one row per finding, keyed
by the entity the finding is about.

Cases are kept "clean": each takes its own family (students and parents), teacher or
class, so that no case trips another rule by accident. Where the rules say a consequence
is NOT a separate finding (the enrollments of a missing student, the old-campus
enrollments of a transfer, the sis_id a merged parent account lost), the ground truth
lists only the one finding the rules promise.

Noise is applied first and never gets a ground-truth row: email case and whitespace,
grade code variants, records inactive in both systems, disabled logins, hand-made
admins without sis_id, correct transfers. (One-sided links, siblings, two parents,
ended fall enrollments, aides and proctors come with the base world.)

About references that do not resolve: an enrollment to an unknown class or user, or a
class at an unknown school, is `source_integrity`; a user's agent that is not in the
users file is reported by `student_mismatch` as ISSUE_IN_SOURCE, not here.

Conventions the ground truth follows (where the rules table leaves room):

- `entity_type` of a user is its synced role: student, teacher, parent or admin;
- a missing student or class hides its enrollments and links, a missing parent its
  links; a stale student or parent has no active enrollment and no link in Bookmarked;
- a bad link is reported on its parent side: the unknown agent's id (entity_type
  `parent`) when a student lists it, the parent when a parent lists an unknown user, a
  teacher or another parent, the teacher (entity_type `teacher`, its role) when a
  student lists a teacher;
- a changed sourcedId keeps the enrollments' sourcedIds (the SIS moved them to the new
  id; Bookmarked's still point at the old account), and the student has no parents; an
  email match counts only where one side has no student number (siblings may share a
  family email);
- a campus transfer is a student with enrollments at another campus (in either system)
  than the SIS says; it is a finding when Bookmarked differs on the school or on any of
  that student's enrollments; `enabledUser=false` makes an account inactive in both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, time, timedelta

import numpy as np
import polars as pl

from reconciliation.demo.base import ENROLLMENT_SCHEMA, USER_SCHEMA, Base, user_frame
from reconciliation.demo.names import ADULT_FIRST_NAMES, FIRST_NAMES, LAST_NAMES
from reconciliation.demo.sync import BookmarkedTables, SyncSkips, sync_time
from reconciliation.rules import RULE_IDS
from reconciliation.rules.base import ISSUE_IN_BOOKMARKED, ISSUE_IN_SOURCE

#: the rules the ground truth has cases for: every rule of the registry
RULES = RULE_IDS
GROUND_TRUTH_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String(),
    "rule": pl.String(),
    "entity_type": pl.String(),
    "sis_id": pl.String(),
    "status": pl.String(),
    "note": pl.String(),
}

AfterSync = Callable[[BookmarkedTables], None]


def _in(column: str, values: pl.Series | Sequence[object]) -> pl.Expr:
    series = values if isinstance(values, pl.Series) else pl.Series(values)
    return pl.col(column).is_in(series.implode())


def _set(frame: pl.DataFrame, where: pl.Expr, **values: object) -> pl.DataFrame:
    """Set columns on the rows `where` selects (values: literals, or expressions computed
    on those rows). Only the selected rows are evaluated and written (a scatter), which
    keeps edits cheap on frames of millions of rows."""
    index = frame.select(pl.arg_where(where)).to_series()
    if index.len() == 0:
        return frame
    rows = frame[index].with_columns(
        (v if isinstance(v, pl.Expr) else pl.lit(v, dtype=frame.schema[c])).alias(c)
        for c, v in values.items()
    )
    return frame.with_columns(
        frame.get_column(c).scatter(index, rows.get_column(c).cast(frame.schema[c])) for c in values
    )


def _update(frame: pl.DataFrame, edits: pl.DataFrame, on: str = "sis_id") -> pl.DataFrame:
    """Write the non-null values of `edits` onto the rows of `frame` with the same key.

    Like `DataFrame.update`, but touches only the edited rows (a scatter), which matters
    when a few hundred edits meet millions of rows.
    """
    index = frame.select(on).with_row_index("_row").filter(_in(on, edits.get_column(on)))
    matched = index.join(edits, on=on, how="inner")
    out = frame
    for column in edits.columns:
        if column == on:
            continue
        values = matched.filter(pl.col(column).is_not_null())
        if values.height == 0:
            continue
        series = out.get_column(column).scatter(
            values.get_column("_row"), values.get_column(column).cast(frame.schema[column])
        )
        out = out.with_columns(series)
    return out


def _retire(rows: pl.DataFrame, *, gone: pl.Series, deleted: pl.Series) -> pl.DataFrame:
    """New SIS rows as the export ends up with them: `gone` dropped from it, `deleted`
    marked `tobedeleted`, the rest active."""
    return rows.with_columns(
        exported=~_in("sis_id", gone),
        status=pl.when(_in("sis_id", deleted))
        .then(pl.lit("tobedeleted"))
        .otherwise(pl.lit("active")),
    )


class Injector:
    """Picks the cases, edits the SIS now and Bookmarked after the sync, keeps the truth."""

    def __init__(self, base: Base, case_rate: float) -> None:
        self.base, self.rng = base, base.rng
        self.sis = base.sis
        n_students = base.students.height
        #: cases per variant grow with the district (at least the given minimum)
        self.scale = max(1.0, n_students * case_rate)
        self.fam_taken = np.zeros(len(base.fam_n_parents), dtype=bool)
        self.teacher_taken = np.zeros(base.teachers.height, dtype=bool)
        self.class_taken = np.zeros(base.classes.height, dtype=bool)
        self.truth: list[pl.DataFrame] = []
        self.after_sync: list[AfterSync] = []
        #: what Bookmarked's sync never wrote (see `never_synced`)
        self.skip = SyncSkips()
        self.noise: dict[str, int] = {}
        self.cal = base.calendar
        self.bm_time = sync_time(self.cal)

    # -- picking -----------------------------------------------------------------------

    def count(self, minimum: int) -> int:
        return round(minimum * self.scale)

    def families(
        self,
        k: int,
        *,
        parents: tuple[int, int] = (0, 2),
        students: tuple[int, int] = (1, 4),
        mask: np.ndarray | None = None,
    ) -> np.ndarray:
        """Pick up to k free families (and take them)."""
        b = self.base
        ok = (
            ~self.fam_taken
            & (b.fam_n_parents >= parents[0])
            & (b.fam_n_parents <= parents[1])
            & (b.fam_n_students >= students[0])
            & (b.fam_n_students <= students[1])
        )
        if mask is not None:
            ok &= mask
        candidates = np.flatnonzero(ok)
        pick = self.rng.choice(candidates, size=min(k, len(candidates)), replace=False)
        self.fam_taken[pick] = True
        return np.sort(pick)

    def first_students(self, fams: np.ndarray) -> pl.DataFrame:
        """The first student of each family: sis_id, school, grade, family, row."""
        return self.base.students.select("sis_id", "school", "grade", "family", "row").gather(
            self.base.fam_first_student[fams]
        )

    def user_rows(self, sis_ids: pl.Series) -> pl.Series:
        """Row positions of users by sourcedId (null: not in the model)."""
        index = self.sis.users.select("sis_id").with_row_index("row").filter(_in("sis_id", sis_ids))
        return (
            pl.DataFrame({"sis_id": sis_ids})
            .join(index, on="sis_id", how="left", maintain_order="left")
            .get_column("row")
            .cast(pl.Int32)
        )

    def parent_ids(self, fams: np.ndarray, slot: int = 0) -> pl.Series:
        index = self.base.fam_parents[fams, slot]
        assert (index >= 0).all(), "family without that parent"
        return self.base.parents.get_column("sis_id").gather(index)

    def first_parent_has_email(self) -> np.ndarray:
        """Per family: its first parent exists and has an email."""
        parents = self.base.parents.filter(pl.col("slot") == 0)
        ok = np.zeros(len(self.base.fam_n_parents), dtype=bool)
        has = self.sis.users.get_column("email").is_not_null().gather(parents.get_column("row"))
        ok[parents.get_column("family").to_numpy()] = has.to_numpy()
        return ok

    def teachers(self, k: int) -> pl.DataFrame:
        candidates = np.flatnonzero(~self.teacher_taken)
        pick = np.sort(self.rng.choice(candidates, size=min(k, len(candidates)), replace=False))
        self.teacher_taken[pick] = True
        return self.base.teachers.gather(pick)

    def active_enrollment_of(self, students: pl.Series) -> pl.DataFrame:
        """One active year-long enrollment per student, in a class no case has taken."""
        free_classes = self.base.classes.filter(
            pl.Series(~self.class_taken) & (pl.col("term") == "year")
        ).get_column("sis_id")
        rows = self.sis.enrollments.filter(
            _in("user_sis_id", students)
            & _in("class_sis_id", free_classes)
            & (pl.col("status") == "active")
            & pl.col("exported")
        )
        shuffled = rows.sample(fraction=1.0, shuffle=True, seed=int(self.rng.integers(2**31)))
        return shuffled.unique(subset="user_sis_id", keep="first", maintain_order=True).sort(
            "sis_id"
        )

    # -- recording ---------------------------------------------------------------------

    def expect(
        self,
        rule: str,
        entity_type: str,
        sis_ids: pl.Series | Sequence[str],
        status: str,
        note: str | Sequence[str],
    ) -> None:
        """Ground-truth rows: one finding per sis_id (`note`: one for all, or one each)."""
        ids = pl.Series(sis_ids, dtype=pl.String) if not isinstance(sis_ids, pl.Series) else sis_ids
        if ids.len() == 0:
            return
        self.truth.append(
            pl.DataFrame(
                {
                    "customer_id": self.base.profile.customer_id,
                    "rule": rule,
                    "entity_type": entity_type,
                    "sis_id": ids.cast(pl.String),
                    "status": status,
                    "note": note if isinstance(note, str) else pl.Series(note, dtype=pl.String),
                },
                schema=GROUND_TRUTH_SCHEMA,
            )
        )

    def later(self, fn: AfterSync) -> AfterSync:
        """Register a change to Bookmarked, applied after the simulated sync."""
        self.after_sync.append(fn)
        return fn

    def never_synced(self, table: str, sis_ids: pl.Series | Sequence[str]) -> None:
        """Rows Bookmarked's sync never wrote (a school, user, class or enrollment, by
        sis_id). The simulated sync leaves them out, and with a user or class its
        enrollments and links, as the real sync would have."""
        self.skip.add(table, sis_ids)

    def apply(self, bm: BookmarkedTables) -> None:
        """Bookmarked's side of every case, after the simulated sync."""
        for change in self.after_sync:
            change(bm)

    def ground_truth(self) -> pl.DataFrame:
        if not self.truth:
            return pl.DataFrame(schema=GROUND_TRUTH_SCHEMA)
        return pl.concat(self.truth).sort("rule", "entity_type", "sis_id")

    # -- SIS edits ---------------------------------------------------------------------

    def set_users(self, sis_ids: pl.Series, **values: object) -> None:
        self.sis.users = _set(self.sis.users, _in("sis_id", sis_ids), **values)

    def set_enrollments(self, where: pl.Expr, **values: object) -> None:
        self.sis.enrollments = _set(self.sis.enrollments, where, **values)

    def add_users(self, rows: pl.DataFrame) -> None:
        self.sis.users = pl.concat(
            [self.sis.users, rows.select(list(USER_SCHEMA)).cast(USER_SCHEMA)]
        )

    def add_enrollments(self, rows: pl.DataFrame) -> None:
        self.sis.enrollments = pl.concat(
            [self.sis.enrollments, rows.select(list(ENROLLMENT_SCHEMA)).cast(ENROLLMENT_SCHEMA)]
        )

    def add_edges(self, users: pl.Series, agents: pl.Series) -> None:
        edges = pl.DataFrame(
            {
                "user_sis_id": users,
                "agent_sis_id": agents,
                "user_row": self.user_rows(users),
                "agent_row": self.user_rows(agents),
            }
        )
        self.sis.agents = pl.concat([self.sis.agents, edges.cast(self.sis.agents.schema)])

    def drop_edges(self, sis_ids: pl.Series) -> None:
        self.sis.agents = self.sis.agents.filter(
            ~_in("user_sis_id", sis_ids) & ~_in("agent_sis_id", sis_ids)
        )

    def changed(self, days_ago: int = 5) -> datetime:
        """A SIS edit time before the last good sync."""
        return datetime.combine(self.cal.today - timedelta(days=days_ago), time(14, 20))

    def new_user_rows(self, template_ids: pl.Series, new_ids: pl.Series) -> pl.DataFrame:
        """Copies of existing SIS users under new sourcedIds."""
        rows = self.sis.users.filter(_in("sis_id", template_ids))
        order = pl.DataFrame({"sis_id": template_ids, "new": new_ids})
        return (
            order.join(rows, on="sis_id", how="left", maintain_order="left")
            .with_columns(sis_id="new")
            .drop("new")
        )


# -- the cases -----------------------------------------------------------------------------


def inject(base: Base, case_rate: float, *, cases: bool = True) -> Injector:
    """All noise, then every case (unless `cases` is False); returns the injector, which
    holds the ground truth and the edits to apply to Bookmarked after the sync."""
    inj = Injector(base, case_rate)
    _noise(inj)
    if not cases:
        return inj
    # whole classes first: they take the families of everyone enrolled
    _missing_classes(inj)
    _extra_classes(inj)
    _schools(inj)
    _enrollments(inj)
    _students(inj)
    _duplicate_identities(inj)
    _parents(inj)
    _links(inj)
    _bad_agents(inj)
    _email_conflicts(inj)
    _transfers(inj)
    _teachers(inj)
    _admins(inj)
    _contradictions(inj)  # last: the cases above draw the same random numbers as before
    return inj


def _noise(inj: Injector) -> None:
    """Differences that are NOT findings (rules that report them are wrong)."""
    rng, sis = inj.rng, inj.sis
    users = sis.users
    n = users.height
    has_email = users.get_column("email").is_not_null().to_numpy()
    draw = rng.random(n)
    # SIS writes some emails in mixed case or with spaces; Bookmarked stores them lower-case
    sis_case = has_email & (draw < 0.05)
    sis_space = has_email & (draw >= 0.05) & (draw < 0.08)
    # Bookmarked holds some emails in another case than the SIS
    bm_case = has_email & (draw >= 0.08) & (draw < 0.11)
    email = pl.col("email")
    parts = email.str.split_exact("@", 1)
    capitalized = pl.concat_str(  # Maya.Chen@example.org, as some SIS screens save it
        parts.struct.field("field_0").str.to_titlecase(), pl.lit("@"), parts.struct.field("field_1")
    )
    sis.users = users.with_columns(
        email=pl.when(pl.lit(pl.Series(sis_case)))
        .then(capitalized)
        .when(pl.lit(pl.Series(sis_space)))
        .then(pl.concat_str(pl.lit(" "), email, pl.lit("  ")))
        .otherwise(email)
    )
    lower_ids = users.get_column("sis_id").filter(pl.Series(sis_case | sis_space))
    upper_ids = users.get_column("sis_id").filter(pl.Series(bm_case))
    inj.noise["email_case_or_whitespace"] = int(sis_case.sum() + sis_space.sum() + bm_case.sum())

    # grade codes that normalize equal: the SIS writes 'K' and '5', Bookmarked 'KG' and '05'
    # (and the other way round for a few)
    grade = pl.col("grade_raw")
    is_student = (users.get_column("role_raw") == "student").to_numpy()
    sis_variant = is_student & (rng.random(n) < 0.12)
    bm_variant = is_student & ~sis_variant & (rng.random(n) < 0.04)
    short = pl.when(grade == "KG").then(pl.lit("K")).otherwise(grade.str.strip_chars_start("0"))
    sis.users = sis.users.with_columns(
        grade_raw=pl.when(pl.lit(pl.Series(sis_variant))).then(short).otherwise(grade)
    )
    canonical_ids = users.get_column("sis_id").filter(pl.Series(sis_variant))
    variant_ids = users.get_column("sis_id").filter(pl.Series(bm_variant))
    inj.noise["grade_variant"] = int(sis_variant.sum() + bm_variant.sum())

    @inj.later
    def _(bm: BookmarkedTables) -> None:
        g = pl.col("grade")
        bm.users = _set(
            bm.users, _in("sis_id", lower_ids), email=pl.col("email").str.to_lowercase()
        )
        bm.users = _set(
            bm.users, _in("sis_id", upper_ids), email=pl.col("email").str.to_uppercase()
        )
        bm.users = _set(
            bm.users,
            _in("sis_id", canonical_ids),
            grade=pl.when(g == "K").then(pl.lit("KG")).otherwise(g.str.zfill(2)),
        )
        bm.users = _set(
            bm.users,
            _in("sis_id", variant_ids),
            grade=pl.when(g == "KG").then(pl.lit("K")).otherwise(g.str.strip_chars_start("0")),
        )


def _missing_classes(inj: Injector) -> None:
    """missing_data/class: a year-long class with students that Bookmarked lacks or has
    inactive. Its enrollments are not separate findings, so its students' families are
    kept out of every other case."""
    b = inj.base
    sizes = (
        inj.sis.enrollments.filter(pl.col("role") == "student")
        .group_by("class_sis_id")
        .len()
        .rename({"class_sis_id": "sis_id"})
    )
    candidates = b.classes.join(sizes, on="sis_id", how="left", maintain_order="left").filter(
        (pl.col("term") == "year") & (pl.col("len") >= 5)
    )
    k_absent, k_inactive = inj.count(2), inj.count(1)
    pick = np.sort(
        inj.rng.choice(
            candidates.get_column("class").to_numpy(),
            size=min(k_absent + k_inactive, candidates.height),
            replace=False,
        )
    )
    inj.rng.shuffle(pick)
    inj.class_taken[pick] = True
    chosen = b.classes.get_column("sis_id").gather(pick)
    absent, inactive = chosen.head(k_absent), chosen.slice(k_absent)
    enrolled = inj.sis.enrollments.filter(_in("class_sis_id", chosen)).get_column("user_sis_id")
    fams = b.students.filter(_in("sis_id", enrolled)).get_column("family").to_numpy()
    inj.fam_taken[fams] = True
    inj.expect(
        "missing_data",
        "class",
        absent,
        ISSUE_IN_BOOKMARKED,
        "class not in Bookmarked (its enrollments are not separate findings)",
    )
    inj.expect(
        "missing_data",
        "class",
        inactive,
        ISSUE_IN_BOOKMARKED,
        "class inactive in Bookmarked, active in the SIS",
    )

    inj.never_synced("classes", absent)

    @inj.later
    def _(bm: BookmarkedTables) -> None:
        bm.classes = _set(bm.classes, _in("sis_id", inactive), is_active=False)


def _extra_class_rows(inj: Injector, titles: list[str], school_ids: list[str]) -> pl.DataFrame:
    b = inj.base
    course = inj.sis.courses.get_column("sis_id")[0]
    n = len(titles)
    return pl.DataFrame(
        {
            "sis_id": b.ids.take("class", n, "cls"),
            "title": titles,
            "grades": [None] * n,
            "course_sis_id": [course] * n,
            "class_code": [f"X-{i + 1:02d}" for i in range(n)],
            "class_type": ["scheduled"] * n,
            "location": ["Library"] * n,
            "school_sis_id": school_ids,
            "term_sis_ids": [[b.term_ids["year"]]] * n,
            "subject": ["Enrichment"] * n,
            "period": ["8"] * n,
            "status": ["active"] * n,
            "exported": [True] * n,
            "modified": [inj.changed(30)] * n,
        },
        schema=inj.sis.classes.schema,
    )


def _extra_classes(inj: Injector) -> None:
    """stale_record/class (gone from the SIS, or tobedeleted, but active in Bookmarked),
    source_integrity/class (class at a school the export does not have), and a class
    inactive in both (noise). None of them has enrollments."""
    b = inj.base
    k = inj.count(1)
    school = [b.school_ids[int(i)] for i in inj.rng.integers(0, len(b.school_ids), 4 * k)]
    unknown_school = b.ids.take("org", k, "sch").to_list()
    rows = _extra_class_rows(
        inj,
        [f"Chess Club {i + 1}" for i in range(k)]
        + [f"Summer Bridge {i + 1}" for i in range(k)]
        + [f"Robotics Lab {i + 1}" for i in range(k)]
        + [f"Study Hall {i + 1}" for i in range(k)],
        school[: 3 * k] + unknown_school,
    )
    ids = rows.get_column("sis_id")
    gone, deleted, inactive_both, bad_school = (ids.slice(i * k, k) for i in range(4))
    rows = _retire(rows, gone=gone, deleted=pl.concat([deleted, inactive_both]))
    inj.sis.classes = pl.concat([inj.sis.classes, rows])
    inj.noise["classes_inactive_in_both"] = k
    inj.expect(
        "stale_record",
        "class",
        gone,
        ISSUE_IN_BOOKMARKED,
        "class gone from the SIS export, active in Bookmarked",
    )
    inj.expect(
        "stale_record",
        "class",
        deleted,
        ISSUE_IN_BOOKMARKED,
        "class tobedeleted in the SIS, active in Bookmarked",
    )
    inj.expect(
        "source_integrity",
        "class",
        bad_school,
        ISSUE_IN_SOURCE,
        "class references a school that is not in orgs",
    )

    @inj.later
    def _(bm: BookmarkedTables) -> None:
        bm.classes = _set(bm.classes, _in("sis_id", pl.concat([gone, deleted])), is_active=True)


def _schools(inj: Injector) -> None:
    """missing_data/school (a new campus Bookmarked lacks), stale_record/school (a closed
    campus still active in Bookmarked) and a school closed in both (noise). These
    campuses have no users or classes, so nothing else depends on them."""
    b = inj.base
    k = min(inj.count(1), 1 + len(b.school_ids) // 50)  # a few campuses, even in a big district
    ids = b.ids.take("org", 4 * k, "sch")
    missing, gone, deleted, inactive_both = (ids.slice(i * k, k) for i in range(4))
    names = (
        [f"{b.profile.name.split()[0]} Virtual Academy {i + 1}" for i in range(k)]
        + [f"Old Mill Elementary {i + 1} (closed)" for i in range(k)]
        + [f"Pine Street Annex {i + 1}" for i in range(k)]
        + [f"Cedar Hill Campus {i + 1} (closed)" for i in range(k)]
    )
    rows = pl.DataFrame(
        {
            "sis_id": ids,
            "name": names,
            "type": "school",
            "identifier": [
                f"{int(inj.rng.integers(10, 99))}-{int(inj.rng.integers(10**6, 10**7))}"
                for _ in range(4 * k)
            ],
            "parent_sis_id": b.district_id,
            "status": "active",
            "exported": True,
            "modified": inj.changed(40),
        }
    )
    rows = _retire(rows, gone=gone, deleted=pl.concat([deleted, inactive_both]))
    inj.sis.orgs = pl.concat(
        [inj.sis.orgs, rows.select(inj.sis.orgs.columns).cast(inj.sis.orgs.schema)]
    )
    inj.noise["schools_inactive_in_both"] = k
    inj.expect(
        "missing_data",
        "school",
        missing,
        ISSUE_IN_BOOKMARKED,
        "school active in the SIS, not in Bookmarked",
    )
    inj.expect(
        "stale_record",
        "school",
        gone,
        ISSUE_IN_BOOKMARKED,
        "school gone from the SIS export, active in Bookmarked",
    )
    inj.expect(
        "stale_record",
        "school",
        deleted,
        ISSUE_IN_BOOKMARKED,
        "school tobedeleted in the SIS, active in Bookmarked",
    )

    inj.never_synced("schools", missing)

    @inj.later
    def _(bm: BookmarkedTables) -> None:
        bm.schools = _set(bm.schools, _in("sis_id", pl.concat([gone, deleted])), is_active=True)


def _enrollments(inj: Injector) -> None:
    """Single enrollments: missing_data (absent / inactive in Bookmarked), stale_record
    (tobedeleted / gone in the SIS, active in Bookmarked), and source_integrity
    (an enrollment to a class or a user the export does not have)."""
    b = inj.base
    variants = {
        "absent": inj.count(2),
        "inactive": inj.count(1),
        "deleted": inj.count(1),
        "gone": inj.count(1),
    }
    fams = inj.families(sum(variants.values()))
    picked = inj.active_enrollment_of(inj.first_students(fams).get_column("sis_id"))
    inj.class_taken[
        b.classes.filter(_in("sis_id", picked.get_column("class_sis_id")))
        .get_column("class")
        .to_numpy()
    ] = True
    ids = picked.get_column("sis_id")
    parts, start = {}, 0
    for name, k in variants.items():
        parts[name] = ids.slice(start, k)
        start += k
    inj.set_enrollments(
        _in("sis_id", parts["deleted"]), status="tobedeleted", modified=inj.changed(9)
    )
    inj.set_enrollments(_in("sis_id", parts["gone"]), exported=False)
    inj.expect(
        "missing_data",
        "enrollment",
        parts["absent"],
        ISSUE_IN_BOOKMARKED,
        "enrollment not in Bookmarked (student and class are)",
    )
    inj.expect(
        "missing_data",
        "enrollment",
        parts["inactive"],
        ISSUE_IN_BOOKMARKED,
        "enrollment inactive in Bookmarked, active and current in the SIS",
    )
    inj.expect(
        "stale_record",
        "enrollment",
        parts["deleted"],
        ISSUE_IN_BOOKMARKED,
        "enrollment tobedeleted in the SIS, active in Bookmarked",
    )
    inj.expect(
        "stale_record",
        "enrollment",
        parts["gone"],
        ISSUE_IN_BOOKMARKED,
        "enrollment gone from the SIS export, active in Bookmarked",
    )

    inj.never_synced("enrollments", parts["absent"])

    @inj.later
    def _(bm: BookmarkedTables) -> None:
        bm.enrollments = _set(bm.enrollments, _in("sis_id", parts["inactive"]), is_active=False)
        stale = pl.concat([parts["deleted"], parts["gone"]])
        bm.enrollments = _set(bm.enrollments, _in("sis_id", stale), is_active=True)

    # dangling references inside the export
    k = inj.count(1)
    students = inj.first_students(inj.families(k))
    unknown_class = b.ids.take("class", students.height, "cls")
    free = b.classes.filter(pl.Series(~inj.class_taken) & (pl.col("term") == "year"))
    host = free.sample(n=min(k, free.height), seed=int(inj.rng.integers(2**31)))
    inj.class_taken[host.get_column("class").to_numpy()] = True
    unknown_user = b.ids.take("user", host.height, "stu")
    begin, end = inj.cal.term_dates("year")
    rows = pl.concat(
        [
            pl.DataFrame(
                {
                    "class_sis_id": unknown_class,
                    "school_sis_id": pl.Series(b.school_ids).gather(students.get_column("school")),
                    "user_sis_id": students.get_column("sis_id"),
                    "class_row": pl.repeat(None, students.height, dtype=pl.Int32, eager=True),
                    "user_row": students.get_column("row").cast(pl.Int32),
                }
            ),
            pl.DataFrame(
                {
                    "class_sis_id": host.get_column("sis_id"),
                    "school_sis_id": pl.Series(b.school_ids).gather(host.get_column("school")),
                    "user_sis_id": unknown_user,
                    "class_row": host.get_column("class").cast(pl.Int32),
                    "user_row": pl.repeat(None, host.height, dtype=pl.Int32, eager=True),
                }
            ),
        ]
    )
    rows = rows.with_columns(
        sis_id=b.ids.take("enrollment", rows.height, "enr"),
        role=pl.lit("student"),
        primary=pl.lit(None, pl.Boolean),
        begin=pl.lit(begin),
        end=pl.lit(end),
        status=pl.lit("active"),
        exported=pl.lit(True),
        modified=pl.lit(inj.changed(12)),
    )
    inj.add_enrollments(rows)
    ids = rows.get_column("sis_id")
    inj.expect(
        "source_integrity",
        "enrollment",
        ids.head(students.height),
        ISSUE_IN_SOURCE,
        "enrollment references a class that is not in classes",
    )
    inj.expect(
        "source_integrity",
        "enrollment",
        ids.slice(students.height),
        ISSUE_IN_SOURCE,
        "enrollment references a user that is not in users",
    )


def _students(inj: Injector) -> None:
    """missing_data/student, field_mismatch/student, stale_record/student, and students
    inactive in both systems or with a disabled login (noise)."""
    b = inj.base
    # missing: not in Bookmarked at all (its enrollments and links neither), inactive, or
    # soft-deleted; families with parents, so the links of a missing student exist
    k_absent, k_inactive, k_deleted = inj.count(2), inj.count(1), inj.count(1)
    fams = inj.families(k_absent + k_inactive + k_deleted, parents=(1, 2))
    ids = inj.first_students(fams).get_column("sis_id")
    absent, inactive = ids.head(k_absent), ids.slice(k_absent, k_inactive)
    deleted = ids.slice(k_absent + k_inactive)
    inj.expect(
        "missing_data",
        "student",
        absent,
        ISSUE_IN_BOOKMARKED,
        "student not in Bookmarked (enrollments and links are not separate findings)",
    )
    inj.expect(
        "missing_data",
        "student",
        inactive,
        ISSUE_IN_BOOKMARKED,
        "student inactive in Bookmarked, active in the SIS",
    )
    inj.expect(
        "missing_data",
        "student",
        deleted,
        ISSUE_IN_BOOKMARKED,
        "student soft-deleted in Bookmarked (deleted_at set), active in the SIS",
    )

    # field mismatches: one finding per record, even with two fields off
    fields = ["first_name", "last_name", "email", "grade", "student_number", "name_and_email"]
    k = inj.count(1)
    grade_ok = (b.students.get_column("grade").to_numpy() >= 1)[b.fam_first_student]
    fm = inj.first_students(inj.families(k * len(fields), mask=grade_ok))
    fm_ids = fm.get_column("sis_id")
    current = inj.sis.users.filter(_in("sis_id", fm_ids)).select(
        "sis_id", "given", "family_name", "email", "identifier", "grade_raw"
    )
    current = fm.select("sis_id", "grade").join(
        current, on="sis_id", how="left", maintain_order="left"
    )
    field_of = pl.Series("field", [f for f in fields for _ in range(k)][: fm.height])
    names = pl.Series(FIRST_NAMES).gather(inj.rng.integers(0, len(FIRST_NAMES), fm.height))
    lasts = pl.Series(LAST_NAMES).gather(inj.rng.integers(0, len(LAST_NAMES), fm.height))
    edits = current.with_columns(field_of, new_first=names, new_last=lasts).select(
        "sis_id",
        "field",
        first_name=pl.when(
            pl.col("field").is_in(["first_name", "name_and_email"])
            & (pl.col("new_first") != pl.col("given"))
        )
        .then("new_first")
        .when(pl.col("field").is_in(["first_name", "name_and_email"]))
        .then(pl.concat_str("given", pl.lit("ie"))),
        last_name=pl.when(pl.col("field") == "last_name").then(
            pl.concat_str("family_name", pl.lit("-"), "new_last")
        ),
        email=pl.when(pl.col("field").is_in(["email", "name_and_email"])).then(
            pl.concat_str(pl.lit("old."), pl.col("email").str.strip_chars().str.to_lowercase())
        ),
        grade=pl.when(pl.col("field") == "grade").then(
            pl.when(pl.col("grade") == 1)
            .then(pl.lit("KG"))
            .otherwise((pl.col("grade") - 1).cast(pl.String).str.zfill(2))
        ),
        student_number=pl.when(pl.col("field") == "student_number").then(
            pl.concat_str(pl.lit("9"), "identifier")
        ),
    )
    for field in fields:
        inj.expect(
            "field_mismatch",
            "student",
            edits.filter(pl.col("field") == field).get_column("sis_id"),
            ISSUE_IN_BOOKMARKED,
            f"Bookmarked differs from the SIS: {field}",
        )

    # stale: withdrawn (tobedeleted) or dropped from the export; Bookmarked ended the
    # enrollments but left the account active. Parentless students, so no links.
    k_stale = inj.count(1)
    parentless = dict(parents=(0, 0))
    stale = inj.first_students(inj.families(2 * k_stale, **parentless)).get_column("sis_id")
    withdrawn, dropped = stale.head(k_stale), stale.slice(k_stale)
    inj.set_users(withdrawn, status="tobedeleted", modified=inj.changed(25))
    inj.set_enrollments(
        _in("user_sis_id", withdrawn), status="tobedeleted", modified=inj.changed(25)
    )
    inj.set_users(dropped, exported=False)
    inj.set_enrollments(_in("user_sis_id", dropped), exported=False)
    inj.expect(
        "stale_record",
        "student",
        withdrawn,
        ISSUE_IN_BOOKMARKED,
        "student tobedeleted in the SIS, account still active in Bookmarked",
    )
    inj.expect(
        "stale_record",
        "student",
        dropped,
        ISSUE_IN_BOOKMARKED,
        "student gone from the SIS export, account still active in Bookmarked",
    )

    # noise: inactive in both (tobedeleted, or written `inactive` as 1.0 exporters do),
    # dropped and soft-deleted in both, and a disabled login (inactive in both)
    quiet = inj.first_students(inj.families(3 * k_stale, **parentless)).get_column("sis_id")
    q_deleted, q_gone = quiet.head(2 * k_stale), quiet.slice(2 * k_stale)
    # a disabled login may have parents: the links stay on both sides
    q_disabled = inj.first_students(inj.families(2 * k_stale)).get_column("sis_id")
    inj.set_users(q_deleted, status="tobedeleted", modified=inj.changed(60))
    if b.profile.oneroster_version == "1.1":
        inj.set_users(q_deleted.head(1), status="inactive")
    inj.set_enrollments(_in("user_sis_id", q_deleted), status="tobedeleted")
    inj.set_users(q_gone, exported=False)
    inj.set_enrollments(_in("user_sis_id", q_gone), exported=False)
    inj.set_users(q_disabled, enabled=False, modified=inj.changed(30))
    inj.noise["students_inactive_in_both"] = quiet.len() + q_disabled.len()

    inj.never_synced("users", absent)

    @inj.later
    def _(bm: BookmarkedTables) -> None:
        bm.users = _set(bm.users, _in("sis_id", inactive), is_active=False)
        bm.users = _set(bm.users, _in("sis_id", deleted), deleted_at=inj.bm_time)
        bm.users = _update(bm.users, edits.drop("field"))
        bm.users = _set(bm.users, _in("sis_id", stale), is_active=True, deleted_at=None)


def _duplicate_identities(inj: Injector) -> None:
    """duplicate_identity: the SIS re-keyed a student (new sourcedId), Bookmarked still
    has the old one. Matched on student number and email, on email only (the new record
    has no student number: an email alone counts only then), or on the number with the
    email in another case. ONE finding, on the new id. Parentless students, so no link
    points at either id."""
    b = inj.base
    k = inj.count(1)
    old_ids = inj.first_students(inj.families(3 * k, parents=(0, 0))).get_column("sis_id")
    new_ids = b.ids.take("user", old_ids.len(), "stu")
    remap = dict(zip(old_ids.to_list(), new_ids.to_list(), strict=True))
    before = inj.sis.users.filter(_in("sis_id", old_ids)).select("sis_id", "identifier", "email")
    old_number = {remap[o]: number for o, number, _ in before.iter_rows()}
    old_email = {remap[o]: (email or "").strip() or None for o, _, email in before.iter_rows()}
    rows = (
        inj.new_user_rows(old_ids, new_ids)
        .with_row_index("i")
        .with_columns(
            identifier=pl.when(pl.col("i").is_between(k, 2 * k - 1))
            .then(None)
            .otherwise("identifier"),
            email=pl.when(pl.col("i") >= 2 * k)
            .then(pl.col("email").str.to_uppercase())
            .otherwise("email"),
            modified=pl.lit(inj.changed(50)),
        )
        .drop("i")
    )
    inj.set_users(old_ids, exported=False)
    first_new_row = inj.sis.users.height
    inj.add_users(rows)
    row_of = dict(
        zip(old_ids.to_list(), range(first_new_row, first_new_row + rows.height), strict=True)
    )
    inj.set_enrollments(
        _in("user_sis_id", old_ids),
        user_row=pl.col("user_sis_id").replace_strict(row_of, return_dtype=pl.Int32),
        user_sis_id=pl.col("user_sis_id").replace_strict(remap),
    )
    notes = [
        "same student number and email",
        "same email; the new record has no student number",
        "same student number, email in another case",
    ]
    for i, note in enumerate(notes):
        inj.expect(
            "duplicate_identity",
            "student",
            new_ids.slice(i * k, k),
            ISSUE_IN_BOOKMARKED,
            f"sourcedId changed in the SIS, Bookmarked has the old id ({note})",
        )

    # Bookmarked: one account, as the old record was synced (the sync never wrote the old
    # id's row again, nor one for the new id): the new row carries the old identity
    inj.never_synced("users", old_ids)
    back = {n: o for o, n in remap.items()}

    @inj.later
    def _(bm: BookmarkedTables) -> None:
        bm.users = _set(
            bm.users,
            _in("sis_id", new_ids),
            sis_id=pl.col("sis_id").replace_strict(back),
            student_number=pl.col("sis_id").replace_strict(old_number),
            email=pl.col("sis_id").replace_strict(old_email),
        )


def _parents(inj: Injector) -> None:
    """missing_data/parent, field_mismatch/parent, stale_record/parent, and a parent
    removed in both systems (noise)."""
    k = inj.count(1)
    fams = inj.families(3 * k, parents=(1, 2))
    ids = inj.parent_ids(fams)
    absent, inactive = ids.head(2 * k), ids.slice(2 * k)
    inj.expect(
        "missing_data",
        "parent",
        absent,
        ISSUE_IN_BOOKMARKED,
        "parent not in Bookmarked (its links are not separate findings)",
    )
    inj.expect(
        "missing_data",
        "parent",
        inactive,
        ISSUE_IN_BOOKMARKED,
        "parent inactive in Bookmarked, active in the SIS",
    )

    fields = ["first_name", "last_name", "email"]
    fm_ids = inj.parent_ids(
        inj.families(k * len(fields), parents=(1, 2), mask=inj.first_parent_has_email())
    )
    current = inj.sis.users.filter(_in("sis_id", fm_ids)).select(
        "sis_id", "given", "family_name", "email"
    )
    current = pl.DataFrame({"sis_id": fm_ids}).join(
        current, on="sis_id", how="left", maintain_order="left"
    )
    field_of = pl.Series("field", [f for f in fields for _ in range(k)][: current.height])
    adult = pl.Series(ADULT_FIRST_NAMES).gather(
        inj.rng.integers(0, len(ADULT_FIRST_NAMES), current.height)
    )
    edits = current.with_columns(field_of, new_first=adult).select(
        "sis_id",
        "field",
        first_name=pl.when(
            (pl.col("field") == "first_name") & (pl.col("new_first") != pl.col("given"))
        )
        .then("new_first")
        .when(pl.col("field") == "first_name")
        .then(pl.concat_str("given", pl.lit("a"))),
        last_name=pl.when(pl.col("field") == "last_name").then(
            pl.concat_str("family_name", pl.lit("-Moore"))
        ),
        email=pl.when(pl.col("field") == "email").then(
            pl.concat_str(pl.lit("prev."), pl.col("email").str.strip_chars().str.to_lowercase())
        ),
    )
    for field in fields:
        inj.expect(
            "field_mismatch",
            "parent",
            edits.filter(pl.col("field") == field).get_column("sis_id"),
            ISSUE_IN_BOOKMARKED,
            f"Bookmarked differs from the SIS: {field}",
        )

    # the second parent of a family removed from the SIS: Bookmarked dropped the links but
    # left the account active (stale) -- or deactivated it too (noise)
    two = inj.families(2 * k, parents=(2, 2))
    second = inj.parent_ids(two, slot=1)
    stale, quiet = second.head(k), second.slice(k)
    inj.set_users(stale, exported=False)
    inj.set_users(quiet, status="tobedeleted", modified=inj.changed(33))
    inj.drop_edges(second)
    inj.noise["parents_inactive_in_both"] = quiet.len()
    inj.expect(
        "stale_record",
        "parent",
        stale,
        ISSUE_IN_BOOKMARKED,
        "parent gone from the SIS export, account still active in Bookmarked (no links)",
    )

    inj.never_synced("users", absent)

    @inj.later
    def _(bm: BookmarkedTables) -> None:
        bm.users = _set(bm.users, _in("sis_id", inactive), is_active=False)
        bm.users = _update(bm.users, edits.drop("field"))
        bm.users = _set(bm.users, _in("sis_id", stale), is_active=True, deleted_at=None)


def _links(inj: Injector) -> None:
    """student_mismatch, ISSUE_IN_BOOKMARKED: a parent account whose linked students
    differ from the SIS -- a link missing, one extra, or the wrong student."""
    k = inj.count(1)
    missing_f = inj.families(2 * k, parents=(1, 2))
    extra_f = inj.families(k, parents=(1, 2))
    wrong_f = inj.families(k, parents=(1, 2), students=(1, 1))
    others = inj.families(2 * k)  # the students wrongly linked
    other_ids = inj.first_students(others).get_column("sis_id")
    missing = pl.DataFrame(
        {
            "parent": inj.parent_ids(missing_f),
            "student": inj.first_students(missing_f).get_column("sis_id"),
        }
    )
    extra = pl.DataFrame(
        {"parent": inj.parent_ids(extra_f), "student": other_ids.head(extra_f.size)}
    )
    wrong = pl.DataFrame(
        {
            "parent": inj.parent_ids(wrong_f),
            "student": inj.first_students(wrong_f).get_column("sis_id"),
            "other": other_ids.slice(extra_f.size, wrong_f.size),
        }
    )
    inj.expect(
        "student_mismatch",
        "parent",
        missing.get_column("parent"),
        ISSUE_IN_BOOKMARKED,
        "Bookmarked lacks the parent's link to a child",
    )
    inj.expect(
        "student_mismatch",
        "parent",
        extra.get_column("parent"),
        ISSUE_IN_BOOKMARKED,
        "Bookmarked links the parent to a student of another family",
    )
    inj.expect(
        "student_mismatch",
        "parent",
        wrong.get_column("parent"),
        ISSUE_IN_BOOKMARKED,
        "Bookmarked links the parent to the wrong student",
    )

    inj.skip.links = pl.concat([inj.skip.links, missing, wrong.select("parent", "student")])

    @inj.later
    def _(bm: BookmarkedTables) -> None:
        ids = bm.users.filter(
            _in(
                "sis_id",
                pl.concat(
                    [
                        extra.get_column("parent"),
                        extra.get_column("student"),
                        wrong.get_column("parent"),
                        wrong.get_column("other"),
                    ]
                ),
            )
        )
        ids = ids.select("sis_id", "id")

        def with_ids(frame: pl.DataFrame, parent: str, student: str) -> pl.DataFrame:
            return frame.join(
                ids.rename({"sis_id": parent, "id": "parent_id"}),
                on=parent,
                how="left",
                maintain_order="left",
            ).join(
                ids.rename({"sis_id": student, "id": "student_id"}),
                on=student,
                how="left",
                maintain_order="left",
            )

        add = pl.concat(
            [
                with_ids(extra, "parent", "student"),
                with_ids(wrong.drop("student"), "parent", "other").rename({"other": "student"}),
            ]
        )
        bm.parent_students = pl.concat(
            [
                bm.parent_students,
                add.select("parent_id", "student_id", created_at=pl.lit(inj.bm_time)),
            ]
        )


def _bad_agents(inj: Injector) -> None:
    """student_mismatch, ISSUE_IN_SOURCE: agent references that cannot be right. The
    finding is on the record whose agentSourcedIds the district fixes: a student listing an
    unknown agent (the student), a parent listing an unknown child, a teacher or another
    parent as its child, a teacher listed as a student's agent (the teacher). Bookmarked's
    sync skips such links, so Bookmarked is consistent."""
    b = inj.base
    k = inj.count(1)
    s1 = inj.first_students(inj.families(k)).get_column("sis_id")
    unknown_parent = b.ids.take("user", s1.len(), "par")
    p2 = inj.parent_ids(inj.families(k, parents=(1, 2)))
    unknown_child = b.ids.take("user", p2.len(), "stu")
    p3 = inj.parent_ids(inj.families(k, parents=(1, 2)))
    t3 = inj.teachers(p3.len()).get_column("sis_id")
    p4 = inj.parent_ids(inj.families(k, parents=(1, 2)))
    p4_other = inj.parent_ids(inj.families(k, parents=(1, 2)))
    s5 = inj.first_students(inj.families(k)).get_column("sis_id")
    t5 = inj.teachers(s5.len()).get_column("sis_id")
    # a small district may run out of teachers or families: pair what there is
    p3, t3 = p3.head(t3.len()), t3.head(p3.len())
    p4, p4_other = p4.head(p4_other.len()), p4_other.head(p4.len())
    s5, t5 = s5.head(t5.len()), t5.head(s5.len())
    inj.add_edges(
        pl.concat([s1, p2, p3, p4, s5]),
        pl.concat([unknown_parent, unknown_child, t3, p4_other, t5]),
    )
    inj.expect(
        "student_mismatch",
        "student",
        s1,
        ISSUE_IN_SOURCE,
        "the student's agentSourcedIds names a user that is not in users (finding on the "
        "student, whose record the district fixes)",
    )
    inj.expect(
        "student_mismatch",
        "parent",
        p2,
        ISSUE_IN_SOURCE,
        "the parent's agentSourcedIds names a user that is not in users",
    )
    inj.expect(
        "student_mismatch", "parent", p3, ISSUE_IN_SOURCE, "the parent lists a teacher as its child"
    )
    inj.expect(
        "student_mismatch",
        "parent",
        p4,
        ISSUE_IN_SOURCE,
        "the parent lists another family's parent as its child",
    )
    inj.expect(
        "student_mismatch",
        "teacher",
        t5,
        ISSUE_IN_SOURCE,
        "a teacher is listed as a student's agent (finding on the teacher's id)",
    )


def _email_conflicts(inj: Injector) -> None:
    """parent_email_conflict: SIS parents of different families sharing one email (after
    trim + lower-case). Bookmarked's sync merged them into one account (the later one in
    the file wins name and sis_id, linked to both families' children): ONE finding per
    SIS parent, none for the merged account's links or the lost sis_id."""
    ok = inj.first_parent_has_email()
    k = inj.count(1)
    groups: list[tuple[pl.Series, str]] = []
    for size, n_groups, how in ((2, 2 * k, "same"), (2, k, "case"), (3, k, "same")):
        fams = inj.families(size * n_groups, parents=(1, 2), mask=ok)
        ids = inj.parent_ids(fams)
        for g in range(ids.len() // size):
            groups.append((ids.slice(g * size, size), how))
    if not groups:  # a district too small for the case
        return
    emails = dict(
        inj.sis.users.filter(_in("sis_id", pl.concat([g for g, _ in groups])))
        .select("sis_id", "email")
        .iter_rows()
    )
    new_email: dict[str, str] = {}
    for ids, how in groups:
        shared = emails[ids[0]].strip()
        for member in ids.to_list()[1:]:
            new_email[member] = f" {shared.upper()} " if how == "case" else shared
    edit = pl.DataFrame(
        {"sis_id": list(new_email), "email": list(new_email.values())},
        schema={"sis_id": pl.String, "email": pl.String},
    )
    inj.sis.users = _update(inj.sis.users, edit)
    inj.sis.users = _set(
        inj.sis.users, _in("sis_id", edit.get_column("sis_id")), modified=inj.changed(15)
    )
    members, notes = [], []
    for ids, how in groups:
        note = (
            "parents of different families share one email; Bookmarked merged them"
            if how == "same"
            else "parents of different families share one email (differs only in case and "
            "spaces); Bookmarked merged them"
        )
        members.extend(ids.to_list())
        notes.extend([f"{note} ({ids.len()} parents)"] * ids.len())
    inj.expect("parent_email_conflict", "parent", members, ISSUE_IN_SOURCE, notes)


def _transfers(inj: Injector) -> None:
    """campus_transfer: a student moved to another campus in the SIS (old enrollments
    ended, or dropped from the export; new ones at the new campus). ISSUE_IN_BOOKMARKED
    when Bookmarked kept the old school, kept the dropped ones active (phantom) or lacks
    the new ones -- ONE finding per student. Correct transfers are noise. ISSUE_IN_SOURCE
    when the SIS keeps the student active at two campuses."""
    b = inj.base
    levels = b.school_levels
    peers = {
        s: [t for t in range(len(levels)) if t != s and levels[t] == levels[s]]
        for s in range(len(levels))
    }
    classes = b.classes.filter(pl.Series(~inj.class_taken))
    # (school, grade) pairs with classes no other case has taken
    has = {(s, g) for s, g in classes.select("school", "grade").unique().iter_rows()}
    # can_move[school, grade]: another campus of the same level teaches that grade
    can_move = np.zeros((len(levels), 13), dtype=bool)
    for s in range(len(levels)):
        for g in range(13):
            can_move[s, g] = any((t, g) in has for t in peers[s])
    first = b.students.gather(b.fam_first_student)
    possible = can_move[first.get_column("school").to_numpy(), first.get_column("grade").to_numpy()]
    k = inj.count(1)
    variants = ["old_school", "phantom", "missing_new", "all_three", "ok_ended", "ok_dropped"]
    fams = inj.families(k * len(variants) + k, mask=possible)
    movers = inj.first_students(fams)
    target = [
        int(inj.rng.choice([t for t in peers[s] if (t, g) in has]))
        for s, g in zip(
            movers.get_column("school").to_list(), movers.get_column("grade").to_list(), strict=True
        )
    ]
    movers = movers.with_columns(to=pl.Series(target, dtype=pl.Int64))
    two_campus = (
        movers.tail(movers.height - k * len(variants))
        if movers.height > k * len(variants)
        else movers.clear()
    )
    movers = movers.head(k * len(variants))
    variant = pl.Series("variant", [v for v in variants for _ in range(k)][: movers.height])
    movers = movers.with_columns(variant)

    # the student's active enrollments, and a class of the same subject at the new campus
    enr = inj.sis.enrollments.filter(
        _in(
            "user_sis_id", pl.concat([movers.get_column("sis_id"), two_campus.get_column("sis_id")])
        )
        & (pl.col("end") > inj.cal.today)
    ).join(
        b.classes.select(class_sis_id="sis_id", subject="subject"),
        on="class_sis_id",
        how="left",
        maintain_order="left",
    )
    at_new = classes.sort("section").unique(
        subset=["school", "grade", "subject"], keep="first", maintain_order=True
    )
    who = pl.concat([movers.drop("variant"), two_campus]).select(
        user_sis_id="sis_id", to="to", grade="grade", mover_row="row"
    )
    new = enr.join(who, on="user_sis_id", how="left", maintain_order="left").join(
        at_new.select(
            to="school", grade="grade", subject="subject", new_class="sis_id", new_class_row="class"
        ),
        on=["to", "grade", "subject"],
        how="inner",
        maintain_order="left",
    )
    when = inj.cal.transfer_date
    begin, end = when, inj.cal.year_end
    school_ids = pl.Series(b.school_ids)
    moved = new.filter(_in("user_sis_id", movers.get_column("sis_id")))
    # two campuses: only two classes at the other campus, the old ones stay
    both = new.filter(_in("user_sis_id", two_campus.get_column("sis_id"))).filter(
        pl.int_range(pl.len()).over("user_sis_id") < 2
    )
    additions = (
        pl.concat([moved, both])
        .select(
            class_sis_id="new_class",
            school_sis_id=school_ids.gather(pl.concat([moved, both]).get_column("to")),
            user_sis_id="user_sis_id",
            class_row=pl.col("new_class_row").cast(pl.Int32),
            user_row=pl.col("mover_row").cast(pl.Int32),
        )
        .with_columns(
            sis_id=b.ids.take("enrollment", moved.height + both.height, "enr"),
            role=pl.lit("student"),
            primary=pl.lit(None, pl.Boolean),
            begin=pl.lit(begin),
            end=pl.lit(end),
            status=pl.lit("active"),
            exported=pl.lit(True),
            modified=pl.lit(datetime.combine(when, time(9, 15))),
        )
    )
    inj.add_enrollments(additions)
    taken_new = b.classes.filter(_in("sis_id", additions.get_column("class_sis_id")))
    inj.class_taken[taken_new.get_column("class").to_numpy()] = True

    dropped_variants = ["phantom", "all_three", "ok_dropped"]
    by_variant = {v: movers.filter(pl.col("variant") == v).get_column("sis_id") for v in variants}
    droppers = movers.filter(pl.col("variant").is_in(dropped_variants)).get_column("sis_id")
    enders = movers.filter(~pl.col("variant").is_in(dropped_variants)).get_column("sis_id")
    old_ids = enr.filter(_in("user_sis_id", movers.get_column("sis_id"))).get_column("sis_id")
    inj.set_enrollments(
        _in("sis_id", old_ids) & _in("user_sis_id", enders),
        end=when,
        modified=datetime.combine(when, time(9, 10)),
    )
    inj.set_enrollments(_in("sis_id", old_ids) & _in("user_sis_id", droppers), exported=False)
    orgs = movers.select("sis_id", org_ids=school_ids.gather(movers["to"]))
    inj.sis.users = _update(inj.sis.users, orgs)
    inj.set_users(movers.get_column("sis_id"), modified=datetime.combine(when, time(9, 5)))
    inj.noise["correct_transfers"] = by_variant["ok_ended"].len() + by_variant["ok_dropped"].len()

    notes = {
        "old_school": "transferred in the SIS; Bookmarked still has the old school",
        "phantom": "transferred (old enrollments dropped); Bookmarked keeps them active",
        "missing_new": "transferred; Bookmarked lacks the enrollments at the new campus",
        "all_three": "transferred; Bookmarked has the old school, the dropped enrollments "
        "active and none at the new campus",
    }
    for v, note in notes.items():
        inj.expect("campus_transfer", "student", by_variant[v], ISSUE_IN_BOOKMARKED, note)
    inj.expect(
        "campus_transfer",
        "student",
        two_campus.get_column("sis_id"),
        ISSUE_IN_SOURCE,
        "the SIS keeps the student actively enrolled at two campuses",
    )

    old_school = movers.select("sis_id", old=school_ids.gather(movers["school"]))
    new_enr = moved.join(
        additions.select("user_sis_id", "class_sis_id", "sis_id"),
        left_on=["user_sis_id", "new_class"],
        right_on=["user_sis_id", "class_sis_id"],
        how="inner",
    )

    lacking = pl.concat([by_variant["missing_new"], by_variant["all_three"]])
    inj.never_synced(
        "enrollments", new_enr.filter(_in("user_sis_id", lacking)).get_column("sis_id_right")
    )

    @inj.later
    def _(bm: BookmarkedTables) -> None:
        keep_old = pl.concat([by_variant["old_school"], by_variant["all_three"]])
        school_of = (
            old_school.filter(_in("sis_id", keep_old))
            .join(bm.schools.select(old="sis_id", school_id="id"), on="old", how="left")
            .select("sis_id", "school_id")
        )
        bm.users = _update(bm.users, school_of)
        phantom = pl.concat([by_variant["phantom"], by_variant["all_three"]])
        phantom_ids = enr.filter(_in("user_sis_id", phantom)).get_column("sis_id")
        bm.enrollments = _set(bm.enrollments, _in("sis_id", phantom_ids), is_active=True)


def _extra_user_rows(
    inj: Injector, role: str, label: str, n: int, school: list[str], tag: str, number_prefix: str
) -> pl.DataFrame:
    b = inj.base
    first = pl.Series(ADULT_FIRST_NAMES).gather(inj.rng.integers(0, len(ADULT_FIRST_NAMES), n))
    last = pl.Series(LAST_NAMES).gather(inj.rng.integers(0, len(LAST_NAMES), n))
    handle = pl.Series([f"{tag}{i + 1}" for i in range(n)])
    return user_frame(
        n,
        sis_id=b.ids.take("user", n, label),
        role_raw=role,
        org_ids=pl.Series(school, dtype=pl.String),
        given=first,
        family_name=last,
        username=handle,
        identifier=pl.Series([f"{number_prefix}{i + 9001}" for i in range(n)]),
        email=handle + f"@{b.profile.domain}",
        modified=inj.changed(20),
    )


def _teachers(inj: Injector) -> None:
    """field_mismatch/teacher (name, email, school), missing_data/teacher (a new hire
    without classes yet), stale_record/teacher (left, no classes), a teacher inactive in
    both (noise)."""
    b = inj.base
    k = inj.count(1)
    fields = ["last_name", "email"] + (["school"] if len(b.school_ids) > 1 else [])
    fm = inj.teachers(k * len(fields))
    field_of = pl.Series("field", [f for f in fields for _ in range(k)][: fm.height])
    n_schools = len(b.school_ids)
    other_school = (
        fm.get_column("school")
        + 1
        + pl.Series(inj.rng.integers(0, max(1, n_schools - 1), fm.height))
    ) % n_schools
    fm = fm.with_columns(field_of, other=pl.Series(b.school_ids).gather(other_school))
    current = inj.sis.users.filter(_in("sis_id", fm.get_column("sis_id"))).select(
        "sis_id", "family_name", "email"
    )
    plan = fm.join(current, on="sis_id", how="left", maintain_order="left")
    for field in fields:
        inj.expect(
            "field_mismatch",
            "teacher",
            plan.filter(pl.col("field") == field).get_column("sis_id"),
            ISSUE_IN_BOOKMARKED,
            f"Bookmarked differs from the SIS: {field}",
        )

    schools = [b.school_ids[int(i)] for i in inj.rng.integers(0, n_schools, 4 * k)]
    rows = _extra_user_rows(inj, "teacher", "tch", 4 * k, schools, "new.teacher", "T")
    ids = rows.get_column("sis_id")
    missing, gone, deleted, quiet = (ids.slice(i * k, k) for i in range(4))
    rows = _retire(rows, gone=gone, deleted=pl.concat([deleted, quiet]))
    inj.add_users(rows)
    inj.noise["teachers_inactive_in_both"] = quiet.len()
    inj.expect(
        "missing_data",
        "teacher",
        missing,
        ISSUE_IN_BOOKMARKED,
        "teacher (no classes yet) not in Bookmarked",
    )
    inj.never_synced("users", missing)
    inj.expect(
        "stale_record",
        "teacher",
        gone,
        ISSUE_IN_BOOKMARKED,
        "teacher gone from the SIS export, active in Bookmarked",
    )
    inj.expect(
        "stale_record",
        "teacher",
        deleted,
        ISSUE_IN_BOOKMARKED,
        "teacher tobedeleted in the SIS, active in Bookmarked",
    )

    @inj.later
    def _(bm: BookmarkedTables) -> None:
        school_id = plan.join(
            bm.schools.select(other="sis_id", school="id"),
            on="other",
            how="left",
            maintain_order="left",
        )
        edits = school_id.select(
            "sis_id",
            last_name=pl.when(pl.col("field") == "last_name").then(
                pl.concat_str("family_name", pl.lit("-Reyes"))
            ),
            email=pl.when(pl.col("field") == "email").then(
                pl.concat_str(
                    pl.lit("former."), pl.col("email").str.strip_chars().str.to_lowercase()
                )
            ),
            school_id=pl.when(pl.col("field") == "school").then("school"),
        )
        bm.users = _update(bm.users, edits)
        bm.users = _set(
            bm.users, _in("sis_id", pl.concat([gone, deleted])), is_active=True, deleted_at=None
        )


def _admins(inj: Injector) -> None:
    """missing_data/admin, stale_record/admin, field_mismatch/admin, and admins made by
    hand in Bookmarked (sis_id NULL: noise)."""
    b = inj.base
    k = inj.count(1)
    rows = _extra_user_rows(
        inj, "administrator", "stf", 2 * k, [b.district_id] * (2 * k), "new.admin", "A"
    )
    ids = rows.get_column("sis_id")
    missing, gone = ids.head(k), ids.slice(k)
    rows = rows.with_columns(exported=~_in("sis_id", gone))
    inj.add_users(rows)
    admins = inj.sis.users.filter(
        (pl.col("role_raw") == "administrator")
        & pl.col("email").is_not_null()
        & ~_in("sis_id", ids)
    ).get_column("sis_id")
    fm = admins.head(min(k, admins.len()))
    inj.expect(
        "missing_data", "admin", missing, ISSUE_IN_BOOKMARKED, "administrator not in Bookmarked"
    )
    inj.expect(
        "stale_record",
        "admin",
        gone,
        ISSUE_IN_BOOKMARKED,
        "administrator gone from the SIS export, active in Bookmarked",
    )
    inj.expect(
        "field_mismatch", "admin", fm, ISSUE_IN_BOOKMARKED, "Bookmarked differs from the SIS: email"
    )
    n_hand = max(3, k)
    inj.noise["hand_made_admins"] = n_hand
    inj.never_synced("users", missing)

    @inj.later
    def _(bm: BookmarkedTables) -> None:
        bm.users = _set(bm.users, _in("sis_id", gone), is_active=True, deleted_at=None)
        bm.users = _set(
            bm.users,
            _in("sis_id", fm),
            email=pl.concat_str(pl.lit("it-"), pl.col("email").str.to_lowercase()),
        )
        start = int(bm.users.get_column("id").max() or 0) + 1
        hand = pl.DataFrame(
            {
                "id": list(range(start, start + n_hand)),
                "customer_id": b.profile.bookmarked_customer_id,
                "sis_id": None,
                "role": "admin",
                "first_name": ["Support"] * n_hand,
                "last_name": [f"Account {i + 1}" for i in range(n_hand)],
                "email": [
                    f"support+{b.profile.customer_id}{i + 1}@bookmarked.example.com"
                    for i in range(n_hand)
                ],
                "username": [f"support{i + 1}" for i in range(n_hand)],
                "student_number": None,
                "grade": None,
                "school_id": None,
                "is_active": True,
                "updated_at": inj.bm_time - timedelta(days=90),
                "deleted_at": None,
            },
            schema=bm.users.schema,
        )
        bm.users = pl.concat([bm.users, hand])


def _contradictions(inj: Injector) -> None:
    """source_integrity, ISSUE_IN_SOURCE: records of the export that contradict each other.
    A student enrolled with the role `teacher` (the enrollment contradicts the user), a
    student whose orgs list, after the school, an org the export does not have, and a class
    at the district org. Bookmarked's sync writes the enrollment as the SIS says, cannot use
    the unknown org and cannot place the class, so Bookmarked is consistent: the finding
    is the district's alone."""
    b = inj.base
    k = inj.count(1)
    students = inj.first_students(inj.families(k)).get_column("sis_id")
    enrolled = inj.active_enrollment_of(students).get_column("sis_id")
    inj.set_enrollments(_in("sis_id", enrolled), role="teacher")
    inj.expect(
        "source_integrity",
        "enrollment",
        enrolled,
        ISSUE_IN_SOURCE,
        "a student's enrollment has the role teacher",
    )

    listing = inj.first_students(inj.families(k)).get_column("sis_id")
    unknown = b.ids.take("org", listing.len(), "org")
    current = inj.sis.users.filter(_in("sis_id", listing)).select("sis_id", "org_ids")
    edits = current.join(pl.DataFrame({"sis_id": listing, "unknown": unknown}), on="sis_id").select(
        "sis_id", org_ids=pl.concat_str("org_ids", pl.lit(","), "unknown")
    )
    inj.sis.users = _update(inj.sis.users, edits)
    inj.expect(
        "source_integrity",
        "student",
        listing,
        ISSUE_IN_SOURCE,
        "the student's orgSourcedIds lists an org that is not in orgs",
    )

    # a class the SIS placed at the district org: not a school, so the sync cannot place it
    rows = _extra_class_rows(
        inj, [f"District Robotics Team {i + 1}" for i in range(k)], [b.district_id] * k
    )
    inj.sis.classes = pl.concat([inj.sis.classes, rows])
    inj.expect(
        "source_integrity",
        "class",
        rows.get_column("sis_id"),
        ISSUE_IN_SOURCE,
        "class placed at the district org, which is not a school",
    )
