"""Clauses of the sync contract (docs/bookmarked/sync-contract.md) that the demo data does not
exercise, each on the hand-made district of `world.py`, asserted across ALL rules: the
expected findings and nothing else (one root cause, one finding)."""

from __future__ import annotations

from datetime import date
from typing import Any

from reconciliation.roster import Roster
from reconciliation_tests.rules.world import (
    add,
    bm_id,
    drop,
    everything,
    source,
    sync,
    update,
)

BM, SRC = "ISSUE_IN_BOOKMARKED", "ISSUE_IN_SOURCE"


def _enrollment(sis_id: str, class_id: str, user_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "sis_id": sis_id,
        "class_sis_id": class_id,
        "user_sis_id": user_id,
        "role": extra.pop("role", "student"),
        "active": True,
        **extra,
    }


def _parent(sis_id: str, first: str, last: str, email: str) -> dict[str, Any]:
    return {
        "sis_id": sis_id,
        "role": "parent",
        "role_raw": "parent",
        "first_name": first,
        "last_name": last,
        "email": email,
        "email_normalized": email,
        "active": True,
        "deleted": False,
    }


# -- classes the sync cannot write ------------------------------------------------------


def test_a_class_at_an_unknown_school_hides_its_enrollments_and_is_no_campus() -> None:
    # the sync cannot write the class, so neither its enrollments (not missing) nor its
    # school (stu-1 is not at two campuses) are findings: only the SIS reference is
    src = add(
        source(),
        "classes",
        {"sis_id": "cls-9", "school_sis_id": "sch-404", "name": "Orphan", "active": True},
    )
    src = add(
        src,
        "enrollments",
        _enrollment("e-9", "cls-9", "stu-1"),
        _enrollment("e-9t", "cls-9", "tch-1", role="teacher"),
    )
    assert everything(src, sync(source())) == {"source_integrity": {("class", "cls-9", SRC)}}


def test_a_class_with_a_blank_school_is_a_source_issue_only() -> None:
    src = add(
        source(),
        "classes",
        {"sis_id": "cls-9", "school_sis_id": None, "name": "Orphan", "active": True},
    )
    src = add(src, "enrollments", _enrollment("e-9", "cls-9", "stu-1"))
    assert everything(src, sync(source())) == {"source_integrity": {("class", "cls-9", SRC)}}


# -- campus transfers -------------------------------------------------------------------


def _moved_to_south(old: str) -> Roster:
    """stu-3 moves from sch-1 to sch-2 in the SIS with a new class there; its sch-1
    enrollments are `ended` (end-dated) or `kept` live (the SIS did not end them)."""
    src = update(source(), "users", {"sis_id": "stu-3"}, school_sis_id="sch-2")
    if old == "ended":
        src = update(
            src,
            "enrollments",
            {"user_sis_id": "stu-3", "active": True},
            active=False,
            end_date=date(2025, 6, 1),
        )
    return add(src, "enrollments", _enrollment("e-s3-3", "cls-3", "stu-3"))


def test_a_missing_class_at_the_new_campus_of_an_old_transfer_is_the_class_only() -> None:
    # stu-3 moved long ago and Bookmarked followed; a new class at the new campus is
    # missing from Bookmarked: that is the class's finding (its enrollment is counted
    # there), not a transfer Bookmarked did not follow
    src = _moved_to_south("ended")
    src = add(
        src,
        "classes",
        {"sis_id": "cls-7", "school_sis_id": "sch-2", "name": "Science 3B", "active": True},
    )
    src = add(src, "enrollments", _enrollment("e-s3-7", "cls-7", "stu-3"))
    bm = drop(sync(src), "classes", sis_id="cls-7")
    bm = drop(bm, "enrollments", sis_id="e-s3-7")
    assert everything(src, bm) == {"missing_data": {("class", "cls-7", BM)}}


def test_a_stale_class_at_the_old_campus_is_the_class_only() -> None:
    # the SIS ended stu-3's old enrollments and deleted one old class; Bookmarked followed
    # the move but kept that class (and its enrollments) live: a stale class, no transfer
    src = update(_moved_to_south("ended"), "classes", {"sis_id": "cls-2"}, active=False)
    bm = sync(src)
    bm = update(bm, "classes", {"sis_id": "cls-2"}, active=True)
    bm = update(bm, "enrollments", {"class_sis_id": "cls-2"}, active=True, end_date=None)
    assert everything(src, bm) == {"stale_record": {("class", "cls-2", BM)}}


