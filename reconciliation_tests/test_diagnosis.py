"""The single-person diagnosis, pure: scope, verdicts, queries, JSON and Markdown.

Runs on the Hillcrest demo world in memory (its two rosters answer the lookups, as a
connector without narrow calls would), so every case is a real planted defect.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import date

import polars as pl
import pytest

from reconciliation.demo.demo import demo_worlds
from reconciliation.diagnosis.evaluate import about_people, findings_on_slice
from reconciliation.diagnosis.run import diagnose, student_queries
from reconciliation.diagnosis.scope import SideReader, build_slice
from reconciliation.diagnosis.verdicts import NO_ISSUE, as_markdown, last_sync_of
from reconciliation.roster import Roster
from reconciliation.rules import RULE_IDS, all_findings, run_rules

TODAY = date(2026, 10, 14)
JSON_KEYS = ["customer_id", "query", "people", "verdicts", "last_sync", "candidates"]
VERDICT_KEYS = ["rule", "status", "sis_id", "detail", "remediation", "evidence"]


@pytest.fixture(scope="module")
def world() -> tuple[Roster, Roster, pl.DataFrame]:
    worlds, _ = demo_worlds(seed=7, today=TODAY)
    [hillcrest] = [w for w in worlds if w.customer_id == "hillcrest-academy"]
    source, bookmarked = hillcrest.rosters()
    return source, bookmarked, all_findings(run_rules(source, bookmarked))


def _readers(source: Roster, bookmarked: Roster) -> tuple[SideReader, SideReader]:
    return SideReader.of_roster(source), SideReader.of_roster(bookmarked)


def _first(scan: pl.DataFrame, rule: str, entity_type: str) -> str:
    rows = scan.filter((pl.col("rule") == rule) & (pl.col("entity_type") == entity_type))
    return sorted(rows["sis_id"].to_list())[0]


def test_a_slice_is_not_a_roster(world: tuple[Roster, Roster, pl.DataFrame]) -> None:
    """The rules run naively on each side's neighbourhood of a parent call classes and
    schools missing from Bookmarked and miss the merged account (a parent sharing an email
    looks missing); the scoped evaluation finds about the people exactly what the scan
    finds."""
    source, bookmarked, scan = world
    key = ["rule", "status", "sis_id"]
    parents = sorted(scan.filter(pl.col("rule") == "parent_email_conflict")["sis_id"])
    naive_extra, naive_wrong = set(), 0
    for parent in parents:
        naive = all_findings(
            run_rules(source.for_people([parent]), bookmarked.for_people([parent]))
        )
        naive_extra |= set(
            naive.join(scan, on=key, how="anti").filter(
                pl.col("entity_type").is_in(["class", "school"])
            )["entity_type"]
        )
        piece = build_slice(*_readers(source, bookmarked), [parent], "hillcrest-academy")
        want = about_people(scan, piece.scope.people).select(*key, "person").sort(key)
        naive_wrong += (
            not about_people(naive, piece.scope.people)
            .select(*key, "person")
            .sort(key)
            .equals(want)
        )
        scoped = pl.concat(list(findings_on_slice(piece).values()))
        assert scoped.select(*key, "person").sort(key).equals(want), parent
    assert naive_extra and naive_wrong  # what the scope is for


def test_rows_outside_the_slice_are_pulled_in(world: tuple[Roster, Roster, pl.DataFrame]) -> None:
    """A changed sourcedId: the old Bookmarked account is found by student number or email
    on the other side; merged parents: the other families' parents by the shared email."""
    source, bookmarked, scan = world
    readers = _readers(source, bookmarked)
    for rule, entity_type in (
        ("duplicate_identity", "student"),
        ("parent_email_conflict", "parent"),
        ("student_mismatch", "parent"),
    ):
        person = _first(scan, rule, entity_type)
        diagnosis, piece = diagnose(*readers, "hillcrest-academy", student=person)
        assert piece is not None
        [verdict] = [v for v in diagnosis.verdicts if v.rule == rule and v.sis_id == person]
        [expected] = scan.filter((pl.col("rule") == rule) & (pl.col("sis_id") == person))[
            "status"
        ].to_list()
        assert verdict.status == expected, (rule, person)
        assert verdict.evidence["findings"][0]["sis_id"] == person
        assert verdict.remediation.startswith(("District data admin:", "Bookmarked support:"))


