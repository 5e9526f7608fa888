"""Real exports that were misread, and overlaps between rules found by review.

Each test states what a district admin or support agent relies on: the right record named,
the right party told to act, and one finding for one problem.
"""

from __future__ import annotations

import json
import unicodedata
from datetime import date

import pytest

from reconciliation.connectors.oneroster_model import build_source_roster
from reconciliation.roster import Roster
from reconciliation.rules import RULES
from reconciliation.rules.catalog import rule_cards
from reconciliation.vocabulary import ISSUE_IN_BOOKMARKED, ISSUE_IN_SOURCE
from reconciliation_tests.rules.world import add, drop, everything, keys, run, source, sync, update

SRC, BM = ISSUE_IN_SOURCE, ISSUE_IN_BOOKMARKED
INTEGRITY = "source_integrity"


def _student_enrollment(sis_id: str, class_id: str, user_id: str) -> dict:
    return {
        "sis_id": sis_id,
        "class_sis_id": class_id,
        "user_sis_id": user_id,
        "role": "student",
        "active": True,
    }


# -- A: exports that were misread -------------------------------------------------------


def test_a_class_at_a_department_is_described_as_that_department() -> None:
    src = add(
        source(),
        "classes",
        {"sis_id": "cls-9", "school_sis_id": "dep-1", "name": "Science Lab", "active": True},
    )
    src = add(
        src, "orgs", {"sis_id": "dep-1", "type": "department", "name": "Science", "active": True}
    )
    found = run(src, sync(source()), INTEGRITY)
    assert keys(found) == {("class", "cls-9", SRC)}
    row = found.row(0, named=True)
    assert "department Science (dep-1)" in row["detail"]
    assert "not in the export" not in row["detail"]
    assert row["remediation"].startswith("District data admin:")
    assert json.loads(row["details_json"])["org_type"] == "department"


def test_a_class_at_an_org_missing_from_the_export_is_still_said_so() -> None:
    src = add(
        source(),
        "classes",
        {"sis_id": "cls-9", "school_sis_id": "sch-404", "name": "Orphan", "active": True},
    )
    found = run(src, sync(source()), INTEGRITY)
    assert "sch-404, which is not in the export" in found["detail"][0]


@pytest.mark.parametrize(
    ("enrollment", "user", "enrolled_as", "user_role"),
    [
        ("e-s1-2", "stu-1", "teacher", "student"),  # a student enrolled as the teacher
        ("e-t2-3", "tch-2", "student", "teacher"),  # a teacher enrolled as a student
    ],
)
def test_an_enrollment_role_contradicting_the_user_role_is_the_districts(
    enrollment: str, user: str, enrolled_as: str, user_role: str
) -> None:
    src = update(source(), "enrollments", {"sis_id": enrollment}, role=enrolled_as)
    bm = sync(src)  # Bookmarked wrote what the SIS said
    found = run(src, bm, INTEGRITY)
    assert keys(found) == {("enrollment", enrollment, SRC)}
    row = found.row(0, named=True)
    assert f"role {enrolled_as}" in row["detail"] and f"role is {user_role}" in row["detail"]
    assert f"({user})" in row["detail"]
    assert row["remediation"].startswith("District data admin:")
    assert everything(src, bm) == {INTEGRITY: {("enrollment", enrollment, SRC)}}


def test_a_user_listing_an_org_that_is_not_in_the_export() -> None:
    src = update(source(), "users", {"sis_id": "stu-1"}, org_sis_ids=["sch-1", "org-404"])
    # a district org that is in the export is no finding
    src = update(src, "users", {"sis_id": "adm-1"}, org_sis_ids=["dist-1"])
    src = add(src, "orgs", {"sis_id": "dist-1", "type": "district", "name": "USD", "active": True})
    found = run(src, sync(source()), INTEGRITY)
    assert keys(found) == {("student", "stu-1", SRC)}
    row = found.row(0, named=True)
    assert "Ann Lee (stu-1)" in row["detail"] and "org-404" in row["detail"]
    assert json.loads(row["details_json"])["unknown_orgs"] == ["org-404"]
    assert everything(src, sync(source())) == {INTEGRITY: {("student", "stu-1", SRC)}}


