"""missing_data: live in the SIS, absent, inactive or deleted in Bookmarked."""

from __future__ import annotations

import json

import polars as pl

from reconciliation_tests.rules.world import (
    bm_id,
    drop,
    everything,
    keys,
    run,
    source,
    sync,
    update,
)

RULE = "missing_data"
BM = "ISSUE_IN_BOOKMARKED"


def _without_user(sis_id: str):
    """Bookmarked without a user and everything hanging off it."""
    bm = sync(source())
    bm = drop(bm, "users", sis_id=sis_id)
    for table, column in (
        ("enrollments", "user_sis_id"),
        ("links", "student_sis_id"),
        ("links", "parent_sis_id"),
    ):
        if bm.table(table).filter(pl.col(column) == sis_id).height:
            bm = drop(bm, table, **{column: sis_id})
    return bm


def test_a_missing_student_is_one_high_finding_counting_its_enrollments_and_links() -> None:
    found = run(source(), _without_user("stu-1"), RULE)
    assert keys(found) == {("student", "stu-1", BM)}
    row = found.row(0, named=True)
    assert row["severity"] == "high"
    assert row["bookmarked_id"] is None
    assert "absent from Bookmarked" in row["detail"]
    facts = json.loads(row["details_json"])
    assert facts["missing_enrollments"] == 2 and facts["missing_links"] == 2
    assert row["remediation"].startswith("Bookmarked support:")


def test_a_missing_student_is_reported_once_across_all_rules() -> None:
    assert everything(source(), _without_user("stu-1")) == {RULE: {("student", "stu-1", BM)}}


def test_an_inactive_or_deleted_account_is_missing() -> None:
    bm = update(sync(source()), "users", {"sis_id": "stu-4"}, active=False)
    bm = update(bm, "users", {"sis_id": "stu-5"}, deleted=True)
    found = run(source(), bm, RULE)
    assert keys(found) == {("student", "stu-4", BM), ("student", "stu-5", BM)}
    assert found["detail"].str.contains("inactive or deleted in Bookmarked").all()
    assert found.filter(pl.col("sis_id") == "stu-4")["bookmarked_id"][0] == bm_id(bm, "stu-4")


def test_missing_teacher_parent_and_admin_have_their_entity_types() -> None:
    bm = _without_user("tch-2")
    bm = drop(bm, "users", sis_id="par-4")
    bm = drop(bm, "links", parent_sis_id="par-4")
    bm = drop(bm, "users", sis_id="adm-1")
    found = run(source(), bm, RULE)
    assert keys(found) == {
        ("teacher", "tch-2", BM),
        ("parent", "par-4", BM),
        ("admin", "adm-1", BM),
    }
    severity = dict(found.select("sis_id", "severity").iter_rows())
    assert severity == {"tch-2": "high", "par-4": "medium", "adm-1": "medium"}


def test_a_missing_class_counts_its_enrollments_instead_of_listing_them() -> None:
    bm = drop(sync(source()), "classes", sis_id="cls-4")
    bm = drop(bm, "enrollments", class_sis_id="cls-4")
    found = run(source(), bm, RULE)
    assert keys(found) == {("class", "cls-4", BM)}
    facts = json.loads(found["details_json"][0])
    assert facts["missing_student_enrollments"] == 2
    assert facts["missing_teacher_enrollments"] == 1


def test_an_inactive_class_is_missing_and_its_live_enrollments_are_not_listed() -> None:
    bm = update(sync(source()), "classes", {"sis_id": "cls-1"}, active=False)
    bm = update(bm, "enrollments", {"class_sis_id": "cls-1"}, active=False)
    assert everything(source(), bm) == {RULE: {("class", "cls-1", BM)}}


def test_a_missing_enrollment_is_one_finding_on_its_sourced_id() -> None:
    bm = drop(sync(source()), "enrollments", sis_id="e-s4-4")
    found = run(source(), bm, RULE)
    assert keys(found) == {("enrollment", "e-s4-4", BM)}
    assert found["severity"][0] == "high"
    assert "Dee Kim (stu-4)" in found["detail"][0] and "Math 3B (cls-4)" in found["detail"][0]
    assert json.loads(found["details_json"][0]) == {
        "class_sis_id": "cls-4",
        "user_sis_id": "stu-4",
        "role": "student",
    }


def test_an_enrollment_inactive_in_bookmarked_is_missing_with_its_row_id() -> None:
    bm = update(sync(source()), "enrollments", {"sis_id": "e-t1-2"}, active=False)
    found = run(source(), bm, RULE)
    assert keys(found) == {("enrollment", "e-t1-2", BM)}
    row = found.row(0, named=True)
    assert "has it inactive" in row["detail"]
    assert (
        row["bookmarked_id"]
        == bm.enrollments.filter(pl.col("sis_id") == "e-t1-2")["bookmarked_id"].item()
    )


def test_a_missing_school_counts_its_missing_classes() -> None:
    bm = drop(sync(source()), "schools", sis_id="sch-2")
    for cls in ("cls-3", "cls-4"):
        bm = drop(bm, "classes", sis_id=cls)
        bm = drop(bm, "enrollments", class_sis_id=cls)
    found = run(source(), bm, RULE)
    assert keys(found) == {("school", "sch-2", BM)}
    facts = json.loads(found["details_json"][0])
    assert facts["missing_classes"] == 2 and facts["missing_enrollments"] == 6


def test_an_inactive_school_is_missing() -> None:
    bm = update(sync(source()), "schools", {"sis_id": "sch-1"}, active=False)
    assert everything(source(), bm) == {RULE: {("school", "sch-1", BM)}}
