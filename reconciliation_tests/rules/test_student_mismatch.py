"""student_mismatch: which students a parent account sees, and SIS links that cannot be right."""

from __future__ import annotations

import json

from reconciliation_tests.rules.world import (
    add,
    bm_id,
    drop,
    everything,
    keys,
    run,
    source,
    sync,
    update,
)

RULE = "student_mismatch"
BM, SRC = "ISSUE_IN_BOOKMARKED", "ISSUE_IN_SOURCE"


def test_a_missing_link_is_one_high_finding_on_the_parent() -> None:
    bm = drop(sync(source()), "links", parent_sis_id="par-3", student_sis_id="stu-3")
    found = run(source(), bm, RULE)
    assert keys(found) == {("parent", "par-3", BM)}
    row = found.row(0, named=True)
    assert row["severity"] == "high"
    assert row["bookmarked_id"] == bm_id(bm, "par-3")
    assert "Cal Ortiz (stu-3)" in row["detail"]
    assert row["remediation"].startswith("Bookmarked support:")
    assert json.loads(row["details_json"]) == {"missing_students": ["stu-3"], "extra_students": []}


def test_an_extra_link_is_a_critical_ferpa_finding() -> None:
    bm = sync(source())
    bm = add(
        bm,
        "links",
        {
            "parent_sis_id": "par-5",
            "student_sis_id": "stu-4",
            "parent_bookmarked_id": bm_id(bm, "par-5"),
            "student_bookmarked_id": bm_id(bm, "stu-4"),
        },
    )
    found = run(source(), bm, RULE)
    assert keys(found) == {("parent", "par-5", BM)}
    row = found.row(0, named=True)
    assert row["severity"] == "critical"
    assert "Dee Kim (stu-4)" in row["detail"]
    assert "unlink stu-4" in row["remediation"]


def test_a_link_to_the_wrong_student_is_one_finding_listing_both() -> None:
    bm = sync(source())
    bm = update(
        bm,
        "links",
        {"parent_sis_id": "par-3"},
        student_sis_id="stu-4",
        student_bookmarked_id=bm_id(bm, "stu-4"),
    )
    found = run(source(), bm, RULE)
    assert keys(found) == {("parent", "par-3", BM)}
    row = found.row(0, named=True)
    assert row["severity"] == "critical"
    assert "wrong student" in row["detail"]
    assert json.loads(row["details_json"]) == {
        "missing_students": ["stu-3"],
        "extra_students": ["stu-4"],
    }


def test_several_differences_of_one_parent_are_one_finding() -> None:
    bm = drop(sync(source()), "links", parent_sis_id="par-1")
    found = run(source(), bm, RULE)
    assert keys(found) == {("parent", "par-1", BM)}
    assert json.loads(found["details_json"][0])["missing_students"] == ["stu-1", "stu-2"]


def test_links_only_keyed_by_sis_id_are_matched_by_row_ids() -> None:
    # a reader that gives links by sis_id only (no row ids) is compared the same way
    bm = sync(source())
    bm = bm.with_tables(links=bm.links.drop("parent_bookmarked_id", "student_bookmarked_id"))
    assert everything(source(), bm) == {}


def test_an_agent_that_does_not_exist_is_an_issue_in_source_on_the_record_naming_it() -> None:
    # the finding is on the record whose agentSourcedIds must be fixed, never on the id
    # that does not exist
    src = add(
        source(),
        "links",
        {"parent_sis_id": "par-3", "student_sis_id": "stu-404"},
        {"parent_sis_id": "par-404", "student_sis_id": "stu-5"},
    )
    found = run(src, sync(source()), RULE)
    assert keys(found) == {("parent", "par-3", SRC), ("student", "stu-5", SRC)}
    details = dict(found.select("sis_id", "detail").iter_rows())
    assert "agentSourcedIds lists stu-404, which does not exist" in details["par-3"]
    assert "Olga Ortiz (par-3)" in details["par-3"]
    assert "agentSourcedIds lists par-404, which does not exist" in details["stu-5"]
    assert "Eve Nash (stu-5)" in details["stu-5"]
    assert found["remediation"].str.starts_with("District data admin:").all()


def test_a_non_student_linked_as_a_child_is_an_issue_in_source() -> None:
    src = add(source(), "links", {"parent_sis_id": "par-5", "student_sis_id": "tch-2"})
    found = run(src, sync(source()), RULE)
    assert keys(found) == {("parent", "par-5", SRC)}
    assert "teacher tch-2 is linked as a child of par-5" in found["detail"][0]
    assert found["bookmarked_id"][0] == bm_id(sync(source()), "par-5")


def test_a_teacher_as_an_agent_is_an_issue_in_source_on_the_teacher() -> None:
    src = add(source(), "links", {"parent_sis_id": "tch-1", "student_sis_id": "stu-5"})
    found = run(src, sync(source()), RULE)
    assert keys(found) == {("teacher", "tch-1", SRC)}
    assert "teacher tch-1 is listed as a parent/guardian of stu-5" in found["detail"][0]


def test_agents_to_unknown_users_are_reported_once_by_student_mismatch_only() -> None:
    src = add(source(), "links", {"parent_sis_id": "par-3", "student_sis_id": "stu-404"})
    assert everything(src, sync(source())) == {RULE: {("parent", "par-3", SRC)}}


def test_links_of_a_parent_missing_from_bookmarked_are_counted_by_missing_data() -> None:
    bm = drop(sync(source()), "users", sis_id="par-3")
    bm = drop(bm, "links", parent_sis_id="par-3")
    assert everything(source(), bm) == {"missing_data": {("parent", "par-3", BM)}}


def test_links_of_a_stale_student_are_counted_by_stale_record() -> None:
    src = drop(source(), "users", sis_id="stu-5")
    src = drop(src, "links", student_sis_id="stu-5")
    src = drop(src, "enrollments", user_sis_id="stu-5")
    found = everything(src, sync(source()))
    assert found == {"stale_record": {("student", "stu-5", BM)}}
