"""RuleContext: the comparisons every rule shares, computed once per run and cached.

Rules never join the big tables themselves. The context does the few expensive
operations once (one join of the users, one of the enrollments' keys, one of the
links, one pass of the SIS enrollments for dangling references), then every later
step works on the small sets of differences those produce. So running all rules
costs little more than the core joins, on a district of a million students as on a
one-student diagnosis.

Words used across the rules:

- *live*: a source record that is active (not `tobedeleted`, not ended, not
  `enabledUser=false`); a Bookmarked row that is active and not soft-deleted.
- *resolved account*: the Bookmarked row that stands for a SIS user: the live row
  with the same sis_id; else, when the sourcedId changed, the old row found by
  student number or email (`identity_changes`); else, for a parent whose account
  the sync merged with another SIS parent's (one email), that merged account
  (`merged_parents`).
- *missing* / *stale*: live in the SIS but not live in Bookmarked / live in
  Bookmarked but not live (or gone) in the SIS, after the resolution above.

Ownership between rules (one real problem, one finding) is decided here too: the
record sets of `missing_*`, `stale_*`, `campus_transfers`, `identity_changes`,
`merged_parents`, and `claimed(what)`, the one table of which rule reports a record
several rules would see and which rules leave it out.

Only what several rules share lives here; a comparison one rule alone needs (the
explanation of link differences, the dual-campus students) lives in that rule's module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Any, ClassVar

import polars as pl

from reconciliation.roster import SYNCED_ROLES, Roster, normalize_grade, normalized_email

KEYS = ["class_sis_id", "user_sis_id"]
LINK_KEYS = ["parent_sis_id", "student_sis_id"]
LINK_IDS = ["parent_bookmarked_id", "student_bookmarked_id"]
ENROLLED_ROLES = ("student", "teacher")

#: the user columns the rules read from both sides (the rest stay in src_users/bm_users)
USER_FIELDS = (
    "role",
    "first_name",
    "last_name",
    "email_normalized",
    "student_number",
    "grade",
    "school_sis_id",
)


def settings_mapping(settings: Any) -> dict[str, Any]:
    """Accept None, a plain mapping, the settings JSON document, or `CustomerSettings`.

    Rules read two shapes of `disabled_rules`: a top-level list (`{"disabled_rules": [...]}`
    or the `CustomerSettings` attribute) and the settings file's `{"rules": {"disabled": [...]}}`.
    """
    if settings is None:
        return {"disabled_rules": frozenset()}
    if isinstance(settings, Mapping):
        out = dict(settings)
    elif dataclasses.is_dataclass(settings):
        out = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    else:
        out = dict(vars(settings))
    disabled = set(out.get("disabled_rules") or ())
    rules_block = out.get("rules")
    if isinstance(rules_block, Mapping):
        disabled |= set(rules_block.get("disabled") or ())
    out["disabled_rules"] = frozenset(disabled)
    return out


def ids_in(column: str, values: pl.Series) -> pl.Expr:
    """`column` is one of `values` (a small set), for cutting a big table down cheaply."""
    return pl.col(column).is_in(values.drop_nulls().unique().implode())


def _live_users() -> pl.Expr:
    return pl.col("active").fill_null(True) & ~pl.col("deleted").fill_null(False)


def live_synced_user() -> pl.Expr:
    """A row of `RuleContext.users` that is a live SIS user of a role Bookmarked syncs."""
    return pl.col("in_source") & pl.col("live") & pl.col("role").is_in(SYNCED_ROLES)


def _fill_users(users: pl.DataFrame) -> pl.DataFrame:
    """Fill `email_normalized` and `grade` from the raw values where a reader left them null
    (hand-built rosters), with the same normalization the connectors use."""
    if users["email_normalized"].null_count() > users["email"].null_count():
        users = users.with_columns(pl.coalesce("email_normalized", normalized_email()))
    raw_only = users.filter(pl.col("grade").is_null() & pl.col("grade_raw").is_not_null())
    if raw_only.height:
        mapping = {raw: normalize_grade(raw) for raw in raw_only["grade_raw"].unique().to_list()}
        users = users.with_columns(
            pl.coalesce("grade", pl.col("grade_raw").replace_strict(mapping, default=None))
        )
    return users


def _one_per_key(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """One row per non-null key, preferring the live row then the newest (highest id)."""
    frame = frame.filter(pl.col(key).is_not_null())
    if frame[key].n_unique() == frame.height:
        return frame
    return frame.sort(
        [key, "live", "bookmarked_id"], descending=[False, True, True], nulls_last=True
    ).unique(subset=key, keep="first", maintain_order=True)


def _split_duplicates(frame: pl.DataFrame, key: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`_one_per_key`, and the rows of the keys listed more than once (usually none: one
    count of distinct keys decides, the common case costs nothing more)."""
    keyed = frame.filter(pl.col(key).is_not_null())
    if keyed[key].n_unique() == keyed.height:
        return keyed, keyed.clear()
    return _one_per_key(keyed, key), keyed.filter(pl.col(key).is_duplicated())


