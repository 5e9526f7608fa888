"""One real problem, one finding: many problems at once, each reported by exactly one
rule, and the pairs of rules that could both claim a problem."""

from __future__ import annotations

from datetime import date

from reconciliation.roster import Roster
from reconciliation_tests.rules.world import (
    add,
    bm_id,
    drop,
    everything,
    kitchen_sink,
    source,
    sync,
    update,
)

BM, SRC = "ISSUE_IN_BOOKMARKED", "ISSUE_IN_SOURCE"


def test_every_problem_of_the_kitchen_sink_is_reported_once() -> None:
    assert everything(*kitchen_sink()) == {
        "student_mismatch": {
            ("teacher", "tch-1", SRC),  # a teacher listed as an agent
            ("parent", "par-1", BM),  # a link Bookmarked lost
            ("parent", "par-2", BM),  # a child Bookmarked added
        },
        "parent_email_conflict": {("parent", "par-3", SRC), ("parent", "par-4", SRC)},
        "campus_transfer": {("student", "stu-3", BM), ("student", "stu-4", SRC)},
        "source_integrity": {("enrollment", "e-bad", SRC)},
        "duplicate_identity": {("student", "stu-5b", BM)},
        "stale_record": {("teacher", "tch-2", BM)},
        "missing_data": {("admin", "adm-1", BM)},
        "field_mismatch": {("student", "stu-1", BM)},
    }


def test_a_missing_class_and_a_missing_student_do_not_list_their_shared_enrollments() -> None:
    bm = drop(sync(source()), "classes", sis_id="cls-1")
    bm = drop(bm, "enrollments", class_sis_id="cls-1")
    bm = drop(bm, "users", sis_id="stu-1")
    bm = drop(bm, "enrollments", user_sis_id="stu-1")
    bm = drop(bm, "links", student_sis_id="stu-1")
    assert everything(source(), bm) == {
        "missing_data": {("class", "cls-1", BM), ("student", "stu-1", BM)}
    }


def test_a_changed_id_with_its_links_and_enrollments_is_one_finding() -> None:
    src = update(source(), "users", {"sis_id": "stu-2"}, sis_id="stu-2x")
    src = update(src, "enrollments", {"user_sis_id": "stu-2"}, user_sis_id="stu-2x")
    src = update(src, "links", {"student_sis_id": "stu-2"}, student_sis_id="stu-2x")
    assert everything(src, sync(source())) == {"duplicate_identity": {("student", "stu-2x", BM)}}


def test_a_transfer_with_a_stale_enrollment_elsewhere_stays_one_transfer() -> None:
    # stu-4 moves to sch-1; Bookmarked keeps everything as it was
    src = update(source(), "users", {"sis_id": "stu-4"}, school_sis_id="sch-1")
    src = update(
        src, "enrollments", {"user_sis_id": "stu-4"}, active=False, end_date=date(2026, 2, 1)
    )
    src = add(
        src,
        "enrollments",
        {
            "sis_id": "e-s4-1",
            "class_sis_id": "cls-1",
            "user_sis_id": "stu-4",
            "role": "student",
            "active": True,
        },
    )
    assert everything(src, sync(source())) == {"campus_transfer": {("student", "stu-4", BM)}}


def _par5_shares_par3s_email() -> Roster:
    """par-5 (another family) gets par-3's email in the SIS."""
    return update(
        source(),
        "users",
        {"sis_id": "par-5"},
        email="olga.ortiz@example.org",
        email_normalized="olga.ortiz@example.org",
    )


def _merged_into_par3s_account() -> Roster:
    """The sync merged par-5 into par-3's account: par-5's account gone, its links moved."""
    bm = sync(source())
    account = bm_id(bm, "par-3")
    bm = drop(bm, "users", sis_id="par-5")
    bm = update(bm, "links", {"parent_sis_id": "par-5"}, parent_sis_id="par-3")
    return update(bm, "links", {"parent_sis_id": "par-3"}, parent_bookmarked_id=account)


def test_a_merged_parent_is_not_a_missing_parent_nor_a_mismatch() -> None:
    src = _par5_shares_par3s_email()
    bm = _merged_into_par3s_account()
    assert everything(src, bm) == {
        "parent_email_conflict": {("parent", "par-3", SRC), ("parent", "par-5", SRC)}
    }


def test_a_merged_account_that_also_sees_an_unrelated_child_is_a_mismatch_too() -> None:
    src = _par5_shares_par3s_email()
    bm = _merged_into_par3s_account()
    account = bm_id(bm, "par-3")
    bm = add(
        bm,
        "links",
        {
            "parent_sis_id": "par-3",
            "student_sis_id": "stu-1",
            "parent_bookmarked_id": account,
            "student_bookmarked_id": bm_id(bm, "stu-1"),
        },
    )
    found = everything(src, bm)
    assert found["student_mismatch"] == {("parent", "par-3", BM)}
    assert found["parent_email_conflict"] == {("parent", "par-3", SRC), ("parent", "par-5", SRC)}


def test_a_merged_account_keeping_the_first_parents_name_is_no_field_mismatch() -> None:
    # the sync wrote par-5's sis_id onto par-3's account but kept par-3's name and email
    src = _par5_shares_par3s_email()
    bm = sync(source())
    account = bm_id(bm, "par-3")
    bm = drop(bm, "users", sis_id="par-5")
    bm = update(bm, "users", {"sis_id": "par-3"}, sis_id="par-5")
    bm = update(bm, "links", {"parent_sis_id": "par-5"}, parent_bookmarked_id=account)
    bm = update(bm, "links", {"parent_sis_id": "par-3"}, parent_sis_id="par-5")
    assert everything(src, bm) == {
        "parent_email_conflict": {("parent", "par-3", SRC), ("parent", "par-5", SRC)}
    }