def test_one_verdict_per_rule_and_person_in_the_documented_shape(
    world: tuple[Roster, Roster, pl.DataFrame],
) -> None:
    source, bookmarked, scan = world
    parent = _first(scan, "student_mismatch", "parent")
    diagnosis, _ = diagnose(*_readers(source, bookmarked), "hillcrest-academy", student=parent)
    document = json.loads(json.dumps(diagnosis.as_json()))
    assert list(document) == JSON_KEYS
    assert document["query"] == {"student": parent}
    assert document["candidates"] == []
    people = [p["sis_id"] for p in document["people"]]
    assert people[0] == parent and len(people) > 1  # the parent, then the children
    assert {tuple(p) for p in document["people"]} == {("sis_id", "bookmarked_id", "role", "name")}
    pairs = [(v["sis_id"], v["rule"]) for v in document["verdicts"]]
    assert pairs == [(p, r) for p in people for r in RULE_IDS]
    for verdict in document["verdicts"]:
        assert list(verdict) == VERDICT_KEYS
        assert verdict["status"] in ("ISSUE_IN_SOURCE", "ISSUE_IN_BOOKMARKED", NO_ISSUE)
        for fact, sides in verdict["evidence"].items():
            if fact != "findings":
                assert set(sides) == {"sis", "bookmarked"}, fact
    mismatch = next(v for v in document["verdicts"] if v["rule"] == "student_mismatch")
    assert mismatch["status"] == "ISSUE_IN_BOOKMARKED"
    linked = mismatch["evidence"]["linked"]
    assert linked["sis"] != linked["bookmarked"]  # side by side, and they differ


def test_ambiguous_name_gives_candidates(world: tuple[Roster, Roster, pl.DataFrame]) -> None:
    source, bookmarked, _ = world
    # two students of one name: give the second the first one's name on both sides
    a, b = sorted(source.users.filter(pl.col("role") == "student")["sis_id"])[:2]
    name = source.users.filter(pl.col("sis_id") == a).select("first_name", "last_name").row(0)

    def rename(roster: Roster) -> Roster:
        users = roster.users.with_columns(
            first_name=pl.when(pl.col("sis_id") == b).then(pl.lit(name[0])).otherwise("first_name"),
            last_name=pl.when(pl.col("sis_id") == b).then(pl.lit(name[1])).otherwise("last_name"),
        )
        return replace(roster, users=users)

    diagnosis, piece = diagnose(
        *_readers(rename(source), rename(bookmarked)),
        "hillcrest-academy",
        student=f"{name[1]}, {name[0]}".upper(),
    )
    assert piece is None and diagnosis.outcome == "ambiguous"
    assert diagnosis.verdicts == [] and diagnosis.people == []
    assert {c["sis_id"] for c in diagnosis.candidates} == {a, b}
    for candidate in diagnosis.candidates:
        assert candidate["role"] == "student" and candidate["school_sis_ids"]
        assert candidate["sides"] == ["sis", "bookmarked"]
    assert "run again with one sourcedId" in as_markdown(diagnosis)


def test_nobody_found_says_where_it_looked(world: tuple[Roster, Roster, pl.DataFrame]) -> None:
    source, bookmarked, _ = world
    diagnosis, piece = diagnose(
        *_readers(source, bookmarked), "hillcrest-academy", parent_email="nobody@example.org"
    )
    assert piece is None and diagnosis.outcome == "not_found"
    assert diagnosis.as_json()["people"] == [] and diagnosis.as_json()["verdicts"] == []
    [note] = diagnosis.notes
    assert "parent login email" in note and "the SIS" in note and "Bookmarked" in note
    assert "Nobody matches" in as_markdown(diagnosis)


def test_a_person_on_one_side_only_gets_verdicts(
    world: tuple[Roster, Roster, pl.DataFrame],
) -> None:
    source, bookmarked, scan = world
    missing = scan.filter(
        (pl.col("rule") == "missing_data")
        & (pl.col("entity_type") == "student")
        & pl.col("details_json").str.contains('"in_bookmarked":false')
    )["sis_id"][0]
    stale = scan.filter(
        (pl.col("rule") == "stale_record")
        & (pl.col("entity_type") == "student")
        & pl.col("details_json").str.contains('"in_source":false')
    )["sis_id"][0]
    readers = _readers(source, bookmarked)
    for person, rule, present in (
        (missing, "missing_data", {"sis": True, "bookmarked": False}),
        (stale, "stale_record", {"sis": False, "bookmarked": True}),
    ):
        diagnosis, _ = diagnose(*readers, "hillcrest-academy", student=person)
        [verdict] = [v for v in diagnosis.verdicts if v.rule == rule and v.sis_id == person]
        assert verdict.status == "ISSUE_IN_BOOKMARKED"
        assert verdict.evidence["present"] == present