def test_a_move_the_sis_did_not_end_and_bookmarked_did_not_follow_is_both_statuses() -> None:
    # the SIS moved stu-3 but kept the old campus's enrollments live (its problem), and
    # Bookmarked still has the old school and lacks the new enrollment (its problem): one
    # transfer finding for each side, no field_mismatch on the school, no missing enrollment
    src = _moved_to_south("kept")
    assert everything(src, sync(source())) == {
        "campus_transfer": {("student", "stu-3", BM), ("student", "stu-3", SRC)}
    }


def test_a_move_to_a_school_bookmarked_lacks_is_the_missing_school_only() -> None:
    # Bookmarked cannot point the student at a school it does not have: the missing school
    # (with its class and the enrollment counted) is the one finding
    src = add(
        source(),
        "schools",
        {"sis_id": "sch-3", "name": "West Elementary", "state_id": "WE-3", "active": True},
    )
    src = add(
        src,
        "classes",
        {"sis_id": "cls-w", "school_sis_id": "sch-3", "name": "Reading 3W", "active": True},
    )
    src = update(src, "users", {"sis_id": "stu-3"}, school_sis_id="sch-3")
    src = update(
        src,
        "enrollments",
        {"user_sis_id": "stu-3", "active": True},
        active=False,
        end_date=date(2026, 1, 15),
    )
    src = add(src, "enrollments", _enrollment("e-s3-w", "cls-w", "stu-3"))
    bm = update(sync(source()), "enrollments", {"user_sis_id": "stu-3"}, active=False)
    assert everything(src, bm) == {"missing_data": {("school", "sch-3", BM)}}


def test_a_teacher_teaching_at_two_campuses_is_no_finding() -> None:
    src = add(source(), "enrollments", _enrollment("e-t1-3", "cls-3", "tch-1", role="teacher"))
    assert everything(src, sync(src)) == {}


# -- enrollment dates ---------------------------------------------------------------------


def test_an_enrollment_starting_in_the_future_is_synced_active() -> None:
    # only a past endDate ends an enrollment: a future beginDate is live already
    future = _enrollment("e-fut", "cls-5", "stu-1", start_date=date(2026, 9, 1))
    src = add(source(), "enrollments", future)
    assert everything(src, sync(src)) == {}
    assert everything(src, sync(source())) == {"missing_data": {("enrollment", "e-fut", BM)}}


def test_an_enrollment_ended_in_the_sis_but_active_in_bookmarked_is_stale_only() -> None:
    src = update(
        source(), "enrollments", {"sis_id": "e-s4-4"}, active=False, end_date=date(2026, 1, 1)
    )
    assert everything(src, sync(source())) == {"stale_record": {("enrollment", "e-s4-4", BM)}}


# -- enabledUser=false ------------------------------------------------------------------


def test_a_disabled_login_is_an_inactive_account() -> None:
    # enabledUser=false: active=False without tobedeleted
    src = update(source(), "users", {"sis_id": "stu-4"}, active=False, deleted=False)
    assert everything(src, sync(source())) == {"stale_record": {("student", "stu-4", BM)}}
    bm = update(sync(source()), "users", {"sis_id": "stu-4"}, active=False)
    assert everything(src, bm) == {}


def test_a_disabled_user_is_no_changed_sourced_id_of_a_new_record() -> None:
    # the SIS still holds stu-4 (login disabled) and a second record with its number: not
    # a sourcedId change (the old id is neither gone nor tobedeleted), so Bookmarked's
    # live stu-4 is stale and the new record missing
    src = update(source(), "users", {"sis_id": "stu-4"}, active=False, deleted=False)
    src = add(
        src,
        "users",
        {
            "sis_id": "stu-4n",
            "role": "student",
            "role_raw": "student",
            "first_name": "Dee",
            "last_name": "Kim",
            "student_number": "1004",
            "grade": "03",
            "school_sis_id": "sch-2",
            "active": True,
            "deleted": False,
        },
    )
    assert everything(src, sync(source())) == {
        "missing_data": {("student", "stu-4n", BM)},
        "stale_record": {("student", "stu-4", BM)},
    }