def test_a_roster_without_the_exports_orgs_does_not_judge_user_orgs() -> None:
    # district staff list the district org; without the orgs table (a roster stored by an
    # older version) the district cannot be told from a missing org: no finding at all
    src = update(source(), "users", {"sis_id": "adm-1"}, org_sis_ids=["dist-1"])
    assert everything(src, sync(source())) == {}


# -- B: one problem, one finding ----------------------------------------------------------


def test_the_school_of_an_unplaced_class_is_source_integritys_alone() -> None:
    src = update(source(), "classes", {"sis_id": "cls-5"}, school_sis_id="sch-404")
    assert everything(src, sync(source())) == {INTEGRITY: {("class", "cls-5", SRC)}}


def test_an_unresolvable_enrollment_is_not_also_stale() -> None:
    # the SIS still has e-s1-2, but pointing at a class that is not in the export
    src = update(source(), "enrollments", {"sis_id": "e-s1-2"}, class_sis_id="cls-404")
    assert everything(src, sync(source())) == {INTEGRITY: {("enrollment", "e-s1-2", SRC)}}


def test_a_class_whose_school_changed_is_one_finding_not_one_per_student() -> None:
    src = update(source(), "classes", {"sis_id": "cls-2"}, school_sis_id="sch-2")
    assert everything(src, sync(source())) == {"field_mismatch": {("class", "cls-2", BM)}}


def test_a_student_the_sis_lists_at_both_schools_is_a_legitimate_dual_enrollment() -> None:
    src = add(source(), "enrollments", _student_enrollment("e-s4-1", "cls-1", "stu-4"))
    assert everything(src, sync(src)) == {"campus_transfer": {("student", "stu-4", SRC)}}
    src = update(src, "users", {"sis_id": "stu-4"}, org_sis_ids=["sch-2", "sch-1"])
    assert everything(src, sync(src)) == {}


def test_names_differing_only_in_unicode_form_or_spaces_are_the_same_name() -> None:
    src = update(source(), "users", {"sis_id": "stu-1"}, first_name=" Zoë", last_name="Lee ")
    bm = update(
        sync(source()), "users", {"sis_id": "stu-1"}, first_name=unicodedata.normalize("NFD", "Zoë")
    )
    assert everything(src, bm) == {}
    # a real difference is still one
    bm = update(bm, "users", {"sis_id": "stu-1"}, last_name="Li")
    assert everything(src, bm) == {"field_mismatch": {("student", "stu-1", BM)}}


def test_an_unresolvable_enrollment_names_its_student() -> None:
    src = add(source(), "enrollments", _student_enrollment("e-bad", "cls-404", "stu-1"))
    found = run(src, sync(source()), INTEGRITY)
    assert "Ann Lee (stu-1)" in found["detail"][0]


def _moved():
    """stu-3 moves from sch-1 to sch-2; the SIS ends the old enrollments, adds new ones."""
    src = update(source(), "users", {"sis_id": "stu-3"}, school_sis_id="sch-2")
    src = update(
        src,
        "enrollments",
        {"user_sis_id": "stu-3", "active": True},
        active=False,
        end_date=date(2026, 1, 15),
    )
    return add(
        src,
        "enrollments",
        _student_enrollment("e-s3-3", "cls-3", "stu-3"),
        _student_enrollment("e-s3-4", "cls-4", "stu-3"),
    )


def test_a_transfer_says_which_enrollments_to_end_and_add() -> None:
    found = run(_moved(), sync(source()), "campus_transfer")
    remediation = found["remediation"][0]
    assert "end the enrollments in cls-1, cls-2" in remediation
    assert "add the enrollments in cls-3, cls-4" in remediation


