"""duplicate_identity: a sourcedId that changed in the SIS, reported once on the new id."""

from __future__ import annotations

import json

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

RULE = "duplicate_identity"
BM = "ISSUE_IN_BOOKMARKED"


def _renamed(old: str, new: str, **changes):
    """The SIS gives `old` a new sourcedId everywhere it is referenced."""
    src = update(source(), "users", {"sis_id": old}, sis_id=new, **changes)
    for table, column in (
        ("enrollments", "user_sis_id"),
        ("links", "student_sis_id"),
        ("links", "parent_sis_id"),
    ):
        if src.table(table).filter(src.table(table)[column] == old).height:
            src = update(src, table, {column: old}, **{column: new})
    return src


def test_a_student_with_a_new_sourced_id_is_one_finding_on_the_new_id() -> None:
    bm = sync(source())
    found = run(_renamed("stu-3", "stu-3-2026"), bm, RULE)
    assert keys(found) == {("student", "stu-3-2026", BM)}
    row = found.row(0, named=True)
    assert row["bookmarked_id"] == bm_id(bm, "stu-3")
    facts = json.loads(row["details_json"])
    assert facts["old_sis_id"] == "stu-3" and facts["matched_on"] == "student_number"
    assert facts["old_account_enrollments"] == 2 and facts["old_account_links"] == 1
    assert "stu-3 to stu-3-2026" in row["remediation"]


def test_a_changed_id_is_not_also_missing_stale_mismatched_or_unlinked() -> None:
    found = everything(_renamed("stu-3", "stu-3-2026", first_name="Callum"), sync(source()))
    assert found == {RULE: {("student", "stu-3-2026", BM)}}


def test_a_teacher_matched_on_email_when_there_is_no_number() -> None:
    src = _renamed("tch-1", "staff-77", email="Tess.Reed@north.example ", email_normalized=None)
    found = run(src, sync(source()), RULE)
    assert keys(found) == {("teacher", "staff-77", BM)}
    assert json.loads(found["details_json"][0])["matched_on"] == "email"
    assert everything(src, sync(source())) == {RULE: {("teacher", "staff-77", BM)}}


def test_a_parent_with_a_new_id_keeps_the_children_links() -> None:
    src = _renamed("par-3", "guardian-3")
    assert everything(src, sync(source())) == {RULE: {("parent", "guardian-3", BM)}}


def test_the_old_id_kept_as_tobedeleted_in_the_sis_still_pairs() -> None:
    src = _renamed("stu-4", "stu-4-new")
    src = src.with_tables(
        users=src.users.vstack(source().users.filter(source().users["sis_id"] == "stu-4"))
    )
    src = update(src, "users", {"sis_id": "stu-4"}, active=False, deleted=True)
    found = everything(src, sync(source()))
    assert found == {RULE: {("student", "stu-4-new", BM)}}


def test_a_real_new_student_and_a_real_leaver_are_not_paired() -> None:
    # different student numbers and no email: missing plus stale, as they should be
    src = _renamed("stu-4", "stu-new", student_number="2001")
    found = everything(src, sync(source()))
    assert found["missing_data"] == {("student", "stu-new", BM)}
    assert found["stale_record"] == {("student", "stu-4", BM)}
    assert RULE not in found


def test_enrollment_differences_of_a_changed_id_are_still_reported() -> None:
    src = _renamed("stu-3", "stu-3-2026")
    bm = drop(sync(source()), "enrollments", sis_id="e-s3-2")
    found = everything(src, bm)
    assert found == {
        RULE: {("student", "stu-3-2026", BM)},
        "missing_data": {("enrollment", "e-s3-2", BM)},
    }


def test_siblings_sharing_a_family_email_are_not_paired() -> None:
    # stu-1 leaves and a new sibling arrives; both use the family email
    src = update(
        source(),
        "users",
        {"sis_id": "stu-1"},
        email="lee.family@example.org",
        email_normalized="lee.family@example.org",
    )
    bm = sync(src)
    src = update(
        src, "users", {"sis_id": "stu-1"}, sis_id="stu-9", student_number="1009", first_name="Cy"
    )
    for table, column in (("enrollments", "user_sis_id"), ("links", "student_sis_id")):
        src = update(src, table, {column: "stu-1"}, **{column: "stu-9"})
    found = everything(src, bm)
    assert RULE not in found
    assert found["missing_data"] == {("student", "stu-9", BM)}
    assert found["stale_record"] == {("student", "stu-1", BM)}


def test_a_migration_that_reissued_id_and_number_matches_on_email_and_name() -> None:
    # a SIS migration: new sourcedId AND new student number; the student's own email and
    # name are unchanged, so it is the same person (siblings differ by name)
    src = update(source(), "users", {"sis_id": "stu-3"}, email="cal.ortiz@students.example")
    bm = sync(src)
    src = update(src, "users", {"sis_id": "stu-3"}, sis_id="stu-3-new", student_number="9003")
    for table, column in (("enrollments", "user_sis_id"), ("links", "student_sis_id")):
        src = update(src, table, {column: "stu-3"}, **{column: "stu-3-new"})
    found = run(src, bm, RULE)
    assert keys(found) == {("student", "stu-3-new", BM)}
    assert json.loads(found["details_json"][0])["matched_on"] == "email"
    assert everything(src, bm) == {RULE: {("student", "stu-3-new", BM)}}
