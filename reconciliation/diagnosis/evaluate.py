"""The scan's rules on a slice, and which findings are about whom.

One implementation: `findings_on_slice` calls the same `run_rules` as the customer scan on
the two slices `scope.py` built (outside records mirrored, so they agree), then keeps the
findings about the people diagnosed (`about_people`). The scan's findings go through the
same `about_people` in the parity test, so both answer one question the same way.

A finding is about a person when its `sis_id` is the person's (a user finding; the parent
of a student_mismatch or parent_email_conflict finding; the student of a campus_transfer),
or when it is about one of the person's enrollments (its `details_json` names the person
as `user_sis_id`). Findings about classes, schools and other people's records are not a
person's: a class or school is only read as far as the person's rows reach it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import polars as pl

from reconciliation.diagnosis.scope import Slice
from reconciliation.rules import RULE_IDS


def about_people(findings: pl.DataFrame, people: Iterable[str]) -> pl.DataFrame:
    """The findings about some people, with column `person` (whose finding it is)."""
    people = list(people)
    enrollment_user = pl.col("details_json").str.json_path_match("$.user_sis_id")
    person = (
        pl.when(pl.col("sis_id").is_in(people))
        .then(pl.col("sis_id"))
        .when((pl.col("entity_type") == "enrollment") & enrollment_user.is_in(people))
        .then(enrollment_user)
    )
    return findings.with_columns(person=person).filter(pl.col("person").is_not_null())


def findings_on_slice(piece: Slice, settings: Any = None) -> dict[str, pl.DataFrame]:
    """Every rule of the registry on the slice (the customer's disabled rules left out, as
    the scan does), each rule's findings cut to the people diagnosed."""
    from reconciliation.rules import run_rules

    results = run_rules(piece.source, piece.bookmarked, settings)
    people = piece.scope.people
    return {
        rule_id: about_people(results[rule_id], people)
        for rule_id in RULE_IDS
        if rule_id in results
    }