def test_a_transfer_without_phantoms_never_says_end_0() -> None:
    src = _moved()
    bm = update(sync(source()), "users", {"sis_id": "stu-3"}, school_sis_id="sch-2")
    bm = update(bm, "enrollments", {"user_sis_id": "stu-3"}, active=False)
    remediation = run(src, bm, "campus_transfer")["remediation"][0]
    assert "0 " not in remediation and "phantom" not in remediation
    assert "set the school" not in remediation  # Bookmarked has the new school already
    assert "add the enrollments in cls-3, cls-4" in remediation


def test_a_parent_mismatch_gives_the_parents_login_email() -> None:
    bm = drop(sync(source()), "links", parent_sis_id="par-1", student_sis_id="stu-2")
    found = run(source(), bm, "student_mismatch")
    assert keys(found) == {("parent", "par-1", BM)}
    assert "Lia Lee (par-1), login lia.lee@example.org, lacks" in found["detail"][0]


def test_a_sourcedid_listed_twice_with_different_names_names_both() -> None:
    twin = {
        "sis_id": "stu-1",
        "role": "student",
        "role_raw": "student",
        "first_name": "Anna",
        "last_name": "Berg",
        "school_sis_id": "sch-2",
        "active": True,
        "deleted": False,
    }
    src = add(source(), "users", twin)
    found = run(src, sync(source()), INTEGRITY)
    assert keys(found) == {("student", "stu-1", SRC)}
    detail = found["detail"][0]
    assert "Ann Lee" in detail and "Anna Berg" in detail
    assert everything(src, sync(source())) == {INTEGRITY: {("student", "stu-1", SRC)}}
    # the same person listed twice (same name) is a data-quality matter, not a finding
    same = {**twin, "first_name": "ANN ", "last_name": "Lee", "school_sis_id": "sch-1"}
    assert everything(add(source(), "users", same), sync(source())) == {}


# -- C: who acts ------------------------------------------------------------------------


def test_an_unknown_agent_is_reported_on_the_student_whose_record_names_it() -> None:
    src = add(source(), "links", {"parent_sis_id": "par-404", "student_sis_id": "stu-4"})
    found = run(src, sync(source()), "student_mismatch")
    assert keys(found) == {("student", "stu-4", SRC)}
    row = found.row(0, named=True)
    assert "Dee Kim (stu-4)" in row["detail"] and "par-404" in row["detail"]
    assert "agentSourcedIds of Dee Kim (stu-4)" in row["remediation"]


def test_every_rule_says_what_it_finds_and_who_acts() -> None:
    for rule in RULES.values():
        assert rule.description.strip() and "\n\n" not in rule.description
        assert rule.owner.strip()
        for status in rule.statuses:
            assert status in rule.owner, (rule.id, status)
        # the check definitions read the same words without importing the rule
        assert rule_cards()[rule.id].owner == rule.owner


def test_a_oneroster_export_with_a_class_at_the_district_is_read_as_the_district() -> None:
    """The same case through the OneRoster mapping both connectors use (CSV and REST):
    the district org reaches the rule."""
    export = build_source_roster(
        "acme",
        orgs=[
            {"sourcedId": "d1", "type": "district", "name": "Acme USD"},
            {"sourcedId": "s1", "type": "school", "name": "North High"},
        ],
        users=[
            {"sourcedId": "u1", "role": "student", "orgSourcedIds": "s1,d1", "givenName": "Ana"},
            {"sourcedId": "u2", "role": "teacher", "orgSourcedIds": "s1,x9", "givenName": "Bo"},
        ],
        classes=[{"sourcedId": "c1", "title": "Robotics", "schoolSourcedId": "d1"}],
        enrollments=[],
        as_of=date(2026, 1, 5),
    )
    found = run(export, Roster("acme", "bookmarked"), INTEGRITY)
    assert keys(found) == {("class", "c1", SRC), ("teacher", "u2", SRC)}
    details = dict(found.select("sis_id", "detail").iter_rows())
    assert "district Acme USD (d1), which is not a school" in details["c1"]
    assert "x9" in details["u2"]