# -- people with two roles, parents keyed by email -------------------------------------


def test_a_parent_who_is_also_a_teacher_under_the_same_email_is_no_finding() -> None:
    # two SIS records (teacher and parent) with one email: the parent key is per role
    src = add(source(), "users", _parent("par-9", "Tess", "Reed", "tess.reed@north.example"))
    src = add(src, "links", {"parent_sis_id": "par-9", "student_sis_id": "stu-4"})
    assert everything(src, sync(src)) == {}


def _one_contact_per_child() -> Roster:
    """The SIS holds Lia Lee once per child: par-1 for stu-1, par-1x for stu-2, one email."""
    src = drop(source(), "links", parent_sis_id="par-1", student_sis_id="stu-2")
    src = add(src, "users", _parent("par-1x", "Lia", "Lee", "lia.lee@example.org"))
    return add(src, "links", {"parent_sis_id": "par-1x", "student_sis_id": "stu-2"})


def _merged(src: Roster) -> Roster:
    """Bookmarked's sync keys the two records by email: one account (par-1's), both links."""
    bm = sync(src)
    account = bm_id(bm, "par-1")
    bm = drop(bm, "users", sis_id="par-1x")
    bm = update(
        bm,
        "links",
        {"parent_sis_id": "par-1x"},
        parent_sis_id="par-1",
        parent_bookmarked_id=account,
    )
    return bm


def test_one_parent_recorded_once_per_child_is_no_email_conflict() -> None:
    src = _one_contact_per_child()
    assert everything(src, _merged(src)) == {}


def test_guardians_of_siblings_sharing_an_email_are_one_family() -> None:
    # the two records differ in name, but their children are siblings (both children of
    # par-2): one family, no conflict
    src = update(_one_contact_per_child(), "users", {"sis_id": "par-1x"}, first_name="Lea")
    assert everything(src, _merged(src)) == {}


def test_different_families_on_one_email_are_still_a_conflict() -> None:
    # without the shared guardian par-2, Lia and Lea Lee of stu-1 and stu-2 are two families
    src = update(_one_contact_per_child(), "users", {"sis_id": "par-1x"}, first_name="Lea")
    src = drop(src, "links", parent_sis_id="par-2", student_sis_id="stu-2")
    found = everything(src, sync(src))
    assert found == {"parent_email_conflict": {("parent", "par-1", SRC), ("parent", "par-1x", SRC)}}


# -- bad agents, whichever record lists them -------------------------------------------


def test_a_teacher_linked_to_a_student_is_one_finding_on_the_teacher_whoever_lists_whom() -> None:
    # the student lists the teacher as agent: (tch-1 -> stu-4); the teacher lists the
    # student: the connector puts a non-parent's agents on the parent side (stu-4 -> tch-1)
    expected = {"student_mismatch": {("teacher", "tch-1", SRC)}}
    by_student = {"parent_sis_id": "tch-1", "student_sis_id": "stu-4"}
    by_teacher = {"parent_sis_id": "stu-4", "student_sis_id": "tch-1"}
    for links in ([by_student], [by_teacher], [by_student, by_teacher]):
        src = add(source(), "links", *links)
        assert everything(src, sync(source())) == expected, links


def test_a_teacher_listed_for_two_families_does_not_make_them_one() -> None:
    src = update(
        source(),
        "users",
        {"sis_id": "par-4"},
        email="olga.ortiz@example.org",
        email_normalized="olga.ortiz@example.org",
    )
    src = add(
        src,
        "links",
        {"parent_sis_id": "tch-1", "student_sis_id": "stu-3"},
        {"parent_sis_id": "tch-1", "student_sis_id": "stu-4"},
    )
    assert everything(src, sync(src)) == {
        "parent_email_conflict": {("parent", "par-3", SRC), ("parent", "par-4", SRC)},
        "student_mismatch": {("teacher", "tch-1", SRC)},
    }
