"""campus_transfer: a student moved campus and Bookmarked did not follow, or the SIS keeps
the student at two campuses."""

from __future__ import annotations

import json
from datetime import date

from reconciliation_tests.rules.world import (
    add,
    drop,
    everything,
    keys,
    run,
    source,
    sync,
    update,
)

RULE = "campus_transfer"
BM, SRC = "ISSUE_IN_BOOKMARKED", "ISSUE_IN_SOURCE"
NEW = (
    {
        "sis_id": "e-s3-3",
        "class_sis_id": "cls-3",
        "user_sis_id": "stu-3",
        "role": "student",
        "active": True,
    },
    {
        "sis_id": "e-s3-4",
        "class_sis_id": "cls-4",
        "user_sis_id": "stu-3",
        "role": "student",
        "active": True,
    },
)


def _moved(old_enrollments: str = "ended"):
    """stu-3 moves from sch-1 to sch-2 in the SIS; the old enrollments are ended (or
    dropped from the export), the new ones added."""
    src = update(source(), "users", {"sis_id": "stu-3"}, school_sis_id="sch-2")
    if old_enrollments == "ended":
        src = update(
            src,
            "enrollments",
            {"user_sis_id": "stu-3", "active": True},
            active=False,
            end_date=date(2026, 1, 15),
        )
    else:
        src = drop(src, "enrollments", sis_id="e-s3-1")
        src = drop(src, "enrollments", sis_id="e-s3-2")
    return add(src, "enrollments", *NEW)


def test_bookmarked_still_at_the_old_campus_is_one_finding_per_student() -> None:
    found = run(_moved(), sync(source()), RULE)
    assert keys(found) == {("student", "stu-3", BM)}
    row = found.row(0, named=True)
    assert row["severity"] == "high"
    facts = json.loads(row["details_json"])
    assert facts["new_school"] == "sch-2" and facts["bookmarked_school"] == "sch-1"
    assert facts["old_schools"] == ["sch-1"]
    assert facts["phantom_classes"] == ["cls-1", "cls-2"]
    assert facts["missing_classes"] == ["cls-3", "cls-4"]
    assert "Reading 3A (cls-1)" in row["detail"] and "Math 3B (cls-4)" in row["detail"]
    assert row["remediation"].startswith("Bookmarked support:")


def test_an_unplaced_class_is_not_listed_among_the_missing_new_enrollments() -> None:
    """A class whose school is not in the export is source_integrity's: its enrollment is
    neither evidence of the transfer nor listed in the transfer's finding."""
    src = add(
        _moved(),
        "classes",
        {"sis_id": "cls-9", "school_sis_id": "sch-404", "name": "Orphan", "active": True},
    )
    src = add(
        src,
        "enrollments",
        {
            "sis_id": "e-s3-9",
            "class_sis_id": "cls-9",
            "user_sis_id": "stu-3",
            "role": "student",
            "active": True,
        },
    )
    found = run(src, sync(source()), RULE)
    transfer = found.filter(found["status"] == BM).row(0, named=True)
    assert json.loads(transfer["details_json"])["missing_classes"] == ["cls-3", "cls-4"]
    assert "cls-9" not in transfer["detail"]


def test_a_transfer_is_not_repeated_as_missing_stale_or_field_mismatch() -> None:
    assert everything(_moved(), sync(source())) == {RULE: {("student", "stu-3", BM)}}


def test_phantom_enrollments_after_the_sis_dropped_them_are_a_transfer() -> None:
    # Bookmarked followed the school and added the new classes, but the SIS dropped the
    # old enrollments instead of ending them, so they stay active
    src = _moved(old_enrollments="dropped")
    bm = update(sync(source()), "users", {"sis_id": "stu-3"}, school_sis_id="sch-2")
    bm = add(bm, "enrollments", *[{**e, "bookmarked_id": 8000 + i} for i, e in enumerate(NEW)])
    found = run(src, bm, RULE)
    assert keys(found) == {("student", "stu-3", BM)}
    facts = json.loads(found["details_json"][0])
    assert facts["phantom_classes"] == ["cls-1", "cls-2"] and facts["missing_classes"] == []
    assert everything(src, bm) == {RULE: {("student", "stu-3", BM)}}


def test_missing_new_campus_enrollments_after_a_move_are_a_transfer() -> None:
    src = _moved()
    bm = update(sync(source()), "users", {"sis_id": "stu-3"}, school_sis_id="sch-2")
    bm = update(bm, "enrollments", {"user_sis_id": "stu-3"}, active=False)
    found = run(src, bm, RULE)
    assert keys(found) == {("student", "stu-3", BM)}
    facts = json.loads(found["details_json"][0])
    assert facts["phantom_classes"] == [] and facts["missing_classes"] == ["cls-3", "cls-4"]
    assert everything(src, bm) == {RULE: {("student", "stu-3", BM)}}


def test_a_different_school_without_any_enrollment_there_is_a_field_mismatch() -> None:
    bm = update(sync(source()), "users", {"sis_id": "stu-4"}, school_sis_id="sch-1")
    assert everything(source(), bm) == {"field_mismatch": {("student", "stu-4", BM)}}


def test_the_sis_keeping_a_student_at_two_campuses_is_an_issue_in_source() -> None:
    src = add(
        source(),
        "enrollments",
        {
            "sis_id": "e-s4-1",
            "class_sis_id": "cls-1",
            "user_sis_id": "stu-4",
            "role": "student",
            "active": True,
        },
    )
    bm = sync(src)  # Bookmarked mirrors the SIS faithfully
    found = run(src, bm, RULE)
    assert keys(found) == {("student", "stu-4", SRC)}
    row = found.row(0, named=True)
    assert row["remediation"].startswith("District data admin:")
    assert json.loads(row["details_json"]) == {
        "school_sis_id": "sch-2",
        "other_schools": ["sch-1"],
        "enrollments_elsewhere": 1,
        "classes_elsewhere": ["cls-1"],
    }
    # which enrollments to end, or how to make the dual enrollment legitimate
    assert "enrollments in cls-1 (at sch-1)" in row["remediation"]
    assert "list sch-1 among the student's orgs" in row["remediation"]
    assert everything(src, bm) == {RULE: {("student", "stu-4", SRC)}}


def test_an_ended_enrollment_at_another_campus_is_no_dual_campus() -> None:
    # stu-6 style: the old campus enrollment ended; nothing live elsewhere
    src = update(source(), "enrollments", {"sis_id": "e-s3-1"}, class_sis_id="cls-3", active=False)
    bm = update(
        sync(source()), "enrollments", {"sis_id": "e-s3-1"}, class_sis_id="cls-3", active=False
    )
    assert everything(src, bm) == {}


def test_a_stale_class_at_a_campus_the_sis_still_has_is_a_stale_enrollment() -> None:
    # the SIS keeps stu-4 live at sch-1 too (dual campus); Bookmarked has one more
    # enrollment there that the SIS ended: a stale enrollment, not a transfer
    dual = {
        "sis_id": "e-s4-1",
        "class_sis_id": "cls-1",
        "user_sis_id": "stu-4",
        "role": "student",
        "active": True,
    }
    ended = {
        "sis_id": "e-s4-2",
        "class_sis_id": "cls-2",
        "user_sis_id": "stu-4",
        "role": "student",
        "active": True,
    }
    bm = sync(add(source(), "enrollments", dual, ended))
    src = add(source(), "enrollments", dual, {**ended, "active": False})
    assert everything(src, bm) == {
        RULE: {("student", "stu-4", SRC)},
        "stale_record": {("enrollment", "e-s4-2", BM)},
    }
