"""What a diagnosis reads from each side, and what the slice it builds may be trusted for.

A slice is not a roster. Run as they are on one student's rows, the rules would report
that student's school and teacher as missing from Bookmarked (they were simply not read),
and the changed-sourcedId and merged-parent checks would miss the rows they need (the old
account, the other family's parent). So the slice is built in rounds, the same way on
both sides, and carries its scope:

1. the people asked for, read on both sides (`fetch_people`: their family, enrollments,
   classes, schools);
2. the rows the identity checks need, found with `find_people` on the OTHER side (the old
   account of a changed sourcedId: same student number or email) and on both sides for a
   parent's email (the parents sharing it, the account the sync merged them into);
3. every person either side's slice holds, read on the other side too, so whether a
   person exists in a system is decided by asking that system;
4. the classes and schools one side holds and the other did not read, asked of that side
   by id when its connector can (`fetch_records`);
5. what is still unread on one side is OUTSIDE the slice: its row is mirrored from the
   other side, so it counts as agreeing (no finding about it, and it never makes a
   person's record look missing or stale). `Scope.outside` lists those keys.

The rules then run unchanged on the two slices (`evaluate.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import polars as pl

from reconciliation.connectors.people import (
    PersonMatch,
    PersonQuery,
    find_people_in,
    with_scope,
)
from reconciliation.roster import ALL_TABLES, Roster, Side, conform

T = TypeVar("T")
SIDES: tuple[Side, Side] = ("source", "bookmarked")
#: the tables whose presence is decided by key (users by sis_id, classes, schools)
KEYED = ("users", "classes", "schools")
#: the roles whose changed sourcedId duplicate_identity finds (by student number or email)
IDENTITY_ROLES = ("student", "teacher", "parent", "admin")


class SideReader:
    """One side's lookups for one diagnosis: a connector's narrow calls, or, when its
    system has none (`narrow_lookup` False) or for a roster already in memory, the whole
    roster read ONCE and sliced in memory (never once per lookup)."""

    def __init__(
        self,
        side: Side,
        connector: Any = None,
        *,
        roster: Roster | None = None,
    ) -> None:
        self.side = side
        self.connector = connector
        self._roster = roster
        self.narrow = bool(connector is not None and getattr(connector, "narrow_lookup", False))
        self.lookups = 0
        #: wall seconds spent reading this side (lookups and whole-roster reads)
        self.seconds = 0.0
        self.reads: list[str] = []
        self._meta: dict[str, Any] | None = None
        self._fetched: dict[tuple[str, ...], Roster] = {}

    @classmethod
    def of_roster(cls, roster: Roster) -> SideReader:
        """A side answered from a roster in memory (the scan's roster, tests)."""
        return cls(roster.side, roster=roster)

    @contextmanager
    def _timed(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - started

    def whole(self) -> Roster:
        if self._roster is None:
            with self._timed():
                self._roster = self.connector.fetch_roster()
            self.reads.append("whole roster: this system has no narrow call")
        return self._roster

    def find(self, query: PersonQuery) -> list[PersonMatch]:
        self.lookups += 1
        if self.narrow:
            with self._timed():
                return list(self.connector.find_people(query))
        return find_people_in(self.whole(), query)

    def fetch(self, sis_ids: Sequence[str]) -> Roster:
        """The neighbourhood of some people; the same ids twice are read once."""
        key = tuple(sorted(set(sis_ids)))
        if key not in self._fetched:
            self._fetched[key] = self._fetch(list(key))
        return self._fetched[key]

    def _fetch(self, sis_ids: list[str]) -> Roster:
        self.lookups += 1
        if self.narrow:
            with self._timed():
                roster = self.connector.fetch_people(list(sis_ids))
            reads = (roster.meta.get("scope") or {}).get("reads")
            if reads:
                self.reads.append(str(reads))
            self._meta = {k: v for k, v in roster.meta.items() if k != "scope"}
            return roster
        return with_scope(self.whole().for_people(sis_ids), list(sis_ids), narrow=False, reads="")

    def meta(self) -> dict[str, Any]:
        """The provenance of what this side read (Bookmarked's last sync runs): of the
        whole roster, or of the last narrow read (one read of nobody when none was made)."""
        if not self.narrow:
            return {k: v for k, v in self.whole().meta.items() if k != "scope"}
        if self._meta is None:
            self.fetch([])
        return self._meta or {}

    @property
    def can_fetch_records(self) -> bool:
        return not self.narrow or callable(getattr(self.connector, "fetch_records", None))

    def records(self, classes: Sequence[str], schools: Sequence[str]) -> Roster:
        """Some classes and schools by sis_id (only when `can_fetch_records`)."""
        self.lookups += 1
        if self.narrow:
            with self._timed():
                return self.connector.fetch_records(classes=list(classes), schools=list(schools))
        roster = self.whole()
        return Roster(
            roster.customer_id,
            roster.side,
            classes=roster.classes.filter(pl.col("sis_id").is_in(list(classes))),
            schools=roster.schools.filter(pl.col("sis_id").is_in(list(schools))),
        )


@dataclass(frozen=True)
class Scope:
    """What the slice is for and what it may be trusted for.

    `people`: the diagnosed sis_ids (the findings about them are the diagnosis).
    `looked_up[side][table]`: the keys that side was asked about (present or not there:
    presence decided). `outside[side][table]`: keys that side was never asked about, whose
    rows were mirrored from the other side (taken as agreeing). `reads[side]`: how each
    side was read; `narrow[side]`: whether through narrow calls.
    """

    people: tuple[str, ...]
    looked_up: dict[str, dict[str, frozenset[str]]]
    outside: dict[str, dict[str, frozenset[str]]]
    reads: dict[str, list[str]] = field(default_factory=dict)
    narrow: dict[str, bool] = field(default_factory=dict)
    lookups: dict[str, int] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """Counts and how each side was read: no ids (log lines and run tags may carry it)."""
        return {
            side: {
                "narrow": self.narrow.get(side, False),
                "lookups": self.lookups.get(side, 0),
                "reads": sorted(set(self.reads.get(side, []))),
                "outside": {t: len(keys) for t, keys in self.outside[side].items() if keys},
            }
            for side in SIDES
        }


@dataclass(frozen=True)
class Slice:
    source: Roster
    bookmarked: Roster
    scope: Scope

    def roster(self, side: Side) -> Roster:
        return self.source if side == "source" else self.bookmarked


# -- building the slice -------------------------------------------------------------------


class _Side:
    """The parts read so far on one side and the keys asked about."""

    def __init__(self, reader: SideReader) -> None:
        self.reader = reader
        self.parts: list[Roster] = []
        self.asked: dict[str, set[str]] = {table: set() for table in KEYED}

    def fetch_people(self, ids: Iterable[str]) -> None:
        new = sorted({i for i in ids if i} - self.asked["users"])
        if not new:
            return
        self.asked["users"].update(new)
        part = self.reader.fetch(new)
        self.parts.append(part)
        # a neighbourhood holds the schools of its users and classes: asked, present or not
        self.asked["schools"].update(_school_refs(part))
        self.asked["classes"].update(part.classes["sis_id"].drop_nulls().to_list())

    def fetch_records(self, classes: set[str], schools: set[str]) -> None:
        classes, schools = classes - self.asked["classes"], schools - self.asked["schools"]
        if not (classes or schools) or not self.reader.can_fetch_records:
            return
        self.asked["classes"].update(classes)
        self.asked["schools"].update(schools)
        self.parts.append(self.reader.records(sorted(classes), sorted(schools)))

    def present(self, table: str) -> set[str]:
        return {k for part in self.parts for k in part.table(table)["sis_id"].drop_nulls()}

    def merged(self, customer_id: str) -> Roster:
        if len(self.parts) == 1:
            return self.parts[0]
        tables = {
            table: _union([part.table(table) for part in self.parts], table) for table in ALL_TABLES
        }
        meta: dict[str, Any] = {}
        for part in self.parts:
            meta.update({k: v for k, v in part.meta.items() if k != "scope"})
        return Roster(customer_id, self.reader.side, meta=meta, **tables)


def _union(frames: list[pl.DataFrame], table: str) -> pl.DataFrame:
    frames = [f for f in frames if f.height]
    if not frames:
        return conform(table, None)
    # list columns (org_sis_ids) cannot be hashed for `unique`: dedupe on the rest
    frame = pl.concat(frames, how="vertical")
    subset = [c for c, t in frame.schema.items() if not isinstance(t, pl.List)]
    return frame.unique(subset=subset, keep="first", maintain_order=True)


def _school_refs(roster: Roster) -> set[str]:
    refs = pl.concat([roster.users["school_sis_id"], roster.classes["school_sis_id"]])
    return set(refs.drop_nulls().to_list()) | set(roster.schools["sis_id"].drop_nulls())


def family_of(rosters: Iterable[Roster], ids: set[str]) -> set[str]:
    """The sis_ids linked to some people (parents of a student, children of a parent) on
    any of the rosters, by sis_id or, on the Bookmarked side, by account id."""
    found: set[str] = set()
    for roster in rosters:
        accounts = roster.users.filter(pl.col("sis_id").is_in(list(ids)))["bookmarked_id"]
        by_account = roster.users.select("sis_id", "bookmarked_id").drop_nulls()
        account_sis = dict(zip(by_account["bookmarked_id"], by_account["sis_id"], strict=True))
        for row in roster.links.iter_rows(named=True):
            parent_sis = row["parent_sis_id"] or account_sis.get(row["parent_bookmarked_id"])
            student_sis = row["student_sis_id"] or account_sis.get(row["student_bookmarked_id"])
            parent_hit = parent_sis in ids or row["parent_bookmarked_id"] in set(accounts)
            student_hit = student_sis in ids or row["student_bookmarked_id"] in set(accounts)
            if parent_hit and student_sis:
                found.add(student_sis)
            if student_hit and parent_sis:
                found.add(parent_sis)
    return found - ids


def _live(users: pl.DataFrame) -> pl.DataFrame:
    return users.filter(pl.col("active").fill_null(True) & ~pl.col("deleted").fill_null(False))


def identity_queries(
    source: Roster, bookmarked: Roster, people: set[str]
) -> list[tuple[Side, PersonQuery]]:
    """The lookups the identity checks need for some people, given what each side holds:

    - a person live on one side only may be there under another sourcedId (a changed
      id): look on the other side by their student number and email;
    - a SIS parent's email may be shared by other SIS parents (parent_email_conflict):
      look by that email in the SIS (the account the sync merged them into is found by
      the first rule: the parent left without an account is one-sided).
    """
    queries: list[tuple[Side, PersonQuery]] = []
    rows = {
        "source": source.users.filter(pl.col("sis_id").is_in(list(people))),
        "bookmarked": bookmarked.users.filter(pl.col("sis_id").is_in(list(people))),
    }
    live = {side: set(_live(rows[side])["sis_id"].to_list()) for side in SIDES}
    for side, other in (("source", "bookmarked"), ("bookmarked", "source")):
        one_sided = live[side] - live[other]
        for row in rows[side].filter(pl.col("sis_id").is_in(list(one_sided))).iter_rows(named=True):
            if row["role"] not in IDENTITY_ROLES:
                continue
            if row["student_number"]:
                queries.append((other, PersonQuery(student_number=row["student_number"])))
            if row["email_normalized"]:
                queries.append((other, PersonQuery(email=row["email_normalized"])))
    # the SIS parents sharing a parent's email (a merged account in Bookmarked is found by
    # the one-sided parent's email above)
    for email in rows["source"].filter(pl.col("role") == "parent")["email_normalized"]:
        if email:
            queries.append(("source", PersonQuery(email=email)))
    return list(dict.fromkeys(queries))


def _other(side: _Side) -> str:
    return "bookmarked" if side.reader.side == "source" else "source"


def on_both_sides(sides: dict[str, _Side], work: Callable[[_Side], T]) -> dict[str, T]:
    """`work` on each side, the two at once when either reads a system (each side's lookups
    wait on its own); one after the other for rosters in memory."""
    if not any(side.reader.narrow for side in sides.values()):
        return {name: work(side) for name, side in sides.items()}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(work, side) for name, side in sides.items()}
        return {name: future.result() for name, future in futures.items()}


def build_slice(
    source: SideReader,
    bookmarked: SideReader,
    seeds: Sequence[str],
    customer_id: str,
    *,
    family: Callable[[Iterable[Roster], set[str]], set[str]] = family_of,
) -> Slice:
    """Read the slice around `seeds` (sis_ids) on both sides, in the rounds the module
    docstring describes, and mirror what stays outside it."""
    sides = {"source": _Side(source), "bookmarked": _Side(bookmarked)}
    seed_ids = {s for s in seeds if s}
    # each round reads both sides at once: the SIS and Bookmarked are separate systems
    # 1. the people asked for
    on_both_sides(sides, lambda side: side.fetch_people(seed_ids))
    parts = [p for s in sides.values() for p in s.parts]
    people = seed_ids | family(parts, seed_ids)
    first = {name: s.merged(customer_id) for name, s in sides.items()}
    # 2. the identity checks' rows
    queries = identity_queries(first["source"], first["bookmarked"], people)
    found = on_both_sides(
        sides,
        lambda side: [
            m.sis_id
            for name, query in queries
            if name == side.reader.side
            for m in side.reader.find(query)
            if m.sis_id
        ],
    )
    related = {sis_id for ids in found.values() for sis_id in ids}
    # 3. the people diagnosed and those found above, read whole on both sides; anyone
    # else either side holds, asked of the other side when it does not hold them already
    holds = set().union(*(s.present("users") for s in sides.values()))
    on_both_sides(
        sides, lambda side: side.fetch_people(people | related | (holds - side.present("users")))
    )
    # 4. classes and schools one side holds and the other did not read
    second = {name: s.merged(customer_id) for name, s in sides.items()}
    on_both_sides(
        sides,
        lambda side: side.fetch_records(
            set(second[_other(side)].classes["sis_id"].drop_nulls()),
            _school_refs(second[_other(side)]),
        ),
    )
    rosters = {name: s.merged(customer_id) for name, s in sides.items()}
    # 5. mirror what is outside
    outside: dict[str, dict[str, frozenset[str]]] = {}
    mirrored: dict[str, Roster] = {}
    for name in SIDES:
        other = "bookmarked" if name == "source" else "source"
        roster, outside[name] = _mirror(rosters[name], rosters[other], sides[name].asked)
        mirrored[name] = roster
    scope = Scope(
        people=tuple(sorted(people)),
        looked_up={n: {t: frozenset(k) for t, k in s.asked.items()} for n, s in sides.items()},
        outside=outside,
        reads={n: list(s.reader.reads) for n, s in sides.items()},
        narrow={n: s.reader.narrow for n, s in sides.items()},
        lookups={n: s.reader.lookups for n, s in sides.items()},
    )
    return Slice(mirrored["source"], mirrored["bookmarked"], scope)


def _mirror(
    roster: Roster, other: Roster, asked: dict[str, set[str]]
) -> tuple[Roster, dict[str, frozenset[str]]]:
    """`roster` plus the rows of `other` whose keys this side was never asked about: a
    record outside the slice counts as agreeing with the other side, not as absent."""
    outside: dict[str, frozenset[str]] = {}
    tables: dict[str, pl.DataFrame] = {}
    for table in KEYED:
        present = set(roster.table(table)["sis_id"].drop_nulls().to_list())
        rows = other.table(table).filter(
            pl.col("sis_id").is_not_null() & ~pl.col("sis_id").is_in(list(present | asked[table]))
        )
        outside[table] = frozenset(rows["sis_id"].to_list())
        if rows.height:
            if roster.side == "source":
                rows = rows.with_columns(bookmarked_id=pl.lit(None, pl.Int64))
            tables[table] = pl.concat([roster.table(table), rows], how="vertical")
    return (replace(roster, **tables) if tables else roster), outside
