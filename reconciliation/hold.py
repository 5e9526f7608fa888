"""Sync-hold: data that parses but cannot be right is held, never turned into findings.

An export that is empty or cut short (a `users.csv` with only its header, an enrollments
file cut at a line break) would otherwise become thousands of findings telling support to
deactivate accounts, and a `bookmarked.customer_id` copied from another district would
report that district's students. Trusted sync systems (Clever, ClassLink) hold a sync whose
changes pass a threshold instead of applying it; this module does the same before the
rules run, by comparing the two rosters and the previous complete run:

- per table (users, enrollments, links): the share of live Bookmarked records the SIS
  would drop, against `hold.max_missing_share` (default 0.3);
- per table: how much the SIS export shrank since the last complete run, same limit;
- a required table (users, enrollments, classes, schools) with no rows;
- the share of SIS user sourcedIds found among the Bookmarked customer's sis_ids (near
  zero: the two sides describe different customers).

A hold names each table and its counts (never a record), and a fingerprint of the export:
`hold.accept_once` set to that fingerprint (or `reconcile scan --accept-hold`) accepts that
one export. Pure functions of two rosters; the Dagster asset decides what a hold does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from reconciliation.roster import SYNCED_ROLES, Roster
from reconciliation.settings import DEFAULT_MAX_MISSING_SHARE, HOLD_TABLES

#: the keys that identify a record of each table whose dropped share is held
DROP_KEYS: dict[str, list[str]] = {
    "users": ["sis_id"],
    "enrollments": ["class_sis_id", "user_sis_id"],
    "links": ["parent_sis_id", "student_sis_id"],
}
assert tuple(DROP_KEYS) == HOLD_TABLES  # the settings' `hold.max_missing_share` keys
#: tables a roster cannot be without while Bookmarked has rows of them
REQUIRED_TABLES = ("users", "enrollments", "classes", "schools")
#: below this share of shared user ids the two sides are different customers ...
MIN_ID_OVERLAP = 0.05
#: ... when both sides have at least this many users (a tiny or new customer proves nothing)
MIN_USERS_FOR_OVERLAP = 20
#: the run tag that accepts a hold for one run (`true`, or the hold's fingerprint)
ACCEPT_TAG = "reconciliation/accept_hold"


@dataclass(frozen=True)
class Hold:
    """Why a customer's run is held: one line per reason, counts only (safe for logs)."""

    customer_id: str
    fingerprint: str
    reasons: tuple[str, ...]
    counts: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        return "; ".join(self.reasons)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reasons": list(self.reasons)}


def _live(roster: Roster, table: str) -> pl.LazyFrame:
    """The distinct keys of the live records of `table` (what a correct sync keeps live)."""
    frame = roster.table(table).lazy()
    keys = DROP_KEYS[table]
    if table == "users":
        frame = frame.filter(
            pl.col("active").fill_null(True)
            & ~pl.col("deleted").fill_null(False)
            & pl.col("role").is_in(SYNCED_ROLES)
        )
    elif table == "enrollments":
        frame = frame.filter(pl.col("active").fill_null(True))
    return frame.select(keys).drop_nulls().unique()


def _dropped(source: Roster, bookmarked: Roster) -> dict[str, tuple[int, int, int]]:
    """Per table: (live in Bookmarked, of those not live in the SIS, live in the SIS)."""
    queries = []
    for table, keys in DROP_KEYS.items():
        bm, src = _live(bookmarked, table), _live(source, table)
        queries += [
            bm.select(pl.len()),
            bm.join(src, on=keys, how="anti").select(pl.len()),
            src.select(pl.len()),
        ]
    values = [int(frame.item()) for frame in pl.collect_all(queries)]
    return {table: tuple(values[3 * i : 3 * i + 3]) for i, table in enumerate(DROP_KEYS)}  # type: ignore[misc]


def id_overlap(source_ids: pl.Series, bookmarked_ids: pl.Series) -> tuple[int, int]:
    """(SIS user sourcedIds found among Bookmarked's sis_ids, SIS user sourcedIds)."""
    source_ids = source_ids.drop_nulls().unique()
    found = source_ids.is_in(bookmarked_ids.drop_nulls().unique().implode()).sum()
    return int(found), source_ids.len()


def district_names(source: Roster, bookmarked: Roster) -> tuple[str | None, str | None]:
    """The export's district org name and the Bookmarked customer's name, where known."""
    orgs = source.orgs.filter(pl.col("type").str.to_lowercase() == "district")
    names = orgs["name"].drop_nulls().unique().sort().to_list()
    return (", ".join(names) or None), bookmarked.meta.get("customer_name") or None


