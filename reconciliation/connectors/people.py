"""Finding one person, and the slice of a roster around them: the diagnosis's questions.

Pure functions every connector shares, so a name or an email matches the same people on
every side and through every connector, narrow or not: `PersonQuery` (who to diagnose),
`PersonMatch` (who a query found), `name_key` (the one definition of "same name") and
`find_people_in` (a query run over a roster already in memory: the default for a connector
whose system cannot filter, and the reference the narrow lookups are tested against).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from typing import Any

import polars as pl

from reconciliation.roster import Roster, normalize_email

#: PersonQuery's fields, in the order `describe` and errors name them
QUERY_KINDS = ("sourced_id", "student_number", "email", "name", "parent_email")


@dataclass(frozen=True)
class PersonQuery:
    """Who to diagnose: exactly one field is set (validated in __post_init__, clear ValueError)."""

    sourced_id: str | None = None
    student_number: str | None = None
    #: the person's own email (any role), case-insensitive
    email: str | None = None
    #: "Given Family" or "Family, Given"; case/accent/space-insensitive, whole-name match
    name: str | None = None
    #: a parent's login email: the "parent sees the wrong child" case
    parent_email: str | None = None

    def __post_init__(self) -> None:
        set_ = [f.name for f in fields(self) if getattr(self, f.name) is not None]
        if len(set_) != 1:
            given = ", ".join(set_) if set_ else "none"
            raise ValueError(
                f"a person query needs exactly one of {', '.join(QUERY_KINDS)}; given: {given}"
            )
        value = getattr(self, set_[0])
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"a person query's {set_[0]} must be a non-empty string")
        if set_[0] == "name" and not name_key(value):
            raise ValueError("a person query's name has no letters")

    @property
    def kind(self) -> str:
        """Which field is set: one of `QUERY_KINDS`."""
        return next(kind for kind in QUERY_KINDS if getattr(self, kind) is not None)

    @property
    def value(self) -> str:
        return getattr(self, self.kind)

    def describe(self) -> dict[str, str]:
        """The query as the diagnosis's JSON shows it: {"student": ...} or {"parent_email": ...}."""
        if self.kind == "parent_email":
            return {"parent_email": self.value}
        return {"student": self.value}


@dataclass(frozen=True)
class PersonMatch:
    """One person a query found on one side (for candidates lists and the `people` output)."""

    sis_id: str | None
    bookmarked_id: int | None
    #: canonical role (student|teacher|parent|admin|other)
    role: str
    #: "Given Family"
    name: str
    school_sis_ids: tuple[str, ...]
    grade: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "sis_id": self.sis_id,
            "bookmarked_id": self.bookmarked_id,
            "role": self.role,
            "name": self.name,
            "school_sis_ids": list(self.school_sis_ids),
            "grade": self.grade,
        }


# -- names ------------------------------------------------------------------------------


def name_key(text: str | None) -> str:
    """The one definition of "same name": accents folded (NFKD, combining marks dropped),
    case folded, commas read as spaces, runs of spaces collapsed."""
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", text.replace(",", " "))
    folded = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join(unicodedata.normalize("NFKC", folded).split())


def full_name(given: str | None, family: str | None) -> str:
    """ "Given Family", as reports and candidate lists show a person."""
    return " ".join(part.strip() for part in (given, family) if part and part.strip())


def name_matches(query: str, given: str | None, family: str | None) -> bool:
    """A whole-name match in either order: "Ann Lee", "lee ann" and "Lee, Ann" are Ann Lee."""
    key = name_key(query)
    return bool(key) and key in {
        name_key(f"{given or ''} {family or ''}"),
        name_key(f"{family or ''} {given or ''}"),
    }


# -- queries over a roster in memory -----------------------------------------------------


def query_filter(query: PersonQuery, users: pl.DataFrame) -> pl.Series:
    """Which rows of `users` (canonical schema) the query finds, as a boolean mask."""
    kind, value = query.kind, query.value
    if kind == "sourced_id":
        return users["sis_id"] == value.strip()
    if kind == "student_number":
        return users["student_number"].str.strip_chars() == value.strip()
    if kind in ("email", "parent_email"):
        found = users["email_normalized"] == normalize_email(value)
        if kind == "parent_email":
            found = found & (users["role"] == "parent")
        return found
    mask = [
        name_matches(value, given, family)
        for given, family in zip(users["first_name"], users["last_name"], strict=True)
    ]
    return pl.Series(mask, dtype=pl.Boolean)


def matches_of(users: pl.DataFrame) -> list[PersonMatch]:
    """PersonMatch per row of a canonical users frame, in sis_id order."""
    found = []
    for row in users.sort("sis_id", "bookmarked_id", nulls_last=True).iter_rows(named=True):
        schools = [s for s in row["org_sis_ids"] or [] if s]
        if row["school_sis_id"] and row["school_sis_id"] not in schools:
            schools.insert(0, row["school_sis_id"])
        found.append(
            PersonMatch(
                sis_id=row["sis_id"],
                bookmarked_id=row["bookmarked_id"],
                role=row["role"] or "other",
                name=full_name(row["first_name"], row["last_name"]),
                school_sis_ids=tuple(schools),
                grade=row["grade"],
            )
        )
    return found


def find_people_in(roster: Roster, query: PersonQuery) -> list[PersonMatch]:
    """Everyone on this roster the query finds (none, one, or several for a shared name)."""
    users = roster.users
    if users.is_empty():
        return []
    return matches_of(users.filter(query_filter(query, users).fill_null(False)))


def with_scope(roster: Roster, people: list[str], *, narrow: bool, reads: str) -> Roster:
    """The roster with its `meta["scope"]`: whom it was read for, and how."""
    scope = {"people": list(people), "narrow": narrow, "reads": reads}
    return replace(roster, meta={**roster.meta, "scope": scope})


def records_of(roster: Roster, classes: Iterable[str], schools: Iterable[str]) -> Roster:
    """Only the asked classes and schools of a roster (and the orgs among the schools):
    what `fetch_records` answers, whether read narrowly or cut from a whole roster."""
    class_ids, school_ids = list(classes), list(schools)
    return replace(
        roster,
        schools=roster.schools.filter(pl.col("sis_id").is_in(school_ids)),
        users=roster.users.clear(),
        links=roster.links.clear(),
        classes=roster.classes.filter(pl.col("sis_id").is_in(class_ids)),
        enrollments=roster.enrollments.clear(),
        orgs=roster.orgs.filter(pl.col("sis_id").is_in(school_ids)),
        meta={
            **{k: v for k, v in roster.meta.items() if k != "scope"},
            "records": {"classes": class_ids, "schools": school_ids},
        },
    )