def test_student_query_order() -> None:
    kinds = [q.kind for q in student_queries(" ann.lee@example.org ")]
    assert kinds == ["sourced_id", "student_number", "email"]
    assert [q.kind for q in student_queries("Lee, Ann")] == ["sourced_id", "student_number", "name"]
    assert [q.kind for q in student_queries("100234")] == ["sourced_id", "student_number"]
    with pytest.raises(ValueError, match="empty"):
        student_queries("  ")


def test_markdown_escapes_names_and_files_are_safe(
    world: tuple[Roster, Roster, pl.DataFrame],
) -> None:
    source, bookmarked, _ = world
    student = sorted(source.users.filter(pl.col("role") == "student")["sis_id"])[0]
    users = source.users.with_columns(
        first_name=pl.when(pl.col("sis_id") == student)
        .then(pl.lit("<script>x</script>"))
        .otherwise("first_name")
    )
    diagnosis, _ = diagnose(
        *_readers(replace(source, users=users), bookmarked), "hillcrest-academy", student=student
    )
    page = as_markdown(diagnosis)
    assert "<script>" not in page and r"\<script\>" in page
    assert replace(diagnosis, people=[{"sis_id": "../x/y"}]).file_stem == "_x_y"


def test_last_sync_says_when_it_failed() -> None:
    failed = {
        "last_sync": {"started_at": "2026-10-14T02:00:00", "status": "failed"},
        "last_successful_sync": {"started_at": "2026-10-13T02:00:00", "status": "succeeded"},
    }
    shown, text = last_sync_of(failed)
    assert shown == {"started_at": "2026-10-14T02:00:00", "status": "failed"}
    assert "FAILED" in text and "2026-10-13T02:00:00" in text
    assert last_sync_of({"last_sync": None})[1].startswith("no sync run recorded")
    ok = {"last_sync": {"started_at": "2026-10-14T02:00:00", "status": "succeeded"}}
    assert last_sync_of(ok)[1] == "2026-10-14T02:00:00: succeeded"


def test_disabled_rules_are_no_issue(world: tuple[Roster, Roster, pl.DataFrame]) -> None:
    source, bookmarked, scan = world
    parent = _first(scan, "student_mismatch", "parent")
    diagnosis, _ = diagnose(
        *_readers(source, bookmarked),
        "hillcrest-academy",
        student=parent,
        settings={"disabled_rules": ["student_mismatch"]},
    )
    verdict = next(v for v in diagnosis.verdicts if v.rule == "student_mismatch")
    assert verdict.status == NO_ISSUE and "disabled" in verdict.detail


def test_the_cli_table(world: tuple[Roster, Roster, pl.DataFrame]) -> None:
    from reconciliation.diagnose_cli import format_verdicts, run_config

    source, bookmarked, scan = world
    parent = _first(scan, "student_mismatch", "parent")
    diagnosis, _ = diagnose(*_readers(source, bookmarked), "hillcrest-academy", student=parent)
    table = format_verdicts(diagnosis.as_json())
    verdict_rows = [
        line.split() for line in table.splitlines() if re.match(r"  \S+ +[a-z_]+ +[A-Z_]+$", line)
    ]
    assert [parent, "student_mismatch", "ISSUE_IN_BOOKMARKED"] in verdict_rows
    # the columns line up, however long the sourcedIds (UUIDs, short numbers)
    starts = {
        line.index(" " + line.split()[1] + " ")
        for line in table.splitlines()
        if re.match(r"  \S+ +[a-z_]+ +[A-Z_]+$", line)
    }
    header = next(line for line in table.splitlines() if line.lstrip().startswith("SOURCEDID"))
    assert starts == {header.index(" RULE ")}
    assert "why: " in table and "fix: Bookmarked support:" in table
    candidates = {"candidates": [{"sis_id": "s-1", "role": "student", "school_sis_ids": ["k"]}]}
    assert "1 people match" in format_verdicts(candidates)
    assert format_verdicts({"people": [], "candidates": []}) == "nobody matches this query"
    config = run_config("c", None, "p@example.org")["ops"]["diagnose"]["config"]
    assert config == {"customer_id": "c", "student": "", "parent_email": "p@example.org"}