def wrong_customer_reason(
    source_ids: pl.Series,
    bookmarked_ids: pl.Series,
    bookmarked_customer_id: int | None = None,
    names: tuple[str | None, str | None] = (None, None),
) -> str | None:
    """A reason when the two sides share almost no user ids, else None. The names (the
    export's district, the Bookmarked customer), when both are known, go in the reason:
    they tell a person at once which district the settings point at."""
    found, total = id_overlap(source_ids, bookmarked_ids)
    bookmarked_total = bookmarked_ids.drop_nulls().n_unique()
    if min(total, bookmarked_total) < MIN_USERS_FOR_OVERLAP or found / total >= MIN_ID_OVERLAP:
        return None
    which = (
        f"Bookmarked customer {bookmarked_customer_id}" if bookmarked_customer_id else "Bookmarked"
    )
    source_name, bookmarked_name = names
    named = (
        f" ({which} is {bookmarked_name!r}; the export's district is {source_name!r})"
        if source_name and bookmarked_name
        else ""
    )
    return (
        f"different customers: only {found} of the SIS's {total} user sourcedIds "
        f"({found / total:.1%}) are among the {bookmarked_total} sis_ids of {which}{named}; "
        f"check $.bookmarked.customer_id in the settings"
    )


def fingerprint(source: Roster) -> str:
    """Identifies one export: its row counts and, where the reader recorded them, its
    files' checksums. `hold.accept_once` names it, so a later export is never accepted."""
    files = source.meta.get("files") or {}
    digest = hashlib.sha256(
        json.dumps(
            {
                "customer_id": source.customer_id,
                "rows": source.row_counts(),
                "files": {name: info.get("sha256") for name, info in sorted(files.items())},
            },
            sort_keys=True,
            default=str,
        ).encode()
    )
    return digest.hexdigest()[:12]


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "0%"


def check_plausibility(
    source: Roster,
    bookmarked: Roster,
    *,
    max_missing_share: Mapping[str, float] | None = None,
    previous_source_counts: Mapping[str, int] | None = None,
    bookmarked_customer_id: int | None = None,
) -> Hold | None:
    """The reasons to hold this customer's run, or None when the data is plausible."""
    return assess(
        source,
        bookmarked,
        max_missing_share=max_missing_share,
        previous_source_counts=previous_source_counts,
        bookmarked_customer_id=bookmarked_customer_id,
    )[0]


def assess(
    source: Roster,
    bookmarked: Roster,
    *,
    max_missing_share: Mapping[str, float] | None = None,
    previous_source_counts: Mapping[str, int] | None = None,
    bookmarked_customer_id: int | None = None,
) -> tuple[Hold | None, dict[str, dict[str, int]]]:
    """The hold (or None), and the live records per table on each side, which the report
    stores so that the next run can tell how much the export shrank."""
    limits = {t: DEFAULT_MAX_MISSING_SHARE for t in DROP_KEYS} | dict(max_missing_share or {})
    previous = dict(previous_source_counts or {})
    source_rows, bookmarked_rows = source.row_counts(), bookmarked.row_counts()
    reasons: list[str] = []

    for table in REQUIRED_TABLES:
        if source_rows[table] == 0 and (table == "users" or bookmarked_rows[table] > 0):
            reasons.append(
                f"{table}: the SIS export has no {table} rows "
                f"(Bookmarked has {bookmarked_rows[table]})"
            )
    dropped = _dropped(source, bookmarked)
    for table, (bm_live, gone, src_live) in dropped.items():
        limit = limits[table]
        if bm_live and gone / bm_live > limit:
            reasons.append(
                f"{table}: the SIS would drop {gone} of {bm_live} live Bookmarked {table} "
                f"({_share(gone, bm_live)}, limit {limit:.0%}); the SIS has {src_live} live"
                + (f", {previous[table]} at the last complete run" if table in previous else "")
            )
        elif previous.get(table) and (previous[table] - src_live) / previous[table] > limit:
            reasons.append(
                f"{table}: the SIS export shrank from {previous[table]} live {table} at the "
                f"last complete run to {src_live} "
                f"({_share(previous[table] - src_live, previous[table])}, limit {limit:.0%})"
            )
    if source_rows["users"]:
        wrong = wrong_customer_reason(
            source.users["sis_id"],
            bookmarked.users["sis_id"],
            bookmarked_customer_id,
            district_names(source, bookmarked),
        )
        if wrong:
            reasons.append(wrong)
    live = {
        "source": {t: s for t, (_, _, s) in dropped.items()},
        "bookmarked": {t: b for t, (b, _, _) in dropped.items()},
    }
    if not reasons:
        return None, live
    hold = Hold(
        customer_id=source.customer_id,
        fingerprint=fingerprint(source),
        reasons=tuple(reasons),
        counts={
            "source_rows": source_rows,
            "bookmarked_rows": bookmarked_rows,
            "live": {
                t: {"bookmarked": b, "dropped": g, "source": s} for t, (b, g, s) in dropped.items()
            },
            "previous_source_live": previous,
        },
    )
    return hold, live


def is_accepted(hold: Hold, accept_once: str | None, run_tags: Mapping[str, str]) -> bool:
    """An engineer accepted this export: the settings name its fingerprint, or the run was
    launched with the accept tag (`true`, or this fingerprint)."""
    tag = run_tags.get(ACCEPT_TAG, "").strip().lower()
    return accept_once == hold.fingerprint or tag in ("true", hold.fingerprint)
