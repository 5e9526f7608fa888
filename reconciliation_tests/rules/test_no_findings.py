"""Differences that are NO finding: each rule stays silent on them.

The district in `world.py` already carries most of them; these tests also build each one
on its own, so a regression names the case it broke.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from reconciliation_tests.rules.world import add, bm_id, everything, source, sync, update


def test_a_correct_sync_has_no_finding_in_any_rule() -> None:
    src = source()
    assert everything(src, sync(src)) == {}


def test_email_case_and_surrounding_whitespace_are_no_difference() -> None:
    src = update(
        source(),
        "users",
        {"sis_id": "tch-1"},
        email="  Tess.REED@North.example ",
        email_normalized=None,
    )
    bm = update(sync(source()), "users", {"sis_id": "tch-1"}, email="tess.reed@north.example ")
    assert everything(src, bm) == {}


def test_siblings_sharing_parents_and_two_parents_per_student_are_no_finding() -> None:
    # par-1 and par-2 are both parents of the siblings stu-1 and stu-2
    src = source()
    links = src.links.filter(pl.col("student_sis_id").is_in(["stu-1", "stu-2"]))
    assert links.height == 4
    assert everything(src, sync(src)) == {}


def test_a_link_listed_on_both_sides_in_the_sis_counts_once() -> None:
    # the connector may emit a link from the parent's agents and again from the student's
    src = add(source(), "links", {"parent_sis_id": "par-3", "student_sis_id": "stu-3"})
    assert everything(src, sync(source())) == {}


def test_enrollments_ended_in_both_systems_are_no_finding() -> None:
    src = update(
        source(), "enrollments", {"sis_id": "e-s1-1"}, active=False, end_date=date(2025, 12, 1)
    )
    bm = update(sync(source()), "enrollments", {"sis_id": "e-s1-1"}, active=False)
    assert everything(src, bm) == {}


def test_records_inactive_in_both_systems_are_no_finding() -> None:
    src = update(source(), "users", {"sis_id": "tch-2"}, active=False, deleted=True)
    src = update(src, "classes", {"sis_id": "cls-4"}, active=False)
    src = update(src, "enrollments", {"class_sis_id": "cls-4"}, active=False)
    bm = update(sync(source()), "users", {"sis_id": "tch-2"}, active=False)
    bm = update(bm, "classes", {"sis_id": "cls-4"}, active=False)
    bm = update(bm, "enrollments", {"class_sis_id": "cls-4"}, active=False)
    # tch-2 also teaches cls-3, still live on both sides: an enrollment of an inactive
    # teacher is no finding either
    assert everything(src, bm) == {}


def test_a_soft_deleted_bookmarked_row_for_a_tobedeleted_sis_user_is_no_finding() -> None:
    src = update(source(), "users", {"sis_id": "par-5"}, active=False, deleted=True)
    bm = update(sync(source()), "users", {"sis_id": "par-5"}, active=True, deleted=True)
    assert everything(src, bm) == {}


def test_users_of_roles_bookmarked_does_not_sync_are_no_finding() -> None:
    src = add(
        source(),
        "users",
        {
            "sis_id": "proc-1",
            "role": "other",
            "role_raw": "proctor",
            "active": True,
            "first_name": "Pat",
            "last_name": "Proctor",
            "school_sis_id": "sch-2",
        },
    )
    src = add(
        src,
        "enrollments",
        {
            "sis_id": "e-proc",
            "class_sis_id": "cls-3",
            "user_sis_id": "proc-1",
            "role": "proctor",
            "active": True,
        },
    )
    bm = sync(source())
    assert bm.users.filter(pl.col("sis_id").is_in(["aide-1", "proc-1"])).is_empty()
    assert everything(src, bm) == {}


def test_grade_variants_that_normalize_equal_are_no_finding() -> None:
    # the SIS writes '3', 'K', 'Third grade'; Bookmarked holds '03', 'KG', '03'
    bm = sync(source())
    grades = dict(
        bm.users.filter(pl.col("role") == "student").select("sis_id", "grade").iter_rows()
    )
    assert grades["stu-1"] == "03" and grades["stu-2"] == "KG" and grades["stu-5"] == "03"
    src = update(source(), "users", {"sis_id": "stu-4"}, grade=None, grade_raw="Grade 3")
    assert everything(src, bm) == {}


def test_hand_made_bookmarked_users_without_sis_id_are_no_finding() -> None:
    bm = sync(source())
    hand_made_teacher = bm.users.filter(pl.col("sis_id").is_null())["bookmarked_id"].item()
    bm = add(
        bm,
        "users",
        {
            "bookmarked_id": 9998,
            "sis_id": None,
            "role": "student",
            "first_name": "Test",
            "last_name": "Kid",
            "active": True,
            "deleted": False,
        },
    )
    bm = add(
        bm,
        "links",
        {
            "parent_sis_id": "par-5",
            "student_sis_id": None,
            "parent_bookmarked_id": bm_id(bm, "par-5"),
            "student_bookmarked_id": 9998,
        },
    )
    bm = add(
        bm,
        "enrollments",
        {
            "bookmarked_id": 7000,
            "class_sis_id": "cls-3",
            "user_sis_id": None,
            "role": "teacher",
            "active": True,
        },
    )
    assert hand_made_teacher == 9999
    assert everything(source(), bm) == {}


def test_an_aide_enrollment_missing_from_bookmarked_is_no_finding() -> None:
    src = source()
    assert src.enrollments.filter(pl.col("sis_id") == "e-aide-1").height == 1
    bm = sync(src)
    assert bm.enrollments.filter(pl.col("sis_id") == "e-aide-1").is_empty()
    assert everything(src, bm) == {}
