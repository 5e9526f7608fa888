"""One query answered end to end, without Dagster: who it means, the slice, the verdicts.

`student_queries` turns the one free-text `student` value into the lookups tried in
order: a sourcedId, then a student number, then an email (when it holds an @), then a
name; the first kind that finds anyone on either side wins. A parent's login email is its
own query (`parent_email`): every parent holding it is diagnosed (several parents sharing
one email is the case to explain, not an ambiguity).

A query that finds several people ends with the candidates (ids, role, school, grade) and
asks for an id; one that finds nobody says where it looked, on which side. A person found
on one side only is diagnosed like any other.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from reconciliation.connectors.people import PersonMatch, PersonQuery
from reconciliation.diagnosis.evaluate import findings_on_slice
from reconciliation.diagnosis.scope import SideReader, Slice, build_slice
from reconciliation.diagnosis.verdicts import (
    Diagnosis,
    last_sync_of,
    people_of,
    verdicts_for,
)
from reconciliation.rules import RULE_IDS
from reconciliation.rules.context import settings_mapping

SIDE_NAMES = {"source": "the SIS", "bookmarked": "Bookmarked"}
KIND_WORDS = {
    "sourced_id": "sourcedId",
    "student_number": "student number",
    "email": "email",
    "name": "name",
    "parent_email": "parent login email",
}


def student_queries(text: str) -> list[PersonQuery]:
    """The lookups one `student` value stands for, in the order they are tried."""
    value = text.strip()
    if not value:
        raise ValueError("the student query is empty: give a sourcedId, number, email or name")
    queries = [PersonQuery(sourced_id=value), PersonQuery(student_number=value)]
    if "@" in value:
        queries.append(PersonQuery(email=value))
    elif any(ch.isalpha() for ch in value):
        queries.append(PersonQuery(name=value))
    return queries


def _candidates(found: dict[str, list[PersonMatch]]) -> list[dict[str, Any]]:
    by_key: dict[tuple[Any, ...], dict[str, Any]] = {}
    for side, matches in found.items():
        for m in matches:
            key = (m.sis_id,) if m.sis_id else ("#", m.bookmarked_id)
            entry = by_key.setdefault(key, {**m.as_dict(), "sides": []})
            if side == "bookmarked" and m.bookmarked_id is not None:
                entry["bookmarked_id"] = m.bookmarked_id
            entry["sides"].append("sis" if side == "source" else "bookmarked")
    return sorted(by_key.values(), key=lambda c: (c["sis_id"] is None, c["sis_id"] or ""))


def _find_on_both_sides(
    readers: dict[str, SideReader], query: PersonQuery
) -> dict[str, list[PersonMatch]]:
    """Who the query finds on each side, both sides at once (a find is cheap, also when it
    misses: a value that is no sourcedId is tried as a student number next)."""

    def find(reader: SideReader) -> list[PersonMatch]:
        return reader.find(query)

    if not any(reader.narrow for reader in readers.values()):
        return {side: find(reader) for side, reader in readers.items()}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {side: pool.submit(find, reader) for side, reader in readers.items()}
        return {side: future.result() for side, future in futures.items()}


def _where(reader: SideReader) -> str:
    what = reader.connector.describe() if reader.connector is not None else "a roster in memory"
    how = "narrow lookups" if reader.narrow else "the whole roster (no narrow call)"
    return f"{SIDE_NAMES[reader.side]} ({what}) through {how}"


def diagnose(
    source: SideReader,
    bookmarked: SideReader,
    customer_id: str,
    *,
    student: str | None = None,
    parent_email: str | None = None,
    settings: Any = None,
) -> tuple[Diagnosis, Slice | None]:
    """Answer one query: `student` (sourcedId, number, email or name) or `parent_email`."""
    if (student is None) == (parent_email is None):
        raise ValueError("give exactly one of student or parent_email")
    queries = (
        [PersonQuery(parent_email=parent_email)]
        if parent_email is not None
        else student_queries(student or "")
    )
    shown = queries[0].describe()
    readers = {"source": source, "bookmarked": bookmarked}
    found: dict[str, list[PersonMatch]] = {}
    used = queries[0]
    for query in queries:
        used = query
        found = _find_on_both_sides(readers, query)
        if any(found.values()):
            break
    notes = [
        f"looked up by {KIND_WORDS[used.kind]} in {_where(source)} and in {_where(bookmarked)}"
    ]
    if not any(found.values()):
        tried = ", then ".join(KIND_WORDS[q.kind] for q in queries)
        notes = [
            f"nobody found by {tried} in {_where(source)}, nor in {_where(bookmarked)}",
        ]
        diagnosis = Diagnosis(customer_id, shown, notes=notes)
        return _with_sync(diagnosis, bookmarked, None), None

    src_ids = sorted({m.sis_id for m in found["source"] if m.sis_id})
    bm_ids = sorted({m.sis_id for m in found["bookmarked"] if m.sis_id})
    if used.kind == "parent_email":
        seeds = sorted(set(src_ids) | set(bm_ids))
    else:
        seeds = src_ids or bm_ids
        if len(seeds) != 1:
            candidates = _candidates(found)
            if len(candidates) > 1 or not seeds:
                notes.append(
                    f"{len(candidates)} people match: run again with one sourcedId"
                    if len(candidates) > 1
                    else "the only match is a Bookmarked account without a sis_id: "
                    "nothing in the SIS to compare it with"
                )
                diagnosis = Diagnosis(customer_id, shown, candidates=candidates, notes=notes)
                return _with_sync(diagnosis, bookmarked, None), None
    piece = build_slice(source, bookmarked, seeds, customer_id)
    findings = findings_on_slice(piece, settings)
    ordered = list(seeds) + [p for p in piece.scope.people if p not in seeds]
    people = people_of(piece, ordered)
    disabled = settings_mapping(settings)["disabled_rules"]
    verdicts = verdicts_for(piece, findings, RULE_IDS, people, disabled)
    for side, info in piece.scope.describe().items():
        if info["outside"]:
            counted = ", ".join(f"{n} {table}" for table, n in sorted(info["outside"].items()))
            notes.append(
                f"outside the slice in {SIDE_NAMES[side]} (not read there, taken as agreeing "
                f"with the other side): {counted}"
            )
        reads = piece.scope.reads.get(side) or []
        example = f"; the last read: {reads[-1]}" if reads else ""
        notes.append(f"{SIDE_NAMES[side]}: {info['lookups']} lookups{example}")
    diagnosis = Diagnosis(customer_id, shown, people=people, verdicts=verdicts, notes=notes)
    return _with_sync(diagnosis, bookmarked, piece), piece


def _with_sync(diagnosis: Diagnosis, bookmarked: SideReader, piece: Slice | None) -> Diagnosis:
    """Fill the last sync from what the Bookmarked side read (its provenance)."""
    meta = piece.bookmarked.meta if piece is not None else bookmarked.meta()
    last, text = last_sync_of(meta)
    return replace(diagnosis, last_sync=last, sync_note=text)
