"""Great Expectations checks on the source roster (GX imports take seconds: one run per
roster, shared by the tests through module-scoped fixtures)."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from reconciliation.roster import Roster
from reconciliation.rules import data_quality
from reconciliation.rules.data_quality import (
    CHECKS,
    QualityProcess,
    QualityResult,
    check_frames,
    check_source_quality,
    validate_frames,
)
from reconciliation_tests.rules.world import add, source, update


@pytest.fixture(scope="module")
def clean() -> dict[str, QualityResult]:
    return {r.name: r for r in check_source_quality(source())}


@pytest.fixture(scope="module")
def faulty_roster() -> Roster:
    src = source()
    src = update(
        src, "users", {"sis_id": "tch-1"}, email="tess.reed at north", email_normalized=None
    )
    src = update(src, "users", {"sis_id": "stu-1"}, grade="P1", grade_raw="P1")
    src = update(src, "users", {"sis_id": "stu-2"}, role_raw="Studnet")
    src = update(src, "users", {"sis_id": "stu-4"}, role_raw="ext:mentor")
    src = add(
        src,
        "users",
        {
            "sis_id": "stu-5",
            "role": "student",
            "role_raw": "Student",
            "username": "x",
            "first_name": "Dup",
            "last_name": "Licate",
            "email": "dup@example.org",
        },
        {
            "sis_id": None,
            "role": "parent",
            "role_raw": "guardian",
            "username": "y",
            "first_name": "No",
            "last_name": "Id",
        },
    )
    src = update(src, "classes", {"sis_id": "cls-5"}, school_sis_id=None)
    src = add(
        src,
        "enrollments",
        {
            "sis_id": "e-x",
            "class_sis_id": "cls-1",
            "user_sis_id": None,
            "role": "Student",
            "active": True,
        },
    )
    return src


@pytest.fixture(scope="module")
def faulty(faulty_roster: Roster) -> dict[str, QualityResult]:
    return {r.name: r for r in check_source_quality(faulty_roster)}


def test_a_clean_roster_passes_every_check(clean) -> None:
    assert set(clean) == {check.name for check in CHECKS}
    failed = [r for r in clean.values() if not r.passed]
    assert failed == []
    assert clean["users_sis_id_unique"].checked == len(source().users)


def test_duplicate_sourced_ids_are_reported_by_id(faulty) -> None:
    result = faulty["users_sis_id_unique"]
    assert not result.passed
    assert result.unexpected_count == 2 and result.unexpected_ids == ("stu-5",)


def test_a_missing_sourced_id_is_reported_by_row(faulty) -> None:
    result = faulty["users_sis_id_present"]
    assert not result.passed and result.unexpected_count == 1
    assert result.unexpected_ids == (f"row {len(source().users) + 2}",)


def test_email_format_reports_the_record_not_the_email(faulty) -> None:
    result = faulty["users_email_format"]
    assert not result.passed
    assert result.unexpected_ids == ("tch-1",)
    # the surrounding spaces and capitals of ' Lia.Lee@Example.org ' are no format error
    assert result.unexpected_count == 1


def test_role_vocabulary_accepts_case_and_extensions(faulty) -> None:
    result = faulty["users_role_vocabulary"]
    assert result.unexpected_ids == ("stu-2",) and result.unexpected_count == 1
    assert faulty["enrollments_role_vocabulary"].passed


def test_grades_outside_ceds_are_reported(faulty) -> None:
    result = faulty["users_grade_vocabulary"]
    assert not result.passed and result.unexpected_ids == ("stu-1",)


def test_required_references(faulty) -> None:
    assert faulty["classes_school_sis_id_present"].unexpected_ids == ("cls-5",)
    assert faulty["enrollments_user_sis_id_present"].unexpected_ids == ("e-x",)


def test_results_hold_no_names_or_emails(faulty) -> None:
    text = repr([asdict(r) for r in faulty.values()])
    for private in ("@", "Tess", "Reed", "Dup", "Licate", "north"):
        assert private not in text


def test_the_run_s_own_process_gives_the_same_results(faulty_roster, faulty) -> None:
    """A run validates in `QualityProcess` (GX imported on the other core while the run
    reads): the same results, in the same order, as in this process."""
    results = QualityProcess().validate(check_frames(faulty_roster))
    assert results == list(faulty.values())


def test_big_tables_validated_in_parts_give_the_whole_tables_results(
    faulty_roster, faulty, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above CHUNK_ROWS rows a table is validated in slices (and each uniqueness check on
    its column alone): the same counts, verdicts and sample records, in the same order."""
    import polars as pl

    frames = check_frames(faulty_roster)
    # more faults than a sample holds, spread over the slices, one record twice
    users = frames["users"]
    bad = [f"bad{i}" for i in range(7)]
    frames["users"] = pl.concat(
        [
            users,
            users.head(1).with_columns(record=pl.lit("u-twice"), sis_id=pl.lit("u-twice")),
            *(
                users.head(1).with_columns(
                    record=pl.lit(name), sis_id=pl.lit(name), email_normalized=pl.lit("no-at")
                )
                for name in [*bad, "u-twice", "u-twice"]
            ),
        ]
    )
    whole = validate_frames(frames)
    monkeypatch.setattr(data_quality, "CHUNK_ROWS", 2)
    assert validate_frames(frames) == whole
    by_name = {result.name: result for result in whole}
    assert by_name["users_email_format"].unexpected_count > data_quality.SAMPLE_SIZE
    assert len(by_name["users_email_format"].unexpected_ids) == data_quality.SAMPLE_SIZE
    assert by_name["users_sis_id_unique"].unexpected_ids
    # the faulty roster itself, in slices too
    assert validate_frames(check_frames(faulty_roster)) == list(faulty.values())


def test_the_patterns_match_as_they_did_with_python_whitespace() -> None:
    """`WHITESPACE` spells out Python's `\\s` so pandas can match with pyarrow: the same
    values match, Unicode spaces, case folding and a trailing newline included."""
    import random
    import re

    import pandas as pd

    from reconciliation.rules.data_quality import EMAIL_PATTERN, ROLE_PATTERN, WHITESPACE

    assert sorted(WHITESPACE) == [chr(c) for c in range(0x110000) if re.match(r"\s", chr(c))]
    before = {
        EMAIL_PATTERN: r"^[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+$",
        ROLE_PATTERN: ROLE_PATTERN.replace(f"[^{WHITESPACE}]", r"\S"),
    }
    rng = random.Random(1)
    alphabet = "ab@. \t\u2003\u00a0\x1cSsTtEeXx:\u017f\u212a\n"
    values = ["a@b.org", "a b@c.org", "x@y.z.w", "a@b.c\n", "\u017ftudent", "ext:x\u00a0y"]
    values += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9))) for _ in range(5000)]
    column = pd.Series(values, dtype="str")
    for pattern, python_pattern in before.items():
        assert column.str.contains(pattern).equals(column.str.contains(python_pattern))