def one_sided(
    left: pl.DataFrame,
    right: pl.DataFrame,
    on: list[str],
    left_where: pl.Expr | None = None,
    right_where: pl.Expr | None = None,
    *,
    hashed: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The rows of `left` (those meeting `left_where`) with no match in `right` (those
    meeting `right_where`) on `on`, and the reverse.

    One full join of the keys and row numbers instead of two anti-joins (on multi-column
    string keys about twice as fast), then the few one-sided rows are picked by number.
    The filters run inside the join's plan, so no filtered copy of a big table is made.
    Rows with a null key never match (they come back on their own side).

    With `hashed`, the join runs on two independent 64-bit hashes of the key columns
    instead of the strings themselves: a fraction of the memory and time on millions of
    rows, and two rows match only if both hashes agree (a chance of 2**-128 for
    different keys). For keys that are never null (the caller filters them out).
    """

    def keys(frame: pl.DataFrame, where: pl.Expr | None, index: str) -> pl.LazyFrame:
        lazy = frame.lazy().with_row_index(index)
        lazy = lazy if where is None else lazy.filter(where)
        if hashed:
            return lazy.select(index, *(_key_hash(on, seed) for seed in (1, 2)))
        return lazy.select(index, *on)

    join_on = ["_hash_1", "_hash_2"] if hashed else on
    positions = (
        keys(left, left_where, "_left")
        .join(keys(right, right_where, "_right"), on=join_on, how="full", coalesce=True)
        .filter(pl.col("_left").is_null() | pl.col("_right").is_null())
        .select("_left", "_right")
        .collect()
    )
    return left[positions["_left"].drop_nulls()], right[positions["_right"].drop_nulls()]


def _key_hash(columns: list[str], seed: int) -> pl.Expr:
    """A 64-bit hash of some columns, equal for equal values within one process."""
    return pl.struct(columns).hash(seed=seed).alias(f"_hash_{seed}")


def same_text(column: str) -> pl.Expr:
    """A name as people read it: Unicode NFC (the form Bookmarked stores), surrounding
    whitespace trimmed, blank as no value. Two names equal here are the same name."""
    text = pl.col(column).str.normalize("NFC").str.strip_chars()
    return pl.when(text != "").then(text)


def person_name(first: str, last: str) -> pl.Expr:
    """First and last name, as `same_text` and lower-cased, for matching one person
    across ids."""
    return pl.concat_str(
        [
            pl.col(column).str.normalize("NFC").str.strip_chars().str.to_lowercase()
            for column in (first, last)
        ],
        separator=" ",
    )


def _full_join(source: pl.DataFrame, bookmarked: pl.DataFrame, fields: list[str]) -> pl.DataFrame:
    """Source rows full-joined with Bookmarked rows on sis_id; Bookmarked columns get `bm_`."""
    src = source.select("sis_id", *fields, "live").with_columns(in_source=pl.lit(True))
    bm = bookmarked.select(
        "sis_id",
        *[pl.col(f).alias(f"bm_{f}") for f in fields],
        pl.col("live").alias("bm_live"),
        pl.col("bookmarked_id").alias("bm_id"),
    ).with_columns(in_bookmarked=pl.lit(True))
    joined = src.join(bm, on="sis_id", how="full", coalesce=True)
    return joined.with_columns(
        pl.col("in_source").fill_null(False),
        pl.col("in_bookmarked").fill_null(False),
        pl.col("live").fill_null(False),
        pl.col("bm_live").fill_null(False),
    )


class RuleContext:
    """Both rosters, the settings, and the cached comparisons the rules share."""

    def __init__(self, source: Roster, bookmarked: Roster, settings: Any = None) -> None:
        self.source = source
        self.bookmarked = bookmarked
        self.settings: dict[str, Any] = settings_mapping(settings)

    def setting(self, key: str, default: Any = None) -> Any:
        value = self.settings.get(key)
        return default if value is None else value

    #: the big comparisons, in stages whose members share no work (computed together).
    #: The order is for memory: the comparisons of millions of enrollments need much
    #: memory while they run and keep little, the users' join keeps 0.6 GB at a million
    #: students; so the enrollments' come first, each while no other big one runs,
    #: and the users' join last (measured at a million students: the rules' peak over
    #: the loaded rosters 1.0 GiB, was 1.2 GiB with the users' join first).
    STAGES = (
        ("_enrollment_one_sided",),
        ("src_enrollment_anomalies", "_link_diff"),
        ("users", "classes"),
    )

    def compute_shared(self) -> None:
        """Compute the big cached comparisons before the rules ask for them (`STAGES`), a
        stage's two at a time: polars releases the GIL and many of its steps use one core,
        so a second core would otherwise idle. The results are the same cached values the
        rules would compute one by one."""
        _ = self.src_users  # most stages need it: computed once, first
        with ThreadPoolExecutor(max_workers=2) as pool:
            for stage in self.STAGES:
                list(pool.map(lambda name: getattr(self, name), stage))

    @property
    def disabled_rules(self) -> frozenset[str]:
        return self.settings["disabled_rules"]

    # -- prepared tables ----------------------------------------------------------------

    @cached_property
    def _src_users_split(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        users = _fill_users(self.source.users).with_columns(live=_live_users())
        return _split_duplicates(users, "sis_id")

    @cached_property
    def src_users(self) -> pl.DataFrame:
        """Source users of every role (aides too: they explain what is NOT missing), one
        per sourcedId; `live` = active in the SIS."""
        return self._src_users_split[0]

    @cached_property
    def src_user_twins(self) -> pl.DataFrame:
        """The SIS user records whose sourcedId is listed more than once with different
        names (NFC, trimmed, any case): two people under one id, or one id re-used.
        Rows of the source users (every record of such an id), `name` added."""
        twins = self._src_users_split[1]
        if twins.is_empty():
            return twins.with_columns(name=pl.lit(None, pl.String))
        twins = twins.with_columns(name=person_name("first_name", "last_name"))
        differ = twins.group_by("sis_id").agg(pl.col("name").n_unique() > 1).filter("name")
        return twins.filter(ids_in("sis_id", differ["sis_id"]))

    @cached_property
    def src_orgs(self) -> pl.DataFrame:
        """Every org of the SIS export (schools too, also when a hand-built roster has no
        orgs table). Columns: sis_id, type, name."""
        schools = self.source.schools.select("sis_id", type=pl.lit("school"), name="name")
        orgs = self.source.orgs.select("sis_id", "type", "name")
        return pl.concat([orgs, schools]).unique(subset="sis_id", keep="first", maintain_order=True)

    @cached_property
    def bm_users(self) -> pl.DataFrame:
        """Every Bookmarked user row, hand-made ones (sis_id null) included."""
        users = self.bookmarked.users
        return _fill_users(users).with_columns(live=_live_users())

    @cached_property
    def users(self) -> pl.DataFrame:
        """The core user comparison: SIS users (all roles) full-joined with Bookmarked
        accounts on sis_id (one account per sis_id, the live one preferred).

        Columns: sis_id, the source fields, `live`, `in_source`; the same fields with a
        `bm_` prefix, `bm_live`, `bm_id` (the account's row id), `in_bookmarked`.
        """
        return _full_join(self.src_users, _one_per_key(self.bm_users, "sis_id"), list(USER_FIELDS))

    @cached_property
    def schools(self) -> pl.DataFrame:
        src = self.source.schools.with_columns(live=pl.col("active").fill_null(True))
        bm = self.bookmarked.schools.with_columns(live=pl.col("active").fill_null(True))
        return _full_join(
            _one_per_key(src, "sis_id"), _one_per_key(bm, "sis_id"), ["name", "state_id"]
        )

    @cached_property
    def classes(self) -> pl.DataFrame:
        src = self.source.classes.with_columns(live=pl.col("active").fill_null(True))
        bm = self.bookmarked.classes.with_columns(live=pl.col("active").fill_null(True))
        return _full_join(
            _one_per_key(src, "sis_id"),
            _one_per_key(bm, "sis_id"),
            ["school_sis_id", "name", "course_code", "term_sis_id"],
        )

    def user_rows(self, ids: pl.Series) -> pl.DataFrame:
        """The rows of `users` for a few sis_ids."""
        return self.users.filter(ids_in("sis_id", ids))

    # -- identity: changed sourcedIds and merged parent accounts ---------------------------

    @cached_property
    def identity_changes(self) -> pl.DataFrame:
        """SIS users whose sourcedId changed: a live SIS user unknown to Bookmarked, and a
        live Bookmarked account of the same role whose sis_id is gone (or tobedeleted) in
        the SIS, with the same student number (first) or normalized email (only when one
        side has no student number).

        Columns: sis_id (the new id), old_sis_id, bookmarked_id (the old account), role,
        matched_on. Each new id and each old account appears at most once.
        """
        users = self.users
        new = users.filter(live_synced_user() & ~pl.col("in_bookmarked"))
        # a user the SIS still holds under the old id with only the login disabled
        # (enabledUser=false, not tobedeleted) is that person, not a changed sourcedId
        disabled = self.src_users.filter(
            ~pl.col("active").fill_null(True) & pl.col("deleted").eq(False)
        )["sis_id"]
        old = users.filter(
            pl.col("in_bookmarked")
            & pl.col("bm_live")
            & ~pl.col("live")
            & ~ids_in("sis_id", disabled)
        )
        pairs = []
        for matched_on, src_col, bm_col in (
            ("student_number", "student_number", "bm_student_number"),
            ("email", "email_normalized", "bm_email_normalized"),
        ):
            left = new.filter(pl.col(src_col).is_not_null()).select(
                "sis_id",
                "role",
                "student_number",
                pl.col(src_col).alias("key"),
                person_name("first_name", "last_name").alias("name"),
            )
            right = old.filter(pl.col(bm_col).is_not_null()).select(
                pl.col("sis_id").alias("old_sis_id"),
                pl.col("bm_role").alias("role"),
                pl.col("bm_student_number").alias("old_number"),
                pl.col(bm_col).alias("key"),
                pl.col("bm_id").alias("bookmarked_id"),
                person_name("bm_first_name", "bm_last_name").alias("old_name"),
            )
            pair = left.join(right, on=["role", "key"], how="inner")
            if matched_on == "email":
                # siblings may share a family email: two different student numbers are two
                # different people, unless the name is the same too (a SIS migration that
                # re-issued both ids keeps the person's email and name)
                pair = pair.filter(
                    pl.col("student_number").is_null()
                    | pl.col("old_number").is_null()
                    | (pl.col("name") == pl.col("old_name"))
                )
            pairs.append(pair.with_columns(matched_on=pl.lit(matched_on)))
        both = pl.concat(pairs, how="vertical").drop(
            "key", "student_number", "old_number", "name", "old_name"
        )
        return (
            both.sort("sis_id", "old_sis_id", maintain_order=True)
            .unique(subset="sis_id", keep="first", maintain_order=True)
            .unique(subset="old_sis_id", keep="first", maintain_order=True)
            .select("sis_id", "old_sis_id", "bookmarked_id", "role", "matched_on")
        )

    @cached_property
    def shared_email_parents(self) -> pl.DataFrame:
        """Live SIS parents whose normalized email another live SIS parent also has (the
        candidates of parent_email_conflict). Columns: sis_id, email_normalized."""
        return (
            self.users.lazy()
            .filter(
                pl.col("in_source")
                & pl.col("live")
                & (pl.col("role") == "parent")
                & pl.col("email_normalized").is_not_null()
            )
            .select("sis_id", "email_normalized")
            .filter(pl.col("email_normalized").is_duplicated())
            .collect()
        )

    @cached_property
    def merged_parents(self) -> pl.DataFrame:
        """Live SIS parents with no live account of their own whose email belongs to a live
        parent account that carries ANOTHER live SIS parent's sis_id: the sync keyed them
        by email and merged them (the second overwrote the first's name and sis_id).

        Columns: sis_id (the parent whose sis_id was overwritten), bookmarked_id (the
        merged account), account_sis_id, email_normalized.
        """
        users = self.users
        orphans = users.filter(
            pl.col("in_source")
            & pl.col("live")
            & (pl.col("role") == "parent")
            & ~pl.col("bm_live")
            & pl.col("email_normalized").is_not_null()
        ).join(self.identity_changes.select("sis_id"), on="sis_id", how="anti")
        if orphans.is_empty():
            return pl.DataFrame(
                schema={
                    "sis_id": pl.String,
                    "bookmarked_id": pl.Int64,
                    "account_sis_id": pl.String,
                    "email_normalized": pl.String,
                }
            )
        accounts = users.filter(
            pl.col("bm_live")
            & (pl.col("bm_role") == "parent")
            & pl.col("in_source")
            & pl.col("live")
            & (pl.col("role") == "parent")
            & ids_in("bm_email_normalized", orphans["email_normalized"])
        ).select(
            pl.col("bm_email_normalized").alias("email_normalized"),
            pl.col("bm_id").alias("bookmarked_id"),
            pl.col("sis_id").alias("account_sis_id"),
        )
        return (
            orphans.select("sis_id", "email_normalized")
            .join(accounts, on="email_normalized", how="inner")
            .unique(subset="sis_id", keep="first", maintain_order=True)
            .select("sis_id", "bookmarked_id", "account_sis_id", "email_normalized")
        )

    def resolve(self, ids: pl.Series) -> pl.DataFrame:
        """The live Bookmarked account standing for each of a few SIS users.

        Columns: sis_id, bookmarked_id, match ('sis_id' | 'changed_id' | 'merged_parent').
        Users with no live account are absent.
        """
        rows = self.user_rows(ids)
        direct = rows.filter(pl.col("in_source") & pl.col("bm_live")).select(
            "sis_id", pl.col("bm_id").alias("bookmarked_id"), match=pl.lit("sis_id")
        )
        merged = self.merged_parents.filter(ids_in("sis_id", ids)).select(
            "sis_id", "bookmarked_id", match=pl.lit("merged_parent")
        )
        changed = self.identity_changes.filter(ids_in("sis_id", ids)).select(
            "sis_id", "bookmarked_id", match=pl.lit("changed_id")
        )
        return pl.concat([direct, merged, changed], how="vertical").unique(
            subset="sis_id", keep="first", maintain_order=True
        )

    def aliases(self, bookmarked_ids: pl.Series) -> pl.DataFrame:
        """Every SIS sourcedId a few Bookmarked rows stand for: their own sis_id, the
        parents merged into them, the new ids of changed sourcedIds.

        Columns: bookmarked_id, alias.
        """
        own = self.bm_users.filter(ids_in("bookmarked_id", bookmarked_ids)).select(
            "bookmarked_id", pl.col("sis_id").alias("alias")
        )
        merged = self.merged_parents.filter(ids_in("bookmarked_id", bookmarked_ids)).select(
            "bookmarked_id", pl.col("sis_id").alias("alias")
        )
        changed = self.identity_changes.filter(ids_in("bookmarked_id", bookmarked_ids)).select(
            "bookmarked_id", pl.col("sis_id").alias("alias")
        )
        return pl.concat([own, merged, changed], how="vertical").drop_nulls().unique()

    # -- record status: what is missing from, or stale in, Bookmarked ---------------------

    @cached_property
    def missing_users(self) -> pl.DataFrame:
        """Live SIS users of a synced role without a live resolved account (rows of `users`)."""
        users = self.users.filter(live_synced_user() & ~pl.col("bm_live"))
        return users.join(self.identity_changes.select("sis_id"), on="sis_id", how="anti").join(
            self.merged_parents.select("sis_id"), on="sis_id", how="anti"
        )

    @cached_property
    def stale_users(self) -> pl.DataFrame:
        """Live Bookmarked accounts whose sis_id is gone or not live in the SIS (rows of
        `users`); old accounts of changed sourcedIds excluded, hand-made accounts never
        here (no sis_id)."""
        users = self.users.filter(pl.col("bm_live") & ~pl.col("live"))
        return users.join(
            self.identity_changes.select(pl.col("old_sis_id").alias("sis_id")),
            on="sis_id",
            how="anti",
        )

    @cached_property
    def missing_schools(self) -> pl.DataFrame:
        return self.schools.filter(pl.col("live") & ~pl.col("bm_live"))

    @cached_property
    def stale_schools(self) -> pl.DataFrame:
        return self.schools.filter(pl.col("bm_live") & ~pl.col("live"))

    @cached_property
    def missing_classes(self) -> pl.DataFrame:
        """Live SIS classes without a live Bookmarked class. A class whose school is not in
        the export is left out: the sync cannot write a class without its school (the
        schema's school_id is NOT NULL), so that is source_integrity's finding alone."""
        known_schools = self.schools.filter(pl.col("in_source"))["sis_id"]
        return self.classes.filter(
            pl.col("live") & ~pl.col("bm_live") & ids_in("school_sis_id", known_schools)
        )

    @cached_property
    def stale_classes(self) -> pl.DataFrame:
        return self.classes.filter(pl.col("bm_live") & ~pl.col("live"))

    @cached_property
    def unplaced_classes(self) -> pl.DataFrame:
        """Live SIS classes whose school is blank or not in the export. The sync cannot
        write them (classes.school_id is NOT NULL): source_integrity reports the class, and
        no rule reports it, or its enrollments, as missing from Bookmarked."""
        known_schools = self.schools.filter(pl.col("in_source"))["sis_id"]
        return self.classes.filter(
            pl.col("in_source")
            & pl.col("live")
            & ~ids_in("school_sis_id", known_schools).fill_null(False)
        )

    # -- enrollments -----------------------------------------------------------------

    def _enrolled_roles(self, enrollments: pl.DataFrame) -> list[str]:
        """The role spellings in a table that mean student or teacher (the synced ones)."""
        spellings = enrollments["role"].drop_nulls().unique().to_list()
        return [r for r in spellings if r.strip().lower() in ENROLLED_ROLES]

    @staticmethod
    def _role_lower(spellings: list[str]) -> pl.Expr:
        """The role column lowercased, skipping the string pass when it already is."""
        if all(r in ENROLLED_ROLES for r in spellings):
            return pl.col("role")
        return pl.col("role").str.strip_chars().str.to_lowercase()

    @property
    def src_enrollments(self) -> pl.LazyFrame:
        """Live SIS enrollments of the synced roles (student, teacher), role lowercased.
        Columns: sis_id, class_sis_id, user_sis_id, role.

        Lazy and never cached: callers filter it down to a few ids (`.filter(...)
        .collect()`), so a second copy of millions of enrollments is never kept."""
        where, columns = self._src_enrollment_view
        return self.source.enrollments.lazy().filter(where).select(columns)

    @cached_property
    def _src_enrollment_view(self) -> tuple[pl.Expr, list[pl.Expr | str]]:
        """The filter and columns of `src_enrollments`."""
        roles = self._enrolled_roles(self.source.enrollments)
        where = (
            pl.col("active").fill_null(True)
            & pl.col("role").is_in(roles)
            & pl.col("class_sis_id").is_not_null()
            & pl.col("user_sis_id").is_not_null()
        )
        return where, ["sis_id", *KEYS, self._role_lower(roles)]

    @property
    def bm_enrollments(self) -> pl.LazyFrame:
        """Live Bookmarked enrollments. Columns: sis_id, class_sis_id, user_sis_id, role,
        bookmarked_id. Lazy and never cached, like `src_enrollments`."""
        where, columns = self._bm_enrollment_view
        return self.bookmarked.enrollments.lazy().filter(where).select(columns)

    @cached_property
    def _bm_enrollment_view(self) -> tuple[pl.Expr, list[pl.Expr | str]]:
        """The filter and columns of `bm_enrollments`."""
        roles = self.bookmarked.enrollments["role"].drop_nulls().unique().to_list()
        where = (
            pl.col("active").fill_null(True)
            & pl.col("class_sis_id").is_not_null()
            & pl.col("user_sis_id").is_not_null()
        )
        return where, ["sis_id", *KEYS, self._role_lower(roles), "bookmarked_id"]

    @cached_property
    def _enrollment_one_sided(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Live synced SIS enrollments with no live Bookmarked one for the same (class,
        user) by sis_ids, and the reverse (columns of `src_enrollments`, `bm_enrollments`)."""
        # compared in place on the roster tables: no filtered copy of millions of rows
        src_where, src_columns = self._src_enrollment_view
        bm_where, bm_columns = self._bm_enrollment_view
        missing, extra = one_sided(
            self.source.enrollments,
            self.bookmarked.enrollments,
            KEYS,
            src_where,
            bm_where,
            hashed=True,
        )
        return missing.select(src_columns), extra.select(bm_columns)

    @cached_property
    def _enrollment_diff(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        missing, extra = self._enrollment_one_sided
        extra = extra.with_columns(bm_user_sis_id=pl.col("user_sis_id"))
        changes = self.identity_changes
        if changes.height and extra.height:
            # enrollments still held by the old account of a changed sourcedId
            extra = (
                extra.join(
                    changes.select("old_sis_id", pl.col("sis_id").alias("_new")),
                    left_on="user_sis_id",
                    right_on="old_sis_id",
                    how="left",
                )
                .with_columns(user_sis_id=pl.coalesce("_new", "user_sis_id"))
                .drop("_new")
            )
            missing, extra = (
                missing.join(extra.select(KEYS), on=KEYS, how="anti"),
                extra.join(missing.select(KEYS), on=KEYS, how="anti"),
            )
        return missing, extra

    @property
    def enrollments_missing(self) -> pl.DataFrame:
        """Live SIS student/teacher enrollments with no live Bookmarked enrollment for the
        same (class, user) (a changed sourcedId's old account counts as the user).
        Columns: sis_id, class_sis_id, user_sis_id, role."""
        return self._enrollment_diff[0]

    @property
    def enrollments_extra(self) -> pl.DataFrame:
        """Live Bookmarked enrollments with no live SIS enrollment for the same (class,
        user). `user_sis_id` is the SIS id (the new one for a changed sourcedId),
        `bm_user_sis_id` the account's. Columns: sis_id, class_sis_id, user_sis_id, role,
        bookmarked_id, bm_user_sis_id."""
        return self._enrollment_diff[1]

    # -- parent-student links -----------------------------------------------------------

    @cached_property
    def bm_links(self) -> pl.DataFrame:
        """Bookmarked links with both row ids (filled from sis_ids where a reader left them
        null)."""
        links = self.bookmarked.links
        if links.select(pl.col(LINK_IDS).null_count()).sum_horizontal().item():
            ids = _one_per_key(self.bm_users, "sis_id").select("sis_id", "bookmarked_id")
            for side in ("parent", "student"):
                links = (
                    links.join(
                        ids.rename({"sis_id": f"{side}_sis_id", "bookmarked_id": "_id"}),
                        on=f"{side}_sis_id",
                        how="left",
                    )
                    .with_columns(
                        pl.coalesce(f"{side}_bookmarked_id", "_id").alias(f"{side}_bookmarked_id")
                    )
                    .drop("_id")
                )
        return links

    @cached_property
    def _link_diff(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The one big comparison of the links: SIS pairs (sis_ids) without a Bookmarked
        link of the same sis_ids, and the reverse, each pair once. What they mean (a
        changed sourcedId, a merged parent account, a missing account) is student_mismatch's
        to explain; missing_data and stale_record count links from their own records."""
        missing, extra = one_sided(self.source.links.select(LINK_KEYS), self.bm_links, LINK_KEYS)
        return missing.drop_nulls().unique(), extra.unique()

    @property
    def link_pairs_missing(self) -> pl.DataFrame:
        """SIS links (parent_sis_id, student_sis_id) no Bookmarked link has by sis_ids."""
        return self._link_diff[0]

    @property
    def link_pairs_extra(self) -> pl.DataFrame:
        """Bookmarked links (rows of `bm_links`) no SIS link has by sis_ids."""
        return self._link_diff[1]

    # -- campus transfers -------------------------------------------------------------

    @cached_property
    def src_class_school(self) -> pl.DataFrame:
        """class_sis_id -> school in the SIS."""
        return self.classes.filter(pl.col("in_source")).select(
            pl.col("sis_id").alias("class_sis_id"), pl.col("school_sis_id").alias("class_school")
        )

    @cached_property
    def bm_class_school(self) -> pl.DataFrame:
        """class_sis_id -> school in Bookmarked."""
        return self.classes.filter(pl.col("in_bookmarked")).select(
            pl.col("sis_id").alias("class_sis_id"),
            pl.col("bm_school_sis_id").alias("class_school"),
        )

    def _schools_attended(self, students: pl.Series) -> pl.DataFrame:
        """The campuses where a few students have an enrollment record (live or not, either
        side), and whether the SIS still has them live there (`live_in_sis`): a campus
        with a record and no live SIS enrollment is the evidence of an old campus.
        Columns: user_sis_id, class_school, live_in_sis.
        """
        src = self.source.enrollments.filter(ids_in("user_sis_id", students)).join(
            self.src_class_school, on="class_sis_id", how="inner"
        )
        bm = self.bookmarked.enrollments.filter(ids_in("user_sis_id", students)).join(
            self.bm_class_school, on="class_sis_id", how="inner"
        )
        records = pl.concat(
            [src.select("user_sis_id", "class_school"), bm.select("user_sis_id", "class_school")],
            how="vertical",
        )
        live = self._live_campuses(src).with_columns(live_in_sis=pl.lit(True))
        return (
            records.drop_nulls()
            .unique()
            .join(live, on=["user_sis_id", "class_school"], how="left")
            .with_columns(pl.col("live_in_sis").fill_null(False))
        )

    @staticmethod
    def _live_campuses(src: pl.DataFrame) -> pl.DataFrame:
        """(user_sis_id, class_school) of live SIS enrollments, from rows already joined to
        their class's school."""
        return (
            src.filter(pl.col("active").fill_null(True))
            .select("user_sis_id", "class_school")
            .unique()
        )

    # enrollments of a class that is itself missing, stale or unplaced are that class's
    # finding (missing_data, stale_record, source_integrity): no evidence of a transfer,
    # and not listed in one

    @cached_property
    def student_enrollments_extra(self) -> pl.DataFrame:
        """`enrollments_extra` of students, without those of stale classes."""
        return self.enrollments_extra.filter(
            (pl.col("role") == "student") & ~ids_in("class_sis_id", self.stale_classes["sis_id"])
        )

    @cached_property
    def student_enrollments_missing(self) -> pl.DataFrame:
        """`enrollments_missing` of students, without those of missing or unplaced classes."""
        return self.enrollments_missing.filter(
            (pl.col("role") == "student")
            & ~ids_in("class_sis_id", self.missing_classes["sis_id"])
            & ~ids_in("class_sis_id", self.unplaced_classes["sis_id"])
        )

    @cached_property
    def campus_transfers(self) -> pl.DataFrame:
        """Students whose campus changed in the SIS and Bookmarked did not follow.

        A student live on both sides (same sis_id) is a transfer when Bookmarked
        - keeps a live enrollment at a campus other than the SIS campus (phantom), or
        - lacks a live enrollment at the SIS campus and the student has an enrollment
          record at another campus (the old one), or
        - has another campus as the student's school and the student has an enrollment
          record at that campus (without that evidence a different school is a plain
          field mismatch).
        For the first two, a campus where the SIS still has the student live is no old
        campus (an extra class there is a stale enrollment); Bookmarked's school is one
        whatever the SIS keeps there. Enrollments of classes that are missing, stale or
        unplaced are their class's finding and no evidence.
        Columns: sis_id, bookmarked_id, new_school, bm_school, old_schools (list).
        """
        extra = self.student_enrollments_extra.join(
            self.bm_class_school, on="class_sis_id", how="inner"
        )
        missing = self.student_enrollments_missing.join(
            self.src_class_school, on="class_sis_id", how="inner"
        )
        changed_school = self.users.filter(
            pl.col("bm_school_sis_id").is_not_null()
            & pl.col("school_sis_id").is_not_null()
            & (pl.col("bm_school_sis_id") != pl.col("school_sis_id"))
            & (pl.col("role") == "student")
        ).select("sis_id")
        candidates = pl.concat(
            [extra["user_sis_id"], missing["user_sis_id"], changed_school["sis_id"]]
        )
        students = (
            self.user_rows(candidates)
            .filter(
                pl.col("in_source")
                & pl.col("live")
                & (pl.col("role") == "student")
                & pl.col("bm_live")
                & (pl.col("bm_role") == "student")
                & pl.col("school_sis_id").is_not_null()
            )
            .select(
                "sis_id",
                pl.col("bm_id").alias("bookmarked_id"),
                pl.col("school_sis_id").alias("new_school"),
                pl.col("bm_school_sis_id").alias("bm_school"),
            )
        )
        if students.is_empty():
            return students.with_columns(old_schools=pl.lit(None, dtype=pl.List(pl.String)))

        # a campus where the SIS still has the student live is no old campus (a dual
        # enrollment is the SIS's business; an extra class there is a stale enrollment)
        live_in_sis = self._live_campuses(
            self.source.enrollments.filter(ids_in("user_sis_id", students["sis_id"])).join(
                self.src_class_school, on="class_sis_id", how="inner"
            )
        )
        phantom = (
            extra.join(students, left_on="user_sis_id", right_on="sis_id")
            .filter(pl.col("class_school") != pl.col("new_school"))
            .join(live_in_sis, on=["user_sis_id", "class_school"], how="anti")
            .group_by("user_sis_id")
            .agg(pl.col("class_school").unique().alias("phantom_schools"))
        )
        attended = self._schools_attended(students["sis_id"]).join(
            students, left_on="user_sis_id", right_on="sis_id"
        )
        elsewhere = (
            attended.filter(
                ~pl.col("live_in_sis") & (pl.col("class_school") != pl.col("new_school"))
            )
            .group_by("user_sis_id")
            .agg(pl.col("class_school").unique().alias("other_schools"))
        )
        # Bookmarked's school is an old campus when the student has a record there, even
        # one the SIS keeps live (a transfer that did not end the old enrollments: the SIS's
        # part is the dual-campus finding, Bookmarked's is not following the school change)
        at_bm_school = (
            attended.filter(pl.col("class_school") == pl.col("bm_school"))
            .select("user_sis_id")
            .unique()
        )
        missing_new = (
            missing.join(students, left_on="user_sis_id", right_on="sis_id")
            .filter(pl.col("class_school") == pl.col("new_school"))
            .select("user_sis_id")
            .unique()
        )

        out = (
            students.join(phantom, left_on="sis_id", right_on="user_sis_id", how="left")
            .join(elsewhere, left_on="sis_id", right_on="user_sis_id", how="left")
            .with_columns(
                at_bm_school=ids_in("sis_id", at_bm_school["user_sis_id"]),
                missing_new=ids_in("sis_id", missing_new["user_sis_id"]),
                # Bookmarked cannot point at a school it lacks: missing_data's finding
                school_changed=pl.col("bm_school").is_not_null()
                & (pl.col("bm_school") != pl.col("new_school"))
                & ~ids_in("new_school", self.missing_schools["sis_id"]),
            )
        )
        out = out.filter(
            pl.col("phantom_schools").is_not_null()
            | (pl.col("missing_new") & pl.col("other_schools").is_not_null())
            | (pl.col("school_changed") & pl.col("at_bm_school"))
        )
        empty = pl.lit([], dtype=pl.List(pl.String))
        old = (
            pl.concat_list(
                pl.when(pl.col("school_changed")).then(pl.col("bm_school")),
                pl.col("phantom_schools").fill_null(empty),
                pl.when(pl.col("phantom_schools").is_null() & ~pl.col("school_changed"))
                .then(pl.col("other_schools").fill_null(empty))
                .otherwise(empty),
            )
            .list.drop_nulls()
            .list.unique(maintain_order=True)
        )
        return out.select(
            "sis_id", "bookmarked_id", "new_school", "bm_school", old.alias("old_schools")
        ).sort("sis_id")

    @cached_property
    def src_enrollment_anomalies(self) -> pl.DataFrame:
        """Live SIS enrollments (any role) whose user or class is not in the export, whose
        role contradicts the user's (a teacher enrollment of a student, a student
        enrollment of a teacher), or student enrollments at a campus other than the
        student's school: the inputs of source_integrity and of the dual-campus check,
        found in one pass (two left joins).

        Columns: sis_id, class_sis_id, user_sis_id, role, user_known, class_known,
        role_conflict, user_role, user_live, user_school, class_school,
        is_student_enrollment.
        """
        src = self.source.enrollments
        spellings = src["role"].drop_nulls().unique().to_list()
        students = [r for r in spellings if r.strip().lower() == "student"]
        teachers = [r for r in spellings if r.strip().lower() == "teacher"]
        # schools travel through the joins as categorical codes: comparing and gathering
        # codes for millions of rows costs a fraction of doing it with the strings
        users = self.src_users.lazy().select(
            pl.col("sis_id").alias("user_sis_id"),
            pl.col("school_sis_id").cast(pl.Categorical).alias("user_school"),
            live_student=(pl.col("role") == "student") & pl.col("live"),
            user_student=pl.col("role") == "student",
            user_teacher=pl.col("role") == "teacher",
            user_known=pl.lit(True),
        )
        classes = (
            _one_per_key(self.source.classes.with_columns(live=pl.lit(True)), "sis_id")
            .lazy()
            .select(
                pl.col("sis_id").alias("class_sis_id"),
                pl.col("school_sis_id").cast(pl.Categorical).alias("class_school"),
                class_known=pl.lit(True),
            )
        )
        # only row numbers, keys and flags go through the two joins over millions of rows;
        # the few anomalies get their other columns afterwards
        found = (
            src.lazy()
            .with_row_index("_row")
            .filter(pl.col("active").fill_null(True))
            .select(
                "_row",
                *KEYS,
                is_student_enrollment=pl.col("role").is_in(students),
                is_teacher_enrollment=pl.col("role").is_in(teachers),
            )
            .join(users, on="user_sis_id", how="left")
            .join(classes, on="class_sis_id", how="left")
            .with_columns(
                pl.col(
                    "user_known", "class_known", "live_student", "user_student", "user_teacher"
                ).fill_null(False)
            )
            .with_columns(
                role_conflict=(pl.col("is_student_enrollment") & pl.col("user_teacher"))
                | (pl.col("is_teacher_enrollment") & pl.col("user_student"))
            )
            .filter(
                ~pl.col("user_known")
                | ~pl.col("class_known")
                | pl.col("role_conflict")
                | (
                    pl.col("is_student_enrollment")
                    & pl.col("live_student")
                    & pl.col("class_school").ne_missing(pl.col("user_school"))
                )
            )
            .collect()
        )
        details = src[found["_row"]].select("sis_id", "role")
        user_state = self.src_users.select(
            pl.col("sis_id").alias("user_sis_id"),
            pl.col("role").alias("user_role"),
            pl.col("live").alias("user_live"),
        )
        return (
            pl.concat(
                [
                    found.drop(
                        "_row",
                        "live_student",
                        "user_student",
                        "user_teacher",
                        "is_teacher_enrollment",
                    ),
                    details,
                ],
                how="horizontal",
            )
            .with_columns(pl.col("user_school", "class_school").cast(pl.String))
            .join(user_state, on="user_sis_id", how="left", maintain_order="left")
            .select(
                "sis_id",
                *KEYS,
                "role",
                "user_known",
                "class_known",
                "role_conflict",
                "user_role",
                "user_live",
                "user_school",
                "class_school",
                "is_student_enrollment",
            )
        )

    @cached_property
    def unresolvable_enrollments(self) -> pl.DataFrame:
        """Live SIS enrollments a sync cannot write as the SIS means them: the user or the
        class is not in the export, or the enrollment's role contradicts the user's.
        Rows of `src_enrollment_anomalies`."""
        return self.src_enrollment_anomalies.filter(
            ~pl.col("user_known") | ~pl.col("class_known") | pl.col("role_conflict")
        )

    @cached_property
    def moved_classes(self) -> pl.DataFrame:
        """Classes live on both sides whose school differs (the SIS moved the class, or
        Bookmarked misplaced it), both schools in the export: field_mismatch's finding.
        Rows of `classes`."""
        known_schools = self.schools.filter(pl.col("in_source"))["sis_id"]
        return self.classes.filter(
            pl.col("live")
            & pl.col("bm_live")
            & pl.col("bm_school_sis_id").is_not_null()
            & pl.col("school_sis_id").ne_missing(pl.col("bm_school_sis_id"))
            & ids_in("school_sis_id", known_schools)
        )

    # -- ownership: one problem, one finding ----------------------------------------------

    #: what(s) `claimed` knows: the records (kind of id) -> the rule that reports them ->
    #: the rules that leave them out. The one place where an overlap is decided; a new
    #: rule that gives way reads `claimed(...)`, a new owner adds a line here.
    CLAIMS: ClassVar[dict[str, tuple[str, str, str]]] = {
        "class_school": (
            "class sis_ids",
            "source_integrity (school not in the export) / missing_data (school missing "
            "from Bookmarked)",
            "field_mismatch",
        ),
        "user_school": (
            "user sis_ids",
            "campus_transfer (a transfer) / missing_data (school missing from Bookmarked)",
            "field_mismatch",
        ),
        "user": ("user sis_ids", "source_integrity (sourcedId listed twice)", "field_mismatch"),
        "enrollment": (
            "SIS enrollment sourcedIds",
            "source_integrity (unresolvable enrollment)",
            "missing_data, stale_record",
        ),
        "enrollments_of": (
            "user sis_ids",
            "campus_transfer (the enrollments of a transferred student)",
            "missing_data, stale_record",
        ),
        "campus_evidence": (
            "class sis_ids",
            "field_mismatch (class moved) / source_integrity (class at no school)",
            "campus_transfer (its enrollments are no evidence of a second campus)",
        ),
    }

    def claimed(self, what: str) -> pl.Series:
        """The ids of records whose problem another rule reports (see `CLAIMS`), for the
        rule that must give way to leave out."""
        if what not in self.CLAIMS:
            raise KeyError(f"unknown claim {what!r}; known: {sorted(self.CLAIMS)}")
        return self._claims(what)

    def _claims(self, what: str) -> pl.Series:
        if what == "class_school":
            missing_school = self.classes.filter(
                ids_in("school_sis_id", self.missing_schools["sis_id"])
            )["sis_id"]
            return pl.concat([self.unplaced_classes["sis_id"], missing_school])
        if what == "user_school":
            missing_school = self.users.filter(
                ids_in("school_sis_id", self.missing_schools["sis_id"])
            )["sis_id"]
            return pl.concat([self.campus_transfers["sis_id"], missing_school])
        if what == "user":
            return self.src_user_twins["sis_id"]
        if what == "enrollment":
            return self.unresolvable_enrollments["sis_id"]
        if what == "enrollments_of":
            return self.campus_transfers["sis_id"]
        # campus_evidence
        return pl.concat([self.moved_classes["sis_id"], self.unplaced_classes["sis_id"]])

    # -- labels for detail lines (names go only into reports) ---------------------------

    def user_labels(self, ids: pl.Series, alias: str = "sis_id") -> pl.DataFrame:
        """'Ann Lee (stu-1)' for a few users (SIS name first, else Bookmarked's).
        Columns: `alias`, label."""
        rows = self.user_rows(ids)
        name = pl.concat_str(
            [
                pl.coalesce("first_name", "bm_first_name").fill_null(""),
                pl.coalesce("last_name", "bm_last_name").fill_null(""),
            ],
            separator=" ",
        ).str.strip_chars()
        label = (
            pl.when(name == "")
            .then(pl.col("sis_id"))
            .otherwise(pl.format("{} ({})", name, pl.col("sis_id")))
        )
        return rows.select(pl.col("sis_id").alias(alias), label.alias("label"))

    def _labels(self, table: pl.DataFrame, ids: pl.Series, alias: str) -> pl.DataFrame:
        rows = table.filter(ids_in("sis_id", ids))
        name = pl.coalesce("name", "bm_name")
        label = (
            pl.when(name.is_null())
            .then(pl.col("sis_id"))
            .otherwise(pl.format("{} ({})", name, pl.col("sis_id")))
        )
        return rows.select(pl.col("sis_id").alias(alias), label.alias("label"))

    def class_labels(self, ids: pl.Series, alias: str = "class_sis_id") -> pl.DataFrame:
        """'Math 5 (cls-1)' for a few classes. Columns: `alias`, label."""
        return self._labels(self.classes, ids, alias)

    def school_labels(self, ids: pl.Series, alias: str = "school_sis_id") -> pl.DataFrame:
        """'North Elementary (sch-1)' for a few schools. Columns: `alias`, label."""
        return self._labels(self.schools, ids, alias)
