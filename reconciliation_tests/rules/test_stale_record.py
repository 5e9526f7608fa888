"""stale_record: live in Bookmarked, tobedeleted or gone in the SIS."""

from __future__ import annotations

import json
from datetime import date

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

RULE = "stale_record"
BM = "ISSUE_IN_BOOKMARKED"


def test_a_student_tobedeleted_in_the_sis_is_stale_with_its_counts() -> None:
    src = update(source(), "users", {"sis_id": "stu-4"}, active=False, deleted=True)
    bm = sync(source())
    found = run(src, bm, RULE)
    assert keys(found) == {("student", "stu-4", BM)}
    row = found.row(0, named=True)
    assert row["bookmarked_id"] == bm_id(bm, "stu-4")
    assert row["severity"] == "medium"
    assert "tobedeleted" in row["detail"]
    facts = json.loads(row["details_json"])
    assert facts["stale_enrollments"] == 2 and facts["stale_links"] == 1


def test_a_student_gone_from_the_sis_is_reported_once_with_its_enrollments_and_links() -> None:
    src = drop(source(), "users", sis_id="stu-1")
    src = drop(src, "enrollments", user_sis_id="stu-1")
    src = drop(src, "links", student_sis_id="stu-1")
    found = everything(src, sync(source()))
    assert found == {RULE: {("student", "stu-1", BM)}}
    row = run(src, sync(source()), RULE).row(0, named=True)
    assert "gone from the SIS" in row["detail"]
    facts = json.loads(row["details_json"])
    assert facts["stale_enrollments"] == 2 and facts["stale_links"] == 2


def test_a_departed_teacher_is_high() -> None:
    src = update(source(), "users", {"sis_id": "tch-2"}, active=False, deleted=True)
    found = run(src, sync(source()), RULE)
    assert keys(found) == {("teacher", "tch-2", BM)}
    assert found["severity"][0] == "high"


def test_a_disabled_sis_user_active_in_bookmarked_is_stale() -> None:
    # enabledUser=false: the record stays, inactive (not deleted)
    src = update(source(), "users", {"sis_id": "adm-1"}, active=False, deleted=False)
    assert keys(run(src, sync(source()), RULE)) == {("admin", "adm-1", BM)}


def test_an_enrollment_ended_in_the_sis_but_active_in_bookmarked() -> None:
    src = update(
        source(), "enrollments", {"sis_id": "e-s5-4"}, active=False, end_date=date(2026, 1, 30)
    )
    found = run(src, sync(source()), RULE)
    assert keys(found) == {("enrollment", "e-s5-4", BM)}
    row = found.row(0, named=True)
    assert "ended it on 2026-01-30" in row["detail"]
    assert (
        row["bookmarked_id"]
        == sync(source()).enrollments.filter(pl.col("sis_id") == "e-s5-4")["bookmarked_id"].item()
    )


def test_an_enrollment_gone_from_the_sis_keeps_a_sourced_id_from_bookmarked() -> None:
    src = drop(source(), "enrollments", sis_id="e-t2-4")
    found = run(src, sync(source()), RULE)
    assert keys(found) == {("enrollment", "e-t2-4", BM)}
    assert found["severity"][0] == "high"  # a teacher still sees the class
    assert "no longer has it" in found["detail"][0]


def test_an_enrollment_without_sis_id_in_bookmarked_takes_the_sis_one() -> None:
    src = update(source(), "enrollments", {"sis_id": "e-s5-4"}, active=False)
    bm = update(sync(source()), "enrollments", {"sis_id": "e-s5-4"}, sis_id=None)
    assert keys(run(src, bm, RULE)) == {("enrollment", "e-s5-4", BM)}


def test_a_class_gone_from_the_sis_counts_its_enrollments() -> None:
    src = drop(source(), "classes", sis_id="cls-2")
    src = drop(src, "enrollments", class_sis_id="cls-2")
    found = everything(src, sync(source()))
    assert found == {RULE: {("class", "cls-2", BM)}}
    facts = json.loads(run(src, sync(source()), RULE)["details_json"][0])
    assert facts["stale_enrollments"] == 4


def test_a_school_tobedeleted_in_the_sis_counts_its_stale_classes() -> None:
    src = update(source(), "schools", {"sis_id": "sch-2"}, active=False)
    src = update(src, "classes", {"school_sis_id": "sch-2"}, active=False)
    src = update(src, "enrollments", {"class_sis_id": "cls-3"}, active=False)
    src = update(src, "enrollments", {"class_sis_id": "cls-4"}, active=False)
    found = run(src, sync(source()), RULE)
    assert keys(found) == {("school", "sch-2", BM)}
    facts = json.loads(found["details_json"][0])
    assert facts["stale_classes"] == 2 and facts["stale_enrollments"] == 6
